# Admin API errors: every error code of the contract, correct JSON body,
# state never changed by a rejected request, workers never crash.
use strict;
use warnings;
use utf8;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $NODE = '127.0.0.1:13001';
my $ng = NbTest::Nginx->new(http => std_http(store => 'file:%%PREFIX%%/sd/state.json'));
mkdir $ng->prefix . '/sd' or die $!;
$ng->start;

my $before;
sub snapshot { $before = state_fields($ng->status) }

# normalise a raw response like an HTTP::Tiny one
sub raw_res {
    my ($raw) = @_;
    my $p = parse_response($raw);
    my $res = { status => $p->{status}, headers => $p->{headers}, content => $p->{body} };
    $res->{json} = eval { json_decode($p->{body}) };
    return $res;
}

# check an error answer, then that the state is unchanged and nginx answers
sub check_err {
    my ($label, $res, $status, $codes) = @_;
    $codes = [$codes] unless ref $codes;
    my $ok = is($res->{status}, $status, "$label: status $status");
    my $code = ref $res->{json} eq 'HASH' && ref $res->{json}{error} eq 'HASH' ? $res->{json}{error}{code} : undef;
    $ok &&= ok(defined $code && grep({ $code eq $_ } @$codes),
               "$label: error.code " . join('|', @$codes) . ' (got ' . ($code // 'none') . ')');
    $ok &&= ok(defined $res->{json}{error}{message} && !ref $res->{json}{error}{message}
               && length $res->{json}{error}{message}, "$label: error.message is a non-empty string");
    like($res->{headers}{'content-type'} // '', qr{^application/json}, "$label: application/json");
    diag("$label: got $res->{status} " . substr($res->{content} // '', 0, 300)) unless $ok;
    if ($status == 401) {
        like($res->{headers}{'www-authenticate'} // '', qr/^Bearer\b/i, "$label: WWW-Authenticate: Bearer");
    }
    my $now = eval { state_fields($ng->status) };
    ok($now, "$label: nginx still answers") or diag $@;
    # re-baseline after a failure so that one bug does not fail every later check
    is_deeply($now, $before, "$label: state unchanged") or $before = $now if $now;
}

my %JSONCT = ('Content-Type' => 'application/json');
my $AUTH = 'Bearer ' . ADMIN_TOKEN;

# ---- phase A: in upgrade mode -------------------------------------------------
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'baseline', retry_after => 123 });
is($r->{status}, 200, 'baseline: upgrade') or diag $r->{content};
snapshot();

# 400 bad_json
for my $body ('{"mode":', 'not json', '{"mode":"upgrade",}', q({'mode':'upgrade'}),
              '{"mode":"maintenance","node":"127.0.0.1:13001"} trailing garbage',
              '{"mode" "upgrade"}', "{\"mode\":\"upgrade\"\x00}") {
    (my $l = $body) =~ s/[^\x20-\x7e]/?/g;
    check_err("bad_json <$l>", $ng->admin(POST => 'mode', $body), 400, 'bad_json');
}
for my $body ('', '[]', '"maintenance"', 'null', '42', '[{"mode":"maintenance"}]') {
    check_err("not an object <$body>", $ng->admin(POST => 'mode', $body), 400, ['bad_json', 'bad_field']);
}
my $deep = '{"mode":"maintenance","node":"127.0.0.1:13001","reason":' . ('[' x 30000) . (']' x 30000) . '}';
check_err('30000-deep nesting', $ng->admin(POST => 'mode', $deep), 400, ['bad_json', 'bad_field']);
check_err('lone surrogate escape', $ng->admin(POST => 'mode', '{"mode":"maintenance","node":"127.0.0.1:13001","reason":"\ud800"}'),
          400, ['bad_json', 'bad_field']);

# 400 bad_field
my @bad_field = (
    [ 'mode not a string'        => { mode => 1 } ],
    [ 'mode null'                => { mode => undef } ],
    [ 'mode missing'             => { reason => 'no mode' } ],
    [ 'unknown mode'             => { mode => 'bogus' } ],
    [ 'empty mode'               => { mode => '' } ],
    [ 'reason not a string'      => { mode => 'maintenance', node => $NODE, reason => 123 } ],
    [ 'reason 513 bytes'         => { mode => 'maintenance', node => $NODE, reason => 'r' x 513 } ],
    [ 'reason 513 bytes (171 chars)' => { mode => 'maintenance', node => $NODE, reason => '升' x 171 } ],
    [ 'retry_after a string'     => { mode => 'maintenance', node => $NODE, retry_after => '120' } ],
    [ 'retry_after fraction'     => { mode => 'maintenance', node => $NODE, retry_after => 1.5 } ],
    [ 'retry_after negative'     => { mode => 'maintenance', node => $NODE, retry_after => -1 } ],
    [ 'retry_after 86401'        => { mode => 'maintenance', node => $NODE, retry_after => 86401 } ],
    [ 'retry_after bool'         => { mode => 'maintenance', node => $NODE, retry_after => JSON::PP::true } ],
    [ 'unknown field'            => { mode => 'maintenance', node => $NODE, foo => 1 } ],
    [ 'node a number'            => { mode => 'maintenance', node => 13001 } ],
    [ 'node an array'            => { mode => 'maintenance', node => [$NODE] } ],
);
for my $c (@bad_field) {
    check_err("bad_field: $c->[0]", $ng->admin(POST => 'mode', $c->[1]), 400, 'bad_field');
}
check_err('bad_field: retry_after 1e20',
          $ng->admin(POST => 'mode', '{"mode":"maintenance","node":"127.0.0.1:13001","retry_after":100000000000000000000}'),
          400, 'bad_field');
check_err('node not host:port', $ng->admin(POST => 'mode', { mode => 'maintenance', node => 'not-a-node' }),
          400, ['bad_field', 'unknown_node']);
for my $c ([ 'invalid byte 0xff' => "bad \xff\xfe bytes" ],
           [ 'overlong encoding' => "overlong \xc0\xaf" ],
           [ 'UTF-16 surrogate'  => "surrogate \xed\xa0\x80" ],
           [ 'truncated sequence' => "cut \xe5\x8d" ]) {
    my $body = qq({"mode":"maintenance","node":"$NODE","reason":"$c->[1]"});
    check_err("non-UTF-8 reason: $c->[0]", $ng->admin(POST => 'mode', $body), 400, 'bad_field');
}
check_err('restore: force not a bool', $ng->admin(POST => 'restore', { force => 'yes' }), 400, 'bad_field');
check_err('restore: unknown field', $ng->admin(POST => 'restore', { force => JSON::PP::false, x => 1 }), 400, 'bad_field');
check_err('restore: bad JSON', $ng->admin(POST => 'restore', '{"force":'), 400, 'bad_json');

# 400 node_required
check_err('maintenance without node', $ng->admin(POST => 'mode', { mode => 'maintenance' }), 400, 'node_required');
check_err('maintenance with empty node', $ng->admin(POST => 'mode', { mode => 'maintenance', node => '' }),
          400, ['node_required', 'bad_field']);

# 400 bad_header
for my $im ('"abc"', 'abc', '""', '"1x"') {
    check_err("If-Match: $im", $ng->admin(POST => 'mode', { mode => 'maintenance', node => $NODE }, { 'If-Match' => $im }),
              400, 'bad_header');
}

# 409 version_conflict
for my $im (qq("@{[$before->{version} - 1]}"), qq("@{[$before->{version} + 5]}"), $before->{version} - 1) {
    check_err("stale If-Match: $im",
              $ng->admin(POST => 'mode', { mode => 'maintenance', node => $NODE }, { 'If-Match' => $im }),
              409, 'version_conflict');
}
check_err('stale If-Match on restore',
          $ng->admin(POST => 'restore', undef, { 'If-Match' => qq("@{[$before->{version} - 1]}") }),
          409, 'version_conflict');

# 401 unauthorized, on a read and on a write
my @bad_auth = (
    [ 'no Authorization'      => undef ],
    [ 'wrong token'           => 'Bearer wrong-token' ],
    [ 'token prefix'          => 'Bearer test-token-12' ],
    [ 'token plus a char'     => 'Bearer test-token-1234' ],
    [ 'token name'            => 'Bearer ops' ],
    [ 'name:token'            => 'Bearer ops:test-token-123' ],
    [ 'comment line as token' => 'Bearer token)' ],   # '# ...(name:token)' must not be a token
    [ 'Basic scheme'          => 'Basic b3BzOnRlc3QtdG9rZW4tMTIz' ],
    [ 'no scheme'             => 'test-token-123' ],
    [ 'empty bearer'          => 'Bearer ' ],
    [ 'bare Bearer'           => 'Bearer' ],
);
for my $c (@bad_auth) {
    check_err("401 GET status: $c->[0]", $ng->admin(GET => 'status', undef, { Authorization => $c->[1] }),
              401, 'unauthorized');
    check_err("401 POST mode: $c->[0]",
              $ng->admin(POST => 'mode', { mode => 'maintenance', node => $NODE }, { Authorization => $c->[1] }),
              401, 'unauthorized');
}
check_err('401 GET events without token', $ng->admin(GET => 'events?since=0', undef, { Authorization => undef }),
          401, 'unauthorized');

# 404 not_found
check_err('404 GET nope', $ng->admin(GET => 'nope'), 404, 'not_found');
check_err('404 GET statusx', $ng->admin(GET => 'statusx'), 404, 'not_found');
check_err('404 POST modes', $ng->admin(POST => 'modes', { mode => 'maintenance', node => $NODE }), 404, 'not_found');

# 405 method_not_allowed + Allow
for my $c ([ DELETE => 'status', 'GET' ], [ POST => 'status', 'GET' ], [ GET => 'mode', 'POST' ],
           [ PUT => 'mode', 'POST' ], [ GET => 'restore', 'POST' ], [ DELETE => 'events', 'GET' ]) {
    my ($m, $p, $allow) = @$c;
    my $res = $ng->admin($m => $p, ($m eq 'PUT' ? { mode => 'maintenance', node => $NODE } : undef));
    check_err("405 $m $p", $res, 405, 'method_not_allowed');
    like($res->{headers}{allow} // '', qr/\b$allow\b/, "405 $m $p: Allow lists $allow");
}

# 413 body_too_large: 70 KiB with Content-Length, and chunked
my $big = '{"mode":"maintenance","node":"127.0.0.1:13001","reason":"' . ('a' x (70 * 1024)) . '"}';
my $hdr = "POST /_nb_maint/mode HTTP/1.1\r\nHost: localhost\r\nAuthorization: $AUTH\r\n"
        . "Content-Type: application/json\r\nConnection: close\r\n";
check_err('413 70 KiB (Content-Length)',
          raw_res(raw_request($ng->port, $hdr . 'Content-Length: ' . length($big) . "\r\n\r\n" . $big)),
          413, 'body_too_large');
check_err('413 70 KiB via HTTP::Tiny', $ng->admin(POST => 'mode', $big), 413, 'body_too_large');
my $chunked = join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) } unpack('(a8192)*', $big)) . "0\r\n\r\n";
check_err('413 70 KiB chunked',
          raw_res(raw_request($ng->port, $hdr . "Transfer-Encoding: chunked\r\n\r\n" . $chunked)),
          413, 'body_too_large');
my $pad = sub { my $n = shift; '{"mode":"upgrade"' . (' ' x ($n - 18)) . '}' };
is(length $pad->(65537), 65537, 'padding helper');
check_err('413 65537 bytes', $ng->admin(POST => 'mode', $pad->(65537)), 413, 'body_too_large');
my $c65537 = join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) } unpack('(a1000)*', $pad->(65537))) . "0\r\n\r\n";
check_err('413 65537 bytes chunked',
          raw_res(raw_request($ng->port, $hdr . "Transfer-Encoding: chunked\r\n\r\n" . $c65537)),
          413, 'body_too_large');

# 415 unsupported_media_type
my $valid = json_encode({ mode => 'maintenance', node => $NODE });
check_err('415 text/plain', $ng->admin(POST => 'mode', $valid, { 'Content-Type' => 'text/plain' }),
          415, 'unsupported_media_type');
check_err('415 form', $ng->admin(POST => 'mode', $valid, { 'Content-Type' => 'application/x-www-form-urlencoded' }),
          415, 'unsupported_media_type');
check_err('415 no Content-Type', $ng->admin(POST => 'mode', $valid, { 'Content-Type' => undef }),
          415, 'unsupported_media_type');

# ---- phase B: from normal ---------------------------------------------------------
$r = $ng->admin(POST => 'restore');
is($r->{status}, 200, 'restore to normal') or diag $r->{content};
is($r->{json}{mode}, 'normal', 'normal');
snapshot();
check_err('409 restore while normal', $ng->admin(POST => 'restore'), 409, 'invalid_transition');
check_err('409 restore {"force":true} while normal', $ng->admin(POST => 'restore', { force => JSON::PP::true }),
          409, 'invalid_transition');
check_err('409 mode normal while normal', $ng->admin(POST => 'mode', { mode => 'normal' }), 409, 'invalid_transition');

# exactly 64 KiB is still accepted (limit is "> 65536")
$r = $ng->admin(POST => 'mode', $pad->(65536));
is($r->{status}, 200, 'body of exactly 65536 bytes accepted') or diag substr($r->{content}, 0, 300);
is($r->{json}{mode}, 'upgrade', '... and applied');
$ng->admin(POST => 'restore');

# a small chunked body works
my $small = json_encode({ mode => 'upgrade', reason => 'chunked body', retry_after => 42 });
my $sc = join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) } unpack('(a7)*', $small)) . "0\r\n\r\n";
$r = raw_res(raw_request($ng->port, $hdr . "Transfer-Encoding: chunked\r\n\r\n" . $sc));
is($r->{status}, 200, 'small chunked body accepted') or diag $r->{content};
is($r->{json}{reason}, 'chunked body', 'chunked body applied (reason)');
is($r->{json}{retry_after}, 42, 'chunked body applied (retry_after)');
$r = $ng->admin(POST => 'restore');
is($r->{json}{mode}, 'normal', 'restored');

# ---- phase C: 503 store_unavailable --------------------------------------------------
snapshot();
my $sd = $ng->prefix . '/sd';
rename $sd, "$sd.away" or die "rename: $!";
$ng->write_file('sd', "not a directory\n");    # now sd/state.json cannot be written, even by root
check_err('503 store cannot write', $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'lost' }),
          503, 'store_unavailable');
is($ng->get('/')->{status}, 200, 'gate still open after the failed write');
unlink $sd;
rename "$sd.away", $sd or die "rename back: $!";
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'store back' });
is($r->{status}, 200, 'write works again once the store is back') or diag $r->{content};
is($r->{json}{version}, $before->{version} + 1, 'version +1 (failed write consumed none)');

is(scalar $ng->crashes, 0, 'no worker exited on a signal') or diag join "\n", $ng->crashes;
$ng->stop;

# ---- 400 unknown_node: with an nb_maint upstream, node ids must be known ---------------
subtest 'unknown_node with an nb_maint upstream' => sub {
    my $ng2 = NbTest::Nginx->new(http => std_http(http_extra => <<'EOT'));
upstream app {
    nb_maint;
    nb_maint_check off;    # port b is no NocoBase node
    server 127.0.0.1:%%PORT_b%%;
}
EOT
    my ($rc, $out) = $ng2->test_config;
    is($rc, 0, 'config with an nb_maint upstream is valid') or do { diag $out; return };
    $ng2->start;
    my $known = '127.0.0.1:' . $ng2->port_of('b');
    $ng = $ng2;    # check_err reads the state of $ng
    snapshot();
    check_err('unknown node', $ng2->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:1' }),
              400, 'unknown_node');
    check_err('unknown node (upgrade)', $ng2->admin(POST => 'mode', { mode => 'upgrade', node => '10.9.9.9:13000' }),
              400, 'unknown_node');
    my $res = $ng2->admin(POST => 'mode', { mode => 'maintenance', node => $known });
    is($res->{status}, 200, "known node $known accepted") or diag $res->{content};
    is($res->{json}{node}, $known, 'node set');
    is(scalar $ng2->crashes, 0, 'no worker exited on a signal');
};

done_testing;
