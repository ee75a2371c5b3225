# Issue 9, defect 14: the bypass cookie key that Redis provides is checked
# whole before it is used, then published at once.  A malformed key in
# Redis (bad hex at the end, wrong length) changes nothing: cookies signed
# with the current key stay valid on every gateway.  A valid new key
# replaces the old one entirely.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(sleep);

my $redis = NbTest::Redis->new;
my ($A, $B) = redis_gateways(redis => $redis, n => 2, std => { bypass => '10.255.255.0/24' });
my $P = $A->redis_prefix;
ok($A->wait_store_ok(1, 10) && $B->wait_store_ok(1, 10), 'both gateways on redis');

my $key0 = '';
ok(NbTest::wait_until(sub { $key0 = $redis->cli('GET', "$P:secret"); length $key0 == 64 }, 10),
   'the cookie key is kept in redis');

is($A->admin(POST => 'mode', { mode => 'upgrade', reason => 'secret' })->{status}, 200, 'upgrade');
ok($B->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), 'B follows');

my $cookie = $A->admin(POST => 'bypass', {})->{json}{cookie};
ok($cookie, 'a bypass cookie from A');

sub bypass_ok {
    my ($g, $c) = @_;
    return $g->get('/', { Cookie => $c })->{status} == 200;
}
ok(bypass_ok($A, $cookie) && bypass_ok($B, $cookie), 'the cookie passes on both gateways');
is($A->get('/')->{status}, 503, 'without it: 503');

# the owners re-read redis every second or two
sub settle { sleep 2.5 }

my $other = join '', map { sprintf '%02x', (hex(substr($key0, 2 * $_, 2)) + 1) % 256 } 0 .. 31;
for my $bad (substr($other, 0, 62) . 'zz',           # another key's hex, then garbage
             'zz' . substr($key0, 2),                 # garbage first
             substr($key0, 0, 40),                    # too short
             $key0 . 'ab')                            # too long
{
    is($redis->cli('SET', "$P:secret", $bad), 'OK', "malformed key in redis: $bad");
    settle();
    ok(bypass_ok($A, $cookie) && bypass_ok($B, $cookie),
       'the cookie signed with the current key still passes on both') or last;
}
ok(scalar($A->log_grep(qr/malformed cookie key/)) || scalar($B->log_grep(qr/malformed cookie key/)),
   'the malformed key is reported');

# a valid new key: old cookies stop, new ones work
my $key1 = join '', map { sprintf '%02x', int rand 256 } 1 .. 32;
$redis->cli('SET', "$P:secret", $key1);
ok(NbTest::wait_until(sub { !bypass_ok($A, $cookie) && !bypass_ok($B, $cookie) }, 6),
   'a new key from redis replaces the old one on both gateways');
my $c1 = $B->admin(POST => 'bypass', {})->{json}{cookie};
ok(bypass_ok($A, $c1) && bypass_ok($B, $c1), 'a cookie signed with the new key passes on both');

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no worker crashed');
done_testing;
