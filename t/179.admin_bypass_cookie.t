# GET bypass and DELETE bypass (issue 13, OWNERS interface 3): whether the
# cookie this request carries makes it a bypass request and until when;
# DELETE clears it in the browser.  Forged, expired and malformed cookies are
# inactive; both need the token like every admin request; 405s list every
# method of the path.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $N = NbTest::Nginx->new(http => std_http());
$N->start;

sub bypass_get {
    my ($cookie, %h) = @_;
    return $N->admin(GET => 'bypass', undef, { (defined $cookie ? (Cookie => $cookie) : ()), %h });
}

my $r = bypass_get(undef);
is($r->{status}, 200, 'GET bypass without a cookie: 200');
is_deeply($r->{json}, { active => JSON::PP::false, expires => undef }, '{"active":false,"expires":null}');
is($r->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');

$r = $N->admin(POST => 'bypass', { ttl => 600 });
is($r->{status}, 200, 'POST bypass') or diag $r->{content};
my $cookie = $r->{json}{cookie};
my $expires = $r->{json}{expires};
like($cookie, qr/^nb_maint_bypass=\d+\.[A-Za-z0-9_-]{43}$/, 'a cookie');

$r = bypass_get($cookie);
ok($r->{json}{active}, 'GET bypass with it: active');
is($r->{json}{expires}, $expires, 'expires as POST bypass said');
$r = bypass_get("a=b; $cookie; c=d");
ok($r->{json}{active}, 'among other cookies: active');

(my $forged = $cookie) =~ s/.$/substr($cookie, -1) eq 'A' ? 'B' : 'A'/e;
ok(!bypass_get($forged)->{json}{active}, 'a forged signature: inactive');
(my $later = $cookie) =~ s/=(\d+)\./'=' . ($1 + 1000) . '.'/e;
ok(!bypass_get($later)->{json}{active}, 'a moved expiry: inactive');
for my $bad ('nb_maint_bypass=', 'nb_maint_bypass=abc', 'nb_maint_bypass=1.' . ('A' x 43),
             'nb_maint_bypass=' . ('9' x 40) . '.x', "nb_maint_bypass=%%.\@\@") {
    $r = bypass_get($bad);
    is($r->{status}, 200, "malformed cookie: 200");
    ok(!$r->{json}{active}, 'malformed cookie: inactive');
}

$r = $N->admin(POST => 'bypass', { ttl => 1 });
my $short = $r->{json}{cookie};
ok(bypass_get($short)->{json}{active}, 'a 1 s cookie: active at first');
ok(wait_until(sub { !bypass_get($short)->{json}{active} }, 4, 0.2), 'inactive once expired');

# the token is needed like everywhere
$r = bypass_get($cookie, Authorization => undef);
is($r->{status}, 401, 'GET bypass without a token: 401');
$r = $N->admin(DELETE => 'bypass', undef, { Authorization => undef, Cookie => $cookie });
is($r->{status}, 401, 'DELETE bypass without a token: 401');
ok(!$r->{headers}{'set-cookie'}, '... and no Set-Cookie');

# DELETE: the cookie cleared in the browser that sends it
$r = $N->admin(DELETE => 'bypass', undef, { Cookie => $cookie });
is($r->{status}, 200, 'DELETE bypass: 200');
is_deeply($r->{json}, { active => JSON::PP::false }, '{"active":false}');
is($r->{headers}{'set-cookie'}, 'nb_maint_bypass=; Max-Age=0; HttpOnly; SameSite=Lax; Path=/',
   'Set-Cookie: nb_maint_bypass=; Max-Age=0; HttpOnly; SameSite=Lax; Path=/');
$r = $N->admin(DELETE => 'bypass');
is($r->{status}, 200, 'DELETE bypass without a cookie: 200 as well');
is($N->status->{version}, 0, 'no state change, no version');

# 405 answers list every method of the path
$r = $N->admin(PUT => 'bypass', {});
is($r->{status}, 405, 'PUT bypass: 405');
is($r->{headers}{allow}, 'GET, HEAD, POST, DELETE', 'Allow: GET, HEAD, POST, DELETE');
$r = $N->admin(DELETE => 'status');
is($r->{headers}{allow}, 'GET, HEAD', 'DELETE status: Allow: GET, HEAD');
$r = $N->admin(DELETE => 'mode');
is($r->{headers}{allow}, 'POST', 'DELETE mode: Allow: POST');
$r = $N->admin(HEAD => 'bypass');
is($r->{status}, 200, 'HEAD bypass: 200');

# the cookie still works at the gate (nothing server-side was revoked)
$r = $N->admin(POST => 'mode', { mode => 'upgrade' });
is($N->get('/')->{status}, 503, 'upgrade: public 503');
is($N->get('/', { Cookie => $cookie })->{status}, 200, 'with the cookie: 200');

is(scalar($N->crashes), 0, 'no crash');
$N->stop;
done_testing;
