# HAProxy end to end (SPEC section 9): a real haproxy balances three mock
# nodes (roundrobin, http health checks, agent-check against the nginx
# gateway's nb_maint_agent, errorfile 503 written by `nb-maint
# haproxy-errorfile`).  The gateway is only the agent and the admin API:
# normal -> spread over A, B, C; maintenance on B -> everything to B;
# upgrade -> haproxy's 503 with the errorfile, no node reached; force
# restore -> spread again; drain A -> A gets nothing new; undrain -> back.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $haproxy = NbTest::HAProxy::bin();
my ($hrc) = NbTest::run_cmd('/dev/null', $haproxy, '-v');
plan skip_all => "haproxy not installed ($haproxy)" if $hrc != 0;

my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my @M = ($A, $B, $C);
my @ids = map { $_->id } @M;
my ($aid, $bid, $cid) = @ids;
my %name_of = ($aid => 'a', $bid => 'b', $cid => 'c');

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M), agent_opts(upstream => 'app'));
$ng->start;
ok($ng->wait_all_health('up', 5, @ids), 'gateway: A, B, C are up');
my $AP = $ng->port_of('agent');

# the 503 page for haproxy, by the CLI (no gateway asked: --retry-after given)
my $hp = NbTest::HAProxy->new;    # no cfg yet: only the temp dir
my $errfile = $hp->dir . '/nb_maint_503.http';
my ($rc, $out) = NbTest::run_cmd($hp->dir . '/errorfile.out',
    $^X, NbTest::repo_root() . '/scripts/nb-maint', 'haproxy-errorfile', '--retry-after', '30',
    '--out', $errfile);
is($rc, 0, 'nb-maint haproxy-errorfile --retry-after 30 --out FILE') or diag $out;
my $errtext = do { local $/; open my $fh, '<:raw', $errfile or die "$errfile: $!"; <$fh> };
my ($err_head, $err_body) = split /\r\n\r\n/, $errtext, 2;
like($err_head, qr{\AHTTP/1\.[01] 503\b}, 'errorfile: a raw HTTP 503 response');
like($err_body // '', qr/<html/i, 'errorfile: with an HTML page');

my $servers = join '', map {
    my $p = $_->port;
    "    server $name_of{$_->id} 127.0.0.1:$p check inter 200ms rise 2 fall 2"
  . " agent-check agent-port $AP agent-inter 200ms agent-send \"127.0.0.1:$p\\n\"\n"
} @M;
$hp->write_cfg(NbTest::HAProxy->http_cfg(timeout => '10s', backend => <<"EOT"));
    http-check expect string ok
    errorfile 503 $errfile
$servers
EOT
($rc, $out) = $hp->check;
is($rc, 0, 'haproxy -c accepts the config (agent-check, errorfile)') or diag $out;
$hp->start;

# haproxy's view: every server UP and the agent answered
sub hp_state {
    my ($s) = @_;
    return join ', ', map { "$_: " . ($s->{$_}{status} // '?') . " (agent " . ($s->{$_}{agent_status} // '?')
                                  . ", weight " . ($s->{$_}{weight} // '?') . ')' } sort keys %{ $s || {} };
}
sub wait_hp {
    my ($label, $want, $timeout) = @_;    # $want: { a => qr/^UP$/, ... }
    my $t0 = time;
    my $ok = $hp->wait_servers('be', sub {
        my $s = $_[0];
        !grep { !defined $s->{$_} || ($s->{$_}{status} // '') !~ $want->{$_} } keys %$want;
    }, $timeout // 3);
    ok($ok, sprintf("haproxy: %s (%.2f s)", $label, time - $t0)) or diag hp_state($hp->last_servers);
    return $ok;
}

wait_hp('a, b, c UP', { a => qr/^UP$/, b => qr/^UP$/, c => qr/^UP$/ }, 5);
ok($hp->wait_servers('be', sub { !grep { ($_->{agent_status} // '') !~ /L7OK|CHECKED/ } values %{ $_[0] } }, 3),
   'haproxy: the agent checks pass (agent_status L7OK)') or diag hp_state($hp->last_servers);

sub total { my ($d) = @_; my $t = 0; $t += $_ for values %$d; $t }

sub spread_ok {
    my ($label, $n) = @_;
    $n //= 60;
    my $before = NbTest::mock_counts(@M);
    my $h = $hp->hit($n, '/api/spread');
    my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
    is($h->{status}{200} // 0, $n, "$label: $n of $n requests through haproxy 200") or diag explain $h->{status};
    for my $id (@ids) {
        cmp_ok($h->{node}{$id} // 0, '>=', int($n / 5), "$label: $id gets a share (X-Node)");
        is($d->{$id}, $h->{node}{$id} // 0, "$label: ... $id stats agree");
    }
}

# ---- normal ---------------------------------------------------------------------------------
spread_ok('normal');

# ---- maintenance on B -----------------------------------------------------------------------
my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid, reason => 'haproxy e2e' });
is($r->{status}, 200, 'gateway: maintenance on B') or diag $r->{content};
wait_hp('a and c MAINT, b UP', { a => qr/MAINT/, b => qr/^UP$/, c => qr/MAINT/ }, 3);
{
    my $before = NbTest::mock_counts(@M);
    my $h = $hp->hit(60, '/api/maint');
    my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
    is($h->{status}{200} // 0, 60, 'maintenance: 60 of 60 requests 200') or diag explain $h->{status};
    is($h->{node}{$bid} // 0, 60, 'maintenance: all 60 answered by B (X-Node)') or diag explain $h->{node};
    is($d->{$bid}, 60, 'maintenance: B stats +60');
    is($d->{$aid}, 0, 'maintenance: A got nothing');
    is($d->{$cid}, 0, 'maintenance: C got nothing');
}

# ---- upgrade: haproxy's 503 with the errorfile, no node reached -----------------------------------
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid });
is($r->{status}, 200, 'gateway: upgrade (node B)') or diag $r->{content};
wait_hp('a, b, c MAINT', { a => qr/MAINT/, b => qr/MAINT/, c => qr/MAINT/ }, 3);
{
    my $before = NbTest::mock_counts(@M);
    my $h = $hp->hit(30, '/api/upgrade', keep => 1);
    my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
    is($h->{status}{503} // 0, 30, 'upgrade: 30 of 30 requests 503') or diag explain $h->{status};
    is(total($d), 0, 'upgrade: zero requests reached A, B or C (mock stats)') or diag explain $d;
    my $res = $h->{res}[0];
    is($res->{headers}{'retry-after'}, '30', 'upgrade: Retry-After: 30 (from the errorfile)');
    like($res->{headers}{'cache-control'} // '', qr/no-store/, 'upgrade: Cache-Control: no-store');
    like($res->{headers}{'content-type'} // '', qr{^text/html}, 'upgrade: Content-Type text/html');
    ok(!defined $res->{headers}{'x-node'}, 'upgrade: no X-Node (no node answered)');
    is($res->{content}, $err_body, 'upgrade: the body is the page of the errorfile, byte for byte');
    unlike($res->{content} // '', qr/No server is available/, "upgrade: not haproxy's built-in 503");
    my @bad = grep { $_->{status} != 503 || ($_->{content} // '') ne $err_body } @{ $h->{res} };
    is(scalar @bad, 0, 'upgrade: every 503 carries the errorfile page');
}

# ---- force restore: spread again ------------------------------------------------------------------
$r = $ng->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{status}, 200, 'gateway: force restore') or diag $r->{content};
is($r->{json}{mode}, 'normal', '... mode normal');
wait_hp('a, b, c UP again', { a => qr/^UP$/, b => qr/^UP$/, c => qr/^UP$/ }, 5);
spread_ok('after restore');

# ---- drain A -----------------------------------------------------------------------------------------
$r = $ng->admin(POST => "nodes/$aid/drain");
is($r->{status}, 200, 'gateway: drain A') or diag $r->{content};
wait_hp('a DRAIN, b and c UP', { a => qr/DRAIN/, b => qr/^UP$/, c => qr/^UP$/ }, 3);
{
    my $before = NbTest::mock_counts(@M);
    my $h = $hp->hit(60, '/api/drain');
    my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
    is($h->{status}{200} // 0, 60, 'A drained: 60 of 60 requests 200') or diag explain $h->{status};
    ok(!$h->{node}{$aid}, 'A drained: none answered by A (X-Node)') or diag explain $h->{node};
    is($d->{$aid}, 0, 'A drained: A stats unchanged');
    is($d->{$bid} + $d->{$cid}, 60, 'A drained: B and C took all 60');
    cmp_ok($d->{$bid}, '>=', 15, 'A drained: B gets a share');
    cmp_ok($d->{$cid}, '>=', 15, 'A drained: C gets a share');
}
$r = $ng->admin(POST => "nodes/$aid/undrain");
is($r->{status}, 200, 'gateway: undrain A') or diag $r->{content};
wait_hp('a, b, c UP after undrain', { a => qr/^UP$/, b => qr/^UP$/, c => qr/^UP$/ }, 3);
spread_ok('after undrain');

ok($hp->running, 'haproxy still running');
my @crash = $ng->crashes;
is(scalar @crash, 0, 'gateway error.log: no worker exited on a signal') or diag join "\n", @crash;
done_testing;
