# The Debian packages (issue 11): apt install ./build/...deb, a config that
# uses only the installed snippets passes nginx -t and runs with workers as
# www-data (state in /var/lib/nb-maint), a mode change through the installed
# CLI, then apt purge leaves no file behind.  Needs root and `make deb`;
# one run at a time on a machine (a lock), its own prefix and ports.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Fcntl qw(:flock);
use File::Find;
use Time::HiRes qw(sleep time);

plan skip_all => 'installs packages: needs root' unless $> == 0;
my $root = NbTest::repo_root();
my ($http_deb)   = glob "$root/build/libnginx-mod-http-nb-maint_*.deb";
my ($stream_deb) = glob "$root/build/libnginx-mod-stream-nb-maint_*.deb";
plan skip_all => 'no build/libnginx-mod-*-nb-maint_*.deb: run `make deb` first'
    unless $http_deb && $stream_deb;
plan skip_all => 'not a Debian system (no apt-get)' unless -x '/usr/bin/apt-get';
# the package is built for Debian's nginx: test it with that one only
my $bin = NbTest::nginx_bin();
chomp(my $path = $bin =~ m{/} ? $bin : `command -v $bin 2>/dev/null` // '');
plan skip_all => "the package is for Debian's nginx (/usr/sbin/nginx), not $bin"
    unless $path && -e $path && (stat $path)[1] == ((stat '/usr/sbin/nginx')[1] // -1);

my @PKGS = qw(libnginx-mod-stream-nb-maint libnginx-mod-http-nb-maint);

# one install/purge test at a time on this machine (several worktrees)
open my $lock, '>', '/run/lock/nb-maint-deb-test.lock' or die "lock: $!";
my $t0 = time;
sleep 1 until flock($lock, LOCK_EX | LOCK_NB) or time - $t0 > 900;
plan skip_all => 'another install test held the lock for 15 minutes'
    unless flock($lock, LOCK_EX | LOCK_NB);

sub sh {
    my (@cmd) = @_;
    my $out = `@cmd 2>&1`;
    return ($? >> 8, $out);
}
sub apt {
    local $ENV{DEBIAN_FRONTEND} = 'noninteractive';
    return sh('apt-get', '-y', '-q', '-o', 'DPkg::Lock::Timeout=600', @_);
}
sub installed { scalar grep { `dpkg-query -W -f='\${Status}' $_ 2>/dev/null` =~ /install ok installed/ } @PKGS }

my @WATCH = qw(/etc/nginx /usr/lib/nginx/modules /usr/share/nginx/modules-available
               /usr/share/nb-maint /var/lib/nb-maint /usr/bin/nb-maint
               /usr/share/man/man1/nb-maint.1.gz /usr/share/man/man5/nb_maint.5.gz
               /usr/share/doc/libnginx-mod-http-nb-maint /usr/share/doc/libnginx-mod-stream-nb-maint);
sub snapshot {
    my %f;
    for my $w (grep { -e $_ || -l $_ } @WATCH) {
        if (-d $w && !-l $w) {
            find({ no_chdir => 1, wanted => sub { $f{$File::Find::name} = 1 } }, $w);
        } else {
            $f{$w} = 1;
        }
    }
    return \%f;
}

# a leftover from an interrupted run would spoil the before/after comparison
apt('purge', @PKGS) if installed();
my $installed_here;
END { local $?; apt('purge', @PKGS) if $installed_here && installed() }
my $before = snapshot();

# ---- install
my ($rc, $out) = apt('install', '--no-install-recommends', $http_deb, $stream_deb);
$installed_here = 1;
is($rc, 0, 'apt install ./build/libnginx-mod-{http,stream}-nb-maint_*.deb') or diag $out;
is(installed(), 2, 'both packages installed');

ok(-f '/usr/lib/nginx/modules/ngx_http_nb_maint_module.so', 'http module in /usr/lib/nginx/modules');
ok(-f '/usr/lib/nginx/modules/ngx_stream_nb_maint_module.so', 'stream module in /usr/lib/nginx/modules');
is(readlink('/etc/nginx/modules-enabled/50-mod-http-nb-maint.conf'),
   '/usr/share/nginx/modules-available/mod-http-nb-maint.conf', 'postinst: 50-mod-http-nb-maint.conf link');
is(readlink('/etc/nginx/modules-enabled/70-mod-stream-nb-maint.conf'),
   '/usr/share/nginx/modules-available/mod-stream-nb-maint.conf',
   'postinst: 70-mod-stream-nb-maint.conf link (after the stream core)');
like(NbTest::Nginx->read_file('/usr/share/nginx/modules-available/mod-http-nb-maint.conf') // '',
     qr{^load_module modules/ngx_http_nb_maint_module\.so;$}m, 'mod-http-nb-maint.conf loads the module');
ok(-x '/usr/bin/nb-maint', 'CLI /usr/bin/nb-maint');
ok(-f '/usr/share/nb-maint/perl/NbMaint.pm' && -f '/usr/share/nb-maint/perl/NbMaint/Cli.pm',
   'CLI modules in /usr/share/nb-maint/perl');
ok(-f "/etc/nginx/nb_maint/$_", "snippet /etc/nginx/nb_maint/$_")
    for qw(nb_maint_http.conf nb_maint_upstream.conf nb_maint_server.conf nb_maint_stream.conf);
my $conff = `dpkg-query -W -f='\${Conffiles}' libnginx-mod-http-nb-maint`;
like($conff, qr{/etc/nginx/nb_maint/nb_maint_http\.conf}, 'snippets are conffiles');
ok(-f '/usr/share/nb-maint/page.html', 'page template /usr/share/nb-maint/page.html');
ok(-f '/usr/share/nb-maint/grafana/nb_maint.json', 'Grafana dashboard /usr/share/nb-maint/grafana/nb_maint.json');
ok(-f '/usr/share/man/man1/nb-maint.1.gz' && -f '/usr/share/man/man5/nb_maint.5.gz', 'man pages');
my @st = stat '/var/lib/nb-maint';
is(@st ? scalar getpwuid($st[4]) : '', 'www-data', '/var/lib/nb-maint owned by www-data');
@st = stat '/etc/nginx/nb_maint/tokens';
is(@st ? sprintf('%04o', $st[2] & 07777) : '', '0600', 'postinst wrote an admin token file, mode 0600');
my ($token) = (NbTest::Nginx->read_file('/etc/nginx/nb_maint/tokens') // '') =~ /^admin:(\S+)$/m;
ok($token && length $token >= 32, 'admin token');

my $deps = `dpkg-query -W -f='\${Depends}' libnginx-mod-http-nb-maint`;
my ($abi) = `dpkg-query -W -f='\${Provides}' nginx 2>/dev/null` =~ /(nginx-abi-[\w.+~-]+)/;
ok($abi && index($deps, $abi) >= 0, "Depends on the installed nginx's ABI ($abi)") or diag $deps;
like(`dpkg-query -W -f='\${Depends}' libnginx-mod-stream-nb-maint`,
     qr/libnginx-mod-http-nb-maint \(= [^)]+\).*libnginx-mod-stream/, 'stream package depends on the http one and libnginx-mod-stream');

# ---- a gateway made of the installed snippets
my $M = NbTest::Mock->new;
my $conf_http = <<"EOT";
    include /etc/nginx/nb_maint/nb_maint_http.conf;
    upstream nocobase {
        include /etc/nginx/nb_maint/nb_maint_upstream.conf;
        server ${\ $M->id };
        keepalive 8;
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        include /etc/nginx/nb_maint/nb_maint_server.conf;
        location / { proxy_pass http://nocobase; }
    }
EOT
my $main = "user www-data;\ninclude /etc/nginx/modules-enabled/*.conf;\n";
my $ng = NbTest::Nginx->new(no_module => 1, workers => 1, http => $conf_http,
                            main => $main . "include /etc/nginx/nb_maint/nb_maint_stream.conf;\n");
# "load_module modules/..." is relative to the prefix: Debian's prefix
# /usr/share/nginx has modules -> /usr/lib/nginx/modules, so has ours
symlink '/usr/lib/nginx/modules', $ng->prefix . '/modules' or die "symlink: $!";
($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t: modules-enabled + the four installed snippets') or diag $out;

# the stream snippet listens on a fixed port: run without it
$ng->write_conf(main => $main);
chmod 0755, $ng->prefix;
($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t: http snippets only') or diag $out;
$ng->start;

my @cli = ('/usr/bin/nb-maint', '--url', 'http://127.0.0.1:' . $ng->port . '/_nb_maint/', '--token', $token // '');
($rc, $out) = sh(@cli, 'status');
is($rc, 0, 'installed CLI: status') or diag $out;
like($out, qr/normal/, '... normal');
ok(NbTest::wait_until(sub { ($ng->get('/api/x')->{status} // 0) == 200 }, 10), 'requests reach the node');
($rc, $out) = sh(@cli, 'upgrade', '--reason', "'package test'");
is($rc, 0, 'installed CLI: upgrade') or diag $out;
my $r = $ng->get('/api/x');
is($r->{status}, 503, 'the gateway answers 503');
like($r->{content}, qr/package test/, '... with the reason');
ok(-s '/var/lib/nb-maint/state.json', 'state in /var/lib/nb-maint/state.json');
($rc, $out) = sh(@cli, 'status', '--json');
like($out, qr/"mode"\s*:\s*"upgrade"/, 'installed CLI: status says upgrade');
($rc, $out) = sh(@cli, 'restore', '--force');
is($rc, 0, 'installed CLI: restore') or diag $out;
$ng->stop;
is_deeply([$ng->crashes], [], 'no worker crashed');

# ---- purge
($rc, $out) = apt('purge', @PKGS);
is($rc, 0, 'apt purge') or diag $out;
is(installed(), 0, 'both packages gone');
my $after = snapshot();
my @left = grep { !$before->{$_} } sort keys %$after;
is_deeply(\@left, [], 'apt purge left no file behind') or diag explain \@left;
my @gone = grep { !$after->{$_} } sort keys %$before;
is_deeply(\@gone, [], '... and removed nothing that was there before') or diag explain \@gone;

close $lock;
done_testing;
