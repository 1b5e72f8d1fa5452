"""Write the time-to-ready figures into the docs from the benchmark itself.

`.venv/bin/python -m tools.time_to_ready_docs` replaces the README's "Time to Rancher"
table with `benchmarks/time_to_ready.py --markdown` and the table in
docs/time-to-ready.md with `--sensitivity` for the stacks its command line names;
tests/test_time_to_ready.py checks both, so the figures cannot drift from the model.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import time_to_ready as ttr  # noqa: E402

README = REPO / "README.md"
SENSITIVITY = REPO / "docs" / "time-to-ready.md"
TABLE = re.compile(r"^\| stack \|.*?(?=\n\n)", re.S | re.M)
SENSITIVITY_COMMAND = re.compile(r"benchmarks/time_to_ready.py --sensitivity((?: --stack \w+)+)")


def readme_table() -> str:
    return ttr.markdown([ttr.model_for(stack, table) for stack in ttr.stack_names() for table in ("sourced", "reference")])


def sensitivity_stacks(text: str) -> list[str]:
    match = SENSITIVITY_COMMAND.search(text)
    if not match:
        raise SystemExit(f"{SENSITIVITY} lost its command line")
    return match.group(1).split(" --stack ")[1:]


def replace_table(text: str, table: str, header: str) -> str:
    for match in TABLE.finditer(text):
        if match.group(0).startswith(header):
            return text[: match.start()] + table + text[match.end():]
    raise SystemExit(f"no table starting with {header!r}")


def main() -> int:
    readme = README.read_text()
    README.write_text(replace_table(readme, readme_table(), "| stack | cluster | sourced: total"))
    doc = SENSITIVITY.read_text()
    SENSITIVITY.write_text(replace_table(doc, ttr.sensitivity(sensitivity_stacks(doc)), "| stack | duration"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
