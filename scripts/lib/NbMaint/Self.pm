# NbMaint/Self.pm: "drain --self" (issue 19): a Kubernetes pod's preStop
# drains its own node and waits for its requests and WebSockets, never
# longer than its bound (below the pod's terminationGracePeriodSeconds).
# Part of nb-maint (scripts/nb-maint): one package, NbMaint, over the files of
# scripts/lib/NbMaint, loaded in order by NbMaint.pm.
package NbMaint;
use strict;
use warnings;
use Time::HiRes qw(time sleep);

our %G;                              # Cli.pm
use constant SELF_TIMEOUT => 25;    # Kubernetes' default grace is 30 s

# this pod's addresses: --address, else $POD_IP (the downward API), else
# `hostname -i` (the pod's addresses as /etc/hosts has them)
sub self_addresses {
    my ($o) = @_;
    my $list = $o->{address} // $ENV{POD_IP};
    if (!defined $list || $list eq '') {
        $list = `hostname -i 2>/dev/null` // '';
    }
    my %seen;
    return grep { length && !$seen{$_}++ } map { lc s/^\[|\]$//gr } split /[\s,]+/, $list;
}

# the gateway's node ids whose address is one of @addr (any port, unless --port)
sub self_nodes {
    my ($s, $port, @addr) = @_;
    my %mine = map { $_ => 1 } @addr;
    my (%seen, @ids);
    for my $u (@{ $s->{upstreams} || [] }) {
        for my $n (@{ $u->{nodes} || [] }) {
            my $id = $n->{id} // next;
            my ($host, $p) = $id =~ /^\[?([^\[\]]+?)\]?:(\d+)$/ or next;
            next unless $mine{ lc $host };
            next if defined $port && $p != $port;
            push @ids, $id unless $seen{$id}++;
        }
    }
    return @ids;
}

# until every node has no request and no WebSocket, or the deadline
sub self_wait {
    my ($deadline, $interval, @ids) = @_;
    my %busy;
    while (1) {
        %busy = ();
        for my $id (@ids) {
            my $n = eval { get_node($id) };
            if (!$n) {
                # refused (404): it left the gateway's members, nothing runs
                # there; unreachable: not known to be idle, ask again
                $busy{$id} = { id => $id, error => err_msg($@) } if err_exit($@) != EX_REFUSED;
                next;
            }
            $busy{$id} = $n if ($n->{active} // 0) + ($n->{websockets} // 0);
        }
        return () unless %busy;
        last if time >= $deadline;
        sleep(($deadline - time) < $interval ? ($deadline - time > 0 ? $deadline - time : 0) : $interval);
        last if time >= $deadline;
    }
    return map { $busy{$_} } sort keys %busy;
}

sub drain_self {
    my ($o, @ids) = @_;
    usage_error('drain', 'drain --self takes no node id') if @ids;
    my $t = $o->{timeout} // SELF_TIMEOUT;
    my $deadline = time + $t;
    # no HTTP call may outlast the bound either
    $G{'http-timeout'} = $t if !defined $G{'http-timeout'} || $G{'http-timeout'} > $t;
    my @addr = self_addresses($o);
    fail(nb_err(EX_USAGE, 'no_address', 'drain --self: this pod has no address '
        . '(give --address ADDR, or set POD_IP from the downward API)')) unless @addr;
    my $s = guard(\&get_status);
    @ids = self_nodes($s, $o->{port}, @addr);
    fail(nb_err(EX_REFUSED, 'unknown_node', 'drain --self: no node of the gateway has this pod\'s address ('
        . join(', ', @addr) . ')', addresses => \@addr)) unless @ids;
    my @done;
    for my $id (@ids) {
        my $r = guard(sub { post_drain($id, 'drain') });
        push @done, status_node($r, $id) // { id => $id };
        text("$id drained\n");
    }
    if (!$o->{wait}) {
        return print_json({ nodes => \@done }) if $o->{json};
        return;
    }
    text("waiting for requests and WebSockets on " . join(', ', @ids) . " (at most " . dur_text($t) . ")\n");
    my @busy = self_wait($deadline, $o->{interval} // 0.2, @ids);
    fail(nb_err(EX_TIMEOUT, 'timeout', sprintf('timed out after %s: %s (it stays drained)',
        dur_text($t), join(', ', map { defined $_->{error} ? "$_->{id}: $_->{error}"
            : sprintf('%s: %s active, %s websockets', $_->{id}, str($_->{active}), str($_->{websockets})) } @busy)),
        nodes => \@busy)) if @busy;
    text(join(', ', @ids) . " drained, nothing in flight\n");
    return print_json({ nodes => \@done }) if $o->{json};
}

1;
