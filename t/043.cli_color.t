#!/usr/bin/perl
# nb-maint colours: none when piped (the default "auto"), with
# --color=always or NB_MAINT_COLOR=always, never in -o json, and the same
# layout with and without them; on a real terminal (script(1), util-linux)
# colours by default unless NO_COLOR is set.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbCli;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B]));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes up');
my %E = (NB_MAINT_URL => $ng->url('/_nb_maint/'), NB_MAINT_TOKEN => NbTest::ADMIN_TOKEN);
sub cli { my $env = ref $_[0] eq 'HASH' ? shift : {}; NbCli::run({ env => { %E, %$env } }, @_) }
my $ESC = qr/\e\[/;
sub digits { (my $t = $_[0]) =~ s/\d+/0/g; $t =~ s/ +/ /g; $t }    # times and counters move on between two runs
sub plain { (my $t = $_[0]) =~ s/\e\[[0-9;]*m//g; $t }

$ng->admin(POST => "nodes/$bid/drain", {});
my ($rc, $piped) = cli('status');
is($rc, 0, 'status piped: exit 0');
unlike($piped, $ESC, 'piped: no escape sequences');
my ($rc2, $col) = cli('status', '--color=always');
like($col, qr/\e\[32;1mnormal\e\[0m/, '--color=always: the mode in bold green');
like($col, qr/\e\[33myes\e\[0m/, '... a drained node in yellow');
like($col, qr/\e\[1mNODE\e\[0m/, '... a bold table header');
is(digits(plain($col)), digits($piped), '... same layout as the piped output once the colours are removed');
(undef, $col) = cli({ NB_MAINT_COLOR => 'always' }, 'status');
like($col, $ESC, 'NB_MAINT_COLOR=always: colours');
(undef, $col) = cli({ NB_MAINT_COLOR => 'always' }, 'status', '--color', 'never');
unlike($col, $ESC, '--color never beats NB_MAINT_COLOR=always');
(undef, $col) = cli('status', '--color=always', '-o', 'json');
unlike($col, $ESC, '-o json: never colours');
(undef, $col) = cli({ NO_COLOR => '1' }, 'node', $aid);
unlike($col, $ESC, 'NO_COLOR, piped: none');
(undef, $col) = cli('events', '--since', '0');
unlike($col, $ESC, 'events piped: none');
$ng->admin(POST => "nodes/$bid/undrain", {});

($rc, $piped) = cli('rolling-restart', '--restart-cmd', 'true', '--nodes', $aid, '--interval', '0.1',
    '--timeout', '5', '--health-timeout', '20');
is($rc, 0, 'rolling-restart piped: exit 0') or diag $piped;
unlike($piped, $ESC, '... no escapes');
($rc, $col) = cli('rolling-restart', '--restart-cmd', 'true', '--nodes', $aid, '--interval', '0.1',
    '--timeout', '5', '--health-timeout', '20', '--color=always');
like($col, qr/\e\[32mok\e\[0m/, '... --color=always: "ok" in green');

# a real terminal: script(1) runs the CLI on a pseudo-terminal
SKIP: {
    skip 'no script(1)', 3 unless -x '/usr/bin/script';
    my $cmd = "$^X " . NbCli::shq($NbCli::CLI) . ' status';
    my $tty = sub {
        my (%env) = @_;
        local @ENV{keys %env} = values %env;
        local $ENV{TERM} = 'xterm';
        local @ENV{keys %E} = values %E;
        my $o = `/usr/bin/script -q -e -c ${\ NbCli::shq($cmd)} /dev/null 2>&1`;
        return ($? >> 8, $o);
    };
    my ($trc, $t) = $tty->(NO_COLOR => undef);
    is($trc, 0, 'on a terminal: exit 0') or diag $t;
    like($t, qr/\e\[32;1mnormal/, 'on a terminal: colours by default');
    ($trc, $t) = $tty->(NO_COLOR => '1');
    unlike($t, qr/\e\[3\d/, 'on a terminal with NO_COLOR=1: none');
}

is_deeply(NbCli::warnings(), [], 'no Perl warnings from nb-maint');
done_testing;
