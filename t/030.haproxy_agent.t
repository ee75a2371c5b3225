# HAProxy agent (SPEC section 9, doc/haproxy.md), raw protocol:
# connect to the stream port, send "<node id>\n", read one line, the agent
# closes.  up ready / up drain / maint / down as the cluster state says, in
# every mode (normal, maintenance, upgrade, restoring from either); unknown
# ids and ids of another upstream are down; garbage, empty lines, silent and
# vanishing clients never crash a worker nor stall the agent.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

for my $so (NbTest::stream_core_path(), NbTest::stream_module_path()) {
    ok(-f $so, "stream module present: $so") or BAIL_OUT("missing $so (make; libnginx-mod-stream)");
}

my ($A, $B, $C, $D) = map { NbTest::Mock->new } 1 .. 4;
my @M = ($A, $B, $C);
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;
my $did = $D->id;

# upstream app (A, B, C) and a second nb_maint upstream app2 (D), an agent
# for each
my $ng = NbTest::Nginx->new(
    http => cluster_http(
        nodes     => \@M,
        upstreams => "upstream app2 {\n    nb_maint;\n    nb_maint_check " . FAST_CHECK
                   . ";\n    server $did;\n}\n",
    ),
    agent_opts(agents => { agent => 'app', agent2 => 'app2' }),
);
my ($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t: stream core + nb_maint http + nb_maint stream modules, nb_maint_agent') or diag $out;
$ng->start;
my $AP  = $ng->port_of('agent');
my $AP2 = $ng->port_of('agent2');
ok(NbTest::wait_until(sub { NbTest::Nginx::_port_open($AP) && NbTest::Nginx::_port_open($AP2) }, 5),
   'agent ports listen');
ok($ng->wait_all_health('up', 5, @ids), 'A, B, C are up');
ok(defined $ng->wait_health($did, 'up', 5), 'D (app2) is up');

# ---- silent clients: opened now, looked at at the end -----------------------------------
# they must neither block the agent's other answers nor stay open forever
my @silent;
for (1 .. 10) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $AP, Proto => 'tcp', Timeout => 3)
        or die "connect agent: $!";
    push @silent, $s;
}
my $silent_t0 = time;

# ask every id of %$want $rounds times (new connections: any worker); one
# assertion per id, on the list of answers
sub agent_is {
    my ($label, $want, %o) = @_;
    my $port = $o{port} // $AP;
    my $rounds = $o{rounds} // 4;
    for my $id (sort keys %$want) {
        my @got = map { agent_ask($port, $id, timeout => 3) // '(nothing)' } 1 .. $rounds;
        is_deeply(\@got, [($want->{$id}) x $rounds], "$label: $id -> '$want->{$id}'")
            or diag "answers: @got";
    }
}

sub all_ids { my ($ans) = @_; return { map { ($_ => $ans) } @ids } }

sub set_mode {
    my ($body, $label) = @_;
    my $r = $ng->admin(POST => 'mode', $body);
    is($r->{status}, 200, $label) or diag $r->{content};
    return $r->{json} || {};
}

# ---- normal ---------------------------------------------------------------------------------
my $raw = raw_request($AP, "$aid\n", timeout => 3);
is($raw, "up ready\n", 'normal: exactly one line "up ready\n", then the agent closes');
agent_is('normal', all_ids('up ready'));
agent_is('normal, agent of app2', { $did => 'up ready' }, port => $AP2);

# ---- unknown ids and ids of the other upstream -------------------------------------------------
my ($ahost, $aport) = $aid =~ /^(.*):(\d+)$/;
agent_is('unknown ids', {
    '127.0.0.1:1'             => 'down',
    "localhost:$aport"        => 'down',     # not spelled as $upstream_addr
    "${aid}0"                 => 'down',     # a real id is a prefix of it
    substr($aid, 0, -1)       => 'down',     # it is a prefix of a real id
    "$ahost"                  => 'down',
    "$did"                    => 'down',     # a server of app2, not of app
}, rounds => 2);
agent_is('agent of app2: a server of app', { $aid => 'down' }, port => $AP2, rounds => 2);

# ---- drain ------------------------------------------------------------------------------------
is($ng->admin(POST => "nodes/$aid/drain")->{status}, 200, 'drain A');
agent_is('A drained', { $aid => 'up drain', $bid => 'up ready', $cid => 'up ready' });
is($ng->admin(POST => "nodes/$aid/undrain")->{status}, 200, 'undrain A');
agent_is('A undrained', all_ids('up ready'), rounds => 2);

# ---- failing health check ---------------------------------------------------------------------
$C->set_state('fail');
ok(defined $ng->wait_health($cid, 'down', 3), 'C (health check 500) is down');
agent_is('C down', { $aid => 'up ready', $bid => 'up ready', $cid => 'down' });
$C->set_state('running');
ok(defined $ng->wait_health($cid, 'up', 3), 'C is up again');
agent_is('C up again', all_ids('up ready'), rounds => 2);

# ---- a commanding node: the agent answers as the balancer decides (issue 21, item 9) ----------
# normal mode: the balancer sends a commanding node no public traffic, so HAProxy must not either
$C->set_state('commanding', command => 'pm.enable');
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C (503 APP_COMMANDING) is commanding');
agent_is('normal, C commanding', { $aid => 'up ready', $bid => 'up ready', $cid => 'down' });
$C->reset;
my $hc = $ng->hit(12, '/api/x');
is($hc->{status}{200}, 12, '... 12 requests through nginx: 200');
is($C->stats->{requests}, 0, '... and none of them to C (the balancer excludes it too)');
# the designated node keeps its traffic while commanding
set_mode({ mode => 'maintenance', node => $cid }, 'maintenance on the commanding C');
agent_is('maintenance on C, C commanding', { $aid => 'maint', $bid => 'maint', $cid => 'up ready' }, rounds => 2);
my $r0 = $ng->admin(POST => 'restore', { force => JSON::PP::true });
is($r0->{status}, 200, 'force restore');
$C->set_state('running');
ok(defined $ng->wait_health($cid, 'up', 3), 'C is up again');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 5), '... normal');
agent_is('C running again', all_ids('up ready'), rounds => 2);

# ---- maintenance on B ---------------------------------------------------------------------------
my $st = set_mode({ mode => 'maintenance', node => $bid, reason => 'agent test' }, 'maintenance on B');
is($st->{mode}, 'maintenance', '... mode maintenance');
agent_is('maintenance on B', { $aid => 'maint', $bid => 'up ready', $cid => 'maint' });
is($ng->admin(POST => "nodes/$aid/drain")->{status}, 200, 'maintenance: drain A');
agent_is('maintenance, A drained', { $aid => 'maint', $bid => 'up ready' }, rounds => 2);
is($ng->admin(POST => "nodes/$aid/undrain")->{status}, 200, 'maintenance: undrain A');
agent_is('maintenance: unknown id', { '127.0.0.1:1' => 'down' }, rounds => 2);

# designated node changed to A
set_mode({ mode => 'maintenance', node => $aid }, 'maintenance: designated node A');
agent_is('maintenance on A', { $aid => 'up ready', $bid => 'maint', $cid => 'maint' });
set_mode({ mode => 'maintenance', node => $bid }, 'maintenance: designated node B again');

# ---- restoring from maintenance, C still starting -----------------------------------------------
$C->set_state('starting');
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C (starting, 503 APP_COMMANDING) is commanding');
my $r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore (C still starting)') or diag $r->{content};
is($r->{json}{mode}, 'restoring', '... mode restoring');
is($r->{json}{restoring_from}, 'maintenance', '... restoring_from maintenance');
agent_is('restoring from maintenance', { $aid => 'maint', $bid => 'up ready', $cid => 'maint' });
is($ng->status->{mode}, 'restoring', 'still restoring after the agent checks (C starting)');
$C->set_state('running');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 5), 'C running: restoring -> normal');
agent_is('normal after restoring from maintenance', all_ids('up ready'));

# ---- upgrade ----------------------------------------------------------------------------------
$st = set_mode({ mode => 'upgrade', node => $bid }, 'upgrade with node B');
is($st->{mode}, 'upgrade', '... mode upgrade');
agent_is('upgrade (node B)', all_ids('maint'));
agent_is('upgrade: unknown id', { '127.0.0.1:1' => 'down' }, rounds => 2);

$C->set_state('starting');
ok(defined $ng->wait_health($cid, 'commanding', 3), 'C (starting) is commanding');
$r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore from upgrade (C still starting)') or diag $r->{content};
is($r->{json}{mode}, 'restoring', '... mode restoring');
is($r->{json}{restoring_from}, 'upgrade', '... restoring_from upgrade');
agent_is('restoring from upgrade', all_ids('maint'));
is($ng->status->{mode}, 'restoring', 'still restoring (C starting)');
$C->set_state('running');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 5), 'C running: restoring -> normal');
agent_is('normal after restoring from upgrade', all_ids('up ready'));

# upgrade without a designated node
$st = set_mode({ mode => 'upgrade' }, 'upgrade without a node');
agent_is('upgrade (no node)', all_ids('maint'), rounds => 2);
$r = $ng->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{status}, 200, 'force restore');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 3), '... normal');
agent_is('normal after force restore', all_ids('up ready'), rounds => 2);

# ---- garbage, odd clients ---------------------------------------------------------------------
my %valid = map { ($_ => 1) } ('up ready', 'up drain', 'maint', 'down');

is(agent_ask($AP, undef, raw => "\n", timeout => 3), 'down', 'empty line: down');
is(agent_ask($AP, undef, raw => "   \r\n", timeout => 3), 'down', 'blank line: down');
is(agent_ask($AP, undef, raw => "hello world\n", timeout => 3), 'down', 'garbage line: down');
is(agent_ask($AP, undef, raw => "\x00\xff\x01$aid\n", timeout => 3), 'down', 'binary junk: down');
is(agent_ask($AP, undef, raw => ('x' x 160), timeout => 3), 'down',
   '160 bytes (more than any node id) without a newline: down (no waiting for more)');
my $got = agent_ask($AP, undef, raw => "$aid\r\n", timeout => 3);
ok(defined $got && $valid{$got}, "id with CRLF: a valid answer (" . ($got // 'nothing') . ')');
$got = agent_ask($AP, undef, raw => "$aid\n$bid\n", timeout => 3);
ok(defined $got && $valid{$got} && $got !~ /\n/, 'two lines at once: one valid answer line');

# a long junk stream: the agent answers or resets, and keeps working
my $long = raw_request($AP, join('', map { chr(32 + $_ % 90) } 1 .. 20000) . "\n", timeout => 3);
ok($long eq '' || $long eq "down\n", '20 KB junk: "down" or a closed connection (' . length($long) . ' bytes)');

# the id in two pieces
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $AP, Proto => 'tcp', Timeout => 3)
        or die "connect: $!";
    syswrite $s, substr($aid, 0, 5);
    sleep 0.15;
    syswrite $s, substr($aid, 5) . "\n";
    my $ans = '';
    my $end = time + 3;
    while (time < $end) {
        my $n = sysread $s, my $buf, 512;
        last unless $n;
        $ans .= $buf;
    }
    close $s;
    is($ans, "up ready\n", 'id sent in two pieces: "up ready"');
}

# the id, then the client half-closes without a newline
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $AP, Proto => 'tcp', Timeout => 3)
        or die "connect: $!";
    syswrite $s, $aid;
    shutdown $s, 1;
    my $ans = '';
    my $end = time + 3;
    while (time < $end) {
        my $n = sysread $s, my $buf, 512;
        last unless $n;
        $ans .= $buf;
    }
    close $s;
    chomp(my $a1 = $ans);
    ok($valid{$a1}, "id, then EOF without a newline: a valid answer ('$a1')");
}

# clients that go away: close at once, reset (SO_LINGER 0) after half an id
for my $i (1 .. 20) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $AP, Proto => 'tcp', Timeout => 3)
        or die "connect: $!";
    if ($i % 2) {
        syswrite $s, substr($aid, 0, 4);
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    }
    close $s;
}
agent_is('after vanishing clients', all_ids('up ready'), rounds => 2);

# ---- the silent clients: closed by the agent after its timeout ---------------------------------
my $waited = time - $silent_t0;
my (%silent_ans, $open);
my $deadline = $silent_t0 + 12;
for my $s (@silent) {
    my $ans = '';
    my $closed = 0;
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    while (time < $deadline) {
        next unless select(my $rout = $rin, undef, undef, 0.2);
        my $n = sysread $s, my $buf, 512;
        if (!$n) { $closed = 1; last }
        $ans .= $buf;
    }
    $open++ unless $closed;
    $silent_ans{ $ans eq '' ? '(nothing)' : $ans }++;
    close $s;
}
ok(!$open, sprintf('10 clients that send nothing: the agent closes all of them (within 12 s; %d left open)',
                   $open // 0));
ok(!grep({ $_ ne '(nothing)' && $_ ne "down\n" } keys %silent_ans),
   'silent clients get nothing or "down"') or diag explain \%silent_ans;
cmp_ok($waited, '<', 12, sprintf('the agent answered everyone else meanwhile (%.1f s of checks)', $waited));

# ---- still alive --------------------------------------------------------------------------------
agent_is('at the end', all_ids('up ready'), rounds => 2);
my @crash = $ng->crashes;
is(scalar @crash, 0, 'error.log: no worker exited on a signal') or diag join "\n", @crash;
my @alert = $ng->log_grep(qr/\[(?:alert|emerg|crit)\]/);
is(scalar @alert, 0, 'error.log: no alert/emerg/crit') or diag join "\n", @alert[0 .. ($#alert > 4 ? 4 : $#alert)];

done_testing;
