# Node ids in the admin paths are taken as $upstream_addr writes them, also
# when they hold slashes (unix sockets): nodes/{id}, nodes/{id}/drain.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $A = NbTest::Mock->new;
my $http = cluster_http(nodes => [$A], check => 'off',
                        upstream_extra => "    server unix:%%PREFIX%%/app.sock;\n");
my $ng = NbTest::Nginx->new(http => $http);
$ng->start;

my $sock = 'unix:' . $ng->prefix . '/app.sock';

my $r = $ng->admin(GET => "nodes/$sock");
is($r->{status}, 200, 'GET nodes/unix:... 200') or diag $r->{content};
is($r->{json}{id}, $sock, 'the id as $upstream_addr writes it');

$r = $ng->admin(POST => "nodes/$sock/drain");
is($r->{status}, 200, 'drain a unix socket node') or diag $r->{content};
is($ng->node($sock)->{drain}, JSON::PP::true, 'it is drained');
my ($ev) = grep { $_->{action} eq 'drain' } $ng->events(0);
is($ev->{node}, $sock, 'the event names it');

$r = $ng->admin(POST => "nodes/$sock/undrain");
is($r->{status}, 200, 'undrain it');
is($ng->node($sock)->{drain}, JSON::PP::false, 'not drained');

$r = $ng->admin(POST => 'nodes/' . $A->id . '/drain');
is($r->{status}, 200, 'a tcp node next to it still works');

$r = $ng->admin(GET => 'nodes/unix:/nonexistent.sock');
is($r->{status}, 404, 'unknown unix id: 404');
is($r->{json}{error}{code}, 'unknown_node', '... unknown_node');

$r = $ng->admin(POST => 'nodes/' . $A->id . '/bogus');
is($r->{status}, 404, 'unknown action: 404');
is($r->{json}{error}{code}, 'not_found', '... not_found');

$r = $ng->admin(POST => 'mode', { mode => 'maintenance', node => $sock });
is($r->{status}, 200, 'maintenance on the unix node') or diag $r->{content};
is($r->{json}{node}, $sock, '... designated');

is($ng->crashes, 0, 'no worker crashed');
done_testing;
