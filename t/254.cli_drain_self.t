# nb-maint drain --self (issue 19): a Kubernetes pod's preStop finds its own
# node among the gateway's (--address, POD_IP or `hostname -i`), drains it,
# waits for its requests and WebSockets and exits 0, never later than
# --timeout (exit 5, the node stays drained); the token from a file (a
# mounted Secret); an address that is no node is refused.  Also
# restore --expect N.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbDNS;
use NbCli;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my $dns = NbDNS->new(ttl => 1);
my $P = free_port();
my $name = 'app.nb.test';
sub pod { NbTest::Mock->new(host => "127.0.0.$_[0]", port => $P) }
sub id { "127.0.0.$_[0]:$P" }

my %pods = map { ($_ => pod($_)) } 2, 3;
$dns->set($name => [ '127.0.0.2', '127.0.0.3' ]);
my $ng = NbTest::Nginx->new(http => $dns->http(name => $name, port => $P));
$ng->start;
ok($ng->wait_all_health('up', 10, id(2), id(3)), 'two pods up');

my $tokfile = $ng->write_file('secret-token', NbTest::ADMIN_TOKEN . "\n", 0600);
my %env = (NB_MAINT_URL => $ng->url('/_nb_maint/'));
sub cli { NbCli::run({ env => { %env, %{ shift() } }, timeout => 40 }, '--token-file', $tokfile, @_) }

# a request in flight on pod 2 for 1.5 s
sub slow {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port, Timeout => 5) or die $!;
    syswrite $s, "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    return $s;
}
$pods{2}->delay(1500);
my @s;
for (1 .. 20) { push @s, slow("/api/slow$_"); last if NbTest::wait_until(sub { $pods{2}->stats->{active} }, 0.15) }
ok($pods{2}->stats->{active}, 'a request in flight on pod 2');

my $t0 = time;
my ($rc, $out, $err) = cli({ POD_IP => '127.0.0.2' }, 'drain', '--self', '--wait', '--timeout', '10');
my $took = time - $t0;
is($rc, 0, 'drain --self --wait (POD_IP): exit 0') or diag "$out\n$err";
like($out, qr/\Q${\ id(2)}\E drained/, 'it names the node it drained');
ok($ng->node(id(2))->{drain}, 'the node is drained');
is($ng->node(id(2))->{active}, 0, 'nothing in flight when it returned');
cmp_ok($took, '>=', 0.5, sprintf('it waited for the request (%.1f s)', $took));
ok(!$ng->node(id(3))->{drain}, 'the other pod is not drained');
$_->close for @s;
$pods{2}->delay(0);

# --timeout bounds the wait: a long request on pod 3
$pods{3}->delay(6000);
@s = ();
for (1 .. 20) { push @s, slow("/api/long$_"); last if NbTest::wait_until(sub { $pods{3}->stats->{active} }, 0.15) }
$t0 = time;
($rc, $out, $err) = cli({}, 'drain', '--self', '--wait', '--timeout', '1.5', '--address', '127.0.0.3');
$took = time - $t0;
is($rc, 5, 'still busy at --timeout: exit 5') or diag "$out\n$err";
cmp_ok($took, '<', 4, sprintf('never much longer than --timeout (%.1f s for 1.5 s)', $took));
like($err, qr/timed out after .*stays drained/, 'the message says so');
ok($ng->node(id(3))->{drain}, 'and the node stays drained');
$_->close for @s;
$pods{3}->delay(0);

# an address that is no node
($rc, $out, $err) = cli({}, 'drain', '--self', '--address', '10.9.9.9');
is($rc, 1, 'an address that is no node: exit 1');
like($err, qr/no node of the gateway has this pod's address \(10\.9\.9\.9\)/, 'with a clear message');
($rc, $out, $err) = cli({}, 'drain', '--self', id(2));
is($rc, 2, 'drain --self with an id: usage error');

# restore --expect
is($ng->admin(POST => "nodes/${\ id($_)}/undrain")->{status}, 200, "undrain $_") for 2, 3;
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade');
($rc, $out, $err) = cli({}, 'restore', '--expect', '3');
is($rc, 0, 'restore --expect 3') or diag "$out\n$err";
is($ng->status->{restore_expect}, 3, 'the state has restore_expect 3');
sleep 1.5;
is($ng->status->{mode}, 'restoring', 'two pods for three expected: restoring');
($rc, $out, $err) = cli({}, 'restore', '--force');
is($ng->status->{mode}, 'normal', 'forced back to normal');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
