#!/usr/bin/perl
# nb-maint against a real gateway and three mock nodes: -o json on every
# command (and --help says so), errors as {"error":{...}} on stderr, the
# exit codes 0-5 (refused, usage, conflict, unavailable, not the admin API,
# timed out), restore --wait timing out naming the node still awaited with
# its reason, draining the last undrained node needs --force.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbCli;
use JSON::PP;

my $J = JSON::PP->new->utf8->canonical;
my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my ($aid, $bid, $cid) = map { $_->id } $A, $B, $C;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B, $C], locations => <<'EOT'));
    location /other/ { default_type application/json; return 200 '{"mode":"normal","ok":true}'; }
    location /html/ { default_type text/html; return 404 '<html>not here</html>'; }
EOT
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid, $cid), 'nodes up') or BAIL_OUT('gateway not ready');

my %E = (NB_MAINT_URL => $ng->url('/_nb_maint/'), NB_MAINT_TOKEN => NbTest::ADMIN_TOKEN);
my $CFG = NbCli::dir() . '/config';
sub cli { my $env = ref $_[0] eq 'HASH' ? shift : {}; NbCli::run({ env => { %E, NB_MAINT_CONFIG => $CFG, %$env } }, @_) }
sub jdec { my $r = eval { $J->decode($_[0]) }; $r }
sub err_of { my $e = jdec($_[0]); ref $e eq 'HASH' && ref $e->{error} eq 'HASH' ? $e->{error} : {} }
sub node_of { my ($s, $id) = @_; (grep { $_->{id} eq $id } map { @{ $_->{nodes} } } @{ $s->{upstreams} })[0] || {} }

my ($rc, $out, $err);

# ---------------------------------------------------------------- -o json, every command
($rc, $out, $err) = cli('-o', 'json', 'status');
my $s = jdec($out);
is($rc, 0, 'status -o json: exit 0') or diag $err;
is($s->{mode}, 'normal', '... the GET status document');
is(scalar @{ $s->{upstreams}[0]{nodes} }, 3, '... three nodes');

($rc, $out) = cli('node', $aid, '--output=json');
is(jdec($out)->{id}, $aid, 'node ID --output=json: the node');

($rc, $out, $err) = cli('maintenance', '--node', $aid, '--reason', 'json', '-o', 'json');
is($rc, 0, 'maintenance -o json: exit 0') or diag $err;
is_deeply([@{ jdec($out) || {} }{qw(mode node reason)}], ['maintenance', $aid, 'json'], '... the answered status');

($rc, $out, $err) = cli('restore', '--wait', '--timeout', '20', '-o', 'json');
is($rc, 0, 'restore --wait -o json: exit 0') or diag $err;
is(jdec($out)->{mode}, 'normal', '... the final status only (mode normal)');

($rc, $out, $err) = cli('drain', $bid, '-o', 'json');
my $d = jdec($out) || {};
is($rc, 0, 'drain -o json: exit 0') or diag $err;
is($d->{nodes}[0]{id}, $bid, '... {"nodes":[B]}');
ok($d->{nodes}[0]{drain}, '... drained');
($rc, $out) = cli('undrain', $bid, '-o', 'json');
ok(!(jdec($out) || {})->{nodes}[0]{drain}, 'undrain -o json: B not drained');

($rc, $out) = cli('bypass', '--ttl', '60', '-o', 'json');
like((jdec($out) || {})->{cookie} // '', qr/^nb_maint_bypass=\S+$/, 'bypass -o json: cookie');

($rc, $out) = cli('events', '--since', '0', '-o', 'json');
ok(ref((jdec($out) || {})->{events}) eq 'ARRAY', 'events -o json: {"events":[...]}');

my $ef = NbCli::dir() . '/503.http';
($rc, $out) = cli('haproxy-errorfile', '--out', $ef, '-o', 'json');
my $x = jdec($out) || {};
is($x->{file}, $ef, 'haproxy-errorfile --out -o json: the file');
is($x->{bytes}, -s $ef, '... its size');
($rc, $out) = cli('haproxy-errorfile', '--retry-after', '5', '-o', 'json');
like((jdec($out) || {})->{response} // '', qr{^HTTP/1\.0 503 }, 'haproxy-errorfile -o json: the response');

($rc, $out) = cli('config', 'list', '-o', 'json');
is_deeply((jdec($out) || {})->{contexts}, [], 'config list -o json: no contexts yet');

($rc, $out, $err) = cli('rolling-restart', '--restart-cmd', 'echo restarting {node}', '--nodes', $cid,
    '--interval', '0.1', '--timeout', '5', '--health-timeout', '20', '-o', 'json');
is($rc, 0, 'rolling-restart -o json: exit 0') or diag "$out\n$err";
my @ev = map { jdec($_) } grep { /\S/ } split /\n/, $out;
ok(@ev && !grep({ !defined } @ev), 'rolling-restart -o json: every line is a JSON object') or diag $out;
is($ev[0]{event}, 'start', '... "start" first');
is($ev[-1]{event}, 'done', '... "done" last');
is(scalar(grep { ($_->{event} // '') eq 'step' && $_->{result} eq 'ok' } @ev), 6, '... six steps ok');
ok((grep { ($_->{event} // '') eq 'output' && $_->{line} eq "restarting $cid" } @ev), '... the command output as an event');

for my $c (qw(status node maintenance upgrade restore drain undrain bypass events haproxy-errorfile
              rolling-restart startup upgrade-run maintenance-run config)) {
    ($rc, $out) = cli($c, '--help');
    ok($rc == 0 && $out =~ /^\s+-o json\s+print \S/m && $out =~ /"error"/, "$c --help documents -o json");
}

# ---------------------------------------------------------------- errors: envelope and exit codes
($rc, $out, $err) = cli({ NB_MAINT_TOKEN => 'wrong' }, 'status', '-o', 'json');
is($rc, 1, 'bad token: exit 1 (refused)');
is(err_of($err)->{code}, 'unauthorized', '... {"error":{"code":"unauthorized"}} on stderr') or diag $err;
is($out, '', '... nothing on stdout');

($rc, $out, $err) = cli('node', '127.0.0.1:1', '-o', 'json');
is($rc, 1, 'GET nodes/<unknown>: 404, exit 1') or diag $err;
is(err_of($err)->{http_status}, 404, '... http_status 404');

($rc, $out, $err) = cli('maintenance', '--node', '127.0.0.1:1', '-o', 'json');
is($rc, 1, 'unknown node: exit 1');
is(err_of($err)->{code}, 'unknown_node', '... code unknown_node');
is(err_of($err)->{http_status}, 400, '... http_status 400');

($rc, $out, $err) = cli('restore');
is($rc, 3, 'restore while normal: exit 3 (409 conflict)') or diag $err;
like($err, qr/^nb-maint: invalid_transition: /, '... text error');

my $v = $ng->status->{version};
($rc, $out, $err) = cli('--if-match', $v - 1, 'upgrade', '-o', 'json');
is($rc, 3, 'stale If-Match: exit 3') or diag $err;
is($ng->status->{mode}, 'normal', '... nothing changed');

($rc, $out, $err) = cli({ NB_MAINT_URL => 'http://127.0.0.1:' . NbTest::free_port() . '/_nb_maint/' }, 'status', '-o', 'json');
is($rc, 4, 'nothing listening: exit 4 (unavailable)');
is(err_of($err)->{code}, 'unreachable', '... code unreachable');

($rc, $out, $err) = cli({ NB_MAINT_URL => $ng->url('/other/') }, 'status');
is($rc, 4, 'a URL answering other JSON: exit 4, not a success') or diag $out;
like($err, qr/did not answer like the nb_maint admin API.*admin location/, '... says it is not the admin API');
is($out, '', '... prints no status');
($rc, $out, $err) = cli({ NB_MAINT_URL => $ng->url('/other/') }, 'maintenance', '--node', $aid, '-o', 'json');
is($rc, 4, '... a write too: exit 4');
is(err_of($err)->{code}, 'not_admin_api', '... code not_admin_api');
is($ng->status->{mode}, 'normal', '... (the gateway unchanged)');
($rc, $out, $err) = cli({ NB_MAINT_URL => $ng->url('/html/') }, 'status');
is($rc, 4, 'a URL answering an HTML 404: exit 4');
like($err, qr/without the \{"error":\.\.\.\} envelope/, '... no envelope');

($rc, $out, $err) = cli('-o', 'json', 'drain');
is($rc, 2, 'usage error: exit 2');
is(err_of($err)->{code}, 'usage', '... code usage as JSON');
($rc, $out, $err) = cli({ NB_MAINT_URL => undef }, 'status');
is($rc, 2, 'no URL and no context: exit 2');

# ---------------------------------------------------------------- timed out: restore --wait names the node
($rc, $out, $err) = cli('maintenance', '--node', $aid);
is($rc, 0, 'maintenance on A');
$C->set_state('commanding', command => 'upgrade', seconds => 60);
ok(defined $ng->wait_health($cid, 'commanding', 5), 'C busy: APP_COMMANDING upgrade');
($rc, $out, $err) = cli('restore', '--wait', '--timeout', '2', '--interval', '0.2');
is($rc, 5, 'restore --wait times out: exit 5') or diag "$out\n$err";
like($out, qr/waiting for node \Q$cid\E: APP_COMMANDING upgrade \(\d+s\), \d+s$/m,
     '... progress: "node C: APP_COMMANDING upgrade (Ns), Ns"') or diag $out;
like($err, qr/timed out after 2s .*still waiting for node \Q$cid\E \(APP_COMMANDING upgrade/, '... names C and why');
like($err, qr/restore --force/, '... suggests --force');
($rc, $out, $err) = cli('restore', '--wait', '--timeout', '1', '-o', 'json');
is($rc, 5, 'again with -o json: exit 5');
is_deeply(err_of($err)->{pending}, [$cid], '... "pending":[C] in the error') or diag $err;
is($out, '', '... no progress lines on stdout');
$C->set_state('running');
ok(defined $ng->wait_health($cid, 'up', 5), 'C up again');
($rc, $out, $err) = cli('restore', '--wait', '--timeout', '20');
is($rc, 0, 'restore --wait: exit 0') or diag $err;

# ---------------------------------------------------------------- the last undrained node
($rc) = cli('drain', $aid, $bid);
is($rc, 0, 'drain A B: exit 0');
($rc, $out, $err) = cli('drain', $cid, '-o', 'json');
is($rc, 1, 'drain C, the last undrained node: refused, exit 1');
is(err_of($err)->{code}, 'last_node', '... code last_node');
like(err_of($err)->{message} // '', qr/--force/, '... suggests --force');
ok(!node_of($ng->status, $cid)->{drain}, '... C not drained');
($rc) = cli('drain', $cid, '--force');
is($rc, 0, 'drain C --force: exit 0');
ok(node_of($ng->status, $cid)->{drain}, '... C drained');
($rc) = cli('undrain', $aid, $bid, $cid);
is($rc, 0, 'undrain A B C: exit 0');
($rc, $out, $err) = cli('drain', $aid, $bid, $cid);
is($rc, 1, 'drain every node at once: refused, exit 1');
ok(!grep({ $_->{drain} } @{ $ng->status->{upstreams}[0]{nodes} }), '... none drained');

is(scalar $ng->crashes, 0, 'no worker crashed');
is_deeply(NbCli::warnings(), [], 'no Perl warnings from nb-maint');
done_testing;
