# Issue 12: after a failover the new primary is the authority; a gateway's
# own unacknowledged writes (503 store_unreplicated) must not overwrite
# acknowledged ones.  Two gateways A and B (min_replicas=1) write twice
# while the replica is stopped (both 503 store_unreplicated: on the
# primary only); A and B are then cut off (SIGSTOP) while the primary is
# killed and the replica promoted; a third gateway C writes on the new
# primary (200).  When A and B come back they must take what Redis keeps
# (C's change, in state and history), not re-publish their higher version
# over it, and all three gateways must show the same history.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbSentinel;
use Time::HiRes qw(time sleep);

plan skip_all => 'redis-sentinel not installed' unless NbSentinel::available();

my $sen = NbSentinel->new;
my ($primary, $replica) = $sen->servers;
my $prefix = unique_prefix('una');
my $store = $sen->store_url(prefix => $prefix, query => 'min_replicas=1&wait_ms=300');
my @mocks = map { NbTest::Mock->new } 1 .. 2;
my ($A, $B, $C) = map { NbTest::Nginx->new(http => cluster_http(nodes => \@mocks, store => $store)) } 1 .. 3;
$_->start for $A, $B;
ok($_->wait_store_ok(1, 10), 'store ok') for $A, $B;

# a per-node flag in the state too (it must survive
# the comparison with Redis' copy unchanged: no re-sync when nothing differs)
is($A->admin(POST => 'nodes/' . $mocks[0]->id . '/drain')->{status}, 200, 'drain a node');

my $r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'acked-1' });
is($r->{status}, 200, 'a write with the replica up: 200');
my $v1 = $r->{json}{version};

# the replica stops and loses its link: writes reach the primary only
# (t/172 runs this with one: the gateways then hold the same version as the
# new primary, with other content)
our $UNACKED //= 2;
kill 'STOP', $replica->pid;
$primary->cli('CLIENT', 'KILL', 'TYPE', 'replica');
for my $i (1 .. $UNACKED) {
    $r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => "unacked-$i" });
    is($r->{status}, 503, "unacknowledged write $i: 503");
    is(($r->{json}{error} || {})->{code}, 'store_unreplicated', '... store_unreplicated');
}
ok($B->wait_status(sub { $_[0]{version} == $v1 + $UNACKED }, 3), 'B saw them too (pub/sub)');

# A and B cut off; the primary dies; the replica (without them) is promoted
my @stopped = map { ($_->master_pid, $_->worker_pids) } $A, $B;
kill 'STOP', @stopped;
$sen->kill_primary;
kill 'CONT', $replica->pid;
my $new = $sen->wait_promoted($primary, 20);
ok($new && $new == $replica, 'the replica is the primary now');
ok($sen->rejoin($primary, 20), 'the old primary is back as a replica (empty)');
is($new->cli('GET', "$prefix:version"), $v1, 'the new primary has the acknowledged version only');
# the rejoined replica may still be (re)syncing, e.g. after the sentinels'
# own REPLICAOF: C's write below must find a replica that acknowledges
ok(NbTest::wait_until(sub {
    # one connection: WAIT counts the replicas that have this client's write
    ($new->cli_in("SET nbtest:probe 1\nWAIT 1 200\n") // '') =~ /^OK\s+1\s*$/;
}, 20, 0.1), 'the rejoined replica acknowledges writes');

# C writes on the new primary: acknowledged
$C->start;
ok($C->wait_store_ok(1, 10), 'C: store ok');
$r = $C->admin(POST => 'mode', { mode => 'upgrade', reason => 'acked-C' });
is($r->{status}, 200, 'C: a write on the new primary answers 200') or diag $r->{content};
my $vc = $r->{json}{version};

# A and B come back
kill 'CONT', @stopped;
for my $g ($A, $B) { ok($g->wait_store_ok(1, 10), 'store ok again') }
# until they agree with Redis (a loaded machine: up to 15 s), then check
sub hist {
    join ',', map { "$_->{version}:" . ($_->{reason} // '') }
              grep { ($_->{action} // '') ne 'store_failover' } @_;
}
NbTest::wait_until(sub {
    my $want = hist(map { json_decode($_) } $new->cli('LRANGE', "$prefix:events", 0, -1));
    !grep { hist($_->events(0)) ne $want } $A, $B, $C;
}, 15, 0.2);
sleep 1.5;    # and a periodic re-read more

my $st = json_decode($new->cli('GET', "$prefix:state"));
is($st->{reason}, 'acked-C', 'redis keeps the acknowledged change (not re-published over)');
my @redis_ev = map { json_decode($_) } $new->cli('LRANGE', "$prefix:events", 0, -1);
my %rv = map { (($_->{reason} // '') => $_->{version}) } @redis_ev;
is($rv{'acked-C'}, $vc, "redis' history has C's change at version $vc");
for my $g ([A => $A], [B => $B], [C => $C]) {
    my ($name, $ng) = @$g;
    my $s = $ng->status;
    is($s->{reason}, $st->{reason}, "$name serves what redis keeps");
    is($s->{version}, $new->cli('GET', "$prefix:version"), "$name: redis' version");
    my @ev = grep { ($_->{action} // '') ne 'store_failover' } $ng->events(0);
    my @v = map { $_->{version} } @ev;
    is(scalar(grep { $v[$_] <= $v[$_ - 1] } 1 .. $#v), 0, "$name: versions increase strictly");
    is(join(',', map { "$_->{version}:" . ($_->{reason} // '') } @ev),
       join(',', map { "$_->{version}:" . ($_->{reason} // '') }
                 grep { ($_->{action} // '') ne 'store_failover' } @redis_ev),
       "$name: the same history as redis");
}

# once converged nothing moves: no re-sync of an equal state
my $settled = $new->cli('GET', "$prefix:version");
sleep 2.5;
is($new->cli('GET', "$prefix:version"), $settled, 'no further re-sync once converged');
ok(scalar(grep { ($_->{action} // '') eq 'store_resync' } @redis_ev) <= 2, 'at most one re-sync per gateway');
is($A->node($mocks[0]->id)->{drain} ? 1 : 0, 1, "A: the node's drain flag kept");

# and the next write continues from there, everywhere
$r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'after' });
ok($r->{status} == 200 || ($r->{status} == 503 && $r->{json}{error}{code} eq 'store_unreplicated'),
   "a write through A: $r->{status}");
ok($C->wait_status(sub { $_[0]{reason} eq 'after' }, 2), 'C follows it');

is(scalar($A->crashes) + scalar($B->crashes) + scalar($C->crashes), 0, 'no worker crashed');
done_testing;
