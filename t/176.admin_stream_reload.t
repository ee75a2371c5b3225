# GET stream and the worker's life (issue 13, OWNERS interface 2): a reload
# with streams open does not keep the old worker alive (worker_shutdown_timeout
# is 5 s here: the old worker must be gone well before), the streams end
# cleanly (the last chunk), a new stream works at once; so does a stop.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbStream;
use Time::HiRes qw(time sleep);

my $N = NbTest::Nginx->new(workers => 2, http => std_http());
$N->start;
my $path = '/_nb_maint/stream';

my @s = map { NbStream->open($N->port, $path, token => ADMIN_TOKEN) } 1 .. 4;
is(scalar(grep { $_->{status} == 200 } @s), 4, 'four streams open');
for my $i (0 .. $#s) {
    my $ev = $s[$i]->next(2);
    is($ev && $ev->{event}, 'status', "stream $i: status");
}

my %old = map { ($_ => 1) } $N->worker_pids;
my $t0 = time;
my ($rc, $out) = NbTest::run_cmd($N->prefix . '/logs/reload.out', $N->nginx_cmd('-s', 'reload'));
is($rc, 0, 'nginx -s reload') or diag $out;
my $gone = wait_until(sub { !grep { $old{$_} } $N->worker_pids }, 10, 0.05);
my $took = time - $t0;
ok($gone, 'the old workers exit');
cmp_ok($took, '<', NbTest::slow(2.5, 4), sprintf('... within 2.5 s (ASan: 4 s) of the reload (%.2f s; shutdown timeout 5 s)', $took));

for my $i (0 .. $#s) {
    ok($s[$i]->ended(3), "stream $i ended");
    ok($s[$i]{done}, "stream $i: ended with the last chunk (a clean end)");
    $s[$i]->close;
}
like($N->error_log, qr/event stream closed: the worker exits/, 'error.log says why (info)');

# the new workers take streams at once
wait_until(sub { my @w = $N->worker_pids; @w >= 2 }, 10);
my $s = NbStream->open($N->port, $path, token => ADMIN_TOKEN);
is($s->{status}, 200, 'a stream after the reload');
my $ev = $s->next(2);
is($ev && $ev->{event}, 'status', 'with the status');
my $r = $N->admin(POST => 'mode', { mode => 'upgrade' });
ok($s->wait_for(sub { ($_[0]{json}{mode} // '') eq 'upgrade' }, 2), 'and the next change');

# a stop (QUIT) with a stream open is as quick
$t0 = time;
my $master = $N->master_pid;
$N->stop;
$took = time - $t0;
cmp_ok($took, '<', NbTest::slow(2.5, 4), sprintf('stop with a stream open: %.2f s', $took));
ok($s->ended(2), 'the stream ended');
$s->close;

is(scalar($N->crashes), 0, 'no crash');
unlike($N->error_log, qr/\[alert\]|open socket/, 'no alert (no socket left open)');
done_testing;
