# Fault: the owner worker (health checks, restore) stops answering, is
# killed, and nginx reloads, all during a restore (issue 9 defect 13).
#  - an owner whose pid still exists but does nothing (SIGSTOP: like a pid
#    reused by another process) is replaced: liveness is a heartbeat, not
#    "kill(pid, 0) works";
#  - one owner at a time (health checks at the usual rate, not doubled);
#  - the restore completes correctly: not while a node fails, and only after
#    that node passed "rise" checks that started after it recovered.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $RISE = 3;
my $IVL  = 0.2;
my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my ($aid, $bid, $cid) = map { $_->id } $A, $B, $C;

my $ng = NbTest::Nginx->new(
    workers => 3,
    http    => cluster_http(nodes => [$A, $B, $C],
                            check => "interval=200ms timeout=300ms rise=$RISE fall=2"));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid, $cid), 'all three nodes up');

my $OWNER_RE = qr/nb_maint: worker (\d+) runs the health checks/;
sub owners { map { /$OWNER_RE/ ? $1 : () } $ng->log_grep($OWNER_RE) }
sub is_worker { my ($pid) = @_; scalar grep { $_ == $pid } $ng->worker_pids }
sub live_owner {
    my @o = owners();
    return @o && is_worker($o[-1]) ? $o[-1] : 0;
}

is($ng->admin(POST => 'mode', { mode => 'maintenance', node => $aid })->{status}, 200,
   'maintenance on A');
$C->set_state('fail');
ok(defined $ng->wait_health($cid, 'down', 5), 'C fails: down');

my $r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'restore requested');
my $st = $ng->status;
is($st->{mode}, 'restoring', 'restoring');

# ---- an owner that exists but does nothing ---------------------------------
my $o1 = NbTest::wait_until(\&live_owner, 3);
ok($o1, "owner $o1");
my $n_claims = scalar owners();
kill 'STOP', $o1;
my $t0 = time;
my $o2 = NbTest::wait_until(sub {
    my @o = owners();
    @o > $n_claims && $o[-1] != $o1 ? $o[-1] : 0;
}, 8);
ok($o2, sprintf('a stopped owner (pid alive, no heartbeat) is replaced (%.1f s)', time - $t0))
    or diag $ng->error_log_tail(10);
kill 'KILL', $o1;
kill 'CONT', $o1;
ok(NbTest::wait_until(sub { !NbTest::Nginx::_alive($o1) }, 3), 'stopped owner killed');

# ---- kill the owner and reload at once ----------------------------------------
ok(NbTest::wait_until(sub { $ng->worker_pids >= 3 }, 5), 'master respawned the worker');
my $o3 = NbTest::wait_until(\&live_owner, 5);
ok($o3, "current owner $o3");
kill 'KILL', $o3;
$ng->reload;
my $o4 = NbTest::wait_until(sub { my $o = live_owner(); $o && $o != $o3 ? $o : 0 }, 6);
ok($o4, "a worker of the new generation owns the checks ($o4)") or diag $ng->error_log_tail(15);

$st = $ng->status;
is($st->{mode}, 'restoring', 'after kill + reload: still restoring (C fails)');
ok(scalar(grep { $_ eq $cid } @{ $st->{restore}{pending} || [] }), '... C pending');

# one owner at a time: B is checked once per interval, not twice
my $h0 = $B->stats->{health_checks};
sleep 2;
my $checks = $B->stats->{health_checks} - $h0;
my $expect = 2 / $IVL;
ok($checks >= $expect * 0.5 && $checks <= $expect * 1.4,
   "B checked $checks times in 2 s (one owner: ~$expect)");
is($ng->status->{mode}, 'restoring', 'still restoring while C fails');

# generations never go back: no older generation claims after a newer one
my @gens = map { /generation (\d+)/ ? $1 : () } $ng->log_grep($OWNER_RE);
my $back = grep { $gens[$_] < $gens[$_ - 1] } 1 .. $#gens;
is($back, 0, 'owner claims: generations never go back (' . join(',', @gens) . ')');

# ---- C recovers: restore completes after RISE passes ------------------------
my $c0 = $C->stats->{health_checks};
$C->set_state('running');
$st = $ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 8);
ok($st, 'restore completed: normal') or diag explain $ng->status;
my $c_checks = $C->stats->{health_checks} - $c0;
ok($c_checks >= $RISE, "... after C passed $c_checks >= $RISE checks");

my @ev = grep { ($_->{action} // '') eq 'restored' } $ng->events;
is(scalar(@ev), 1, 'one "restored" event');

my @crash = $ng->crashes;
is(scalar(grep { !/\b(?:$o1|$o3)\b/ } @crash), 0, 'no crash but the killed workers')
    or diag join "\n", @crash;
done_testing;
