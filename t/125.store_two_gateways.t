# Issue 9 defect 17: two gateways on one file: store.  The first one owns
# the file (a lock); the second reads the state but says store.ok=false,
# "use redis:// for several gateways", and refuses writes, so the two
# never split silently.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $A = NbTest::Nginx->new(http => std_http(store => 'file:%%PREFIX%%/state.json'));
my $file = $A->prefix . '/state.json';
my $B = NbTest::Nginx->new(http => std_http(store => "file:$file"));

$A->start;
my $r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'A owns it' });
is($r->{status}, 200, 'A writes') or diag $r->{content};

my ($rc, $out) = $B->test_config;
is($rc, 0, 'nginx -t of B passes (a test takes no lock)') or diag $out;

$B->start;
my $s = $B->status;
ok(!$s->{store}{ok}, 'B: store.ok false');
like($s->{store}{error} // '', qr{use redis:// for several gateways}, 'B: store.error says why');
is($s->{mode}, 'upgrade', 'B: read the state');
like($B->error_log, qr/belongs to another gateway/, 'B: error.log says so');

my $before = state_fields($A->status);
$r = $B->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001' });
is($r->{status}, 503, 'B: write refused with 503');
is($r->{json}{error}{code}, 'store_unavailable', 'B: store_unavailable');
$r = $B->admin(POST => 'restore');
is($r->{status}, 503, 'B: restore refused too');
like($A->read_file('state.json'), qr/"reason":"A owns it"/, 'the file is as A wrote it');

ok($A->status->{store}{ok}, 'A: store.ok true');
$r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'A again' });
is($r->{status}, 200, 'A keeps writing') or diag $r->{content};

# A stays the owner across its reloads
$A->reload;
ok($A->status->{store}{ok}, 'A after a reload: store.ok true');
$r = $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'A reloaded' });
is($r->{status}, 200, 'A after a reload writes') or diag $r->{content};
$B->reload;
ok(!$B->status->{store}{ok}, 'B after a reload: still not the owner');

# once A is gone, B started again owns the file
$A->stop;
$B->stop;
$B->start;
ok($B->status->{store}{ok}, 'B alone: store.ok true');
is($B->status->{reason}, 'A reloaded', 'B alone: the latest state');
$r = $B->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001' });
is($r->{status}, 200, 'B alone writes') or diag $r->{content};

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no crash');
$B->stop;

done_testing;
