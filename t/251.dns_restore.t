# The restore gate with DNS members (issue 19, SPEC 10a): a restore also
# waits for the expected number of members (nb_maint_resolve expect=, or
# "expect" in POST restore), counting only members of an answer that came
# after the restore was asked that passed their checks since; never met by
# an empty set; status.restore shows expected / resolved / healthy; a
# restore over a changing membership (a pod replaced meanwhile).
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
sub mode { $_[0]->status->{mode} }
sub members { $_[0]->status->{restore} }

# ---- an empty set never ends a restore ------------------------------------------
{
    my $ng = NbTest::Nginx->new(http => $dns->http(name => $name, port => $P));
    $ng->start;
    is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade (no member yet)');
    my $r = $ng->admin(POST => 'restore', {});
    is($r->{status}, 200, 'POST restore');
    is(mode($ng), 'restoring', 'an upstream with no member yet still gates the restore');
    sleep 1.5;
    my $m = members($ng);
    is(mode($ng), 'restoring', 'no member: still restoring');
    is_deeply([ @$m{qw(expected resolved healthy)} ], [ 1, 0, 0 ],
              'status.restore: expected 1 (at least one), resolved 0, healthy 0') or diag explain $m;
    my $p = pod(2);
    $dns->set($name => ['127.0.0.2']);
    ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 8), 'the first member passes its checks: normal');
    $ng->stop;
}

# ---- expect=3: two members are not enough ---------------------------------------
my %pods = map { ($_ => pod($_)) } 2, 3;
$dns->set($name => [ '127.0.0.2', '127.0.0.3' ]);
my $ng = NbTest::Nginx->new(http => $dns->http(name => $name, port => $P,
                                               params => 'max=8 expect=3 interval=200ms'));
$ng->start;
ok($ng->wait_all_health('up', 10, id(2), id(3)), 'two members up');

is($ng->admin(POST => 'mode', { mode => 'maintenance', node => id(2) })->{status}, 200,
   'maintenance on a member');
is($ng->admin(POST => 'restore', {})->{status}, 200, 'POST restore');
ok($ng->wait_status(sub { ($_[0]{restore}{healthy} // 0) == 2 }, 8), 'both members healthy again');
sleep 0.5;
my $m = members($ng);
is(mode($ng), 'restoring', 'expect=3 with two members: still restoring');
is_deeply([ @$m{qw(expected resolved healthy)} ], [ 3, 2, 2 ],
          'status.restore: expected 3, resolved 2, healthy 2') or diag explain $m;
is($m->{members}[0]{upstream}, 'app', 'status.restore.members names the upstream');

# a pod is replaced while restoring: .2 goes, .4 and .5 come
$pods{4} = pod(4);
$pods{5} = pod(5);
$pods{5}->set_state('fail');
$dns->set($name => [ '127.0.0.3', '127.0.0.4', '127.0.0.5' ]);
ok($ng->wait_status(sub { ($_[0]{restore}{resolved} // 0) == 3 }, 8),
   'the new answer: 3 resolved (the gone member not counted)');
sleep 1;
is(mode($ng), 'restoring', 'one of them fails its checks: still restoring');
$pods{5}->set_state('running');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 8), 'three healthy members: normal');

# ---- "expect" in POST restore ---------------------------------------------------
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade');
for my $bad (0, 65, 'x', 1.5) {
    my $r = $ng->admin(POST => 'restore', { expect => $bad });
    is($r->{status}, 400, "POST restore expect=$bad: 400");
}
is(mode($ng), 'upgrade', 'nothing changed');
my $r = $ng->admin(POST => 'restore', { expect => 4 });
is($r->{status}, 200, 'POST restore {"expect": 4}');
ok($ng->wait_status(sub { ($_[0]{restore}{expected} // 0) == 4 }, 3), 'status.restore.expected: 4');
sleep 1.5;
is(mode($ng), 'restoring', 'three members for four expected: restoring');
is($ng->status->{restore_expect}, 4, 'the state keeps "restore_expect"') ;
$r = $ng->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{status}, 200, 'force ends it');
is(mode($ng), 'normal', 'normal');

is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade again');
is($ng->admin(POST => 'restore', { expect => 2 })->{status}, 200, 'POST restore {"expect": 2} (below expect=3)');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 8), 'two of three healthy suffice: normal');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
