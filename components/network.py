"""The VPC the cluster lives in: an existing one, or a new one across up to three zones.

A created VPC has public subnets (load balancer, NAT) and, for private nodes, private
subnets whose only way out is a NAT gateway: one for the stack, or one per zone so that
losing a zone does not cut the other zones off from SSM, images and the installers.

Routes are separate `aws.ec2.Route` resources, never inline `routes=[...]` on the
table: an inline list is authoritative, and the next refresh + up would delete every
route someone added by hand (a peering or VPN route, say).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Callable, Optional

import pulumi
import pulumi_aws as aws

from .naming import child, tags

MAX_ZONES = 3
# Local Zones and Wavelength Zones are "available" too, but are opt-in, lack NAT
# gateways and NLB support in many places, and must not receive a control-plane node.
ZONE_FILTERS = [
    aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"]),
    aws.GetAvailabilityZonesFilterArgs(name="zone-type", values=["availability-zone"]),
]


# A route table and its default route (the way out that associations wait for).
RouteOut = tuple[aws.ec2.RouteTable, aws.ec2.Route]


@dataclass
class NetworkArgs:
    vpc_cidr: str
    node_placement: str  # private | public
    nat_gateway: bool
    nat_gateway_per_zone: bool = False
    existing_vpc_id: Optional[str] = None
    existing_node_subnet_ids: list[str] = field(default_factory=list[str])
    existing_lb_subnet_ids: list[str] = field(default_factory=list[str])


def subnet_cidrs(vpc_cidr: str, zones: int = MAX_ZONES) -> tuple[list[str], list[str]]:
    """Public and private subnet CIDRs: 16 equal blocks, public from the bottom, private from the middle."""
    network = ipaddress.ip_network(vpc_cidr)
    blocks = [str(block) for block in network.subnets(new_prefix=network.prefixlen + 4)]
    return blocks[:zones], blocks[8 : 8 + zones]


def usable_zones() -> list[str]:
    """Standard availability zones of the region, at most three, known at program time.

    A plain (not Output) invoke: the number of subnets must be known when resources
    are registered, and invokes run in previews too.
    """
    names = aws.get_availability_zones(state="available", filters=ZONE_FILTERS).names
    if len(names) < 2:
        raise ValueError(f"the region offers {len(names)} standard availability zone(s); rancher-ha needs at least 2")
    return sorted(names)[:MAX_ZONES]


def node_subnet_zones(args: NetworkArgs, opts: Optional[pulumi.InvokeOptions] = None) -> list[str]:
    """The availability zone of each node subnet, in node_subnet_ids order, known at program
    time and before any resource exists: an existing subnet's from AWS (plain invokes, so
    previews see them too), else the zones the created VPC spreads over."""
    if args.existing_vpc_id:
        return [aws.ec2.get_subnet(id=subnet, opts=opts).availability_zone for subnet in args.existing_node_subnet_ids]
    return usable_zones()


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    vpc_cidr_block: str  # the same, known at program time (settings, or the VPC's own)
    node_subnet_ids: list[pulumi.Output[str]]
    lb_subnet_ids: list[pulumi.Output[str]]
    # CIDRs of the load balancer subnets: where the NGINX instance's address comes from.
    lb_cidrs: list[str]  # known at program time (computed, or the existing subnets')
    nodes_public: bool
    # What internet-facing load balancers and Elastic IP associations must wait for:
    # they fail at random while the internet gateway is not yet attached.
    internet_ready: list[pulumi.Resource]

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:network:Network", name, None, opts)
        self.nodes_public = args.node_placement == "public"
        self.internet_ready = []
        if args.existing_vpc_id:
            self._use_existing(args.existing_vpc_id, args)
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

    def _use_existing(self, vpc_id: str, args: NetworkArgs) -> None:
        invoke = pulumi.InvokeOptions(parent=self)
        vpc = aws.ec2.get_vpc(id=vpc_id, opts=invoke)
        # Private hosted zones (the registration name, a private Rancher zone) resolve
        # only in a VPC with both DNS attributes on.
        if vpc.enable_dns_support is False or vpc.enable_dns_hostnames is False:
            raise ValueError(
                f"rancher-ha:vpcId = '{vpc_id}': enableDnsSupport and enableDnsHostnames must both be "
                "true, or the stack's private DNS names do not resolve. Fix: aws ec2 modify-vpc-attribute "
                f"--vpc-id {vpc_id} --enable-dns-support / --enable-dns-hostnames"
            )
        self.vpc_id = pulumi.Output.from_input(vpc_id)
        self.vpc_cidr = pulumi.Output.from_input(vpc.cidr_block)
        self.vpc_cidr_block = vpc.cidr_block
        self.node_subnet_ids = [pulumi.Output.from_input(subnet) for subnet in args.existing_node_subnet_ids]
        self.lb_subnet_ids = [pulumi.Output.from_input(subnet) for subnet in args.existing_lb_subnet_ids]
        # A plain invoke: the L7 ingress trusts these CIDRs (known in previews too).
        self.lb_cidrs = [aws.ec2.get_subnet(id=subnet, opts=invoke).cidr_block for subnet in args.existing_lb_subnet_ids]

    def _create(self, name: str, args: NetworkArgs) -> None:
        zones = usable_zones()
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags("vpc"),
            opts=child(self),
        )
        # vpc_id here attaches the gateway as part of its creation: depending on this
        # resource means depending on the attachment.
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags("igw"), opts=child(self))
        public_table = aws.ec2.RouteTable(
            f"{name}-public-internet", vpc_id=vpc.id, tags=tags("public"), opts=child(self)
        )
        internet_route = aws.ec2.Route(
            f"{name}-public-internet-default",
            route_table_id=public_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child(self),
        )
        self.internet_ready = [gateway, internet_route]
        public_cidrs, private_cidrs = subnet_cidrs(args.vpc_cidr, len(zones))
        public_subnets = self._subnets(
            name, "public", dict(zip(zones, public_cidrs)), vpc, lambda _zone: (public_table, internet_route), {"kubernetes.io/role/elb": "1"}
        )

        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.vpc_cidr_block = args.vpc_cidr
        self.lb_subnet_ids = [public_subnets[zone].id for zone in zones]
        self.lb_cidrs = list(public_cidrs)
        if self.nodes_public:
            self.node_subnet_ids = list(self.lb_subnet_ids)
            return

        # One route table per zone, routing to that zone's NAT gateway, or all to the one.
        nat_zones = zones if args.nat_gateway_per_zone else zones[:1]
        nats: dict[str, aws.ec2.NatGateway] = {}
        for zone in nat_zones:
            nat_name = f"{name}-nat-{zone}" if args.nat_gateway_per_zone else f"{name}-nat"
            address = aws.ec2.Eip(nat_name, domain="vpc", tags=tags(nat_name), opts=child(self))
            nats[zone] = aws.ec2.NatGateway(
                nat_name,
                allocation_id=address.id,
                subnet_id=public_subnets[zone].id,
                tags=tags(nat_name),
                opts=child(self, depends_on=[gateway]),
            )
        tables: dict[str, RouteOut] = {}
        for zone in zones:
            table = aws.ec2.RouteTable(f"{name}-private-{zone}", vpc_id=vpc.id, tags=tags(f"private-{zone}"), opts=child(self))
            default = aws.ec2.Route(
                f"{name}-private-{zone}-default",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats.get(zone, nats[nat_zones[0]]).id,
                opts=child(self),
            )
            tables[zone] = (table, default)
        private_subnets = self._subnets(name, "private", dict(zip(zones, private_cidrs)), vpc, tables.__getitem__, {})
        self.node_subnet_ids = [private_subnets[zone].id for zone in zones]

    def _subnets(self, name: str, kind: str, cidrs: dict[str, str], vpc: aws.ec2.Vpc,
                 table_for: Callable[[str], RouteOut], extra_tags: dict[str, str]) -> dict[str, aws.ec2.Subnet]:
        """One subnet per zone, named by its zone, associated with the zone's route table."""
        subnets: dict[str, aws.ec2.Subnet] = {}
        for index, (zone, cidr) in enumerate(cidrs.items()):
            subnet_name = f"{name}-{kind}-{zone}"
            # The first release named these by list position; keep those URNs.
            previous = [pulumi.Alias(name=f"{name}-{kind}-{index}")]
            subnet = aws.ec2.Subnet(
                subnet_name,
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                # Instances opt in to public addresses explicitly; nothing gets one by accident.
                map_public_ip_on_launch=False,
                tags=tags(f"{kind}-{zone}", **extra_tags),
                opts=child(self, aliases=previous),
            )
            # The association moves in place (ReplaceRouteTableAssociation) when the
            # table changes; it waits for the table's default route, so a subnet moved
            # to a new table is never without a way out.
            table, default_route = table_for(zone)
            aws.ec2.RouteTableAssociation(
                subnet_name,
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=child(self, aliases=previous, depends_on=[default_route]),
            )
            subnets[zone] = subnet
        return subnets
