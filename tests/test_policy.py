"""The policy pack: each policy fails its bad cases and passes every stack's render."""

import sys
from pathlib import Path

import pytest
from pulumi_policy import ResourceValidationArgs

from conftest import PROD_BUCKET_ADMINS
from offline.runner import STACKS_DIR, run_stack

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policy"))
import rancher_ha_policies as policies  # noqa: E402

BY_NAME = {policy.name: policy for policy in policies.POLICIES}
STACKS = sorted(p.name.split(".")[1] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def violations(policy_name, resource_type, props, name="thing", stack="dev"):
    found = []
    args = ResourceValidationArgs(resource_type, props, f"urn:pulumi:{stack}::rancher-ha::{resource_type}::{name}", name, None, None)
    BY_NAME[policy_name].validate(args, lambda message, urn=None: found.append(message))
    return found


GOOD_INSTANCE = {"metadataOptions": {"httpTokens": "required"}, "rootBlockDevice": {"encrypted": True}}
BAD_CASES = [
    ("imdsv2-required", policies.INSTANCE, {"metadataOptions": {"httpTokens": "optional"}}),
    ("imdsv2-required", policies.INSTANCE, {}),
    ("imdsv2-required", policies.LAUNCH_TEMPLATE, {"metadataOptions": {}}),
    ("ebs-encrypted", policies.INSTANCE, {"rootBlockDevice": {"encrypted": False}}),
    ("ebs-encrypted", policies.INSTANCE, {"rootBlockDevice": {"encrypted": True}, "ebsBlockDevices": [{"encrypted": False}]}),
    ("ebs-encrypted", policies.EBS_VOLUME, {"size": 10}),
    ("rds-encrypted", policies.RDS_INSTANCE, {"storageEncrypted": False}),
    ("rds-not-public", policies.RDS_INSTANCE, {"publiclyAccessible": True}),
    ("no-world-ingress-except-lb-web", policies.SG_INGRESS, {"ipProtocol": "tcp", "fromPort": 6443, "toPort": 6443, "cidrIpv4": "0.0.0.0/0"}, "firewall-lb-in-3"),
    ("no-world-ingress-except-lb-web", policies.SG_INGRESS, {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}, "firewall-nodes-in-3"),
    ("no-world-ingress-except-lb-web", policies.SG_INGRESS, {"ipProtocol": "-1", "fromPort": 0, "toPort": 0, "cidrIpv6": "::/0"}, "firewall-lb-in-0"),
    ("no-world-ingress-except-lb-web", policies.SG, {"ingress": [{"protocol": "tcp", "fromPort": 0, "toPort": 65535, "cidrBlocks": ["0.0.0.0/0"]}]}),
    ("no-ssh-from-internet", policies.SG_INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}),
    ("no-ssh-from-internet", policies.SG_RULE, {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}),
    ("no-ssh-from-internet", policies.SG, {"ingress": [{"protocol": "tcp", "fromPort": 20, "toPort": 30, "ipv6CidrBlocks": ["::/0"]}]}),
    ("prod-datastore-deletion-protection", policies.RDS_INSTANCE, {"deletionProtection": False}, "db", "prod"),
    ("prod-datastore-deletion-protection", policies.RDS_INSTANCE, {"deletionProtection": True, "skipFinalSnapshot": True}, "db", "prod"),
    ("iam-no-wildcards", "aws:iam/rolePolicy:RolePolicy", {"policy": '{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}]}'}),
    ("iam-no-wildcards", "aws:iam/rolePolicy:RolePolicy", {"policy": '{"Statement": [{"Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": "*"}]}'}),
    # Session Manager's agent actions on '*' only from an instance (ec2:SourceInstanceARN)...
    ("iam-no-wildcards", "aws:iam/rolePolicy:RolePolicy", {"policy": '{"Statement": [{"Effect": "Allow", "Action": ["ssmmessages:OpenControlChannel"], "Resource": "*"}]}'}),
    # ...and nothing else rides on that exception.
    ("iam-no-wildcards", "aws:iam/rolePolicy:RolePolicy", {"policy": '{"Statement": [{"Effect": "Allow", "Action": ["ssmmessages:OpenControlChannel", "ssm:SendCommand"], "Resource": "*", '
                                                          '"Condition": {"StringLike": {"ec2:SourceInstanceARN": "arn:aws:ec2:eu-west-1:1:instance/*"}}}]}'}),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda case: f"{case[0]}-{case[1].split(':')[-1]}")
def test_bad_properties_are_reported(case):
    policy_name, resource_type, props, *rest = case
    name = rest[0] if rest else "thing"
    stack = rest[1] if len(rest) > 1 else "dev"
    assert violations(policy_name, resource_type, props, name, stack)


def test_every_policy_has_a_bad_case_and_is_mandatory():
    assert {case[0] for case in BAD_CASES} == set(BY_NAME)
    assert all(policy.enforcement_level.value == "mandatory" for policy in policies.POLICIES)
    assert len(policies.POLICIES) >= 8


def test_good_properties_pass():
    assert violations("imdsv2-required", policies.INSTANCE, GOOD_INSTANCE) == []
    assert violations("ebs-encrypted", policies.INSTANCE, GOOD_INSTANCE) == []
    assert violations("no-world-ingress-except-lb-web", policies.SG_INGRESS, {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}, "firewall-lb-in-5") == []
    assert violations("prod-datastore-deletion-protection", policies.RDS_INSTANCE, {"deletionProtection": False}, "db", "dev") == []


@pytest.mark.parametrize("stack", STACKS)
def test_the_programs_own_stacks_pass_every_policy(stack):
    run = run_stack(stack)
    checked = 0
    for resource in run.resources:
        args = ResourceValidationArgs(resource.type, resource.inputs, resource.urn, resource.name, None, None)
        for policy in policies.POLICIES:
            found = []
            policy.validate(args, lambda message, urn=None: found.append(message))
            assert found == [], f"{policy.name} on {resource.type} {resource.name}: {found}"
            checked += 1
    assert checked > 500


def test_prod_stack_datastore_rules_apply_to_a_prod_k3s_render():
    run = run_stack("dev", overrides={"rancher-ha:environment": "prod", "rancher-ha:snapshotBucketAdmins": PROD_BUCKET_ADMINS})
    (database,) = run.of_type(policies.RDS_INSTANCE)
    prod_urn = database.urn.replace("urn:pulumi:dev::", "urn:pulumi:prod::")
    found = []
    args = ResourceValidationArgs(database.type, database.inputs, prod_urn, database.name, None, None)
    BY_NAME["prod-datastore-deletion-protection"].validate(args, lambda message, urn=None: found.append(message))
    assert found == []
    unprotected = {**database.inputs, "deletionProtection": False}
    args = ResourceValidationArgs(database.type, unprotected, prod_urn, database.name, None, None)
    BY_NAME["prod-datastore-deletion-protection"].validate(args, lambda message, urn=None: found.append(message))
    assert found
