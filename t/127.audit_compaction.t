# Issue 9 defect 8: after the master (root) compacts the audit file at
# start, the workers (nobody) can still append to it; and a write whose
# audit line cannot be written is not acknowledged: 503, nothing changed.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

plan skip_all => 'needs root (master root, workers nobody)' unless $> == 0;

my ($ng, $dir) = NbTest::nobody_store_gateway();

# 2,100 audit lines (more than twice the ring: compacted at start), as a
# gateway with nobody workers would have written them
my $N = 2100;
my $ev = '';
$ev .= qq({"version":$_,"time":"2026-01-01T00:00:00Z","actor":"ops\@127.0.0.1","action":"mode","from":"normal","to":"upgrade","node":null,"reason":"r"}\n)
    for 1 .. $N;
$ng->write_file("$dir/state.json.events", $ev, 0600);
$ng->write_file("$dir/state.json", qq({"mode":"upgrade","node":null,"restoring_from":null,"version":$N,"since":"2026-01-01T00:00:00Z","reason":"r","retry_after":300,"drain":[]}\n), 0600);
chown 65534, 65534, "$dir/state.json.events", "$dir/state.json";

$ng->start;
my @lines = split /\n/, $ng->read_file("$dir/state.json.events");
cmp_ok(scalar @lines, '<', $N, 'compacted at start');
my @st = stat "$dir/state.json.events";
is($st[4], 65534, 'the compacted file still belongs to the worker user');

my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001', reason => 'after compaction' });
is($r->{status}, 200, 'write accepted') or diag $r->{content};
my $v = $N + 1;
@lines = split /\n/, $ng->read_file("$dir/state.json.events");
like($lines[-1], qr/"version":$v\b.*"after compaction"/, 'its audit line is in the file');
my @ev = $ng->events($N);
is(scalar @ev, 1, 'and in GET events');

# the audit file cannot be written: the change is not acknowledged
chmod 0400, "$dir/state.json.events";
my $before = state_fields($ng->status);
my $file = $ng->read_file("$dir/state.json");
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'no audit' });
is($r->{status}, 503, 'write without its audit line: 503');
is($r->{json}{error}{code}, 'store_unavailable', 'store_unavailable');
is_deeply(state_fields($ng->status), $before, 'state unchanged');
is($ng->read_file("$dir/state.json"), $file, 'state file unchanged');
ok(!$ng->status->{store}{ok}, 'store.ok false');

chmod 0600, "$dir/state.json.events";
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'audit back' });
is($r->{status}, 200, 'audit file writable again: write accepted') or diag $r->{content};
@lines = split /\n/, $ng->read_file("$dir/state.json.events");
like($lines[-1], qr/"audit back"/, 'audit line written');
is(scalar $ng->crashes, 0, 'no crash');

done_testing;
