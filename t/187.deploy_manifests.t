# deploy/ (issue 20 item 2): the Docker Compose file and the Kubernetes
# manifests, checked offline.  No cluster and no Docker: kubectl's
# client-side dry run still asks an API server for its mappings, so the
# manifests are read with YAML::XS (libyaml-libyaml-perl, `make deps`) and
# checked here:
#   - every Kubernetes document: a kind this test knows (apiVersion, kind),
#     only the fields Kubernetes has for it where we use them (a misspelt
#     field is an error, as kubectl --validate=strict says), names valid;
#   - every reference: selectors and pod labels, Services and workloads,
#     volumes and mounts, ConfigMap/Secret keys, PVC names;
#   - what nb_maint needs: the gateway's nginx.conf in the ConfigMap is
#     README's "Kubernetes" block and passes nginx -t (paths moved into a
#     temporary tree, host names to 127.0.0.1, as t/186 does), it follows
#     the headless Service with expect= the NocoBase replicas, its Redis is
#     the Redis Service, the NocoBase pods have the readiness probe, the
#     preStop drain within their grace period and the token from the
#     Secret the gateways read theirs from, the image's user and name;
#   - the Compose file: NocoBase's environment, the services it names, the
#     alias the gateway follows, its nginx.conf is README's "Docker" block
#     and passes nginx -t.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use NbTest;
use File::Temp ();
use File::Path qw(make_path);
use File::Basename qw(basename);

BEGIN {
    eval { require YAML::XS; 1 }
        or plan skip_all => 'YAML::XS missing: `make deps` installs libyaml-libyaml-perl';
}

my $ROOT = NbTest::repo_root();
my $K = "$ROOT/deploy/kubernetes";
my $C = "$ROOT/deploy/compose";

sub slurp { my ($f) = @_; open my $fh, '<', $f or die "$f: $!"; local $/; scalar <$fh> }

# ---- README's blocks --------------------------------------------------------
sub readme_block {
    my ($file) = @_;
    my $r = slurp("$ROOT/README.md");
    return $r =~ /^<!-- nginx -t: t\/187 \Q$file\E -->\n```nginx\n(.*?)^```$/ms ? $1 : undef;
}

# ---- Kubernetes: the documents ---------------------------------------------
my @docs;
for my $f (sort glob "$K/*.yaml") {
    my @d = eval { YAML::XS::Load(slurp($f)) };
    ok(!$@, basename($f) . ': YAML') or diag $@;
    push @docs, map { { %$_, _file => basename($f) } } grep { defined } @d;
}
cmp_ok(scalar @docs, '>=', 10, 'the manifests: ' . scalar(@docs) . ' documents');

# the fields Kubernetes has, where these manifests use them (a subset of the
# API's schema: enough that a misspelt or misplaced field is caught)
my %KIND = (
    'v1 Namespace'             => [qw(metadata)],
    'v1 Secret'                => [qw(metadata type data stringData)],
    'v1 ConfigMap'             => [qw(metadata data)],
    'v1 Service'               => [qw(metadata spec)],
    'v1 PersistentVolumeClaim' => [qw(metadata spec)],
    'apps/v1 Deployment'       => [qw(metadata spec)],
    'apps/v1 StatefulSet'      => [qw(metadata spec)],
);
my %FIELDS = (
    metadata   => [qw(name namespace labels annotations)],
    svc_spec   => [qw(selector ports clusterIP type)],
    svc_port   => [qw(name port targetPort protocol)],
    pvc_spec   => [qw(accessModes resources storageClassName)],
    deploy     => [qw(replicas selector template strategy)],
    sts        => [qw(replicas selector template serviceName volumeClaimTemplates)],
    strategy   => [qw(type rollingUpdate)],
    pod_spec   => [qw(containers initContainers volumes securityContext
                      terminationGracePeriodSeconds serviceAccountName)],
    pod_sec    => [qw(runAsNonRoot runAsUser runAsGroup fsGroup)],
    container  => [qw(name image command args env envFrom ports readinessProbe
                      livenessProbe startupProbe lifecycle volumeMounts
                      securityContext resources workingDir imagePullPolicy)],
    probe      => [qw(httpGet exec tcpSocket periodSeconds timeoutSeconds
                      failureThreshold successThreshold initialDelaySeconds)],
    env        => [qw(name value valueFrom)],
    env_from   => [qw(configMapRef secretRef)],
    port       => [qw(name containerPort protocol)],
    mount      => [qw(name mountPath subPath readOnly)],
    volume     => [qw(name configMap secret emptyDir persistentVolumeClaim)],
    handler    => [qw(exec httpGet)],
);

sub fields_ok {
    my ($where, $h, $kind) = @_;
    return fail("$where: a mapping") unless ref $h eq 'HASH';
    my %ok = map { $_ => 1 } @{ $FIELDS{$kind} };
    my @bad = grep { !$ok{$_} } sort keys %$h;
    return ok(!@bad, "$where: fields") || diag("unknown in $kind: @bad");
}

my (%by, %labels_of);
for my $d (@docs) {
    my $k = "$d->{apiVersion} $d->{kind}";
    my $name = $d->{metadata}{name} // '';
    my $w = "$d->{_file}: $d->{kind} $name";
    ok($KIND{$k}, "$w: known kind ($k)") or next;
    my %top = map { $_ => 1 } qw(apiVersion kind _file), @{ $KIND{$k} };
    my @bad = grep { !$top{$_} } keys %$d;
    ok(!@bad, "$w: top-level fields") or diag "unknown: @bad";
    fields_ok("$w metadata", $d->{metadata}, 'metadata');
    like($name, qr/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "$w: name is a DNS label");
    is($d->{metadata}{namespace}, 'app', "$w: namespace app") unless $d->{kind} eq 'Namespace';
    $by{$d->{kind}}{$name} = $d;
}

sub pod_check {
    my ($w, $spec, @claims) = @_;
    fields_ok("$w pod", $spec, 'pod_spec');
    fields_ok("$w pod securityContext", $spec->{securityContext}, 'pod_sec') if $spec->{securityContext};
    my %vols = map { $_ => {} } @claims;   # a StatefulSet's volumeClaimTemplates
    for my $v (@{ $spec->{volumes} || [] }) {
        fields_ok("$w volume $v->{name}", $v, 'volume');
        $vols{$v->{name}} = $v;
        if (my $cm = $v->{configMap}) {
            ok($by{ConfigMap}{$cm->{name}}, "$w volume $v->{name}: ConfigMap $cm->{name} exists");
        }
        if (my $s = $v->{secret}) {
            my $sec = $by{Secret}{$s->{secretName}};
            ok($sec, "$w volume $v->{name}: Secret $s->{secretName} exists");
            for my $it (@{ $s->{items} || [] }) {
                ok(exists $sec->{stringData}{$it->{key}} || exists $sec->{data}{$it->{key}},
                   "$w volume $v->{name}: Secret key $it->{key}");
            }
        }
        if (my $p = $v->{persistentVolumeClaim}) {
            ok($by{PersistentVolumeClaim}{$p->{claimName}}, "$w volume $v->{name}: PVC $p->{claimName} exists");
        }
    }
    for my $c (@{ $spec->{containers} || [] }, @{ $spec->{initContainers} || [] }) {
        my $cw = "$w container $c->{name}";
        fields_ok($cw, $c, 'container');
        ok(defined $c->{image} && length $c->{image}, "$cw: image");
        for my $p (@{ $c->{ports} || [] }) {
            fields_ok("$cw port", $p, 'port');
            like($p->{containerPort}, qr/^\d+$/, "$cw: containerPort is a number");
        }
        for my $pr (grep { $c->{$_} } qw(readinessProbe livenessProbe startupProbe)) {
            fields_ok("$cw $pr", $c->{$pr}, 'probe');
            is(scalar(grep { $c->{$pr}{$_} } qw(httpGet exec tcpSocket)), 1, "$cw $pr: one handler");
        }
        for my $e (@{ $c->{env} || [] }) {
            fields_ok("$cw env", $e, 'env');
            ok((exists $e->{value} xor exists $e->{valueFrom}), "$cw env $e->{name}: value or valueFrom");
            if (my $r = ($e->{valueFrom} || {})->{secretKeyRef}) {
                ok(exists(($by{Secret}{$r->{name}} || {})->{stringData}{$r->{key}}),
                   "$cw env $e->{name}: Secret $r->{name} has $r->{key}");
            }
        }
        for my $e (@{ $c->{envFrom} || [] }) {
            fields_ok("$cw envFrom", $e, 'env_from');
            ok($by{ConfigMap}{$e->{configMapRef}{name}}, "$cw envFrom: ConfigMap exists") if $e->{configMapRef};
        }
        for my $m (@{ $c->{volumeMounts} || [] }) {
            fields_ok("$cw mount", $m, 'mount');
            ok($vols{$m->{name}}, "$cw mount $m->{mountPath}: volume $m->{name} exists");
        }
        fields_ok("$cw preStop", $c->{lifecycle}{preStop}, 'handler') if $c->{lifecycle};
    }
    return \%vols;
}

for my $kind (qw(Deployment StatefulSet)) {
    for my $name (sort keys %{ $by{$kind} || {} }) {
        my $d = $by{$kind}{$name};
        my $w = "$kind $name";
        fields_ok("$w spec", $d->{spec}, $kind eq 'Deployment' ? 'deploy' : 'sts');
        fields_ok("$w strategy", $d->{spec}{strategy}, 'strategy') if $d->{spec}{strategy};
        my $sel = $d->{spec}{selector}{matchLabels} || {};
        my $lab = $d->{spec}{template}{metadata}{labels} || {};
        ok(%$sel && !grep({ ($lab->{$_} // '') ne $sel->{$_} } keys %$sel),
           "$w: selector matches the pod labels");
        $labels_of{"$kind $name"} = $lab;
        pod_check($w, $d->{spec}{template}{spec}, map { $_->{metadata}{name} } @{ $d->{spec}{volumeClaimTemplates} || [] });
        ok($by{Service}{$d->{spec}{serviceName}}, "$w: serviceName exists") if $kind eq 'StatefulSet';
    }
}
for my $name (sort keys %{ $by{Service} }) {
    my $s = $by{Service}{$name}{spec};
    fields_ok("Service $name spec", $s, 'svc_spec');
    fields_ok("Service $name port", $_, 'svc_port') for @{ $s->{ports} || [] };
    my $sel = $s->{selector} || {};
    my @hit = grep { my $l = $labels_of{$_}; !grep { ($l->{$_} // '') ne $sel->{$_} } keys %$sel } keys %labels_of;
    ok(%$sel && @hit, "Service $name: its selector picks a workload (@hit)");
}
fields_ok("PVC $_ spec", $by{PersistentVolumeClaim}{$_}{spec}, 'pvc_spec') for keys %{ $by{PersistentVolumeClaim} || {} };

# ---- Kubernetes: what nb_maint needs ----------------------------------------
my $gw = $by{Deployment}{'nb-maint-gateway'};
my $nb = $by{Deployment}{nocobase};
ok($gw && $nb, 'the gateway and NocoBase Deployments') or BAIL_OUT('nothing to check');
is($gw->{spec}{replicas}, 2, 'gateway: 2 replicas');
my $gconf = $by{ConfigMap}{'nb-maint-gateway'}{data}{'nginx.conf'};
my $readme_k8s = readme_block('deploy/kubernetes/gateway.yaml');
ok(defined $readme_k8s, "README: the Kubernetes section's gateway configuration");
is($gconf, $readme_k8s, "gateway.yaml's nginx.conf is README's");

my $gc = $gw->{spec}{template}{spec}{containers}[0];
my %gmount = map { $_->{mountPath} => $_ } @{ $gc->{volumeMounts} };
my %gvol = map { $_->{name} => $_ } @{ $gw->{spec}{template}{spec}{volumes} };
is(($gvol{ $gmount{'/etc/nb-maint/nginx.conf'}{name} }{configMap} || {})->{name}, 'nb-maint-gateway',
   'gateway: /etc/nb-maint/nginx.conf from the ConfigMap');
is($gmount{'/etc/nb-maint/nginx.conf'}{subPath}, 'nginx.conf', 'gateway: its key nginx.conf');
my $tokvol = $gvol{ $gmount{'/etc/nb-maint/tokens'}{name} }{secret};
is($tokvol->{secretName}, 'nb-maint-admin', 'gateway: /etc/nb-maint/tokens from the Secret');
like($by{Secret}{'nb-maint-admin'}{stringData}{tokens}, qr/^[^:\s]+:\S+$/, 'the Secret: tokens is a name:token line');
ok($gmount{'/var/lib/nb-maint'}, 'gateway: a volume for /var/lib/nb-maint (the cache file)');
like($gconf, qr{\Q/etc/nb-maint/tokens\E}, 'gateway nginx.conf: reads the mounted tokens');

# the image: name, version, user (mk/image.mk, debian/changelog)
my ($version) = slurp("$ROOT/debian/changelog") =~ /^\S+ \(([^)]+)\)/;
my ($uid) = slurp("$ROOT/mk/image.mk") =~ /^IMAGE_UID\s*:=\s*(\d+)/m;
is($gc->{image}, "nb-maint-gateway:$version", 'gateway: the image make image builds');
is($gw->{spec}{template}{spec}{securityContext}{runAsUser}, $uid, "gateway: runs as the image's user $uid");
is($gc->{ports}[0]{containerPort}, 8080, 'gateway: port 8080');
like($gconf, qr/^\s*listen 8080;/m, 'gateway nginx.conf: listens on 8080');
is($by{Service}{'nb-maint-gateway'}{spec}{ports}[0]{targetPort}, 8080, 'gateway Service: to 8080');

# it follows the headless Service, expecting the NocoBase replicas
my ($rname, $rport, $expect) = $gconf =~ /nb_maint_resolve\s+([\w.-]+):(\d+)\s.*?expect=(\d+)/s;
my $hl = $by{Service}{'nocobase-headless'};
is($hl->{spec}{clusterIP}, 'None', 'nocobase-headless: headless');
is($rname, "nocobase-headless.app.svc.cluster.local", 'nb_maint_resolve: the headless Service');
is($rport, $hl->{spec}{ports}[0]{port}, 'nb_maint_resolve: its port');
is($expect, $nb->{spec}{replicas}, 'nb_maint_resolve expect=: the NocoBase replicas');
my ($rhost, $rp) = $gconf =~ m{nb_maint_store redis://([\w.-]+):(\d+)/};
is($rhost, 'redis.app.svc.cluster.local', 'the store: the Redis Service');
is($rp, $by{Service}{redis}{spec}{ports}[0]{port}, 'the store: its port');
like($gconf, qr/^\s*resolver \S+/m, 'gateway nginx.conf: a resolver');

# NocoBase: probe, preStop drain within the grace, token, POD_IP, URL
my $ps = $nb->{spec}{template}{spec};
my ($app) = grep { $_->{name} eq 'nocobase' } @{ $ps->{containers} };
is($app->{readinessProbe}{httpGet}{path}, '/api/__health_check', 'nocobase: readiness on /api/__health_check');
is($app->{readinessProbe}{httpGet}{port}, 13000, 'nocobase: on 13000');
my @pre = @{ $app->{lifecycle}{preStop}{exec}{command} || [] };
like("@pre", qr{nb-maint drain --self --wait\b}, 'nocobase: preStop nb-maint drain --self --wait');
my %pre = @pre[1 .. $#pre] ? (map { $pre[$_] => $pre[$_ + 1] } grep { $pre[$_] =~ /^--(timeout|token-file)$/ } 0 .. $#pre) : ();
cmp_ok($pre{'--timeout'} // 1e9, '<', $ps->{terminationGracePeriodSeconds}, 'nocobase: the drain timeout is within the grace period');
my %amount = map { $_->{mountPath} => $_ } @{ $app->{volumeMounts} };
my %avol = map { $_->{name} => $_ } @{ $ps->{volumes} };
my ($tdir, $tfile) = ($pre{'--token-file'} // '') =~ m{^(.*)/([^/]+)$};
my $tsec = ($avol{ ($amount{$tdir} || {})->{name} // '' } || {})->{secret} || {};
is($tsec->{secretName}, 'nb-maint-admin', 'nocobase: the token file from the gateways\' Secret');
is_deeply($tsec->{items}, [{ key => 'token', path => $tfile }], 'nocobase: its key token at ' . ($pre{'--token-file'} // '?'));
my $sec = $by{Secret}{'nb-maint-admin'}{stringData};
is("admin:$sec->{token}", $sec->{tokens}, 'the Secret: token is the token of tokens');
my ($podip) = grep { $_->{name} eq 'POD_IP' } @{ $app->{env} };
is($podip->{valueFrom}{fieldRef}{fieldPath}, 'status.podIP', 'nocobase: POD_IP for drain --self');
my $url = $by{ConfigMap}{'nocobase-env'}{data}{NB_MAINT_URL};
is($url, 'http://nb-maint-gateway.app.svc.cluster.local/_nb_maint/', 'NB_MAINT_URL: the gateway Service');
is($by{Service}{'nb-maint-gateway'}{spec}{ports}[0]{port}, 80, 'the gateway Service: port 80 as in NB_MAINT_URL');
like(slurp("$ROOT/static/nginx/nb_maint_server.conf"), qr{location /_nb_maint/ \{\s*nb_maint_admin;},
     'the admin location NB_MAINT_URL names is the snippet\'s');
my ($cli) = grep { $_->{name} eq 'nb-maint-cli' } @{ $ps->{initContainers} || [] };
is($cli->{image}, "nb-maint-gateway:$version", 'nocobase: the CLI from the gateway image');
is($cli->{command}[0], 'nb-maint-install-cli', 'nocobase: nb-maint-install-cli');
ok(-x "$ROOT/deploy/image/nb-maint-install-cli", 'the image has nb-maint-install-cli');
is($pre[0], "$cli->{command}[1]/bin/nb-maint", 'nocobase: preStop runs the copied CLI');
my %env = %{ $by{ConfigMap}{'nocobase-env'}{data} };
$env{$_->{name}} = $_ for @{ $app->{env} };
ok(exists $env{$_}, "nocobase env: $_") for qw(APP_KEY DB_DIALECT DB_HOST DB_PORT DB_DATABASE DB_USER DB_PASSWORD
                                                 CACHE_DEFAULT_STORE CACHE_REDIS_URL);
is($env{DB_HOST}, 'postgres.app.svc.cluster.local', 'nocobase: DB_HOST is the postgres Service');

# ---- Compose ----------------------------------------------------------------
my $cy = eval { YAML::XS::Load(slurp("$C/compose.yaml")) };
ok($cy && !$@, 'compose.yaml: YAML') or diag $@;
# YAML merge keys ("<<: *nocobase") as Compose applies them
sub merged {
    my ($h) = @_;
    my %m = %{ $h->{'<<'} || {} };
    $m{$_} = $h->{$_} for grep { $_ ne '<<' } keys %$h;
    return \%m;
}
my %svc = map { $_ => merged($cy->{services}{$_}) } keys %{ $cy->{services} || {} };
is_deeply([sort keys %svc], [qw(gateway nocobase-1 nocobase-2 postgres redis)],
          'compose: the gateway, Redis, two NocoBase services, PostgreSQL');
my %SVC_FIELDS = map { $_ => 1 } qw(image restart environment volumes depends_on networks ports
                                    healthcheck command);
for my $s (sort keys %svc) {
    my @bad = grep { !$SVC_FIELDS{$_} } keys %{ $svc{$s} };
    ok(!@bad, "compose $s: fields") or diag "unknown: @bad";
    for my $dep (@{ $svc{$s}{depends_on} || [] }) {
        ok($svc{$dep}, "compose $s: depends on $dep, a service");
    }
    for my $v (@{ $svc{$s}{volumes} || [] }) {
        my ($src) = split /:/, $v;
        ok($src =~ m{^\./} ? -f "$C/$src" || $src eq './tokens' : exists $cy->{volumes}{$src},
           "compose $s: volume $src exists");
    }
}
my $cconf = slurp("$C/nginx.conf");
is($cconf, readme_block('deploy/compose/nginx.conf'), "compose's nginx.conf is README's Docker block");
my ($calias, $cexpect) = $cconf =~ /nb_maint_resolve\s+([\w.-]+):13000\s.*?expect=(\d+)/;
for my $n (qw(nocobase-1 nocobase-2)) {
    my $s = $svc{$n};
    ok(grep({ $_ eq $calias } @{ $s->{networks}{default}{aliases} || [] }),
       "compose $n: network alias $calias, the name the gateway follows");
    ok(exists $s->{environment}{$_}, "compose $n: $_") for qw(APP_KEY DB_DIALECT DB_HOST DB_PORT DB_DATABASE
                                                              DB_USER DB_PASSWORD CACHE_DEFAULT_STORE CACHE_REDIS_URL);
    is($s->{environment}{DB_DIALECT}, 'postgres', "compose $n: DB_DIALECT postgres");
    ok($svc{ $s->{environment}{DB_HOST} }, "compose $n: DB_HOST is a service");
    like($s->{environment}{CACHE_REDIS_URL}, qr{^redis://redis:6379/}, "compose $n: Redis is the service");
}
is($cexpect, 2, 'compose nginx.conf: expect=2, the app services');
is($svc{gateway}{image}, "nb-maint-gateway:$version", 'compose gateway: the image make image builds');
ok(grep({ m{^\./nginx\.conf:/etc/nb-maint/nginx\.conf} } @{ $svc{gateway}{volumes} }), 'compose gateway: its nginx.conf mounted');
like($cconf, qr{nb_maint_store redis://redis:6379/}, 'compose nginx.conf: the store on the redis service');
is($svc{gateway}{healthcheck}{test}[1], 'nb-maint-healthcheck', 'compose gateway: the image\'s health check');
is(slurp("$ROOT/deploy/compose/nginx.conf"), $cconf, 'the image\'s default nginx.conf is this one (mk/image.mk installs it)')
    if slurp("$ROOT/mk/image.mk") =~ m{install -m 0644 deploy/compose/nginx\.conf \$\(IMAGE_STAGE\)/etc/nb-maint/nginx\.conf};

# ---- nginx -t on both, in a temporary tree ----------------------------------
plan skip_all => 'nginx -t of the configurations needs root (as t/186)' unless $> == 0;
my $T = File::Temp::tempdir('nb_maint_deploy_XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{NB_KEEP});
chmod 0755, $T;
make_path("$T/etc/nginx/nb_maint", "$T/etc/nb-maint", "$T/var/lib/nb-maint", "$T/modules", "$T/logs");
sub localize {
    my ($t) = @_;
    $t =~ s{/etc/nginx/nb_maint/}{$T/etc/nginx/nb_maint/}g;
    $t =~ s{/etc/nb-maint/}{$T/etc/nb-maint/}g;
    $t =~ s{/var/lib/nb-maint/}{$T/var/lib/nb-maint/}g;
    $t =~ s{redis://[\w.-]+:}{redis://127.0.0.1:}g;       # resolved when loaded: no cluster here
    $t =~ s{^pid /tmp/nginx\.pid;}{pid $T/logs/nginx.pid;}m;
    return $t;
}
for my $f (glob "$ROOT/static/nginx/*.conf") {
    open my $fh, '>', "$T/etc/nginx/nb_maint/" . basename($f) or die $!;
    print $fh localize(slurp($f));
    close $fh;
}
{ open my $fh, '>', "$T/etc/nb-maint/tokens" or die $!; print $fh 'admin:' . ('x' x 43) . "\n"; close $fh }
symlink NbTest::module_path(), "$T/modules/ngx_http_nb_maint_module.so";
for my $c (['kubernetes', $gconf], ['compose', $cconf]) {
    my ($name, $text) = @$c;
    my $conf = "$T/$name.conf";
    open my $fh, '>', $conf or die $!;
    print $fh localize($text);
    close $fh;
    my ($rc, $out) = NbTest::run_cmd("$T/logs/$name.out", NbTest::nginx_bin(),
        '-p', "$T/", '-e', "$T/logs/error.log", '-c', $conf, '-t');
    is($rc, 0, "$name: the gateway's nginx.conf passes nginx -t") or diag $out;
}

done_testing();
