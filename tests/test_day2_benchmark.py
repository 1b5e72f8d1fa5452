"""benchmarks/day2.py: every day-2 change of a stack shape with its modeled duration and its
seconds without quorum or a Ready Rancher (target 0)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import day2  # noqa: E402


def test_the_benchmark_prints_every_change_with_zero_seconds_without_quorum_or_rancher(capsys):
    assert day2.main(["--markdown", "--shape", "rke2, nginx"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| stack shape | change | modeled duration | s without quorum | s without a Ready Rancher")
    rows = [line.split(" | ") for line in lines[2:]]
    assert [row[1] for row in rows] == ["7 -> 5 -> 3 servers", "3 -> 5 servers", "rotate 3 servers (one `up --replace` each)",
                                        "Kubernetes patch upgrade v1.34.1 -> v1.34.2 (3 servers)",
                                        "Kubernetes minor upgrade v1.34.1 -> v1.35.0 (3 servers)"]
    for row in rows:
        assert row[2].endswith("s") and row[2] != "0m00s"
        assert row[3:5] == ["0", "0"] and row[5] == "whole |"
    # The README's table says what the benchmark prints.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for line in lines[2:]:
        assert f"  {line}\n" in readme, line


def test_a_server_joins_in_the_time_the_first_boot_tables_give_and_day2_estimates_have_sources():
    from durations import SOURCED

    join = day2.step_seconds("rke2")("server", "create")
    parts = ["aws:ec2/instance:Instance", "phase:boot", "phase:install#rke2", "phase:start#rke2", "phase:join-poll",
             "phase:learner-add", "phase:learner-tick"]
    assert join == sum(SOURCED[key].seconds for key in parts)
    assert all(entry.source and entry.kind in ("estimate", "source") for entry in day2.DAY2.values())
    # The member's delete lasts until Rancher's evicted pod is Ready again (its budget).
    member = day2.step_seconds("rke2")("member", "delete")
    assert member >= day2.DAY2["phase:rancher-pod-ready"].seconds


def test_an_upgrade_takes_one_job_and_one_restart_per_server_one_after_the_other():
    """The upgrade rows: per server the Job's start (cordon, image pull) and the restart into
    the new version (systemd's RestartSec, then the distribution's start to the node Ready),
    server after server (concurrency 1), plus the plan's own steps."""
    from durations import SOURCED

    row = day2.kubernetes_upgrade("rke2, nlb", "patch", 3)
    per_server = (day2.DAY2["phase:upgrade-job-start"].seconds + day2.DAY2["phase:upgrade-restart-delay"].seconds
                  + SOURCED["phase:start#rke2"].seconds)
    assert 3 * per_server <= row.duration <= 3 * per_server + 10, row
    assert (row.without_quorum, row.without_rancher, row.broken_after, row.violations) == (0, 0, False, 0)


def test_the_readme_day2_table_is_what_the_benchmark_prints():
    from tools import benchmark_docs

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert benchmark_docs.block(readme, "day2") == benchmark_docs.day2_block(), "regenerate with: python -m tools.benchmark_docs"
