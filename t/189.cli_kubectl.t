# The guided runs on Kubernetes (issue 20 item 3), as README's "Kubernetes"
# section shows them: rolling-restart, upgrade-run and maintenance-run with
# kubectl commands, unchanged, against a gateway that follows a headless
# Service (nb_maint_resolve, a local DNS server) whose pods are mock nodes.
# kubectl is a fake in PATH: it records every call and does what the
# Deployment would do: scale starts pods on new addresses (127.0.0.N) or
# stops them (the lowest pod-deletion-cost first, then the newest), rollout
# restart replaces every pod (one new, then one old gone), set image and
# annotate are noted; the Service's answer lists the running pods.  Every
# pod that stops and starts comes back under a new address, as on
# Kubernetes.  Checks each run's kubectl calls, their order and {n}, what
# the CLI says, and the gateway after it (normal, the new pods up, public
# 200s).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbDNS;
use NbCli;
use JSON::PP;
use File::Temp ();
use Time::HiRes qw(time sleep);

my $ROOT = NbTest::repo_root();
my $DIR = File::Temp::tempdir('nb_maint_kubectl_XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $NAME = 'nocobase-headless.app.nb.test';
my $P = NbTest::free_port();
my $dns = NbDNS->new(ttl => 1);
$dns->set();

# ---- the fake kubectl -----------------------------------------------------------
mkdir "$DIR/bin" or die $!;
my %K = (state => "$DIR/k8s.json", log => "$DIR/calls.log", records => "$dns->{dir}/records",
         name => $NAME, port => $P, mock => "$ROOT/scripts/mock-node", perl => $^X, dir => $DIR);
{
    open my $fh, '>', "$DIR/bin/kubectl" or die $!;
    print $fh "#!$^X\n", 'my %K = (', join(', ', map { "'$_' => '$K{$_}'" } sort keys %K), ");\n", <<'EOS';
# fake kubectl: a Deployment "nocobase" whose pods are mock nodes
use strict;
use warnings;
use JSON::PP;
use POSIX ();
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
my $J = JSON::PP->new->canonical;
sub load { open my $f, '<', $K{state} or return { pods => [], next => 2, image => 'nocobase/nocobase:1.6.0' };
           local $/; $J->decode(<$f>) }
sub save { open my $f, '>', "$K{state}.tmp" or die; print $f $J->encode($_[0]); close $f;
           rename "$K{state}.tmp", $K{state} or die }
sub dns { my ($st) = @_; open my $f, '>', "$K{records}.tmp" or die;
          my @ip = map { $_->{ip} } @{ $st->{pods} };
          print $f "$K{name} @ip\n" if @ip; close $f; rename "$K{records}.tmp", $K{records} or die }
sub listening { IO::Socket::INET->new(PeerAddr => $_[0], PeerPort => $K{port}, Timeout => 1) ? 1 : 0 }
sub start_pod {
    my ($st) = @_;
    my $ip = '127.0.0.' . $st->{next}++;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null'; open STDOUT, '>>', "$K{dir}/pods.log"; open STDERR, '>&', \*STDOUT;
        { exec $K{perl}, $K{mock}, '--port', $K{port}, '--host', $ip }
        POSIX::_exit(127);
    }
    my $t0 = time;
    sleep 0.05 until listening($ip) || time - $t0 > 10;
    push @{ $st->{pods} }, { ip => $ip, pid => $pid, image => $st->{image}, cost => 0 };
    dns($st);                          # ready: in the Service's answer
    save($st);
}
sub stop_pod {
    my ($st, $pod) = @_;
    $st->{pods} = [ grep { $_->{ip} ne $pod->{ip} } @{ $st->{pods} } ];
    dns($st);                          # terminating: out of the answer at once
    save($st);
    kill 'TERM', $pod->{pid};
    my $t0 = time;
    sleep 0.05 while kill(0, $pod->{pid}) && time - $t0 < 5;
    kill 'KILL', $pod->{pid};
}
my @argv = @ARGV;
my $st = load();
open my $log, '>>', $K{log} or die;
print $log $J->encode({ argv => \@argv, pods => [ map { $_->{ip} } @{ $st->{pods} } ] }), "\n";
close $log;
shift @ARGV, shift @ARGV if ($ARGV[0] // '') eq '-n';
my $cmd = shift @ARGV // '';
if ($cmd eq 'scale') {
    my ($want) = map { /^--replicas=(\d+)$/ ? $1 : () } @ARGV;
    die "kubectl scale: --replicas=N\n" unless defined $want && "@ARGV" =~ m{deploy/nocobase};
    start_pod($st) while @{ $st->{pods} } < $want;
    while (@{ $st->{pods} } > $want) {       # the lowest deletion cost, then the newest
        my ($victim) = sort { $a->{cost} <=> $b->{cost} || $b->{n} <=> $a->{n} }
                       map { my $i = $_; +{ %{ $st->{pods}[$i] }, n => $i } } 0 .. $#{ $st->{pods} };
        stop_pod($st, $victim);
    }
    print "deployment.apps/nocobase scaled\n";
} elsif ($cmd eq 'rollout' && ($ARGV[0] // '') eq 'restart') {
    for my $old (@{ [ @{ $st->{pods} } ] }) {     # maxSurge 1, maxUnavailable 0
        start_pod($st);
        stop_pod($st, $old);
    }
    print "deployment.apps/nocobase restarted\n";
} elsif ($cmd eq 'rollout' && ($ARGV[0] // '') eq 'status') {
    my $n = grep { listening($_->{ip}) } @{ $st->{pods} };
    print "deployment \"nocobase\" successfully rolled out ($n pods)\n";
} elsif ($cmd eq 'set' && ($ARGV[0] // '') eq 'image') {
    my ($img) = map { /^nocobase=(\S+)$/ ? $1 : () } @ARGV;
    $st->{image} = $img;
    save($st);
    print "deployment.apps/nocobase image updated\n";
} elsif ($cmd eq 'annotate') {
    my ($ip) = map { /^--field-selector=?status\.podIP=(\S+)$/ ? $1 : () } @ARGV;
    ($ip) = map { $ARGV[$_ + 1] =~ /^status\.podIP=(\S+)$/ ? $1 : () }
            grep { $ARGV[$_] eq '--field-selector' } 0 .. $#ARGV - 1 unless $ip;
    my ($cost) = map { /^controller\.kubernetes\.io\/pod-deletion-cost=(-?\d+)$/ ? $1 : () } @ARGV;
    my ($pod) = grep { $_->{ip} eq ($ip // '') } @{ $st->{pods} };
    die "kubectl annotate: no pod with IP " . ($ip // '?') . "\n" unless $pod && defined $cost;
    $pod->{cost} = $cost;
    save($st);
    print "pod/nocobase-$ip annotated\n";
} else {
    die "fake kubectl: unknown command @argv\n";
}
EOS
    close $fh;
    chmod 0755, "$DIR/bin/kubectl";
}
sub state { open my $f, '<', $K{state} or return {}; local $/; decode_json(<$f>) }
sub calls {
    open my $f, '<', $K{log} or return [];
    my @c = map { decode_json($_) } grep { /\S/ } <$f>;
    unlink $K{log};
    return \@c;
}
sub argv_of { [ map { join ' ', @{ $_->{argv} } } @{ $_[0] } ] }
sub pods { [ map { $_->{ip} } @{ state()->{pods} || [] } ] }
END { kill 'KILL', map { $_->{pid} } @{ (state() || {})->{pods} || [] } if -e $K{state} }

my %ENV_CLI = (PATH => "$DIR/bin:$ENV{PATH}");
sub kubectl { my $out = `PATH=$DIR/bin:\$PATH kubectl @_ 2>&1`; is($?, 0, "kubectl @_") or diag $out }

# ---- the cluster: two pods, a gateway following the Service ----------------------
kubectl('-n app scale deploy/nocobase --replicas=2');
is_deeply(pods(), ['127.0.0.2', '127.0.0.3'], 'two pods');
calls();
my $ng = NbTest::Nginx->new(http => $dns->http(name => $NAME, port => $P, params => 'max=8 expect=2 interval=200ms'));
$ng->start;
sub ids { map { "$_:$P" } @_ }
ok($ng->wait_all_health('up', 10, ids('127.0.0.2', '127.0.0.3')), 'the gateway: both pods up');
$ENV_CLI{NB_MAINT_URL} = 'http://127.0.0.1:' . $ng->port . '/_nb_maint/';
$ENV_CLI{NB_MAINT_TOKEN} = NbTest::ADMIN_TOKEN;

sub settled {
    my ($what, @want) = @_;
    my %want = map { $_ => 1 } ids(@want);
    my $ok = NbTest::wait_until(sub {
        my $s = $ng->status;
        my @n = grep { !$_->{leaving} } map { @{ $_->{nodes} } } @{ $s->{upstreams} };
        return $s->{mode} eq 'normal' && @n == keys %want && !grep { !$want{ $_->{id} } || $_->{health} ne 'up' || $_->{drain} } @n;
    }, 10);
    ok($ok, "$what: normal, the members are " . join(', ', @want) . ', up, undrained')
        or diag explain $ng->status;
    my $h = $ng->hit(20, '/api/x');
    is($h->{status}{200}, 20, "$what: 20 public requests, 200");
}
my @RUN = ('--interval', '0.2', '--agent-interval', '0');

# ---- rolling-restart: kubectl rollout restart && rollout status -------------------
{
    my ($rc, $out, $err) = NbCli::run({ env => \%ENV_CLI, timeout => 90 }, 'rolling-restart', @RUN,
        '--timeout', '10', '--health-timeout', '40',
        '--restart-cmd', 'kubectl -n app rollout restart deploy/nocobase && kubectl -n app rollout status deploy/nocobase');
    is($rc, 0, 'rolling-restart: exit 0') or diag "$out\n$err";
    is_deeply(argv_of(calls()), ['-n app rollout restart deploy/nocobase', '-n app rollout status deploy/nocobase'],
              'rolling-restart: one rollout restart, then its status (the second node was replaced by it)');
    like($out, qr/wait until 127\.0\.0\.2:$P is healthy \(or the pod that replaced it\)\.\.\. ok \(replaced by /,
         'rolling-restart: the first node counts as replaced');
    like($out, qr/undrain 127\.0\.0\.2:$P\.\.\. ok \(not undrained: 127\.0\.0\.2:$P was replaced/,
         'rolling-restart: the replaced node is not undrained');
    like($out, qr/drain 127\.0\.0\.3:$P\.\.\. ok \(skipped: 127\.0\.0\.3:$P left \(replaced\)\)/,
         'rolling-restart: the node the rollout replaced too is skipped');
    is_deeply(pods(), ['127.0.0.4', '127.0.0.5'], 'rolling-restart: two new pods');
    settled('after rolling-restart', '127.0.0.4', '127.0.0.5');
}

# ---- upgrade-run: scale to 0, set image, scale to {n} ------------------------------
{
    my ($rc, $out, $err) = NbCli::run({ env => \%ENV_CLI, timeout => 120 }, 'upgrade-run', @RUN,
        '--timeout', '40', '--drain-timeout', '5', '--reason', 'NocoBase 1.7',
        '--stop-cmd', 'kubectl -n app scale deploy/nocobase --replicas={n}',
        '--update-cmd', 'kubectl -n app set image deploy/nocobase nocobase=nocobase/nocobase:1.7.0',
        '--start-cmd', 'kubectl -n app scale deploy/nocobase --replicas={n}',
        '--verify-cmd', 'curl -fsS -o /dev/null http://{node}/api/__health_check');
    is($rc, 0, 'upgrade-run: exit 0') or diag "$out\n$err";
    my $c = calls();
    is_deeply(argv_of($c), ['-n app scale deploy/nocobase --replicas=1', '-n app scale deploy/nocobase --replicas=0',
                            '-n app set image deploy/nocobase nocobase=nocobase/nocobase:1.7.0',
                            '-n app scale deploy/nocobase --replicas=1', '-n app scale deploy/nocobase --replicas=2'],
              'upgrade-run: scale down one by one to 0, set image, scale up to 1, then 2');
    is_deeply($c->[3]{pods}, [], 'upgrade-run: every pod stopped before the image changed and the first started');
    like($out, qr/enter upgrade mode \(public requests get the 503 page; bypass goes to the first node up\)/,
         'upgrade-run: no node designated (their addresses change)');
    like($out, qr/wait until \S+ is healthy \(or the pod that replaced it\)\.\.\. ok \(replaced by 127\.0\.0\.6:$P\)/,
         'upgrade-run: the first node is the new pod');
    like($out, qr/verify \S+: curl.*\.\.\. ok/, 'upgrade-run: verified (on the new pod)');
    my $st = state();
    is_deeply([ map { $_->{image} } @{ $st->{pods} } ], ['nocobase/nocobase:1.7.0', 'nocobase/nocobase:1.7.0'],
              'upgrade-run: both pods run the new image');
    settled('after upgrade-run', '127.0.0.6', '127.0.0.7');
}

# ---- maintenance-run on the first pod: the others annotated and scaled away --------
{
    my ($keep, $other) = ids('127.0.0.6', '127.0.0.7');
    my ($rc, $out, $err) = NbCli::run({ env => \%ENV_CLI, timeout => 120 }, 'maintenance-run', @RUN,
        '--timeout', '40', '--drain-timeout', '5', '--node', $keep,
        '--stop-cmd', 'kubectl -n app annotate pod -l app=nocobase --field-selector status.podIP={host} '
                    . 'controller.kubernetes.io/pod-deletion-cost=-100 --overwrite && '
                    . 'kubectl -n app scale deploy/nocobase --replicas={n}',
        '--task-cmd', 'curl -fsS -o /dev/null http://{node}/api/__health_check',
        '--start-cmd', 'kubectl -n app scale deploy/nocobase --replicas={n}');
    is($rc, 0, 'maintenance-run: exit 0') or diag "$out\n$err";
    my $c = calls();
    is_deeply(argv_of($c), ['-n app annotate pod -l app=nocobase --field-selector status.podIP=127.0.0.7 '
                              . 'controller.kubernetes.io/pod-deletion-cost=-100 --overwrite',
                            '-n app scale deploy/nocobase --replicas=1', '-n app scale deploy/nocobase --replicas=2'],
              'maintenance-run: the other pod marked for deletion, scaled to 1, back to 2');
    is_deeply($c->[2]{pods}, ['127.0.0.6'], 'maintenance-run: the designated pod was the one kept');
    settled('after maintenance-run', '127.0.0.6', '127.0.0.8');
}

is_deeply(NbCli::warnings(), [], 'no Perl warnings from the CLI');
is($ng->crashes, 0, 'no worker crashed');
done_testing();
