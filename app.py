"""The rancher-ha program: which components a stack gets, and how they connect.

`__main__.py` calls `deploy(load_settings())` and exports what it returns; tests and
the offline render call the same function under mocks.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.cluster_access import ClusterAccess, ClusterAccessArgs
from components.cluster_ca import ClusterCa, ClusterCaArgs
from components.cluster_nodes import NODE_PARAMETER_PATH_SUFFIX, ClusterNodes, ClusterNodesArgs
from components.datastore import Datastore, DatastoreArgs
from components.dns import RancherDns, RancherDnsArgs
from components.firewall import Firewall, FirewallArgs, firewall_rules
from components.hostname_lock import HostnameGuard
from components.naming import parameter_root, stack_name
from components.network import Network, NetworkArgs
from components.nginx_lb import NginxAddress, NginxAddressArgs, NginxLoadBalancer, NginxLoadBalancerArgs
from components.nlb import INTERNAL_PORTS, PUBLIC_PORTS, NetworkLoadBalancer, NetworkLoadBalancerArgs
from components.proxy import no_proxy_entries, proxy_spec
from components.rancher import Rancher, RancherArgs
from components.snapshot_bucket import SnapshotBucket, SnapshotBucketArgs
from components.tls_certificate import RancherCertificate, RancherCertificateArgs
from rendering import rancher_values as values_lib
from rendering.node_config import EtcdSnapshots
from settings import Settings


def deploy(settings: Settings) -> dict[str, Any]:
    k3s = settings.distribution == "k3s"
    nginx = settings.load_balancer_type == "nginx"
    # Everything waits for the hostname guard, so a refused rename changes nothing.
    guarded = pulumi.ResourceOptions(depends_on=[HostnameGuard("rancher-hostname", settings.hostname)])

    network = Network(
        "network",
        NetworkArgs(
            vpc_cidr=settings.vpc_cidr,
            node_placement=settings.node_placement,
            nat_gateway=settings.nat_gateway,
            existing_vpc_id=settings.vpc_id,
            existing_node_subnet_ids=settings.node_subnet_ids,
            existing_lb_subnet_ids=settings.lb_subnet_ids,
        ),
        opts=guarded,
    )
    firewall = Firewall(
        "firewall",
        FirewallArgs(
            vpc_id=network.vpc_id,
            vpc_cidr=network.vpc_cidr,
            rules=firewall_rules(
                distribution=settings.distribution,
                admin_cidrs=settings.admin_cidrs,
                ssh=settings.ssh_key_name is not None,
                datastore=k3s,
            ),
            lb_egress_anywhere=nginx,
            with_datastore=k3s,
        ),
        opts=guarded,
    )

    # The load balancer's addresses exist before the nodes: they go into tls-san, and
    # joining RKE2 servers register through the private one.
    registration_address = None
    if nginx:
        nginx_address = NginxAddress(
            "nginx-lb-address",
            NginxAddressArgs(subnet_id=network.lb_subnet_ids[0], security_group_id=firewall.lb_sg_id),
            opts=guarded,
        )
        lb_address = nginx_address.address
        registration_address = nginx_address.private_address
        target_group_arns: list = []
    else:
        nlb = NetworkLoadBalancer(
            "rancher-lb",
            NetworkLoadBalancerArgs(
                vpc_id=network.vpc_id,
                subnet_ids=network.lb_subnet_ids,
                security_group_id=firewall.lb_sg_id,
                ports=PUBLIC_PORTS,
            ),
            opts=guarded,
        )
        lb_address = nlb.address
        target_group_arns = list(nlb.target_group_arns.values())
        if not k3s:
            registration = NetworkLoadBalancer(
                "registration-lb",
                NetworkLoadBalancerArgs(
                    vpc_id=network.vpc_id,
                    subnet_ids=network.node_subnet_ids,
                    security_group_id=firewall.lb_sg_id,
                    ports=INTERNAL_PORTS,
                    internal=True,
                ),
                opts=guarded,
            )
            registration_address = registration.address
            target_group_arns += list(registration.target_group_arns.values())

    cluster_ca = ClusterCa("cluster-ca", ClusterCaArgs(distribution=settings.distribution), opts=guarded)
    node_secrets: dict[str, Any] = {f"tls/{path}": pem for path, pem in cluster_ca.files.items()}

    node_dependencies: list[pulumi.Resource] = []
    datastore = None
    if k3s:
        datastore = Datastore(
            "datastore",
            DatastoreArgs(
                subnet_ids=network.node_subnet_ids,
                security_group_id=firewall.db_sg_id,
                instance_class=settings.db_instance_class,
                engine_version=settings.db_engine_version,
                allocated_storage_gb=settings.db_allocated_storage_gb,
                backup_retention_days=settings.db_backup_retention_days,
                multi_az=settings.db_multi_az,
                deletion_protection=settings.db_deletion_protection,
                final_snapshot=settings.db_final_snapshot,
                protect=settings.protect_stateful_resources,
            ),
            opts=guarded,
        )
        node_secrets["datastore-endpoint"] = datastore.dsn
        node_dependencies.append(datastore)


    snapshots = bucket = None
    if not k3s:
        snapshots = EtcdSnapshots(
            schedule=settings.etcd_snapshot_schedule,
            retention=settings.etcd_snapshot_retention,
            s3_folder=f"rancher-ha/{stack_name()}",
        )
        if settings.etcd_snapshot_s3:
            bucket = SnapshotBucket(
                "etcd-snapshots", SnapshotBucketArgs(protect=settings.protect_stateful_resources), opts=guarded
            )

    nodes = ClusterNodes(
        "rancher",
        ClusterNodesArgs(
            distribution=settings.distribution,
            server_count=settings.server_count,
            kubernetes_version=settings.kubernetes_version,
            region=settings.region,
            parameter_path=f"{parameter_root()}/{NODE_PARAMETER_PATH_SUFFIX}",
            instance_type=settings.server_instance_type,
            root_volume_gb=settings.server_root_volume_gb,
            subnet_ids=network.node_subnet_ids,
            public_ip=network.nodes_public,
            security_group_id=firewall.node_sg_id,
            imds_hop_limit=settings.imds_hop_limit,
            hostname=settings.hostname,
            lb_address=lb_address,
            registration_address=registration_address,
            cluster_cidr=settings.cluster_cidr,
            service_cidr=settings.service_cidr,
            ingress_controller=settings.ingress_controller,
            etcd_snapshots=snapshots,
            etcd_snapshot_bucket=bucket.bucket_name if bucket else None,
            etcd_snapshot_bucket_arn=bucket.bucket_arn if bucket else None,
            proxy=proxy_spec(settings),
            ssh_key_name=settings.ssh_key_name,
            target_group_arns=target_group_arns,
            secrets=node_secrets,
            depends_on=node_dependencies,
        ),
        opts=guarded,
    )

    certificate = None
    if settings.tls_source in ("provided", "generated"):
        certificate = RancherCertificate(
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

    l7 = settings.load_balancer_layer == "l7"
    gate_waits_for: list[pulumi.Resource] = [nodes]
    forwarded_headers = None
    if nginx:
        balancer = NginxLoadBalancer(
            "nginx-lb",
            NginxLoadBalancerArgs(
                hostname=settings.hostname,
                layer=settings.load_balancer_layer,
                distribution=settings.distribution,
                region=settings.region,
                node_private_ips=nodes.private_ips,
                network_interface_id=nginx_address.network_interface_id,
                instance_type=settings.nginx_instance_type,
                imds_hop_limit=settings.imds_hop_limit,
                worker_processes=settings.nginx_worker_processes,
                worker_connections=settings.nginx_worker_connections,
                worker_rlimit_nofile=settings.nginx_worker_rlimit_nofile,
                proxy_timeout_seconds=settings.nginx_proxy_timeout_seconds,
                ssh_key_name=settings.ssh_key_name,
                certificate_pem=certificate.certificate_pem if (l7 and certificate) else None,
                private_key_pem=certificate.private_key_pem if (l7 and certificate) else None,
            ),
            opts=guarded,
        )
        gate_waits_for.append(balancer)
        dns_args = RancherDnsArgs(hostname=settings.hostname, hosted_zone=settings.hosted_zone, address=nginx_address.address)
        if l7:
            forwarded_headers = (
                values_lib.forwarded_headers_chart_name(settings.distribution, settings.ingress_controller),
                nginx_address.private_address.apply(
                    lambda ip: values_lib.forwarded_headers_values(settings.ingress_controller, [f"{ip}/32"])
                ),
            )
    else:
        dns_args = RancherDnsArgs(
            hostname=settings.hostname, hosted_zone=settings.hosted_zone, alias_dns_name=nlb.dns_name, alias_zone_id=nlb.zone_id
        )
    dns = RancherDns("rancher-dns", dns_args, opts=guarded)

    access = ClusterAccess(
        "cluster-access",
        ClusterAccessArgs(
            api_address=lb_address,
            server_ca_pem=cluster_ca.server_ca_pem,
            admin_cert_pem=cluster_ca.admin_cert_pem,
            admin_key_pem=cluster_ca.admin_key_pem,
            ready_timeout_seconds=settings.api_ready_timeout_seconds,
            wait_for=gate_waits_for,
        ),
        opts=guarded,
    )

    no_proxy = no_proxy_entries(settings)
    ingress_tls = certificate is not None and not l7
    rancher = Rancher(
        "rancher",
        RancherArgs(
            provider=access.provider,
            gate=access.gate,
            rancher_version=settings.rancher_version,
            cert_manager_version=settings.cert_manager_version,
            values_spec=values_lib.RancherValuesSpec(
                hostname=settings.hostname,
                replicas=settings.server_count,
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
            cert_manager_values=values_lib.cert_manager_values(settings.proxy_http, settings.proxy_https, no_proxy),
            ingress_certificate_pem=certificate.certificate_pem if ingress_tls else None,
            ingress_private_key_pem=certificate.private_key_pem if ingress_tls else None,
            private_ca_pem=certificate.ca_pem if (certificate is not None and settings.private_ca) else None,
            forwarded_headers=forwarded_headers,
            depends_on=[dns],
        ),
        opts=guarded,
    )

    outputs: dict[str, Any] = {
        "rancherUrl": settings.rancher_url,
        "hostname": settings.hostname,
        "loadBalancerAddress": lb_address,
        "kubernetesApiUrl": access.server_url,
        "nodePrivateIps": nodes.private_ips,
        "kubeconfig": access.kubeconfig,
        "bootstrapPassword": rancher.bootstrap_password,
        "distribution": settings.distribution,
        "rancherVersion": settings.rancher_version,
    }
    if datastore is not None:
        outputs["datastoreEndpoint"] = datastore.address
    if bucket is not None:
        outputs["etcdSnapshotBucket"] = bucket.bucket_name
    return outputs

