# Issue 9 defect 11: health checks are on by default for every nb_maint
# upstream (SPEC section 4: interval=2s ... status=200 body=~^ok\s*$), so a
# restore waits for the nodes; "nb_maint_check off" is the explicit way out
# and then restore says that nothing gates it.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;

# ---- no nb_maint_check line: checks run with the defaults ---------------------------------------
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B], check => undef));
ok($ng->conf_text !~ /nb_maint_check/, 'config has no nb_maint_check line');
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes are checked anyway: up');
ok($ng->status->{restore}{checked}, 'status: restore.checked true');

my $r = $ng->admin(POST => 'mode', { mode => 'upgrade' });
is($r->{status}, 200, 'upgrade');
$B->set_state('commanding', command => 'upgrade');
sleep 0.2;
$r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore');
is($r->{json}{mode}, 'restoring', '... restoring: the checks gate it');
ok(!$r->{json}{restore}{note}, '... no note');
sleep 1.5;
is($ng->status->{mode}, 'restoring', 'still restoring 1.5 s later (the default check runs every 2 s)');
$B->set_state('running');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 12), 'normal once both nodes passed rise=2 default checks');

$A->stop;
$ng->stop;

# ---- nb_maint_check off --------------------------------------------------------------------------
my $ng2 = NbTest::Nginx->new(http => cluster_http(nodes => [$B], check => 'off'));
$ng2->start;
sleep 0.5;
is($ng2->node($bid)->{health}, 'unknown', 'check off: health unknown');
my $st = $ng2->status;
ok(!$st->{restore}{checked}, 'status: restore.checked false');
like($st->{restore}{note} // '', qr/nb_maint_check off.*nothing gates/, 'status: restore.note says nothing gates a restore');
is($ng2->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade');
$r = $ng2->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore');
like($r->{json}{restore}{note} // '', qr/nothing gates a restore/, "restore's answer says nothing gates it");
ok($ng2->wait_status(sub { $_[0]{mode} eq 'normal' }, 3), '... and normal at once');

# ---- config errors ----------------------------------------------------------------------------------
my $bad = NbTest::Nginx->new(http => cluster_http(nodes => [$B], check => 'off', upstream_extra => "    nb_maint_check off;\n"));
my ($rc, $out) = $bad->test_config;
isnt($rc, 0, 'nb_maint_check twice: nginx -t fails');
like($out, qr/nb_maint_check.*duplicate/, '... is duplicate');

done_testing;
