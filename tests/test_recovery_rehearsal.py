"""The recovery runbooks (docs/disaster-recovery.md) rehearsed step by step on the model of
the running cluster (offline/cluster_model.py, offline/recovery_model.py), driven by the
offline plan of the runbook's `pulumi up` as the program registers it:

- RKE2, whole cluster lost: every server's machine stopped, its Node and etcd member still
  recorded (no quorum); `etcdRestoreSnapshot` set and every server `--replace`d in one `up`.
  The server whose user data carries the restore runs `cluster-reset` and becomes a cluster
  of one member; the others join it; the old Nodes the snapshot remembers are removed by
  the old servers' ClusterMember deletes.
- K3s, datastore lost: the RDS instance gone (every server's API down); the restore settings
  with `dbReplaceDatastore` in one `up` (a new RDS instance from the backup), then every
  server `--replace`d in the next: the new servers read the new DSN at boot.

Until the cluster first recovers, no quorum and no Rancher are what the rehearsal starts
from, not violations; from then on every moment is checked as in the day-2 rehearsals."""

from __future__ import annotations

from conftest import cached_run
from offline.cluster_model import cluster_for, is_server, rehearse
from offline.recovery_model import lose_every_server, lose_the_datastore
from test_disaster_recovery import ETCD_SNAPSHOT, RESTORE, SNAPSHOT, plan


def server_urns(run) -> list[str]:
    return sorted(r.urn for r in run.registrations if is_server(r))


def assert_recovered(cluster, result, servers: int) -> None:
    """The whole cluster again: every live machine a new one and a Ready node, no Node of a
    lost machine left, etcd members exactly the new servers, Rancher Ready."""
    assert result.violations == [], "\n".join([*map(str, result.violations), *result.log])
    assert not result.broken_after and result.recovered_at is not None, result.log
    live = [m for m in cluster.machines if m.running]
    assert len(live) == servers and all(m.ready and m.generation == 1 for m in live), result.log
    assert not [m.key for m in cluster.machines if m.node and not m.running], result.log
    if cluster.etcd:
        assert sorted(m.key for m in cluster.members) == sorted(m.key for m in live)
        assert cluster.quorum()
    assert cluster.ready_pods(float("inf")) == cluster.replicas


# ------------------------------------------------------------- RKE2: whole cluster lost
def etcd_restore(keep_running: tuple[str, ...] = ()):
    """The runbook's step 3 `up` on a cluster whose every server is lost (except `keep_running`)."""
    old, new = cached_run(RESTORE), cached_run({**RESTORE, "rancher-ha:etcdRestoreSnapshot": ETCD_SNAPSHOT})
    p = plan(old, new, replace=server_urns(new))
    assert not p.refused and p.errors == [] and p.collisions == [], p.errors
    cluster = cluster_for(old, etcd=True)
    lose_every_server(cluster, keep_running=keep_running)
    return cluster, rehearse(p, new, cluster, recovering=True)


def test_the_lost_cluster_starts_without_quorum_and_keeps_its_dead_members():
    cluster = cluster_for(cached_run(RESTORE), etcd=True)
    lose_every_server(cluster)
    assert not cluster.quorum() and cluster.ready_pods(0.0) == 0
    assert len(cluster.members) == 3 and all(m.node and not m.running for m in cluster.machines)


def test_a_whole_cluster_restore_brings_back_one_cluster_of_the_new_servers():
    cluster, result = etcd_restore()
    assert_recovered(cluster, result, servers=3)
    # The first server restored (a cluster of one: the reset forgets every old member); the
    # others joined it only then.
    restored = [line for line in result.log if "restored the snapshot" in line]
    assert len(restored) == 1 and "rancher-server-0#1" in restored[0] and "etcd 1/1 live" in restored[0], result.log
    first = result.log.index(restored[0])
    joined = [i for i, line in enumerate(result.log) if " joined " in line]
    assert len(joined) == 2 and min(joined) > first, result.log
    # The old Nodes came back from the snapshot (NotReady) and the old members' deletes removed them.
    assert sum(1 for line in result.log if "#0 left" in line) == 3, result.log
    assert 0 < result.recovered_at <= result.duration


def test_a_restore_while_an_old_server_still_runs_makes_two_clusters_in_the_model():
    """The runbook's precondition (step 3): no old server may still run RKE2."""
    _, result = etcd_restore(keep_running=("rancher-server-1",))
    assert any("two clusters" in v.what and "rancher-server-1#0" in v.what for v in result.violations), result.log


# ------------------------------------------------------------------ K3s: datastore lost
def datastore_restore(replace_first: bool = False):
    """The runbook's steps 3 and 4: the datastore restored, then every server replaced (or,
    `replace_first`, the other way round)."""
    old = cached_run({})
    restored = cached_run({"rancher-ha:dbRestoreFromSnapshot": SNAPSHOT, "rancher-ha:dbReplaceDatastore": True})
    cluster = cluster_for(old, etcd=False)
    lose_the_datastore(cluster)
    ups = [(old, restored, []), (restored, restored, server_urns(restored))]
    if replace_first:
        ups = [(old, old, server_urns(old)), (old, restored, [])]
    results, clock = [], 0.0
    for before, after, replace in ups:
        p = plan(before, after, replace=replace)
        assert not p.refused and p.errors == [] and p.collisions == [], p.errors
        results.append(rehearse(p, after, cluster, start=clock, recovering=True))
        clock += results[-1].duration
    return cluster, results


def test_the_lost_datastore_leaves_no_server_serving():
    cluster = cluster_for(cached_run({}), etcd=False)
    lose_the_datastore(cluster)
    assert not cluster.quorum() and cluster.ready_pods(0.0) == 0 and all(m.running for m in cluster.machines)


def test_a_datastore_restore_then_new_servers_bring_every_server_back_on_the_restored_datastore():
    cluster, (restore, replace) = datastore_restore()
    # The restore alone: the running servers keep the lost datastore's DSN in their config.yaml.
    assert restore.violations == [] and restore.broken_after and restore.recovered_at is None, restore.log
    assert any("datastore restored" in line for line in restore.log), restore.log
    assert_recovered(cluster, replace, servers=2)
    assert replace.recovered_at > restore.duration


def test_servers_replaced_before_the_datastore_is_restored_stay_on_the_lost_one():
    """The runbook's order matters: servers read the DSN at boot."""
    cluster, results = datastore_restore(replace_first=True)
    assert results[-1].broken_after and results[-1].recovered_at is None, results[-1].log
    assert not any(m.ready for m in cluster.machines)


# ------------------------------------------------------------------- RKE2: quorum lost
def test_after_a_reset_of_the_survivor_replacing_the_lost_servers_brings_back_the_whole_cluster():
    """Runbook "Quorum lost": two of three servers lost; `rke2 server --cluster-reset` on the
    survivor (by hand: a cluster of one); then one `up` replacing the two lost servers."""
    from offline.recovery_model import reset

    run = cached_run(RESTORE)
    cluster = cluster_for(run, etcd=True)
    lost = ["rancher-server-1", "rancher-server-2"]
    lose_every_server(cluster, keep_running=("rancher-server-0",))
    assert not cluster.quorum() and len(cluster.members) == 3
    (survivor,) = [m for m in cluster.machines if m.running]
    assert reset(cluster, survivor, 0.0) is None and cluster.quorum() and len(cluster.members) == 1
    urns = sorted(r.urn for r in run.registrations if is_server(r) and r.name in lost)
    p = plan(run, run, replace=urns)
    assert p.errors == [] and p.collisions == [], p.errors
    result = rehearse(p, run, cluster)
    assert result.violations == [] and not result.broken_after, "\n".join(result.log)
    live = sorted(m.key for m in cluster.machines if m.running)
    assert live == ["rancher-server-0#0", "rancher-server-1#1", "rancher-server-2#1"]
    assert sorted(m.key for m in cluster.members) == live and cluster.quorum()
    assert not [m.key for m in cluster.machines if m.node and not m.running], result.log
