# NbMaint/Cli.pm: the command line: global options, the command table, main().
# Part of nb-maint (scripts/nb-maint): one package, NbMaint, over the files of
# scripts/lib/NbMaint, loaded in order by NbMaint.pm.
package NbMaint;
use strict;
use warnings;
use HTTP::Tiny;
use JSON::PP;
use Getopt::Long qw(GetOptionsFromArray);
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use Encode qw(decode encode);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use File::Path qw(make_path);
our ($COLOR, $FROM_STEP, $GLOBAL_USAGE, $OUTPUT, $PROG, %HELP);    # $COLOR: Base.pm, $FROM_STEP: Base.pm, $GLOBAL_USAGE: Usage.pm, $OUTPUT: Base.pm, $PROG: Base.pm, %HELP: Usage.pm

# ------------------------------------------------------------------ options

our %G = ('http-timeout' => 10);    # NB_MAINT_URL etc.: resolve_targets, api_token
my @COMMON = ('url=s', 'token=s', 'token-file=s', 'context=s', 'http-timeout=f', 'if-match=s',
              'output|o=s', 'json', 'color|colour=s', 'help|h');

my %CMD = (
    status              => { spec => [],                                             args => [0, 0], run => \&cmd_status },
    node                => { spec => [],                                             args => [1, 1], run => \&cmd_node },
    maintenance         => { spec => ['node=s', 'reason=s', 'retry-after=i', 'force'], args => [0, 0], run => \&cmd_maintenance, write => 1 },
    upgrade             => { spec => ['node=s', 'reason=s', 'retry-after=i', 'force'], args => [0, 0], run => \&cmd_upgrade, write => 1 },
    restore             => { spec => ['wait', 'force', 'timeout=f', 'interval=f', 'expect=i'],   args => [0, 0], run => \&cmd_restore, write => 1 },
    drain               => { spec => ['wait', 'timeout=f', 'interval=f', 'force', 'haproxy-socket=s@', 'agent-interval=f', 'self', 'address=s', 'port=i'], args => [0, 1e9], run => \&cmd_drain, write => 1 },
    undrain             => { spec => [],                                             args => [1, 1e9], run => \&cmd_undrain, write => 1 },
    bypass              => { spec => ['ttl=i'],                                      args => [0, 0], run => \&cmd_bypass, write => 1 },
    events              => { spec => ['since=i'],                                    args => [0, 0], run => \&cmd_events },
    'haproxy-errorfile' => { spec => ['out=s', 'page=s', 'retry-after=i', 'reason=s', 'mode=s', 'since=s',
                                      'api-out=s', 'snippet', 'backend=s'],
                             args => [0, 0], run => \&cmd_errorfile, single => 1 },
    'rolling-restart'   => { spec => ['from-step=i', 'restart-cmd=s', 'timeout=f', 'health-timeout=f', 'nodes=s', 'force', 'interval=f',
                                      'haproxy-socket=s@', 'agent-interval=f'],
                             args => [0, 0], run => \&cmd_rolling_restart, single => 1 },
    startup             => { spec => ['from-step=i', 'start-cmd=s', 'node=s', 'timeout=f', 'interval=f'],
                             args => [0, 0], run => \&cmd_startup, single => 1 },
    'upgrade-run'       => { spec => ['from-step=i', 'stop-cmd=s', 'start-cmd=s', 'backup-cmd=s', 'update-cmd=s', 'verify-cmd=s',
                                      'confirm', 'node=s', 'reason=s', 'retry-after=i', 'timeout=f',
                                      'drain-timeout=f', 'interval=f', 'haproxy-socket=s@', 'agent-interval=f',
                                      'haproxy-reload=s', 'haproxy-errorfile=s', 'haproxy-backend=s'],
                             args => [0, 0], run => \&cmd_upgrade_run, single => 1 },
    'maintenance-run'   => { spec => ['from-step=i', 'node=s', 'stop-cmd=s', 'start-cmd=s', 'task-cmd=s', 'reason=s',
                                      'retry-after=i', 'timeout=f', 'drain-timeout=f', 'interval=f',
                                      'force', 'haproxy-socket=s@', 'agent-interval=f', 'haproxy-reload=s', 'haproxy-errorfile=s', 'haproxy-backend=s'],
                             args => [0, 0], run => \&cmd_maintenance_run, single => 1 },
    config              => { spec => [], args => [0, 1e9], run => \&cmd_config,
                             local => 1 },
);

# -o json must hold for usage errors too: look for it before parsing
sub prescan_output {
    my @a = @_;
    while (@a) {
        my $x = shift @a;
        last if $x eq '--';
        if ($x eq '-o' || $x eq '--output') { return $a[0] // 'text' }
        return $1 if $x =~ /^(?:-o|--output=)(.+)$/;
        return 'json' if $x eq '--json';
    }
    return 'text';
}

sub set_color {
    my ($when) = @_;
    $when //= $ENV{NB_MAINT_COLOR};
    $when = 'auto' unless defined $when && $when ne '';
    if ($when eq 'always') { $COLOR = 1 }
    elsif ($when eq 'never') { $COLOR = 0 }
    elsif ($when eq 'auto') {
        $COLOR = -t STDOUT && !(defined $ENV{NO_COLOR} && $ENV{NO_COLOR} ne '')
              && ($ENV{TERM} // '') ne 'dumb' ? 1 : 0;
    } else {
        usage_error(undef, "--color must be auto, always or never, not '$when'"
            . did_you_mean('', suggest($when, qw(auto always never))));
    }
    $COLOR = 0 if json_out();
}

sub parse_cmd_options {
    my ($cmd, $def, $argv) = @_;
    my %o;
    my $warn = '';
    local $SIG{__WARN__} = sub { $warn .= $_[0] };
    return \%o if GetOptionsFromArray($argv, \%o, @COMMON, @{ $def->{spec} });
    my @names = spec_names(@COMMON, @{ $def->{spec} });
    my @msg;
    for my $w (split /\n/, $warn) {
        if ($w =~ /^Unknown option: (\S+)/) {
            my $opt = $1;
            push @msg, "unknown option --$opt" . did_you_mean('--', suggest($opt, @names));
        } else {
            push @msg, $w;
        }
    }
    usage_error($cmd, join('; ', @msg) || 'bad option');
}

sub main {
    my @argv = @ARGV;
    my %pre;
    my $fmt = prescan_output(@argv);
    $OUTPUT = 'json' if $fmt eq 'json';
    Getopt::Long::Configure(qw(require_order pass_through no_auto_abbrev no_ignore_case));
    GetOptionsFromArray(\@argv, \%pre, @COMMON, 'version') or usage_error(undef);
    Getopt::Long::Configure(qw(no_require_order no_pass_through));
    if ($pre{version}) { print "$PROG 1.1\n"; exit 0 }
    my $cmd = shift @argv;
    if (!defined $cmd) {
        if ($pre{help}) { print $GLOBAL_USAGE; exit 0 }
        usage_error(undef, 'no command given');
    }
    if ($cmd =~ /^-/) {
        usage_error(undef, "unknown option $cmd"
            . did_you_mean('--', suggest($cmd =~ s/^-+//r, spec_names(@COMMON, 'version'))));
    }
    if ($cmd eq 'help') {
        my $c = shift @argv;
        if (defined $c && $HELP{$c}) { print help_text($c); exit 0 }
        print $GLOBAL_USAGE; exit 0;
    }
    my $def = $CMD{$cmd}
        or usage_error(undef, "unknown command '$cmd'" . did_you_mean('', suggest($cmd, sort keys %CMD)));
    if ($pre{help}) { print help_text($cmd); exit 0 }
    my $o = parse_cmd_options($cmd, $def, \@argv);
    if ($o->{help}) { print help_text($cmd); exit 0 }
    for my $k (qw(url token token-file context http-timeout if-match output color)) {
        # config set NAME --url U --token-file F: the context's, not ours
        if ($cmd eq 'config' && $k =~ /^(?:url|token-file)$/) {
            $o->{$k} //= $pre{$k};
            next;
        }
        $G{$k} = $pre{$k} if defined $pre{$k};
        $G{$k} = $o->{$k} if defined $o->{$k};
    }
    $G{json} = 1 if $pre{json} || $o->{json};
    my $out = $G{json} ? 'json' : $G{output} // 'text';
    usage_error($cmd, "-o must be text or json, not '$out'" . did_you_mean('', suggest($out, qw(text json))))
        unless $out eq 'text' || $out eq 'json';
    $OUTPUT = $out;
    $o->{json} = 1 if json_out();
    set_color($G{color});
    my ($min, $max) = @{ $def->{args} };
    usage_error($cmd, "missing argument") if @argv < $min;
    usage_error($cmd, "unexpected argument '$argv[$max]'") if @argv > $max;
    for my $k (qw(timeout health-timeout drain-timeout interval http-timeout)) {
        usage_error($cmd, "--$k must be positive") if defined $o->{$k} && $o->{$k} <= 0;
    }
    hap_setup($o, $cmd);
    if (!$def->{local}) {
        my @targets = resolve_targets($cmd);
        if (@targets > 1) {
            run_group($cmd, $def, \@targets);
            exit 0;
        }
    }
    $FROM_STEP = $o->{'from-step'};
    $def->{run}->($o, @argv);
    exit 0;
}

1;
