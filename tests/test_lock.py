"""The Python lock files: every package pinned with its hashes, the pins a human edits
(requirements*.txt) carried over exactly, and the virtualenv installed from the lock."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUTS = ("requirements.txt", "requirements-dev.txt")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _requirements(path: Path) -> dict[str, str]:
    """name -> version of a requirements file's `name==version` lines, following `-r`."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins |= _requirements(path.parent / line[3:].strip())
        elif line:
            match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^]]*\])?==([^\s;]+)", line)
            assert match, f"{path.name}: {line!r} is not pinned as name==version"
            pins[_name(match[1])] = match[2]
    return pins


def _lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes output."""
    entries, current = {}, None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+) \\", line)
            assert match, f"{path.name}: {line!r} is not `name==version \\`"
            current = _name(match[1])
            entries[current] = (match[2], [])
        else:
            entries[current][1].extend(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return entries


@pytest.mark.parametrize("requirements", INPUTS)
def test_every_locked_package_has_a_hash(requirements):
    lock = _lock(REPO_ROOT / requirements.replace(".txt", ".lock"))
    assert len(lock) > len(_requirements(REPO_ROOT / requirements)), "the lock holds the transitive packages too"
    assert [name for name, (_, hashes) in lock.items() if not hashes] == []


@pytest.mark.parametrize("requirements", INPUTS)
def test_the_lock_carries_every_pin_of_its_requirements(requirements):
    """Re-lock after editing requirements*.txt: bash scripts/lock.sh"""
    lock = _lock(REPO_ROOT / requirements.replace(".txt", ".lock"))
    pins = _requirements(REPO_ROOT / requirements)
    assert {n: (v, lock.get(n, ("missing",))[0]) for n, v in pins.items() if lock.get(n, ("missing",))[0] != v} == {}


def test_the_runtime_and_dev_locks_agree():
    runtime, dev = _lock(REPO_ROOT / "requirements.lock"), _lock(REPO_ROOT / "requirements-dev.lock")
    assert set(runtime) <= set(dev)
    assert {n: (runtime[n][0], dev[n][0]) for n in runtime if runtime[n][0] != dev[n][0]} == {}


def test_bootstrap_installs_the_lock_with_hashes_required(tmp_path):
    """scripts/bootstrap.sh create_venv, run for real against a stand-in virtualenv python."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls"
    stub = venv / "bin" / "python"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{calls}"\n')
    stub.chmod(0o755)
    for requirements in INPUTS:
        subprocess.run(["bash", "-c", f'source scripts/bootstrap.sh && create_venv {requirements}'], cwd=REPO_ROOT, check=True,
                       env={**os.environ, "RANCHER_HA_VENV": str(venv)}, timeout=60)
    installs = calls.read_text().splitlines()
    assert len(installs) == 2
    for requirements, install in zip(INPUTS, installs):
        args = install.split()
        assert args[:3] == ["-m", "pip", "install"] and "--require-hashes" in args
        assert args[args.index("-r") + 1] == str(REPO_ROOT / requirements.replace(".txt", ".lock"))
