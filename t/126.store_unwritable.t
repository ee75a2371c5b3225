# Issue 9 defect 18: a file store that cannot be written fails nginx -t
# (and a reload) with the path and the reason, and status never says ok
# for a store it cannot write.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

subtest 'missing directory' => sub {
    my $ng = NbTest::Nginx->new(http => std_http(store => 'file:%%PREFIX%%/no/such/dir/state.json'));
    my ($rc, $out) = $ng->test_config;
    isnt($rc, 0, 'nginx -t fails');
    like($out, qr{\Q${\ $ng->prefix}/no/such/dir\E}, 'names the directory');
    like($out, qr/No such file or directory/, 'says why');
    like($out, qr/nb_maint_store/, 'names the directive');
};

subtest 'a file, not a directory' => sub {
    my $ng = NbTest::Nginx->new(http => std_http(store => 'file:%%PREFIX%%/plain/state.json'));
    $ng->write_file('plain', "x\n");
    my ($rc, $out) = $ng->test_config;
    isnt($rc, 0, 'nginx -t fails');
    like($out, qr/(not a directory|Not a directory)/, 'says why');
};

SKIP: {
    skip 'needs root (workers as nobody)', 4 unless $> == 0;

    subtest 'directory not writable by the worker user' => sub {
        my $ng = NbTest::Nginx->new(main => 'user nobody nogroup;',
                                    http => std_http(store => 'file:%%PREFIX%%/root-only/state.json'));
        chmod 0755, $ng->prefix;
        mkdir $ng->prefix . '/root-only', 0755;
        my ($rc, $out) = $ng->test_config;
        isnt($rc, 0, 'nginx -t fails');
        like($out, qr{\Q${\ $ng->prefix}/root-only\E}, 'names the directory');
        like($out, qr/not writable by the worker user "nobody"/, 'says why and for whom');
        like($out, qr/\(owner 0, mode 0755\)/, 'the owner and the mode in octal (issue 18 item 5: was "mode o")');
        eval { $ng->start };
        ok($@, 'nginx does not start either');
    };

    subtest 'events file not writable by the worker user' => sub {
        my $ng = NbTest::Nginx->new(main => 'user nobody nogroup;',
                                    http => std_http(store => 'file:%%PREFIX%%/st/state.json'));
        chmod 0755, $ng->prefix;
        mkdir $ng->prefix . '/st', 0777;
        chmod 0777, $ng->prefix . '/st';
        $ng->write_file('st/state.json.events', '', 0600);    # root's
        my ($rc, $out) = $ng->test_config;
        isnt($rc, 0, 'nginx -t fails');
        like($out, qr{events file "\Q${\ $ng->prefix}\E/st/state\.json\.events" is not writable},
             'names the events file');
        like($out, qr/\(owner 0, mode 0600\)/, '... its owner and mode in octal');
    };

    subtest 'a reload to an unwritable store fails, the running one stays' => sub {
        my $ng = NbTest::Nginx->new(main => 'user nobody nogroup;',
                                    http => std_http(store => 'file:%%PREFIX%%/st/state.json'));
        chmod 0755, $ng->prefix;
        mkdir $ng->prefix . '/st', 0777;
        chmod 0777, $ng->prefix . '/st';
        mkdir $ng->prefix . '/root-only', 0755;
        $ng->start;
        my @w = $ng->worker_pids;
        $ng->write_conf(http => std_http(store => 'file:%%PREFIX%%/root-only/state.json'));
        my ($rc, $out) = NbTest::run_cmd($ng->prefix . '/logs/reload.out', $ng->nginx_cmd('-s', 'reload'));
        ok(NbTest::wait_until(sub { $ng->error_log =~ /not writable by the worker user/ }, 5),
           'the reload is refused with the reason');
        Time::HiRes::sleep(0.5);
        is_deeply([ $ng->worker_pids ], \@w, 'the old workers keep running');
        my $r = $ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'still fine' });
        is($r->{status}, 200, 'and keep writing the old store') or diag $r->{content};
        is(scalar $ng->crashes, 0, 'no crash');
    };

    subtest 'status follows the directory at run time' => sub {
        my ($ng, $dir) = NbTest::nobody_store_gateway();
        $ng->start;
        ok($ng->status->{store}{ok}, 'writable: ok');

        chmod 0555, $dir;
        ok(NbTest::wait_until(sub { !$ng->status->{store}{ok} }, 5),
           'made read-only: status says store.ok=false without any write');
        like($ng->status->{store}{error} // '', qr/Permission denied/, 'store.error says why');
        my $r = $ng->admin(POST => 'mode', { mode => 'upgrade' });
        is($r->{status}, 503, 'a write is refused');
        is($ng->status->{mode}, 'normal', 'nothing changed');

        # writable again: a probe alone cleared what a probe found, but
        # after a failed write only a write that works says ok again
        chmod 0755, $dir;
        $r = $ng->admin(POST => 'mode', { mode => 'upgrade' });
        is($r->{status}, 200, 'writable again: a write works') or diag $r->{content};
        ok($ng->status->{store}{ok}, 'store.ok true');

        chmod 0555, $dir;
        ok(NbTest::wait_until(sub { !$ng->status->{store}{ok} }, 5),
           'read-only again: store.ok false');
        chmod 0755, $dir;
        ok(NbTest::wait_until(sub { $ng->status->{store}{ok} }, 5),
           'writable again without a write in between: store.ok true by itself');
        is(scalar $ng->crashes, 0, 'no crash');
    };
}

done_testing;
