# The container image (issue 20 item 1), run with podman: README's Docker
# configuration (deploy/compose/nginx.conf) in the image, with only its
# addresses changed (the DNS server, Redis, the name's port, the listen
# port: the test's own, on loopback, --network host), against two mock
# NocoBase nodes that a local DNS server gives as the name's members.
# Checks: it runs as nb-maint, nginx -t at start, public requests reach
# both nodes, the Redis store is used, the CLI in the image works, the
# health check passes, logs go to stdout/stderr, upgrade mode gives the 503
# page, SIGQUIT stops it; a broken configuration stops the container at
# start with nginx's message.
#
# Runs only when the image exists (`make image`, build/image/image.id) and
# the machine can run a container; otherwise skipped with the exact reason
# (podman's own error).  Where crun cannot start containers (hybrid cgroups,
# no CAP_SYS_RESOURCE) it uses runc with the machine's hard ulimits.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbDNS;
use HTTP::Tiny;
use JSON::PP;
use File::Temp ();
use Time::HiRes qw(time sleep);

my $ROOT = NbTest::repo_root();
plan skip_all => 'podman runs containers as root here (rootful storage of make image)' unless $> == 0;
chomp(my $podman = `command -v podman 2>/dev/null` // '');
plan skip_all => 'no podman (make image installs it)' unless $podman;
plan skip_all => 'no image: run `make image` (build/image/image.id missing)'
    unless -s "$ROOT/build/image/image.id";
my ($version) = NbTest::slurp("$ROOT/debian/changelog") =~ /^\S+ \(([^)]+)\)/;
my $IMAGE = "localhost/nb-maint-gateway:$version";
chomp(my $id = NbTest::slurp("$ROOT/build/image/image.id"));
my $have = `podman image inspect --format '{{.Id}}' $IMAGE 2>/dev/null`;
plan skip_all => "no image $IMAGE in podman's storage (make image)" unless $have =~ /\S/;

sub podman {
    my (@args) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if (!$pid) { open STDERR, '>&', \*STDOUT; exec 'podman', @args; exit 127 }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    $out =~ s/\s+\z//;
    return ($? >> 8, join "\n", grep { !/healthcheck: unable to get systemd connection/ } split /\n/, $out);
}

# the options this machine needs to start a container at all
my @RUN;
{
    my ($rc, $out) = podman('run', '--rm', '--network', 'host', $IMAGE, 'nginx', '-v');
    if ($rc != 0) {
        my $first = $out;
        # the hard limits this process has (raising one needs CAP_SYS_RESOURCE)
        my $lim = NbTest::slurp('/proc/self/limits');
        my ($nofile) = $lim =~ /^Max open files\s+\S+\s+(\d+)/m;
        my ($nproc) = $lim =~ /^Max processes\s+\S+\s+(\d+)/m;
        $nofile //= 1024;
        $nproc //= 4096;
        $nproc = 4096 if $nproc > 4096;      # at the hard limit runc still fails here (EPERM)
        my @alt = ('--runtime', 'runc', '--ulimit', "nofile=$nofile:$nofile", '--ulimit', "nproc=$nproc:$nproc");
        ($rc, $out) = -x '/usr/sbin/runc' || -x '/usr/bin/runc'
            ? podman('run', '--rm', '--network', 'host', @alt, $IMAGE, 'nginx', '-v')
            : (1, 'no runc');
        $first =~ s/\s+$//;
        plan skip_all => "podman cannot run a container here: $first" . ($out ne $first ? " (runc: $out)" : '')
            if $rc != 0;
        diag "crun: $first; using runc with --ulimit nofile=$nofile nproc=$nproc";
        @RUN = @alt;
    }
    like($out, qr{nginx version: nginx/}, 'the image runs: ' . ($out =~ /(nginx\/\S+)/)[0]);
}

# ---- the parts around it -----------------------------------------------------
my $MP = NbTest::free_port();
my $dns = NbDNS->new(ttl => 1);
$dns->set('nocobase.nb.test' => ['127.0.0.2', '127.0.0.3']);
my @mocks = map { NbTest::Mock->new(host => "127.0.0.$_", port => $MP) } 2, 3;
my $redis = NbTest::Redis->new;
my $GP = NbTest::free_port();
my $TOKEN = 'k' x 40;

my $T = File::Temp::tempdir('nb_maint_image_XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $T;
my $conf = NbTest::slurp("$ROOT/deploy/compose/nginx.conf");
# the addresses, and only those
my $n = 0;
$n += $conf =~ s/^(\s*)resolver 127\.0\.0\.11 /${1}resolver 127.0.0.1:@{[ $dns->port ]} /m;
$n += $conf =~ s{redis://redis:6379/}{redis://127.0.0.1:@{[ $redis->port ]}/};
$n += $conf =~ s/nb_maint_resolve nocobase:13000 /nb_maint_resolve nocobase.nb.test:$MP /;
$n += $conf =~ s/^(\s*)listen 8080;/${1}listen 127.0.0.1:$GP;/m;
is($n, 4, 'README\'s Docker configuration, its four addresses changed');
sub write_file { my ($f, $t) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $t; close $fh; chmod 0644, $f }
write_file("$T/nginx.conf", $conf);
write_file("$T/tokens", "admin:$TOKEN\n");
(my $bad = $conf) =~ s/nb_maint_zone nb_maint 4m;/nb_maint_zone nb_maint 4x;/;
write_file("$T/bad.conf", $bad);

my $NAME = "nb-maint-t188-$$";
my $OWNER = $$;
my @VOL = ('-v', "$T/nginx.conf:/etc/nb-maint/nginx.conf:ro", '-v', "$T/tokens:/etc/nb-maint/tokens:ro");
END { local $?; system("podman rm -f -i -t 0 $NAME >/dev/null 2>&1") if $NAME && $$ == $OWNER }

# ---- a broken configuration: the container stops at nginx -t -----------------
{
    my ($rc, $out) = podman('run', '--rm', '--name', "$NAME-bad", '--network', 'host', @RUN,
                            '-v', "$T/bad.conf:/etc/nb-maint/nginx.conf:ro", '-v', "$T/tokens:/etc/nb-maint/tokens:ro",
                            $IMAGE);
    isnt($rc, 0, "a bad configuration: the container exits ($rc)");
    like($out, qr/\[emerg\].*nb_maint_zone/, 'with nginx -t\'s message on stderr') or diag $out;
}

# ---- the gateway ------------------------------------------------------------------
my ($rc, $out) = podman('run', '-d', '--name', $NAME, '--network', 'host', @RUN, @VOL,
                        '-e', "NB_MAINT_HEALTH_URL=http://127.0.0.1:$GP/_nb_maint/status",
                        '-e', "NB_MAINT_URL=http://127.0.0.1:$GP/_nb_maint/", $IMAGE);
is($rc, 0, 'podman run -d') or diag $out;
my $ua = HTTP::Tiny->new(timeout => 3);
my $GW = "http://127.0.0.1:$GP";
my %AUTH = (headers => { Authorization => "Bearer $TOKEN" });
my $status;
my $up = NbTest::wait_until(sub {
    my $r = $ua->get("$GW/_nb_maint/status", \%AUTH);
    return 0 unless $r->{status} == 200;
    $status = decode_json($r->{content});
    my @n = map { @{ $_->{nodes} } } @{ $status->{upstreams} };
    return @n == 2 && !grep { $_->{health} ne 'up' } @n;
}, 30);
ok($up, 'the gateway answers; both members of the name are up') or diag podman('logs', $NAME);
is($status->{store}{type}, 'redis', 'the Redis store');
ok($status->{store}{ok}, 'the store is ok');

my %seen;
for (1 .. 20) {
    my $r = $ua->get("$GW/api/app:getInfo");
    $seen{ $r->{status} }++;
    $seen{ $r->{headers}{'x-node'} // '-' }++;
}
is($seen{200}, 20, 'public requests: 20 of 20 answered 200');
ok($seen{ $mocks[0]->id } && $seen{ $mocks[1]->id }, 'both nodes served');

($rc, $out) = podman('exec', $NAME, 'id', '-u');
is($out, '10001', 'nginx runs as nb-maint (uid 10001)');
($rc, $out) = podman('top', $NAME, 'user', 'args');
unlike($out, qr/^root\s/m, 'no process of the container runs as root') or diag $out;

($rc, $out) = podman('healthcheck', 'run', $NAME);
is($rc, 0, "the image's health check passes") or diag $out;

($rc, $out) = podman('exec', $NAME, 'nb-maint', 'upgrade', '--reason', 'image test', '--token', $TOKEN);
is($rc, 0, 'nb-maint in the image: upgrade') or diag $out;
my $r = $ua->get("$GW/api/app:getInfo");
is($r->{status}, 503, 'upgrade mode: the 503 page');
like($redis->cli({ db => 1 }, 'GET', 'nb_maint:state') // '', qr/"mode":"upgrade"/, 'Redis (db 1) holds the state');
($rc, $out) = podman('exec', $NAME, 'nb-maint', 'restore', '--wait', '--timeout', '20', '--token', $TOKEN);
is($rc, 0, 'nb-maint restore --wait') or diag $out;
is($ua->get("$GW/api/app:getInfo")->{status}, 200, 'normal again: 200');

# logs: the access log on stdout, nginx -t's line and errors on stderr
my $so = qx{podman logs $NAME 2>/dev/null};
my $se = qx{podman logs $NAME 2>&1 >/dev/null};
like($so, qr{"GET /api/app:getInfo HTTP/1\.1" 200}, 'the access log on stdout');
like($se, qr{nb-maint-gateway: nginx -t -c /etc/nb-maint/nginx\.conf}, 'nginx -t at start, on stderr');

# SIGQUIT (the image's stop signal): a graceful stop
my $t0 = time;
($rc, $out) = podman('stop', '-t', '20', $NAME);
is($rc, 0, 'podman stop') or diag $out;
cmp_ok(time - $t0, '<', 15, sprintf('stopped gracefully in %.1f s (not killed after the timeout)', time - $t0));
($rc, $out) = podman('inspect', '--format', '{{.State.ExitCode}}', $NAME);
is($out, '0', 'exit code 0');

done_testing();
