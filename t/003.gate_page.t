# The gate: upgrade mode 503s gated requests, nb_maint_pass URIs and
# nb_maint_bypass_allow clients pass; the 503's headers, HTML escaping, HEAD.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $ng = NbTest::Nginx->new(http => std_http(
    locations => <<'EOT',
    location /nogate/  { nb_maint_gate off; return 200 "nogate\n"; }
    location /trusted/ { nb_maint_bypass_allow 127.0.0.1/32; return 200 "trusted\n"; }
    location /multi/   { nb_maint_bypass_allow 10.0.0.0/8; nb_maint_bypass_allow 192.168.0.0/16;
                         nb_maint_bypass_allow 127.0.0.1/32; return 200 "multi\n"; }
    location /static/  { return 200 "static\n"; }
EOT
    servers => NbTest::bypass_server('return 200 "bypass-server\n";'),
));
$ng->start;
my $B = $ng->port_of('b');

sub raw_get {
    my ($port, $path, %o) = @_;
    my $m = $o{method} // 'GET';
    my $extra = $o{headers} // '';
    return parse_response(raw_request($port,
        "$m $path HTTP/1.1\r\nHost: localhost\r\n${extra}Connection: close\r\n\r\n", %o));
}

my @paths = ('/', '/x', '/static/a.js', '/healthz', '/nogate/', '/trusted/', '/multi/');

# ---- normal: nothing gated ------------------------------------------------------
for my $p (@paths) {
    is($ng->get($p)->{status}, 200, "normal: $p is 200");
}
is(raw_get($B, '/', local_addr => '127.0.0.2')->{status}, 200, 'normal: 127.0.0.2 on the bypass server is 200');

# ---- upgrade --------------------------------------------------------------------
my $reason = q{a & b <script>alert("x")</script> 'q'};
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => $reason, retry_after => 77 });
is($r->{status}, 200, 'POST mode upgrade') or diag $r->{content};
my $since = $r->{json}{since} // '';

$r = $ng->get('/');
is($r->{status}, 503, 'upgrade: GET / is 503');
is($r->{headers}{'retry-after'}, '77', 'Retry-After equals retry_after');
like($r->{headers}{'cache-control'} // '', qr/\bno-store\b/, 'Cache-Control: no-store');
is($r->{headers}{'x-nb-maint'}, 'upgrade', 'X-NB-Maint: upgrade');
like($r->{headers}{'content-type'} // '', qr{^text/html}, 'HTML for a browser-less client');
my $body = $r->{content} // '';
like($body, qr/<html[^>]*\blang="en"/, 'English page by default');
like($body, qr/a &amp; b &lt;script&gt;alert\((?:&quot;|&#34;|&#x22;)x(?:&quot;|&#34;|&#x22;)\)&lt;\/script&gt;/,
     'reason is HTML-escaped (& < > ")');
unlike($body, qr/<script>alert/, 'no raw <script> from the reason');
like($body, qr/\b77\b/, 'page shows retry_after');
my ($date, $hm) = $since =~ /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)/;
ok($date && index($body, $date) >= 0 && index($body, $hm) >= 0, "page shows the since time ($since)")
    or diag substr($body, 0, 2000);

for my $p ('/x', '/static/a.js', '/healthz/', '/healthzx', '/x/healthz', '/index.html?healthz') {
    my $g = $ng->get($p);
    is($g->{status}, 503, "upgrade: $p is 503");
    is($g->{headers}{'x-nb-maint'}, 'upgrade', "upgrade: $p has X-NB-Maint");
}
is($ng->req(POST => '/form', { 'Content-Type' => 'application/x-www-form-urlencoded' }, 'a=1')->{status}, 503,
   'upgrade: POST to a gated URI is 503');

# nb_maint_pass
for my $p ('/healthz', '/healthz?probe=1') {
    my $g = $ng->get($p);
    is($g->{status}, 200, "nb_maint_pass ~^/healthz\$: $p passes");
    is($g->{content}, "app\n", "$p reaches the location");
}
# nb_maint_gate off
is($ng->get('/nogate/')->{status}, 200, 'nb_maint_gate off location passes');
# admin API is never gated
is($ng->admin(GET => 'status')->{status}, 200, 'admin API still answers in upgrade');

# nb_maint_bypass_allow
is($ng->get('/trusted/')->{status}, 200, 'location with bypass_allow 127.0.0.1/32: 127.0.0.1 passes');
is($ng->get('/trusted/')->{content}, "trusted\n", '... reaching the location');
is(raw_get($ng->port, '/trusted/', local_addr => '127.0.0.2')->{status}, 503, '... 127.0.0.2 is gated');
is($ng->get('/multi/')->{status}, 200, 'third of several bypass_allow entries matches');
is(raw_get($ng->port, '/multi/', local_addr => '127.0.0.2')->{status}, 503, '... 127.0.0.2 is gated');
is($ng->get('/')->{status}, 503, 'server-level bypass_allow 10.0.0.0/8 does not cover 127.0.0.1');
my $g = raw_get($B, '/');
is($g->{status}, 200, 'server with bypass_allow 127.0.0.1/32: 127.0.0.1 passes');
is($g->{body}, "bypass-server\n", '... body');
$g = raw_get($B, '/', local_addr => '127.0.0.2');
is($g->{status}, 503, 'server with bypass_allow 127.0.0.1/32: 127.0.0.2 gets 503');
is($g->{headers}{'x-nb-maint'}, 'upgrade', '... with X-NB-Maint');

# ---- HEAD: headers only --------------------------------------------------------------
for my $p ('/', '/api/x') {
    my $h = raw_get($ng->port, $p, method => 'HEAD');
    is($h->{status}, 503, "HEAD $p: 503");
    is($h->{body}, '', "HEAD $p: no body");
    is($h->{headers}{'retry-after'}, '77', "HEAD $p: Retry-After");
    is($h->{headers}{'x-nb-maint'}, 'upgrade', "HEAD $p: X-NB-Maint");
    like($h->{headers}{'cache-control'} // '', qr/no-store/, "HEAD $p: Cache-Control no-store");
}
my $get = raw_get($ng->port, '/');
my $head = raw_get($ng->port, '/', method => 'HEAD');
is($head->{headers}{'content-type'}, $get->{headers}{'content-type'}, 'HEAD and GET: same Content-Type');
if (defined $head->{headers}{'content-length'}) {
    is($head->{headers}{'content-length'}, length($get->{body}), 'HEAD Content-Length = GET body length');
}

# ---- back to normal -----------------------------------------------------------------
$r = $ng->admin(POST => 'restore');
is($r->{json}{mode}, 'normal', 'restored');
for my $p (@paths) {
    is($ng->get($p)->{status}, 200, "normal again: $p is 200");
}
is(raw_get($B, '/', local_addr => '127.0.0.2')->{status}, 200, 'normal again: 127.0.0.2 is 200');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
