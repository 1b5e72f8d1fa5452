"""The program type-checks: pyright over the paths pyrightconfig.json includes, in pyright's
standard mode everywhere and strict mode on the paths of its "strict" list; any error fails."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = json.loads((REPO_ROOT / "pyrightconfig.json").read_text())
PINNED = re.search(r'^PYRIGHT_VERSION="([^"]+)"', (REPO_ROOT / "scripts" / "bootstrap.sh").read_text(), re.M).group(1)
# scripts/bootstrap.sh installs the pinned pyright here; one on PATH is used otherwise.
INSTALLED = REPO_ROOT / ".tools" / "node" / "node_modules" / ".bin" / "pyright"
PYRIGHT = str(INSTALLED) if INSTALLED.exists() else shutil.which("pyright")
# A full run takes 1-2 minutes on a loaded 2-core machine.
TIMEOUT_S = 600


def _checked_files():
    files = set()
    for entry in CONFIG["include"]:
        path = REPO_ROOT / entry
        files.update(path.rglob("*.py") if path.is_dir() else [path])
    return files


def test_the_config_is_strict_only_on_included_paths():
    included = set(CONFIG["include"])
    for path in CONFIG["strict"]:
        assert (REPO_ROOT / path).exists(), path
        assert any(path == entry or path.startswith(entry + "/") for entry in included), path


@pytest.mark.skipif(PYRIGHT is None or shutil.which("node") is None,
                    reason="pyright (npm) is not installed: scripts/test.sh installs it where npm exists")
def test_the_program_type_checks():
    version = subprocess.run([PYRIGHT, "--version"], capture_output=True, text=True, timeout=120).stdout
    assert PINNED in version, f"pyright {version.strip()} is not the pinned {PINNED} (scripts/bootstrap.sh)"
    completed = subprocess.run(
        # The interpreter running the tests has the program's packages (pulumi, pydantic, ...).
        [PYRIGHT, "--outputjson", "--project", str(REPO_ROOT / "pyrightconfig.json"), "--pythonpath", sys.executable],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO_ROOT,
    )
    assert completed.stdout, completed.stderr
    report = json.loads(completed.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert errors == [], f"{len(errors)} type errors:\n" + "\n".join(
        f"{Path(d['file']).relative_to(REPO_ROOT)}:{d['range']['start']['line'] + 1}: {d['message']}"
        f" ({d.get('rule', '')})" for d in errors)
    # Every file of the configured paths was checked, not a subset.
    assert report["summary"]["filesAnalyzed"] >= len(_checked_files())


def test_the_readme_names_the_pinned_pyright_and_the_checked_paths():
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"pyright {PINNED}" in readme
    for entry in CONFIG["include"]:
        assert f"`{entry}" in readme, entry
