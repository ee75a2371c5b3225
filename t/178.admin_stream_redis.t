# GET stream with the Redis store (issue 13, OWNERS interface 2): a stream
# on gateway B sees a change made on gateway A, status and audit event,
# within 1 s (pub/sub to B, then B's next look at most 500 ms later).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbStream;
use Time::HiRes qw(time);

my $redis = NbTest::Redis->new;
my ($A, $B) = redis_gateways(redis => $redis, n => 2);
$_->wait_store_ok(1, 10) or BAIL_OUT('store not ok') for $A, $B;

my $s = NbStream->open($B->port, '/_nb_maint/stream', token => ADMIN_TOKEN);
is($s->{status}, 200, 'B: stream open');
my $ev = $s->next(2);
is($ev && $ev->{event}, 'status', 'B: status at once');
is($ev->{json}{store}{type}, 'redis', 'B: the Redis store in it');

my @took;
for my $i (1 .. 3) {
    my $mode = $i % 2 ? 'upgrade' : 'maintenance';
    my %body = (mode => $mode, reason => "from A #$i");
    $body{node} = '127.0.0.1:1' if $mode eq 'maintenance';
    my $t0 = time;
    my $r = $A->admin(POST => 'mode', \%body);
    is($r->{status}, 200, "A: POST mode $mode") or diag $r->{content};
    my $st = $s->wait_for(sub { ($_[0]{event} // '') eq 'status'
                                && ($_[0]{json}{reason} // '') eq "from A #$i" }, 3);
    ok($st, "B's stream: the status of change $i");
    push @took, $st ? $st->{at} - $t0 : 99;
    my $e = $s->wait_for(sub { ($_[0]{event} // '') eq 'events' }, 2);
    ok($e && grep({ ($_->{reason} // '') eq "from A #$i" } @{ $e->{json} || [] }),
       "B's stream: the audit event of change $i");
}
my ($max) = sort { $b <=> $a } @took;
diag(sprintf 'A change -> B stream: %s s', join ' ', map { sprintf '%.2f', $_ } @took);
cmp_ok($max, '<', 1, sprintf 'every change on B\'s stream within 1 s (max %.2f s)', $max);
$s->close;

is(scalar($A->crashes) + scalar($B->crashes), 0, 'no crash');
$_->stop for $A, $B;
unlike($_->error_log, qr/\[alert\]|open socket/, 'no alert (no redis socket left open)') for $A, $B;
done_testing;
