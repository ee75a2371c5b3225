package NbPg;
# A throw-away PostgreSQL server from Debian's packages for the NocoBase
# end-to-end test: its own cluster in a temporary directory, on a free
# loopback port, stopped on destroy.  Run as root, the server runs as the
# "postgres" user (initdb refuses root).  Core Perl only.
#
#   my $pg = NbPg->new(from => 'build/nocobase/pgdata.tar');   # or fresh
#   $pg->start; $pg->psql('create database x'); $pg->port;
#   $pg->save('build/nocobase/pgdata.tar');                      # after stop

use strict;
use warnings;
use File::Temp ();
use File::Path qw(rmtree);
use NbTest ();

sub bindir {
    return $ENV{PG_BINDIR} if $ENV{PG_BINDIR};
    my ($d) = reverse sort { ($a =~ /(\d+)\/bin$/)[0] <=> ($b =~ /(\d+)\/bin$/)[0] }
              glob '/usr/lib/postgresql/*/bin';
    return $d // die "no PostgreSQL server in /usr/lib/postgresql (apt-get install postgresql)\n";
}

sub new {
    my ($class, %o) = @_;
    my $dir = File::Temp::tempdir('nb_maint_pg_XXXXXX', TMPDIR => 1, CLEANUP => 0);
    my $self = bless { dir => $dir, port => NbTest::free_port(), owner => $$, %o }, $class;
    $self->{user} = $> == 0 ? 'postgres' : undef;
    chmod 0755, $dir;
    if ($self->{from}) {
        system('tar', '-C', $dir, '-xf', $self->{from}) == 0
            or die "NbPg: cannot unpack $self->{from}\n";
    } else {
        mkdir "$dir/data";
    }
    system('chown', '-R', 'postgres:postgres', $dir) if $self->{user};
    chmod 0700, "$dir/data";
    $self->_run('initdb', '-D', "$dir/data", '-A', 'trust', '-U', 'postgres',
                '-E', 'UTF8', '--no-sync', '--locale=C') unless $self->{from};
    return $self;
}

sub port { $_[0]{port} }
sub dir  { $_[0]{dir} }

sub _cmd {
    my ($self, $prog, @args) = @_;
    my @cmd = (bindir() . "/$prog", @args);
    unshift @cmd, 'runuser', '-u', $self->{user}, '--' if $self->{user};
    return @cmd;
}

sub _run {
    my ($self, @cmd) = @_;
    my ($rc, $out) = NbTest::run_cmd("$self->{dir}/cmd.out", $self->_cmd(@cmd));
    die "NbPg: $cmd[0] failed (exit $rc):\n$out\n" if $rc;
    return $out;
}

sub start {
    my ($self) = @_;
    my $d = $self->{dir};
    $self->_run('pg_ctl', '-D', "$d/data", '-l', "$d/pg.log", '-w', '-t', '60',
        '-o', "-p $self->{port} -k $d -c listen_addresses=127.0.0.1 "
            . "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        'start');
    $self->{running} = 1;
    return $self;
}

sub psql {
    my ($self, $sql, $db) = @_;
    return $self->_run('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1',
                       '-p', $self->{port}, '-U', 'postgres', '-d', $db // 'postgres',
                       '-c', $sql);
}

sub stop {
    my ($self) = @_;
    return unless $self->{running};
    $self->{running} = 0;
    eval { $self->_run('pg_ctl', '-D', "$self->{dir}/data", '-m', 'fast', '-w', 'stop') };
}

# pack the (stopped) cluster for a later new(from => $tar)
sub save {
    my ($self, $tar) = @_;
    system('tar', '-C', $self->{dir}, '-cf', "$tar.tmp", 'data') == 0
        or die "NbPg: cannot pack into $tar\n";
    rename "$tar.tmp", $tar or die "NbPg: rename $tar: $!\n";
}

sub DESTROY {
    my ($self) = @_;
    return unless $self->{owner} == $$;
    local ($?, $@);
    $self->stop;
    rmtree($self->{dir}) unless $ENV{NB_KEEP};
}

1;
