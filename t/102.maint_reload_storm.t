# Fault: maintenance mode under load through 20 reloads and two killed
# workers: zero requests reach any node but the designated one (counted at
# the mock nodes), nothing crashes, the state stays (issue 9, fault tests;
# defect 22: the designated node's index travels with the state).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my ($aid, $bid, $cid) = map { $_->id } $A, $B, $C;

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B, $C]));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid, $cid), 'all three nodes up');
is($ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid, reason => 'storm' })->{status},
   200, 'maintenance on B');
my $want = state_fields($ng->status);

my $before = mock_counts($A, $B, $C);

# ---- load: two clients, keep-alive, until told to stop ------------------------
my $dir = $ng->prefix;
my @kids;
for my $k (1 .. 2) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 5);
        my (%status, %node, $n);
        while (!-e "$dir/stop") {
            my $r = $ua->get('http://127.0.0.1:' . $ng->port . "/api/storm/$k/" . $n++);
            $status{ $r->{status} }++;
            $node{ $r->{headers}{'x-node'} // '-' }++;
        }
        open my $fh, '>', "$dir/load.$k" or POSIX::_exit(1);
        print $fh join(' ', map { "s$_=$status{$_}" } keys %status), ' ',
                  join(' ', map { "n$_=$node{$_}" } keys %node), "\n";
        close $fh;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

# ---- 20 reloads and two worker kills ------------------------------------------
my @killed;
for my $i (1 .. 20) {
    $ng->reload;
    if ($i == 7 || $i == 14) {
        my ($victim) = $ng->worker_pids;
        kill 'KILL', $victim;
        push @killed, $victim;
        NbTest::wait_until(sub { my @w = $ng->worker_pids; @w >= 2 && !grep { $_ == $victim } @w }, 5);
    }
}
sleep 0.5;
$ng->write_file('stop', '');
waitpid $_, 0 for @kids;

my (%status, %node);
for my $k (1 .. 2) {
    my $t = $ng->read_file("load.$k") // '';
    $status{$1} += $2 while $t =~ /\bs(\d+)=(\d+)/g;
    $node{$1} += $2 while $t =~ /\bn(\S+?)=(\d+)(?=\s|$)/g;
}
my $total = 0;
$total += $_ for values %status;
diag "load: $total requests; status " . join(', ', map { "$_ x$status{$_}" } sort keys %status);
ok($total >= 200, "load ran ($total requests)");

my $d = count_delta($before, mock_counts($A, $B, $C));
is($d->{$aid}, 0, 'zero requests reached A');
is($d->{$cid}, 0, 'zero requests reached C');
ok($d->{$bid} >= ($status{200} // 0), "designated B answered them all ($d->{$bid})");
is(scalar(grep { $_ ne $bid && $_ ne '-' } keys %node), 0, 'no answer from another node');
ok(!$status{502} && !$status{503} && !$status{504}, 'no 502/503/504');
my $bad = $total - ($status{200} // 0) - ($status{599} // 0);
is($bad, 0, 'every answer 200 (or a connection cut by a killed worker)');
# a graceful reload closes idle keep-alive connections, and a request the
# client sent on one at that moment is cut (HTTP::Tiny's 599): at most one
# per client per reload, plus the killed workers' ones
ok(($status{599} // 0) <= 2 * (20 + 2), 'cut connections bounded by reloads and kills (' . ($status{599} // 0) . ')');

is_deeply(state_fields($ng->status), $want, 'state unchanged through it all');
my @crash = $ng->crashes;
is(scalar(@crash), scalar(@killed), 'only the two killed workers died on a signal')
    or diag join "\n", @crash;
done_testing;
