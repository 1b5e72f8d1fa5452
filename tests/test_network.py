"""Network: a created VPC across three zones, or an existing VPC and subnets."""

import pytest

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


def _routes(run):
    tables = {t.outputs["id"]: t.name for t in run.of_type("aws:ec2/routeTable:RouteTable")}
    return {tables[r.inputs["routeTableId"]]: r.inputs for r in run.of_type("aws:ec2/route:Route")}


def test_private_nodes_route_through_nat_with_separate_route_resources(dev_run):
    # No inline routes: an inline list is authoritative and would delete hand-added routes.
    assert all("routes" not in t.inputs or t.inputs["routes"] in (None, []) for t in dev_run.of_type("aws:ec2/routeTable:RouteTable"))
    routes = _routes(dev_run)
    (nat,) = dev_run.of_type("aws:ec2/natGateway:NatGateway")
    for zone in "abc":
        route = routes[f"network-private-eu-west-1{zone}"]
        assert route["destinationCidrBlock"] == "0.0.0.0/0" and route["natGatewayId"] == nat.outputs["id"]
    (igw,) = dev_run.of_type("aws:ec2/internetGateway:InternetGateway")
    assert routes["network-public-internet"]["gatewayId"] == igw.outputs["id"]


def test_one_nat_gateway_per_zone_in_prod():
    run = cached_run({"rancher-ha:environment": "prod"}, stack="prod")
    nats = {n.outputs["id"]: n for n in run.of_type("aws:ec2/natGateway:NatGateway")}
    subnets = {s.outputs["id"]: s.inputs["availabilityZone"] for s in run.of_type("aws:ec2/subnet:Subnet")}
    assert sorted(subnets[n.inputs["subnetId"]] for n in nats.values()) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    for zone in "abc":
        route = _routes(run)[f"network-private-eu-west-1{zone}"]
        assert subnets[nats[route["natGatewayId"]].inputs["subnetId"]] == f"eu-west-1{zone}"  # each zone its own way out


def test_internet_facing_things_wait_for_the_internet_gateway(dev_run):
    (igw,) = dev_run.of_type("aws:ec2/internetGateway:InternetGateway")
    (balancer,) = dev_run.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert igw.urn in balancer.dependencies
    nginx = cached_run({"rancher-ha:loadBalancerType": "nginx"})
    eip = next(e for e in nginx.of_type("aws:ec2/eip:Eip") if e.name == "nginx-lb-address")
    assert nginx.of_type("aws:ec2/internetGateway:InternetGateway")[0].urn in eip.dependencies


def test_subnets_are_named_by_zone_and_keep_their_first_release_urns(dev_run):
    names = sorted(s.name for s in dev_run.of_type("aws:ec2/subnet:Subnet"))
    assert names == [f"network-{kind}-eu-west-1{zone}" for kind in ("private", "public") for zone in "abc"]
    subnet = next(s for s in dev_run.of_type("aws:ec2/subnet:Subnet") if s.name == "network-public-eu-west-1b")
    assert subnet.aliases == ["urn:pulumi:dev::rancher-ha::rancher-ha:network:Network$aws:ec2/subnet:Subnet::network-public-1"]


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


def test_a_two_zone_region_and_local_zones(monkeypatch):
    """The zones come from a filtered invoke (no Local/Wavelength zones), known at program
    time; a region with two standard zones gets two of each subnet; RKE2 there is refused
    unless allowQuorumLossOnZoneFailure accepts it."""
    from offline import mocks

    seen = {}
    original = mocks.StackMocks.call

    def call(self, args):
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            seen["filters"] = args.args.get("filters")
            return {"names": ["eu-south-9b", "eu-south-9a"], "zoneIds": ["z1", "z2"], "id": "eu-south-9"}, []
        return original(self, args)

    monkeypatch.setattr(mocks.StackMocks, "call", call)
    from conftest import run

    # Two zones hold three etcd members as 2 + 1: losing the first loses quorum. Refused ...
    with pytest.raises(Exception) as caught:
        run({"rancher-ha:distribution": "rke2"})
    assert "eu-south-9a holds 2 of them, so losing that zone leaves 1" in str(caught.value)
    assert "allowQuorumLossOnZoneFailure: true" in str(caught.value)
    assert caught.value.registrations == []  # refused before any resource
    # ... unless explicitly accepted, and then loudly.
    result = run({"rancher-ha:distribution": "rke2", "rancher-ha:allowQuorumLossOnZoneFailure": True})
    zones = sorted(s.inputs["availabilityZone"] for s in result.of_type("aws:ec2/subnet:Subnet"))
    assert zones == ["eu-south-9a", "eu-south-9a", "eu-south-9b", "eu-south-9b"]
    assert {"name": "opt-in-status", "values": ["opt-in-not-required"]} in seen["filters"]
    assert {"name": "zone-type", "values": ["availability-zone"]} in seen["filters"]
    assert len([i for i in result.of_type("aws:ec2/instance:Instance")]) == 3  # two share a zone
    assert any("allowQuorumLossOnZoneFailure: true accepts this placement" in line for line in result.logs)
    # K3s keeps its state in RDS: two zones are enough.
    assert len(run({}).of_type("aws:ec2/instance:Instance")) == 2
