package NbBrowser;
# Headless Chromium for the tests: runs t/browser/page.js (playwright-core
# driving Debian's /usr/bin/chromium, both installed by `make deps`) and
# returns what the page showed.  Core Perl only.
#
#   my $why = NbBrowser::missing();      # '' when the browser can run
#   my $r = NbBrowser::page(url => ..., width => 390, height => 844,
#                           lang => 'de', screenshot => 'name.png');
#   $r->{status}, $r->{text}, $r->{html}, $r->{scroll_width}, ...
#
# Screenshots go to build/browser/ in the repository (NB_SHOT_DIR to change).

use strict;
use warnings;
use File::Spec;
use File::Path qw(make_path);
use File::Temp ();
use NbTest ();

my $ROOT = NbTest::repo_root();
my $DIR  = "$ROOT/t/browser";

sub chromium { $ENV{NB_CHROMIUM} || '/usr/bin/chromium' }
sub shot_dir {
    my $d = $ENV{NB_SHOT_DIR} || "$ROOT/build/browser";
    make_path($d) unless -d $d;
    return $d;
}

# why the browser cannot run here ('' if it can)
sub missing {
    return chromium() . ' not installed (make deps)' unless -x chromium();
    return 'node not found' unless grep { -x "$_/node" } split /:/, $ENV{PATH} // '';
    return "$DIR/node_modules/playwright-core missing (make deps)"
        unless -d "$DIR/node_modules/playwright-core";
    return '';
}

# skip the test when the browser is missing, except in CI where that is
# a failed `make deps` and must not pass silently
sub require_browser {
    my $why = missing();
    return unless $why;
    if ($ENV{CI}) {
        Test::More::BAIL_OUT("browser test needs Chromium: $why");
    }
    Test::More::plan(skip_all => "no browser: $why");
}

# visit each page (hashes: url, width, height, lang, screenshot (a name in
# build/browser/ or an absolute path), wait_ms, timeout_ms) in one browser;
# returns one result per visit (see t/browser/page.js), {error} set on failure
sub pages {
    my (@visits) = @_;
    for my $v (@visits) {
        next unless $v->{screenshot};
        $v->{screenshot} = shot_dir() . "/$v->{screenshot}"
            unless File::Spec->file_name_is_absolute($v->{screenshot});
    }
    my $plan = File::Temp->new(SUFFIX => '.json', TMPDIR => 1);
    print $plan NbTest::json_encode({ visits => \@visits });
    close $plan;
    my $out = "$plan.out";
    my ($rc, $log) = NbTest::run_cmd("$plan.log", 'node', "$DIR/page.js", "$plan", $out);
    unlink "$plan.log";
    my $json = do { local $/; open my $fh, '<', $out or ''; $fh ? <$fh> : '' };
    unlink $out;
    my $r = $json && !$rc ? eval { NbTest::json_decode($json) } : undef;
    return map { { error => "page.js exit $rc: $log" } } @visits
        unless ref $r eq 'ARRAY';
    return @$r;
}

sub page { (pages({@_}))[0] }

1;
