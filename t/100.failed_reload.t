# Fault: a reload that fails after the zone was re-created (zone size
# changed plus a "listen" on a busy port), then killed workers.  The running
# generation must be untouched: replacement workers start and serve, nothing
# crashes, the state stays, maintenance routing still goes to the designated
# node only; a good reload afterwards works (issue 9 defect 2).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = ($A->id, $B->id);

my $http = cluster_http(nodes => [$A, $B]);
my $ng = NbTest::Nginx->new(http => $http);
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'both nodes up');

is($ng->admin(POST => 'mode', { mode => 'maintenance', node => $aid, reason => 'r100' })->{status},
   200, 'maintenance on A');
my $want = state_fields($ng->status);

# a port that is busy: held by this test
my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5,
                                 Proto => 'tcp', ReuseAddr => 0) or die "listen: $!";
my $bport = $busy->sockport;

sub failed_reload {
    my ($size) = @_;
    my $bad = $http;
    $bad =~ s/^nb_maint_zone nb 4m;$/nb_maint_zone nb $size;/m or die 'no zone line';
    $bad .= "server { listen 127.0.0.1:$bport; return 200; }\n";
    $ng->write_conf(http => $bad);
    my $n0 = () = $ng->log_grep(qr/bind\(\) to 127\.0\.0\.1:$bport failed/);
    my ($rc) = NbTest::run_cmd($ng->prefix . '/logs/reload.out', $ng->nginx_cmd('-s', 'reload'));
    is($rc, 0, "reload signal sent (zone $size, busy port)");
    ok(NbTest::wait_until(sub {
        my $n = () = $ng->log_grep(qr/bind\(\) to 127\.0\.0\.1:$bport failed/);
        $n > $n0;
    }, 10), '... and the reload failed on the busy port') or diag $ng->error_log_tail(10);
    sleep 0.3;
}

my @w0 = $ng->worker_pids;
failed_reload('8m');
is_deeply([$ng->worker_pids], \@w0, 'failed reload: the same workers run');

my $killed = 0;
for my $round (1 .. 2) {
    my @w = $ng->worker_pids;
    my $victim = $w[0];
    kill 'KILL', $victim;
    $killed++;
    ok(NbTest::wait_until(sub {
        my @now = $ng->worker_pids;
        @now >= 2 && !grep { $_ == $victim } @now;
    }, 5), "round $round: worker $victim killed and replaced");
    sleep 1;    # a broken replacement crashes at once, and again on respawn
    my @crash = $ng->crashes;
    is(scalar(@crash), $killed, "round $round: only the killed workers died on a signal")
        or diag join "\n", @crash[0 .. ($#crash < 5 ? $#crash : 5)];
    my $h = $ng->hit(20, "/api/r$round");
    is($h->{status}{200} // 0, 20, "round $round: 20 requests answered 200");
    is($h->{node}{$aid} // 0, 20, "round $round: ... all by the designated node A");
    is_deeply(state_fields($ng->status), $want, "round $round: state untouched");
    failed_reload('2m') if $round == 1;
}

# the replacement workers still run health checks: B failing is seen
$B->set_state('fail');
ok(defined $ng->wait_health($bid, 'down', 5), 'health checks run in the replacement workers');
$B->set_state('running');
ok(defined $ng->wait_health($bid, 'up', 5), '... B up again');

# a good reload after the failed ones
$ng->write_conf(http => $http);
$ng->reload;
is_deeply(state_fields($ng->status), $want, 'good reload: state kept');
my $h = $ng->hit(20, '/api/after');
is($h->{node}{$aid} // 0, 20, 'good reload: maintenance routing to A only');
is(scalar($ng->crashes), $killed, 'no crash at all but the killed workers');
is(scalar($ng->log_grep(qr/\[alert\].*nb_maint/)), 0, 'no nb_maint alert in error.log')
    or diag join "\n", $ng->log_grep(qr/\[alert\].*nb_maint/);
close $busy;
done_testing;
