# Upgrade mode through an nb_maint upstream: public requests get the 503 page
# and reach no node; bypass requests (cookie from POST bypass, or
# nb_maint_bypass_allow) reach exactly the designated node, or any healthy
# node while none is designated; bad cookies are public.
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

my $ng = NbTest::Nginx->new(http => cluster_http(
    nodes      => \@M,
    root_extra => 'add_header X-Bypass-Var "v=$nb_maint_bypass" always;',
    locations  => <<'EOT',
    location /trusted/ { nb_maint_bypass_allow 127.0.0.1/32; proxy_pass http://app; }
EOT
    servers => NbTest::bypass_server('proxy_pass http://app;'),
));
$ng->start;
my $PB = $ng->port_of('b');

ok($ng->wait_all_health('up', 5, @ids), 'all three nodes are up');

sub total { my ($d) = @_; my $t = 0; $t += $_ for values %$d; $t }

# public requests: all 503 upgrade, nothing reaches any node
sub public_503 {
    my ($label, %o) = @_;
    $_->reset for @M;
    my $before = NbTest::mock_counts(@M);
    my $h = $ng->hit($o{n} // 50, $o{path} // '/api/pub', headers => $o{headers});
    my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
    is($h->{status}{503} // 0, $h->{n}, "$label: $h->{n} of $h->{n} requests 503") or diag explain $h->{status};
    is($h->{nb}{ $o{nb} // 'upgrade' } // 0, $h->{n}, "$label: X-NB-Maint: " . ($o{nb} // 'upgrade'));
    is(total($d), 0, "$label: zero requests reached any node (stats)") or diag explain $d;
    return $h;
}

# ---- upgrade without a designated node ------------------------------------------------------
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'upgrading' });
is($r->{status}, 200, 'POST mode upgrade (no node)') or diag $r->{content};
is($r->{json}{node}, undef, '... no designated node');

my $h = public_503('upgrade, no node');
my $j = $h->{res}[0]{json} || {};
is($j->{error}{nb_maint}, 'upgrade', 'JSON nb_maint upgrade');
is($j->{error}{code}, 'APP_COMMANDING', 'JSON code APP_COMMANDING');
is($j->{error}{command}{name}, 'upgrade', 'JSON command.name upgrade');

# bypass cookie
$r = $ng->admin(POST => 'bypass', {});
is($r->{status}, 200, 'POST bypass') or diag $r->{content};
my $cookie = $r->{json}{cookie} // '';
like($cookie, qr/^nb_maint_bypass=(\d+)\.([^;\s]+)$/, 'cookie nb_maint_bypass=<exp>.<sig>');
my ($exp, $sig) = $cookie =~ /^nb_maint_bypass=(\d+)\.([^;\s]+)$/;
$exp //= 0; $sig //= '';
is($r->{json}{ttl}, 3600, 'default ttl 3600');
like($r->{json}{expires} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'expires RFC 3339');
cmp_ok(abs($exp - time - 3600), '<=', 5, 'exp is now + ttl');
my $sc = $r->{headers}{'set-cookie'} // '';
like($sc, qr/^\Q$cookie\E;/, 'Set-Cookie carries the cookie');
like($sc, qr/;\s*HttpOnly\b/i, 'Set-Cookie HttpOnly');
like($sc, qr/;\s*SameSite=Lax\b/i, 'Set-Cookie SameSite=Lax');
like($sc, qr/;\s*Path=\/(?:;|$)/, 'Set-Cookie Path=/');
like($sc, qr/;\s*Max-Age=3600\b/, 'Set-Cookie Max-Age=3600');

is($ng->admin(POST => 'bypass', { ttl => 0 })->{status}, 400, 'ttl 0 → 400');
is($ng->admin(POST => 'bypass', { ttl => 604801 })->{status}, 400, 'ttl 604801 → 400');
is($ng->admin(POST => 'bypass', { ttl => 604800 })->{status}, 200, 'ttl 604800 → 200');

my %CK = (Cookie => $cookie);

# bypass without a node: any healthy node
$_->reset for @M;
my $before = NbTest::mock_counts(@M);
$h = $ng->hit(60, '/api/byp', headers => \%CK, keep => 1);
my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{200}, 60, 'upgrade, no node: 60 of 60 bypass requests 200') or diag explain $h->{status};
is(total($d), 60, '... all 60 reached a node (stats)');
is_deeply([sort grep { $_ ne '-' } keys %{ $h->{node} }], [sort grep { $d->{$_} } @ids], '... X-Node agrees with the stats');
is(scalar(grep { ($_->{headers}{'x-bypass-var'} // '') eq 'v=1' } @{ $h->{res} }), 60, '... $nb_maint_bypass is 1');

$C->set_state('fail');
ok(defined $ng->wait_health($cid, 'down', 3), 'C fails its checks: down');
$_->reset for @M;
$before = NbTest::mock_counts(@M);
$h = $ng->hit(60, '/api/byp2', headers => \%CK);
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{200}, 60, 'upgrade, no node, C down: 60 of 60 bypass requests 200');
is($d->{$cid}, 0, '... none reached C (stats)');
ok(!$h->{node}{$cid}, '... none answered by C (X-Node)');
is($d->{$aid} + $d->{$bid}, 60, '... all went to the healthy A and B');
$C->set_state('running');
ok(defined $ng->wait_health($cid, 'up', 3), 'C up again');

# ---- upgrade with node B ------------------------------------------------------------------------
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid, reason => 'upgrading B' });
is($r->{status}, 200, 'POST mode upgrade with node B') or diag $r->{content};
is($r->{json}{node}, $bid, '... node B');

public_503('upgrade on B, public');
public_503('upgrade on B, public HTML', path => '/page', headers => { Accept => 'text/html' });

$_->reset for @M;
$before = NbTest::mock_counts(@M);
$h = $ng->hit(60, '/api/cookie', headers => \%CK, keep => 1);
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($h->{status}{200}, 60, 'cookie holder: 60 of 60 requests 200') or diag explain $h->{status};
is($h->{node}{$bid}, 60, 'cookie holder: all answered by B (X-Node)');
is($d->{$bid}, 60, 'B stats: 60');
is($d->{$aid} + $d->{$cid}, 0, 'A and C stats: 0');
is(scalar(grep { ($_->{headers}{'x-bypass-var'} // '') eq 'v=1' } @{ $h->{res} }), 60, '$nb_maint_bypass is 1 for the cookie holder');

$h = $ng->hit(10, '/api/cookie2', headers => { Cookie => "a=1; $cookie; b=2" });
is($h->{node}{$bid}, 10, 'cookie among other cookies: reaches B');

# nb_maint_bypass_allow in a location and in a second server
$_->reset for @M;
$before = NbTest::mock_counts(@M);
$h = $ng->hit(20, '/trusted/x');
is($h->{status}{200}, 20, 'location with nb_maint_bypass_allow 127.0.0.1/32: 200');
is($h->{node}{$bid}, 20, '... all answered by B');
$h = $ng->hit(20, '/any', port => 'b');
is($h->{status}{200}, 20, 'server with nb_maint_bypass_allow 127.0.0.1/32: 200');
is($h->{node}{$bid}, 20, '... all answered by B');
$d = NbTest::count_delta($before, NbTest::mock_counts(@M));
is($d->{$bid}, 40, 'B stats: 40');
is($d->{$aid} + $d->{$cid}, 0, 'A and C stats: 0');
my $g = parse_response(raw_request($PB, "GET /any HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                   local_addr => '127.0.0.2'));
is($g->{status}, 503, 'second server, client 127.0.0.2 (not allowed): 503');

# ---- cookies that are public ----------------------------------------------------------------
my $flip = substr($sig, -1) eq 'A' ? 'B' : 'A';
my %bad = (
    'forged signature (last char changed)' => "nb_maint_bypass=$exp." . substr($sig, 0, -1) . $flip,
    'forged signature (other text)'        => "nb_maint_bypass=$exp." . ('0' x length $sig),
    'altered expiry (+1000)'               => "nb_maint_bypass=" . ($exp + 1000) . ".$sig",
    'altered expiry (-1)'                  => "nb_maint_bypass=" . ($exp - 1) . ".$sig",
    'malformed: no signature'              => "nb_maint_bypass=$exp",
    'malformed: no dot'                    => "nb_maint_bypass=$exp$sig",
    'malformed: empty'                     => 'nb_maint_bypass=',
    'malformed: garbage'                   => 'nb_maint_bypass=garbage',
    'malformed: empty exp'                 => "nb_maint_bypass=.$sig",
    'malformed: extra part'                => "$cookie.x",
    'malformed: non-numeric exp'           => "nb_maint_bypass=x$exp.$sig",
    'malformed: long'                      => 'nb_maint_bypass=' . ('9' x 300) . '.' . ('a' x 3000),
    'other cookie name'                    => "nb_maint_bypassx=$exp.$sig",
);
for my $k (sort keys %bad) {
    public_503("cookie $k", n => 3, headers => { Cookie => $bad{$k} });
}

# expired cookie
$r = $ng->admin(POST => 'bypass', { ttl => 1 });
is($r->{status}, 200, 'POST bypass ttl 1');
is($r->{json}{ttl}, 1, '... ttl 1');
like($r->{headers}{'set-cookie'} // '', qr/Max-Age=1\b/, '... Max-Age=1');
my $short = $r->{json}{cookie} // '';
sleep 2.2;
public_503('expired cookie (ttl 1, 2.2 s later)', n => 5, headers => { Cookie => $short });

# the good cookie still works afterwards
$h = $ng->hit(5, '/api/still', headers => \%CK);
is($h->{node}{$bid}, 5, 'the valid cookie still reaches B');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
