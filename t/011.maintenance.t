# Maintenance on node B: every request goes to B and nowhere else; with B
# stopped the clients get the 503 "no_healthy_node" page (never a 502, never
# another node), also with proxy_next_upstream http_502 and error_page 502.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my @M = ($A, $B, $C);
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;

# reuseport: new connections spread over both workers (each has its own
# view of upstream peer failures)
my $ng = NbTest::Nginx->new(http => cluster_http(
    nodes       => \@M,
    listen_opts => ' reuseport',
    locations => <<'EOT',
    location /api/ {
        proxy_pass http://app;
        proxy_next_upstream error timeout http_502;
        error_page 502 /50x.html;
    }
    location = /50x.html { return 200 "custom 50x page\n"; }
EOT
));
$ng->start;

ok($ng->wait_all_health('up', 5, @ids), 'all three nodes are up');

my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid, reason => 'maint-test' });
is($r->{status}, 200, 'POST mode maintenance on B') or diag $r->{content};
is($r->{json}{mode}, 'maintenance', '... mode maintenance');
is($r->{json}{node}, $bid, '... node B');

# ---- 500 requests: all to B -------------------------------------------------------------
$_->reset for @M;
my $before = NbTest::mock_counts(@M);
my $h = $ng->hit(250, '/api/m');               # location with next_upstream/error_page
my $h2 = $ng->hit(250, '/plain/m');            # default proxy settings
my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{200}, 250, '/api/: 250 of 250 requests 200') or diag explain $h->{status};
is($h->{node}{$bid}, 250, '/api/: all 250 answered by B (X-Node)') or diag explain $h->{node};
is($h2->{status}{200}, 250, '/plain/: 250 of 250 requests 200') or diag explain $h2->{status};
is($h2->{node}{$bid}, 250, '/plain/: all 250 answered by B (X-Node)') or diag explain $h2->{node};
is($d->{$bid}, 500, 'B stats: 500 requests');
is($d->{$aid}, 0, 'A stats: unchanged');
is($d->{$cid}, 0, 'C stats: unchanged');

# ---- B stopped: 503 no_healthy_node, never 502, nothing to A or C -------------------------
sub check_no_node {
    my ($label) = @_;
    my $res = $ng->get('/api/x');
    is($res->{status}, 503, "$label: /api/x is 503") or diag "$res->{status} $res->{content}";
    is($res->{headers}{'x-nb-maint'}, 'no_healthy_node', "$label: X-NB-Maint: no_healthy_node");
    like($res->{headers}{'content-type'} // '', qr{^application/json}, "$label: JSON for /api/");
    my $e = ref $res->{json} eq 'HASH' ? $res->{json}{error} || {} : {};
    is($e->{nb_maint}, 'no_healthy_node', "$label: JSON nb_maint no_healthy_node") or diag $res->{content};
    is($e->{code}, 'APP_STOPPED', "$label: JSON code APP_STOPPED");
    is($e->{status}, 503, "$label: JSON error.status 503");
    ok($e->{maintaining}, "$label: JSON maintaining true");
    ok(defined $res->{headers}{'retry-after'}, "$label: Retry-After present");
    like($res->{headers}{'cache-control'} // '', qr/no-store/, "$label: Cache-Control no-store");
    unlike($res->{content} // '', qr/custom 50x/, "$label: not the error_page 502 page");

    my $p = $ng->get('/plain/x', { Accept => 'text/html' });
    is($p->{status}, 503, "$label: /plain/x (default proxy settings) is 503");
    is($p->{headers}{'x-nb-maint'}, 'no_healthy_node', "$label: ... X-NB-Maint: no_healthy_node");
    like($p->{headers}{'content-type'} // '', qr{^text/html}, "$label: ... HTML page");
    my $j = $ng->get('/plain/x', { Accept => 'application/json' });
    is($j->{status}, 503, "$label: Accept: application/json is 503");
    is(ref $j->{json} eq 'HASH' && $j->{json}{error}{nb_maint}, 'no_healthy_node', "$label: ... JSON nb_maint no_healthy_node");
}

$_->reset for $A, $C;
$before = NbTest::mock_counts($A, $C);
$B->stop;

# right away: B is not known to be down yet, the first try fails
my %st;
my %nodes;
my $t0 = time;
my $n = 0;
while (time - $t0 < 0.6) {
    for my $path ('/api/x', '/plain/x') {
        my $x = $ng->hit(1, $path);                   # keep-alive connection
        $n++;
        $st{$_} += $x->{status}{$_} for keys %{ $x->{status} };
        $nodes{$_} += $x->{node}{$_} for keys %{ $x->{node} };
        my $y = $ng->get($path);                      # new connection, any worker
        $n++;
        $st{ $y->{status} }++;
        $nodes{ $y->{headers}{'x-node'} // '-' }++;
    }
}
is($st{503} // 0, $n, "right after B stopped: all $n requests 503") or diag explain \%st;
ok(!$st{502}, '... no 502');
is_deeply([grep { $_ ne '-' } keys %nodes], [], '... no answer from any node');

ok(defined $ng->wait_health($bid, 'down', 3), 'B is marked down');
check_no_node('B down');

$h = $ng->hit(100, '/api/x');
is($h->{status}{503}, 100, 'B down: 100 of 100 requests to /api/ 503') or diag explain $h->{status};
$h = $ng->hit(100, '/plain/x');
is($h->{status}{503}, 100, 'B down: 100 of 100 requests to /plain/ 503');
is($h->{nb}{no_healthy_node}, 100, '... all with X-NB-Maint: no_healthy_node');

$d = NbTest::count_delta($before, NbTest::mock_counts($A, $C));
is($d->{$aid}, 0, 'zero requests reached A while B was away');
is($d->{$cid}, 0, 'zero requests reached C while B was away');
my @tried = $ng->log_grep(qr/upstream: "http:\/\/(?:\Q$aid\E|\Q$cid\E)/);
is(scalar @tried, 0, 'error.log: nginx never tried A or C') or diag join "\n", @tried[0 .. 4];

is($ng->status->{mode}, 'maintenance', 'mode still maintenance');

# ---- B back: requests reach B again once it passed the checks ----------------------------
$B->start;
ok(defined $ng->wait_health($bid, 'up', 5), 'restarted B is up');
# B's checks pass again, so B is the allowed node again (SPEC section 3)
my $last;
my $back = NbTest::wait_until(sub {
    $last = $ng->hit(10, '/plain/y');                 # keep-alive: one worker
    for (1 .. 10) {                                   # new connections: both workers
        my $u = $ng->get('/plain/y');
        $last->{status}{ $u->{status} }++;
        $last->{nb}{ $u->{headers}{'x-nb-maint'} // '-' }++;
    }
    ($last->{status}{200} // 0) == 20;
}, 1.5);
ok($back, 'maintenance: requests reach B again once it is up (within 1.5 s)')
    or diag("still:", explain($last->{status}), explain($last->{nb}), $ng->error_log_tail(6));
$before = NbTest::mock_counts(@M);
$h = $ng->hit(40, '/plain/z');
$h->{node}{ $ng->get('/plain/z')->{headers}{'x-node'} // '-' }++ for 1 .. 10;
is($h->{node}{$bid} // 0, 50, 'B back: all 50 answered by B') or diag explain $h->{node};
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($d->{$aid} + $d->{$cid}, 0, 'B back: A and C still get nothing');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
