# Routing in normal mode over three mock nodes: requests spread over every
# healthy node; a stopped node is taken out within ~fall*interval without a
# single 502; it comes back after rise passes; status/nodes show health and
# fails.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my @M = ($A, $B, $C);
my @ids = map { $_->id } @M;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M));
$ng->start;
my @workers0 = $ng->worker_pids;

my $INTERVAL = 0.2;
my $FALL     = 2;
my $RISE     = 2;
my %seen_status;    # every status code proxied requests got in this test

ok($ng->wait_all_health('up', 5, @ids), 'all three nodes are up') or diag explain $ng->status_nodes;
like(join("\n", $ng->error_log), qr/nb_maint: worker \d+ runs the health checks/, 'a worker runs the health checks');

# ---- status / nodes shape ---------------------------------------------------------
my $st = $ng->status;
is(ref $st->{upstreams}, 'ARRAY', 'status has upstreams');
is($st->{upstreams}[0]{name}, 'app', 'upstream name app');
is_deeply([sort map { $_->{id} } @{ $st->{upstreams}[0]{nodes} }], [sort @ids], 'the three nodes by $upstream_addr id');
for my $m (@M) {
    my $n = $ng->node($m->id);
    is($n->{id}, $m->id, "nodes/{id}: id " . $m->id);
    is($n->{health}, 'up', '... health up');
    ok(JSON::PP::is_bool($n->{drain}) && !$n->{drain}, '... drain false (JSON boolean)');
    is($n->{active}, 0, '... active 0');
    is($n->{fails}, 0, '... fails 0');
    like($n->{last_check} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$/, '... last_check RFC 3339');
}

# ---- spread ------------------------------------------------------------------------------
$_->reset for @M;
my $before = NbTest::mock_counts(@M);
my $h = $ng->hit(90, '/api/spread');
$seen_status{$_} += $h->{status}{$_} for keys %{ $h->{status} };
is($h->{status}{200}, 90, '90 of 90 requests 200') or diag explain $h->{status};
my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
for my $m (@M) {
    cmp_ok($h->{node}{ $m->id } // 0, '>=', 15, 'X-Node: ' . $m->id . ' answered a fair share (>= 15 of 90)');
    is($d->{ $m->id }, $h->{node}{ $m->id } // 0, '... its stats count the same number of requests');
}
is(scalar(grep { !exists $d->{$_} } grep { $_ ne '-' } keys %{ $h->{node} }), 0, 'no answer from anything else');

# ---- stop B: out within ~fall*interval, never a 502 ---------------------------------------
my $bid = $B->id;
my $fails_before = $ng->node($bid)->{fails};
my $t0 = time;
$B->stop;
my ($down_after, $n_during, %during, %during_nodes);
while (time - $t0 < 5) {
    my $r = $ng->hit(1, '/api/during');
    $n_during++;
    $during{$_} += $r->{status}{$_} for keys %{ $r->{status} };
    $during_nodes{$_} += $r->{node}{$_} for keys %{ $r->{node} };
    my $n = $ng->node_res($bid);
    if ($n->{status} == 200 && ($n->{json}{health} // '') eq 'down') { $down_after = time - $t0; last }
}
$seen_status{$_} += $during{$_} for keys %during;
ok(defined $down_after, 'stopped node B is marked down') or diag $ng->error_log_tail(20);
$down_after //= 99;
cmp_ok($down_after, '<=', $FALL * $INTERVAL + 0.8, sprintf('... within fall*interval + 0.8 s (took %.3f s)', $down_after));
cmp_ok($n_during, '>', 0, "requests were sent while B was being detected ($n_during)");
is($during{200} // 0, $n_during, '... every one of them answered 200 (no 502, retried on another node)')
    or diag explain \%during;
ok(!$during_nodes{$bid}, '... none answered by B');
ok(scalar($ng->log_grep(qr/nb_maint: node \Q$bid\E is down/)), 'error.log: "node B is down"');

my $nb = $ng->node($bid);
is($nb->{health}, 'down', 'nodes/B: health down');
cmp_ok($nb->{fails}, '>=', $FALL, "nodes/B: fails >= fall ($nb->{fails})");
cmp_ok($nb->{fails}, '>', $fails_before, 'fails grew');
my $sn = $ng->status_nodes;
is($sn->{$bid}{health}, 'down', 'status: B down');
is($sn->{ $A->id }{health}, 'up', 'status: A up');
is($sn->{ $C->id }{health}, 'up', 'status: C up');
my $f1 = $nb->{fails};
ok(NbTest::wait_until(sub { $ng->node($bid)->{fails} > $f1 }, 3), 'fails keeps growing while B stays down');
is($ng->node($A->id)->{fails}, 0, 'fails of a healthy node stays 0');

$_->reset for $A, $C;
$before = NbTest::mock_counts($A, $C);
$h = $ng->hit(60, '/api/without-b');
$seen_status{$_} += $h->{status}{$_} for keys %{ $h->{status} };
is($h->{status}{200}, 60, 'B down: 60 of 60 requests 200') or diag explain $h->{status};
ok(!$h->{node}{$bid}, 'B down: no answer from B');
cmp_ok($h->{node}{ $A->id } // 0, '>=', 15, 'B down: A gets a share');
cmp_ok($h->{node}{ $C->id } // 0, '>=', 15, 'B down: C gets a share');
$d = NbTest::count_delta($before, NbTest::mock_counts($A, $C));
is($d->{ $A->id } + $d->{ $C->id }, 60, 'B down: A and C stats count all 60 requests');

# ---- restart B: back after rise passes ------------------------------------------------------
$t0 = time;
$B->start;
my $up_after;
my $hc_at_up;
NbTest::wait_until(sub {
    my $n = $ng->node_res($bid);
    return 0 unless $n->{status} == 200 && ($n->{json}{health} // '') eq 'up';
    $up_after = time - $t0;
    $hc_at_up = $B->stats->{health_checks};
    1;
}, 5, 0.01);
ok(defined $up_after, 'restarted B is up again') or diag $ng->error_log_tail(20);
SKIP: {
    skip 'B never came up', 3 unless defined $up_after;
    cmp_ok($hc_at_up, '>=', $RISE, "B was checked at least rise=$RISE times before it was up ($hc_at_up)");
    cmp_ok($up_after, '>=', ($RISE - 1) * $INTERVAL - 0.02, sprintf('... which takes >= (rise-1)*interval (%.3f s)', $up_after));
    cmp_ok($up_after, '<=', $RISE * $INTERVAL + 1, '... and not much longer than rise*interval');
}
ok(scalar($ng->log_grep(qr/nb_maint: node \Q$bid\E is up/)), 'error.log: "node B is up"');
is($ng->node($bid)->{fails}, 0, 'fails back to 0 after B passed');

$_->reset for @M;
$before = NbTest::mock_counts(@M);
$h = $ng->hit(90, '/api/again');
$seen_status{$_} += $h->{status}{$_} for keys %{ $h->{status} };
is($h->{status}{200}, 90, 'B back: 90 of 90 requests 200');
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
for my $m (@M) {
    cmp_ok($h->{node}{ $m->id } // 0, '>=', 15, 'B back: ' . $m->id . ' answers a share');
    is($d->{ $m->id }, $h->{node}{ $m->id } // 0, '... stats agree');
}

ok(!$seen_status{502}, 'no 502 was ever seen') or diag explain \%seen_status;
is(scalar $ng->crashes, 0, 'no worker exited on a signal');
is_deeply([$ng->worker_pids], \@workers0, 'same workers as at start (none respawned)');
done_testing;
