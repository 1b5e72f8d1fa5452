"""Refuse, in preview already, a change that cannot be made to a deployed stack.

Some settings are the stack's identity. Rancher's hostname is baked into every
downstream cluster's agent registration (and is the name the API's TLS is checked
against); the distribution, the VPC and the node placement decide where every server
lives, and
changing them would replace all servers at once (create-before-delete builds a second
cluster beside the first, then deletes the first and its data). RKE2's ingress controller
is kept from creation on: a new Kubernetes minor's default (Traefik from 1.36) must not
swap it under a running cluster. A dynamic provider's
`check` compares each with the last deployed value and fails with the way out, and
every component depends on the lock, so nothing changes before it fails.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import pulumi
from pulumi.dynamic import Resource

from settings import versions

from .providers import identity_lock_provider as implementation
from .naming import child
from .providers.shipping import loader_expression, source_of

# The runbook the safe ways point at; tests/test_disaster_recovery.py checks every anchor.
RUNBOOK = "docs/disaster-recovery.md"
MOVE_RUNBOOK = RUNBOOK + "#move-to-a-new-stack"
DATASTORE_RUNBOOK = RUNBOOK + "#datastore-lost"
NEW_STACK = (
    "deploy a new stack and migrate with Rancher Backups (rancher-backup, restore into the new stack): "
    "see " + MOVE_RUNBOOK
)
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
    # Refused on a stack's first deployment (requiresDeployedStack).
    "etcdRestoreSnapshot": (
        "restores a snapshot into the stack it was taken from: its bucket, its token (which encrypts the "
        "snapshot's bootstrap data) and its cluster CA (which signs this program's kubeconfig). This stack "
        "has never been deployed, so it has none of them. Remove {key}; to move Rancher into a new stack, "
        + NEW_STACK + "."
    ),
    "dbRestoreFromSnapshot": (
        "{new} holds a K3s datastore whose bootstrap data is encrypted with its stack's token and holds its stack's "
        "cluster CA; this stack has never been deployed and has its own token and CA, so its servers could not "
        "read that data and its kubeconfig would not be trusted. Remove {key}; restore into the stack the data "
        "came from (" + DATASTORE_RUNBOOK + "), or, to move Rancher into a new stack, " + NEW_STACK + "."
    ),
    "dbRestoreSourceInstance": (
        "a point-in-time restore of {new} holds another stack's K3s data (encrypted with that stack's token, with "
        "that stack's cluster CA); this stack has never been deployed and has its own token and CA, so its servers "
        "could not read that data. Remove {key} and dbRestoreTime; restore into the stack the data came from (" + DATASTORE_RUNBOOK + "), or, to move Rancher "
        "into a new stack, " + NEW_STACK + "."
    ),
    "datastoreSource": (
        "the K3s datastore was created from {old}; {new} would replace the RDS instance (snapshotIdentifier and "
        "restoreToPointInTime are force-new), and the running servers would lose their database. Set "
        "dbRestoreFromSnapshot / dbRestoreSourceInstance / dbRestoreTime back so the source is {old}; to restore on "
        "purpose, set dbReplaceDatastore: true and follow " + DATASTORE_RUNBOOK + "."
    ),
    "nodeSubnetIds": (
        "the servers live in these subnets; new subnets would replace every server at once. Set {key} back "
        "to {old}; to move servers, " + NEW_STACK + "."
    ),
    "ingressController": (
        "switching a running cluster's ingress controller from {old} to {new} is refused: RKE2 turns it into "
        "`--disable` of {old}, which deletes that controller cluster-wide, while Rancher's ingress, the "
        "forwarded-headers HelmChartConfig, the load balancer's timeouts and the Let's Encrypt solver all "
        "depend on it. Set {key} back to {old}; to move to {new}, " + NEW_STACK + "."
    ),
}
# When a locked value was derived (not set), its change is a new default, not a choice.
DERIVED_REFUSALS = {
    "ingressController": (
        "this cluster runs {old}, chosen when it was created; the new kubernetesVersion's minor makes {new} "
        "the default for new clusters only. Keep it: set ingressController: {old_value} in the stack "
        "(nothing else changes). Moving to {new} is a new stack (see README, Day 2)."
    ),
}
# A deployed stack whose lock predates the setting, when the derived value is ambiguous.
UNRECORDED_REFUSALS = {
    "ingressController": (
        "this stack was deployed by a release that did not record its ingress controller, and the "
        "kubernetesVersion's minor makes {new} the default for new clusters, while a cluster created before "
        "RKE2 1.36 runs 'ingress-nginx'. Set ingressController once to the one the cluster runs "
        "(`kubectl -n kube-system get helmcharts`: rke2-ingress-nginx or rke2-traefik); it is then kept."
    ),
}


class ShippedIdentityLockProvider(implementation.IdentityLockProvider):
    def __reduce__(self):
        return (eval, (loader_expression(source_of(implementation.__file__), "IdentityLockProvider"),))


def version_rules() -> dict[str, list[int]]:
    """Rancher minor -> the Kubernetes minors it supports, as the lock's provider reads them."""
    return {f"{major}.{minor}": [low, high] for (major, minor), (low, high) in versions.RANCHER_KUBERNETES_SUPPORT.items()}


class IdentityLock(Resource, module="rancher-ha", name="IdentityLock"):
    locked: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, locked: Mapping[str, Any], derived: Sequence[str] = (),
                 ambiguous: Sequence[str] = (),
                 opts: Optional[pulumi.ResourceOptions] = None, confirmed: Sequence[str] = (),
                 requires_deployed_stack: Optional[Mapping[str, Any]] = None):
        # `derived`: locked keys whose value the stack did not set (a default of other
        # settings); `ambiguous`: those of them a stack deployed before they were locked
        # may not be running (it must say which it runs).
        props: dict[str, Any] = {
            "locked": dict(locked),
            "refusals": dict(REFUSALS),
            "derived": {key: DERIVED_REFUSALS[key] for key in derived if key in DERIVED_REFUSALS},
            "unrecorded": {key: UNRECORDED_REFUSALS[key] for key in ambiguous if key in UNRECORDED_REFUSALS},
        }
        # Absent unless set, so stacks that use neither see no diff.
        if confirmed:
            props["confirmed"] = sorted(confirmed)
        if requires_deployed_stack:
            props["requiresDeployedStack"] = dict(requires_deployed_stack)
        super().__init__(ShippedIdentityLockProvider(), name, props, opts)


class HostnameGuard(pulumi.ComponentResource):
    """Holds the lock, so the stack's top level has components only."""

    def __init__(self, name: str, locked: Mapping[str, Any], derived: Sequence[str] = (),
                 ambiguous: Sequence[str] = (),
                 opts: Optional[pulumi.ResourceOptions] = None, confirmed: Sequence[str] = (),
                 requires_deployed_stack: Optional[Mapping[str, Any]] = None):
        super().__init__("rancher-ha:guard:HostnameGuard", name, None, opts)
        self.lock = IdentityLock(
            f"{name}-lock",
            locked,
            derived,
            ambiguous,
            confirmed=confirmed,
            requires_deployed_stack=requires_deployed_stack,
            opts=pulumi.ResourceOptions(
                parent=self,
                # The first release's lock, under its old type.
                aliases=[pulumi.Alias(type_="pulumi-python:dynamic/rancher-ha:HostnameLock")],
            ),
        )
        self.register_outputs({"locked": self.lock.locked})


class ShippedClusterVersionsProvider(implementation.ClusterVersionsProvider):
    def __reduce__(self):
        return (eval, (loader_expression(source_of(implementation.__file__), "ClusterVersionsProvider"),))


class ClusterVersions(Resource, module="rancher-ha", name="ClusterVersions"):
    versions: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, running: Mapping[str, str], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ShippedClusterVersionsProvider(), name, {"versions": dict(running), "versionRules": version_rules()}, opts
        )


class RunningVersions(pulumi.ComponentResource):
    """Records the versions the cluster reached, after the `up` reached them (`after`: the
    upgrade and the Rancher release), and refuses in preview the moves it cannot make from
    there (components/providers/identity_lock_provider.py ClusterVersionsProvider)."""

    def __init__(self, name: str, running: Mapping[str, str], after: Sequence[pulumi.Resource],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:guard:RunningVersions", name, None, opts)
        self.record = ClusterVersions(f"{name}-record", running, opts=child(self, depends_on=list(after)))
        self.register_outputs({"versions": self.record.versions})
