# The dashboard during an upgrade, as the README shows it (issue 13): node A
# designated and running NocoBase's upgrade command (APP_COMMANDING), the
# others stopped, traffic counted before; no horizontal overflow from 360
# to 1920 px, the commanding code on A's card and the current step
# highlighted; screenshots in build/browser/.  `make screenshots` runs this
# with NB_DOC_SHOTS=doc to regenerate doc/dashboard.png (1280 px) and
# doc/dashboard-390.png.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbBrowser;
use NbDash;
use File::Copy qw(copy);

NbBrowser::require_browser();

my @M = map { NbTest::Mock->new } 1 .. 3;
my ($A, $B, $C) = @M;
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M));
$ng->start;
ok($ng->wait_all_health('up', 5, @ids), 'three nodes up');

# some traffic first: requests counted on every card
my $ok = 0;
$ok += ($ng->get("/api/app:getInfo?i=$_")->{status} == 200) for 1 .. 30;
is($ok, 30, '30 requests through the gateway');
$ng->admin(POST => "nodes/$cid/drain", {});
$ng->admin(POST => "nodes/$cid/undrain", {});

my $d = NbDash->new($ng);
my $r = $d->sign_in('a');
ok($r->{ok}, 'signed in') or diag explain $r;
$d->wait_js('a', q{document.querySelectorAll('#nodes .node').length === 3});

# the upgrade as the operator drives it from the page
is($ng->admin(POST => 'mode', { mode => 'upgrade', node => $aid,
                                reason => 'Upgrading NocoBase to 1.9.0, back at 22:30 UTC',
                                retry_after => 600 })->{status}, 200, 'upgrade mode, A designated');
$_->stop for @M;
ok($ng->wait_all_health('down', 10, @ids), 'every node stopped');
for my $label ('Backup done', 'Update done') {
    $d->wait_js('a', "(function(){ var b = document.querySelector('#steps li.current button');"
                   . " return b && b.textContent === '$label'; })()", 15);
    $d->cmd(cmd => 'click', tab => 'a', selector => "#steps li.current button:has-text(\"$label\")");
}
$A->start;
$A->set_state('commanding', command => 'upgrade');
ok($ng->wait_health($aid, 'commanding', 10), 'A started: it runs the upgrade command');
$r = $d->wait_js('a', q{/Wait until .* is healthy/.test(document.querySelector('#steps li.current').textContent)}, 15);
ok($r->{ok}, 'current step: wait until A is healthy')
    or diag $d->text_of('a', '#steps li.current');
like($d->text_of('a', "#nodes .node[data-id=\"$aid\"]") // '', qr/APP_COMMANDING upgrade/,
     "A's card: NocoBase's code and command");
like($d->text_of('a', '#steps li.current') // '', qr/APP_COMMANDING upgrade/, '... and in the step');
like($d->text_of('a', "#nodes .node[data-id=\"$aid\"]") // '', qr/requests\s*\n?\s*\d+/,
     "A's card: the requests counter");
$d->js('a', 'window.scrollTo(0, 0)');

my %shot;
for my $w (360, 390, 1280, 1920) {
    $d->cmd(cmd => 'viewport', tab => 'a', width => $w, height => $w < 800 ? 844 : 900);
    sleep 0.5;
    is($d->overflow('a'), 0, "${w} px: no horizontal overflow");
    $shot{$w} = $d->shot('a', "234-dashboard-${w}px.png");
    ok($shot{$w} && -s $shot{$w}, "${w} px: screenshot $shot{$w}");
}

if (my $dir = $ENV{NB_DOC_SHOTS}) {
    ok(copy($shot{1280}, "$dir/dashboard.png"), "copied to $dir/dashboard.png");
    ok(copy($shot{390}, "$dir/dashboard-390.png"), "copied to $dir/dashboard-390.png");
}

$d->quit;
is($ng->crashes, 0, 'no worker crashed');
done_testing;
