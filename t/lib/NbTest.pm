package NbTest;
# Small test harness for nb_maint: starts throw-away nginx instances in temp
# prefixes on free loopback ports, talks HTTP to them and cleans up.
#
# Core Perl only.  Environment:
#   NGINX_BIN        nginx binary (default: nginx)
#   NB_MAINT_MODULE  absolute path of ngx_http_nb_maint_module.so
#                    (default: <repo>/build/ngx_http_nb_maint_module.so)
#   NB_KEEP=1        keep temp prefixes (their paths are printed via diag)

use strict;
use warnings;

use Test::More ();    # loaded first so that our END runs before Test::Builder's
use Exporter 'import';
use IO::Socket::INET;
use File::Temp ();
use File::Path qw(rmtree);
use File::Spec;
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use POSIX ();
use Time::HiRes qw(sleep time);
use JSON::PP ();
use HTTP::Tiny;
use Scalar::Util qw(weaken refaddr);

our @EXPORT = qw(free_port raw_request parse_response json_encode json_decode
                 std_http state_fields wait_until nginx_bin module_path
                 ADMIN_TOKEN VIEWER_TOKEN);

use constant ADMIN_TOKEN  => 'test-token-123';
use constant VIEWER_TOKEN => 'other-token-456';

my $ROOT = abs_path(File::Spec->catdir(dirname(abs_path(__FILE__)), '..', '..'));

sub nginx_bin   { $ENV{NGINX_BIN} || 'nginx' }

# the nginx under test as a number, like nginx_version in C: 1.29.8 -> 1029008
my $NGX_VERSION;
sub nginx_version {
    return $NGX_VERSION //= do {
        my $bin = nginx_bin();
        my $v = `'$bin' -v 2>&1` // '';
        $v =~ m{nginx/(\d+)\.(\d+)\.(\d+)} ? $1 * 1000000 + $2 * 1000 + $3 : 0;
    };
}
sub module_path { $ENV{NB_MAINT_MODULE} || "$ROOT/build/ngx_http_nb_maint_module.so" }
sub repo_root   { $ROOT }

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
sub json_encode { $JSON->encode($_[0]) }
sub json_decode { $JSON->decode($_[0]) }

# Make sure END blocks (which stop nginx) run on Ctrl-C / prove abort, and
# when the reader of our output goes away (SIGPIPE would kill us silently).
for my $sig (qw(INT TERM HUP PIPE)) {
    next if $SIG{$sig} && ref $SIG{$sig};
    $SIG{$sig} = sub {
        $SIG{PIPE} = 'IGNORE';    # further writes to a dead pipe just fail
        exit($sig eq 'PIPE' ? 141 : 130);
    };
}

# Become a child subreaper (Linux x86_64) so that daemonized nginx masters are
# re-parented to this test process and can be reaped instead of lingering as
# zombies.  Harmless when unavailable.
eval {
    require Config;
    syscall(157, 36, 1, 0, 0, 0)    # prctl(PR_SET_CHILD_SUBREAPER, 1)
        if $^O eq 'linux' && $Config::Config{archname} =~ /^x86_64/;
};

my %PORTS_USED;
sub free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 0)
            or die "free_port: $!";
        my $p = $s->sockport;
        close $s;
        next if $PORTS_USED{$p}++;
        return $p;
    }
    die "free_port: no port found";
}

# a time limit, scaled for make test-asan (NB_SANITIZE=1): nginx built with
# ASan and UBSan runs 2-3 times slower; $max caps the scaled limit (e.g. below
# a timeout the test tells apart)
sub slow {
    my ($limit, $max) = @_;
    return $limit unless $ENV{NB_SANITIZE};
    my $t = 2 * $limit;
    return defined $max && $t > $max ? $max : $t;
}

# poll $code every $step seconds until it returns true or $timeout passes
sub wait_until(&;$$) {
    my ($code, $timeout, $step) = @_;
    $timeout //= 10;
    $step    //= 0.02;
    my $end = time + $timeout;
    while (1) {
        my $r = $code->();
        return $r if $r;
        return undef if time > $end;
        sleep $step;
    }
}

# Send raw bytes to 127.0.0.1:$port and return everything the server sends
# back until it closes the connection (or the timeout).  Options:
#   local_addr => '127.0.0.2'   source address
#   timeout    => 10
#   chunks     => [...]         send these pieces one by one (after $bytes)
sub raw_request {
    my ($port, $bytes, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout,
                                  ($o{local_addr} ? (LocalAddr => $o{local_addr}) : ()))
        or die "raw_request: connect to $port: $!";
    binmode $s;
    local $SIG{PIPE} = 'IGNORE';
    for my $piece ($bytes, @{ $o{chunks} || [] }) {
        my $off = 0;
        while ($off < length $piece) {
            my $n = syswrite($s, $piece, length($piece) - $off, $off);
            last unless defined $n;    # server closed early (e.g. 413): read what it said
            $off += $n;
        }
    }
    my $resp = '';
    my $end = time + $timeout;
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    while (time < $end) {
        my $n = select(my $rout = $rin, undef, undef, 0.2);
        next unless $n;
        my $got = sysread($s, my $buf, 65536);
        last unless $got;    # EOF or error (ECONNRESET after we got the answer)
        $resp .= $buf;
    }
    close $s;
    return $resp;
}

# parse a raw HTTP/1.x response: {status, reason, headers => {lc name => value
# (multiple joined by ", ")}, header_list => [[name, value]...], body, raw}
sub parse_response {
    my ($raw) = @_;
    my %r = (raw => $raw, status => 0, headers => {}, header_list => [], body => '');
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return \%r unless defined $head && length $head;
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines;
    if ($sl =~ m{^HTTP/\d\.\d\s+(\d{3})\s*(.*)$}) { @r{qw(status reason)} = ($1, $2) }
    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $r{header_list} }, [$k, $v];
        my $lk = lc $k;
        $r{headers}{$lk} = exists $r{headers}{$lk} ? "$r{headers}{$lk}, $v" : $v;
    }
    $body //= '';
    if (($r{headers}{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr($body, 0, $len, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    }
    $r{body} = $body;
    return \%r;
}

# The example configuration of doc/testing.md, with hooks:
#   store        => 'file:...' (default file:%%PREFIX%%/state.json; undef: no directive)
#   listen_opts  => ' reuseport'
#   http_extra   => text in http{} before the server
#   server_extra => text inside server{} (before the locations)
#   root_extra   => text inside location / (before "return 200")
#   locations    => extra location blocks
#   servers      => extra server blocks
#   bypass       => bypass_allow CIDR in the server (default 10.0.0.0/8)
# the http{} lines every test config starts with: zone, store (option
# store => ..., undef for the default one), token file, http_extra
sub http_head {
    my %o = @_;
    my $store = exists $o{store} ? $o{store} : 'file:%%PREFIX%%/state.json';
    my $t = "nb_maint_zone nb 4m;\n";
    $t .= "nb_maint_store $store;\n" if defined $store;
    $t .= "nb_maint_admin_token_file %%PREFIX%%/tokens;\n";
    $t .= $o{http_extra} // '';
    return $t;
}

sub std_http {
    my %o = @_;
    my $root_extra = $o{root_extra} // '';
    return http_head(%o)
        . server_block(\%o, "    nb_maint_pass ~^/healthz\$;\n",
                       qq($root_extra return 200 "app\\n";));
}

# the server of std_http and cluster_http: the gate, the admin location,
# "location / { $root }", and the hooks of %$o (see cluster_http)
sub server_block {
    my ($o, $head, $root) = @_;
    my $listen       = $o->{listen_opts} // '';
    my $bypass       = $o->{bypass} // '10.0.0.0/8';
    my $server_extra = $o->{server_extra} // '';
    my $locations    = $o->{locations} // '';
    my $servers      = $o->{servers} // '';
    return <<"EOT";
server {
    listen 127.0.0.1:%%PORT%%$listen;
    nb_maint_gate on;
$head    nb_maint_bypass_allow $bypass;
$server_extra
    location / { $root }
    location /_nb_maint/ { nb_maint_admin; }
$locations
}
$servers
EOT
}

# the fields that make up "the state" (for unchanged-state checks)
sub state_fields {
    my ($st) = @_;
    return { map { ($_ => $st->{$_}) } qw(mode node restoring_from version since reason retry_after) };
}

# make test-asan (NB_SANITIZE=1): sanitizer reports of the programs run_cmd
# starts (nginx, and its forked workers) go to files <dir>/sanitizer.<pid>
sub sanitizer_env {
    my ($dir) = @_;
    for my $v (qw(ASAN_OPTIONS UBSAN_OPTIONS)) {
        $ENV{$v} = join ':', grep { length } $ENV{$v} // '',
                                              "log_path=$dir/sanitizer";
    }
}

# sanitizer reports found under a prefix: report files and error.log lines
sub sanitizer_reports {
    my ($prefix) = @_;
    my @r;
    for my $f (sort glob("$prefix/logs/sanitizer.*")) {
        open my $fh, '<', $f or next;
        local $/;
        my $t = <$fh> // '';
        push @r, "$f:\n$t" if length $t;
    }
    if (open my $fh, '<', "$prefix/error.log") {
        push @r, grep { /AddressSanitizer|LeakSanitizer|runtime error:/ } <$fh>;
    }
    return @r;
}

# run a command with stdout+stderr into a file; returns (exit code, output)
sub run_cmd {
    my ($outfile, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>', $outfile or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        sanitizer_env(dirname($outfile))
            if $ENV{NB_SANITIZE} && $outfile =~ m{/logs/[^/]+$};
        exec @cmd or do { print STDERR "exec $cmd[0]: $!\n"; POSIX::_exit(127) };
    }
    waitpid $pid, 0;
    my $st = $?;
    my $rc = ($st & 127) ? 128 + ($st & 127) : $st >> 8;
    my $out = '';
    if (open my $fh, '<', $outfile) { local $/; $out = <$fh> // '' }
    return ($rc, $out);
}

# Admin writes all at once: every child connects first, then all send their
# request when the parent closes the "go" pipe.  Each job: {nginx => an
# NbTest::Nginx (or anything with ->port), path => 'mode', body => {...},
# if_match => version or undef}.  Returns the parsed answers in job order:
# {status, body, json, secs (time to the answer), job}.
sub burst_admin {
    my (@jobs) = @_;
    pipe(my $go_r, my $go_w) or die "pipe: $!";
    my @kids;
    for my $job (@jobs) {
        pipe(my $res_r, my $res_w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $go_w;
            close $res_r;
            my $out = eval { _burst_one($job, $go_r) }
                      // json_encode({ status => 0, body => "child: $@" });
            syswrite $res_w, $out;
            close $res_w;
            POSIX::_exit(0);
        }
        close $res_w;
        push @kids, [$pid, $res_r, $job];
    }
    close $go_r;
    sleep 0.2;    # let every child connect (bounded: they only connect)
    close $go_w;
    my @res;
    for my $k (@kids) {
        my ($pid, $fh, $job) = @$k;
        local $/;
        my $txt = <$fh> // '';
        close $fh;
        waitpid $pid, 0;
        my $r = eval { json_decode($txt) } || { status => 0, body => "no result: $txt" };
        $r->{json} = eval { json_decode($r->{body}) } if ($r->{body} // '') =~ /^\s*\{/;
        $r->{job} = $job;
        push @res, $r;
    }
    return @res;
}

sub _burst_one {
    my ($job, $go_r) = @_;
    my $body = json_encode($job->{body});
    my $req = "POST /_nb_maint/$job->{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            . "Authorization: Bearer " . ADMIN_TOKEN . "\r\n"
            . "Content-Type: application/json\r\n"
            . (defined $job->{if_match} ? qq(If-Match: "$job->{if_match}"\r\n) : '')
            . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $job->{nginx}->port,
                                  Proto => 'tcp', Timeout => 10)
        or die "connect: $!";
    binmode $s;
    sysread($go_r, my $x, 1);    # EOF when the parent releases everyone
    my $t0 = time;
    syswrite($s, $req) == length($req) or die "write: $!";
    my $raw = '';
    my $end = time + 20;
    while (time < $end) {
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $raw .= $buf;
    }
    my $r = parse_response($raw);
    return json_encode({ status => $r->{status}, body => $r->{body}, secs => time - $t0 });
}

# ---------------------------------------------------------------------------
package NbTest::Nginx;

use strict;
use POSIX ();
use warnings;
use File::Path qw(rmtree);
use Time::HiRes qw(sleep time);
use Scalar::Util qw(weaken refaddr);

my %LIVE;    # refaddr => weak ref

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        workers      => 2,
        main         => '',
        http         => '',
        admin_prefix => '/_nb_maint/',
        tokens       => { ops => NbTest::ADMIN_TOKEN, viewer => NbTest::VIEWER_TOKEN },
        %o,
        owner        => $$,
        ports        => {},
    }, $class;
    my $prefix = File::Temp::tempdir('nb_maint_t_XXXXXX', TMPDIR => 1, CLEANUP => 0);
    $self->{prefix} = $prefix;
    $self->{port}   = NbTest::free_port();
    mkdir "$prefix/$_" for qw(conf logs tmp tmp/client_body tmp/proxy tmp/fastcgi tmp/uwsgi tmp/scgi);
    $self->write_tokens($self->{tokens}) if $self->{tokens};
    $self->write_conf;
    $LIVE{ refaddr $self } = $self;
    weaken $LIVE{ refaddr $self };
    return $self;
}

sub prefix { $_[0]{prefix} }
sub port   { $_[0]{port} }

sub port_of {
    my ($self, $name) = @_;
    return $self->{port} if !defined $name || $name eq '';
    return $self->{ports}{$name} //= NbTest::free_port();
}

sub write_file {
    my ($self, $rel, $content, $mode) = @_;
    my $path = $rel =~ m{^/} ? $rel : "$self->{prefix}/$rel";
    open my $fh, '>:raw', $path or die "write $path: $!";
    print $fh $content;
    close $fh or die "close $path: $!";
    chmod $mode, $path if defined $mode;
    return $path;
}

sub read_file {
    my ($self, $rel) = @_;
    my $path = $rel =~ m{^/} ? $rel : "$self->{prefix}/$rel";
    open my $fh, '<:raw', $path or return undef;
    local $/;
    return scalar <$fh>;
}

sub write_tokens {
    my ($self, $tokens) = @_;
    my $t = "# nb_maint test tokens (name:token)\n\n";
    $t .= "$_:$tokens->{$_}\n" for sort keys %$tokens;
    $self->write_file('tokens', $t, 0644);
}

sub subst {
    my ($self, $text) = @_;
    $text =~ s/%%PORT_(\w+)%%/$self->port_of($1)/ge;
    $text =~ s/%%PORT%%/$self->{port}/g;
    $text =~ s/%%PREFIX%%/$self->{prefix}/g;
    return $text;
}

# (re)write conf/nginx.conf; options as for new(): http, main, workers, no_module
sub write_conf {
    my ($self, %o) = @_;
    $self->{$_} = $o{$_} for keys %o;
    my $p    = $self->{prefix};
    my $main = $self->subst($self->{main} // '');
    my $http = $self->subst($self->{http} // '');
    my $conf = "# generated by t/lib/NbTest.pm\n";
    $conf .= "load_module " . NbTest::module_path() . ";\n" unless $self->{no_module};
    $conf .= "worker_processes $self->{workers};\n";
    # as root, workers would run as "nobody" and could not write into the
    # 0700 temp prefix; tests that want unprivileged workers set "user" in main
    $conf .= "user root root;\n" if $> == 0 && $main !~ /^\s*user\s/m;
    $conf .= "pid $p/nginx.pid;\n";
    $conf .= "error_log $p/error.log info;\n";
    $conf .= "worker_shutdown_timeout 5s;\n";
    $conf .= "$main\n";
    $conf .= "events { " . ($self->{events} // "worker_connections 1024;") . " }\n";
    $conf .= "http {\n";
    $conf .= "    access_log off;\n";
    $conf .= "    client_body_temp_path $p/tmp/client_body;\n";
    $conf .= "    proxy_temp_path $p/tmp/proxy;\n";
    $conf .= "    fastcgi_temp_path $p/tmp/fastcgi;\n";
    $conf .= "    uwsgi_temp_path $p/tmp/uwsgi;\n";
    $conf .= "    scgi_temp_path $p/tmp/scgi;\n";
    $conf .= "$http\n}\n";
    $self->write_file('conf/nginx.conf', $conf);
    return $conf;
}

sub conf_text { $_[0]->read_file('conf/nginx.conf') }

sub nginx_cmd {
    my ($self, @args) = @_;
    return (NbTest::nginx_bin(), '-p', "$self->{prefix}/", '-c', 'conf/nginx.conf', @args);
}

# returns (exit code, output) of nginx -t
sub test_config {
    my ($self) = @_;
    return NbTest::run_cmd("$self->{prefix}/logs/test.out", $self->nginx_cmd('-t'));
}

sub _alive {
    my ($pid) = @_;
    return 0 unless $pid;
    return 0 if waitpid($pid, POSIX::WNOHANG()) == $pid;    # our (subreaped) child exited
    return 0 unless kill 0, $pid;
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $st = <$fh> // '';
        return 0 if $st =~ /\)\s+[ZX]\s/;    # zombie: exited, not yet reaped
    }
    return 1;
}

sub master_pid { $_[0]{pid} }

# pids of the worker processes of the running master (also shutting down ones)
sub worker_pids {
    my ($self) = @_;
    my $m = $self->{pid} or return ();
    my @w;
    opendir my $d, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my $st = <$fh> // next;
        my ($state, $ppid) = $st =~ /\)\s+(\S)\s+(\d+)/ or next;
        next unless $ppid == $m && $state ne 'Z';
        my $cmd = '';
        if (open my $c, '<', "/proc/$pid/cmdline") { local $/; $cmd = <$c> // '' }
        next unless $cmd =~ /worker process/;
        push @w, $pid;
    }
    @w = sort { $a <=> $b } @w;
    return @w;
}

sub _read_pidfile {
    my ($self) = @_;
    my $t = $self->read_file('nginx.pid') // return undef;
    return $t =~ /^(\d+)/ ? $1 : undef;
}

sub _port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

sub start {
    my ($self) = @_;
    die "nginx already running in $self->{prefix}\n" if $self->{pid} && _alive($self->{pid});
    unlink "$self->{prefix}/nginx.pid";
    my ($rc, $out) = NbTest::run_cmd("$self->{prefix}/logs/start.out", $self->nginx_cmd);
    die "nginx failed to start (exit $rc):\n$out\n--- error.log:\n" . $self->error_log_tail(40) . "\n"
        if $rc != 0;
    my $pid = NbTest::wait_until(sub { my $p = $self->_read_pidfile; $p && _alive($p) ? $p : 0 }, 10);
    die "nginx wrote no pid file within 10 s\n$out\n--- error.log:\n" . $self->error_log_tail(40) . "\n"
        unless $pid;
    $self->{pid} = $pid;
    my $ok = NbTest::wait_until(sub { _port_open($self->{port}) }, 10)
          && NbTest::wait_until(sub { my @w = $self->worker_pids; @w >= $self->{workers} }, 10);
    die "nginx does not accept connections on $self->{port} within 10 s\n--- error.log:\n"
        . $self->error_log_tail(40) . "\n" unless $ok;
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    return unless _alive($pid);
    my @workers = do { local $self->{pid} = $pid; $self->worker_pids };
    kill 'QUIT', $pid;
    unless (NbTest::wait_until(sub { !_alive($pid) }, 10)) {
        kill 'TERM', $pid;
        unless (NbTest::wait_until(sub { !_alive($pid) }, 5)) {
            kill 'KILL', $pid;
            NbTest::wait_until(sub { !_alive($pid) }, 5);
        }
    }
    for my $w (@workers) {
        next unless _alive($w);
        next if NbTest::wait_until(sub { !_alive($w) }, 3);
        kill 'KILL', $w;
    }
    NbTest::wait_until(sub { !grep { _alive($_) } @workers }, 5);
    return 1;
}

sub restart { my $self = shift; $self->stop; $self->start }

# nginx -s reload, then wait until the old workers are gone and new ones run
sub reload {
    my ($self) = @_;
    die "reload: nginx not running\n" unless $self->{pid};
    my %old = map { ($_ => 1) } $self->worker_pids;
    my ($rc, $out) = NbTest::run_cmd("$self->{prefix}/logs/reload.out", $self->nginx_cmd('-s', 'reload'));
    die "nginx -s reload failed (exit $rc): $out\n" if $rc != 0;
    my $ok = NbTest::wait_until(sub {
        my @now = $self->worker_pids;
        return 0 if grep { $old{$_} } @now;
        return @now >= $self->{workers};
    }, 15);
    die "reload: new workers did not replace the old ones within 15 s\n--- error.log:\n"
        . $self->error_log_tail(40) . "\n" unless $ok;
    return 1;
}

sub error_log { $_[0]->read_file('error.log') // '' }

sub error_log_tail {
    my ($self, $n) = @_;
    my @l = split /\n/, $self->error_log;
    $n //= 30;
    @l = @l[-$n .. -1] if @l > $n;
    return join "\n", @l;
}

# no worker/master died on a signal so far
sub crashes {
    my ($self) = @_;
    return grep { /exited on signal|core dumped/ } split /\n/, $self->error_log;
}

# ---- HTTP ------------------------------------------------------------------

sub ua {
    $_[0]{ua} //= HTTP::Tiny->new(keep_alive => 0, timeout => 10, max_redirect => 0,
                                  agent => 'nb-maint-test/1');
}

sub url {
    my ($self, $path, $portname) = @_;
    return $path if $path =~ m{^https?://};
    $path = "/$path" unless $path =~ m{^/};
    return "http://127.0.0.1:" . $self->port_of($portname) . $path;
}

sub _decode_json_res {
    my ($res) = @_;
    my $ct = $res->{headers}{'content-type'} // '';
    my $c  = $res->{content} // '';
    if ($ct =~ m{json}i || $c =~ /^\s*[\{\[]/) {
        $res->{json} = eval { NbTest::json_decode($c) };
        if ($@) {
            $res->{json_error} = $@;
            # not valid UTF-8: decode byte-wise so that tests can still look at it
            $res->{json} = eval { JSON::PP->new->allow_nonref->decode($c) };
            $res->{json_bad_utf8} = 1 if $res->{json};
        }
    }
    return $res;
}

# HTTP::Tiny response (+ {json} when the body is JSON)
sub req {
    my ($self, $method, $path, $headers, $body, $portname) = @_;
    my %opt = (headers => { %{ $headers || {} } });
    $opt{content} = $body if defined $body;
    my $res = $self->ua->request($method, $self->url($path, $portname), \%opt);
    return _decode_json_res($res);
}

sub get { my ($self, $path, $h) = @_; $self->req('GET', $path, $h) }

# admin($method, $subpath, $body (ref => JSON, string => raw), \%headers)
# Authorization: Bearer test-token-123 unless %headers has Authorization
# (undef value = send none); Content-Type application/json for a body
# unless %headers has Content-Type (undef = send none).
sub admin {
    my ($self, $method, $sub, $body, $headers) = @_;
    $headers ||= {};
    my %h = (Authorization => 'Bearer ' . NbTest::ADMIN_TOKEN);
    my $has_ct = grep { lc $_ eq 'content-type' } keys %$headers;
    for my $k (keys %$headers) {
        delete $h{$_} for grep { lc $_ eq lc $k } keys %h;
        $h{$k} = $headers->{$k} if defined $headers->{$k};
    }
    my $content;
    if (ref $body) { $content = NbTest::json_encode($body) }
    elsif (defined $body) { $content = $body }
    $h{'Content-Type'} = 'application/json' if defined $content && !$has_ct;
    (my $path = $self->{admin_prefix} . ($sub // '')) =~ s{//+}{/}g;
    return $self->req($method, $path, \%h, $content);
}

# GET status, dies unless it is a 200 with JSON
sub status {
    my ($self) = @_;
    my $r = $self->admin(GET => 'status');
    die "GET status: $r->{status} $r->{content}\n" unless $r->{status} == 200 && ref $r->{json} eq 'HASH';
    return $r->{json};
}

# ---- cleanup ---------------------------------------------------------------

sub _finish {
    my ($self, $failed) = @_;
    return if $self->{finished} || $self->{owner} != $$;
    $self->{finished} = 1;
    if ($failed) {
        Test::More::diag("---- $self->{prefix}/error.log (tail) ----\n" . $self->error_log_tail(30));
    }
    eval { $self->stop };
    if (my @san = NbTest::sanitizer_reports($self->{prefix})) {
        Test::More::ok(0, "no sanitizer report in $self->{prefix}");
        Test::More::diag(substr(join('', @san), 0, 20000));
    }
    if ($ENV{NB_KEEP}) {
        Test::More::diag("NB_KEEP: prefix kept at $self->{prefix}");
    } else {
        rmtree($self->{prefix}) if $self->{prefix} && -d $self->{prefix};
    }
}

sub DESTROY { NbTest::finish_owned($_[0]) }

END { my $code = $?; local $?; NbTest::finish_all($code, values %LIVE) }

1;

# ===========================================================================
# Upstream routing helpers (issue 4): an nb_maint upstream in front of mock
# nodes, per-node counting, health polling.  Appended; the functions above
# are unchanged.
# ===========================================================================
package NbTest;

use constant FAST_CHECK => 'interval=200ms timeout=300ms rise=2 fall=2';
push @NbTest::EXPORT, qw(cluster_http mock_counts count_delta FAST_CHECK);

# http{} text: upstream "app" (nb_maint + nb_maint_check) over the given
# nodes, a gated server proxying / to it, the admin location.  Options:
#   nodes          => [NbTest::Mock objects or ports]            (required)
#   check          => nb_maint_check parameters (default FAST_CHECK;
#                     undef: no nb_maint_check line)
#   server_params  => parameters for every server line (e.g. 'max_fails=0')
#   upstream_extra => text inside upstream app (after the servers)
#   upstreams      => further upstream blocks (http level)
#   http_extra     => text in http{} before everything else
#   server_extra   => text inside the server (before the locations)
#   root_extra     => text inside location / (after proxy_pass)
#   locations      => more location blocks in the server
#   servers        => more server blocks
#   bypass         => nb_maint_bypass_allow of the server (default 10.0.0.0/8)
#   listen_opts    => ' reuseport' (new connections spread over the workers)
#   store          => nb_maint_store value (default the file store)
sub cluster_http {
    my %o = @_;
    my @ports = map { ref $_ ? $_->port : $_ } @{ $o{nodes} || die "cluster_http: nodes" };
    my $check = exists $o{check} ? $o{check} : FAST_CHECK;
    my $t = NbTest::http_head(%o);
    $t .= "upstream app {\n    nb_maint;\n";
    $t .= "    nb_maint_check $check;\n" if defined $check;
    my $sp = defined $o{server_params} ? " $o{server_params}" : '';
    $t .= "    server 127.0.0.1:$_$sp;\n" for @ports;
    $t .= $o{upstream_extra} // '';
    $t .= "    keepalive 8;\n}\n";
    $t .= $o{upstreams} // '';
    my $root_extra = $o{root_extra} // '';
    return $t . NbTest::server_block(\%o,
        qq(    proxy_http_version 1.1;\n    proxy_set_header Connection "";\n),
        "proxy_pass http://app; $root_extra");
}

# the whole text of a file, '' if there is none
sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar(<$fh>) // '';
}

# a child running @cmd, its output appended to $log: its pid
sub spawn_logged {
    my ($log, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    return $pid;
}

# $obj->{pid} = a child running @cmd (output appended to $log), once
# $ready->() says it is: $obj.  Dies with the log when it exits first or
# is not ready within 10 s (after $obj->stop).
sub start_child {
    my ($obj, $what, $log, $ready, @cmd) = @_;
    my $pid = spawn_logged($log, @cmd);
    $obj->{pid} = $pid;
    my $ok = wait_until(sub { !NbTest::Nginx::_alive($pid) || $ready->() }, 10);
    unless ($ok && NbTest::Nginx::_alive($pid)) {
        my $text = slurp($log);
        $obj->stop;
        die "$what did not start:\n$text\n";
    }
    return $obj;
}

# waits up to $timeout s for child $pid to exit: 1 if it did
sub reap_pid {
    my ($pid, $timeout) = @_;
    my $end = time + $timeout;
    while (time < $end) {
        my $w = waitpid($pid, POSIX::WNOHANG());
        return 1 if $w == $pid || $w == -1;
        sleep 0.01;
    }
    return 0;
}

# SIGTERM to child $pid, SIGKILL if it is still there after 5 s
sub stop_pid {
    my ($pid) = @_;
    kill 'TERM', $pid;
    unless (reap_pid($pid, 5)) { kill 'KILL', $pid; reap_pid($pid, 5) }
}

# DESTROY of an nginx or haproxy this process started: stopped, its prefix
# kept (NB_KEEP=1) or removed, diagnostics when the test is failing
sub finish_owned {
    my ($self) = @_;
    return if $self->{finished} || ($self->{owner} // 0) != $$;
    local ($?, $@, $!);
    my $failed = ${^GLOBAL_PHASE} eq 'DESTRUCT' ? 0 : !Test::More->builder->is_passing;
    $self->_finish($failed);
}

# END: the same for every one still there ($code: the exit code so far)
sub finish_all {
    my ($code, @objs) = @_;
    my $failed = $code != 0 || !Test::More->builder->is_passing;
    for my $o (@objs) { $o->_finish($failed) if $o }
}

# Three mock nodes behind a started gateway (cluster_http with %o), all
# three up: ($ng, @mocks).  bail => 1: stop the whole run if they are not.
sub cluster3 {
    my (%o) = @_;
    my $bail = delete $o{bail};
    my @M = map { NbTest::Mock->new } 1 .. 3;
    my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M, %o));
    $ng->start;
    Test::More::ok($ng->wait_all_health('up', 5, map { $_->id } @M),
                   'all three nodes are up')
        or ($bail && Test::More::BAIL_OUT('gateway not ready'));
    return ($ng, @M);
}

# a second server (port name "b") whose clients are all bypass requests
sub bypass_server {
    my ($location_body) = @_;
    return <<"EOT";
server {
    listen 127.0.0.1:%%PORT_b%%;
    nb_maint_gate on;
    nb_maint_bypass_allow 127.0.0.1/32;
    location / { $location_body }
}
EOT
}

# A gateway (not started) whose workers run as nobody, with its file store
# in PREFIX/st owned by nobody: ($ng, that directory).  Needs root.
sub nobody_store_gateway {
    my $ng = NbTest::Nginx->new(main => 'user nobody nogroup;',
                                http => std_http(store => 'file:%%PREFIX%%/st/state.json'));
    chmod 0755, $ng->prefix;
    my $dir = $ng->prefix . '/st';
    mkdir $dir;
    chown 65534, 65534, $dir;
    return ($ng, $dir);
}

# requests counted by the mocks: { id => requests }
sub mock_counts {
    my (@mocks) = @_;
    return { map { ($_->id => $_->requests) } @mocks };
}

# difference of two mock_counts results
sub count_delta {
    my ($before, $after) = @_;
    return { map { ($_ => ($after->{$_} // 0) - ($before->{$_} // 0)) } keys %$after };
}

# ---------------------------------------------------------------------------
package NbTest::Nginx;

use Time::HiRes qw(sleep time);

# GET nodes/{id}: the HTTP::Tiny response (+json)
sub node_res { my ($self, $id) = @_; $self->admin(GET => "nodes/$id") }

# GET nodes/{id} as a hash, dies unless 200
sub node {
    my ($self, $id) = @_;
    my $r = $self->node_res($id);
    die "GET nodes/$id: $r->{status} $r->{content}\n"
        unless $r->{status} == 200 && ref $r->{json} eq 'HASH';
    return $r->{json};
}

# the node objects of upstream $name (default "app") in GET status: {id => node}
sub status_nodes {
    my ($self, $name) = @_;
    $name //= 'app';
    my $st = $self->status;
    for my $u (@{ $st->{upstreams} || [] }) {
        next unless ($u->{name} // '') eq $name;
        return { map { ($_->{id} => $_) } @{ $u->{nodes} || [] } };
    }
    return {};
}

# poll GET nodes/{id} until health is $want; returns the seconds it took
# (at least 0.001) or undef on timeout
sub wait_health {
    my ($self, $id, $want, $timeout) = @_;
    my $t0 = time;
    my $ok = NbTest::wait_until(sub {
        my $r = $self->node_res($id);
        $r->{status} == 200 && ref $r->{json} eq 'HASH' && ($r->{json}{health} // '') eq $want;
    }, $timeout // 5, 0.02);
    return $ok ? (time - $t0 || 0.001) : undef;
}

# wait until every id has health $want; true on success
sub wait_all_health {
    my ($self, $want, $timeout, @ids) = @_;
    return NbTest::wait_until(sub {
        my $n = $self->status_nodes;
        !grep { ($n->{$_}{health} // '') ne $want } @ids;
    }, $timeout // 5, 0.02);
}

# poll GET status until $code->($status) is true; returns the status or undef
sub wait_status {
    my ($self, $code, $timeout) = @_;
    my $last;
    my $ok = NbTest::wait_until(sub { $last = $self->status; $code->($last) }, $timeout // 5, 0.02);
    return $ok ? $last : undef;
}

sub keepalive_ua {
    $_[0]{ka_ua} //= HTTP::Tiny->new(keep_alive => 1, timeout => 10, max_redirect => 0,
                                     agent => 'nb-maint-test/1');
}

# $n requests of $method $path (keep-alive); returns
#   { n, status => {code => count}, node => {X-Node => count} (responses
#     without X-Node count as "-"), nb => {X-NB-Maint => count}, res => [...] }
# options: headers => {...}, method => 'GET', body => '...', port => name, keep => 1 (keep res)
sub hit {
    my ($self, $n, $path, %o) = @_;
    my %out = (n => $n, status => {}, node => {}, nb => {}, res => []);
    my $ua = $self->keepalive_ua;
    my $url = $self->url($path, $o{port});
    for (1 .. $n) {
        my %opt = (headers => { %{ $o{headers} || {} } });
        $opt{content} = $o{body} if defined $o{body};
        my $r = $ua->request($o{method} // 'GET', $url, \%opt);
        $out{status}{ $r->{status} }++;
        $out{node}{ $r->{headers}{'x-node'} // '-' }++;
        $out{nb}{ $r->{headers}{'x-nb-maint'} // '-' }++;
        push @{ $out{res} }, _decode_json_res($r) if $o{keep} || $_ == 1;
    }
    return \%out;
}

# error.log lines matching $re
sub log_grep {
    my ($self, $re) = @_;
    return grep { $_ =~ $re } split /\n/, $self->error_log;
}

# GET events?since=N → list of events
sub events {
    my ($self, $since) = @_;
    my $r = $self->admin(GET => 'events?since=' . ($since // 0));
    return () unless $r->{status} == 200 && ref $r->{json} eq 'HASH';
    return @{ $r->{json}{events} || [] };
}

# ---------------------------------------------------------------------------
# NbTest::Mock: scripts/mock-node on a free port, stopped at the end.
#   my $m = NbTest::Mock->new(starting => 30, delay_ms => 0, args => [...]);
#   $m->port, $m->id ("127.0.0.1:PORT" = X-Node = nb_maint node id)
#   $m->stats, $m->requests, $m->set_state('fail'), $m->delay(1500),
#   $m->reset, $m->stop, $m->start (again, same port)
package NbTest::Mock;

use strict;
use warnings;
use POSIX ();
use File::Path qw(rmtree);
use Time::HiRes qw(sleep time);
use Scalar::Util qw(weaken refaddr);

my %MOCKS;    # refaddr => weak ref

sub new {
    my ($class, %o) = @_;
    my $self = bless { starting => 0, delay_ms => 0, args => [], %o, owner => $$ }, $class;
    $self->{port} //= NbTest::free_port();
    $self->{dir} = File::Temp::tempdir('nb_maint_mock_XXXXXX', TMPDIR => 1, CLEANUP => 0);
    $MOCKS{ refaddr $self } = $self;
    weaken $MOCKS{ refaddr $self };
    $self->start;
    return $self;
}

sub port { $_[0]{port} }
sub host { $_[0]{host} // '127.0.0.1' }
sub id   { $_[0]->host . ":$_[0]{port}" }
sub pid  { $_[0]{pid} }
sub url  { "http://" . $_[0]->host . ":$_[0]{port}$_[1]" }

sub running { my $p = $_[0]{pid}; $p && NbTest::Nginx::_alive($p) }

# start (again) on the same port; options override new()'s: starting, delay_ms, args
sub start {
    my ($self, %o) = @_;
    die "mock already running on $self->{port}\n" if $self->running;
    $self->{$_} = $o{$_} for keys %o;
    my $pidfile = "$self->{dir}/mock.pid";
    unlink $pidfile;
    my @cmd = ($^X, NbTest::repo_root() . '/scripts/mock-node', '--port', $self->{port},
               '--host', $self->host,
               '--pidfile', $pidfile, '--quiet',
               ($self->{starting} ? ('--starting', $self->{starting}) : ()),
               ($self->{delay_ms} ? ('--delay-ms', $self->{delay_ms}) : ()),
               @{ $self->{args} });
    return NbTest::start_child($self, "mock-node on port $self->{port}",
                               "$self->{dir}/mock.log", sub { -s $pidfile }, @cmd);
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    return 1 if waitpid($pid, POSIX::WNOHANG()) == $pid;
    NbTest::stop_pid($pid);
    return 1;
}

sub _ua { $_[0]{ua} //= HTTP::Tiny->new(keep_alive => 0, timeout => 5) }

sub ctl {
    my ($self, $method, $path) = @_;
    my $r = $self->_ua->request($method, $self->url($path));
    die "mock $self->{port}: $method $path: $r->{status} $r->{content}\n" unless $r->{status} == 200;
    return NbTest::json_decode($r->{content});
}

sub stats    { $_[0]->ctl(GET => '/__mock/stats') }
sub requests { $_[0]->stats->{requests} }
sub reset    { $_[0]->ctl(POST => '/__mock/reset') }
sub delay    { my ($self, $ms) = @_; $self->ctl(POST => "/__mock/delay?ms=$ms") }

# health: running|starting|commanding|fail|hang; returns the stats after
sub set_state {
    my ($self, $h, %q) = @_;
    my $q = join '', map { "&$_=$q{$_}" } sort keys %q;
    return $self->ctl(POST => "/__mock/state?health=$h$q");
}

sub _finish {
    my ($self) = @_;
    return if $self->{finished} || $self->{owner} != $$;
    $self->{finished} = 1;
    eval { $self->stop };
    return unless $self->{dir} && -d $self->{dir};
    if ($ENV{NB_KEEP}) { Test::More::diag("NB_KEEP: mock-node $self->{port} log kept in $self->{dir}") }
    else               { rmtree($self->{dir}) }
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->_finish;
}

END {
    local $?;
    for my $m (values %MOCKS) { $m->_finish if $m }
}

1;

# ===========================================================================
# Redis store helpers (issue 5): a throw-away redis-server, a TCP black hole,
# several gateways sharing one Redis.  Appended; the code above is unchanged.
#
#   my $redis = NbTest::Redis->new(password => 'secret', args => [...]);
#   $redis->port, $redis->url(prefix => 'p', db => 0, password => 'x')
#   $redis->cli('GET', 'p:version')   (list context: lines)
#   $redis->cli_in($stdin_text, '--pipe')
#   $redis->stop, $redis->start (same port, empty), $redis->kill (SIGKILL)
#   my @gw = NbTest::redis_gateways(redis => $redis, n => 2, prefix => ...);
#   $gw->wait_store_ok(1, 10)
# ===========================================================================
package NbTest;

push @NbTest::EXPORT, qw(unique_prefix redis_gateways);

my $PREFIX_SEQ = 0;
# a key prefix no other test (or other run) uses
sub unique_prefix {
    my ($tag) = @_;
    return sprintf 'nbt_%s_%d_%d_%d', ($tag // 'p'), $$, ++$PREFIX_SEQ, int(rand 1e6);
}

# start $o{n} (default 2) gateways on one Redis, each its own NbTest::Nginx
# with std_http(store => redis://..., %{ $o{std} }); returns them started
# (unless no_start).  Options: redis (required), n, prefix (default: unique),
# db, password, query (extra "&k=v" text), std => {...}, workers, start => 0
sub redis_gateways {
    my %o = @_;
    my $redis = $o{redis} or die "redis_gateways: redis";
    my $prefix = $o{prefix} // unique_prefix('gw');
    my @gw;
    for (1 .. ($o{n} // 2)) {
        my $store = $redis->url(prefix => $prefix, db => $o{db}, password => $o{password},
                                query => $o{query});
        my $ng = NbTest::Nginx->new(
            http => std_http(store => $store, %{ $o{std} || {} }),
            (defined $o{workers} ? (workers => $o{workers}) : ()),
        );
        $ng->{redis_prefix} = $prefix;
        push @gw, $ng;
    }
    if ($o{start} // 1) { $_->start for @gw }
    return wantarray ? @gw : $gw[0];
}

# ---------------------------------------------------------------------------
package NbTest::Nginx;

use Time::HiRes qw(sleep time);

sub redis_prefix { $_[0]{redis_prefix} }

# poll GET status until store.ok is $want (true/false); the status or undef
sub wait_store_ok {
    my ($self, $want, $timeout) = @_;
    $want = $want ? 1 : 0;
    return $self->wait_status(sub {
        my $s = $_[0]{store} || {};
        ($s->{ok} ? 1 : 0) == $want;
    }, $timeout // 10);
}

# ---------------------------------------------------------------------------
package NbTest::Redis;

use strict;
use warnings;
use POSIX ();
use IO::Socket::INET;
use File::Path qw(rmtree);
use Time::HiRes qw(sleep time);
use Scalar::Util qw(weaken refaddr);

my %REDIS;    # refaddr => weak ref

sub new {
    my ($class, %o) = @_;
    my $self = bless { args => [], %o, owner => $$ }, $class;
    $self->{port} //= NbTest::free_port();
    $self->{dir} = File::Temp::tempdir('nb_maint_redis_XXXXXX', TMPDIR => 1, CLEANUP => 0);
    $REDIS{ refaddr $self } = $self;
    weaken $REDIS{ refaddr $self };
    $self->start unless $o{no_start};
    return $self;
}

sub port     { $_[0]{port} }
sub dir      { $_[0]{dir} }
sub pid      { $_[0]{pid} }
sub password { $_[0]{password} }
sub running  { my $p = $_[0]{pid}; $p && NbTest::Nginx::_alive($p) }

# redis://[:password@]127.0.0.1:PORT/DB[?prefix=...]
sub url {
    my ($self, %o) = @_;
    my $auth = defined $o{password} ? ":$o{password}@" : '';
    my $u = "redis://${auth}127.0.0.1:$self->{port}/" . ($o{db} // 0);
    my @q;
    push @q, "prefix=$o{prefix}" if defined $o{prefix};
    push @q, $o{query} if defined $o{query} && length $o{query};
    $u .= '?' . join('&', @q) if @q;
    return $u;
}

# the first line redis answers to PING (+PONG, -NOAUTH ..., ...) or undef
sub _ping_raw {
    my ($self) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => 1) or return undef;
    local $SIG{PIPE} = 'IGNORE';
    syswrite $s, "PING\r\n";
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    my $line = '';
    my $end = time + 1;
    while (time < $end && $line !~ /\r\n/) {
        select(my $rout = $rin, undef, undef, 0.1) or next;
        sysread($s, my $buf, 512) or last;
        $line .= $buf;
    }
    close $s;
    return $line =~ /^([+-][^\r\n]*)/ ? $1 : undef;
}

# start (again) on the same port: an empty Redis; options override new()'s
sub start {
    my ($self, %o) = @_;
    die "redis already running on $self->{port}\n" if $self->running;
    $self->{$_} = $o{$_} for keys %o;
    my @cmd = ('redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
               '--save', '', '--appendonly', 'no', '--dir', $self->{dir},
               '--daemonize', 'no', '--loglevel', 'notice',
               (defined $self->{password} ? ('--requirepass', $self->{password}) : ()),
               @{ $self->{args} });
    return NbTest::start_child($self, "redis-server on port $self->{port}",
                               "$self->{dir}/redis.log",
                               sub { defined $self->_ping_raw }, @cmd);
}

sub log { NbTest::slurp("$_[0]{dir}/redis.log") }

# SIGTERM (clean shutdown), SIGKILL after 5 s; waits until the port is closed
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    NbTest::stop_pid($pid);
    NbTest::wait_until(sub { !NbTest::Nginx::_port_open($self->{port}) }, 5);
    return 1;
}

# SIGKILL at once (a crash: no goodbye to the clients beyond the kernel's)
sub kill {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    CORE::kill 'KILL', $pid;
    NbTest::reap_pid($pid, 5);
    NbTest::wait_until(sub { !NbTest::Nginx::_port_open($self->{port}) }, 5);
    return 1;
}

# run redis-cli against this server; returns its stdout (scalar, chomped) or
# lines (list).  cli_in($stdin, @args) feeds $stdin to it (e.g. --pipe).
# Options by a leading hash ref: { db => 3, password => 'x', noauth => 1 }
sub cli    { my $self = shift; $self->_cli(undef, @_) }
sub cli_in { my ($self, $in, @a) = @_; $self->_cli($in, @a) }

sub _cli {
    my ($self, $in, @args) = @_;
    my %o = ref $args[0] eq 'HASH' ? %{ shift @args } : ();
    my $pw = exists $o{password} ? $o{password} : $self->{password};
    $pw = undef if $o{noauth};
    my @cmd = ('redis-cli', '-h', '127.0.0.1', '-p', $self->{port},
               (defined $o{db} ? ('-n', $o{db}) : ()),
               (defined $pw ? ('-a', $pw, '--no-auth-warning') : ()), @args);
    my $infile;
    if (defined $in) {
        $infile = "$self->{dir}/cli.in.$$." . int(rand 1e9);
        open my $fh, '>:raw', $infile or die "write $infile: $!";
        print $fh $in;
        close $fh;
    }
    my $pid = open(my $out, '-|') // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', ($infile // '/dev/null');
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    local $/;
    my $text = <$out> // '';
    close $out;
    unlink $infile if $infile;
    $self->{last_cli_rc} = $? >> 8;
    if (wantarray) { return split /\n/, $text }
    $text =~ s/\n\z//;
    return $text;
}

sub _finish {
    my ($self) = @_;
    return if $self->{finished} || $self->{owner} != $$;
    $self->{finished} = 1;
    eval { $self->kill };
    if ($ENV{NB_KEEP}) { Test::More::diag("NB_KEEP: redis dir kept at $self->{dir}") }
    else { rmtree($self->{dir}) if $self->{dir} && -d $self->{dir} }
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->_finish;
}

END {
    local $?;
    for my $r (values %REDIS) { $r->_finish if $r }
}

# ---------------------------------------------------------------------------
# NbTest::BlackHole: a TCP listener child that accepts connections and reads
# forever, never answering (a hung "Redis").  ->port, ->stop
package NbTest::BlackHole;

use strict;
use warnings;
use POSIX ();
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Scalar::Util qw(weaken refaddr);

my %HOLES;

sub new {
    my ($class, %o) = @_;
    my $self = bless { %o, owner => $$ }, $class;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $o{port} // 0,
                                  Proto => 'tcp', Listen => 128, ReuseAddr => 1)
        or die "BlackHole: listen: $!";
    $self->{port} = $l->sockport;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
        my @c;
        my $rin = '';
        vec($rin, fileno($l), 1) = 1;
        while (1) {
            my $r = $rin;
            vec($r, fileno($_), 1) = 1 for @c;
            select(my $rout = $r, undef, undef, 1) or next;
            if (vec($rout, fileno($l), 1)) {
                my $c = $l->accept;
                push @c, $c if $c;
            }
            for my $c (@c) {
                next unless vec($rout, fileno($c), 1);
                my $n = sysread($c, my $buf, 65536);
                $self->{closed}{fileno $c} = 1 unless $n;
            }
            @c = grep { !$self->{closed}{fileno $_} } @c;
            %{ $self->{closed} } = ();
        }
        POSIX::_exit(0);
    }
    close $l;
    $self->{pid} = $pid;
    $HOLES{ refaddr $self } = $self;
    weaken $HOLES{ refaddr $self };
    return $self;
}

sub port { $_[0]{port} }

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'KILL', $pid;
    waitpid $pid, 0;
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->stop if ($self->{owner} // 0) == $$;
}

END {
    local $?;
    for my $h (values %HOLES) { $h->stop if $h && $h->{owner} == $$ }
}

1;

# ===========================================================================
# HAProxy helpers (SPEC section 9): the nb_maint agent in a stream{} block of
# a gateway, a throw-away haproxy.  Appended; the code above is unchanged.
#
#   my $ng = NbTest::Nginx->new(http => cluster_http(...),
#                               NbTest::agent_opts(upstream => 'app'));
#   $ng->port_of('agent')                       the agent's port
#   NbTest::agent_ask($ng->port_of('agent'), $id)   -> "up ready" (no "\n")
#   my $hp = NbTest::HAProxy->new(cfg => $text);     %%PORT%%, %%PORT_x%%, %%DIR%%
#   $hp->port, $hp->get('/x'), $hp->hit(30, '/x'), $hp->servers('be'),
#   $hp->wait_servers('be', sub { ... }, 5), $hp->stop, $hp->check
# ===========================================================================
package NbTest;

push @NbTest::EXPORT, qw(agent_opts agent_ask stream_module_path stream_core_path);

# Debian's libnginx-mod-stream (NB_STREAM_CORE overrides)
sub stream_core_path {
    return $ENV{NB_STREAM_CORE} if $ENV{NB_STREAM_CORE};
    for my $p ('/usr/lib/nginx/modules/ngx_stream_module.so',
               '/usr/share/nginx/modules/ngx_stream_module.so') {
        return $p if -f $p;
    }
    return '/usr/lib/nginx/modules/ngx_stream_module.so';
}

# next to NB_MAINT_MODULE: ngx_stream_nb_maint_module.so
sub stream_module_path {
    return $ENV{NB_MAINT_STREAM_MODULE} if $ENV{NB_MAINT_STREAM_MODULE};
    return File::Spec->catfile(dirname(module_path()), 'ngx_stream_nb_maint_module.so');
}

# options for NbTest::Nginx->new / write_conf: the three load_module lines in
# the contract's order (stream core, http nb_maint, stream nb_maint) and a
# stream{} block with nb_maint_agent servers.  Options:
#   upstream    => 'app'      agent for this upstream on port name "agent"
#   agents      => { portname => upstream, ... }   (instead of / besides upstream)
#   stream      => extra text inside stream{}
#   main        => extra main-level text
sub agent_opts {
    my %o = @_;
    my %agents = %{ $o{agents} || {} };
    $agents{agent} = $o{upstream} if defined $o{upstream};
    %agents = (agent => 'app') unless %agents;
    my $t = "load_module " . stream_core_path() . ";\n"
          . "load_module " . module_path() . ";\n"
          . "load_module " . stream_module_path() . ";\n";
    $t .= $o{main} // '';
    $t .= "\nstream {\n";
    for my $pn (sort keys %agents) {
        $t .= "    server { listen 127.0.0.1:%%PORT_$pn%%; nb_maint_agent $agents{$pn}; }\n";
    }
    $t .= $o{stream} // '';
    $t .= "}\n";
    return (no_module => 1, main => $t);
}

# one agent-check exchange: connect, send "$id\n" (or $o{raw} as is), read
# until the agent closes; the answer without the trailing newline (undef if
# the agent sent nothing).  Options: raw => bytes, timeout => 5
sub agent_ask {
    my ($port, $id, %o) = @_;
    my $bytes = exists $o{raw} ? $o{raw} : "$id\n";
    my $r = raw_request($port, $bytes, timeout => $o{timeout} // 5);
    return undef if $r eq '';
    $r =~ s/\n\z//;
    return $r;
}

# ---------------------------------------------------------------------------
package NbTest::HAProxy;

use strict;
use warnings;
use POSIX ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use File::Path qw(rmtree);
use Time::HiRes qw(sleep time);
use Scalar::Util qw(weaken refaddr);

my %HAPROXIES;    # refaddr => weak ref

sub bin { $ENV{HAPROXY_BIN} || 'haproxy' }

# new(cfg => TEXT, ports => {name => port}, no_start => 1, files => {rel => content},
#     master_worker => 1)
# %%PORT%% (the frontend port), %%PORT_name%%, %%DIR%% (the temp dir) and
# %%STATS%% (a "stats socket" line for the global section) are substituted.
sub new {
    my ($class, %o) = @_;
    my $self = bless { ports => {}, %o, owner => $$ }, $class;
    $self->{dir}  = File::Temp::tempdir('nb_maint_haproxy_XXXXXX', TMPDIR => 1, CLEANUP => 0);
    $self->{port} //= NbTest::free_port();
    $HAPROXIES{ refaddr $self } = $self;
    weaken $HAPROXIES{ refaddr $self };
    for my $rel (sort keys %{ $o{files} || {} }) { $self->write_file($rel, $o{files}{$rel}) }
    $self->write_cfg($o{cfg}) if defined $o{cfg};
    $self->start if defined $o{cfg} && !$o{no_start};
    return $self;
}

# http_cfg(timeout => '10s', defaults => LINES, backend => LINES): the
# HTTP front end the HAProxy tests share (fe on %%PORT%% -> be, round robin,
# NocoBase's health check); the caller adds its defaults and backend lines.
sub http_cfg {
    my ($class, %o) = @_;
    my $t = $o{timeout} // '10s';
    return "global\n    %%STATS%%\ndefaults\n    mode http\n"
         . ($o{defaults} // '')
         . "    timeout connect 2s\n    timeout client $t\n"
         . "    timeout server $t\n    timeout check 1s\n"
         . "frontend fe\n    bind 127.0.0.1:%%PORT%%\n    default_backend be\n"
         . "backend be\n    balance roundrobin\n"
         . "    option httpchk GET /api/__health_check\n"
         . ($o{backend} // '');
}

sub dir  { $_[0]{dir} }
sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub cfg_path { "$_[0]{dir}/haproxy.cfg" }
sub stats_path { "$_[0]{dir}/admin.sock" }

sub port_of {
    my ($self, $name) = @_;
    return $self->{port} if !defined $name || $name eq '';
    return $self->{ports}{$name} //= NbTest::free_port();
}

sub subst {
    my ($self, $text) = @_;
    my $stats = "stats socket " . $self->stats_path . " mode 600 level admin";
    $text =~ s/%%STATS%%/$stats/g;
    $text =~ s/%%PORT_(\w+)%%/$self->port_of($1)/ge;
    $text =~ s/%%PORT%%/$self->{port}/g;
    $text =~ s/%%DIR%%/$self->{dir}/g;
    return $text;
}

sub write_file {
    my ($self, $rel, $content) = @_;
    my $path = $rel =~ m{^/} ? $rel : "$self->{dir}/$rel";
    open my $fh, '>:raw', $path or die "write $path: $!";
    print $fh $content;
    close $fh or die "close $path: $!";
    return $path;
}

sub write_cfg {
    my ($self, $text) = @_;
    $self->{cfg} = $text;
    return $self->write_file('haproxy.cfg', $self->subst($text));
}

sub log { NbTest::slurp("$_[0]{dir}/haproxy.log") }

# haproxy -c -f cfg [-f more...]: (exit code, output)
sub check {
    my ($self, @more) = @_;
    return NbTest::run_cmd("$self->{dir}/check.out", bin(), '-c', '-f', $self->cfg_path,
                           map { ('-f', $_) } @more);
}

sub running { my $p = $_[0]{pid}; $p && NbTest::Nginx::_alive($p) }

# haproxy -db (foreground) as our child; waits until the frontend port accepts
sub start {
    my ($self) = @_;
    die "haproxy already running in $self->{dir}\n" if $self->running;
    unlink $self->stats_path;
    # master_worker => 1: haproxy -W, reloaded by SIGUSR2 to the master
    return NbTest::start_child($self, "haproxy (port $self->{port})",
                               "$self->{dir}/haproxy.log",
                               sub { NbTest::Nginx::_port_open($self->{port}) },
                               bin(), ($self->{master_worker} ? '-W' : ()),
                               '-db', '-f', $self->cfg_path);
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    NbTest::stop_pid($pid);
    return 1;
}

# one command on the stats socket ("%%STATS%%" in the global section); the answer
sub stats_cmd {
    my ($self, $cmd) = @_;
    my $s = IO::Socket::UNIX->new(Peer => $self->stats_path, Type => SOCK_STREAM, Timeout => 2)
        or return undef;
    local $SIG{PIPE} = 'IGNORE';
    syswrite $s, "$cmd\n";
    my $out = '';
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    my $end = time + 3;
    while (time < $end) {
        select(my $rout = $rin, undef, undef, 0.2) or next;
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $out .= $buf;
    }
    close $s;
    return $out;
}

# "show stat" of backend $be: { server name => { status, weight, agent_status, ... } }
sub servers {
    my ($self, $be) = @_;
    my $csv = $self->stats_cmd('show stat') // return {};
    my @lines = split /\n/, $csv;
    my $head = shift @lines // return {};
    $head =~ s/^#\s*//;
    my @cols = split /,/, $head, -1;
    my %out;
    for my $l (@lines) {
        my @v = split /,/, $l, -1;
        my %r;
        @r{@cols} = @v;
        next unless defined $r{pxname} && $r{pxname} eq $be;
        next if $r{svname} eq 'FRONTEND' || $r{svname} eq 'BACKEND';
        $out{ $r{svname} } = \%r;
    }
    return \%out;
}

# poll servers($be) until $code->($servers) is true; the servers or undef
sub wait_servers {
    my ($self, $be, $code, $timeout) = @_;
    my $last;
    my $ok = NbTest::wait_until(sub { $last = $self->servers($be); $code->($last) }, $timeout // 5, 0.02);
    $self->{last_servers} = $last;
    return $ok ? $last : undef;
}

sub last_servers { $_[0]{last_servers} }

sub url {
    my ($self, $path) = @_;
    $path = "/$path" unless $path =~ m{^/};
    return "http://127.0.0.1:$self->{port}$path";
}

sub get {
    my ($self, $path, $h) = @_;
    $self->{ua} //= HTTP::Tiny->new(keep_alive => 0, timeout => 10, max_redirect => 0);
    return $self->{ua}->request('GET', $self->url($path), { headers => { %{ $h || {} } } });
}

# $n GETs through haproxy (a new connection each, as NbTest::Nginx::hit
# counts): { n, status => {code => count}, node => {X-Node => count}, res => [first] }
sub hit {
    my ($self, $n, $path, %o) = @_;
    my %out = (n => $n, status => {}, node => {}, res => []);
    for (1 .. $n) {
        my $r = $self->get($path, $o{headers});
        $out{status}{ $r->{status} }++;
        $out{node}{ $r->{headers}{'x-node'} // '-' }++;
        push @{ $out{res} }, $r if $o{keep} || $_ == 1;
    }
    return \%out;
}

sub _finish {
    my ($self, $failed) = @_;
    return if $self->{finished} || ($self->{owner} // 0) != $$;
    $self->{finished} = 1;
    Test::More::diag("---- haproxy log ($self->{dir}) ----\n" . $self->log) if $failed;
    eval { $self->stop };
    if ($ENV{NB_KEEP}) { Test::More::diag("NB_KEEP: haproxy dir kept at $self->{dir}") }
    else { rmtree($self->{dir}) if $self->{dir} && -d $self->{dir} }
}

sub DESTROY { NbTest::finish_owned($_[0]) }

END { my $code = $?; local $?; NbTest::finish_all($code, values %HAPROXIES) }

1;
