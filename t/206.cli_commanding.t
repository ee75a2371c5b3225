# The CLI shows what a busy node reports: status and node show NocoBase's
# code and command; guided runs waiting for a node say
# "node A: APP_COMMANDING upgrade (3s)" while they wait.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use POSIX ();

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B]));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes up');

my $CLI = NbTest::repo_root() . '/scripts/nb-maint';
sub cli {
    my (@args) = @_;
    my $out = $ng->prefix . '/cli.out';
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', $out; open STDERR, '>&', \*STDOUT;
        $ENV{NB_MAINT_URL} = $ng->url('/_nb_maint/');
        $ENV{NB_MAINT_TOKEN} = NbTest::ADMIN_TOKEN;
        { exec $^X, $CLI, @args }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $rc = $? >> 8;
    return ($rc, do { local (@ARGV, $/) = $out; <> } // '');
}

$B->set_state('commanding', command => 'pm.enable');
ok(defined $ng->wait_health($bid, 'commanding', 3), 'B commanding (pm.enable)');
my ($rc, $out) = cli('status');
is($rc, 0, 'status: exit 0');
like($out, qr/^\s+\Q$bid\E\s+commanding\s.*APP_COMMANDING pm\.enable \(\d+s\)\s*$/m, 'status: B commanding, APP_COMMANDING pm.enable (Ns)')
    or diag $out;
like($out, qr/\bWS\b/, 'status: a WS column');
($rc, $out) = cli('node', $bid);
like($out, qr/^app:\s+APP_COMMANDING pm\.enable \(\d+s\)$/m, 'node B: app line') or diag $out;
like($out, qr/^websockets:\s+0$/m, 'node B: websockets');
$B->set_state('running');
ok(defined $ng->wait_health($bid, 'up', 3), 'B up');

# startup: the start command makes A busy for 3 s (NocoBase's upgrade), the
# guided run shows what it waits for
my $start = qq{$^X -MHTTP::Tiny -e 'HTTP::Tiny->new->post("http://{node}/__mock/state?health=commanding&command=upgrade&seconds=3")'};
($rc, $out) = cli('startup', '--start-cmd', $start, '--interval', '0.2', '--timeout', '30', '--node', $aid);
is($rc, 0, 'startup: exit 0') or diag $out;
like($out, qr/node \Q$aid\E: APP_COMMANDING upgrade \(\d+s\)/, 'startup shows "node A: APP_COMMANDING upgrade (Ns)" while it waits')
    or diag $out;
like($out, qr/startup done/, '... and finishes once A is healthy');

is(scalar $ng->crashes, 0, 'no worker crashed');
done_testing;
