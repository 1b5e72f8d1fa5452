"""The dev stack (k3s + RDS + NLB): resource types and counts, in update and preview mode."""

from collections import Counter

import pytest

EXPECTED_COUNTS = {
    "aws:ec2/vpc:Vpc": 1,
    "aws:ec2/subnet:Subnet": 6,
    "aws:ec2/natGateway:NatGateway": 1,
    "aws:ec2/internetGateway:InternetGateway": 1,
    "aws:ec2/securityGroup:SecurityGroup": 3,
    "aws:ec2/instance:Instance": 2,
    "aws:rds/instance:Instance": 1,
    "aws:rds/subnetGroup:SubnetGroup": 1,
    "aws:rds/parameterGroup:ParameterGroup": 1,
    "aws:lb/loadBalancer:LoadBalancer": 1,
    "aws:lb/targetGroup:TargetGroup": 3,
    "aws:lb/listener:Listener": 3,
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": 6,
    "aws:route53/record:Record": 2,  # rancher and api
    "aws:ec2/route:Route": 4,  # public default + one per private zone
    "aws:ec2/routeTable:RouteTable": 4,
    "aws:iam/role:Role": 1,
    "aws:iam/rolePolicy:RolePolicy": 1,
    "aws:iam/instanceProfile:InstanceProfile": 1,
    # token, datastore DSN and 11 cluster CA files
    "aws:ssm/parameter:Parameter": 13,
    "pulumi-python:dynamic/rancher-ha:IdentityLock": 1,
    "random:index/randomPassword:RandomPassword": 3,
    "kubernetes:helm.sh/v3:Release": 2,
    "pulumi-python:dynamic/rancher-ha:ApiGate": 1,
    "pulumi:providers:kubernetes": 1,
}


@pytest.mark.parametrize("mode", ["update", "preview"])
def test_resource_types_and_counts(mode, dev_run, dev_preview):
    run = dev_run if mode == "update" else dev_preview
    counts = Counter(r.type for r in run.resources)
    for type_token, expected in EXPECTED_COUNTS.items():
        assert counts[type_token] == expected, type_token
    assert counts["aws:ec2/keyPair:KeyPair"] == 0


@pytest.mark.parametrize("mode", ["update", "preview"])
def test_every_child_is_parented_to_a_component(mode, dev_run, dev_preview):
    run = dev_run if mode == "update" else dev_preview
    components = {r.urn: r for r in run.registrations if not r.custom}
    # The program's own components; a remote component (the Kubernetes provider's yaml/v2
    # ConfigFile, resolved by the provider) is a child of one of them like any resource.
    own = {urn: c for urn, c in components.items() if not getattr(c, "remote", False)}
    assert own and all(c.type.startswith(("rancher-ha:")) for c in own.values()), sorted({c.type for c in own.values()})
    remote = [c for c in components.values() if getattr(c, "remote", False)]
    assert all(c.type == "kubernetes:yaml/v2:ConfigFile" and c.parent in own for c in remote), [(c.type, c.parent) for c in remote]
    orphans = [(r.type, r.name) for r in run.resources if r.parent not in own]
    assert orphans == []


def test_component_type_tokens(dev_run):
    tokens = {r.type for r in dev_run.registrations if not r.custom}
    assert {
        "rancher-ha:network:Network",
        "rancher-ha:firewall:Firewall",
        "rancher-ha:cluster:ClusterNodes",
        "rancher-ha:datastore:Datastore",
        "rancher-ha:loadbalancer:NetworkLoadBalancer",
        "rancher-ha:dns:RancherDns",
        "rancher-ha:dns:ApiDns",
        "rancher-ha:access:ClusterAccess",
        "rancher-ha:rancher:Rancher",
        "rancher-ha:pki:ClusterCa",
        "rancher-ha:secrets:SecureParameters",
        "rancher-ha:iam:InstanceRole",
    } <= tokens


def test_outputs(dev_run):
    outputs = dev_run.outputs
    assert outputs["rancherUrl"].value == "https://rancher.dev.example.com"
    assert outputs["loadBalancerAddress"].value.endswith(".elb.eu-west-1.amazonaws.com")
    assert len(outputs["nodePrivateIps"].value) == 2
    assert outputs["datastoreEndpoint"].value.endswith(".rds.amazonaws.com")
    assert outputs["kubeconfig"].secret and outputs["bootstrapPassword"].secret
    assert not outputs["rancherUrl"].secret


def test_preview_of_a_new_stack_does_not_fail(dev_preview):
    outputs = dev_preview.outputs
    assert outputs["rancherUrl"].known
    assert not outputs["loadBalancerAddress"].known
    # Secrets stay secret even while unknown.
    assert outputs["kubeconfig"].secret and outputs["bootstrapPassword"].secret
