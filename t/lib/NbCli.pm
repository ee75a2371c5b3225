package NbCli;
# Run scripts/nb-maint from tests: in the foreground with a time bound, or
# in the background (to signal it). Core Perl only.
#   my ($rc, $out, $err) = NbCli::run({ env => {...}, stdin => '...', timeout => 40 }, @args);
#   my $h = NbCli::start({...}, @args); ... NbCli::finish($h, $timeout)
# env: set for the CLI; NB_MAINT_URL/NB_MAINT_TOKEN/NB_MAINT_TOKEN_FILE/
# NB_MAINT_CONTEXT/NB_MAINT_CONFIG/NB_MAINT_COLOR/NO_COLOR/NB_MAINT_PAGE are
# cleared first unless given. rc is 128+N when killed by signal N.
use strict;
use warnings;
use POSIX ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use FindBin;

our $CLI = $ENV{NB_MAINT_CLI} || "$FindBin::Bin/../scripts/nb-maint";
my $DIR = tempdir('nb_maint_cli_XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $N = 0;

sub slurp { my ($f) = @_; open my $fh, '<:raw', $f or return ''; local $/; my $t = <$fh>; $t // '' }

sub start {
    my ($opt, @args) = ref $_[0] eq 'HASH' ? @_ : ({}, @_);
    $N++;
    my %h = (out => "$DIR/$N.out", err => "$DIR/$N.err", args => \@args, t0 => time);
    open my $in, '>', "$DIR/$N.in" or die "$DIR/$N.in: $!";
    print $in $opt->{stdin} // '';
    close $in;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        setpgrp(0, 0) if $opt->{pgrp};
        open STDIN,  '<', "$DIR/$N.in";
        open STDOUT, '>', $h{out} or POSIX::_exit(126);
        open STDERR, '>', $h{err} or POSIX::_exit(126);
        delete @ENV{qw(NB_MAINT_URL NB_MAINT_TOKEN NB_MAINT_TOKEN_FILE NB_MAINT_CONTEXT NB_MAINT_CONFIG
                       NB_MAINT_COLOR NO_COLOR NB_MAINT_PAGE XDG_CONFIG_HOME)};
        my $env = $opt->{env} || {};
        $ENV{$_} = $env->{$_} for grep { defined $env->{$_} } keys %$env;
        { exec $^X, $CLI, @args }
        POSIX::_exit(127);
    }
    $h{pid} = $pid;
    return \%h;
}

sub done {
    my ($h) = @_;
    return 1 if exists $h->{rc};
    my $w = waitpid($h->{pid}, POSIX::WNOHANG());
    return 0 unless $w == $h->{pid};
    my $st = $?;
    $h->{rc} = ($st & 127) ? 128 + ($st & 127) : $st >> 8;
    $h->{t1} = time;
    return 1;
}

# (rc, stdout, stderr, seconds); killed after $timeout s (rc -1)
sub finish {
    my ($h, $timeout) = @_;
    my $end = time + ($timeout // 60);
    until (done($h)) {
        if (time > $end) {
            kill 'KILL', $h->{pid};
            waitpid $h->{pid}, 0;
            return (-1, slurp($h->{out}), slurp($h->{err}) . "\n[killed after ${timeout}s]", time - $h->{t0});
        }
        sleep 0.02;
    }
    my ($out, $err) = (slurp($h->{out}), slurp($h->{err}));
    push our @WARNINGS, map { "nb-maint @{ $h->{args} }: $_" } $err =~ /^(.* at \S*nb-maint line \d+.*)$/mg;
    return ($h->{rc}, $out, $err, $h->{t1} - $h->{t0});
}

# Perl warnings the CLI printed so far (for a final is_deeply(..., []))
sub warnings { our @WARNINGS; return [@WARNINGS] }

sub output_so_far { my ($h) = @_; slurp($h->{out}) }

sub run {
    my ($opt, @args) = ref $_[0] eq 'HASH' ? @_ : ({}, @_);
    return finish(start($opt, @args), $opt->{timeout} // 60);
}

sub dir { $DIR }

# shell-quote one word
sub shq { my ($s) = @_; $s =~ s/'/'\\''/g; "'$s'" }

1;
