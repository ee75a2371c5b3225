# A version upgrade over a changing membership (issue 19): NocoBase's
# upgrade on Kubernetes replaces every pod (new addresses).  Upgrade mode,
# the old pods stop (the name's answer empties: the last set is kept and
# fails its checks), new pods come up under new addresses, the first one is
# designated and reached through the bypass, restore waits for expect=3 new
# members and ends in normal; the old ones leave status.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbDNS;
use Time::HiRes qw(time sleep);

my $dns = NbDNS->new(ttl => 1);
my $P = free_port();
my $name = 'app.nb.test';
sub pod { NbTest::Mock->new(host => "127.0.0.$_[0]", port => $P) }
sub id { "127.0.0.$_[0]:$P" }
sub answer { $dns->set($name => [ map { "127.0.0.$_" } @_ ]) }

my %pods = map { ($_ => pod($_)) } 2, 3, 4;
answer(2, 3, 4);
my $ng = NbTest::Nginx->new(http => $dns->http(name => $name, port => $P,
                                               params => 'max=8 expect=3 interval=200ms',
                                               bypass => '127.0.0.1/32',
                                               servers => NbTest::bypass_server('proxy_pass http://app;')));
# the main server's clients are public: no bypass there
$ng->write_conf(http => $ng->{http} =~ s/nb_maint_bypass_allow 127\.0\.0\.1\/32;/nb_maint_bypass_allow 10.0.0.0\/8;/r);
$ng->start;
ok($ng->wait_all_health('up', 10, map { id($_) } 2, 3, 4), 'three pods up');

is($ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'v2' })->{status}, 200, 'upgrade mode');
is($ng->get('/api/x')->{status}, 503, 'public: 503');

# the old pods stop; the Service has no ready endpoint (NXDOMAIN)
$pods{$_}->stop for 2, 3, 4;
$dns->set();
ok($ng->wait_all_health('down', 10, map { id($_) } 2, 3, 4), 'old pods down (kept: fail-static)');

# the new version's first pod, on a new address
$pods{5} = pod(5);
answer(5);
ok($ng->wait_health(id(5), 'up', 10), 'first new pod up');
is($ng->admin(POST => 'mode', { mode => 'upgrade', node => id(5) })->{status}, 200,
   'designate it');
my $r = HTTP::Tiny->new->get($ng->url('/api/verify', 'b'));
is($r->{status}, 200, 'bypass reaches the new pod');
is($r->{headers}{'x-node'}, id(5), '... the designated one');
is($ng->get('/api/x')->{status}, 503, 'public: still 503');

# restore now: waits for three new members
is($ng->admin(POST => 'restore', {})->{status}, 200, 'POST restore');
sleep 1;
is($ng->status->{mode}, 'restoring', 'one new member of three expected: restoring');
$pods{$_} = pod($_) for 6, 7;
answer(5, 6, 7);
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 10), 'three new members healthy: normal');
ok(NbTest::wait_until(sub { my $n = $ng->status_nodes; !grep { $n->{ id($_) } } 2, 3, 4 }, 10),
   'the old pods left status');
my $h = $ng->hit(30, '/api/x');
is($h->{status}{200}, 30, 'public traffic: 200');
is(scalar(grep { $h->{node}{ id($_) } } 5, 6, 7), 3, 'spread over the three new pods');
is($ng->crashes, 0, 'no worker crashed');
done_testing;
