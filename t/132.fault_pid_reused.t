# Fault test (issue 21, item 13): a dead lock holder whose pid was reused.
# A worker died holding the write mutex; its pid now belongs to another,
# live process.  Simulated through gdb: the worker registry gets a slot
# for the pid of a live unrelated process (a "sleep") with another start
# time than that process has, and the mutex is set to that pid.  Before:
# kill(pid, 0) said the holder lives, every writer spun on the mutex for
# good.  Now a holder is recognized by pid and start time: the mutex is
# taken back and writes go on.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();
use Time::HiRes qw(time);

my $gdb = (grep { -x "$_/gdb" } split /:/, $ENV{PATH} // '')[0];
plan skip_all => 'needs gdb' unless $gdb;
plan skip_all => 'needs /proc' unless -r "/proc/$$/stat";

my $ng = NbTest::Nginx->new(http => std_http());
$ng->start;

# the process that got the dead holder's pid
my $other = fork // die "fork: $!";
if (!$other) { exec 'sleep', '60'; POSIX::_exit(127) }
END { kill 'KILL', $other if $other }

my ($w) = $ng->worker_pids;
my ($rc, $out) = NbTest::run_cmd($ng->prefix . '/logs/gdb.out', "$gdb/gdb", '-p', $w, '-batch', '-nx',
    '-ex', "set var ngx_http_nb_maint_sh->workers[255].pid = $other",
    '-ex', "set var ngx_http_nb_maint_sh->workers[255].start = 12345",
    '-ex', "set var ngx_http_nb_maint_sh->write_mtx.lock = $other",
    '-ex', 'print ngx_http_nb_maint_sh->write_mtx.lock', '-ex', 'detach');
plan skip_all => "gdb cannot write into the worker here: $out"
    unless $rc == 0 && $out =~ /= $other\b/;
ok(kill(0, $other), "pid $other is alive (an unrelated process), the registry says another start time");

my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 6);
my $t0 = time;
my $r = $ua->request('POST', $ng->url('/_nb_maint/mode'), {
    headers => { Authorization => 'Bearer ' . NbTest::ADMIN_TOKEN, 'Content-Type' => 'application/json' },
    content => NbTest::json_encode({ mode => 'upgrade', reason => 'pid reused' }),
});
is($r->{status}, 200, 'a write while the mutex names the reused pid: 200') or diag $r->{content};
cmp_ok(time - $t0, '<', 3, 'promptly');
like($ng->error_log, qr/took back the write lock of process $other/, 'error.log: taken back from the dead holder');
is($ng->status->{mode}, 'upgrade', 'stored and published');
is($ng->admin(POST => 'restore')->{status}, 200, 'and the next write too');
is(scalar $ng->crashes, 0, 'no crash');

if ($r->{status} != 200) { kill 'KILL', $ng->worker_pids }
$ng->stop;

done_testing;
