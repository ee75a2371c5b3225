# GET events?action=a,b&limit=N (issue 13: the dashboard's event log paged
# and filtered; a server-side help for clients that want fewer events):
# action filters by the event's action (comma-separated, URL-decoded),
# limit keeps the newest N; both with since; bad limits get 400.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $N = NbTest::Nginx->new(http => std_http());
$N->start;

for my $b ({ mode => 'upgrade', reason => 'one' }, { mode => 'maintenance', node => '127.0.0.1:1' },
           { mode => 'upgrade', reason => 'two' }) {
    my $r = $N->admin(POST => 'mode', $b);
    is($r->{status}, 200, "POST mode $b->{mode}") or diag $r->{content};
}
is($N->admin(POST => 'restore')->{status}, 200, 'POST restore');

sub evs {
    my ($q) = @_;
    my $r = $N->admin(GET => "events?$q");
    return $r->{status} == 200 ? [ map { "$_->{action}:$_->{version}" } @{ $r->{json}{events} } ] : $r->{status};
}
my @all = @{ evs('since=0') };
is(scalar @all, 4, 'four events');
my @act = map { (split /:/)[0] } @all;
is_deeply(\@act, [qw(mode mode mode restore)], 'actions') or diag explain \@all;

is_deeply(evs('action=mode'), [@all[0 .. 2]], 'action=mode');
is_deeply(evs('action=restore'), [$all[3]], 'action=restore');
is_deeply(evs('action=mode,restore'), \@all, 'action=mode,restore');
is_deeply(evs('action=restore%2Cmode'), \@all, 'action=restore%2Cmode (decoded)');
is_deeply(evs('action=nothing'), [], 'an action no event has: none');
is_deeply(evs('action='), \@all, 'an empty action: no filter');
is_deeply(evs('limit=1'), [$all[3]], 'limit=1: the newest');
is_deeply(evs('limit=2&action=mode'), [@all[1, 2]], 'limit=2&action=mode: the newest two mode events');
my ($v1) = $all[0] =~ /:(\d+)$/;
is_deeply(evs("since=$v1&action=mode"), [@all[1, 2]], 'since with action');
is_deeply(evs('limit=1000'), \@all, 'limit above the count: all');
for my $bad (qw(limit=0 limit=-1 limit=abc limit=5000)) {
    my $r = $N->admin(GET => "events?$bad");
    is($r->{status}, 400, "$bad: 400");
    is($r->{json}{error}{code}, 'bad_field', "$bad: bad_field");
}

is(scalar($N->crashes), 0, 'no crash');
$N->stop;
done_testing;
