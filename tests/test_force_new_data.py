"""Sanity checks on reference/upstream/force-new/*.json and offline/force_new.py.

The data is extracted from provider source by tools/extract_force_new.py; these
tests catch a broken extraction (parser drift, lost types, names that do not
exist in the installed SDK), not provider behaviour itself.
"""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from offline import force_new as fn

EXPECTED_TYPES = {
    "aws:ec2/instance:Instance",
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "aws:ec2/vpc:Vpc",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment",
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/eip:Eip",
    "aws:ec2/eipAssociation:EipAssociation",
    "aws:ec2/networkInterface:NetworkInterface",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:autoscaling/group:Group",
    "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/targetGroup:TargetGroup",
    "aws:lb/listener:Listener",
    "aws:lb/targetGroupAttachment:TargetGroupAttachment",
    "aws:route53/record:Record",
    "aws:route53/zone:Zone",
    "aws:ssm/parameter:Parameter",
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:rds/instance:Instance",
    "aws:rds/subnetGroup:SubnetGroup",
    "aws:rds/parameterGroup:ParameterGroup",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "tls:index/privateKey:PrivateKey",
    "tls:index/selfSignedCert:SelfSignedCert",
    "tls:index/certRequest:CertRequest",
    "tls:index/locallySignedCert:LocallySignedCert",
    "random:index/randomPassword:RandomPassword",
    "random:index/randomId:RandomId",
}

INSTANCE = "aws:ec2/instance:Instance"


def test_every_type_present():
    assert EXPECTED_TYPES <= fn.known_types(), EXPECTED_TYPES - fn.known_types()


def test_unknown_type_raises_clear_keyerror():
    with pytest.raises(KeyError, match="no force-new data for resource type 'aws:ec2/nope:Nope'"):
        fn.force_new_paths("aws:ec2/nope:Nope")
    for f in (fn.stop_start_paths, fn.conditional_replacements):
        with pytest.raises(KeyError):
            f("aws:ec2/nope:Nope")


def test_instance_force_new_and_stop_start():
    f = fn.force_new_paths(INSTANCE)
    assert {"subnetId", "keyName", "availabilityZone", "associatePublicIpAddress", "privateIp",
            "ami", "rootBlockDevice.encrypted"} <= f
    assert "instanceType" not in f
    assert "userData" not in f
    assert "vpcSecurityGroupIds" not in f
    assert "iamInstanceProfile" not in f
    s = fn.stop_start_paths(INSTANCE)
    assert {"instanceType", "userData", "userDataBase64"} <= s
    assert not (s & f)


def test_instance_conditionals():
    cond = {c["path"]: c["when"] for c in fn.conditional_replacements(INSTANCE)}
    assert "user_data_replace_on_change" in cond["userData"]
    assert "user_data_replace_on_change" in cond["userDataBase64"]
    assert "architecture" in cond["instanceType"]
    assert "region" in cond


def test_sg_rules_replace_only_on_group_or_source_type():
    for t in ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
              "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"):
        assert fn.force_new_paths(t) == {"securityGroupId"}
        cond = {c["path"] for c in fn.conditional_replacements(t)}
        assert {"cidrIpv4", "referencedSecurityGroupId", "prefixListId", "cidrIpv6"} <= cond
        assert not ({"fromPort", "toPort", "ipProtocol", "description"} & (cond | fn.force_new_paths(t)))


def test_selected_aws_facts():
    assert {"name", "zoneId"} <= fn.force_new_paths("aws:route53/record:Record")
    assert "type" not in fn.force_new_paths("aws:route53/record:Record")
    assert "name" in fn.force_new_paths("aws:ssm/parameter:Parameter")
    assert "type" not in fn.force_new_paths("aws:ssm/parameter:Parameter")
    db = fn.force_new_paths("aws:rds/instance:Instance")
    assert {"engine", "username", "storageEncrypted", "kmsKeyId"} <= db
    assert not ({"finalSnapshotIdentifier", "dbSubnetGroupName", "engineVersion", "instanceClass"} & db)
    assert {"vpcId", "cidrBlock", "availabilityZone"} <= fn.force_new_paths("aws:ec2/subnet:Subnet")
    assert "routeTableId" in fn.force_new_paths("aws:ec2/route:Route")
    assert "destinationCidrBlock" in fn.force_new_paths("aws:ec2/route:Route")
    assert {"bucket"} <= fn.force_new_paths("aws:s3/bucket:Bucket")
    assert fn.force_new_paths("aws:s3/bucketVersioning:BucketVersioning") == {"bucket"}
    assert {"port", "protocol", "targetType", "vpcId"} <= fn.force_new_paths("aws:lb/targetGroup:TargetGroup")
    assert {"internal", "loadBalancerType"} <= fn.force_new_paths("aws:lb/loadBalancer:LoadBalancer")
    assert "vpcId" in fn.force_new_paths("aws:ec2/securityGroup:SecurityGroup")
    assert "ingress" not in fn.force_new_paths("aws:ec2/securityGroup:SecurityGroup")
    for t in fn.known_types():
        if t.startswith("aws:"):
            assert "tags" not in fn.force_new_paths(t), t
            assert not fn.stop_start_paths(t) or t == INSTANCE


def test_tls_random_key_inputs():
    assert {"algorithm", "rsaBits", "ecdsaCurve"} <= fn.force_new_paths("tls:index/privateKey:PrivateKey")
    ssc = fn.force_new_paths("tls:index/selfSignedCert:SelfSignedCert")
    assert {"privateKeyPem", "subject", "validityPeriodHours", "dnsNames", "isCaCertificate"} <= ssc
    assert "earlyRenewalHours" not in ssc
    assert {"privateKeyPem", "subject"} <= fn.force_new_paths("tls:index/certRequest:CertRequest")
    assert {"certRequestPem", "caPrivateKeyPem", "caCertPem", "validityPeriodHours"} <= \
        fn.force_new_paths("tls:index/locallySignedCert:LocallySignedCert")
    assert {"length", "special", "keepers"} <= fn.force_new_paths("random:index/randomPassword:RandomPassword")
    assert {"byteLength", "keepers", "prefix"} <= fn.force_new_paths("random:index/randomId:RandomId")


def test_requires_replacement_matching():
    assert fn.requires_replacement(INSTANCE, ["subnetId", "tags"]) == ["subnetId"]
    assert fn.requires_replacement(INSTANCE, ["instanceType", "tags"]) == []
    assert "rootBlockDevice.encrypted" in fn.requires_replacement(INSTANCE, ["rootBlockDevice.encrypted"])
    assert "ebsBlockDevices[*].deviceName" in fn.requires_replacement(INSTANCE, ["ebsBlockDevices[1].deviceName"])


def _args_class(token: str):
    pkg, mod_type, cls_name = token.split(":")
    module = mod_type.split("/")[0]
    pymod = importlib.import_module(f"pulumi_{pkg}" if module == "index" else f"pulumi_{pkg}.{module}")
    own = sys.modules[getattr(pymod, cls_name).__module__]
    return getattr(own, cls_name + "InitArgs", None) or getattr(own, cls_name + "Args")


@pytest.mark.parametrize("token", sorted(EXPECTED_TYPES))
def test_every_top_level_path_is_an_sdk_input(token):
    from pulumi._types import input_type_py_to_pulumi_names

    wire = set(input_type_py_to_pulumi_names(_args_class(token)).values())
    paths = set(fn.force_new_paths(token)) | set(fn.stop_start_paths(token))
    paths |= {c["path"] for c in fn.conditional_replacements(token) if not c.get("output_only")}
    tops = {p.split(".")[0].split("[")[0] for p in paths}
    assert tops <= wire, tops - wire


def test_sdk_name_mapping_by_hand():
    """The wire names the SDK registers are camelCase of the snake args."""
    from pulumi._types import input_type_py_to_pulumi_names

    names = input_type_py_to_pulumi_names(_args_class(INSTANCE))
    assert names["associate_public_ip_address"] == "associatePublicIpAddress"
    assert names["root_block_device"] == "rootBlockDevice"
    assert names["ebs_block_devices"] == "ebsBlockDevices"
    assert names["ami"] == "ami"


def test_sources_recorded():
    for name in fn.PROVIDERS:
        data = json.loads((fn.DATA_DIR / f"{name}.json").read_text())
        src = data["source"]
        assert len(src["commit"]) == 40 and src["ref"], src
        for token, entry in data["resources"].items():
            assert entry["source_files"], token
            assert entry["unmapped"] == [], (token, entry["unmapped"])
    aws = json.loads((fn.DATA_DIR / "aws.json").read_text())["source"]
    assert aws["ref"] == "v6.58.0"
