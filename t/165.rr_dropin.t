# The balancer is a drop-in for nginx's round robin (issue 9, defects 21
# and 27): backup servers (nb_maint before or after them) used as nginx uses
# them, weight and down honoured, unix socket ids of 64+ bytes, a backup is
# a node like any other for maintenance and drain; the same outage gives
# the same answer (the no-node 503) on its first and later requests, and the
# access log shows the 503 that was sent.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use IO::Socket::INET;
use Time::HiRes qw(sleep);

my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my ($aid, $bid, $cid) = map { $_->id } $A, $B, $C;

sub gateway {
    my ($upstream, %o) = @_;
    my $ng = NbTest::Nginx->new(http => NbTest::http_head() . <<"EOT");
log_format st '\$status \$upstream_addr';
upstream app {
$upstream
}
server {
    listen 127.0.0.1:%%PORT%%;
    nb_maint_gate on;
    access_log %%PREFIX%%/logs/st.log st;
    location / { proxy_pass http://app; }
    location /_nb_maint/ { nb_maint_admin; }
}
@{[ $o{servers} // "" ]}
EOT
    return $ng;
}

# ---- backup accepted whether nb_maint comes before or after ---------------------------
for my $order (['nb_maint first' => "    nb_maint;\n    server $aid;\n    server $cid backup;\n"],
               ['nb_maint last'  => "    server $aid;\n    server $cid backup;\n    nb_maint;\n"]) {
    my $ng = gateway($order->[1]);
    my ($rc, $out) = $ng->test_config;
    is($rc, 0, "backup server with $order->[0]: nginx -t ok") or diag $out;
    unlike($out, qr/not used/, '... no warning that backups are not used');
}

# ---- backups used as nginx uses them -------------------------------------------------
my $ng = gateway("    nb_maint;\n    server $aid max_fails=1 fail_timeout=30s;\n    server $bid max_fails=1 fail_timeout=30s;\n    server $cid backup;\n");
$ng->start;
my $h = $ng->hit(20, '/x');
is($h->{status}{200}, 20, 'primaries up: 20 of 20 200');
ok(!$h->{node}{$cid}, '... the backup gets nothing') or diag explain $h->{node};

my $st = $ng->status;
my ($cn) = grep { $_->{id} eq $cid } @{ $st->{upstreams}[0]{nodes} };
ok($cn, 'the backup is a node in status');
ok($cn && $cn->{backup}, '... marked backup');

$A->stop;
$B->stop;
$h = $ng->hit(10, '/x');
is($h->{status}{200}, 10, 'primaries down: 10 of 10 still 200') or diag explain $h->{status};
is($h->{node}{$cid}, 10, '... all from the backup');

# a backup is a node like any other: maintenance on it, drain it
my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $cid });
is($r->{status}, 200, 'maintenance designating the backup') or diag $r->{content};
$h = $ng->hit(5, '/x');
is($h->{node}{$cid}, 5, '... all requests go to it');
$ng->admin(POST => 'restore', { force => JSON::PP::true });
$r = $ng->admin(POST => "nodes/$cid/drain");
is($r->{status}, 200, 'drain the backup');
$h = $ng->hit(3, '/api/x');
is($h->{status}{503}, 3, 'primaries down, backup drained: 503') or diag explain $h->{status};
is($h->{res}[0]{json}{error}{nb_maint}, 'no_healthy_node', '... no_healthy_node');
$ng->admin(POST => "nodes/$cid/undrain");
$A->start;
$B->start;
$ng->stop;

# ---- the same outage, the same answer; the access log says 503 ----------------------------
for my $case (['two nodes' => "    nb_maint;\n    server $aid;\n    server $bid;\n"],
              ['one node'  => "    nb_maint;\n    server $aid;\n"],
              ['with a backup' => "    nb_maint;\n    server $aid;\n    server $bid backup;\n"]) {
    my $g = gateway($case->[1]);
    $g->start;
    $A->stop;
    $B->stop;
    my @got;
    for my $i (1 .. 4) {
        my $res = $g->get('/api/x');
        push @got, $res->{status};
        is($res->{status}, 503, "$case->[0], all down, request $i: 503");
        is(($res->{json}{error} || {})->{nb_maint}, 'no_healthy_node', '... no_healthy_node');
    }
    my $log = '';
    NbTest::wait_until(sub { $log = $g->read_file('logs/st.log') // ''; ($log =~ tr/\n//) >= 4 }, 5);
    my @codes = $log =~ /^(\d{3}) /mg;
    is_deeply(\@codes, [(503) x 4], "$case->[0]: the access log says 503 every time") or diag $log;
    $A->start;
    $B->start;
    $g->stop;
}

# ---- proxy_next_upstream_tries and timeouts as round robin --------------------------------
{
    # one worker: passive marks are per worker without a zone
    my $g = NbTest::Nginx->new(workers => 1, http => NbTest::http_head() . <<"EOT");
upstream app {
    nb_maint;
    nb_maint_check off;    # round robin's own passive marks only
    server $aid max_fails=1 fail_timeout=30s;
    server $bid max_fails=1 fail_timeout=30s;
}
server {
    listen 127.0.0.1:%%PORT%%;
    proxy_next_upstream_tries 1;
    proxy_read_timeout 500ms;
    location / { proxy_pass http://app; }
    location /_nb_maint/ { nb_maint_admin; }
}
EOT
    $g->start;
    $A->stop;
    my @st = map { $g->get('/x')->{status} } 1 .. 4;
    is($st[0], 502, 'tries=1, the first peer refuses, another is left: 502 as round robin');
    is_deeply([@st[1 .. 3]], [200, 200, 200], '... then the other one serves');
    $A->start;
    $g->stop;

    my $g1 = gateway("    nb_maint;
    server $bid;
", servers => '');
    $g1->{http} =~ s/location \/ \{ proxy_pass/location \/ { proxy_read_timeout 500ms; proxy_pass/;
    $g1->write_conf;
    $g1->start;
    my $res = $g1->get('/slow?sleep_ms=2000');
    is($res->{status}, 504, 'a node that took the request and timed out: nginx\'s 504');
    is($g1->get('/x')->{status}, 200, '... and it still serves');
    $g1->stop;
}

# ---- weight and down --------------------------------------------------------------------
$ng = gateway("    nb_maint;\n    server $aid weight=3;\n    server $bid weight=1;\n    server $cid down;\n");
$ng->start;
$h = $ng->hit(40, '/x');
is($h->{node}{$aid}, 30, 'weight=3: 30 of 40');
is($h->{node}{$bid}, 10, 'weight=1: 10 of 40');
ok(!$h->{node}{$cid}, 'down: none');
$ng->stop;

# ---- max_conns: a busy peer is skipped, as round robin does ----------------------------------
{
    my $g = gateway("    nb_maint;\n    server $aid max_conns=1;\n    server $bid;\n");
    $g->{workers} = 1;    # peer connection counts are per worker without a zone
    $g->write_conf;
    $g->start;
    my @slow;
    for (1 .. 2) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $g->port) or die $!;
        print $s "GET /slow?sleep_ms=4000 HTTP/1.0\r\nHost: x\r\n\r\n";
        push @slow, $s;
    }
    # both slow requests are in flight, one of them on A
    ok(NbTest::wait_until(sub {
        my $n = $g->status_nodes;
        ($n->{$aid}{active} // 0) == 1 && ($n->{$bid}{active} // 0) == 1 }, 3),
       'max_conns: one slow request in flight on A, one on B');
    my $hh = $g->hit(6, '/x');
    is($hh->{node}{$bid}, 6, 'A at max_conns=1: the 6 requests meanwhile go to B')
        or diag explain $hh->{node};
    my $a_slow = 0;
    for my $s (@slow) { local $/; my $resp = <$s> // ''; $a_slow++ if $resp =~ /X-Node: \Q$aid\E/ }
    is($a_slow, 1, '... A had exactly one of the slow requests');
    $hh = $g->hit(4, '/x');
    ok($hh->{node}{$aid}, 'A free again: it serves again');
    $g->stop;
}

# ---- unix socket ids of 64+ bytes -----------------------------------------------------------
$ng = NbTest::Nginx->new(http => '');
my $sock = $ng->prefix . '/' . ('s' x (100 - length($ng->prefix) - 6)) . '.sock';
my $uid = "unix:$sock";
cmp_ok(length $uid, '>', 64, 'a unix id of ' . length($uid) . ' bytes');
$ng->{http} = NbTest::http_head() . <<"EOT";
upstream app {
    nb_maint;
    nb_maint_check off;    # the socket's server is no NocoBase node
    server $uid;
}
server {
    listen 127.0.0.1:%%PORT%%;
    location / { proxy_pass http://app; }
    location /_nb_maint/ { nb_maint_admin; }
}
server {
    listen $uid;
    location / { return 200 "unix\\n"; }
}
EOT
$ng->write_conf;
my ($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t accepts it') or diag $out;
SKIP: {
    skip 'config refused', 4 if $rc;
    $ng->start;
    is($ng->get('/x')->{content}, "unix\n", 'requests reach it');
    is($ng->node($uid)->{id}, $uid, 'nodes/{id} knows it');
    $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $uid });
    is($r->{status}, 200, 'maintenance designating it') or diag $r->{content};
    is($ng->get('/x')->{content}, "unix\n", '... still served');
}

is($ng->crashes, 0, 'no worker crashed');
done_testing;
