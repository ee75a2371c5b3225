package NbFault;
# Helpers for the store's fault tests: a "slow disk" made of a FIFO, and
# finding the worker whose write is stuck on it.  Core Perl only.

use strict;
use warnings;
use Exporter 'import';
use POSIX ();
use Time::HiRes qw(sleep time);

our @EXPORT = qw(slow_disk_gateway stuck_worker timed_get bg_admin bg_wait
                 fifo_release);

# A started gateway (several workers, each answer naming its pid in X-Pid)
# whose events file is a FIFO nobody reads: its next write sticks on it, as
# on a disk that does not answer.  Returns ($ng, version at start, fifo).
sub slow_disk_gateway {
    my $ng = NbTest::Nginx->new(http => NbTest::std_http(
        listen_opts  => ' reuseport',
        server_extra => '    add_header X-Pid $pid always;',
    ));
    $ng->start;

    my $v0 = $ng->status->{version};
    my $fifo = $ng->prefix . '/state.json.events';
    unlink $fifo;
    POSIX::mkfifo($fifo, 0600) or die "mkfifo: $!";

    return ($ng, $v0, $fifo);
}

# the worker (of $ng) with a thread asleep opening a FIFO nobody reads
sub stuck_worker {
    my ($ng, $timeout) = @_;
    my $end = time + ($timeout // 10);
    while (time < $end) {
        for my $w ($ng->worker_pids) {
            for my $t (glob "/proc/$w/task/*") {
                open my $fh, '<', "$t/wchan" or next;
                my $wc = <$fh> // '';
                return $w if $wc =~ /partner|fifo|pipe_wait|pipe_write/;
            }
        }
        sleep 0.05;
    }
    return undef;
}

# GET $path with a short timeout: (status, seconds, x-pid)
sub timed_get {
    my ($ng, $path, $timeout) = @_;
    my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => $timeout // 3);
    my $t0 = time;
    my $r = $ua->get($ng->url($path));
    return ($r->{status}, time - $t0, $r->{headers}{'x-pid'} // '');
}

# an admin request in a child process; its answer is read by bg_wait
sub bg_admin {
    my ($ng, $method, $sub, $body, $headers) = @_;
    my $file = $ng->prefix . "/bg.$$." . int(rand(1e9));
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $ng->{ua} = HTTP::Tiny->new(keep_alive => 0, timeout => 60);
        my $r = eval { $ng->admin($method, $sub, $body, $headers) };
        if (open my $fh, '>', $file) {
            print $fh ($r ? "$r->{status}\n" . ($r->{content} // '') : "0\n$@");
            close $fh;
        }
        POSIX::_exit(0);
    }
    return { pid => $pid, file => $file };
}

# (status, body) of a bg_admin request, undef status if it is not done
sub bg_wait {
    my ($bg, $timeout) = @_;
    my $end = time + ($timeout // 10);
    while (time < $end) {
        if (waitpid($bg->{pid}, POSIX::WNOHANG()) == $bg->{pid}) {
            open my $fh, '<', $bg->{file} or return (0, 'no answer file');
            local $/;
            my $t = <$fh> // '';
            unlink $bg->{file};
            my ($st, $body) = split /\n/, $t, 2;
            return ($st, $body);
        }
        sleep 0.02;
    }
    return (undef, 'still waiting');
}

# let the writer blocked on the FIFO through: a reader drains it, then
# the FIFO is removed so that later writes make a regular file
sub fifo_release {
    my ($fifo) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open my $fh, '<', $fifo or POSIX::_exit(1);
        unlink $fifo;
        1 while sysread($fh, my $buf, 65536);
        POSIX::_exit(0);
    }
    return $pid;
}

1;
