"""Write the README's failure-model, day-2 and L7-overhead figures from the benchmarks' output.

`.venv/bin/python -m tools.benchmark_docs` rewrites the README's blocks between
`<!-- failure-model:start/end -->` (the prod table of `benchmarks/failure_model.py
--markdown` and the sentences around it, each figure read from the model),
`<!-- day2:start/end -->` (the table of `benchmarks/day2.py --markdown`) and
`<!-- l7-overhead:start/end -->` (from benchmarks/results/l7_overhead.json, which
`benchmarks/l7_overhead.py --record` writes). tests/test_docs.py checks the first and the
last, tests/test_day2_benchmark.py the day-2 table, so a changed cell or figure fails a
test instead of going stale.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import day2  # noqa: E402
import failure_model as fm  # noqa: E402

from tools import readme_blocks  # noqa: E402

README = REPO / "README.md"
L7_RECORD = REPO / "benchmarks" / "results" / "l7_overhead.json"
INDENT = "  "  # the blocks sit in the "Benchmarks" list items


def _indent(text: str) -> str:
    return "".join(f"{INDENT}{line}\n" if line else "\n" for line in text.splitlines())


@functools.lru_cache(maxsize=None)
def _rows(stack: str) -> tuple[fm.Topology, list[fm.Row]]:
    return fm.model_stack(stack)


def _table(rows: list[fm.Row]) -> str:
    header = ["scenario", *fm.COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([row.scenario.name, *(row.cells[c].cell() for c in fm.COLUMNS)]) + " |" for row in rows]
    return "\n".join(lines)


def _down(rows: list[fm.Row], kind: str, column: str | None = None) -> bool:
    return any(
        outcome.status == fm.DOWN
        for row in rows
        if row.scenario.kind == kind
        for name, outcome in row.cells.items()
        if column is None or name == column
    )


def failure_model_block() -> str:
    prod_topology, prod_rows = _rows("prod")
    dev_topology, dev_rows = _rows("dev")
    _, staging_rows = _rows("staging")

    causes = []
    if _down(dev_rows, "zone", "egress") and len(dev_topology.nats) == 1:
        causes.append("one NAT gateway")
    if _down(dev_rows, "zone", "datastore/etcd") and dev_topology.rds and not dev_topology.rds.multi_az:
        causes.append("a single-AZ RDS")
    if causes:
        dev = (
            f"dev does not survive a zone loss on purpose: {' and '.join(causes)}\n"
            "(set `natGatewayPerZone` and `dbMultiAz` to change that)"
        )
    else:
        dev = "dev survives every zone loss"
    dev += "; it does not survive the loss of a server." if _down(dev_rows, "server") else "; it survives the loss of a server."

    (nginx_row,) = [row for row in staging_rows if row.scenario.kind == "nginx"]
    low, high = nginx_row.cells["Rancher 443"].seconds
    nginx = (
        f"The NGINX load balancer's failover after its instance or zone is lost is {low}–{high} s\n"
        "(EC2 status checks every minute, then the Auto Scaling group's launch and the boot)."
    )

    manual = []
    if any(row.cells[column].manual for row in prod_rows if row.scenario.kind == "server" for column in fm.COLUMNS[:3]):
        manual.append("a lost server stays lost until `pulumi up --replace`")
    if any(row.cells["egress"].manual for row in prod_rows if row.scenario.kind == "nat"):
        manual.append("a lost NAT gateway\nis not re-routed")
    not_automatic = f"Not automatic: {'; '.join(manual)}." if manual else ""

    survives = not fm.single_points_of_failure(prod_rows)
    verdict = "survives every single zone and instance loss" if survives else "does NOT survive every single zone and instance loss"
    text = (
        f"`prod` ({prod_topology.distribution}, {len(prod_topology.servers)} servers) {verdict}:\n\n"
        f"{_table(prod_rows)}\n\n{dev}\n{nginx}\n{not_automatic}\n"
    )
    return _indent(text)


def l7_block(record: dict | None = None) -> str:
    record = json.loads(L7_RECORD.read_text()) if record is None else record
    direct, through = record["direct"], record["through_l7_nginx"]
    throughput = through["requests_per_second"] / direct["requests_per_second"]
    p99 = through["p99_ms"] / direct["p99_ms"]
    errors = direct["errors"] + through["errors"]
    text = (
        f"Recorded by `{record['command']}`\n"
        f"on {record['recorded']} ({record['cpus']} CPUs, 1-minute load {record['load_average_1min']:g}, "
        f"{record['nginx']}; `benchmarks/results/l7_overhead.json`):\n"
        f"{throughput:.2f}× throughput ({through['requests_per_second']:.0f} vs {direct['requests_per_second']:.0f} req/s), "
        f"{p99:.2f}× p99 ({through['p99_ms']:.2f} vs {direct['p99_ms']:.2f} ms),\n"
        f"{errors} failed requests. The clients are Python threads sharing one interpreter: an upper\n"
        "bound on the overhead, not a capacity figure.\n"
    )
    return _indent(text)


def day2_block() -> str:
    return _indent(day2.render(day2.rows(), markdown=True) + "\n")


BLOCKS = {"failure-model": failure_model_block, "day2": day2_block, "l7-overhead": l7_block}


def block(readme: str, name: str) -> str:
    return readme_blocks.block(readme, name, INDENT)


def rewrite(readme: str) -> str:
    return readme_blocks.rewrite(readme, BLOCKS, INDENT)


def main() -> int:
    README.write_text(rewrite(README.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
