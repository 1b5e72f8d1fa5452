"""The VPC the cluster lives in: an existing one, or a new one across three zones.

A created VPC has public subnets (load balancer, NAT) and, for private nodes, private
subnets whose only way out is a NAT gateway or the configured proxy.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from .naming import child, tags

ZONE_COUNT = 3


@dataclass
class NetworkArgs:
    vpc_cidr: str
    node_placement: str  # private | public
    nat_gateway: bool
    existing_vpc_id: Optional[str] = None
    existing_node_subnet_ids: list[str] = field(default_factory=list)
    existing_lb_subnet_ids: list[str] = field(default_factory=list)


def subnet_cidrs(vpc_cidr: str) -> tuple[list[str], list[str]]:
    """Public and private subnet CIDRs: 16 equal blocks, public from the bottom, private from the middle."""
    network = ipaddress.ip_network(vpc_cidr)
    blocks = [str(block) for block in network.subnets(new_prefix=network.prefixlen + 4)]
    return blocks[:ZONE_COUNT], blocks[8 : 8 + ZONE_COUNT]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    node_subnet_ids: list[pulumi.Output[str]]
    lb_subnet_ids: list[pulumi.Output[str]]
    nodes_public: bool

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:network:Network", name, None, opts)
        self.nodes_public = args.node_placement == "public"
        if args.existing_vpc_id:
            self._use_existing(args)
        else:
            self._create(name, args)
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "vpc_cidr": self.vpc_cidr,
                "node_subnet_ids": self.node_subnet_ids,
                "lb_subnet_ids": self.lb_subnet_ids,
            }
        )

    def _use_existing(self, args: NetworkArgs) -> None:
        vpc = aws.ec2.get_vpc_output(id=args.existing_vpc_id, opts=pulumi.InvokeOptions(parent=self))
        self.vpc_id = pulumi.Output.from_input(args.existing_vpc_id)
        self.vpc_cidr = vpc.cidr_block
        self.node_subnet_ids = [pulumi.Output.from_input(subnet) for subnet in args.existing_node_subnet_ids]
        self.lb_subnet_ids = [pulumi.Output.from_input(subnet) for subnet in args.existing_lb_subnet_ids]

    def _create(self, name: str, args: NetworkArgs) -> None:
        zones = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOptions(parent=self)).names
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags("vpc"),
            opts=child(self),
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags("igw"), opts=child(self))
        public_table = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags=tags("public"),
            opts=child(self),
        )
        public_cidrs, private_cidrs = subnet_cidrs(args.vpc_cidr)
        public_subnets = self._subnets(name, "public", public_cidrs, zones, vpc, public_table, {"kubernetes.io/role/elb": "1"})

        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.lb_subnet_ids = [subnet.id for subnet in public_subnets]
        if self.nodes_public:
            self.node_subnet_ids = list(self.lb_subnet_ids)
            return

        routes = []
        if args.nat_gateway:
            nat_address = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags=tags("nat"), opts=child(self))
            nat = aws.ec2.NatGateway(
                f"{name}-nat",
                allocation_id=nat_address.id,
                subnet_id=public_subnets[0].id,
                tags=tags("nat"),
                opts=child(self, depends_on=[gateway]),
            )
            routes.append(aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id))
        private_table = aws.ec2.RouteTable(
            f"{name}-private", vpc_id=vpc.id, routes=routes, tags=tags("private"), opts=child(self)
        )
        private_subnets = self._subnets(name, "private", private_cidrs, zones, vpc, private_table, {})
        self.node_subnet_ids = [subnet.id for subnet in private_subnets]

    def _subnets(self, name, kind, cidrs, zones, vpc, table, extra_tags) -> list[aws.ec2.Subnet]:
        """One subnet per zone, associated with the kind's route table."""
        subnets = []
        for index, cidr in enumerate(cidrs):
            subnet = aws.ec2.Subnet(
                f"{name}-{kind}-{index}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones[index],
                # Instances opt in to public addresses explicitly; nothing gets one by accident.
                map_public_ip_on_launch=False,
                tags=tags(f"{kind}-{index}", **extra_tags),
                opts=child(self),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-{kind}-{index}", subnet_id=subnet.id, route_table_id=table.id, opts=child(self)
            )
            subnets.append(subnet)
        return subnets
