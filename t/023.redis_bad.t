# Redis store, hostile or broken Redis: malformed keys written by hand, a
# wrong password, another DB number, a "Redis" that accepts TCP but never
# answers, a huge events list.  The gateway keeps its last state, says what
# is wrong (error.log, status store.error), never blocks and never crashes.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use Time::HiRes qw(time sleep);

sub code_of { my ($r) = @_; ref $r->{json} eq 'HASH' && ref $r->{json}{error} eq 'HASH' ? $r->{json}{error}{code} // '' : '' }

# poll error.log of $ng for $re; the matching lines (or empty list)
sub wait_log {
    my ($ng, $re, $timeout) = @_;
    my @l;
    NbTest::wait_until(sub { @l = $ng->log_grep($re); scalar @l }, $timeout // 5, 0.05);
    return @l;
}

my $redis = NbTest::Redis->new;

# =========================================================================
# 1. malformed values written by hand
# =========================================================================
my ($A) = redis_gateways(redis => $redis, n => 1);
my $P = $A->redis_prefix;
ok($A->wait_store_ok(1, 10), 'A: store ok') or BAIL_OUT('A never reached Redis');
my $r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'before the garbage' });
is($r->{status}, 200, 'A: upgrade') or diag $r->{content};
my %want = %{ state_fields($A->status) };
my $V = $want{version};
my $good_state = $redis->cli('GET', "$P:state");
my @workers = $A->worker_pids;

# P:version not a number
$redis->cli('SET', "$P:version", 'abc');
my @l = wait_log($A, qr/\Q$P:version\E/, 5);
ok(@l, "error.log names the key $P:version") or diag $A->error_log_tail(10);
diag("error.log: $l[0]") if @l;
my $st = $A->wait_store_ok(0, 5);
ok($st, 'store.ok false with a malformed version key');
$st ||= $A->status;
ok(defined $st->{store}{error} && length $st->{store}{error}, 'store.error is a text')
    and diag("store.error: $st->{store}{error}");
is_deeply(state_fields($st), \%want, 'the gateway keeps its last state');
is($A->get('/')->{status}, 503, 'public requests still 503 (upgrade)');

# P:state garbage with a higher version
$redis->cli('MSET', "$P:version", $V + 5, "$P:state", '{garbage');
@l = wait_log($A, qr/\Q$P:state\E/, 5);
ok(@l, "error.log names the key $P:state") or diag $A->error_log_tail(10);
diag("error.log: $l[0]") if @l;
$st = $A->wait_status(sub { !$_[0]{store}{ok} && ($_[0]{store}{error} // '') =~ /state/ }, 5);
ok($st, 'store.ok false, store.error about the state key') or diag explain $A->status->{store};
$st ||= $A->status;
diag("store.error: " . ($st->{store}{error} // 'null'));
is_deeply(state_fields($st), \%want, 'the gateway keeps its last state (not the garbage, not normal)');
is($A->get('/')->{status}, 503, 'public requests still 503');

# valid JSON, but not a state
$redis->cli('SET', "$P:state", '{"mode":"bogus","version":' . ($V + 5) . '}');
ok(NbTest::wait_until(sub { $A->log_grep(qr/\Q$P:state\E.*(?:mode|bogus)|(?:mode|bogus).*\Q$P:state\E/) }, 5),
   'a state with an unknown mode is refused (error.log)') or diag $A->error_log_tail(5);
is_deeply(state_fields($A->status), \%want, 'still the last state');

# repaired by hand: the gateway takes it and the store is fine again
my $fixed = json_decode($good_state);
$fixed->{version} = $V + 5;
$fixed->{reason}  = 'repaired by hand';
$redis->cli('SET', "$P:state", json_encode($fixed));
$st = $A->wait_status(sub { $_[0]{version} == $V + 5 && $_[0]{store}{ok} }, 5);
ok($st, 'after the repair: version ' . ($V + 5) . ' taken, store.ok true') or diag explain $A->status;
is(($st || {})->{reason}, 'repaired by hand', 'after the repair: reason from Redis');
is(($st || {})->{mode}, 'upgrade', 'after the repair: mode upgrade');
is_deeply([$A->worker_pids], \@workers, 'the same workers are alive (nothing crashed)');
is(scalar $A->crashes, 0, 'no crash in error.log');
$A->stop;

# =========================================================================
# 2. passwords
# =========================================================================
my $rp = NbTest::Redis->new(password => 'secret');
my $PP = unique_prefix('pw');
my ($W)  = redis_gateways(redis => $rp, prefix => $PP, password => 'wrong');
my ($N0) = redis_gateways(redis => $rp, prefix => $PP);    # no password at all
my ($C)  = redis_gateways(redis => $rp, prefix => $PP, password => 'secret');

ok($C->wait_store_ok(1, 10), 'correct password: store.ok true');
for my $case ([W => $W, 'wrong password'], [N0 => $N0, 'no password']) {
    my ($n, $ng, $what) = @$case;
    my @ref = wait_log($ng, qr/redis refused the command connection/, 5);
    ok(@ref, "$what: error.log says 'redis refused the command connection'") or diag $ng->error_log_tail(10);
    diag("$what: $ref[0]") if @ref;
    $st = $ng->status;
    ok(!$st->{store}{ok}, "$what: store.ok false");
    ok(defined $st->{store}{error} && length $st->{store}{error}, "$what: store.error set")
        and diag("$what: store.error: $st->{store}{error}");
    # once past "not connected yet", the error must say why, not only where
    $st = $ng->wait_status(sub { ($_[0]{store}{error} // '') !~ /not connected yet/ }, 3) || $ng->status;
    my $err = $st->{store}{error} // '';
    ok(length($err) && $err !~ /:\s*$/, "$what: store.error gives a reason after the address ('$err')");
    ok(!$ng->wait_store_ok(1, 1.5), "$what: store.ok stays false");
    $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => $what });
    is($r->{status}, 503, "$what: write 503");
    is(code_of($r), 'store_unavailable', "$what: store_unavailable");
    is($ng->status->{mode}, 'normal', "$what: state unchanged");
}
$r = $C->admin(POST => 'mode', { mode => 'upgrade', reason => 'with the password' });
is($r->{status}, 200, 'correct password: write 200') or diag $r->{content};
my $vc = $r->{json}{version} // -1;
is($rp->cli('GET', "$PP:version"), $vc, 'the change is in the password-protected Redis');
is($rp->cli({ noauth => 1 }, 'GET', "$PP:version") =~ /NOAUTH/ ? 1 : 0, 1, '(redis-cli without the password is refused)');
is($W->status->{mode}, 'normal', 'the wrong-password gateway did not get it');
$_->stop for $W, $N0, $C;
$rp->stop;

# =========================================================================
# 3. another DB number: works, but is a separate state
# =========================================================================
my $PD = unique_prefix('db');
my ($D0) = redis_gateways(redis => $redis, prefix => $PD, db => 0);
my ($D3) = redis_gateways(redis => $redis, prefix => $PD, db => 3);
ok($D0->wait_store_ok(1, 10), 'db 0: store ok');
ok($D3->wait_store_ok(1, 10), 'db 3: store ok');
$r = $D0->admin(POST => 'mode', { mode => 'upgrade', reason => 'db 0 only' });
is($r->{status}, 200, 'db 0: write 200') or diag $r->{content};
my $v0 = $r->{json}{version} // -1;
is($redis->cli({ db => 0 }, 'GET', "$PD:version"), $v0, 'db 0 holds the version');
is($redis->cli({ db => 3 }, 'GET', "$PD:version"), '', 'db 3 has no version key');
# give db 3's gateway time for several re-reads (and any published message)
ok(!NbTest::wait_until(sub { $D3->status->{version} != 0 || $D3->status->{mode} ne 'normal' }, 2.5, 0.05),
   'db 3 gateway does not take the db 0 change') or diag explain state_fields($D3->status);
is($D3->get('/')->{status}, 200, 'db 3 gateway still serves normal');
is($redis->cli({ db => 3 }, 'GET', "$PD:version"), '', 'db 3 still has no version key');
$r = $D3->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13003', reason => 'db 3 only' });
is($r->{status}, 200, 'db 3: write 200') or diag $r->{content};
my $v3 = $r->{json}{version} // -1;
is($redis->cli({ db => 3 }, 'GET', "$PD:version"), $v3, 'db 3 holds its own version');
my $s3 = eval { json_decode($redis->cli({ db => 3 }, 'GET', "$PD:state")) } || {};
is($s3->{mode}, 'maintenance', 'db 3 holds its own state');
ok(!NbTest::wait_until(sub { $D0->status->{mode} ne 'upgrade' }, 2.5, 0.05), 'db 0 gateway keeps its own mode')
    or diag explain state_fields($D0->status);
is($D0->status->{reason}, 'db 0 only', 'db 0 gateway keeps its own reason');
my $s0 = eval { json_decode($redis->cli({ db => 0 }, 'GET', "$PD:state")) } || {};
is($s0->{mode}, 'upgrade', 'db 0 state untouched by db 3');
$_->stop for $D0, $D3;

# =========================================================================
# 4. a "Redis" that accepts TCP and never answers
# =========================================================================
my $hole = NbTest::BlackHole->new;
my $F = NbTest::Nginx->new(http => std_http(store => "redis://127.0.0.1:" . $hole->port . "/0?prefix=" . unique_prefix('hole')));
my $t0 = time;
eval { $F->start };
ok(!$@, 'nginx starts with a Redis that never answers') or diag $@;
diag(sprintf 'started in %.2f s', time - $t0);
my $maxst = 0;
my $okfalse = 1;
my $end = time + 5;    # over several 2 s command timeouts
while (time < $end) {
    my $t = time;
    my $s = eval { $F->status };
    my $dt = time - $t;
    $maxst = $dt if $dt > $maxst;
    $okfalse = 0 if !$s || $s->{store}{ok};
    sleep 0.2;
}
cmp_ok($maxst, '<', 1, sprintf('GET status always answers within 1 s (max %.3f s)', $maxst));
ok($okfalse, 'store.ok false all the time');
{
    my $err = $F->status->{store}{error} // '';
    diag("store.error: $err");
    ok(length($err) && $err !~ /:\s*$/, "store.error gives a reason after the address ('$err')");
}

# a write in a child, the public gate timed meanwhile
pipe(my $wr, my $ww) or die;
my $wpid = fork // die "fork: $!";
if (!$wpid) {
    close $wr;
    my $t = time;
    my $res = $F->admin(POST => 'mode', { mode => 'upgrade', reason => 'into the void' });
    print $ww json_encode({ status => $res->{status}, body => $res->{content}, secs => time - $t });
    close $ww;
    POSIX::_exit(0);
}
close $ww;
my ($maxg, $n200) = (0, 0);
my $gend = time + 2.5;
my $ng = 0;
while (time < $gend) {
    my $t = time;
    my $g = $F->get('/');
    my $dt = time - $t;
    $maxg = $dt if $dt > $maxg;
    $n200++ if $g->{status} == 200;
    $ng++;
}
my $wres = do { local $/; my $x = <$wr>; eval { json_decode($x // '') } } || {};
waitpid $wpid, 0;
is($n200, $ng, "public gate answered 200 to all $ng requests while a write hung");
cmp_ok($maxg, '<', NbTest::slow(0.5), sprintf('public gate answered fast during the write (max %.3f s)', $maxg));
is($wres->{status}, 503, 'the write answers 503') or diag explain $wres;
like($wres->{body} // '', qr/"store_unavailable"/, 'the write: store_unavailable');
cmp_ok($wres->{secs} // 99, '<=', 3.5, sprintf('the write answered within ~3 s (%.2f s)', $wres->{secs} // -1));
is($F->status->{mode}, 'normal', 'state unchanged');
$r = $F->get('/_nb_maint/metrics', { Authorization => 'Bearer ' . ADMIN_TOKEN });
like($r->{content} // '', qr/^nb_maint_store_up\{type="redis"\} 0$/m, 'metrics store_up 0');
is(scalar $F->crashes, 0, 'no crash');
$F->stop;
$hole->stop;

# =========================================================================
# 5. a very large events list
# =========================================================================
my $PE = unique_prefix('big');
my $BIG = 20000;
my $lua = q{
  for i = 1, tonumber(ARGV[1]) do
    redis.call('RPUSH', KEYS[1], string.format(
      '{"version":%d,"time":"2020-01-01T00:00:00Z","actor":"filler@127.0.0.1","action":"mode","from":"upgrade","to":"upgrade","node":null,"reason":"filler %d"}', i, i))
  end
  return redis.call('LLEN', KEYS[1])
};
is($redis->cli('EVAL', $lua, 1, "$PE:events", $BIG), $BIG, "RPUSH $BIG events onto $PE:events");
my $bigst = json_decode($good_state);
$bigst->{version} = $BIG;
$bigst->{reason}  = 'long history';
$redis->cli('MSET', "$PE:version", $BIG, "$PE:state", json_encode($bigst));

my ($G) = redis_gateways(redis => $redis, prefix => $PE);
$st = $G->wait_status(sub { $_[0]{version} == $BIG && $_[0]{store}{ok} }, 10);
ok($st, "a new gateway catches up to version $BIG") or diag explain $G->status;
is(($st || {})->{reason}, 'long history', 'with the state from Redis');

sub events_res {
    my ($ng, $since) = @_;
    my $t = time;
    my $res = $ng->admin(GET => "events?since=$since");
    return ($res, time - $t);
}
my ($er, $edt) = events_res($G, 0);
is($er->{status}, 200, 'GET events?since=0 works');
cmp_ok($edt, '<', NbTest::slow(1), sprintf('... quickly (%.3f s)', $edt));
my @ev = @{ ($er->{json} || {})->{events} || [] };
cmp_ok(scalar @ev, '<=', 1100, 'returns at most ~1000 events (' . scalar(@ev) . ')');
ok(NbTest::wait_until(sub { my @e = $G->events(0); @e >= 1000 }, 5), 'at least the last 1000 events');
@ev = $G->events(0);
is(($ev[-1] || {})->{version}, $BIG, "the newest is version $BIG");

$r = $G->admin(POST => 'restore', {});
is($r->{status}, 200, 'a change on top of the long history') or diag $r->{content};
is($r->{json}{version}, $BIG + 1, 'version ' . ($BIG + 1));
($er, $edt) = events_res($G, 0);
is($er->{status}, 200, 'GET events?since=0 still works');
cmp_ok($edt, '<', NbTest::slow(1), sprintf('... quickly (%.3f s)', $edt));
@ev = @{ ($er->{json} || {})->{events} || [] };
cmp_ok(scalar @ev, '<=', 1100, 'still at most ~1000 events (' . scalar(@ev) . ')');
cmp_ok(scalar @ev, '>=', 1000, 'still at least 1000');
is(($ev[-1] || {})->{version}, $BIG + 1, 'the newest is the new change');
is(($ev[-1] || {})->{to}, 'normal', '... a restore to normal');
($er) = events_res($G, $BIG - 5);
is_deeply([map { $_->{version} } @{ ($er->{json} || {})->{events} || [] }], [$BIG - 4 .. $BIG + 1],
          'events?since=N gives exactly the versions after N');
my $llen = $redis->cli('LLEN', "$PE:events");
cmp_ok($llen, '<=', 5000, "redis trimmed $PE:events to the last 5000 ($llen)");
my $lastred = eval { json_decode($redis->cli('LINDEX', "$PE:events", -1)) } || {};
is($lastred->{version}, $BIG + 1, 'the new change is the last entry in Redis');
is(scalar $G->crashes, 0, 'no crash');
ok($G->status, 'nginx alive');

done_testing;
