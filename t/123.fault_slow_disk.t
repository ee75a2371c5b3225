# Fault test (issue 9 defect 3): a slow disk.  The file store's write is
# stuck (a FIFO nobody reads stands in for the disk); no worker's event loop
# waits for it: requests to every worker, the writing one included, are
# answered at once, and a second write waits for the first without
# blocking its worker either.  Once the disk is back both get their answer
# and the change is stored.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbFault;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'needs /proc/<pid>/task/*/wchan' unless -r "/proc/$$/task/$$/wchan";

my ($ng, $v0, $fifo) = slow_disk_gateway();

my $first = bg_admin($ng, POST => 'mode', { mode => 'upgrade', reason => 'slow' });
my $writer = stuck_worker($ng, 10);
ok($writer, 'the write is stuck on the slow disk') or BAIL_OUT('no stuck write');

# a second write, on the version it read: it waits for the first one
my $second = bg_admin($ng, POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001' },
                      { 'If-Match' => "\"$v0\"" });

my ($max, $bad, %seen) = (0, 0);
my $end = time + 2;
while (time < $end) {
    for my $path ('/', '/_nb_maint/status') {
        my ($st, $secs, $pid) = $path eq '/'
            ? timed_get($ng, $path, 3)
            : do {
                my $t0 = time;
                my $r = $ng->admin(GET => 'status');
                ($r->{status}, time - $t0, '');
            };
        $bad++ if $st != 200;
        $max = $secs if $secs > $max;
        $seen{$pid}++ if $pid;
    }
}
is($bad, 0, 'every request answered 200 during the slow write');
cmp_ok($max, '<', 0.5, sprintf('slowest answer %.3f s (no event loop waits on the disk)', $max));
ok($seen{$writer}, 'the writing worker answered too');
is($ng->status->{mode}, 'normal', 'nothing applied before it is stored');

my ($st) = bg_wait($first, 0.1);
ok(!defined $st, 'the first write is not acknowledged while the disk holds it');
($st) = bg_wait($second, 0.1);
ok(!defined $st, 'the second write waits for the first');

my $reader = fifo_release($fifo);
my $body;
($st, $body) = bg_wait($first, 10);
is($st, 200, 'first write answered 200 once stored') or diag $body;
($st, $body) = bg_wait($second, 10);
is($st, 409, 'second write (If-Match on the old version) answered 409 after it') or diag $body;
waitpid $reader, 0;

my $s = $ng->status;
is($s->{mode}, 'upgrade', 'state changed');
is($s->{version}, $v0 + 1, 'one new version');
like($ng->read_file('state.json'), qr/"reason":"slow"/, 'stored in the state file');

my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'fast again' });
is($r->{status}, 200, 'later writes work') or diag $r->{content};
is(scalar $ng->crashes, 0, 'no crash');

done_testing;
