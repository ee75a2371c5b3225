# NbMaint/Usage.pm: the usage texts: nb-maint --help and each command's --help.
# Part of nb-maint (scripts/nb-maint): one package, NbMaint, over the files of
# scripts/lib/NbMaint, loaded in order by NbMaint.pm.
package NbMaint;
use strict;
use warnings;
use HTTP::Tiny;
use JSON::PP;
use Getopt::Long qw(GetOptionsFromArray);
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use Encode qw(decode encode);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use File::Path qw(make_path);
our ($PROG);    # $PROG: Base.pm

# ------------------------------------------------------------------ usage

our $GLOBAL_USAGE = <<"EOT";
usage: $PROG [--context NAME|--url URL] [--token-file F] [-o json] COMMAND [options]

Operator CLI for the nb_maint gateway module.

connection and output (also accepted after the command):
  --url URL          admin API, e.g. http://127.0.0.1:8080/_nb_maint/  (env NB_MAINT_URL)
  --token TOKEN      bearer token                                       (env NB_MAINT_TOKEN)
  --token-file F     read the token from file F (first line)       (env NB_MAINT_TOKEN_FILE)
  --context NAME     a gateway (or a group, or a,b,...) of the config file (env NB_MAINT_CONTEXT)
  --http-timeout S   timeout of one API request (default 10)
  --if-match V       send If-Match: "V" with writes (409 if the state moved on)
  -o, --output FMT   text (default) or json: the answer as JSON on stdout,
                     errors as {"error":{"code":...,"message":...}} on stderr
  --color WHEN       auto (default: on a terminal, unless NO_COLOR), always, never
                     (env NB_MAINT_COLOR)

state:
  status                                   mode, store, nodes
  node ID                                  one node
  maintenance --node ID [--reason R] [--retry-after N]
  upgrade [--node ID] [--reason R] [--retry-after N]
  restore [--wait] [--force] [--timeout S] [--expect N]
  drain ID... [--wait] [--timeout S] [--force]
  drain --self [--wait] [--timeout S] [--address A]
  undrain ID...
  bypass [--ttl N]                         print a bypass cookie
  events [--since N]                       audit log
  haproxy-errorfile [--out FILE] [--page FILE] [--retry-after N]

procedures (each step shown as it happens, stops at the first failure):
  rolling-restart --restart-cmd 'CMD {node}' [--timeout S]
  startup --start-cmd CMD
  upgrade-run --stop-cmd CMD --start-cmd CMD [--backup-cmd CMD]
              [--update-cmd CMD] [--verify-cmd CMD | --confirm]
  maintenance-run --node ID --stop-cmd CMD --start-cmd CMD

configuration (named gateways, like kubectl contexts):
  config list | current | use NAME | set NAME --url URL [--token-file F]
  config delete NAME | group NAME CTX,CTX... | path

In commands, {node} is replaced by the node id (host:port), {host} and {port}
by its parts, {n} by how many nodes run once the command is done (a start:
its place among the starts, from 1; a stop: the nodes still running), as
in `kubectl scale deploy/nocobase --replicas={n}`; the command also gets
NB_MAINT_NODE in its environment. Nodes from a DNS name (nb_maint_resolve,
Kubernetes) come back under new addresses: a wait for a node is also met by
the pods that replaced it, and a replaced node is not undrained or
restarted again.

`$PROG COMMAND --help` describes one command.
Exit status: 0 ok, 1 refused by the gateway (or a failed step), 2 usage,
3 conflict (409), 4 store or gateway unavailable (or not the admin API),
5 timed out, 130 interrupted (Ctrl-C).
EOT

our %HELP = (
    status => <<"EOT",
usage: $PROG status [-o json]

Show the cluster state: mode, designated node, version, since, reason,
retry_after, store health, nodes still awaited by a restore, and every node
of every nb_maint upstream (health, drain, active requests, fails, last check).
EOT
    node => <<"EOT",
usage: $PROG node ID [-o json]

Show one node (GET nodes/ID).
EOT
    maintenance => <<"EOT",
usage: $PROG maintenance --node ID [--reason R] [--retry-after N] [--force]

Enter maintenance mode: all traffic goes to node ID only (in-app maintenance:
plugins, backup/restore, migration). Leave it with `$PROG restore`.
A node whose health is down is refused (node_unhealthy): everyone would get
the 503 page; --force designates it anyway.
EOT
    upgrade => <<"EOT",
usage: $PROG upgrade [--node ID] [--reason R] [--retry-after N] [--force]

Enter upgrade mode: public requests get the 503 page, bypass requests
(allowed networks, bypass cookie) go to node ID (or any healthy node while
no node is set). Run it again with --node to set or change the node.
A node whose health is down is refused (node_unhealthy); --force designates
it anyway.
EOT
    restore => <<"EOT",
usage: $PROG restore [--wait] [--force] [--timeout S] [--expect N]

Leave maintenance/upgrade: the gateway goes to `restoring` and to `normal`
once every node has passed its health checks again.
  --wait        wait until the mode is normal (shows the nodes still awaited)
  --force       skip the health wait: normal at once
  --timeout S   give up waiting after S seconds (default 600; exit 5, naming
                the nodes still awaited)
  --expect N    also wait for N members of each nb_maint_resolve upstream
                (DNS-resolved after this call, healthy); default its expect=
EOT
    drain => <<"EOT",
usage: $PROG drain ID... [--wait] [--timeout S] [--force]
       $PROG drain --self [--wait] [--timeout S] [--address A] [--port N]

Drain the nodes: they get no new requests, running ones finish.
Draining the last undrained node of an upstream (or all of them at once)
leaves nothing to serve the site and is refused unless --force is given.
  --wait        wait until the nodes have no request in flight (active = 0)
                and no WebSocket open (the gateway closes them after
                nb_maint_ws_drain_grace; open tabs move to other nodes)
  --timeout S   give up waiting after S seconds (default 60; exit 5)
  --force       also drain the last undrained node(s)
HAProxy in front of the nodes (static/haproxy/nb_maint.cfg) learns of a
drain at its next agent check and counts its own requests:
  --haproxy-socket PATH  its stats socket (repeat for several HAProxy): also
                 wait until HAProxy no longer sends new requests to the node
                 and has none running or queued there (show stat: scur, qcur)
  --agent-interval S     without a socket, wait at least this long after the
                 drain for HAProxy's agent check (default 2, the snippet's
                 agent-inter; 0: no HAProxy in front)
A Kubernetes pod's preStop (README, "Kubernetes"):
  --self        drain the node whose address is this pod's: --address A
                (several: comma-separated), else \$POD_IP, else `hostname -i`;
                --port N: only that port. With --wait: until it has no
                request and no WebSocket, at most --timeout (default 25 s,
                below Kubernetes' 30 s grace; exit 5, it stays drained).
                Draining the last pod is allowed (it is going away).
EOT
    undrain => <<"EOT",
usage: $PROG undrain ID...

Give the nodes new requests again.
EOT
    bypass => <<"EOT",
usage: $PROG bypass [--ttl N] [-o json]

Ask the gateway for a signed bypass cookie (valid N seconds, default the
gateway's) and print it as NAME=VALUE. A browser or client sending it reaches
the designated node during upgrade and restore, e.g.
  curl -b "\$($PROG bypass --ttl 600)" https://site/
EOT
    events => <<"EOT",
usage: $PROG events [--since N] [-o json]

Print the audit log (changes with version > N), oldest first.
EOT
    'haproxy-errorfile' => <<"EOT",
usage: $PROG haproxy-errorfile [--out FILE] [--api-out FILE] [--snippet]
                               [--page FILE] [--retry-after N]
                               [--reason R] [--mode M] [--since T]

Write the pair of 503 responses HAProxy serves when no server is usable,
as raw HTTP/1.0 responses (Cache-Control: no-store, Retry-After,
X-NB-Maint, Connection: close): the page for browsers (--out, for
`errorfile 503 FILE`) and NocoBase's JSON envelope for API clients
(--api-out, default FILE with .http -> _api.http, for `http-request return
status 503 errorfile API_FILE if !{ nbsrv(BE) gt 0 } { path_beg /api/ }`).
  --snippet     also print these backend lines (--backend NAME, default
                nocobase)
retry_after, reason, since and mode come from GET status unless --retry-after is given (then the gateway is
not asked at all). The template is --page, else \$NB_MAINT_PAGE, else
static/page.html of this repository, else a built-in page; its placeholders
{{lang}} {{title}} {{heading}} {{message}} {{reason}} {{since}}
{{retry_after}} {{mode}} {{refresh}} {{reason_label}} {{since_label}}
{{retry_label}} {{seconds}} are filled (HTML-escaped) with the English texts
of the module's own page; other {{...}} are removed.
  --mode M     maintenance, upgrade, restoring (default: the gateway's mode,
               or a generic "unavailable" page when it is normal: "No
               application node is available", Retry-After 5 unless
               --retry-after, as the gateway's own no-node page)
  --out FILE   write there (default: standard output)
EOT
    'rolling-restart' => <<"EOT",
usage: $PROG rolling-restart --restart-cmd 'CMD {node}' [--timeout S]
                             [--health-timeout S] [--nodes ID,ID] [--force]

Restart every node of the nb_maint upstreams, one at a time:
drain it, wait until it has no request in flight and no WebSocket open (open
tabs move to the other nodes; together at most --timeout, default 60 s, then
go on), run the command, wait until its health is `up` again (at most
--health-timeout, default 600 s), undrain it. With nodes from a DNS name
(Kubernetes), a node replaced by the command (kubectl rollout restart ... &&
kubectl rollout status ...) counts as healthy again once as many members
are up as before; it stays drained until its address goes, and nodes the
command replaced too are skipped.
  --nodes ID,..  only these nodes (e.g. to resume after a failure)
  --force        also when the mode is not normal or no other node is up
HAProxy in front of the nodes (static/haproxy/nb_maint.cfg) learns of a
drain at its next agent check and counts its own requests:
  --haproxy-socket PATH  its stats socket (repeat for several HAProxy): also
                 wait until HAProxy no longer sends new requests to the node
                 and has none running or queued there (show stat: scur, qcur)
  --agent-interval S     without a socket, wait at least this long after the
                 drain for HAProxy's agent check (default 2, the snippet's
                 agent-inter; 0: no HAProxy in front)
EOT
    startup => <<"EOT",
usage: $PROG startup --start-cmd CMD [--node FIRST] [--timeout S]

Initial cluster start: start the first node (FIRST, default the first node
of the upstream), wait until it is healthy (plugins installed and enabled),
then start the others one by one, each time waiting until it is healthy.
  --timeout S    at most S seconds for each node to become healthy (default 900)
EOT
    'upgrade-run' => <<"EOT",
usage: $PROG upgrade-run --stop-cmd CMD --start-cmd CMD [--backup-cmd CMD]
                         [--update-cmd CMD] [--verify-cmd CMD | --confirm]
                         [--node FIRST] [--reason R] [--retry-after N]
                         [--timeout S] [--drain-timeout S]

Version upgrade: upgrade mode (public 503 page), wait for running requests,
stop all nodes, back up, update, start the first node (FIRST, default the
first node of the upstream), wait until it is healthy, verify (run
--verify-cmd, or with --confirm print a bypass cookie and wait for the
operator to type yes), start the others, restore and wait until normal.
A --update-cmd containing {node} runs once per node, otherwise once.
With nodes from a DNS name (Kubernetes: --stop-cmd 'kubectl scale ...
--replicas={n}'), no node is designated (bypass requests go to the first
one up) and the first node is healthy when a new member is up.
  --timeout S        health and restore waits (default 1800)
  --drain-timeout S  wait for running requests before stopping (default 30)
HAProxy in front of the nodes (static/haproxy/nb_maint.cfg) learns of a
drain at its next agent check and counts its own requests:
  --haproxy-socket PATH  its stats socket (repeat for several HAProxy): also
                 wait until HAProxy no longer sends new requests to the node
                 and has none running or queued there (show stat: scur, qcur)
  --agent-interval S     without a socket, wait at least this long after the
                 drain for HAProxy's agent check (default 2, the snippet's
                 agent-inter; 0: no HAProxy in front)
  --haproxy-errorfile FILE  rewrite HAProxy's 503 pair (FILE and its _api
                 JSON twin, as `haproxy-errorfile --out FILE`) when the mode
                 changes, so HAProxy's page shows the real reason
  --haproxy-reload CMD   then run CMD (e.g. 'systemctl reload haproxy')
EOT
    config => <<"EOT",
usage: $PROG config list | current | use NAME | path
       $PROG config set NAME --url URL [--token-file FILE]
       $PROG config group NAME CONTEXT,CONTEXT... | delete NAME

Named gateways, like kubectl contexts, in \$NB_MAINT_CONFIG, else
\$XDG_CONFIG_HOME/nb-maint/config, else ~/.config/nb-maint/config (mode 0600):
  current = prod-a
  [context prod-a]
  url = https://gw-a/_nb_maint/
  token-file = ~/.config/nb-maint/prod.token
  [group prod]
  contexts = prod-a, prod-b
  list          the contexts and groups, the current one marked *
  current       the current context's name
  use NAME      make a context or group the current one
  set NAME      add or change a context (the first one becomes current)
  group NAME    a group of contexts: `--context NAME` then reads every
                gateway, and writes once when they share one Redis store
                (same primary), else to each in turn; guided runs refuse it
  delete NAME   remove a context or group
  path          the file's path
Which gateway a command uses: --url, else --context NAME (or a,b), else
NB_MAINT_CONTEXT, else NB_MAINT_URL, else the current context.
EOT
    'maintenance-run' => <<"EOT",
usage: $PROG maintenance-run --node ID --stop-cmd CMD --start-cmd CMD
                             [--reason R] [--retry-after N] [--task-cmd CMD]
                             [--timeout S] [--drain-timeout S] [--force]

In-app maintenance: maintenance mode on node ID (all traffic goes there),
wait for running requests on the others and for their WebSockets to close
(open tabs move to node ID), stop the others, wait for the
operator to finish the maintenance (press Enter; or run --task-cmd), start
the others, restore and wait until normal.
  --timeout S        restore wait (default 1800)
  --drain-timeout S  wait for running requests and WebSockets before
                     stopping (default 30)
  --force            designate node ID even when its health is down
HAProxy in front of the nodes (static/haproxy/nb_maint.cfg) learns of a
drain at its next agent check and counts its own requests:
  --haproxy-socket PATH  its stats socket (repeat for several HAProxy): also
                 wait until HAProxy no longer sends new requests to the node
                 and has none running or queued there (show stat: scur, qcur)
  --agent-interval S     without a socket, wait at least this long after the
                 drain for HAProxy's agent check (default 2, the snippet's
                 agent-inter; 0: no HAProxy in front)
  --haproxy-errorfile FILE  rewrite HAProxy's 503 pair (FILE and its _api
                 JSON twin, as `haproxy-errorfile --out FILE`) when the mode
                 changes, so HAProxy's page shows the real reason
  --haproxy-reload CMD   then run CMD (e.g. 'systemctl reload haproxy')
EOT
);

# What -o json prints, appended to each command's --help.
my %JSON_HELP = (
    status      => 'the GET status document',
    node        => 'the node object of GET nodes/ID',
    maintenance => 'the status document the gateway answered the change with',
    upgrade     => 'the status document the gateway answered the change with',
    restore     => 'the status document (with --wait: the final one, mode normal)',
    drain       => '{"nodes":[...]} the drained nodes as the gateway reports them after the change (with --wait: once idle)',
    undrain     => '{"nodes":[...]} the undrained nodes as the gateway reports them',
    bypass      => '{"cookie":"nb_maint_bypass=...","set_cookie":...,"ttl":N,"expires":...}',
    events      => '{"events":[...]} as GET events answers',
    'haproxy-errorfile' => '{"file":F,"api_file":F,"bytes":N,"api_bytes":N,"retry_after":N,"mode":M} (with --out), else {"response":"HTTP/1.0 503 ..."}',
    'rolling-restart'   => 'one JSON object a line: {"event":"step"|"progress"|"output"|"done"|"interrupted",...}',
    startup             => 'one JSON object a line: {"event":"step"|"progress"|"output"|"done"|"interrupted",...}',
    'upgrade-run'       => 'one JSON object a line: {"event":"step"|"progress"|"output"|"done"|"interrupted",...}',
    'maintenance-run'   => 'one JSON object a line: {"event":"step"|"progress"|"output"|"done"|"interrupted",...}',
    config      => 'list: {"current":NAME,"contexts":[...],"groups":[...]}; the others: {"ok":true,...}',
);

sub help_text {
    my ($cmd) = @_;
    my $t = $HELP{$cmd};
    $t .= "  -o json       print $JSON_HELP{$cmd};\n"
        . "                errors as {\"error\":{\"code\":...,\"message\":...,\"exit\":N}} on stderr\n"
        if $JSON_HELP{$cmd};
    $t .= "Exit status: 0 ok, 1 refused, 2 usage, 3 conflict, 4 gateway or store\n"
        . "unavailable, 5 timed out, 130 interrupted (see $PROG --help).\n";
    return $t;
}

1;
