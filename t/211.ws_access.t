# The access phase applies to /ws answered by the gateway (SPEC section
# 10a, issue 21 item 5): allow/deny, auth_basic, limit_conn and limit_req of
# the location decide before the gateway answers; "return" in the location
# does not slip past the gate.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use NbWS;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(sleep);

my $locs = <<'EOT';
    location /ws-deny { nb_maint_ws_path /ws-deny; deny all; return 200 "app\n"; }
    location /ws-auth { nb_maint_ws_path /ws-auth; auth_basic "nb"; auth_basic_user_file %%PREFIX%%/htpasswd;
                        return 200 "app\n"; }
    location /ws-conn { nb_maint_ws_path /ws-conn; limit_conn wsc 1; limit_conn_status 429; return 200 "app\n"; }
    location /ws-req  { nb_maint_ws_path /ws-req; limit_req zone=wsr; limit_req_status 429; return 200 "app\n"; }
EOT
my $ng = NbTest::Nginx->new(workers => 1, http => std_http(
    http_extra => "limit_conn_zone \$binary_remote_addr zone=wsc:1m;\n"
                . "limit_req_zone \$binary_remote_addr zone=wsr:1m rate=1r/m;\n",
    locations => $locs));
$ng->write_file('htpasswd', "nb:{PLAIN}secret\n");
$ng->start;
is($ng->admin(POST => 'mode', { mode => 'upgrade' })->{status}, 200, 'upgrade: /ws answered by the gateway');

sub ws { my ($path, %h) = @_; NbWS->connect(port => $ng->port, path => $path, headers => \%h) }

# allow/deny
is(ws('/ws-deny')->status, 403, 'deny all: 403, not a gated socket');

# auth_basic
is(ws('/ws-auth')->status, 401, 'auth_basic without credentials: 401');
is(ws('/ws-auth', Authorization => 'Basic ' . encode_base64('nb:wrong', ''))->status, 401,
   '... wrong password: 401');
my $a = ws('/ws-auth', Authorization => 'Basic ' . encode_base64('nb:secret', ''));
is($a->status, 101, '... right password: 101');
is(($a->recv_json(2) || {})->{payload}{code}, 'APP_COMMANDING', '... the gateway answers (not "return 200")');

# limit_conn: an open gated socket holds its slot until it is closed
my $c1 = ws('/ws-conn');
is($c1->status, 101, 'limit_conn 1: the first socket 101');
is(ws('/ws-conn')->status, 429, '... a second one while it is open: 429');
$c1->drop;
ok(NbTest::wait_until(sub { my $c = ws('/ws-conn'); $c->status == 101 }, 3),
   '... once it is closed, a new one: 101');

# limit_req
is(ws('/ws-req')->status, 101, 'limit_req 1r/m: the first handshake 101');
is(ws('/ws-req')->status, 429, '... the second at once: 429');

# a location without rules: answered as before
my $w = ws('/ws');
is($w->status, 101, '/ws without access rules: 101');
is(($w->recv_json(2) || {})->{payload}{code}, 'APP_COMMANDING', '... APP_COMMANDING');

is(scalar $ng->crashes, 0, 'no worker crashed');
done_testing;
