# GET metrics passes `promtool check metrics` (issue 13): one family per
# metric, HELP and TYPE first, _total on counters, _timestamp_seconds on
# times, a well-formed histogram; on the live output of a gateway with nodes
# up, drained, down, commanding and unchecked, with long and odd ids and an
# upstream name that needs escaping.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $promtool = `command -v promtool 2>/dev/null`;
chomp $promtool;
plan skip_all => 'promtool not installed (make deps installs prometheus)'
    unless $promtool;

my ($A, $B, $C) = map { NbTest::Mock->new } 1 .. 3;
my $down = NbTest::free_port();          # nothing listens there
my $ng = NbTest::Nginx->new(http => '');
my $dir = $ng->prefix;
my $sock = "$dir/" . ('n' x 40) . '.sock';   # a long unix: id, never up
my $odd = 'we"ird\\name';                     # escaped in label values
my $long = 'u' x 200;
my $bytes = "bad\xff\xc3name\xe2\x82";           # not UTF-8: U+FFFD in labels
(my $odd_conf = $odd) =~ s{([\\"])}{\\$1}g;

$ng->{http} = NbTest::http_head() . <<"EOT";
upstream app {
    nb_maint;
    nb_maint_check interval=100ms timeout=500ms rise=1 fall=1;
    server ${\ $A->id };
    server ${\ $B->id };
    server ${\ $C->id };
    server 127.0.0.1:$down;
}
upstream "$odd_conf" {
    nb_maint;
    nb_maint_check off;
    server unix:$sock;
    server ${\ $A->id } backup;
}
upstream $long {
    nb_maint;
    server ${\ $B->id };
}
upstream "$bytes" {
    nb_maint;
    nb_maint_check off;
    server ${\ $C->id };
}
server {
    listen 127.0.0.1:%%PORT%%;
    nb_maint_gate on;
    location / { proxy_pass http://app; }
    location /_nb_maint/ { nb_maint_admin; }
}
EOT
$ng->write_conf;
$ng->start;

ok($ng->wait_all_health('up', 5, $A->id, $B->id, $C->id), 'A, B, C up');
$C->set_state('commanding');
ok($ng->wait_health($C->id, 'commanding', 5), 'C commanding');
ok($ng->wait_health("127.0.0.1:$down", 'down', 5), 'the 4th node down');
is($ng->admin(POST => 'nodes/' . $B->id . '/drain')->{status}, 200,
   'B drained');
$ng->get('/x') for 1 .. 6;

my $r = $ng->admin(GET => 'metrics');
is($r->{status}, 200, 'GET metrics');
my $m = $r->{content};

sub promtool {
    my ($text) = @_;
    my $f = "$dir/metrics.txt";
    open my $fh, '>', $f or die "$f: $!";
    print $fh $text;
    close $fh;
    my $out = `'$promtool' check metrics < '$f' 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = promtool($m);
is($rc, 0, 'promtool check metrics: exit 0');
is($out, '', 'promtool check metrics: reports nothing') or diag $m;

# each family once, its HELP and TYPE before its samples, samples together
my (%seen, $family, @bad);
for my $line (split /\n/, $m) {
    if ($line =~ /^# (HELP|TYPE) (\S+)/) {
        push @bad, "second $1 for $2" if $seen{"$1 $2"}++;
        $family = $2;
        next;
    }
    my ($name) = $line =~ /^([a-z_:]+)/ or next;
    push @bad, "$name outside its family" unless $family
        && ($name eq $family || $name =~ /^\Q$family\E_(bucket|sum|count)$/);
}
is_deeply(\@bad, [], 'every sample in its own family, once');

like($m, qr/^nb_maint_node_up\{upstream="bad\xef\xbf\xbd\xef\xbf\xbdname\xef\xbf\xbd\xef\xbf\xbd",/m,
     'bytes that are not UTF-8 become U+FFFD in a label value');
like($m, qr/^nb_maint_node_up\{upstream="we\\"ird\\\\name",/m,
     'quote and backslash escaped in a label value');

done_testing;
