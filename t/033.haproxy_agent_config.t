# nb_maint_agent names an upstream: nginx -t fails, naming the directive and
# where it is written, when that upstream does not exist, is a plain http
# upstream without "nb_maint;", or there is no http{} block at all (before,
# every answer became "down" and HAProxy took every server out).  stream{}
# before http{} (the order the contract shows) and after it both work; a
# reload with a broken agent is refused and the old agent keeps answering.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

for my $so (NbTest::stream_core_path(), NbTest::stream_module_path()) {
    ok(-f $so, "stream module present: $so") or BAIL_OUT("missing $so (make; libnginx-mod-stream)");
}

my @M = map { NbTest::Mock->new } 1 .. 2;
my $aid = $M[0]->id;
my $plain = "upstream plain {\n    server 127.0.0.1:1;\n}\n";

# nginx -t of a config whose stream{} has these agents (stream{} first)
sub try_agents {
    my ($ng, $agents, %o) = @_;
    $ng->write_conf(http => cluster_http(nodes => \@M, upstreams => $plain), agent_opts(agents => $agents));
    return $ng->test_config;
}

my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M, upstreams => $plain),
                            agent_opts(agents => { agent => 'app' }));

my ($rc, $out) = $ng->test_config;
is($rc, 0, 'nb_maint_agent app (an nb_maint upstream), stream{} before http{}: nginx -t passes') or diag $out;

# the failures: the directive, the name, the reason and file:line in the message
my @bad = (
    [ 'unknown upstream'                  => { agent => 'nosuch' },
      qr/"nb_maint_agent" names upstream "nosuch", but there is no http upstream of that name, in \S*nginx\.conf:\d+/ ],
    [ 'plain upstream without nb_maint'   => { agent => 'plain' },
      qr/"nb_maint_agent" names upstream "plain", but that http upstream has no "nb_maint;", in \S*nginx\.conf:\d+/ ],
    [ 'a prefix of a real name'           => { agent => 'ap' },   qr/names upstream "ap", but there is no http upstream/ ],
    [ 'a real name with more after it'    => { agent => 'app2' }, qr/names upstream "app2", but there is no http upstream/ ],
    [ 'case differs'                      => { agent => 'APP' },  qr/names upstream "APP", but there is no http upstream/ ],
    [ 'one good agent, one bad'           => { agent => 'app', agent2 => 'nosuch2' },
      qr/names upstream "nosuch2"/ ],
);
for my $b (@bad) {
    my ($label, $agents, $re) = @$b;
    my ($rc, $out) = try_agents($ng, $agents);
    isnt($rc, 0, "$label: nginx -t fails");
    like($out, $re, "$label: the message names nb_maint_agent, the upstream and where") or diag $out;
    like($out, qr/test failed/, "$label: ... configuration test failed");
}

# the line in the message is the directive's own line
{
    my ($rc, $out) = try_agents($ng, { agent => 'app', zz => 'nosuch3' });
    my ($line) = $out =~ /names upstream "nosuch3".*nginx\.conf:(\d+)/;
    my @conf = split /\n/, $ng->conf_text;
    ok(defined $line && ($conf[$line - 1] // '') =~ /nb_maint_agent nosuch3;/,
       'the file:line points at the nb_maint_agent line') or diag "line " . ($line // '?') . ": $out";
}

# an empty name
{
    my ($rc, $out) = try_agents($ng, { agent => '""' });
    isnt($rc, 0, 'nb_maint_agent "": nginx -t fails');
    like($out, qr/nb_maint_agent/, '... naming the directive') or diag $out;
}

# no http{} block at all: a whole nginx.conf of our own
my $p = $ng->prefix;
my $head = "load_module " . NbTest::stream_core_path() . ";\n"
         . "load_module " . NbTest::module_path() . ";\n"
         . "load_module " . NbTest::stream_module_path() . ";\n"
         . ($> == 0 ? "user root root;\n" : '')
         . "worker_processes 2;\npid $p/nginx.pid;\nerror_log $p/error.log info;\n"
         . "events { worker_connections 128; }\n";
my $agent_port = $ng->port_of('agent');
my $stream = "stream {\n    server { listen 127.0.0.1:$agent_port; nb_maint_agent app; }\n}\n";
$ng->write_file('conf/nginx.conf', $head . $stream);
($rc, $out) = $ng->test_config;
isnt($rc, 0, 'no http{} block: nginx -t fails');
like($out, qr/"nb_maint_agent" names upstream "app", but there is no http\{\} block with nb_maint/,
     '... saying there is no http{} block') or diag $out;

# http{} after stream{} and before it: both pass and both answer
my $http = $ng->subst(cluster_http(nodes => \@M));
my $http_block = "http {\n    access_log off;\n"
               . join('', map { "    ${_}_temp_path $p/tmp/$_;\n" } qw(proxy fastcgi uwsgi scgi))
               . "    client_body_temp_path $p/tmp/client_body;\n$http\n}\n";
$ng->write_file('conf/nginx.conf', $head . $http_block . $stream);
($rc, $out) = $ng->test_config;
is($rc, 0, 'http{} before stream{}: nginx -t passes') or diag $out;
$ng->start;
ok($ng->wait_health($aid, 'up', 5), 'http{} before stream{}: node up');
is(agent_ask($agent_port, $aid, timeout => 3), 'up ready', 'http{} before stream{}: the agent answers "up ready"');
is(agent_ask($agent_port, '127.0.0.1:1', timeout => 3), 'down', '... and "down" for an unknown id');

# a reload to a broken agent is refused; the running one keeps its upstream
(my $broken = $head . $http_block . $stream) =~ s/nb_maint_agent app;/nb_maint_agent nosuch;/ or die;
$ng->write_file('conf/nginx.conf', $broken);
my @before = $ng->worker_pids;
($rc, $out) = NbTest::run_cmd("$p/logs/reload.out", $ng->nginx_cmd('-s', 'reload'));
isnt($rc, 0, 'nginx -s reload with nb_maint_agent nosuch: refused');
like($out, qr/"nb_maint_agent" names upstream "nosuch"/, '... naming the directive') or diag $out;
kill 'HUP', $ng->master_pid;     # the master itself reads the broken config
ok(NbTest::wait_until(sub { $ng->log_grep(qr/names upstream "nosuch"/) }, 5),
   'SIGHUP to the master: error.log names the directive');
sleep 1;
is(join(',', $ng->worker_pids), join(',', @before), '... the old workers stay');
is(agent_ask($agent_port, $aid, timeout => 3), 'up ready', '... and the agent still answers "up ready"');

my @crash = $ng->crashes;
is(scalar @crash, 0, 'error.log: no worker exited on a signal') or diag join "\n", @crash;
done_testing;
