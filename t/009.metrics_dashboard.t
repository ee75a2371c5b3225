# GET metrics (Prometheus text) and the dashboard at the admin location.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B]));
$ng->start;
ok($ng->wait_all_health('up', 5, $A->id, $B->id), 'both nodes up');

# some traffic of each outcome
$ng->get('/x') for 1 .. 5;
my $r = $ng->admin(POST => 'nodes/' . $B->id . '/drain');
is($r->{status}, 200, 'drain B');
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'm' });
is($r->{status}, 200, 'upgrade');
is($ng->get('/x')->{status}, 503, 'gated') for 1 .. 3;

$r = $ng->admin(GET => 'metrics');
is($r->{status}, 200, 'GET metrics 200');
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'Prometheus content type');
my $m = $r->{content};
like($m, qr/^# TYPE nb_maint_mode gauge$/m, 'TYPE line for mode');
like($m, qr/^nb_maint_mode\{mode="upgrade"\} 1$/m, 'mode upgrade = 1');
like($m, qr/^nb_maint_mode\{mode="normal"\} 0$/m, 'mode normal = 0');
like($m, qr/^nb_maint_version 2$/m, 'version 2');
like($m, qr/^nb_maint_store_up\{type="file"\} 1$/m, 'store up');
like($m, qr/^nb_maint_requests_total\{outcome="proxied"\} (\d+)$/m, 'proxied counter');
my ($proxied) = $m =~ /outcome="proxied"\} (\d+)/;
cmp_ok($proxied, '>=', 5, 'at least the 5 proxied requests counted');
my ($gated) = $m =~ /outcome="maintenance_page"\} (\d+)/;
cmp_ok($gated, '>=', 3, 'the 3 gated requests counted');
my $aid = $A->id;
my $bid = $B->id;
like($m, qr/^nb_maint_node_up\{upstream="app",node="\Q$aid\E"\} 1$/m, 'node A up');
like($m, qr/^nb_maint_node_drain\{upstream="app",node="\Q$bid\E"\} 1$/m, 'node B drained');
like($m, qr/^nb_maint_node_drain\{upstream="app",node="\Q$aid\E"\} 0$/m, 'node A not drained');
like($m, qr/^nb_maint_node_active\{upstream="app",node="\Q$aid\E"\} 0$/m, 'node A active 0');
like($m, qr/^nb_maint_zone_bytes\{kind="used"\} \d+$/m, 'zone use');

# metrics need the token like everything else
$r = $ng->get('/_nb_maint/metrics');
is($r->{status}, 401, 'metrics without a token: 401');

# the dashboard: with the token 200 HTML, without it 401 with the sign-in page
$r = $ng->admin(GET => '');
is($r->{status}, 200, 'dashboard with token: 200');
like($r->{headers}{'content-type'}, qr{^text/html}, 'dashboard is HTML');
like($r->{content}, qr/<title>nb_maint<\/title>/, 'dashboard page');
like($r->{content}, qr/Authorization/, 'dashboard calls the API with the bearer token');
$r = $ng->get('/_nb_maint/');
is($r->{status}, 401, 'dashboard without token: 401');
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer/, 'WWW-Authenticate: Bearer');
like($r->{content}, qr/id="login"/, 'the sign-in form comes with the 401');
$r = $ng->admin(POST => '', {});
is($r->{status}, 405, 'POST to the dashboard: 405');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
