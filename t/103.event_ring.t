# The event ring (issue 9 defect 10): when the zone is full the OLDEST
# events make room, never the newest; nginx -t refuses a zone too small for
# the node table plus 1,000 events, naming nb_maint_zone and the minimum.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $http = std_http();

# ---- the minimum size, at nginx -t --------------------------------------------------
my $ng = NbTest::Nginx->new(http => $http);
sub zone {
    my ($size) = @_;
    (my $h = $http) =~ s/^nb_maint_zone nb 4m;$/nb_maint_zone nb $size;/m or die 'no zone line';
    $ng->write_conf(http => $h);
    return $ng->test_config;
}

my ($rc, $out) = zone('256k');
isnt($rc, 0, 'nginx -t: 256k refused');
like($out, qr/"nb_maint_zone".*too small.*1000 events.*minimum size is \d+k/, '... naming nb_maint_zone, 1000 events and the minimum')
    or diag $out;
my ($min) = $out =~ /minimum size is (\d+)k/;
$min //= 1400;    # (older builds say no minimum)
ok($min && $min * 1024 >= 1024 * 160 + 1000 * 256, "minimum ${min}k holds the node table and 1000 events");
($rc, $out) = zone(($min - 1) . 'k');
isnt($rc, 0, 'one KiB less is refused');
($rc, $out) = zone("${min}k");
is($rc, 0, 'the minimum is accepted') or diag $out;

# ---- a full zone drops the oldest ----------------------------------------------
# an audit file with 1024 events of ~1500 bytes each: more than the minimum
# zone holds (each takes a 2 KiB slab chunk)
my $pad = 'x' x 1400;
my $lines = '';
for my $v (1 .. 1024) {
    $lines .= NbTest::json_encode({ version => $v, time => '2026-11-27T06:00:00Z',
        actor => 'ops 127.0.0.1', action => 'mode', from => 'normal', to => 'normal',
        node => undef, reason => "$v $pad" }) . "\n";
}
$ng->write_file('state.json.events', $lines);
$ng->write_file('state.json', NbTest::json_encode({ mode => 'normal', version => 1024,
    since => '2026-11-27T06:00:00Z', reason => '', retry_after => 300, node => undef,
    restoring_from => undef }));
zone("${min}k");
$ng->start;

my @ev = $ng->events(0);
ok(@ev > 100, scalar(@ev) . ' events held');
ok(@ev < 1024, '... fewer than written: the zone is full');
is($ev[-1]{version}, 1024, 'the newest loaded event (1024) is kept') or diag "last: $ev[-1]{version}";
is($ev[0]{version}, 1024 - @ev + 1, 'the oldest ones were dropped (contiguous up to the newest)');

# a change while the zone is full: its event is there, the oldest goes
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'r' });
is($r->{status}, 200, 'upgrade mode while the zone is full');
my $st = $ng->status;
my $v = $st->{version};
ok($v > 1024, "a change was stored (version $v)");
my @ev2 = $ng->events(0);
is($ev2[-1]{version}, $v, 'the newest event is the change just made');
ok($ev2[0]{version} > $ev[0]{version} || @ev2 > @ev, 'room was made from the oldest side');

# reason with the ordinary size: 1000 events fit into the minimum zone
my $small = '';
for my $v (1 .. 1100) {
    $small .= NbTest::json_encode({ version => $v, time => '2026-11-27T06:00:00Z',
        actor => 'ops 127.0.0.1', action => 'drain', from => 'normal', to => 'normal',
        node => '127.0.0.1:13001', reason => 'rolling restart of the app nodes, ' . ('y' x 300) }) . "\n";
}
$ng->stop;
$ng->write_file('state.json.events', $small);
$ng->write_file('state.json', NbTest::json_encode({ mode => 'normal', version => 1100,
    since => '2026-11-27T06:00:00Z', reason => '', retry_after => 300, node => undef,
    restoring_from => undef }));
$ng->start;
@ev = $ng->events(0);
ok(@ev >= 1000, 'minimum zone: at least 1000 events with a 350-byte reason (' . scalar(@ev) . ')');
is($ev[-1]{version}, 1100, '... up to the newest');
is(scalar($ng->crashes), 0, 'no crash');
done_testing;
