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
    my $json = '';
    if (open my $fh, '<', $out) { local $/; $json = <$fh> // '' }
    unlink $out;
    my $r = $json && !$rc ? eval { NbTest::json_decode($json) } : undef;
    return map { { error => "page.js exit $rc: $log" } } @visits
        unless ref $r eq 'ARRAY';
    return @$r;
}

sub page { (pages({@_}))[0] }

# ---------------------------------------------------------------------------
# A browser the test steers step by step (t/browser/driver.js):
#   my $b = NbBrowser::Driver->new;
#   my $r = $b->cmd(cmd => 'open', tab => 'a', url => $url);   # {ok, ...}
#   $b->cmd(cmd => 'wait', tab => 'a', re => 'App upgrading', timeout_ms => 20000);
#   $b->quit;
package NbBrowser::Driver;

use strict;
use warnings;
use IPC::Open2 ();
use IO::Select;
use Time::HiRes qw(time);

sub new {
    my ($class) = @_;
    my ($out, $in);
    my $pid = IPC::Open2::open2($out, $in, 'node', "$DIR/driver.js");
    my $self = bless { pid => $pid, out => $out, in => $in, buf => '',
                       owner => $$ }, $class;
    my $hello = $self->_line(90);
    die "browser driver did not start\n" unless $hello && $hello->{ready};
    return $self;
}

sub _line {
    my ($self, $timeout) = @_;
    my $sel = IO::Select->new($self->{out});
    my $end = time + $timeout;
    while ($self->{buf} !~ /\n/) {
        my $left = $end - time;
        return undef if $left <= 0 || !$sel->can_read($left);
        my $n = sysread $self->{out}, $self->{buf}, 65536, length $self->{buf};
        return undef unless $n;
    }
    $self->{buf} =~ s/^([^\n]*)\n//;
    return eval { NbTest::json_decode($1) } || { ok => 0, error => "bad line: $1" };
}

# one command; answers its JSON (ok => 0, error => ... on failure or timeout)
sub cmd {
    my ($self, %c) = @_;
    my $limit = (($c{timeout_ms} // 60000) / 1000) + 30;
    my $fh = $self->{in};
    print $fh NbTest::json_encode(\%c), "\n";
    $fh->flush;
    return $self->_line($limit) // { ok => 0, error => "driver: no answer to $c{cmd}" };
}

sub quit {
    my ($self) = @_;
    return unless $self->{pid};
    my $fh = $self->{in};
    print $fh qq({"cmd":"quit"}\n);
    $fh->flush;
    $self->_line(30);
    close $self->{in};
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    $self->{pid} = undef;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@);
    eval { $self->quit } if $self->{pid} && $self->{owner} == $$;
}

1;

