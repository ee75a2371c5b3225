# Issue 9, defect 16: a write without If-Match applies to the latest state
# and never answers 409 for merely losing an internal race, with either
# store: concurrent writers on two Redis gateways, and on one file-store
# gateway with several workers, all get 200 with distinct versions, and
# every one of them is in the history once.  With If-Match a stale
# version still gets 409.  A repeated identical POST mode is a no-op: no
# new version, no event.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my $N = 16;

# all jobs at once ({gw => NbTest::Nginx, path, body}); parsed answers in order
sub burst {
    return NbTest::burst_admin(map { { %$_, nginx => $_->{gw} } } @_);
}

my $BURST = 0;
sub check_burst {
    my ($label, $gws) = @_;
    $BURST++;
    my $v0 = $gws->[0]->status->{version};
    my @jobs = map {
        { gw => $gws->[$_ % @$gws], path => 'mode',
          body => { mode => 'upgrade', reason => "$label burst $BURST writer $_", retry_after => 100 + $_ } }
    } 0 .. $N - 1;
    my @res = burst(@jobs);
    my @not200 = grep { $_->{status} != 200 } @res;
    is(scalar @not200, 0, "$label: all $N writes without If-Match answered 200")
        or diag explain [map { "$_->{status} $_->{body}" } @not200];
    my %ver;
    for my $r (grep { $_->{status} == 200 } @res) {
        my $v = $r->{json}{version} // -1;
        $ver{$v} = $r->{job}{body}{reason};
        is($r->{json}{reason}, $r->{job}{body}{reason}, "$label: the answer shows the writer's own change")
            unless $r->{json}{reason} eq $r->{job}{body}{reason};
    }
    is_deeply([sort { $a <=> $b } keys %ver], [$v0 + 1 .. $v0 + $N],
              "$label: versions " . ($v0 + 1) . '..' . ($v0 + $N) . ', one per write');
    for my $g (@$gws) {
        ok($g->wait_status(sub { $_[0]{version} == $v0 + $N }, 5), "$label: gateway at the last version");
        my %ev = map { ($_->{version} => $_->{reason}) } $g->events($v0);
        is_deeply(\%ev, \%ver, "$label: events hold each write once, with its reason");
    }
    return $v0 + $N;
}

sub check_noop {
    my ($label, $g) = @_;
    my $body = { mode => 'upgrade', reason => "same $label", retry_after => 77 };
    my $r = $g->admin(POST => 'mode', $body);
    is($r->{status}, 200, "$label: POST mode") or diag $r->{content};
    my $v = $r->{json}{version};
    my $nev = scalar $g->events(0);
    for (1 .. 3) {
        $r = $g->admin(POST => 'mode', $body);
        is($r->{status}, 200, "$label: the same POST mode again: 200");
        is($r->{json}{version}, $v, "$label: ... no new version");
    }
    is(scalar $g->events(0), $nev, "$label: ... and no event");
    $r = $g->admin(POST => 'mode', $body, { 'If-Match' => qq("@{[$v - 1]}") });
    is($r->{status}, 409, "$label: a stale If-Match still gets 409");
}

my $http = sub { cluster_http(nodes => [1], check => undef, store => $_[0]) };

# ---- Redis: two gateways, two workers each ----------------------------------------
my $redis = NbTest::Redis->new;
my $prefix = NbTest::unique_prefix('n409');
my @R = map { NbTest::Nginx->new(http => $http->($redis->url(prefix => $prefix)),
                                 workers => 2) } 1 .. 2;
$_->start for @R;
ok($_->wait_store_ok(1, 10), 'redis gateway up') for @R;
check_burst('redis', \@R) for 1 .. 2;
check_noop('redis', $R[0]);

# ---- file store: one gateway, four workers ----------------------------------------
my $F = NbTest::Nginx->new(http => $http->('file:%%PREFIX%%/state.json'), workers => 4,
                           listen_opts => ' reuseport');
$F->write_conf(http => cluster_http(nodes => [1], check => undef, listen_opts => ' reuseport'));
$F->start;
check_burst('file', [$F]) for 1 .. 2;
check_noop('file', $F);

is(scalar(map { $_->crashes } @R, $F), 0, 'no worker crashed');
done_testing;
