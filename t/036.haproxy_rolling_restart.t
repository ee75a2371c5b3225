# A rolling restart through HAProxy under continuous load loses nothing
# (issue 13: before, 10 x 502 of 267 through HAProxy).  A real haproxy
# balances three mock NocoBase nodes (roundrobin, http health checks,
# agent-check against the gateway's nb_maint_agent every 2 s as in the
# shipped snippet, no retries, no redispatch); `nb-maint rolling-restart
# --haproxy-socket`
# drains each node, waits until HAProxy has seen the drain and has nothing
# in flight there, restarts the node (a real process restart: killed, then
# started again going through NocoBase's start states), waits until it is
# healthy, undrains it and waits until HAProxy uses it again.  Meanwhile
# four clients send keep-alive requests (150 ms each) through HAProxy
# without pause: every answer must be a 2xx.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

my $haproxy = NbTest::HAProxy::bin();
my ($hrc) = NbTest::run_cmd('/dev/null', $haproxy, '-v');
plan skip_all => "haproxy not installed ($haproxy)" if $hrc != 0;

my $ROOT = NbTest::repo_root();
my $CLI = "$ROOT/scripts/nb-maint";
my @M = map { NbTest::Mock->new } 1 .. 3;
my @ids = map { $_->id } @M;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M), agent_opts(upstream => 'app'));
$ng->start;
ok($ng->wait_all_health('up', 5, @ids), 'gateway: three nodes up');
my $AP = $ng->port_of('agent');

my $hp = NbTest::HAProxy->new;
my $D = $hp->dir;
my $servers = join '', map {
    my $p = $_->port;
    "    server s$p 127.0.0.1:$p agent-send \"127.0.0.1:$p\\n\"\n"
} @M;
$hp->write_cfg(NbTest::HAProxy->http_cfg(timeout => '30s',
    defaults => "    option http-keep-alive\n"
              . "    # the procedure alone must be safe: no retry would hide a lost request\n"
              . "    retries 0\n", backend => <<"EOT"));
    http-check expect status 200
    default-server check inter 200ms rise 2 fall 2 agent-check agent-port $AP agent-inter 2s
$servers
EOT
$hp->start;
ok($hp->wait_servers('be', sub { 3 == grep { ($_->{status} // '') eq 'UP' } values %{ $_[0] } }, 8),
   'haproxy: three servers UP') or diag explain $hp->last_servers;

# the restart command: kill the node's process, start a new one on the same
# port that goes through NocoBase's start states for 1 s
symlink "$_->{dir}/mock.pid", "$D/orig." . $_->port or die "symlink: $!" for @M;
my $restart = "$D/restart.pl";
$hp->write_file($restart, <<'EOT');
use strict; use warnings; use POSIX (); use IO::Socket::INET; use Time::HiRes qw(sleep time);
my ($mock, $pidfile, $log, $port, $first) = @ARGV;
# the first time, the pidfile of the node NbTest started
my $cur = -s $pidfile ? $pidfile : $first;
open my $fh, '<', $cur or die "no pidfile $cur: $!\n";
chomp(my $pid = <$fh>);
close $fh;
kill 'TERM', $pid or die "kill $pid: $!\n";
my $end = time + 10;
sleep 0.02 while -e $cur && time < $end;                # mock-node removes it on exit
sleep 0.02 while IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") && time < $end;
die "node on port $port did not stop\n" if -e $cur;
my $child = fork // die "fork: $!\n";
if (!$child) {
    POSIX::setsid();
    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', $log;
    open STDERR, '>&', \*STDOUT;
    exec $^X, $mock, '--port', $port, '--pidfile', $pidfile, '--starting', '1', '--quiet' or POSIX::_exit(127);
}
sleep 0.02 while !-s $pidfile && time < $end;
die "node on port $port did not start again\n" unless -s $pidfile;
print "restarted node on port $port: pid $pid -> ", (-s $pidfile ? `cat $pidfile` : '?');
EOT
my %old_pid = map { ($_->id => $_->pid) } @M;

# ---- the load: four keep-alive clients through haproxy ---------------------------------------
my $stop = "$D/stop";
my @clients;
for my $c (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 10);
        my (%st, %node, $n, @bad);
        my $end = time + 120;
        while (!-e $stop && time < $end && ($n // 0) < 40000) {
            # each takes 150 ms: a node always has requests in flight
            my $r = $ua->get($hp->url("/api/load?sleep_ms=150&c=$c&i=" . ++$n));
            $st{ $r->{status} }++;
            $node{ $r->{headers}{'x-node'} // '-' }++;
            push @bad, sprintf('%.3f %s %s', time, $r->{status}, substr($r->{content} // '', 0, 80) =~ s/\s+/ /gr)
                if $r->{status} !~ /^2/ && @bad < 20;
        }
        open my $fh, '>', "$D/client$c" or POSIX::_exit(1);
        print $fh join(' ', map { "$_=$st{$_}" } sort keys %st), "\n";
        print $fh join(' ', map { "$_=$node{$_}" } sort keys %node), "\n";
        print $fh "$_\n" for @bad;
        close $fh;
        POSIX::_exit(0);
    }
    push @clients, $pid;
}
ok(NbTest::wait_until(sub { NbTest::mock_counts(@M)->{ $ids[0] } > 5 }, 5), 'the load runs');

# ---- the rolling restart -------------------------------------------------------------------------
my $t0 = time;
my ($rc, $out) = NbTest::run_cmd("$D/cli.out", $^X, $CLI, '--url', $ng->url('/_nb_maint/'),
    '--token', NbTest::ADMIN_TOKEN, 'rolling-restart',
    '--restart-cmd', "$^X $restart $ROOT/scripts/mock-node $D/pid.{port} $D/mock.log {port} $D/orig.{port}",
    '--haproxy-socket', $hp->stats_path, '--timeout', '30', '--health-timeout', '30', '--interval', '0.1');
my $took = time - $t0;
sleep 0.5;      # the load goes on a little after the last undrain
$hp->write_file($stop, '');
waitpid $_, 0 for @clients;
is($rc, 0, sprintf('rolling-restart --haproxy-socket: exit 0 (%.1f s)', $took)) or diag $out;
like($out, qr/rolling restart done/, '... done');

# every node really restarted (a new process)
for my $m (@M) {
    my $pf = "$D/pid." . $m->port;
    my $new = -s $pf ? do { open my $fh, '<', $pf; my $p = <$fh>; chomp $p; $p } : undef;
    ok(defined $new && $new != $old_pid{ $m->id }, $m->id . ": restarted (pid $old_pid{ $m->id } -> " . ($new // '?') . ')');
}

my (%st, %node, @bad);
for my $c (1 .. 4) {
    open my $fh, '<', "$D/client$c" or do { fail("client $c wrote no result"); next };
    my @l = <$fh>;
    chomp @l;
    for (split ' ', $l[0] // '') { my ($k, $v) = split /=/; $st{$k} += $v }
    for (split ' ', $l[1] // '') { my ($k, $v) = split /=/, $_, 2; $node{$k} += $v }
    push @bad, @l[2 .. $#l];
}
my $total = 0;
$total += $_ for values %st;
my $non2xx = 0;
$non2xx += $st{$_} for grep { !/^2/ } keys %st;
cmp_ok($total, '>=', 150, "the load: $total requests through haproxy during the rolling restart");
is($non2xx, 0, "ZERO non-2xx answers of $total during the rolling restart through haproxy")
    or diag explain { status => \%st, first => \@bad };
for my $id (@ids) {
    cmp_ok($node{$id} // 0, '>', 0, "$id served part of the load (" . ($node{$id} // 0) . ')');
}
diag sprintf 'rolling restart through haproxy: %d requests, %d non-2xx, %.1f s', $total, $non2xx, $took;

ok($hp->wait_servers('be', sub { 3 == grep { ($_->{status} // '') eq 'UP' } values %{ $_[0] } }, 5),
   'haproxy: three servers UP at the end');
is($ng->status->{mode}, 'normal', 'gateway: mode normal');
is(scalar $ng->crashes, 0, 'gateway: no worker exited on a signal');

# the restarted nodes are not NbTest::Mock's children: stop them here
for my $m (@M) {
    my $pf = "$D/pid." . $m->port;
    next unless -s $pf;
    open my $fh, '<', $pf or next;
    chomp(my $p = <$fh> // '');
    kill 'TERM', $p if $p =~ /^\d+$/ && $p != ($m->pid // 0);
}
done_testing;
