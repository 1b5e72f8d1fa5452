"""Rehearsals of server-count changes and server rotation on a model of the running cluster
(offline/cluster_model.py), driven by the offline plan (offline/plan.py) in the engine's
order: at every moment etcd keeps quorum, a Rancher pod is Ready and no eviction breaks
Rancher's PodDisruptionBudget; every removed server's Node and etcd member are gone.

Stack shapes: K3s behind an NLB (dev), RKE2 behind an NLB (prod), RKE2 behind NGINX L7
(staging)."""

from __future__ import annotations

import pytest

from offline.destroy import DependencyGraph
from offline.cluster_model import MEMBER, Cluster, cluster_for, is_server, rehearse
from offline.plan import SERVER_INSTANCE
from offline.runner import run_stack
from test_lifecycle import assert_routine, plan

# shape -> (stack, etcd, shrink counts, grow counts)
SHAPES = {
    "k3s-nlb": ("dev", False, [4, 3, 2], [2, 3]),
    "rke2-nlb": ("prod", True, [7, 5, 3], [3, 5]),
    "rke2-nginx": ("staging", True, [7, 5, 3], [3, 5]),
}

_runs: dict = {}


def stack_run(stack: str, servers: int):
    key = (stack, servers)
    if key not in _runs:
        _runs[key] = run_stack(stack, overrides={"rancher-ha:serverCount": servers})
    return _runs[key]


def walk(stack: str, etcd: bool, counts: list[int]):
    """Deploy `counts[0]` servers, then edit serverCount to each next count, one `pulumi up` each."""
    old = stack_run(stack, counts[0])
    cluster = cluster_for(old, etcd=etcd)
    rehearsals, plans, clock = [], [], 0.0
    for count in counts[1:]:
        new = stack_run(stack, count)
        p = plan(old, new)
        result = rehearse(p, new, cluster, start=clock)
        clock += result.duration
        rehearsals.append(result)
        plans.append(p)
        old = new
    return cluster, rehearsals, plans


def assert_safe(cluster: Cluster, rehearsals, servers: int) -> None:
    for result in rehearsals:
        assert result.violations == [], "\n".join([str(v) for v in result.violations] + result.log)
        assert result.seconds_without_quorum == 0 and result.seconds_without_rancher == 0 and not result.broken_after
    # Nothing dead left behind: the cluster is exactly the servers the stack has.
    live = [m for m in cluster.machines if m.running]
    assert len(live) == servers
    assert all(m.node for m in live) and not [m for m in cluster.machines if m.node and not m.running]
    if cluster.etcd:
        assert sorted(m.key for m in cluster.members) == sorted(m.key for m in live)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shrinking_keeps_quorum_and_rancher_and_leaves_no_dead_member(shape):
    stack, etcd, counts, _ = SHAPES[shape]
    cluster, rehearsals, plans = walk(stack, etcd, counts)
    for p in plans:
        assert p.errors == [] and p.collisions == [], [c.describe() for c in p.collisions]
    assert_safe(cluster, rehearsals, counts[-1])


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shrinking_removes_servers_one_at_a_time_each_member_before_any_instance(shape):
    stack, etcd, counts, _ = SHAPES[shape]
    p = plan(stack_run(stack, counts[0]), stack_run(stack, counts[-1]))
    members = [s for s in p.steps if s.op == "delete" and s.type == MEMBER]
    instances = [s for s in p.steps if s.op == "delete" and is_server(s)]
    removed = counts[0] - counts[-1]
    assert len(members) == len(instances) == removed
    # One member per delete round: never two servers leaving at once.
    assert len({s.round for s in members}) == removed
    assert max(s.round for s in members) < min(s.round for s in instances)
    assert not any(s.skipped for s in members)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_growing_joins_new_servers_and_keeps_quorum(shape):
    stack, etcd, _, counts = SHAPES[shape]
    cluster, rehearsals, plans = walk(stack, etcd, counts)
    p = plans[0]
    assert_routine_except_new_servers(p)
    assert_safe(cluster, rehearsals, counts[-1])
    assert [m.key for m in cluster.machines if m.generation == 0 and m.running] == [m.key for m in cluster.machines]


def assert_routine_except_new_servers(p) -> None:
    assert p.errors == [] and p.collisions == []
    touched = [(s.op, s.name) for s in p.steps if s.type == SERVER_INSTANCE and s.op not in ("same", "create")]
    assert touched == [], touched


def rotate(stack: str, etcd: bool, servers: int):
    """Every server replaced, one `pulumi up --replace <urn of rancher-server-N>` after the other."""
    run = stack_run(stack, servers)
    cluster = cluster_for(run, etcd=etcd)
    rehearsals, plans, clock = [], [], 0.0
    for instance in sorted((r for r in run.registrations if is_server(r)), key=lambda r: r.name):
        p = plan_replace(run, instance.urn)
        result = rehearse(p, run, cluster, start=clock)
        clock += result.duration
        rehearsals.append(result)
        plans.append((instance.name, p))
    return cluster, rehearsals, plans


def run_of(stack: str, servers: int):
    return stack_run(stack, servers)


def plan_replace(run, urn: str):
    from offline.plan import plan_update
    from tools.plan import program_dynamic_diffs

    return plan_update(run, run, dynamic_diffs=program_dynamic_diffs(), replace=[urn])


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_rotating_every_server_joins_the_new_one_before_the_old_one_leaves(shape):
    stack, etcd, counts, _ = SHAPES[shape]
    servers = counts[-1]
    cluster, rehearsals, plans = rotate(stack, etcd, servers)
    assert_safe(cluster, rehearsals, servers)
    assert all(m.generation == 1 for m in cluster.machines if m.running), "every server is a new machine"
    for (name, p), result in zip(plans, rehearsals):
        assert p.errors == [] and p.collisions == [], [c.describe() for c in p.collisions]
        replaced = [s.name for s in p.steps if s.op == "replace" and s.type == SERVER_INSTANCE]
        assert replaced == [name]
        events = result.log
        joined = next(i for i, line in enumerate(events) if f"{name}#1 joined" in line)
        left = next(i for i, line in enumerate(events) if f"{name}#0 left" in line)
        stopped = next(i for i, line in enumerate(events) if f"{name}#0 terminated" in line)
        assert joined < left < stopped, events
        # The new member is created after the readiness gate saw the new node Ready, and the
        # old member is deleted before the old instance.
        order = {(s.name, s.op, s.replacement): s.seq for s in p.steps}
        assert order[(f"{name}-member", "replace", False)] > order[("cluster-access-api-ready", "replace", False)]
        assert order[(f"{name}-member", "delete", True)] < order[(name, "delete", True)]
        member = next(r for r in run_of(stack, servers).registrations if r.name == f"{name}-member")
        gate = next(r for r in run_of(stack, servers).registrations if r.name == "cluster-access-api-ready")
        # It waits for the gate itself (not only through the Kubernetes provider it is deleted with).
        assert gate.urn in member.dependencies
        assert gate.urn in DependencyGraph(run_of(stack, servers).registrations).transitive_dependencies([member.urn])


# -- without the members: what the first releases did ---------------------------------------
def test_a_shrink_without_members_loses_quorum_in_the_model():
    """The model catches defect 1: instances deleted while their Nodes stay leave dead etcd
    members (a stack upgraded and shrunk in the same `pulumi up` still has no members for the
    removed servers: upgrade first, then shrink, see README "Day 2")."""
    old = stack_run("prod", 7)
    stripped = type(old)(registrations=[r for r in old.registrations if r.type != MEMBER and "cluster-membership" not in r.name],
                         outputs=old.outputs, secret_values=old.secret_values)
    new = stack_run("prod", 3)
    new_stripped = type(new)(registrations=[r for r in new.registrations if r.type != MEMBER and "cluster-membership" not in r.name],
                             outputs=new.outputs, secret_values=new.secret_values)
    cluster = cluster_for(stripped, etcd=True)
    result = rehearse(plan(stripped, new_stripped), new_stripped, cluster)
    assert any(v.what == "etcd lost quorum" and "etcd 3/7 live" in v.state for v in result.violations), result.log
    assert result.seconds_without_quorum > 0 and result.broken_after


# -- upgrading a stack created by the last landed revision -----------------------------------
LAST_LANDED = "bb6a910"


@pytest.fixture(scope="module")
def landed_states():
    from tools.plan import base_states

    olds, errors = base_states(LAST_LANDED, ["dev", "prod"])
    assert errors == {}, errors
    return olds


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_upgrading_creates_the_members_without_touching_a_server(landed_states, stack):
    p = plan(landed_states[stack], run_stack(stack))
    assert_routine(p)
    servers = [r for r in landed_states[stack].registrations if is_server(r)]
    assert all(p.step(r.name).op == "same" for r in servers), [(r.name, p.step(r.name).op) for r in servers]
    created = sorted(s.type for s in p.by_op("create"))
    assert created.count(MEMBER) == len(servers) and "rancher-ha:cluster:ClusterMembership" in created, created
    # Replaced or deleted: only the SSM parameters that move below the stack identity.
    moved = [(s.op, s.type, s.name) for s in p.steps if s.op in ("replace", "delete") and s.type != "aws:ssm/parameter:Parameter"]
    assert not moved, moved


def test_after_the_upgrade_a_shrink_is_safe(landed_states):
    """Upgrade first (members created), then shrink: the members carry the removal."""
    upgraded = run_stack("prod", overrides={"rancher-ha:serverCount": 5})
    landed = landed_states["prod"]
    assert plan(landed, run_stack("prod")).errors == []
    cluster = cluster_for(upgraded, etcd=True)
    result = rehearse(plan(upgraded, stack_run("prod", 3)), stack_run("prod", 3), cluster)
    assert result.violations == [] and len(cluster.members) == 3


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_destroy_skips_the_drains(shape):
    """`pulumi destroy` takes the whole cluster: the members are deleted with the Kubernetes
    provider (deleted_with), so no drain runs and nothing refuses the last member."""
    from offline.destroy import destroy_schedule

    stack, _, counts, _ = SHAPES[shape]
    members = [s for s in destroy_schedule(stack_run(stack, counts[-1])) if s.type == MEMBER]
    assert len(members) == counts[-1] and all(s.skipped for s in members)


GATE_TYPE = "pulumi-python:dynamic/rancher-ha:ApiGate"


def _gate_inputs(run) -> dict:
    (gate,) = [r for r in run.registrations if r.type == GATE_TYPE]
    return {k: v for k, v in gate.inputs.items() if k != "__provider"}


def test_a_shrink_in_the_upgrading_up_is_refused_in_preview(landed_states):
    """The gate's check sees the old inputs: a state from before ClusterMember (no
    `serverMembers`) plus fewer servers is refused, naming the safe way."""
    from components.providers.api_gate_provider import ApiGateProvider

    landed = _gate_inputs(landed_states["prod"])
    assert "serverMembers" not in landed and len(landed["expectedNodes"]) == 3
    # A prod stack deployed by bb6a910 with 7 servers: the same inputs, 7 addresses.
    seven = {**landed, "expectedNodes": _gate_inputs(stack_run("prod", 7))["expectedNodes"]}
    failures = ApiGateProvider().check(seven, _gate_inputs(stack_run("prod", 3))).failures
    assert [f.property for f in failures] == ["expectedNodes"]
    assert "(7 -> 3)" in failures[0].reason and "set serverCount back to 7, run `pulumi up` once" in failures[0].reason
    # The upgrade alone, a grow, and a shrink once the members exist pass.
    provider = ApiGateProvider()
    assert provider.check(seven, _gate_inputs(stack_run("prod", 7))).failures == []
    assert provider.check(landed, _gate_inputs(stack_run("prod", 5))).failures == []
    assert provider.check(_gate_inputs(stack_run("prod", 7)), _gate_inputs(stack_run("prod", 3))).failures == []


def test_the_model_holds_rancher_budget_and_etcd_quorum_by_their_rules():
    cluster = Cluster.running(["s0", "s1", "s2", "s3"], etcd=True, replicas=3, pod_start_seconds=30)
    assert cluster.drain(cluster.current("s0"), 10.0) is None  # one disruption allowed
    assert cluster.current("s3").rancher_pod == 40.0  # rescheduled on the free node, Ready later
    assert cluster.drain(cluster.current("s1"), 10.0) == "evicting Rancher from s1#0 would leave 1/3 Ready"
    assert cluster.drain(cluster.current("s1"), 40.0) is None  # once the new pod is Ready
    # etcd: a member whose machine stopped still counts; quorum is a majority of all members.
    for server in ("s0", "s1"):
        cluster.terminate(cluster.current(server), 50.0)
    assert cluster.quorum() is False and cluster.describe(50.0).startswith("etcd 2/4 live")
    cluster.leave(cluster.oldest("s0"), 60.0)
    assert cluster.quorum() is True  # 2 live of 3 members


# -- a Rancher upgrade: the chart's rollout --------------------------------------------------
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_rancher_upgrade_replaces_one_pod_at_a_time_and_keeps_rancher_serving(shape):
    """A new chart version changes the Deployment's pod template: Rancher's chart rolls it with
    maxUnavailable 1 (templates/deployment.yaml, more than one replica) and one pod per node
    (antiAffinity required, so the surge pod has nowhere to go): each pod is replaced once,
    the next only when the previous new one is Ready, and a Ready pod serves throughout."""
    stack, etcd, _, _ = SHAPES[shape]
    old = run_stack(stack)
    new = run_stack(stack, overrides={"rancher-ha:rancherVersion": "2.15.0"})
    cluster = cluster_for(old, etcd=etcd)
    result = rehearse(plan(old, new), new, cluster)
    assert result.violations == [] and result.seconds_without_rancher == 0, result.log
    rolled = [line for line in result.log if "replaced (rollout)" in line]
    pods = [m.key for m in cluster.machines if m.rancher_pod is not None]
    assert len(rolled) == len(pods) == cluster.replicas and sorted(cluster.rolled) == sorted(pods), result.log


def test_a_rollout_of_every_pod_at_once_leaves_rancher_without_a_ready_pod_in_the_model():
    """What the rule guards against: replacing both pods of a two-replica Rancher at once."""
    from offline.cluster_model import Rehearsal, _apply, _account

    cluster = Cluster.running(["s0", "s1"], etcd=False, replicas=2)
    result = Rehearsal(cluster=cluster)
    _apply(result, "roll", 0, 100.0)
    _apply(result, "roll", 1, 100.0)
    _account(result, 100.0, 130.0)
    assert result.seconds_without_rancher == 30.0
