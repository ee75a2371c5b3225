# Issue 12: no acknowledged change lost in a failover.  One primary, one
# replica, three sentinels (down-after-milliseconds 1000, failover-timeout
# 3000), two gateways on redis-sentinel:// with min_replicas=1.  Four
# writers (two per gateway, in their own processes) send 200 mode changes,
# each with its own reason, while the primary is killed with SIGKILL in the
# middle; once the sentinels have promoted the replica the old primary
# comes back as a replica of the new one.  Afterwards:
#   - every write that answered 200 is in the final history (Redis' and
#     each gateway's), once, with the version it answered;
#   - versions in every history increase strictly (none reused);
#   - both gateways converge on what Redis keeps (state and history);
#   - writes that answered 503 (store_unavailable, store_unreplicated) may or
#     may not be there, but at most once.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbSentinel;
use POSIX ();
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

plan skip_all => 'redis-sentinel not installed' unless NbSentinel::available();

my $WRITERS  = 4;       # two per gateway
my $PER      = 50;      # writes per writer: 200 in all
my $SPACING  = 0.2;     # seconds between a writer's writes: about 10 s in all
my $KILL_AT  = 2.5;     # seconds after the writers start

my $sen = NbSentinel->new;
my $prefix = unique_prefix('fow');
my $store = $sen->store_url(prefix => $prefix, query => 'min_replicas=1&wait_ms=500');
my @gw = map { NbTest::Nginx->new(http => std_http(store => $store)) } 1 .. 2;
$_->start for @gw;
for my $g (@gw) { ok($g->wait_store_ok(1, 10), 'store ok through the sentinels') }

# ---- the writers ----------------------------------------------------------------
my $dir = $sen->primary->dir;
my @kids;
END { local $?; for (@kids) { kill 'KILL', $_; waitpid $_, 0 } }
for my $w (0 .. $WRITERS - 1) {
    my $g = $gw[$w % 2];
    my $name = ($w % 2 ? 'B' : 'A') . $w;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
        open my $out, '>', "$dir/writer-$w" or POSIX::_exit(1);
        $out->autoflush(1);
        for my $i (1 .. $PER) {
            my $reason = "$name-$i";
            my $t0 = time;
            my $r = $ua->request(POST => $g->url('/_nb_maint/mode'), {
                headers => { Authorization => 'Bearer ' . ADMIN_TOKEN,
                             'Content-Type' => 'application/json' },
                content => json_encode({ mode => 'upgrade', reason => $reason }),
            });
            my ($code, $ver) = ('', '');
            my $j = eval { json_decode($r->{content}) };
            if (ref $j eq 'HASH') {
                $code = $j->{error}{code} // '' if ref $j->{error} eq 'HASH';
                $ver = $j->{version} // '';
            }
            printf $out "%s\t%d\t%s\t%s\t%.3f\n", $reason, $r->{status}, $code, $ver, $t0;
            my $left = $SPACING - (time - $t0);
            sleep $left if $left > 0;
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

# ---- kill -9 the primary in the middle; bring it back as a replica ---------------
sleep $KILL_AT;
my $t_kill = time;
my $old = $sen->kill_primary;
my $new = $sen->wait_promoted($old, 20);
ok($new, sprintf('the sentinels promoted the replica (%.1f s after the kill)', time - $t_kill));
ok($new && $sen->rejoin($old, 20), 'the old primary is back as a replica of the new one');
for my $pid (@kids) { waitpid $pid, 0 }
@kids = ();

# ---- what the writers saw ---------------------------------------------------------
my (%answer, %count);
for my $w (0 .. $WRITERS - 1) {
    open my $in, '<', "$dir/writer-$w" or die "writer-$w: $!";
    while (<$in>) {
        chomp;
        my ($reason, $status, $code, $ver, $t) = split /\t/;
        $answer{$reason} = { status => $status, code => $code, version => $ver, t => $t };
        my $k = $status == 200 ? 200 : $status == 503 ? "503 $code" : $status;
        $count{$k}++;
    }
}
is(scalar(keys %answer), $WRITERS * $PER, 'every write got an answer');
my @acked = grep { $answer{$_}{status} == 200 } keys %answer;
diag(join ', ', map { "$_: $count{$_}" } sort keys %count);
ok(@acked >= 20, scalar(@acked) . ' writes answered 200');
is(scalar(grep { !length $answer{$_}{version} } @acked), 0, 'every 200 names its version');
my @odd = grep { $_ != 200 && $_ != 503 } map { $answer{$_}{status} } keys %answer;
is(scalar(@odd), 0, 'every answer is a 200 or a 503') or diag "@odd";
my @codes = grep { $answer{$_}{status} == 503
                   && $answer{$_}{code} !~ /^store_(unavailable|unreplicated)$/ } keys %answer;
is(scalar(@codes), 0, 'every 503 is store_unavailable or store_unreplicated')
    or diag join ', ', map { "$_: $answer{$_}{code}" } @codes;
ok((grep { $answer{$_}{status} == 200 && $answer{$_}{t} > $t_kill + 1 } @acked),
   'writes answered 200 again after the failover');

# ---- the final history ------------------------------------------------------------
# one more write through each gateway: both must be writable and converge
for my $g (@gw) {
    ok($g->wait_store_ok(1, 10), 'store ok after the failover');
    my $r;
    NbTest::wait_until(sub {
        $r = $g->admin(POST => 'mode', { mode => 'upgrade', reason => 'final-' . $g->port });
        $r->{status} == 200;
    }, 10, 0.2);
    is($r->{status}, 200, 'a write after the failover answers 200') or diag $r->{content};
}
my $redis_ver = $new->cli('GET', "$prefix:version");
for my $g (@gw) {
    ok($g->wait_status(sub { $_[0]{version} == $redis_ver }, 5),
       "gateway converged on redis' version $redis_ver");
}

sub check_history {
    my ($who, @ev) = @_;
    my @v = map { $_->{version} } @ev;
    my @bad = grep { $v[$_] <= $v[$_ - 1] } 1 .. $#v;
    is(scalar(@bad), 0, "$who: versions increase strictly (" . scalar(@v) . ' events)')
        or diag join ' ', map { "$v[$_ - 1]->$v[$_]" } @bad;
    my %seen;
    $seen{ $_->{reason} // '' }++ for grep { ($_->{reason} // '') =~ /^[AB]\d-\d+$/ } @ev;
    my @twice = grep { $seen{$_} > 1 } keys %seen;
    is(scalar(@twice), 0, "$who: no write twice") or diag "@twice";
    my %ver = map { (($_->{reason} // '') => $_->{version}) } @ev;
    my @lost = grep { !exists $ver{$_} } @acked;
    is(scalar(@lost), 0, "$who: every write answered 200 is there") or diag "lost: @lost";
    my @moved = grep { exists $ver{$_} && length $answer{$_}{version}
                       && $ver{$_} != $answer{$_}{version} } @acked;
    is(scalar(@moved), 0, "$who: with the version it answered")
        or diag join ', ', map { "$_: $answer{$_}{version} -> $ver{$_}" } @moved;
    return \%ver;
}

my @redis_ev = map { json_decode($_) } $new->cli('LRANGE', "$prefix:events", 0, -1);
my @changes = grep { ($_->{action} // '') ne 'store_failover' } @redis_ev;
my $rv = check_history('redis', @changes);
for my $i (0, 1) {
    my @ev = grep { ($_->{action} // '') ne 'store_failover' } $gw[$i]->events(0);
    my $gv = check_history('gateway ' . ($i ? 'B' : 'A'), @ev);
    my @diff = grep { ($gv->{$_} // -1) != $rv->{$_} } keys %$rv;
    push @diff, grep { !exists $rv->{$_} } keys %$gv;
    is(scalar(@diff), 0, 'gateway ' . ($i ? 'B' : 'A') . ': the same history as redis')
        or diag join ', ', map { "$_: " . ($gv->{$_} // '-') . ' vs ' . ($rv->{$_} // '-') } @diff;
}
my $unacked = grep { $answer{$_}{status} != 200 && exists $rv->{$_} } keys %answer;
diag("503 answers whose change survived anyway: $unacked");

is(scalar($gw[0]->crashes) + scalar($gw[1]->crashes), 0, 'no worker crashed');
done_testing;
