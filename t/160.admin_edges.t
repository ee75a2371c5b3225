# Admin API edges (issue 9, defects 9 and 25): every early error discards
# the request body (no request smuggling on keep-alive); unknown paths under
# nodes/ are 404; If-Match / If-None-Match on GET routes never fall through
# to nginx's 412 HTML or empty 304; GET status carries ETag = version and
# answers If-None-Match with 304; errors nginx itself makes in the admin
# location (body over client_max_body_size) are in the JSON error format.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $ng = NbTest::Nginx->new(http => std_http(
    locations => "    location = /smuggled { return 418 \"smuggled\\n\"; }\n"
               . "    location = /after { return 200 \"after\\n\"; }\n"));
$ng->start;

my $AUTH = 'Authorization: Bearer ' . ADMIN_TOKEN . "\r\n";
my $port = $ng->port;

# responses in a raw keep-alive stream: status codes in order
sub statuses {
    my ($raw) = @_;
    return $raw =~ m{HTTP/1\.1 (\d{3}) }g;
}

# ---- defect 9: early errors discard the body -------------------------------------
my $inner = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
my @early = (
    [ 'bad If-Match'   => "POST /_nb_maint/mode HTTP/1.1\r\nHost: x\r\n${AUTH}If-Match: \"abc\"\r\n"
                          . "Content-Type: application/json\r\n", 400 ],
    [ 'no token'       => "POST /_nb_maint/mode HTTP/1.1\r\nHost: x\r\n"
                          . "Content-Type: application/json\r\n", 401 ],
    [ 'unknown route'  => "POST /_nb_maint/bogus HTTP/1.1\r\nHost: x\r\n$AUTH"
                          . "Content-Type: application/json\r\n", 404 ],
    [ 'wrong method'   => "POST /_nb_maint/status HTTP/1.1\r\nHost: x\r\n$AUTH"
                          . "Content-Type: application/json\r\n", 405 ],
    [ 'wrong type'     => "POST /_nb_maint/mode HTTP/1.1\r\nHost: x\r\n$AUTH"
                          . "Content-Type: text/plain\r\n", 415 ],
    [ 'unknown node'   => "POST /_nb_maint/nodes/127.0.0.1:1/drain HTTP/1.1\r\nHost: x\r\n$AUTH"
                          . "Content-Type: application/json\r\n", 404 ],
);
for my $e (@early) {
    my ($label, $head, $want) = @$e;
    my $raw = NbTest::raw_request($port,
        $head . 'Content-Length: ' . length($inner) . "\r\n\r\n" . $inner
        . "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout => 3);
    my @st = statuses($raw);
    is($st[0], $want, "$label: $want first");
    unlike($raw, qr/smuggled/, "$label: the body is not run as a request");
    is_deeply(\@st, [$want, 200], "$label: then the next real request (200)")
        or diag "statuses: @st";
}

# ---- defect 25: unknown paths under nodes/ are 404 -----------------------------------
for my $p (['POST', 'nodes/127.0.0.1:1'], ['POST', 'nodes/no-such-node'],
           ['POST', 'nodes/unix:/no/such.sock'], ['GET', 'nodes/127.0.0.1:1/drain'],
           ['PUT', 'nodes/127.0.0.1:1'], ['DELETE', 'nodes/x/y/z']) {
    my $r = $ng->admin($p->[0] => $p->[1], $p->[0] eq 'POST' ? {} : undef);
    is($r->{status}, 404, "$p->[0] $p->[1]: 404");
    ok(ref $r->{json} eq 'HASH' && $r->{json}{error}{code}, '... JSON error');
}

# ---- ETag and conditional GETs ---------------------------------------------------------
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade' });
is($r->{status}, 200, 'upgrade');
my $v = $r->{json}{version};
is($r->{headers}{etag}, "\"$v\"", 'a write answers with ETag = the new version');

$r = $ng->admin(GET => 'status');
is($r->{headers}{etag}, "\"$v\"", 'GET status: ETag = version');

$r = $ng->admin(GET => 'status', undef, { 'If-None-Match' => "\"$v\"" });
is($r->{status}, 304, 'If-None-Match: the current version: 304');
is($r->{headers}{etag}, "\"$v\"", '... with the ETag');
is($r->{content} // '', '', '... and no body');

$r = $ng->admin(GET => 'status', undef, { 'If-None-Match' => "W/\"999\", \"$v\"" });
is($r->{status}, 304, 'If-None-Match: a list holding it: 304');

$r = $ng->admin(GET => 'status', undef, { 'If-None-Match' => '"' . ($v - 1) . '"' });
is($r->{status}, 200, 'If-None-Match: an older version: 200');
is($r->{json}{version}, $v, '... the state');

$r = $ng->admin(GET => 'status', undef, { 'If-Match' => '"' . ($v + 5) . '"' });
is($r->{status}, 412, 'If-Match on GET with another version: 412');
like($r->{headers}{'content-type'} // '', qr{^application/json}, '... JSON, not nginx HTML');
ok(ref $r->{json} eq 'HASH' && $r->{json}{error}{code}, '... in the error format');

$r = $ng->admin(GET => 'status', undef, { 'If-Match' => "\"$v\"" });
is($r->{status}, 200, 'If-Match on GET with the version: 200');

$r = $ng->admin(GET => 'status', undef, { 'If-Match' => 'garbage' });
is($r->{status}, 400, 'If-Match on GET, malformed: 400');
is($r->{json}{error}{code}, 'bad_header', '... bad_header');

for my $route (qw(events metrics)) {
    $r = $ng->admin(GET => $route, undef, { 'If-None-Match' => '*' });
    isnt($r->{status}, 304, "GET $route with If-None-Match *: no empty 304 from nginx");
    $r = $ng->admin(GET => $route, undef, { 'If-Modified-Since' => 'Fri, 01 Jan 2100 00:00:00 GMT' });
    is($r->{status}, 200, "GET $route with If-Modified-Since: 200");
}

# ---- errors nginx makes itself: JSON too -----------------------------------------------
my $big = '{"reason":"' . ('x' x (1100 * 1024)) . '"}';
$r = $ng->admin(POST => 'mode', $big);
is($r->{status}, 413, 'a body over client_max_body_size: 413');
like($r->{headers}{'content-type'} // '', qr{^application/json}, '... JSON, not nginx HTML');
ok(ref $r->{json} eq 'HASH' && ($r->{json}{error}{code} // '') eq 'body_too_large', '... body_too_large');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
