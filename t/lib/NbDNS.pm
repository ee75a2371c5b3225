package NbDNS;
# A small DNS server for tests (core Perl only): answers A queries over UDP
# on 127.0.0.1 from a table it re-reads on every query, so a test can
# change what a name resolves to while it runs.  AAAA and other types of a
# known name: no records (NOERROR); an unknown name: NXDOMAIN.  Every query
# is logged, one "name type" line each.
#
#   my $dns = NbDNS->new(records => { 'redis.test' => ['127.0.0.1'] });
#   "resolver 127.0.0.1:" . $dns->port . " ipv6=off;"   (in nginx's http{})
#   $dns->set('redis.test' => ['127.0.0.2', '127.0.0.3']);
#   my @q = $dns->queries;         # ("redis.test A", ...)
#   $dns->down(1);                 # no answer at all (a resolver timeout)
#   $dns->stop;

use strict;
use warnings;
use POSIX ();
use IO::Socket::INET;
use File::Temp ();
use Scalar::Util ();
use NbTest;

my @ALL;

sub new {
    my ($class, %o) = @_;
    my $self = bless { owner => $$, ttl => $o{ttl} // 1 }, $class;
    $self->{dir} = File::Temp::tempdir('nb_maint_dns_XXXXXX', TMPDIR => 1, CLEANUP => 1);
    $self->set(%{ $o{records} || {} });
    my $sock;
    for (1 .. 20) {
        $self->{port} = NbTest::free_port();
        $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $self->{port},
                                      Proto => 'udp', ReuseAddr => 1) and last;
    }
    die "NbDNS: no UDP port: $!\n" unless $sock;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $self->_serve($sock);
        POSIX::_exit(0);
    }
    close $sock;
    $self->{pid} = $pid;
    push @ALL, $self;
    Scalar::Util::weaken($ALL[-1]);
    return $self;
}

sub port { $_[0]{port} }

# http{} text of a gateway whose upstream "app" takes its nodes from a
# name of this server (nb_maint_resolve), proxied from "location /" as in
# NbTest::cluster_http.  Options: name, port (of the nodes), params (of
# nb_maint_resolve, default "max=8 interval=200ms"), check (default
# FAST_CHECK), upstream_extra, and NbTest::server_block's.
sub http {
    my ($self, %o) = @_;
    my $params = $o{params} // 'max=8 interval=200ms';
    my $t = NbTest::http_head(%o);
    $t .= "resolver 127.0.0.1:$self->{port} valid=1s ipv6=off;\n";
    $t .= "resolver_timeout 1s;\n";
    $t .= "upstream app {\n    nb_maint;\n";
    $t .= "    nb_maint_check " . ($o{check} // NbTest::FAST_CHECK) . ";\n";
    $t .= "    nb_maint_resolve $o{name}:$o{port} $params;\n";
    $t .= $o{upstream_extra} // '';
    $t .= "}\n";
    return $t . NbTest::server_block(\%o,
        qq(    proxy_http_version 1.1;\n    proxy_set_header Connection "";\n),
        'proxy_pass http://app;');
}

# name => [IPv4 addresses] (replaces the table)
sub set {
    my ($self, %rec) = @_;
    my $f = "$self->{dir}/records";
    open my $fh, '>', "$f.tmp" or die "$f: $!";
    print $fh lc($_), ' ', join(' ', @{ $rec{$_} }), "\n" for sort keys %rec;
    close $fh;
    rename "$f.tmp", $f or die "rename $f: $!";
}

# on: queries get no answer (the resolver times out); off: answered again
sub down {
    my ($self, $on) = @_;
    my $f = "$self->{dir}/down";
    if ($on) { open my $fh, '>', $f or die "$f: $!"; close $fh }
    else     { unlink $f }
}

sub queries {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/queries" or return ();
    chomp(my @q = <$fh>);
    return @q;
}

sub _records {
    my ($self) = @_;
    my %r;
    open my $fh, '<', "$self->{dir}/records" or return \%r;
    while (<$fh>) {
        my ($name, @ip) = split ' ';
        $r{$name} = \@ip if defined $name;
    }
    return \%r;
}

sub _serve {
    my ($self, $sock) = @_;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    open my $log, '>>', "$self->{dir}/queries" or POSIX::_exit(1);
    $log->autoflush(1);
    while (1) {
        my $peer = $sock->recv(my $pkt, 512) // next;
        next if length $pkt < 17 || -e "$self->{dir}/down";
        my ($id, $flags, $qd) = unpack 'n n n', $pkt;
        my ($off, @labels) = (12);
        while ($off < length $pkt) {
            my $l = ord substr($pkt, $off++, 1);
            last if $l == 0;
            push @labels, substr($pkt, $off, $l);
            $off += $l;
        }
        my ($type) = unpack 'n', substr($pkt, $off, 2);
        my $question = substr($pkt, 12, $off + 4 - 12);
        my $name = lc join '.', @labels;
        my $types = { 1 => 'A', 28 => 'AAAA', 33 => 'SRV' };
        print $log "$name ", $types->{$type} // $type, "\n";
        my $rec = $self->_records->{$name};
        my @ans = ($rec && $type == 1) ? @$rec : ();
        my $rcode = $rec ? 0 : 3;
        my $res = pack('n n n n n n', $id, 0x8180 | $rcode, 1, scalar @ans, 0, 0) . $question;
        $res .= pack('n n n N n C4', 0xC00C, 1, 1, $self->{ttl}, 4, split /\./) for @ans;
        $sock->send($res, 0, $peer);
    }
}

sub stop {
    my ($self) = @_;
    return if $self->{owner} != $$;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

sub DESTROY { local ($?, $@, $!); $_[0]->stop }
END { local $?; $_ && $_->stop for @ALL }

1;
