# A tab never keeps "App stopped" while a node serves it (issue 18, item 1).
# NocoBase's node tells its sockets APP_STOPPED when it stops (mock-node on
# SIGTERM, as gateway/index.ts onTerminate does); the tab reconnects through
# the gateway to another node, which says nothing on connect, and NocoBase's
# client sends its token only when not maintaining: without the gateway's
# greeting nothing clears the dialog.  With it, a socket a node up has just
# accepted hears NocoBase's running message first (no "refresh": no reload),
# then the node's own messages; a node the checks find commanding gets no
# greeting (it speaks for itself); other paths and upstreams get none.  A
# node whose app stopped but whose process lingers: its sockets are closed
# as soon as the checks find it down, so the tab moves.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use Time::HiRes qw(time sleep);

my ($A, $B) = map { NbTest::Mock->new } 1 .. 2;
my ($aid, $bid) = map { $_->id } $A, $B;

my $LOC = NbWS::LOCATION . <<'EOT';
    location /other-ws {
        proxy_pass http://app/ws;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
EOT
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A, $B], locations => $LOC));
$ng->start;
ok($ng->wait_all_health('up', 5, $aid, $bid), 'nodes up');

# NocoBase's client (client-v2 Application.loadWebSocket): a message ends
# the maintaining state unless it is "maintaining" with a code other than
# APP_RUNNING; "refresh" reloads the page
sub clears { my ($m) = @_; $m && !($m->{type} eq 'maintaining' && ($m->{payload}{code} // '') ne 'APP_RUNNING') }

# a socket on node $want (round robin: a few tries)
sub ws_on {
    my ($want) = @_;
    for (1 .. 10) {
        my $ws = NbWS->connect(port => $ng->port);
        return $ws if $ws->status == 101 && ($ws->{headers}{'x-node'} // '') eq $want;
    }
    return undef;
}

# ---- a tab on A; A stops ------------------------------------------------------------------------
my $tab = ws_on($aid);
ok($tab, 'a tab\'s socket on A');
my $g = $tab->recv_json(1);
ok(clears($g), 'on connect: a message that clears the maintaining state');
is_deeply($g, { type => 'maintaining', payload => { code => 'APP_RUNNING', message => 'application main is running' } },
          '... NocoBase\'s own running message, no refresh');
ok(!defined $tab->recv_json(0.3), '... and nothing else');

$A->stop;    # SIGTERM
my $m = $tab->recv_json(2);
is($m->{payload}{code}, 'APP_STOPPED', 'A stops: the tab hears APP_STOPPED (NocoBase\'s broadcast)');
is($m->{payload}{message}, 'application main is stopped', '... NocoBase\'s message');
my $f = $tab->recv_frame(2);
ok($f && ($f->{op} eq 'eof' || $f->{op} == 8), '... then the socket closes');

# ---- the tab reconnects through the gateway: B, and the dialog clears ---------------------------
my $t0 = time;
my $re = NbWS->connect(port => $ng->port);
is($re->status, 101, 'reconnect: 101');
is($re->{headers}{'x-node'}, $bid, '... from B');
$m = $re->recv_json(2);
my $dt = time - $t0;
ok(clears($m), sprintf('... the tab hears a message that clears "App stopped" (%.3f s)', $dt))
    or diag explain $m;
ok(!($m && $m->{payload}{refresh}), '... without "refresh" (no reload)');
cmp_ok($dt, '<', 1, '... within 1 s of the reconnect');

# B's own messages come after it, in order
$B->set_state('commanding', command => 'pm.enable', seconds => 0.5);
$m = $re->recv_json(2);
is($m->{payload}{code}, 'APP_COMMANDING', 'B\'s own message follows: APP_COMMANDING');
$m = $re->recv_json(3);
is($m->{payload}{code}, 'APP_RUNNING', '... then APP_RUNNING');
ok($m->{payload}{refresh}, '... with refresh after pm.enable (NocoBase\'s, not the gateway\'s)');

# ---- a node the checks find commanding gets no greeting -------------------------------------------
is($ng->admin(POST => 'mode', { mode => 'maintenance', node => $bid, force => JSON::PP::true() })->{status}, 200,
   'maintenance on B');
$B->set_state('commanding', command => 'pm.enable');
ok($ng->wait_health($bid, 'commanding', 5), 'B commanding');
my $c = NbWS->connect(port => $ng->port);
is($c->{headers}{'x-node'}, $bid, 'a socket on commanding B');
ok(!defined $c->recv_json(0.8), '... hears nothing from the gateway (B speaks for itself)');
$B->set_state('running');
$m = $c->recv_json(2);
is($m->{payload}{code}, 'APP_RUNNING', '... B\'s own APP_RUNNING once it is done');
ok($ng->wait_health($bid, 'up', 5), 'B up');
is($ng->admin(POST => 'restore', { force => JSON::PP::true() })->{status}, 200, 'restore');

# ---- another path through the same upstream: no greeting ----------------------------------------
my $o = NbWS->connect(port => $ng->port, path => '/other-ws');
is($o->status, 101, '/other-ws: 101');
ok(!defined $o->recv_json(0.5), '... no greeting on a path that is not nb_maint_ws_path');

# ---- the node's first bytes after its 101 come after the greeting --------------------------------
$A->start;
ok($ng->wait_health($aid, 'up', 5), 'A back up');
my $x = NbWS->connect(port => $ng->port);
my $n1 = $x->recv_json(1);
is($n1->{payload}{code}, 'APP_RUNNING', 'a fresh socket: the greeting first');
ok(!$x->closed, '... the socket stays open');
$x->send_text('ping');
ok(!defined $x->recv_json(0.3), '... NocoBase\'s "ping" is relayed as before (no answer)');

# ---- a node whose app stopped but whose process lingers (NocoBase can take ----------------------
# ---- 20 s to exit after SIGTERM): the checks find it down, its sockets go at once ---------------
my $tab2 = ws_on($aid);
ok($tab2 && $tab2->greeting(1), 'a tab on A (greeted)');
$t0 = time;
$A->set_state('stopped');    # APP_STOPPED to its sockets, 503 APP_STOPPED to checks; keeps running
$m = $tab2->recv_json(2);
is($m->{payload}{code}, 'APP_STOPPED', 'A\'s app stops: the tab hears APP_STOPPED');
$f = $tab2->recv_frame(5);
$dt = time - $t0;
ok($f && ($f->{op} eq 'eof' || $f->{op} == 8), sprintf('... the gateway closes the socket once A is down (%.2f s)', $dt));
cmp_ok($dt, '<', 3, '... within the checks\' fall (2 x 200 ms) and a tick');
$re = NbWS->connect(port => $ng->port);
is($re->{headers}{'x-node'}, $bid, 'the tab reconnects: B');
ok(clears($re->recv_json(2)), '... and leaves "App stopped"');
ok($A->running, 'A\'s process still runs (it was not its exit that closed the socket)');

done_testing();
