# Restore: upgrade/maintenance -> restoring -> normal by itself once every
# node passed rise checks started after the restore request; pending list;
# routing while restoring; force; restore while normal is 409.
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
my ($aid, $bid, $cid) = @ids;
my $RISE = 2;

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M));
$ng->start;
ok($ng->wait_all_health('up', 5, @ids), 'all three nodes are up');

sub total { my ($d) = @_; my $t = 0; $t += $_ for values %$d; $t }
sub pending { my ($st) = @_; [sort @{ ($st->{restore} || {})->{pending} || [] }] }

sub spread_ok {
    my ($label) = @_;
    $_->reset for @M;
    my $before = NbTest::mock_counts(@M);
    my $h = $ng->hit(90, '/api/spread');
    my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
    is($h->{status}{200}, 90, "$label: 90 of 90 requests 200") or diag explain $h->{status};
    for my $m (@M) {
        cmp_ok($h->{node}{ $m->id } // 0, '>=', 15, "$label: " . $m->id . ' gets a share (X-Node)');
        is($d->{ $m->id }, $h->{node}{ $m->id } // 0, "$label: ... stats agree");
    }
}

# ---- restore while normal ------------------------------------------------------------------
my $r = $ng->admin(POST => 'restore', {});
is($r->{status}, 409, 'restore while normal: 409');
is(ref $r->{json} eq 'HASH' && $r->{json}{error}{code}, 'invalid_transition', '... invalid_transition');
is($ng->admin(POST => 'restore', { force => JSON::PP::true })->{status}, 409, 'force restore while normal: 409 too');

# ---- restore from upgrade with C still starting ----------------------------------------------
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid });
is($r->{status}, 200, 'upgrade with node B') or diag $r->{content};
my $cookie = $ng->admin(POST => 'bypass', {})->{json}{cookie};
ok($cookie, 'got a bypass cookie');

$C->set_state('starting');
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C (starting, health 503 APP_COMMANDING start) is commanding');
my $v_before = $ng->status->{version};

$r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore') or diag $r->{content};
is($r->{json}{mode}, 'restoring', '... mode restoring');
is($r->{json}{restoring_from}, 'upgrade', '... restoring_from upgrade');
is_deeply(pending($r->{json}), [sort @ids],
          '... pending: every node (no check has started after the request yet)');

my $st = $ng->wait_status(sub { my $p = pending($_[0]); @$p == 1 && $p->[0] eq $cid }, 3);
ok($st, 'A and B pass their checks; pending is [C] only') or diag explain $ng->status->{restore};
is($st && $st->{mode}, 'restoring', '... mode still restoring');
is($st && $st->{restoring_from}, 'upgrade', '... restoring_from upgrade');

# stays restoring while C is starting
my $changed = NbTest::wait_until(sub { $ng->status->{mode} ne 'restoring' }, 1);
ok(!$changed, 'still restoring 1 s later (C not healthy)');
is_deeply(pending($ng->status), [$cid], 'pending still [C]');

# routing while restoring from upgrade
$_->reset for @M;
my $before = NbTest::mock_counts(@M);
my $h = $ng->hit(40, '/api/pub');
is($h->{status}{503} // 0, 40, 'restoring from upgrade: public requests 503') or diag explain $h->{status};
is($h->{nb}{restoring} // 0, 40, '... X-NB-Maint: restoring');
is(($h->{res}[0]{json} || {})->{error}{nb_maint}, 'restoring', '... JSON nb_maint restoring');
my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is(total($d), 0, '... zero requests reached any node');
$h = $ng->hit(30, '/api/byp', headers => { Cookie => $cookie });
is($h->{node}{$bid} // 0, 30, 'restoring from upgrade: bypass requests all to B');
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($d->{$bid}, 30, '... B stats 30');
is($d->{$aid} + $d->{$cid}, 0, '... A and C stats 0');

# C becomes healthy: normal by itself
my $hc0 = $C->set_state('running')->{health_checks};
my $t0 = time;
my $hc_at;
$st = $ng->wait_status(sub { return 0 unless $_[0]{mode} eq 'normal'; $hc_at = $C->stats->{health_checks}; 1 }, 4);
ok($st, 'mode becomes normal by itself once C is healthy') or diag explain $ng->status;
cmp_ok(($hc_at // 0) - $hc0, '>=', $RISE, "... after C passed at least rise=$RISE checks");
is($st && $st->{restoring_from}, undef, '... restoring_from null');
is_deeply($st ? pending($st) : undef, [], '... pending empty');
cmp_ok($st ? $st->{version} : 0, '>', $r->{json}{version}, '... version grew');

my @ev = grep { ($_->{action} // '') eq 'restored' } $ng->events($v_before);
is(scalar @ev, 1, 'one "restored" event') or diag explain [$ng->events($v_before)];
is($ev[0]{actor}, 'nb_maint', '... actor nb_maint') if @ev;
is($ev[0]{to}, 'normal', '... to normal') if @ev;

spread_ok('normal after restore from upgrade');

# ---- restore from maintenance on B with C still starting -------------------------------------
$C->set_state('starting');
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C starting again: commanding');
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid });
is($r->{status}, 200, 'maintenance on B');
$v_before = $r->{json}{version};
$r = $ng->admin(POST => 'restore');
is($r->{status}, 200, 'POST restore (empty body)');
is($r->{json}{mode}, 'restoring', '... mode restoring');
is($r->{json}{restoring_from}, 'maintenance', '... restoring_from maintenance');
ok(scalar(grep { $_ eq $cid } @{ pending($r->{json}) }), '... C is pending');

$_->reset for @M;
$before = NbTest::mock_counts(@M);
$h = $ng->hit(50, '/api/m1');
is($h->{status}{200}, 50, 'restoring from maintenance: 50 of 50 requests 200');
is($h->{node}{$bid} // 0, 50, '... all answered by B');
$st = $ng->wait_status(sub { my $p = pending($_[0]); @$p == 1 && $p->[0] eq $cid }, 3);
ok($st && $st->{mode} eq 'restoring', 'A and B passed; still restoring, pending [C]');
$h = $ng->hit(50, '/api/m2');
is($h->{node}{$bid} // 0, 50, 'A passed its checks, still every request to B');
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($d->{$bid}, 100, 'B stats 100');
is($d->{$aid} + $d->{$cid}, 0, 'A and C stats 0 while restoring');

$C->set_state('running');
$st = $ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 4);
ok($st, 'restoring from maintenance becomes normal once C is healthy');
@ev = grep { ($_->{action} // '') eq 'restored' } $ng->events($v_before);
is(scalar @ev, 1, 'a "restored" event');
is($ev[0]{actor}, 'nb_maint', '... by nb_maint') if @ev;
spread_ok('normal after restore from maintenance');

# ---- force ------------------------------------------------------------------------------------
$C->set_state('starting');
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C starting again: commanding');
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid });
$v_before = $r->{json}{version};
$r = $ng->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{status}, 200, 'POST restore force') or diag $r->{content};
is($r->{json}{mode}, 'normal', '... straight to normal although C is down');
is($r->{json}{restoring_from}, undef, '... restoring_from null');
is_deeply(pending($r->{json}), [], '... nothing pending');
@ev = $ng->events($v_before);
is(scalar(grep { ($_->{action} // '') eq 'force_restore' } @ev), 1, 'event force_restore');
is(scalar(grep { ($_->{action} // '') eq 'restored' } @ev), 0, 'no "restored" event');
$h = $ng->hit(30, '/api/after-force');
is($h->{status}{200}, 30, 'public requests 200 right after force');
ok(!$h->{node}{$cid}, '... none to the down C');
is($ng->admin(POST => 'restore', {})->{status}, 409, 'restore again: 409');

# "mode":"normal" is restore as well
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $aid });
$r = $ng->admin(POST => 'mode', { mode => 'normal' });
is($r->{status}, 200, 'POST mode normal from maintenance');
is($r->{json}{mode}, 'restoring', '... is a restore (restoring while C is down)');
$C->set_state('running');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 4), '... then normal');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
