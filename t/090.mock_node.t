#!/usr/bin/perl
# scripts/mock-node: health states, X-Node, keep-alive, delays without
# blocking, stats, fail/hang, clean exit. Core Perl only, parallel-safe.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest qw(free_port);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my $MOCK = "$FindBin::Bin/../scripts/mock-node";
my $dir  = tempdir(CLEANUP => 1);

my %pids;
sub start_mock {
    my (@args) = @_;
    my $port = free_port();
    my $pidfile = "$dir/mock-$port.pid";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/mock-$port.log";
        open STDERR, '>&', \*STDOUT;
        { exec $^X, $MOCK, '--port', $port, '--pidfile', $pidfile, @args }
        POSIX::_exit(127);
    }
    $pids{$pid} = 1;
    my $t0 = time;
    sleep 0.02 until -s $pidfile || time - $t0 > 10 || waitpid($pid, WNOHANG) == $pid;
    die "mock-node did not start:\n" . `cat $dir/mock-$port.log` unless -s $pidfile;
    return ($port, $pid, $pidfile);
}

sub stop_mock {
    my ($pid) = @_;
    return unless delete $pids{$pid};
    kill 'TERM', $pid;
    my $t0 = time;
    while (time - $t0 < 5) {
        return 1 if waitpid($pid, WNOHANG) == $pid;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    return 0;
}
END { stop_mock($_) for keys %pids }

my $json = JSON::PP->new;
my $ua   = HTTP::Tiny->new(timeout => 5);

my ($port, $pid, $pidfile) = start_mock('--starting', 1, '--id', 'n1');
my $base = "http://127.0.0.1:$port";
is(`cat $pidfile` + 0, $pid, 'pidfile holds the pid');

# --- starting: NocoBase's 503
my $r = $ua->get("$base/api/__health_check");
is($r->{status}, 503, 'health 503 while starting');
like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON content type');
my $j = eval { $json->decode($r->{content}) } || {};
like($j->{error}{code} // '', qr/^APP_(PREPARING|INITIALIZING|COMMANDING)$/, 'code: NocoBase\'s start sequence');
is($j->{error}{status}, 503, 'error.status 503');
ok($j->{error}{maintaining}, 'maintaining true');
is($r->{headers}{'x-node'}, 'n1', 'X-Node on the health check');

# --- running after ~1 s
my $t0 = time;
my $ok;
while (time - $t0 < 5) {
    $r = $ua->get("$base/api/__health_check");
    if ($r->{status} == 200) { $ok = $r; last }
    sleep 0.1;
}
ok($ok, 'health turns 200 after --starting') or diag explain $r;
is($ok && $ok->{content}, 'ok', 'body ok');
cmp_ok(time - $t0, '<', 3, 'within about a second');

# --- app request, X-Node, body
$r = $ua->post("$base/some/path?x=1", { content => 'hello', headers => { 'Content-Type' => 'text/plain' } });
is($r->{status}, 200, 'app request 200');
is($r->{headers}{'x-node'}, 'n1', 'X-Node header');
$j = eval { $json->decode($r->{content}) } || {};
is($j->{node}, 'n1', 'JSON node');
is($j->{path}, '/some/path', 'JSON path');
is($j->{method}, 'POST', 'JSON method');
is($j->{body_length}, 5, 'request body read (Content-Length)');

# --- keep-alive: two requests, one connection
$ua->post("$base/__mock/reset");
my $ka = HTTP::Tiny->new(timeout => 5, keep_alive => 1);
my $r1 = $ka->get("$base/a");
my $r2 = $ka->get("$base/b");
my $st = $ka->get("$base/__mock/stats");
is($r1->{status} . $r2->{status}, '200200', 'two keep-alive requests');
like($r1->{headers}{connection} // '', qr/keep-alive/i, 'Connection: keep-alive');
$j = eval { $json->decode($st->{content}) } || {};
is($j->{connections}, 1, 'all on one connection');

# --- delay without blocking a parallel request
my $slow = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die "connect: $@";
my $ts = time;
print $slow "GET /slow?sleep_ms=1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
sleep 0.1;
$st = $ua->get("$base/__mock/stats");
$j = eval { $json->decode($st->{content}) } || {};
is($j->{active}, 1, 'the slow request is active');
my $tf = time;
$r = $ua->get("$base/fast");
my $fast = time - $tf;
is($r->{status}, 200, 'parallel request answered');
cmp_ok($fast, '<', 1.0, "parallel request not blocked (${\ sprintf '%.3f', $fast}s)");
my $resp = do { local $/; <$slow> } // '';
my $slow_t = time - $ts;
like($resp, qr{^HTTP/1\.1 200}, 'slow request answered');
like($resp, qr{"path":"/slow"}, 'slow request body');
cmp_ok($slow_t, '>=', 1.4, sprintf('slow request took %.2fs', $slow_t));

# global delay
$ua->post("$base/__mock/delay?ms=1000");
$tf = time;
$r = $ua->get("$base/delayed");
my $d = time - $tf;
is($r->{status}, 200, 'delayed request');
cmp_ok($d, '>=', 0.95, sprintf('--delay-ms / delay?ms= delays app responses (%.2fs)', $d));
$tf = time;
$r = $ua->get("$base/api/__health_check");
cmp_ok(time - $tf, '<', 0.8, 'health check not delayed by the app delay');
$ua->post("$base/__mock/delay?ms=0");

# --- stats
$ua->post("$base/__mock/reset");
$ua->get("$base/x") for 1 .. 3;
$ua->post("$base/y") for 1 .. 2;
$ua->get("$base/api/__health_check");
$ua->get("$base/__mock/stats");
$st = $ua->get("$base/__mock/stats");
$j = eval { $json->decode($st->{content}) } || {};
is($j->{requests}, 5, 'requests counts app requests only');
is_deeply($j->{by_path}, { '/x' => 3, '/y' => 2 }, 'by_path');
is($j->{active}, 0, 'active 0');
is($j->{health_checks}, 1, 'health checks counted apart');

# --- states
$r = $ua->post("$base/__mock/state?health=commanding");
is($r->{status}, 200, 'set commanding');
$r = $ua->get("$base/api/__health_check");
is($r->{status}, 503, 'commanding: 503');
$j = eval { $json->decode($r->{content}) } || {};
is($j->{error}{code}, 'APP_COMMANDING', 'code APP_COMMANDING');

$ua->post("$base/__mock/state?health=fail");
$r = $ua->get("$base/api/__health_check");
is($r->{status}, 500, 'fail: 500');
is($r->{content}, 'oops', 'fail: garbage body');

$ua->post("$base/__mock/state?health=hang");
my $short = HTTP::Tiny->new(timeout => 1);
$tf = time;
$r = $short->get("$base/api/__health_check");
my $ht = time - $tf;
is($r->{status}, 599, 'hang: the request times out');
cmp_ok($ht, '>=', 0.9, sprintf('after the client timeout (%.2fs)', $ht));
$r = $ua->get("$base/still-serving");
is($r->{status}, 200, 'hang does not block other requests');

$r = $ua->post("$base/__mock/state?health=bogus");
is($r->{status}, 400, 'bad state rejected');
$ua->post("$base/__mock/state?health=starting&seconds=0.5");
is($ua->get("$base/api/__health_check")->{status}, 503, 'starting again');
sleep 0.7;
is($ua->get("$base/api/__health_check")->{status}, 200, 'back to running after seconds=');

# --- default id is host:port
my ($port2, $pid2) = start_mock('--quiet');
$r = $ua->get("http://127.0.0.1:$port2/");
is($r->{headers}{'x-node'}, "127.0.0.1:$port2", 'X-Node defaults to host:port');
is($ua->get("http://127.0.0.1:$port2/api/__health_check")->{status}, 200, 'no --starting: running at once');
stop_mock($pid2);

# --- SIGTERM: clean exit, pidfile removed
ok(stop_mock($pid), 'exits on SIGTERM');
is($? >> 8, 0, 'exit status 0');
ok(!-e $pidfile, 'pidfile removed');

done_testing;
