package NbSentinel;
# A Redis Sentinel deployment for the failover tests (issue 12): one primary,
# one replica and three sentinels on loopback (Debian redis-server and
# redis-sentinel), down-after-milliseconds 1000 and failover-timeout 3000
# unless told otherwise.  Core Perl only; uses NbTest::Redis for the data
# servers.
#
#   my $s = NbSentinel->new(name => 'nbm');
#   NbSentinel->new(monitor_host => 'localhost')   # answers a host name
#   $s->store_url(prefix => $p, query => 'min_replicas=1&wait_ms=500')
#   $s->primary_addr          # what the sentinels say now ("127.0.0.1:PORT")
#   $s->server_of($addr)      # the NbTest::Redis listening there
#   $s->kill_primary          # kill -9; returns the killed NbTest::Redis
#   $s->wait_promoted($old, 15)   # until the sentinels name another primary
#   $s->rejoin($redis, 15)    # start it again; wait until it is a replica

use strict;
use warnings;
use POSIX ();
use Time::HiRes qw(sleep time);
use Scalar::Util ();
use NbTest;

sub available { grep { -x "$_/redis-sentinel" } split /:/, $ENV{PATH} }

sub new {
    my ($class, %o) = @_;
    my $self = bless { name => 'nbm', down_after => 1000, failover_timeout => 3000,
                       %o, owner => $$, sentinels => [] }, $class;
    track($self);
    my $p = NbTest::Redis->new;
    my $r = NbTest::Redis->new(args => ['--replicaof', '127.0.0.1', $p->port]);
    $self->{servers} = [$p, $r];
    NbTest::wait_until(sub { $r->cli('INFO', 'replication') =~ /master_link_status:up/ }, 10)
        or die "NbSentinel: the replica does not follow the primary\n";
    $self->_start_sentinel($p) for 1 .. 3;
    NbTest::wait_until(sub {
        my $out = $self->sentinel_cli(0, 'SENTINEL', 'sentinels', $self->{name});
        my $n = () = $out =~ /^name$/mg;
        $n >= 2;
    }, 20, 0.2) or die "NbSentinel: the sentinels do not know each other\n";
    return $self;
}

sub _start_sentinel {
    my ($self, $primary) = @_;
    my $port = NbTest::free_port();
    my $dir = $primary->dir;
    my $conf = "$dir/sentinel-$port.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    # monitor_host => 'localhost': the primary by host name, and the
    # sentinels answer with that name (announce-hostnames, Redis 6.2+)
    my $host = $self->{monitor_host} // '127.0.0.1';
    print $fh "port $port\nbind 127.0.0.1\ndir $dir\n",
              ($self->{monitor_host} ? "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n" : ''),
              "sentinel monitor $self->{name} $host ", $primary->port, " 2\n",
              "sentinel down-after-milliseconds $self->{name} $self->{down_after}\n",
              "sentinel failover-timeout $self->{name} $self->{failover_timeout}\n",
              "sentinel parallel-syncs $self->{name} 1\n";
    close $fh;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/sentinel-$port.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-sentinel', $conf or POSIX::_exit(127);
    }
    push @{ $self->{sentinels} }, { port => $port, pid => $pid };
    NbTest::wait_until(sub { $self->sentinel_cli($#{ $self->{sentinels} }, 'PING') =~ /PONG/ }, 10)
        or die "NbSentinel: sentinel on $port does not answer\n";
}

sub servers   { @{ $_[0]{servers} } }
sub sentinels { @{ $_[0]{sentinels} } }
sub hosts     { join ',', map { "127.0.0.1:$_->{port}" } @{ $_[0]{sentinels} } }

# redis-sentinel://h1,h2,h3/<name>/0?prefix=...&<query>
sub store_url {
    my ($self, %o) = @_;
    my @q = grep { defined && length } (defined $o{prefix} ? "prefix=$o{prefix}" : undef), $o{query};
    return "redis-sentinel://" . $self->hosts . "/$self->{name}/" . ($o{db} // 0)
         . (@q ? '?' . join('&', @q) : '');
}

sub sentinel_cli {
    my ($self, $i, @args) = @_;
    my $port = $self->{sentinels}[$i]{port};
    my $pid = open(my $out, '-|') // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        exec 'redis-cli', '-h', '127.0.0.1', '-p', $port, @args or POSIX::_exit(127);
    }
    local $/;
    my $text = <$out> // '';
    close $out;
    return $text;
}

# the primary the (first answering) sentinels name, "127.0.0.1:PORT" or undef
sub primary_addr {
    my ($self) = @_;
    for my $i (0 .. $#{ $self->{sentinels} }) {
        my @l = split /\n/, $self->sentinel_cli($i, 'SENTINEL', 'get-master-addr-by-name', $self->{name});
        return "$l[0]:$l[1]" if @l == 2 && $l[1] =~ /^\d+$/;
    }
    return undef;
}

sub server_of {
    my ($self, $addr) = @_;
    my ($port) = ($addr // '') =~ /:(\d+)$/ or return undef;
    my ($s) = grep { $_->port == $port } @{ $self->{servers} };
    return $s;
}

sub primary { my $self = shift; $self->server_of($self->primary_addr) }

sub kill_primary {
    my ($self) = @_;
    my $p = $self->primary or die "NbSentinel: no primary\n";
    $p->kill;
    return $p;
}

# until every sentinel names the same primary other than $old (an
# NbTest::Redis), none has a failover in progress any more, and the new one
# says it is a master; the new NbTest::Redis or undef.  (Restarting the old
# primary empty while a slow failover may still be aborted could make the
# sentinels sync the promoted replica from it.)
sub wait_promoted {
    my ($self, $old, $timeout) = @_;
    my $new;
    NbTest::wait_until(sub {
        my %addr;
        for my $i (0 .. $#{ $self->{sentinels} }) {
            my $m = $self->sentinel_cli($i, 'SENTINEL', 'master', $self->{name});
            return 0 if $m =~ /failover_in_progress/;
            my ($ip, $port) = ($m =~ /^ip\n(\S+)\n/m, $m =~ /^port\n(\d+)\n/m);
            return 0 unless $port;
            $addr{"$ip:$port"}++;
        }
        return 0 unless keys %addr == 1;
        my $s = $self->server_of((keys %addr)[0]) or return 0;
        return 0 if $s == $old;
        return 0 unless $s->cli('ROLE') =~ /^master/;
        $new = $s;
    }, $timeout // 15, 0.05);
    return $new;
}

# start a killed server again (empty, on its port) as a replica of the
# current primary, as an operator does (the sentinels would convert it too,
# but only after some seconds as an empty primary); wait until its link is up
sub rejoin {
    my ($self, $s, $timeout) = @_;
    my ($host, $port) = split /:/, $self->primary_addr // die "NbSentinel: no primary\n";
    $s->start(args => ['--replicaof', $host, $port]);
    return NbTest::wait_until(sub {
        $s->cli('INFO', 'replication') =~ /role:slave.*master_link_status:up/s;
    }, $timeout // 20, 0.1);
}

sub _finish {
    my ($self) = @_;
    return if $self->{finished} || $self->{owner} != $$;
    $self->{finished} = 1;
    for my $s (@{ $self->{sentinels} }) {
        next unless $s->{pid};
        kill 'KILL', $s->{pid};
        waitpid $s->{pid}, 0;
    }
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->_finish;
}

my @ALL;
sub track { push @ALL, $_[0]; Scalar::Util::weaken($ALL[-1]) }
END { local $?; $_ && $_->_finish for @ALL }

1;
