"""Losses and restores on the model of the running cluster (offline/cluster_model.py), for the
recovery runbooks of docs/disaster-recovery.md.

The losses, the state a runbook starts from:
- RKE2, whole cluster lost (`lose_every_server`): every server's machine stopped; its Node
  and its etcd member stay recorded (nobody removed them), so etcd has no quorum.
- K3s, datastore lost (`lose_the_datastore`): the RDS instance is gone; every server still
  runs but serves nothing (its API needs the datastore), so no Node is Ready.

The restores, as the program's own resources drive them in `rehearse`:
- A server whose user data carries `--cluster-reset-restore-path=` (`restores`: the program
  puts it on the first server only, components/cluster_nodes.py) restores the snapshot when
  it has booted: `--cluster-reset` "Forget all peers and become sole member of a new cluster"
  (k3s pkg/cli/cmds/server.go, the flag's usage; rke2 reuses k3s's server flags), so it is a
  cluster of one member and the old members are gone from the restored member list; the
  old Node objects come back with the snapshot's data, NotReady, until something deletes
  them (the old servers' ClusterMember deletes: the etcd member controller answers their
  removal request for a member the reset already forgot, since `RemovePeer` returns no
  error when no member has the name and address, and then marks the Node removed; k3s
  pkg/etcd/etcd.go and pkg/etcd/member_controller.go, read in stored copies of k3s-io/k3s,
  commit not recorded). Its boot script first waits for the
  registration name to stop answering (rendering/templates/node-bootstrap.sh.j2) and refuses
  the restore while a server of the old cluster still runs RKE2: the model records that
  refusal as a violation of the runbook's precondition, and a restore while another
  restored cluster runs as two clusters.
- A server that joins while no etcd cluster has quorum waits (the join retries through the
  registration name) and joins once a restored cluster runs.
- The datastore's endpoint parameter written (it follows the new RDS instance: its value
  is the instance's address) makes the restored datastore the one a server reads at boot;
  a server that boots after it serves; a server that booted before keeps the lost one's
  DSN in its config.yaml and serves nothing.

What the model simplifies: the waiting joiners join at the moment of the restore (no
learner promotion one at a time); the restored snapshot's Rancher pods, bound to the old
NotReady Nodes, are rescheduled at once onto the new Ready nodes (a real cluster evicts
them after the NotReady/unreachable tolerations, 300 s by default, or when their Node is
deleted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Collection, Optional

if TYPE_CHECKING:
    from .cluster_model import Cluster, Machine

RESTORE_FLAG = "--cluster-reset-restore-path="
PARAMETER = "aws:ssm/parameter:Parameter"


def names_the_datastore(step) -> bool:
    """The SSM parameter a K3s server reads its DSN from at boot (the datastore's endpoint,
    written after the instance exists: its value is the instance's address)."""
    return step.type == PARAMETER and step.name.endswith("datastore-endpoint")


def restores(registration) -> bool:
    """Whether a server's user data restores an etcd snapshot at boot."""
    return RESTORE_FLAG in str((registration.inputs or {}).get("userData", ""))


def lose_every_server(cluster: "Cluster", keep_running: Collection[str] = (), now: float = 0.0) -> None:
    """Every server's machine stops, except those of `keep_running` (servers whose RKE2 still runs)."""
    for machine in cluster.machines:
        if machine.server not in keep_running:
            cluster.terminate(machine, now)


def lose_the_datastore(cluster: "Cluster", now: float = 0.0) -> None:
    cluster.datastore_up = False
    for machine in cluster.machines:
        machine.serving = False
        machine.rancher_pod = None
    cluster.schedule(now)


def restore_the_datastore(cluster: "Cluster", now: float) -> None:
    """The new RDS instance is available; only servers that boot from now on read its DSN."""
    cluster.datastore_up = True
    cluster.schedule(now)


def reset(cluster: "Cluster", machine: "Machine", now: float) -> Optional[str]:
    """The restoring server at the end of its boot: returns why the restore made no single
    cluster (refused beside an old server, or a second restored cluster), if so."""
    beside = [m for m in cluster.machines if m is not machine and m.running and m.member and m.node]
    old = [m.key for m in beside if m.key not in cluster.restored]
    if old:
        machine.node = machine.member = False
        return (f"{machine.key} refused the restore: {', '.join(old)} of the old cluster still runs rke2-server"
                " (a restore beside it would make two clusters)")
    for other in cluster.machines:
        if other is not machine:
            other.member = other.member and other in beside
    machine.waiting, machine.node, machine.member = False, True, True
    cluster.restored.add(machine.key)
    cluster.schedule(now)
    if beside:
        return f"{machine.key} restored beside the running cluster of {', '.join(m.key for m in beside)}: two clusters"
    return None


def admit_waiting(cluster: "Cluster", now: float) -> list["Machine"]:
    """The joiners waiting for a cluster join it once it has quorum."""
    if not cluster.quorum():
        return []
    joined = [m for m in cluster.machines if m.waiting and m.running]
    for machine in joined:
        machine.waiting, machine.node, machine.member = False, True, True
    cluster.schedule(now)
    return joined
