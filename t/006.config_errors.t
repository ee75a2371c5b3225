# nginx -t rejects bad nb_maint configuration with a message naming the
# directive; the good configuration (and harmless variants) pass.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $ng = NbTest::Nginx->new(http => std_http());

# the example config passes: the failures below come from the one changed line
my ($rc, $out) = $ng->test_config;
is($rc, 0, 'example config passes nginx -t') or diag $out;

# std_http with one directive replaced/added
sub cfg {
    my (%o) = @_;
    my $t = std_http(%{ $o{std} || {} });
    if (my $zone = $o{zone}) { $t =~ s/^nb_maint_zone nb 4m;$/$zone/m or die 'no zone line' }
    $t = "$o{http}\n$t" if $o{http};
    return $t;
}

my @good = (
    [ 'zone 2m'                      => cfg(zone => 'nb_maint_zone nb 2m;') ],
    [ 'bypass_allow IPv6 ::1/128'    => cfg(std => { server_extra => '    nb_maint_bypass_allow ::1/128;' }) ],
    [ 'bypass_allow single address'  => cfg(std => { server_extra => '    nb_maint_bypass_allow 192.168.1.7;' }) ],
    [ 'gate off at http level'       => cfg(http => 'nb_maint_gate off;') ],
    [ 'pass with a case-insensitive regex' => cfg(std => { server_extra => '    nb_maint_pass ~*^/static/;' }) ],
);
for my $c (@good) {
    $ng->write_conf(http => $c->[1]);
    my ($rc, $out) = $ng->test_config;
    is($rc, 0, "valid: $c->[0]") or diag $out;
}

my @bad = (
    # [label, http text, directive, extra regex]
    [ 'zone too small'          => cfg(zone => 'nb_maint_zone nb 1k;'),       'nb_maint_zone', qr/too small/i ],
    [ 'zone invalid size'       => cfg(zone => 'nb_maint_zone nb abc;'),      'nb_maint_zone', qr/invalid/i ],
    [ 'zone unknown parameter'  => cfg(zone => 'nb_maint_zone nb 4m bogus;'), 'nb_maint_zone' ],
    [ 'zone missing size'       => cfg(zone => 'nb_maint_zone nb;'),          'nb_maint_zone' ],
    [ 'store unknown scheme'    => cfg(std => { store => 'ftp://x' }),        'nb_maint_store' ],
    [ 'pass bad regex'          => cfg(std => { server_extra => '    nb_maint_pass ~(;' }), 'nb_maint_pass' ],
    [ 'pass bad regex 2'        => cfg(std => { server_extra => '    nb_maint_pass "~^/a[";' }), 'nb_maint_pass' ],
    [ 'bypass_allow not a cidr' => cfg(std => { bypass => 'not-a-cidr' }),     'nb_maint_bypass_allow' ],
    [ 'bypass_allow /33'        => cfg(std => { bypass => '10.0.0.0/33' }),    'nb_maint_bypass_allow' ],
    [ 'gate bad value'          => cfg(std => { server_extra => '    nb_maint_gate maybe;' }), 'nb_maint_gate' ],
    [ 'admin outside location'  => cfg(std => { server_extra => '    nb_maint_admin;' }), 'nb_maint_admin' ],
);
for my $c (@bad) {
    my ($label, $text, $dir, $re) = @$c;
    $ng->write_conf(http => $text);
    my ($rc, $out) = $ng->test_config;
    isnt($rc, 0, "invalid: $label: nginx -t fails");
    like($out, qr/\[emerg\]/, "invalid: $label: [emerg]");
    like($out, qr/"\Q$dir\E"/, "invalid: $label: message names \"$dir\"") or diag $out;
    like($out, $re, "invalid: $label: message says $re") if $re;
}

# a failing config must not have touched a state file
ok(!-e $ng->prefix . '/state.json', 'nginx -t created no state file');
done_testing;
