# Admin API happy paths: status, mode changes (also seen by every worker at
# once), restore, If-Match, events, tokens.
use strict;
use warnings;
use utf8;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Encode ();

my $RFC3339 = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$/;
my $NODE    = '127.0.0.1:13001';

sub since_epoch {
    my ($s) = @_;
    my ($Y, $M, $D, $h, $m, $sec) = $s =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)/ or return undef;
    local $ENV{TZ} = 'UTC';
    POSIX::tzset();
    return POSIX::mktime($sec, $m, $h, $D, $M - 1, $Y - 1900);
}

my $ng = NbTest::Nginx->new(
    http => std_http(listen_opts => ' reuseport', server_extra => '    add_header X-Pid $pid always;'),
);
$ng->start;

# ---- status of a fresh state ---------------------------------------------
my $r = $ng->admin(GET => 'status');
is($r->{status}, 200, 'GET status');
my $st = $r->{json};
is($st->{mode}, 'normal', 'mode normal');
ok(!defined $st->{node}, 'node null');
ok(exists $st->{restoring_from} && !defined $st->{restoring_from}, 'restoring_from null');
like($st->{version}, qr/^\d+$/, 'version integer');
ok(exists $st->{since}, 'since present');
ok(exists $st->{reason}, 'reason present');
is($st->{retry_after}, 300, 'retry_after defaults to 300');
is_deeply($st->{store}, { type => 'file', ok => JSON::PP::true, error => undef }, 'store object');
is_deeply($st->{restore}{pending}, [], 'restore.pending empty');
ok(!$st->{restore}{checked}, 'restore.checked false: no upstream has checks');
is_deeply($st->{upstreams}, [], 'upstreams empty (no nb_maint upstream)');
my $v0 = $st->{version};

# second token of the token file works too
$r = $ng->admin(GET => 'status', undef, { Authorization => 'Bearer ' . VIEWER_TOKEN });
is($r->{status}, 200, 'second token (after a # comment line) accepted');

# ---- workers see mode changes at once ---------------------------------------
my %pids;
for (1 .. 20) {
    my $g = $ng->get('/');
    is($g->{status}, 200, 'warm-up request 200') or last;
    $pids{ $g->{headers}{'x-pid'} // '?' }++;
}
is(scalar(keys %pids), 2, 'warm-up requests reached both workers (reuseport)')
    or diag explain \%pids;

my $v = $v0;
for my $cycle (1 .. 3) {
    my $reason = "cycle-$cycle upgrade";
    $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => $reason, retry_after => 100 + $cycle });
    is($r->{status}, 200, "cycle $cycle: POST mode upgrade 200") or diag $r->{content};
    is($r->{json}{mode}, 'upgrade', "cycle $cycle: answer is the new status");
    is($r->{json}{version}, $v + 1, "cycle $cycle: version +1");
    is($r->{json}{reason}, $reason, "cycle $cycle: reason");
    is($r->{json}{retry_after}, 100 + $cycle, "cycle $cycle: retry_after");
    like($r->{json}{since} // '', $RFC3339, "cycle $cycle: since is RFC 3339 UTC");
    my $t = since_epoch($r->{json}{since} // '');
    ok(defined $t && abs($t - time) < 120, "cycle $cycle: since is now") or diag $r->{json}{since};
    $v = $r->{json}{version};

    my ($n503, $nreason, %seen) = (0, 0);
    for (1 .. 40) {
        my $g = $ng->get('/');
        $n503++ if $g->{status} == 503;
        $nreason++ if ($g->{content} // '') =~ /\Q$reason\E/;
        $seen{ $g->{headers}{'x-pid'} } = 1 if $g->{headers}{'x-pid'};
    }
    is($n503, 40, "cycle $cycle: all 40 fresh-connection requests right after the POST are 503");
    is($nreason, 40, "cycle $cycle: all 40 pages show the new reason (no stale per-worker page)");
    diag("cycle $cycle: 503s came from worker(s) " . join(',', sort keys %seen)) if keys %seen < 2;

    $r = $ng->admin(POST => 'restore', { force => JSON::PP::false });
    is($r->{status}, 200, "cycle $cycle: POST restore 200") or diag $r->{content};
    is($r->{json}{mode}, 'normal', "cycle $cycle: restore without upstreams goes straight to normal");
    ok(!defined $r->{json}{restoring_from}, "cycle $cycle: restoring_from null after restore");
    cmp_ok($r->{json}{version}, '>', $v, "cycle $cycle: version grew on restore");
    $v = $r->{json}{version};
    my $n200 = grep { $_->{status} == 200 } map { $ng->get('/') } 1 .. 40;
    is($n200, 40, "cycle $cycle: all 40 requests right after restore are 200");
}

# ---- maintenance (not gated: only routes) ----------------------------------
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $NODE, reason => 'plugins' });
is($r->{status}, 200, 'POST mode maintenance with node') or diag $r->{content};
is($r->{json}{mode}, 'maintenance', 'mode maintenance');
is($r->{json}{node}, $NODE, 'node set');
is($r->{json}{version}, $v + 1, 'version +1');
$v = $r->{json}{version};
is($ng->get('/')->{status}, 200, 'maintenance mode does not 503 a non-proxied location');
is_deeply(state_fields($ng->status), state_fields($r->{json}), 'GET status equals the POST answer');

# ---- mode normal = restore, empty body restore -------------------------------
$r = $ng->admin(POST => 'mode', { mode => 'normal' });
is($r->{status}, 200, 'POST mode normal (restore)') or diag $r->{content};
is($r->{json}{mode}, 'normal', 'back to normal');
cmp_ok($r->{json}{version}, '>', $v, 'version grew');
$v = $r->{json}{version};

$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $NODE });
is($r->{status}, 200, 'upgrade with a node');
is($r->{json}{node}, $NODE, 'upgrade node set');
$v = $r->{json}{version};
$r = $ng->admin(POST => 'restore', undef, { 'Content-Type' => undef });
is($r->{status}, 200, 'POST restore without a body') or diag $r->{content};
is($r->{json}{mode}, 'normal', 'normal again');
$v = $r->{json}{version};
$ng->admin(POST => 'mode', { mode => 'upgrade' });
$r = $ng->admin(POST => 'restore', '', { 'Content-Type' => undef });
is($r->{status}, 200, 'POST restore with an empty body (Content-Length: 0)') or diag $r->{content};
is($r->{json}{mode}, 'normal', 'normal again');
$v = $r->{json}{version};

# ---- If-Match ----------------------------------------------------------------
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'if-match' }, { 'If-Match' => qq("$v") });
is($r->{status}, 200, 'If-Match "<current version>" accepted') or diag $r->{content};
is($r->{json}{version}, $v + 1, 'version +1');
$v = $r->{json}{version};
$r = $ng->admin(POST => 'restore', { force => JSON::PP::false }, { 'If-Match' => $v });
is($r->{status}, 200, 'If-Match without quotes accepted') or diag $r->{content};
$v = $r->{json}{version};

# ---- retry_after boundaries, reason contents ------------------------------------
for my $ra (0, 86400) {
    $r = $ng->admin(POST => 'mode', { mode => 'upgrade', retry_after => $ra });
    is($r->{status}, 200, "retry_after $ra accepted") or diag $r->{content};
    is($r->{json}{retry_after}, $ra, "retry_after $ra stored");
    $ng->admin(POST => 'restore');
}
my @reasons = (
    'x' x 512,                                   # 512 bytes: the limit
    ('升' x 170) . 'ab',                          # 512 bytes, 172 characters
    qq(He said "hi"\n\tback\\slash </script> & ü €),
    'Wartung für das Upgrade — 升级',
);
for my $reason (@reasons) {
    $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => $reason });
    is($r->{status}, 200, 'reason of ' . length(Encode::encode_utf8($reason)) . ' bytes accepted')
        or diag $r->{content};
    is($r->{json}{reason}, $reason, 'reason round-trips exactly in the answer');
    is($ng->status->{reason}, $reason, 'reason round-trips exactly in GET status');
    $ng->admin(POST => 'restore');
}
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'charset' },
                { 'Content-Type' => 'application/json; charset=utf-8' });
is($r->{status}, 200, 'Content-Type application/json; charset=utf-8 accepted') or diag $r->{content};
$ng->admin(POST => 'restore');

# ---- events -----------------------------------------------------------------------
$st = $ng->status;
$v = $st->{version};
$r = $ng->admin(GET => "events?since=$v");
is($r->{status}, 200, 'GET events');
is_deeply($r->{json}, { events => [] }, 'no events after the current version');

$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'ev-1', retry_after => 60 });
$r = $ng->admin(POST => 'restore', undef, { Authorization => 'Bearer ' . VIEWER_TOKEN });
is($r->{status}, 200, 'restore with the second token');
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $NODE, reason => 'ev-3' });
my $vnow = $r->{json}{version};

$r = $ng->admin(GET => "events?since=$v");
is($r->{status}, 200, 'GET events?since=N');
my $ev = $r->{json}{events};
is(ref $ev, 'ARRAY', 'events is an array') or diag $r->{content};
$ev ||= [];
is(scalar @$ev, $vnow - $v, 'one event per version since N');
is_deeply([map { $_->{version} } @$ev], [$v + 1 .. $vnow], 'events oldest first, versions > N, newest last');
for my $e (@$ev) {
    for my $f (qw(version time actor action from to node reason)) {
        ok(exists $e->{$f}, "event $e->{version} has '$f'");
    }
    like($e->{time} // '', qr/^(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|\d+(?:\.\d+)?$)/,
         "event $e->{version} time is a timestamp");
    ok(defined $e->{action} && length $e->{action}, "event $e->{version} action non-empty");
}
if (@$ev == 3) {
    is($ev->[0]{from}, 'normal', 'event 1 from normal');
    is($ev->[0]{to}, 'upgrade', 'event 1 to upgrade');
    is($ev->[0]{reason}, 'ev-1', 'event 1 reason');
    is($ev->[0]{actor}, 'ops@127.0.0.1', 'event 1 actor = token name @ client ip');
    is($ev->[1]{from}, 'upgrade', 'event 2 from upgrade');
    is($ev->[1]{to}, 'normal', 'event 2 to normal');
    is($ev->[1]{actor}, 'viewer@127.0.0.1', 'event 2 actor is the second token name');
    is($ev->[2]{to}, 'maintenance', 'event 3 to maintenance');
    is($ev->[2]{node}, $NODE, 'event 3 node');
}
$r = $ng->admin(GET => 'events?since=0');
is($r->{status}, 200, 'GET events?since=0');
is(scalar @{ $r->{json}{events} || [] }, $vnow - $v0, 'since=0 gives every event of this run');
ok(-s $ng->prefix . '/state.json.events', 'events log <state file>.events exists');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
