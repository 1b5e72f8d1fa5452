"""Kubernetes patch and minor upgrades rehearsed on the model of the running cluster
(offline/cluster_model.py, offline/upgrade_model.py), driven by the offline plan of a
`kubernetesVersion` edit: system-upgrade-controller applies the program's server Plan node
by node by its own rules (the Plan's concurrency as the program registers it), and at every
moment etcd keeps quorum and a Rancher pod is Ready; the upgrade wait ends only when every
server runs the new version, and the record of the reached versions comes after it.

Stack shapes: K3s behind an NLB (dev), RKE2 behind an NLB (prod), RKE2 behind NGINX L7
(staging). `tools/mutation_check.py` (`upgrade-plan-two-servers-at-once`) sets the program's
concurrency to 2: the RKE2 rehearsal must then fail (two of three etcd members down)."""

from __future__ import annotations

import pytest

from offline.cluster_model import Cluster, cluster_for, is_server, rehearse
from offline.runner import run_stack
from offline.upgrade_model import SEEN_AT_EXIT, SEEN_WHEN_READY
from test_lifecycle import plan

PLAN = "kubernetes:upgrade.cattle.io/v1:Plan"
WAIT = "pulumi-python:dynamic/rancher-ha:KubernetesUpgradeWait"
RECORD = "pulumi-python:dynamic/rancher-ha:ClusterVersions"

# shape -> (stack, etcd, version suffix)
SHAPES = {"k3s-nlb": ("dev", False, "k3s1"), "rke2-nlb": ("prod", True, "rke2r1"), "rke2-nginx": ("staging", True, "rke2r1")}
# kind -> (from, to): a patch, and the next minor (Rancher 2.14 runs 1.33-1.35)
KINDS = {"patch": ("v1.34.1", "v1.34.2"), "minor": ("v1.34.1", "v1.35.0")}
CASES = [(shape, kind) for shape in sorted(SHAPES) for kind in sorted(KINDS)]

_runs: dict = {}


def stack_run(stack: str, version: str, **overrides):
    key = (stack, version, tuple(sorted(overrides.items())))
    if key not in _runs:
        _runs[key] = run_stack(stack, overrides={"rancher-ha:kubernetesVersion": version, **overrides})
    return _runs[key]


def versions(shape: str, kind: str) -> tuple[str, str]:
    suffix = SHAPES[shape][2]
    low, high = KINDS[kind]
    return f"{low}+{suffix}", f"{high}+{suffix}"


def upgrade(shape: str, kind: str, completion: str = SEEN_WHEN_READY):
    stack, etcd, _ = SHAPES[shape]
    before, after = versions(shape, kind)
    old, new = stack_run(stack, before), stack_run(stack, after)
    cluster = cluster_for(old, etcd=etcd)
    p = plan(old, new)
    return cluster, p, rehearse(p, new, cluster, completion=completion), new


def assert_whole(result) -> None:
    assert result.violations == [], "\n".join([str(v) for v in result.violations] + result.log)
    assert result.seconds_without_quorum == 0 and result.seconds_without_rancher == 0 and not result.broken_after


@pytest.mark.parametrize("shape, kind", CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_an_upgrade_reaches_every_server_one_at_a_time_with_quorum_and_rancher(shape, kind):
    before, after = versions(shape, kind)
    cluster, p, result, new = upgrade(shape, kind)
    assert p.errors == [] and p.collisions == []
    servers = sorted(m.key for m in cluster.machines)
    assert_whole(result)
    # Every server runs the new version, none was replaced, each restarted once.
    assert [(m.key, m.version) for m in cluster.machines] == [(key, after) for key in servers]
    assert all(m.ready and not m.cordoned for m in cluster.machines)
    restarts = [line for line in result.log if "restarts into" in line]
    assert len(restarts) == len(servers), result.log
    # One at a time: a server starts restarting only after the previous one is back.
    windows = sorted(result.restarts.values())
    assert all(earlier[1] <= later[0] for earlier, later in zip(windows, windows[1:])), windows
    # The wait ends when the last server is back; the record of the reached versions after it.
    (wait,) = [s for s in p.steps if s.type == WAIT]
    (record,) = [s for s in p.steps if s.type == RECORD]
    last_back = max(end for _, end in windows)
    assert result.finished[wait.name] >= last_back and result.finished[record.name] >= result.finished[wait.name]
    assert result.duration >= last_back


def test_the_upgrade_follows_the_plan_the_program_registers():
    """The model reads the Plan's spec as registered: its version, concurrency and cordon;
    the wait's version is the Plan's."""
    from offline.upgrade_model import plan_spec

    _, _, _, new = upgrade("rke2-nlb", "minor")
    (registration,) = new.of_type(PLAN)
    spec = plan_spec(registration)
    assert (spec.version, spec.concurrency, spec.cordon) == ("v1.35.0+rke2r1", 1, True)
    (wait,) = new.of_type(WAIT)
    assert wait.inputs["version"] == spec.version
    # A Plan that drains is not what the model rehearses: refused, not misread.
    from types import SimpleNamespace

    draining = SimpleNamespace(name="p", inputs={**registration.inputs, "spec": {**registration.inputs["spec"], "drain": {"force": True}}})
    with pytest.raises(NotImplementedError, match="cordon-only"):
        plan_spec(draining)


def test_the_controller_picks_nodes_by_hash_and_passes_over_a_node_already_at_the_version():
    """SUC v0.20.1 (pkg/upgrade/plan/plan.go SelectConcurrentNodes): every selected node whose
    plan label is not the new hash, sorted by sha256(node, plan, hash), not by name; a node
    already at the version runs the job too (cordon, the image finds the same binary and
    exits: rancher/rke2-upgrade scripts/upgrade.sh), without a restart."""
    from offline.upgrade_model import PlanSpec, UpgradeTimes, schedule

    spec = PlanSpec(name="rke2-server", version="v1.35.0+rke2r1", concurrency=1, cordon=True)
    nodes = [("s0#0", "v1.34.1+rke2r1"), ("s1#0", "v1.35.0+rke2r1"), ("s2#0", "v1.34.1+rke2r1")]
    jobs = schedule(spec, nodes, 100.0, UpgradeTimes(start=30.0, restart=95.0))
    assert sorted(job.key for job in jobs) == ["s0#0", "s1#0", "s2#0"]
    same = next(job for job in jobs if job.key == "s1#0")
    assert same.restart is None and same.done == same.start + 30.0
    for earlier, later in zip(jobs, jobs[1:]):
        assert later.start == earlier.done  # the next job only once the previous completed
    assert jobs[0].start == 100.0 and jobs[-1].done == 100.0 + 3 * 30.0 + 2 * 95.0
    # The order is the hash's: another version orders the same nodes differently for some plan.
    orders = {tuple(j.key for j in schedule(PlanSpec("rke2-server", f"v1.35.{n}+rke2r1", 1, True), nodes, 0.0,
                                            UpgradeTimes(30.0, 95.0))) for n in range(8)}
    assert len(orders) > 1
    # Two at a time: two restarts overlap.
    two = schedule(PlanSpec("rke2-server", "v1.35.0+rke2r1", 2, True), nodes, 0.0, UpgradeTimes(30.0, 95.0))
    assert sum(1 for job in two if job.start == 0.0) == 2


def test_two_servers_restarting_at_once_lose_quorum_and_a_rancher_replica_in_the_model():
    """What the mutation check breaks the program into: with concurrency 2 the model reports it."""
    from offline.upgrade_model import PlanSpec, UpgradeTimes, job_done, job_restart, job_start, schedule

    cluster = Cluster.running(["s0", "s1", "s2"], etcd=True, replicas=3, version="v1.34.1+rke2r1")
    spec = PlanSpec("rke2-server", "v1.34.2+rke2r1", 2, True)
    jobs = schedule(spec, [(m.key, m.version) for m in cluster.machines], 0.0, UpgradeTimes(30.0, 95.0))
    for job in jobs[:2]:
        job_start(spec, cluster.machine(job.key))
        assert cluster.machine(job.key).cordoned and cluster.quorum()
    for job in jobs[:2]:
        job_restart(cluster, cluster.machine(job.key), job.restart)
    assert not cluster.quorum() and cluster.describe(31.0).startswith("etcd 1/3 live, 1 Ready nodes, Rancher 1/3")
    for job in jobs[:2]:
        job_done(cluster, spec, cluster.machine(job.key), job.done)
    assert cluster.quorum() and cluster.ready_pods(200.0) == 3
    assert sorted(m.version for m in cluster.machines) == ["v1.34.1+rke2r1", "v1.34.2+rke2r1", "v1.34.2+rke2r1"]
    assert not any(m.cordoned for m in cluster.machines)


def test_a_server_replaced_after_the_upgrade_joins_at_the_recorded_version():
    cluster, _, result, new = upgrade("rke2-nlb", "patch")
    assert_whole(result)
    (record,) = new.of_type(RECORD)
    recorded = record.inputs["versions"]["kubernetesVersion"]
    server = min((r for r in new.registrations if is_server(r)), key=lambda r: r.name)
    rotation = rehearse(plan(new, new, replace=[server.urn]), new, cluster, start=result.duration)
    assert_whole(rotation)
    joined = cluster.current(server.name)
    assert joined.generation == 1 and joined.version == recorded == "v1.34.2+rke2r1"


def test_a_server_replaced_in_the_upgrading_up_joins_at_the_new_version_and_is_not_restarted():
    """`pulumi up --replace` of a server in the `up` that edits kubernetesVersion: the new
    server installs the stack's version (its user data), ahead of the record until the `up`
    ends; the Plan's new hash still selects it, and its Job finds the binary in place."""
    stack, etcd, _ = SHAPES["rke2-nlb"]
    before, after = versions("rke2-nlb", "patch")
    old, new = stack_run(stack, before), stack_run(stack, after)
    cluster = cluster_for(old, etcd=etcd)
    server = min((r for r in new.registrations if is_server(r)), key=lambda r: r.name)
    result = rehearse(plan(old, new, replace=[server.urn]), new, cluster)
    assert_whole(result)
    joined = cluster.current(server.name)
    assert joined.generation == 1 and joined.version == after
    assert joined.key not in result.restarts
    # Every old machine restarts, the replaced one too (it is a node when the Plan changes and
    # leaves only in the delete phase, after the wait).
    assert sorted(result.restarts) == sorted(m.key for m in cluster.machines if m.generation == 0)
    assert all(m.version == after for m in cluster.machines if m.running)


def test_a_server_that_joins_later_gets_its_own_job_without_a_restart():
    """A new node has no `plan.upgrade.cattle.io/<plan>` label: the node event enqueues the
    Plan (SUC v0.20.1 pkg/upgrade/handle_core.go) and it gets a Job, which finds the binary
    of the version it installed and exits: cordoned and uncordoned, not restarted."""
    old = run_stack("prod", overrides={"rancher-ha:serverCount": 3})
    new = run_stack("prod", overrides={"rancher-ha:serverCount": 5})
    cluster = cluster_for(old, etcd=True)
    result = rehearse(plan(old, new), new, cluster)
    assert_whole(result)
    assert result.restarts == {}
    for key in ("rancher-server-3#0", "rancher-server-4#0"):
        assert any(f"{key} cordoned by the upgrade Job" in line for line in result.log), result.log
        assert any(f"{key} already at " in line for line in result.log), result.log
    assert not any(m.cordoned for m in cluster.machines)


# -- the completion race, and a server already down ------------------------------------------
def assert_one_restart_at_a_time(cluster, result, version: str) -> None:
    """Whole throughout, every server restarted once, never two at once, all at `version`."""
    assert_whole(result)
    windows = sorted(result.restarts.values())
    assert len(windows) == len(cluster.machines), result.log
    assert all(earlier[1] <= later[0] for earlier, later in zip(windows, windows[1:])), windows
    assert [m.version for m in cluster.machines] == [version] * len(cluster.machines)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_patch_upgrade_keeps_quorum_and_rancher_even_if_a_job_is_seen_complete_at_the_sigterm(shape):
    """The pessimistic assumption (SEEN_AT_EXIT): system-upgrade-controller sees a Job complete
    when its upgrade container exits, right after it SIGTERMs the server (the old kubelet
    reports the pod's success before it dies), and creates the next node's Job at once. The
    Plan's prepare (`kubectl wait --for=condition=Ready node -l <servers>`, before the cordon
    and the upgrade) holds that Job until every server is Ready again: still one server
    restarting at a time, etcd quorum and a Ready Rancher throughout."""
    before, after = versions(shape, "patch")
    cluster, p, result, new = upgrade(shape, "patch", completion=SEEN_AT_EXIT)
    assert_one_restart_at_a_time(cluster, result, after)
    assert all(m.ready and not m.cordoned for m in cluster.machines)
    # The next Job was created while the previous server restarted, and waited in its prepare.
    assert any("its prepare waits for every server Ready" in line for line in result.log), result.log


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_patch_upgrade_keeps_quorum_even_if_a_restarting_node_still_looks_ready(shape):
    """The most pessimistic assumption (SEEN_AT_EXIT_READY_STALE): the Job is seen complete at
    the SIGTERM, AND the restarting node keeps its Ready condition until the node lifecycle
    controller's grace period has passed (its kubelet died without a word). A prepare that
    ran at once would see every server Ready and restart the next one beside it; the Plan's
    postCompleteDelay (longer than the grace period) holds the next Job until the restarting
    node is either back or seen NotReady, and the prepare then waits for it."""
    from offline.upgrade_model import NOT_READY_SEEN_AFTER, SEEN_AT_EXIT_READY_STALE, plan_spec

    before, after = versions(shape, "patch")
    cluster, p, result, new = upgrade(shape, "patch", completion=SEEN_AT_EXIT_READY_STALE)
    assert_one_restart_at_a_time(cluster, result, after)
    (registration,) = new.of_type(PLAN)
    assert plan_spec(registration).post_complete_delay > NOT_READY_SEEN_AFTER


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_an_upgrade_started_with_a_server_down_restarts_no_other_server_and_fails_at_its_bound(shape):
    """A server already NotReady (its machine lost, its Node still there) when the version is
    edited: the controller selects it too (its Job's pod cannot run) and the other servers'
    Jobs wait in their prepare until it is back; nothing is cordoned or restarted, quorum and
    Rancher hold, and the `up` fails at the upgrade wait's bound, naming the server. The lost
    server is the last in the controller's order, so without the prepare another server's Job
    would run first and restart it."""
    from offline.upgrade_model import order, plan_spec

    stack, etcd, _ = SHAPES[shape]
    before, after = versions(shape, "patch")
    old, new = stack_run(stack, before), stack_run(stack, after)
    cluster = cluster_for(old, etcd=etcd)
    (registration,) = new.of_type(PLAN)
    lost = order(plan_spec(registration), [m.key for m in cluster.machines])[-1]
    cluster.terminate(cluster.machine(lost), 0.0)
    p = plan(old, new)
    result = rehearse(p, new, cluster)
    assert result.violations == [], "\n".join([str(v) for v in result.violations] + result.log)
    assert result.restarts == {}, result.log
    assert result.seconds_without_quorum == 0 and result.seconds_without_rancher == 0 and not result.broken_after
    assert not any(m.cordoned for m in cluster.machines), result.log
    assert [m.version for m in cluster.machines] == [before] * len(cluster.machines)
    (wait,) = [s for s in p.steps if s.type == WAIT]
    (record,) = [s for s in p.steps if s.type == RECORD]
    assert list(result.failed) == [wait.name], result.failed
    timeout = float(new.of_type(WAIT)[0].inputs["timeoutSeconds"])
    assert f"timed out after {timeout:g} s" in result.failed[wait.name]
    assert f"{lost} NotReady" in result.failed[wait.name], result.failed
    assert record.name not in result.finished  # nothing after the wait ran: the versions stay recorded as before


def test_the_prepare_rule_is_read_from_the_registered_plan():
    """The model takes the prepare from the Plan as registered: the program's `kubectl wait`
    for every server Ready and its timeout; no prepare, no rule (the same pessimistic schedule
    then overlaps two restarts); another prepare is refused, not misread."""
    from types import SimpleNamespace

    from offline.upgrade_model import Prepare, UpgradeTimes, plan_spec, schedule

    _, _, _, new = upgrade("rke2-nlb", "patch")
    (registration,) = new.of_type(PLAN)
    spec = plan_spec(registration)
    assert spec.prepare == Prepare(selector="node-role.kubernetes.io/control-plane=true", timeout=600.0)

    def registered(prepare):
        plan_spec_inputs = {k: v for k, v in registration.inputs["spec"].items() if k != "prepare"}
        if prepare is not None:
            plan_spec_inputs["prepare"] = prepare
        return SimpleNamespace(name="p", inputs={**registration.inputs, "spec": plan_spec_inputs})

    bare = plan_spec(registered(None))
    assert bare.prepare is None
    nodes = [("s0#0", "v1.34.1+rke2r1"), ("s1#0", "v1.34.1+rke2r1"), ("s2#0", "v1.34.1+rke2r1")]
    times = UpgradeTimes(start=30.0, restart=95.0)

    def overlaps(jobs):
        windows = sorted((job.restart, job.done) for job in jobs)
        return any(later[0] < earlier[1] for earlier, later in zip(windows, windows[1:]))

    assert overlaps(schedule(bare, nodes, 0.0, times, SEEN_AT_EXIT))
    assert not overlaps(schedule(spec, nodes, 0.0, times, SEEN_AT_EXIT))
    assert schedule(spec, nodes, 0.0, times) == schedule(bare, nodes, 0.0, times)  # seen when Ready: the same
    prepare = registration.inputs["spec"]["prepare"]
    for args in (["wait", "--for=condition=Ready", "node", "-l", "node-role.kubernetes.io/etcd=true", "--timeout=600s"],
                 ["wait", "--for=delete", "node", "-l", "node-role.kubernetes.io/control-plane=true", "--timeout=600s"],
                 ["get", "node"]):
        with pytest.raises(NotImplementedError, match="every server Ready"):
            plan_spec(registered({**prepare, "args": args}))
