# Proxied WebSockets and drain (SPEC section 3): "websockets" is counted
# apart from "active"; a drained node's WebSockets are closed after
# nb_maint_ws_drain_grace; entering maintenance closes those of every node
# but the designated one the same way; "drain --wait" with 50 WebSockets
# open finishes once the grace has closed them (issue 18), not at its
# timeout.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use POSIX ();
use Time::HiRes qw(time sleep);

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;
my $GRACE = 1.5;

my $WS_LOC = NbWS::LOCATION;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B], locations => $WS_LOC,
                                                 http_extra => "nb_maint_ws_drain_grace 1500ms;\n"));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes up');

sub open_ws {
    my ($n) = @_;
    my %by;
    for (1 .. $n) {
        my $ws = NbWS->connect(port => $ng->port, greeting => 1);
        die "no 101: $ws->{status}\n" unless $ws->status == 101;
        push @{ $by{ $ws->{headers}{'x-node'} } }, $ws;
    }
    return \%by;
}
sub node_counts {
    my ($id) = @_;
    my $n = $ng->node($id);
    return ($n->{active} // -1, $n->{websockets} // -1);
}

# ---- counting ---------------------------------------------------------------------------------------
my $by = open_ws(6);
my ($na, $nb) = (scalar @{ $by->{$aid} || [] }, scalar @{ $by->{$bid} || [] });
is($na + $nb, 6, "6 WebSockets: $na on A, $nb on B");
ok(NbTest::wait_until(sub { my (undef, $w) = node_counts($aid); $w == $na }, 2), "A: websockets $na");
my ($act, $wsn) = node_counts($bid);
is($wsn, $nb, "B: websockets $nb");
is($act, 0, 'B: active 0');
my $st = $ng->status;

# ---- drain A: its WebSockets close after the grace -----------------------------------------------
my $t0 = time;
is($ng->admin(POST => "nodes/$aid/drain")->{status}, 200, 'drain A');
sleep 0.5;
(undef, $wsn) = node_counts($aid);
is($wsn, $na, "0.5 s later A's WebSockets are still open (grace $GRACE s)");
my $closed = NbTest::wait_until(sub { my ($a, $w) = node_counts($aid); $a == 0 && $w == 0 }, $GRACE + 1.5, 0.05);
my $dt = time - $t0;
ok($closed, 'A: active 0 and websockets 0');
cmp_ok($dt, '<=', $GRACE + 1, sprintf('... within grace + 1 s (%.2f s)', $dt));
cmp_ok($dt, '>=', $GRACE - 0.2, '... not before the grace');
my $eof = grep { my $f = $_->recv_frame(1); $f && $f->{op} eq 'eof' } @{ $by->{$aid} || [] };
is($eof, $na, "the clients of A see their sockets closed ($eof)");
is((node_counts($bid))[1], $nb, "B's WebSockets stay ($nb)");
ok(NbTest::wait_until(sub { ($A->stats->{websockets} // -1) == 0 }, 2), 'mock A: no WebSocket left');
# reconnecting lands on B
my $re = NbWS->connect(port => $ng->port);
is($re->{headers}{'x-node'}, $bid, 'a reconnect goes to B');
undef $re;
is($ng->admin(POST => "nodes/$aid/undrain")->{status}, 200, 'undrain A');

# ---- maintenance on A: B's WebSockets close after the grace -----------------------------------------
$by = open_ws(6);
($na, $nb) = (scalar @{ $by->{$aid} || [] }, scalar @{ $by->{$bid} || [] });
ok(NbTest::wait_until(sub { (node_counts($bid))[1] >= $nb }, 2), "B: $nb+ WebSockets");
$t0 = time;
is($ng->admin(POST => 'mode', { mode => 'maintenance', node => $aid })->{status}, 200, 'maintenance on A');
$closed = NbTest::wait_until(sub { (node_counts($bid))[1] == 0 }, $GRACE + 1.5, 0.05);
$dt = time - $t0;
ok($closed, "B: websockets 0");
cmp_ok($dt, '<=', $GRACE + 1, sprintf('... within grace + 1 s (%.2f s)', $dt));
ok((node_counts($aid))[1] >= $na, "the designated A keeps its WebSockets");
$ng->admin(POST => 'restore', { force => JSON::PP::true });
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 5), 'normal');
undef $by;
ok(NbTest::wait_until(sub { (node_counts($aid))[1] == 0 && (node_counts($bid))[1] == 0 }, 3), 'all closed: websockets 0');

# ---- drain --wait with 50 open WebSockets: done once the grace closed them (issue 18) --------------
$ng->stop;
my $ng2 = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B], locations => $WS_LOC,
                                                  http_extra => "nb_maint_ws_drain_grace 3s;\n"));
$ng2->start;
ok($ng2->wait_all_health('up', 5, $aid, $bid), 'gateway 2 (grace 3 s): nodes up');
my @socks;
for (1 .. 200) {
    my $ws = NbWS->connect(port => $ng2->port);
    push @socks, $ws if ($ws->{headers}{'x-node'} // '') eq $aid;
    last if @socks == 50;
}
is(scalar @socks, 50, '50 WebSockets open on A');
ok(NbTest::wait_until(sub { ($ng2->node($aid)->{websockets} // 0) == 50 }, 3), 'nodes/A: websockets 50');

my $out = "$ng2->{prefix}/drain.out";
my $pid = fork // die;
if (!$pid) {
    open STDOUT, '>', $out; open STDERR, '>&', \*STDOUT;
    $ENV{NB_MAINT_URL} = $ng2->url('/_nb_maint/');
    $ENV{NB_MAINT_TOKEN} = NbTest::ADMIN_TOKEN;
    { exec $^X, NbTest::repo_root() . '/scripts/nb-maint', 'drain', $aid, '--wait', '--timeout', '10' }
    POSIX::_exit(127);
}
$t0 = time;
waitpid $pid, 0;
my $rc = $? >> 8;
$dt = time - $t0;
my $text = do { local (@ARGV, $/) = $out; <> } // '';
is($rc, 0, sprintf('drain --wait exits 0 with 50 WebSockets open at first (%.2f s)', $dt)) or diag $text;
cmp_ok($dt, '>=', 2.8, '... once the grace (3 s) closed them');
cmp_ok($dt, '<', 8, '... well before its timeout');
like($text, qr/no request in flight and no WebSocket open/, '... says no request in flight and no WebSocket open');
is($ng2->node($aid)->{websockets}, 0, '... websockets 0');
undef @socks;

is(scalar $ng->crashes + scalar $ng2->crashes, 0, 'no worker crashed');
done_testing;
