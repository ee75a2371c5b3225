# Issue 12, item 3: a Redis ACL user lacking a permission nb_maint needs
# gets a clear error, not a bare "did not accept": status store.error and
# the 503 store_unavailable of a write name the user, the refused command
# and what to grant.  Lacking +eval/+evalsha (the compare-and-set script);
# lacking +@pubsub (the change channel, and PUBLISH inside the script).
# Once the permission is granted, store.ok comes back by itself and writes
# answer 200.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use Time::HiRes qw(time sleep);

my $redis = NbTest::Redis->new;
my $PW = 'acl-secret-7';

sub gateway {
    my ($user) = @_;
    my $prefix = NbTest::unique_prefix("perm_$user");
    my $G = NbTest::Nginx->new(http => std_http(
        store => "redis://$user:$PW\@127.0.0.1:" . $redis->port . "/0?prefix=$prefix"));
    $G->start;
    $G->{redis_prefix} = $prefix;
    return $G;
}

sub refused_write {
    my ($G, $name, $re) = @_;
    my $r = $G->admin(POST => 'mode', { mode => 'upgrade', reason => "as $name" });
    is($r->{status}, 503, "$name: a write answers 503");
    my $e = ($r->{json} || {})->{error} || {};
    is($e->{code}, 'store_unavailable', "$name: store_unavailable");
    like($e->{message} // '', $re, "$name: the message names the missing permission")
        and diag("$name: $e->{message}");
    like($e->{message} // '', qr/"$name"/, "$name: the message names the user");
    is($G->status->{mode}, 'normal', "$name: nothing changed");
    # nothing half-written in Redis either (a refused command in a script
    # does not undo the ones before it): still normal after re-reads
    sleep 2.5;
    my $P = $G->redis_prefix;
    is($redis->cli('GET', "$P:version"), '', "$name: no version key in Redis");
    is($G->status->{mode}, 'normal', "$name: still normal after re-reads");
}

# ---- no +eval / +evalsha ------------------------------------------------------------------
is($redis->cli('ACL', 'SETUSER', 'noeval', 'on', ">$PW", '~*', '&*', '+@all', '-eval', '-evalsha'),
   'OK', 'ACL user noeval: everything but EVAL/EVALSHA');
my $A = gateway('noeval');
refused_write($A, 'noeval', qr/permission.*eval.*grant it \+eval and \+evalsha/i);
my $st = $A->wait_status(sub { !$_[0]{store}{ok} && ($_[0]{store}{error} // '') =~ /eval/i }, 10);
ok($st, 'noeval: status store.ok false, store.error names eval')
    or diag explain $A->status->{store};
like($st->{store}{error} // '', qr/permission denied for redis user "noeval"/, 'noeval: store.error says permission denied for the user')
    and diag("store.error: $st->{store}{error}");
$st = $A->status;    # several re-reads happened: the error stays
ok(!$st->{store}{ok}, 'noeval: store.ok stays false across re-reads');
like($st->{store}{error} // '', qr/eval/i, 'noeval: store.error stays');

# granted: back by itself
is($redis->cli('ACL', 'SETUSER', 'noeval', '+eval', '+evalsha'), 'OK', 'noeval: +eval +evalsha granted');
my $ok = NbTest::wait_until(sub {
    $A->admin(POST => 'mode', { mode => 'upgrade', reason => 'granted' })->{status} == 200
}, 10, 0.3);
ok($ok, 'noeval: writes answer 200 once granted');
ok($A->wait_store_ok(1, 10), 'noeval: store.ok true again');

# ---- no +@pubsub ----------------------------------------------------------------------------
is($redis->cli('ACL', 'SETUSER', 'nopubsub', 'on', ">$PW", '~*', '&*', '+@all', '-@pubsub'),
   'OK', 'ACL user nopubsub: everything but pub/sub');
my $B = gateway('nopubsub');
$st = $B->wait_status(sub { ($_[0]{store}{error} // '') =~ /permission/i }, 10);
ok($st, 'nopubsub: status store.error says permission') or diag explain $B->status->{store};
$st ||= $B->status;
ok(!$st->{store}{ok}, 'nopubsub: store.ok false');
like($st->{store}{error} // '', qr/user "nopubsub".*subscribe.*grant it \+\@pubsub/i,
     'nopubsub: store.error names the user, SUBSCRIBE and +@pubsub')
    and diag("store.error: $st->{store}{error}");
refused_write($B, 'nopubsub', qr/permission.*publish.*\+\@pubsub/i);
ok(!$B->status->{store}{ok}, 'nopubsub: store.ok stays false across re-reads');

is($redis->cli('ACL', 'SETUSER', 'nopubsub', '+@pubsub'), 'OK', 'nopubsub: +@pubsub granted');
ok($B->wait_store_ok(1, 15), 'nopubsub: store.ok true again (subscribed)');
$ok = NbTest::wait_until(sub {
    $B->admin(POST => 'mode', { mode => 'upgrade', reason => 'granted' })->{status} == 200
}, 10, 0.3);
ok($ok, 'nopubsub: writes answer 200 once granted');

is($A->crashes + $B->crashes, 0, 'no worker crashed');

done_testing;
