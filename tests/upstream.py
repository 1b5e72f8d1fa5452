"""Local git snapshots of upstream repositories, for the tests that re-derive facts from them.

Upstream code, charts and manifests are never committed here (only facts extracted from
them, with source and commit), and CI has no network: the tests that need the upstream
source itself run only where a snapshot is given, by the variable
RANCHER_HA_<NAME>_GIT_DIR (a git directory: `fetch github:<owner>/<repo>`'s mirror or a
`git clone`). Without it they skip and say which variable to set and how to get the
snapshot (README "Tests").
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterable, Optional

import pytest


def variable(name: str) -> str:
    """rke2 -> RANCHER_HA_RKE2_GIT_DIR; backup-restore-operator -> RANCHER_HA_BACKUP_RESTORE_OPERATOR_GIT_DIR."""
    return "RANCHER_HA_" + re.sub(r"[^A-Z0-9]+", "_", name.upper()) + "_GIT_DIR"


def git_dir(name: str) -> Optional[str]:
    return os.environ.get(variable(name)) or None


def how_to_get(name: str, repository: str) -> str:
    return (f"set {variable(name)} to a git snapshot of {repository} "
            f"(`fetch github:{repository}`, or `git clone https://github.com/{repository}`)")


def has_tag(directory: str, tag: str) -> bool:
    result = subprocess.run(["git", "-C", directory, "rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}"],
                            capture_output=True, text=True)
    return result.returncode == 0


def require(name: str, repository: str, tags: Iterable[str] = ()) -> Path:
    """The snapshot's git directory; skips (with how to get it) when unset or without a tag.

    A variable that names no git directory fails: someone asked for the check."""
    directory = git_dir(name)
    if directory is None:
        pytest.skip(f"needs a local upstream snapshot: {how_to_get(name, repository)}")
    probe = subprocess.run(["git", "-C", directory, "rev-parse", "--git-dir"], capture_output=True, text=True)
    assert probe.returncode == 0, f"{variable(name)}={directory} is not a git directory: {probe.stderr.strip()}"
    missing = [tag for tag in tags if not has_tag(directory, tag)]
    if missing:
        pytest.skip(f"{variable(name)}={directory} lacks tag(s) {', '.join(missing)}: {how_to_get(name, repository)}")
    return Path(directory)
