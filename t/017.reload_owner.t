# The owner worker: nginx -s reload keeps health checks and state going (a
# node stopped after the reload is still detected); killing the owner with
# SIGKILL makes another worker take over and checks continue.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my ($ng, @M) = NbTest::cluster3();
my ($A, $B, $C) = @M;
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;

my $OWNER_RE = qr/nb_maint: worker (\d+) runs the health checks/;
sub owners { map { /$OWNER_RE/ ? $1 : () } $ng->log_grep($OWNER_RE) }
sub is_worker { my ($pid) = @_; scalar grep { $_ == $pid } $ng->worker_pids }

my ($owner) = NbTest::wait_until(sub { my @o = owners(); @o ? $o[-1] : 0 }, 3);
ok($owner && is_worker($owner), "owner worker $owner is one of the workers") or diag $ng->error_log_tail(10);
is(scalar(owners()), 1, 'exactly one worker claimed the checks');

# the mock of $id sees at least two more health checks (checks are running)
sub checks_running {
    my ($id) = @_;
    my ($m) = grep { $_->id eq $id } @M;
    my $h0 = $m->stats->{health_checks};
    return NbTest::wait_until(sub { $m->stats->{health_checks} >= $h0 + 2 }, 2);
}

# ---- state and health across a reload -------------------------------------------------------
is($ng->admin(POST => "nodes/$cid/drain")->{status}, 200, 'drain C');
my $want = state_fields($ng->status);
my @old_workers = $ng->worker_pids;
$ng->reload;
my @new_workers = $ng->worker_pids;
ok(!grep({ my $o = $_; grep { $_ == $o } @new_workers } @old_workers), 'reload replaced the workers');
is_deeply(state_fields($ng->status), $want, 'reload: state kept');
is($ng->node($cid)->{drain}, JSON::PP::true, 'reload: C still drained');
my $sn = $ng->status_nodes;
is($sn->{$aid}{health}, 'up', 'reload: A health still up');
is($sn->{$bid}{health}, 'up', 'reload: B health still up');

my ($owner2) = NbTest::wait_until(sub {
    my @o = owners();
    @o && is_worker($o[-1]) ? $o[-1] : 0;
}, 3);
ok($owner2, "a new worker runs the checks after the reload ($owner2)") or diag $ng->error_log_tail(10);
ok($owner2 && $owner2 != $owner, '... not the old owner');
ok(checks_running($aid), 'checks keep going after the reload (A is checked)');

my $h = $ng->hit(30, '/api/reloaded');
is(($h->{node}{$aid} // 0) + ($h->{node}{$bid} // 0), 30, 'after reload: A and B answer all 30 (C drained)');

my $downs0 = () = $ng->log_grep(qr/nb_maint: node \Q$bid\E is down/);
$B->stop;
ok(defined $ng->wait_health($bid, 'down', 2), 'B stopped after the reload is detected down');
my $downs1 = () = $ng->log_grep(qr/nb_maint: node \Q$bid\E is down/);
is($downs1, $downs0 + 1, 'error.log: "node B is down" logged once more');
$h = $ng->hit(30, '/api/no-b');
is($h->{status}{200}, 30, 'B down after reload: requests 200');
is($h->{node}{$aid} // 0, 30, '... all to A (B down, C drained)');
$B->start;
ok(defined $ng->wait_health($bid, 'up', 3), 'restarted B comes back up');
is($ng->admin(POST => "nodes/$cid/undrain")->{status}, 200, 'undrain C');

# ---- SIGKILL the owner ---------------------------------------------------------------------------
my ($victim) = grep { is_worker($_) } reverse owners();
ok($victim, "current owner $victim is alive");
my $n_owner_lines = scalar owners();
kill 'KILL', $victim;
ok(NbTest::wait_until(sub { !NbTest::Nginx::_alive($victim) }, 3), 'owner killed');

my ($owner3) = NbTest::wait_until(sub {
    my @o = owners();
    @o > $n_owner_lines && $o[-1] != $victim && is_worker($o[-1]) ? $o[-1] : 0;
}, 4);
ok($owner3, 'another worker logs that it runs the health checks') or diag $ng->error_log_tail(15);
ok(NbTest::wait_until(sub { $ng->worker_pids >= 2 }, 3), 'master respawned the killed worker');

ok(checks_running($bid), 'checks continue after the takeover (B is checked)');
$A->set_state('fail');
ok(defined $ng->wait_health($aid, 'down', 2), 'A failing after the takeover is detected down');
$h = $ng->hit(30, '/api/no-a');
is($h->{status}{200}, 30, 'requests 200');
ok(!$h->{node}{$aid}, '... none to A');
$A->set_state('running');
ok(defined $ng->wait_health($aid, 'up', 3), 'A passes again: up');

# only the killed worker died on a signal
my @crash = $ng->crashes;
is(scalar(grep { !/\b$victim\b/ } @crash), 0, 'no other process exited on a signal')
    or diag join "\n", @crash;
done_testing;
