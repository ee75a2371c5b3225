# Fault test: a full disk and a read-only file system under the file store
# (a tiny tmpfs mounted by the test).  A write answers 503
# store_unavailable, nothing changes (state, state file, audit file),
# status says store.ok=false on its own, nothing crashes, and writes work
# again once the disk does.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

plan skip_all => 'needs root to mount a tmpfs' unless $> == 0;

my $ng = NbTest::Nginx->new(http => std_http(store => 'file:%%PREFIX%%/disk/state.json'));
my $disk = $ng->prefix . '/disk';
mkdir $disk or die "mkdir: $!";
my $mounted = system('mount', '-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'nb_maint_t', $disk) == 0;
plan skip_all => 'cannot mount a tmpfs here' unless $mounted;
END { system('umount', '-l', $disk) if $mounted && $disk }

$ng->start;
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'before' });
is($r->{status}, 200, 'a write on the tmpfs works') or diag $r->{content};

sub snapshot {
    return (state_fields($ng->status), $ng->read_file("$disk/state.json"),
            $ng->read_file("$disk/state.json.events"));
}

sub refused {
    my ($what) = @_;
    my ($st, $file, $events) = snapshot();
    my $page = $ng->get('/')->{status};
    for my $i (1 .. 5) {
        my $w = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001',
                                             reason => "try $i" });
        is($w->{status}, 503, "$what: write $i answered 503");
        is($w->{json}{error}{code}, 'store_unavailable', "$what: write $i store_unavailable");
    }
    $r = $ng->admin(POST => 'restore');
    is($r->{status}, 503, "$what: restore answered 503 too");
    my ($st2, $file2, $events2) = snapshot();
    is_deeply($st2, $st, "$what: state unchanged");
    is($file2, $file, "$what: state file unchanged");
    is($events2, $events, "$what: audit file unchanged (no half line)");
    my $s = $ng->status;
    ok(!$s->{store}{ok}, "$what: store.ok false");
    is($ng->get('/')->{status}, $page, "$what: requests still served as before ($page)");
}

# ---- full disk -----------------------------------------------------------
my $fill = "$disk/fill";
open my $fh, '>:raw', $fill or die "fill: $!";
my $block = "\0" x 4096;
while (syswrite($fh, $block)) { }
close $fh;

ok(NbTest::wait_until(sub { !$ng->status->{store}{ok} }, 5),
   'full disk: status says store.ok=false before any write');
like($ng->status->{store}{error} // '', qr/space/i, 'full disk: store.error says why');
refused('full disk');

unlink $fill;
$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001', reason => 'room' });
is($r->{status}, 200, 'space again: write accepted') or diag $r->{content};
ok($r->{json}{store}{ok}, 'space again: store.ok true');
like($ng->read_file("$disk/state.json"), qr/"reason":"room"/, 'space again: stored');

# ---- read-only file system -----------------------------------------------
system('mount', '-o', 'remount,ro', $disk) == 0 or die "remount ro failed";
ok(NbTest::wait_until(sub { !$ng->status->{store}{ok} }, 5),
   'read-only: status says store.ok=false before any write');
like($ng->status->{store}{error} // '', qr/read-only/i, 'read-only: store.error says why');
refused('read-only');

system('mount', '-o', 'remount,rw', $disk) == 0 or die "remount rw failed";
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'rw again' });
is($r->{status}, 200, 'writable again: write accepted') or diag $r->{content};
ok($ng->status->{store}{ok}, 'writable again: store.ok true');

my $want = state_fields($ng->status);
$ng->stop;
$ng->start;
is_deeply(state_fields($ng->status), $want, 'what was acknowledged survives a restart');
is(scalar $ng->crashes, 0, 'no crash');
$ng->stop;

done_testing;
