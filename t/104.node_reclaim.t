# The node table does not only grow (issue 9 defect 7): server churn over
# reloads (container IPs) reuses the entries that no live generation uses.
# Entries still used by old workers (a request in flight) or referred to by
# the state (drained, designated) are kept.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my ($M, $D, $N) = map { NbTest::Mock->new } 1 .. 3;
my ($mid, $did, $nid) = ($M->id, $D->id, $N->id);

# 300 "down" servers a round, new addresses every time: 6 rounds = 1,800 ids
my $round = 0;
sub churn_http {
    my (%o) = @_;
    my $extra = '';
    my $base = 20000 + 300 * ($round % 40);
    $extra .= "    server 127.0.0.2:" . ($base + $_) . " down;\n" for 1 .. 300;
    my @nodes = $o{first} ? ($N, $D) : ($M, ($o{with_d} ? $D : ()));
    return cluster_http(nodes => \@nodes, upstream_extra => $extra);
}

my $ng = NbTest::Nginx->new(http => churn_http(first => 1));
$ng->start;
ok($ng->wait_all_health('up', 5, $nid, $did), 'N and D up');
is($ng->admin(POST => "nodes/$did/drain")->{status}, 200, 'drain D');

# a request in flight to N on a generation-1 worker, across the next
# reloads that drop N: its entry must stay N's until that worker is done
my $slow = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $ng->port) or die "connect: $!";
print $slow "GET /slow?sleep_ms=2500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
sleep 0.3;

# reloads that do not wait for the worker with the slow request to finish
sub quick_reload {
    my %old = map { ($_ => 1) } $ng->worker_pids;
    my ($rc, $out) = NbTest::run_cmd($ng->prefix . '/logs/reload.out', $ng->nginx_cmd('-s', 'reload'));
    return 0 if $rc;
    return 0 unless NbTest::wait_until(sub { my @new = grep { !$old{$_} } $ng->worker_pids; @new >= 2 }, 10);
    # the idle workers of the previous generation still use its entries
    # until they are gone; only the one with the slow request may stay
    return NbTest::wait_until(sub { $ng->worker_pids <= 3 }, 10);
}

my $ok = 1;
for (1 .. 6) {
    $round++;
    $ng->write_conf(http => churn_http());
    $ok &&= quick_reload();
    $ok &&= !scalar($ng->log_grep(qr/more than \d+ nodes/));
}
ok($ok, '6 reloads with 300 new servers each (1,800 ids; the table holds 1,024)')
    or diag join "\n", $ng->log_grep(qr/emerg|more than/);

# the slow request of the old generation finishes normally
my $resp = '';
$slow->timeout(10);
while (my $l = <$slow>) { $resp .= $l }
like($resp, qr{^HTTP/1\.1 200}, 'the request in flight on an old worker completed');
like($resp, qr{X-Node: \Q$nid\E}i, '... answered by N');
ok(NbTest::wait_until(sub { $ng->worker_pids == 2 }, 10), 'old workers exited');

# more churn now that only the current generation runs
for (1 .. 4) {
    $round++;
    $ng->write_conf(http => churn_http());
    $ng->reload;
}
ok(!scalar($ng->log_grep(qr/more than \d+ nodes/)), '4 more reloads: never out of entries');
ok(scalar($ng->log_grep(qr/its entry is free/)), 'error.log: unused entries freed');

# the current nodes are there, counters sane
my $sn = $ng->status_nodes;
is(scalar(keys %$sn), 301, 'status: the 301 servers of the current configuration');
is($sn->{$mid}{health}, 'up', 'M up');
my @bad = grep { ($sn->{$_}{active} // 0) != 0 } keys %$sn;
is(scalar(@bad), 0, 'no node shows requests in flight (no stale index decremented another)')
    or diag explain { map { ($_ => $sn->{$_}{active}) } @bad };
my $h = $ng->hit(20, '/api/x');
is($h->{node}{$mid} // 0, 20, 'requests go to M');

# a server of an old round is gone; drained D (not in the config) is kept
is($ng->node_res('127.0.0.2:20001')->{status}, 404, 'a server of the first round: entry reclaimed (404)');
is($ng->node_res($nid)->{status}, 404, 'N, once its last request ended: entry reclaimed (404)');
my $d = $ng->node_res($did);
is($d->{status}, 200, 'drained D is kept although no configuration has it');
$round++;
$ng->write_conf(http => churn_http(with_d => 1));
$ng->reload;
$sn = $ng->status_nodes;
is($sn->{$did}{drain}, JSON::PP::true, 'D back in the configuration: still drained');
$h = $ng->hit(20, '/api/y');
is($h->{node}{$did} // 0, 0, '... and gets no request');
is(scalar($ng->crashes), 0, 'no crash');
done_testing;
