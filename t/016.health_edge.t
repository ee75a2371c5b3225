# Health check edge cases: a hanging health endpoint (timeout), 500s,
# status/body mismatches, garbage and empty answers; nginx -t errors of the
# upstream directives; no worker dies along the way.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my @M = ($A, $B, $C);
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;
my ($D, $E, $F) = map { NbTest::Mock->new } 1 .. 3;    # /custom checks

# servers answering the health check with garbage / nothing
my %fake;
sub fake_server {
    my ($reply) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64, ReuseAddr => 1)
        or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $SIG{TERM} = sub { POSIX::_exit(0) };
        $SIG{$_} = 'DEFAULT' for qw(INT HUP);
        $SIG{PIPE} = 'IGNORE';
        while (my $c = $l->accept) {
            my $buf = '';
            $c->blocking(0);
            my $end = time + 0.5;
            while (time < $end && $buf !~ /\r\n\r\n/) {
                my $n = sysread $c, my $chunk, 4096;
                $buf .= $chunk if $n;
                sleep 0.005 unless $n;
            }
            syswrite $c, $reply if length $reply;
            close $c;
        }
        POSIX::_exit(0);
    }
    $fake{$pid} = 1;
    my $port = $l->sockport;
    close $l;
    return $port;
}
my $PARENT = $$;
END {
    if ($$ == $PARENT) {
        local $?;
        for my $pid (keys %fake) { kill 'TERM', $pid; waitpid $pid, 0 }
    }
}
my $PG = fake_server("garbage that is not HTTP\r\n\r\n");
my $PH = fake_server('');

my $CHECK = 'interval=200ms timeout=300ms rise=2 fall=2';
my $ng = NbTest::Nginx->new(http => cluster_http(
    nodes     => \@M,
    check     => "$CHECK body=~^ok",
    upstreams => join('', map { my ($name, $port, $check) = @$_; <<"EOT" }
upstream $name {
    nb_maint;
    nb_maint_check $CHECK $check;
    server 127.0.0.1:$port;
}
EOT
        ['bodyfail', $D->port, 'uri=/custom body=~^ok'],
        ['bodyok',   $E->port, 'uri=/custom body=~"node"'],
        ['statusno', $F->port, 'uri=/custom status=201'],
        ['garbage',  $PG,      ''],
        ['empty',    $PH,      '']),
    locations => <<'EOT',
    location /bf/ { proxy_pass http://bodyfail; }
    location /bo/ { proxy_pass http://bodyok; }
EOT
));
$ng->start;
my @workers0 = $ng->worker_pids;

ok($ng->wait_all_health('up', 5, @ids), 'A, B, C are up (body=~^ok matches "ok")');

# ---- custom uri / status / body -----------------------------------------------------------
my $all = sub { my ($name) = @_; $ng->status_nodes($name) };
ok(NbTest::wait_until(sub { ($all->('bodyok')->{ $E->id }{health} // '') eq 'up' }, 5),
   'uri=/custom body=~"node": 200 JSON containing "node" -> up');
ok(NbTest::wait_until(sub { ($all->('bodyfail')->{ $D->id }{health} // '') eq 'down' }, 5),
   'uri=/custom body=~^ok: 200 but the body does not start with ok -> down');
ok(NbTest::wait_until(sub { ($all->('statusno')->{ $F->id }{health} // '') eq 'down' }, 5),
   'uri=/custom status=201: answer 200 -> down');
ok(NbTest::wait_until(sub { ($all->('garbage')->{"127.0.0.1:$PG"}{health} // '') eq 'down' }, 5),
   'a non-HTTP answer -> down');
ok(NbTest::wait_until(sub { ($all->('empty')->{"127.0.0.1:$PH"}{health} // '') eq 'down' }, 5),
   'an empty answer (connection closed) -> down');
cmp_ok($D->stats->{by_path}{'/custom'} // 0, '>=', 1, 'the checks used uri=/custom');
is($A->stats->{by_path}{'/custom'} // 0, 0, 'the app upstream used the default uri');
my $r = $ng->get('/bf/x');
is($r->{status}, 503, 'request to the upstream whose only node fails the body check: 503');
is($r->{headers}{'x-nb-maint'}, 'no_healthy_node', '... no_healthy_node');
$r = $ng->get('/bo/x');
is($r->{status}, 200, 'request to the upstream whose node passes: 200');
is($r->{headers}{'x-node'}, $E->id, '... from E');

# ---- hanging health endpoint ---------------------------------------------------------------
my $t0 = time;
$A->set_state('hang');
my $took = $ng->wait_health($aid, 'down', 5);
ok(defined $took, 'A (health check never answered) goes down') or diag $ng->error_log_tail(10);
$took //= 99;
# fall=2 failed checks of timeout=300ms each, interval 200ms in between
cmp_ok($took, '>=', 0.55, sprintf('... only after its checks timed out (%.3f s >= ~fall*timeout)', $took));
cmp_ok($took, '<=', 2.5, '... within fall*(timeout+interval) + margin');
ok(scalar($ng->log_grep(qr/nb_maint: node \Q$aid\E is down/)), 'error.log: node A is down');
my $h = $ng->hit(40, '/api/x');
is($h->{status}{200}, 40, 'requests keep working');
ok(!$h->{node}{$aid}, '... none to the hanging A');
$A->set_state('running');
ok(defined $ng->wait_health($aid, 'up', 3), 'A answers again: up');

# ---- 500 oops ---------------------------------------------------------------------------------
$B->set_state('fail');
ok(defined $ng->wait_health($bid, 'down', 3), 'B (health 500 "oops") goes down');
cmp_ok($ng->node($bid)->{fails}, '>=', 2, '... fails >= fall');
$B->reset;
$h = $ng->hit(40, '/api/y');
is($h->{status}{200}, 40, 'requests keep working');
is($B->stats->{requests}, 0, '... none reached B');
$B->set_state('running');
ok(defined $ng->wait_health($bid, 'up', 3), 'B up again');

# commanding (503 APP_COMMANDING) is busy, not down (SPEC section 3)
$C->set_state('commanding');
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C (health 503 APP_COMMANDING) is commanding');
$C->set_state('error');
ok(defined $ng->wait_health($cid, 'down', 3), 'C (health 503 APP_ERROR) goes down');
$C->set_state('running');
ok(defined $ng->wait_health($cid, 'up', 3), 'C up again');

is(scalar $ng->crashes, 0, 'no "exited on signal" in error.log');
is_deeply([$ng->worker_pids], \@workers0, 'the same workers are still alive');
ok($ng->get('/_nb_maint/status', { Authorization => 'Bearer ' . ADMIN_TOKEN })->{status} == 200,
   'admin API answers');

# ---- nginx -t ---------------------------------------------------------------------------------
sub conf_http {
    my ($upstream, %o) = @_;
    my $zone = exists $o{zone} ? $o{zone} : "nb_maint_zone nb 4m;\n";
    return $zone . "nb_maint_store file:%%PREFIX%%/state.json;\n" . $upstream . <<'EOT';
server {
    listen 127.0.0.1:%%PORT%%;
    location / { proxy_pass http://u; }
}
EOT
}
sub conf_test {
    my ($label, $http, $want) = @_;
    my $t = NbTest::Nginx->new(http => $http);
    my ($rc, $out) = $t->test_config;
    if (!defined $want) {
        is($rc, 0, "nginx -t: $label passes") or diag $out;
        return;
    }
    is($rc, 1, "nginx -t: $label fails") or diag $out;
    like($out, $want, "... message names the directive") or diag $out;
    unlike($out, qr/signal|core dumped/, '... no crash');
}

conf_test('valid nb_maint upstream',
    conf_http("upstream u { nb_maint; nb_maint_check $CHECK uri=/x status=204 body=~^ok\$; server 127.0.0.1:1; keepalive 4; }\n"));
conf_test('unknown nb_maint_check parameter',
    conf_http("upstream u { nb_maint; nb_maint_check interval=1s bogus=1; server 127.0.0.1:1; }\n"),
    qr/"nb_maint_check": unknown parameter/);
conf_test('bad body regex',
    conf_http("upstream u { nb_maint; nb_maint_check body=~(unclosed; server 127.0.0.1:1; }\n"),
    qr/"nb_maint_check".*(?:regex|pattern)|(?:regex|pattern).*"nb_maint_check"/i);
for my $bal ('least_conn', 'ip_hash', 'hash $uri', 'random') {
    (my $name = $bal) =~ s/ .*//;
    conf_test("nb_maint before $name",
        conf_http("upstream u { nb_maint; $bal; server 127.0.0.1:1; }\n"), qr/"nb_maint"/);
    conf_test("$name before nb_maint",
        conf_http("upstream u { $bal; nb_maint; server 127.0.0.1:1; }\n"), qr/"nb_maint"/);
}
# since 1.29.7 keepalive wraps the balancer at the end of http{} (it is on by
# default), so its place in the block no longer matters
conf_test('keepalive before nb_maint',
    conf_http("upstream u { keepalive 4; nb_maint; server 127.0.0.1:1; }\n"),
    NbTest::nginx_version() >= 1029007 ? undef : qr/"nb_maint"/);
conf_test('nb_maint_check without nb_maint',
    conf_http("upstream u { nb_maint_check interval=1s; server 127.0.0.1:1; }\n"), qr/"nb_maint_check"/);
conf_test('nb_maint without nb_maint_zone',
    conf_http("upstream u { nb_maint; server 127.0.0.1:1; }\n", zone => ''), qr/"nb_maint".*nb_maint_zone/);

done_testing;
