# The state survives reload and restart (stop + start of the same prefix);
# versions are never reused; events persist; default store location;
# unprivileged workers can persist too.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $ng = NbTest::Nginx->new(http => std_http(listen_opts => ' reuseport'));
$ng->start;
my $v0 = $ng->status->{version};

my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'persist-test', retry_after => 90 });
is($r->{status}, 200, 'upgrade') or diag $r->{content};
my $want = state_fields($r->{json});
ok(-s $ng->prefix . '/state.json', 'state file written');

sub all_503 {
    my ($label, $reason) = @_;
    my @res = map { $ng->get('/') } 1 .. 20;
    is(scalar(grep { $_->{status} == 503 } @res), 20, "$label: 20 of 20 requests 503");
    is(scalar(grep { ($_->{content} // '') =~ /\Q$reason\E/ } @res), 20, "$label: all pages show the reason");
    is(scalar(grep { ($_->{headers}{'retry-after'} // '') eq '90' } @res), 20, "$label: all Retry-After 90");
}

# ---- reload (same config) ----------------------------------------------------------
my @w1 = $ng->worker_pids;
$ng->reload;
my @w2 = $ng->worker_pids;
ok(!grep({ my $o = $_; grep { $_ == $o } @w2 } @w1), 'reload replaced the workers');
is_deeply(state_fields($ng->status), $want, 'reload: mode, node, reason, version, since, retry_after kept');
all_503('after reload', 'persist-test');

# ---- reload with a changed config --------------------------------------------------------
$ng->write_conf(http => std_http(listen_opts => ' reuseport',
                                 locations => '    location /new/ { return 200 "new\n"; }'));
$ng->reload;
is_deeply(state_fields($ng->status), $want, 'reload with changed config: state kept');
is($ng->get('/new/')->{status}, 503, 'a location added by the reload is gated too');
all_503('after config reload', 'persist-test');

# a write after reload continues the version sequence
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'after-reload', retry_after => 90 });
is($r->{status}, 200, 'write after reload') or diag $r->{content};
is($r->{json}{version}, $want->{version} + 1, 'version continues after reload');
$want = state_fields($r->{json});

# ---- restart (stop + start, same prefix) ------------------------------------------------
$ng->stop;
$ng->start;
is_deeply(state_fields($ng->status), $want, 'restart: mode, node, reason, version, since, retry_after kept');
all_503('after restart', 'after-reload');
ok($ng->status->{store}{ok}, 'store ok after restart');

$r = $ng->admin(POST => 'restore');
is($r->{status}, 200, 'restore after restart');
is($r->{json}{mode}, 'normal', 'normal');
cmp_ok($r->{json}{version}, '>', $want->{version}, 'version grows after restart (never reused)');
$want = state_fields($r->{json});

$ng->stop;
$ng->start;
is_deeply(state_fields($ng->status), $want, 'second restart: normal state and version kept');
is($ng->get('/')->{status}, 200, 'normal after restart: GET / 200');

$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => '127.0.0.1:13001', reason => 'm' });
is($r->{json}{version}, $want->{version} + 1, 'version continues after the second restart');
$want = state_fields($r->{json});
$ng->stop;
$ng->start;
is_deeply(state_fields($ng->status), $want, 'maintenance node kept across restart');

# events survive restarts, one per version
$r = $ng->admin(GET => 'events?since=0');
is($r->{status}, 200, 'events after restarts');
my @ev = @{ $r->{json}{events} || [] };
is_deeply([map { $_->{version} } @ev], [$v0 + 1 .. $want->{version}], 'every version has its event, across restarts')
    or diag explain [map { $_->{version} } @ev];
ok(-s $ng->prefix . '/state.json.events', '<state file>.events exists');
is(scalar $ng->crashes, 0, 'no worker exited on a signal');
$ng->stop;

# ---- default store: nb_maint_state.json in the prefix ---------------------------------------
subtest 'default store file' => sub {
    my $d = NbTest::Nginx->new(http => std_http(store => undef));
    $d->start;
    my $res = $d->admin(POST => 'mode', { mode => 'upgrade', reason => 'default-store' });
    is($res->{status}, 200, 'upgrade') or diag $res->{content};
    ok(-s $d->prefix . '/nb_maint_state.json', 'state in <prefix>/nb_maint_state.json');
    my $w = state_fields($res->{json});
    $d->stop;
    $d->start;
    is_deeply(state_fields($d->status), $w, 'kept across restart');
    is($d->get('/')->{status}, 503, 'still gated after restart');
};

# ---- unprivileged workers (master root, workers nobody) -------------------------------------
SKIP: {
    skip 'needs root', 1 unless $> == 0;
    subtest 'workers running as nobody' => sub {
        my $u = NbTest::Nginx->new(main => 'user nobody nogroup;',
                                   http => std_http(store => 'file:%%PREFIX%%/state/state.json'));
        chmod 0755, $u->prefix;
        mkdir $u->prefix . '/state';
        chmod 0777, $u->prefix . '/state';
        $u->start;
        my $res = $u->admin(POST => 'mode', { mode => 'upgrade', reason => 'nobody' });
        is($res->{status}, 200, 'write with unprivileged workers') or diag $res->{content};
        $res = $u->admin(POST => 'restore');
        is($res->{status}, 200, 'second write (events appended) with unprivileged workers') or diag $res->{content};
        $res = $u->admin(POST => 'mode', { mode => 'upgrade', reason => 'nobody-2' });
        is($res->{status}, 200, 'third write') or diag $res->{content};
        my $w = state_fields($res->{json});
        $u->stop;
        $u->start;
        is_deeply(state_fields($u->status), $w, 'kept across restart');
        ok($u->status->{store}{ok}, 'store ok');
        $res = $u->admin(POST => 'restore');
        is($res->{status}, 200, 'write after restart with unprivileged workers') or diag $res->{content};
        is(scalar $u->crashes, 0, 'no worker exited on a signal');
    };
}

done_testing;
