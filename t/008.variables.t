# $nb_maint_mode, $nb_maint_node, $nb_maint_bypass in headers, bodies, map.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $vars = <<'EOT';
        add_header X-Mode $nb_maint_mode always;
        add_header X-Node "[$nb_maint_node]" always;
        add_header X-Bypass "[$nb_maint_bypass]" always;
        add_header X-Is-Upgrade $is_upgrade always;
EOT
my $body = 'return 200 "mode=$nb_maint_mode node=$nb_maint_node bypass=$nb_maint_bypass\n";';
my $ng = NbTest::Nginx->new(http => std_http(
    http_extra => "map \$nb_maint_mode \$is_upgrade { upgrade yes; default no; }\n",
    root_extra => "\n$vars",
    locations  => <<"EOT",
    location /vars {
        nb_maint_gate off;
$vars
        $body
    }
    location /bvars {
        nb_maint_bypass_allow 127.0.0.1/32;
$vars
        $body
    }
EOT
));
$ng->start;

sub check {
    my ($label, $path, $mode, $node, $bypass, $status) = @_;
    for my $i (1 .. 6) {    # fresh connections: both workers
        my $r = $ng->get($path);
        is($r->{status}, $status, "$label: $path status $status") or last;
        is($r->{headers}{'x-mode'}, $mode, "$label: X-Mode $mode");
        is($r->{headers}{'x-node'}, "[$node]", "$label: X-Node [$node]");
        is($r->{headers}{'x-bypass'}, "[$bypass]", "$label: X-Bypass [$bypass]");
        is($r->{headers}{'x-is-upgrade'}, $mode eq 'upgrade' ? 'yes' : 'no', "$label: map on \$nb_maint_mode");
        is($r->{content}, "mode=$mode node=$node bypass=$bypass\n", "$label: values in the body")
            if $status == 200 && $path ne '/';
    }
}

check('normal', '/vars', 'normal', '', '', 200);
check('normal', '/bvars', 'normal', '', '1', 200);
check('normal', '/', 'normal', '', '', 200);

my $N = '127.0.0.1:13001';
my $r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $N });
is($r->{status}, 200, 'maintenance') or diag $r->{content};
check('maintenance', '/vars', 'maintenance', $N, '', 200);
check('maintenance', '/bvars', 'maintenance', $N, '1', 200);

$ng->admin(POST => 'restore');
$r = $ng->admin(POST => 'mode', { mode => 'upgrade', node => '127.0.0.1:13002' });
is($r->{status}, 200, 'upgrade with node') or diag $r->{content};
check('upgrade', '/vars', 'upgrade', '127.0.0.1:13002', '', 200);
check('upgrade', '/bvars', 'upgrade', '127.0.0.1:13002', '1', 200);
check('upgrade (503 page)', '/', 'upgrade', '127.0.0.1:13002', '', 503);

$ng->admin(POST => 'restore');
$r = $ng->admin(POST => 'mode', { mode => 'upgrade' });
check('upgrade without node', '/vars', 'upgrade', '', '', 200);

$r = $ng->admin(POST => 'restore');
is($r->{json}{mode}, 'normal', 'restored');
my $g = $ng->get('/vars');
is($g->{headers}{'x-mode'}, 'normal', 'X-Mode back to normal');

is(scalar $ng->crashes, 0, 'no worker exited on a signal');
done_testing;
