package NbNocoBase;
# A real NocoBase node (installed by scripts/nocobase-install into
# build/nocobase/app) for the opt-in end-to-end test: `nocobase install`
# into a database, `nocobase start` on a free loopback port in its own
# process group, health by GET /api/__health_check.  Core Perl only.

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
    return $self;
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
            NODE_EXTRA_CA_CERTS => '/etc/ssl/certs/ca-certificates.crt');
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
    return $self;
}

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
    my $pid = delete $self->{pid} or return;
    kill 'TERM', -$pid;
    unless (NbTest::wait_until(sub { waitpid($pid, POSIX::WNOHANG()) == $pid }, 20, 0.2)) {
        kill 'KILL', -$pid;
        waitpid $pid, 0;
    }
    kill 'KILL', -$pid;    # stragglers of the group
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@);
    $self->stop if $self->{owner} == $$;
}

1;
