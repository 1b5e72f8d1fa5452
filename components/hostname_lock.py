"""Refuse to rename Rancher on an existing stack.

Rancher cannot be renamed: its hostname is baked into every downstream cluster's
agent registration and into its own CA-signed certificates. A changed hostname in a
stack file would otherwise replace the DNS record and reinstall Rancher under a new
name, orphaning every managed cluster. The provider's `check` runs in preview too, and
every other component depends on this resource, so nothing changes before it fails.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, Resource, ResourceProvider

from .by_value import ship_by_value

RENAME_REFUSED = (
    "Rancher cannot be renamed: this stack was deployed as '{old}', and downstream clusters' agents "
    "and certificates are bound to that name. Set hostname back to '{old}'. To move to '{new}', "
    "deploy a new stack and migrate with Rancher Backups (rancher-backup restore to the new name)."
)


class HostnameLockProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        old, new = (olds or {}).get("hostname"), news.get("hostname")
        if old and new and old != new:
            return CheckResult(inputs=news, failures=[CheckFailure("hostname", RENAME_REFUSED.format(old=old, new=new))])
        return CheckResult(inputs=news, failures=[])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=props["hostname"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False)


ship_by_value(HostnameLockProvider)


class HostnameLock(Resource, module="rancher-ha", name="HostnameLock"):
    hostname: pulumi.Output[str]

    def __init__(self, name: str, hostname: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(HostnameLockProvider(), name, {"hostname": hostname}, opts)


class HostnameGuard(pulumi.ComponentResource):
    """Holds the lock, so the stack's top level has components only."""

    def __init__(self, name: str, hostname: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:guard:HostnameGuard", name, None, opts)
        self.lock = HostnameLock(f"{name}-lock", hostname, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"hostname": self.lock.hostname})
