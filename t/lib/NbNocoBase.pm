package NbNocoBase;
# A real NocoBase node (installed by scripts/nocobase-install into
# build/nocobase/app) for the opt-in end-to-end test: `nocobase install`
# into a database, `nocobase start` on a free loopback port in its own
# process group, health by GET /api/__health_check.  Core Perl only.
#
# Several nodes (cluster mode): one app directory (shared storage), one
# PostgreSQL, the same APP_KEY (.env), Redis for the cache when redis_url is
# given (CACHE_DEFAULT_STORE=redis; NocoBase's Redis adapters for pub/sub,
# locks and queues are commercial plugins, so those stay per node).  A node's
# process group is kept in DIR/node-PORT.pid and its settings in
# DIR/node-PORT.json, so that t/lib/nocobase-node can stop and start it
# for nb-maint's --stop-cmd / --start-cmd while the test owns it.

use strict;
use warnings;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(time sleep);
use NbTest ();

sub new {
    my ($class, %o) = @_;
    my $self = bless { port => NbTest::free_port(), owner => $$, %o }, $class;
    die "NbNocoBase: no app in $self->{app}\n" unless -d "$self->{app}/node_modules";
    $self->{log} //= "$self->{app}/../node-$self->{port}.log";
    $self->{base} //= "$self->{app}/..";
    return $self;
}

sub pidfile  { "$_[0]{base}/node-$_[0]{port}.pid" }
sub specfile { "$_[0]{base}/node-$_[0]{port}.json" }

# settings for t/lib/nocobase-node
sub save_spec {
    my ($self) = @_;
    my %s = (app => $self->{app}, port => $self->{port}, log => $self->{log},
             pg_port => $self->{pg}->port, redis_url => $self->{redis_url});
    open my $fh, '>', $self->specfile or die "$!";
    print $fh NbTest::json_encode(\%s);
    close $fh;
    return $self;
}

# a node from its spec file (t/lib/nocobase-node): "127.0.0.1:PORT" in DIR
sub from_spec {
    my ($class, $base, $id) = @_;
    my ($port) = $id =~ /:(\d+)$/ or die "nocobase-node: bad node id $id\n";
    open my $fh, '<', "$base/node-$port.json" or die "nocobase-node: no node $id in $base\n";
    my $s = NbTest::json_decode(do { local $/; <$fh> });
    return $class->new(%$s, base => $base, pg => NbNocoBase::PgPort->new($s->{pg_port}),
                       owner => -1);
}

sub port { $_[0]{port} }
sub id   { "127.0.0.1:$_[0]{port}" }

sub env {
    my ($self) = @_;
    return (APP_PORT => $self->{port}, APP_ENV => 'production',
            DB_HOST => '127.0.0.1', DB_PORT => $self->{pg}->port,
            DB_DATABASE => 'nocobase', DB_USER => 'nocobase',
            DB_PASSWORD => 'nocobase', LOGGER_LEVEL => 'warn',
            # one app directory, several nodes: own socket and pm2 home each
            SOCKET_PATH => "$self->{app}/storage/gateway-$self->{port}.sock",
            PM2_HOME => "$self->{app}/storage/pm2-$self->{port}",
            NODE_EXTRA_CA_CERTS => '/etc/ssl/certs/ca-certificates.crt',
            $self->{redis_url} ? (CACHE_DEFAULT_STORE => 'redis',
                                  CACHE_REDIS_URL => $self->{redis_url}) : ());
}

# run `yarn nocobase ARGS` in the app, in its own process group; returns pid
sub spawn {
    my ($self, $log, @args) = @_;
    my %env = $self->env;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        chdir $self->{app} or POSIX::_exit(126);
        $ENV{$_} = $env{$_} for keys %env;
        $ENV{PATH} = "$self->{app}/../tools/node_modules/.bin:$self->{app}/node_modules/.bin:$ENV{PATH}";
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        exec 'nocobase-v1', @args or POSIX::_exit(127);
    }
    return $pid;
}

# `nocobase install` (creates the schema, installs and enables plugins)
sub install {
    my ($self, $timeout) = @_;
    my $pid = $self->spawn($self->{log}, 'install');
    my $end = time + ($timeout // 900);
    while (time < $end) {
        my $r = waitpid $pid, POSIX::WNOHANG();
        return $? == 0 if $r == $pid;
        sleep 1;
    }
    kill 'KILL', -$pid;
    waitpid $pid, 0;
    return 0;
}

sub start {
    my ($self) = @_;
    $self->{pid} = $self->spawn($self->{log}, 'start', '--launch-mode', 'node');
    open my $fh, '>', $self->pidfile or die "$!";
    print $fh "$self->{pid}\n";
    close $fh;
    return $self;
}

# the process group of a running node (ours or started by nocobase-node)
sub group {
    my ($self) = @_;
    open my $fh, '<', $self->pidfile or return undef;
    my ($g) = <$fh> =~ /(\d+)/;
    return $g && kill(0, -$g) ? $g : undef;
}
sub running { defined $_[0]->group }

# the health check answer: (status, body)
sub health {
    my ($self) = @_;
    my $r = HTTP::Tiny->new(timeout => 5)
        ->get("http://127.0.0.1:$self->{port}/api/__health_check");
    return ($r->{status}, $r->{content} // '');
}

sub wait_healthy {
    my ($self, $timeout) = @_;
    return NbTest::wait_until(sub {
        my ($st, $b) = $self->health;
        return $st == 200 && $b =~ /^ok\s*$/;
    }, $timeout // 300, 1);
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid};
    my $g = $self->group // $pid or return;
    kill 'TERM', -$g;
    # our child: reap it; another's (nocobase-node): until the group is gone
    unless (NbTest::wait_until(sub {
                waitpid($g, POSIX::WNOHANG());
                !kill(0, -$g) }, 20, 0.2)) {
        kill 'KILL', -$g;
    }
    waitpid $g, POSIX::WNOHANG();
    kill 'KILL', -$g;    # stragglers of the group
    unlink $self->pidfile;
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@);
    $self->stop if $self->{owner} == $$;
}

package NbNocoBase::PgPort;    # what a node needs of NbPg: its port
sub new  { bless { port => $_[1] }, $_[0] }
sub port { $_[0]{port} }

1;
