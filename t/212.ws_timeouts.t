# Timers of /ws answered by the gateway (issue 21 item 5): a server ping
# after nb_maint_ws_ping_interval of quiet; a client that answers pings
# stays, one that says nothing for nb_maint_ws_idle_timeout is closed; a
# client that does not read its messages is closed after
# nb_maint_ws_send_timeout.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use Socket qw(:all);
use IO::Handle;
use Time::HiRes qw(time sleep);

$SIG{PIPE} = 'IGNORE';

my $ng = NbTest::Nginx->new(workers => 1, http => std_http(
    server_extra => "    nb_maint_ws_ping_interval 300ms;\n    nb_maint_ws_idle_timeout 1s;\n",
    locations => "    location /ws-slow { nb_maint_ws_path /ws-slow; nb_maint_ws_ping_interval 0;\n"
               . "        nb_maint_ws_idle_timeout 0; nb_maint_ws_send_timeout 1s; return 200; }\n"));
$ng->start;
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade: /ws answered by the gateway');

# a live client: answers every ping with a pong
my $live = NbWS->connect(port => $ng->port);
my $dead = NbWS->connect(port => $ng->port);
is($live->recv_json(2)->{payload}{code}, 'APP_COMMANDING', 'two sockets');
$dead->recv_json(2);

my ($pings, $t0) = (0, time);
my $first;
while (time - $t0 < 2.5) {
    my $f = $live->recv_frame(0.5) or next;
    last if $f->{op} eq 'eof' || $f->{op} == 8;
    if ($f->{op} == 9) { $pings++; $first //= time - $t0; $live->_send(10, $f->{data}) }
}
cmp_ok($pings, '>=', 4, "the live client got server pings ($pings in 2.5 s, the first after "
                        . sprintf('%.2f s', $first // -1) . ')');
ok(!$live->closed, '... and is still open after 2.5 s (idle timeout 1 s)');
$live->ping('still');
my $f;
do { $f = $live->recv_frame(1) } while ($f && $f->{op} eq '9');
is($f && $f->{op}, 10, '... and answered');

# the dead one got pings, never answered: closed after ~1 s of quiet
my @ops;
while (my $x = $dead->recv_frame(0.2)) { push @ops, $x->{op}; last if $x->{op} eq 'eof' }
ok(scalar(grep { $_ eq '9' } @ops), 'the silent client got pings too');
is($ops[-1], 'eof', '... and was closed (idle timeout)');
like($ng->error_log, qr/WebSocket client timed out(?! reading)/, '... logged at info');

# send timeout: a client that does not read its messages
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096) or die;
connect($s, pack_sockaddr_in($ng->port, inet_aton('127.0.0.1'))) or die "connect: $!";
syswrite $s, "GET /ws-slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
# messages of ~3 KB, one per tick (a socket hears the latest state only)
for my $i (1 .. 30) {
    $ng->admin(POST => 'mode', { mode => 'upgrade', reason => ("\x01" x 500) . $i });
    sleep 0.25;
    last if $ng->error_log =~ /WebSocket client timed out reading/;
}
ok(NbTest::wait_until(sub { $ng->error_log =~ /WebSocket client timed out reading/ }, 4),
   'a client that does not read: closed after the send timeout');
$s->blocking(0);
my ($eof, $end) = (0, time + 3);
while (time < $end) {
    my $rin = ''; vec($rin, fileno($s), 1) = 1;
    select(my $rout = $rin, undef, undef, 0.2) or next;
    my $n = sysread $s, my $buf, 65536;
    if (!$n && !$!{EAGAIN}) { $eof = 1; last }
}
ok($eof, '... its connection is gone');

is(scalar $ng->crashes, 0, 'no worker crashed');
done_testing;
