# static/grafana/nb_maint.json (issue 13): valid JSON, a Grafana dashboard
# with the panels the README promises, and every metric its queries use is
# one GET metrics really serves (the Redis failover ones only with Redis).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;

my $file = NbTest::repo_root() . '/static/grafana/nb_maint.json';
open my $fh, '<', $file or die "$file: $!";
my $text = do { local $/; <$fh> };
close $fh;

my $d = eval { JSON::PP->new->utf8->decode($text) };
ok($d, 'nb_maint.json is valid JSON') or diag $@;
is(ref $d->{panels}, 'ARRAY', 'a dashboard with panels');
ok($d->{uid} && $d->{title} && $d->{schemaVersion}, 'uid, title, schemaVersion');

my %title = map { ($_->{title} => $_) } @{ $d->{panels} };
for my $t ('Mode timeline', 'Requests per node', 'Failures per node',
           'Health check latency p50 / p99', 'Restore progress', 'Store up',
           'Store failovers in range', 'Node health') {
    ok($title{$t}, "panel \"$t\"");
}

my (%ids, @exprs);
for my $p (@{ $d->{panels} }) {
    ok(!$ids{ $p->{id} }++, "panel id $p->{id} unique");
    is($p->{datasource}{uid}, '${datasource}', "\"$p->{title}\": the data source variable");
    ok(@{ $p->{targets} || [] }, "\"$p->{title}\": has queries");
    push @exprs, map { $_->{expr} } @{ $p->{targets} };
}
push @exprs, map { ref $_->{query} ? $_->{query}{query} : () } @{ $d->{templating}{list} };

# the families a live gateway serves
my $A = NbTest::Mock->new;
my $ng = NbTest::Nginx->new(http => cluster_http(nodes => [$A]));
$ng->start;
ok($ng->wait_all_health('up', 5, $A->id), 'node up');
my $m = $ng->admin(GET => 'metrics')->{content};
my %family = map { ($_ => 1) } $m =~ /^# TYPE (\S+) /mg;
my %redis_only = map { ($_ => 1) } qw(nb_maint_store_failovers_total
                                       nb_maint_store_last_failover_timestamp_seconds);

my %used;
for my $e (@exprs) {
    $used{$_}++ for $e =~ /\b(nb_maint_[a-z_]+)/g;
}
ok(scalar keys %used >= 12, scalar(keys %used) . ' metrics used');
for my $name (sort keys %used) {
    my $fam = $name;
    $fam =~ s/_(bucket|sum|count)$// unless $family{$name};
    ok($family{$fam} || $redis_only{$fam}, "$name is served by GET metrics");
}

is($ng->crashes, 0, 'no worker crashed');
done_testing;
