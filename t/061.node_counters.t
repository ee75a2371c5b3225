# Per-node counters (issue 13, OWNERS interface 1 and 4): requests proxied,
# failures as nginx counts a peer failure, the health check latency, in
# GET status / GET nodes/{id} ("requests", "failures", "check_ms") and in
# GET metrics; a node in two upstreams is counted once; an entry reused by
# another node after reloads starts from zero.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = ($A->id, $B->id);
my $dead1 = '127.0.0.1:' . NbTest::free_port();    # nothing listens
my $dead2 = '127.0.0.1:' . NbTest::free_port();

sub conf {
    my (@flaky) = @_;
    my $servers = join '', map { "    server $_;\n" } @flaky;
    return cluster_http(nodes => [$A, $B], upstreams => <<"EOT",
upstream flaky {
    nb_maint;
    nb_maint_check off;
$servers}
EOT
        locations => "    location /flaky/ { proxy_pass http://flaky; }\n");
}

my $ng = NbTest::Nginx->new(http => conf($aid, $dead1));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'A and B up');

# before any request: zero, and check_ms an integer once checked
my $n = $ng->node($aid);
is($n->{requests}, 0, 'requests 0 before traffic');
is($n->{failures}, 0, 'failures 0 before traffic');
like($n->{check_ms} // 'null', qr/^\d+$/, 'check_ms: an integer once checked');
my $u = $ng->status_nodes('flaky');
ok(exists $u->{$dead1}{check_ms} && !defined $u->{$dead1}{check_ms},
   'check_ms null for a node never checked');

# 10 requests over A and B, 4 to the flaky upstream (the dead node fails
# once per worker, then max_fails keeps it out)
is($ng->get('/x')->{status}, 200, "request $_") for 1 .. 10;
is($ng->get('/flaky/x')->{status}, 200, "flaky request $_") for 1 .. 4;

my $app = $ng->status_nodes('app');
my $flaky = $ng->status_nodes('flaky');
is($app->{$aid}{requests} + $app->{$bid}{requests}, 14,
   'every request that reached A or B counted once (A serves both upstreams)')
    or diag explain $app, $flaky;
cmp_ok($app->{$bid}{requests}, '>=', 1, 'B took some');
is($flaky->{$aid}{requests}, $app->{$aid}{requests}, 'A in two upstreams: one entry');
cmp_ok($flaky->{$dead1}{failures}, '>=', 1, 'the dead node: failures counted');
is($flaky->{$dead1}{requests}, $flaky->{$dead1}{failures}, '... each try to it failed');
is($app->{$aid}{failures}, 0, 'A: no failure');

# the same in GET metrics, A once in the counters though in two upstreams
my $m = $ng->admin(GET => 'metrics')->{content};
my @a = $m =~ /^nb_maint_node_requests_total\{upstream="([^"]+)",node="\Q$aid\E"\} (\d+)$/mg;
is_deeply(\@a, ['app', $app->{$aid}{requests}], 'requests_total: A once, under "app"');
like($m, qr/^nb_maint_node_failures_total\{upstream="flaky",node="\Q$dead1\E"\} $flaky->{$dead1}{failures}$/m,
     'failures_total of the dead node');
my ($cnt) = $m =~ /^nb_maint_node_check_duration_seconds_count\{upstream="app",node="\Q$aid\E"\} (\d+)$/m;
my ($inf) = $m =~ /^nb_maint_node_check_duration_seconds_bucket\{upstream="app",node="\Q$aid\E",le="\+Inf"\} (\d+)$/m;
cmp_ok($cnt // 0, '>=', 1, 'checks observed in the histogram (a node goes from unknown to up on its first pass)');
is($inf, $cnt, '+Inf bucket = count');
like($m, qr/^nb_maint_node_last_check_timestamp_seconds\{upstream="app",node="\Q$aid\E"\} \d{10}\.\d{3}$/m,
     'last check as a timestamp');
unlike($m, qr/^nb_maint_node_last_check_timestamp_seconds\{[^}]*\Q$dead1\E/m,
       'no last check sample for a node never checked');

# a slow check: its latency shows in check_ms
$A->ctl(POST => '/__mock/delay?ms=0&health_ms=300');
ok(NbTest::wait_until(sub { ($ng->node($aid)->{check_ms} // 0) >= 250 }, 5),
   'check_ms follows a slow health check (300 ms)');
$A->ctl(POST => '/__mock/delay?ms=0&health_ms=0');

# entry reuse: drop dead1 (its entry is freed once no worker uses it), then
# add dead2, which takes that entry: it starts from zero
$ng->write_conf(http => conf($aid));
$ng->reload;
$ng->write_conf(http => conf($aid, $dead2));
$ng->reload;
ok(scalar $ng->log_grep(qr/node \Q$dead1\E is in no configuration any more/),
   'dead1 entry freed');
$u = $ng->status_nodes('flaky');
is($u->{$dead2}{requests}, 0, 'reused entry: requests from zero');
is($u->{$dead2}{failures}, 0, 'reused entry: failures from zero');
ok(exists $u->{$dead2}{check_ms} && !defined $u->{$dead2}{check_ms}, 'reused entry: check_ms null');
$m = $ng->admin(GET => 'metrics')->{content};
like($m, qr/^nb_maint_node_requests_total\{upstream="flaky",node="\Q$dead2\E"\} 0$/m,
     'reused entry: requests_total 0');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
