# Every change through the dashboard in headless Chromium (issue 13), each
# behind a confirmation that names its impact; cancelled, nothing changes:
# maintenance on a node and restore; the upgrade procedure walked through
# with the current step highlighted (upgrade with "no node yet", the node
# designated later, every node stopped, backup/update ticked, the first
# node started and verified, the others started, restore); drain and
# undrain; force normal.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbBrowser;
use NbDash;

NbBrowser::require_browser();

my @M = map { NbTest::Mock->new } 1 .. 3;
my ($A, $B, $C) = @M;
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M));
$ng->start;
ok($ng->wait_all_health('up', 5, @ids), 'three nodes up');

my $d = NbDash->new($ng);
my $r = $d->sign_in('a');
ok($r->{ok}, 'signed in') or diag explain $r;

sub mode_is {
    my ($mode, $node, $t) = @_;
    my $ok = NbTest::wait_until(sub { my $s = $ng->status;
        $s->{mode} eq $mode && (!defined $node || ($s->{node} // '-') eq $node) }, $t // 10);
    my $s = $ng->status;
    return ok($ok, "gateway: mode $mode" . (defined $node ? " on $node" : ''))
        || diag explain { mode => $s->{mode}, node => $s->{node} };
}
sub page_mode {
    my ($mode) = @_;
    my $r = $d->wait_js('a', "document.getElementById('b-mode').textContent === '$mode'");
    ok($r->{ok}, "page: banner $mode") or diag explain $r;
}
sub current_step {
    my ($re, $name) = @_;
    my $r = $d->wait_js('a', "(function(){ var c = document.querySelector('#steps li.current');"
                           . " return c && /$re/.test(c.textContent); })()", 15);
    ok($r->{ok}, "current step: $name")
        or diag 'current: ' . ($d->text_of('a', '#steps li.current') // 'none');
}
sub click_current { my ($label) = @_;
    my $r = $d->cmd(cmd => 'click', tab => 'a', selector => "#steps li.current button:has-text(\"$label\")");
    ok($r->{ok}, "clicked \"$label\" in the current step") or diag $r->{error};
}

# ---- maintenance on B, cancelled then confirmed; restore
$d->cmd(cmd => 'select', tab => 'a', selector => '#pf-node', value => $bid);
$d->cmd(cmd => 'fill', tab => 'a', selector => '#pf-reason', value => 'plugin update');
current_step('Enter maintenance', 'enter maintenance');
$d->act('a', '#do-maintenance', qr/every request.*\Q$bid\E.*get no new requests/is, 0, 'maintenance, cancelled');
sleep 0.5;
is($ng->status->{mode}, 'normal', 'cancelled: still normal');
$d->act('a', '#do-maintenance', qr/\Q$aid\E.*\Q$cid\E/s, 1, 'maintenance, confirmed');
mode_is('maintenance', $bid);
is($ng->status->{reason}, 'plugin update', '... with the reason typed');
page_mode('maintenance');
current_step('Stop the other nodes', 'stop the other nodes (in-flight done)');
$d->act('a', '#act-restore', qr/traffic stays on node \Q$bid\E/i, 1, 'restore from maintenance');
mode_is('normal', undef, 15);
page_mode('normal');
unlike($d->text_of('a', '#banner') // '', qr/plugin update/, 'NORMAL: no old reason');

# ---- upgrade: the node is an explicit choice, "no node yet" included
$d->cmd(cmd => 'click', tab => 'a', selector => '[data-proc="upgrade"]');
$d->cmd(cmd => 'select', tab => 'a', selector => '#pf-node', value => '');
ok(!$d->js('a', q{!!document.getElementById('do-upgrade')}), 'upgrade: no button until a node (or none) is chosen');
like($d->text_of('a', '#steps li.current') // '', qr/no node yet/, '... the step says to choose');
$d->cmd(cmd => 'select', tab => 'a', selector => '#pf-node', value => '-');
$d->cmd(cmd => 'fill', tab => 'a', selector => '#pf-reason', value => 'to 2.0');
$d->act('a', '#do-upgrade', qr/All public traffic will get the 503 page.*No node is designated/s, 1,
        'upgrade, no node yet');
mode_is('upgrade', '-');
page_mode('upgrade');
like($d->text_of('a', '#banner') // '', qr/no node designated/, 'banner: no node designated yet');
current_step('Stop every node', 'stop every node');
$d->shot('a', '232-upgrade-step-stop.png');

# designate A (offered as soon as it is chosen)
$d->cmd(cmd => 'select', tab => 'a', selector => '#pf-node', value => $aid);
$r = $d->wait_js('a', q{!!document.getElementById('do-designate')});
ok($r->{ok}, 'a designate button for the chosen node');
$d->act('a', '#do-designate', qr/Bypass requests go to node \Q$aid\E only.*503 page/s, 1, 'designate A');
mode_is('upgrade', $aid);
is($ng->status->{reason}, 'to 2.0', '... the reason kept');

# the operator stops every node: the page moves on by itself
$_->stop for @M;
current_step('Back up', 'back up (every node down)');
click_current('Backup done');
current_step('Update NocoBase', 'update');
click_current('Update done');
current_step("Start \Q$aid\E", 'start the first node');
$A->start;
current_step('Verify', 'verify (A healthy)');
$d->act('a', '#steps li.current button:has-text("bypass cookie")', qr/only this browser/i, 1, 'get a bypass cookie');
$r = $d->wait_js('a', q{/Active|Set in this browser/.test(document.getElementById('bypass-state').textContent)});
ok($r->{ok}, 'the bypass panel shows the cookie') or diag $d->text_of('a', '#bypass-state');
is($d->js('a', q{fetch('/some/page').then(function (r) { return r.status; })}), 200,
   'this browser now passes the 503 page (to A)');
click_current('It works');
current_step('Start the other nodes', 'start the others');
$_->start for $B, $C;
current_step('Restore', 'restore');
$d->shot('a', '232-upgrade-step-restore.png');
$d->act('a', '#do-restore', qr/503 page until every node has passed its health checks/, 1, 'restore from upgrade');
mode_is('normal', undef, 20);
page_mode('normal');

# ---- drain / undrain C from its card
my $sel = "#nodes .node[data-id=\"$cid\"] .drain-btn";
$d->act('a', $sel, qr/\Q$cid\E gets no new requests/, 0, 'drain C, cancelled');
sleep 0.5;
ok(!$ng->node($cid)->{drain}, 'cancelled: C not drained');
$d->act('a', $sel, qr/\Q$cid\E gets no new requests/, 1, 'drain C');
ok(NbTest::wait_until(sub { $ng->node($cid)->{drain} }, 10), 'C drained');
$r = $d->wait_js('a', "/Undrain/.test(document.querySelector('$sel'.replace(/\\\\/g,'')).textContent)");
$r = $d->wait_text('a', 'drained');
ok($r->{ok}, 'the card shows drained');
$d->act('a', $sel, qr/\Q$cid\E gets new requests again/, 1, 'undrain C');
ok(NbTest::wait_until(sub { !$ng->node($cid)->{drain} }, 10), 'C undrained');

# ---- force normal from maintenance
$ng->admin(POST => 'mode', { mode => 'maintenance', node => $aid });
page_mode('maintenance');
$d->act('a', '#act-force', qr/without waiting for health checks/, 1, 'force normal');
mode_is('normal');

# ---- the bypass cookie cleared from the panel (GET/DELETE bypass)
SKIP: {
    skip 'GET bypass / DELETE bypass not served by this gateway', 6
        unless NbDash::has_get_bypass($ng);
    $ng->admin(POST => 'mode', { mode => 'upgrade', node => $aid });
    page_mode('upgrade');
    $r = $d->wait_js('a', q{/Active in this browser/.test(document.getElementById('bypass-state').textContent)});
    ok($r->{ok}, 'the panel shows the cookie of this browser (GET bypass)')
        or diag $d->text_of('a', '#bypass-state');
    is($d->js('a', q{fetch('/some/page').then(function (r) { return r.status; })}), 200,
       '... which passes the 503 page');
    $d->act('a', '#bp-clear', qr/public client again/i, 1, 'clear the bypass cookie');
    $r = $d->wait_js('a', q{/Not set/.test(document.getElementById('bypass-state').textContent)});
    ok($r->{ok}, 'the panel shows it cleared') or diag $d->text_of('a', '#bypass-state');
    is($d->js('a', q{fetch('/some/page').then(function (r) { return r.status; })}), 503,
       'this browser gets the 503 page again');
    $ng->admin(POST => 'restore', { force => JSON::PP::true() });
    page_mode('normal');
}

my %acts;
$acts{"$_->{action}"}++ for $ng->events(0);
ok($acts{mode} >= 3 && $acts{restore} >= 2 && $acts{drain} && $acts{undrain} && $acts{force_restore},
   'every change is in the audit log') or diag explain \%acts;
$d->quit;
is($ng->crashes, 0, 'no worker crashed');
done_testing;
