# HAProxy answers like the gateway when no server is usable (SPEC sections 7
# and 9): `nb-maint haproxy-errorfile --out FILE --snippet` writes the pair
# (the page, NocoBase's JSON envelope) and prints the backend lines, used
# here as printed.  Through a real haproxy: /api/ and Accept:
# application/json get the JSON envelope, a browser the page, both with
# Retry-After and Cache-Control: no-store; with a usable server nothing is
# intercepted.  upgrade-run --haproxy-errorfile --haproxy-reload rewrites
# the pair and reloads haproxy, so during the upgrade HAProxy shows the real
# reason; back to normal, the files are generic again.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $haproxy = NbTest::HAProxy::bin();
my ($hrc) = NbTest::run_cmd('/dev/null', $haproxy, '-v');
plan skip_all => "haproxy not installed ($haproxy)" if $hrc != 0;

my $CLI = NbTest::repo_root() . '/scripts/nb-maint';
my @M = map { NbTest::Mock->new } 1 .. 2;
my @ids = map { $_->id } @M;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M), agent_opts(upstream => 'app'));
$ng->start;
ok($ng->wait_all_health('up', 5, @ids), 'gateway: nodes up');
my $AP = $ng->port_of('agent');
local $ENV{NB_MAINT_URL} = $ng->url('/_nb_maint/');
local $ENV{NB_MAINT_TOKEN} = NbTest::ADMIN_TOKEN;

my $hp = NbTest::HAProxy->new(master_worker => 1);
my $dir = $hp->dir;
my $page = "$dir/nb_maint_503.http";
my $api = "$dir/nb_maint_503_api.http";

sub slurp { my ($f) = @_; open my $fh, '<:raw', $f or return undef; local $/; scalar <$fh> }
sub cli {
    my (@a) = @_;
    return NbTest::run_cmd("$dir/cli.out", $^X, $CLI, @a);
}

# ---- the pair, from the gateway's state (normal: the generic page) ----------------------------
my ($rc, $out) = cli('haproxy-errorfile', '--out', $page, '--snippet', '--backend', 'be');
is($rc, 0, 'haproxy-errorfile --out FILE --snippet: exit 0') or diag $out;
like($out, qr/wrote \Q$page\E/, '... wrote the page');
like($out, qr/wrote \Q$api\E/, '... and the JSON twin (FILE with _api)');
my @lines = grep { /^\s+(?:http-request|errorfile)\s/ } split /\n/, $out;
is(scalar @lines, 3, '... and printed three backend lines') or diag $out;
like(join("\n", @lines), qr/path_beg \/api\//, '... one for /api/');
my $j = slurp($api) // '';
like($j, qr{\AHTTP/1\.[01] 503 .*\r\nContent-Type: application/json\r\n}s, 'JSON file: raw 503, application/json');
my ($jh, $jb) = split /\r\n\r\n/, $j, 2;
my $env = eval { decode_json($jb) } || {};
is($env->{error}{code}, 'APP_STOPPED', 'JSON file in normal mode: APP_STOPPED (no usable server)');
is($env->{error}{nb_maint}, 'no_healthy_node', '... nb_maint no_healthy_node');
# no usable server in normal mode: as the module's page, the truth and a
# quick retry (issue 18 item 4), not "Scheduled maintenance" for 300 s
is($env->{error}{retry_after}, 5, '... retry_after 5');
like($jh, qr/\r\nRetry-After: 5\r\n/, '... Retry-After: 5');
{
    my ($ph, $pb) = split /\r\n\r\n/, slurp($page) // '', 2;
    like($ph, qr/\r\nRetry-After: 5\r\n/, 'page file in normal mode: Retry-After: 5');
    like($pb // '', qr/No application node is available/, '... says no node is available');
    unlike($pb // '', qr/Scheduled maintenance/, '... not "Scheduled maintenance"');
    like($pb // '', qr/http-equiv="refresh" content="5"/, '... refreshes after 5 s');
}

my $servers = join '', map {
    my $p = $_->port;
    "    server s$p 127.0.0.1:$p check inter 200ms rise 1 fall 1"
  . " agent-check agent-port $AP agent-inter 200ms agent-send \"127.0.0.1:$p\\n\"\n"
} @M;
my $snippet = join "\n", @lines;
$hp->write_cfg(NbTest::HAProxy->http_cfg(timeout => '10s', backend => <<"EOT"));
    http-check expect status 200
$snippet
$servers
EOT
($rc, $out) = $hp->check;
is($rc, 0, 'haproxy -c accepts the printed lines as they are') or diag $out;
$hp->start;
ok($hp->wait_servers('be', sub { 2 == grep { ($_->{status} // '') eq 'UP' } values %{ $_[0] } }, 5),
   'haproxy: both servers UP') or diag explain $hp->last_servers;

# ---- a usable server: nothing intercepted ---------------------------------------------------------
my $r = $hp->get('/api/users:list');
is($r->{status}, 200, 'normal: /api/ reaches a node (200)');
$r = $hp->get('/admin', { Accept => 'text/html' });
is($r->{status}, 200, 'normal: a browser page reaches a node (200)');

# ---- upgrade-run with --haproxy-errorfile/--haproxy-reload: the real reason ---------------------
my $seen = "$dir/seen";
my $probe = "$dir/probe.pl";
$hp->write_file($probe, <<'EOT');
use strict; use warnings; use HTTP::Tiny; use Time::HiRes qw(sleep time);
my ($port, $out) = @ARGV;
my $ua = HTTP::Tiny->new(timeout => 5, keep_alive => 0);
# the reloaded haproxy: its agent checks see "maint" within 200 ms
my $end = time + 5;
my @r;
while (time < $end) {
    @r = ($ua->get("http://127.0.0.1:$port/api/users:list"),
          $ua->get("http://127.0.0.1:$port/admin", { headers => { Accept => 'text/html,*/*' } }),
          $ua->get("http://127.0.0.1:$port/other", { headers => { Accept => 'application/json, text/plain, */*' } }));
    last if 3 == grep { $_->{status} == 503 } @r;
    sleep 0.1;
}
open my $fh, '>', $out or die;
for my $x (@r) {
    print $fh join("\t", $x->{status}, $x->{headers}{'content-type'} // '', $x->{headers}{'retry-after'} // '',
                   $x->{headers}{'cache-control'} // '', $x->{headers}{'x-nb-maint'} // '',
                   unpack('H*', $x->{content} // '')), "\n";
}
close $fh;
EOT
my $reload = "kill -USR2 " . $hp->pid . " && sleep 1";
($rc, $out) = cli('upgrade-run', '--node', $ids[0], '--reason', 'Database <migration> v2', '--retry-after', '42',
                  '--stop-cmd', 'true', '--start-cmd', 'true', '--verify-cmd', "$^X $probe " . $hp->port . " $seen",
                  '--drain-timeout', '3', '--timeout', '20', '--interval', '0.1', '--agent-interval', '0',
                  '--haproxy-errorfile', $page, '--haproxy-reload', $reload);
is($rc, 0, 'upgrade-run --haproxy-errorfile --haproxy-reload: exit 0') or diag $out;
like($out, qr/rewrite HAProxy's 503 files \(upgrade mode\) and reload HAProxy: kill -USR2/,
     '... shows the step rewriting the files and reloading HAProxy');
like($out, qr/rewrite HAProxy's 503 files \(mode normal\)/, '... and again once normal');

my @seen = map { [ split /\t/, $_, -1 ] } split /\n/, slurp($seen) // '';
is(scalar @seen, 3, 'the probe ran during the upgrade (after the reload)') or diag $out;
my %by = (api => $seen[0], page => $seen[1], accept => $seen[2]);
for my $k (sort keys %by) {
    my ($st, $ct, $ra, $cc, $xm) = @{ $by{$k} || [] };
    is($st, 503, "during the upgrade, $k: 503 from HAProxy");
    is($ra, 42, "... $k: Retry-After 42 (the run's --retry-after)");
    like($cc // '', qr/no-store/, "... $k: Cache-Control no-store");
    is($xm, 'upgrade', "... $k: X-NB-Maint upgrade");
}
for my $k (qw(api accept)) {
    my $b = pack 'H*', $by{$k}[5] // '';
    like($by{$k}[1] // '', qr{^application/json}, "$k: Content-Type application/json");
    my $e = eval { decode_json($b) } || {};
    is_deeply($e, { error => { status => 503, maintaining => JSON::PP::true, code => 'APP_COMMANDING',
                               command => { name => 'upgrade' }, message => 'Database <migration> v2',
                               nb_maint => 'upgrade', retry_after => 42 } },
              "$k: NocoBase's envelope with the real reason (SPEC 7)") or diag $b;
}
{
    my $b = pack 'H*', $by{page}[5] // '';
    like($by{page}[1] // '', qr{^text/html}, 'browser: Content-Type text/html');
    like($b, qr/Database &lt;migration&gt; v2/, 'browser: the page shows the real reason, HTML-escaped');
    like($b, qr/Upgrade in progress/, 'browser: the upgrade heading');
}

# back to normal: generic files again, and traffic flows
$env = eval { decode_json((split /\r\n\r\n/, slurp($api) // '', 2)[1]) } || {};
is($env->{error}{code}, 'APP_STOPPED', 'after the run: the JSON file is generic again (APP_STOPPED)');
is($env->{error}{retry_after}, 5, '... retry_after 5 again');
unlike(slurp($page) // '', qr/migration/, '... and the page no longer shows the upgrade reason');
ok($hp->wait_servers('be', sub { 2 == grep { ($_->{status} // '') eq 'UP' } values %{ $_[0] } }, 5),
   'haproxy: both servers UP again');
is($hp->get('/api/x')->{status}, 200, 'after the run: /api/ reaches a node');
ok($hp->running, 'haproxy master still running after the reloads');

# ---- usage --------------------------------------------------------------------------------------
($rc, $out) = cli('upgrade-run', '--stop-cmd', 'true', '--start-cmd', 'true', '--haproxy-reload', 'true');
is($rc, 2, '--haproxy-reload without --haproxy-errorfile: usage error (2)');
like($out, qr/--haproxy-reload needs --haproxy-errorfile/, '... saying so') or diag $out;
is($ng->status->{mode}, 'normal', '... and nothing changed');

is(scalar $ng->crashes, 0, 'gateway: no worker exited on a signal');
done_testing;
