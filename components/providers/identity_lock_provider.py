"""The stack-identity lock's provider: refuse, in preview already, a change of a setting
that cannot change on a deployed stack.

`check` sees the previous inputs (from the state) and the new ones; for every locked
setting whose value changed it fails with that setting's own explanation and safe way.
Self-contained (pulumi.dynamic only): shipped to the provider process as source.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult


class IdentityLockProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        previous = (olds or {}).get("locked") or {}
        # The first release locked only the hostname, as a top-level input.
        if (olds or {}).get("hostname") and "hostname" not in previous:
            previous = {**previous, "hostname": olds["hostname"]}
        # A k3s stack locked before the datastore's source was: its datastore was new.
        if previous.get("distribution") == "k3s" and "datastoreSource" not in previous:
            previous = {**previous, "datastoreSource": "new"}
        current = news.get("locked") or {}
        refusals = news.get("refusals") or {}
        # Keys whose value the stack did not set: a change is a new default, not a choice.
        derived = news.get("derived") or {}
        # Derived keys a stack deployed before they were locked may not be running.
        unrecorded = news.get("unrecorded") or {}
        # Changes the stack file confirms (e.g. dbReplaceDatastore) pass.
        confirmed = set(news.get("confirmed") or [])
        failures = []
        # Settings that act only on a deployed stack (a restore of this stack's own data):
        # on a stack's first deployment (nothing in the state) they cannot work.
        if not olds:
            for key, value in sorted((news.get("requiresDeployedStack") or {}).items()):
                reason = refusals.get(key, "{key} works only on a deployed stack. Remove it.")
                failures.append(CheckFailure(key, reason.format(key=key, old="", new=_show(value))))
        # Old and new keys both: a setting that disappears changed too (a created VPC's
        # vpcCidr giving way to an existing vpcId moves every server just the same).
        for key in sorted(set(previous) | set(current)):
            old, new = previous.get(key), current.get(key)
            if old not in (None, "", []) and old != new and key not in confirmed:
                reason = derived.get(key) or refusals.get(key, "{key} cannot change on a deployed stack. Set it back to {old}.")
            elif old in (None, "", []) and previous and key in unrecorded:
                reason = unrecorded[key]
            else:
                continue
            failures.append(CheckFailure(key, reason.format(key=key, old=_show(old), new=_show(new), old_value=old)))
        return CheckResult(inputs=news, failures=failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str((props.get("locked") or {}).get("hostname", "stack")), outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # New settings being locked (after an upgrade of this program) update the state.
        keys = ("locked", "refusals", "versions", "versionRules")
        return DiffResult(changes=any(olds.get(key) != news.get(key) for key in keys))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=news)


class ClusterVersionsProvider(ResourceProvider):
    """The Kubernetes and Rancher versions the cluster reached: recorded only once the upgrade
    wait and the Rancher release of an `up` succeeded (the resource depends on both), so an
    edit that failed (a mistyped version, an upgrade that never finished) records nothing and
    may be taken back. `check` refuses, in preview, moves from the reached versions that the
    cluster cannot make: downgrades, skipped minors, unsupported pairs."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        reasons = version_refusals((olds or {}).get("versions") or {}, news.get("versions") or {}, news.get("versionRules") or {})
        return CheckResult(inputs=news, failures=[CheckFailure(key, reason) for key, reason in reasons])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_="cluster-versions", outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("versions", "versionRules")
        return DiffResult(changes=any(olds.get(key) != news.get(key) for key in keys))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=news)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return f"'{value}'"


# -- versions: what the cluster runs, and the only ways forward -------------------------
# `versions` holds the Kubernetes and Rancher versions of the last `up` (the cluster runs
# them, or is being moved to them: nothing ever moves it back). `versionRules` maps each
# Rancher minor ("2.14") to the Kubernetes minors it supports ([33, 35]).
SKEW = "one minor at a time (Kubernetes' version skew policy; K3s/RKE2 upgrade docs)"


def _kubernetes(version: str) -> tuple[int, int, int]:
    """(minor, patch, build) of 'v1.34.2+k3s1' / 'v1.34.2+rke2r1'."""
    core, _, build = version.lstrip("v").partition("+")
    parts = core.split(".")
    return int(parts[1]), int(parts[2]), int("".join(ch for ch in build if ch.isdigit()) or 0)


def _rancher(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def _supports(rules: dict, rancher_minor: tuple[int, int], kubernetes_minor: int) -> bool:
    low, high = rules.get(f"{rancher_minor[0]}.{rancher_minor[1]}") or (None, None)
    return low is not None and high is not None and low <= kubernetes_minor <= high


def safe_path(rules: dict, rancher: tuple[int, int], kubernetes: int, target: tuple[tuple[int, int], int]) -> Optional[list[str]]:
    """The shortest list of single `up`s, each moving Rancher or Kubernetes by one minor with
    every step's pair supported, from (rancher, kubernetes) to target; None if there is none."""
    start = (rancher, kubernetes)
    previous: dict = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state == target:
            steps = []
            while previous[state] is not None:
                state, step = previous[state]
                steps.append(step)
            return steps[::-1]
        (major, minor), kube = state
        for nxt, step in (
            (((major, minor + 1), kube), f"rancherVersion {major}.{minor + 1}.x"),
            (((major, minor), kube + 1), f"kubernetesVersion v1.{kube + 1}.x"),
        ):
            if nxt not in previous and nxt[0] <= target[0] and nxt[1] <= target[1] and _supports(rules, *nxt):
                previous[nxt] = (state, step)
                queue.append(nxt)
    return None


def _path_text(rules: dict, rancher: tuple[int, int], kubernetes: int, target: tuple[tuple[int, int], int]) -> str:
    steps = safe_path(rules, rancher, kubernetes, target)
    if not steps:
        return "No supported path leads there: choose versions Rancher supports together (settings/versions.py)."
    return "The safe way, one `pulumi up` each (the newest patch of each): " + " -> ".join(steps) + "."


def version_refusals(previous: dict, current: dict, rules: dict) -> list[tuple[str, str]]:
    """(setting, reason and safe way) for every version move the cluster cannot make."""
    old_k, new_k = previous.get("kubernetesVersion"), current.get("kubernetesVersion")
    old_r, new_r = previous.get("rancherVersion"), current.get("rancherVersion")
    if not (old_k and new_k and old_r and new_r):
        return []  # a new stack, or one deployed before versions were remembered
    ok, nk, orr, nr = _kubernetes(old_k), _kubernetes(new_k), _rancher(old_r), _rancher(new_r)
    target = (nr[:2], nk[0])
    path = _path_text(rules, orr[:2], ok[0], target)
    refusals = []
    if nk < ok:
        refusals.append((
            "kubernetesVersion",
            f"the cluster runs {old_k}; {new_k} is older. Kubernetes cannot be downgraded: etcd refuses an older "
            "member ('invalid downgrade') and a replacement server would install the older release. Set "
            f"kubernetesVersion back to {old_k} or a newer release of 1.{ok[0]} or 1.{ok[0] + 1}. Going back needs a "
            "restore (an etcd snapshot on RKE2, the datastore's on K3s) into a new stack.",
        ))
    elif nk[0] > ok[0] + 1:
        refusals.append((
            "kubernetesVersion",
            f"the cluster runs {old_k}; {new_k} skips {nk[0] - ok[0] - 1} minor release(s). Kubernetes upgrades {SKEW}. "
            + path,
        ))
    if nr < orr:
        refusals.append((
            "rancherVersion",
            f"Rancher {old_r} runs; {new_r} is older. Rancher does not support going back by a chart change (its "
            f"rollback is a rancher-backup restore). Set rancherVersion back to {old_r} or newer.",
        ))
    elif nr[:2] > orr[:2] and (nr[0] != orr[0] or nr[1] > orr[1] + 1):
        refusals.append((
            "rancherVersion",
            f"Rancher {old_r} runs; {new_r} skips a minor release. Rancher upgrades one minor at a time. " + path,
        ))
    if refusals or nk[0] == ok[0] and nr[:2] == orr[:2]:
        return refusals
    # One `up` upgrades Kubernetes first (Rancher's release waits for it), then Rancher: the
    # running Rancher must support the new Kubernetes (the settings check the new pair).
    if nk[0] != ok[0] and not _supports(rules, orr[:2], nk[0]):
        refusals.append((
            "kubernetesVersion",
            f"Rancher {old_r}, which runs during the upgrade, does not support Kubernetes 1.{nk[0]}. " + path,
        ))
    return refusals
