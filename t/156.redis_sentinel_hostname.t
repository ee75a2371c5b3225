# Issue 21 item 8: a sentinel that names the primary by host name
# ("sentinel announce-hostnames yes", as on Kubernetes).  Before the fix the
# name went to hiredis, whose getaddrinfo() blocks the worker.  Now it is
# resolved with nginx's resolver (the "resolver" directive of http{}), and
# without a resolver it is refused with an error that says so.  A local DNS
# server (t/lib/NbDNS.pm) answers "localhost" and logs the queries.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbSentinel;
use NbDNS;

plan skip_all => 'redis-sentinel not installed' unless NbSentinel::available();

my $s = NbSentinel->new(monitor_host => 'localhost');
like($s->sentinel_cli(0, 'SENTINEL', 'get-master-addr-by-name', 'nbm'), qr/^localhost\n/,
     'the sentinels name the primary "localhost"');
my $port = $s->primary->port;
my $dns = NbDNS->new(records => { localhost => ['127.0.0.1'] });

sub gateway {
    my ($resolver) = @_;
    my $g = NbTest::Nginx->new(workers => 2, http => std_http(
        store => $s->store_url(prefix => unique_prefix('hn')),
        http_extra => $resolver ? "resolver 127.0.0.1:$resolver ipv6=off;\nresolver_timeout 2s;\n" : ''));
    $g->start;
    return $g;
}

# ---- with a resolver: the name is resolved by nginx, not by hiredis ----------------------
my $A = gateway($dns->port);
ok($A->wait_store_ok(1, 10), 'with a resolver: store ok');
my $st = $A->status;
is($st->{store}{primary}, "127.0.0.1:$port", 'store.primary: the address the resolver gave');
is($A->admin(POST => 'mode', { mode => 'upgrade', reason => 'by name' })->{status}, 200, 'a write: 200');
ok(scalar(grep { $_ eq 'localhost A' } $dns->queries), 'nginx asked the DNS server for "localhost"')
    or diag join ', ', $dns->queries;

# ---- without one: refused, clearly; nothing blocks ------------------------------------------
my $B = gateway(undef);
ok($B->wait_store_ok(0, 5), 'without a resolver: store not ok');
sleep 1.5;
$st = $B->status;
ok(!$st->{store}{ok}, 'still not ok');
like($st->{store}{error} // '', qr/host name "localhost".*needs a "resolver"/,
     'store.error: the name needs a "resolver"') or diag $st->{store}{error};
like($B->error_log, qr/host name "localhost" needs a "resolver"/, 'error.log says so');
is($B->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 503, 'a write: 503');

# ---- a name the DNS server does not know ----------------------------------------------------
my $dns2 = NbDNS->new(records => {});
my $C = gateway($dns2->port);
ok($C->wait_store_ok(0, 5), 'name unknown to DNS: store not ok');
sleep 1.5;
like($C->status->{store}{error} // '', qr/host name "localhost" could not be resolved/,
     'store.error: could not be resolved');

# ---- the DNS server learns it: the gateway follows by itself ------------------------------
$dns2->set(localhost => ['127.0.0.1']);
ok($C->wait_store_ok(1, 10), 'once the name resolves: store ok');

is(scalar(map { $_->crashes } $A, $B, $C), 0, 'no crash');
$_->stop for $A, $B, $C;
unlike($_->error_log, qr/\[alert\]/, 'no alert') for $A, $B, $C;
done_testing;
