"""Where the servers go, and whether etcd keeps quorum when one availability zone is lost.

Servers are placed round-robin over the node subnets (components/cluster_nodes.py uses
`subnet_of`). RKE2 runs an etcd member on every server; etcd needs a majority of its
members. The cluster survives the loss of any one zone only if every zone holds fewer
members than would leave a minority behind: for each zone, the servers outside it must
be more than half of all servers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")

OPT_IN = "allowQuorumLossOnZoneFailure"


def subnet_of(index: int, subnets: Sequence[T]) -> T:
    """The subnet of server `index`: round-robin, so servers spread over the subnets' zones."""
    return subnets[index % len(subnets)]


@dataclass(frozen=True)
class ZoneRisk:
    zone: str
    servers_in_zone: int
    server_count: int

    @property
    def survivors(self) -> int:
        return self.server_count - self.servers_in_zone


def quorum_loss_on_zone_failure(server_count: int, subnet_zones: Sequence[str]) -> ZoneRisk | None:
    """The zone whose loss leaves no etcd majority (the fullest one), or None when losing
    any one zone leaves more than half of the servers."""
    per_zone = Counter(subnet_of(index, subnet_zones) for index in range(server_count))
    zone, count = max(sorted(per_zone.items()), key=lambda item: item[1])
    if 2 * (server_count - count) > server_count:
        return None
    return ZoneRisk(zone=zone, servers_in_zone=count, server_count=server_count)


def explain(risk: ZoneRisk, spread: str) -> str:
    """Why the placement loses quorum with one zone, and the fix; `spread` says over what."""
    majority = risk.server_count // 2 + 1
    return (
        f"RKE2 runs an etcd member on every server, and the {risk.server_count} servers go round-robin "
        f"over {spread}: {risk.zone} holds {risk.servers_in_zone} of them, so losing that zone leaves "
        f"{risk.survivors}, fewer than the {majority} etcd needs (no quorum: the Kubernetes API and "
        "Rancher stop). Fix: give the servers subnets in 3 different availability zones, or set "
        f"{OPT_IN}: true to accept that one zone's outage stops the cluster"
    )
