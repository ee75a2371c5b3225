# GET stream (issue 13, OWNERS interface 2): Server-Sent Events for the
# dashboard.  The status at once, a new one within 1 s of a change made
# through another connection, new audit events, since=N, auth like every
# admin request, HEAD, bad since, 405 with Allow, and a closed client
# cleaned up (its slot free again).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbStream;
use Time::HiRes qw(time sleep);

my $N = NbTest::Nginx->new(workers => 1, http => std_http());
$N->start;
my $path = '/_nb_maint/stream';

# --- auth: 401 like every admin request
for my $case ([undef, 'no token'], ['wrong-token-000000', 'a wrong token']) {
    my $s = NbStream->open($N->port, $path, token => $case->[0]);
    is($s->{status}, 401, "stream with $case->[1]: 401");
    like($s->{headers}{'www-authenticate'} // '', qr/^Bearer/, "$case->[1]: WWW-Authenticate: Bearer");
    unlike($s->{headers}{'content-type'} // '', qr/event-stream/, "$case->[1]: not an event stream");
}

# --- the status at once
my $t0 = time;
my $s = NbStream->open($N->port, $path, token => ADMIN_TOKEN);
is($s->{status}, 200, 'stream: 200');
is($s->{headers}{'content-type'}, 'text/event-stream', 'Content-Type: text/event-stream');
is($s->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');
my $ev = $s->next(2);
ok($ev && ($ev->{event} // '') eq 'status', 'the first event is "status"') or diag explain $ev;
ok($ev && $ev->{at} - $t0 < 1, 'it comes at once (< 1 s)');
my $st = $N->status;
is($ev->{json}{mode}, $st->{mode}, 'its data is GET status: mode');
is($ev->{json}{version}, $st->{version}, 'its data is GET status: version');
is_deeply([sort keys %{ $ev->{json} }], [sort keys %$st], 'its data is GET status: the same fields');
unlike($ev->{data}, qr/\n/, 'data on one line');

# --- a change through another connection: a new status within 1 s
my $v0 = $st->{version};
my $tc = time;
my $r = $N->admin(POST => 'mode', { mode => 'upgrade', reason => 'stream test' });
is($r->{status}, 200, 'POST mode upgrade') or diag $r->{content};
my $new = $s->wait_for(sub { ($_[0]{event} // '') eq 'status' && ($_[0]{json}{mode} // '') eq 'upgrade' }, 3);
ok($new, 'a status event with mode upgrade');
ok($new && $new->{at} - $tc < 1, sprintf('within 1 s of the change (%.2f s)', $new ? $new->{at} - $tc : -1));
is($new->{json}{reason}, 'stream test', 'with the new reason');

# the audit event of that change, and none of the old ones
my $evs = $new && ($new->{event} eq 'events') ? $new
        : $s->wait_for(sub { ($_[0]{event} // '') eq 'events' }, 2);
ok($evs && ref $evs->{json} eq 'ARRAY', '"events" with a JSON array') or diag explain $evs;
my @a = @{ $evs->{json} || [] };
is(scalar @a, 1, 'one new event (none of the old ones without since)');
is($a[0]{action}, 'mode', 'action mode');
is($a[0]{to}, 'upgrade', 'to upgrade');
ok($a[0]{version} > $v0, 'a version after the one at connect');

# a write that changes nothing sends nothing
$r = $N->admin(POST => 'mode', { mode => 'upgrade', reason => 'stream test' });
is($r->{status}, 200, 'the same write again');
my $none = $s->next(1.2);
ok(!$none || ($none->{event} // '') ne 'events', 'no event for a write that changed nothing')
    or diag explain $none;

# --- since=N: the events after N on connect, after the status
my $s2 = NbStream->open($N->port, $path, token => ADMIN_TOKEN, since => $v0);
my @b = grep { $_ } map { $s2->next(2) } 1 .. 2;
is($b[0]{event}, 'status', 'since: status first');
is($b[1]{event}, 'events', 'since: then the events');
is(scalar @{ $b[1]{json} || [] }, 1, 'since: the one event after it');
is($b[1]{json}[0]{version}, $a[0]{version}, 'since: that event');
$s2->close;

# a second stream sees the next change too: restore
$r = $N->admin(POST => 'restore');
is($r->{status}, 200, 'POST restore');
ok($s->wait_for(sub { ($_[0]{event} // '') eq 'status' && ($_[0]{json}{mode} // '') eq 'normal' }, 3),
   'the first stream sees normal');

# --- errors
my $bad = NbStream->open($N->port, $path, token => ADMIN_TOKEN, since => 'abc');
is($bad->{status}, 400, 'since=abc: 400');
$r = $N->admin(POST => 'stream', {});
is($r->{status}, 405, 'POST stream: 405');
is($r->{headers}{allow}, 'GET, HEAD', 'Allow: GET, HEAD');
is($r->{json}{error}{code}, 'method_not_allowed', 'method_not_allowed');
$r = $N->admin(HEAD => 'stream');
is($r->{status}, 200, 'HEAD stream: 200');
is($r->{headers}{'content-type'}, 'text/event-stream', 'HEAD: the type');

# --- HTTP/1.0: no chunks, the same events
my $s10 = NbStream->open($N->port, $path, token => ADMIN_TOKEN, http10 => 1);
is($s10->{status}, 200, 'HTTP/1.0 stream: 200');
$ev = $s10->next(2);
is($ev && $ev->{event}, 'status', 'HTTP/1.0: status');
$s10->close;

# --- a client that goes away is cleaned up: the cap counts open streams
$s->close;
my @open;
for (1 .. 40) {
    my $x = NbStream->open($N->port, $path, token => ADMIN_TOKEN);
    last unless $x && $x->{status} == 200;
    push @open, $x;
}
# closed ones (the first stream, s2, s10) are gone within a tick
is(scalar @open, 32, 'at most 32 streams per worker: 32 opened after the others closed');
my $over = NbStream->open($N->port, $path, token => ADMIN_TOKEN);
is($over->{status}, 503, 'the 33rd: 503');
my $body = $over->next(0.5);
$over->close;
$r = $N->admin(GET => 'stream?x=1', undef, { Accept => 'application/json' });
is($r->{status}, 503, 'over the cap (HTTP::Tiny): 503');
is($r->{json}{error}{code}, 'too_many_streams', 'code too_many_streams');
$N->admin(GET => 'status')->{status} == 200 or fail('status still answers');

$_->close for splice @open, 0, 5;
my $again = wait_until(sub {
    my $x = NbStream->open($N->port, $path, token => ADMIN_TOKEN);
    return $x && $x->{status} == 200 ? $x : undef;
}, 5, 0.1);
ok($again, 'after 5 clients left, a new stream is accepted');
$again && $again->close;
$_->close for @open;

is(scalar($N->crashes), 0, 'no crash');
unlike($N->error_log, qr/\[alert\]|open socket/, 'no alert in error.log');
$N->stop;
done_testing;
