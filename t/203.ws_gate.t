# NocoBase's /ws while public traffic is gated (SPEC section 7): the gateway
# accepts the handshake itself, sends NocoBase's "maintaining" message for
# the state, a new one on every change, answers pings, and once traffic is
# allowed again sends APP_RUNNING with refresh:true and closes.  A public
# WebSocket proxied to a node before the upgrade hears of it within 1 s.
# Bypass clients are proxied to the designated node.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;

my $WS_LOC = NbWS::LOCATION;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B], locations => $WS_LOC,
                                                 bypass => '10.255.255.255/32'));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes up');

# ---- normal: /ws is proxied to a node, counted as a websocket ------------------------------------
my $pre = NbWS->connect(port => $ng->port, greeting => 1);
is($pre->status, 101, 'normal: /ws 101');
is($pre->{greeting}{payload}{code}, 'APP_RUNNING', '... the gateway\'s greeting first (issue 18)');
my $via = $pre->{headers}{'x-node'} // '';
ok($via eq $aid || $via eq $bid, "... proxied to a node ($via)");
ok(NbTest::wait_until(sub { ($ng->node($via)->{websockets} // 0) == 1 }, 2), "nodes/$via: websockets 1");
is($ng->node($via)->{active}, 0, '... active 0 (a WebSocket is not an in-flight request)');
like($ng->admin(GET => 'metrics')->{content}, qr/^nb_maint_node_websockets\{upstream="app",node="\Q$via\E"\} 1$/m,
     'metrics: nb_maint_node_websockets 1');

# ---- upgrade: the open socket hears of it within 1 s -------------------------------------------
my $t0 = time;
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'v2.1 upgrade' });
is($r->{status}, 200, 'POST mode upgrade');
my $m = $pre->recv_json(1.5);
my $dt = time - $t0;
is($m->{type}, 'maintaining', 'open socket: type maintaining');
is($m->{payload}{code}, 'APP_COMMANDING', '... APP_COMMANDING');
is($m->{payload}{command}{name}, 'upgrade', '... command.name upgrade');
is($m->{payload}{message}, 'v2.1 upgrade', '... message: the reason');
cmp_ok($dt, '<=', 1.0, sprintf('... within 1 s of POST mode (%.3f s)', $dt));
ok(NbTest::wait_until(sub { ($ng->node($via)->{websockets} // 0) == 0 }, 2), "... the node's side is closed (websockets 0)");

# ---- a new /ws while gated is answered by the gateway ---------------------------------------------
my $wst0 = $A->stats->{ws_total} + $B->stats->{ws_total};
my $ws = NbWS->connect(port => $ng->port);
is($ws->status, 101, 'gated: /ws 101 from the gateway');
ok($ws->{accept_ok}, '... Sec-WebSocket-Accept right (SHA-1 of the key)');
ok(!defined $ws->{headers}{'x-node'}, '... no node answered');
$m = $ws->recv_json(1);
is($m->{payload}{code}, 'APP_COMMANDING', '... first message APP_COMMANDING');
is($m->{payload}{command}{name}, 'upgrade', '... upgrade');
is($A->stats->{ws_total} + $B->stats->{ws_total}, $wst0, '... no node saw it');

# pings, NocoBase's "ping" text, JSON messages: answered or ignored
$ws->send_text('ping');
$ws->send_text('{"type":"auth:token","payload":{"token":"x"}}');
$ws->ping('abc');
my $f = $ws->recv_frame(2);
is($f && $f->{op}, 10, 'ping: pong');
is($f && $f->{data}, 'abc', '... same payload');
ok($f && !$f->{masked}, '... unmasked server frame');
is($ws->recv_json(0.5), undef, 'text messages: nothing back');

# a new message on every change
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'almost done' });
is($r->{status}, 200, 'new reason');
$m = $ws->recv_json(1);
is($m->{payload}{message}, 'almost done', 'both sockets: a new message with the new reason');
is($pre->recv_json(1)->{payload}{message}, 'almost done', '... the taken-over one too');

# bypass: proxied to the designated node as today
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid, reason => 'almost done' });
is($r->{status}, 200, 'designate B');
$ws->recv_json(1); $pre->recv_json(1);
my $cookie = $ng->admin(POST => 'bypass', { ttl => 600 })->{headers}{'set-cookie'};
($cookie) = ($cookie // '') =~ /^(nb_maint_bypass=[^;]+)/;
my $byp = NbWS->connect(port => $ng->port, headers => { Cookie => $cookie });
is($byp->status, 101, 'bypass cookie: 101');
is($byp->{headers}{'x-node'}, $bid, '... from the designated node B');

# ---- restore: APP_RUNNING with refresh, then close ----------------------------------------------
$r = $ng->admin(POST => 'restore', {});
is($r->{status}, 200, 'POST restore');
is($ws->recv_json(0.7)->{payload}{code}, 'APP_COMMANDING', 'restoring from upgrade: still APP_COMMANDING upgrade');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 5), 'restore completes: normal');
$t0 = time;
for my $s ([gated => $ws], ['taken over' => $pre]) {
    my $got;
    while (my $x = $s->[1]->recv_json(2)) {
        $got = $x;
        last if ($x->{payload}{code} // '') eq 'APP_RUNNING';
    }
    is($got->{payload}{code}, 'APP_RUNNING', "$s->[0]: APP_RUNNING");
    ok($got->{payload}{refresh}, '... refresh true');
    $f = $s->[1]->recv_frame(2);
    is($f && $f->{op}, 8, '... then a close frame');
    is($f && length $f->{data} >= 2 ? unpack('n', $f->{data}) : 0, 1000, '... code 1000');
}
cmp_ok(time - $t0, '<=', 1.5, 'within 1 s of normal');

# after normal, /ws is proxied again
my $post = NbWS->connect(port => $ng->port);
is($post->status, 101, 'normal again: /ws 101');
ok($post->{headers}{'x-node'}, '... proxied to a node');

# ---- no healthy node: APP_STOPPED ------------------------------------------------------------------
$A->set_state('fail'); $B->set_state('fail');
ok($ng->wait_all_health('down', 5, $aid, $bid), 'both nodes down');
my $st = NbWS->connect(port => $ng->port);
is($st->status, 101, 'no healthy node: /ws 101 from the gateway');
$m = $st->recv_json(1);
is($m->{payload}{code}, 'APP_STOPPED', '... APP_STOPPED');
$A->set_state('running');
ok(defined $ng->wait_health($aid, 'up', 5), 'A up again');
$m = $st->recv_json(2);
is($m->{payload}{code}, 'APP_RUNNING', '... APP_RUNNING once a node is up');
ok($m->{payload}{refresh}, '... refresh');

# ---- not a WebSocket handshake: the 503 as for any request ----------------------------------------
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade again');
$r = $ng->get('/ws');
is($r->{status}, 503, 'plain GET /ws while gated: 503');

# many sockets, then a change: all hear it
my @many = map { NbWS->connect(port => $ng->port) } 1 .. 30;
is(scalar(grep { $_->status == 101 } @many), 30, '30 gated sockets');
$_->recv_json(1) for @many;
$ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'thirty' });
is(scalar(grep { (($_->recv_json(2) || {})->{payload}{message} // '') eq 'thirty' } @many), 30,
   'all 30 got the new message');
# a change, then at once a new socket: the open ones still hear of the change
my $missed = 0;
for my $i (1 .. 6) {
    $ng->admin(POST => 'mode', { mode => 'upgrade', reason => "round $i" });
    my $new = NbWS->connect(port => $ng->port);
    is(($new->recv_json(1) || {})->{payload}{message}, "round $i", "round $i: the new socket gets the new state");
    $missed++ if (($many[5]->recv_json(1.5) || {})->{payload}{message} // '') ne "round $i";
}
is($missed, 0, 'an open socket never misses a change when a socket opens right after it');

# a ping sent right behind the handshake (in the same packet) is answered
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port) or die;
    my $ping = "\x89\x82" . "\x01\x02\x03\x04" . ("hi" ^ "\x01\x02");
    syswrite $s, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" . $ping;
    my $buf = '';
    my $end = time + 2;
    while (time < $end && $buf !~ /\x8a\x02hi/) {
        my $rin = ''; vec($rin, fileno($s), 1) = 1;
        select(my $rout = $rin, undef, undef, 0.2) or next;
        sysread($s, my $chunk, 4096) or last;
        $buf .= $chunk;
    }
    like($buf, qr/Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/, "RFC 6455's example key: its accept value");
    like($buf, qr/\x8a\x02hi/, 'a ping right behind the handshake: pong');
    close $s;
}

# a client that closes: the gateway answers the close
sub next_non_text { my ($w) = @_; my $x; do { $x = $w->recv_frame(2) } while ($x && $x->{op} ne 'eof' && $x->{op} == 1); $x }
$many[0]->send_close(1001);
$f = next_non_text($many[0]);
is($f && $f->{op}, 8, 'client close: close frame back');
# garbage from a client: closed, nothing crashes
$many[1]->send_raw("\x81\x05hello");     # unmasked: a protocol error
$f = next_non_text($many[1]);
is($f && $f->{op}, 8, 'unmasked client frame: a close frame');
is($f && length $f->{data} >= 2 ? unpack('n', $f->{data}) : 0, 1002, '... with 1002 (protocol error)');
$f = next_non_text($many[1]);
is($f && $f->{op}, 'eof', '... then the connection is closed');
undef @many;

is(scalar $ng->crashes, 0, 'no worker crashed');

# ---- a gated server without any nb_maint upstream ---------------------------------------------
my $plain = NbTest::Nginx->new(http => std_http());
$plain->start;
my $pw = NbWS->connect(port => $plain->port);
isnt($pw->status, 101, 'no nb_maint upstream, normal: /ws is not answered by the gateway');
is($plain->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade');
$pw = NbWS->connect(port => $plain->port);
is($pw->status, 101, '... upgrade: answered by the gateway');
is(($pw->recv_json(1) || {})->{payload}{code}, 'APP_COMMANDING', '... APP_COMMANDING');
is(scalar $plain->crashes, 0, 'no worker crashed');
done_testing;
