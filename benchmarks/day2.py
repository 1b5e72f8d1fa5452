"""Day-2 changes rehearsed on the cluster model: modeled duration, seconds without etcd
quorum and seconds without a Ready Rancher pod (target 0), per stack shape.

  python benchmarks/day2.py [--markdown]

Each change is planned with the offline engine (offline/plan.py) from the deployed run to
the edited one and played on offline/cluster_model.py in the engine's order; step times come
from benchmarks/durations.py (SOURCED) plus the day-2 estimates below. A shrink or a grow is
one `pulumi up` per serverCount edit; a rotation is one `pulumi up --replace` per server; a
Kubernetes patch or minor upgrade is one `pulumi up` of a kubernetesVersion edit, whose
system-upgrade-controller Plan the model applies by the controller's rules
(offline/upgrade_model.py).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from durations import SOURCED, Duration, _e, _s, seconds  # noqa: E402

from offline.cluster_model import GATE, HELM_RELEASE, Rehearsal, cluster_for, is_server, rehearse  # noqa: E402
from offline.plan import plan_update  # noqa: E402
from offline.runner import run_stack  # noqa: E402
from offline.upgrade_model import SEEN_AT_EXIT  # noqa: E402

# Day-2 steps the first-boot tables do not have (estimates, none measured here).
DAY2: dict[str, Duration] = {
    "aws:ec2/instance:Instance#delete": _e(
        45, "TerminateInstances, then the provider waits for 'terminated' (provider delete timeout 20 m is an upper bound);"
            " typically 30-60 s; estimate"),
    "phase:drain": _e(
        30, "cordon, evictions, and the evicted pods' graceful stop: terminationGracePeriodSeconds defaults to 30 s"
            " (Kubernetes PodSpec); the Rancher chart 2.14.4 sets none; estimate"),
    "phase:etcd-member-remove": _e(
        5, "the etcd member controller acts on the Node's annotation (MemberRemove, then the Node update), then the"
           " Node delete and its finalizer (k3s pkg/etcd/member_controller.go); estimate"),
    "phase:rancher-pod-ready": _e(
        90, "the evicted Rancher pod's replacement Ready elsewhere: Rancher 2.14.4 chart startupProbe 12 x 10 s ('should"
            " be ready within 2 minutes', values.yaml); the member's delete waits for its budget; estimate: 90 s"),
    # One system-upgrade-controller Job on a server (offline/upgrade_model.py).
    "phase:upgrade-job-start": _e(
        30, "system-upgrade-controller v0.20.1 creates the Job paused, then unpauses it on its next pass over the Plan"
            " (pkg/upgrade/handle_upgrade.go, job.go: seconds); the pod's init containers, the Plan's prepare (`kubectl"
            " wait` for every server Ready: one list and watch when they are) and the cordon (rancher/kubectl:v1.30.3,"
            " job.go defaultKubectlImage), and the pull of rancher/rke2-upgrade or rancher/k3s-upgrade at the new version"
            " (one distribution binary, tens of MB, from Docker Hub); estimate: 30 s"),
    "phase:upgrade-restart-delay": _s(
        5, "the upgrade image SIGTERMs the server process (rancher/rke2-upgrade scripts/upgrade.sh) and systemd starts it"
           " again after RestartSec=5s (rke2 bundle/lib/systemd/system/rke2-server.service at v1.34.10+rke2r1; k3s"
           " install.sh writes the same into k3s.service)"),
}

SHAPES = {
    # shape: (stack, etcd, distribution, shrink counts, grow counts)
    "k3s, nlb": ("dev", False, "k3s", [4, 3, 2], [2, 3]),
    "rke2, nlb": ("prod", True, "rke2", [7, 5, 3], [3, 5]),
    "rke2, nginx": ("staging", True, "rke2", [7, 5, 3], [3, 5]),
}


# A Kubernetes upgrade of each kind: from, to (the build suffix is the distribution's).
UPGRADES = {"patch": ("v1.34.1", "v1.34.2"), "minor": ("v1.34.1", "v1.35.0")}
SUFFIX = {"k3s": "k3s1", "rke2": "rke2r1"}


def step_seconds(distribution: str):
    """(kind, op, name) -> seconds, from the sourced tables."""
    table = {**SOURCED, **DAY2}

    def of(key: str) -> float:
        return seconds(table, key, distribution)

    join = of("aws:ec2/instance:Instance") + of("phase:boot") + of("phase:install") + of("phase:start")
    if distribution == "rke2":  # a joiner finds the registration name, joins as a learner, is promoted
        join += of("phase:join-poll") + of("phase:learner-add") + of("phase:learner-tick")

    def duration(kind: str, op: str, name: str = "") -> float:
        if kind == "upgrade":  # a Job's start; the server's restart into the new version, to the node Ready
            if op == "start":
                return of("phase:upgrade-job-start")
            return of("phase:upgrade-restart-delay") + of("phase:start")
        if kind == "server":
            return join if op == "create" else of("aws:ec2/instance:Instance#delete")
        if kind == "member":
            return of("phase:drain") + of("phase:etcd-member-remove") + of("phase:rancher-pod-ready") if op == "delete" else 1.0
        if kind == GATE:
            return of("phase:gate-poll")
        if kind == HELM_RELEASE:
            return seconds(table, "kubernetes:helm.sh/v3:Release", name)
        return of(kind) if op != "delete" else 1.0

    return duration


@dataclass
class Row:
    shape: str
    change: str
    duration: float
    without_quorum: float
    without_rancher: float
    broken_after: bool
    violations: int


def _diffs():
    from tools.plan import program_dynamic_diffs

    return program_dynamic_diffs()


def _run(stack: str, servers: int, version: str | None = None):
    overrides: dict[str, object] = {"rancher-ha:serverCount": servers}
    if version:
        overrides["rancher-ha:kubernetesVersion"] = version
    return run_stack(stack, overrides=overrides)


def _row(shape: str, change: str, results: list[Rehearsal]) -> Row:
    return Row(shape, change, sum(r.duration for r in results), sum(r.seconds_without_quorum for r in results),
               sum(r.seconds_without_rancher for r in results), any(r.broken_after for r in results),
               sum(len(r.violations) for r in results))


def count_change(shape: str, counts: list[int]) -> Row:
    stack, etcd, distribution, _, _ = SHAPES[shape]
    durations = step_seconds(distribution)
    old = _run(stack, counts[0])
    cluster = cluster_for(old, etcd=etcd, pod_start_seconds=DAY2["phase:rancher-pod-ready"].seconds)
    results: list[Rehearsal] = []
    for count in counts[1:]:
        new = _run(stack, count)
        start = sum(r.duration for r in results)
        results.append(rehearse(plan_update(old, new, dynamic_diffs=_diffs()), new, cluster, durations, start=start))
        old = new
    return _row(shape, " -> ".join(str(c) for c in counts) + " servers", results)


def rotation(shape: str, servers: int) -> Row:
    stack, etcd, distribution, _, _ = SHAPES[shape]
    durations = step_seconds(distribution)
    run = _run(stack, servers)
    cluster = cluster_for(run, etcd=etcd, pod_start_seconds=DAY2["phase:rancher-pod-ready"].seconds)
    results: list[Rehearsal] = []
    for instance in sorted((r for r in run.registrations if is_server(r)), key=lambda r: r.name):
        p = plan_update(run, run, dynamic_diffs=_diffs(), replace=[instance.urn])
        results.append(rehearse(p, run, cluster, durations, start=sum(r.duration for r in results)))
    return _row(shape, f"rotate {servers} servers (one `up --replace` each)", results)


def kubernetes_upgrade(shape: str, kind: str, servers: int) -> Row:
    """One `pulumi up` of a kubernetesVersion edit: the Plan's Jobs, server by server, with
    the pessimistic assumption that the controller sees a Job complete when its upgrade
    container exits (offline/upgrade_model.py SEEN_AT_EXIT): the Plan's prepare then holds
    the next Job until every server is Ready, so the figures are those of the optimistic
    assumption too."""
    stack, etcd, distribution, _, _ = SHAPES[shape]
    before, after = (f"{version}+{SUFFIX[distribution]}" for version in UPGRADES[kind])
    old, new = _run(stack, servers, before), _run(stack, servers, after)
    cluster = cluster_for(old, etcd=etcd, pod_start_seconds=DAY2["phase:rancher-pod-ready"].seconds)
    result = rehearse(plan_update(old, new, dynamic_diffs=_diffs()), new, cluster, step_seconds(distribution),
                      completion=SEEN_AT_EXIT)
    low, high = UPGRADES[kind]
    return _row(shape, f"Kubernetes {kind} upgrade {low} -> {high} ({servers} servers)", [result])


def rows(shapes=None) -> list[Row]:
    found = []
    for shape in shapes or SHAPES:
        _, _, _, shrink, grow = SHAPES[shape]
        found += [count_change(shape, shrink), count_change(shape, grow), rotation(shape, shrink[-1])]
        found += [kubernetes_upgrade(shape, kind, shrink[-1]) for kind in UPGRADES]
    return found


def _clock(value: float) -> str:
    minutes, rest = divmod(round(value), 60)
    return f"{minutes}m{rest:02d}s"


def render(found: list[Row], markdown: bool) -> str:
    header = ["stack shape", "change", "modeled duration", "s without quorum", "s without a Ready Rancher", "after the up"]
    lines = []
    if markdown:
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in found:
        after = "BROKEN until repaired" if row.broken_after else "whole"
        cells = [row.shape, row.change, _clock(row.duration), f"{row.without_quorum:g}", f"{row.without_rancher:g}", after]
        lines.append("| " + " | ".join(cells) + " |" if markdown else "  ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES))
    args = parser.parse_args(argv)
    found = rows(args.shape)
    print(render(found, args.markdown))
    return 0 if all(r.without_quorum == 0 and r.without_rancher == 0 and not r.broken_after and not r.violations for r in found) else 1


if __name__ == "__main__":
    sys.exit(main())
