# Health "commanding" (SPEC section 3): a node answering NocoBase's busy
# envelope (APP_COMMANDING, APP_PREPARING, APP_INITIALIZING) is alive and
# busy, not down.  The designated node keeps its traffic while commanding
# (in-app maintenance: pm.enable); any other commanding node gets no public
# traffic and is not healthy for restore.  APP_ERROR and garbage are down.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my @M = ($A, $B, $C);
my ($aid, $bid, $cid) = map { $_->id } @M;

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid, $cid), 'all up');

# ---- a commanding node in normal mode: no public traffic ------------------------------------------
$C->set_state('commanding', command => 'pm.enable');
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C (503 APP_COMMANDING pm.enable) is commanding');
my $n = $ng->node($cid);
is($n->{app}{code}, 'APP_COMMANDING', 'nodes/C: app.code');
is($n->{app}{command}{name}, 'pm.enable', 'nodes/C: app.command.name');
like($n->{app}{since} // '', qr/^\d{4}-\d\d-\d\dT/, 'nodes/C: app.since');
is($n->{fails}, 0, 'nodes/C: fails 0 (busy is not failing)');
$C->reset;
my $h = $ng->hit(30, '/api/x');
is($h->{status}{200}, 30, '30 requests 200');
is($C->stats->{requests}, 0, '... none to the commanding C');
my $m = $ng->admin(GET => 'metrics')->{content};
like($m, qr/^nb_maint_node_commanding\{upstream="app",node="\Q$cid\E"\} 1$/m, 'metrics: commanding 1 for C');
like($m, qr/^nb_maint_node_commanding\{upstream="app",node="\Q$aid\E"\} 0$/m, '... 0 for A');
ok(scalar($ng->log_grep(qr/node \Q$cid\E is commanding: APP_COMMANDING pm\.enable/)), 'error.log: commanding with code and command');

# ---- maintenance on C: the designated node keeps its traffic while commanding ----------------------
my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $cid });
is($r->{status}, 200, 'maintenance on C (commanding)') or diag $r->{content};
$C->reset;
$h = $ng->hit(20, '/api/y');
# NocoBase's gateway answers for itself: its 503 envelope while commanding
is($h->{status}{503}, 20, 'maintenance, C commanding: 20 of 20 answered (NocoBase\'s 503)') or diag explain $h;
is($h->{node}{$cid}, 20, '... all by C');
is($C->stats->{requests}, 20, '... C got them');

# NocoBase's plugin enable: a few seconds of APP_COMMANDING, then running
$C->set_state('running');
ok(defined $ng->wait_health($cid, 'up', 3), 'C running again: up');

# really down: the designated node gives the no-healthy-node answer
$C->set_state('error');
ok(defined $ng->wait_health($cid, 'down', 3), 'C answers APP_ERROR: down');
$r = $ng->get('/api/z');
is($r->{status}, 503, 'maintenance, C down: 503');
is($r->{headers}{'x-nb-maint'}, 'no_healthy_node', '... no_healthy_node');
$C->set_state('running');
ok(defined $ng->wait_health($cid, 'up', 3), 'C up');

# ---- restore waits for a commanding node ---------------------------------------------------------
$B->set_state('commanding', command => 'upgrade');
ok(defined $ng->wait_health($bid, 'commanding', 3), 'B commanding (upgrade)');
$r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore');
is($r->{json}{mode}, 'restoring', '... restoring');
sleep 1;
my $st = $ng->status;
is($st->{mode}, 'restoring', 'still restoring 1 s later: B is commanding');
ok((grep { $_ eq $bid } @{ $st->{restore}{pending} }), '... B pending');
$B->set_state('running');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 5), 'B running: normal');

# ---- garbage is down, not commanding -------------------------------------------------------------
$A->set_state('fail');
ok(defined $ng->wait_health($aid, 'down', 3), 'A answers 500 "oops": down');
ok(!$ng->node($aid)->{app}, '... no app object');
$A->set_state('running');

is(scalar $ng->crashes, 0, 'no worker crashed');
done_testing;
