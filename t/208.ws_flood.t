# A client that sends pings and never reads (issue 21 item 1): the gateway
# holds at most a few KB of pongs for it, then closes it; the worker's
# memory does not grow with what the client sends.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use Socket qw(:all);
use IO::Handle;
use Errno qw(EAGAIN EWOULDBLOCK EPIPE ECONNRESET);
use Time::HiRes qw(time sleep);

$SIG{PIPE} = 'IGNORE';

my $ng = NbTest::Nginx->new(workers => 1, http => std_http());
$ng->start;
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade: /ws answered by the gateway');
my ($worker) = $ng->worker_pids;

sub rss_kb {
    open my $fh, '<', "/proc/$worker/status" or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

# a handshake on a socket with a small receive buffer
sub flooder {
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096) or die "SO_RCVBUF: $!";
    connect($s, pack_sockaddr_in($ng->port, inet_aton('127.0.0.1'))) or die "connect: $!";
    syswrite $s, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) { sysread($s, $buf, 4096, length $buf) or die "no handshake" }
    $s->blocking(0);
    return $s;
}

my $ping = "\x89\xfd" . "\x01\x02\x03\x04" . ('p' x 125);    # 125-byte masked ping
my $chunk = $ping x 64;

# warm up the worker's heap, then measure
for (1 .. 3) { my $s = flooder(); close $s }
sleep 0.3;
my $before = rss_kb();

my $s = flooder();
my ($sent, $err, $end) = (0, '', time + 20);
while (time < $end && $sent < 8 * 1024 * 1024) {
    my $n = syswrite $s, $chunk;
    if (defined $n) { $sent += $n; next }
    if ($! == EAGAIN || $! == EWOULDBLOCK) { select(undef, undef, undef, 0.005); next }
    $err = "$!";
    last;
}
my $grow = rss_kb() - $before;
ok($err ne '', sprintf('a client that pings without reading is closed (after %d KB sent: %s)',
                       $sent / 1024, $err || 'still open'));
cmp_ok($grow, '<=', 256, "... the worker's RSS grew by $grow KB (<= 256 KB, pages the allocator keeps)");
like($ng->error_log, qr/WebSocket client does not read, closing/, '... logged at info');
close $s;

# well-behaved sockets are unaffected
my $ws = NbWS->connect(port => $ng->port);
is(($ws->recv_json(2) || {})->{payload}{code}, 'APP_COMMANDING', 'a reading client: its message');
$ws->ping('x') for 1 .. 500;
my $pongs = 0;
while (my $f = $ws->recv_frame(2)) { last if $f->{op} eq 'eof'; $pongs++ if $f->{op} == 10; last if $pongs == 500 }
is($pongs, 500, '... 500 pings, 500 pongs');
is(scalar $ng->crashes, 0, 'no worker crashed');
done_testing;
