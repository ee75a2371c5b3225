# Fault test (issue 9 defect 3): kill -9 of the worker holding the file
# store's write (its write is stuck on a slow disk, here a FIFO nobody
# reads).  Before: the holder held the cross-process lock across the file
# I/O and nobody ever took it back, so every other writer slept in the
# lock for good.  Now: the other workers keep serving while the write is
# stuck, take the write slot back once its holder is dead, and keep
# writing; the version the dead writer may have stored is never reused.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbFault;
use POSIX ();

plan skip_all => 'needs /proc/<pid>/task/*/wchan' unless -r "/proc/$$/task/$$/wchan";

my ($ng, $v0, $fifo) = slow_disk_gateway();

my $bg = bg_admin($ng, POST => 'mode', { mode => 'upgrade', reason => 'stuck' });
my $holder = stuck_worker($ng, 10);
ok($holder, "a worker's write is stuck on the slow disk (pid " . ($holder // '?') . ')')
    or BAIL_OUT('no stuck write');

# every worker keeps answering, the stuck one included
my ($slow, %seen) = (0);
for (1 .. 30) {
    my ($st, $secs, $pid) = timed_get($ng, '/', 3);
    $slow++ if $st != 200 || $secs > 1;
    $seen{$pid}++;
}
is($slow, 0, 'all 30 requests answered 200 within 1 s while the write is stuck');
ok($seen{$holder}, "the stuck writer's own worker answered too (event loop free)");

# kill -9 the holder; the master starts a new worker
kill 'KILL', $holder;
ok(NbTest::wait_until(sub { !NbTest::Nginx::_alive($holder) }, 5), 'holder is gone');
unlink $fifo;
my ($st) = bg_wait($bg, 5);
ok(!defined $st || $st == 0 || $st >= 500, 'the killed write was never acknowledged');

# the slot comes back by itself (any worker's tick), its version skipped
ok(NbTest::wait_until(sub { $ng->status->{version} >= $v0 + 1 }, 5),
   'the dead write\'s slot is taken back without any new write');
is($ng->status->{mode}, 'normal', 'its change was not applied');

my $t0 = Time::HiRes::time();
my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001' });
my $secs = Time::HiRes::time() - $t0;
is($r->{status}, 200, 'next write accepted') or diag $r->{content};
cmp_ok($secs, '<', 3, 'promptly (the write slot was taken back)');
cmp_ok($r->{json}{version} // 0, '>=', $v0 + 2,
       'the dead writer\'s version is not given out again');
like($ng->error_log, qr/died while writing version/, 'error.log says what happened');

NbTest::wait_until(sub { $ng->worker_pids >= 2 }, 10);
my %modes;
for (1 .. 20) { $modes{ $ng->status->{mode} }++ }
is_deeply(\%modes, { maintenance => 20 }, 'every worker (old and respawned) sees it');

$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'again' });
is($r->{status}, 200, 'and the one after') or diag $r->{content};
my $v = $r->{json}{version};

$ng->stop;
$ng->start;
my $after = $ng->status;
is($after->{version}, $v, 'stored: same version after a restart');
is($after->{mode}, 'upgrade', 'same mode after a restart');
is(scalar(grep { !/signal 9\b/ } $ng->crashes), 0, 'no crash but the kill');

done_testing;
