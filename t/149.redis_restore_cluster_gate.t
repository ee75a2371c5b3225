# Issue 21 item 3 (SPEC section 10a): only a gateway that checks nodes ends
# a restore, and only once every checking gateway's nodes have passed (the
# cluster-wide gate on the Redis store).  Real gateways on one real Redis:
#   A  checks node 1 (rise=2)
#   B  the same upstream with "nb_maint_check off"
#   C  admin only (no upstream)
#   D  checks node 2
# Before the fix B and C, with no pending node, wrote "normal" within
# ~0.5 s of the restore, and A did so as soon as its own node passed.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Sys::Hostname ();
use Time::HiRes qw(time sleep);

my $CHECK = 'interval=300ms timeout=300ms rise=2 fall=1';
my $redis = NbTest::Redis->new;
my ($n1, $n2) = map { NbTest::Mock->new } 1 .. 2;
my $prefix = unique_prefix('cg');
my $store = $redis->url(prefix => $prefix);

my $A = NbTest::Nginx->new(http => cluster_http(nodes => [$n1], store => $store, check => $CHECK));
my $B = NbTest::Nginx->new(http => cluster_http(nodes => [$n1], store => $store, check => 'off'));
my $C = NbTest::Nginx->new(http => std_http(store => $store));
my $D = NbTest::Nginx->new(http => cluster_http(nodes => [$n2], store => $store, check => $CHECK));
my @all = ($A, $B, $C, $D);
$_->start for @all;
ok($_->wait_store_ok(1, 10), 'store ok') for @all;
ok($A->wait_all_health('up', 10, $n1->id), 'A: node 1 up');
ok($D->wait_all_health('up', 10, $n2->id), 'D: node 2 up');
sub gw_id { Sys::Hostname::hostname() . ':' . $_[0]->master_pid }

ok($A->status->{restore}{checked}, 'A checks nodes');
ok(!$B->status->{restore}{checked}, 'B checks none (nb_maint_check off)');
ok(!$C->status->{restore}{checked}, 'C checks none (no upstream)');
# the gateways' words are in Redis (refreshed about every second)
ok(NbTest::wait_until(sub {
    my @m = $redis->cli('SMEMBERS', "$prefix:checkers");
    (grep { $_ eq gw_id($A) } @m) && (grep { $_ eq gw_id($D) } @m) && @m == 2;
}, 5), 'redis: A and D registered as checking gateways, B and C not');

sub all_modes { join ' ', map { $_->status->{mode} } @all }

# ---- round 1: node 2 fails; a restore through the admin-only gateway C ----------------
is($A->admin(POST => 'mode', { mode => 'upgrade', reason => 'r1' })->{status}, 200, 'upgrade');
ok($_->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), 'every gateway in upgrade') for @all;
$n2->stop;
ok($D->wait_all_health('down', 5, $n2->id), 'D: node 2 down');
my $r = $C->admin(POST => 'restore', {});
is($r->{status}, 200, 'C: POST restore');
is($r->{json}{mode}, 'restoring', 'C: restoring (checking gateways share the store), not normal at once');
sleep 2.5;
is(all_modes(), 'restoring restoring restoring restoring',
   'still restoring on every gateway 2.5 s later: node 2 (D) has not passed');
my $st = $A->status;
is_deeply($st->{restore}{pending}, [], 'A: no node of its own pending');
is_deeply($st->{restore}{gateways_awaited}, [gw_id($D)], 'A: status names D as awaited');
is_deeply($B->status->{restore}{gateways_awaited}, [gw_id($D)], 'B: the same');
is_deeply($D->status->{restore}{pending}, [$n2->id], 'D: node 2 pending');
unlike($_->error_log, qr/restored by nb_maint/, 'no gateway wrote "normal"') for @all;

$n2->start;
ok($A->wait_status(sub { $_[0]{mode} eq 'normal' }, 8), 'normal once node 2 passed');
my @ev = grep { ($_->{action} // '') eq 'restored' } $A->events(0);
is(scalar @ev, 1, 'one "restored" event');
like($ev[0]{actor} // '', qr/nb_maint/, '... by nb_maint');

# ---- round 2: B (checks off) sees every node of its own pass at once ----------------------
is($B->admin(POST => 'mode', { mode => 'upgrade', reason => 'r2' })->{status}, 200, 'upgrade through B');
ok($A->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), 'A follows');
$n1->stop;
ok($A->wait_all_health('down', 5, $n1->id), 'A: node 1 down');
$r = $B->admin(POST => 'restore', {});
is($r->{json}{mode}, 'restoring', 'B: POST restore -> restoring');
sleep 2;
is(all_modes(), 'restoring restoring restoring restoring',
   'B never ends it (it checks no node), D waits for A');
is_deeply($D->status->{restore}{gateways_awaited}, [gw_id($A)], 'D: A awaited');
$n1->start;
ok($B->wait_status(sub { $_[0]{mode} eq 'normal' }, 8), 'normal once node 1 passed on A');

# ---- round 3: a checking gateway dies mid-restore: the others stop waiting for it ---------
is($A->admin(POST => 'mode', { mode => 'upgrade', reason => 'r3' })->{status}, 200, 'upgrade');
ok($D->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), 'D follows');
$n2->stop;
ok($D->wait_all_health('down', 5, $n2->id), 'D: node 2 down');
$r = $A->admin(POST => 'restore', {});
is($r->{json}{mode}, 'restoring', 'restoring');
sleep 1.5;
is($A->status->{mode}, 'restoring', 'A waits for D');
my $t0 = time;
kill 'KILL', $D->master_pid, $D->worker_pids;
ok($A->wait_status(sub { $_[0]{mode} eq 'normal' }, 10), 'A ends the restore once D is gone');
my $took = time - $t0;
cmp_ok($took, '<', 7.5, sprintf 'within its word\'s ttl (5 s) and a tick (%.1f s)', $took);
delete $D->{pid};

# ---- force still ends a restore anywhere --------------------------------------------------
is($A->admin(POST => 'mode', { mode => 'upgrade', reason => 'r4' })->{status}, 200, 'upgrade');
$n1->stop;
ok($A->wait_all_health('down', 5, $n1->id), 'A: node 1 down');
ok($C->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), 'C follows');
is($C->admin(POST => 'restore', {})->{json}{mode}, 'restoring', 'C: restoring');
$r = $C->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{json}{mode}, 'normal', 'C: force -> normal');
$n1->start;

is(scalar(map { $_->crashes } $A, $B, $C), 0, 'no crash');
$_->stop for $A, $B, $C;
done_testing;
