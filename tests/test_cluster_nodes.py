"""Server nodes: hardened instances, least-privilege role, per-node user data."""

import json

import pytest
import yaml

from conftest import DEV_PARAMETER_ROOT, RKE2, cached_run
from helpers import cloud_config, server_instances, written_file
from rendering.cloud_init import BASE_CONFIG_PATH, BOOTSTRAP_PATH, USER_DATA_LIMIT_BYTES
from settings.versions import EXAMPLE_KUBERNETES_VERSION


def test_instances_are_hardened(dev_run):
    for instance in server_instances(dev_run):
        inputs = instance.inputs
        assert inputs["metadataOptions"]["httpTokens"] == "required"
        assert inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1
        assert inputs["rootBlockDevice"] == {"deleteOnTermination": True, "encrypted": True, "volumeSize": 60, "volumeType": "gp3"}
        assert inputs["ami"] == "ami-0123456789abcdef0"
        assert "keyName" not in inputs
        assert inputs["associatePublicIpAddress"] is False
        assert inputs["instanceType"] == "t3.large"
        assert inputs["userDataReplaceOnChange"] is False


def test_ami_is_canonical_ubuntu_2404():
    from components.ec2_instance import CANONICAL_OWNER, UBUNTU_2404_NAME

    assert CANONICAL_OWNER == "099720109477"
    assert UBUNTU_2404_NAME == "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"


def test_instance_role_reads_only_this_stacks_node_parameters(dev_run):
    (policy,) = dev_run.of_type("aws:iam/rolePolicy:RolePolicy")
    document = json.loads(policy.inputs["policy"])
    assert document["Statement"] == [
        {
            "Sid": "ReadOwnParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": f"arn:aws:ssm:eu-west-1:123456789012:parameter{DEV_PARAMETER_ROOT}/node/*",
        },
        {  # sessionManager (default on): tests/test_iam_seams.py evaluates it
            "Sid": "SessionManagerAgent",
            "Effect": "Allow",
            "Action": ["ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                       "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"],
            "Resource": "*",
            "Condition": {"StringLike": {"ec2:SourceInstanceARN": "arn:aws:ec2:eu-west-1:123456789012:instance/*"}},
        },
    ]


def test_secrets_are_secure_strings_under_the_stack_path(dev_run):
    parameters = dev_run.of_type("aws:ssm/parameter:Parameter")
    assert {p.inputs["type"] for p in parameters} == {"SecureString"}
    names = {p.inputs["name"] for p in parameters}
    assert {f"{DEV_PARAMETER_ROOT}/node/token", f"{DEV_PARAMETER_ROOT}/node/datastore-endpoint", f"{DEV_PARAMETER_ROOT}/node/tls/server-ca.key"} <= names
    assert all(name.startswith(f"{DEV_PARAMETER_ROOT}/node/") for name in names)


def test_k3s_user_data(dev_run):
    for instance in server_instances(dev_run):
        document = cloud_config(instance)
        assert document["runcmd"] == [[BOOTSTRAP_PATH]]
        base = yaml.safe_load(written_file(instance, BASE_CONFIG_PATH)["content"])
        assert base["tls-san"] == ["rancher.dev.example.com", "api.rancher.dev.example.com"]
        assert base["write-kubeconfig-mode"] == "0600"
        assert base["datastore-cafile"] == "/etc/rancher/k3s/rds-ca-bundle.pem"
        assert "token" not in base and "datastore-endpoint" not in base and "server" not in base
        script = written_file(instance, BOOTSTRAP_PATH)["content"]
        assert "INSTALL_K3S_VERSION" in script and EXAMPLE_KUBERNETES_VERSION["k3s"] in script
        # Both k3s servers may start first against the shared datastore: both get the CA.
        assert "tls/server-ca.key" in script
        assert len(instance.inputs["userData"].encode()) < USER_DATA_LIMIT_BYTES


def test_rke2_per_node_config():
    run = cached_run(RKE2)
    servers = server_instances(run)
    assert len(servers) == 3
    registration = "registration.rancher-ha-dev.internal"
    configs = [yaml.safe_load(written_file(s, BASE_CONFIG_PATH)["content"]) for s in servers]
    first, *joiners = configs
    assert "server" not in first  # decided at boot: initialize, or join if the cluster exists
    for config in joiners:
        assert config["server"] == f"https://{registration}:9345"
    for config in configs:
        assert config["tls-san"] == ["rancher.dev.example.com", "api.rancher.dev.example.com", registration]
        assert config["ingress-controller"] == "ingress-nginx"
        assert config["etcd-snapshot-schedule-cron"] == "0 */6 * * *"
        assert config["etcd-snapshot-retention"] == 28
    scripts = [written_file(s, BOOTSTRAP_PATH)["content"] for s in servers]
    assert "tls/server-ca.key" in scripts[0] and "parameter_exists cluster-initialized" in scripts[0]
    assert all("tls/server-ca.key" not in script for script in scripts[1:])
    assert all(f"https://{registration}:9345/ping" in script for script in scripts)


def test_rke2_registration_is_round_robin_dns_of_the_servers():
    run = cached_run(RKE2)
    (zone,) = run.of_type("aws:route53/zone:Zone")
    assert zone.inputs["name"] == "rancher-ha-dev.internal"
    (vpc,) = run.of_type("aws:ec2/vpc:Vpc")
    assert zone.inputs["vpcs"] == [{"vpcId": vpc.outputs["id"]}]
    (record,) = [r for r in run.of_type("aws:route53/record:Record") if r.inputs["name"].startswith("registration.")]
    assert record.inputs["zoneId"] == zone.outputs["zoneId"]
    assert record.inputs["type"] == "A" and sorted(record.inputs["records"]) == sorted(run.outputs["nodePrivateIps"].value)
    # No registration load balancer any more.
    assert [b.name for b in run.of_type("aws:lb/loadBalancer:LoadBalancer")] == ["rancher-lb"]


def test_cluster_initialized_marker_is_written_after_the_gate():
    run = cached_run(RKE2)
    (gate,) = run.of_type("pulumi-python:dynamic/rancher-ha:ApiGate")
    (marker,) = [p for p in run.of_type("aws:ssm/parameter:Parameter") if p.inputs["name"].endswith("/cluster-initialized")]
    assert marker.inputs["name"] == f"{DEV_PARAMETER_ROOT}/node/cluster-initialized"
    assert gate.urn in marker.dependencies
    assert not [p for p in cached_run({}).of_type("aws:ssm/parameter:Parameter") if p.inputs["name"].endswith("/cluster-initialized")]


def test_rke2_servers_in_three_zones():
    run = cached_run(RKE2)
    subnets = {s.outputs["id"]: s.inputs["availabilityZone"] for s in run.of_type("aws:ec2/subnet:Subnet")}
    assert {subnets[s.inputs["subnetId"]] for s in server_instances(run)} == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}


@pytest.mark.parametrize("count", [5, 7])
def test_rke2_larger_odd_clusters(count):
    run = cached_run({**RKE2, "rancher-ha:serverCount": count})
    assert len(server_instances(run)) == count


def test_arns_use_the_regions_partition():
    """GovCloud and China regions pass the settings: their ARNs are not arn:aws:..."""
    run = cached_run({"aws:region": "us-gov-west-1"})
    (policy,) = [p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.startswith("rancher-server")]
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert statements["ReadOwnParameters"]["Resource"] == f"arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter{DEV_PARAMETER_ROOT}/node/*"
    assert statements["SessionManagerAgent"]["Condition"] == {
        "StringLike": {"ec2:SourceInstanceARN": "arn:aws-us-gov:ec2:us-gov-west-1:123456789012:instance/*"}}


def test_snapshots_always_have_a_folder_to_scope_the_policy_to():
    # Once, snapshots without a folder granted `<bucket>/None/*` and wrote `etcd-s3-folder: null`.
    from rendering.node_config import EtcdSnapshots

    with pytest.raises(TypeError, match="s3_folder"):
        EtcdSnapshots(schedule="0 */6 * * *", retention=5)
