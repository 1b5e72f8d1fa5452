"""The rancher-ha program: which components a stack gets, and how they connect.

`__main__.py` calls `deploy(load_settings())` and exports what it returns; tests and
the offline render call the same function under mocks.

`deploy` takes the identity lock, then runs three stages (see README "Architecture"),
each a page in stages/ that returns what the next one needs:
- stages/edge.py, network and edge: identity, network, firewall, the load balancer's
  address;
- stages/cluster.py, the cluster: CA, datastore, backup bucket, servers, certificate,
  NGINX, the API's DNS names, the readiness gate and the servers' membership;
- stages/in_cluster.py, behind the gate: the Rancher record, cluster state, Kubernetes
  upgrades, Rancher's backups and Rancher.
The shape of the graph is deliberate: servers depend on nothing slow, the readiness gate
depends on the whole API path, and every in-cluster resource on the gate, so deletes
always run while the API is reachable.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.cluster_access import cluster_identifier
from components.hostname_lock import HostnameGuard
from components.naming import children_wait_for
from components.network import node_subnet_zones
from settings import Settings
from stages.cluster import Cluster, cluster
from stages.edge import Edge, check_zone_quorum, network_and_edge, network_args
from stages.in_cluster import InCluster, in_cluster, rancher_backup_folder


def deploy(settings: Settings) -> dict[str, Any]:
    guarded = identity_lock(settings)
    edge = network_and_edge(settings, guarded)
    built = cluster(settings, edge)
    services = in_cluster(settings, edge, built)
    return stack_outputs(settings, edge, built, services)


def identity_lock(settings: Settings) -> pulumi.ResourceOptions:
    """The options every component takes: wait for the identity lock, so a refused change
    changes nothing, every component and every resource inside one."""
    # Before any resource: a refused placement creates nothing.
    check_zone_quorum(settings, node_subnet_zones(network_args(settings)))
    guard = HostnameGuard(
        "rancher-hostname",
        locked_settings(settings),
        *derived_locked_settings(settings),
        confirmed=confirmed_changes(settings),
        requires_deployed_stack=restores(settings),
    )
    children_wait_for(guard.lock)
    return pulumi.ResourceOptions(depends_on=[guard])


def locked_settings(settings: Settings) -> dict[str, Any]:
    """Settings that cannot change on a deployed stack (components/hostname_lock.py)."""
    locked: dict[str, Any] = {
        "hostname": settings.hostname,
        "distribution": settings.distribution,
        "nodePlacement": settings.node_placement,
        # Not a setting: the stack name makes it; a stack rename must not replace the provider.
        "clusterIdentifier": cluster_identifier(),
    }
    if settings.vpc_id:
        locked.update(vpcId=settings.vpc_id, nodeSubnetIds=list(settings.node_subnet_ids))
    else:
        locked["vpcCidr"] = settings.vpc_cidr
    if settings.distribution == "rke2":
        # Frozen at creation: a new minor's default never swaps it under a running cluster.
        locked["ingressController"] = settings.ingress_controller
    if settings.distribution == "k3s":
        # What RDS restored the datastore from: a change replaces it (force-new inputs).
        locked["datastoreSource"] = settings.datastore_source
    return locked


def derived_locked_settings(settings: Settings) -> tuple[list[str], list[str]]:
    """Locked keys whose value the stack did not set, and those of them that a stack
    deployed before they were locked may not be running (it must say which it runs):
    before this release an RKE2 cluster created below 1.36 got ingress-nginx."""
    if settings.distribution != "rke2" or settings.ingress_controller_choice is not None:
        return [], []
    return ["ingressController"], (["ingressController"] if settings.ingress_controller == "traefik" else [])


def restores(settings: Settings) -> dict[str, str]:
    """Restore settings: they restore this stack's own data, so a stack's first deployment
    refuses them (the lock's requiresDeployedStack)."""
    values = {
        "etcdRestoreSnapshot": settings.etcd_restore_snapshot,
        "dbRestoreFromSnapshot": settings.db_restore_from_snapshot,
        "dbRestoreSourceInstance": settings.db_restore_source_instance,
    }
    return {key: value for key, value in values.items() if value}


def confirmed_changes(settings: Settings) -> list[str]:
    """Locked settings the stack file explicitly allows to change in this update."""
    return ["datastoreSource"] if settings.db_replace_datastore else []


def stack_outputs(settings: Settings, edge: Edge, built: Cluster, services: InCluster) -> dict[str, Any]:
    access, nodes = built.access, built.nodes
    outputs: dict[str, Any] = {
        "rancherUrl": settings.rancher_url,
        "hostname": settings.hostname,
        "loadBalancerAddress": edge.lb_address,
        "kubernetesApiUrl": access.server_url,
        "nodePrivateIps": nodes.private_ips,
        "kubeconfig": access.kubeconfig,
        "bootstrapPassword": services.rancher.bootstrap_password,
        "distribution": settings.distribution,
        "rancherVersion": settings.rancher_version,
    }
    if built.datastore is not None:
        outputs["datastoreEndpoint"] = built.datastore.address
    if built.etcd_snapshot_bucket is not None:
        outputs["etcdSnapshotBucket"] = built.etcd_snapshot_bucket.bucket_name
    if services.backups is not None:
        assert built.backup_bucket is not None  # Rancher's backups go to it
        outputs.update(
            rancherBackupBucket=built.backup_bucket.bucket_name,
            rancherBackupFolder=rancher_backup_folder(),
            rancherBackupEncryptionKey=services.backups.encryption_key,
        )
    return outputs
