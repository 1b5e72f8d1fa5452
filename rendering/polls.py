"""How often and how long the boot scripts poll for what they wait on.

One place for the cadences: the templates render them and the time-to-ready benchmark
(benchmarks/durations.py) models its waits from them, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Poll:
    interval_s: int  # sleep between attempts
    attempts: int  # default bound (an environment variable may override it)
    connect_timeout_s: Optional[int] = None  # per attempt, where the probe is a TCP connect

    @property
    def period_s(self) -> int:
        """Worst-case time per failed attempt, sleep included."""
        return self.interval_s + (self.connect_timeout_s or 0)


# The way out (NAT gateway or proxy) may appear while the machine boots. Until the
# private route exists the VPC drops the SYN, so a probe fails by its connect timeout;
# a short one keeps the wait close to the moment the route appears. 240 x ~5 s bounds it
# at about 20 minutes (a NAT gateway takes 1-3); a probe that connects but hangs is cut
# at 20 s.
EGRESS = Poll(interval_s=2, attempts=240, connect_timeout_s=3)
# Through a proxy the connect timeout also covers the CONNECT and the TLS handshake
# with the far end (curl's CURLOPT_CONNECTTIMEOUT): a slow proxy must not fail every
# probe. The proxy is there from the start, so the short timeout buys nothing.
EGRESS_VIA_PROXY = Poll(interval_s=2, attempts=100, connect_timeout_s=10)
# A joining server probes the registration address's /ping (refused until a server runs).
JOIN = Poll(interval_s=2, attempts=900)
# A first server about to restore an etcd snapshot waits for the registration address to
# fall silent: an old server still answering there would be left running beside the
# restored cluster (a second cluster). 60 x 10 s: about 10 minutes to stop the old ones.
RESTORE_SILENCE = Poll(interval_s=10, attempts=60)
# A K3s server waits for the datastore-endpoint parameter, written once RDS is available.
# Each attempt is an AWS CLI process (about a second), so 1800 attempts bound it at about
# an hour (RDS Multi-AZ takes 10-20 minutes; the provider's own timeout is 50).
DATASTORE = Poll(interval_s=1, attempts=1800)
