# The module is built, nginx loads it, the contract's example config runs.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $so = module_path();
ok(-f $so, "module built: $so")
    or BAIL_OUT("module $so not built (run make)");

# load_module alone, no nb_maint directive at all
{
    my $ng = NbTest::Nginx->new(http => <<'EOT');
server { listen 127.0.0.1:%%PORT%%; location / { return 200 "plain\n"; } }
EOT
    my ($rc, $out) = $ng->test_config;
    is($rc, 0, 'nginx -t passes with only load_module') or diag $out;
    $ng->start;
    my $r = $ng->get('/');
    is($r->{status}, 200, 'plain server answers with the module loaded');
    is($r->{content}, "plain\n", 'plain body');
    $ng->stop;
    is(scalar $ng->crashes, 0, 'no crash (plain config)');
}

# the example configuration of doc/testing.md
my $ng = NbTest::Nginx->new(http => std_http());
my ($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t passes with the contract example config') or diag $out;
like($out, qr/test is successful/, 'nginx -t says successful');

$ng->start;
my $r = $ng->get('/');
is($r->{status}, 200, 'GET / passes in normal mode');
is($r->{content}, "app\n", 'GET / body from the location');

$r = $ng->admin(GET => 'status');
is($r->{status}, 200, 'GET status 200');
like($r->{headers}{'content-type'} // '', qr{^application/json}, 'status is application/json');
my $st = $r->{json};
is(ref $st, 'HASH', 'status is a JSON object') or diag $r->{content};
is($st->{mode}, 'normal', 'fresh state is normal');
like($st->{version} // '', qr/^\d+$/, 'version is an integer');
is($st->{store}{type}, 'file', 'store type file');
ok(JSON::PP::is_bool($st->{store}{ok}) && $st->{store}{ok}, 'store ok true');

my @w = $ng->worker_pids;
is(scalar @w, 2, 'two workers running');
$ng->stop;
unlike($ng->error_log, qr/\[(?:emerg|alert|crit)\]/, 'no emerg/alert/crit in error.log');
is(scalar $ng->crashes, 0, 'no worker exited on a signal');

done_testing;
