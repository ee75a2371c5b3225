# An idle WebSocket the gateway answers itself costs <= 4 KB of worker RSS
# (issue 21, SPEC section 7): once the 101 is out, a socket whose request
# holds nothing of another module keeps no request and no header buffer,
# as core's idle keepalive connection.  Its access log line (101) is
# written at the handshake; with limit_conn in the location the request is
# kept (its slot counts the open socket) and the line is written at close.
# Under make test-asan (NB_SANITIZE): fewer sockets, no RSS check.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

my $N = $ENV{NB_SANITIZE} ? 200 : 2000;

my $ng = NbTest::Nginx->new(workers => 1,
    main   => "worker_rlimit_nofile 8192;",
    events => "worker_connections 4096;",
    http   => std_http(
        http_extra   => "log_format nbws '\$status \$request_uri';\n"
                      . "limit_conn_zone \$binary_remote_addr zone=wsc:1m;\n",
        server_extra => "    access_log %%PREFIX%%/access.log nbws;\n",
        locations    => "    location /ws-conn { nb_maint_ws_path /ws-conn; limit_conn wsc 10; return 200 \"app\\n\"; }\n"));
$ng->start;
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade: /ws answered by the gateway');

sub logged { my $re = shift; scalar grep { /$re/ } split /\n/, ($ng->read_file('access.log') // '') }

# the access log: at the handshake without limit_conn, at close with it
my $w = NbWS->connect(port => $ng->port, path => '/ws?first');
is($w->status, 101, '/ws: 101');
is(($w->recv_json(2) || {})->{payload}{code}, 'APP_COMMANDING', '... APP_COMMANDING');
ok(NbTest::wait_until(sub { logged(qr{^101 /ws\?first$}) == 1 }, 3),
   '... logged with 101 while the socket is still open');
$w->ping('p');
my $f = $w->recv_frame(2) || {};
is($f->{op}, 10, '... still answers a ping (pong) once slim');
is($f->{data}, 'p', '... with its payload');

my $c = NbWS->connect(port => $ng->port, path => '/ws-conn');
is($c->status, 101, '/ws-conn (limit_conn): 101');
sleep 0.5;
is(logged(qr{^101 /ws-conn$}), 0, '... not logged while open (the request holds the slot)');
$c->drop;
ok(NbTest::wait_until(sub { logged(qr{^101 /ws-conn$}) == 1 }, 3), '... logged with 101 at close');

# RSS per idle socket
my ($wpid) = $ng->worker_pids;
sub rss_kb { open my $fh, '<', "/proc/$wpid/status" or return 0; while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ } 0 }

sub handshake {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port, Proto => 'tcp', Timeout => 5)
        or return;
    syswrite $s, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    return $s;
}

sub answered {
    my $s = shift;
    my $buf = '';
    my $end = time + 5;
    while (time < $end && $buf !~ /\r\n\r\n/) {
        my $rin = '';
        vec($rin, fileno $s, 1) = 1;
        select(my $rout = $rin, undef, undef, 0.2) or next;
        sysread($s, $buf, 4096, length $buf) or last;
    }
    return $buf =~ m{^HTTP/1\.1 101 };
}

# warm the worker up (its heap, the connections it touches) once
my @warm = grep { $_ } map { handshake() } 1 .. 200;
answered($_) for @warm;
close $_ for @warm;
@warm = ();
sleep 0.5;

my $before = rss_kb();
my (@held, $ok);
while (@held < $N) {
    my @batch = grep { $_ } map { handshake() } 1 .. 100;
    last unless @batch;
    $ok += scalar grep { answered($_) } @batch;
    push @held, @batch;
}
is($ok, $N, "$N idle sockets: every one 101");
sleep 1;
my $per = (rss_kb() - $before) * 1024 / $N;
SKIP: {
    skip 'RSS is not comparable under ASan', 1 if $ENV{NB_SANITIZE};
    cmp_ok($per, '<=', 4096, sprintf('worker RSS per idle socket: %.0f bytes (<= 4 KB)', $per));
}

# they are still served: a state change reaches every one
is($ng->admin(POST => 'mode', { mode => 'normal' })->{status}, 200, 'normal again');
my $closed = 0;
for my $s (@held) {
    my ($buf, $end) = ('', time + 5);
    while (time < $end) {
        my $rin = '';
        vec($rin, fileno $s, 1) = 1;
        select(my $rout = $rin, undef, undef, 0.5) or next;
        my $n = sysread($s, $buf, 4096, length $buf);
        last unless $n;
    }
    $closed++ if $buf =~ /APP_RUNNING/;
}
is($closed, $N, '... every idle socket got APP_RUNNING and was closed');
is(logged(qr{^101 /ws$}), 200 + $N, '... every socket logged once, with 101');

# a reload: the old worker closes its slim sockets at once (the client reconnects)
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade again');
my @r = map { NbWS->connect(port => $ng->port, path => '/ws') } 1 .. 3;
is(scalar(grep { $_->status == 101 } @r), 3, '3 sockets: 101');
(($_->recv_json(2) || {})->{payload}{code} // '') eq 'APP_COMMANDING' or fail('no APP_COMMANDING') for @r;
$ng->reload;
my $eof = 0;
for my $s (@r) {
    my $end = time + 5;
    while (time < $end) {
        my $f = $s->recv_frame(1) or next;
        if ($f->{op} eq 'eof') { $eof++; last }
    }
}
is($eof, 3, '... reload: the old worker closed each of them');

is(scalar $ng->crashes, 0, 'no worker crashed');
done_testing;
