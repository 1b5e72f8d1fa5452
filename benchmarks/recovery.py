"""Modeled recovery time of each runbook in docs/disaster-recovery.md, and the recovery
point each backup schedule gives.

Recovery time: from the runbook's first command to a Ready API with every server a Ready
node (what the readiness gate waits for), the critical path of its steps. Durations come
from benchmarks/durations.py (each with its source) and, for what only a restore does,
from RESTORE below (each with its source or marked an estimate). The time to notice the
loss and decide is not in it. Nothing here was measured on AWS.

The same runbooks on the model of the running cluster (offline/cluster_model.py,
offline/recovery_model.py; tests/test_recovery_rehearsal.py): the offline plan of each
runbook's `pulumi up` played from the lost cluster with the day-2 step times
(benchmarks/day2.py) plus RESTORE's: the moment etcd has quorum (or a K3s server serves)
and a Rancher pod is Ready, and when the last `up` ends (the old servers' member deletes
and instances included). Printed beside the sum of steps; they differ in what each
simplifies (the steps count the joiners' learner promotion after the restore, the model
lets the waiting joiners join at the restore and counts Rancher's pod start).

Recovery point: the most recent change a restore can lose, at worst, for each schedule
the stack has (RKE2 etcd snapshots by their cron, RDS automated backups and
point-in-time restore); rancher-backup's schedule comes with the rancher-backup work
(branch h/backup) and is reported as not on this branch.

    python benchmarks/recovery.py [--stack NAME]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from durations import SOURCED, Duration, _e, _s, seconds  # noqa: E402

RDS_USER_GUIDE = "docs.aws.amazon.com/AmazonRDS/latest/UserGuide"
RESTORE: dict[str, Duration] = {
    "phase:rds-restore-snapshot": _e(
        seconds(SOURCED, "aws:rds/instance:Instance", "single-az"),
        f"[{RDS_USER_GUIDE}/USER_RestoreFromSnapshot.html] a restore creates a new instance, usable once 'available'"
        " while its data loads from S3 in the background ('lazy loading'), so the time to available does not grow with"
        " the data size the way a copy would (first reads of cold blocks are slower); AWS publishes no time per GB."
        " Estimate: the time of a create (aws:rds/instance:Instance#single-az)",
    ),
    "phase:rds-log-replay": _e(
        300,
        f"[{RDS_USER_GUIDE}/USER_PIT.html] a point-in-time restore starts from the last automated backup and"
        " replays the transaction logs up to the time asked; AWS publishes no rate. Estimate: 5 min for up to a day"
        " of a K3s datastore's writes (a few MB/h)",
    ),
    "phase:etcd-restore": _e(
        30,
        "rke2 server --cluster-reset --cluster-reset-restore-path with etcd-s3: download the snapshot from S3 in the"
        " region (a Rancher management cluster's snapshot is tens to a few hundred MB), restore it into a new data"
        " dir and reset the membership (k3s pkg/etcd/etcd.go Restore), then exit; estimate",
    ),
    "phase:etcd-reset": _e(
        20,
        "rke2 server --cluster-reset on a surviving server (no download): stop, reset the membership, exit; estimate",
    ),
    "phase:ssm-session": _e(
        10,
        "aws ssm start-session to a shell on the node (the agent is already registered); estimate",
    ),
}
TABLE: Mapping[str, Duration] = {**SOURCED, **RESTORE}

# Recovery points (seconds lost at worst).
PITR_RPO_S = 5 * 60  # [USER_PIT.html] "RDS uploads transaction logs for DB instances to Amazon S3 every five minutes"
RDS_SNAPSHOT_RPO_S = 24 * 3600  # automated backups run once a day, in the backup window


@dataclass(frozen=True)
class Step:
    what: str
    key: str  # a key of TABLE
    variant: Optional[str] = None
    times: int = 1

    @property
    def table_key(self) -> str:
        return f"{self.key}#{self.variant}" if self.variant else self.key

    def seconds(self) -> float:
        # No silent fallback to the table's "default" entry.
        return TABLE[self.table_key].seconds * self.times


def server_boot(distribution: str) -> list[Step]:
    """A new server: created, boots, installs, starts (egress exists: the NAT is up)."""
    return [
        Step("EC2 instance created", "aws:ec2/instance:Instance"),
        Step("first boot (cloud-init, snapd seeded)", "phase:boot"),
        Step(f"{distribution} and the AWS CLI installed, secrets read", "phase:install", distribution),
    ]


def join(distribution: str, learners_before: int = 0) -> list[Step]:
    if distribution == "k3s":
        return []  # K3s servers share the datastore: nobody to join
    steps = [Step("registration /ping answers", "phase:join-poll"), Step("etcd learner added", "phase:learner-add"),
             Step("promoted by the leader", "phase:learner-tick")]
    if learners_before:
        steps.append(Step("waits for the learner before it (one at a time)", "phase:learner-tick", times=learners_before))
    return steps


def runbooks(distribution: str) -> dict[str, list[Step]]:
    start = Step(f"{distribution} started, API and node Ready", "phase:start", distribution)
    gate = Step("the gate sees every server Ready", "phase:gate-poll")
    books: dict[str, list[Step]] = {
        "one server lost": [*server_boot(distribution), *join(distribution), start, gate],
    }
    if distribution == "rke2":
        books["quorum lost"] = [
            Step("shell on the survivor", "phase:ssm-session"),
            Step("cluster-reset on the survivor", "phase:etcd-reset"),
            Step("rke2 restarted on it", "phase:start", "rke2"),
            # Then `pulumi up --replace` of the lost two: they boot in parallel; the second learner waits.
            *server_boot("rke2"),
            *join("rke2", learners_before=1),
            Step("the last joiner started and Ready", "phase:start", "rke2"),
            gate,
        ]
        books["whole cluster lost"] = [
            *server_boot("rke2"),
            Step("snapshot fetched from S3 and restored (cluster-reset)", "phase:etcd-restore"),
            Step("restored first server started", "phase:start", "rke2"),
            # Joiners booted beside it and wait at /ping; two learners, one at a time.
            *join("rke2", learners_before=1),
            Step("the last joiner started and Ready", "phase:start", "rke2"),
            gate,
        ]
    else:
        for name, restore in (("datastore lost (snapshot)", [Step("RDS restored from the snapshot", "phase:rds-restore-snapshot")]),
                              ("datastore lost (point in time)", [Step("RDS restored from the last automated backup", "phase:rds-restore-snapshot"),
                                                                  Step("transaction logs replayed", "phase:rds-log-replay")])):  # noqa: E501
            books[name] = [
                *restore,
                Step("DSN parameter updated", "aws:ssm/parameter:Parameter"),
                # Second `up`: every server replaced, in parallel.
                *server_boot("k3s"),
                start,
                gate,
            ]
    return books


def model_durations(distribution: str, point_in_time: bool = False):
    """The day-2 step times (benchmarks/day2.py) plus what only a restore does."""
    from day2 import step_seconds

    base = step_seconds(distribution)
    rds = TABLE["phase:rds-restore-snapshot"].seconds + (TABLE["phase:rds-log-replay"].seconds if point_in_time else 0.0)

    def duration(kind: str, op: str, name: str = "") -> float:
        if kind == "server" and op == "restore":  # after its boot: cluster-reset from S3, then the service starts
            return TABLE["phase:etcd-restore"].seconds + TABLE["phase:start#rke2"].seconds
        if kind == "aws:rds/instance:Instance" and op == "create":
            return rds
        return base(kind, op, name)

    return duration


def modeled(stack: str, distribution: str) -> dict[str, tuple[float, float]]:
    """runbook -> (seconds to quorum and a Ready Rancher pod, seconds to the end of its last `up`)."""
    from day2 import DAY2

    from offline.cluster_model import cluster_for, is_server, rehearse
    from offline.plan import plan_update
    from offline.recovery_model import lose_every_server, lose_the_datastore
    from offline.runner import run_stack
    from tools.plan import program_dynamic_diffs

    diffs, pods = program_dynamic_diffs(), DAY2["phase:rancher-pod-ready"].seconds

    def servers(run) -> list[str]:
        return [r.urn for r in run.registrations if is_server(r)]

    found: dict[str, tuple[float, float]] = {}
    old = run_stack(stack)
    if distribution == "rke2":
        new = run_stack(stack, overrides={"rancher-ha:etcdRestoreSnapshot": "etcd-snapshot-modeled-1733550000"})
        cluster = cluster_for(old, etcd=True, pod_start_seconds=pods)
        lose_every_server(cluster)
        result = rehearse(plan_update(old, new, dynamic_diffs=diffs, replace=servers(new)), new, cluster,
                          model_durations("rke2"), recovering=True)
        found["whole cluster lost"] = (result.recovered_at, result.duration) if result.ok else (float("nan"),) * 2
        return found
    for name, restore in (("datastore lost (snapshot)", {"rancher-ha:dbRestoreFromSnapshot": "rds:modeled"}),
                          ("datastore lost (point in time)", {"rancher-ha:dbRestoreSourceInstance": "modeled",
                                                              "rancher-ha:dbRestoreTime": "latest"})):
        new = run_stack(stack, overrides={**restore, "rancher-ha:dbReplaceDatastore": True,
                                          "rancher-ha:protectStatefulResources": False})
        cluster = cluster_for(old, etcd=False, pod_start_seconds=pods)
        lose_the_datastore(cluster)
        durations = model_durations("k3s", point_in_time="dbRestoreTime" in str(restore))
        first = rehearse(plan_update(old, new, dynamic_diffs=diffs), new, cluster, durations, recovering=True)
        second = rehearse(plan_update(new, new, dynamic_diffs=diffs, replace=servers(new)), new, cluster, durations,
                          start=first.duration, recovering=True)
        ok = first.ok and second.ok and second.recovered_at is not None
        found[name] = (second.recovered_at, first.duration + second.duration) if ok else (float("nan"),) * 2
    return found


def total(steps: Sequence[Step]) -> float:
    return sum(step.seconds() for step in steps)


# ------------------------------------------------------------------ recovery points
def _field_values(field: str, low: int, high: int) -> Optional[list[int]]:
    values: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-", 1))
        else:
            start = end = int(part)
            if step != 1:
                end = high
        values.update(range(start, end + 1, step))
    return sorted(values)


def cron_worst_gap_seconds(expression: str) -> Optional[float]:
    """The longest time between two runs of a daily-repeating cron (minute and hour
    fields; day, month and weekday '*'). None when the schedule is not daily."""
    minute, hour, day, month, weekday = expression.split()
    if (day, month, weekday) != ("*", "*", "*"):
        return None
    minutes = _field_values(minute, 0, 59)
    hours = _field_values(hour, 0, 23)
    runs = sorted(h * 60 + m for h in hours for m in minutes)
    gaps = [b - a for a, b in zip(runs, runs[1:])] + [runs[0] + 24 * 60 - runs[-1]]
    return max(gaps) * 60.0


def recovery_points(settings) -> list[tuple[str, str]]:
    points: list[tuple[str, str]] = []
    if settings.distribution == "rke2":
        gap = cron_worst_gap_seconds(settings.etcd_snapshot_schedule)
        where = "S3" if settings.etcd_snapshot_s3 else "the servers' own disks only (lost with them)"
        worst = minutes(gap) if gap is not None else "not modeled (schedule is not daily)"
        points.append((f"etcd snapshots `{settings.etcd_snapshot_schedule}` to {where}",
                       f"up to {worst}" + ("" if settings.etcd_snapshot_s3 else "; no restore after a whole-cluster loss")))
    else:
        points.append((f"RDS point-in-time restore ({settings.db_backup_retention_days} days)",
                       f"up to {minutes(PITR_RPO_S)} (logs uploaded every 5 minutes)"))
        points.append(("RDS automated snapshot", f"up to {minutes(RDS_SNAPSHOT_RPO_S)} (daily, in the backup window)"))
    points.append(("rancher-backup schedule", "not on this branch (branch h/backup adds the scheduled Backup)"))
    return points


def new_stack_seconds(stack: str) -> float:
    """A move builds a new stack like this one: its first `up` (benchmarks/time_to_ready.py)."""
    import time_to_ready

    return time_to_ready.model_for(stack, "sourced").total


def minutes(value: float) -> str:
    whole = int(round(value))
    if whole >= 3600:
        return f"{whole // 3600}h{(whole % 3600) // 60:02d}m"
    return f"{whole // 60}m{whole % 60:02d}s"


def report(stack: str) -> str:
    from offline.runner import stack_config
    from settings import settings_from_values

    config = stack_config(stack)
    settings = settings_from_values({k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("rancher-ha:")},
                                    region=str(config.get("aws:region", "eu-west-1")), stack=stack)
    lines = [f"stack {stack} ({settings.distribution}, {settings.server_count} servers)", "",
             "| runbook | recovery time | path |", "|---|---|---|"]
    for name, steps in runbooks(settings.distribution).items():
        path = " -> ".join(f"{s.what} {s.seconds():g}s" for s in steps)
        lines.append(f"| {name} | {minutes(total(steps))} | {path} |")
    model = modeled(stack, settings.distribution)
    new_stack = new_stack_seconds(stack)
    lines.append(f"| move to a new stack | {minutes(new_stack)} + the rancher-backup restore | the new stack's first `up`"
                 " (benchmarks/time_to_ready.py, sourced); the restore itself comes with branch h/backup |")
    lines += ["", "On the cluster model (the runbook's `up`s played from the lost cluster: tests/test_recovery_rehearsal.py):", "",
              "| runbook | API and Rancher Ready | last `up` ends |", "|---|---|---|"]
    lines += [f"| {name} | {minutes(ready)} | {minutes(end)} |" for name, (ready, end) in model.items()]
    lines += ["", "| schedule | recovery point (worst case) |", "|---|---|"]
    lines += [f"| {what} | {point} |" for what, point in recovery_points(settings)]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", action="append", help="stack name (default: every stack in stacks/)")
    args = parser.parse_args(argv)
    from offline.runner import STACKS_DIR

    stacks = args.stack or sorted(p.name[len("Pulumi."):-len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))
    print("\n\n".join(report(stack) for stack in stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
