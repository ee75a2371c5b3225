# The redis store's local cache file is written off the event loop: a cache
# write stuck on a slow disk (its temporary file is a FIFO nobody reads)
# holds a thread, never a worker.  With one worker, a write answers 200 and
# status keeps answering within 1 s while the cache write is stuck; once
# the disk lets go, the cache follows the state (ordered: the last state
# wins), and a gateway restarted while Redis is down serves it (fail-static).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX qw(mkfifo);
use Fcntl qw(O_RDONLY O_NONBLOCK);
use Time::HiRes qw(time sleep);

my $redis = NbTest::Redis->new;
my $G = redis_gateways(redis => $redis, n => 1, workers => 1);
ok($G->wait_store_ok(1, 10), 'store.ok') or BAIL_OUT('no store');
my $V = $G->status->{version};
my $cache = $G->prefix . '/nb_maint_redis_cache.json';

# every worker's temporary cache file becomes a FIFO: open() for writing
# blocks until someone reads
my @fifo;
for my $pid ($G->worker_pids) {
    my $f = "$cache.$pid.tmp";
    unlink $f;
    mkfifo($f, 0600) or die "mkfifo $f: $!";
    push @fifo, $f;
}
ok(@fifo, 'FIFOs in place of the temporary cache files');

# let any blocked writer go (also when the test dies half way)
sub release {
    for my $f (@fifo) {
        next unless -p $f;
        sysopen(my $fh, $f, O_RDONLY | O_NONBLOCK) or next;
        my $end = time + 3;
        while (time < $end) {
            my $n = sysread($fh, my $buf, 65536);
            last if defined $n && $n == 0;      # the writer closed it
            sleep 0.05 unless $n;
        }
        close $fh;
    }
}
END { release() }

# ---- a write while the cache write is stuck -------------------------------------
my $t0 = time;
my $r = $G->admin(POST => 'mode', { mode => 'upgrade', reason => 'disk slow' });
my $took = time - $t0;
is($r->{status}, 200, 'the write answers 200 while the cache write is stuck')
    or diag("$r->{status} $r->{content}");
cmp_ok($took, '<', 1.5, sprintf('... within 1.5 s (%.2f s)', $took));
release() unless $r->{status} == 200;     # the old way: the worker is stuck

my $slow = 0;
for (1 .. 10) {
    my $t = time;
    my $st = eval { $G->status };
    $slow++ if !$st || time - $t > 1;
    sleep 0.1;
}
is($slow, 0, '10 status requests answered within 1 s each while the cache write is stuck');
is($G->status->{mode}, 'upgrade', 'the state changed');
is($G->status->{version}, $V + 1, 'version moved by one');

# a second change meanwhile: the cache must end at the last one
$r = $G->admin(POST => 'mode', { mode => 'upgrade', reason => 'second change' });
is($r->{status}, 200, 'a second write answers 200 too');
my $last = $G->status->{version};

# ---- the disk lets go: the cache follows, in order --------------------------------
release();
ok(NbTest::wait_until(sub {
    -f $cache && !-p $cache && (($G->read_file('nb_maint_redis_cache.json') // '') =~ /"version":\s*$last\b/)
}, 10), "the cache file holds version $last after the disk let go")
    or diag($G->read_file('nb_maint_redis_cache.json') // '(none)');
my $events = $G->read_file('nb_maint_redis_cache.json.events') // '';
like($events, qr/"version":\s*$last\b/, 'the cached events end with the last change');

# ---- fail-static: Redis down, nginx restarted, the cache serves ------------------
$redis->stop;
$G->restart;
my $st = $G->status;
is($st->{mode}, 'upgrade', 'after restart with Redis down: mode from the cache');
is($st->{version}, $last, 'after restart: version from the cache');
is($st->{reason}, 'second change', 'after restart: reason from the cache');
ok(!$st->{store}{ok}, 'after restart: store.ok false');
is($G->get('/')->{status}, 503, 'after restart: the public gets the 503');
is($G->crashes, 0, 'no worker crashed');

done_testing;
