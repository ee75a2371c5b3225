# Issue 21 item 6: WAIT (min_replicas) holds the command connection for up
# to wait_ms, and Redis answers a connection's commands in order.  With
# wait_ms above the 2 s command timeout and a replica that cannot confirm
# (SIGSTOPped), the owner's periodic re-read queued behind WAIT used to
# time out: the connection was dropped and store.ok flipped to false.  Now
# a command behind WAITs gets their time on top of its own: the write
# answers 503 store_unreplicated after wait_ms, store.ok stays true, and
# nothing says Redis stopped answering.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbSentinel;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

plan skip_all => 'redis-sentinel not installed' unless NbSentinel::available();

my $WAIT_MS = 4000;
my $s = NbSentinel->new;
my $G = NbTest::Nginx->new(workers => 1, http => std_http(
    store => $s->store_url(prefix => unique_prefix('wb'), query => "min_replicas=1&wait_ms=$WAIT_MS")));
$G->start;
ok($G->wait_store_ok(1, 10), 'store ok');
is($G->admin(POST => 'mode', { mode => 'upgrade', reason => 'confirmed' })->{status}, 200,
   'a write the replica confirms: 200');

my ($replica) = grep { $_ != $s->primary } $s->servers;
ok(kill('STOP', $replica->pid), 'the replica is stopped (SIGSTOP): it cannot confirm');

# the write in a child; the status polled meanwhile
my $out = $G->prefix . '/write.out';
my $t0 = time;
my $pid = fork // die "fork: $!";
if (!$pid) {
    my $r = HTTP::Tiny->new(timeout => 15)->post($G->url('/_nb_maint/mode'), {
        headers => { Authorization => 'Bearer ' . ADMIN_TOKEN, 'Content-Type' => 'application/json' },
        content => json_encode({ mode => 'upgrade', reason => 'unconfirmed' }) });
    open my $fh, '>', $out or POSIX::_exit(1);
    printf $fh "%d %.3f %s\n", $r->{status}, time - $t0, $r->{content} // '';
    close $fh;
    POSIX::_exit(0);
}
my ($polls, $notok, $done) = (0, 0, 0);
while (time - $t0 < 15) {
    $done ||= time if waitpid($pid, POSIX::WNOHANG()) != 0;
    last if $done && time - $done > 1;    # and one second after the answer
    my $st = $G->status;
    $polls++;
    $notok++ unless $st->{store}{ok};
    sleep 0.1;
}
waitpid $pid, 0;
my ($code, $took, $body) = split ' ', ($G->read_file('write.out') // '0 0 '), 3;
diag(sprintf 'write answered %s after %.2f s; %d status polls, %d with store.ok false',
     $code, $took, $polls, $notok);
is($code, 503, 'the unconfirmed write answers 503');
like($body // '', qr/store_unreplicated/, '... store_unreplicated');
cmp_ok($took, '>=', $WAIT_MS / 1000 - 0.3, 'after wait_ms');
cmp_ok($polls, '>=', 20, 'status answered meanwhile');
is($notok, 0, 'store.ok stayed true throughout (no command timed out behind WAIT)');
unlike($G->error_log, qr/did not answer|redis command connection lost/,
       'no "did not answer", the command connection kept');
ok($G->status->{store}{ok}, 'store.ok true after it');

ok(kill('CONT', $replica->pid), 'the replica runs again');
ok(NbTest::wait_until(sub {
    $G->admin(POST => 'mode', { mode => 'upgrade', reason => 'again ' . time })->{status} == 200;
}, 15, 0.5), 'writes are confirmed again: 200');

is(scalar($G->crashes), 0, 'no crash');
$G->stop;
done_testing;
