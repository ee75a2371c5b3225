# scripts/mock-node behaves as NocoBase's gateway does (packages/core/server/
# src/gateway/, packages/core/auth/src/actions.ts): the start sequence
# APP_PREPARING -> APP_INITIALIZING -> APP_COMMANDING start -> running, the
# 503 envelope with NocoBase's message texts, APP_COMMANDING upgrade, /ws
# messages on every status change (refresh after an upgrade), the sign-in
# origin check; while not running the API's 503 envelope but the client's
# files served; APP_STOPPED to every socket on SIGTERM (issue 18).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

my $ua = HTTP::Tiny->new(timeout => 5);
sub health {
    my ($m) = @_;
    my $r = $ua->get($m->url('/api/__health_check'));
    $r->{json} = eval { NbTest::json_decode($r->{content}) };
    return $r;
}

# ---- start sequence ------------------------------------------------------------------------
my $A = NbTest::Mock->new(starting => 2);
my (%seen, @order);
my $t0 = time;
while (time - $t0 < 4) {
    my $r = health($A);
    my $code = $r->{status} == 200 ? 'running' : ($r->{json}{error}{code} // 'garbage');
    push @order, $code unless @order && $order[-1] eq $code;
    if ($r->{status} == 503 && !$seen{$code}++) {
        my $e = $r->{json}{error};
        is($e->{status}, 503, "$code: error.status 503");
        ok($e->{maintaining}, "$code: error.maintaining true");
        if ($code eq 'APP_PREPARING') {
            is($e->{message}, 'application main is preparing, please wait patiently', "$code: NocoBase's text");
        } elsif ($code eq 'APP_INITIALIZING') {
            is($e->{message}, 'application main is initializing', "$code: NocoBase's text");
        } elsif ($code eq 'APP_COMMANDING') {
            is($e->{command}{name}, 'start', "$code: command.name start");
            is($e->{message}, 'starting app...', "$code: NocoBase's maintaining message");
        }
    }
    last if $code eq 'running';
    sleep 0.05;
}
is_deeply(\@order, [qw(APP_PREPARING APP_INITIALIZING APP_COMMANDING running)],
          'start sequence: APP_PREPARING, APP_INITIALIZING, APP_COMMANDING start, running')
    or diag explain \@order;
my $r = health($A);
is($r->{content}, 'ok', 'running: body "ok"');

# ---- upgrade, error, stopped -----------------------------------------------------------------
$A->set_state('commanding', command => 'upgrade');
$r = health($A);
is($r->{status}, 503, 'upgrading: 503');
is($r->{json}{error}{code}, 'APP_COMMANDING', '... APP_COMMANDING');
is($r->{json}{error}{command}{name}, 'upgrade', '... command.name upgrade');
like($r->{content}, qr/^\{"error":\{"status":503,"maintaining":true,"message":"[^"]*","command":\{"name":"upgrade"\},"code":"APP_COMMANDING"\}\}$/,
     '... keys in NocoBase\'s order');
$A->set_state('error');
$r = health($A);
is($r->{json}{error}{code}, 'APP_ERROR', 'error: APP_ERROR');
$A->set_state('stopped');
$r = health($A);
is($r->{json}{error}{code}, 'APP_STOPPED', 'stopped: APP_STOPPED');
is($r->{json}{error}{message}, 'application main is stopped', "... NocoBase's text");
$A->set_state('running');

# ---- /ws -------------------------------------------------------------------------------------------
my $ws = NbWS->connect(port => $A->port, path => '/ws');
is($ws->status, 101, '/ws: 101');
ok($ws->{accept_ok}, '... Sec-WebSocket-Accept is right');
is($ws->recv_json(0.5), undef, '... no message while nothing changes');
is($A->stats->{websockets}, 1, 'stats: websockets 1');
$ws->send_text('ping');
$ws->ping('hi');
my $f = $ws->recv_frame(2);
is($f && $f->{op}, 10, 'ping frame: pong');
is($f && $f->{data}, 'hi', '... with the payload');

$A->set_state('commanding', command => 'upgrade');
my $m = $ws->recv_json(2);
is($m->{type}, 'maintaining', 'upgrade: type maintaining');
is($m->{payload}{code}, 'APP_COMMANDING', '... APP_COMMANDING');
is($m->{payload}{command}{name}, 'upgrade', '... command.name upgrade');
ok(!exists $m->{payload}{status} && !exists $m->{payload}{maintaining}, '... payload without status/maintaining');

$A->set_state('running');
$m = $ws->recv_json(2);
is($m->{payload}{code}, 'APP_RUNNING', 'running again: APP_RUNNING');
is($m->{payload}{message}, 'application main is running', "... NocoBase's text");
ok($m->{payload}{refresh}, '... refresh true after an upgrade');

$A->set_state('commanding', command => 'backup');
is($ws->recv_json(2)->{payload}{command}{name}, 'backup', 'other command: its name');
$A->set_state('running');
$m = $ws->recv_json(2);
is($m->{payload}{code}, 'APP_RUNNING', 'running after backup');
ok(!$m->{payload}{refresh}, '... no refresh (NocoBase refreshes only after install/upgrade/pm.*)');

$ws->send_close(1000);
$f = $ws->recv_frame(2);
is($f && $f->{op}, 8, 'close: close frame back');

# ---- sign-in origin check ---------------------------------------------------------------------------
my $url = $A->url('/api/auth:signIn');
$r = $ua->request('POST', $url, { headers => { Origin => 'http://127.0.0.1:' . $A->port,
                                               'Content-Type' => 'application/json' },
                                  content => '{"account":"admin","password":"admin123"}' });
is($r->{status}, 200, 'sign-in, Origin = Host: 200');
$r = $ua->request('POST', $url, { headers => { Origin => 'http://gw.example' },
                                  content => '{}' });
is($r->{status}, 403, 'sign-in, Origin != Host: 403');
like($r->{content}, qr/Invalid sign-in origin/, '... Invalid sign-in origin');
$r = $ua->request('POST', $url, { headers => { Origin => 'https://gw.example',
                                               'X-Forwarded-Host' => 'gw.example',
                                               'X-Forwarded-Proto' => 'https' },
                                  content => '{}' });
is($r->{status}, 200, 'sign-in, Origin = X-Forwarded-Proto://X-Forwarded-Host: 200');

# ---- not running: the API gets the envelope, the client's files do not (issue 18) -------------------
# (gateway/index.ts requestHandler: paths outside API_BASE_PATH are served
# from disk before the app's status is looked at)
for my $st (['starting', 'APP_PREPARING'], ['commanding', 'APP_COMMANDING'], ['stopped', 'APP_STOPPED'],
            ['error', 'APP_ERROR']) {
    $A->set_state($st->[0], seconds => 30);
    $r = $ua->get($A->url('/api/users:list'));
    is($r->{status}, 503, "$st->[0]: /api/users:list 503");
    is((eval { NbTest::json_decode($r->{content}) } || {})->{error}{code}, $st->[1], "... $st->[1] envelope");
    is($ua->get($A->url('/admin/settings'))->{status}, 200, "... /admin/settings 200 (the client)");
    is($ua->get($A->url('/assets/index.js'))->{status}, 200, "... /assets/index.js 200");
}
$A->set_state('running');
is($ua->get($A->url('/api/users:list'))->{status}, 200, 'running: /api/users:list 200');

# ---- SIGTERM: APP_STOPPED to every socket, then exit (gateway/index.ts onTerminate) -----------------
my @ws = map { NbWS->connect(port => $A->port, path => '/ws') } 1 .. 3;
is(scalar(grep { $_->status == 101 } @ws), 3, 'three sockets');
is($ws[0]->recv_json(0.3), undef, '... nothing on connect (as NocoBase)');
$A->stop;
for my $i (0 .. 2) {
    $m = $ws[$i]->recv_json(2);
    is_deeply($m, { type => 'maintaining', payload => { message => 'application main is stopped', code => 'APP_STOPPED' } },
              "SIGTERM: socket $i hears NocoBase's APP_STOPPED");
    $f = $ws[$i]->recv_frame(2);
    is($f && $f->{op}, 'eof', '... then the connection closes');
}

done_testing;
