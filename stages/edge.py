"""Stage 1, network and edge: the stack's identity, the network, the firewall and the load
balancer's address. Nothing here waits for a server; the servers' TLS names are the stack's
own DNS names, so no server's user data depends on a load balancer output."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.firewall import Firewall, FirewallArgs, RuleSettings, firewall_rules, first_release_names
from components.naming import StackIdentity
from components.network import Network, NetworkArgs
from components.nginx_lb import NginxAddress, NginxAddressArgs
from components.nlb import PUBLIC_PORTS, NetworkLoadBalancer, NetworkLoadBalancerArgs, rancher_health_checks
from settings import Settings, placement


@dataclass(frozen=True)
class Edge:
    """What the cluster stage builds on."""

    guarded: pulumi.ResourceOptions  # every component waits for the identity lock
    identity: StackIdentity
    network: Network
    firewall: Firewall
    # Exactly one of the two: an NLB, or the Elastic IP of the NGINX load balancer.
    nlb: Optional[NetworkLoadBalancer]
    nginx_address: Optional[NginxAddress]
    lb_address: pulumi.Output[str]
    target_groups: dict[int, pulumi.Output[str]]


def network_args(settings: Settings) -> NetworkArgs:
    return NetworkArgs(
        vpc_cidr=settings.vpc_cidr,
        node_placement=settings.node_placement,
        nat_gateway=settings.nat_gateway,
        nat_gateway_per_zone=settings.nat_gateway_per_zone,
        existing_vpc_id=settings.vpc_id,
        existing_node_subnet_ids=settings.node_subnet_ids,
        existing_lb_subnet_ids=settings.lb_subnet_ids,
    )


def network_and_edge(settings: Settings, guarded: pulumi.ResourceOptions) -> Edge:
    k3s = settings.distribution == "k3s"
    nginx = settings.load_balancer_type == "nginx"
    identity = StackIdentity("stack-identity", opts=guarded)

    network = Network("network", network_args(settings), opts=guarded)
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
    return Edge(guarded, identity, network, firewall, nlb, nginx_address, lb_address, target_groups)


def check_cluster_networks(settings: Settings, vpc_cidr: str) -> None:
    """The pod and service networks must not overlap the VPC (the settings check the
    created VPC's CIDR; an existing VPC's is known only from AWS)."""
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
