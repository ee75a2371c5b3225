# Redis store down: both gateways keep serving the last state (upgrade: 503
# to the public), status says store.ok false with an error, writes answer
# 503 store_unavailable and change nothing; a gateway restarted while Redis
# is down serves upgrade from its local cache; when an empty Redis comes
# back on the same port, both reconnect, re-publish their state (never
# falling back to normal) and writes work again.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $redis = NbTest::Redis->new;
my ($A, $B) = redis_gateways(redis => $redis, n => 2);
my $P = $A->redis_prefix;
my %GW = (A => $A, B => $B);

for my $n (sort keys %GW) {
    ok($GW{$n}->wait_store_ok(1, 10), "$n: store ok at start") or BAIL_OUT("$n never reached Redis");
}

my $r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'redis down test', retry_after => 42 });
is($r->{status}, 200, 'A: POST mode upgrade') or diag $r->{content};
my $V = $r->{json}{version} // -1;
ok($B->wait_status(sub { $_[0]{version} == $V }, 5), "B: at version $V");
my %want = %{ state_fields($A->status) };
is($want{mode}, 'upgrade', 'mode upgrade');

sub public_503 {
    my ($n, $label) = @_;
    my $g = $GW{$n}->get('/', { Accept => 'application/json' });
    is($g->{status}, 503, "$n: public request 503 ($label)");
    is($g->{headers}{'x-nb-maint'}, 'upgrade', "$n: X-NB-Maint: upgrade ($label)");
    is($g->{headers}{'retry-after'}, 42, "$n: Retry-After 42 ($label)");
}
public_503($_, 'Redis up') for sort keys %GW;

# ---- kill Redis -------------------------------------------------------------------------------------
$redis->kill;
ok(!$redis->running, 'redis-server killed');

for my $n (sort keys %GW) {
    my $t0 = time;
    my $st = $GW{$n}->wait_store_ok(0, 10);
    ok($st, "$n: store.ok false after Redis died") or next;
    diag(sprintf "$n: noticed in %.2f s; store.error: %s", time - $t0, $st->{store}{error} // 'null');
    ok(defined $st->{store}{error} && length $st->{store}{error}, "$n: store.error is a text");
    is($st->{store}{type}, 'redis', "$n: store.type redis");
    is_deeply(state_fields($st), \%want, "$n: still the last state");
    like($GW{$n}->admin(GET => 'metrics')->{content} // '', qr/^nb_maint_store_up\{type="redis"\} 0$/m,
         "$n: metrics store_up 0");
}
# after the first reconnect attempt the error names the address and the refusal
for my $n (sort keys %GW) {
    my $st = $GW{$n}->wait_status(sub { ($_[0]{store}{error} // '') =~ /refused/i }, 10) || $GW{$n}->status;
    like($st->{store}{error} // '', qr/\Q127.0.0.1:@{[$redis->port]}\E.*refused/i,
         "$n: store.error names the Redis address and 'Connection refused'");
}
public_503($_, 'Redis down') for sort keys %GW;
is($A->get('/healthz')->{status}, 200, 'A: nb_maint_pass URI still passes');

for my $n (sort keys %GW) {
    for my $w ([mode => { mode => 'maintenance', node => '127.0.0.1:13001', reason => 'no store' }],
               [restore => { force => JSON::PP::true }],
               [mode => { mode => 'upgrade', reason => 'other reason' }]) {
        my $t0 = time;
        my $res = $GW{$n}->admin(POST => $w->[0], $w->[1]);
        my $dt = time - $t0;
        is($res->{status}, 503, "$n: POST $w->[0] answers 503 while Redis is down")
            or diag $res->{content};
        is(($res->{json}{error} || {})->{code}, 'store_unavailable', "$n: POST $w->[0]: code store_unavailable");
        cmp_ok($dt, '<', 5, "$n: POST $w->[0] answered within 5 s (" . sprintf('%.2f', $dt) . ' s)');
    }
    is_deeply(state_fields($GW{$n}->status), \%want, "$n: state unchanged by the refused writes");
}
my $bp = $A->admin(POST => 'bypass', {});
is($bp->{status}, 200, 'A: POST bypass still works (no store write)') or diag $bp->{content};
is($B->get('/', { Cookie => $bp->{json}{cookie} // '' })->{status}, 200,
   'a cookie from A is still valid on B while Redis is down');

# ---- restart nginx of B while Redis is down ---------------------------------------------------------------
$B->stop;
$B->start;
ok(-s $B->prefix . '/nb_maint_redis_cache.json', 'B: local cache file exists');
{
    my $st = $B->status;
    is($st->{mode}, 'upgrade', 'B after restart: mode upgrade (from the cache)');
    is_deeply(state_fields($st), \%want, 'B after restart: the same state, version and reason');
    ok(!$st->{store}{ok}, 'B after restart: store.ok false');
    ok(defined $st->{store}{error}, 'B after restart: store.error set') and diag("B: $st->{store}{error}");
}
public_503('B', 'after restart, Redis down');
my @bev = $B->events(0);
is(($bev[-1] || {})->{version}, $V, 'B after restart: events from the cache end with the last change');

$r = $B->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{status}, 503, 'B after restart: write 503');
is(($r->{json}{error} || {})->{code}, 'store_unavailable', 'B after restart: store_unavailable');

# ---- Redis back, empty, same port -----------------------------------------------------------------------
# watch the public gates while the gateways reconnect: never anything but 503
my $MAIN_PID = $$;
our $watch_pid;
END { if ($watch_pid && $$ == $MAIN_PID) { kill 'KILL', $watch_pid; waitpid $watch_pid, 0 } }
$watch_pid = fork // die "fork: $!";
if (!$watch_pid) {
    my ($n, $bad) = (0, 0);
    my $end = time + 60;
    my $stop = 0;
    local $SIG{TERM} = sub { $stop = 1 };
    while (!$stop && time < $end) {
        for my $g ($A, $B) {
            my $s = $g->get('/')->{status};
            $n++;
            $bad++ if $s != 503;
        }
        sleep 0.01;
    }
    open my $fh, '>', $A->prefix . '/watch.out';
    print $fh "$n $bad\n";
    close $fh;
    POSIX::_exit(0);
}

$redis->start;
ok($redis->running, 'redis-server started again on port ' . $redis->port);
# empty: nothing loaded from disk (the gateways may refill it at once)
unlike($redis->log, qr/DB loaded from|Loading RDB|AOF loaded/, 'the new Redis started empty');

for my $n (sort keys %GW) {
    my $t0 = time;
    my $st = $GW{$n}->wait_store_ok(1, 15);
    ok($st, "$n: store.ok true again (reconnected)") or next;
    diag(sprintf "$n: reconnected in %.2f s", time - $t0);
    is($st->{store}{error}, undef, "$n: store.error null again");
}
my $rv = NbTest::wait_until(sub { my $x = $redis->cli('GET', "$P:version"); length $x ? $x : 0 }, 10);
is($rv, $V, "redis $P:version re-published: $V (the gateways' version)");
my $rs = eval { json_decode($redis->cli('GET', "$P:state")) } || {};
is($rs->{mode}, 'upgrade', "redis $P:state re-published: mode upgrade");
is($rs->{reason}, 'redis down test', "redis $P:state re-published: reason");
my @rep = map { $GW{$_}->log_grep(qr/redis has version 0, this gateway has $V .*re-publishing ours/) } sort keys %GW;
cmp_ok(scalar @rep, '>=', 1, 'error.log: "redis has version 0, this gateway has N (redis lost data?): re-publishing ours"')
    or diag $A->error_log_tail(15), "\n", $B->error_log_tail(15);
for my $n (sort keys %GW) {
    is_deeply(state_fields($GW{$n}->status), \%want, "$n: still the same upgrade state (never silently normal)");
    like($GW{$n}->admin(GET => 'metrics')->{content} // '', qr/^nb_maint_store_up\{type="redis"\} 1$/m,
         "$n: metrics store_up 1");
}
public_503($_, 'after reconnect') for sort keys %GW;

kill 'TERM', $watch_pid;
waitpid $watch_pid, 0;
$watch_pid = undef;
my ($nw, $badw) = split ' ', ($A->read_file('watch.out') // '0 -1');
cmp_ok($nw, '>', 0, "public requests were watched during the reconnect ($nw)");
is($badw, 0, 'none of them got anything but 503');

# ---- writes work again, from A to B ---------------------------------------------------------------------
$r = $A->admin(POST => 'restore', {});
is($r->{status}, 200, 'A: POST restore goes through') or diag $r->{content};
is($r->{json}{mode}, 'normal', 'A: normal');
is($r->{json}{version}, $V + 1, 'A: version continues from the re-published one');
ok($B->wait_status(sub { $_[0]{mode} eq 'normal' && $_[0]{version} == $V + 1 }, 5), 'B becomes normal');
ok(NbTest::wait_until(sub { $B->get('/')->{status} == 200 }, 5), 'B: public request 200 again');
is($A->get('/')->{status}, 200, 'A: public request 200 again');
is($redis->cli('GET', "$P:version"), $V + 1, 'redis has the new version');

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no worker crashed');
done_testing;
