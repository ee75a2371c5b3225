# Maintenance or upgrade may not designate a node that is down (issue 9,
# defect 19): 409 node_unhealthy unless "force": true; unknown and up
# nodes are allowed.  The CLI says why and how to force (--force), and
# maintenance-run stops before it stops any healthy node.
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
ok($ng->wait_all_health('up', 5, $aid, $bid), 'both nodes up');

$B->stop;
ok($ng->wait_health($bid, 'down', 5), 'B is down');
my $before = state_fields($ng->status);

for my $mode (qw(maintenance upgrade)) {
    my $r = $ng->admin(POST => 'mode', { mode => $mode, node => $bid, reason => 'r' });
    is($r->{status}, 409, "$mode on a down node: 409");
    is($r->{json}{error}{code}, 'node_unhealthy', '... node_unhealthy');
    like($r->{json}{error}{message} // '', qr/force/, '... the message says how to force');
    is_deeply(state_fields($ng->status), $before, '... nothing changed');
}

my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid, force => 'yes' });
is($r->{status}, 400, '"force" must be a boolean');

$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid, force => JSON::PP::true });
is($r->{status}, 200, 'maintenance on the down node with force: 200') or diag $r->{content};
is($r->{json}{node}, $bid, '... designated');

$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $aid });
is($r->{status}, 200, 'maintenance on an up node: 200') or diag $r->{content};

$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid });
is($r->{status}, 409, 'upgrade designating the down node: 409');
$r = $ng->admin(POST => 'mode', { mode => 'upgrade' });
is($r->{status}, 200, 'upgrade without a node: 200') or diag $r->{content};
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid, force => JSON::PP::true });
is($r->{status}, 200, 'upgrade on the down node with force: 200') or diag $r->{content};
$r = $ng->admin(POST => 'mode', { mode => 'normal', force => JSON::PP::true });
is($r->{status}, 200, 'normal with force: restored at once') or diag $r->{content};
is($r->{json}{mode}, 'normal', '... normal');

# ---- unknown health: allowed (a node no check has seen yet) ------------------------------
{
    my $C = NbTest::Mock->new;
    $C->set_state('hang');    # the first check waits (30 s timeout)
    my $ng2 = NbTest::Nginx->new(http => cluster_http(nodes => [$C], check => 'interval=60s timeout=30s'));
    $ng2->start;
    is($ng2->node($C->id)->{health}, 'unknown', 'a node not checked yet: unknown');
    my $r2 = $ng2->admin(POST => 'mode', { mode => 'maintenance', node => $C->id });
    is($r2->{status}, 200, 'maintenance on an unknown node: 200') or diag $r2->{content};
}

# ---- the CLI ----------------------------------------------------------------------------
my $CLI = NbTest::repo_root() . '/scripts/nb-maint';
local $ENV{NB_MAINT_URL} = 'http://127.0.0.1:' . $ng->port . '/_nb_maint/';
local $ENV{NB_MAINT_TOKEN} = ADMIN_TOKEN;
my $out = $ng->prefix . '/cli.out';

my ($rc, $txt) = NbTest::run_cmd($out, $^X, $CLI, 'maintenance', '--node', $bid);
isnt($rc, 0, 'nb-maint maintenance --node <down>: fails');
like($txt, qr/node_unhealthy/, '... says node_unhealthy');
like($txt, qr/--force/, '... and how to force it');

($rc, $txt) = NbTest::run_cmd($out, $^X, $CLI, 'upgrade', '--node', $bid);
isnt($rc, 0, 'nb-maint upgrade --node <down>: fails');
like($txt, qr/--force/, '... says --force');

($rc, $txt) = NbTest::run_cmd($out, $^X, $CLI, 'maintenance', '--node', $bid, '--force');
is($rc, 0, 'nb-maint maintenance --node <down> --force: ok') or diag $txt;
is($ng->status->{node}, $bid, '... designated');
$ng->admin(POST => 'restore', { force => JSON::PP::true });

# maintenance-run on a down node stops before stopping anything
my $marker = $ng->prefix . '/stopped';
($rc, $txt) = NbTest::run_cmd($out, $^X, $CLI, 'maintenance-run', '--node', $bid,
                              '--stop-cmd', "touch $marker", '--start-cmd', 'true',
                              '--task-cmd', 'true', '--timeout', '5');
isnt($rc, 0, 'maintenance-run on a down node: fails');
like($txt, qr/--force/, '... says how to force');
ok(!-e $marker, '... and no node was stopped');
is($ng->status->{mode}, 'normal', '... mode still normal');

($rc, $txt) = NbTest::run_cmd($out, $^X, $CLI, 'help', 'maintenance-run');
like($txt, qr/--force/, 'maintenance-run documents --force');

# ---- the dashboard offers to force -----------------------------------------------------
my $page = $ng->admin(GET => '')->{content} // '';
like($page, qr/node_unhealthy/, 'the dashboard handles node_unhealthy');
like($page, qr/force: true|\.force = true/, '... and can force it');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
