"""Network: a created VPC across three zones, or an existing VPC and subnets."""

from components.network import subnet_cidrs
from conftest import cached_run

EXISTING = {
    "rancher-ha:vpcId": "vpc-0123456789abcdef0",
    "rancher-ha:nodeSubnetIds": ["subnet-00000000000000001", "subnet-00000000000000002", "subnet-00000000000000003"],
    "rancher-ha:lbSubnetIds": ["subnet-0000000000000000a", "subnet-0000000000000000b"],
}


def test_created_vpc_spans_three_zones(dev_run):
    subnets = dev_run.of_type("aws:ec2/subnet:Subnet")
    zones = {s.inputs["availabilityZone"] for s in subnets}
    assert zones == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets)
    cidrs = {s.inputs["cidrBlock"] for s in subnets}
    assert len(cidrs) == 6


def test_private_nodes_route_through_nat(dev_run):
    tables = {t.name: t for t in dev_run.of_type("aws:ec2/routeTable:RouteTable")}
    (private_route,) = tables["network-private"].inputs["routes"]
    assert private_route["cidrBlock"] == "0.0.0.0/0" and private_route["natGatewayId"]
    (public_route,) = tables["network-public"].inputs["routes"]
    assert public_route["gatewayId"]


def test_nodes_are_spread_across_zones(dev_run):
    subnet_by_id = {s.outputs["id"]: s for s in dev_run.of_type("aws:ec2/subnet:Subnet")}
    servers = [i for i in dev_run.of_type("aws:ec2/instance:Instance")]
    zones = [subnet_by_id[i.inputs["subnetId"]].inputs["availabilityZone"] for i in servers]
    assert len(set(zones)) == len(servers)
    assert all("private" in subnet_by_id[i.inputs["subnetId"]].name for i in servers)


def test_subnet_plan():
    public, private = subnet_cidrs("10.0.0.0/16")
    assert public == ["10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"]
    assert private == ["10.0.128.0/20", "10.0.144.0/20", "10.0.160.0/20"]


def test_existing_vpc_is_used_as_given():
    run = cached_run(EXISTING)
    assert run.of_type("aws:ec2/vpc:Vpc") == [] and run.of_type("aws:ec2/subnet:Subnet") == []
    instances = run.of_type("aws:ec2/instance:Instance")
    assert [i.inputs["subnetId"] for i in instances] == EXISTING["rancher-ha:nodeSubnetIds"][:2]
    (balancer,) = run.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert balancer.inputs["subnets"] == EXISTING["rancher-ha:lbSubnetIds"]
    (group,) = run.of_type("aws:rds/subnetGroup:SubnetGroup")
    assert group.inputs["subnetIds"] == EXISTING["rancher-ha:nodeSubnetIds"]


def test_public_node_placement_creates_no_nat():
    run = cached_run({"rancher-ha:nodePlacement": "public"})
    assert run.of_type("aws:ec2/natGateway:NatGateway") == []
    assert all(i.inputs["associatePublicIpAddress"] for i in run.of_type("aws:ec2/instance:Instance"))
