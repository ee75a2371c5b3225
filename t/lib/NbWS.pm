package NbWS;
# A small WebSocket client (RFC 6455) for the tests, core Perl only.
#
#   my $ws = NbWS->connect(port => $ng->port, path => '/ws',
#                          headers => { Cookie => '...' },
#                          greeting => 1);   # read the gateway's greeting
#   $ws->{greeting}                     ... which is kept here (undef: none)
#   $ws->{status}, $ws->{headers}       the handshake answer (101 or not)
#   my $m = $ws->recv_json(2)           next text message as a hash, or
#                                       undef after 2 s without one
#   my $f = $ws->recv_frame(2)          { op => N, data => '...' } or undef;
#                                       { op => 'eof' } once closed
#   $ws->send_text('ping'); $ws->ping('x'); $ws->send_close(1000)
#   $ws->closed                         the peer closed (EOF or close frame)

use strict;
use warnings;
use IO::Socket::INET;
use Digest::SHA qw(sha1);
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time);
use JSON::PP ();

my $GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

# what the gateway says first on a socket a node accepted (issue 18)
use constant GREETING => '{"type":"maintaining","payload":{"message":'
                       . '"application main is running","code":"APP_RUNNING"}}';

# the /ws location of a cluster_http() gateway, as NocoBase's needs it
use constant LOCATION => <<'EOT';
    location /ws {
        proxy_pass http://app;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_read_timeout 1h;
    }
EOT

sub connect {
    my ($class, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => $o{host} // '127.0.0.1',
                                  PeerPort => $o{port}, Proto => 'tcp',
                                  Timeout => 5)
        or die "NbWS: connect to $o{port}: $!\n";
    binmode $s;
    my $key = encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
    my $path = $o{path} // '/ws';
    my $req = "GET $path HTTP/1.1\r\nHost: " . ($o{host_header} // "127.0.0.1:$o{port}") . "\r\n"
            . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n"
            . "Origin: http://127.0.0.1:$o{port}\r\n";
    for my $k (sort keys %{ $o{headers} || {} }) {
        $req .= "$k: $o{headers}{$k}\r\n";
    }
    $req .= "\r\n";
    syswrite $s, $req;

    my $self = bless { sock => $s, buf => '', status => 0, headers => {},
                       closed => 0 }, $class;

    # the answer's head
    my $end = time + ($o{timeout} // 5);
    while (index($self->{buf}, "\r\n\r\n") < 0) {
        my $left = $end - time;
        die "NbWS: no handshake answer\n" if $left <= 0 || !$self->_fill($left);
    }
    my $i = index $self->{buf}, "\r\n\r\n";
    my $head = substr $self->{buf}, 0, $i + 4, '';
    my ($line, @h) = split /\r\n/, $head;
    ($self->{status}) = $line =~ m{^HTTP/1\.1 (\d{3})};
    $self->{status} //= 0;
    for (@h) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $self->{headers}{ lc $k } = $v;
    }
    $self->{accept_ok} = ($self->{headers}{'sec-websocket-accept'} // '')
                         eq encode_base64(sha1($key . $GUID), '');
    $self->greeting($o{greeting} == 1 ? 2 : $o{greeting})
        if $o{greeting} && $self->{status} == 101;
    return $self;
}

# The gateway's greeting on a socket a node accepted (issue 18): NocoBase's
# running message, first.  Reads it if it is the next message (within
# $timeout s), keeps it in {greeting} and returns it; leaves any other
# frame for recv_*.
sub greeting {
    my ($self, $timeout) = @_;
    my $f = $self->recv_frame($timeout // 2) or return undef;
    return undef if $f->{op} eq 'eof';
    if ($f->{op} == 1 && $f->{data} eq GREETING) {
        return $self->{greeting} = JSON::PP->new->decode($f->{data});
    }
    # not it: the frame goes back in front of what came after it
    $self->{buf} = $f->{raw} . $self->{buf};
    $self->{closed} = 0 if $f->{op} == 8;
    return undef;
}

sub status { $_[0]{status} }
sub closed { $_[0]{closed} }

sub _fill {
    my ($self, $timeout) = @_;
    my $rin = '';
    vec($rin, fileno($self->{sock}), 1) = 1;
    return 0 unless select(my $rout = $rin, undef, undef, $timeout);
    my $n = sysread $self->{sock}, my $chunk, 65536;
    if (!$n) { $self->{eof} = 1; return 0 }
    $self->{buf} .= $chunk;
    return 1;
}

# the next frame (server frames are not masked)
sub recv_frame {
    my ($self, $timeout) = @_;
    my $end = time + ($timeout // 5);
    for (;;) {
        my $b = $self->{buf};
        if (length $b >= 2) {
            my ($b0, $b1) = unpack 'C2', $b;
            my $len = $b1 & 0x7f;
            my $off = 2;
            if ($len == 126 && length $b >= 4) { $len = unpack 'n', substr $b, 2, 2; $off = 4 }
            elsif ($len == 127 && length $b >= 10) { $len = unpack 'Q>', substr $b, 2, 8; $off = 10 }
            if (($b1 & 0x7f) < 126 || $off > 2) {
                if (length $b >= $off + $len) {
                    my $data = substr $b, $off, $len;
                    substr($self->{buf}, 0, $off + $len, '');
                    my $op = $b0 & 0x0f;
                    $self->{closed} = 1 if $op == 8;
                    return { op => $op, data => $data, masked => ($b1 & 0x80) ? 1 : 0,
                             raw => substr($b, 0, $off + $len) };
                }
            }
        }
        if ($self->{eof}) { $self->{closed} = 1; return { op => 'eof', data => '' } }
        my $left = $end - time;
        return undef if $left <= 0;
        $self->_fill($left);
    }
}

# the next text message, decoded; skips pongs
sub recv_json {
    my ($self, $timeout) = @_;
    my $end = time + ($timeout // 5);
    for (;;) {
        my $left = $end - time;
        return undef if $left <= 0;
        my $f = $self->recv_frame($left) or return undef;
        return undef if $f->{op} eq 'eof' || $f->{op} == 8;
        next unless $f->{op} == 1;
        return eval { JSON::PP->new->decode($f->{data}) } // { raw => $f->{data} };
    }
}

sub _send {
    my ($self, $op, $data) = @_;
    my $len = length $data;
    my $h = chr(0x80 | $op);
    $h .= $len < 126 ? chr(0x80 | $len) : $len < 65536 ? chr(0x80 | 126) . pack('n', $len)
        : chr(0x80 | 127) . pack('Q>', $len);
    my $mask = join '', map { chr int rand 256 } 1 .. 4;
    my $m = $mask x (int($len / 4) + 1);
    my $frame = $h . $mask . ($data ^ substr($m, 0, $len));
    return syswrite $self->{sock}, $frame;
}

sub send_text { $_[0]->_send(1, $_[1]) }
sub ping      { $_[0]->_send(9, $_[1] // '') }
sub send_close {
    my ($self, $code) = @_;
    $self->_send(8, pack('n', $code // 1000));
}
sub send_raw  { syswrite $_[0]{sock}, $_[1] }
sub drop      { CORE::close $_[0]{sock}; $_[0]{closed} = 1 }

sub DESTROY { my $s = $_[0]{sock}; CORE::close $s if $s }

1;
