# Issue 9, defect 4: the restore gate holds on every gateway sharing a
# Redis store.  restore_started travels with the stored state, so each
# gateway counts only health checks that started after the restore was
# requested; with rise=3 neither gateway goes normal early, also on the
# second restore (before the fix the other gateway went normal at once).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $INTERVAL = 0.5;    # seconds; rise=3: >= 2 intervals after the request
my $redis = NbTest::Redis->new;
my @nodes = map { NbTest::Mock->new } 1 .. 2;
my $prefix = NbTest::unique_prefix('rg');
my $store = $redis->url(prefix => $prefix);

my @gw = map {
    NbTest::Nginx->new(http => cluster_http(nodes => \@nodes, store => $store,
                       check => 'interval=500ms timeout=400ms rise=3 fall=2'));
} 1 .. 2;
$_->start for @gw;
my ($A, $B) = @gw;

for my $g ($A, $B) {
    ok($g->wait_store_ok(1, 10), 'store ok');
    ok($g->wait_all_health('up', 10, map { $_->id } @nodes), 'nodes up');
}

for my $round (1 .. 2) {
    my $r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => "round $round" });
    is($r->{status}, 200, "round $round: upgrade through A");
    ok($B->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), "round $round: B follows");
    sleep 2 * $INTERVAL;    # both gateways keep checking the healthy nodes

    my $t0 = time;
    $r = $A->admin(POST => 'restore', {});
    is($r->{status}, 200, "round $round: restore through A");
    is($r->{json}{mode}, 'restoring', "round $round: restoring");
    my $started = $r->{json}{restore_started};
    like($started // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
         "round $round: restore_started in the answer");

    # the stored state carries it, and B shows the same instant
    my $stored = json_decode($redis->cli('GET', "$prefix:state"));
    is($stored->{restore_started}, $started, "round $round: restore_started in redis");
    my $bs = $B->wait_status(sub { $_[0]{mode} eq 'restoring' }, 5);
    is($bs && $bs->{restore_started}, $started, "round $round: B has the same restore_started");

    # watch both until normal: never before 2 intervals after the request
    my %normal_at;
    my $end = $t0 + 10;
    while (time < $end && keys %normal_at < 2) {
        for my $i (0, 1) {
            next if $normal_at{$i};
            my $st = $gw[$i]->status;
            $normal_at{$i} = time - $t0 if $st->{mode} eq 'normal';
            if ($st->{mode} eq 'restoring' && time - $t0 < 1.5 * $INTERVAL) {
                ok(scalar @{ $st->{restore}{pending} }, "round $round: gateway $i lists pending nodes")
                    unless $gw[$i]{seen_pending}{$round}++;
            }
        }
        sleep 0.02;
    }
    for my $i (0, 1) {
        ok(defined $normal_at{$i}, "round $round: gateway $i normal in the end");
        cmp_ok($normal_at{$i} // 0, '>=', 1.9 * $INTERVAL,
               sprintf("round $round: gateway %s not normal early (%.2f s after the restore)",
                       $i ? 'B' : 'A', $normal_at{$i} // -1));
    }
}

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no worker crashed');
done_testing;
