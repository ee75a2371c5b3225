# The end of a restore on the file store (one gateway; issue 21 item 3,
# SPEC section 10a, doc/redis-store.md "The restore gate"; t/149 is the
# Redis variant).  A gateway that checks nodes waits until they passed
# "rise" checks started after the restore; one that checks no node (admin
# only, or "nb_maint_check off") answers POST restore with normal at once,
# and never ends a restore another configuration left behind ("restoring"
# in the state, then a reload with "nb_maint_check off"): force does.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $CHECK = 'interval=200ms timeout=300ms rise=3 fall=1';
my $n = NbTest::Mock->new;
my $id = $n->id;
my $ng = NbTest::Nginx->new(workers => 1, http => cluster_http(nodes => [$n], check => $CHECK));
$ng->start;
ok($ng->wait_all_health('up', 5, $id), 'node up');
ok($ng->status->{restore}{checked}, 'checks nodes: restore.checked true');

# ---- a checking gateway waits for rise ------------------------------------------------------
is($ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'r1' })->{status}, 200, 'upgrade');
$n->stop;
ok($ng->wait_all_health('down', 5, $id), 'node down');
my $r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore');
is($r->{json}{mode}, 'restoring', '... restoring, not normal at once');
ok(!$r->{json}{restore}{note}, '... no "nothing gates" note');
sleep 1.5;
my $st = $ng->status;
is($st->{mode}, 'restoring', 'still restoring 1.5 s later: the node has not passed');
is_deeply($st->{restore}{pending}, [$id], '... the node pending');
$n->start;
my $t0 = time;
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 8), 'normal once the node passed');
cmp_ok(time - $t0, '>=', 0.35, sprintf('... after rise=3 checks 200 ms apart (%.2f s)', time - $t0));
my @ev = grep { ($_->{action} // '') eq 'restored' } $ng->events(0);
is(scalar @ev, 1, 'one "restored" event');
like($ev[0]{actor} // '', qr/nb_maint/, '... by nb_maint');

# ---- restoring left behind, then a reload with "nb_maint_check off" --------------------------
is($ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'r2' })->{status}, 200, 'upgrade again');
$n->stop;
ok($ng->wait_all_health('down', 5, $id), 'node down');
is($ng->admin(POST => 'restore', {})->{json}{mode}, 'restoring', 'restoring');
$ng->write_conf(http => cluster_http(nodes => [$n], check => 'off'));
$ng->reload;
$n->start;
$st = $ng->status;
ok(!$st->{restore}{checked}, 'after the reload: restore.checked false');
like($st->{restore}{note} // '', qr/nothing gates a restore/, '... the note says nothing gates it');
sleep 1.5;
is($ng->status->{mode}, 'restoring', 'the gateway checks no node: it never ends the restore by itself');
$r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore without force while restoring: 200');
is($r->{json}{mode}, 'restoring', '... still restoring (only force ends what was left behind)');
$r = $ng->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{status}, 200, 'POST restore force');
is($r->{json}{mode}, 'normal', '... normal');

# ---- with checks off, a new restore is normal at once ----------------------------------------
is($ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'r3' })->{status}, 200, 'upgrade');
$r = $ng->admin(POST => 'restore', {});
is($r->{json}{mode}, 'normal', 'check off: POST restore -> normal at once');
like($r->{json}{restore}{note} // '', qr/nothing gates a restore/, '... with the note');
is(scalar $ng->crashes, 0, 'no crash');
$ng->stop;

# ---- an admin-only gateway (no upstream) on the file store -----------------------------------
my $adm = NbTest::Nginx->new(workers => 1, http => std_http());
$adm->start;
ok(!$adm->status->{restore}{checked}, 'admin only: restore.checked false');
is($adm->admin(POST => 'mode', { mode => 'upgrade', reason => 'r4' })->{status}, 200, 'upgrade');
$r = $adm->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore');
is($r->{json}{mode}, 'normal', '... normal at once');
like($r->{json}{restore}{note} // '', qr/nothing gates a restore/, '... with the note');
is(scalar $adm->crashes, 0, 'no crash');

done_testing;
