# Issue 21 item 11: versions above 2^53 with the Redis store.  Lua's numbers
# are doubles: 9007199254740993 (2^53 + 1) reads as 9007199254740992.  The
# re-publish script (Redis behind this gateway) must compare versions as
# decimal strings, as the compare-and-set script does: a gateway at 2^53+1
# puts its state back over Redis' 2^53, with the audit line Redis lacks,
# and the next writes continue exactly.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $redis = NbTest::Redis->new;
my $G = redis_gateways(redis => $redis, n => 1, workers => 1);
my $P = $G->redis_prefix;
ok($G->wait_store_ok(1, 10), 'store ok');
is($G->admin(POST => 'mode', { mode => 'upgrade', reason => 'small' })->{status}, 200, 'a first write');
ok(NbTest::wait_until(sub { ($G->read_file('nb_maint_redis_cache.json') // '') =~ /"small"/ }, 5),
   'the cache file has it');
$G->stop;

my $v0 = '9007199254740992';    # 2^53
my $v1 = '9007199254740993';    # 2^53 + 1: no double holds it
my $v2 = '9007199254740994';

sub state_json {
    my ($v, $reason) = @_;
    return '{"mode":"upgrade","node":null,"restoring_from":null,"version":' . $v
         . ',"since":"2026-01-01T00:00:00Z","reason":"' . $reason . '","retry_after":300,"drain":[]}';
}
sub event_json {
    my ($v, $reason) = @_;
    return '{"version":' . $v . ',"time":"2026-01-01T00:00:00Z","actor":"ops","action":"mode",'
         . '"from":"upgrade","to":"upgrade","node":null,"reason":"' . $reason . '"}';
}

# the gateway's cache: 2^53 + 1; Redis: 2^53 (it lost the last change)
$G->write_file('nb_maint_redis_cache.json', state_json($v1, 'big') . "\n");
$G->write_file('nb_maint_redis_cache.json.events', event_json($v0, 'at 2^53') . "\n"
                                                  . event_json($v1, 'big') . "\n");
$redis->cli('SET', "$P:version", $v0);
$redis->cli('SET', "$P:state", state_json($v0, 'at 2^53'));
$redis->cli('DEL', "$P:events");
$redis->cli('RPUSH', "$P:events", event_json($v0, 'at 2^53'));

$G->start;
ok(NbTest::wait_until(sub { ($redis->cli('GET', "$P:version") // '') eq $v1 }, 8),
   "the gateway re-published version $v1 over redis' $v0")
    or diag('redis has ' . $redis->cli('GET', "$P:version"));
like($redis->cli('GET', "$P:state") // '', qr/"reason":"big"/, "redis has the gateway's state");
my @ev = $redis->cli('LRANGE', "$P:events", 0, -1);
is(scalar @ev, 2, 'redis: the audit line it lacked is appended');
like($ev[-1] // '', qr/"version":$v1\b/, "... version $v1");
like($G->admin(GET => 'status')->{content}, qr/"version":$v1\b/, 'status: the exact version');
ok($G->wait_store_ok(1, 10), 'store ok');

my $r = $G->admin(POST => 'mode', { mode => 'upgrade', reason => 'next' });
is($r->{status}, 200, 'a write after it') or diag $r->{content};
like($r->{content}, qr/"version":$v2\b/, "answered with version $v2");
is($redis->cli('GET', "$P:version"), $v2, "redis: version $v2");
like(($redis->cli('LRANGE', "$P:events", -1, -1))[0] // '', qr/"version":$v2\b/, 'redis: its audit line');
my $warn = () = $G->error_log =~ /re-publishing ours/g;
cmp_ok($warn, '<=', 1, "re-published once, not every second ($warn)");

is(scalar($G->crashes), 0, 'no crash');
$G->stop;
done_testing;
