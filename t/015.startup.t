# Initial cluster start: A runs, B and C are still starting (health 503).
# Once A is healthy all traffic goes to A; B joins after passing rise checks
# when it is running; C stays out.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $A = NbTest::Mock->new;
my $B = NbTest::Mock->new(starting => 30);
my $C = NbTest::Mock->new(starting => 30);
my @M = ($A, $B, $C);
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;
my $RISE = 2;

is($B->stats->{health}, 'starting', 'mock B is starting');

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M));
$ng->start;

# from the first check on: A up, B and C busy starting (NocoBase's
# APP_PREPARING / APP_INITIALIZING / APP_COMMANDING start): commanding
ok(defined $ng->wait_health($aid, 'up', 5), 'A is up');
ok($ng->wait_all_health('commanding', 2, $bid, $cid), 'B and C (health 503, NocoBase starting) are commanding')
    or diag explain $ng->status_nodes;
my $sn = $ng->status_nodes;
is($sn->{$aid}{health}, 'up', 'status: A up');
is($sn->{$bid}{health}, 'commanding', 'status: B commanding');
like($sn->{$bid}{app}{code} // '', qr/^APP_(PREPARING|INITIALIZING|COMMANDING)$/, 'status: B app.code');
is($sn->{$cid}{health}, 'commanding', 'status: C commanding');
ok(scalar($ng->log_grep(qr/nb_maint: node \Q$bid\E is commanding/)), 'error.log: node B is commanding');

$_->reset for @M;
my $before = NbTest::mock_counts(@M);
my $h = $ng->hit(60, '/api/first');
my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{200}, 60, '60 of 60 requests 200') or diag explain $h->{status};
is($h->{node}{$aid} // 0, 60, 'all answered by A (X-Node)');
is($d->{$aid}, 60, 'A stats: 60');
is($d->{$bid}, 0, 'B stats: 0');
is($d->{$cid}, 0, 'C stats: 0');

# B finished starting
my $hc0 = $B->set_state('running')->{health_checks};
my $hc_up;
my $up = NbTest::wait_until(sub {
    my $n = $ng->node_res($bid);
    return 0 unless ($n->{json}{health} // '') eq 'up';
    $hc_up = $B->stats->{health_checks};
    1;
}, 5, 0.01);
ok($up, 'B is up once it runs');
cmp_ok(($hc_up // 0) - $hc0, '>=', $RISE, "... after at least rise=$RISE passed checks");
is($ng->node($cid)->{health}, 'commanding', 'C still commanding');

$_->reset for @M;
$before = NbTest::mock_counts(@M);
$h = $ng->hit(60, '/api/second');
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{200}, 60, '60 of 60 requests 200');
cmp_ok($h->{node}{$aid} // 0, '>=', 15, 'A gets a share');
cmp_ok($h->{node}{$bid} // 0, '>=', 15, 'B gets a share');
is($d->{$aid} + $d->{$bid}, 60, 'A and B stats: all 60');
is($d->{$cid}, 0, 'C stats: 0 (still starting)');
ok(!$h->{node}{$cid}, 'C answered nothing');
my $cn = $ng->node($cid);
is($cn->{fails}, 0, 'C: a busy node is not failing (fails 0)');
like($cn->{app}{code} // '', qr/^APP_(PREPARING|INITIALIZING|COMMANDING)$/, 'C: app.code from NocoBase\'s start sequence');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
