"""Security groups and every rule between the internet, the load balancer, the nodes
and the datastore, in one place so the whole port matrix can be reviewed (and tested)
as a set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, TypedDict

import pulumi
import pulumi_aws as aws

from .naming import child, tags

WORLD = "0.0.0.0/0"


@dataclass(frozen=True)
class PortRule:
    """One allowed flow. `source` is a CIDR, or 'nodes' / 'lb' for those security groups."""

    target: str  # nodes | lb | db
    protocol: str  # tcp | udp | -1
    from_port: int
    to_port: int
    source: str
    description: str


def rke2_or_k3s_node_rules(distribution: str) -> list[PortRule]:
    """Node-to-node ports (facts: K3s/RKE2 inbound rules), nothing else."""
    rules = [
        PortRule("nodes", "tcp", 6443, 6443, "nodes", "Kubernetes API between servers"),
        PortRule("nodes", "tcp", 10250, 10250, "nodes", "kubelet"),
        PortRule("nodes", "udp", 8472, 8472, "nodes", "VXLAN (flannel/canal)"),
    ]
    if distribution == "rke2":
        rules += [
            PortRule("nodes", "tcp", 9345, 9345, "nodes", "RKE2 supervisor"),
            PortRule("nodes", "tcp", 2379, 2381, "nodes", "etcd client, peer and metrics"),
            PortRule("nodes", "tcp", 9099, 9099, "nodes", "canal health"),
        ]
    return rules


class RuleSettings(TypedDict):
    """The settings both firewall_rules and first_release_names take, passed as **settings."""

    distribution: str
    admin_cidrs: list[str]
    ssh: bool
    datastore: bool


def firewall_rules(
    *, distribution: str, admin_cidrs: list[str], ssh: bool, datastore: bool, internal_clients: Optional[list[str]] = None
) -> list[PortRule]:
    """The port matrix. `internal_clients`: with an internal load balancer, the networks
    that may reach Rancher on 80/443 (instead of the whole internet)."""
    rules = rke2_or_k3s_node_rules(distribution)
    # The load balancer reaches nodes from its own security group (NLB with client-IP
    # preservation off, or the NGINX instance).
    rules += [
        PortRule("nodes", "tcp", 80, 80, "lb", "HTTP from the load balancer"),
        PortRule("nodes", "tcp", 443, 443, "lb", "HTTPS from the load balancer"),
        PortRule("nodes", "tcp", 6443, 6443, "lb", "Kubernetes API from the load balancer"),
    ]
    if distribution == "rke2":
        # The API target group's health check asks RKE2's supervisor (/ping on 9345).
        rules.append(PortRule("nodes", "tcp", 9345, 9345, "lb", "RKE2 supervisor health check from the load balancer"))
    # Admins reach the API through the load balancer only: it reaches the nodes from its
    # own security group (client-IP preservation off, or NGINX proxying).
    for cidr in admin_cidrs:
        rules.append(PortRule("lb", "tcp", 6443, 6443, cidr, "Kubernetes API from admins"))
        if ssh:
            rules.append(PortRule("nodes", "tcp", 22, 22, cidr, "break-glass SSH from admins"))
    for source in [WORLD] if internal_clients is None else list(dict.fromkeys(internal_clients)):
        rules += [
            PortRule("lb", "tcp", 80, 80, source, "Rancher over HTTP (redirect or pass-through)"),
            PortRule("lb", "tcp", 443, 443, source, "Rancher over HTTPS"),
        ]
    # RKE2 joiners register with the servers directly (round-robin DNS of their private
    # addresses, see components/dns.py): node-to-node 9345 above covers it.
    if datastore:
        rules.append(PortRule("db", "tcp", 3306, 3306, "nodes", "K3s datastore from the servers"))
    return rules


def rule_name(firewall: str, rule: PortRule) -> str:
    """A rule's resource name says what it allows, so adding or removing one rule never
    renames another (rules named by list position were updated into each other's shape
    and collided with InvalidPermission.Duplicate)."""
    ports = str(rule.from_port) if rule.from_port == rule.to_port else f"{rule.from_port}-{rule.to_port}"
    source = rule.source.replace("/", "-").replace(".", "-").replace(":", "-")
    protocol = "all" if rule.protocol == "-1" else rule.protocol
    return f"{firewall}-{rule.target}-in-{protocol}-{ports}-from-{source}"


def first_release_names(firewall: str, distribution: str, admin_cidrs: list[str], ssh: bool, datastore: bool) -> dict[RuleContent, str]:
    """Rule content -> the index name the first release gave it, for the same settings.

    Used only as aliases, so a stack created by the first release keeps its rules
    instead of re-creating them (which would collide with the rules still present).
    """
    rules = rke2_or_k3s_node_rules(distribution) + [
        PortRule("nodes", "tcp", 80, 80, "lb", ""),
        PortRule("nodes", "tcp", 443, 443, "lb", ""),
        PortRule("nodes", "tcp", 6443, 6443, "lb", ""),
    ]
    if distribution == "rke2":
        rules.append(PortRule("nodes", "tcp", 9345, 9345, "lb", ""))
    for cidr in admin_cidrs:
        rules.append(PortRule("nodes", "tcp", 6443, 6443, cidr, ""))
        rules.append(PortRule("lb", "tcp", 6443, 6443, cidr, ""))
        if ssh:
            rules.append(PortRule("nodes", "tcp", 22, 22, cidr, ""))
    rules += [PortRule("lb", "tcp", 80, 80, WORLD, ""), PortRule("lb", "tcp", 443, 443, WORLD, "")]
    rules.append(PortRule("lb", "tcp", 6443, 6443, "nodes", ""))
    if distribution == "rke2":
        rules.append(PortRule("lb", "tcp", 9345, 9345, "nodes", ""))
    if datastore:
        rules.append(PortRule("db", "tcp", 3306, 3306, "nodes", ""))
    return {_content(rule): f"{firewall}-{rule.target}-in-{index}" for index, rule in enumerate(rules)}


# A rule's identity: (target, protocol, from port, to port, source).
RuleContent = tuple[str, str, int, int, str]


def _content(rule: PortRule) -> RuleContent:
    return (rule.target, rule.protocol, rule.from_port, rule.to_port, rule.source)


@dataclass
class FirewallArgs:
    vpc_id: pulumi.Input[str]
    vpc_cidr: pulumi.Input[str]
    rules: list[PortRule]
    # Rule content -> first-release resource name (see first_release_names).
    previous_names: dict[RuleContent, str] = field(default_factory=dict[RuleContent, str])
    # The NGINX instance needs the internet (packages, SSM); an NLB only the VPC.
    lb_egress_anywhere: bool = False
    with_datastore: bool = False


class Firewall(pulumi.ComponentResource):
    node_sg_id: pulumi.Output[str]
    lb_sg_id: pulumi.Output[str]
    db_sg_id: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: FirewallArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:firewall:Firewall", name, None, opts)
        groups: dict[str, aws.ec2.SecurityGroup] = {
            "nodes": aws.ec2.SecurityGroup(
                f"{name}-nodes", vpc_id=args.vpc_id, description="rancher-ha server nodes", tags=tags("nodes"), opts=child(self)
            ),
            "lb": aws.ec2.SecurityGroup(
                f"{name}-lb", vpc_id=args.vpc_id, description="rancher-ha load balancer", tags=tags("lb"), opts=child(self)
            ),
        }
        if args.with_datastore:
            groups["db"] = aws.ec2.SecurityGroup(
                f"{name}-db", vpc_id=args.vpc_id, description="rancher-ha K3s datastore", tags=tags("db"), opts=child(self)
            )

        self.rules: dict[RuleContent, aws.vpc.SecurityGroupIngressRule] = {}
        for rule in args.rules:
            source_group = groups.get(rule.source)
            previous = args.previous_names.get(_content(rule))
            self.rules[_content(rule)] = aws.vpc.SecurityGroupIngressRule(
                rule_name(name, rule),
                security_group_id=groups[rule.target].id,
                ip_protocol=rule.protocol,
                from_port=rule.from_port,
                to_port=rule.to_port,
                referenced_security_group_id=source_group.id if source_group else None,
                cidr_ipv4=None if source_group else rule.source,
                description=rule.description,
                opts=child(self, aliases=[pulumi.Alias(name=previous)] if previous else None),
            )

        # Nodes download K3s/RKE2, images and the AWS CLI; they need outbound access
        # (through NAT or the proxy when private).
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-nodes-out", security_group_id=groups["nodes"].id, ip_protocol="-1", cidr_ipv4=WORLD,
            description="node egress (packages, images, SSM)", opts=child(self),
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-lb-out",
            security_group_id=groups["lb"].id,
            ip_protocol="-1",
            cidr_ipv4=WORLD if args.lb_egress_anywhere else args.vpc_cidr,
            description="load balancer to targets" + (" and package mirrors" if args.lb_egress_anywhere else ""),
            opts=child(self),
        )

        self.node_sg_id = groups["nodes"].id
        self.lb_sg_id = groups["lb"].id
        self.db_sg_id = groups["db"].id if "db" in groups else None
        self.register_outputs({"node_sg_id": self.node_sg_id, "lb_sg_id": self.lb_sg_id, "db_sg_id": self.db_sg_id})
