# Fault test (issue 21, item 4): kill -9 of a worker in the middle of a
# reader of the shared state (GET events turning the audit ring into JSON;
# stopped there by gdb, then killed).  Before: that reader held the zone's
# ngx_rwlock, which has no dead-holder recovery; every state writer then
# spun at 100 % CPU for good and writes never answered.  Now readers hold
# nothing (they copy under a sequence count and parse the copy): writes
# still succeed promptly and no process spins.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbFault;
use POSIX ();
use Time::HiRes qw(time sleep);

my $gdb = (grep { -x "$_/gdb" } split /:/, $ENV{PATH} // '')[0];
plan skip_all => 'needs gdb' unless $gdb;

my $ng = NbTest::Nginx->new(http => std_http(
    listen_opts  => ' reuseport',
    server_extra => '    add_header X-Pid $pid always;',
));
$ng->start;

# an audit line or two for GET events to parse
for my $m ({ mode => 'upgrade', reason => 'one' }, { mode => 'normal' }) {
    is($ng->admin(POST => 'mode', $m)->{status}, 200, "write $m->{mode}");
}

my ($victim) = $ng->worker_pids;

# gdb stops the victim where GET events parses an audit line, and kills it there
my $gout = $ng->prefix . '/logs/gdb.out';
my $gpid = fork // die "fork: $!";
if (!$gpid) {
    open STDOUT, '>', $gout; open STDERR, '>&', \*STDOUT;
    { exec "$gdb/gdb", '-p', $victim, '-batch', '-nx',
         '-ex', 'break ngx_http_nb_maint_json_parse if $_caller_is("ngx_http_nb_maint_events_json")',
         '-ex', 'continue', '-ex', 'kill' };
    POSIX::_exit(127);
}
my $attached = NbTest::wait_until(sub {
    open my $s, '<', "/proc/$victim/status" or return 0;
    my ($tp) = join('', <$s>) =~ /^TracerPid:\s*(\d+)/m;
    return $tp && (NbTest::slurp($gout) // '') =~ /Breakpoint 1 at/;
}, 20);
plan skip_all => 'gdb cannot stop the worker here: ' . (NbTest::slurp($gout) // '') unless $attached;

# GET events until the victim takes one (it stops there, and dies)
my $tries = 0;
my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 1);
while (NbTest::Nginx::_alive($victim) && $tries++ < 60) {
    $ua->get($ng->url('/_nb_maint/events'), { headers => { Authorization => 'Bearer ' . NbTest::ADMIN_TOKEN } });
}
waitpid $gpid, 0;
ok(!NbTest::Nginx::_alive($victim), "the worker was killed inside GET events' reading of the ring ($tries requests)")
    or diag NbTest::slurp($gout);
like(NbTest::slurp($gout) // '', qr/Breakpoint 1, .*ngx_http_nb_maint_json_parse/, '... at the breakpoint')
    or diag NbTest::slurp($gout);

# writes: answered promptly, by whichever worker
my $wua = HTTP::Tiny->new(keep_alive => 0, timeout => 6);
my %st;
my $slowest = 0;
for my $i (1 .. 4) {
    my $t0 = time;
    my $r = $wua->request('POST', $ng->url('/_nb_maint/mode'), {
        headers => { Authorization => 'Bearer ' . NbTest::ADMIN_TOKEN, 'Content-Type' => 'application/json' },
        content => NbTest::json_encode($i % 2 ? { mode => 'upgrade', reason => "after $i" } : { mode => 'normal' }),
    });
    $st{ $r->{status} }++;
    $slowest = time - $t0 if time - $t0 > $slowest;
}
is_deeply(\%st, { 200 => 4 }, '4 writes after the kill: all 200') or diag explain \%st;
cmp_ok($slowest, '<', 3, sprintf('each within 3 s (slowest %.2f s)', $slowest));

# no process spins: the workers' CPU time over one second
sub cpu_ticks {
    my $t = 0;
    for my $w ($ng->worker_pids) {
        open my $fh, '<', "/proc/$w/stat" or next;
        my @f = split ' ', (split /\)\s+/, scalar <$fh>, 2)[1];
        $t += $f[11] + $f[12];     # utime, stime (fields 14, 15)
    }
    return $t;
}
my $c0 = cpu_ticks();
sleep 1;
my $used = (cpu_ticks() - $c0) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
cmp_ok($used, '<', 0.1, sprintf('no worker spins: %.2f s of CPU in 1 s, all workers', $used));

my %modes;
$modes{ $ng->status->{mode} }++ for 1 .. 6;
is_deeply(\%modes, { normal => 6 }, 'every worker sees the last write');
is(scalar(grep { !/signal 9\b/ } $ng->crashes), 0, 'no crash but the kill');

# a spinning worker would not stop by itself
kill 'KILL', $ng->worker_pids if $used >= 0.1;
$ng->stop;

done_testing;
