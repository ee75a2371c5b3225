# NbMaint/HAProxy.pm: HAProxy: the 503 errorfile pair, the runtime API (stats socket)
# waits, and the guided runs' errorfile regeneration.
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
our ($JSON, $PROG);    # $JSON: Base.pm, $PROG: Base.pm

# ------------------------------------------------------------------ haproxy errorfile

my $BUILTIN_PAGE = <<'EOT';
<!DOCTYPE html>
<html lang="{{lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f5f5f5;color:#222;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.1);padding:2em 2.5em;max-width:36em}
h1{font-size:1.5em;margin-top:0}.meta{color:#666;font-size:.9em}
</style>
</head>
<body>
<main>
<h1>{{heading}}</h1>
<p>{{message}}</p>
<p><strong>{{reason}}</strong></p>
<p class="meta">Since {{since}} &middot; please retry in {{retry_after}} seconds &middot; {{mode}}</p>
</main>
</body>
</html>
EOT

sub html_escape {
    my ($s) = @_;
    $s = '' unless defined $s;
    $s =~ s/&/&amp;/g;
    $s =~ s/</&lt;/g;
    $s =~ s/>/&gt;/g;
    $s =~ s/"/&quot;/g;
    $s =~ s/'/&#39;/g;
    return $s;
}

sub find_page {
    my ($o) = @_;
    return $o->{page} if defined $o->{page};
    return $ENV{NB_MAINT_PAGE} if defined $ENV{NB_MAINT_PAGE} && $ENV{NB_MAINT_PAGE} ne '';
    my $self = abs_path($0);
    if (defined $self) {
        my $cand = dirname(dirname($self)) . '/static/page.html';
        return $cand if -f $cand;
    }
    for my $cand ('/usr/local/share/nb_maint/page.html', '/usr/share/nb_maint/page.html') {
        return $cand if -f $cand;
    }
    return undef;
}

# the texts of the module's built-in page (English) per kind of 503
my %ERR_TEXT = (
    maintenance => ['Maintenance in progress',
                    'The application is undergoing maintenance. It will be back shortly.'],
    upgrade     => ['Upgrade in progress',
                    'The application is being upgraded to a new version. It will be back shortly.'],
    restoring   => ['Almost back',
                    'The application is starting again after maintenance. It will be back in a moment.'],
    unavailable => ['Service temporarily unavailable',
                    'No application server is available right now. Please try again shortly.'],
);

# The pair of raw HTTP 503 responses for HAProxy: (page for browsers, JSON
# envelope for API clients, retry_after, mode). $o: mode, reason, since,
# retry-after, page; $s: GET status or undef.
sub errorfile_build {
    my ($o, $s) = @_;
    my $mode = $o->{mode};
    $mode = $s->{mode} if !defined $mode && $s && defined $s->{mode} && $s->{mode} ne 'normal';
    $mode = 'unavailable' unless defined $mode && $mode ne '' && $ERR_TEXT{$mode};
    # no usable server outside a mode (a cluster starting, every node down):
    # as the module's page, say so and ask again within seconds (issue 18)
    my $none = $mode eq 'unavailable';
    my $retry = $o->{'retry-after'} // ($none ? 5 : $s ? $s->{retry_after} : undef) // 300;
    usage_error('haproxy-errorfile', '--retry-after must be >= 0') if $retry !~ /^\d+$/;
    my $reason = $o->{reason} // ($s && !$none ? $s->{reason} : undef);
    my $has_reason = defined $reason && $reason ne '';
    $reason = $none ? 'No application node is available' : 'Scheduled maintenance' unless $has_reason;
    my $since = $o->{since} // ($s && $s->{mode} && $s->{mode} ne 'normal' ? $s->{since} : undef)
        // strftime('%Y-%m-%dT%H:%M:%SZ', gmtime);
    my $t = $ERR_TEXT{$mode};
    my %v = (
        lang         => 'en',
        title        => $t->[0],
        heading      => $t->[0],
        message      => $t->[1],
        reason       => $reason,
        since        => $since,
        retry_after  => $retry,
        mode         => $mode,
        reason_label => 'Reason',
        since_label  => 'Since',
        retry_label  => 'Try again in',
        seconds      => 'seconds',
        refresh      => ($retry > 5 ? $retry : 5),
    );
    my $tpl;
    my $page = find_page($o);
    if (defined $page) {
        open my $fh, '<:raw', $page or fail("cannot read page template $page: $!");
        local $/;
        my $raw = <$fh>;
        close $fh;
        $tpl = eval { decode('UTF-8', $raw, Encode::FB_CROAK) } // decode('UTF-8', $raw);
    } else {
        $tpl = $BUILTIN_PAGE;
    }
    $tpl =~ s/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/exists $v{$1} ? html_escape($v{$1}) : ''/ge;
    my $html = errorfile_response('text/html; charset=utf-8', encode('UTF-8', $tpl), $retry, $mode);
    # SPEC 7: NocoBase's gateway envelope, as the module answers /api/
    my $restoring_from = $s && ($s->{mode} // '') eq 'restoring' ? $s->{restoring_from} : undef;
    my %err = (status => 503, maintaining => JSON::PP::true, retry_after => $retry + 0);
    if ($mode eq 'unavailable') {
        @err{qw(code message nb_maint)} = ('APP_STOPPED', $t->[1], 'no_healthy_node');
    } else {
        $err{code} = 'APP_COMMANDING';
        $err{command} = { name => $mode eq 'restoring' ? 'upgrade' : $mode };
        $err{message} = $has_reason ? $reason : $t->[1];
        $err{nb_maint} = $mode;
    }
    my $json = errorfile_response('application/json', $JSON->encode({ error => \%err }), $retry, $mode);
    return ($html, $json, $retry, $mode, $restoring_from);
}

sub errorfile_response {
    my ($type, $body, $retry, $mode) = @_;
    return "HTTP/1.0 503 Service Unavailable\r\n"
         . "Cache-Control: no-store\r\n"
         . "Retry-After: $retry\r\n"
         . "Content-Type: $type\r\n"
         . "Content-Length: " . length($body) . "\r\n"
         . ($mode =~ /^(?:maintenance|upgrade|restoring)$/ ? "X-NB-Maint: $mode\r\n" : '')
         . "Connection: close\r\n"
         . "\r\n"
         . $body;
}

# the JSON file next to the page: nb_maint_503.http -> nb_maint_503_api.http
sub errorfile_api_path {
    my ($out) = @_;
    return $out =~ /\.http\z/ ? ($out =~ s/\.http\z/_api.http/r) : "$out.api";
}

# write a file atomically (temp file + rename); dies with a message
sub errorfile_write {
    my ($path, $bytes) = @_;
    my $f = encode('UTF-8', $path);
    my $tmp = "$f.tmp.$$";
    open my $fh, '>:raw', $tmp or die "cannot write $path: $!\n";
    print $fh $bytes;
    close $fh or do { unlink $tmp; die "cannot write $path: $!\n" };
    rename $tmp, $f or do { unlink $tmp; die "cannot write $path: $!\n" };
    print STDERR "$PROG: warning: $path is " . length($bytes)
        . " bytes; HAProxy only accepts error files smaller than tune.bufsize (16384 by default)\n"
        if length $bytes > 16000;
    return 1;
}

# the lines for the HAProxy backend that serve the pair
sub errorfile_snippet {
    my ($out, $api, $be) = @_;
    return "    # nb_maint (nb-maint haproxy-errorfile): no usable server -> API clients get\n"
         . "    # NocoBase's JSON envelope, browsers the page\n"
         . "    http-request return status 503 errorfile $api if !{ nbsrv($be) gt 0 } { path_beg /api/ }\n"
         . "    http-request return status 503 errorfile $api if !{ nbsrv($be) gt 0 } { req.fhdr(accept) -m beg application/json }\n"
         . "    errorfile 503 $out\n";
}

sub cmd_errorfile {
    my ($o) = @_;
    my $s;
    if (!defined $o->{'retry-after'}) {
        $s = guard(\&get_status);
    }
    my ($html, $json, $retry, $mode) = errorfile_build($o, $s);
    if (!defined $o->{out} || $o->{out} eq '-') {
        usage_error('haproxy-errorfile', '--api-out and --snippet need --out FILE')
            if defined $o->{'api-out'} || $o->{snippet};
        return print_json({ response => decode('UTF-8', $html), bytes => length($html), retry_after => $retry + 0,
                            mode => $mode }) if json_out();
        binmode STDOUT, ':raw';
        print $html;
        return;
    }
    my $api = $o->{'api-out'} // errorfile_api_path($o->{out});
    eval { errorfile_write($o->{out}, $html); errorfile_write($api, $json); 1 } or fail($@);
    return print_json({ file => $o->{out}, bytes => length($html), api_file => $api, api_bytes => length($json),
                        retry_after => $retry + 0, mode => $mode }) if json_out();
    print "wrote $o->{out} (" . length($html) . " bytes, the page, Retry-After: $retry)\n";
    print "wrote $api (" . length($json) . " bytes, the JSON envelope for /api/)\n";
    print "\nin the HAProxy backend:\n" . errorfile_snippet($o->{out}, $api, $o->{backend} // 'nocobase')
        if $o->{snippet};
}

# ------------------------------------------------------------------ haproxy runtime API
# HAProxy in front of the nodes learns of a drain at its next agent check
# and counts its own requests: drain --wait and the procedures wait for
# both, reading HAProxy's counts from its stats socket (show stat).

my $HAP_AGENT_DEFAULT = 2;      # agent-inter of static/haproxy/nb_maint.cfg
my @HAP_WAIT_OPTS = ('haproxy-socket=s@', 'agent-interval=f');
my @HAP_RUN_OPTS = ('haproxy-reload=s', 'haproxy-errorfile=s', 'haproxy-backend=s');
my %HAP;                        # the command's HAProxy options

# one command on a stats socket; its whole answer (HAProxy closes after it)
sub hap_cmd {
    my ($path, $cmd) = @_;
    require IO::Socket::UNIX;
    my $s = IO::Socket::UNIX->new(Peer => $path, Type => Socket::SOCK_STREAM())
        or die "cannot connect to the HAProxy stats socket $path: $!\n";
    local $SIG{PIPE} = 'IGNORE';
    defined syswrite($s, "$cmd\n") or die "cannot write to the HAProxy stats socket $path: $!\n";
    my ($out, $rin, $end) = ('', '', time + 5);
    vec($rin, fileno($s), 1) = 1;
    while (1) {
        my $left = $end - time;
        die "no complete answer to '$cmd' from the HAProxy stats socket $path within 5s\n" if $left <= 0;
        next unless select(my $r = $rin, undef, undef, $left) > 0;
        my $n = sysread($s, my $buf, 65536);
        die "reading the HAProxy stats socket $path: $!\n" unless defined $n;
        last if $n == 0;
        $out .= $buf;
    }
    close $s;
    return $out;
}

# the servers of every backend: [{pxname, svname, addr, status, scur, qcur}]
sub hap_servers {
    my ($path) = @_;
    my @lines = split /\n/, hap_cmd($path, 'show stat');
    my $head = shift(@lines) // '';
    die "unexpected answer to 'show stat' from $path: " . substr($head, 0, 80) . "\n"
        unless $head =~ s/^#\s*//;
    my @cols = split /,/, $head, -1;
    die "HAProxy at $path reports no server addresses (show stat without 'addr': HAProxy 1.9 or later needed)\n"
        unless grep { $_ eq 'addr' } @cols;
    my @rows;
    for my $l (@lines) {
        my %r;
        @r{@cols} = split /,/, $l, -1;
        next if !defined $r{svname} || $r{svname} =~ /^(?:FRONTEND|BACKEND)\z/;
        push @rows, \%r;
    }
    return \@rows;
}

# why HAProxy $path may still use node $id, or undef when it is idle there:
# every server with that address no longer takes new requests (drained,
# maintenance or down, as its agent check says) and has none running or queued
sub hap_busy {
    my ($path, $rows, $id) = @_;
    my @mine = grep { ($_->{addr} // '') eq $id } @$rows;
    return undef unless @mine;
    my @why;
    for my $r (@mine) {
        my $name = "$r->{pxname}/$r->{svname}";
        my $n = ($r->{scur} || 0) + ($r->{qcur} || 0);
        if (($r->{status} // '') !~ /DRAIN|MAINT|DOWN|NOLB/) {
            push @why, "$name is $r->{status} (its agent check has not seen the change yet)";
        } elsif ($n) {
            push @why, "$name: " . ($r->{scur} || 0) . " in flight, " . ($r->{qcur} || 0) . " queued";
        }
    }
    return @why ? "HAProxy $path: " . join('; ', @why) : undef;
}

# why HAProxy $path does not use node $id again yet (after an undrain)
sub hap_not_ready {
    my ($path, $rows, $id) = @_;
    my @why = map { "$_->{pxname}/$_->{svname} is $_->{status}" }
              grep { ($_->{addr} // '') eq $id && ($_->{status} // '') !~ /^UP\b(?!.*DRAIN)/ } @$rows;
    return @why ? "HAProxy $path: " . join('; ', @why) : undef;
}

# called once the command's options are read: checks the sockets answer
sub hap_setup {
    my ($o, $cmd) = @_;
    %HAP = map { ($_ => $o->{$_}) } grep { defined $o->{$_} } qw(haproxy-socket agent-interval haproxy-reload
                                                               haproxy-errorfile haproxy-backend);
    usage_error($cmd, '--agent-interval must be >= 0') if defined $HAP{'agent-interval'} && $HAP{'agent-interval'} < 0;
    usage_error($cmd, '--haproxy-reload needs --haproxy-errorfile FILE (the 503 page it serves)')
        if defined $HAP{'haproxy-reload'} && !defined $HAP{'haproxy-errorfile'};
    for my $p (@{ $HAP{'haproxy-socket'} || [] }) {
        eval { hap_servers($p); 1 } or fail(nb_err(EX_UNAVAILABLE, 'haproxy_unavailable', err_msg($@)));
    }
}

# After nginx's own wait: wait until no HAProxy uses the nodes @$ids (drained
# or taken out at $since; $ready: until every HAProxy uses them again, after
# an undrain). Without a socket, wait one agent interval after $since and say
# so. Returns undef when done, else why not (at $deadline).
sub hap_wait {
    my ($ids, $since, $deadline, $interval, $say, $ready) = @_;
    my @socks = @{ $HAP{'haproxy-socket'} || [] };
    if (!@socks) {
        my $ai = $HAP{'agent-interval'} // $HAP_AGENT_DEFAULT;
        return undef if $ai == 0;
        my $left = $since + $ai - time;
        return undef if $left <= 0;
        $say->(sprintf "no --haproxy-socket: waiting one HAProxy agent interval (%gs, --agent-interval) for an "
            . "HAProxy in front to see it%s (--agent-interval 0: no HAProxy)", $ai,
            $ready ? '' : "; HAProxy's own requests in flight are not visible without the socket");
        sleep $left;
        return undef;
    }
    my ($last, %unknown) = ('');
    while (1) {
        my @busy;
        for my $p (@socks) {
            my $rows = hap_servers($p);
            for my $id (@$ids) {
                if (!grep { ($_->{addr} // '') eq $id } @$rows) {
                    $say->("HAProxy $p has no server at $id: not waited for there") unless $unknown{"$p $id"}++;
                    next;
                }
                my $why = $ready ? hap_not_ready($p, $rows, $id) : hap_busy($p, $rows, $id);
                push @busy, $why if defined $why;
            }
        }
        return undef unless @busy;
        my $msg = join ' | ', @busy;
        $say->($msg) if $msg ne $last;
        $last = $msg;
        return $msg if time >= $deadline;
        sleep $interval;
    }
}

# Guided runs: rewrite HAProxy's 503 pair from the gateway's state and run
# --haproxy-reload, so HAProxy's page shows the real mode and reason.
sub hap_regen_steps {
    my ($why) = @_;
    return () unless defined $HAP{'haproxy-errorfile'};
    my $out = $HAP{'haproxy-errorfile'};
    my $reload = $HAP{'haproxy-reload'};
    return {
        desc => "rewrite HAProxy's 503 files ($why)" . (defined $reload ? " and reload HAProxy: $reload" : ''),
        manual => "$PROG haproxy-errorfile --out " . shq($out) . (defined $reload ? "; $reload" : ''),
        run => sub {
            my ($html, $json) = errorfile_build({}, get_status());
            errorfile_write($out, $html);
            errorfile_write(errorfile_api_path($out), $json);
            run_cmd($reload) if defined $reload;
            return;
        },
    };
}

1;
