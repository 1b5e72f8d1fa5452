"""Route53: the stack's own names (Rancher, the API) point at the load balancer; a private
zone holds the RKE2 registration name; a private hosted zone for Rancher itself."""

import pytest

from conftest import NGINX_L4, RKE2, cached_run
from offline.mocks import HOSTED_ZONE_ID, NLB_ZONE_ID

NAMES = ["api.rancher.dev.example.com", "rancher.dev.example.com"]


def _public(run):
    return sorted((r for r in run.of_type("aws:route53/record:Record") if r.inputs["zoneId"] == HOSTED_ZONE_ID),
                  key=lambda r: r.inputs["name"])


def test_aliases_to_the_nlb(dev_run):
    records = _public(dev_run)
    assert [r.inputs["name"] for r in records] == NAMES
    (balancer,) = dev_run.of_type("aws:lb/loadBalancer:LoadBalancer")
    for record in records:
        assert record.inputs["type"] == "A"
        assert record.inputs["aliases"] == [{"name": balancer.outputs["dnsName"], "zoneId": NLB_ZONE_ID, "evaluateTargetHealth": True}]


def test_a_records_to_the_nginx_elastic_ip():
    run = cached_run(NGINX_L4)
    eip = next(e for e in run.of_type("aws:ec2/eip:Eip") if e.name == "nginx-lb-address")
    records = _public(run)
    assert [r.inputs["name"] for r in records] == NAMES
    for record in records:
        assert record.inputs["records"] == [eip.outputs["publicIp"]] and not record.inputs.get("aliases")


def test_the_rancher_record_keeps_its_first_release_urn(dev_run):
    (record,) = [r for r in dev_run.of_type("aws:route53/record:Record") if r.inputs["name"] == "rancher.dev.example.com"]
    assert record.name == "rancher-dns-rancher"
    assert record.aliases == ["urn:pulumi:dev::rancher-ha::rancher-ha:dns:RancherDns$aws:route53/record:Record::rancher-dns"]


def test_k3s_needs_no_private_zone(dev_run):
    assert dev_run.of_type("aws:route53/zone:Zone") == []


@pytest.mark.parametrize("private", [False, True])
def test_the_hosted_zone_may_be_private(private):
    overrides = {"rancher-ha:hostedZonePrivate": True, "rancher-ha:loadBalancerScheme": "internal",
                 "rancher-ha:adminCidrs": ["10.10.0.0/16"]} if private else {}
    run = cached_run(overrides)
    assert len(_public(run)) == 2  # the mock answers both zone kinds with one id
    (balancer,) = run.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert balancer.inputs["internal"] is private


def test_registration_zone_is_the_stacks_own():
    run = cached_run({**RKE2, "rancher-ha:environment": "prod"}, stack="Prod_EU.1")
    (zone,) = run.of_type("aws:route53/zone:Zone")
    assert zone.inputs["name"] == "rancher-ha-prod-eu-1.internal" and zone.inputs["forceDestroy"] is True


def test_the_private_zone_comes_before_the_servers_and_answers_no_quickly():
    run = cached_run(RKE2)
    (zone,) = run.of_type("aws:route53/zone:Zone")
    instances = {i.urn for i in run.of_type("aws:ec2/instance:Instance")}
    assert not instances & set(zone.dependencies)  # created beside the servers, not after them
    (soa,) = [r for r in run.of_type("aws:route53/record:Record") if r.inputs["type"] == "SOA"]
    assert soa.inputs["allowOverwrite"] is True and soa.inputs["zoneId"] == zone.outputs["zoneId"]
    # The last SOA field is the negative-caching TTL: a too-early lookup is retried in seconds.
    assert soa.inputs["records"] == ["ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 10"]


def test_an_existing_vpc_without_dns_attributes_is_refused(monkeypatch):
    import pytest as _pytest

    from conftest import EXISTING_VPC, run
    from offline import mocks

    original = mocks.StackMocks.call

    def call(self, args):
        result = original(self, args)
        if args.token == "aws:ec2/getVpc:getVpc":
            return {**result[0], "enableDnsHostnames": False}, result[1]
        return result

    monkeypatch.setattr(mocks.StackMocks, "call", call)
    with _pytest.raises(Exception, match="enableDnsSupport and enableDnsHostnames must both be true"):
        run({**EXISTING_VPC, **RKE2})


def test_awkward_stack_names_make_valid_dns_s3_and_rds_names():
    """Stack names may hold capitals, '_' and '.': every name built from them is valid."""
    import re

    prod = {"rancher-ha:environment": "prod"}
    rke2 = cached_run({**RKE2, **prod, "rancher-ha:etcdSnapshotS3": True}, stack="Prod_EU.1")
    (bucket,) = rke2.of_type("aws:s3/bucket:Bucket")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,36}", bucket.inputs["bucketPrefix"]), bucket.inputs["bucketPrefix"]
    k3s = cached_run(prod, stack="Prod_EU.1")
    (database,) = k3s.of_type("aws:rds/instance:Instance")
    assert re.fullmatch(r"[a-z](?!.*--)[a-z0-9-]{0,253}[a-z0-9]", database.inputs["finalSnapshotIdentifier"])
    assert database.inputs["finalSnapshotIdentifier"].startswith("rancher-ha-prod-eu-1-k3s-final-")


@pytest.mark.parametrize("overrides", [{}, {"rancher-ha:loadBalancerType": "nginx", "rancher-ha:loadBalancerLayer": "l4"}],
                         ids=["nlb", "nginx"])
def test_rancher_waits_for_its_name_and_cert_manager_does_not(overrides):
    """Rancher's agents look the Rancher name up as soon as Rancher runs: a lookup before
    the record exists is cached as "no such name" (the zone's negative TTL). cert-manager
    needs no name, so the record's propagation runs beside it."""
    from offline.destroy import DependencyGraph

    run = cached_run(overrides)
    graph = DependencyGraph(run.registrations)
    by_name = {r.name: r.urn for r in run.registrations}
    waits = lambda name: graph.transitive_dependencies(graph.dependencies_of(by_name[name]))  # noqa: E731
    assert by_name["rancher-dns-rancher"] in waits("rancher")
    assert by_name["rancher-dns-rancher"] not in waits("cert-manager")
    # Behind an NLB the record itself waits for the gate (users move only once it serves).
    gate = by_name["cluster-access-api-ready"]
    assert (gate in waits("rancher-dns-rancher")) == (not overrides)


# -- a private hosted zone with a VPC the stack creates (issue 17, defect 1) -------------
PRIVATE_ZONE_CREATED_VPC = {"rancher-ha:hostedZonePrivate": True, "rancher-ha:loadBalancerScheme": "internal",
                            "rancher-ha:adminCidrs": ["10.10.0.0/16"]}
ZONE_ASSOCIATION = "aws:route53/zoneAssociation:ZoneAssociation"


@pytest.mark.parametrize("shape", [{}, RKE2, NGINX_L4], ids=["k3s-nlb", "rke2-nlb", "k3s-nginx"])
def test_a_private_zone_is_associated_with_the_vpc_the_stack_creates(shape):
    """The mocks answer getZone as AWS does: a zone filtered by a VPC created in the same
    `up` is not found. The stack finds the zone by name and associates the new VPC with
    it, and both public records wait for the association."""
    from offline.destroy import DependencyGraph

    overrides = {**PRIVATE_ZONE_CREATED_VPC, **shape}
    if shape is NGINX_L4:
        overrides.pop("rancher-ha:loadBalancerScheme")
        overrides["rancher-ha:adminCidrs"] = ["203.0.113.0/24"]
    run = cached_run(overrides)
    (vpc,) = run.of_type("aws:ec2/vpc:Vpc")
    (association,) = run.of_type(ZONE_ASSOCIATION)
    assert association.name == "api-dns-hosted-zone-association"
    assert association.inputs["zoneId"] == HOSTED_ZONE_ID and association.inputs["vpcId"] == vpc.outputs["id"]
    (api_dns,) = [r for r in run.registrations if r.type == "rancher-ha:dns:ApiDns"]
    assert association.parent == api_dns.urn
    graph = DependencyGraph(run.registrations)
    records = _public(run)
    assert len(records) == 2
    for record in records:
        assert association.urn in graph.transitive_dependencies(graph.dependencies_of(record.urn)), record.name


def test_a_private_zone_in_an_existing_vpc_must_already_be_associated():
    """An existing VPC is the user's: the zone must be associated with it already (the
    lookup filters by it, as before), and the stack adds no association of its own."""
    from conftest import EXISTING_VPC

    run = cached_run({**PRIVATE_ZONE_CREATED_VPC, **EXISTING_VPC})
    assert run.of_type(ZONE_ASSOCIATION) == []
    assert len(_public(run)) == 2


def test_a_public_zone_needs_no_association(dev_run):
    assert dev_run.of_type(ZONE_ASSOCIATION) == []


@pytest.mark.parametrize("fields", [{}, {"alias_dns_name": "lb.example"}, {"alias_zone_id": "Z1"},
                                    {"alias_dns_name": "lb.example", "alias_zone_id": "Z1", "address": "203.0.113.7"}])
def test_a_target_is_an_alias_or_an_address_never_half_of_one(fields):
    # Once, a target with neither wrote an A record of [None]; half an alias, an alias
    # without its zone.
    from components.dns import LoadBalancerTarget

    with pytest.raises(ValueError, match="LoadBalancerTarget"):
        LoadBalancerTarget(**fields)
