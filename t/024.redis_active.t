# In-flight counts are cluster-wide with the redis store: a slow request
# through gateway A shows in gateway B's "active" for that node (and goes
# away once it is done), so "drain --wait" works whichever gateway is asked.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $redis = NbTest::Redis->new;
my $node = NbTest::Mock->new;
my $prefix = NbTest::unique_prefix('act');
my $store = $redis->url(prefix => $prefix);

my @gw = map {
    NbTest::Nginx->new(http => cluster_http(nodes => [$node], store => $store));
} 1 .. 2;
$_->start for @gw;
my ($A, $B) = @gw;
my $id = $node->id;

for my $g ($A, $B) {
    ok($g->wait_store_ok(1, 10), 'store ok');
    ok($g->wait_health($id, 'up', 5), 'node up');
}

is($B->node($id)->{active}, 0, 'B: nothing in flight yet');

# three slow requests through A, in children
my @kids;
for (1 .. 3) {
    my $pid = fork // die $!;
    if (!$pid) {
        my $r = HTTP::Tiny->new(timeout => 10)->get($A->url('/slow?sleep_ms=2500'));
        POSIX::_exit($r->{status} == 200 ? 0 : 1);
    }
    push @kids, $pid;
}

my $seen = 0;
my $t0 = time;
while (time - $t0 < 2.2) {
    $seen = $B->node($id)->{active} // 0;
    last if $seen >= 3;
    sleep 0.1;
}
is($seen, 3, "B reports A's 3 requests in flight (after " . sprintf('%.1f', time - $t0) . ' s)');
is($A->node($id)->{active}, 3, 'A reports them too');
like($B->admin(GET => 'metrics')->{content},
     qr/^nb_maint_node_active\{upstream="app",node="\Q$id\E"\} 3$/m, 'B: metrics agree');

my $ok = 0;
for my $k (@kids) { waitpid($k, 0); $ok++ if $? == 0 }
is($ok, 3, 'the slow requests finished with 200');

my $zero = $B->wait_status(sub {
    my ($n) = grep { $_->{id} eq $id } map { @{ $_->{nodes} } } @{ $_[0]{upstreams} };
    $n && $n->{active} == 0;
}, 5);
ok($zero, 'B: active back to 0 once they are done');

my @keys = split /\n/, $redis->cli('KEYS', "$prefix:active:*");
is(scalar @keys, 2, 'one expiring hash per gateway') or diag "@keys";
my $ttl = $redis->cli('TTL', $keys[0]);
ok($ttl > 0 && $ttl <= 5, "the hash expires ($ttl s)");

is($_->crashes, 0, 'no worker crashed') for $A, $B;
done_testing;
