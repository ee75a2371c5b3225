package NbDash;
# The dashboard (static/dashboard.html) in headless Chromium, for
# t/167 and t/231-234: sign in, answer its confirmation dialog, measure
# horizontal overflow, take screenshots.  Core Perl only, on top of
# NbBrowser::Driver (t/browser/driver.js).
#
#   my $d = NbDash->new($ng);                  # one browser
#   $d->sign_in('a', width => 390);            # tab 'a', signed in
#   my $dlg = $d->dialog('a');                 # {open, title, text}
#   $d->answer('a', 1);                        # confirm (0: cancel)
#   $d->overflow('a');                         # scrollWidth - innerWidth
#   $d->shot('a', '231-1280px.png');           # build/browser/...

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep time);
use NbTest ();
use NbBrowser ();

sub new {
    my ($class, $ng) = @_;
    my $self = bless { ng => $ng, b => NbBrowser::Driver->new }, $class;
    return $self;
}

sub b   { $_[0]{b} }
sub url { 'http://127.0.0.1:' . $_[0]{ng}->port . '/_nb_maint/' }

sub cmd { my ($self, %c) = @_; $self->{b}->cmd(%c) }

# the value of a JavaScript expression in the tab (undef on error)
sub js {
    my ($self, $tab, $js) = @_;
    my $r = $self->{b}->cmd(cmd => 'eval', tab => $tab, js => $js);
    diag "eval $js: $r->{error}" unless $r->{ok};
    return $r->{value};
}

# open the dashboard in a new tab and type the token; answers the result
# of waiting for the banner (signed in) or, with bad => 1, for the error
sub sign_in {
    my ($self, $tab, %o) = @_;
    my $token = delete $o{token} // NbTest::ADMIN_TOKEN;
    my $r = $self->cmd(cmd => 'open', tab => $tab, url => $self->url,
                       width => $o{width} || 1280, height => $o{height} || 900);
    return $r unless $r->{ok};
    $self->cmd(cmd => 'fill', tab => $tab, selector => '#token', value => $token);
    $self->cmd(cmd => 'click', tab => $tab, selector => '#loginform button');
    return $self->wait_js($tab, $o{bad}
        ? q{!document.getElementById('login-error').classList.contains('hidden')}
        : q{document.getElementById('b-mode').textContent !== ''}, 20);
}

# wait until the expression is true; {ok, ms, value} or {ok => 0, error}
sub wait_js {
    my ($self, $tab, $js, $timeout) = @_;
    my $t0 = time;
    my $end = $t0 + ($timeout // 20);
    while (1) {
        my $v = $self->js($tab, "(function(){ try { return !!($js); } catch (e) { return false; } })()");
        return { ok => 1, ms => int((time - $t0) * 1000) } if $v;
        return { ok => 0, error => "not true after ${timeout}s: $js" } if time > $end;
        sleep 0.2;
    }
}

# wait until the body text matches
sub wait_text {
    my ($self, $tab, $re, $timeout) = @_;
    return $self->cmd(cmd => 'wait', tab => $tab, re => $re,
                      timeout_ms => ($timeout // 20) * 1000);
}

sub text_of {
    my ($self, $tab, $sel) = @_;
    return $self->js($tab, "(function(){ var e = document.querySelector("
                           . NbTest::json_encode($sel) . "); return e ? e.innerText : null; })()");
}

# the confirmation dialog once it is open: {open, title, text}
sub dialog {
    my ($self, $tab, $timeout) = @_;
    my $w = $self->wait_js($tab, q{document.getElementById('confirm').open}, $timeout // 10);
    return { open => 0 } unless $w->{ok};
    return { open => 1, title => $self->text_of($tab, '#cf-title'),
             text => $self->text_of($tab, '#confirm') };
}

# click Confirm (1) or Cancel (0) in the open dialog
sub answer {
    my ($self, $tab, $yes) = @_;
    my $r = $self->cmd(cmd => 'click', tab => $tab,
                       selector => $yes ? '#cf-ok' : '#cf-cancel');
    $self->wait_js($tab, q{!document.getElementById('confirm').open}, 5);
    return $r;
}

# click, expect the dialog, check it names the impact, answer it
sub act {
    my ($self, $tab, $selector, $impact_re, $yes, $name) = @_;
    my $r = $self->cmd(cmd => 'click', tab => $tab, selector => $selector);
    ok($r->{ok}, "$name: clicked $selector") or diag $r->{error};
    my $d = $self->dialog($tab);
    ok($d->{open}, "$name: a confirmation dialog opens");
    like($d->{text} // '', $impact_re, "$name: it names the impact") or diag $d->{text};
    $self->answer($tab, $yes);
    return $d;
}

# horizontal overflow in px (0: none)
sub overflow {
    my ($self, $tab) = @_;
    return $self->js($tab, 'document.documentElement.scrollWidth - window.innerWidth');
}

sub shot {
    my ($self, $tab, $name, $full) = @_;
    my $path = $name =~ m{^/} ? $name : NbBrowser::shot_dir() . "/$name";
    my $r = $self->cmd(cmd => 'shot', tab => $tab, path => $path, full => $full // 1);
    return $r->{ok} ? $path : undef;
}

# the admin API answers GET bypass (the admin helper's part of issue 13)
sub has_get_bypass {
    my ($ng) = @_;
    my $r = $ng->admin(GET => 'bypass');
    return $r->{status} == 200;
}

sub quit { my ($self) = @_; $self->{b}->quit if $self->{b} }

1;
