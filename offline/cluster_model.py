"""A model of the running cluster, driven by an offline plan in the engine's order.

What it holds: the server machines (running or not), their Kubernetes Nodes (Ready,
cordoned, the Kubernetes version they run), the etcd member list (RKE2; K3s here keeps
its data in RDS and has none), and Rancher: the Deployment's replicas (Helm value `replicas`, min(3, servers)), one pod
per node at most (`antiAffinity: required`, rendering/ha_values.py) and its
PodDisruptionBudget (maxUnavailable 1).

How a plan drives it (`rehearse`): the update phase runs each step when everything it
depends on has finished (the engine's parallel creates and updates), then the delete
phase in the engine's rounds (offline/destroy.py `schedule_rounds`: a round starts when
the previous one has finished; the steps of a round run side by side). Each mechanism acts
by its own rules:
- a server instance created joins the cluster once booted (a new etcd member and a Ready
  Node) at the end of its step;
- a server instance deleted stops at the start of its step: its Node goes NotReady and,
  unless its Node was deleted before, its etcd member stays, dead, counting against quorum;
- a ClusterMember deleted (components/membership.py) cordons its node and evicts Rancher's
  pod through the PDB at the start of its step (the drain waits while the PDB allows no
  disruption), then the etcd member leaves and the Node is deleted at its end;
- the Rancher release updated sets the replica count (the Deployment scales at once), and a
  new chart version or values roll its pods one at a time, each replaced once its
  predecessor's successor is Ready (the chart's maxUnavailable 1, one pod per node);
- the system-upgrade-controller Plan created or given a new version runs its Jobs by the
  controller's rules (offline/upgrade_model.py): node by node, cordon, restart into the new
  version (NotReady, etcd member down), Ready and uncordoned; the KubernetesUpgradeWait
  after it ends only once every server runs the Plan's version, so what depends on the
  wait (Rancher's release, the record of the reached versions) comes later; a server that
  joins later gets its own Job (cordoned and uncordoned: it already runs the version).

A recovery (offline/recovery_model.py) starts from a lost cluster: a server whose user
data restores an etcd snapshot becomes, once booted and restored, a cluster of one that
the others (waiting while no etcd cluster has quorum) join; a K3s server serves only if it
booted after the datastore's endpoint parameter named the restored datastore.

A server that joins runs the version its user data installs (`KUBERNETES_VERSION`, the
stack's kubernetesVersion: components/cluster_nodes.py).

Checked at every moment: etcd has quorum (live members > half of the members), at least
one Rancher pod is Ready, and no eviction breaks the PDB. `Rehearsal` records every
violation with the step that caused it, and the seconds without quorum or without a ready
Rancher pod.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from . import recovery_model as recovery
from . import upgrade_model as suc
from .destroy import DependencyGraph
from .plan import SERVER_INSTANCE, Plan

MEMBER = "pulumi-python:dynamic/rancher-ha:ClusterMember"
GATE = "pulumi-python:dynamic/rancher-ha:ApiGate"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
PDB_MAX_UNAVAILABLE = 1  # rendering/ha_values.py rancher_spread_values


def is_server(step_or_registration) -> bool:
    return step_or_registration.type == SERVER_INSTANCE and "-server-" in step_or_registration.name


def server_of_member(name: str) -> str:
    return name[: -len("-member")]


def installed_version(registration) -> str:
    """The Kubernetes version a server's user data installs (node-bootstrap.sh.j2)."""
    found = re.search(r"KUBERNETES_VERSION='?([0-9A-Za-z.+-]+)", str((registration.inputs or {}).get("userData", "")))
    return found.group(1) if found else ""


@dataclass
class Machine:
    server: str  # the resource name: rancher-server-N
    generation: int
    running: bool = True
    node: bool = True  # the Kubernetes Node object exists
    cordoned: bool = False
    member: bool = True  # in the etcd member list (etcd clusters only)
    rancher_pod: Optional[float] = None  # when its Rancher pod is (or will be) Ready; None: no pod
    version: str = ""  # the Kubernetes version its kubelet reports
    restarting: bool = False  # the server process restarts (an upgrade): NotReady, etcd member down
    serving: bool = True  # K3s: its DSN names a datastore that exists (offline/recovery_model.py)
    waiting: bool = False  # RKE2: booted, waits to join until an etcd cluster has quorum
    instance: bool = True  # its EC2 instance exists (running, or stopped: a lost server)

    @property
    def key(self) -> str:
        return f"{self.server}#{self.generation}"

    @property
    def ready(self) -> bool:
        return self.running and self.node and self.serving and not self.restarting


@dataclass
class Cluster:
    etcd: bool
    machines: list[Machine] = field(default_factory=list)
    replicas: int = 1
    pod_start_seconds: float = 30.0
    rolled: set[str] = field(default_factory=set)  # machines whose Rancher pod this rollout replaced
    datastore_up: bool = True  # K3s: the datastore the DSN parameter names exists
    restored: set[str] = field(default_factory=set)  # machines that restored an etcd snapshot (a cluster-reset)

    @classmethod
    def running(cls, servers: list[str], etcd: bool, replicas: int, pod_start_seconds: float = 30.0,
                version: str = "", versions: Optional[Mapping[str, str]] = None) -> "Cluster":
        cluster = cls(etcd=etcd, replicas=replicas, pod_start_seconds=pod_start_seconds)
        for server in servers:
            cluster.machines.append(Machine(server, 0, member=etcd, version=(versions or {}).get(server, version)))
        cluster.schedule(0.0)
        return cluster

    # -- what is true now ----------------------------------------------------------------
    def machine(self, key: str) -> Optional[Machine]:
        return next((m for m in self.machines if m.key == key), None)

    def current(self, server: str) -> Optional[Machine]:
        machines = [m for m in self.machines if m.server == server and (m.running or m.node)]
        return max(machines, key=lambda m: m.generation) if machines else None

    def oldest(self, server: str) -> Optional[Machine]:
        machines = [m for m in self.machines if m.server == server and (m.running or m.node or m.member or m.instance)]
        return min(machines, key=lambda m: m.generation) if machines else None

    @property
    def members(self) -> list[Machine]:
        return [m for m in self.machines if m.member]

    def quorum(self) -> bool:
        if not self.etcd:
            return any(m.ready for m in self.machines)  # K3s on RDS: any server serves the API
        live = [m for m in self.members if m.running and not m.restarting]
        return len(live) * 2 > len(self.members)

    def ready_pods(self, now: float) -> int:
        return sum(1 for m in self.machines if m.ready and m.rancher_pod is not None and m.rancher_pod <= now)

    def describe(self, now: float) -> str:
        members = self.members
        live = [m for m in members if m.running and not m.restarting]
        etcd = f"etcd {len(live)}/{len(members)} live" if self.etcd else "datastore RDS"
        nodes = sum(1 for m in self.machines if m.ready)
        return f"{etcd}, {nodes} Ready nodes, Rancher {self.ready_pods(now)}/{self.replicas} Ready"

    # -- what changes it -----------------------------------------------------------------
    def schedule(self, now: float) -> None:
        """The Deployment controller and scheduler: place missing pods, one per node, on
        Ready schedulable nodes; drop pods beyond the replica count (those on the newest
        nodes last, deterministically)."""
        placed = [m for m in self.machines if m.rancher_pod is not None and (m.running or m.node)]
        for m in self.machines:  # a pod on a node that is gone is gone
            if m.rancher_pod is not None and not m.node:
                m.rancher_pod = None
        placed = [m for m in self.machines if m.rancher_pod is not None]
        while len(placed) > self.replicas:
            victim = sorted(placed, key=lambda m: (m.ready, m.rancher_pod is not None and m.rancher_pod <= now, -m.generation))[0]
            victim.rancher_pod = None
            placed.remove(victim)
        free = [m for m in self.machines if m.ready and not m.cordoned and m.rancher_pod is None]
        for m in free[: max(0, self.replicas - len(placed))]:
            m.rancher_pod = now + (self.pod_start_seconds if now > 0 else 0.0)

    def next_generation(self, server: str, later: int = 0) -> int:
        """The generation of the machine that joins as `server`, after `later` other joins of it."""
        previous = [m.generation for m in self.machines if m.server == server]
        return (max(previous) + 1 if previous else 0) + later

    def join(self, server: str, now: float, version: str = "") -> Machine:
        machine = Machine(server, self.next_generation(server), member=self.etcd, version=version,
                          serving=self.etcd or self.datastore_up)
        if self.etcd and self.members and not self.quorum():  # no cluster answers its join: it retries
            machine.node = machine.member = False
            machine.waiting = True
        self.machines.append(machine)
        self.schedule(now)
        return machine

    def terminate(self, machine: Machine, now: float) -> None:
        machine.running = False
        if machine.rancher_pod is not None:
            machine.rancher_pod = None  # lost, not evicted: rescheduled only when the Node goes
        self.schedule(now)

    def drain(self, machine: Machine, now: float) -> Optional[str]:
        """Cordon and evict; returns why the PDB refused, if it did (the drain then waits)."""
        machine.cordoned = True
        if machine.rancher_pod is None:
            return None
        disrupted = self.replicas - self.ready_pods(now)
        if machine.rancher_pod <= now and machine.ready:
            disrupted += 1
        if disrupted > PDB_MAX_UNAVAILABLE:
            return f"evicting Rancher from {machine.key} would leave {self.replicas - disrupted}/{self.replicas} Ready"
        machine.rancher_pod = None
        self.schedule(now)
        return None

    def leave(self, machine: Machine, now: float) -> None:
        """The etcd member is removed and the Node deleted (the ClusterMember's delete)."""
        machine.member = False
        machine.node = False
        machine.rancher_pod = None
        self.schedule(now)


# -- driving it with a plan ---------------------------------------------------------------
@dataclass
class Violation:
    at: float
    step: str
    what: str
    state: str


@dataclass
class Rehearsal:
    cluster: Cluster
    duration: float = 0.0
    seconds_without_quorum: float = 0.0
    seconds_without_rancher: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    broken_after: bool = False  # still without quorum or Rancher when the `up` ends: until someone repairs it
    finished: dict[str, float] = field(default_factory=dict)  # step name -> when it finished (update phase)
    restarts: dict[str, tuple[float, float]] = field(default_factory=dict)  # machine -> an upgrade's restart, from/to
    failed: dict[str, str] = field(default_factory=dict)  # step name -> why it failed the `up`
    # A recovery (offline/recovery_model.py): the cluster starts without quorum or Rancher, which
    # is no violation until it first recovers (quorum and a Ready Rancher pod) at `recovered_at`.
    recovering: bool = False
    recovered_at: Optional[float] = None

    @property
    def ok(self) -> bool:
        return not self.violations


# (kind: "server", "member", "upgrade" or the type; op; resource name) -> seconds. An upgrade
# Job's ops: "start" (created, cordon, image pulled) and "restart" (to the node Ready again).
Durations = Callable[[str, str, str], float]


def default_durations(kind: str, op: str, name: str = "") -> float:
    """Rough seconds per step; benchmarks/day2.py passes the sourced table instead."""
    table = {
        ("server", "create"): 300.0,
        ("server", "delete"): 30.0,
        ("server", "restore"): 60.0,  # cluster-reset from the S3 snapshot, then the restored server started
        ("aws:rds/instance:Instance", "create"): 600.0,
        ("member", "delete"): 90.0,
        (GATE, "create"): 5.0,
        (HELM_RELEASE, "update"): 60.0,
        ("upgrade", "start"): 30.0,
        ("upgrade", "restart"): 95.0,
    }
    return table.get((kind, op), 1.0)


def _kind(step) -> str:
    if is_server(step):
        return "server"
    if step.type == MEMBER:
        return "member"
    return step.type


def _replicas(registration) -> Optional[int]:
    values = (registration.inputs or {}).get("values") or {}
    if registration.type == HELM_RELEASE and (registration.inputs or {}).get("name") == "rancher":
        return int(values.get("replicas", 1))
    return None


def rancher_replicas(run) -> int:
    found = [r for r in (_replicas(reg) for reg in run.registrations) if r is not None]
    return found[0] if found else 1


def cluster_for(run, etcd: bool, pod_start_seconds: float = 30.0) -> Cluster:
    """The cluster a deployed run stands for: every server joined, Rancher spread."""
    servers = {r.name: installed_version(r) for r in run.registrations if is_server(r)}
    return Cluster.running(sorted(servers), etcd=etcd, replicas=rancher_replicas(run), pod_start_seconds=pod_start_seconds,
                           versions=servers)


def rehearse(plan: Plan, new, cluster: Cluster, durations: Durations = default_durations, start: float = 0.0,
             completion: str = suc.SEEN_WHEN_READY, recovering: bool = False) -> Rehearsal:
    """Run the plan's steps against the cluster, in the engine's order and timing.

    `completion`: when system-upgrade-controller sees an upgrade Job complete
    (offline/upgrade_model.py SEEN_WHEN_READY, or the pessimistic SEEN_AT_EXIT). A step that
    fails (the upgrade wait at its bound) fails the `up`: what depends on it does not run,
    nor does the delete phase (the engine stops starting steps after an error).
    `recovering`: the cluster was lost (offline/recovery_model.py) and this `up` recovers it."""
    result = Rehearsal(cluster=cluster, recovering=recovering)
    by_urn = {r.urn: r for r in new.registrations}
    graph = DependencyGraph(new.registrations)
    events: list[tuple[float, int, str, object]] = []
    counter = [0]

    def at(when: float, action: str, payload: object) -> None:
        counter[0] += 1
        heapq.heappush(events, (when, counter[0], action, payload))

    # Update phase: a step starts when every step it depends on has finished.
    update_steps = [s for s in plan.steps if s.phase == "update"]
    finished: dict[str, float] = {}
    joins: list[tuple[float, str, str]] = []  # (when, server, version): servers this plan adds
    upgraded = start  # when the last upgrade Job completed
    held: list[str] = []  # servers whose upgrade Job never finishes
    lost = {m.key for m in cluster.machines if m.node and not m.running}
    passed = float("-inf")  # when the Plan's pass over every node began (none: a node's own Job on joining)
    failed: set[str] = set()  # urns of steps that failed or never ran because one they need failed
    for step in update_steps:
        # (a delete-before-replace's delete is ordered by the plan just before its create)
        needs = graph.dependencies_of(step.urn) if step.urn in graph.by_urn else set()
        if needs & failed:
            failed.add(step.urn)
            continue
        begin = max([finished.get(d, start) for d in needs], default=start)
        length = 0.0 if step.op == "same" else durations(_kind(step), "create" if step.op == "replace" else step.op, step.name)
        if is_server(step) and step.op in ("create", "replace") and recovery.restores(by_urn[step.urn]):
            length += durations("server", "restore", step.name)  # booted, then restores before it starts
        end = begin + length
        if step.type == suc.WAIT and step.op != "same":
            bound = begin + float(by_urn[step.urn].inputs["timeoutSeconds"])
            if upgraded > bound:  # it gives up at its bound, and the `up` fails
                failed.add(step.urn)
                finished[step.urn] = result.finished[step.name] = bound
                result.failed[step.name] = (f"timed out after {bound - begin:g} s waiting for every server at "
                                            f"{by_urn[step.urn].inputs['version']}: {', '.join(held) or 'no Job finished'}")
                continue
            end = max(end, upgraded)  # it waits until every server runs the version
            at(end, "upgraded", by_urn[step.urn].inputs["version"])
        finished[step.urn] = end
        result.finished[step.name] = end
        _effects(step, begin, end, by_urn, at, cluster.pod_start_seconds)
        if is_server(step) and step.op in ("create", "replace"):
            joins.append((end, step.name, installed_version(by_urn[step.urn])))
        if step.type == suc.PLAN and suc.passes_again(step):
            jobs = suc.jobs_at(suc.plan_spec(by_urn[step.urn]), cluster, joins, end, durations, completion)
            for when, action, payload in suc.job_events(jobs):
                at(when, action, payload)
            # The wait needs each node at the version and labelled finished (after postCompleteDelay).
            upgraded, passed = max([upgraded, *(max(job.done, job.complete + spec.post_complete_delay) for spec, job in jobs)]), end
            held = [f"{job.key} {'NotReady, its Job cannot run' if job.key in lost else 'held by its prepare'}"
                    for _, job in jobs if job.done == suc.NEVER]
    plans = [r for r in new.registrations if r.type == suc.PLAN]
    if plans and joins:
        for when, action, payload in suc.job_events(suc.jobs_for_joiners(suc.plan_spec(plans[0]), cluster, joins, passed,
                                                                          durations, completion)):
            at(when, action, payload)
    clock = max(finished.values(), default=start)

    # Delete phase: rounds; each waits for the previous one (none after a failed step).
    deletes = [s for s in plan.steps if s.phase == "delete" and not failed]
    for number in sorted({s.round for s in deletes}):
        length = 0.0
        for step in (s for s in deletes if s.round == number):
            took = 0.0 if step.skipped else durations(_kind(step), "delete", step.name)
            if not step.skipped:
                _effects(step, clock, clock + took, by_urn, at, cluster.pod_start_seconds)
            length = max(length, took)
        clock += length
    result.duration = clock - start
    at(clock, "end", None)

    # Play the events in time order, checking after every moment.
    now = start
    while events:
        when = events[0][0]
        _account(result, now, when)
        now = when
        while events and events[0][0] == when:
            _, _, action, payload = heapq.heappop(events)
            _apply(result, action, payload, when)
        _check(result, now)
    # Pods that were still starting when the last step ended.
    pending = [m.rancher_pod for m in cluster.machines if m.rancher_pod is not None and m.rancher_pod > now]
    _account(result, now, max([now, *pending]))
    result.broken_after = not cluster.quorum() or cluster.ready_pods(max([now, *pending])) < 1
    return result


def _effects(step, begin: float, end: float, by_urn: dict, at, pod_seconds: float) -> None:
    if is_server(step):
        if step.op in ("create", "replace") and recovery.restores(by_urn[step.urn]):
            at(end, "restore", (step, installed_version(by_urn[step.urn])))
        elif step.op in ("create", "replace"):
            at(end, "join", (step, installed_version(by_urn[step.urn])))
        elif step.op == "delete":
            at(begin, "terminate", step)
    elif recovery.names_the_datastore(step) and step.op in ("create", "update", "replace"):
        at(end, "datastore", step)
    elif step.type == MEMBER and step.op == "delete":
        at(begin, "drain", step)
        at(end, "leave", step)
    elif step.type == HELM_RELEASE and step.op in ("update", "replace", "create"):
        replicas = _replicas(by_urn[step.urn]) if step.urn in by_urn else None
        if replicas is not None and step.op == "update" and rolls_rancher(step):
            # The chart's Deployment (templates/deployment.yaml: rollingUpdate maxSurge 1,
            # maxUnavailable 1 with more than one replica; one pod per node, antiAffinity
            # required, so the surge pod has no node): one pod replaced at a time, during
            # the release's step (Pulumi waits for the Deployment's rollout). With more servers
            # than replicas the surge pod does find a free node and two new pods start at
            # once while the rest stay Ready: the same availability, sooner; not modeled.
            for index in range(replicas):
                at(begin + index * pod_seconds, "roll", index)
        if replicas is not None:
            at(end, "scale", replicas)


def rolls_rancher(step) -> bool:
    """A chart version or a value other than `replicas` changes the pod template: a rollout."""
    return any(c.path == "version" or (c.path.startswith("values") and c.path != "values.replicas") for c in step.changes)


def _apply(result: Rehearsal, action: str, payload, now: float) -> None:
    cluster = result.cluster
    if action == "end":
        return
    if action == "roll":
        # Replace the next pod not yet replaced in this rollout: it is NotReady until its
        # successor on the same node is Ready (the previous one is Ready again by now).
        waiting = sorted((m for m in cluster.machines if m.ready and m.rancher_pod is not None and m.rancher_pod <= now),
                         key=lambda m: (m.key in cluster.rolled, m.key))
        if payload == 0:
            cluster.rolled.clear()
        if waiting and waiting[0].key not in cluster.rolled:
            machine = waiting[0]
            cluster.rolled.add(machine.key)
            machine.rancher_pod = now + cluster.pod_start_seconds
            result.log.append(f"{now:7.0f}s Rancher pod on {machine.key} replaced (rollout): {cluster.describe(now)}")
        return
    if action == "scale":
        cluster.replicas = payload
        cluster.schedule(now)
        result.log.append(f"{now:7.0f}s Rancher replicas -> {payload}: {cluster.describe(now)}")
        return
    if action.startswith("job-"):
        suc.play(result, action, *payload, now)
        return
    if action == "upgraded":
        behind = [f"{m.key} runs {m.version}" for m in cluster.machines if m.running and m.node and m.version != payload]
        if behind:
            result.violations.append(Violation(now, "", f"the upgrade wait would not end: {', '.join(behind)}, not {payload}",
                                               cluster.describe(now)))
        return
    if action == "join":
        step, version = payload
        machine = cluster.join(step.name, now, version)
        joined = "waits to join (no etcd cluster has quorum)" if machine.waiting else "joined"
        result.log.append(f"{now:7.0f}s {machine.key} {joined} at {version}: {cluster.describe(now)}")
        return
    if action == "restore":
        step, version = payload
        machine = cluster.join(step.name, now, version)
        problem = recovery.reset(cluster, machine, now)
        if problem:
            result.violations.append(Violation(now, step.name, problem, cluster.describe(now)))
        else:
            result.log.append(f"{now:7.0f}s {machine.key} restored the snapshot (cluster-reset: the only member): "
                              f"{cluster.describe(now)}")
        for joiner in recovery.admit_waiting(cluster, now):
            result.log.append(f"{now:7.0f}s {joiner.key} joined at {joiner.version}: {cluster.describe(now)}")
        return
    if action == "datastore":
        recovery.restore_the_datastore(cluster, now)
        result.log.append(f"{now:7.0f}s the datastore restored, {payload.name} names it; servers read it at boot: "
                          f"{cluster.describe(now)}")
        return
    step = payload
    if action == "terminate":
        machine = cluster.oldest(step.name) if step.replacement else cluster.current(step.name)
        if machine is None:
            return
        cluster.terminate(machine, now)
        machine.instance = False
        result.log.append(f"{now:7.0f}s {machine.key} terminated{' (its Node and etcd member still there)' if machine.node else ''}: "
                          f"{cluster.describe(now)}")
    elif action in ("drain", "leave"):
        server = server_of_member(step.name)
        machine = cluster.oldest(server) if step.replacement else cluster.current(server)
        if machine is None:
            return
        if action == "drain":
            refused = cluster.drain(machine, now)
            if refused:
                result.violations.append(Violation(now, step.name, f"PDB: {refused}", cluster.describe(now)))
            result.log.append(f"{now:7.0f}s {machine.key} cordoned and drained: {cluster.describe(now)}")
        else:
            if cluster.etcd and machine.member and not machine.running:
                result.violations.append(Violation(now, step.name, "the member's machine stopped before it left", cluster.describe(now)))
            cluster.leave(machine, now)
            result.log.append(f"{now:7.0f}s {machine.key} left (etcd member and Node removed): {cluster.describe(now)}")


def _check(result: Rehearsal, now: float) -> None:
    cluster = result.cluster
    if result.recovering and result.recovered_at is None:
        starting = [m.rancher_pod for m in cluster.machines if m.ready and m.rancher_pod is not None]
        if cluster.quorum() and starting:
            result.recovered_at = max(now, min(starting))
        return
    if not cluster.quorum():
        what = "etcd lost quorum" if cluster.etcd else "no server serves the API"
        result.violations.append(Violation(now, "", what, cluster.describe(now)))
    if cluster.ready_pods(now) < 1 and not any(m.rancher_pod is not None and m.rancher_pod > now for m in cluster.machines):
        result.violations.append(Violation(now, "", "no Rancher pod Ready or starting", cluster.describe(now)))


def _account(result: Rehearsal, since: float, until: float) -> None:
    """Add the seconds between two moments in which the cluster had no quorum / no Rancher."""
    if until <= since:
        return
    cluster = result.cluster
    if not cluster.quorum():
        result.seconds_without_quorum += until - since
    # Rancher: count the part of the interval before the first pod becomes Ready.
    if cluster.ready_pods(since) < 1:
        starts = sorted(m.rancher_pod for m in cluster.machines if m.ready and m.rancher_pod is not None and m.rancher_pod > since)
        ready_from = starts[0] if starts else until
        result.seconds_without_rancher += min(until, ready_from) - since
