#!/usr/bin/perl
# scripts/nb-maint end to end: the CLI against a real nginx gateway with the
# module and three real mock NocoBase nodes (cluster_http, FAST_CHECK).
# status, maintenance, restore --wait, drain --wait/undrain, rolling-restart
# under load, upgrade-run (ok and failing verify), maintenance-run, bypass,
# events --since, haproxy-errorfile, error exits. Core Perl only.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $CLI = $ENV{NB_MAINT_CLI} || NbTest::repo_root() . '/scripts/nb-maint';    # override: mutation checks
my $DIR = tempdir('nb_maint_cli_e2e_XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $PERL = $^X;

my ($ng, @M) = NbTest::cluster3(bail => 1);
my ($A, $B, $C) = @M;
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;

my $GW  = 'http://127.0.0.1:' . $ng->port;
my %ENV_CLI = (
    NB_MAINT_URL   => "$GW/_nb_maint/",
    NB_MAINT_TOKEN => NbTest::ADMIN_TOKEN,
    NBT_GW         => $GW,
);

# ---------------------------------------------------------------- helpers

sub slurp { my ($f) = @_; open my $fh, '<:raw', $f or return ''; local $/; my $t = <$fh>; $t // '' }

# start the CLI in the background: { pid, out, err, t0 }
my $RUNS = 0;
sub cli_start {
    my ($opt, @args) = ref $_[0] eq 'HASH' ? @_ : ({}, @_);
    $RUNS++;
    my %h = (out => "$DIR/cli.$RUNS.out", err => "$DIR/cli.$RUNS.err", args => \@args);
    my %env = (%ENV_CLI, %{ $opt->{env} || {} });
    $h{t0} = time;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>', $h{out} or POSIX::_exit(126);
        open STDERR, '>', $h{err} or POSIX::_exit(126);
        $ENV{$_} = $env{$_} for keys %env;
        delete $ENV{NB_MAINT_PAGE};
        { exec $PERL, $CLI, @args }
        POSIX::_exit(127);
    }
    $h{pid} = $pid;
    return \%h;
}

# non-blocking: true once the CLI exited (then rc/out/err/t1 are filled)
sub cli_done {
    my ($h) = @_;
    return 1 if exists $h->{rc};
    my $w = waitpid($h->{pid}, POSIX::WNOHANG());
    return 0 unless $w == $h->{pid};
    my $st = $?;
    $h->{t1}  = time;
    $h->{rc}  = ($st & 127) ? 128 + ($st & 127) : $st >> 8;
    $h->{out} = slurp($h->{out});
    $h->{err} = slurp($h->{err});
    return 1;
}

# wait (at most $timeout s, then kill it): (rc, stdout, stderr, seconds)
sub cli_finish {
    my ($h, $timeout) = @_;
    unless (NbTest::wait_until(sub { cli_done($h) }, $timeout // 40, 0.01)) {
        kill 'KILL', $h->{pid};
        waitpid $h->{pid}, 0;
        fail("nb-maint @{ $h->{args} } did not finish within " . ($timeout // 40) . ' s: killed');
        return (-1, slurp($h->{out}), slurp($h->{err}), time - $h->{t0});
    }
    return ($h->{rc}, $h->{out}, $h->{err}, $h->{t1} - $h->{t0});
}

sub cli { my $h = cli_start(@_); cli_finish($h) }

sub show { my ($out, $err) = @_; diag "--- stdout:\n$out\n--- stderr:\n$err" }

sub node_of {
    my ($st, $id) = @_;
    for my $u (@{ $st->{upstreams} || [] }) {
        for my $n (@{ $u->{nodes} || [] }) { return $n if $n->{id} eq $id }
    }
    return {};
}

sub events_since { my ($v) = @_; [ $ng->events($v) ] }
sub ev_summary {
    my ($evs) = @_;
    return [ map { join ':', $_->{action} // '-', $_->{to} // '-', $_->{node} // '-' } @$evs ];
}

sub read_log {
    my ($f) = @_;
    return [ map { decode_json($_) } grep { /\S/ } split /\n/, slurp($f) ];
}

# The command that the guided runs call for each node: records what the
# gateway says at that moment (mode, version, the node's drain/active/health),
# optionally probes public requests through the gateway, optionally sets the
# mock's state (POST /__mock/state?QUERY), optionally sleeps S seconds and
# records again (the node's health and how many requests reached the mock
# meanwhile). One JSON line per call into LOG.
#   ctl.pl LOG TAG NODE [QUERY] [SLEEP]
my $CTL = "$DIR/ctl.pl";
{
    open my $fh, '>', $CTL or die "$CTL: $!";
    print $fh <<'EOT';
use strict;
use warnings;
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(time sleep);
my ($log, $tag, $node, $query, $sleep) = @ARGV;
my $ua = HTTP::Tiny->new(timeout => 5, keep_alive => 0);
my %rec = (tag => $tag, node => $node, env_node => $ENV{NB_MAINT_NODE}, t0 => time);
sub gw_status {
    my $r = $ua->get("$ENV{NB_MAINT_URL}status",
                     { headers => { Authorization => "Bearer $ENV{NB_MAINT_TOKEN}" } });
    die "GET status: $r->{status}\n" unless $r->{status} == 200;
    return decode_json($r->{content});
}
sub node_of {
    my ($s, $id) = @_;
    for my $u (@{ $s->{upstreams} || [] }) {
        for my $n (@{ $u->{nodes} || [] }) { return $n if $n->{id} eq $id }
    }
    return {};
}
sub mock_requests {
    my $r = $ua->get("http://$node/__mock/stats");
    die "mock stats: $r->{status}\n" unless $r->{status} == 200;
    return decode_json($r->{content})->{requests};
}
my $ok = eval {
    my $s = gw_status();
    my $n = node_of($s, $node);
    @rec{qw(mode version gw_node)} = @$s{qw(mode version node)};
    $rec{drain}  = $n->{drain} ? 1 : 0;
    $rec{active} = $n->{active};
    $rec{health} = $n->{health};
    if ($tag eq 'probe' || $tag eq 'verify') {
        my (%st, %xn);
        for (1 .. 10) {
            my $r = $ua->get("$ENV{NBT_GW}/api/probe");
            $st{ $r->{status} }++;
            $xn{ $r->{headers}{'x-node'} // '-' }++;
        }
        $rec{probe_status} = \%st;
        $rec{probe_node}   = \%xn;
    }
    if (defined $query && $query ne '') {
        $rec{req_before} = mock_requests();
        my $r = $ua->post("http://$node/__mock/state?$query");
        die "POST /__mock/state?$query: $r->{status}\n" unless $r->{status} == 200;
        $rec{mock_health} = decode_json($r->{content})->{health};
    }
    if ($sleep) {
        sleep $sleep;
        my $n2 = node_of(gw_status(), $node);
        $rec{health_mid} = $n2->{health};
        $rec{drain_mid}  = $n2->{drain} ? 1 : 0;
        $rec{req_after}  = mock_requests();
    }
    1;
};
$rec{error} = $@ unless $ok;
$rec{t1} = time;
open my $fh, '>>', $log or die "$log: $!";
print $fh JSON::PP->new->canonical->encode(\%rec), "\n";
close $fh;
print "ctl $tag $node: ", ($ok ? 'ok' : "error: $rec{error}"), "\n";
exit($ok ? 0 : 1);
EOT
    close $fh;
}
sub ctl_cmd {
    my ($log, $tag, $query, $sleep) = @_;
    my $c = "$PERL $CTL $log $tag {node}";
    $c .= " '$query'" if defined $query;
    $c .= " $sleep" if defined $sleep;
    return $c;
}

# ================================================================ status

my $st0 = $ng->status;
my ($rc, $out, $err, $took) = cli('status');
is($rc, 0, 'status: exit 0') or show($out, $err);
like($out, qr/^mode:\s+normal$/m, 'status: shows mode normal');
like($out, qr/^version:\s+\Q$st0->{version}\E$/m, "status: shows the version ($st0->{version})");
like($out, qr/^retry after:\s+\Q$st0->{retry_after}\E s$/m, 'status: shows retry_after');
for my $id (@ids) {
    like($out, qr/^\s+\Q$id\E\s+up\s+no\s+0\b/m, "status: lists $id (up, not drained, 0 active)");
}

($rc, $out, $err) = cli('status', '--json');
is($rc, 0, 'status --json: exit 0');
my $sj = eval { decode_json($out) };
ok(ref $sj eq 'HASH', 'status --json: parses as a JSON object') or diag "$@\n$out";
$sj ||= {};
is($sj->{mode}, 'normal', 'status --json: mode normal');
is_deeply([sort map { $_->{id} } @{ ($sj->{upstreams} || [])->[0]{nodes} || [] }], [sort @ids],
          'status --json: the three node ids');
is_deeply(state_fields($sj), state_fields($ng->status), 'status --json: same state as GET status');

# ================================================================ errors

my $v0 = $ng->status->{version};
($rc, $out, $err) = cli({ env => { NB_MAINT_TOKEN => 'wrong-token' } }, 'status');
is($rc, 1, 'bad token: exit 1');
like($err, qr/unauthorized/, 'bad token: "unauthorized" on stderr') or show($out, $err);
is($out, '', 'bad token: nothing on stdout');

($rc, $out, $err) = cli({ env => { NB_MAINT_TOKEN => 'wrong-token' } }, 'maintenance', '--node', $bid);
is($rc, 1, 'bad token, maintenance: exit 1');
like($err, qr/unauthorized/, '... unauthorized');

($rc, $out, $err) = cli('maintenance', '--node', '127.0.0.1:1', '--reason', 'x');
is($rc, 1, 'maintenance on an unknown node: exit 1');
like($err, qr/unknown_node/, '... "unknown_node" on stderr') or show($out, $err);
my $st = $ng->status;
is($st->{mode}, 'normal', '... mode still normal');
is($st->{version}, $v0, '... version unchanged');

# ================================================================ maintenance

($rc, $out, $err) = cli('maintenance', '--node', $bid, '--reason', 'x');
is($rc, 0, 'maintenance --node B: exit 0') or show($out, $err);
like($out, qr/maintenance, node \Q$bid\E/, '... prints the new mode and node');
$st = $ng->status;
is($st->{mode}, 'maintenance', 'gateway: mode maintenance');
is($st->{node}, $bid, 'gateway: node B');
is($st->{reason}, 'x', 'gateway: reason x');

$_->reset for @M;
my $h = $ng->hit(30, '/api/maint');
is($h->{status}{200} // 0, 30, 'maintenance: 30 of 30 requests 200') or diag explain $h->{status};
is($h->{node}{$bid} // 0, 30, '... all answered by B (X-Node)') or diag explain $h->{node};
is($A->requests + $C->requests, 0, '... A and C got none (mock stats)');

($rc, $out, $err) = cli('status');
like($out, qr/^mode:\s+maintenance$/m, 'status: mode maintenance');
like($out, qr/^node:\s+\Q$bid\E$/m, 'status: node B');

# ================================================================ restore --wait

$C->set_state('starting', seconds => 1);
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C starting (for 1 s): commanding');
my $vr = $ng->status->{version};
my $job = cli_start('restore', '--wait', '--timeout', '15');
my ($seen_restoring, $early_exit, $polls) = (0, 0, 0);
NbTest::wait_until(sub {
    my $done = cli_done($job);
    my $s = $ng->status;
    $polls++;
    if (!$done && ($s->{mode} // '') eq 'restoring'
        && grep { $_ eq $cid } @{ ($s->{restore} || {})->{pending} || [] }) {
        $seen_restoring++;
    }
    $early_exit++ if $done && ($s->{mode} // '') ne 'normal';
    return $done;
}, 20, 0.03);
($rc, $out, $err, $took) = cli_finish($job, 1);
my $after = $ng->status;
is($rc, 0, 'restore --wait: exit 0') or show($out, $err);
is($after->{mode}, 'normal', 'restore --wait: mode is normal when it returns');
ok($seen_restoring, "restore --wait: still running while the gateway was restoring, waiting for C ($seen_restoring of $polls polls)");
is($early_exit, 0, 'restore --wait: never exited while the mode was not normal');
like($out, qr/waiting for .*\Q$cid\E/, 'restore --wait: shows C as awaited') or show($out, $err);
like($out, qr/mode: normal/, 'restore --wait: ends with mode normal');
is_deeply(ev_summary(events_since($vr)), ["restore:restoring:$bid", 'restored:normal:-'],
          'events: restore, then restored (to normal)') or diag explain events_since($vr);
is($C->stats->{health}, 'running', 'C is running again');

# ================================================================ drain --wait / undrain

# only A takes new requests while the slow one starts, so it runs on A
for my $id ($bid, $cid) {
    is($ng->admin(POST => "nodes/$id/drain", {})->{status}, 200, "drain $id (API) for the set-up");
}
my $slow_file = "$DIR/slow.res";
my $slow_pid = fork // die "fork: $!";
if (!$slow_pid) {
    my $r = HTTP::Tiny->new(timeout => 15, keep_alive => 0)->get("$GW/api/slow?sleep_ms=3000");
    my $t = time;
    if (open my $fh, '>', $slow_file) {
        printf $fh "%s %s %.6f\n", $r->{status}, $r->{headers}{'x-node'} // '-', $t;
        close $fh;
    }
    POSIX::_exit(0);
}
ok(NbTest::wait_until(sub { ($ng->node($aid)->{active} // 0) == 1 }, 3), 'the slow request runs on A (active 1)');
for my $id ($bid, $cid) {
    is($ng->admin(POST => "nodes/$id/undrain", {})->{status}, 200, "undrain $id (API)");
}
my $vd = $ng->status->{version};

($rc, $out, $err, $took) = cli('drain', $aid, '--wait', '--timeout', '10');
my $cli_end = time;
waitpid $slow_pid, 0;
my ($slow_status, $slow_node, $slow_end) = split ' ', slurp($slow_file);
is($rc, 0, 'drain A --wait: exit 0') or show($out, $err);
cmp_ok($took, '>=', 1.0, sprintf 'drain A --wait: waited for the slow request (took %.2f s)', $took);
cmp_ok($cli_end, '>=', ($slow_end // 9e9) - 0.05, '... returned only after the slow request finished');
like($out, qr/1 request in flight on \Q$aid\E/, '... showed the request in flight');
like($out, qr/\Q$aid\E has no request in flight/, '... and that none is left');
is($slow_status, 200, 'the slow request finished with 200 (drain lets it run)');
is($slow_node, $aid, '... answered by A');
my $na = node_of($ng->status, $aid);
ok($na->{drain}, 'status: A drained');
is($na->{active}, 0, 'status: A active 0');
($rc, $out, $err) = cli('status');
like($out, qr/^\s+\Q$aid\E\s+up\s+yes\s+0\b/m, 'nb-maint status: A drained (yes), 0 active');
$h = $ng->hit(30, '/api/drained');
is($h->{status}{200} // 0, 30, 'A drained: 30 of 30 requests 200');
is($h->{node}{$aid} // 0, 0, '... none to A');

($rc, $out, $err) = cli('undrain', $aid);
is($rc, 0, 'undrain A: exit 0') or show($out, $err);
like($out, qr/\Q$aid\E undrained/, '... says so');
ok(!node_of($ng->status, $aid)->{drain}, 'status: A not drained');
$h = $ng->hit(60, '/api/undrained');
cmp_ok($h->{node}{$aid} // 0, '>=', 10, 'A gets requests again') or diag explain $h->{node};

# ---------------------------------------------------------------- events --since
($rc, $out, $err) = cli('events', '--since', $vd);
is($rc, 0, 'events --since: exit 0') or show($out, $err);
my @lines = grep { /\S/ } split /\n/, $out;
is(scalar @lines, 2, 'events --since N: two changes since N') or diag $out;
like($lines[0] // '', qr/^\s*\Q@{[$vd + 1]}\E\s.*\bops\@127\.0\.0\.1\s+drain\b.*node=\Q$aid\E/, '... first: drain A (version N+1, actor)');
like($lines[1] // '', qr/^\s*\Q@{[$vd + 2]}\E\s.*\bundrain\b.*node=\Q$aid\E/, '... then: undrain A (version N+2)');
unlike($out, qr/node=\Q$bid\E/, '... not the older changes (drain/undrain of B)');
($rc, $out, $err) = cli('events', '--since', $vd - 4, '--json');
my $ej = eval { decode_json($out) } || {};
is_deeply([ map { $_->{version} } @{ $ej->{events} || [] } ], [ $vd - 3 .. $vd + 2 ],
          'events --since N --json: versions N+1 .. now') or diag $out;

# ================================================================ rolling-restart under load

my $load_file = "$DIR/load.res";
my $load_stop = "$DIR/load.stop";
my $load_pid = fork // die "fork: $!";
if (!$load_pid) {
    my $ua = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
    open my $fh, '>', $load_file or POSIX::_exit(1);
    $fh->autoflush(1);
    my $end = time + 60;
    while (!-e $load_stop && time < $end) {
        my $r = $ua->get("$GW/api/load");
        printf $fh "%s %s\n", $r->{status}, $r->{headers}{'x-node'} // '-';
        sleep 0.005;
    }
    close $fh;
    POSIX::_exit(0);
}
ok(NbTest::wait_until(sub { my @l = split /\n/, slurp($load_file); @l >= 10 }, 5), 'background load running');

my $rlog = "$DIR/rolling.log";
my $vrr = $ng->status->{version};
$job = cli_start('rolling-restart', '--restart-cmd', ctl_cmd($rlog, 'restart', 'health=starting&seconds=1', 0.8),
                 '--timeout', '10', '--health-timeout', '15');
# watch the gateway meanwhile: a node that is not up must be drained
my (%down_drained, @down_undrained);
NbTest::wait_until(sub {
    my $done = cli_done($job);
    my $s = $ng->status;
    for my $id (@ids) {
        my $n = node_of($s, $id);
        next if ($n->{health} // '') eq 'up';
        if ($n->{drain}) { $down_drained{$id}++ }
        else { push @down_undrained, "$id $n->{health} (version $s->{version})" }
    }
    return $done;
}, 40, 0.02);
($rc, $out, $err, $took) = cli_finish($job, 1);
open my $sfh, '>', $load_stop; close $sfh;
waitpid $load_pid, 0;
is($rc, 0, sprintf 'rolling-restart: exit 0 (%.1f s)', $took) or show($out, $err);
like($out, qr/rolling restart done/, '... says done');
for my $id (@ids) {
    like($out, qr/restart \Q$id\E: .*ctl\.pl.*\Q$id\E/, "... shows the restart command of $id");
}
is_deeply(\@down_undrained, [], 'no node was undrained before it was healthy again (watched status)');
is_deeply([ sort grep { $down_drained{$_} } keys %down_drained ], [ sort @ids ],
          'each node was seen down while drained (the restarts took effect)');
my $rl = read_log($rlog);
is_deeply([ sort map { $_->{node} } @$rl ], [ sort @ids], 'every node restarted exactly once') or diag explain $rl;
for my $r (@$rl) {
    my $id = $r->{node};
    ok(!$r->{error}, "restart $id: command ok") or diag $r->{error};
    is($r->{env_node}, $id, "restart $id: NB_MAINT_NODE set");
    is($r->{mode}, 'normal', "restart $id: mode normal");
    ok($r->{drain}, "restart $id: drained when the restart ran");
    is($r->{active}, 0, "restart $id: no request in flight when the restart ran");
    is($r->{mock_health}, 'starting', "restart $id: mock state changed to starting");
    is($r->{health_mid}, 'commanding', "restart $id: the gateway saw it commanding (NocoBase starting) during the restart");
    is(($r->{req_after} // -1) - ($r->{req_before} // 0), 0,
       "restart $id: no request reached it during the restart (under load)");
}
my $ev = events_since($vrr);
my @order = map { $_->{node} } grep { ($_->{action} // '') eq 'drain' } @$ev;
is_deeply([ map { "$_->{action}:" . ($_->{node} // "-") } @$ev ], [ map { ("drain:$_", "undrain:$_") } @order ],
          'events: drain X, undrain X for one node after the other') or diag explain ev_summary($ev);
is_deeply([ sort @order ], [ sort @ids ], '... for each node once');
my %dv = map { ($_->{node} => $_->{version}) } grep { $_->{action} eq 'drain' } @$ev;
my %uv = map { ($_->{node} => $_->{version}) } grep { $_->{action} eq 'undrain' } @$ev;
for my $r (@$rl) {
    my $id = $r->{node};
    ok(defined $dv{$id} && defined $uv{$id} && $dv{$id} <= $r->{version} && $r->{version} < $uv{$id},
       "restart $id ran after its drain and before its undrain (versions)")
        or diag "drain $dv{$id}, restart at $r->{version}, undrain $uv{$id}";
}
my (%ls, %ln);
for (split /\n/, slurp($load_file)) { my ($s, $n) = split ' '; $ls{$s}++; $ln{$n}++ }
my $total = 0; $total += $_ for values %ls;
cmp_ok($total, '>=', 100, "background load: $total requests during the rolling restart");
is_deeply([ grep { $_ >= 500 } keys %ls ], [], 'background load: no 5xx (or connection error)') or diag explain \%ls;
is($ls{200} // 0, $total, 'background load: all 200');
cmp_ok($ln{$_} // 0, '>', 0, "background load: $_ served some") for @ids;
$st = $ng->status;
is($st->{mode}, 'normal', 'after rolling-restart: mode normal');
is_deeply([ map { node_of($st, $_)->{drain} ? 1 : 0 } @ids ], [0, 0, 0], '... no node drained');
ok($ng->wait_all_health('up', 5, @ids), '... all nodes up');

# ================================================================ maintenance-run

my $mlog = "$DIR/maint.log";
my $vm = $ng->status->{version};
($rc, $out, $err, $took) = cli('maintenance-run', '--node', $bid, '--reason', 'plugins',
    '--stop-cmd', ctl_cmd($mlog, 'stop', 'health=fail'),
    '--start-cmd', ctl_cmd($mlog, 'start', 'health=starting&seconds=1'),
    '--task-cmd', ctl_cmd($mlog, 'probe'),
    '--timeout', '15', '--drain-timeout', '5');
is($rc, 0, sprintf 'maintenance-run: exit 0 (%.1f s)', $took) or show($out, $err);
like($out, qr/maintenance done/, '... says done');
is($ng->status->{mode}, 'normal', 'maintenance-run: mode normal at the end');
is_deeply(ev_summary(events_since($vm)),
          ["mode:maintenance:$bid", "restore:restoring:$bid", 'restored:normal:-'],
          'events: maintenance on B, restore, restored') or diag explain events_since($vm);
my $ml = read_log($mlog);
is_deeply([ map { "$_->{tag} $_->{node}" } @$ml ],
          ["stop $aid", "stop $cid", "probe $bid", "start $aid", "start $cid"],
          'commands: stop A and C, the task on B, start A and C') or diag explain $ml;
is_deeply([ map { $_->{mode} } @$ml ], [('maintenance') x 5], '... all while in maintenance mode');
my ($probe) = grep { $_->{tag} eq 'probe' } @$ml;
is_deeply($probe && $probe->{probe_node}, { $bid => 10 }, 'during the task every request went to B')
    or diag explain $probe;
is_deeply($probe && $probe->{probe_status}, { 200 => 10 }, '... with 200');
ok(!grep({ $_->{error} } @$ml), 'no command failed');

# ================================================================ upgrade-run

ok($ng->wait_all_health('up', 5, @ids), 'all nodes up before the upgrade');
my $ulog = "$DIR/upgrade.log";
my $vu = $ng->status->{version};
($rc, $out, $err, $took) = cli('upgrade-run',
    '--stop-cmd', ctl_cmd($ulog, 'stop', 'health=fail'),
    '--start-cmd', ctl_cmd($ulog, 'start', 'health=starting&seconds=1'),
    '--verify-cmd', ctl_cmd($ulog, 'verify'),
    '--timeout', '15', '--drain-timeout', '5');
is($rc, 0, sprintf 'upgrade-run: exit 0 (%.1f s)', $took) or show($out, $err);
like($out, qr/upgrade done/, '... says done');
$st = $ng->status;
is($st->{mode}, 'normal', 'upgrade-run: final mode normal');
is_deeply(ev_summary(events_since($vu)),
          ["mode:upgrade:$aid", "restore:restoring:$aid", 'restored:normal:-'],
          'events: upgrade (node A), restoring, normal') or diag explain events_since($vu);
my $ul = read_log($ulog);
is_deeply([ map { "$_->{tag} $_->{node}" } @$ul ],
          ["stop $aid", "stop $bid", "stop $cid", "start $aid", "verify $aid", "start $bid", "start $cid"],
          'commands: stop all, start A, verify A, start B and C') or diag explain $ul;
is_deeply([ map { $_->{mode} } @$ul ], [('upgrade') x 7], '... all while in upgrade mode');
my ($ver) = grep { $_->{tag} eq 'verify' } @$ul;
is($ver && $ver->{health}, 'up', 'verify ran once A was healthy again');
is_deeply($ver && $ver->{probe_status}, { 503 => 10 }, '... while public requests got 503');
ok(!grep({ $_->{error} } @$ul), 'no command failed');
is($_->stats->{health}, 'running', $_->id . ' running after the upgrade') for @M;
$h = $ng->hit(30, '/api/after-upgrade');
is($h->{status}{200} // 0, 30, 'after upgrade-run: public requests 200');

# ---------------------------------------------------------------- failing verify
ok($ng->wait_all_health('up', 5, @ids), 'all nodes up before the failing upgrade');
my $flog = "$DIR/upgrade-fail.log";
my $vf = $ng->status->{version};
($rc, $out, $err, $took) = cli('upgrade-run', '--retry-after', '77', '--reason', 'v2',
    '--stop-cmd', ctl_cmd($flog, 'stop', 'health=fail'),
    '--start-cmd', ctl_cmd($flog, 'start', 'health=running'),
    '--verify-cmd', 'false',
    '--timeout', '15', '--drain-timeout', '5');
isnt($rc, 0, 'upgrade-run with a failing --verify-cmd: non-zero exit');
is($rc, 1, '... exit 1');
like($err, qr/step \d+\/\d+ failed: command failed \(exit status 1\): false/, '... names the failed step') or show($out, $err);
like($out, qr/To roll back/, '... says how to roll back');
like($out, qr/restore --wait/, '... (restore --wait)');
like($out, qr/To resume.*\n(?:.*\n)*.*start \Q$bid\E.*\n(?:.*\n)*.*restore --wait/, '... and how to resume (start the others, restore)');
unlike($out, qr/upgrade done/, '... not done');
my $fl = read_log($flog);
is_deeply([ map { "$_->{tag} $_->{node}" } @$fl ],
          ["stop $aid", "stop $bid", "stop $cid", "start $aid"],
          'commands: stopped all, started A only, stopped at the verify') or diag explain $fl;
$st = $ng->status;
is($st->{mode}, 'upgrade', 'the gateway stays in upgrade mode');
is($st->{node}, $aid, '... node A');
is($st->{retry_after}, 77, '... retry_after 77');
is_deeply(ev_summary(events_since($vf)), ["mode:upgrade:$aid"], 'events: only the upgrade');
$_->reset for @M;
$h = $ng->hit(20, '/api/pub');
is($h->{status}{503} // 0, 20, 'upgrade: public requests 503') or diag explain $h->{status};
is($h->{nb}{upgrade} // 0, 20, '... X-NB-Maint: upgrade');
is($A->requests + $B->requests + $C->requests, 0, '... no node contacted');
my $retry_hdr = $h->{res}[0]{headers}{'retry-after'};
is($retry_hdr, 77, "... the gateway's Retry-After: 77");

# ---------------------------------------------------------------- bypass
($rc, $out, $err) = cli('bypass');
is($rc, 0, 'bypass: exit 0') or show($out, $err);
chomp(my $pair = $out);
like($pair, qr/^nb_maint_bypass=\S+$/, 'bypass: prints nb_maint_bypass=VALUE');
$h = $ng->hit(10, '/api/byp', headers => { Cookie => $pair });
is($h->{status}{200} // 0, 10, 'with the cookie: 10 of 10 requests 200') or diag explain $h->{status};
is($h->{node}{$aid} // 0, 10, '... answered by the designated node A');
$h = $ng->hit(10, '/api/byp');
is($h->{status}{503} // 0, 10, 'without it: 503');
# flip one character of the signature (the first after the last '.': all data bits)
(my $forged = $pair) =~ s/\.(.)([^.]*)$/'.' . ($1 eq 'A' ? 'B' : 'A') . $2/e;
isnt($forged, $pair, 'forged cookie differs');
$h = $ng->hit(5, '/api/byp', headers => { Cookie => $forged });
is($h->{status}{503} // 0, 5, 'with a changed cookie: 503');

# ---------------------------------------------------------------- haproxy-errorfile
my $ef = "$DIR/503.http";
($rc, $out, $err) = cli('haproxy-errorfile', '--out', $ef);
is($rc, 0, 'haproxy-errorfile --out: exit 0') or show($out, $err);
my $file = slurp($ef);
like($file, qr{\AHTTP/1\.0 503 }, 'errorfile starts with HTTP/1.0 503');
my ($ehead, $ebody) = split /\r\n\r\n/, $file, 2;
my ($eretry) = ($ehead // '') =~ /^Retry-After: (\d+)\r?$/m;
is($eretry, $st->{retry_after}, "errorfile Retry-After equals the gateway's retry_after ($st->{retry_after})");
is($eretry, $retry_hdr, "... and the gateway's own 503 Retry-After header");
like($ehead, qr/^X-NB-Maint: upgrade\r?$/m, 'errorfile: the gateway mode (upgrade)');
like($ebody // '', qr/v2/, 'errorfile: the gateway reason');

# ---------------------------------------------------------------- back to normal
$_->set_state('running') for @M;
my $vb = $ng->status->{version};
($rc, $out, $err, $took) = cli('restore', '--wait', '--timeout', '15');
is($rc, 0, 'restore --wait after the failed upgrade: exit 0') or show($out, $err);
is($ng->status->{mode}, 'normal', '... mode normal');
is_deeply(ev_summary(events_since($vb)), ["restore:restoring:$aid", 'restored:normal:-'],
          '... events restore, restored');

# events over the whole failed upgrade and its recovery
($rc, $out, $err) = cli('events', '--since', $vf);
@lines = grep { /\S/ } split /\n/, $out;
is(scalar @lines, 3, 'events --since: upgrade, restore, restored') or diag $out;
like($lines[0] // '', qr/\bmode normal -> upgrade\b.*node=\Q$aid\E.*reason=v2/, '... the upgrade');
like($lines[1] // '', qr/\brestore upgrade -> restoring\b/, '... the restore');
like($lines[2] // '', qr/\bnb_maint\s+restored restoring -> normal\b/, '... restored by nb_maint');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
