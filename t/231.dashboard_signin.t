# The dashboard in headless Chromium (issue 13): a wrong token gets a clear
# error on the sign-in form (and no dashboard), the right one the mode
# banner and the node cards; from 360 to 1920 px nothing overflows
# horizontally (screenshots at 390 and 1280 px in build/browser/); a
# NORMAL page does not show the reason of the upgrade it left; signing out
# forgets the token.
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
my @ids = map { $_->id } @M;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M));
$ng->start;
ok($ng->wait_all_health('up', 5, @ids), 'three nodes up');

# a long unbroken reason must wrap, not widen the page
my $reason = 'Upgrading-to-2.2.15:https://status.example.com/incidents/'
           . '0123456789abcdefghijklmnopqrstuvwxyz0123456789';
is($ng->admin(POST => 'mode', { mode => 'upgrade', reason => $reason })->{status},
   200, 'upgrade mode with a long reason');

my $d = NbDash->new($ng);

# wrong token: an error on the form, no dashboard
my $r = $d->sign_in('a', token => 'not-the-token', bad => 1);
ok($r->{ok}, 'wrong token: the sign-in form shows an error') or diag explain $r;
like($d->text_of('a', '#login-error') // '', qr/wrong token.*401/i, '... saying the token is wrong');
ok($d->js('a', q{document.getElementById('main').classList.contains('hidden')}),
   '... and the dashboard stays hidden');
ok(!$d->js('a', q{sessionStorage.getItem('nb_maint_token')}), '... nor is the token kept');

# the right one, typed into the same form
$d->cmd(cmd => 'fill', tab => 'a', selector => '#token', value => ADMIN_TOKEN);
$d->cmd(cmd => 'click', tab => 'a', selector => '#loginform button');
$r = $d->wait_js('a', q{document.getElementById('b-mode').textContent === 'upgrade'});
ok($r->{ok}, 'right token: the banner shows UPGRADE') or diag explain $r;
ok($d->js('a', q{document.getElementById('login').classList.contains('hidden')}),
   '... the form is gone');
$r = $d->wait_js('a', q{document.querySelectorAll('#nodes .node').length === 3});
ok($r->{ok}, '... three node cards');
like($d->text_of('a', '#banner') // '', qr/503 page/, '... the banner names the impact');
like($d->text_of('a', '#banner') // '', qr/status\.example\.com/, '... and the reason');
like($d->text_of('a', '#banner') // '', qr/ops\@127\.0\.0\.1/, '... and who');
$r = $d->wait_js('a', q{document.getElementById('ev-rows').children.length >= 1});
ok($r->{ok}, '... and the event');

# widths: no horizontal overflow anywhere from 360 to 1920 px
for my $w (360, 390, 768, 1280, 1920) {
    $d->cmd(cmd => 'viewport', tab => 'a', width => $w, height => 900);
    sleep 0.3;
    my $o = $d->overflow('a');
    is($o, 0, "${w} px: no horizontal overflow")
        or diag "scrollWidth - innerWidth = " . ($o // 'undef');
    if ($w == 390 || $w == 1280) {
        ok($d->shot('a', "231-upgrade-${w}px.png") && -s NbBrowser::shot_dir() . "/231-upgrade-${w}px.png",
           "${w} px: screenshot saved");
    }
}
$d->cmd(cmd => 'viewport', tab => 'a', width => 390, height => 844);
ok($d->js('a', q{(function(){ var ok = true; document.querySelectorAll('.drain-btn').forEach(function (b) {
    var r = b.getBoundingClientRect(); if (r.right > window.innerWidth || r.left < 0) ok = false; });
    return ok; })()}), '390 px: every drain button is on screen');

# back to normal: the old upgrade reason is not shown
is($ng->admin(POST => 'restore', { force => JSON::PP::true() })->{status}, 200, 'forced normal');
$r = $d->wait_js('a', q{document.getElementById('b-mode').textContent === 'normal'});
ok($r->{ok}, 'the page shows NORMAL without a reload') or diag explain $r;
unlike($d->text_of('a', '#banner') // '', qr/status\.example\.com/, '... and not the old reason');
is($d->cmd(cmd => 'text', tab => 'a')->{navigations}, 1, '... in the page first loaded');
ok($d->shot('a', '231-normal-390px.png'), 'screenshot of NORMAL at 390 px');

# a reload keeps the token of this tab; signing out forgets it
$d->cmd(cmd => 'goto', tab => 'a', url => $d->url);
$r = $d->wait_js('a', q{document.getElementById('b-mode').textContent === 'normal'});
ok($r->{ok}, 'reloaded: still signed in (token kept in this tab)');
$d->cmd(cmd => 'click', tab => 'a', selector => '#signout');
$r = $d->wait_js('a', q{!document.getElementById('login').classList.contains('hidden')});
ok($r->{ok}, 'signed out: the form again');
ok(!$d->js('a', q{sessionStorage.getItem('nb_maint_token')}), '... the token forgotten');

$d->quit;
is($ng->crashes, 0, 'no worker crashed');
done_testing;
