# Issue 12: all sentinels down but the primary up.  The owner watches every
# sentinel (a subscription to +switch-master with a heartbeat), so status
# says within seconds that they are unreachable (store.sentinels_ok false,
# store.warning naming them) while the store keeps working on the primary
# it knows: writes answer 200 (min_replicas=1: WAIT still confirms them),
# also after its connections to Redis were cut.  One sentinel back: status
# recovers (sentinels_ok true, the warning names the two still down).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbSentinel;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'redis-sentinel not installed' unless NbSentinel::available();

my $S = NbSentinel->new;
my $prefix = NbTest::unique_prefix('sdown');
my $G = NbTest::Nginx->new(
    http => std_http(store => $S->store_url(prefix => $prefix, query => 'min_replicas=1&wait_ms=1000')));
$G->start;

my $st = $G->wait_store_ok(1, 15);
ok($st, 'store.ok') or BAIL_OUT('no store: ' . explain($G->status->{store}));
ok($G->wait_status(sub { $_[0]{store}{sentinels_ok} && !defined $_[0]{store}{warning} }, 10),
   'all sentinels reachable: sentinels_ok true, no warning')
    or diag explain $G->status->{store};
my $primary = $G->status->{store}{primary};
ok($primary, "primary $primary");

sub write_ok {
    my ($what) = @_;
    my $r = $G->admin(POST => 'mode', { mode => 'upgrade', reason => $what });
    is($r->{status}, 200, "write 200: $what") or diag("$r->{status} $r->{content}");
}

# ---- kill every sentinel -------------------------------------------------------------
my @sen = $S->sentinels;
for my $s (@sen) {
    kill 'KILL', $s->{pid};
    waitpid $s->{pid}, 0;
    $s->{pid} = 0;
}
my $t0 = time;
$st = $G->wait_status(sub { defined $_[0]{store}{sentinels_ok} && !$_[0]{store}{sentinels_ok} }, 10);
ok($st, sprintf('all sentinels killed: sentinels_ok false after %.1f s', time - $t0))
    or diag explain $G->status->{store};
$st ||= $G->status;
ok($st->{store}{ok}, 'store.ok stays true (the primary is up)');
like($st->{store}{warning} // '', qr/3 of 3 sentinels unreachable/, 'store.warning: 3 of 3 unreachable')
    and diag("store.warning: $st->{store}{warning}");
like($st->{store}{warning} // '', qr/127\.0\.0\.1:$sen[0]{port}/, 'store.warning names the sentinels');
ok(!defined $st->{store}{error}, 'store.error stays null');
is($st->{store}{primary}, $primary, 'store.primary unchanged');

write_ok("sentinels down $_") for 1 .. 5;

# the connections to the primary cut: the gateway reconnects to the primary it
# knows, though no sentinel answers
for my $type (qw(normal pubsub)) {
    $S->server_of($primary)->cli('CLIENT', 'KILL', 'TYPE', $type);
}
my $ok = NbTest::wait_until(sub {
    my $r = $G->admin(POST => 'mode', { mode => 'upgrade', reason => 'after reconnect' });
    $r->{status} == 200;
}, 15, 0.2);
ok($ok, 'after its connections were cut, writes answer 200 again (the known primary)');
ok($G->wait_store_ok(1, 10), 'store.ok true again');
like($G->error_log, qr/no sentinel answered for "nbm", using the primary known before/,
     'the log says the primary known before is used');

# ---- one sentinel back ------------------------------------------------------------------
my $dir = ($S->servers)[0]->dir;
my $conf = "$dir/sentinel-$sen[0]{port}.conf";
my $pid = fork // die;
if (!$pid) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', "$dir/sentinel-$sen[0]{port}.log";
    open STDERR, '>&', \*STDOUT;
    exec 'redis-sentinel', $conf or POSIX::_exit(127);
}
$sen[0]{pid} = $pid;
$t0 = time;
$st = $G->wait_status(sub { $_[0]{store}{sentinels_ok} }, 15);
ok($st, sprintf('one sentinel back: sentinels_ok true after %.1f s', time - $t0))
    or diag explain $G->status->{store};
$st ||= $G->status;
like($st->{store}{warning} // '', qr/2 of 3 sentinels unreachable/, 'store.warning: 2 of 3 unreachable')
    and diag("store.warning: $st->{store}{warning}");
unlike($st->{store}{warning} // '', qr/:$sen[0]{port} /, 'the sentinel back is not named');
ok($st->{store}{ok}, 'store.ok true');
write_ok('one sentinel back');
is($G->crashes, 0, 'no worker crashed');

done_testing;
