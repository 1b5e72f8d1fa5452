"""A least-privilege instance role: read one SSM path, plus optional extra statements."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_aws as aws

from .naming import child, tags

EC2_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


class Statement(TypedDict):
    """One IAM policy statement, as this program writes them."""

    Sid: str
    Effect: str
    Action: list[str]
    Resource: str | list[str]
    Condition: NotRequired[dict[str, dict[str, str]]]


@dataclass
class InstanceRoleArgs:
    region: str
    # Parameters below this path (e.g. /rancher-ha/dev/node) and nothing else.
    parameter_path: str
    # Further IAM statements (already scoped by the caller), as an Output of a list.
    extra_statements: Optional[pulumi.Input[list[Statement]]] = None
    description: str = ""


class InstanceRole(pulumi.ComponentResource):
    profile_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    partition: pulumi.Output[str]

    def __init__(self, name: str, args: InstanceRoleArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:iam:InstanceRole", name, None, opts)

        invoke = pulumi.InvokeOptions(parent=self)
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        # aws, aws-us-gov or aws-cn: settings accept GovCloud and China regions.
        partition = aws.get_partition_output(opts=invoke).partition
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=EC2_TRUST_POLICY,
            description=args.description,
            tags=tags(f"{name}-role"),
            opts=child(self),
        )
        parameter_arn = pulumi.Output.concat(
            "arn:", partition, ":ssm:", args.region, ":", account_id, ":parameter", args.parameter_path, "/*"
        )
        # SecureStrings use the AWS-managed aws/ssm key, whose key policy already lets
        # SSM decrypt for principals of this account: no kms:Decrypt grant needed.
        policy = pulumi.Output.all(parameter_arn, args.extra_statements or []).apply(
            lambda values: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ReadOwnParameters",
                            "Effect": "Allow",
                            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                            "Resource": values[0],
                        },
                        *values[1],
                    ],
                },
                sort_keys=True,
            )
        )
        aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=child(self))
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, tags=tags(f"{name}-profile"), opts=child(self))

        self.partition = partition
        self.profile_name = profile.name
        self.role_arn = role.arn
        self.register_outputs({"profile_name": self.profile_name, "role_arn": self.role_arn})
