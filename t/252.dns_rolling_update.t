# A simulated Kubernetes rolling update (issue 19): three pods behind a DNS
# name (nb_maint_resolve), replaced one by one -- a new pod up on a new
# address, the old pod's preStop drains it and waits, the old pod leaves
# the answer and stops -- under a request loop: no non-2xx answer, and no
# request reaches a pod once its drain was acknowledged.  Then the same with
# the resolver down during a replacement (fail-static: the new pod waits,
# the old one is drained by its hook, traffic goes on).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbDNS;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

my $dns = NbDNS->new(ttl => 1);
my $P = free_port();
my $name = 'app.nb.test';
sub pod { NbTest::Mock->new(host => "127.0.0.$_[0]", port => $P) }
sub id { "127.0.0.$_[0]:$P" }

my %pods = map { ($_ => pod($_)) } 2, 3, 4;
my @live = (2, 3, 4);
$dns->set($name => [ map { "127.0.0.$_" } @live ]);
my $ng = NbTest::Nginx->new(http => $dns->http(name => $name, port => $P));
$ng->start;
ok($ng->wait_all_health('up', 10, map { id($_) } @live), 'three pods up');

# the request loop: a child, keep-alive, one line per answer
my $log = $ng->prefix . '/loop.log';
my $loop = fork // die "fork: $!";
if (!$loop) {
    open my $fh, '>', $log or POSIX::_exit(1);
    $fh->autoflush(1);
    my $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 5);
    my $url = $ng->url('/api/loop');
    my $stop = 0;
    $SIG{TERM} = sub { $stop = 1 };
    until ($stop) {
        my $r = $ua->get($url);
        printf $fh "%.3f %d %s\n", time, $r->{status}, $r->{headers}{'x-node'} // '-';
    }
    close $fh;
    POSIX::_exit(0);
}

# the old pod's preStop: drain, wait until it has nothing in flight
sub pre_stop {
    my ($n) = @_;
    my $r = $ng->admin(POST => 'nodes/' . id($n) . '/drain');
    is($r->{status}, 200, "preStop of $n: drain") or diag $r->{content};
    ok(NbTest::wait_until(sub { my $x = $ng->node(id($n)); !$x->{active} && !$x->{websockets} }, 10),
       "preStop of $n: nothing in flight");
    return $pods{$n}->requests;
}

my %after;    # pod => requests it had when its drain was done
sub replace {
    my ($old, $new, %o) = @_;
    $pods{$new} = pod($new);
    my @next = ((grep { $_ != $old } @live), $new);
    $dns->set($name => [ map { "127.0.0.$_" } @live, $new ]) unless $o{dns_down};
    if ($o{dns_down}) {
        sleep 1.5;
        ok(!$ng->status_nodes->{ id($new) }, "resolver down: new pod $new not a member yet");
    } else {
        ok($ng->wait_health(id($new), 'up', 10), "new pod $new up");
    }
    $after{$old} = pre_stop($old);
    $dns->set($name => [ map { "127.0.0.$_" } @next ]) unless $o{dns_down};
    $pods{$old}->stop;
    @live = @next;
    unless ($o{dns_down}) {
        ok($ng->wait_status(sub { !$ng->status_nodes->{ id($old) } }, 10),
           "old pod $old left status");
    }
}

sleep 1;
replace(2, 5);
replace(3, 6);

# the resolver down while pod 4 is replaced by 7
$dns->down(1);
sleep 1.5;
replace(4, 7, dns_down => 1);
my $h = $ng->hit(20, '/api/x');
is($h->{status}{200}, 20, 'resolver down, old pod drained and stopped: traffic goes on');
$dns->set($name => [ map { "127.0.0.$_" } 5, 6, 7 ]);
$dns->down(0);
ok($ng->wait_health(id(7), 'up', 10), 'resolver back: the new pod joins');
ok($ng->wait_status(sub { !$ng->status_nodes->{ id(4) } }, 10), 'and the old one left status');
sleep 1;

kill 'TERM', $loop;
waitpid $loop, 0;

my @lines = split /\n/, NbTest::slurp($log);
cmp_ok(scalar @lines, '>', 100, scalar(@lines) . ' requests in the loop');
my @bad = grep { (split ' ')[1] !~ /^2/ } @lines;
is(scalar @bad, 0, 'no non-2xx answer during the rolling update') or diag join "\n", @bad[0 .. 9];
my %by = map { ((split ' ')[2] => 1) } @lines;
ok($by{ id(7) } && $by{ id(5) }, 'the new pods got traffic');
for my $old (2, 3, 4) {
    my $st = $pods{$old}->running ? $pods{$old}->requests : undef;
    ok(!$pods{$old}->running, "old pod $old stopped");
}
# the mocks are gone; their counters at drain time vs the loop's view
for my $old (2, 3, 4) {
    my @late = grep { (split ' ')[2] eq id($old) } @lines;
    my $n = scalar @late;
    cmp_ok($n, '<=', $after{$old}, "pod $old: no request after its drain ($n answered, $after{$old} at drain)");
}
is($ng->crashes, 0, 'no worker crashed');
done_testing;
