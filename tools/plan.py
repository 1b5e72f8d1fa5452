"""Offline `pulumi up` preview of a change: plan each stack from a base git revision to the
working tree, with the engine model in offline/plan.py, and print markdown.

  python -m tools.plan BASE_REF [<stack> ...] [--all] [--out FILE]

The base revision is checked out with `git worktree add --detach` into a temporary folder
(removed afterwards; the main work tree and its index are untouched), and the program is
run THERE in a subprocess: `python -m tools.render --dump-state FILE <stack>`. A base
revision older than `--dump-state` gets a small script instead that imports that
revision's offline.runner and serializes what it registered; Registration fields the base
revision did not record yet are defaulted (offline.mocks.Registration's defaults).
Exit status: 0, or 2 when the working tree cannot run a stack.

Caveats: both sides run under the mocks, so ids are derived from names (offline/plan.py
maps a renamed resource's ids back for its dependents), and renames are only recognised
through the aliases the mocks record (`Registration.aliases`, URNs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from offline.mocks import Registration  # noqa: E402
from offline.runner import STACKS_DIR, MockRun, OutputValue  # noqa: E402

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
FIELDS = [f.name for f in dataclasses.fields(Registration)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if type(value).__name__ == "Unknown":
        return UNKNOWN
    return str(value)


def state_document(run: MockRun) -> dict:
    """A MockRun as JSON: registrations (all fields, secrets unwrapped: keep the file private),
    and the generated secret values so the plan can redact them."""
    return {
        "version": 1,
        "registrations": [_jsonable({k: getattr(r, k) for k in FIELDS if hasattr(r, k)}) for r in run.registrations],
        "secret_values": sorted(_jsonable(list(run.secret_values))),
        "outputs": {k: _jsonable(dataclasses.asdict(v)) for k, v in run.outputs.items()},
    }


# The same serialization, for a base revision whose tools.render lacks --dump-state. It runs
# inside that revision's worktree and must only use what every revision has: offline.runner.
FALLBACK_SCRIPT = r"""
import dataclasses, json, sys
sys.path.insert(0, ".")
from offline.runner import run_stack
def j(v):
    if isinstance(v, dict): return {str(k): j(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)): return [j(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)): return v
    if type(v).__name__ == "Unknown": return "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    return str(v)
out, stacks = sys.argv[1], sys.argv[2:]
doc = {"stacks": {}}
for stack in stacks:
    run = run_stack(stack)
    doc["stacks"][stack] = {
        "version": 1,
        "registrations": [j({f.name: getattr(r, f.name) for f in dataclasses.fields(r)}) for r in run.registrations],
        "secret_values": sorted(j(list(getattr(run, "secret_values", set())))),
        "outputs": {k: j(dataclasses.asdict(v)) for k, v in getattr(run, "outputs", {}).items()},
    }
open(out, "w").write(json.dumps(doc))
"""


def load_state(document: dict) -> MockRun:
    """Inverse of state_document; tolerant of documents from older revisions."""
    registrations = []
    for raw in document.get("registrations", []):
        known = {k: v for k, v in raw.items() if k in FIELDS}
        for required in ("type", "name", "urn"):
            known.setdefault(required, "")
        known.setdefault("inputs", {})
        known.setdefault("parent", "")
        known.setdefault("dependencies", [])
        known.setdefault("provider", "")
        known.setdefault("custom", True)
        for key in ("deleted_with", "provider", "parent"):
            if known.get(key) is None:
                known[key] = ""
        registrations.append(Registration(**known))
    outputs = {k: OutputValue(**v) for k, v in (document.get("outputs") or {}).items()}
    return MockRun(registrations=registrations, outputs=outputs, secret_values=set(document.get("secret_values") or []))


def dump_states(stacks: Iterable[str], path: Path, stacks_dir: Path = STACKS_DIR) -> dict[str, str]:
    """Run each stack and write {"stacks": {stack: state}} to path; returns stack -> error."""
    from offline.runner import run_stack
    from settings import SettingsError

    doc: dict = {"stacks": {}}
    errors = {}
    for stack in stacks:
        try:
            doc["stacks"][stack] = state_document(run_stack(stack, stacks_dir=stacks_dir))
        except (SettingsError, FileNotFoundError) as error:
            errors[stack] = str(error)
    doc["errors"] = errors
    path.write_text(json.dumps(doc))
    return errors


def _git(*args: str, cwd: Path = REPO_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def base_tree(base_ref: str) -> Iterator[Path]:
    """The program at base_ref, checked out in a temporary worktree (removed afterwards; the
    main work tree and its index are untouched)."""
    commit = _git("rev-parse", "--verify", f"{base_ref}^{{commit}}").strip()
    with tempfile.TemporaryDirectory(prefix="rancher-ha-base-") as tmp:
        tree = Path(tmp) / "base"
        _git("worktree", "add", "--detach", "--quiet", str(tree), commit)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO_ROOT, capture_output=True)
            subprocess.run(["git", "worktree", "prune"], cwd=REPO_ROOT, capture_output=True)


def base_states(base_ref: str, stacks: list[str], python: str = sys.executable) -> tuple[dict[str, MockRun], dict[str, str]]:
    """Run the program at base_ref in a temporary worktree; stack -> MockRun, stack -> error."""
    with base_tree(base_ref) as tree:
        return _run_in_tree(tree, stacks, python)


def _run_in_tree(tree: Path, stacks: list[str], python: str) -> tuple[dict[str, MockRun], dict[str, str]]:
    out = tree / ".plan-state.json"
    available = [s for s in stacks if (tree / "stacks" / f"Pulumi.{s}.yaml").exists()]
    errors = {s: "stack file not in the base revision (a new stack: everything is created)" for s in stacks if s not in available}
    if not available:
        return {}, errors
    done = subprocess.run([python, "-m", "tools.render", "--dump-state", str(out), *available], cwd=tree, capture_output=True, text=True)
    if done.returncode != 0 and "--dump-state" in done.stderr and not out.exists():
        done = subprocess.run([python, "-c", FALLBACK_SCRIPT, str(out), *available], cwd=tree, capture_output=True, text=True)
    if not out.exists():
        raise RuntimeError(f"the base revision did not run:\n{done.stderr[-4000:]}")
    doc = json.loads(out.read_text())
    errors.update(doc.get("errors") or {})
    return {stack: load_state(state) for stack, state in doc["stacks"].items()}, errors


def program_dynamic_diffs() -> dict:
    """type token -> the working tree's dynamic provider, whose `check` and `diff` the plan
    runs (the engine checks and diffs with the new program's provider, components/providers/)."""
    from components.providers.api_gate_provider import (
        ApiGateProvider,
        KubernetesUpgradeWaitProvider,
        KubernetesVersionCheckProvider,
        ObjectReadyProvider,
    )
    from components.providers.cluster_member_provider import ClusterMemberProvider
    from components.providers.identity_lock_provider import ClusterVersionsProvider, IdentityLockProvider

    return {
        "pulumi-python:dynamic/rancher-ha:ApiGate": ApiGateProvider(),
        "pulumi-python:dynamic/rancher-ha:IdentityLock": IdentityLockProvider(),
        "pulumi-python:dynamic/rancher-ha:ClusterVersions": ClusterVersionsProvider(),
        "pulumi-python:dynamic/rancher-ha:ClusterMember": ClusterMemberProvider(),
        "pulumi-python:dynamic/rancher-ha:KubernetesUpgradeWait": KubernetesUpgradeWaitProvider(),
        "pulumi-python:dynamic/rancher-ha:KubernetesVersionCheck": KubernetesVersionCheckProvider(),
        "pulumi-python:dynamic/rancher-ha:ObjectReady": ObjectReadyProvider(),
    }


def plan_markdown(base_ref: str, stacks: list[str], stacks_dir: Path = STACKS_DIR) -> tuple[str, bool]:
    from offline.plan import plan_update
    from offline.runner import run_stack
    from settings import SettingsError

    olds, base_errors = base_states(base_ref, stacks)
    sections, failed = [f"# Offline plan: `{base_ref}` → working tree", ""], False
    sections.append("Computed without the cloud: the program at both revisions under the offline mocks, diffed with "
                    "the engine's rules (offline/plan.py). A real `pulumi preview` against the deployed state is authoritative.")
    sections.append("")
    for stack in stacks:
        try:
            new = run_stack(stack, stacks_dir=stacks_dir)
        except (SettingsError, FileNotFoundError) as error:
            sections += [f"## Stack `{stack}`", "", f"**The working tree cannot run this stack: {error}**", ""]
            failed = True
            continue
        if stack in base_errors:
            sections.append(f"> base: {base_errors[stack]}")
        plan = plan_update(olds.get(stack), new, dynamic_diffs=program_dynamic_diffs(), title=f"Stack `{stack}`")
        sections.append(plan.to_markdown())
    return "\n".join(sections), failed


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("base_ref", help="git revision the stacks are deployed from (e.g. origin/main)")
    parser.add_argument("stacks", nargs="*")
    parser.add_argument("--all", action="store_true", help="every stack in the stacks folder")
    parser.add_argument("--out", type=Path, help="also write the markdown to this file")
    args = parser.parse_args(argv)
    stacks = sorted(p.name.split(".")[1] for p in STACKS_DIR.glob("Pulumi.*.yaml")) if args.all else args.stacks
    if not stacks:
        parser.error("name a stack, or --all")
    text, failed = plan_markdown(args.base_ref, stacks)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
