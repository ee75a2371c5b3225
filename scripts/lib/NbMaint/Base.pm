# NbMaint/Base.pm: the shared core: exit codes, errors (NbErr), colours, the
# usage-error and did-you-mean helpers.
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
our ($GLOBAL_USAGE, %HELP);    # $GLOBAL_USAGE: Usage.pm, %HELP: Usage.pm

our $PROG = 'nb-maint';
our $JSON = JSON::PP->new->utf8->canonical;
# STDOUT/STDERR encode UTF-8 themselves: these produce characters
our $PRETTY = JSON::PP->new->canonical->pretty;
our $LINE = JSON::PP->new->canonical;

# Exit codes (nb-maint(1) EXIT STATUS; shared with the other helpers' code)
use constant {
    EX_OK          => 0,      # done
    EX_REFUSED     => 1,      # refused by the gateway (4xx but 409), a failed step, a safety check
    EX_USAGE       => 2,      # bad command line or configuration file
    EX_CONFLICT    => 3,      # 409: the state moved on (If-Match) or the transition is not allowed now
    EX_UNAVAILABLE => 4,      # store or gateway unavailable: 5xx, unreachable, not the admin API
    EX_TIMEOUT     => 5,      # a --wait or a guided run's wait ran out of time
    EX_INTERRUPTED => 130,    # Ctrl-C (SIGINT)
};

# Errors carry their exit code and a stable code for -o json:
# die nb_err(EX_..., 'code', 'message', extra => ...). They stringify to the
# message with a newline, so `die $e` / "$e" keep working.
{
    package NbErr;
    use overload '""' => sub { $_[0]{message} . "\n" }, 'bool' => sub { 1 }, fallback => 1;
}
sub nb_err {
    my ($exit, $code, $msg, %x) = @_;
    return bless { exit => $exit, code => $code, message => $msg, %x }, 'NbErr';
}
sub err_exit { ref $_[0] eq 'NbErr' ? $_[0]{exit} : EX_REFUSED }
sub err_msg  { my $m = ref $_[0] eq 'NbErr' ? $_[0]{message} : "$_[0]"; $m =~ s/\n+\z//; $m }

# Output: -o text|json (also --json), colours: --color auto|always|never,
# NB_MAINT_COLOR, NO_COLOR.
our $OUTPUT = 'text';
our $COLOR  = 0;
our $CUR_STEP;           # guided runs: 1-based step being run, for JSON events
our $CHILD_PID;          # guided runs: the operator's command being run, for Ctrl-C
our $FROM_STEP;          # guided runs: --from-step N skips the steps before N
sub json_out { $OUTPUT eq 'json' }
sub text { print @_ unless $OUTPUT eq 'json' }
my %SGR = (bold => 1, dim => 2, red => 31, green => 32, yellow => 33, blue => 34, magenta => 35, cyan => 36);
sub paint {
    my ($style, $s) = @_;
    return $s unless $COLOR && defined $style && length $s;
    my $c = join ';', map { $SGR{$_} // () } split /\s+/, $style;
    return length $c ? "\e[${c}m$s\e[0m" : $s;
}
our %MODE_STYLE   = (normal => 'green bold', maintenance => 'yellow bold', upgrade => 'magenta bold',
                    restoring => 'cyan bold');
our %HEALTH_STYLE = (up => 'green', down => 'red bold', commanding => 'yellow', unknown => 'dim');

# ------------------------------------------------------------------ errors

# {"error":{"code","message","exit",...}} on stderr with -o json, else
# "nb-maint: message"
sub emit_error {
    my ($e) = @_;
    if (json_out()) {
        my %x = map { $_ => $e->{$_} } grep { defined $e->{$_} } keys %$e;
        print STDERR $LINE->encode({ error => \%x }), "\n";
    } else {
        print STDERR "$PROG: $e->{message}\n";
    }
}

sub usage_error {
    my ($cmd, $msg) = @_;
    if (json_out()) {
        emit_error({ code => 'usage', message => $msg // 'usage error', exit => EX_USAGE });
        exit EX_USAGE;
    }
    print STDERR "$PROG: $msg\n" if defined $msg;
    if (defined $cmd && $HELP{$cmd}) {
        my ($first) = $HELP{$cmd} =~ /\A(.*?\n)\n/s;
        print STDERR $first // $HELP{$cmd};
        print STDERR "($PROG $cmd --help for more)\n";
    } else {
        print STDERR $GLOBAL_USAGE;
    }
    exit EX_USAGE;
}

# fail(error object or message [, exit code]): print it, exit
sub fail {
    my ($e, $exit) = @_;
    my %e = ref $e eq 'NbErr' ? %$e : (code => 'failed', message => err_msg($e), exit => EX_REFUSED);
    $e{exit} = $exit if defined $exit;
    emit_error(\%e);
    exit $e{exit};
}

# ------------------------------------------------------------------ did you mean

# optimal string alignment distance: insertions, deletions, substitutions
# and swaps of two neighbours cost 1
sub edit_distance {
    my ($a, $b) = @_;
    my ($n, $m) = (length $a, length $b);
    my @d = map { [(0) x ($m + 1)] } 0 .. $n;
    $d[$_][0] = $_ for 0 .. $n;
    $d[0][$_] = $_ for 0 .. $m;
    for my $i (1 .. $n) {
        for my $j (1 .. $m) {
            my $cost = substr($a, $i - 1, 1) eq substr($b, $j - 1, 1) ? 0 : 1;
            my $v = $d[$i - 1][$j] + 1;
            $v = $d[$i][$j - 1] + 1 if $d[$i][$j - 1] + 1 < $v;
            $v = $d[$i - 1][$j - 1] + $cost if $d[$i - 1][$j - 1] + $cost < $v;
            if ($i > 1 && $j > 1 && substr($a, $i - 1, 1) eq substr($b, $j - 2, 1)
                && substr($a, $i - 2, 1) eq substr($b, $j - 1, 1) && $d[$i - 2][$j - 2] + 1 < $v) {
                $v = $d[$i - 2][$j - 2] + 1;
            }
            $d[$i][$j] = $v;
        }
    }
    return $d[$n][$m];
}

sub common_prefix {
    my ($a, $b) = @_;
    my $i = 0;
    $i++ while $i < length $a && $i < length $b && substr($a, $i, 1) eq substr($b, $i, 1);
    return $i;
}

# the closest candidates: a unique prefix match, else those within a small
# edit distance, else those sharing a long beginning ("restart-command")
sub suggest {
    my ($word, @cands) = @_;
    return () unless defined $word && length $word;
    my @pre = grep { index($_, $word) == 0 } @cands;
    return @pre if @pre == 1;
    my $max = length($word) <= 4 ? 1 : length($word) <= 8 ? 2 : 3;
    my %d = map { $_ => edit_distance(lc $word, lc $_) } @cands;
    my @near = sort { $d{$a} <=> $d{$b} || $a cmp $b } grep { $d{$_} <= $max } @cands;
    return grep { $d{$_} == $d{ $near[0] } } @near if @near;
    my %p = map { $_ => common_prefix(lc $word, lc $_) } @cands;
    my @long = sort { $p{$b} <=> $p{$a} || $a cmp $b }
               grep { $p{$_} >= 5 && $p{$_} * 2 >= length $word } @cands;
    return @long ? grep { $p{$_} == $p{ $long[0] } } @long : ();
}

sub did_you_mean {
    my ($prefix, @s) = @_;
    return '' unless @s;
    return "; did you mean " . join(' or ', map { "'$prefix$_'" } @s) . '?';
}

# option names of a Getopt::Long spec list
sub spec_names {
    return map { my $s = $_; $s =~ s/[=:!+].*//; map { length > 1 ? $_ : () } split /\|/, $s } @_;
}

1;
