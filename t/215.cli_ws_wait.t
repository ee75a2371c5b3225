# The CLI stops or restarts a node only once its WebSockets are closed
# (issue 18): rolling-restart, maintenance-run and drain --wait wait, as a
# step of their own, until the node's "websockets" is 0 (the gateway closes
# them after nb_maint_ws_drain_grace and the tabs reconnect to a node that
# stays), bounded by the drain timeout (--agent-interval 0: no HAProxy wait
# hides it).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use NbCli;
use Time::HiRes qw(time sleep);

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B], locations => NbWS::LOCATION,
                                                 http_extra => "nb_maint_ws_drain_grace 2s;\n"));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes up');
my %E = (NB_MAINT_URL => $ng->url('/_nb_maint/'), NB_MAINT_TOKEN => NbTest::ADMIN_TOKEN);
my $D = NbCli::dir();
my $CLI = NbTest::repo_root() . '/scripts/nb-maint';

# the command records what the gateway says of the node when it runs:
# "<time> <websockets> <active>" in $D/<what>-<port>
sub recorder {
    my ($what) = @_;
    return "$^X -e 'my \$j = qx{$^X $CLI -o json node {node}}; "
         . "my (\$w) = \$j =~ /\"websockets\"\\s*:\\s*(\\d+)/; my (\$a) = \$j =~ /\"active\"\\s*:\\s*(\\d+)/; "
         . "open my \$f, q{>>}, q{$D/$what-{port}}; printf \$f qq{%.3f %s %s\\n}, time, \$w // -1, \$a // -1'";
}
sub recorded {
    my ($what, $m) = @_;
    my @l = split /\n/, NbTest::slurp("$D/$what-" . $m->port);
    return [ split ' ', $l[-1] // '' ];
}
# open WebSockets through the gateway until each node holds $n
sub open_ws {
    my ($n) = @_;
    my (%by, $tries);
    while (grep({ @{ $by{$_} || [] } < $n } $aid, $bid) && $tries++ < 40) {
        my $ws = NbWS->connect(port => $ng->port, greeting => 1);
        push @{ $by{ $ws->{headers}{'x-node'} // '-' } }, $ws if $ws->status == 101;
    }
    ok(NbTest::wait_until(sub { my $s = $ng->status_nodes;
                                ($s->{$aid}{websockets} // 0) >= $n && ($s->{$bid}{websockets} // 0) >= $n }, 3),
       "$n+ WebSockets on each node");
    return \%by;
}

# ---- rolling-restart --------------------------------------------------------------------------
my $by = open_ws(2);
my $t0 = time;
my ($rc, $out, $err) = NbCli::run({ env => \%E, timeout => 90 }, 'rolling-restart',
    '--restart-cmd', recorder('restart'), '--interval', '0.1', '--agent-interval', '0', '--health-timeout', '20');
is($rc, 0, 'rolling-restart: exit 0') or diag "$out\n$err";
for my $m ($A, $B) {
    my $id = $m->id;
    my ($at, $w, $a) = @{ recorded('restart', $m) };
    is($w, 0, "rolling-restart: when $id\'s restart command ran, its websockets was 0");
    is($a, 0, '... and active 0');
    like($out, qr/^\[\d+\/\d+\] wait until \Q$id\E has no WebSocket open \(open tabs move to the other nodes\)\.\.\. ok$/m,
         '... a step of its own');
}
my ($ta) = @{ recorded('restart', $A) };
# (not asserted: a check timing out under load closes a node's sockets at once)
diag sprintf('A\'s restart ran %.1f s after the start (drain grace 2 s)', $ta - $t0);
like($out, qr/^\s+\d+ WebSockets? open on \Q$aid\E \(the gateway closes them after nb_maint_ws_drain_grace\), /m,
     '... the wait shows what it waits for');
# the tabs A held were closed by the gateway, not by A's APP_STOPPED
for my $ws (@{ $by->{$aid} }) {
    my $f = $ws->recv_frame(1);
    ok($f && $f->{op} eq 'eof', 'a tab on A: closed by the gateway, no APP_STOPPED heard');
}

# ---- maintenance-run ------------------------------------------------------------------------------
$by = open_ws(2);
$t0 = time;
($rc, $out, $err) = NbCli::run({ env => \%E, timeout => 90 }, 'maintenance-run', '--node', $aid,
    '--stop-cmd', recorder('stop'), '--start-cmd', 'true', '--task-cmd', 'true',
    '--interval', '0.1', '--agent-interval', '0', '--timeout', '30');
is($rc, 0, 'maintenance-run: exit 0') or diag "$out\n$err";
my ($tb, $wb, $ab) = @{ recorded('stop', $B) };
is($wb, 0, 'maintenance-run: when B\'s stop command ran, its websockets was 0');
is($ab, 0, '... and active 0');
diag sprintf('B\'s stop ran %.1f s after the start (drain grace 2 s)', $tb - $t0);
like($out, qr/^\[\d+\/\d+\] wait until the other nodes have no WebSocket open \(open tabs move to \Q$aid\E\)\.\.\. ok$/m,
     '... a step of its own');
is($ng->status->{mode}, 'normal', '... normal again');

# ---- drain --wait ----------------------------------------------------------------------------------
$by = open_ws(1);
$t0 = time;
($rc, $out, $err) = NbCli::run({ env => \%E, timeout => 30 }, 'drain', $bid, '--wait', '--interval', '0.1',
                               '--agent-interval', '0');
my $dt = time - $t0;
is($rc, 0, 'drain --wait: exit 0') or diag "$out\n$err";
is($ng->node($bid)->{websockets}, 0, '... returns with B\'s websockets 0');
diag sprintf('drain --wait took %.1f s (drain grace 2 s)', $dt);
like($out, qr/\Q$bid\E has no request in flight and no WebSocket open/, '... says so');
is($ng->admin(POST => "nodes/$bid/undrain")->{status}, 200, 'undrain B');

# bounded by --timeout: exit 5, B stays drained
$by = open_ws(1);
($rc, $out, $err) = NbCli::run({ env => \%E, timeout => 30 }, 'drain', $bid, '--wait', '--timeout', '0.5',
                               '--interval', '0.1', '--agent-interval', '0');
is($rc, 5, 'drain --wait --timeout 0.5 (grace 2 s): exit 5') or diag "$out\n$err";
like($err, qr/timed out after .*WebSockets? open on \Q$bid\E/, '... names the WebSockets');
ok($ng->node($bid)->{drain}, '... B stays drained');

done_testing();
