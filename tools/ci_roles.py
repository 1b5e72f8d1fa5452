"""The IAM roles that CI assumes through GitHub's OIDC provider, as data.

    python tools/ci_roles.py [--repo OWNER/REPO] [--account ID] [--state-bucket NAME]
                             [--secrets-key-id ID] [--region REGION] [--out docs/ci-roles]

writes, per role, `<role>.trust.json` (who may assume it) and `<role>.permissions.json`
(what it may do): the documents to create the roles with (README, "Pull requests, deploys
and policy"). docs/ci-roles/ holds them with placeholder values; tests/test_ci_roles.py
evaluates them.

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
    services the program uses (so IAM roles too: whoever holds it administers the account's
    resources of these services; hence one account for prod alone), but never the CI roles
    or the OIDC provider, so a deploy cannot widen who may deploy."""
    services = sorted(set(SERVICE_PREFIXES.values()) - {"iam"})
    return _document(
        {"Sid": "ManageTheStacksResources", "Effect": "Allow", "Action": [f"{s}:*" for s in services], "Resource": "*"},
        {
            "Sid": "ManageTheNodesRoles",
            "Effect": "Allow",
            "Action": ["iam:*Role*", "iam:*InstanceProfile*", "iam:CreateServiceLinkedRole"],
            "Resource": [f"arn:aws:iam::{site.account}:role/*", f"arn:aws:iam::{site.account}:instance-profile/*"],
        },
        {
            # components/backups.py: the rancher-backup operator's IAM user (path /rancher-ha/),
            # its inline policy and its rotated access keys.
            "Sid": "ManageTheBackupUsers",
            "Effect": "Allow",
            "Action": ["iam:*User*", "iam:*AccessKey*", "iam:ListGroupsForUser", "iam:ListMFADevices",
                       "iam:ListSigningCertificates", "iam:ListSSHPublicKeys", "iam:ListServiceSpecificCredentials",
                       "iam:GetLoginProfile"],
            "Resource": f"arn:aws:iam::{site.account}:user/{PROJECT}/*",
        },
        {
            "Sid": "NeverTheCIRolesOrTheirProvider",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": [f"arn:aws:iam::{site.account}:role{ROLE_PATH}*", site.oidc_provider],
        },
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
    return {f"{name}.{kind}.json": json.dumps(doc, indent=2) + "\n"
            for name, docs in roles(site).items() for kind, doc in docs.items()}


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
