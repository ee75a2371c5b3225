# Issue 12: the gateways follow +switch-master.  SENTINEL FAILOVER moves
# the primary while the old one stays up (as a replica): both gateways
# (their owners subscribe to +switch-master on the sentinels) move to the
# new primary without waiting for a write to hit READONLY; the failover is
# recorded once cluster-wide as a "store_failover" audit event (old -> new
# primary in its reason), and both gateways count it in status and metrics
# (nb_maint_store_failovers_total, nb_maint_store_last_failover_timestamp_
# seconds).  Writes work on the new primary.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbSentinel;
use Time::HiRes qw(time sleep);

plan skip_all => 'redis-sentinel not installed' unless NbSentinel::available();

my $S = NbSentinel->new;
my $prefix = NbTest::unique_prefix('switch');
my @gw = map { NbTest::Nginx->new(http => std_http(store => $S->store_url(prefix => $prefix))) } 1 .. 2;
$_->start for @gw;
my ($A, $B) = @gw;

for my $g (@gw) {
    ok($g->wait_status(sub { $_[0]{store}{ok} && $_[0]{store}{sentinels_ok}
                             && ($_[0]{store}{sentinels_reachable} // 0) == 3 }, 15),
       'store ok, 3 sentinels reachable') or diag explain $g->status->{store};
}
my $old = $A->status->{store}{primary};
is($B->status->{store}{primary}, $old, "both on $old");
like($A->admin(GET => 'metrics')->{content}, qr/^nb_maint_store_failovers_total 0$/m, 'metrics: 0 failovers');
is($A->admin(POST => 'mode', { mode => 'upgrade', reason => 'before' })->{status}, 200, 'a write before');
my $V0 = $A->status->{version};

# ---- a switch with the old primary alive --------------------------------------------------
my $t0 = time;
like($S->sentinel_cli(0, 'SENTINEL', 'FAILOVER', 'nbm'), qr/OK/, 'SENTINEL FAILOVER');
my $new;
ok(NbTest::wait_until(sub { my $p = $S->primary_addr; $new = $p if $p && $p ne $old; $new }, 20, 0.05),
   'the sentinels name a new primary') or BAIL_OUT('no failover');
diag(sprintf 'sentinels switched %s -> %s after %.1f s', $old, $new, time - $t0);
my $ts = time;

# no write meanwhile: only +switch-master (or a lost connection) can move them
for my $g ([A => $A], [B => $B]) {
    my ($n, $ng) = @$g;
    my $st = $ng->wait_status(sub { ($_[0]{store}{primary} // '') eq $new && $_[0]{store}{ok} }, 5);
    ok($st, sprintf('%s: on the new primary %.1f s after the switch, without a write', $n, time - $ts))
        or diag explain $ng->status->{store};
}
like($A->error_log . $B->error_log, qr/\+switch-master "nbm"/, 'the log names the +switch-master');

# ---- the audit event: once, on both --------------------------------------------------------
my @fo;
for my $g ([A => $A], [B => $B]) {
    my ($n, $ng) = @$g;
    my $ok = NbTest::wait_until(sub {
        my $ev = ($ng->admin(GET => 'events?since=0')->{json} || {})->{events} || [];
        @fo = grep { ($_->{action} // '') eq 'store_failover' } @$ev;
        scalar @fo;
    }, 10, 0.2);
    ok($ok, "$n: a store_failover event");
    is(scalar @fo, 1, "$n: exactly one store_failover event") or diag explain \@fo;
}
my $e = $fo[0] || {};
like($e->{reason} // '', qr/\Q$old\E to \Q$new\E/, "reason: $old to $new") and diag("reason: $e->{reason}");
is($e->{actor}, 'nb_maint', 'actor nb_maint');
is($e->{from}, 'upgrade', 'from: the mode');
is($e->{to}, 'upgrade', 'to: the mode (unchanged)');
cmp_ok($e->{version}, '>', $V0, 'a version of its own');
my $R = $S->server_of($new);
my $list = $R->cli('LRANGE', "$prefix:events", 0, -1);
my $n = () = $list =~ /store_failover/g;
is($n, 1, 'Redis holds it once');

# ---- status and metrics on both -----------------------------------------------------------
for my $g ([A => $A], [B => $B]) {
    my ($n, $ng) = @$g;
    my $st = $ng->status->{store};
    is($st->{failovers}, 1, "$n: store.failovers 1");
    ok($st->{last_failover}, "$n: store.last_failover $st->{last_failover}");
    my $m = $ng->admin(GET => 'metrics')->{content} // '';
    like($m, qr/^nb_maint_store_failovers_total 1$/m, "$n: nb_maint_store_failovers_total 1");
    my ($ts) = $m =~ /^nb_maint_store_last_failover_timestamp_seconds (\d+)$/m;
    ok($ts && abs($ts - time) < 120, "$n: nb_maint_store_last_failover_timestamp_seconds is now");
}

# ---- writes on the new primary --------------------------------------------------------------
# A worker that does not own the store follows the owner's new primary at
# its next tick; until then a write through it answers 503 store_unavailable
# (not stored, so nothing is lost): retried here for up to 3 s.
my $r;
for (1 .. 15) {
    $r = $B->admin(POST => 'mode', { mode => 'normal' });
    last unless $r->{status} == 503 && $r->{content} =~ /store_unavailable/;
    select undef, undef, undef, 0.2;
}
is($r->{status}, 200, 'a restore through B after the switch') or diag("$r->{status} $r->{content}");
ok($A->wait_status(sub { $_[0]{mode} ne 'upgrade' }, 2), 'A follows');
is($A->crashes + $B->crashes, 0, 'no worker crashed');

done_testing;
