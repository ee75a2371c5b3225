# Issue 21 item 7: the Redis store's connections are closed when a worker
# exits gracefully.  A reload or a stop (QUIT) of a gateway on redis:// and
# on redis-sentinel:// leaves no "[alert] open socket #N left in
# connection" in error.log (as t/175, t/176 and t/240 check for the file
# store), and the old workers are gone well before worker_shutdown_timeout.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbSentinel;
use Time::HiRes qw(time sleep);

sub cycle_ok {
    my ($ng, $what) = @_;
    ok($ng->wait_store_ok(1, 10), "$what: store ok");
    # a write, so that every worker's command connection has been used
    is($ng->admin(POST => 'mode', { mode => 'upgrade', reason => $what })->{status}, 200,
       "$what: a write");
    my %old = map { ($_ => 1) } $ng->worker_pids;
    my $t0 = time;
    $ng->reload;
    my $gone = NbTest::wait_until(sub { !grep { $old{$_} } $ng->worker_pids }, 10, 0.05);
    ok($gone, "$what: the old workers exit after a reload");
    cmp_ok(time - $t0, '<', 3, sprintf "$what: ... within 3 s (%.2f s; shutdown timeout 5 s)",
           time - $t0);
    ok($ng->wait_store_ok(1, 10), "$what: store ok after the reload");
    $t0 = time;
    $ng->stop;
    cmp_ok(time - $t0, '<', 3, sprintf "$what: stop within 3 s (%.2f s)", time - $t0);
    is(scalar($ng->crashes), 0, "$what: no crash");
    my @alerts = grep { /\[alert\]|open socket/ } split /\n/, $ng->error_log;
    is(scalar @alerts, 0, "$what: no alert, no socket left open") or diag join "\n", @alerts[0 .. ($#alerts < 5 ? $#alerts : 5)];
}

subtest 'redis://' => sub {
    my $redis = NbTest::Redis->new;
    my $ng = redis_gateways(redis => $redis, n => 1);
    cycle_ok($ng, 'redis');
};

subtest 'redis-sentinel://' => sub {
    plan skip_all => 'redis-sentinel not installed' unless NbSentinel::available();
    my $s = NbSentinel->new;
    my $ng = NbTest::Nginx->new(http => std_http(store => $s->store_url(prefix => unique_prefix('ge'))));
    $ng->start;
    cycle_ok($ng, 'sentinel');
};

done_testing;
