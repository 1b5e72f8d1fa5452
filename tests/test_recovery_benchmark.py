"""benchmarks/recovery.py: the modeled recovery time of each runbook and the recovery
point of each schedule (docs/disaster-recovery.md#recovery-time-and-point)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import recovery  # noqa: E402


def test_it_runs_and_reports_every_runbook_of_each_distribution():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "recovery.py"), "--stack", "dev", "--stack", "prod"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    dev, prod = out.split("stack prod")
    for name in ("one server lost", "datastore lost (snapshot)", "datastore lost (point in time)", "move to a new stack"):
        assert f"| {name} |" in dev
    for name in ("one server lost", "quorum lost", "whole cluster lost", "move to a new stack"):
        assert f"| {name} |" in prod
    assert prod.count("| whole cluster lost |") == 2 and dev.count("| datastore lost (snapshot) |") == 2  # steps, model
    assert "nan" not in out
    assert "up to 5m00s" in dev  # PITR
    assert "etcd snapshots `0 */4 * * *` to S3 | up to 4h00m" in prod  # prod's stack file schedule


@pytest.mark.parametrize("expression, worst", [
    ("0 */6 * * *", 6 * 3600), ("0 */4 * * *", 4 * 3600), ("*/30 * * * *", 1800),
    ("0 1,2 * * *", 23 * 3600), ("15 3 * * *", 24 * 3600), ("0 0 * * 1", None),
])
def test_the_recovery_point_of_a_schedule_is_its_longest_gap(expression, worst):
    assert recovery.cron_worst_gap_seconds(expression) == worst


def test_every_restore_duration_has_a_source():
    for key, duration in recovery.RESTORE.items():
        assert duration.source and duration.kind in ("source", "estimate"), key
    for distribution in ("k3s", "rke2"):
        for steps in recovery.runbooks(distribution).values():
            for step in steps:
                assert step.table_key in recovery.TABLE, step


def test_a_whole_cluster_restore_takes_longer_than_replacing_one_server():
    books = recovery.runbooks("rke2")
    one, whole = recovery.total(books["one server lost"]), recovery.total(books["whole cluster lost"])
    # The restore adds the reset and a second start before the others can join.
    assert whole - one == pytest.approx(recovery.TABLE["phase:etcd-restore"].seconds
                                        + recovery.TABLE["phase:start#rke2"].seconds
                                        + recovery.TABLE["phase:learner-tick"].seconds)
    k3s = recovery.runbooks("k3s")
    assert recovery.total(k3s["datastore lost (point in time)"]) - recovery.total(k3s["datastore lost (snapshot)"]) == 300


def test_the_cluster_model_times_the_restores_from_the_lost_cluster():
    """The modeled times of the rehearsed runbooks (tests/test_recovery_rehearsal.py): RKE2's
    API and Rancher are back once the first server has booted, restored and started, and a
    Rancher pod started on it; the joiners and the old members' deletes come after."""
    from day2 import DAY2, step_seconds

    ready, end = recovery.modeled("prod", "rke2")["whole cluster lost"]
    booted = step_seconds("rke2")("server", "create")
    restored = recovery.TABLE["phase:etcd-restore"].seconds + recovery.TABLE["phase:start#rke2"].seconds
    assert ready == pytest.approx(booted + restored + DAY2["phase:rancher-pod-ready"].seconds)
    assert end > ready
    k3s = recovery.modeled("dev", "k3s")
    (snapshot, snapshot_end), (pitr, pitr_end) = k3s["datastore lost (snapshot)"], k3s["datastore lost (point in time)"]
    assert pitr - snapshot == pitr_end - snapshot_end == pytest.approx(recovery.TABLE["phase:rds-log-replay"].seconds)
    assert snapshot > recovery.TABLE["phase:rds-restore-snapshot"].seconds + step_seconds("k3s")("server", "create")
