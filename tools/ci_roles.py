"""The IAM roles that CI assumes through GitHub's OIDC provider, as data.

    python tools/ci_roles.py [--repo OWNER/REPO] [--account ID] [--state-bucket NAME]
                             [--secrets-key-id ID] [--region REGION] [--out docs/ci-roles]

writes, per role, `<role>.trust.json` (who may assume it) and `<role>.permissions.json`
(what it may do), and `rancher-ha-workload-boundary.policy.json`, the managed policy the
deploy roles require as the permissions boundary of every role and user they create (setting
iamPermissionsBoundaryArn): the documents to create the roles and the boundary with (README,
"Pull requests, deploys and policy"). docs/ci-roles/ holds them with placeholder values;
tests/test_ci_roles.py evaluates them.

Accounts: `nonprod` holds dev, staging and the preview role; `prod` holds prod only (no
preview role exists there); `sandbox` runs the live end-to-end test. Each account has its
own OIDC provider, state bucket and secrets key (the stacks' `awskms://` secrets provider).

Every role trusts exactly one subject, `repo:<owner>/<repo>:environment:<env>`: GitHub puts
that subject in the token of a job that runs in environment <env>, and the environment's
deployment branch rule and required reviewers decide which runs get there. A pull-request
job outside an environment gets `repo:<owner>/<repo>:pull_request`, which no role trusts.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

OIDC_HOST = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"  # what aws-actions/configure-aws-credentials asks for
PROJECT = "rancher-ha"  # Pulumi.yaml `name`: the DIY backend keeps stacks under .pulumi/stacks/<project>/
ROLE_PATH = "/github-ci/"  # the CI roles' IAM path: the deploy roles may not touch it
DEPLOY_ENVIRONMENTS = {"dev": "nonprod", "staging": "nonprod", "prod": "prod"}  # environment -> account
PREVIEW_ENVIRONMENT = "preview"
PREVIEW_STACKS = ("dev", "staging")
LIVE_ENVIRONMENT = "live-e2e"
# The permissions boundary every role and user a deploy creates must carry (setting
# iamPermissionsBoundaryArn): created with the CI roles, never by a deploy.
WORKLOAD_BOUNDARY = f"{PROJECT}-workload-boundary"
# The program's IAM names: Pulumi autonames `<resource name>-<7 random hex>`; the roles and
# profiles of components/instance_role.py under ClusterNodes "rancher" and NginxLoadBalancer
# "nginx-lb" (stages/cluster.py), the backup user under path /rancher-ha/ (components/backups.py).
PROGRAM_ROLES = ("rancher-server-role-*", "nginx-lb-instance-role-*")
PROGRAM_PROFILES = ("rancher-server-profile-*", "nginx-lb-instance-profile-*")
PROGRAM_USERS = f"{PROJECT}/*"
# Actions that write a role's or user's permissions: allowed only with the boundary.
BOUNDED_ACTIONS = ("iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary",
                   "iam:CreateUser", "iam:PutUserPolicy", "iam:PutUserPermissionsBoundary")

# The IAM service prefix of each pulumi-aws module the program creates resources from.
SERVICE_PREFIXES = {
    "autoscaling": "autoscaling",
    "ec2": "ec2",
    "vpc": "ec2",
    "iam": "iam",
    "kms": "kms",
    "lb": "elasticloadbalancing",
    "rds": "rds",
    "route53": "route53",
    "s3": "s3",
    "ssm": "ssm",
}
# Read-only calls a preview makes (invokes such as get_zone, get_ami, get_vpc, and reads of
# the existing resources' metadata); no Get*/List* that returns a secret value.
PREVIEW_READS = (
    "autoscaling:Describe*",
    "ec2:Describe*",
    "elasticloadbalancing:Describe*",
    "iam:GetInstanceProfile",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
    "kms:DescribeKey",
    "kms:ListAliases",
    "rds:Describe*",
    "rds:ListTagsForResource",
    "route53:GetHostedZone",
    "route53:ListHostedZones",
    "route53:ListHostedZonesByName",
    "route53:ListResourceRecordSets",
    "route53:ListTagsForResource",
    "s3:GetBucketLocation",
    "s3:ListAllMyBuckets",
    "ssm:DescribeParameters",
    "ssm:ListTagsForResource",
)
# What a preview must never read, whatever else allows it: the nodes' SecureStrings (CA keys,
# tokens) and the etcd snapshots (every secret of the cluster).
PREVIEW_NEVER = {
    "ssm": ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"),
    "snapshots": ("s3:GetObject", "s3:GetObjectVersion"),
}


@dataclass(frozen=True)
class Site:
    """Where the roles live; docs/ci-roles/ uses the defaults (placeholders)."""

    repo: str = "OWNER/REPO"
    account: str = "111122223333"
    region: str = "eu-west-1"
    state_bucket: str = "STATE_BUCKET"
    secrets_key_id: str = "SECRETS_KEY_ID"

    @property
    def oidc_provider(self) -> str:
        return f"arn:aws:iam::{self.account}:oidc-provider/{OIDC_HOST}"

    def subject(self, environment: str) -> str:
        return f"repo:{self.repo}:environment:{environment}"

    @property
    def secrets_key(self) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:key/{self.secrets_key_id}"

    @property
    def boundary(self) -> str:
        return f"arn:aws:iam::{self.account}:policy/{WORKLOAD_BOUNDARY}"

    def iam(self, kind: str, *names: str) -> list[str]:
        return [f"arn:aws:iam::{self.account}:{kind}/{name}" for name in names]

    def state_objects(self, stack: str) -> str:
        # The DIY backend's checkpoint: .pulumi/stacks/<project>/<stack>.json (or .json.gz, .bak)
        return f"arn:aws:s3:::{self.state_bucket}/.pulumi/stacks/{PROJECT}/{stack}.json*"


def _document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def trust_policy(site: Site, environment: str) -> dict:
    """Only GitHub's OIDC tokens for this repository's jobs in `environment`."""
    return _document({
        "Sid": f"GitHubEnvironment{environment.title().replace('-', '')}",
        "Effect": "Allow",
        "Principal": {"Federated": site.oidc_provider},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{OIDC_HOST}:aud": AUDIENCE, f"{OIDC_HOST}:sub": site.subject(environment)}},
    })


def deploy_permissions(site: Site) -> dict:
    """`pulumi up`/`refresh`/`destroy` of the stacks in this account: every action of the
    services the program uses, but IAM only for the program's own roles, instance profiles
    and backup user, each under the workload boundary: a deploy can create no principal
    that may do more than the boundary allows, attaches no managed policy (the program
    uses none), passes its roles to EC2 only, and never touches the CI roles, their OIDC
    provider or the boundary itself, so it can neither widen who may deploy nor make an admin."""
    services = sorted(set(SERVICE_PREFIXES.values()) - {"iam"})
    roles, users = site.iam("role", *PROGRAM_ROLES), site.iam("user", PROGRAM_USERS)
    bounded = {"StringEquals": {"iam:PermissionsBoundary": site.boundary}}
    return _document(
        {"Sid": "ManageTheStacksResources", "Effect": "Allow", "Action": [f"{s}:*" for s in services], "Resource": "*"},
        {
            "Sid": "ManageTheProgramsRoles",
            "Effect": "Allow",
            "Action": ["iam:GetRole", "iam:DeleteRole", "iam:TagRole", "iam:UntagRole", "iam:ListRoleTags", "iam:UpdateRole",
                       "iam:UpdateRoleDescription", "iam:UpdateAssumeRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy",
                       "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole"],
            "Resource": roles,
        },
        {"Sid": "WriteTheProgramsRolesUnderTheBoundary", "Effect": "Allow", "Action": list(BOUNDED_ACTIONS[:3]),
         "Resource": roles, "Condition": bounded},
        # IfExists: AddRoleToInstanceProfile checks PassRole too, and AWS documents no
        # iam:PassedToService for that check; where the key is set (RunInstances and every
        # other service), it must be EC2. The roles trust only ec2.amazonaws.com anyway.
        {"Sid": "PassTheProgramsRolesToEC2Only", "Effect": "Allow", "Action": "iam:PassRole", "Resource": roles,
         "Condition": {"StringEqualsIfExists": {"iam:PassedToService": "ec2.amazonaws.com"}}},
        {"Sid": "ManageTheProgramsInstanceProfiles", "Effect": "Allow", "Action": "iam:*InstanceProfile*",
         "Resource": site.iam("instance-profile", *PROGRAM_PROFILES)},
        {"Sid": "CreateServiceLinkedRoles", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
         "Resource": site.iam("role", "aws-service-role/*")},
        {
            # components/backups.py: the rancher-backup operator's IAM user, its inline
            # policy and its rotated access keys. UpdateUser: its path (per stack since
            # rancherBackupReaders), authorised on the ARN before and after, both under user/rancher-ha/.
            "Sid": "ManageTheBackupUsers",
            "Effect": "Allow",
            "Action": ["iam:GetUser", "iam:UpdateUser", "iam:DeleteUser", "iam:TagUser", "iam:UntagUser", "iam:ListUserTags",
                       "iam:GetUserPolicy", "iam:DeleteUserPolicy", "iam:ListUserPolicies", "iam:ListAttachedUserPolicies",
                       "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:UpdateAccessKey",
                       "iam:ListGroupsForUser", "iam:ListMFADevices", "iam:ListSigningCertificates", "iam:ListSSHPublicKeys",
                       "iam:ListServiceSpecificCredentials", "iam:GetLoginProfile"],
            "Resource": users,
        },
        {"Sid": "WriteTheBackupUsersUnderTheBoundary", "Effect": "Allow", "Action": list(BOUNDED_ACTIONS[3:]),
         "Resource": users, "Condition": bounded},
        {"Sid": "NeverWithoutTheBoundary", "Effect": "Deny", "Action": list(BOUNDED_ACTIONS), "Resource": "*",
         "Condition": {"StringNotEquals": {"iam:PermissionsBoundary": site.boundary}}},
        {"Sid": "NeverRemoveABoundary", "Effect": "Deny",
         "Action": ["iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"], "Resource": "*"},
        {"Sid": "NeverAttachAManagedPolicy", "Effect": "Deny",
         "Action": ["iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AttachGroupPolicy"], "Resource": "*"},
        {"Sid": "NeverChangeTheBoundary", "Effect": "Deny",
         "Action": ["iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"],
         "Resource": site.boundary},
        {
            "Sid": "NeverTheCIRolesOrTheirProvider",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": [f"arn:aws:iam::{site.account}:role{ROLE_PATH}*", site.oidc_provider],
        },
    )


def workload_boundary(site: Site) -> dict:
    """The most the program's node roles, NGINX role and backup user may ever do, whatever
    their inline policies say: read the program's parameters, the Session Manager agent,
    move an address onto an instance, the snapshot/backup bucket objects (reads of any
    bucket: a restore reads from a bucket the stack names) with its KMS key through S3, and
    a restore source's key (any account's) to decrypt through S3."""
    return _document(
        {"Sid": "ReadTheProgramsParameters", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
         "Resource": f"arn:aws:ssm:*:{site.account}:parameter/{PROJECT}/*"},
        {"Sid": "SessionManagerAgent", "Effect": "Allow", "Resource": "*",
         "Action": ["ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]},
        {"Sid": "MoveTheStackAddress", "Effect": "Allow", "Action": "ec2:AssociateAddress",
         "Resource": [f"arn:aws:ec2:*:{site.account}:{kind}/*" for kind in ("elastic-ip", "instance", "network-interface")]},
        {"Sid": "FindAndReadBuckets", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject"],
         "Resource": "arn:aws:s3:::*"},
        {"Sid": "WriteTheSnapshotBucket", "Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{PROJECT}-*-etcd-*/*"},  # components/snapshot_bucket.py bucket_prefix
        {"Sid": "UseBucketKeysThroughS3", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
         "Resource": f"arn:aws:kms:*:{site.account}:key/*", "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}},
        # A move from a stack in another account: its bucket's key is that account's
        # (that key's policy names the readers; the user's policy names the bucket).
        {"Sid": "DecryptARestoreSourceThroughS3", "Effect": "Allow", "Action": "kms:Decrypt",
         "Resource": "arn:aws:kms:*:*:key/*", "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}},
    )


def preview_permissions(site: Site) -> dict:
    """`pulumi preview` (no refresh) of dev and staging: reads, the two stacks' state, and
    kms:Decrypt on the account's secrets key, which a preview needs to load a state that
    holds secrets (pulumi/pulumi#11024). No write; never the nodes' parameters or snapshots."""
    return _document(
        {"Sid": "ReadTheStacksResources", "Effect": "Allow", "Action": list(PREVIEW_READS), "Resource": "*"},
        {"Sid": "ListTheState", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{site.state_bucket}"},
        {
            "Sid": "ReadThePreviewedStacksState",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [f"arn:aws:s3:::{site.state_bucket}/.pulumi/meta.yaml",
                         *(site.state_objects(stack) for stack in PREVIEW_STACKS)],
        },
        {"Sid": "DecryptTheStacksSecrets", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": site.secrets_key},
        {"Sid": "NeverTheNodesParameters", "Effect": "Deny", "Action": list(PREVIEW_NEVER["ssm"]), "Resource": "*"},
        {
            "Sid": "NeverTheEtcdSnapshots",
            "Effect": "Deny",
            "Action": list(PREVIEW_NEVER["snapshots"]),
            "Resource": f"arn:aws:s3:::{PROJECT}-*-etcd-*",  # components/snapshot_bucket.py bucket_prefix
        },
    )


def roles(site: Site = Site()) -> dict[str, dict[str, dict]]:
    """Role name -> {"trust": ..., "permissions": ...}; names under ROLE_PATH."""
    out = {f"{PROJECT}-deploy-{env}": {"trust": trust_policy(site, env), "permissions": deploy_permissions(site)}
           for env in DEPLOY_ENVIRONMENTS}
    out[f"{PROJECT}-preview"] = {"trust": trust_policy(site, PREVIEW_ENVIRONMENT), "permissions": preview_permissions(site)}
    out[f"{PROJECT}-live-e2e"] = {"trust": trust_policy(site, LIVE_ENVIRONMENT), "permissions": deploy_permissions(site)}
    return out


def files(site: Site = Site()) -> dict[str, str]:
    out = {f"{name}.{kind}.json": json.dumps(doc, indent=2) + "\n"
           for name, docs in roles(site).items() for kind, doc in docs.items()}
    out[f"{WORKLOAD_BOUNDARY}.policy.json"] = json.dumps(workload_boundary(site), indent=2) + "\n"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Site()
    for field in ("repo", "account", "region", "state_bucket", "secrets_key_id"):
        parser.add_argument(f"--{field.replace('_', '-')}", default=getattr(defaults, field))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "ci-roles")
    args = parser.parse_args(argv)
    site = Site(args.repo, args.account, args.region, args.state_bucket, args.secrets_key_id)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files(site).items():
        (args.out / name).write_text(text)


if __name__ == "__main__":
    main()
