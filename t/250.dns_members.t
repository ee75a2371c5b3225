# nb_maint_resolve (issue 19): an upstream's nodes from a DNS name, followed
# at run time.  A local DNS server (t/lib/NbDNS.pm) whose answers the test
# changes, mock nodes on 127.0.0.x under one port: a new address gets
# traffic only after rise checks, a vanished one gets no new requests and
# leaves status, resolver failure keeps the last set; config errors.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbDNS;
use Time::HiRes qw(time sleep);

my $dns = NbDNS->new(ttl => 1);
my $P = free_port();
my $name = 'app.nb.test';

sub dns_http { $dns->http(name => $name, port => $P, @_) }

sub pod { NbTest::Mock->new(host => "127.0.0.$_[0]", port => $P) }

# ---- configuration errors ---------------------------------------------------
{
    my @bad = (
        [ 'no resolver', sub { (my $h = dns_http()) =~ s/^resolver .*\n//m; $h },
          qr/nb_maint_resolve.*needs a "resolver"/ ],
        [ 'server lines', sub { dns_http(upstream_extra => "    server 127.0.0.1:1;\n") },
          qr/cannot be combined with "server"/ ],
        [ 'checks off', sub { dns_http(check => 'off') }, qr/needs health checks/ ],
        [ 'an address', sub { (my $h = dns_http()) =~ s/\Q$name\E/127.0.0.9/; $h },
          qr/is an address, not a name/ ],
        [ 'expect above max', sub { dns_http(params => 'max=2 expect=3') },
          qr/expect= above max=/ ],
        [ 'max too big', sub { dns_http(params => 'max=65') }, qr/invalid value "max=65"/ ],
        [ 'unknown parameter', sub { dns_http(params => 'foo=1') }, qr/unknown parameter "foo=1"/ ],
        [ 'zone', sub { dns_http(upstream_extra => "    zone appz 64k;\n") },
          qr/cannot be combined with "zone"/ ],
    );
    # nginx 1.27.3+: its own "server ... resolve" needs peers nb_maint
    # cannot follow; nginx refuses it in an nb_maint upstream
    push @bad, [ 'server ... resolve (1.27.3+)', sub {
                     dns_http(upstream_extra => "    zone appz 64k;\n")
                         =~ s/nb_maint_resolve [^;]*;/server $name:$P resolve;/r },
                 qr/does not support resolving names at run time/ ]
        if NbTest::nginx_version() >= 1027003;
    for my $b (@bad) {
        my $ng = NbTest::Nginx->new(http => $b->[1]->());
        my ($rc, $out) = $ng->test_config;
        isnt($rc, 0, "nginx -t fails: $b->[0]");
        like($out, $b->[2], "... with a clear message ($b->[0])");
    }
}

# ---- members from DNS --------------------------------------------------------
my %pods = map { ($_ => pod($_)) } 2, 3;
$dns->set($name => [ '127.0.0.2', '127.0.0.3' ]);

my $ng = NbTest::Nginx->new(http => dns_http());
$ng->start;

ok($ng->wait_all_health('up', 10, "127.0.0.2:$P", "127.0.0.3:$P"),
   'both addresses of the name became nodes and are up');
my $st = $ng->status;
my ($up) = grep { $_->{name} eq 'app' } @{ $st->{upstreams} };
is($up->{resolve}{name}, "$name:$P", 'status: resolve.name');
ok($up->{resolve}{ok}, 'status: resolve.ok');
is($up->{resolve}{addresses}, 2, 'status: resolve.addresses');
is(scalar @{ $up->{nodes} }, 2, 'two nodes, no empty slots listed');
is($up->{nodes}[0]{name}, "$name:$P", 'a node has the DNS name as "name"');
my $met = $ng->admin(GET => 'metrics')->{content};
like($met, qr/^nb_maint_resolve_ok\{upstream="app"\} 1$/m, 'metrics: nb_maint_resolve_ok 1');
like($met, qr/^nb_maint_resolve_addresses\{upstream="app"\} 2$/m, 'metrics: 2 addresses');
ok(!$up->{nodes}[0]{leaving}, '... and is not leaving');

my $h = $ng->hit(40, '/api/x');
is($h->{status}{200}, 40, '40 requests: all 200');
ok($h->{node}{"127.0.0.2:$P"} && $h->{node}{"127.0.0.3:$P"}, 'both members get traffic')
    or diag explain $h->{node};

# ---- a new pod: traffic only after rise ------------------------------------
$pods{4} = pod(4);
$pods{4}->set_state('fail');
$dns->set($name => [ '127.0.0.2', '127.0.0.3', '127.0.0.4' ]);
ok($ng->wait_status(sub { $ng->status_nodes->{"127.0.0.4:$P"} }, 5), 'the new address is a node');
ok($ng->wait_health("127.0.0.4:$P", 'down', 5), 'failing its checks: down');
$h = $ng->hit(30, '/api/x');
ok(!$h->{node}{"127.0.0.4:$P"}, 'no request to the new node before it passes its checks');
$pods{4}->set_state('running');
ok($ng->wait_health("127.0.0.4:$P", 'up', 5), 'up after rise passes');
ok(NbTest::wait_until(sub { $ng->hit(10, '/api/x')->{node}{"127.0.0.4:$P"} }, 5),
   'then it gets traffic');

# ---- a vanished address: no new requests, then gone ------------------------
$dns->set($name => [ '127.0.0.3', '127.0.0.4' ]);
ok($ng->wait_status(sub {
       my $n = $ng->status_nodes->{"127.0.0.2:$P"};
       !$n || $n->{leaving} }, 5), '127.0.0.2 left the answer: leaving (or gone)');
$pods{2}->reset;
$h = $ng->hit(30, '/api/x');
is($h->{status}{200}, 30, 'requests still 200');
is($pods{2}->requests, 0, 'no request reached the leaving node');
ok($ng->wait_status(sub { !$ng->status_nodes->{"127.0.0.2:$P"} }, 5),
   'it left status once its requests were done');
ok(scalar $ng->log_grep(qr/127\.0\.0\.2:\d+ is gone/), 'error.log: "is gone"');

# ---- resolver failure: fail-static --------------------------------------------
$dns->down(1);
ok($ng->wait_status(sub {
       my ($u) = grep { $_->{name} eq 'app' } @{ $_[0]{upstreams} };
       !$u->{resolve}{ok} && defined $u->{resolve}{error} }, 8),
   'resolver down: resolve.ok false with an error');
($up) = grep { $_->{name} eq 'app' } @{ $ng->status->{upstreams} };
is(scalar @{ $up->{nodes} }, 2, 'the last good set is kept');
$met = $ng->admin(GET => 'metrics')->{content};
like($met, qr/^nb_maint_resolve_ok\{upstream="app"\} 0$/m, 'metrics: nb_maint_resolve_ok 0');
like($met, qr/^nb_maint_resolve_failures_total\{upstream="app"\} [1-9]/m, 'metrics: failures counted');
$h = $ng->hit(20, '/api/x');
is($h->{status}{200}, 20, 'and traffic goes on');
$dns->set();
$dns->down(0);
sleep 1.5;
($up) = grep { $_->{name} eq 'app' } @{ $ng->status->{upstreams} };
is(scalar @{ $up->{nodes} }, 2, 'an empty answer (NXDOMAIN) keeps the last set too');
like($up->{resolve}{error} // '', qr/not found|Host not found/i, '... reported as an error');
$dns->set($name => [ '127.0.0.3', '127.0.0.4' ]);
ok($ng->wait_status(sub {
       my ($u) = grep { $_->{name} eq 'app' } @{ $_[0]{upstreams} };
       $u->{resolve}{ok} }, 5), 'the resolver answers again: resolve.ok');

# ---- a reload keeps the members (same table, same node entries) ----------------
my $before = $ng->status_nodes;
$ng->reload;
my $after = $ng->status_nodes;
is_deeply([ sort keys %$after ], [ sort keys %$before ], 'after a reload: the same members')
    or diag explain [ [ sort keys %$before ], [ sort keys %$after ] ];
is(scalar(grep { $_->{health} eq 'up' } values %$after), 2, '... still up (health kept)');
$h = $ng->hit(20, '/api/x');
is($h->{status}{200}, 20, '... and serving');
$dns->set($name => [ '127.0.0.4' ]);
ok($ng->wait_status(sub { !$ng->status_nodes->{"127.0.0.3:$P"} }, 8),
   'the new generation follows the name: a member leaves');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
