# Take-over of a proxied /ws when an upgrade starts while the node's data
# is still unsent (issue 21 item 2): the node floods, the client does not
# read, so nginx holds the node's bytes when the gateway takes the socket
# over.  The socket is closed (its bytes cannot be cut between frames), the
# worker survives: no use after free (glibc's MALLOC_PERTURB_ fills freed
# memory; make test-asan runs this under ASan).  A quiet socket is taken
# over as before, its node connection closed.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use IO::Socket::INET;
use Socket qw(:all);
use IO::Handle;
use POSIX ();
use Time::HiRes qw(time sleep);

$SIG{PIPE} = 'IGNORE';
local $ENV{MALLOC_PERTURB_} = 165;       # nginx's master and workers

# a node: health checks 200; /ws?flood floods binary frames for ever, /ws
# stays quiet; counts open WebSockets in a file
my $lsn = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1', LocalPort => 0,
                                Proto => 'tcp', ReuseAddr => 1) or die "listen: $!";
my $node_port = $lsn->sockport;
my $node = fork // die "fork: $!";
if (!$node) {
    $SIG{CHLD} = 'IGNORE';
    while (my $c = $lsn->accept) {
        my $pid = fork;
        if (!defined $pid || $pid) { close $c; next }
        close $lsn;
        my $req = '';
        while ($req !~ /\r\n\r\n/) { sysread($c, $req, 4096, length $req) or POSIX::_exit(0) }
        if ($req !~ m{^GET /ws}) {
            syswrite $c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            POSIX::_exit(0);
        }
        my ($key) = $req =~ /Sec-WebSocket-Key: (\S+)/i;
        require Digest::SHA; require MIME::Base64;
        my $acc = MIME::Base64::encode_base64(Digest::SHA::sha1($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');
        syswrite $c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   . "Sec-WebSocket-Accept: $acc\r\n\r\n";
        if ($req =~ m{^GET /ws\?flood}) {
            my $frame = "\x82\x7e" . pack('n', 4000) . ('f' x 4000);
            while (defined syswrite $c, $frame) { }
        } else {
            sysread($c, my $x, 4096) or last while 1;
        }
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}
close $lsn;

my $ng = NbTest::Nginx->new(workers => 1,
    http => cluster_http(nodes => [$node_port], check => undef, locations => NbWS::LOCATION));
$ng->start;

# the flooded client: small receive buffer, never reads
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096) or die;
connect($s, pack_sockaddr_in($ng->port, inet_aton('127.0.0.1'))) or die "connect: $!";
syswrite $s, "GET /ws?flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
my $quiet = NbWS->connect(port => $ng->port, greeting => 1);
is($quiet->status, 101, 'a quiet proxied socket');
ok(NbTest::wait_until(sub { ($ng->node("127.0.0.1:$node_port")->{websockets} // 0) == 2 }, 3),
   'both proxied (websockets 2)');
sleep 0.5;                                # nginx's buffers toward the client fill

is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade starts');

my $m = $quiet->recv_json(2);
is($m && $m->{payload}{code}, 'APP_COMMANDING', 'the quiet socket is taken over: APP_COMMANDING');
ok(NbTest::wait_until(sub { ($ng->node("127.0.0.1:$node_port")->{websockets} // 0) == 0 }, 3),
   '... the node side of both is closed (websockets 0)');

# the flooded one: closed (reading it drains what was sent, then EOF/reset)
$s->blocking(0);
my ($eof, $end) = (0, time + 5);
while (time < $end) {
    my $rin = ''; vec($rin, fileno($s), 1) = 1;
    select(my $rout = $rin, undef, undef, 0.2) or next;
    my $n = sysread $s, my $buf, 1 << 20;
    if (defined $n && $n == 0) { $eof = 1; last }
    if (!defined $n && !$!{EAGAIN}) { $eof = 1; last }
}
ok($eof, 'the flooded socket with unsent node data is closed');

# the worker lives on: the gateway answers
my $ws = NbWS->connect(port => $ng->port);
is($ws->status, 101, 'a new /ws: answered');
is(($ws->recv_json(2) || {})->{payload}{code}, 'APP_COMMANDING', '... by the gateway');
is(scalar $ng->crashes, 0, 'no worker crashed');
unlike($ng->error_log, qr/\[alert\]|\[crit\]/, 'no alert or crit in error.log');

$ng->stop;
kill 'TERM', -$node if 0;
kill 'KILL', $node; waitpid $node, 0;
done_testing;
