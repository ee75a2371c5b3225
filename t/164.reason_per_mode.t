# Each mode change sets its own reason and retry_after (issue 9, defect
# 20): defaults when not given, nothing leaks into later modes, drain events
# do not carry the mode's reason.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B]));
$ng->start;
ok($ng->wait_all_health('up', 5, $A->id, $B->id), 'both nodes up');

my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'v2 upgrade', retry_after => 900 });
is($r->{status}, 200, 'upgrade with reason and retry_after');
is($r->{json}{reason}, 'v2 upgrade', '... reason');
is($r->{json}{retry_after}, 900, '... retry_after');
is($ng->get('/')->{headers}{'retry-after'}, 900, '503 says Retry-After: 900');

$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => $A->id });
is($r->{status}, 200, 'upgrade again, setting the node');
is($r->{json}{reason}, 'v2 upgrade', '... the same mode keeps its reason');
is($r->{json}{retry_after}, 900, '... and retry_after');

$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $A->id });
is($r->{status}, 200, 'maintenance without reason');
is($r->{json}{reason} // '', '', '... no reason from upgrade');
is($r->{json}{retry_after}, 300, '... retry_after back to the default 300');

$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'again', retry_after => 60 });
is($r->{status}, 200, 'upgrade with reason');
$r = $ng->admin(POST => 'restore', { force => JSON::PP::true });
is($r->{status}, 200, 'force restore');
is($r->{json}{mode}, 'normal', '... normal');
is($r->{json}{reason} // '', '', 'normal: no reason left from upgrade');
is($r->{json}{retry_after}, 300, 'normal: retry_after default');

$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $A->id, reason => 'plugins', retry_after => 120 });
is($r->{status}, 200, 'maintenance with reason');
$r = $ng->admin(POST => 'restore');
is($r->{status}, 200, 'restore (waits for health)');
ok($ng->wait_status(sub { $_[0]{mode} eq 'normal' }, 10), 'normal by itself');
my $st = $ng->status;
is($st->{reason} // '', '', 'normal after restoring: no reason');
is($st->{retry_after}, 300, 'normal after restoring: retry_after default');

$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $A->id, reason => 'secret plan' });
is($r->{status}, 200, 'maintenance with a reason');
$r = $ng->admin(POST => 'nodes/' . $B->id . '/drain');
is($r->{status}, 200, 'drain B');
my ($ev) = grep { $_->{action} eq 'drain' } $ng->events(0);
ok($ev, 'a drain event');
ok(!defined $ev->{reason} || $ev->{reason} eq '', 'the drain event does not carry the mode reason')
    or diag explain $ev;

is($ng->crashes, 0, 'no worker crashed');
done_testing;
