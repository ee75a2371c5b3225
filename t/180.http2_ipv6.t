# HTTP/2 and IPv6 (issue 11): the 503 page, the JSON envelope, the bypass
# cookie and the admin API over h2c (prior knowledge) and h2 over TLS (a
# self-signed certificate made here), and on IPv6 listeners;
# nb_maint_bypass_allow with IPv6 CIDRs, "all" meaning both families.
# HTTP/2 is "http2 on;" from nginx 1.25.1, "listen ... http2" before.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use IO::Socket::IP;

my $have_v6 = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1);
plan skip_all => 'no IPv6 on loopback (::1)' unless $have_v6;
close $have_v6;
plan skip_all => 'curl without HTTP/2' unless `curl -V 2>&1` =~ /\bHTTP2\b/;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;
my $T = 'Authorization: Bearer ' . NbTest::ADMIN_TOKEN;

my $new_h2 = NbTest::nginx_version() >= 1025001;
my $h2l    = $new_h2 ? '' : ' http2';
my $h2d    = $new_h2 ? 'http2 on;' : '';

my $body = <<"EOT";
    nb_maint_gate on;
    nb_maint_bypass_allow 10.0.0.0/8;
    location / { proxy_pass http://app; }
    location /_nb_maint/ { nb_maint_admin; }
EOT
my $tls = "ssl_certificate %%PREFIX%%/cert.pem;\n    ssl_certificate_key %%PREFIX%%/key.pem;";

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B], servers => <<"EOT"));
server {
    listen 127.0.0.1:%%PORT_h2c%%$h2l;
    $h2d
$body
}
server {
    listen 127.0.0.1:%%PORT_tls%% ssl$h2l;
    $h2d
    $tls
$body
}
server {
    listen [::1]:%%PORT_v6%%;
    listen [::1]:%%PORT_v6tls%% ssl$h2l;
    $h2d
    $tls
$body
    location /v6host/ { nb_maint_bypass_allow ::1; proxy_pass http://app; }
    location /v6net/  { nb_maint_bypass_allow fd00::/8; nb_maint_bypass_allow ::/96;
                        nb_maint_bypass_allow ::1/128; proxy_pass http://app; }
    location /v4only/ { nb_maint_bypass_allow 127.0.0.0/8; proxy_pass http://app; }
    location /all/    { nb_maint_bypass_allow all; proxy_pass http://app; }
}
EOT

my $p = $ng->prefix;
my $ssl = system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
                 . "-keyout $p/key.pem -out $p/cert.pem >/dev/null 2>&1") == 0;
ok($ssl, 'self-signed certificate') or BAIL_OUT('openssl req failed');

my ($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t: h2c, h2 over TLS, IPv6 listeners, IPv6 CIDRs') or diag $out;
unlike($out, qr/deprecated/, 'no deprecation warning for the http2 syntax used');
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes up');

# curl: (status, http_version, {headers}, body)
my $n = 0;
sub curl {
    my ($url, @args) = @_;
    $n++;
    my ($hf, $bf) = ("$p/c$n.h", "$p/c$n.b");
    open my $ph, '-|', 'curl', '-sS', '-k', '--max-time', '10', '-o', $bf, '-D', $hf,
        '-w', '%{http_version} %{http_code}', @args, $url or die "curl: $!";
    my $w = do { local $/; <$ph> } // '';
    close $ph;
    my ($ver, $code) = split ' ', $w;
    my %h;
    for (split /\r?\n/, $ng->read_file($hf) // '') {
        $h{lc $1} = $2 if /^([^:\s]+):\s*(.*?)\s*$/;
    }
    return { status => $code // 0, version => $ver // '', headers => \%h,
             body => $ng->read_file($bf) // '' };
}

my %via = (
    h2c     => [ 'http://127.0.0.1:' . $ng->port_of('h2c'), '--http2-prior-knowledge' ],
    h2tls   => [ 'https://127.0.0.1:' . $ng->port_of('tls'), '--http2' ],
    v6      => [ 'http://[::1]:' . $ng->port_of('v6'), '--http1.1' ],
    v6h2tls => [ 'https://[::1]:' . $ng->port_of('v6tls'), '--http2' ],
);
my @vias = qw(h2c h2tls v6 v6h2tls);
my %want_ver = (h2c => 2, h2tls => 2, v6 => '1.1', v6h2tls => 2);

sub via {
    my ($v, $path, @args) = @_;
    my ($base, @opt) = @{ $via{$v} };
    return curl("$base$path", @opt, @args);
}

# ---- normal mode: every listener proxies, the admin API answers
for my $v (@vias) {
    my $r = via($v, '/api/x');
    is($r->{status}, 200, "$v: normal mode, 200 from a node");
    is($r->{version}, $want_ver{$v}, "$v: HTTP/$want_ver{$v}");
    my $s = via($v, '/_nb_maint/status', '-H', $T);
    is($s->{status}, 200, "$v: GET status");
    like($s->{body}, qr/"mode"\s*:\s*"normal"/, "$v: status says normal");
}

# ---- admin writes over HTTP/2 (a request body in DATA frames)
my $r = via('h2c', '/_nb_maint/mode', '-H', $T, '-H', 'Content-Type: application/json',
            '--data-binary', qq({"mode":"upgrade","node":"$bid","reason":"h2 upgrade"}));
is($r->{status}, 200, 'h2c: POST mode upgrade') or diag $r->{body};
like($r->{body}, qr/"mode"\s*:\s*"upgrade"/, 'h2c: answer says upgrade');

$r = via('h2tls', '/_nb_maint/mode', '-H', $T, '-H', 'Content-Type: application/json',
         '--data-binary', '{"mode":"upgrade","node":"' . $bid . '","reason":"over TLS h2","retry_after":77}');
is($r->{status}, 200, 'h2 TLS: POST mode (reason, retry_after)') or diag $r->{body};

$r = via('v6h2tls', '/_nb_maint/mode', '-H', $T, '-H', 'Content-Type: application/json',
         '--data-binary', '{"mode":"bogus"}');
is($r->{status}, 400, 'IPv6 h2: bad mode is a 400');
like($r->{body}, qr/"error"/, '... with the error envelope');

$r = via('h2c', '/_nb_maint/status');
is($r->{status}, 401, 'h2c: no token, 401');

# ---- the 503 page and the JSON envelope on every listener
for my $v (@vias) {
    my $h = via($v, '/page', '-H', 'Accept: text/html', '-H', 'Accept-Language: de');
    is($h->{status}, 503, "$v: public request 503");
    is($h->{version}, $want_ver{$v}, "$v: ... over HTTP/$want_ver{$v}");
    is($h->{headers}{'retry-after'}, 77, "$v: Retry-After 77");
    is($h->{headers}{'cache-control'}, 'no-store', "$v: Cache-Control no-store");
    is($h->{headers}{'x-nb-maint'}, 'upgrade', "$v: X-NB-Maint upgrade");
    like($h->{headers}{'content-type'} // '', qr{^text/html}, "$v: HTML");
    like($h->{body}, qr/<html lang="de"/, "$v: German page");
    like($h->{body}, qr/over TLS h2/, "$v: reason in the page");
    ok(!exists $h->{headers}{'connection'}, "$v: no Connection header in h2")
        if $want_ver{$v} eq '2';

    my $j = via($v, '/api/users:list');
    is($j->{status}, 503, "$v: API request 503");
    like($j->{headers}{'content-type'} // '', qr{^application/json}, "$v: JSON");
    my $e = eval { NbTest::json_decode($j->{body}) } || {};
    is($e->{error}{code}, 'APP_COMMANDING', "$v: envelope code APP_COMMANDING");
    is($e->{error}{nb_maint}, 'upgrade', "$v: envelope nb_maint");
    is($e->{error}{retry_after}, 77, "$v: envelope retry_after");
}

# ---- the bypass cookie, issued over HTTP/2, honoured over h2 and IPv6
$r = via('h2tls', '/_nb_maint/bypass', '-H', $T, '-H', 'Content-Type: application/json',
         '--data-binary', '{"ttl":600}');
is($r->{status}, 200, 'h2 TLS: POST bypass') or diag $r->{body};
my ($cookie) = ($r->{headers}{'set-cookie'} // '') =~ /^(nb_maint_bypass=[^;]+)/;
ok($cookie, 'h2 TLS: Set-Cookie nb_maint_bypass');
$cookie //= 'nb_maint_bypass=x';
for my $v (@vias) {
    my $c = via($v, '/api/c', '-H', "Cookie: a=1; $cookie; b=2");
    is($c->{status}, 200, "$v: cookie holder passes");
    is($c->{headers}{'x-node'}, $bid, "$v: ... to the designated node B");
    $c = via($v, '/api/c', '-H', "Cookie: $cookie" . 'x');
    is($c->{status}, 503, "$v: a forged cookie does not");
}

# h2 sends each cookie as its own header field (RFC 9113 8.2.3): curl
# splits a "Cookie: a; b" header so; two Cookie headers over h2c
$r = via('h2c', '/api/c2', '-H', 'Cookie: a=1', '-H', "Cookie: $cookie");
is($r->{status}, 200, 'h2c: bypass cookie in a second Cookie field');

# ---- nb_maint_bypass_allow with IPv6 clients
my %loc = (
    '/v6host/' => [200, '::1'],
    '/v6net/'  => [200, '::/96 fd00::/8 ::1/128'],
    '/v4only/' => [503, '127.0.0.0/8 only'],
    '/all/'    => [200, 'all'],
    '/'        => [503, '10.0.0.0/8'],
);
for my $l (sort keys %loc) {
    my ($want, $what) = @{ $loc{$l} };
    for my $v (qw(v6 v6h2tls)) {
        my $x = via($v, "${l}api/y");
        is($x->{status}, $want, "$v: bypass_allow $what: $want for ::1");
        is($x->{headers}{'x-node'}, $bid, "$v: ... reaches B") if $want == 200;
    }
}

# ---- restore over h2
$r = via('h2c', '/_nb_maint/restore', '-H', $T, '-X', 'POST');
is($r->{status}, 200, 'h2c: POST restore') or diag $r->{body};
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 10), 'normal again');

# "all" over IPv4 still works (it is both families)
$ng->write_conf(http => cluster_http(nodes => [$A, $B], bypass => 'all'));
($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t: bypass_allow all') or diag $out;
$ng->reload;
$ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid });
is($ng->get('/api/z')->{status}, 200, 'IPv4 client under bypass_allow all: bypass');
is($ng->get('/api/z')->{headers}{'x-node'}, $bid, '... to B');

$ng->stop;
is_deeply([$ng->crashes], [], 'no worker crashed');

# ---- configuration: IPv6 CIDRs
for my $c (['2001:db8::/32', 0], ['2001:db8::1/32', 0, qr/low address bits/],
           ['::1/129', 1, qr/nb_maint_bypass_allow/], ['2001:db8:::1', 1, qr/nb_maint_bypass_allow/]) {
    my ($cidr, $fail, $re) = @$c;
    my $t = NbTest::Nginx->new(http => std_http(bypass => $cidr));
    my ($rc2, $o2) = $t->test_config;
    is($rc2, $fail, "nginx -t: bypass_allow $cidr " . ($fail ? 'fails' : 'passes')) or diag $o2;
    like($o2, $re, "... says so") if $re;
}

done_testing;
