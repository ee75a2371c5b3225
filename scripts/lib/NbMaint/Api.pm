# NbMaint/Api.pm: the admin API client (HTTP::Tiny): requests, answers, errors.
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
our ($JSON, $PROG, %G);    # $JSON: Base.pm, $PROG: Base.pm, %G: Cli.pm

# ------------------------------------------------------------------ HTTP

our $HTTP;

sub base_url {
    my $u = $G{url};
    usage_error(undef, 'no gateway URL: set NB_MAINT_URL (e.g. http://127.0.0.1:8080/_nb_maint/), use --url, '
        . "or add a context with `$PROG config set NAME --url URL`")
        if !defined $u || $u eq '';
    usage_error(undef, "bad URL '$u': expected http://host[:port]/path/") unless $u =~ m{^https?://[^/\s]+}i;
    $u .= '/' unless $u =~ m{/$};
    $u = "$u/" if $u =~ m{^https?://[^/]+$}i;
    return $u;
}

sub path_escape {
    my ($s) = @_;
    $s = encode('UTF-8', $s);
    $s =~ s/([^A-Za-z0-9\-._~:\[\]@!\$'()*+,;=])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# What an answer of the admin API has (SPEC §5): a wrong URL that answers
# other JSON must not pass for a success. Each returns what is missing.
my %ANSWER = (
    status => sub {
        my ($d, $res) = @_;
        return 'not a JSON object' unless ref $d eq 'HASH';
        my @miss = grep { !exists $d->{$_} } qw(mode version store upstreams);
        return 'no ' . join(', ', map { "\"$_\"" } @miss) . ' field' . (@miss > 1 ? 's' : '') if @miss;
        return '"upstreams" is not a list' unless ref $d->{upstreams} eq 'ARRAY';
        return 'no ETag header' unless defined $res->{headers}{etag};
        return undef;
    },
    node => sub {
        my ($d) = @_;
        return 'not a JSON object' unless ref $d eq 'HASH';
        my $n = ref $d->{node} eq 'HASH' ? $d->{node} : $d;
        my @miss = grep { !exists $n->{$_} } qw(id health drain active);
        return @miss ? 'no ' . join(', ', map { "\"$_\"" } @miss) . ' field' . (@miss > 1 ? 's' : '') : undef;
    },
    events => sub {
        my ($d) = @_;
        return ref $d eq 'HASH' && ref $d->{events} eq 'ARRAY' ? undef : 'no "events" list';
    },
    bypass => sub {
        my ($d) = @_;
        return ref $d eq 'HASH' ? undef : 'not a JSON object';
    },
);

sub not_admin_api {
    my ($url, $what) = @_;
    return nb_err(EX_UNAVAILABLE, 'not_admin_api',
        "$url did not answer like the nb_maint admin API ($what): is the URL the admin location "
        . "(e.g. http://127.0.0.1:8080/_nb_maint/)? check --url / NB_MAINT_URL / the context",
        url => $url);
}

# api(METHOD, PATH, BODY?, expect => KIND) -> (decoded JSON or undef, response).
# Dies with an NbErr (exit code by the answer) on network and API errors.
sub api {
    my ($method, $path, $body, %a) = @_;
    my $base = base_url();
    $HTTP ||= HTTP::Tiny->new(
        timeout    => $G{'http-timeout'},
        agent      => "nb-maint/1.1 ",
        keep_alive => 1,
    );
    my %h = (Accept => 'application/json');
    my $tok = api_token();
    $h{Authorization} = "Bearer $tok" if defined $tok && $tok ne '';
    my %req = (headers => \%h);
    if ($method eq 'POST') {
        $h{'Content-Type'} = 'application/json';
        $req{content} = $JSON->encode($body // {});
        if (defined $G{'if-match'}) {
            (my $v = $G{'if-match'}) =~ s/"//g;
            $h{'If-Match'} = qq("$v");
        }
    }
    my $url = $base . $path;
    my $res = $HTTP->request($method, $url, \%req);
    if ($res->{status} == 599) {
        my $m = $res->{content} // 'unknown error';
        $m =~ s/\s+\z//;
        $m =~ s/\n.*//s;
        die nb_err(EX_UNAVAILABLE, 'unreachable', "cannot reach the gateway at $base: $m", url => $base);
    }
    my $data;
    my $ct = $res->{headers}{'content-type'} // '';
    if (length($res->{content} // '')) {
        $data = eval { $JSON->decode($res->{content}) };
    }
    if (!$res->{success}) {
        my $st = $res->{status};
        if (ref $data eq 'HASH' && ref $data->{error} eq 'HASH' && defined $data->{error}{code}) {
            my $e = $data->{error};
            my $msg = sprintf '%s: %s (HTTP %d)', $e->{code},
                $e->{message} // $res->{reason}, $st;
            $msg .= ' - set NB_MAINT_TOKEN or use --token / --token-file'
                if $st == 401 && (!defined $tok || $tok eq '');
            $msg .= ' - start the node first, or add --force to designate it anyway'
                if $e->{code} eq 'node_unhealthy';
            my $exit = $st == 409 ? EX_CONFLICT : $st >= 500 ? EX_UNAVAILABLE : EX_REFUSED;
            die nb_err($exit, $e->{code}, $msg, http_status => $st);
        }
        my $snip = $res->{content} // '';
        $snip =~ s/\s+/ /g;
        $snip = substr($snip, 0, 120) . '...' if length $snip > 120;
        if ($st == 502 || $st == 503 || $st == 504) {
            die nb_err(EX_UNAVAILABLE, 'gateway_unavailable',
                sprintf("HTTP %d %s from %s%s", $st, $res->{reason} // '', $url, length $snip ? ": $snip" : ''),
                http_status => $st, url => $url);
        }
        die not_admin_api($url, sprintf 'HTTP %d %s without the {"error":...} envelope%s', $st,
            $res->{reason} // '', length $snip ? ": $snip" : '');
    }
    if (!defined $data && !$a{raw_ok}) {
        die not_admin_api($url, "HTTP $res->{status}, " . ($ct || 'no Content-Type') . ', not JSON');
    }
    if ($a{expect}) {
        my $miss = $ANSWER{ $a{expect} }->($data, $res);
        die not_admin_api($url, $miss) if defined $miss;
    }
    return wantarray ? ($data, $res) : $data;
}

sub get_status { scalar api('GET', 'status', undef, expect => 'status') }

sub get_node {
    my ($id) = @_;
    my $n = api('GET', 'nodes/' . path_escape($id), undef, expect => 'node');
    $n = $n->{node} if ref $n eq 'HASH' && ref $n->{node} eq 'HASH' && !exists $n->{health};
    return $n;
}

# Run a code block, turning a die into "nb-maint: msg" + its exit code.
sub guard {
    my ($code) = @_;
    my @r = eval { $code->() };
    fail($@) if $@;
    return wantarray ? @r : $r[0];
}

1;
