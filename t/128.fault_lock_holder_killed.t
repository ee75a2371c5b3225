# Fault test (issue 9 defect 3): kill -9 of a worker while it holds the
# cross-process write mutex itself (made to take it through gdb, as if it
# died in the middle of a state update).  The mutex is taken back from the
# dead pid: the other workers keep serving and writing.  Before, every
# writer slept on it for good.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbFault;
use Time::HiRes qw(time);

my $gdb = (grep { -x "$_/gdb" } split /:/, $ENV{PATH} // '')[0];
plan skip_all => 'needs gdb' unless $gdb;

my $ng = NbTest::Nginx->new(http => std_http(
    listen_opts  => ' reuseport',
    server_extra => '    add_header X-Pid $pid always;',
));
$ng->start;
my $v0 = $ng->status->{version};
my ($victim) = $ng->worker_pids;

my ($rc, $out) = NbTest::run_cmd($ng->prefix . '/logs/gdb.out', "$gdb/gdb", '-p', $victim,
    '-batch', '-nx', '-ex', 'call (void) ngx_http_nb_maint_state_lock_write()', '-ex', 'detach');
plan skip_all => "gdb cannot call into the worker here: $out"
    unless $rc == 0 && $out !~ /No symbol|cannot|not permitted|Couldn't/i;

kill 'KILL', $victim;
ok(NbTest::wait_until(sub { !NbTest::Nginx::_alive($victim) }, 5), 'the holder is gone');

my %bad;
for (1 .. 20) {
    my ($st, $secs) = timed_get($ng, '/', 3);
    $bad{$st}++ if $st != 200 || $secs > 1;
}
is_deeply(\%bad, {}, 'requests keep being answered');

my $t0 = time;
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'after the kill' });
is($r->{status}, 200, 'a write after the kill is accepted') or diag $r->{content};
cmp_ok(time - $t0, '<', 3, 'promptly');
like($ng->error_log, qr/took back the write lock of process $victim/, 'error.log says so');

NbTest::wait_until(sub { $ng->worker_pids >= 2 }, 10);
my %modes;
$modes{ $ng->status->{mode} }++ for 1 .. 10;
is_deeply(\%modes, { upgrade => 10 }, 'every worker sees it');
$r = $ng->admin(POST => 'restore');
is($r->{status}, 200, 'and the next write too') or diag $r->{content};
is(scalar(grep { !/signal 9\b/ } $ng->crashes), 0, 'no crash but the kill');

done_testing;
