#!/usr/bin/perl
# Ctrl-C (SIGINT) in nb-maint's guided runs: the run stops at once (the
# running command gets the signal too), says which step it stopped at, what
# state the cluster is in (mode, drained nodes, nodes not up) and the command
# that resumes it (--from-step N); that command then finishes the run.
# Also with -o json (an "interrupted" event, the error envelope, exit 130).
# Real gateway, mock nodes.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbCli;
use JSON::PP;
use Text::ParseWords qw(shellwords);
use Time::HiRes qw(time sleep);

my $J = JSON::PP->new->utf8->canonical;
my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B]));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes up');
my %E = (NB_MAINT_URL => $ng->url('/_nb_maint/'), NB_MAINT_TOKEN => NbTest::ADMIN_TOKEN);
my $D = NbCli::dir();
sub node_of { my ($id) = @_; (grep { $_->{id} eq $id } @{ $ng->status->{upstreams}[0]{nodes} })[0] || {} }

# the restart command: the first time for a node it records its pid and
# sleeps (exec: the sleep is the command), later it returns at once
my $RESTART = "test -e $D/done-{port} && exit 0; touch $D/done-{port}; echo \$\$ > $D/pid-{port}; exec sleep 30";
my $aport = $A->port;

my $h = NbCli::start({ env => \%E }, 'rolling-restart', '--restart-cmd', $RESTART,
    '--timeout', '5', '--health-timeout', '20', '--interval', '0.1');
ok(NbTest::wait_until(sub { -s "$D/pid-$aport" }, 20), 'the run reached the restart of A (the command runs)')
    or diag NbCli::output_so_far($h);
my $cmd_pid = do { open my $f, '<', "$D/pid-$aport"; local $/; <$f> } // 0;
chomp $cmd_pid;
sleep 0.2;
my $t0 = time;
kill 'INT', $h->{pid};
my ($rc, $out, $err, $took) = NbCli::finish($h, 20);
my $stop = time - $t0;
is($rc, 130, 'Ctrl-C: exit 130') or diag "$out\n$err";

cmp_ok($stop, '<', 5, sprintf('... stops at once (%.1f s), not after the 30 s command', $stop));
ok(NbTest::wait_until(sub { !kill 0, $cmd_pid }, 5), '... the running command got the signal too');
like($out, qr/^\[4\/12\] restart \Q$aid\E: .*\.\.\. interrupted$/m, '... the step line ends in "interrupted"') or diag $out;
like($out, qr/^Interrupted \(Ctrl-C\) at step 4\/12: restart \Q$aid\E: /m, '... names the step it stopped at') or diag $out;
like($out, qr/^Cluster now: mode normal, version \d+; drained: \Q$aid\E; not up: none\.$/m,
     '... the state the cluster is in (A drained)') or diag $out;
like($out, qr/\Q$aid\E is still drained/, '... what that means');
my ($resume) = $out =~ /^To resume, rerun from this step:\n  (.+)$/m;
ok(defined $resume, '... the command to resume') or diag $out;
like($resume // '', qr/^nb-maint rolling-restart .*--from-step 4$/, "... $resume");
like($err, qr/^nb-maint: interrupted at step 4\/12: restart /m, '... and on stderr');
ok(node_of($aid)->{drain}, 'A is left drained, as said');

# resume with the command shown
my @args = shellwords($resume // '');
shift @args;
($rc, $out, $err) = NbCli::run({ env => \%E, timeout => 60 }, @args);
is($rc, 0, 'the resume command: exit 0') or diag "$out\n$err";
like($out, qr/^\[1\/12\] drain \Q$aid\E\.\.\. skipped$/m, '... skips the steps before 4');
like($out, qr/^\[4\/12\] restart \Q$aid\E: .*ok$/m, '... restarts A');
like($out, qr/^\[12\/12\] undrain \Q$bid\E\.\.\. ok$/m, '... and goes on to B');
like($out, qr/rolling restart done/, '... done');
ok(!node_of($aid)->{drain} && !node_of($bid)->{drain}, 'no node left drained');

# -o json, interrupted in maintenance-run while the maintenance task runs
my $TASK = "echo \$\$ > $D/task.pid; exec sleep 30";
$h = NbCli::start({ env => \%E }, 'maintenance-run', '--node', $aid, '--stop-cmd', 'true', '--start-cmd', 'true',
    '--task-cmd', $TASK, '--drain-timeout', '2', '--interval', '0.1', '-o', 'json');
ok(NbTest::wait_until(sub { -s "$D/task.pid" }, 20), 'maintenance-run -o json: the task runs')
    or diag NbCli::output_so_far($h);
sleep 0.2;
kill 'INT', $h->{pid};
($rc, $out, $err) = NbCli::finish($h, 20);
is($rc, 130, '... Ctrl-C: exit 130') or diag "$out\n$err";
my @ev = map { my $x = eval { $J->decode($_) }; $x } grep { /\S/ } split /\n/, $out;
ok(@ev && !grep({ !defined } @ev), '... every stdout line is JSON') or diag $out;
my $last = $ev[-1] || {};
is($last->{event}, 'interrupted', '... the last event: interrupted');
is($last->{state}{mode}, 'maintenance', '... with the state: maintenance');
like($last->{desc} // '', qr/^maintenance on \Q$aid\E/, '... and the step');
like($last->{resume} // '', qr/maintenance-run .*--from-step \d+$/, '... and the resume command');
my $e = eval { $J->decode($err) } || {};
is($e->{error}{code}, 'interrupted', '... {"error":{"code":"interrupted"}} on stderr') or diag $err;
is($e->{error}{exit}, 130, '... exit 130 in it');
is($ng->status->{mode}, 'maintenance', 'the gateway stays in maintenance');
$ng->admin(POST => 'restore', { force => JSON::PP::true });

is(scalar $ng->crashes, 0, 'no worker crashed');
is_deeply(NbCli::warnings(), [], 'no Perl warnings from nb-maint');
done_testing;
