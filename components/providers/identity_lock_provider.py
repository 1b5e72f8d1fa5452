"""The stack-identity lock's provider: refuse, in preview already, a change of a setting
that cannot change on a deployed stack.

`check` sees the previous inputs (from the state) and the new ones; for every locked
setting whose value changed it fails with that setting's own explanation and safe way.
Self-contained (pulumi.dynamic only): shipped to the provider process as source.
"""

from __future__ import annotations

from typing import Any

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
                reason = refusals.get(key, "{key} cannot change on a deployed stack. Set it back to {old}.")
                failures.append(CheckFailure(key, reason.format(key=key, old=_show(old), new=_show(new))))
        return CheckResult(inputs=news, failures=failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str((props.get("locked") or {}).get("hostname", "stack")), outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # New settings being locked (after an upgrade of this program) update the state.
        return DiffResult(changes=(olds.get("locked"), olds.get("refusals")) != (news.get("locked"), news.get("refusals")))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=news)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return f"'{value}'"
