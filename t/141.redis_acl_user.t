# Issue 9, defect 5: "redis://user:pass@host:port" no longer crashes the
# master (nginx -t, start, reload); a Redis 6+ ACL user works (AUTH user
# pass); a wrong password is reported clearly; the password never shows
# in nginx -t output, error.log or status.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $PW = 'S3cr3t-pw-xyzzy';
my $redis = NbTest::Redis->new;
is($redis->cli('ACL', 'SETUSER', 'gw', 'on', ">$PW", '~*', '&*', '+@all'), 'OK', 'ACL user gw created');
# the default user may not do anything: only "gw" gets in
is($redis->cli('ACL', 'SETUSER', 'default', 'off'), 'OK', 'default user off');
my $cli = { noauth => 1 };

sub gw {
    my ($url) = @_;
    return NbTest::Nginx->new(http => std_http(store => $url));
}

sub no_pw {
    my ($label, $text) = @_;
    unlike($text // '', qr/\Q$PW\E/, "$label: the password is not shown");
}

my $prefix = NbTest::unique_prefix('acl');
my $url = "redis://gw:$PW\@127.0.0.1:" . $redis->port . "/0?prefix=$prefix";

# ---- nginx -t and start with user:pass ----------------------------------------
my $ng = gw($url);
my ($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t accepts redis://user:pass@...') or diag $out;
unlike($out, qr/signal|core dumped/i, 'nginx -t did not crash');
no_pw('nginx -t', $out);

$ng->start;
ok($ng->wait_store_ok(1, 10), 'ACL user: store ok');
my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'acl' });
is($r->{status}, 200, 'ACL user: a write is stored');
is($redis->cli({ password => undef }, '--user', 'gw', '--pass', $PW, '--no-auth-warning',
               'GET', "$prefix:version"), $r->{json}{version}, 'redis has the version');

ok($ng->reload, 'reload with user:pass');
ok($ng->wait_store_ok(1, 10), 'store ok after the reload');
no_pw('error.log', $ng->error_log);
no_pw('status', $ng->admin(GET => 'status')->{content});

# ---- a wrong password: a clear error, no password anywhere ----------------------
my $bad = gw("redis://gw:wrong-$PW\@127.0.0.1:" . $redis->port . "/0?prefix=$prefix");
$bad->start;
my $st = $bad->wait_store_ok(0, 10);
ok($st, 'wrong password: store.ok false');
like($st->{store}{error} // '', qr/WRONGPASS|invalid username-password/i,
     'wrong password: store.error says why') or diag explain $st->{store};
$r = $bad->admin(POST => 'mode', { mode => 'upgrade', reason => 'x' });
is($r->{status}, 503, 'wrong password: writes answer 503');
no_pw('wrong password: status', $bad->admin(GET => 'status')->{content});
no_pw('wrong password: error.log', $bad->error_log);

# ---- a bad URL with a password: refused by nginx -t without showing it ----------
my $badurl = gw("redis://gw:$PW\@127.0.0.1:99999/0");
($rc, $out) = $badurl->test_config;
isnt($rc, 0, 'nginx -t refuses a bad port');
like($out, qr/nb_maint_store/, 'the message names the directive') or diag $out;
unlike($out, qr/signal|core dumped/i, 'no crash');
no_pw('bad URL', $out);

is(scalar($ng->crashes) + scalar($bad->crashes), 0, 'no worker crashed');
done_testing;
