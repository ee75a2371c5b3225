# Issue 12: t/171 with one unacknowledged write: after the failover the
# stopped gateways hold the same version number as the new primary, but
# with their own (unconfirmed) content; they must take the new primary's.
use strict;
use warnings;
use FindBin;
our $UNACKED = 1;
do "$FindBin::Bin/171.redis_failover_unacked.t";
die $@ if $@;
