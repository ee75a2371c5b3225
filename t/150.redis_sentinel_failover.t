# Issue 12: redis-sentinel:// with one primary, one replica and three
# sentinels (down-after-milliseconds 1000, failover-timeout 3000) and two
# gateways.  Upgrade through A; kill -9 the primary; both gateways keep
# serving the 503; after the promotion both report store.ok on the new
# primary within 10 s of the kill; a restore through B succeeds and A
# follows within 1 s.  min_replicas=1: a write answers 200 only once WAIT
# confirms it.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'redis-sentinel not installed' unless grep { -x "$_/redis-sentinel" } split /:/, $ENV{PATH};

my $primary = NbTest::Redis->new;
my $replica = NbTest::Redis->new(args => ['--replicaof', '127.0.0.1', $primary->port]);
ok(NbTest::wait_until(sub { ($replica->cli('INFO', 'replication') =~ /master_link_status:up/) }, 10),
   'the replica follows the primary');

# three sentinels
my @sen;
END { local $?; for (@sen) { kill 'KILL', $_->{pid} if $_->{pid}; waitpid $_->{pid}, 0 if $_->{pid} } }
for (1 .. 3) {
    my $port = NbTest::free_port();
    my $dir = $primary->dir;
    my $conf = "$dir/sentinel-$port.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh "port $port\nbind 127.0.0.1\ndir $dir\n",
              "sentinel monitor nbm 127.0.0.1 ", $primary->port, " 2\n",
              "sentinel down-after-milliseconds nbm 1000\n",
              "sentinel failover-timeout nbm 3000\n",
              "sentinel parallel-syncs nbm 1\n";
    close $fh;
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>>', "$dir/sentinel-$port.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-sentinel', $conf or POSIX::_exit(127);
    }
    push @sen, { port => $port, pid => $pid };
}
ok(NbTest::wait_until(sub {
    my $out = `redis-cli -p $sen[0]{port} SENTINEL sentinels nbm 2>/dev/null`;
    my $n = () = $out =~ /^name$/mg;
    $n >= 2;
}, 20, 0.2), 'the sentinels know each other');

my $prefix = NbTest::unique_prefix('sen');
my $hosts = join ',', map { "127.0.0.1:$_->{port}" } @sen;
my $store = "redis-sentinel://$hosts/nbm/0?prefix=$prefix&min_replicas=1&wait_ms=500";
my @gw = map { NbTest::Nginx->new(http => std_http(store => $store)) } 1 .. 2;
$_->start for @gw;
my ($A, $B) = @gw;

for my $g (@gw) {
    my $st = $g->wait_store_ok(1, 10);
    ok($st, 'store ok through the sentinels');
    is($st && $st->{store}{primary}, '127.0.0.1:' . $primary->port, 'store.primary is the primary');
    ok($st && $st->{store}{sentinels_ok}, 'sentinels_ok');
}

my $r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'sentinel' });
is($r->{status}, 200, 'upgrade through A (WAIT 1 confirmed)') or diag $r->{content};
is($replica->cli('GET', "$prefix:version"), $r->{json}{version}, 'the replica has the version');
ok($B->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), 'B follows');

# ---- kill -9 the primary ----------------------------------------------------------
my $t0 = time;
$primary->kill;
my ($served, %ok_at) = (1);
while (time - $t0 < 15 && keys %ok_at < 2) {
    for my $i (0, 1) {
        $served &&= $gw[$i]->get('/')->{status} == 503;
        next if $ok_at{$i};
        my $st = $gw[$i]->status;
        $ok_at{$i} = time - $t0
            if $st->{store}{ok} && ($st->{store}{primary} // '') eq '127.0.0.1:' . $replica->port;
    }
    sleep 0.05;
}
ok($served, 'both gateways served the 503 throughout');
for my $i (0, 1) {
    ok(defined $ok_at{$i} && $ok_at{$i} < 10,
       sprintf('gateway %s: store ok on the new primary %.1f s after the kill', $i ? 'B' : 'A', $ok_at{$i} // -1));
}
my $st = $A->status;
ok($st->{store}{last_failover}, 'A: store.last_failover set');
ok(scalar($A->log_grep(qr/store_failover/)), 'A: the failover is logged');

# ---- restore through B; A follows within 1 s ----------------------------------------
$r = $B->admin(POST => 'restore', { force => JSON::PP::true });
# no replica left after the failover: the write reached the new primary only
ok($r->{status} == 200 || ($r->{status} == 503 && (($r->{json}{error} || {})->{code} // '') eq 'store_unreplicated'),
   "restore through B: $r->{status}") or diag $r->{content};
ok($A->wait_status(sub { $_[0]{mode} eq 'normal' }, 1), 'A follows within 1 s');
is($replica->cli('GET', "$prefix:state") =~ /"mode":"normal"/ ? 1 : 0, 1, 'the new primary holds the change');

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no worker crashed');
done_testing;
