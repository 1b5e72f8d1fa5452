"""Refuse, in preview already, a change that cannot be made to a deployed stack.

Some settings are the stack's identity. Rancher's hostname is baked into every
downstream cluster's agent registration (and is the name the API's TLS is checked
against); the distribution, the VPC and the node placement decide where every server
lives, and
changing them would replace all servers at once (create-before-delete builds a second
cluster beside the first, then deletes the first and its data). A dynamic provider's
`check` compares each with the last deployed value and fails with the way out, and
every component depends on the lock, so nothing changes before it fails.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import pulumi
from pulumi.dynamic import Resource

from .providers import identity_lock_provider as implementation
from .providers.shipping import loader_expression, source_of

NEW_STACK = "deploy a new stack and migrate with Rancher Backups (rancher-backup, restore into the new stack)"
RENAME_REFUSED = (
    "Rancher cannot be renamed: this stack was deployed as {old}, and downstream clusters' agents "
    "and certificates are bound to that name. Set hostname back to {old}. To move to {new}, "
    + NEW_STACK + "."
)
REFUSALS = {
    "hostname": RENAME_REFUSED,
    "distribution": "The cluster is {old}; {new} would be a different cluster. Set distribution back to {old}; to switch, " + NEW_STACK + ".",
    "vpcId": (
        "changing the VPC moves every server at once: they would all be replaced together and the cluster "
        "lost. Set {key} back to {old}; to move, " + NEW_STACK + "."
    ),
    "vpcCidr": (
        "changing the VPC CIDR replaces the VPC, its subnets and every server at once. Set {key} back to "
        "{old}; to renumber, " + NEW_STACK + "."
    ),
    "nodePlacement": (
        "moving servers between public and private subnets replaces every server at once. Set {key} back to "
        "{old}; to move, " + NEW_STACK + "."
    ),
    "clusterIdentifier": (
        "the Kubernetes provider knows this cluster as {old} (clusterIdentifier, rancher-ha-<stack name>); {new} "
        "would replace the provider and, with it, every in-cluster resource: the fixed-name rancher and cert-manager "
        "Helm releases and the cattle-system namespace would be created again while the old ones still exist, and the "
        "update would fail half-way. If you renamed the stack, rename the stack back to the name it was deployed "
        "with; to move Rancher to a stack of another name, " + NEW_STACK + "."
    ),
    "nodeSubnetIds": (
        "the servers live in these subnets; new subnets would replace every server at once. Set {key} back "
        "to {old}; to move servers, " + NEW_STACK + "."
    ),
}


class ShippedIdentityLockProvider(implementation.IdentityLockProvider):
    def __reduce__(self):
        return (eval, (loader_expression(source_of(implementation.__file__), "IdentityLockProvider"),))


class IdentityLock(Resource, module="rancher-ha", name="IdentityLock"):
    locked: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, locked: Mapping[str, Any], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ShippedIdentityLockProvider(),
            name,
            {"locked": dict(locked), "refusals": dict(REFUSALS)},
            opts,
        )


class HostnameGuard(pulumi.ComponentResource):
    """Holds the lock, so the stack's top level has components only."""

    def __init__(self, name: str, locked: Mapping[str, Any], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:guard:HostnameGuard", name, None, opts)
        self.lock = IdentityLock(
            f"{name}-lock",
            locked,
            opts=pulumi.ResourceOptions(
                parent=self,
                # The first release's lock, under its old type.
                aliases=[pulumi.Alias(type_="pulumi-python:dynamic/rancher-ha:HostnameLock")],
            ),
        )
        self.register_outputs({"locked": self.lock.locked})
