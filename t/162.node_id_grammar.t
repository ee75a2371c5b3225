# One node id grammar for every source (issue 9, defect 12): server names in
# the configuration, "node" in the API, the state file (node and drain
# list) and Redis.  "unix:/x\r\nSet-Cookie: ..." never reaches a header
# through $nb_maint_node.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $EVIL = "unix:/x\r\nSet-Cookie: evil=1";
my $A = NbTest::Mock->new;

sub gw_http {
    my (%o) = @_;
    return cluster_http(nodes => [$A], check => undef,
                        upstream_extra => $o{upstream_extra} // '',
                        (defined $o{store} ? (store => $o{store}) : ()),
                        locations => "    location = /node { add_header X-Designated \$nb_maint_node always; return 200 \"ok\\n\"; }\n");
}

sub no_injection {
    my ($ng, $label) = @_;
    my $raw = NbTest::raw_request($ng->port, "GET /node HTTP/1.0\r\nHost: x\r\n\r\n", timeout => 3);
    my $p = parse_response($raw);
    ok($p->{status}, "$label: GET answers");
    ok(!exists $p->{headers}{'set-cookie'}, "$label: no injected Set-Cookie header")
        or diag $raw;
    unlike($raw, qr/\r\nSet-Cookie: evil/i, "$label: no raw CR LF from an id in the headers");
}

# ---- the configuration: a server name with CR LF is refused ------------------------------
{
    my $ng = NbTest::Nginx->new(http => gw_http(
        upstream_extra => "    server \"unix:/x\\r\\nSet-Cookie: evil=1\";\n"));
    my ($rc, $out) = $ng->test_config;
    isnt($rc, 0, 'nginx -t refuses a server name that is no valid node id');
    like($out, qr/nb_maint.*not a valid node id/, '... naming the reason');
    unlike($out, qr/\r\nSet-Cookie/, '... and the error log gets no raw CR LF');
    if ($rc == 0) {
        # the old behaviour: it starts and the id reaches a header
        $ng->start;
        $ng->admin(POST => 'mode', { mode => 'maintenance', node => $EVIL, force => JSON::PP::true });
        no_injection($ng, 'config id');
    }
}

# ---- a very long id is refused too (one over the limit) -----------------------------------
{
    my $long = 'unix:/' . ('l' x 200) . '.sock';
    my $ng = NbTest::Nginx->new(http => gw_http(upstream_extra => "    server $long;\n"));
    my ($rc, $out) = $ng->test_config;
    # nginx itself refuses unix paths over 107 bytes; either way: no start
    isnt($rc, 0, 'a 200-byte unix path is refused');
}

# ---- the API -----------------------------------------------------------------------------
my $ng = NbTest::Nginx->new(http => gw_http());
$ng->start;
for my $bad ($EVIL, "127.0.0.1:1\n", "unix:/a\"b", "unix:/a\\b", "unix:/a\x1b[31m", "10.0.0.1:99999",
             '127.0.0.1', ':80', 'unix:/' . ('p' x 130)) {
    my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $bad });
    is($r->{status}, 400, 'API node ' . NbTest::json_encode($bad) . ': 400');
    is($r->{json}{error}{code}, 'bad_field', '... bad_field') or diag $r->{content};
}
no_injection($ng, 'after API attempts');
$ng->stop;

# ---- the state file ---------------------------------------------------------------------
{
    my $ng2 = NbTest::Nginx->new(http => gw_http());
    $ng2->write_file('state.json', NbTest::json_encode({
        version => 5, mode => 'maintenance', node => $EVIL, reason => 'x',
        retry_after => 300, since => '2026-01-01T00:00:00Z', drain => [] }));
    $ng2->start;
    no_injection($ng2, 'state file node');
    my $st = $ng2->status;
    isnt($st->{node} // '', $EVIL, 'the bad id is not the designated node');
    ok(!$st->{store}{ok}, 'status says the stored state is bad') or diag explain $st->{store};
    $ng2->stop;

    my $ng3 = NbTest::Nginx->new(http => gw_http());
    $ng3->write_file('state.json', NbTest::json_encode({
        version => 5, mode => 'normal', node => undef, reason => '',
        retry_after => 300, since => '2026-01-01T00:00:00Z', drain => [$EVIL, $A->id] }));
    $ng3->start;
    like($ng3->error_log, qr/invalid node id in "drain"/, 'an invalid id in the drain list is ignored');
    unlike($ng3->error_log, qr/\r\nSet-Cookie/, '... without writing it raw to the log');
    is($ng3->node($A->id)->{drain}, JSON::PP::true, '... the valid one is kept');
    $ng3->stop;
}

# ---- Redis --------------------------------------------------------------------------------
SKIP: {
    skip 'redis-server not installed', 4 unless -x '/usr/bin/redis-server';
    my $redis = NbTest::Redis->new;
    my $prefix = unique_prefix('ids');
    my $gw = NbTest::Nginx->new(http => gw_http(store => $redis->url(prefix => $prefix)));
    $gw->start;
    $gw->wait_store_ok(1, 10);
    my $r = $gw->admin(POST => 'mode', { mode => 'upgrade', reason => 'r' });
    is($r->{status}, 200, 'redis: a write') or diag $r->{content};
    # another "gateway" writes a state with a bad id straight into Redis
    my $state = NbTest::json_encode({
        version => 999, mode => 'maintenance', node => $EVIL, reason => 'x',
        retry_after => 300, since => '2026-01-01T00:00:00Z', drain => [] });
    my @keys = $redis->cli('KEYS', "$prefix*");
    my ($skey) = grep { /state$/ } @keys;
    ok($skey, "redis: the state key ($skey)") or diag "@keys";
    my ($vkey) = grep { /version$/ } @keys;
    $redis->cli('SET', $skey, $state) if $skey;
    $redis->cli('SET', $vkey, '999') if $vkey;
    sleep 3;
    no_injection($gw, 'redis node');
    isnt($gw->status->{node} // '', $EVIL, 'redis: the bad id is not taken');
}

is($ng->crashes, 0, 'no worker crashed');
done_testing;
