# GET metrics is sized exactly (issue 9, defect 1): an upstream named with
# 200 characters and 30 unix: servers with ~60-character ids used to
# overflow the buffer and crash the worker on every scrape.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $NAME = 'u' x 200;
my $ng = NbTest::Nginx->new(http => '');
my $dir = $ng->prefix;
my @ids;
for my $i (1 .. 30) {
    my $path = sprintf '%s/s%02d_', $dir, $i;
    $path .= 'x' x (60 - 5 - length($path) - 5) . '.sock';
    push @ids, "unix:$path";
}
cmp_ok(length $ids[0], '>=', 58, 'ids of about 60 bytes (' . length($ids[0]) . ')');

my $servers = join '', map { "    server $_;\n" } @ids;
$ng->{http} = NbTest::http_head() . <<"EOT";
upstream $NAME {
    nb_maint;
$servers}
server {
    listen 127.0.0.1:%%PORT%%;
    location / { proxy_pass http://$NAME; }
    location /_nb_maint/ { nb_maint_admin; }
}
EOT
$ng->write_conf;
$ng->start;

for my $round (1 .. 5) {
    my $r = $ng->admin(GET => 'metrics');
    is($r->{status}, 200, "scrape $round: 200") or last;
    my @up = $r->{content} =~ /^nb_maint_node_up\{upstream="\Q$NAME\E",node="([^"]+)"\} (-?\d+)$/mg;
    my @drain = $r->{content} =~ /^nb_maint_node_drain\{upstream="\Q$NAME\E",node="[^"]+"\} [01]$/mg;
    my @active = $r->{content} =~ /^nb_maint_node_active\{upstream="\Q$NAME\E",node="[^"]+"\} \d+$/mg;
    is(scalar(@up) / 2, 30, "scrape $round: 30 node_up lines");
    is(scalar(@drain), 30, "scrape $round: 30 node_drain lines");
    is(scalar(@active), 30, "scrape $round: 30 node_active lines");
    my %seen = @up;
    is_deeply([sort keys %seen], [sort @ids], "scrape $round: every node id whole");
    like($r->{content}, qr/\n\z/, "scrape $round: ends with a newline");
}

# the same nodes drained: longer values, still exact
for my $id (@ids[0 .. 9]) {
    my $r = $ng->admin(POST => "nodes/$id/drain");
    is($r->{status}, 200, "drain $id") or diag $r->{content};
}
my $r = $ng->admin(GET => 'metrics');
is($r->{status}, 200, 'scrape after drains: 200');
my @drained = $r->{content} =~ /^nb_maint_node_drain\{[^}]*\} 1$/mg;
is(scalar @drained, 10, '10 drained nodes');

is($ng->crashes, 0, 'no worker crashed');
unlike($ng->error_log, qr/signal 11|signal 6|double free|corrupted/, 'no crash in the error log');
done_testing;
