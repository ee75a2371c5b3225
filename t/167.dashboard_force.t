# The dashboard says why a down node is refused and how to force it (issue
# 9, defect 19), in headless Chromium: "Maintenance on node" for a down
# node shows node_unhealthy and asks; declined, nothing changes; accepted,
# it designates the node with "force": true.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbBrowser;

NbBrowser::require_browser();

my ($B, $A) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = ($A->id, $B->id);
# B first: the dashboard's node list selects it by default
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$B, $A]));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'both nodes up');
$B->stop;
ok($ng->wait_health($bid, 'down', 5), 'B is down');

my $url = 'http://127.0.0.1:' . $ng->port . '/_nb_maint/';
my $b = NbBrowser::Driver->new;

sub sign_in {
    my ($tab, %o) = @_;
    my $r = $b->cmd(cmd => 'open', tab => $tab, url => $url, %o);
    ok($r->{ok}, "$tab: dashboard opened") or diag $r->{error};
    $b->cmd(cmd => 'fill', tab => $tab, selector => '#token', value => ADMIN_TOKEN);
    $b->cmd(cmd => 'click', tab => $tab, selector => '#loginform button');
    $r = $b->cmd(cmd => 'wait', tab => $tab, re => 'down', timeout_ms => 20000);
    ok($r->{ok}, "$tab: signed in, B shown down") or diag explain $r;
}

# declined: the reason is shown, nothing changes
sign_in('no');
$b->cmd(cmd => 'click', tab => 'no', selector => 'button[data-act="maintenance"]');
my $r = $b->cmd(cmd => 'wait', tab => 'no', re => 'node_unhealthy', timeout_ms => 20000);
ok($r->{ok}, 'declined: the page shows node_unhealthy') or diag explain $r;
like($r->{text} // '', qr/force/i, '... and says how to force');
$r = $b->cmd(cmd => 'text', tab => 'no');
is(scalar @{ $r->{dialogs} || [] }, 1, '... after asking once');
like(($r->{dialogs} || [])->[0] // '', qr/\Q$bid\E.*down/s, '... naming the node and why');
is($ng->status->{mode}, 'normal', '... and the mode is unchanged');
$b->cmd(cmd => 'shot', tab => 'no', path => NbBrowser::shot_dir() . '/167-node-unhealthy.png');

# accepted: forced
sign_in('yes', dialogs => 'accept');
$b->cmd(cmd => 'click', tab => 'yes', selector => 'button[data-act="maintenance"]');
ok(NbTest::wait_until(sub { ($ng->status->{mode} // '') eq 'maintenance' }, 15),
   'accepted: maintenance') or diag explain $b->cmd(cmd => 'text', tab => 'yes');
is($ng->status->{node}, $bid, '... on the down node, forced');
my ($ev) = grep { ($_->{to} // '') eq 'maintenance' } $ng->events(0);
ok($ev, '... one event');

$b->quit;
is($ng->crashes, 0, 'no worker crashed');
done_testing;
