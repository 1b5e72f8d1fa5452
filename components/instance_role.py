"""A least-privilege instance role: read one SSM path, optionally Session Manager, plus
optional extra statements."""

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
    """One IAM policy statement, as this program writes them (identity, key and bucket policies)."""

    Sid: str
    Effect: str
    Principal: NotRequired[str | dict[str, str | list[str]]]
    # Action or NotAction (every action but those), Resource or NotResource.
    Action: NotRequired[str | list[str]]
    NotAction: NotRequired[str | list[str]]
    Resource: NotRequired[str | list[str]]
    NotResource: NotRequired[str | list[str]]
    Condition: NotRequired[dict[str, dict[str, str | list[str]]]]


class PolicyDocument(TypedDict):
    Version: str
    Statement: list[Statement]


# What the SSM Agent needs for Session Manager and nothing else: AWS's own minimal
# instance policy for Session Manager ("Create a custom IAM role with permissions for
# Session Manager", https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-iam-instance-profile.html;
# the managed policy AWSCloud9SSMInstanceProfile is the same five actions). Not
# AmazonSSMManagedInstanceCore: no ssm:GetParameter(s) on every parameter, no documents,
# associations, inventory, patching or Run Command (ec2messages:*).
SESSION_MANAGER_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)


def session_manager_statements(partition: str, region: str, account: str) -> list[Statement]:
    """The ssmmessages actions have no resource type ("Actions, resources, and condition
    keys for Amazon Message Gateway Service": the resource must be '*'), so the statement
    is scoped by `ec2:SourceInstanceARN`, which AWS sets on every request signed with an
    EC2 instance's role credentials: only from an instance of this account and region."""
    return [
        {
            "Sid": "SessionManagerAgent",
            "Effect": "Allow",
            "Action": list(SESSION_MANAGER_ACTIONS),
            "Resource": "*",
            "Condition": {"StringLike": {"ec2:SourceInstanceARN": f"arn:{partition}:ec2:{region}:{account}:instance/*"}},
        }
    ]


def boundary_policy_arn(boundary: Optional[str], invoke: pulumi.InvokeOptions) -> Optional[pulumi.Input[str]]:
    """The permissions boundary (setting iamPermissionsBoundary) as IAM needs it: an ARN as
    given; a policy name is a customer-managed policy of the account and partition the
    deploy runs in, so one stack file serves every account (README "Pull requests, deploys
    and policy")."""
    if boundary is None or boundary.startswith("arn:"):
        return boundary
    account = aws.get_caller_identity_output(opts=invoke).account_id
    partition = aws.get_partition_output(opts=invoke).partition
    return pulumi.Output.concat("arn:", partition, ":iam::", account, ":policy/", boundary)


@dataclass
class InstanceRoleArgs:
    region: str
    # Parameters below this path (e.g. /rancher-ha/dev/1a2b3c4d/node) and nothing else.
    parameter_path: pulumi.Input[str]
    # Further IAM statements (already scoped by the caller), as an Output of a list.
    extra_statements: Optional[pulumi.Input[list[Statement]]] = None
    description: str = ""
    # Break-glass shell through Session Manager (setting sessionManager).
    session_manager: bool = False
    # The role's permissions boundary: a policy name or ARN (setting iamPermissionsBoundary).
    permissions_boundary: Optional[str] = None


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
            permissions_boundary=boundary_policy_arn(args.permissions_boundary, invoke),
            tags=tags(f"{name}-role"),
            opts=child(self),
        )
        parameter_arn = pulumi.Output.concat(
            "arn:", partition, ":ssm:", args.region, ":", account_id, ":parameter", args.parameter_path, "/*"
        )
        # SecureStrings use the AWS-managed aws/ssm key, whose key policy already lets
        # SSM decrypt for principals of this account: no kms:Decrypt grant needed.
        session: pulumi.Input[list[Statement]] = (
            pulumi.Output.all(partition, account_id).apply(lambda v: session_manager_statements(v[0], args.region, v[1]))
            if args.session_manager
            else []
        )
        policy = pulumi.Output.all(parameter_arn, args.extra_statements or [], session).apply(
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
                        *values[2],
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
