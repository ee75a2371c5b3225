# Node health does not stay frozen when nothing checks the node any more
# (issue 9 defect 6): after a reload that turns the checks off, a node once
# marked down goes back to "unknown" and gets traffic again (as with round
# robin), instead of staying down forever.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = ($A->id, $B->id);

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B]));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'both up');
$B->set_state('fail');
ok(defined $ng->wait_health($bid, 'down', 5), 'B fails its checks: down');
my $h = $ng->hit(10, '/api/x');
is($h->{node}{$bid} // 0, 0, 'B down: no request to B');

# the same upstream without checks: "nb_maint_check off" where checks are on
# by default, else no nb_maint_check line
my $off = cluster_http(nodes => [$A, $B], check => 'off');
$ng->write_conf(http => $off);
my ($rc) = $ng->test_config;
$ng->write_conf(http => cluster_http(nodes => [$A, $B], check => undef)) if $rc != 0;
$ng->reload;

ok(defined $ng->wait_health($bid, 'unknown', 5), 'reload without checks: B is "unknown", not frozen "down"')
    or diag explain $ng->node($bid);
is($ng->node($aid)->{health}, 'unknown', 'A "unknown" too (nothing checks it)');
ok(scalar($ng->log_grep(qr/node \Q$bid\E is not checked any more/)), 'error.log says why');
$h = $ng->hit(20, '/api/y');
ok(($h->{node}{$bid} // 0) > 0, 'B gets requests again (round robin, nothing marks it down)');

# checks back on: B (still failing) is found down again
$ng->write_conf(http => cluster_http(nodes => [$A, $B]));
$ng->reload;
ok(defined $ng->wait_health($bid, 'down', 5), 'checks back: B down again');
ok(defined $ng->wait_health($aid, 'up', 5), '... A up');

# a node "commanding" (NocoBase busy) when the checks go: not kept busy
$B->set_state('commanding', command => 'upgrade');
ok(defined $ng->wait_health($bid, 'commanding', 5), 'B commanding')
    or diag explain $ng->node($bid);
$ng->write_conf(http => $off);
$ng->write_conf(http => cluster_http(nodes => [$A, $B], check => undef)) if $rc != 0;
$ng->reload;
ok(defined $ng->wait_health($bid, 'unknown', 5), 'reload without checks: commanding B is "unknown"');
ok(!$ng->node($bid)->{app}, '... with no stale NocoBase code');
$h = $ng->hit(20, '/api/z');
ok(($h->{node}{$bid} // 0) > 0, 'B gets requests again');
is(scalar($ng->crashes), 0, 'no crash');
done_testing;
