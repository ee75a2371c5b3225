# File store durability (issue 21, item 12):
# - a write that fails after its audit line went into an events file that
#   was empty before leaves the events file empty again (before: the
#   rollback was "size && ftruncate", skipped for an empty file, so a
#   change that never happened stayed in the audit);
# - after the rename of the state file the directory is fsynced (a rename
#   is durable only then), by the thread that writes, never on the event
#   loop: observed with strace on the workers (skipped without strace).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use File::Path qw(remove_tree);
use Time::HiRes qw(sleep);

my $ng = NbTest::Nginx->new(http => std_http(store => 'file:%%PREFIX%%/disk/state.json'));
my $disk = $ng->prefix . '/disk';
mkdir $disk or die "mkdir: $!";
my $state = "$disk/state.json";
my $events = "$state.events";

$ng->start;

# ---- rollback of the audit line when the events file was empty ------------------------
# the first change ever: no events file yet (an empty one behaves alike)
unlink $events;
open my $fh, '>', $events or die "$events: $!";
close $fh;
is(-s $events, 0, 'the events file is empty');

# the rename onto the state file fails: the state file is now a directory
unlink $state or die "unlink: $!";
mkdir $state or die "mkdir: $!";
open $fh, '>', "$state/keep" or die; close $fh;

my $before = state_fields($ng->status);
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'never stored' });
is($r->{status}, 503, 'a write whose rename fails answers 503') or diag $r->{content};
is($r->{json}{error}{code}, 'store_unavailable', '... store_unavailable');
is(-s $events, 0, 'the events file is empty again: no audit line for a change that did not happen')
    or diag 'events file: ' . ($ng->read_file("disk/state.json.events") // '(none)');
is_deeply(state_fields($ng->status), $before, 'the state is unchanged');
like($ng->error_log, qr/cannot store version \d+ in "[^"]*state\.json" \(rename\)/,
     'error.log says the rename failed');

remove_tree($state);
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'stored' });
is($r->{status}, 200, 'the state file can be written again: 200') or diag $r->{content};
my @lines = grep { length } split /\n/, ($ng->read_file('disk/state.json.events') // '');
is(scalar @lines, 1, 'the events file holds exactly the one change that happened');
like($lines[0] // '', qr/"reason":"stored"/, '... the one stored');

# ---- the directory is fsynced after the rename, off the event loop ----------------------
SKIP: {
    my $strace = `command -v strace 2>/dev/null`;
    chomp $strace;
    skip 'strace is not installed (make deps)', 4 unless $strace;

    my @w = $ng->worker_pids;
    my $out = $ng->prefix . '/strace.out';
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDERR, '>', $ng->prefix . '/strace.err';
        exec $strace, '-f', '-y', '-qq', '-e', 'trace=rename,renameat,renameat2,fsync,fdatasync',
             '-o', $out, map { ('-p', $_) } @w;
        exit 127;
    }
    # every worker traced (TracerPid set for each of its threads)
    my $traced = NbTest::wait_until(sub {
        for my $w (@w) {
            opendir my $d, "/proc/$w/task" or return 0;
            for my $t (grep { /^\d+$/ } readdir $d) {
                open my $s, '<', "/proc/$w/task/$t/status" or return 0;
                my ($tp) = join('', <$s>) =~ /^TracerPid:\s*(\d+)/m;
                return 0 unless $tp;
            }
        }
        return 1;
    }, 10);
    ok($traced, 'strace is attached to every worker thread') or diag $ng->read_file('strace.err');

    $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001', reason => 'synced' });
    is($r->{status}, 200, 'a write while traced: 200') or diag $r->{content};
    sleep 0.3;
    kill 'INT', $pid;
    waitpid $pid, 0;

    my @calls = split /\n/, ($ng->read_file('strace.out') // '');
    my ($ren) = grep { $calls[$_] =~ /rename\w*\(.*state\.json\.\d+\.tmp.*state\.json/ } 0 .. $#calls;
    ok(defined $ren, 'the state file was renamed into place') or diag join "\n", @calls;
    my ($tid) = defined $ren ? $calls[$ren] =~ /^(\d+)/ : ();
    my $dirsync = defined $ren
        && grep { /^\Q$tid\E\s+fsync\(\d+<\Q$disk\E>\)\s*=\s*0/ } @calls[$ren + 1 .. $#calls];
    ok($dirsync, 'then the same thread fsynced the directory') or diag join "\n", @calls;
    ok(defined $tid && !grep({ $tid == $_ } @w),
       'in a thread of the pool, not on a worker\'s event loop (thread ' . ($tid // '?') . ')');
}

is(scalar $ng->crashes, 0, 'no crash');
$ng->stop;

done_testing;
