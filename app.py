"""The rancher-ha program: which components a stack gets, and how they connect.

`__main__.py` calls `deploy(load_settings())` and exports what it returns; tests and
the offline render call the same function under mocks.

The shape of the graph is deliberate (see README "Architecture"):
- servers depend on nothing slow: not on the load balancer (their TLS names are the
  stack's own DNS names), not on the datastore (the boot script waits for its endpoint),
  not on the NAT gateway (the boot script waits for egress);
- the readiness gate depends on the whole API path, and every in-cluster resource on
  the gate, so deletes always run while the API is reachable.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.backups import RancherBackups, RancherBackupsArgs, RestoreSource
from components.cluster_access import API_PORT, ClusterAccess, ClusterAccessArgs, cluster_identifier
from components.cluster_ca import ClusterCa, ClusterCaArgs
from components.cluster_nodes import NODE_PARAMETER_PATH_SUFFIX, ClusterNodes, ClusterNodesArgs
from components.datastore import Datastore, DatastoreArgs
from components.dns import (
    ApiDns,
    ApiDnsArgs,
    LoadBalancerTarget,
    PrivateZone,
    PrivateZoneArgs,
    PublicNames,
    RancherDns,
    RancherDnsArgs,
    registration_hostname,
)
from components.firewall import Firewall, FirewallArgs, RuleSettings, firewall_rules, first_release_names
from components.hostname_lock import HostnameGuard
from components.membership import MEMBER_REMOVAL_TIMEOUT_SECONDS, ClusterMembership, ClusterMembershipArgs
from components.naming import StackIdentity, children_wait_for, stack_name
from components.network import Network, NetworkArgs, node_subnet_zones
from components.nginx_lb import NginxAddress, NginxAddressArgs, NginxLoadBalancer, NginxLoadBalancerArgs
from components.nlb import PUBLIC_PORTS, NetworkLoadBalancer, NetworkLoadBalancerArgs, rancher_health_checks
from components.proxy import no_proxy_entries, proxy_spec
from components.rancher import Rancher, RancherArgs
from components.secure_parameters import SecureParameters, SecureParametersArgs
from components.snapshot_bucket import SnapshotBucket, SnapshotBucketArgs
from components.tls_certificate import RancherCertificate, RancherCertificateArgs
from components.upgrades import KubernetesUpgrades, KubernetesUpgradesArgs
from rendering import rancher_values as values_lib
from rendering.node_config import RESTORED_PARAMETER_PREFIX, EtcdSnapshots
from settings import Settings, placement

# Written once the cluster has been ready: a replaced first RKE2 server then joins it.
CLUSTER_INITIALIZED = "cluster-initialized"


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


def cluster_state(settings: Settings) -> dict[str, str]:
    """Parameters written once the cluster was ready: the first server of a later boot
    joins it (and does not restore a snapshot already restored)."""
    state = {CLUSTER_INITIALIZED: "true"}
    if settings.etcd_restore_snapshot:
        state[RESTORED_PARAMETER_PREFIX + settings.etcd_restore_snapshot] = "true"
    return state


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


def deploy(settings: Settings) -> dict[str, Any]:
    k3s = settings.distribution == "k3s"
    nginx = settings.load_balancer_type == "nginx"
    l7 = settings.load_balancer_layer == "l7"
    network_args = NetworkArgs(
        vpc_cidr=settings.vpc_cidr,
        node_placement=settings.node_placement,
        nat_gateway=settings.nat_gateway,
        nat_gateway_per_zone=settings.nat_gateway_per_zone,
        existing_vpc_id=settings.vpc_id,
        existing_node_subnet_ids=settings.node_subnet_ids,
        existing_lb_subnet_ids=settings.lb_subnet_ids,
    )
    # Before any resource: a refused placement creates nothing.
    check_zone_quorum(settings, node_subnet_zones(network_args))
    # Everything waits for the guard, so a refused change changes nothing: every
    # component, and every resource inside one.
    guard = HostnameGuard(
        "rancher-hostname",
        locked_settings(settings),
        *derived_locked_settings(settings),
        running={"kubernetesVersion": settings.kubernetes_version, "rancherVersion": settings.rancher_version},
        confirmed=confirmed_changes(settings),
        requires_deployed_stack=restores(settings),
    )
    children_wait_for(guard.lock)
    guarded = pulumi.ResourceOptions(depends_on=[guard])
    identity = StackIdentity("stack-identity", opts=guarded)
    node_path = pulumi.Output.concat(identity.parameter_root, "/", NODE_PARAMETER_PATH_SUFFIX)

    network = Network("network", network_args, opts=guarded)
    check_cluster_networks(settings, network.vpc_cidr_block)
    rule_settings = RuleSettings(
        distribution=settings.distribution,
        admin_cidrs=settings.admin_cidrs,
        ssh=settings.ssh_key_name is not None,
        datastore=k3s,
    )
    # An internal load balancer serves Rancher to the admins' networks and the VPC.
    internal_clients = [*settings.admin_cidrs, network.vpc_cidr_block] if settings.internal else None
    firewall = Firewall(
        "firewall",
        FirewallArgs(
            vpc_id=network.vpc_id,
            vpc_cidr=network.vpc_cidr,
            rules=firewall_rules(**rule_settings, internal_clients=internal_clients),
            previous_names=first_release_names("firewall", **rule_settings),
            lb_egress_anywhere=nginx,
            with_datastore=k3s,
        ),
        opts=guarded,
    )

    # The load balancer. Its outputs flow only into DNS, the gate and target
    # registrations, never into a server's user data.
    internet_facing_ready = [] if settings.internal else network.internet_ready
    lb_subnets = network.node_subnet_ids if (settings.internal and not settings.vpc_id) else network.lb_subnet_ids
    nlb = nginx_address = None
    target_groups: dict[int, Any] = {}
    if nginx:
        nginx_address = NginxAddress("nginx-lb-address", NginxAddressArgs(depends_on=network.internet_ready), opts=guarded)
        lb_address = nginx_address.address
    else:
        nlb = NetworkLoadBalancer(
            "rancher-lb",
            NetworkLoadBalancerArgs(
                vpc_id=network.vpc_id,
                subnet_ids=lb_subnets,
                security_group_id=firewall.lb_sg_id,
                ports=PUBLIC_PORTS,
                internal=settings.internal,
                health_checks=rancher_health_checks(settings.distribution, settings.ingress_controller),
                depends_on=internet_facing_ready,
            ),
            opts=guarded,
        )
        lb_address = nlb.address
        target_groups = dict(nlb.target_group_arns)

    cluster_ca = ClusterCa("cluster-ca", ClusterCaArgs(distribution=settings.distribution), opts=guarded)
    node_secrets: dict[str, Any] = {f"tls/{path}": pem for path, pem in cluster_ca.files.items()}

    datastore = None
    late_secrets: dict[str, Any] = {}
    if k3s:
        assert firewall.db_sg_id is not None  # FirewallArgs(with_datastore=k3s)
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
                apply_immediately=settings.db_apply_immediately,
                deletion_protection=settings.db_deletion_protection,
                final_snapshot=settings.db_final_snapshot,
                protect=settings.protect_stateful_resources,
                restore_from_snapshot=settings.db_restore_from_snapshot,
                restore_source_instance=settings.db_restore_source_instance,
                restore_time=settings.db_restore_time,
            ),
            opts=guarded,
        )
        # The servers boot while RDS is created; they wait for this parameter.
        late_secrets["datastore-endpoint"] = datastore.dsn

    snapshots = None
    if not k3s:
        snapshots = EtcdSnapshots(
            schedule=settings.etcd_snapshot_schedule,
            retention=settings.etcd_snapshot_retention,
            s3_folder=f"rancher-ha/{stack_name()}",
        )
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
    nodes = ClusterNodes(
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
            security_group_id=firewall.node_sg_id,
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
            target_groups=target_groups,
            secrets=node_secrets,
            late_secrets=late_secrets,
            etcd_restore_snapshot=settings.etcd_restore_snapshot,
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

    api_path: list[pulumi.Resource] = [network, firewall, nodes, *([datastore] if datastore else [])]
    gate_triggers: list[Any] = []
    forwarded_headers = None
    if nginx_address is not None:
        balancer = NginxLoadBalancer(
            "nginx-lb",
            NginxLoadBalancerArgs(
                hostname=settings.hostname,
                layer=settings.load_balancer_layer,
                distribution=settings.distribution,
                region=settings.region,
                parameter_root=identity.parameter_root,
                stack_id=identity.stack_id,
                node_private_ips=nodes.private_ips,
                subnet_ids=network.lb_subnet_ids,
                security_group_id=firewall.lb_sg_id,
                address=nginx_address,
                instance_type=settings.nginx_instance_type,
                imds_hop_limit=settings.imds_hop_limit,
                worker_processes=settings.nginx_worker_processes,
                worker_connections=settings.nginx_worker_connections,
                worker_rlimit_nofile=settings.nginx_worker_rlimit_nofile,
                proxy_timeout_seconds=settings.nginx_proxy_timeout_seconds,
                ssh_key_name=settings.ssh_key_name,
                session_manager=settings.session_manager,
                certificate_pem=certificate.certificate_pem if (l7 and certificate) else None,
                private_key_pem=certificate.private_key_pem if (l7 and certificate) else None,
            ),
            opts=guarded,
        )
        api_path += [nginx_address, balancer]
        gate_triggers.append(balancer.group.launch_template.apply(lambda template: f"{template.id}:{template.version}"))
        dns_target = LoadBalancerTarget(address=nginx_address.address)
        if l7:
            forwarded_headers = (
                values_lib.forwarded_headers_chart_name(settings.distribution, settings.ingress_controller),
                values_lib.forwarded_headers_values(
                    settings.ingress_controller, trusted_forwarders(settings, network), settings.nginx_proxy_timeout_seconds
                ),
            )
    else:
        assert nlb is not None  # made above when NGINX is not
        api_path.append(nlb)
        dns_target = LoadBalancerTarget(alias_dns_name=nlb.dns_name, alias_zone_id=nlb.zone_id)
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
            load_balancer_address=lb_address,
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
    membership(settings, nodes, access, lb_address, cluster_ca, guarded)
    # Users follow the Rancher name; it moves to a new NLB only once the gate has seen the
    # API through it (an NGINX stack's Elastic IP never moves).
    dns = RancherDns(
        "rancher-dns",
        RancherDnsArgs(
            **public_names, zone_ready=api_dns.zone_ready,
            hostname=settings.hostname, after=[access.gate] if nlb else [],
        ),
        opts=guarded,
    )
    if not k3s:
        SecureParameters(
            "cluster-state",
            SecureParametersArgs(path=node_path, values=cluster_state(settings), depends_on=[access.gate]),
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

    no_proxy = no_proxy_entries(settings, network.vpc_cidr_block)
    # Rancher's backups: the Rancher release waits for a restore (restoreFromBackup) and
    # for the backup of the Rancher it replaces.
    backups = None
    if settings.rancher_backups:
        backups = RancherBackups(
            "rancher-backups",
            rancher_backups_args(settings, access, backup_bucket, no_proxy),
            opts=guarded,
        )
    if backup_bucket is not None:
        # Only the nodes (etcd snapshots) and the rancher-backup user read or write it.
        writers = ([nodes.role_arn] if bucket is not None else []) + ([backups.user_arn] if backups is not None else [])
        backup_bucket.restrict_to(writers, settings.region, identity.unique_suffix)
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
            forwarded_headers=forwarded_headers,
            rancher_after=[dns, upgrades.wait, *(backups.before_rancher if backups else [])],
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
    if backups is not None:
        outputs.update(
            rancherBackupBucket=backup_bucket.bucket_name,
            rancherBackupFolder=rancher_backup_folder(),
            rancherBackupEncryptionKey=backups.encryption_key,
        )
    return outputs


def membership(settings: Settings, nodes: ClusterNodes, access: ClusterAccess, lb_address: Any, cluster_ca: ClusterCa,
               opts: pulumi.ResourceOptions) -> ClusterMembership:
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


def rancher_backup_folder(stack: str | None = None) -> str:
    return f"rancher-backups/{stack or stack_name()}"


def rancher_backups_args(settings: Settings, access: ClusterAccess, bucket: SnapshotBucket, no_proxy: list) -> RancherBackupsArgs:
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
        chart_version=settings.backup_chart_version,
        rancher_version=settings.rancher_version,
        schedule=settings.rancher_backup_schedule,
        retention=settings.rancher_backup_retention,
        key_max_age_days=settings.rancher_backup_key_max_age_days,
        proxy=settings.proxy_https or settings.proxy_http,
        no_proxy=no_proxy,
        restore=restore,
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


def check_cluster_networks(settings: Settings, vpc_cidr: str) -> None:
    """The pod and service networks must not overlap the VPC (the settings check the
    created VPC's CIDR; an existing VPC's is known only from AWS)."""
    import ipaddress

    vpc = ipaddress.ip_network(vpc_cidr)
    for key, cidr in (("clusterCidr", settings.cluster_cidr), ("serviceCidr", settings.service_cidr)):
        if ipaddress.ip_network(cidr).overlaps(vpc):
            raise ValueError(
                f"rancher-ha:{key} = '{cidr}': overlaps the VPC {vpc}, so pod or service traffic would be "
                "misrouted. Fix: pick a range outside the VPC"
            )


def check_zone_quorum(settings: Settings, node_zones: list[str]) -> None:
    """RKE2's etcd must keep a majority when any one zone is lost (the settings check what
    the subnet count alone decides; the subnets' zones are known only from AWS)."""
    if settings.distribution != "rke2":
        return
    risk = placement.quorum_loss_on_zone_failure(settings.server_count, node_zones)
    if risk is None:
        return
    key, value = ("rancher-ha:nodeSubnetIds", settings.node_subnet_ids) if settings.vpc_id else ("aws:region", settings.region)
    reason = placement.explain(risk, f"the zones of the node subnets ({', '.join(node_zones)})")
    if settings.allow_quorum_loss_on_zone_failure:
        pulumi.log.warn(f"{placement.OPT_IN}: true accepts this placement: {reason.split(' Fix:')[0]}")
        return
    raise ValueError(f"{key} = {value!r}: {reason}")
