# Issue 18 items 4 and 5: no node available in normal mode (a cluster
# starting, every node down).
#   - the 503 page says so in every language (not "Scheduled maintenance"),
#     "since" is when the outage began, and it tries again within seconds
#     (Retry-After 5, refresh 5; JSON: APP_STOPPED / no_healthy_node,
#     retry_after 5); a mode's own 503 keeps its retry_after;
#   - error.log: the outage once when it begins and once when it ends, not
#     nginx's "no live upstreams" for every request; a refused health check
#     says "connection refused", not "recv failed";
#   - POST mode with a node that is not a server, or is down, names it (and
#     so does the CLI's "maintenance --node").
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbCli;
use Time::HiRes qw(time sleep);

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = ($A->id, $B->id);

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B]));
$ng->start;
ok($ng->wait_all_health('up', 8, $aid, $bid), 'both nodes up');
is($ng->get('/x')->{status}, 200, 'normal: 200');

sleep 2.5;          # the normal mode's "since" is older than the outage's
my $t0 = time;
$A->stop;
$B->stop;
ok($ng->wait_all_health('down', 15, $aid, $bid), 'both nodes stopped: down');

# ---- the page ----------------------------------------------------------------------------------
my %no_node = (
    en      => 'No application node is available',
    'zh-CN' => "\x{6ca1}\x{6709}\x{53ef}\x{7528}\x{7684}\x{5e94}\x{7528}\x{8282}\x{70b9}",
    de      => 'Kein Anwendungsknoten ist erreichbar',
    sv      => "Ingen applikationsnod \x{e4}r tillg\x{e4}nglig",
    ru      => "\x{41d}\x{435}\x{442} \x{434}\x{43e}\x{441}\x{442}\x{443}\x{43f}\x{43d}\x{44b}\x{445} "
             . "\x{443}\x{437}\x{43b}\x{43e}\x{432} \x{43f}\x{440}\x{438}\x{43b}\x{43e}\x{436}\x{435}\x{43d}\x{438}\x{44f}",
);
my %scheduled = (en => 'Scheduled maintenance', de => 'Geplante Wartung',
                 sv => "Planerat underh\x{e5}ll");
for my $lang (sort keys %no_node) {
    my $r = $ng->get('/', { 'Accept-Language' => $lang });
    is($r->{status}, 503, "no node ($lang): 503");
    is($r->{headers}{'retry-after'}, 5, "... ($lang): Retry-After 5");
    my $html = $r->{content};
    utf8::decode($html);
    like($html, qr{<dd class="reason">\Q$no_node{$lang}\E</dd>}, "... ($lang): the reason says no node is available");
    unlike($html, qr/\Q$scheduled{$lang}\E/, "... ($lang): not \"$scheduled{$lang}\"") if $scheduled{$lang};
    like($html, qr/http-equiv="refresh" content="5"/, "... ($lang): refreshes after 5 s");
    like($html, qr{<dd>5 }, "... ($lang): try again in 5");
}
my $r = $ng->get('/');
my ($since) = $r->{content} =~ /<time datetime="([^"]+)"/;
my @t = $since =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)Z$/;
require Time::Local;
my $since_t = @t ? Time::Local::timegm($t[5], $t[4], $t[3], $t[2], $t[1] - 1, $t[0]) : 0;
ok($since_t >= int($t0) && $since_t <= time + 1, "since: when the outage began ($since)")
    or diag "t0 $t0";
$r = $ng->get('/api/users:list');
is($r->{status}, 503, 'API: 503');
is($r->{headers}{'retry-after'}, 5, '... Retry-After 5');
is($r->{json}{error}{code}, 'APP_STOPPED', '... APP_STOPPED');
is($r->{json}{error}{nb_maint}, 'no_healthy_node', '... no_healthy_node');
is($r->{json}{error}{retry_after}, 5, '... retry_after 5');

# ---- the log: the outage once, no "no live upstreams" --------------------------------------------
$ng->get('/x') for 1 .. 30;
my $log = $ng->error_log;
is(scalar(() = $log =~ /no live upstreams/g), 0, 'error.log: no "no live upstreams" for the 35 no-node 503s');
is(scalar(() = $log =~ /nb_maint: upstream "app": no node available/g), 1,
   'error.log: "upstream app: no node available" once');
like($log, qr/\[error\][^\n]*upstream "app": no node available/, '... at error level');
like($log, qr/node \Q$aid\E is down: connection refused/, 'a refused check: "down: connection refused"');
unlike($log, qr/is down: recv failed/, '... not "recv failed"');

$A->start;
ok($ng->wait_health($aid, 'up', 10), 'A back up');
is($ng->get('/x')->{status}, 200, 'a request reaches A');
$ng->get('/x') for 1 .. 5;
$log = $ng->error_log;
is(scalar(() = $log =~ /upstream "app": a node is available again/g), 1, 'error.log: "a node is available again" once');

# a second outage is logged again
$A->stop;
ok($ng->wait_health($aid, 'down', 15), 'A stopped again');
$ng->get('/x') for 1 .. 5;
is(scalar(() = $ng->error_log =~ /upstream "app": no node available/g), 2, 'the second outage: logged once more');

# a mode's own 503 keeps its retry_after
$A->start;
ok($ng->wait_health($aid, 'up', 10), 'A up');
is($ng->admin(POST => 'mode', { mode => 'upgrade', retry_after => 120 })->{status}, 200, 'upgrade, retry_after 120');
$r = $ng->get('/');
is($r->{headers}{'retry-after'}, 120, 'upgrade page: Retry-After 120');
like($r->{content}, qr/http-equiv="refresh" content="120"/, '... refresh 120');
unlike($r->{content}, qr/No application node/, '... no "no node" reason');
is($ng->admin(POST => 'restore', { force => JSON::PP::true })->{status}, 200, 'restore');

# ---- POST mode names the node ---------------------------------------------------------------------
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:9999' });
is($r->{status}, 400, 'maintenance on 127.0.0.1:9999: 400');
is($r->{json}{error}{code}, 'unknown_node', '... unknown_node');
like($r->{json}{error}{message}, qr/^node "127\.0\.0\.1:9999" is not a server of any nb_maint upstream/,
     '... the message names the node');
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid });
is($r->{status}, 409, 'maintenance on B (down): 409');
like($r->{json}{error}{message}, qr/^node "\Q$bid\E" is down/, '... the message names the node');

my ($rc, $out, $err) = NbCli::run({ env => { NB_MAINT_URL => $ng->url('/_nb_maint/'),
                                             NB_MAINT_TOKEN => NbTest::ADMIN_TOKEN }, timeout => 30 },
                                  'maintenance', '--node', '127.0.0.1:9999');
isnt($rc, 0, 'CLI maintenance --node 127.0.0.1:9999 fails');
like("$out$err", qr/node "127\.0\.0\.1:9999" is not a server/, '... and names the node') or diag "$out$err";

is($ng->crashes, 0, 'no worker crashed');
$ng->stop;
done_testing;
