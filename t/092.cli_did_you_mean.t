#!/usr/bin/perl
# nb-maint usage errors need no gateway: "did you mean" for mistyped
# commands, options, config subcommands and option values; exit 2; the
# JSON envelope for usage errors with -o json.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbCli;
use JSON::PP;

my %E = (NB_MAINT_URL => 'http://127.0.0.1:1/_nb_maint/', NB_MAINT_CONFIG => NbCli::dir() . '/none');
sub cli { NbCli::run({ env => \%E }, @_) }

my @cases = (
    [['statsu'],                        qr/unknown command 'statsu'; did you mean 'status'\?/],
    [['rolling'],                       qr/did you mean 'rolling-restart'\?/],
    [['upgrade-rn'],                    qr/did you mean 'upgrade-run'\?/],
    [['maintenence', '--node', 'x'],    qr/did you mean 'maintenance'\?/],
    [['undrian', 'x'],                  qr/did you mean 'undrain'\?/],
    [['status', '--jsn'],               qr/unknown option --jsn; did you mean '--json'\?/],
    [['drain', 'x', '--wiat'],          qr/unknown option --wiat; did you mean '--wait'\?/],
    [['restore', '--forse'],            qr/did you mean '--force'\?/],
    [['status', '--tokn-file', 'f'],    qr/did you mean '--token-file'\?/],
    [['--contxt', 'a', 'status'],       qr/did you mean '--context'\?/],
    [['rolling-restart', '--restart-command', 'x'], qr/did you mean '--restart-cmd'\?/],
    [['config', 'usr', 'a'],            qr/did you mean 'config use'\?/],
    [['status', '-o', 'jsno'],          qr/-o must be text or json, not 'jsno'; did you mean 'json'\?/],
    [['status', '--color', 'alwyas'],   qr/did you mean 'always'\?/],
);
for my $c (@cases) {
    my ($args, $re) = @$c;
    my ($rc, $out, $err) = cli(@$args);
    is($rc, 2, "nb-maint @$args: exit 2");
    like($err, $re, "... $re") or diag $err;
}

my ($rc, $out, $err) = cli('frobnicate');
is($rc, 2, 'nothing close: exit 2');
unlike($err, qr/did you mean/, '... no suggestion');

($rc, $out, $err) = cli('-o', 'json', 'statsu');
is($rc, 2, '-o json usage error: exit 2');
my $e = eval { decode_json($err) } || {};
is($e->{error}{code}, 'usage', '... {"error":{"code":"usage"}}');
like($e->{error}{message} // '', qr/did you mean 'status'/, '... with the suggestion');
is($out, '', '... stdout empty');

($rc, $out) = cli('--help');
like($out, qr/^Exit status: 0 ok, 1 refused by the gateway.*2 usage,\n3 conflict \(409\), 4 store or gateway unavailable.*\n5 timed out/m,
     '--help documents the exit codes');

is_deeply(NbCli::warnings(), [], 'no Perl warnings from nb-maint');
done_testing;
