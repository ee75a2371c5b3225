package NbDns;
# A small DNS server for tests (core Perl, UDP on 127.0.0.1): answers A
# queries from a zone the test changes while it runs, as a Kubernetes
# headless Service's name would change during a rolling update.
#
#   my $dns = NbDns->new(ttl => 1);
#   $dns->set('app.test' => ['127.0.0.2', '127.0.0.3']);   # A records
#   $dns->set('app.test' => []);          # NXDOMAIN
#   $dns->down(1);                        # queries get no answer at all
#   $dns->port, $dns->queries             # UDP port, queries answered
#   resolver line: "resolver 127.0.0.1:" . $dns->port . " valid=1s ipv6=off;"
#
# The child re-reads its zone file for every query; AAAA and other types
# get an empty answer (NOERROR, no data).

use strict;
use warnings;
use IO::Socket::INET;
use File::Temp ();
use File::Path qw(rmtree);
use POSIX ();
use Time::HiRes qw(sleep);

sub new {
    my ($class, %o) = @_;
    my $self = bless { ttl => 1, %o, owner => $$ }, $class;
    $self->{dir} = File::Temp::tempdir('nb_maint_dns_XXXXXX', TMPDIR => 1, CLEANUP => 0);
    $self->{zone} = {};
    $self->_write;
    my $sock;
    for (1 .. 20) {
        my $port = NbTest::free_port();
        $sock = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1',
                                      LocalPort => $port) and last;
    }
    die "NbDns: no UDP port: $!\n" unless $sock;
    $self->{port} = $sock->sockport;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
        _serve($sock, "$self->{dir}/zone", "$self->{dir}/count");
        POSIX::_exit(0);
    }
    close $sock;
    $self->{pid} = $pid;
    return $self;
}

sub port { $_[0]{port} }

sub set {
    my ($self, $name, $ips, $ttl) = @_;
    $self->{zone}{lc $name} = [ $ttl // $self->{ttl}, @$ips ];
    $self->_write;
}

sub down { my ($self, $on) = @_; $self->{down} = $on ? 1 : 0; $self->_write }

sub queries {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/count" or return 0;
    my $n = <$fh>;
    return ($n // 0) + 0;
}

sub _write {
    my ($self) = @_;
    my $f = "$self->{dir}/zone";
    open my $fh, '>', "$f.tmp" or die "$f.tmp: $!";
    print $fh "down\n" if $self->{down};
    for my $n (sort keys %{ $self->{zone} }) {
        my ($ttl, @ips) = @{ $self->{zone}{$n} };
        print $fh join(' ', $n, $ttl, @ips), "\n";
    }
    close $fh;
    rename "$f.tmp", $f or die "rename: $!";
}

sub _zone {
    my ($file) = @_;
    my %z;
    my $down = 0;
    open my $fh, '<', $file or return ({}, 0);
    while (<$fh>) {
        chomp;
        if ($_ eq 'down') { $down = 1; next }
        my ($n, $ttl, @ips) = split ' ';
        $z{$n} = [ $ttl, @ips ] if defined $n;
    }
    return (\%z, $down);
}

# the question's name (lower case) and where the question ends
sub _qname {
    my ($pkt) = @_;
    my ($off, @labels) = (12);
    while (1) {
        return if $off >= length $pkt;
        my $len = ord substr($pkt, $off, 1);
        $off++;
        last if $len == 0;
        return if $len > 63 || $off + $len > length $pkt;
        push @labels, substr($pkt, $off, $len);
        $off += $len;
    }
    return if $off + 4 > length $pkt;
    return (lc join('.', @labels), $off + 4, unpack('n', substr($pkt, $off, 2)));
}

sub _serve {
    my ($sock, $zonefile, $countfile) = @_;
    my $count = 0;
    while (1) {
        my $peer = $sock->recv(my $pkt, 512) // next;
        next if length $pkt < 17;
        my ($zone, $down) = _zone($zonefile);
        next if $down;
        my ($name, $qend, $qtype) = _qname($pkt) or next;
        my ($id, $flags) = unpack 'n n', $pkt;
        my $q = substr($pkt, 12, $qend - 12);
        my $rec = $zone->{$name};
        my ($rcode, @an) = (0);
        if (!$rec || @$rec < 2) {
            $rcode = 3;
        } elsif ($qtype == 1) {
            my ($ttl, @ips) = @$rec;
            @an = map { pack('n n n N n', 0xc00c, 1, 1, $ttl, 4)
                        . pack('C4', split /\./) } @ips;
        }
        my $resp = pack('n n n n n n', $id, 0x8000 | 0x0400 | ($flags & 0x0100) | 0x0080 | $rcode,
                        1, scalar(@an), 0, 0) . $q . join('', @an);
        $sock->send($resp, 0, $peer);
        $count++;
        if (open my $fh, '>', "$countfile.tmp") {
            print $fh "$count\n";
            close $fh;
            rename "$countfile.tmp", $countfile;
        }
    }
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

sub DESTROY {
    my ($self) = @_;
    return if $self->{owner} != $$;
    local ($?, $@, $!);
    $self->stop;
    rmtree($self->{dir}) if $self->{dir} && !$ENV{NB_KEEP};
}

1;
