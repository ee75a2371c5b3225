# A gated WebSocket whose client stops reading for a while, then reads
# (issue 21): the output the socket does not take is held (at most 8 KB),
# sent once the client reads again, and the buffer is given back (an idle
# socket holds none); the same again on the same socket, nothing lost or
# reordered.  Under make test-asan: no use of the buffer after it went.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Socket qw(:all);
use IO::Handle;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time sleep);

$SIG{PIPE} = 'IGNORE';
my $ng = NbTest::Nginx->new(workers => 1, http => std_http());
$ng->start;
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade: /ws answered by the gateway');

socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 1024);
connect($s, pack_sockaddr_in($ng->port, inet_aton('127.0.0.1'))) or die "connect: $!";
my $key = encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
syswrite $s, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n";

my $in = '';
sub fill {
    my ($t) = @_;
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    return 0 unless select(my $rout = $rin, undef, undef, $t);
    my $n = sysread $s, my $b, 65536;
    return 0 unless $n;
    $in .= $b;
    return 1;
}
my $end = time + 5;
fill(0.5) while index($in, "\r\n\r\n") < 0 && time < $end;
like($in, qr{^HTTP/1\.1 101 }, 'the handshake: 101');
substr($in, 0, index($in, "\r\n\r\n") + 4, '');

# frames from the server: [op, payload]
sub frames {
    my @f;
    while (length $in >= 2) {
        my ($b0, $b1) = unpack 'C2', $in;
        my $len = $b1 & 0x7f;
        my $off = 2;
        if ($len == 126) { last if length $in < 4; $len = unpack 'n', substr $in, 2, 2; $off = 4 }
        last if length $in < $off + $len;
        push @f, [ $b0 & 0x0f, substr($in, $off, $len) ];
        substr($in, 0, $off + $len, '');
    }
    return @f;
}

sub ping {
    my ($data) = @_;
    my $mask = "\x01\x02\x03\x04";
    my $m = $mask x (int(length($data) / 4) + 1);
    return chr(0x89) . chr(0x80 | length $data) . $mask . ($data ^ substr($m, 0, length $data));
}

# 130 pongs of 127 bytes (16.5 KB): more than the kernel takes for a client
# with a 1 KB receive buffer on 127.0.0.1 (11-15 KB here: the rest is held
# by the gateway, the buffer allocated), less than that plus the 8 KB the
# gateway holds at most (else the socket is closed, as t/208 shows)
my $n = 130;
for my $round (1 .. 3) {
    my $out = join '', map { ping(sprintf("r%d-%03d-", $round, $_) . ('p' x 116)) } 1 .. $n;
    my $w = syswrite $s, $out;
    is($w, length $out, "round $round: $n pings sent, nothing read meanwhile");
    sleep 0.5;
    my @pongs;
    my $t = time + 5;
    while (@pongs < $n && time < $t) {
        fill(0.5) or next;
        push @pongs, grep { $_->[0] == 0xa } frames();
    }
    is(scalar @pongs, $n, "round $round: every pong once the client reads");
    is_deeply([ map { substr $_->[1], 0, 7 } @pongs ], [ map { sprintf "r%d-%03d-", $round, $_ } 1 .. $n ],
              "round $round: in order");
}
is(scalar $ng->crashes, 0, 'no crash');
done_testing;
