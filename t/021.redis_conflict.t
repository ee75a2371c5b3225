# Redis store: concurrent conflicting writes across two gateways.  Changes
# are compare-and-set on the version in Redis: with If-Match for the same
# version exactly one of 20 simultaneous writes wins, the others get 409
# version_conflict; without If-Match every write ends as 200 (a lost race
# is retried on the new state) and no accepted change is lost or duplicated.  Versions have no gaps and each
# gateway's events list every accepted change exactly once.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my $N      = 20;    # concurrent writers per round
my $ROUNDS = 4;

my $redis = NbTest::Redis->new;
my ($A, $B) = redis_gateways(redis => $redis, n => 2, std => { listen_opts => ' reuseport' });
my $P = $A->redis_prefix;
my @GW = ($A, $B);
my @GWNAME = qw(A B);

ok($A->wait_store_ok(1, 10), 'A: store ok') or BAIL_OUT('A never reached Redis');
ok($B->wait_store_ok(1, 10), 'B: store ok') or BAIL_OUT('B never reached Redis');

# all jobs at once ({gw => index, body => {..}, if_match => v or undef}):
# NbTest::burst_admin's answers (+ {job}) in order
sub burst {
    return NbTest::burst_admin(map { { %$_, nginx => $GW[ $_->{gw} ], path => 'mode' } } @_);
}

sub code_of { my ($r) = @_; ref $r->{json} eq 'HASH' && ref $r->{json}{error} eq 'HASH' ? $r->{json}{error}{code} // '' : '' }

# both gateways at version $v (or undef on timeout)
sub both_at {
    my ($v) = @_;
    return NbTest::wait_until(sub { !grep { ($_->status->{version} // -1) != $v } @GW }, 5, 0.01);
}

my %accepted;    # version => reason of the accepted change
my $v = $A->status->{version};
is($B->status->{version}, $v, 'both gateways start at the same version');
my $vstart = $v;

# ---- with If-Match: exactly one winner per round -------------------------------------------------
for my $round (1 .. $ROUNDS) {
    my @jobs = map {
        { gw => $_ % 2, if_match => $v,
          body => { mode => 'upgrade', reason => "round $round writer $_ (" . $GWNAME[$_ % 2] . ')',
                    retry_after => 60 + $_ } }
    } 0 .. $N - 1;
    my @res = burst(@jobs);
    my @ok  = grep { $_->{status} == 200 } @res;
    my @c409 = grep { $_->{status} == 409 && code_of($_) eq 'version_conflict' } @res;
    is(scalar @ok, 1, "round $round: exactly one of $N If-Match writes got 200")
        or diag explain [map { "$_->{status} $_->{body}" } @res];
    is(scalar @c409, $N - 1, "round $round: all " . ($N - 1) . ' others got 409 version_conflict')
        or diag explain [map { "$_->{status} $_->{body}" } grep { $_->{status} != 200 } @res];
    my %by_gw;
    $by_gw{ $GWNAME[ $_->{job}{gw} ] }{ $_->{status} }++ for @res;
    diag("round $round: " . join(', ', map { my $g = $_; "$g: " . join(' ', map { "$_ x$by_gw{$g}{$_}" } sort keys %{ $by_gw{$g} }) } sort keys %by_gw));
    last unless @ok == 1;
    my $w = $ok[0];
    is($w->{json}{version}, $v + 1, "round $round: the winner's answer has version " . ($v + 1));
    is($w->{json}{reason}, $w->{job}{body}{reason}, "round $round: the winner's answer has its reason");
    $v++;
    $accepted{$v} = $w->{job}{body}{reason};
    ok(both_at($v), "round $round: both gateways reach version $v");
    for my $i (0, 1) {
        my $st = $GW[$i]->status;
        is($st->{reason}, $w->{job}{body}{reason}, "round $round: $GWNAME[$i] shows the winner's reason");
        is($st->{retry_after}, $w->{job}{body}{retry_after}, "round $round: $GWNAME[$i] shows the winner's retry_after");
    }
    is($redis->cli('GET', "$P:version"), $v, "round $round: redis version $v");
}

# events: every accepted change exactly once, versions contiguous
sub check_events {
    my ($label) = @_;
    my $vend = $A->status->{version};
    is($vend, $B->status->{version}, "$label: same final version on both gateways");
    is_deeply([sort { $a <=> $b } keys %accepted], [$vstart + 1 .. $vend],
              "$label: accepted versions " . ($vstart + 1) . "..$vend have no gaps");
    for my $i (0, 1) {
        my @ev = $GW[$i]->events(0);
        my @vs = map { $_->{version} } @ev;
        is_deeply(\@vs, [1 .. $vend], "$label: $GWNAME[$i] events are versions 1..$vend, each once")
            or diag explain \@vs;
        my %r = map { ($_->{version} => $_->{reason}) } @ev;
        my @wrong = grep { ($r{$_} // '') ne $accepted{$_} } sort { $a <=> $b } keys %accepted;
        is(scalar @wrong, 0, "$label: $GWNAME[$i] events carry the accepted change's reason")
            or diag explain { map { ($_ => [$r{$_}, $accepted{$_}]) } @wrong };
    }
    is($redis->cli('GET', "$P:version"), $vend, "$label: redis $P:version is $vend");
    my @rv = map { (eval { json_decode($_) } || {})->{version} // -1 } $redis->cli('LRANGE', "$P:events", 0, -1);
    is_deeply(\@rv, [1 .. $vend], "$label: redis $P:events holds 1..$vend, each once");
}
check_events('If-Match');

# ---- a stale If-Match on either gateway: 409, nothing changes -------------------------------------
for my $i (0, 1) {
    my $before = state_fields($GW[$i]->status);
    my $r = $GW[$i]->admin(POST => 'mode', { mode => 'upgrade', reason => 'stale' }, { 'If-Match' => qq("@{[$v - 1]}") });
    is($r->{status}, 409, "$GWNAME[$i]: stale If-Match 409");
    is(code_of($r), 'version_conflict', "$GWNAME[$i]: code version_conflict");
    is_deeply(state_fields($GW[$i]->status), $before, "$GWNAME[$i]: state unchanged");
}

# ---- without If-Match: each write 200 or 409, accepted ones all recorded --------------------------
my $total_ok = 0;
for my $round (1 .. 3) {
    my @jobs = map {
        { gw => $_ % 2,
          body => { mode => 'upgrade', reason => "free round $round writer $_ (" . $GWNAME[$_ % 2] . ')' } }
    } 0 .. $N - 1;
    my @res = burst(@jobs);
    my @ok  = grep { $_->{status} == 200 } @res;
    my @bad = grep { $_->{status} != 200 } @res;
    is(scalar @bad, 0, "free round $round: every write answered 200 (no 409 without If-Match)")
        or diag explain [map { "$_->{status} $_->{body}" } @bad];
    cmp_ok(scalar @ok, '>=', 1, "free round $round: at least one write accepted");
    diag("free round $round: " . scalar(@ok) . " accepted, " . ($N - @ok) . ' conflicts');
    my @vs = map { $_->{json}{version} // -1 } @ok;
    my %seen;
    is(scalar(grep { $seen{$_}++ } @vs), 0, "free round $round: accepted writes have distinct versions")
        or diag explain \@vs;
    for my $w (@ok) {
        my $wv = $w->{json}{version} // -1;
        ok(!exists $accepted{$wv}, "free round $round: version $wv not accepted before");
        $accepted{$wv} = $w->{job}{body}{reason};
    }
    $total_ok += @ok;
    my $vmax = (sort { $b <=> $a } @vs)[0] // $v;
    $v = $vmax if $vmax > $v;
    ok(both_at($v), "free round $round: both gateways reach version $v");
}
check_events('without If-Match');

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no worker crashed');
done_testing;
