# The 503 page as a person sees it: upgrade mode rendered by headless
# Chromium (Debian's, driven by playwright-core) on a 390 px phone screen
# and a desktop one, in several languages: no template placeholder left,
# no horizontal scrolling, the reason shown; screenshots in build/browser/.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbBrowser;

NbBrowser::require_browser();

my $ng = NbTest::Nginx->new(http => std_http());
$ng->start;

# a long unbroken word must wrap, not widen the page
my $reason = 'Upgrading to 2.2.15 - back soon: '
           . 'https://status.example.com/incidents/0123456789abcdefghijklmnopqrstuvwxyz';
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => $reason,
                                     retry_after => 120 });
is($r->{status}, 200, 'POST mode upgrade') or diag $r->{content};

my $url = 'http://127.0.0.1:' . $ng->port . '/some/page';
my @cases = ([en => 390, 844], ['zh-CN' => 390, 844], [de => 390, 844],
             [ru => 390, 844], [sv => 390, 844], [en => 1280, 800]);
my @visits = map {
    my ($lang, $w, $h) = @$_;
    { url => $url, width => $w, height => $h, lang => $lang,
      screenshot => "230-upgrade-$lang-${w}px.png" }
} @cases;
my @res = NbBrowser::pages(@visits);
for my $i (0 .. $#cases) {
    my ($lang, $w) = @{ $cases[$i] };
    my $p = $res[$i];
    my $t = "$lang ${w}px";
    ok(!$p->{error}, "$t: page rendered") or diag $p->{error};
    is($p->{status}, 503, "$t: status 503");
    is($p->{lang}, $lang, "$t: page in the browser's language");
    unlike($p->{text} // '', qr/\{\{|\}\}/, "$t: no {{placeholder}} in the text");
    unlike($p->{html} // '', qr/\{\{/, "$t: no {{ anywhere in the page");
    like($p->{html} // '', qr/class="badge">[^<{]+</, "$t: the mode badge is filled");
    ok(($p->{scroll_width} // 1e9) <= ($p->{client_width} // 0),
       "$t: no horizontal overflow")
        or diag "scrollWidth $p->{scroll_width} > clientWidth $p->{client_width}";
    like($p->{text} // '', qr/status\.example\.com/, "$t: the reason is shown");
    like($p->{text} // '', qr/\b120\b/, "$t: the retry time is shown");
    ok(-s $visits[$i]{screenshot}, "$t: screenshot saved");
}

$ng->stop;
done_testing();
