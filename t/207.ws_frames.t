# Frames a client may not send on /ws answered by the gateway (RFC 6455
# section 5, issue 21 item 10): each gets a close frame with 1002 and the
# socket goes; after a close nothing is answered; a well-formed fragmented
# message is fine.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;

my $ng = NbTest::Nginx->new(workers => 1, http => std_http());
$ng->start;
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade: /ws answered by the gateway');

my $MASK = "\x11\x22\x33\x44";
sub frame {                                   # a client frame, masked unless told
    my ($b0, $data, %o) = @_;
    my $len = length $data;
    my $h = chr($b0) . chr(($o{unmasked} ? 0 : 0x80) | ($o{len7} // ($len < 126 ? $len : 126)));
    $h .= pack 'n', $len if !defined $o{len7} && $len >= 126;
    return $h . $data if $o{unmasked};
    my $m = $MASK x (int($len / 4) + 1);
    return $h . $MASK . ($data ^ substr($m, 0, $len));
}

sub gated {
    my $ws = NbWS->connect(port => $ng->port);
    my $m = $ws->recv_json(2);
    return ($ws, $m);
}

# the frames after a first message: [op, data] up to EOF
sub rest {
    my ($ws) = @_;
    my @f;
    while (my $f = $ws->recv_frame(3)) {
        push @f, $f;
        last if $f->{op} eq 'eof';
    }
    return @f;
}

sub close_code { my ($f) = @_; $f && $f->{op} eq '8' && length $f->{data} >= 2 ? unpack('n', $f->{data}) : -1 }

my @bad = (
    ['reserved data opcode 0x3'       => frame(0x83, 'x')],
    ['reserved control opcode 0xB'    => frame(0x8b, '')],
    ['continuation without a start'   => frame(0x80, 'x')],
    ['close with a 1-byte payload'    => frame(0x88, "\x03")],
    ['close with code 1005'           => frame(0x88, pack('n', 1005))],
    ['close with code 999'            => frame(0x88, pack('n', 999))],
    ['ping of 126 bytes'              => frame(0x89, 'p' x 126)],
    ['fragmented ping'                => frame(0x09, 'p')],
    ['unmasked frame'                 => frame(0x81, 'hello', unmasked => 1)],
    ['RSV1 set'                       => frame(0xc1, 'x')],
    ['RSV3 set on a ping'             => frame(0x99, '')],
    ['text inside a fragmented text'  => frame(0x01, 'a') . frame(0x81, 'b')],
    ['64-bit length with the top bit' => "\x82\xff" . "\x80" . ("\0" x 7) . $MASK],
);

for my $c (@bad) {
    my ($ws, $m) = gated();
    is($m && $m->{payload}{code}, 'APP_COMMANDING', "$c->[0]: a gated socket");
    $ws->send_raw($c->[1]);
    my @f = rest($ws);
    is(close_code($f[0]), 1002, '... close frame 1002');
    is($f[-1] && $f[-1]{op}, 'eof', '... then the socket is closed');
    is(scalar(grep { $_->{op} eq '10' } @f), 0, '... no pong');
}

# well-formed: a fragmented text with a ping between its parts
{
    my ($ws) = gated();
    $ws->send_raw(frame(0x01, 'pi') . frame(0x89, 'mid') . frame(0x00, 'n') . frame(0x80, 'g')
                  . frame(0x89, 'end'));
    my @f = map { $ws->recv_frame(2) } 1 .. 2;
    is(join(',', map { $_ ? "$_->{op}:$_->{data}" : 'none' } @f), '10:mid,10:end',
       'fragmented text with a ping inside: both pings answered, no error');
    $ws->send_raw(frame(0x88, pack('n', 4000)));
    my @r = rest($ws);
    is(close_code($r[0]), 4000, 'close 4000 (a private code): echoed');
}

# frames after a close are not answered
{
    my ($ws) = gated();
    $ws->send_raw(frame(0x88, pack('n', 1000)) . frame(0x89, 'late') . frame(0x83, 'bad'));
    my @f = rest($ws);
    is(close_code($f[0]), 1000, 'close then more frames: the close echoed');
    is(scalar(grep { $_->{op} eq '10' } @f), 0, '... the ping behind it is not answered');
    is(scalar(grep { $_->{op} eq '8' } @f), 1, '... one close frame only');
    is($f[-1] && $f[-1]{op}, 'eof', '... the socket is closed');
}

# a close without a code: echoed without one
{
    my ($ws) = gated();
    $ws->send_raw(frame(0x88, ''));
    my @f = rest($ws);
    is($f[0] && $f[0]{op}, 8, 'close without a code: a close back');
    is($f[0] && length $f[0]{data}, 0, '... without a code');
}

# the gateway still answers
my ($ws, $m) = gated();
is($m && $m->{payload}{code}, 'APP_COMMANDING', 'a new socket after all that');
is(scalar $ng->crashes, 0, 'no worker crashed');
done_testing;
