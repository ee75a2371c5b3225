# drain --wait through HAProxy (issue 13): requests through HAProxy never
# pass nginx, so nginx's `active` stays 0 while HAProxy still runs them, and
# HAProxy learns of a drain only at its next agent check.  With
# --haproxy-socket (repeatable) the CLI reads HAProxy's own counts (show
# stat: status, scur, qcur) and waits until every HAProxy has seen the drain
# and has nothing running or queued on the node; without a socket it waits
# one agent interval (--agent-interval) and says so.  A socket that does not
# answer is exit 4 before anything changes; a timeout is exit 5.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

my $haproxy = NbTest::HAProxy::bin();
my ($hrc) = NbTest::run_cmd('/dev/null', $haproxy, '-v');
plan skip_all => "haproxy not installed ($haproxy)" if $hrc != 0;

my $CLI = NbTest::repo_root() . '/scripts/nb-maint';
my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;     # C: behind nginx only
my ($aid, $bid, $cid) = map { $_->id } $A, $B, $C;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B, $C]), agent_opts(upstream => 'app'));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid, $cid), 'gateway: A, B, C up');
my $AP = $ng->port_of('agent');
local $ENV{NB_MAINT_URL} = $ng->url('/_nb_maint/');
local $ENV{NB_MAINT_TOKEN} = NbTest::ADMIN_TOKEN;

# two HAProxy in front of A and B: hp1 checks the agent every 200 ms, hp2
# every 2.5 s; "?to=a" pins a request to A
sub haproxy {
    my ($inter) = @_;
    my $hp = NbTest::HAProxy->new;
    my $servers = join '', map {
        my ($n, $m) = @$_;
        "    server s$n 127.0.0.1:" . $m->port . " check inter 200ms rise 1 fall 2 agent-check agent-port $AP"
      . " agent-inter $inter agent-send \"" . $m->id . "\\n\"\n"
    } ['a', $A], ['b', $B];
    $hp->write_cfg(NbTest::HAProxy->http_cfg(timeout => '20s', backend => <<"EOT"));
    use-server sa if { urlp(to) a }
$servers
EOT
    $hp->start;
    ok($hp->wait_servers('be', sub { 2 == grep { ($_->{status} // '') eq 'UP' } values %{ $_[0] } }, 8),
       "haproxy (agent-inter $inter): sa, sb UP") or diag explain $hp->last_servers;
    return $hp;
}
my $hp1 = haproxy('200ms');
my $hp2 = haproxy('2500ms');
my $S1 = $hp1->stats_path;
my $S2 = $hp2->stats_path;

sub cli {
    my (@a) = @_;
    my $t0 = time;
    my ($rc, $out) = NbTest::run_cmd($hp1->dir . '/cli.out', $^X, $CLI, @a);
    return ($rc, $out, time - $t0);
}

# a slow request to A through $hp, in a child: the file gets "status end-time"
sub slow {
    my ($hp, $ms) = @_;
    my $file = $hp->dir . "/slow.$ms." . int(rand 1e6);
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $r = HTTP::Tiny->new(timeout => 20, keep_alive => 0)->get($hp->url("/api/slow?to=a&sleep_ms=$ms"));
        open my $fh, '>', $file or POSIX::_exit(1);
        printf $fh "%s %.6f %s\n", $r->{status}, time, $r->{headers}{'x-node'} // '-';
        close $fh;
        POSIX::_exit(0);
    }
    ok(NbTest::wait_until(sub { ($hp->servers('be')->{sa}{scur} // 0) == 1 }, 3),
       "slow request ($ms ms) running on A through haproxy (scur 1)");
    return ($pid, $file);
}
sub slow_done {
    my ($pid, $file) = @_;
    waitpid $pid, 0;
    open my $fh, '<', $file or return ();
    return split ' ', scalar <$fh>;
}
sub undrain { is($ng->admin(POST => "nodes/$_[0]/undrain", {})->{status}, 200, "undrain $_[0]") }
sub both_up {
    for my $hp ($hp1, $hp2) {
        NbTest::wait_until(sub { 2 == grep { ($_->{status} // '') eq 'UP' } values %{ $hp->servers('be') } }, 6);
    }
}

# ---- control: counting nginx only misses HAProxy's request --------------------------------------
my ($pid, $file) = slow($hp1, 6000);
is($ng->node($aid)->{active} // 0, 0, "nginx's active for A is 0: the request does not pass nginx");
my ($rc, $out, $took) = cli('drain', $aid, '--wait', '--agent-interval', '0');
is($rc, 0, 'control: drain A --wait --agent-interval 0 (nginx only): exit 0');
is($hp1->servers('be')->{sa}{scur}, 1,
   sprintf 'control: ... returned (after %.2f s) while HAProxy still runs a request on A (scur 1)', $took);
my ($st) = slow_done($pid, $file);
is($st, 200, 'the slow request finished with 200');
undrain($aid);
both_up();

# ---- --haproxy-socket: waits for HAProxy's request -------------------------------------------
($pid, $file) = slow($hp1, 4000);
my $t0 = time;
($rc, $out, $took) = cli('drain', $aid, '--wait', '--timeout', '15', '--haproxy-socket', $S1);
my $cli_end = time;
my ($st2, $end2, $node2) = slow_done($pid, $file);
is($rc, 0, 'drain A --wait --haproxy-socket: exit 0') or diag $out;
cmp_ok($took, '>=', 1, sprintf 'drain A --wait --haproxy-socket: waited for the request in HAProxy (%.2f s)', $took);
cmp_ok($cli_end, '>=', ($end2 // 9e9) - 0.05, '... returned only after it finished');
# (under load the CLI may start late: then HAProxy's count is shown before its
# agent check has seen the drain, or only that)
like($out, qr/HAProxy \Q$S1\E: be\/sa(?:: 1 in flight, 0 queued| is UP \(its agent check)/,
     '... showing what HAProxy still does on A') or diag $out;
is($st2, 200, 'the slow request finished with 200 (drain lets it run)');
is($node2, $aid, '... on A');
like($hp1->servers('be')->{sa}{status}, qr/DRAIN/, 'haproxy: sa DRAIN');
undrain($aid);
both_up();

# ---- two sockets: waits until the slower HAProxy has seen the drain --------------------------
# (hp2 checks the agent every 2.5 s: until then it would send A new requests)
($rc, $out, $took) = cli('drain', $aid, '--wait', '--timeout', '15', '--haproxy-socket', $S1,
                         '--haproxy-socket', $S2, '--interval', '0.1');
is($rc, 0, 'drain A --wait with two sockets: exit 0') or diag $out;
like($out, qr/HAProxy \Q$S2\E: be\/sa is UP \(its agent check has not seen the change yet\)/,
     '... said that the second HAProxy had not seen the drain yet') or diag $out;
like($hp2->servers('be')->{sa}{status}, qr/DRAIN/, '... and returned once it had (sa DRAIN there too)');
undrain($aid);
both_up();

# ---- no socket: one agent interval, said -------------------------------------------------------
($rc, $out, $took) = cli('drain', $bid, '--wait');
is($rc, 0, 'drain B --wait (no socket): exit 0') or diag $out;
cmp_ok($took, '>=', 2, sprintf '... waited at least the default agent interval, 2 s (%.2f s)', $took);
like($out, qr/no --haproxy-socket: waiting one HAProxy agent interval \(2s, --agent-interval\)/, '... and said so')
    or diag $out;
undrain($bid);
($rc, $out, $took) = cli('drain', $bid, '--wait', '--agent-interval', '0.6');
is($rc, 0, 'drain B --wait --agent-interval 0.6: exit 0');
cmp_ok($took, '>=', 0.6, sprintf '... waited at least 0.6 s (%.2f s)', $took);
like($out, qr/agent interval \(0\.6s, --agent-interval\)/, '... saying 0.6 s');
undrain($bid);
both_up();

# ---- a node HAProxy does not know: said, not waited for ----------------------------------------
($rc, $out, $took) = cli('drain', $cid, '--wait', '--haproxy-socket', $S1);
is($rc, 0, 'drain C (not behind HAProxy) --wait --haproxy-socket: exit 0');
like($out, qr/HAProxy \Q$S1\E has no server at \Q$cid\E: not waited for there/, '... says HAProxy has no such server');
undrain($cid);

# ---- timeout: exit 5, naming HAProxy's count ----------------------------------------------------
($pid, $file) = slow($hp1, 8000);
($rc, $out, $took) = cli('drain', $aid, '--wait', '--timeout', '1', '--haproxy-socket', $S1);
is($rc, 5, 'drain A --wait --timeout 1 with an 8 s request in HAProxy: exit 5 (timed out)') or diag $out;
like($out, qr/timed out after 1s: HAProxy \Q$S1\E: be\/sa: 1 in flight/, '... naming what HAProxy still runs') or diag $out;
slow_done($pid, $file);
undrain($aid);

# ---- a socket that does not answer: exit 4, nothing changed -------------------------------------
my $v = $ng->status->{version};
($rc, $out) = cli('drain', $aid, '--wait', '--haproxy-socket', $hp1->dir . '/nosuch.sock');
is($rc, 4, 'drain --haproxy-socket NOSUCH: exit 4 (unavailable)');
like($out, qr/cannot connect to the HAProxy stats socket .*nosuch\.sock/, '... naming the socket') or diag $out;
is($ng->status->{version}, $v, '... before anything changed (version unchanged)');
ok(!$ng->node($aid)->{drain}, '... A not drained');

# ---- rolling-restart passes the sockets to its waits -------------------------------------------
($pid, $file) = slow($hp1, 4000);
my $rlog = $hp1->dir . '/restarts';
($rc, $out, $took) = cli('rolling-restart', '--nodes', $aid, '--restart-cmd', "echo {node} >> $rlog",
                         '--haproxy-socket', $S1, '--haproxy-socket', $S2, '--timeout', '15', '--interval', '0.1');
my ($st3, $end3) = slow_done($pid, $file);
is($rc, 0, 'rolling-restart --nodes A with two sockets: exit 0') or diag $out;
is($st3, 200, "HAProxy's slow request on A finished with 200");
my @rl = (-s $rlog) ? do { open my $fh, '<', $rlog; <$fh> } : ();
is(scalar @rl, 1, 'the restart command ran once');
my $restart_at = (stat $rlog)[9];
cmp_ok($restart_at, '>=', int($end3 // 9e9), '... not before the request in HAProxy had finished');
like($out, qr/be\/sa: 1 in flight/, '... the wait step showed it') or diag $out;

is(scalar $ng->crashes, 0, 'gateway: no worker exited on a signal');
done_testing;
