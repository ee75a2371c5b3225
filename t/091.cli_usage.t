#!/usr/bin/perl
# scripts/nb-maint: usage errors, network errors, haproxy-errorfile, and the
# commands and guided runs against a small fake admin API (in this file)
# in front of real scripts/mock-node processes. Core Perl only, parallel-safe.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest qw(free_port);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG strftime);
use Time::HiRes qw(time sleep);

my $CLI  = "$FindBin::Bin/../scripts/nb-maint";
my $MOCK = "$FindBin::Bin/../scripts/mock-node";
my $dir  = tempdir(CLEANUP => 1);
my $JSON = JSON::PP->new->utf8->canonical;

sub slurp { my ($f) = @_; open my $fh, '<:raw', $f or return undef; local $/; <$fh> }

# run the CLI: (exit code, stdout, stderr)
my $runs = 0;
sub cli {
    my ($env, $stdin, @args) = @_;
    $runs++;
    my ($o, $e, $i) = ("$dir/out.$runs", "$dir/err.$runs", "$dir/in.$runs");
    open my $fh, '>', $i or die;
    print $fh $stdin // '';
    close $fh;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', $i;
        open STDOUT, '>', $o;
        open STDERR, '>', $e;
        delete @ENV{qw(NB_MAINT_URL NB_MAINT_TOKEN NB_MAINT_PAGE)};
        $ENV{$_} = $env->{$_} for keys %$env;
        { exec $^X, $CLI, @args }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my @r = ($? >> 8, slurp($o) // '', slurp($e) // '');
    our @perl_warnings;
    push @perl_warnings, "nb-maint @args: $1" if $r[2] =~ /(.* at \S*nb-maint line \d+.*)/;
    return @r;
}

# ------------------------------------------------------------ usage errors

my ($rc, $out, $err) = cli({}, '');
is($rc, 2, 'no arguments: exit 2');
like($err, qr/^usage: nb-maint/m, 'no arguments: usage on stderr');

($rc, $out, $err) = cli({}, '', 'frobnicate');
is($rc, 2, 'unknown command: exit 2');
like($err, qr/unknown command 'frobnicate'/, 'unknown command named');
like($err, qr/^usage:/m, 'unknown command: usage');

($rc, $out, $err) = cli({}, '', 'status', '--no-such-option');
is($rc, 2, 'unknown option: exit 2');

($rc, $out, $err) = cli({}, '', 'drain');
is($rc, 2, 'missing argument: exit 2');
like($err, qr/usage: nb-maint drain ID/, 'command usage shown');

($rc, $out, $err) = cli({}, '', 'maintenance', '--url', 'http://127.0.0.1:1/');
is($rc, 2, 'maintenance without --node: exit 2');

($rc, $out, $err) = cli({}, '', 'upgrade-run', '--stop-cmd', 'true');
is($rc, 2, 'upgrade-run without --start-cmd: exit 2');

($rc, $out, $err) = cli({}, '', '--help');
is($rc, 0, '--help: exit 0');
like($out, qr/rolling-restart/, '--help lists commands');

for my $c (qw(status restore drain rolling-restart startup upgrade-run maintenance-run haproxy-errorfile)) {
    ($rc, $out, $err) = cli({}, '', $c, '--help');
    ok($rc == 0 && $out =~ /^usage: nb-maint \Q$c\E/, "$c --help");
}

($rc, $out, $err) = cli({}, '', 'status');
is($rc, 2, 'no URL: exit 2');
like($err, qr/NB_MAINT_URL/, 'no URL: says how to set it');

# ------------------------------------------------------------ network error

my $closed = free_port();
($rc, $out, $err) = cli({ NB_MAINT_URL => "http://127.0.0.1:$closed/_nb_maint/", NB_MAINT_TOKEN => 't' }, '', 'status');
is($rc, 4, 'closed port: exit 4 (gateway unavailable)');
like($err, qr/^nb-maint: cannot reach the gateway at http:\/\/127\.0\.0\.1:$closed\/_nb_maint\/: .+/,
     'closed port: clear message');

# ------------------------------------------------------------ haproxy-errorfile

my $tpl = "$dir/page.html";
open my $tfh, '>', $tpl or die;
print $tfh qq{<html lang="{{lang}}"><title>{{title}}</title><h1>{{heading}}</h1><p>{{message}}</p>}
         . qq{<p>{{reason}}</p><p>{{since}}</p><p>{{retry_after}}</p><p>{{mode}}</p><p>{{unknown}}</p></html>\n};
close $tfh;
my $ef = "$dir/503.http";
($rc, $out, $err) = cli({ NB_MAINT_URL => "http://127.0.0.1:$closed/_nb_maint/" }, '',
    'haproxy-errorfile', '--retry-after', '60', '--out', $ef, '--page', $tpl,
    '--reason', 'DB <migration> & "more"', '--mode', 'upgrade');
is($rc, 0, 'haproxy-errorfile with --retry-after needs no gateway') or diag $err;
my $file = slurp($ef) // '';
like($file, qr{\AHTTP/1\.0 503 }, 'starts with HTTP/1.0 503');
my ($head, $body) = split /\r\n\r\n/, $file, 2;
like($head, qr/^Retry-After: 60\r?$/m, 'Retry-After: 60');
like($head, qr/^Cache-Control: no-store\r?$/m, 'Cache-Control: no-store');
like($head, qr{^Content-Type: text/html; charset=utf-8\r?$}m, 'Content-Type');
like($head, qr/^Connection: close\r?$/m, 'Connection: close');
unlike($head, qr/[^\r]\n/, 'header lines end in CRLF');
my ($cl) = $head =~ /^Content-Length: (\d+)/m;
is($cl, length($body // ''), 'Content-Length matches the body') if defined $cl;
like($body, qr{<html lang="en">}, '{{lang}} filled');
like($body, qr{<p>DB &lt;migration&gt; &amp; &quot;more&quot;</p>}, 'reason HTML-escaped');
like($body, qr{<p>60</p>}, '{{retry_after}} filled');
like($body, qr{<p>upgrade</p>}, '{{mode}} filled');
like($body, qr{<h1>Upgrade in progress</h1>}, 'English heading');
like($body, qr{<p>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ</p>}, '{{since}} filled');
unlike($body, qr/\{\{/, 'no placeholder left');

($rc, $out, $err) = cli({ NB_MAINT_URL => "http://127.0.0.1:$closed/_nb_maint/" }, '',
    'haproxy-errorfile', '--out', $ef, '--page', $tpl);
is($rc, 4, 'haproxy-errorfile without --retry-after asks the gateway: exit 4 when down');

# ------------------------------------------------------------ fake admin API + mock nodes

# Mock nodes are started detached by a shell command (the same one the guided
# runs use), so that stop commands can wait for the pidfile to go away.
my $perl = $^X;
my $START = qq{$perl $MOCK --port {port} --starting 1 --quiet --pidfile $dir/node-{port}.pid }
          . qq{</dev/null >>$dir/node-{port}.log 2>&1 & }
          . qq{i=0; while [ ! -s $dir/node-{port}.pid ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i+1)); done; }
          . qq{[ -s $dir/node-{port}.pid ]};
my $STOP  = qq{p=\$(cat $dir/node-{port}.pid 2>/dev/null) || exit 0; kill \$p; }
          . qq{i=0; while [ -e $dir/node-{port}.pid ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i+1)); done; }
          . qq{[ ! -e $dir/node-{port}.pid ]};

sub sh_node {
    my ($tpl, $port) = @_;
    (my $c = $tpl) =~ s/\{port\}/$port/g;
    my $ok = system('/bin/sh', '-c', $c) == 0;
    remember_pids();
    return $ok;
}

my @ports = (free_port(), free_port());
my @ids = map { "127.0.0.1:$_" } @ports;
my %node_pids;    # every mock node pid seen, to stop them all at the end
sub remember_pids {
    for my $p (@ports) {
        my $pid = slurp("$dir/node-$p.pid") // next;
        $node_pids{$1} = 1 if $pid =~ /^(\d+)/;
    }
}
END {
    remember_pids();
    for my $pid (keys %node_pids) {
        my $cmd = slurp("/proc/$pid/cmdline") // '';
        kill 'TERM', $pid if $cmd =~ /mock-node/;
    }
    if (our $fake_pid) { kill 'TERM', $fake_pid; waitpid $fake_pid, 0 }
}
ok(sh_node($START, $_), "mock node $_ started") for @ports;

# The fake gateway: just enough of SPEC §5 for the CLI. Health = a direct
# check of the mock node on every status/node read.
my $gw_port = free_port();
our $fake_pid = fork // die "fork: $!";
if (!$fake_pid) { eval { fake_gateway($gw_port, \@ids) }; print STDERR $@ if $@; POSIX::_exit(0) }
{
    my $t0 = time;
    until (IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw_port")) {
        die "fake gateway did not start" if time - $t0 > 5;
        sleep 0.05;
    }
}

my %ENVG = (NB_MAINT_URL => "http://127.0.0.1:$gw_port/_nb_maint/", NB_MAINT_TOKEN => 'secret');
sub gw { my ($stdin, @a) = @_; my @r = cli(\%ENVG, $stdin, @a); remember_pids(); @r }
sub gw_status {
    my $r = HTTP::Tiny->new->get("$ENVG{NB_MAINT_URL}status", { headers => { Authorization => 'Bearer secret' } });
    return $JSON->decode($r->{content});
}
sub wait_up {
    my $t0 = time;
    while (time - $t0 < 10) {
        my $s = gw_status();
        my $n = $s->{upstreams} ? $s->{upstreams}[0]{nodes} : [];
        return 1 if @$n && !grep { $_->{health} ne 'up' } @$n;
        sleep 0.1;
    }
    return 0;
}
ok(wait_up(), 'both mock nodes up');

($rc, $out, $err) = cli({ %ENVG, NB_MAINT_TOKEN => 'wrong' }, '', 'status');
is($rc, 1, 'bad token: exit 1');
like($err, qr/^nb-maint: unauthorized: bad token \(HTTP 401\)$/m, 'API error printed as code: message (HTTP nnn)');

($rc, $out, $err) = gw('', 'status');
is($rc, 0, 'status: exit 0') or diag $err;
like($out, qr/^mode:\s+normal$/m, 'status: mode');
like($out, qr/^\s+\Q$ids[0]\E\s+up\s+no\s+0/m, 'status: node table');

($rc, $out, $err) = gw('', 'status', '--json');
is(eval { $JSON->decode($out)->{mode} }, 'normal', 'status --json is the raw state');

($rc, $out, $err) = gw('', 'maintenance', '--node', '10.9.9.9:1');
is($rc, 1, 'unknown node: exit 1');
like($err, qr/^nb-maint: unknown_node: .* \(HTTP 400\)$/m, 'unknown_node error');

($rc, $out, $err) = gw('', 'restore');
is($rc, 3, 'restore while normal: exit 3 (409)');
like($err, qr/invalid_transition/, 'invalid_transition');

($rc, $out, $err) = gw('', 'restore', '--wait');
is($rc, 0, 'restore --wait while normal: already there');

($rc, $out, $err) = gw('', 'maintenance', '--node', $ids[0], '--reason', 'plugins', '--retry-after', '120');
is($rc, 0, 'maintenance: exit 0') or diag $err;
like($out, qr/maintenance, node \Q$ids[0]\E/, 'maintenance: new mode shown');
my $s = gw_status();
is_deeply([@$s{qw(mode node reason retry_after)}], ['maintenance', $ids[0], 'plugins', 120], 'state set');

($rc, $out, $err) = gw('', 'haproxy-errorfile', '--out', $ef, '--page', $tpl);
is($rc, 0, 'haproxy-errorfile reading the status') or diag $err;
$file = slurp($ef) // '';
like($file, qr/^Retry-After: 120\r$/m, 'retry_after from the gateway');
like($file, qr{<p>plugins</p>}, 'reason from the gateway');

($rc, $out, $err) = gw('', 'restore', '--wait', '--timeout', '10', '--interval', '0.1');
is($rc, 0, 'restore --wait: exit 0') or diag $err;
like($out, qr/mode: normal/, 'restore --wait ends in normal');

($rc, $out, $err) = gw('', 'drain', $ids[1]);
is($rc, 0, 'drain');
ok(gw_status()->{upstreams}[0]{nodes}[1]{drain}, 'drained');
($rc, $out, $err) = gw('', 'drain', $ids[1], '--wait', '--timeout', '5');
is($rc, 0, 'drain --wait (idle node)') or diag $err;
($rc, $out, $err) = gw('', 'undrain', $ids[1]);
is($rc, 0, 'undrain');
ok(!gw_status()->{upstreams}[0]{nodes}[1]{drain}, 'undrained');

# drain --wait with a request in flight, and its timeout
{
    my $slow = IO::Socket::INET->new(PeerAddr => $ids[1]) or die;
    print $slow "GET /slow?sleep_ms=5000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    sleep 0.2;
    ($rc, $out, $err) = gw('', 'drain', $ids[1], '--wait', '--timeout', '1', '--interval', '0.1');
    is($rc, 5, 'drain --wait times out while a request is in flight: exit 5');
    like($err, qr/timed out.*still in flight/, 'timeout message');
    my $progress = $out;    # a loaded machine may end the request before the next call
    ($rc, $out, $err) = gw('', 'drain', $ids[1], '--wait', '--timeout', '10', '--interval', '0.1');
    is($rc, 0, 'drain --wait returns once the request finished');
    like($progress . $out, qr/1 request in flight/, 'progress shown');
    gw('', 'undrain', $ids[1]);
}

($rc, $out, $err) = gw('', 'bypass', '--ttl', '60');
is($rc, 0, 'bypass');
like($out, qr/^nb_maint_bypass=[^;\s]+$/m, 'bypass prints the cookie');

($rc, $out, $err) = gw('', 'events', '--since', '0');
is($rc, 0, 'events');
like($out, qr/normal -> maintenance .*reason=plugins/, 'events list the changes');

# rolling restart over both nodes
($rc, $out, $err) = gw('', 'rolling-restart', '--restart-cmd', "$STOP && $START", '--timeout', '5',
    '--health-timeout', '20', '--interval', '0.1');
is($rc, 0, 'rolling-restart: exit 0') or diag "$out\n$err";
note $out;
like($out, qr{^\[1/12\] drain \Q$ids[0]\E\.\.\. ok$}m, 'rolling-restart: step lines');
like($out, qr{^\[5/12\] wait until \Q$ids[0]\E is healthy\.\.\. .*ok$}m, 'rolling-restart: waits for health');
like($out, qr{^\[12/12\] undrain \Q$ids[1]\E\.\.\. ok$}m, 'rolling-restart: last step');
my $mstats = $JSON->decode(HTTP::Tiny->new->get("http://$ids[0]/__mock/stats")->{content});
cmp_ok($mstats->{uptime}, '<', 30, 'node was restarted');
ok(!grep({ $_->{drain} } @{ gw_status()->{upstreams}[0]{nodes} }), 'no node left drained');

# maintenance-run with a task command
($rc, $out, $err) = gw('', 'maintenance-run', '--node', $ids[0], '--stop-cmd', $STOP, '--start-cmd', $START,
    '--task-cmd', 'echo doing maintenance on {node}', '--timeout', '20', '--interval', '0.1');
is($rc, 0, 'maintenance-run: exit 0') or diag "$out\n$err";
like($out, qr{^\[1/\d+\] enter maintenance mode}m, 'maintenance-run: first step');
like($out, qr{\| doing maintenance on \Q$ids[0]\E}, 'maintenance-run: task output shown');
like($out, qr{stop \Q$ids[1]\E.*ok$}m, 'maintenance-run: other node stopped');
is(gw_status()->{mode}, 'normal', 'maintenance-run: back to normal');

# maintenance-run waiting for the operator, who aborts
($rc, $out, $err) = gw("abort\n", 'maintenance-run', '--node', $ids[0], '--stop-cmd', $STOP, '--start-cmd', $START,
    '--interval', '0.1');
is($rc, 1, 'maintenance-run aborted by the operator: exit 1');
like($out, qr/waiting for the operator\)\.\.\. FAILED$/m, 'step FAILED');
like($out, qr/To resume.*start \Q$ids[1]\E.*restore --wait/s, 'says how to resume');
ok(sh_node($START, $ports[1]), 'restart the stopped node by hand');
($rc, $out, $err) = gw('', 'restore', '--wait', '--timeout', '20', '--interval', '0.1');
is($rc, 0, 'restore --wait after the abort') or diag "$out\n$err";

# upgrade-run, verified by the operator through a bypass cookie
($rc, $out, $err) = gw("yes\n", 'upgrade-run', '--stop-cmd', $STOP, '--start-cmd', $START,
    '--backup-cmd', "touch $dir/backup-{port}", '--update-cmd', "touch $dir/update-{port}",
    '--confirm', '--timeout', '20', '--drain-timeout', '2', '--interval', '0.1', '--reason', 'v2');
is($rc, 0, 'upgrade-run --confirm: exit 0') or diag "$out\n$err";
note $out;
ok(-e "$dir/backup-$ports[0]", 'backup ran for the first node');
ok(-e "$dir/update-$ports[0]" && -e "$dir/update-$ports[1]", 'update with {node} ran per node');
like($out, qr/nb_maint_bypass=\S+/, 'bypass cookie shown to the operator');
like($out, qr{^\[(\d+)/\1\] wait until every node is healthy and the mode is normal\.\.\. .*ok$}m, 'last step ok');
my (%seen, @seq);
while ($out =~ /^\[(\d+)\/\d+\] (\w+)/mg) { push @seq, $2 unless $seen{$1}++ }
is("@seq", 'enter wait stop stop back update update start wait verify start restore wait', 'upgrade-run step order');
is(gw_status()->{mode}, 'normal', 'upgrade-run: back to normal');

# upgrade-run failing verification: stops, upgrade mode kept, says how to go on
($rc, $out, $err) = gw('', 'upgrade-run', '--stop-cmd', $STOP, '--start-cmd', $START,
    '--verify-cmd', 'echo broken; exit 3', '--timeout', '20', '--drain-timeout', '2', '--interval', '0.1');
is($rc, 1, 'upgrade-run with failing verify: exit 1');
note $out, $err;
like($out, qr/verify \Q$ids[0]\E: .*FAILED$/m, 'verify step FAILED');
like($err, qr/command failed \(exit status 3\)/, 'failure reason on stderr');
like($out, qr/upgrade mode/, 'explains the state');
like($out, qr/To roll back/, 'says how to roll back');
like($out, qr/To resume.*start \Q$ids[1]\E.*restore --wait/s, 'says how to resume');
unlike($out, qr/^\[\d+\/\d+\] start \Q$ids[1]\E/m, 'no step after the failure');
is(gw_status()->{mode}, 'upgrade', 'still in upgrade mode');
ok(sh_node($START, $ports[1]), 'start the other node by hand');
($rc, $out, $err) = gw('', 'restore', '--wait', '--timeout', '20', '--interval', '0.1');
is($rc, 0, 'restore --wait') or diag "$out\n$err";

# startup from all stopped
sh_node($STOP, $_) for @ports;
($rc, $out, $err) = gw('', 'startup', '--start-cmd', $START, '--node', $ids[1], '--timeout', '20', '--interval', '0.1');
is($rc, 0, 'startup: exit 0') or diag "$out\n$err";
like($out, qr{^\[1/4\] start the first node \Q$ids[1]\E}m, 'startup: --node is started first');
like($out, qr{^\[4/4\] wait until \Q$ids[0]\E is healthy\.\.\. .*ok$}m, 'startup: all healthy');

our @perl_warnings;
is_deeply(\@perl_warnings, [], 'no Perl warnings from nb-maint');

done_testing;

# ============================================================ fake gateway

sub fake_gateway {
    my ($port, $ids) = @_;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 64, ReuseAddr => 1)
        or die "fake gateway: $@";
    my $ua = HTTP::Tiny->new(timeout => 1);
    my %st = (mode => 'normal', node => undef, restoring_from => undef, version => 1,
              since => strftime('%Y-%m-%dT%H:%M:%SZ', gmtime), reason => '', retry_after => 300);
    my %drain;
    my %fails = map { $_ => 0 } @$ids;
    my %health = map { $_ => 'unknown' } @$ids;
    my $checks = 0;
    my @events;
    my $check = sub {
        $checks++;
        for my $id (@$ids) {
            my $r = $ua->get("http://$id/api/__health_check");
            if ($r->{status} == 200 && $r->{content} eq 'ok') { $fails{$id} = 0; $health{$id} = 'up' }
            else { $fails{$id}++; $health{$id} = 'down' }
        }
        if ($st{mode} eq 'restoring' && !grep { $health{$_} ne 'up' } @$ids) {
            push @events, { version => ++$st{version}, action => 'normal', from => 'restoring', to => 'normal' };
            @st{qw(mode node restoring_from)} = ('normal', undef, undef);
        }
    };
    my $node = sub {
        my ($id) = @_;
        my $r = $ua->get("http://$id/__mock/stats");
        my $a = $r->{status} == 200 ? $JSON->decode($r->{content})->{active} : 0;
        return { id => $id, health => $health{$id}, drain => ($drain{$id} ? JSON::PP::true : JSON::PP::false),
                 active => $a, fails => $fails{$id}, last_check => "check-$checks" };
    };
    my $status = sub {
        my @pending = $st{mode} eq 'restoring' ? grep { $health{$_} ne 'up' } @$ids : ();
        return { %st, store => { type => 'file', ok => JSON::PP::true, error => undef },
                 restore => { pending => \@pending },
                 upstreams => [{ name => 'app', nodes => [map { $node->($_) } @$ids] }] };
    };
    my $change = sub {
        my ($to, $b) = @_;
        my $from = $st{mode};
        $st{mode} = $to;
        $st{version}++;
        $st{since} = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime);
        for (qw(node reason retry_after)) { $st{$_} = $b->{$_} if exists $b->{$_} }
        push @events, { version => $st{version}, time => $st{since}, actor => 'ops@127.0.0.1',
                        action => 'mode', from => $from, to => $to, node => $st{node}, reason => $st{reason} };
    };
    while (my $c = $l->accept) {
        local $/ = "\r\n\r\n";
        my $h = <$c> // next;
        my ($m, $uri) = $h =~ /^(\S+) (\S+)/;
        my ($len) = $h =~ /^Content-Length: (\d+)/mi;
        my $body = '';
        read $c, $body, $len if $len;
        my ($code, $extra, $res) = (200, '', undef);
        my $err = sub { ($code, $res) = ($_[0], { error => { code => $_[1], message => $_[2] } }) };
        (my $p = $uri) =~ s{^/_nb_maint/}{};
        my $b = eval { $body eq '' ? {} : $JSON->decode($body) };
        my ($tok) = $h =~ /^Authorization: Bearer (\S+)/mi;
        if (($tok // '') ne 'secret') {
            $err->(401, 'unauthorized', 'bad token');
            $extra = "WWW-Authenticate: Bearer\r\n";
        } elsif (!$b) {
            $err->(400, 'bad_json', 'bad JSON');
        } elsif ($m eq 'GET' && $p eq 'status') {
            $check->();
            $res = $status->();
        } elsif ($m eq 'GET' && $p =~ m{^nodes/(.+)$}) {
            my $id = $1;
            $check->();
            if (grep { $_ eq $id } @$ids) { $res = $node->($id) } else { $err->(404, 'not_found', 'no such node') }
        } elsif ($m eq 'POST' && $p eq 'mode') {
            my $to = $b->{mode} // '';
            if ($to !~ /^(?:maintenance|upgrade)$/) { $err->(400, 'bad_field', 'bad mode') }
            elsif (defined $b->{node} && !grep { $_ eq $b->{node} } @$ids) { $err->(400, 'unknown_node', "unknown node $b->{node}") }
            elsif ($to eq 'maintenance' && !defined $b->{node}) { $err->(400, 'node_required', 'node required') }
            else { $change->($to, $b); $res = $status->() }
        } elsif ($m eq 'POST' && $p eq 'restore') {
            if ($st{mode} !~ /^(?:maintenance|upgrade)$/) { $err->(409, 'invalid_transition', "cannot restore from $st{mode}") }
            else {
                my $from = $st{mode};
                $change->('restoring', {});
                $st{restoring_from} = $from;
                $check->();
                $res = $status->();
            }
        } elsif ($m eq 'POST' && $p =~ m{^nodes/(.+)/(drain|undrain)$}) {
            my ($id, $what) = ($1, $2);
            if (grep { $_ eq $id } @$ids) { $drain{$id} = $what eq 'drain'; $res = $status->() }
            else { $err->(400, 'unknown_node', "unknown node $id") }
        } elsif ($m eq 'POST' && $p eq 'bypass') {
            $res = { ttl => $b->{ttl} // 3600 };
            $extra = "Set-Cookie: nb_maint_bypass=1.abcdef; HttpOnly; SameSite=Lax; Path=/\r\n";
        } elsif ($m eq 'GET' && $p =~ /^events(?:\?since=(\d+))?$/) {
            my $since = $1 // 0;
            $res = { events => [grep { $_->{version} > $since } @events] };
        } else {
            $err->(404, 'not_found', 'not found');
        }
        $extra .= "ETag: \"$st{version}\"\r\n" if ref $res eq 'HASH' && exists $res->{upstreams};
        my $out = $JSON->encode($res);
        print $c "HTTP/1.1 $code X\r\nContent-Type: application/json\r\nContent-Length: " . length($out)
               . "\r\n${extra}Connection: close\r\n\r\n$out";
        close $c;
    }
}
