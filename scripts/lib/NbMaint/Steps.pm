# NbMaint/Steps.pm: the guided runs' machinery: steps, events, the operator's commands,
# Ctrl-C, failure reports with rollback and resume hints.
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
our ($CHILD_PID, $CUR_STEP, $FROM_STEP, $HTTP, $LINE, $PROG);    # $CHILD_PID: Base.pm, $CUR_STEP: Base.pm, $FROM_STEP: Base.pm, $HTTP: Api.pm, $LINE: Base.pm, $PROG: Base.pm

# ------------------------------------------------------------------ guided runs

# Output of a step: the "[n/N] desc... " line may be open; anything printed
# in between closes it, and the result is then shown on a fresh line.
# With -o json every line is a JSON object instead ({"event":...}).
my $LINE_OPEN = 0;
my $INTERRUPTED = 0;

sub emit_event { print $LINE->encode({ event => shift, @_ }), "\n" }

sub say_step {
    my ($text) = @_;
    if (json_out()) {
        return emit_event('output', step => $CUR_STEP, line => $1) if $text =~ /^\| (.*)\z/s;
        return emit_event('progress', step => $CUR_STEP, message => $text);
    }
    if ($LINE_OPEN) { print "\n"; $LINE_OPEN = 0; $INTERRUPTED = 1 }
    print "      $text\n";
}

# the end of a guided run
sub run_done {
    my ($msg) = @_;
    return emit_event('done', message => $msg) if json_out();
    print paint('green bold', $msg), "\n";
}

# {node}, {host}, {port}: the node; {n}: how many nodes run once this
# command is done (a start: its place in the order of starts, counting from
# 1; a stop: the nodes still running), for `kubectl scale --replicas={n}`
sub subst_cmd {
    my ($tpl, $node, $n) = @_;
    my $c = $tpl;
    $c =~ s/\{n\}/$n/g if defined $n;
    if (defined $node) {
        my ($host, $port) = $node =~ /^(.*):(\d+)$/ ? ($1, $2) : ($node, '');
        $c =~ s/\{node\}/$node/g;
        $c =~ s/\{host\}/$host/g;
        $c =~ s/\{port\}/$port/g;
    }
    return $c;
}

# Run a shell command, showing its output indented; dies when it fails.
sub run_cmd {
    my ($tpl, $node, $n) = @_;
    my $cmd = subst_cmd($tpl, $node, $n);
    local $ENV{NB_MAINT_NODE} = defined $node ? encode('UTF-8', $node) : '';
    my $pid = open(my $fh, '-|');
    die "cannot fork: $!\n" unless defined $pid;
    if (!$pid) {
        $SIG{INT} = 'DEFAULT';
        open STDERR, '>&', \*STDOUT;
        exec '/bin/sh', '-c', encode('UTF-8', $cmd) or do { print "exec /bin/sh: $!\n"; POSIX::_exit(127) };
    }
    $CHILD_PID = $pid;
    while (my $line = <$fh>) {
        $line = decode('UTF-8', $line);
        $line =~ s/\r?\n\z//;
        say_step("| $line");
    }
    close $fh;
    my $st = $?;
    $CHILD_PID = undef;
    return 1 if $st == 0;
    die "command failed (" . ($st & 127 ? 'killed by signal ' . ($st & 127) : 'exit status ' . ($st >> 8)) . "): $cmd\n";
}

sub confirm_line {
    my ($prompt, $accept) = @_;
    say_step($_) for split /\n/, $prompt;
    text("      > ");
    my $ans = <STDIN>;
    text("\n") unless -t STDIN;     # the terminal echoes the operator's newline
    die "no answer on standard input\n" unless defined $ans;
    $ans = decode('UTF-8', $ans);
    $ans =~ s/^\s+|\s+$//g;
    if ($accept eq 'yes') {
        die "not confirmed by the operator (answer: '$ans')\n" unless $ans =~ /^(?:y|yes)$/i;
    } else {
        die "aborted by the operator\n" if $ans =~ /^(?:abort|no|n|q|quit)$/i;
    }
    return 1;
}

# How the operator called us, with --from-step N: the command to resume.
sub resume_command {
    my ($n) = @_;
    my @a;
    my @argv = @ARGV;
    while (@argv) {
        my $x = shift @argv;
        if ($x eq '--from-step') { shift @argv; next }
        next if $x =~ /^--from-step=/;
        push @a, $x;
    }
    return join ' ', $PROG, (map { shq($_) } @a), '--from-step', $n;
}

# The cluster as it is now, in one or two lines (after a failure or Ctrl-C).
sub cluster_state {
    my $keep = $HTTP;
    $HTTP = HTTP::Tiny->new(timeout => 3, agent => 'nb-maint/1.1 ', keep_alive => 0);
    my $s = eval { get_status() };
    $HTTP = $keep;
    return (undef, "Cluster state unknown: " . err_msg($@)) unless $s;
    my (@drained, @notup);
    for my $u (@{ $s->{upstreams} || [] }) {
        for my $n (@{ $u->{nodes} || [] }) {
            push @drained, $n->{id} if $n->{drain};
            push @notup, "$n->{id} (" . node_reason($n) . ")" if ($n->{health} // '') ne 'up';
        }
    }
    my $txt = "Cluster now: mode " . mode_line($s)
            . "; drained: " . (@drained ? join(', ', @drained) : 'none')
            . "; not up: " . (@notup ? join(', ', @notup) : 'none') . ".\n";
    return ({ mode => $s->{mode}, node => $s->{node}, version => $s->{version},
              drained => \@drained, not_up => \@notup }, $txt);
}

# A step failed or the operator pressed Ctrl-C: say where, what the cluster
# looks like, how to roll back and how to resume; exit with the error's code.
sub steps_stopped {
    my ($i, $steps, $on_fail, $err) = @_;
    my $N = @$steps;
    my $intr = ref $err && $err->{code} eq 'interrupted';
    my $desc = $steps->[$i]{desc};
    my ($state, $state_txt) = cluster_state();
    my $hint = $on_fail->($i, $steps) // '';
    my @rest = grep { defined $steps->[$_]{manual} } $i .. $#$steps;
    my $resume = resume_command($i + 1);
    if (json_out()) {
        emit_event($intr ? 'interrupted' : 'failed', step => $i + 1, of => $N, desc => $desc,
                   error => { code => (ref $err ? $err->{code} : 'step_failed'), message => err_msg($err) },
                   state => $state, hint => $hint, resume => $resume,
                   manual => [map { $steps->[$_]{manual} } @rest]);
    } else {
        print "\n";
        print paint('yellow bold', "Interrupted (Ctrl-C) at step " . ($i + 1) . "/$N: $desc") . "\n" if $intr;
        print $state_txt;
        print $hint;
        print "\nTo resume, rerun from this step:\n  $resume\n";
        if (@rest) {
            print "or do the remaining steps by hand:\n";
            printf "  [%d/%d] %s\n", $_ + 1, $N, $steps->[$_]{manual} for @rest;
        }
    }
    my $msg = ($intr ? "interrupted at step " : "step ") . ($i + 1) . "/$N" . ($intr ? ": $desc" : " failed: " . err_msg($err));
    fail(ref $err ? nb_err($err->{exit}, $err->{code}, $msg) : nb_err(EX_REFUSED, 'step_failed', $msg));
}

# Run a list of steps {desc, run, manual}. On failure print how to go on.
sub run_steps {
    my ($title, $steps, $on_fail) = @_;
    my $N = @$steps;
    usage_error(undef, "--from-step must be between 1 and $N") if defined $FROM_STEP && ($FROM_STEP < 1 || $FROM_STEP > $N);
    if (json_out()) { emit_event('start', title => $title, steps => $N) }
    else { print paint('bold', $title), "\n" if defined $title }
    my $i = 0;
    local $SIG{INT} = sub {
        $SIG{INT} = 'DEFAULT';      # a second Ctrl-C ends at once
        kill 'INT', $CHILD_PID if $CHILD_PID;
        die nb_err(EX_INTERRUPTED, 'interrupted', 'interrupted (Ctrl-C)');
    };
    my $ok = eval {
        for ($i = 0; $i < $N; $i++) {
            my $st = $steps->[$i];
            $CUR_STEP = $i + 1;
            my $head = sprintf '[%d/%d] %s...', $i + 1, $N, $st->{desc};
            if (defined $FROM_STEP && $i + 1 < $FROM_STEP) {
                if (json_out()) { emit_event('step', step => $i + 1, of => $N, desc => $st->{desc}, result => 'skipped') }
                else { print "$head ", paint('dim', 'skipped'), "\n" }
                next;
            }
            text("$head ");
            $LINE_OPEN = !json_out();
            $INTERRUPTED = 0;
            my $t0 = time;
            my $note;
            my $ok = eval { $note = $st->{run}->(); 1 };
            my $err = $@;
            $note = undef if ref $note || !(defined $note && length $note);
            my $intr = !$ok && ref $err && $err->{code} eq 'interrupted';
            if (json_out()) {
                emit_event('step', step => $i + 1, of => $N, desc => $st->{desc},
                           result => ($ok ? 'ok' : $intr ? 'interrupted' : 'failed'),
                           (defined $note ? (note => $note) : ()), seconds => 0 + sprintf('%.3f', time - $t0));
            } else {
                my $res = $ok ? paint('green', 'ok') . (defined $note ? " ($note)" : '')
                        : $intr ? paint('yellow bold', 'interrupted') : paint('red bold', 'FAILED');
                if ($LINE_OPEN) { print "$res\n" } else { print "$head $res\n" }
            }
            $LINE_OPEN = 0;
            die $err unless $ok;
        }
        1;
    };
    return 1 if $ok;
    my $err = $@;
    $SIG{INT} = 'DEFAULT';
    $LINE_OPEN = 0;
    $i = $N - 1 if $i >= $N;
    steps_stopped($i, $steps, $on_fail, $err);
}

sub cli_prefix {
    # how the operator calls us, for hints
    return $PROG;
}

sub shq {
    my ($s) = @_;
    return $s if $s =~ m{^[A-Za-z0-9_\-.,:/@=+%]+$};
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

sub nodes_or_fail {
    my ($s) = @_;
    my @ids = status_nodes($s);
    fail("the gateway reports no nodes: no upstream with nb_maint is configured") unless @ids;
    return @ids;
}

sub require_opts {
    my ($cmd, $o, @names) = @_;
    for my $n (@names) {
        usage_error($cmd, "--$n is required") unless defined $o->{$n} && $o->{$n} ne '';
    }
}

sub pick_first {
    my ($o, @ids) = @_;
    return @ids unless defined $o->{node};
    fail("node $o->{node} is not in the gateway's upstreams (" . join(', ', @ids) . ")")
        unless grep { $_ eq $o->{node} } @ids;
    return ($o->{node}, grep { $_ ne $o->{node} } @ids);
}

1;
