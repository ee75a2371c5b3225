# GET stream (OWNERS interface 2): ": keepalive" after 15 s without an event,
# and the stream stays open and live after it.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbStream;
use Time::HiRes qw(time);

my $N = NbTest::Nginx->new(workers => 1, http => std_http());
$N->start;

my $s = NbStream->open($N->port, '/_nb_maint/stream', token => ADMIN_TOKEN);
is($s->{status}, 200, 'stream open');
my $ev = $s->next(2);
is($ev && $ev->{event}, 'status', 'status');
my $t0 = $ev ? $ev->{at} : time;

my $ka = $s->next(18);
ok($ka && defined $ka->{comment}, 'a comment block') or diag explain $ka;
is($ka && $ka->{comment}, 'keepalive', '": keepalive"');
my $after = $ka ? $ka->{at} - $t0 : -1;
ok($after > 14 && $after < 16.5, sprintf('after 15 s of silence (%.2f s)', $after));

my $r = $N->admin(POST => 'mode', { mode => 'upgrade' });
ok($s->wait_for(sub { ($_[0]{json}{mode} // '') eq 'upgrade' }, 2), 'still live after it');
$s->close;

is(scalar($N->crashes), 0, 'no crash');
$N->stop;
done_testing;
