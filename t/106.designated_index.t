# The designated node's index travels with the state (issue 9 defect 22):
# maintenance routing uses it with no per-request search; it follows every
# state change and reload, and survives node entries being freed and reused.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = ($A->id, $B->id);

my $round = 0;
sub conf {
    my (@nodes) = @_;
    my $extra = '';
    my $base = 30000 + 100 * ($round++ % 50);
    $extra .= "    server 127.0.0.2:" . ($base + $_) . " down;\n" for 1 .. 100;
    return cluster_http(nodes => \@nodes, upstream_extra => $extra);
}

my $ng = NbTest::Nginx->new(http => conf($A, $B));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'A and B up');

is($ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid })->{status}, 200, 'maintenance on B');
my $h = $ng->hit(20, '/api/1');
is($h->{node}{$bid} // 0, 20, 'all 20 to B');

# B leaves the configuration: the state still names it, nothing else is used
for (1 .. 3) { $ng->write_conf(http => conf($A)); $ng->reload }
$h = $ng->hit(10, '/api/2');
is($h->{status}{503} // 0, 10, 'B not configured: 503, no other node');
is($h->{nb}{maintenance} // $h->{nb}{no_healthy_node} // 0, 10, '... the maintenance / no-node page');
is($ng->status->{node}, $bid, 'state still designates B');

# B back, after entries were freed and reused
$ng->write_conf(http => conf($A, $B));
$ng->reload;
ok($ng->wait_all_health('up', 5, $bid), 'B back and up');
$h = $ng->hit(20, '/api/3');
is($h->{node}{$bid} // 0, 20, 'B configured again: all 20 to B');

# the index follows state changes
is($ng->admin(POST => 'mode', { mode => 'maintenance', node => $aid })->{status}, 200, 'designate A');
$h = $ng->hit(20, '/api/4');
is($h->{node}{$aid} // 0, 20, 'all 20 to A');
is($ng->admin(POST => 'mode', { mode => 'upgrade', node => $bid })->{status}, 200, 'upgrade, B designated');
$h = $ng->hit(10, '/api/5');
is($h->{status}{503} // 0, 10, 'upgrade: public requests get the 503 page');
my $cookie = $ng->admin(POST => 'bypass', { ttl => 60 });
my ($c) = ($cookie->{headers}{'set-cookie'} // '') =~ /^(nb_maint_bypass=[^;]+)/;
ok($c, 'bypass cookie');
$h = $ng->hit(10, '/api/6', headers => { Cookie => $c });
is($h->{node}{$bid} // 0, 10, 'upgrade: bypass requests to B only');
is(scalar($ng->crashes), 0, 'no crash');
done_testing;
