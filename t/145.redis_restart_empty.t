# Fault test (issue 9): Redis is killed and restarted EMPTY in the middle
# of an upgrade, while two gateways keep taking writes.  The gateways keep
# serving the upgrade throughout, re-publish their state (highest version
# wins) with the audit events Redis lost, and nothing that was answered
# 200 is lost: every acknowledged change is in the final history once,
# versions are never reused, and both gateways end on Redis' state.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

my $redis = NbTest::Redis->new;
my ($A, $B) = redis_gateways(redis => $redis, n => 2);
my $P = $A->redis_prefix;
my @GW = ($A, $B);
ok($A->wait_store_ok(1, 10) && $B->wait_store_ok(1, 10), 'both gateways on redis');

is($A->admin(POST => 'mode', { mode => 'upgrade', reason => 'start' })->{status}, 200, 'upgrade');
ok($B->wait_status(sub { $_[0]{mode} eq 'upgrade' }, 5), 'B follows');

# a writer per gateway: POST mode with a unique reason every 20 ms; writes
# one JSON line per answer: {status, version, reason}
my $STOP = "$A->{prefix}/stop-writers";
my @kids;
for my $i (0, 1) {
    my $out = "$GW[$i]{prefix}/writes.jsonl";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open my $fh, '>', $out or POSIX::_exit(1);
        $fh->autoflush(1);
        my $ua = HTTP::Tiny->new(timeout => 5);
        my $n = 0;
        until (-e $STOP) {
            my $reason = "gw$i write " . ++$n;
            my $r = $ua->post($GW[$i]->url('/_nb_maint/mode'), {
                headers => { Authorization => 'Bearer ' . ADMIN_TOKEN,
                             'Content-Type' => 'application/json' },
                content => json_encode({ mode => 'upgrade', reason => $reason }) });
            my $j = eval { json_decode($r->{content}) } || {};
            print $fh json_encode({ status => $r->{status}, version => $j->{version},
                                    reason => $reason, code => ($j->{error} || {})->{code} }), "\n";
            sleep 0.02;
        }
        close $fh;
        POSIX::_exit(0);
    }
    push @kids, [$pid, $out];
}

sleep 1.5;
my $served = 1;
ok($redis->kill, 'redis killed (kill -9)');
for (1 .. 10) {
    $served &&= $_->get('/')->{status} == 503 for @GW;
    sleep 0.1;
}
$redis->start;    # same port, empty (the gateways may refill it at once)
for (1 .. 10) {
    $served &&= $_->get('/')->{status} == 503 for @GW;
    sleep 0.1;
}
ok($served, 'both gateways served the upgrade 503 throughout');
ok(NbTest::wait_until(sub { ($redis->cli('GET', "$P:version") || 0) > 0 }, 10),
   'the state is re-published into the empty redis');
ok($_->wait_store_ok(1, 10), 'store ok again') for @GW;
sleep 1.5;    # more writes on the recovered store

open my $stop, '>', $STOP or die;
close $stop;
my @acked;
my %codes;
for my $k (@kids) {
    waitpid $k->[0], 0;
    open my $fh, '<', $k->[1] or die "$k->[1]: $!";
    for (<$fh>) {
        my $w = json_decode($_);
        if ($w->{status} == 200) { push @acked, $w } else { $codes{"$w->{status} " . ($w->{code} // '')}++ }
    }
}
diag(scalar(@acked) . ' writes acknowledged; others: '
     . join(', ', map { "$_ x$codes{$_}" } sort keys %codes));
cmp_ok(scalar @acked, '>=', 20, 'writes were acknowledged');
is(scalar(grep { !/^503 store_unavailable$/ } keys %codes), 0,
   'writes that were not stored answered 503 store_unavailable, nothing else');

# both gateways and redis agree on the final state
my $vend = $redis->cli('GET', "$P:version");
ok(NbTest::wait_until(sub { !grep { $_->status->{version} != $vend } @GW }, 5),
   "both gateways at redis' version $vend");
my $state = json_decode($redis->cli('GET', "$P:state"));
is($state->{mode}, 'upgrade', 'redis: still upgrade');
is($A->status->{reason}, $state->{reason}, "A shows redis' reason");

# nothing acknowledged lost, nothing twice, versions not reused
my @rev = map { json_decode($_) } $redis->cli('LRANGE', "$P:events", 0, -1);
my %seen;
$seen{ $_->{version} }++ for @rev;
is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'redis events: no version twice');
my %rr = map { ($_->{version} => $_->{reason}) } @rev;
my @lost = grep { ($rr{ $_->{version} // -1 } // '') ne $_->{reason} } @acked;
is(scalar @lost, 0, 'redis events: every acknowledged write, with its reason')
    or diag explain [@lost[0 .. ($#lost < 5 ? $#lost : 5)]];
my %av;
$av{ $_->{version} }++ for @acked;
is(scalar(grep { $av{$_} > 1 } keys %av), 0, 'no version acknowledged twice');
for my $i (0, 1) {
    my %ge = map { ($_->{version} => $_->{reason}) } $GW[$i]->events(0);
    my @miss = grep { ($ge{ $_->{version} } // '') ne $_->{reason} } @acked;
    is(scalar @miss, 0, "gateway $i events: every acknowledged write");
}

# and the store takes writes again, continuing the versions
my $r = $B->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{status}, 200, 'a write after the recovery');
is($r->{json}{version}, $vend + 1, 'versions continue');

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no worker crashed');
done_testing;
