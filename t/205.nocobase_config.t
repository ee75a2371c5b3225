# Issue 10 items 5-7: the README's complete configuration works with
# NocoBase (sign-in Origin check through the gateway, /ws proxied), the
# public health check is gated in an upgrade, NocoBase's static paths pass
# by default (operator can change it), nb_maint_api_prefix decides JSON vs
# HTML, the 503 page fills every placeholder ({{mode}}) in every language
# and refreshes every 10 s while restoring.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use HTTP::Tiny;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;

# ---- the README's configuration, as written ----------------------------------------------------
my $readme = do { local (@ARGV, $/) = NbTest::repo_root() . '/README.md'; <> };
my ($block) = $readme =~ /## A complete minimal configuration.*?```nginx\n(.*?)```/s;
ok($block, 'README: the complete configuration block');
my ($http) = ($block // '') =~ /^http \{\n(.*)^\}\s*$/ms;
ok($http, '... with its http block');

my $ng = NbTest::Nginx->new(http => '');
my $p = $ng->prefix;
(my $conf = $http // '') =~ s{/var/lib/(?:nginx|nb-maint)/}{$p/}g;
$conf =~ s{/etc/nginx/nb_maint[./]tokens}{%%PREFIX%%/tokens}g;
$conf =~ s/^(\s*listen\s+)80;/${1}127.0.0.1:%%PORT%%;/m;
my @servers = $conf =~ /^\s*server 10\.0\.0\.\d+:13000;\n/mg;
is(scalar @servers, 3, 'README: three nodes');
$conf =~ s/\b10\.0\.0\.11:13000;/$aid;/;
$conf =~ s/\b10\.0\.0\.12:13000;/$bid;/;
$conf =~ s/^\s*server 10\.0\.0\.\d+:13000;\n//mg;
$conf =~ s{^(\s*)allow 10\.1\.0\.0/16;}{${1}allow 127.0.0.1;}mg;
$ng->{http} = $conf;
$ng->write_conf;
$ng->start;
sub nodes_are {
    my ($g, $want, $t, @ids) = @_;
    return NbTest::wait_until(sub {
        my $n = $g->status_nodes('nocobase');
        !grep { ($n->{$_}{health} // '') ne $want } @ids;
    }, $t, 0.05);
}
ok(nodes_are($ng, 'up', 8, $aid, $bid), "README config: both nodes up (checks on by default)")
    or diag $ng->conf_text;

my $ua = HTTP::Tiny->new(timeout => 5);
my $origin = 'http://127.0.0.1:' . $ng->port;
my $r = $ua->request('POST', $ng->url('/api/auth:signIn'),
                     { headers => { Origin => $origin, 'Content-Type' => 'application/json' },
                       content => '{"account":"nocobase","password":"admin123"}' });
is($r->{status}, 200, 'sign-in through the gateway with the browser\'s Origin: 200 (NocoBase\'s origin check)')
    or diag $r->{content};
like($r->{content}, qr/"token"/, '... a token');
my $stats = $A->stats->{signins} + $B->stats->{signins};
is($stats, 1, '... the node accepted one sign-in');
$r = $ua->request('POST', $ng->url('/api/auth:signIn'),
                  { headers => { Origin => 'http://evil.example' }, content => '{}' });
is($r->{status}, 403, 'a foreign Origin: 403 from the node (the check is real)');

my $ws = NbWS->connect(port => $ng->port);
is($ws->status, 101, 'README config: /ws reaches a node (101)');
ok($ws->{headers}{'x-node'}, '... proxied');
$ws->drop;

# the old config (Host: the upstream name, Connection "") fails NocoBase: the control
my $old = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B]));
$old->start;
ok($old->wait_all_health('up', 5, $aid, $bid), 'control gateway (Host not passed) up');
$r = $ua->request('POST', $old->url('/api/auth:signIn'),
                  { headers => { Origin => 'http://127.0.0.1:' . $old->port }, content => '{}' });
is($r->{status}, 403, 'control: without Host $http_host the sign-in fails with 403');
$old->stop;

# ---- upgrade: the public health check is gated, static paths pass ---------------------------------
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade');
$r = $ng->get('/api/__health_check');
is($r->{status}, 503, 'public /api/__health_check: 503');
is($r->{json}{error}{code}, 'APP_COMMANDING', "... NocoBase's envelope");
is($r->{json}{error}{nb_maint}, 'upgrade', '... nb_maint upgrade');
# what NocoBase 2.2's web client loads (issue 18 item 2: the core bundle
# under /assets/ and the index page's own files were gated)
for my $path ('/static/plugins/@nocobase/plugin-acl/dist/client/index.js', '/dist/umi.js',
              '/v/assets/index.js', '/storage/uploads/logo.png',
              '/assets/index-1a2b3c4d.js', '/assets/vendor-antd-0f1e2d3c.css',
              '/global.css', '/browser-checker.js?v=1', '/favicon/favicon.ico',
              '/file-placeholder/pdf-200-200.png', '/nocobase.png', '/robots.txt') {
    $r = $ng->get($path);
    is($r->{status}, 200, "upgrade: $path passes by default (proxied)");
    ok($r->{headers}{'x-node'}, '... answered by a node');
}
for my $path ('/static/other.js', '/api/static/plugins/x.js', '/api/assets/x.js', '/api/users:list',
              '/global.css.map', '/robots.txt/x', '/nocobase.png.html', '/assets', '/admin/settings',
              '/api/../assets/x.js') {
    $r = $ng->get($path);
    is($r->{status}, 503, "upgrade: $path is gated (anchored)");
}

# ---- the page: every placeholder filled, every language, every kind ------------------------------
my %seen;
for my $lang (qw(en zh-CN de sv ru)) {
    $r = $ng->get('/', { 'Accept-Language' => $lang });
    is($r->{status}, 503, "upgrade page ($lang): 503");
    unlike($r->{content}, qr/\{\{/, "... ($lang): no {{ left");
    like($r->{content}, qr/<span class="badge">upgrade<\/span>/, "... ($lang): the badge says upgrade");
    $seen{ $r->{content} }++;
}
is(scalar keys %seen, 5, 'five different languages');
like($ng->get('/')->{content}, qr/http-equiv="refresh" content="300"/, 'upgrade: refresh after retry_after (300)');

$A->set_state('commanding', command => 'upgrade');
ok(nodes_are($ng, 'commanding', 8, $aid), 'A commanding');
$r = $ng->admin(POST => 'restore', {});
is($r->{json}{mode}, 'restoring', 'restoring from upgrade');
for my $lang (qw(en zh-CN de sv ru)) {
    $r = $ng->get('/', { 'Accept-Language' => $lang });
    unlike($r->{content}, qr/\{\{/, "restoring page ($lang): no {{ left");
    like($r->{content}, qr/http-equiv="refresh" content="10"/, "... ($lang): refreshes every 10 s");
    like($r->{content}, qr/<span class="badge">restoring<\/span>/, "... ($lang): badge restoring");
}
$r = $ng->get('/api/x');
is($r->{json}{error}{command}{name}, 'upgrade', 'restoring from upgrade: command.name upgrade (NocoBase titles it "App upgrading")');
is($r->{json}{error}{nb_maint}, 'restoring', '... nb_maint restoring');
$A->set_state('running');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 8), 'normal');

# no node: APP_STOPPED page
$A->set_state('fail'); $B->set_state('fail');
ok(nodes_are($ng, 'down', 15, $aid, $bid), 'both down');
for my $lang (qw(en zh-CN de sv ru)) {
    $r = $ng->get('/', { 'Accept-Language' => $lang });
    is($r->{status}, 503, "no node ($lang): 503");
    unlike($r->{content}, qr/\{\{/, "... ($lang): no {{ left");
}
$A->set_state('running'); $B->set_state('running');
$ng->stop;

# ---- nb_maint_api_prefix and the static paths under it; nb_maint_pass off ------------------------
my $pp = NbTest::Nginx->new(http => cluster_http(nodes => [$A],
    server_extra => "    nb_maint_api_prefix /nocobase/api/;\n",
    locations => "    location /off/ { nb_maint_pass off; proxy_pass http://app; }\n"));
$pp->start;
ok($pp->wait_all_health('up', 5, $aid), 'prefix gateway up');
is($pp->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade');
$r = $pp->get('/nocobase/api/users:list');
is($r->{status}, 503, 'APP_PUBLIC_PATH: /nocobase/api/... 503');
like($r->{headers}{'content-type'}, qr{^application/json}, '... JSON (nb_maint_api_prefix)');
$r = $pp->get('/api/users:list');
like($r->{headers}{'content-type'}, qr{^text/html}, '/api/... is not the API here: HTML');
is($pp->get('/nocobase/static/plugins/x.js')->{status}, 200, '/nocobase/static/plugins/ passes (public path from the prefix)');
is($pp->get('/static/plugins/x.js')->{status}, 503, '/static/plugins/ outside the public path: gated');
is($pp->get('/nocobase/assets/index-1a2b3c4d.js')->{status}, 200, '/nocobase/assets/ passes (the core bundle under the public path)');
is($pp->get('/nocobase/global.css')->{status}, 200, '/nocobase/global.css passes');
is($pp->get('/assets/index-1a2b3c4d.js')->{status}, 503, '/assets/ outside the public path: gated');
is($pp->get('/off/static/plugins/x.js')->{status}, 503, 'nb_maint_pass off: nothing passes');

# config errors
my $bad = NbTest::Nginx->new(http => std_http(server_extra => "    nb_maint_api_prefix api;\n"));
my ($rc, $out) = $bad->test_config;
isnt($rc, 0, 'nb_maint_api_prefix without a leading /: nginx -t fails');
like($out, qr/nb_maint_api_prefix.*invalid path/, '... naming the directive');

is(scalar $pp->crashes, 0, 'no worker crashed');
done_testing;
