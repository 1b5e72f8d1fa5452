"""Stage 3, in the cluster: everything here waits for the readiness gate, so deletes always
run while the API is reachable. The Rancher record, the cluster-state parameters, the
Kubernetes upgrades, Rancher's backups and Rancher itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.backups import RancherBackups, RancherBackupsArgs, RestoreSource
from components.cluster_access import ClusterAccess
from components.dns import RancherDns, RancherDnsArgs
from components.hostname_lock import RunningVersions
from components.naming import stack_name
from components.proxy import no_proxy_entries
from components.rancher import Rancher, RancherArgs
from components.secure_parameters import SecureParameters, SecureParametersArgs
from components.snapshot_bucket import BackupReaders, SnapshotBucket
from components.upgrades import KubernetesUpgrades, KubernetesUpgradesArgs
from rendering import rancher_values as values_lib
from rendering.node_config import RESTORED_PARAMETER_PREFIX
from settings import Settings
from stages.cluster import Cluster
from stages.edge import Edge

# Written once the cluster has been ready: a replaced first RKE2 server then joins it.
CLUSTER_INITIALIZED = "cluster-initialized"


@dataclass(frozen=True)
class InCluster:
    """What the stack outputs need."""

    rancher: Rancher
    backups: Optional[RancherBackups]


def in_cluster(settings: Settings, edge: Edge, cluster: Cluster) -> InCluster:
    guarded, access, certificate = edge.guarded, cluster.access, cluster.certificate
    l7 = settings.load_balancer_layer == "l7"
    # Users follow the Rancher name; it moves to a new NLB only once the gate has seen the
    # API through it (an NGINX stack's Elastic IP never moves).
    dns = RancherDns(
        "rancher-dns",
        RancherDnsArgs(
            **cluster.public_names, zone_ready=cluster.api_dns.zone_ready,
            hostname=settings.hostname, after=[access.gate] if edge.nlb else [],
        ),
        opts=guarded,
    )
    if settings.distribution != "k3s":
        SecureParameters(
            "cluster-state",
            SecureParametersArgs(path=cluster.node_path, values=cluster_state(settings), depends_on=[access.gate]),
            opts=guarded,
        )

    # A kubernetesVersion edit upgrades the running servers in place; Rancher's release
    # waits for it (a Rancher that needs the new Kubernetes installs onto it).
    upgrades = KubernetesUpgrades(
        "kubernetes-upgrades",
        KubernetesUpgradesArgs(
            provider=access.provider,
            gate=access.gate,
            access=access.gate_args,
            distribution=settings.distribution,
            kubernetes_version=settings.kubernetes_version,
            server_count=settings.server_count,
        ),
        opts=guarded,
    )

    no_proxy = no_proxy_entries(settings, edge.network.vpc_cidr_block)
    # Rancher's backups: the Rancher release waits for a restore (restoreFromBackup) and
    # for the backup of the Rancher it replaces.
    backups = None
    backup_bucket, bucket = cluster.backup_bucket, cluster.etcd_snapshot_bucket
    if settings.rancher_backups:
        assert backup_bucket is not None  # the cluster stage makes it for Rancher's backups
        backups = RancherBackups(
            "rancher-backups",
            rancher_backups_args(settings, access, backup_bucket, no_proxy),
            opts=guarded,
        )
    if backup_bucket is not None:
        # Only the nodes (etcd snapshots) and the rancher-backup user read or write it; a new
        # stack's backup user may read Rancher's backups to move Rancher there.
        writers = ([cluster.nodes.role_arn] if bucket is not None else []) + ([backups.user_arn] if backups is not None else [])
        readers = BackupReaders(settings.rancher_backup_readers, rancher_backup_folder()) if backups is not None else None
        backup_bucket.restrict_to(writers, settings.region, edge.identity.unique_suffix, readers)
    # L4 and NLB stacks serve the certificate from the ingress; L7 NGINX serves it itself.
    ingress_certificate = None if l7 else certificate
    rancher = Rancher(
        "rancher",
        RancherArgs(
            provider=access.provider,
            gate=access.gate,
            rancher_version=settings.rancher_version,
            rancher_repository=settings.rancher_chart_repository_url,
            cert_manager_version=settings.cert_manager_version,
            values_spec=values_lib.RancherValuesSpec(
                hostname=settings.hostname,
                replicas=settings.rancher_replicas,
                layer=settings.load_balancer_layer,
                tls_source=settings.tls_source,
                private_ca=settings.private_ca,
                agent_tls_mode=settings.agent_tls_mode,
                ingress_controller=settings.ingress_controller,
                lets_encrypt_email=settings.lets_encrypt_email,
                proxy=settings.proxy_https or settings.proxy_http,
                no_proxy=no_proxy,
            ),
            install_cert_manager=settings.uses_cert_manager,
            cert_manager_values=values_lib.cert_manager_values(
                settings.proxy_http, settings.proxy_https, no_proxy, settings.server_count
            ),
            ingress_certificate_pem=ingress_certificate.certificate_pem if ingress_certificate else None,
            ingress_private_key_pem=ingress_certificate.private_key_pem if ingress_certificate else None,
            private_ca_pem=certificate.ca_pem if (certificate is not None and settings.private_ca) else None,
            forwarded_headers=cluster.forwarded_headers,
            rancher_after=[dns, upgrades.wait, *(backups.before_rancher if backups else [])],
            secrets_after=backups.restored if backups else [],
        ),
        opts=guarded,
    )
    # Recorded only once reached: a failed edit can be taken back.
    RunningVersions(
        "running-versions",
        {"kubernetesVersion": settings.kubernetes_version, "rancherVersion": settings.rancher_version},
        after=[upgrades, rancher],
        opts=guarded,
    )
    return InCluster(rancher, backups)


def cluster_state(settings: Settings) -> dict[str, str]:
    """Parameters written once the cluster was ready: the first server of a later boot
    joins it (and does not restore a snapshot already restored)."""
    state = {CLUSTER_INITIALIZED: "true"}
    if settings.etcd_restore_snapshot:
        state[RESTORED_PARAMETER_PREFIX + settings.etcd_restore_snapshot] = "true"
    return state


def rancher_backup_folder(stack: str | None = None) -> str:
    return f"rancher-backups/{stack or stack_name()}"


def rancher_backups_args(settings: Settings, access: ClusterAccess, bucket: SnapshotBucket,
                         no_proxy: list[str]) -> RancherBackupsArgs:
    chart_version = settings.backup_chart_version
    assert chart_version is not None  # the settings refuse rancherBackups without one
    restore = None
    if settings.restore_from_backup:
        key = settings.restore_encryption_key
        restore = RestoreSource(
            backup_file=settings.restore_from_backup,
            bucket=settings.restore_from_bucket,
            folder=settings.restore_from_folder,
            region=settings.restore_from_region,
            encryption_key=pulumi.Output.secret(key.get_secret_value()) if key else None,
        )
    return RancherBackupsArgs(
        provider=access.provider,
        gate=access.gate,
        connection=access.connection,
        region=settings.region,
        bucket_name=bucket.bucket_name,
        bucket_arn=bucket.bucket_arn,
        folder=rancher_backup_folder(),
        chart_version=chart_version,
        rancher_version=settings.rancher_version,
        schedule=settings.rancher_backup_schedule,
        retention=settings.rancher_backup_retention,
        key_max_age_days=settings.rancher_backup_key_max_age_days,
        proxy=settings.proxy_https or settings.proxy_http,
        no_proxy=no_proxy,
        restore=restore,
        permissions_boundary=settings.permissions_boundary,
    )
