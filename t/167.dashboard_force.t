# The dashboard says why a down node is refused and how to force it (issue
# 9, defect 19), in headless Chromium: "Enter maintenance" for a down node
# shows node_unhealthy and asks a second time, naming the node and why;
# declined, nothing changes; accepted, it designates the node with
# "force": true.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbBrowser;
use NbDash;

NbBrowser::require_browser();

my ($B, $A) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = ($A->id, $B->id);
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$B, $A]));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'both nodes up');
$B->stop;
ok($ng->wait_health($bid, 'down', 5), 'B is down');

my $d = NbDash->new($ng);

sub start_maintenance {
    my ($tab) = @_;
    my $r = $d->sign_in($tab);
    ok($r->{ok}, "$tab: signed in") or diag explain $r;
    $r = $d->wait_text($tab, 'down');
    ok($r->{ok}, "$tab: B shown down") or diag explain $r;
    $d->cmd(cmd => 'select', tab => $tab, selector => '#pf-node', value => $bid);
    $d->act($tab, '#do-maintenance', qr/\Q$bid\E/, 1, "$tab: maintenance on B");
    my $q = $d->dialog($tab);
    ok($q->{open}, "$tab: asked again after node_unhealthy");
    like($q->{text} // '', qr/\Q$bid\E.*down.*force/is, "$tab: ... naming the node, why, and force");
    return $q;
}

# declined: the reason is shown, nothing changes
start_maintenance('no');
$d->answer('no', 0);
my $r = $d->wait_text('no', 'node_unhealthy');
ok($r->{ok}, 'declined: the page shows node_unhealthy') or diag explain $r;
like($d->text_of('no', '#err') // '', qr/force/i, '... and says how to force');
is($ng->status->{mode}, 'normal', '... and the mode is unchanged');
$d->shot('no', '167-node-unhealthy.png', 0);

# accepted: forced
start_maintenance('yes');
$d->answer('yes', 1);
ok(NbTest::wait_until(sub { ($ng->status->{mode} // '') eq 'maintenance' }, 15),
   'accepted: maintenance') or diag explain $d->cmd(cmd => 'text', tab => 'yes');
is($ng->status->{node}, $bid, '... on the down node, forced');
my ($ev) = grep { ($_->{to} // '') eq 'maintenance' } $ng->events(0);
ok($ev, '... one event');

$d->quit;
is($ng->crashes, 0, 'no worker crashed');
done_testing;
