package NbStream;
# A Server-Sent Events client for GET stream (the admin location's event
# stream): one HTTP/1.1 connection, the chunked body decoded as it comes,
# "event:"/"data:" blocks and ": comment" lines handed out one by one.
# Core Perl only.
#
#   my $s = NbStream->open($port, '/_nb_maint/stream', token => ..., since => N,
#                          http10 => 1, headers => {...});
#   $s->{status}, $s->{headers}{'content-type'}      the response head
#   my $ev = $s->next(2);               {event, data, json} or {comment}, undef
#   my $ev = $s->wait_for(sub { ... }, 2);   the first block the code accepts
#   $s->ended(2)                        true once the server closed the body
#   $s->close

use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time);
use JSON::PP ();

my $JSON = JSON::PP->new->utf8->allow_nonref;

sub open {
    my ($class, $port, $path, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or return undef;
    binmode $s;
    $path .= (index($path, '?') < 0 ? '?' : '&') . "since=$o{since}"
        if defined $o{since};
    my $method = $o{method} // 'GET';
    my $req = "$method $path HTTP/" . ($o{http10} ? '1.0' : '1.1') . "\r\n"
            . "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n";
    $req .= "Authorization: Bearer $o{token}\r\n" if defined $o{token};
    $req .= "$_: $o{headers}{$_}\r\n" for sort keys %{ $o{headers} || {} };
    $req .= "\r\n";
    local $SIG{PIPE} = 'IGNORE';
    syswrite($s, $req) == length $req or return undef;
    my $self = bless { sock => $s, raw => '', body => '', blocks => [],
                       eof => 0, done => 0, headers => {}, status => 0 }, $class;
    my $end = time + ($o{timeout} // 5);
    while ($self->{raw} !~ /\r\n\r\n/ && time < $end && !$self->{eof}) {
        $self->_read(0.2);
    }
    my ($head, $rest) = split /\r\n\r\n/, $self->{raw}, 2;
    return $self unless defined $rest;
    $self->{raw} = $rest;
    my @l = split /\r\n/, $head;
    ($self->{status}) = (shift(@l) // '') =~ m{^HTTP/\d\.\d (\d+)};
    for (@l) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $self->{headers}{ lc $k } = exists $self->{headers}{ lc $k }
                                  ? "$self->{headers}{lc $k}, $v" : $v;
    }
    $self->{chunked} = ($self->{headers}{'transfer-encoding'} // '') =~ /chunked/i;
    $self->_decode;
    return $self;
}

sub _read {
    my ($self, $wait) = @_;
    return 0 if $self->{eof};
    my $rin = '';
    vec($rin, fileno($self->{sock}), 1) = 1;
    my $n = select(my $rout = $rin, undef, undef, $wait);
    return 0 unless $n && $n > 0;
    my $got = sysread($self->{sock}, my $buf, 65536);
    if (!$got) { $self->{eof} = 1; return 0 }
    $self->{raw} .= $buf;
    return 1;
}

# the chunked (or plain) body into {body}, then blocks out of it
sub _decode {
    my ($self) = @_;
    if (!$self->{chunked}) {
        $self->{body} .= $self->{raw};
        $self->{raw} = '';
    } else {
        while ($self->{raw} =~ /^([0-9a-fA-F]+)[^\r\n]*\r\n/) {
            my ($hdr, $len) = (length($&), hex $1);
            if ($len == 0) { $self->{done} = 1; $self->{raw} = ''; last }
            last if length($self->{raw}) < $hdr + $len + 2;
            $self->{body} .= substr($self->{raw}, $hdr, $len);
            substr($self->{raw}, 0, $hdr + $len + 2, '');
        }
    }
    while ($self->{body} =~ s/^(.*?)\n\n//s) {
        my $blk = $1;
        my %b;
        for my $line (split /\n/, $blk) {
            if ($line =~ /^:\s?(.*)$/) { $b{comment} = $1; next }
            my ($f, $v) = $line =~ /^([^:]+):\s?(.*)$/ or next;
            if ($f eq 'data') { $b{data} = defined $b{data} ? "$b{data}\n$v" : $v }
            else { $b{$f} = $v }
        }
        $b{json} = eval { $JSON->decode($b{data}) } if defined $b{data};
        $b{at} = time;
        push @{ $self->{blocks} }, \%b;
    }
}

# the next block within $timeout seconds, or undef
sub next {
    my ($self, $timeout) = @_;
    my $end = time + ($timeout // 2);
    while (1) {
        return shift @{ $self->{blocks} } if @{ $self->{blocks} };
        return undef if $self->{eof} || $self->{done} || time >= $end;
        $self->_decode if $self->_read(0.05);
    }
}

# the first block for which $code returns true, within $timeout seconds
sub wait_for {
    my ($self, $code, $timeout) = @_;
    my $end = time + ($timeout // 2);
    while (time < $end) {
        my $b = $self->next($end - time) // return undef;
        return $b if $code->($b);
    }
    return undef;
}

# true once the server ended the body (last chunk or close) within $timeout
sub ended {
    my ($self, $timeout) = @_;
    my $end = time + ($timeout // 2);
    while (!$self->{eof} && !$self->{done} && time < $end) {
        $self->_decode if $self->_read(0.05);
    }
    return $self->{eof} || $self->{done};
}

sub close {
    my ($self) = @_;
    close $self->{sock} if $self->{sock};
    delete $self->{sock};
}

sub DESTROY { $_[0]->close }

1;
