# Redis store, two gateways on one Redis: status shows the store, a change on
# one gateway is served by the other within a (generous) bound, with the same
# version/reason and one event; the keys live in Redis; a bypass cookie made
# on one gateway is valid on the other; changes flow both ways.  Also diag()s
# the propagation time over 20 changes.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $BOUND = 2;    # seconds a change may take to reach the other gateway

my $redis = NbTest::Redis->new;
my ($A, $B) = redis_gateways(redis => $redis, n => 2);
my $P = $A->redis_prefix;

# ---- store in status --------------------------------------------------------------
for my $g ([A => $A], [B => $B]) {
    my ($name, $ng) = @$g;
    my $st = $ng->wait_store_ok(1, 10);
    ok($st, "$name: store.ok becomes true") or diag explain $ng->status->{store};
    $st ||= $ng->status;
    is($st->{store}{type}, 'redis', "$name: store.type redis");
    ok(exists $st->{store}{error} && !defined $st->{store}{error}, "$name: store.error null");
    like($ng->admin(GET => 'metrics')->{content} // '', qr/^nb_maint_store_up\{type="redis"\} 1$/m,
         "$name: metrics nb_maint_store_up{type=\"redis\"} 1");
}
my $v0 = $A->status->{version};
is($B->status->{version}, $v0, 'both gateways start at the same version');

is($A->get('/')->{status}, 200, 'A: public request 200 in normal mode');
is($B->get('/')->{status}, 200, 'B: public request 200 in normal mode');

# poll $ng's public gate until it answers $code; seconds taken or undef
sub gate_becomes {
    my ($ng, $code, $timeout) = @_;
    my $t0 = time;
    my $ok = NbTest::wait_until(sub { $ng->get('/')->{status} == $code }, $timeout, 0.005);
    return $ok ? (time - $t0 || 0.0001) : undef;
}

# ---- change on A, seen on B -------------------------------------------------------------
my $reason = 'redis upgrade from A';
my $t0 = time;
my $r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => $reason, retry_after => 77 });
is($r->{status}, 200, 'A: POST mode upgrade 200') or diag $r->{content};
is($r->{json}{version}, $v0 + 1, 'A: version +1');
my $v1 = $r->{json}{version} // -1;
my $dt = gate_becomes($B, 503, $BOUND);
ok(defined $dt, "B: gate serves 503 within $BOUND s of A's change")
    and diag(sprintf 'first propagation A -> B: %.1f ms (from the POST answer)', $dt * 1000);
my $g = $B->get('/', { Accept => 'application/json' });
is($g->{status}, 503, 'B: public request 503');
is($g->{headers}{'x-nb-maint'}, 'upgrade', 'B: X-NB-Maint: upgrade');
is($g->{headers}{'retry-after'}, 77, "B: Retry-After is A's retry_after");
is($A->get('/')->{status}, 503, 'A: public request 503 too');

my $sb = $B->wait_status(sub { ($_[0]{version} // 0) == $v1 }, $BOUND) || $B->status;
is($sb->{mode}, 'upgrade', 'B: status mode upgrade');
is($sb->{version}, $v1, "B: status has A's version");
is($sb->{reason}, $reason, "B: status has A's reason");
is_deeply(state_fields($sb), state_fields($A->status), 'B: state equals A\'s state');

my @ev = $B->events($v0);
is(scalar(grep { ($_->{version} // -1) == $v1 } @ev), 1, 'B: events list the change exactly once')
    or diag explain \@ev;
my ($e) = grep { ($_->{version} // -1) == $v1 } @ev;
is($e->{to}, 'upgrade', 'B: event to upgrade');
is($e->{from}, 'normal', 'B: event from normal');
is($e->{reason}, $reason, 'B: event reason');
is($e->{actor}, 'ops@127.0.0.1', 'B: event actor is the token name on A');
is(scalar(@ev), 1, 'B: no other events since the start') or diag explain \@ev;
is_deeply([$A->events($v0)], \@ev, 'A and B list the same events');

# ---- the keys in Redis ---------------------------------------------------------------------
is($redis->cli('GET', "$P:version"), $v1, "redis GET $P:version is the new version");
my $rs = eval { json_decode($redis->cli('GET', "$P:state")) };
ok(ref $rs eq 'HASH', "redis $P:state holds JSON") or diag $redis->cli('GET', "$P:state");
$rs ||= {};
is($rs->{mode}, 'upgrade', "$P:state mode upgrade");
is($rs->{reason}, $reason, "$P:state reason");
is($rs->{version}, $v1, "$P:state version");
ok(exists $rs->{drain}, "$P:state has drain");
is($redis->cli('TYPE', "$P:events"), 'list', "$P:events is a list");
my @rl = $redis->cli('LRANGE', "$P:events", 0, -1);
is(scalar @rl, $v1, "$P:events has one entry per change");
my $last = eval { json_decode($rl[-1] // '') } || {};
is($last->{version}, $v1, "$P:events last entry is this change");
like($redis->cli('GET', "$P:secret"), qr/^[0-9a-f]{64}$/i, "$P:secret is a hex key");
is($redis->cli('EXISTS', "$P:version"), 1, "$P:version exists");

# ---- bypass cookie made on A works on B ---------------------------------------------------
is($B->get('/')->{status}, 503, 'B: no cookie: 503');
# both gateways adopt the shared key from Redis (re-read about every second)
my ($cookie, $ok_on_b);
$ok_on_b = NbTest::wait_until(sub {
    my $br = $A->admin(POST => 'bypass', { ttl => 600 });
    return 0 unless $br->{status} == 200;
    $cookie = $br->{json}{cookie};
    return $B->get('/', { Cookie => $cookie })->{status} == 200;
}, 5, 0.1);
ok($ok_on_b, 'a bypass cookie from A makes a request on B pass the gate (200)')
    or diag "cookie: " . ($cookie // 'none');
# from now on every cookie of either gateway is valid on both, at once
for my $pair ([A => $A, B => $B], [B => $B, A => $A]) {
    my ($n1, $g1, $n2, $g2) = @$pair;
    my $br = $g1->admin(POST => 'bypass', { ttl => 600 });
    is($br->{status}, 200, "$n1: POST bypass");
    my $c = $br->{json}{cookie} // '';
    my $res = $g2->get('/', { Cookie => $c });
    is($res->{status}, 200, "fresh cookie from $n1 is valid on $n2 at once");
    is($res->{content}, "app\n", "... and reaches the content of $n2");
    is($g1->get('/', { Cookie => $c })->{status}, 200, "... and on $n1");
    (my $forged = $c) =~ s/(.)$/$1 eq 'A' ? 'B' : 'A'/e;
    is($g2->get('/', { Cookie => $forged })->{status}, 503, "a forged cookie is public on $n2");
}
is($B->get('/')->{status}, 503, 'B: still 503 without a cookie');
is($A->get('/')->{status}, 503, 'A: still 503 without a cookie');

# ---- a change on B is seen on A --------------------------------------------------------------
$r = $B->admin(POST => 'restore', { force => JSON::PP::false });
is($r->{status}, 200, 'B: POST restore 200') or diag $r->{content};
is($r->{json}{mode}, 'normal', 'B: normal');
my $v2 = $r->{json}{version} // -1;
is($v2, $v1 + 1, 'B: version +1');
ok(defined gate_becomes($A, 200, $BOUND), "A: gate serves 200 within $BOUND s of B's restore");
my $sa = $A->wait_status(sub { ($_[0]{version} // 0) == $v2 }, $BOUND) || $A->status;
is($sa->{mode}, 'normal', 'A: mode normal');
is($sa->{version}, $v2, "A: B's version");
@ev = $A->events($v1);
is(scalar @ev, 1, 'A: one event since');
is($ev[0]{version}, $v2, "A: event of B's change");
is($ev[0]{to}, 'normal', 'A: event to normal');

$r = $B->admin(POST => 'mode', { mode => 'upgrade', reason => 'from B', retry_after => 5 });
is($r->{status}, 200, 'B: POST mode upgrade') or diag $r->{content};
ok(defined gate_becomes($A, 503, $BOUND), "A: gate serves 503 within $BOUND s of B's change");
is($A->wait_status(sub { ($_[0]{reason} // '') eq 'from B' }, $BOUND) ? 1 : 0, 1, "A: reason 'from B'");
$r = $A->admin(POST => 'restore', {});
is($r->{status}, 200, 'A: restore') or diag $r->{content};
ok(defined gate_becomes($B, 200, $BOUND), 'B: 200 again');

# ---- propagation time over 20 changes ------------------------------------------------------
my @times;
my $late = 0;
for my $i (1 .. 20) {
    my ($w, $o) = $i % 2 ? ($A, $B) : ($B, $A);
    # A sets upgrade, B restores, A sets upgrade, ... (the other gate flips each time)
    my $body = $i % 2 ? { mode => 'upgrade', reason => "prop $i" } : undef;
    my $tw = time;
    my $res = $body ? $w->admin(POST => 'mode', $body) : $w->admin(POST => 'restore', {});
    unless ($res->{status} == 200) { fail("change $i: $res->{status} $res->{content}"); last }
    my $want = $body ? 503 : 200;
    my $dtp = gate_becomes($o, $want, $BOUND);
    if (defined $dtp) { push @times, time - $tw }
    else { $late++ }
}
is($late, 0, "all 20 changes reached the other gateway's gate within $BOUND s");
if (@times) {
    my @s = sort { $a <=> $b } @times;
    my $sum = 0;
    $sum += $_ for @s;
    diag(sprintf 'propagation over %d changes (POST sent -> other gate flipped): '
         . 'min %.1f ms, median %.1f ms, mean %.1f ms, max %.1f ms',
         scalar @s, $s[0] * 1000, $s[$#s / 2] * 1000, $sum / @s * 1000, $s[-1] * 1000);
}

# the whole history is the same on both gateways and in Redis, no duplicates
my $vend = $A->status->{version};
is($B->wait_status(sub { $_[0]{version} == $vend }, $BOUND) ? 1 : 0, 1, 'B at the final version');
my @ea = map { $_->{version} } $A->events(0);
my @eb = map { $_->{version} } $B->events(0);
is_deeply(\@ea, [1 .. $vend], 'A: events 1..N, each once');
is_deeply(\@eb, [1 .. $vend], 'B: events 1..N, each once');
is($redis->cli('GET', "$P:version"), $vend, 'redis version is the final version');
is($redis->cli('LLEN', "$P:events"), $vend, 'redis holds one event per change');

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no worker crashed');
done_testing;
