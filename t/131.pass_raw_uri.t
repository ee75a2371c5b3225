# nb_maint_pass and the raw URI (issue 21, item 13): the pass regexes match
# nginx's normalized URI, while proxy_pass forwards the raw one.  A pass
# match counts only when the raw path is that very URI: "/api/../dist/x"
# (normalized "/dist/x") is gated in upgrade mode instead of reaching a
# node as "/api/../dist/x" (it did before).  Plain pass URIs still pass.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my @M = ($A, $B);
my $ng = NbTest::Nginx->new(http => cluster_http(
    nodes        => \@M,
    server_extra => "    nb_maint_pass ~^/dist/;\n",
));
$ng->start;
ok($ng->wait_all_health('up', 5, map { $_->id } @M), 'nodes up');
is($ng->admin(POST => 'mode', { mode => 'upgrade', reason => 'raw uri' })->{status}, 200, 'upgrade mode');

sub ask {
    my ($target) = @_;
    $_->reset for @M;
    my $raw = NbTest::raw_request($ng->port, "GET $target HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                  timeout => 5);
    my ($st) = $raw =~ m{^HTTP/1\.[01] (\d+)};
    my $reached = 0;
    $reached += $_->stats->{requests} // 0 for @M;
    return ($st // 0, $reached);
}

my ($st, $n) = ask('/dist/app.js');
is($st, 200, 'a plain pass URI passes: 200');
is($n, 1, '... from a node');
($st, $n) = ask('/dist/app.js?v=1');
is($st, 200, '... with a query string too');

for my $t ('/api/../dist/x', '/api/%2E%2E/dist/x', '/dist/../api/x', '//dist/x', '/./dist/x',
           '/dist/%61pp.js', '/api/x/../../dist/x') {
    ($st, $n) = ask($t);
    is($st, 503, "$t: gated (503)");
    is($n, 0, "$t: no node reached");
}

# a gated request is still a gated one: the public API gets its 503
($st, $n) = ask('/api/x');
is($st, 503, '/api/x: 503');
is(scalar $ng->crashes, 0, 'no crash');

done_testing;
