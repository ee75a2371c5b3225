# Drain: a drained node gets no new requests while its running ones finish
# (active > 0, then 0); undrain; drain survives a restart; unknown node ids;
# every node drained gives the 503 no_healthy_node page, not a 502.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my ($ng, @M) = NbTest::cluster3();
my ($A, $B, $C) = @M;
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;

sub total { my ($d) = @_; my $t = 0; $t += $_ for values %$d; $t }

# a request sent on its own connection, answer read later
sub send_slow {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port, Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    binmode $s;
    syswrite $s, "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    return $s;
}
sub read_all {
    my ($s, $timeout) = @_;
    my $buf = '';
    my $end = time + ($timeout // 10);
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    while (time < $end) {
        next unless select(my $rout = $rin, undef, undef, 0.2);
        my $n = sysread $s, my $chunk, 65536;
        last unless $n;
        $buf .= $chunk;
    }
    close $s;
    return parse_response($buf);
}

# ---- slow requests in flight on A -----------------------------------------------------------
$A->delay(1500);
$_->reset for @M;
my @slow;
for (1 .. 30) {
    push @slow, send_slow("/api/slow$_");
    last if NbTest::wait_until(sub { $A->stats->{active} >= 2 }, 0.15);
}
my $a_active = $A->stats->{active};
cmp_ok($a_active, '>=', 2, "slow requests running on A ($a_active), " . scalar(@slow) . ' sent');
my $n = $ng->node($aid);
cmp_ok($n->{active}, '>', 0, "nodes/A: active > 0 while they run ($n->{active})");
is($n->{active}, $a_active, 'nodes/A: active equals the requests A is working on');

my $v0 = $ng->status->{version};
my $r = $ng->admin(POST => "nodes/$aid/drain");
is($r->{status}, 200, 'POST nodes/A/drain') or diag $r->{content};
is($r->{json}{version}, $v0 + 1, '... version +1');
ok(ref $r->{json}{upstreams} eq 'ARRAY', '... answers the full status');
my ($an) = grep { $_->{id} eq $aid } map { @{ $_->{nodes} } } @{ $r->{json}{upstreams} || [] };
ok($an && $an->{drain}, '... A drain true in it');
my @ev = grep { ($_->{action} // '') eq 'drain' } $ng->events($v0);
is(scalar @ev, 1, 'event drain');
is($ev[0]{node}, $aid, '... node A') if @ev;

$r = $ng->admin(POST => "nodes/$aid/drain", {});
is($r->{status}, 200, 'drain A again ({} body): 200');
is($r->{json}{version}, $v0 + 1, '... version unchanged');

my $before = NbTest::mock_counts(@M);
my $h = $ng->hit(60, '/api/new');
my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{200}, 60, 'drained A: 60 of 60 new requests 200');
ok(!$h->{node}{$aid}, '... none answered by A (X-Node)');
is($d->{$aid}, 0, '... none reached A (stats)');
is($d->{$bid} + $d->{$cid}, 60, '... B and C took all 60');

$n = $ng->node($aid);
is($n->{drain}, JSON::PP::true, 'nodes/A: drain true');
cmp_ok($n->{active}, '>', 0, "nodes/A: still active while the slow ones run ($n->{active})");

my @ans = map { read_all($_) } @slow;
my @on_a = grep { ($_->{headers}{'x-node'} // '') eq $aid } @ans;
is(scalar(@on_a), $a_active, 'the slow requests on A finished after the drain');
is(scalar(grep { $_->{status} == 200 } @ans), scalar(@ans), '... every request sent before the drain got 200');
ok(NbTest::wait_until(sub { $ng->node($aid)->{active} == 0 }, 3), 'nodes/A: active falls to 0');
$A->delay(0);

$r = $ng->admin(POST => "nodes/$aid/undrain");
is($r->{status}, 200, 'POST nodes/A/undrain');
is($r->{json}{version}, $v0 + 2, '... version +1');
is($ng->node($aid)->{drain}, JSON::PP::false, 'nodes/A: drain false');
@ev = grep { ($_->{action} // '') eq 'undrain' } $ng->events($v0);
is(scalar @ev, 1, 'event undrain');
is($ev[0]{node}, $aid, '... node A') if @ev;
$before = NbTest::mock_counts(@M);
$h = $ng->hit(60, '/api/back');
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
cmp_ok($h->{node}{$aid} // 0, '>=', 10, 'undrained A gets requests again');
is($d->{$aid}, $h->{node}{$aid} // 0, '... stats agree');

# ---- drain survives a restart --------------------------------------------------------------
is($ng->admin(POST => "nodes/$aid/drain")->{status}, 200, 'drain A');
$ng->restart;
is($ng->node($aid)->{drain}, JSON::PP::true, 'after restart: nodes/A drain true');
my ($sa) = grep { $_->{id} eq $aid } map { @{ $_->{nodes} } } @{ $ng->status->{upstreams} };
is($sa && $sa->{drain}, JSON::PP::true, 'after restart: status lists A drained');
ok($ng->wait_all_health('up', 5, @ids), 'after restart: all up');
$before = NbTest::mock_counts(@M);
$h = $ng->hit(40, '/api/restarted');
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{200}, 40, 'after restart: 40 of 40 requests 200');
is($d->{$aid}, 0, 'after restart: none reached the drained A');
is($ng->admin(POST => "nodes/$aid/undrain")->{status}, 200, 'undrain A');

# ---- unknown node ids ------------------------------------------------------------------------
for my $req (['GET', 'nodes/127.0.0.1:1'], ['POST', 'nodes/127.0.0.1:1/drain'],
             ['POST', 'nodes/127.0.0.1:1/undrain'], ['GET', 'nodes/bogus']) {
    $r = $ng->admin(@$req);
    is($r->{status}, 404, "$req->[0] $req->[1]: 404");
    is(ref $r->{json} eq 'HASH' && $r->{json}{error}{code}, 'unknown_node', '... unknown_node');
}
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:1' });
is($r->{status}, 400, 'POST mode maintenance with an unknown node: 400');
is(ref $r->{json} eq 'HASH' && $r->{json}{error}{code}, 'unknown_node', '... unknown_node');
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => '127.0.0.1:1' });
is($r->{status}, 400, 'POST mode upgrade with an unknown node: 400');
is($ng->status->{mode}, 'normal', 'state unchanged (normal)');

# ---- every node drained -------------------------------------------------------------------------
is($ng->admin(POST => "nodes/$_/drain")->{status}, 200, "drain $_") for @ids;
$before = NbTest::mock_counts(@M);
$h = $ng->hit(50, '/api/none', keep => 1);
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{503} // 0, 50, 'all drained: 50 of 50 requests 503') or diag explain $h->{status};
ok(!$h->{status}{502}, '... no 502');
is($h->{nb}{no_healthy_node} // 0, 50, '... X-NB-Maint: no_healthy_node');
my $j = ($h->{res}[0]{json} || {})->{error} || {};
is($j->{nb_maint}, 'no_healthy_node', '... JSON nb_maint no_healthy_node');
is($j->{code}, 'APP_STOPPED', '... JSON code APP_STOPPED');
is(total($d), 0, '... zero requests reached any node');

# drain applies in maintenance too: designated B drained -> no_healthy_node
is($ng->admin(POST => "nodes/$_/undrain")->{status}, 200, "undrain $_") for $aid, $cid;
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid });
is($r->{status}, 200, 'maintenance on the drained B');
$before = NbTest::mock_counts(@M);
$h = $ng->hit(20, '/api/maint-drained');
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{503} // 0, 20, 'maintenance on drained B: 503');
is($h->{nb}{no_healthy_node} // 0, 20, '... no_healthy_node');
is(total($d), 0, '... nothing reached A, B or C');
is($ng->admin(POST => "nodes/$bid/undrain")->{status}, 200, 'undrain B');
$h = $ng->hit(20, '/api/maint');
is($h->{node}{$bid} // 0, 20, 'maintenance, B undrained: all to B');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
