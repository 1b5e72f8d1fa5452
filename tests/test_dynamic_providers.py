"""Dynamic providers are stored, pickled, in the stack state and unpickled by Pulumi's
provider host for every later refresh, update and destroy, possibly under another
Python minor after an upgrade. Prove the pickles hold no bytecode and no reference to
this project, and that the provider host's own loading (`dill.loads` of the base64 state string, as `pulumi.dynamic.__main__.get_provider` does)
loads and runs them in a clean process of this Python and of other Python minors."""

import base64
import json
import os
import pickletools
import subprocess
import sys
from pathlib import Path

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.api_gate import ShippedApiGateProvider, ShippedObjectReadyProvider
from components.hostname_lock import ShippedIdentityLockProvider

REPO_ROOT = Path(__file__).resolve().parents[1]
# Virtualenvs of other Python minors with the pinned pulumi and dill (scripts/bootstrap.sh).
OTHER_PYTHONS = sorted((REPO_ROOT / ".tools" / "pythons").glob("*/bin/python"))

# What the provider host does (pulumi/dynamic/__main__.py get_provider: base64 + dill.loads;
# that module serves on import, so its two lines are repeated here).
LOADER = """
import base64, json, sys
import dill
provider = dill.loads(base64.b64decode(sys.stdin.read()))
assert "components" not in sys.modules, "unpickling imported the project"
if sys.argv[1] == "gate":
    old = {"url": "https://a:6443", "serverName": "api.x", "caPem": "-", "expectedNodes": ["10.0.0.1"], "timeoutSeconds": 60}
    diff = provider.diff("id", old, {**old, "expectedNodes": ["10.0.0.2"]})
    print(json.dumps({"python": sys.version_info[:2], "replaces": diff.replaces}))
elif sys.argv[1] == "object":
    old = {"url": "https://a:6443", "serverName": "api.x", "caPem": "-", "path": "/apis/resources.cattle.io/v1/backups/a"}
    diff = provider.diff("id", old, {**old, "path": "/apis/resources.cattle.io/v1/backups/b"})
    print(json.dumps({"python": sys.version_info[:2], "replaces": diff.replaces}))
else:
    result = provider.check({"locked": {"hostname": "a.example.com"}},
                            {"locked": {"hostname": "b.example.com"}, "refusals": {"hostname": "renamed from {old} to {new}"}})
    print(json.dumps({"python": sys.version_info[:2], "reason": result.failures[0].reason}))
"""

PROVIDERS = {"gate": ShippedApiGateProvider, "lock": ShippedIdentityLockProvider, "object": ShippedObjectReadyProvider}
EXPECTED = {"gate": {"replaces": ["expectedNodes"]}, "lock": {"reason": "renamed from 'a.example.com' to 'b.example.com'"},
            "object": {"replaces": ["path"]}}


def _load(python: str, kind: str, tmp_path) -> dict:
    completed = subprocess.run(
        [python, "-c", LOADER, kind], input=serialize_provider(PROVIDERS[kind]()), cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", sorted(PROVIDERS))
def test_pickle_holds_source_not_bytecode(kind):
    pickled = base64.b64decode(serialize_provider(PROVIDERS[kind]()))
    operations = [(op.name, arg) for op, arg, _ in pickletools.genops(pickled)]
    names = [arg for name, arg in operations if name in ("GLOBAL", "SHORT_BINUNICODE", "BINUNICODE") and isinstance(arg, str)]
    # The only callable referenced is builtins.eval; no code objects, no project module.
    assert any("eval" in name for name in names)
    assert not any(name in ("CodeType", "_create_code", "_create_function") for name in names)
    assert not any(name.startswith("components") for name in names if len(name) < 80)
    assert b"co_code" not in pickled and b"components." not in pickled


@pytest.mark.parametrize("kind", sorted(PROVIDERS))
def test_loads_and_runs_in_a_clean_process_of_this_python(kind, tmp_path):
    outcome = _load(sys.executable, kind, tmp_path)
    assert {key: outcome[key] for key in EXPECTED[kind]} == EXPECTED[kind]


@pytest.mark.skipif(not OTHER_PYTHONS, reason="no other Python minor prepared (scripts/bootstrap.sh makes them from pyenv)")
@pytest.mark.parametrize("kind", sorted(PROVIDERS))
def test_loads_and_runs_under_other_python_minors(kind, tmp_path):
    minors = set()
    for python in OTHER_PYTHONS:
        outcome = _load(str(python), kind, tmp_path)
        assert {key: outcome[key] for key in EXPECTED[kind]} == EXPECTED[kind], python
        minors.add(tuple(outcome["python"]))
    assert minors - {sys.version_info[:2]}, "the other interpreters are all this Python's minor"


def test_a_bytecode_pickle_would_not_survive_the_upgrade(tmp_path):
    """The control: the first release's by-value (dill bytecode) pickle fails under another minor."""
    if not OTHER_PYTHONS:
        pytest.skip("no other Python minor prepared")
    # Pickled in a clean interpreter of this minor, as `pulumi up` would have: inside the
    # test process dill would walk whatever the other tests left in __main__.
    maker = ("import base64, dill\n"
             "def by_value():\n    return 42\n"
             "print(base64.b64encode(dill.dumps(by_value, recurse=True)).decode())")
    made = subprocess.run([sys.executable, "-c", maker], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    pickled = made.stdout.strip()
    script = "import base64, sys, dill; print(dill.loads(base64.b64decode(sys.stdin.read()))())"
    failures = 0
    for python in OTHER_PYTHONS:
        completed = subprocess.run([str(python), "-c", script], input=pickled, capture_output=True, text=True, timeout=60,
                                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        failures += completed.returncode != 0 or completed.stdout.strip() != "42"
    assert failures >= 1
