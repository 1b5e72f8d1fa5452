"""Stage 2, the cluster: its CA, the K3s datastore, the backup bucket, the servers, the
Rancher certificate, the NGINX load balancer, the API's DNS names, and the readiness gate
that waits for the whole API path; then the servers' membership, which needs the gate.

The servers depend on nothing slow: not on the load balancer (their TLS names are the
stack's own DNS names), not on the datastore (the boot script waits for its endpoint), not
on the NAT gateway (the boot script waits for egress)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.cluster_access import API_PORT, ClusterAccess, ClusterAccessArgs
from components.cluster_ca import ClusterCa, ClusterCaArgs
from components.cluster_nodes import NODE_PARAMETER_PATH_SUFFIX, ClusterNodes, ClusterNodesArgs
from components.datastore import Datastore, DatastoreArgs
from components.dns import ApiDns, ApiDnsArgs, LoadBalancerTarget, PrivateZone, PrivateZoneArgs, PublicNames, registration_hostname
from components.membership import MEMBER_REMOVAL_TIMEOUT_SECONDS, ClusterMembership, ClusterMembershipArgs
from components.naming import stack_name
from components.network import Network
from components.nginx_lb import NginxAddress, NginxLoadBalancer, NginxLoadBalancerArgs
from components.proxy import proxy_spec
from components.snapshot_bucket import SnapshotBucket, SnapshotBucketArgs
from components.tls_certificate import RancherCertificate, RancherCertificateArgs
from rendering import rancher_values as values_lib
from rendering.node_config import EtcdSnapshots
from settings import Settings
from stages.edge import Edge


@dataclass(frozen=True)
class Cluster:
    """What the in-cluster stage and the stack outputs need."""

    node_path: pulumi.Output[str]  # the SSM path of the servers' parameters
    nodes: ClusterNodes
    datastore: Optional[Datastore]  # K3s
    backup_bucket: Optional[SnapshotBucket]  # etcd snapshots and/or Rancher's backups
    etcd_snapshot_bucket: Optional[SnapshotBucket]  # the same bucket, when the servers write to it
    certificate: Optional[RancherCertificate]
    public_names: PublicNames
    api_dns: ApiDns
    access: ClusterAccess  # the readiness gate and the Kubernetes provider
    # L7 NGINX: the ingress chart's name and the values that trust NGINX's X-Forwarded-*.
    forwarded_headers: Optional[tuple[str, Any]]


def cluster(settings: Settings, edge: Edge) -> Cluster:
    k3s = settings.distribution == "k3s"
    l7 = settings.load_balancer_layer == "l7"
    guarded, network = edge.guarded, edge.network
    node_path = pulumi.Output.concat(edge.identity.parameter_root, "/", NODE_PARAMETER_PATH_SUFFIX)
    cluster_ca = ClusterCa("cluster-ca", ClusterCaArgs(distribution=settings.distribution), opts=guarded)
    datastore = _datastore(settings, edge) if k3s else None
    # One bucket for the stack's backups: etcd snapshots (rke2) and Rancher's, each in its folder.
    backup_bucket = None
    if settings.etcd_snapshot_s3 or settings.rancher_backups:
        backup_bucket = SnapshotBucket(
            "etcd-snapshots",
            SnapshotBucketArgs(protect=settings.protect_stateful_resources, admin_arns=settings.snapshot_bucket_admins),
            opts=guarded,
        )
    bucket = backup_bucket if settings.etcd_snapshot_s3 else None

    registration = None if k3s else registration_hostname()
    # Before the servers: a joiner must never get a negative answer for long.
    private_zone = None if k3s else PrivateZone("private-zone", PrivateZoneArgs(vpc_id=network.vpc_id), opts=guarded)
    nodes = _nodes(settings, edge, node_path, cluster_ca, datastore, bucket, registration)
    certificate = _certificate(settings, guarded)

    api_path: list[pulumi.Resource] = [network, edge.firewall, nodes, *([datastore] if datastore else [])]
    gate_triggers: list[Any] = []
    forwarded_headers = None
    if edge.nginx_address is not None:
        balancer = _nginx_balancer(settings, edge, edge.nginx_address, nodes, certificate if l7 else None)
        api_path += [edge.nginx_address, balancer]
        gate_triggers.append(balancer.group.launch_template.apply(lambda template: f"{template.id}:{template.version}"))
        dns_target = LoadBalancerTarget(address=edge.nginx_address.address)
        if l7:
            forwarded_headers = (
                values_lib.forwarded_headers_chart_name(settings.distribution, settings.ingress_controller),
                values_lib.forwarded_headers_values(
                    settings.ingress_controller, trusted_forwarders(settings, network), settings.nginx_proxy_timeout_seconds
                ),
            )
    else:
        assert edge.nlb is not None  # made by the edge stage when NGINX is not
        api_path.append(edge.nlb)
        dns_target = LoadBalancerTarget(alias_dns_name=edge.nlb.dns_name, alias_zone_id=edge.nlb.zone_id)
    public_names = PublicNames(
        hosted_zone=settings.hosted_zone, hosted_zone_private=settings.hosted_zone_private, vpc_id=network.vpc_id,
        target=dns_target, created_vpc=not settings.vpc_id, take_over=settings.take_over_dns_records,
    )
    api_dns = ApiDns(
        "api-dns",
        ApiDnsArgs(
            **public_names,
            api_hostname=settings.api_hostname,
            registration_addresses=nodes.private_ips if registration else (),
            private_zone_id=private_zone.zone_id if private_zone else None,
        ),
        opts=guarded,
    )
    api_path += [api_dns] + ([private_zone] if private_zone else [])

    access = ClusterAccess(
        "cluster-access",
        ClusterAccessArgs(
            api_hostname=settings.api_hostname,
            tls_server_name=settings.hostname,
            load_balancer_address=edge.lb_address,
            server_ca_pem=cluster_ca.server_ca_pem,
            admin_cert_pem=cluster_ca.admin_cert_pem,
            admin_key_pem=cluster_ca.admin_key_pem,
            ready_timeout_seconds=settings.api_ready_timeout_seconds,
            server_addresses=nodes.private_ips,
            triggers=gate_triggers,
            wait_for=api_path,
        ),
        opts=guarded,
    )
    membership(settings, nodes, access, edge.lb_address, cluster_ca, guarded)
    return Cluster(node_path, nodes, datastore, backup_bucket, bucket, certificate, public_names, api_dns, access,
                   forwarded_headers)


def _datastore(settings: Settings, edge: Edge) -> Datastore:
    assert edge.firewall.db_sg_id is not None  # FirewallArgs(with_datastore=k3s)
    return Datastore(
        "datastore",
        DatastoreArgs(
            subnet_ids=edge.network.node_subnet_ids,
            security_group_id=edge.firewall.db_sg_id,
            instance_class=settings.db_instance_class,
            engine_version=settings.db_engine_version,
            allocated_storage_gb=settings.db_allocated_storage_gb,
            backup_retention_days=settings.db_backup_retention_days,
            multi_az=settings.db_multi_az,
            apply_immediately=settings.db_apply_immediately,
            deletion_protection=settings.db_deletion_protection,
            final_snapshot=settings.db_final_snapshot,
            protect=settings.protect_stateful_resources,
            restore_from_snapshot=settings.db_restore_from_snapshot,
            restore_source_instance=settings.db_restore_source_instance,
            restore_time=settings.db_restore_time,
        ),
        opts=edge.guarded,
    )


def _nodes(settings: Settings, edge: Edge, node_path: pulumi.Output[str], cluster_ca: ClusterCa,
           datastore: Optional[Datastore], bucket: Optional[SnapshotBucket], registration: Optional[str]) -> ClusterNodes:
    network = edge.network
    node_secrets: dict[str, Any] = {f"tls/{path}": pem for path, pem in cluster_ca.files.items()}
    # The servers boot while RDS is created; they wait for this parameter.
    late_secrets: dict[str, Any] = {"datastore-endpoint": datastore.dsn} if datastore else {}
    snapshots = None
    if settings.distribution != "k3s":
        snapshots = EtcdSnapshots(
            schedule=settings.etcd_snapshot_schedule,
            retention=settings.etcd_snapshot_retention,
            s3_folder=f"rancher-ha/{stack_name()}",
        )
    return ClusterNodes(
        "rancher",
        ClusterNodesArgs(
            distribution=settings.distribution,
            server_count=settings.server_count,
            kubernetes_version=settings.kubernetes_version,
            region=settings.region,
            parameter_path=node_path,
            instance_type=settings.server_instance_type,
            root_volume_gb=settings.server_root_volume_gb,
            subnet_ids=network.node_subnet_ids,
            public_ip=network.nodes_public,
            security_group_id=edge.firewall.node_sg_id,
            imds_hop_limit=settings.imds_hop_limit,
            tls_sans=[settings.hostname, settings.api_hostname] + ([registration] if registration else []),
            registration_hostname=registration,
            cluster_cidr=settings.cluster_cidr,
            service_cidr=settings.service_cidr,
            ingress_controller=settings.ingress_controller,
            etcd_snapshots=snapshots,
            etcd_snapshot_bucket=bucket.bucket_name if bucket else None,
            etcd_snapshot_bucket_arn=bucket.bucket_arn if bucket else None,
            proxy=proxy_spec(settings, network.vpc_cidr_block),
            ssh_key_name=settings.ssh_key_name,
            session_manager=settings.session_manager,
            permissions_boundary=settings.permissions_boundary,
            target_groups=edge.target_groups,
            secrets=node_secrets,
            late_secrets=late_secrets,
            etcd_restore_snapshot=settings.etcd_restore_snapshot,
        ),
        opts=edge.guarded,
    )


def _certificate(settings: Settings, guarded: pulumi.ResourceOptions) -> Optional[RancherCertificate]:
    if settings.tls_source not in ("provided", "generated"):
        return None
    return RancherCertificate(
        "rancher-certificate",
        RancherCertificateArgs(
            hostname=settings.hostname,
            source=settings.tls_source,
            provided_certificate=settings.tls_certificate,
            provided_private_key=(
                pulumi.Output.secret(settings.tls_private_key.get_secret_value()) if settings.tls_private_key else None
            ),
            provided_ca_certificate=settings.tls_ca_certificate,
        ),
        opts=guarded,
    )


def _nginx_balancer(settings: Settings, edge: Edge, address: NginxAddress, nodes: ClusterNodes,
                    certificate: Optional[RancherCertificate]) -> NginxLoadBalancer:
    """The NGINX load balancer; `certificate` is the pair it serves itself (L7), or None."""
    return NginxLoadBalancer(
        "nginx-lb",
        NginxLoadBalancerArgs(
            hostname=settings.hostname,
            layer=settings.load_balancer_layer,
            distribution=settings.distribution,
            region=settings.region,
            parameter_root=edge.identity.parameter_root,
            stack_id=edge.identity.stack_id,
            node_private_ips=nodes.private_ips,
            subnet_ids=edge.network.lb_subnet_ids,
            security_group_id=edge.firewall.lb_sg_id,
            address=address,
            instance_type=settings.nginx_instance_type,
            imds_hop_limit=settings.imds_hop_limit,
            worker_processes=settings.nginx_worker_processes,
            worker_connections=settings.nginx_worker_connections,
            worker_rlimit_nofile=settings.nginx_worker_rlimit_nofile,
            proxy_timeout_seconds=settings.nginx_proxy_timeout_seconds,
            ssh_key_name=settings.ssh_key_name,
            session_manager=settings.session_manager,
            permissions_boundary=settings.permissions_boundary,
            certificate_pem=certificate.certificate_pem if certificate else None,
            private_key_pem=certificate.private_key_pem if certificate else None,
        ),
        opts=edge.guarded,
    )


def membership(settings: Settings, nodes: ClusterNodes, access: ClusterAccess, lb_address: pulumi.Output[str],
               cluster_ca: ClusterCa, opts: pulumi.ResourceOptions) -> ClusterMembership:
    """One member per server: removing a server drains it and removes its Node and etcd
    member before its instance terminates, one server at a time (components/membership.py)."""
    return ClusterMembership(
        "cluster-membership",
        ClusterMembershipArgs(
            distribution=settings.distribution,
            instances=nodes.instances,
            instance_ids=nodes.instance_ids,
            addresses=nodes.private_ips,
            api_url=pulumi.Output.concat("https://", lb_address, f":{API_PORT}"),
            server_name=settings.hostname,
            ca_pem=cluster_ca.server_ca_pem,
            client_cert_pem=cluster_ca.admin_cert_pem,
            client_key_pem=cluster_ca.admin_key_pem,
            timeout_seconds=MEMBER_REMOVAL_TIMEOUT_SECONDS,
            gate=access.gate,
            provider=access.provider,
        ),
        opts=opts,
    )


def trusted_forwarders(settings: Settings, network: Network) -> list[str]:
    """Peers the cluster ingress may take X-Forwarded-* from, behind the L7 NGINX.

    NGINX runs in the load-balancer subnets (any of them: it is replaced by its Auto
    Scaling group). On K3s, ServiceLB (klipper-lb) DNATs to Traefik's service and
    MASQUERADEs, so Traefik sees the svclb pod's address, from the pod network, never
    NGINX's (k3s #1710, klipper-lb #31): the pod network is trusted too. That trusts no
    one new: any pod can already reach Rancher's service directly, and only the load
    balancer's security group may reach the nodes' 80/443.
    """
    return [settings.cluster_cidr, *network.lb_cidrs]
