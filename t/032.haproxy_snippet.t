# The shipped config snippets (SPEC section 9: "static/ ships include
# snippets for nginx and HAProxy that a load balancer config can include as
# they are"):
#  - static/haproxy/nb_maint.cfg passes `haproxy -c -f GLOBAL -f nb_maint.cfg`
#    (a minimal global/defaults file, and Debian's own haproxy.cfg), has the
#    agent-check and errorfile lines, and - with only its addresses and
#    intervals changed - works against a gateway's agent;
#  - static/nginx/*.conf pass `nginx -t` when included where their header
#    comments say (absolute /etc/nginx/..., /var/lib/nginx paths moved into
#    the temp prefix), also with their commented optional directives enabled,
#    and the gateway they make runs.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use File::Basename qw(basename);
use Time::HiRes qw(time sleep);

my $ROOT = NbTest::repo_root();

sub slurp {
    my ($f) = @_;
    open my $fh, '<:raw', $f or die "read $f: $!";
    local $/;
    return scalar <$fh>;
}

# ============================== HAProxy ==============================================
my $cfg_file = "$ROOT/static/haproxy/nb_maint.cfg";
ok(-f $cfg_file, 'static/haproxy/nb_maint.cfg exists') or BAIL_OUT('no haproxy snippet');
my $cfg = slurp($cfg_file);
my @directives = grep { !/^\s*(?:#|$)/ } split /\n/, $cfg;
my @server = grep { /^\s*server\s/ } @directives;

cmp_ok(scalar @server, '>=', 2, 'haproxy snippet: at least two example server lines');
my ($default_server) = grep { /^\s*default-server\s/ } @directives;
for my $s (@server) {
    my ($addr) = $s =~ /^\s*server\s+\S+\s+(\S+)/;
    my $line = ($default_server // '') . ' ' . $s;
    like($line, qr/\bagent-check\b/, "server $addr: agent-check (on it or default-server)");
    like($line, qr/\bagent-port\s+\d+/, "server $addr: agent-port");
    like($line, qr/\bagent-inter\s+\S+/, "server $addr: agent-inter");
    like($line, qr/\bcheck\b/, "server $addr: check");
    like($s, qr/\bagent-send\s+"\Q$addr\E\\n"/, "server $addr: agent-send \"$addr\\n\" (the node id, as \$upstream_addr)");
}
my ($errorfile) = map { /^\s*errorfile\s+503\s+(\S+)/ ? $1 : () } @directives;
ok(defined $errorfile, 'haproxy snippet: errorfile 503 FILE') or diag $cfg;
like($cfg, qr/haproxy-errorfile\s+--out\s+\Q$errorfile\E/,
     'haproxy snippet: its header says how to write that errorfile (nb-maint haproxy-errorfile --out)')
    if defined $errorfile;
like($cfg, qr/nb_maint_agent\s+\w+|nb_maint_stream\.conf/, 'haproxy snippet: its header shows the nginx side (the agent)');
SKIP: {
    my $stream = "$ROOT/static/nginx/nb_maint_stream.conf";
    skip 'no static/nginx/nb_maint_stream.conf', 1 unless -f $stream;
    my ($lport) = slurp($stream) =~ /^\s*listen\s+(?:\S+:)?(\d+)/m;
    my ($aport) = ($default_server // '') =~ /\bagent-port\s+(\d+)/;
    ($aport) = map { /\bagent-port\s+(\d+)/ ? $1 : () } @server unless defined $aport;
    is($aport, $lport, 'haproxy snippet: agent-port is the port nb_maint_stream.conf listens on');
}
like($cfg, qr/haproxy\s+(?:-\S+\s+)*-f\s+\S+\s+-f\s+\S*nb_maint\.cfg/, 'haproxy snippet: its header says how to include it (-f ... -f nb_maint.cfg)');

my $hp = NbTest::HAProxy->new;    # temp dir only
my $dir = $hp->dir;
my ($rc, $out) = NbTest::run_cmd("$dir/ef.out", $^X, "$ROOT/scripts/nb-maint", 'haproxy-errorfile',
                                  '--retry-after', '30', '--out', "$dir/nb_maint_503.http");
is($rc, 0, 'nb-maint haproxy-errorfile wrote the 503 file') or diag $out;

(my $local_cfg = $cfg) =~ s{\Q$errorfile\E}{$dir/nb_maint_503.http}g if defined $errorfile;
(my $api_file = $errorfile // '') =~ s/\.http\z/_api.http/;
$local_cfg =~ s{\Q$api_file\E}{$dir/nb_maint_503_api.http}g if length $api_file;
$local_cfg //= $cfg;
my $snippet = $hp->write_file('nb_maint.cfg', $local_cfg);
my $global = $hp->write_file('global.cfg', <<'EOT');
global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
EOT

($rc, $out) = NbTest::run_cmd("$dir/c1.out", NbTest::HAProxy::bin(), '-c', '-f', $global, '-f', $snippet);
is($rc, 0, 'haproxy -c -f global.cfg -f nb_maint.cfg: valid') or diag $out;
unlike($out, qr/\[(?:WARNING|ALERT)\]/, '... without warnings') or diag $out;

# the check really checks: a broken copy and a missing errorfile fail
my $broken = $hp->write_file('broken.cfg', $local_cfg . "    server bad 10.0.0.99:13000 agent-check agent-pirt 1\n");
($rc, $out) = NbTest::run_cmd("$dir/c2.out", NbTest::HAProxy::bin(), '-c', '-f', $global, '-f', $broken);
isnt($rc, 0, 'control: haproxy -c rejects a broken copy');
($rc, $out) = NbTest::run_cmd("$dir/c3.out", NbTest::HAProxy::bin(), '-c', '-f', $global, '-f', $cfg_file);
isnt($rc, 0, 'control: the shipped file without its errorfile (not written yet) is rejected');

SKIP: {
    my $deb = '/etc/haproxy/haproxy.cfg';
    skip 'no Debian /etc/haproxy/haproxy.cfg', 1 unless -f $deb;
    my ($drc) = NbTest::run_cmd("$dir/c4.out", NbTest::HAProxy::bin(), '-c', '-f', $deb);
    skip "$deb is not valid on its own here", 1 if $drc != 0;
    ($rc, $out) = NbTest::run_cmd("$dir/c5.out", NbTest::HAProxy::bin(), '-c', '-f', $deb, '-f', $snippet);
    is($rc, 0, "haproxy -c -f $deb -f nb_maint.cfg: valid") or diag $out;
}

# ---- the snippet at work: only addresses and intervals changed --------------------------------
{
    my @M = map { NbTest::Mock->new } 1 .. scalar @server;
    my $ng = NbTest::Nginx->new(http => cluster_http(nodes => \@M), agent_opts(upstream => 'app'));
    $ng->start;
    ok($ng->wait_all_health('up', 5, map { $_->id } @M), 'gateway: the nodes are up');
    my $AP = $ng->port_of('agent');

    my $run = $local_cfg;
    my $i = 0;
    for my $s (@server) {
        my ($addr) = $s =~ /^\s*server\s+\S+\s+(\S+)/;
        my $id = $M[$i++]->id;
        $run =~ s/\Q$addr\E/$id/g;       # server address and agent-send
    }
    $run =~ s/\bagent-addr\s+\S+/agent-addr 127.0.0.1/g;
    $run =~ s/\bagent-port\s+\d+/agent-port $AP/g;
    $run =~ s/\b(agent-inter|inter)\s+\S+/$1 200ms/g;
    $run =~ s/^(\s*bind\s+)\S+/${1}127.0.0.1:%%PORT%%/mg;
    $hp->write_cfg("global\n    %%STATS%%\n" . <<'EOT' . $run);
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
EOT
    $hp->start;
    my @names = map { /^\s*server\s+(\S+)/ ? $1 : () } @server;
    my ($be) = $cfg =~ /^\s*backend\s+(\S+)/m;
    my $ok = $hp->wait_servers($be, sub {
        my $s = $_[0];
        @names == grep { ($s->{$_}{status} // '') eq 'UP' && ($s->{$_}{agent_status} // '') =~ /L7OK|CHECKED/ } @names;
    }, 5);
    ok($ok, 'snippet at work: every server UP, agent checks pass') or diag explain $hp->last_servers;
    my $h = $hp->hit(30, '/api/x');
    is($h->{status}{200} // 0, 30, 'snippet at work: requests through haproxy reach the nodes');
    is(scalar(grep { ($h->{node}{ $_->id } // 0) > 0 } @M), scalar @M, '... every node gets some');

    # NocoBase's readiness is 200 and "ok": a node installing plugins (503,
    # its JSON body holds "ok" in no way that matters) is DOWN for HAProxy
    $M[0]->set_state('commanding', command => 'pm.enable');
    $ok = $hp->wait_servers($be, sub { ($_[0]{ $names[0] }{status} // '') =~ /DOWN/ }, 5);
    ok($ok, 'snippet at work: a node answering 503 APP_COMMANDING is DOWN (expect status 200, rstring ^ok$)')
        or diag explain $hp->last_servers;
    $M[0]->set_state('running');
    $ok = $hp->wait_servers($be, sub { ($_[0]{ $names[0] }{status} // '') eq 'UP' }, 5);
    ok($ok, '... and UP again once it runs');

    my $r = $ng->admin(POST => 'mode', { mode => 'upgrade' });
    is($r->{status}, 200, 'gateway: upgrade');
    $ok = $hp->wait_servers($be, sub { my $s = $_[0]; @names == grep { ($s->{$_}{status} // '') =~ /MAINT/ } @names }, 3);
    ok($ok, 'snippet at work: upgrade puts every server in MAINT') or diag explain $hp->last_servers;
    my $before = NbTest::mock_counts(@M);
    my $res = $hp->get('/api/y');
    is($res->{status}, 503, 'snippet at work: upgrade -> 503');
    is($res->{headers}{'retry-after'}, '30', '... with the errorfile (Retry-After: 30)');
    my $d = NbTest::count_delta($before, NbTest::mock_counts(@M));
    is((grep { $_ } values %$d), 0, '... no node reached');
    $hp->stop;
    $ng->stop;
    is(scalar $ng->crashes, 0, 'gateway: no worker exited on a signal');
}

# ============================== nginx ================================================
my @snips = sort glob("$ROOT/static/nginx/*.conf");
cmp_ok(scalar @snips, '>=', 3, 'static/nginx: the http, server and upstream snippets') or diag "@snips";

# context and documented include path of each snippet, from its header comment
my (%ctx, %text);
for my $f (@snips) {
    my $name = basename($f);
    my $t = slurp($f);
    $text{$name} = $t;
    my ($head) = $t =~ /\A((?:#[^\n]*\n)+)/;
    $head //= '';
    my ($c) = $head =~ /\binside\s+(?:an?\s+|the\s+)?(http|server|upstream|stream)\b/i;
    $c = 'main' if !defined $c && $head =~ /\b(?:at\s+the\s+)?top\s+level\b/i;
    ok(defined $c, "$name: its header says where to include it") or diag $head;
    my ($inc) = $head =~ /\binclude\s+(\S+?);/;
    ok(defined $inc && basename($inc) eq $name,
       "$name: its header shows the include line (" . ($inc // 'none') . ')');
    $ctx{$name} = lc($c // 'http');
}

my ($NA, $NB) = map { NbTest::Mock->new } 1 .. 2;

# one gateway from the snippets; $optional: enable the commented directives
sub snippet_gateway {
    my ($optional) = @_;
    my $ng = NbTest::Nginx->new(http => '');
    my $p = $ng->prefix;
    mkdir "$p/$_" for qw(nb_maint var);
    my %inc;
    for my $name (sort keys %text) {
        my $t = $text{$name};
        if ($optional) {
            # "# nb_maint_xxx ...;   # comment" -> enabled
            $t =~ s/^#\s*(nb_maint_\w+\s[^\n]*;)/$1/mg;
        }
        $t =~ s{/etc/nginx/nb_maint/}{$p/nb_maint/}g;
        $t =~ s{/etc/nginx/}{$p/etc/}g;
        $t =~ s{/var/lib/(?:nginx|nb-maint)\b}{$p/var}g;
        # fixed ports (the agent's 9777) -> free ones
        $t =~ s{^(\s*listen\s+)(?:\S+:)?(\d+)}{
            my $pn = "snip$2"; push @{ $ng->{snippet_ports} }, $pn; $1 . '127.0.0.1:' . $ng->port_of($pn)
        }mge;
        $ng->write_file("nb_maint/$name", $t);
        push @{ $inc{ $ctx{$name} } }, "include $p/nb_maint/$name;";
    }
    $ng->write_file('nb_maint/tokens', "ops:" . NbTest::ADMIN_TOKEN . "\n", 0600);
    $ng->write_file('nb_maint/secret', join('', map { sprintf '%02x', int rand 256 } 1 .. 32) . "\n", 0600);
    $ng->write_file('nb_maint/page.html', slurp("$ROOT/static/page.html"));
    my $j = sub { join "\n    ", @{ $inc{ $_[0] } || [] } };
    my $http = $j->('http') . "\n"
        . "upstream nocobase {\n    " . $j->('upstream') . "\n"
        . "    server " . $NA->id . ";\n    server " . $NB->id . ";\n    keepalive 32;\n}\n"
        . "server {\n    listen 127.0.0.1:%%PORT%%;\n    " . $j->('server') . "\n"
        . "    location / { proxy_pass http://nocobase; proxy_http_version 1.1; proxy_set_header Connection \"\"; }\n}\n";
    my %o = (http => $http);
    if ($inc{main}) {
        # as the header says: stream core, http nb_maint, stream nb_maint, then the include
        %o = (%o, no_module => 1,
              main => join('', map { "load_module $_;\n" }
                                   NbTest::stream_core_path(), NbTest::module_path(), NbTest::stream_module_path())
                    . $j->('main') . "\n");
    }
    if ($inc{stream}) {
        %o = (%o, agent_opts(upstream => 'nocobase', stream => '    ' . $j->('stream') . "\n"));
    }
    $ng->write_conf(%o);
    return $ng;
}

for my $optional (0, 1) {
    my $label = $optional ? 'nginx snippets, optional lines enabled' : 'nginx snippets as shipped';
    my $ng = snippet_gateway($optional);
    my ($rc, $out) = $ng->test_config;
    is($rc, 0, "$label: nginx -t passes") or diag $out, "\n", $ng->conf_text;
    like($out, qr/test is successful/, "$label: ... test is successful");
    if ($optional) {
        my $enabled = join '', map { $ng->read_file("nb_maint/$_") } sort keys %text;
        my %opt = map { /^#\s*(nb_maint_\w+)\s[^\n]*;/ ? ($1 => 1) : () } map { split /\n/ } values %text;
        cmp_ok(scalar keys %opt, '>=', 1, "$label: there are commented optional directives (" . join(' ', sort keys %opt) . ')');
        like($enabled, qr/^\s*$_\s/m, "$label: $_ enabled") for sort keys %opt;
    }
    next if $rc != 0;

    $ng->start;
    my $st = eval { $ng->status };
    ok($st, "$label: the admin API answers with the token of the tokens file") or diag $@;
    is($st && $st->{store}{type}, 'file', "$label: file store");
    ok($st && $st->{store}{ok}, "$label: the store (in the rewritten /var/lib/nginx) is ok");
    my ($up) = grep { $_->{name} eq 'nocobase' } @{ ($st || {})->{upstreams} || [] };
    is_deeply([sort map { $_->{id} } @{ ($up || {})->{nodes} || [] }], [sort $NA->id, $NB->id],
              "$label: upstream nocobase is under nb_maint with both nodes");
    ok(NbTest::wait_until(sub {
           my $n = $ng->status_nodes('nocobase');
           2 == grep { ($n->{$_}{health} // '') eq 'up' } $NA->id, $NB->id;
       }, 8), "$label: the health checks of the snippet pass (both nodes up)");
    my $h = $ng->hit(10, '/api/x');
    is($h->{status}{200} // 0, 10, "$label: requests reach the nodes");
    my @agent = map { $ng->port_of($_) } @{ $ng->{snippet_ports} || [] };
    for my $ap (@agent) {
        is(agent_ask($ap, $NA->id, timeout => 3), 'up ready', "$label: the agent of the stream snippet answers 'up ready'");
    }
    my $r = $ng->admin(POST => 'mode', { mode => 'upgrade' });
    is($r->{status}, 200, "$label: upgrade");
    for my $ap (@agent) {
        is(agent_ask($ap, $NA->id, timeout => 3), 'maint', "$label: upgrade: the agent answers 'maint'");
    }
    my $g = $ng->get('/api/y');
    is($g->{status}, 503, "$label: gated (503)");
    $ng->stop;
    is(scalar $ng->crashes, 0, "$label: no worker exited on a signal");
    ok((grep { -s $ng->prefix . "/var/$_" } qw(state.json nb_maint_state.json)),
       "$label: state file written where the snippet says");
}

done_testing;
