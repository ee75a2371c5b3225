# Issue 9, defect 15: drain flags of nodes a gateway does not know are
# kept in the stored state when it writes.  Two gateways on one Redis with
# different upstreams (A: n1 n2, B: n2 n3); and a file store whose
# configuration loses a node for a while (a reload without it, then back).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my @port = map { NbTest::free_port() } 1 .. 3;
my @id = map { "127.0.0.1:$_" } @port;
my $redis = NbTest::Redis->new;
my $prefix = NbTest::unique_prefix('ud');
my $store = $redis->url(prefix => $prefix);

my $A = NbTest::Nginx->new(http => cluster_http(nodes => [@port[0, 1]], store => $store));
my $B = NbTest::Nginx->new(http => cluster_http(nodes => [@port[1, 2]], store => $store));
$_->start for $A, $B;
ok($A->wait_store_ok(1, 10) && $B->wait_store_ok(1, 10), 'both gateways on redis');

sub stored_drain {
    my $s = eval { json_decode($redis->cli('GET', "$prefix:state")) } || {};
    return [sort @{ $s->{drain} || [] }];
}

is($A->admin(POST => "nodes/$id[0]/drain")->{status}, 200, 'A drains n1 (unknown to B)');
is_deeply(stored_drain(), [$id[0]], 'redis: n1 drained');
ok($B->wait_status(sub { $_[0]{version} == $A->status->{version} }, 5), 'B follows');

is($B->admin(POST => "nodes/$id[2]/drain")->{status}, 200, 'B drains n3 (unknown to A)');
is_deeply(stored_drain(), [sort @id[0, 2]], 'redis: n1 kept, n3 drained');
is($B->admin(POST => 'mode', { mode => 'upgrade', reason => 'u' })->{status}, 200, 'B: upgrade');
is_deeply(stored_drain(), [sort @id[0, 2]], 'redis: both kept after a mode change by B');
ok($A->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), 'A follows');
is($A->node($id[0])->{drain}, JSON::PP::true, 'A: n1 still drained');
is($A->admin(POST => "nodes/$id[1]/drain")->{status}, 200, 'A drains n2');
is_deeply(stored_drain(), [sort @id], 'redis: all three, A kept n3');
is($A->admin(POST => "nodes/$id[0]/undrain")->{status}, 200, 'A undrains n1');
is_deeply(stored_drain(), [sort @id[1, 2]], 'redis: n1 undrained, n3 still kept');
ok($B->wait_status(sub { $_[0]{version} == $A->status->{version} }, 5), 'B follows');
is($B->node($id[2])->{drain}, JSON::PP::true, 'B: n3 still drained');

# ---- file store: a node leaves the configuration and comes back ---------------
my $F = NbTest::Nginx->new(http => cluster_http(nodes => [@port[0, 1]]));
$F->start;
is($F->admin(POST => "nodes/$id[0]/drain")->{status}, 200, 'file: drain n1');
$F->write_conf(http => cluster_http(nodes => [$port[1]]));
ok($F->reload, 'reload without n1');
is($F->admin(POST => "nodes/$id[1]/drain")->{status}, 200, 'file: drain n2 (a write without n1 known)');
my $file = json_decode($F->read_file('state.json'));
is_deeply([sort @{ $file->{drain} }], [sort @id[0, 1]], 'state file: n1 kept');
$F->write_conf(http => cluster_http(nodes => [@port[0, 1]]));
ok($F->reload, 'reload with n1 again');
is($F->node($id[0])->{drain}, JSON::PP::true, 'file: n1 is drained again');

is(scalar(map { $_->crashes } $A, $B, $F), 0, 'no worker crashed');
done_testing;
