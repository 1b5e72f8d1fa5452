"""system-upgrade-controller applying the program's server Plan, on the cluster model.

A `kubernetesVersion` edit updates the `upgrade.cattle.io/v1` Plan (components/upgrades.py);
system-upgrade-controller (SUC) v0.20.1, the release the program deploys, then runs one Job
per node by these rules, read in rancher/system-upgrade-controller at tag v0.20.1 (commit
f1362a3fe1a8d55a0c65847f7c2779909dc7ec95):

- Which nodes (pkg/upgrade/plan/plan.go `SelectConcurrentNodes`, `NodeSelector`): those
  the Plan's nodeSelector matches (plus a `kubernetes.io/hostname` label) whose label
  `plan.upgrade.cattle.io/<plan>` is not the Plan's latest hash. The hash (`DigestStatus`)
  is sha224 of `status.latestVersion` (spec.version with `+` made `-`, `MungeVersion`) and
  `spec.serviceAccountName` (plus annotated fields and secrets, none here; not `spec.prepare`
  nor any other spec field): a new version selects every node again, a node already at that
  version too.
- How many at once: nodes still in `status.applying` stay selected, and new ones are added
  up to `spec.concurrency`; a Job's completion re-enqueues the Plan (pkg/upgrade/
  handle_batch.go), which frees its slot. So with concurrency 1 the next node's Job is
  created only once the previous Job completed.
- In what order: the candidates sorted by sha256(node UID, plan UID, latest hash), not by
  name. The model hashes the machine's key, the plan's name and the version instead of the
  UIDs (which it does not have): the same kind of fixed, name-independent order.
- The Job (pkg/upgrade/job/job.go `New`): first the Plan's `prepare`, as an init container
  ("first, we prepare"); then an init container that drains the node when `spec.drain` is
  set (`kubectl drain`, which retries an eviction the PodDisruptionBudget refuses), else
  cordons it when `spec.cordon`; then the upgrade container, the
  `rancher/rke2-upgrade` / `rancher/k3s-upgrade` image at the version (`scripts/upgrade.sh`
  of rancher/rke2-upgrade and of k3s-io/k3s-upgrade, read at their newest stored versions,
  not at a tag: it compares the image's binary with the running one; if they are the same it
  exits at once, otherwise it copies the new binary and SIGTERMs the server
  process, and systemd starts it again, `Restart=always`, rke2 bundle/lib/systemd/system/
  rke2-server.service at v1.34.10+rke2r1).
- The prepare, read from the registered Plan (`read_prepare`): the model rehearses only
  `kubectl wait --for=condition=Ready node -l <the Plan's nodeSelector> --timeout=<t>`
  (components/upgrades.py `every_server_ready`): nothing on the node happens before every
  server node is Ready. Any other prepare is refused, not misread; no prepare, no wait.
- A Node whose machine stopped (a lost server) is still selected: its Job's pod never runs
  and holds its slot, and with the prepare every other Job waits while it is NotReady, so
  the KubernetesUpgradeWait gives up at its bound (`timeoutSeconds`) and the `up` fails
  (Rehearsal.failed); what depends on the wait does not run.
- On completion (pkg/upgrade/handle_batch.go): the node gets the hash label and is made
  schedulable again (when the Plan cordons or drains).
- A node that appears enqueues the Plan (pkg/upgrade/handle_core.go): a new server has no
  plan label, so it gets a Job too (which finds its binary in place).

The program's Plan cordons and does not drain: the Rancher pod stays on its node and is
not Ready while the node restarts, and the other replicas serve. A Plan with `drain` is
not modeled (the drain's retries would move every later Job) and is refused.

What the model assumes beyond the source: during its restart a server's Node is NotReady,
its etcd member is down (still a member) and its Rancher pod is not Ready; the restart
ends when the node is Ready again with the new kubelet version. When SUC sees the Job
complete, which frees its slot for the next node, is an explicit option of `rehearse`:
- SEEN_WHEN_READY (the default): when the restarted node is Ready. The upgrade container
  exits right after the SIGTERM, and the kubelet that would report its success dies with
  the server process (RKE2 starts it with Pdeathsig SIGKILL, pkg/executor/staticpod/
  command_linux.go; K3s runs it in-process), so the restarted kubelet reports it.
- SEEN_AT_EXIT (pessimistic): when the upgrade container exits, at the SIGTERM: the old
  kubelet reported it before it died, or the restarted kubelet reported it through another
  server's API before the local etcd member was back. SUC then creates the next node's Job
  at once. Without a prepare that Job restarted the next RKE2 server ~30 s after the
  previous one's SIGTERM, and 3 servers spent ~95 s without quorum (benchmark figures).
- SEEN_AT_EXIT_READY_STALE (most pessimistic): as SEEN_AT_EXIT, and the restarting Node
  keeps looking Ready until kube-controller-manager's node monitor grace period has passed
  (its kubelet is killed with the server process and posts nothing): a prepare that ran
  meanwhile would pass. The Plan's postCompleteDelay (60 s, longer than that period plus a
  monitor period) holds the next Job until the restarting node is back or seen NotReady.

The race is closed in the model under all three: the Plan's prepare holds the next Job's cordon
and upgrade until every server Node is Ready again (tests/test_day2_upgrades.py). What the
model simplifies: the prepare passes the moment every server is Ready (a real attempt
gives up after its timeout, the Job retries it within its deadline, 900 s, and after a
failed Job SUC waits for its TTL, 900 s, before a new one); a joiner's own Job does not
wait for the main pass's restarts (it restarts nothing). What cannot be verified here and
is not closed by the prepare in a real cluster:
- The Job's deadline (900 s, the release's ConfigMap) counts the prepare's wait too: a
  prepare that passes late leaves little time for the cordon, the image pull and the
  upgrade; if the deadline ends the Job after its cordon, the node stays cordoned until SUC
  creates a new Job after the failed one's TTL (900 s), which completes and uncordons it.
  Not modeled (the model's prepare passes the moment every server is Ready).
- The grace period the delay must outlast: 50 s by default (40 s in older releases,
  kubernetes/kubernetes#127352); RKE2 and K3s leave kube-controller-manager's default. A
  cluster configured with a longer one needs a longer delay.
- RKE2's etcd member being healthy when its Node is Ready. The member is a static pod the
  restarted kubelet replaces when the new version's manifest differs; the etcd pod has no
  readiness probe (rke2 pkg/podtemplate/spec.go at v1.34.10+rke2r1, commit d419f09226d5:
  liveness and startup on `/health?serializable=true`, a local check), so waiting for it
  says nothing more than Node Ready. The kube-apiserver pod's readiness (`/readyz`, through
  its local etcd member) would, but rke2 removes that manifest at start
  (pkg/executor/staticpod/staticpod.go `APIServer`), so a selector wait can pass on the
  pods that remain; counting them needs a shell in the prepare image (not checked here)
  and pods watch, which the Job's service account lacks. Not done: stated instead.
K3s on RDS has no etcd member: its Node Ready after the restart is its API back.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Optional, Sequence

if TYPE_CHECKING:
    from .cluster_model import Cluster, Durations, Machine, Rehearsal

PLAN = "kubernetes:upgrade.cattle.io/v1:Plan"
WAIT = "pulumi-python:dynamic/rancher-ha:KubernetesUpgradeWait"
# The Plan fields whose change makes a new hash (DigestStatus), so a new pass over the nodes.
HASHED = ("spec.version", "spec.serviceAccountName")


# When SUC sees a Job complete, which frees its concurrency slot for the next node:
SEEN_WHEN_READY = "when the restarted node is Ready"  # the restarted kubelet reports the pod's success
SEEN_AT_EXIT = "when the upgrade container exits"  # at the SIGTERM: the old kubelet reported it before it died
# SEEN_AT_EXIT, and the restarting node still shows Ready until the node lifecycle controller
# marks it NotReady: its kubelet dies without saying so, and the Node's Ready condition turns
# only after kube-controller-manager's --node-monitor-grace-period (50 s; 40 s in older
# releases; kubernetes/kubernetes#127352) plus a --node-monitor-period (5 s). A restart shorter
# than that is never seen NotReady at all. The most pessimistic assumption the model takes.
SEEN_AT_EXIT_READY_STALE = "when the upgrade container exits, and the node looks Ready until the grace period"
NOT_READY_SEEN_AFTER = 50.0 + 5.0


@dataclass(frozen=True)
class Prepare:
    """A `spec.prepare` that waits until every selected node is Ready (`kubectl wait
    --for=condition=Ready node -l <selector> --timeout=<t>`): the Job's first init container,
    so nothing on the node (cordon, upgrade) happens before it passes."""
    selector: str
    timeout: float  # seconds, per attempt: the pod then fails and the Job retries it (its backoff, its deadline)


@dataclass(frozen=True)
class PlanSpec:
    name: str
    version: str
    concurrency: int
    cordon: bool
    prepare: Optional[Prepare] = None
    # spec.postCompleteDelay: after a Job is seen complete, SUC labels the node (plan
    # finished) and frees the slot for the next node only once this much has passed
    # (pkg/upgrade/handle_batch.go at v0.20.1).
    post_complete_delay: float = 0.0


def label_selector(node_selector: dict) -> str:
    """A Plan's nodeSelector as a kubectl label selector (`key=value`, `key in (a,b)`)."""
    terms = [f"{key}={value}" for key, value in sorted((node_selector.get("matchLabels") or {}).items())]
    for expression in node_selector.get("matchExpressions") or []:
        values = expression.get("values") or []
        if expression.get("operator") == "In" and len(values) == 1:
            terms.append(f"{expression['key']}={values[0]}")
        elif expression.get("operator") == "In":
            terms.append(f"{expression['key']} in ({','.join(values)})")
        elif expression.get("operator") == "Exists":
            terms.append(expression["key"])
        else:
            raise NotImplementedError(f"nodeSelector operator {expression.get('operator')!r}")
    return ",".join(terms)


def _seconds(value: str) -> float:
    found = re.fullmatch(r"(\d+)(s|m|h)", value)
    if not found:
        raise NotImplementedError(f"kubectl --timeout={value}: the model reads whole seconds, minutes or hours")
    return float(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2)]


def read_prepare(name: str, spec: dict) -> Optional[Prepare]:
    """The Plan's prepare as the model rehearses it, read from the registered spec. Only a
    `kubectl wait` for Ready on exactly the nodes the Plan selects (every server) is
    rehearsed; any other prepare is refused, not misread."""
    prepare = spec.get("prepare")
    if prepare is None:
        return None
    args = list(prepare.get("command") or []) + list(prepare.get("args") or [])
    if args[:1] == ["kubectl"]:
        args = args[1:]
    options = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("--") and "=" in a}
    selector = args[args.index("-l") + 1] if "-l" in args[:-1] else options.get("--selector")
    positional = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "-l")]
    servers = label_selector(spec.get("nodeSelector") or {})
    if (positional != ["wait", "node"] and positional != ["wait", "nodes"]) or options.get("--for") != "condition=Ready" \
            or selector != servers or "--timeout" not in options:
        raise NotImplementedError(f"{name}: the model rehearses a prepare that runs `kubectl wait --for=condition=Ready node"
                                  f" -l {servers} --timeout=<t>` (every server Ready), not {args}")
    return Prepare(selector=selector, timeout=_seconds(options["--timeout"]))


def plan_spec(registration) -> PlanSpec:
    """The Plan as the program registered it."""
    inputs = registration.inputs or {}
    spec = inputs.get("spec") or {}
    if spec.get("drain") is not None:
        raise NotImplementedError(f"{registration.name}: the model rehearses cordon-only Plans; a drain's eviction retries"
                                  " (kubectl drain, through the PodDisruptionBudget) would move every later Job")
    return PlanSpec(
        name=(inputs.get("metadata") or {}).get("name", registration.name),
        version=spec["version"],
        # No default: an absent concurrency is 0, and SelectConcurrentNodes then selects no node.
        concurrency=int(spec.get("concurrency", 0)),
        cordon=bool(spec.get("cordon", False)),
        prepare=read_prepare(registration.name, spec),
        post_complete_delay=_seconds(spec["postCompleteDelay"]) if spec.get("postCompleteDelay") else 0.0,
    )


def passes_again(step) -> bool:
    """Whether the plan's step of the Plan makes SUC pass over the nodes again (a new hash)."""
    if step.op in ("create", "replace"):
        return True
    return step.op == "update" and any(change.path in HASHED for change in step.changes)


@dataclass(frozen=True)
class UpgradeTimes:
    start: float  # the Job created and its pod started on the node: cordon, the upgrade image pulled
    restart: float  # the server process restarted with the new binary, to the node Ready again


@dataclass(frozen=True)
class Job:
    key: str  # the machine
    start: float  # the Job created (its slot taken)
    restart: Optional[float]  # when the server process is killed; None: the binary was already in place
    done: float  # the node Ready again at the version (inf: never, in this model)
    prepared: float = 0.0  # the prepare passed and the node is cordoned (inf: never)
    complete: float = 0.0  # when SUC sees the Job complete and frees its slot


NEVER = math.inf


def order(spec: PlanSpec, keys: Sequence[str]) -> list[str]:
    return sorted(keys, key=lambda key: hashlib.sha256((key + spec.name + spec.version).encode()).hexdigest())


def _all_ready_from(moment: float, restarts: Sequence[tuple[float, float]], lost: bool, unseen: float = 0.0) -> float:
    """The first moment from `moment` on at which no node is seen NotReady (and none is
    lost): a restarting node is seen NotReady from `unseen` seconds after its kill until it
    is back."""
    if lost:
        return NEVER
    changed = True
    while changed:
        changed = False
        for killed, back in restarts:
            if killed + unseen <= moment < back:
                moment, changed = back, True
    return moment


def schedule(spec: PlanSpec, nodes: Sequence[tuple[str, str]], begin: float, times: UpgradeTimes,
             completion: str = SEEN_WHEN_READY, lost: Collection[str] = ()) -> list[Job]:
    """The Jobs SUC runs from `begin` over `nodes` ((machine key, running version)), at most
    `spec.concurrency` at a time, each slot taking the next node once its Job is seen complete
    (`completion`: SEEN_WHEN_READY or SEEN_AT_EXIT). A node in `lost` (its machine stopped,
    its Node still there, NotReady) gets a Job whose pod never runs: it holds its slot. With
    the Plan's prepare, a Job cordons and upgrades only once every selected node is Ready."""
    if completion not in (SEEN_WHEN_READY, SEEN_AT_EXIT, SEEN_AT_EXIT_READY_STALE):
        raise ValueError(f"completion: {completion!r}")
    unseen = NOT_READY_SEEN_AFTER if completion == SEEN_AT_EXIT_READY_STALE else 0.0
    running = dict(nodes)
    if spec.concurrency < 1:
        return []
    slots = [begin] * spec.concurrency
    jobs: list[Job] = []
    restarts: list[tuple[float, float]] = []
    for key in order(spec, list(running)):
        start = heapq.heappop(slots)
        prepared = start
        if key in lost:
            prepared = NEVER
        elif spec.prepare is not None:
            prepared = _all_ready_from(start, restarts, bool(lost), unseen)
        if prepared == NEVER:
            jobs.append(Job(key, start, None, NEVER, NEVER, NEVER))
        elif running[key] == spec.version:
            done = prepared + times.start
            jobs.append(Job(key, start, None, done, prepared, done))
        else:
            killed = prepared + times.start
            done = killed + times.restart
            restarts.append((killed, done))
            jobs.append(Job(key, start, killed, done, prepared, done if completion == SEEN_WHEN_READY else killed))
        # The slot is free, and the node labelled as finished, after postCompleteDelay.
        heapq.heappush(slots, jobs[-1].complete + spec.post_complete_delay)
    return sorted(jobs, key=lambda job: (job.start, job.key))


def job_start(spec: PlanSpec, machine: "Machine") -> None:
    """The Job's init container cordons the node."""
    if spec.cordon:
        machine.cordoned = True


def job_restart(cluster: "Cluster", machine: "Machine", now: float) -> None:
    machine.restarting = True
    cluster.schedule(now)


def job_done(cluster: "Cluster", spec: PlanSpec, machine: "Machine", now: float) -> None:
    """The node runs the new version, is Ready and (when the Plan cordons) schedulable again."""
    machine.restarting = False
    machine.version = spec.version
    if spec.cordon:
        machine.cordoned = False
    cluster.schedule(now)


# -- on the cluster model, driven by offline/cluster_model.py `rehearse` ----------------------
Joins = Sequence[tuple[float, str, str]]  # servers a plan adds: when, the server, the version it installs


def joined(cluster: "Cluster", joins: Joins) -> list[tuple[float, str, str]]:
    """(when, machine key, version) of the machines the joins will add."""
    found, earlier = [], {}
    for when, server, version in sorted(joins):
        found.append((when, f"{server}#{cluster.next_generation(server, earlier.get(server, 0))}", version))
        earlier[server] = earlier.get(server, 0) + 1
    return found


def _times(spec: PlanSpec, durations: "Durations") -> UpgradeTimes:
    return UpgradeTimes(durations("upgrade", "start", spec.name), durations("upgrade", "restart", spec.name))


def jobs_at(spec: PlanSpec, cluster: "Cluster", joins: Joins, begin: float, durations: "Durations",
            completion: str = SEEN_WHEN_READY) -> list[tuple[PlanSpec, Job]]:
    """The Jobs over the servers that are nodes when the Plan gets a new hash at `begin`: those
    with a Node now (a stopped machine's Node too: SUC selects it, its Job's pod never runs)
    and those the plan joined before."""
    nodes = [(m.key, m.version) for m in cluster.machines if m.node]
    lost = {m.key for m in cluster.machines if m.node and not m.running}
    nodes += [(key, version) for when, key, version in joined(cluster, joins) if when <= begin]
    return [(spec, job) for job in schedule(spec, nodes, begin, _times(spec, durations), completion, lost)]


def jobs_for_joiners(spec: PlanSpec, cluster: "Cluster", joins: Joins, after: float,
                     durations: "Durations", completion: str = SEEN_WHEN_READY) -> list[tuple[PlanSpec, Job]]:
    """A node that joins after the Plan's pass began (or with no pass in this `up`) has no
    plan label: a node event enqueues the Plan (pkg/upgrade/handle_core.go) and it gets its
    own Job, from the moment it joins (joiners of one moment share the concurrency)."""
    late = [(when, key, version) for when, key, version in joined(cluster, joins) if when > after]
    jobs = []
    for moment in sorted({when for when, _, _ in late}):
        nodes = [(key, version) for when, key, version in late if when == moment]
        jobs += [(spec, job) for job in schedule(spec, nodes, moment, _times(spec, durations), completion)]
    return jobs


def job_events(jobs: Sequence[tuple[PlanSpec, Job]]) -> list[tuple[float, str, tuple[PlanSpec, Job]]]:
    events = []
    for spec, job in jobs:
        if job.prepared > job.start:
            events.append((job.start, "job-created", (spec, job)))
        if job.prepared == NEVER:
            continue
        events.append((job.prepared, "job-start", (spec, job)))
        if job.restart is not None:
            events.append((job.restart, "job-restart", (spec, job)))
        events.append((job.done, "job-done", (spec, job)))
    return events


def play(result: "Rehearsal", action: str, spec: PlanSpec, job: Job, now: float) -> None:
    cluster = result.cluster
    machine = cluster.machine(job.key)
    if machine is not None and action == "job-created":
        why = "its prepare waits for every server Ready" if machine.running else "its pod cannot run (the machine is stopped)"
        result.log.append(f"{now:7.0f}s {job.key} gets a Job; {why}: {cluster.describe(now)}")
        return
    if machine is None or not machine.running or machine.waiting:  # a joiner still waiting has no Node
        return
    if action == "job-start":
        job_start(spec, machine)
        result.log.append(f"{now:7.0f}s {job.key} {'cordoned' if spec.cordon else 'not cordoned'} by the upgrade Job: "
                          f"{cluster.describe(now)}")
    elif action == "job-restart":
        job_restart(cluster, machine, now)
        result.restarts[job.key] = (now, job.done)
        result.log.append(f"{now:7.0f}s {job.key} restarts into {spec.version}: {cluster.describe(now)}")
    else:
        restarted = machine.restarting
        job_done(cluster, spec, machine, now)
        result.log.append(f"{now:7.0f}s {job.key} {'back' if restarted else 'already'} at {spec.version}"
                          f"{', uncordoned' if spec.cordon else ''}: {cluster.describe(now)}")
