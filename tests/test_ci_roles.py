"""The CI roles (tools/ci_roles.py, docs/ci-roles/) evaluated as AWS would.

Who may assume a role: AssumeRoleWithWebIdentity with a GitHub OIDC token, whose claims
are condition keys `token.actions.githubusercontent.com:<claim>`. The `sub` claim by default
(GitHub docs, "About security hardening with OpenID Connect", example subject claims):
  a job in environment E:            repo:<owner>/<repo>:environment:E
  a pull_request job (no environment): repo:<owner>/<repo>:pull_request
  a branch push (no environment):      repo:<owner>/<repo>:ref:refs/heads/<branch>
`aud` is what configure-aws-credentials asks for: sts.amazonaws.com.
The condition and action logic is tests/test_iam_seams.py's evaluator; a trust policy adds
the Principal, matched here against the OIDC provider the token comes from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import NGINX_L7, RKE2, cached_run
from test_iam_seams import (Request, _as_list, _conditions_hold, _created_parameters, _parameter_arn, _wildcard, evaluate,
                            snapshot_client_requests)
from tools import ci_roles

REPO_ROOT = Path(__file__).resolve().parents[1]
SITE = ci_roles.Site()
ROLES = ci_roles.roles(SITE)
HOST = ci_roles.OIDC_HOST


def evaluate_trust(policy: dict, federated: str, claims: dict[str, str], action: str = "sts:AssumeRoleWithWebIdentity") -> str:
    """'Allow', 'Deny' or 'ImplicitDeny' for a web-identity token from `federated` with `claims`."""
    request = Request(action, "", {f"{HOST}:{claim}": value for claim, value in claims.items()})

    def applies(statement: dict) -> bool:
        for unsupported in ("NotAction", "NotPrincipal", "Resource", "NotResource"):
            if unsupported in statement:
                raise NotImplementedError(unsupported)
        principals = statement["Principal"]
        if set(principals) != {"Federated"}:
            raise NotImplementedError(f"principal {principals}")
        return (federated in _as_list(principals["Federated"])
                and any(_wildcard(a, action, case_sensitive=False) for a in _as_list(statement["Action"]))
                and _conditions_hold(statement.get("Condition") or {}, request))

    applying = [s for s in _as_list(policy["Statement"]) if applies(s)]
    if any(s["Effect"] == "Deny" for s in applying):
        return "Deny"
    return "Allow" if any(s["Effect"] == "Allow" for s in applying) else "ImplicitDeny"


def token(sub: str, aud: str = ci_roles.AUDIENCE) -> dict[str, str]:
    return {"sub": sub, "aud": aud}


def who_may_assume(claims: dict[str, str], federated: str = SITE.oidc_provider) -> set[str]:
    return {name for name, docs in ROLES.items() if evaluate_trust(docs["trust"], federated, claims) == "Allow"}


def test_the_trust_evaluator_itself():
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"Federated": "arn:p"}, "Action": "sts:AssumeRoleWithWebIdentity",
                             "Condition": {"StringLike": {f"{HOST}:sub": "repo:o/r:*"}, "StringEquals": {f"{HOST}:aud": "sts.amazonaws.com"}}}]}
    assert evaluate_trust(policy, "arn:p", token("repo:o/r:pull_request")) == "Allow"
    assert evaluate_trust(policy, "arn:other", token("repo:o/r:pull_request")) == "ImplicitDeny"
    assert evaluate_trust(policy, "arn:p", token("repo:o/x:pull_request")) == "ImplicitDeny"
    assert evaluate_trust(policy, "arn:p", token("repo:o/r:pull_request", aud="other")) == "ImplicitDeny"
    assert evaluate_trust(policy, "arn:p", {"aud": "sts.amazonaws.com"}) == "ImplicitDeny"  # no sub: no match
    assert evaluate_trust(policy, "arn:p", token("repo:o/r:x"), action="sts:AssumeRole") == "ImplicitDeny"
    with pytest.raises(NotImplementedError):
        evaluate_trust({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "*"}]}, "arn:p", {})


def test_the_committed_documents_are_what_the_generator_writes():
    committed = {p.name: p.read_text() for p in (REPO_ROOT / "docs" / "ci-roles").glob("*.json")}
    assert committed == ci_roles.files(SITE), "regenerate: python tools/ci_roles.py"


def test_a_pull_request_job_may_assume_no_role():
    """Issue 17: a pull request's code gets no role by asking for a token; a PR can edit the
    workflows, so only a subject GitHub issues after an environment's rules can be trusted."""
    assert who_may_assume(token(f"repo:{SITE.repo}:pull_request")) == set()


def test_the_approved_preview_gets_the_preview_role_only():
    assert who_may_assume(token(f"repo:{SITE.repo}:environment:preview")) == {"rancher-ha-preview"}


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_each_deploy_environment_gets_its_own_deploy_role_only(environment):
    assert who_may_assume(token(f"repo:{SITE.repo}:environment:{environment}")) == {f"rancher-ha-deploy-{environment}"}


@pytest.mark.parametrize("claims", [
    token(f"repo:{SITE.repo}:ref:refs/heads/feature"),  # a branch push, outside any environment
    token(f"repo:{SITE.repo}:ref:refs/heads/main"),  # even main, outside the environment
    token(f"repo:{SITE.repo}:environment:Prod-copy"),
    token("repo:someone-else/REPO:environment:prod"),  # a fork or another repository
    token(f"repo:{SITE.repo}:environment:prod", aud="https://github.com/OWNER"),
    {"aud": ci_roles.AUDIENCE},
])
def test_no_role_for_other_tokens(claims):
    assert who_may_assume(claims) == set()


def test_another_identity_provider_is_not_trusted():
    assert who_may_assume(token(f"repo:{SITE.repo}:environment:prod"), federated="arn:aws:iam::999999999999:oidc-provider/x") == set()


def _workflows():
    return {p.name: yaml.safe_load(p.read_text()) for p in (REPO_ROOT / ".github" / "workflows").glob("*.yml")}


def test_every_environment_that_asks_for_a_token_has_exactly_one_role():
    """The environments the workflows run credentialed jobs in are the roles' subjects."""
    environments = set()
    for workflow in _workflows().values():
        for job in workflow["jobs"].values():
            permissions = job.get("permissions", workflow.get("permissions")) or {}
            if permissions.get("id-token") != "write" or "environment" not in job:
                continue
            environment = job["environment"]
            environments |= set(ci_roles.DEPLOY_ENVIRONMENTS) if environment == "${{ inputs.stack }}" else {environment}
    subjects = {docs["trust"]["Statement"][0]["Condition"]["StringEquals"][f"{HOST}:sub"] for docs in ROLES.values()}
    assert subjects == {SITE.subject(e) for e in environments}
    assert len(subjects) == len(ROLES)


# -- what the roles may do -----------------------------------------------------------------
PREVIEW = [ROLES["rancher-ha-preview"]["permissions"]]
DEPLOY = [ROLES["rancher-ha-deploy-prod"]["permissions"]]
STATE = f"arn:aws:s3:::{SITE.state_bucket}"


@pytest.mark.parametrize("request_", [
    Request("ec2:DescribeVpcs", "*"),
    Request("ec2:DescribeImages", "*"),
    Request("route53:ListHostedZonesByName", "*"),
    Request("s3:ListBucket", STATE),
    Request("s3:GetObject", f"{STATE}/.pulumi/meta.yaml"),
    Request("s3:GetObject", f"{STATE}/.pulumi/stacks/rancher-ha/dev.json"),
    Request("s3:GetObject", f"{STATE}/.pulumi/stacks/rancher-ha/staging.json.gz"),
    Request("kms:Decrypt", SITE.secrets_key),
], ids=lambda r: f"{r.action} {r.resource}")
def test_the_preview_role_reads_what_a_preview_reads(request_):
    assert evaluate(PREVIEW, request_) == "Allow"


@pytest.mark.parametrize("request_", [
    Request("ec2:RunInstances", "*"),
    Request("ec2:TerminateInstances", "*"),
    Request("ec2:GetConsoleOutput", "*"),
    Request("iam:CreateRole", "arn:aws:iam::111122223333:role/x"),
    Request("iam:PassRole", "arn:aws:iam::111122223333:role/x"),
    Request("s3:PutObject", f"{STATE}/.pulumi/stacks/rancher-ha/dev.json"),
    Request("s3:DeleteObject", f"{STATE}/.pulumi/stacks/rancher-ha/dev.json"),
    Request("s3:GetObject", f"{STATE}/.pulumi/stacks/rancher-ha/prod.json"),
    Request("s3:GetObject", "arn:aws:s3:::rancher-ha-dev-etcd-0123/rancher-ha/dev/etcd-snapshot-x"),
    Request("ssm:GetParameter", "arn:aws:ssm:eu-west-1:111122223333:parameter/rancher-ha/dev/server-ca-key"),
    Request("ssm:PutParameter", "arn:aws:ssm:eu-west-1:111122223333:parameter/rancher-ha/dev/x"),
    Request("kms:Decrypt", f"arn:aws:kms:eu-west-1:111122223333:key/ANOTHER_KEY"),
    Request("kms:Encrypt", SITE.secrets_key),
    Request("route53:ChangeResourceRecordSets", "*"),
    Request("secretsmanager:GetSecretValue", "*"),
], ids=lambda r: f"{r.action} {r.resource}")
def test_the_preview_role_cannot_write_or_read_secrets_elsewhere(request_):
    assert evaluate(PREVIEW, request_) != "Allow"


def test_the_preview_role_allows_no_write_action():
    """Every action it allows is a read (Describe/Get/List), bar kms:Decrypt of the one key."""
    allowed = [a for s in PREVIEW[0]["Statement"] if s["Effect"] == "Allow" for a in _as_list(s["Action"])]
    assert [a for a in allowed if not re.fullmatch(r"[a-z0-9]+:(Describe|Get|List)\w*\*?", a) and a != "kms:Decrypt"] == []


def test_the_deploy_role_covers_every_aws_type_the_program_creates():
    """reference/upstream/force-new/aws.json lists every AWS type the program creates (the
    offline plan refuses a type it has no data for): each type's service is granted."""
    types = json.loads((REPO_ROOT / "reference" / "upstream" / "force-new" / "aws.json").read_text())["resources"]
    modules = {t.split(":")[1].split("/")[0] for t in types}
    assert modules <= set(ci_roles.SERVICE_PREFIXES), f"add the IAM prefix of {modules - set(ci_roles.SERVICE_PREFIXES)}"
    for module in modules:
        prefix = ci_roles.SERVICE_PREFIXES[module]
        resource = f"arn:aws:iam::{SITE.account}:role/rancher-server-role-0" if prefix == "iam" else "*"
        action = "iam:PutRolePolicy" if prefix == "iam" else f"{prefix}:TagResource"
        # an inline policy on the program's role, which carries the workload boundary
        context = {"iam:PermissionsBoundary": f"arn:aws:iam::{SITE.account}:policy/rancher-ha-workload-boundary"}
        assert evaluate(DEPLOY, Request(action, resource, context)) == "Allow", module


@pytest.mark.parametrize("action", ["iam:UpdateAssumeRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePolicy", "iam:DeleteRole"])
def test_a_deploy_cannot_widen_who_may_deploy(action):
    ci_role = f"arn:aws:iam::{SITE.account}:role{ci_roles.ROLE_PATH}rancher-ha-deploy-prod"
    assert evaluate(DEPLOY, Request(action, ci_role)) == "Deny"
    assert evaluate(DEPLOY, Request("iam:UpdateOpenIDConnectProviderThumbprint", SITE.oidc_provider)) == "Deny"


@pytest.fixture(scope="module")
def snapshot_stack():
    """rke2 with S3 snapshots: the program's own parameters and snapshot bucket."""
    return cached_run({**RKE2, "rancher-ha:etcdSnapshotS3": True})


def test_the_preview_role_reads_none_of_the_programs_parameters_or_snapshots(snapshot_stack):
    """Against what the program creates: its SSM parameter names and its bucket's real name."""
    parameters = _created_parameters(snapshot_stack)
    assert parameters
    assert {n: evaluate(PREVIEW, Request("ssm:GetParameter", _parameter_arn(n))) for n in parameters} == {n: "Deny" for n in parameters}
    (bucket,) = snapshot_stack.of_type("aws:s3/bucket:Bucket")
    reads = {what: r for what, r in snapshot_client_requests(bucket.outputs["bucket"]).items() if r.action == "s3:GetObject"}
    assert reads and {what: evaluate(PREVIEW, r) for what, r in reads.items()} == {what: "Deny" for what in reads}


# -- no escalation: the program's IAM only, under the workload boundary ----------------------
# Literal, not read from the generator, so these tests judge any version of the documents.
BOUNDARY = f"arn:aws:iam::{SITE.account}:policy/rancher-ha-workload-boundary"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
BOUNDED = {"iam:PermissionsBoundary": BOUNDARY}


def _iam(kind: str, name: str) -> str:
    return f"arn:aws:iam::{SITE.account}:{kind}/{name}"


SERVER_ROLE = _iam("role", "rancher-server-role-42c37a0")
BACKUP_USER = _iam("user", "rancher-ha/rancher-backups-user-42c37a0")


@pytest.mark.parametrize("request_", [
    # a managed policy (AdministratorAccess) on the program's role or user, or any other
    Request("iam:AttachRolePolicy", SERVER_ROLE, {"iam:PolicyARN": ADMIN, **BOUNDED}),
    Request("iam:AttachRolePolicy", _iam("role", "break-glass"), {"iam:PolicyARN": ADMIN}),
    Request("iam:AttachUserPolicy", BACKUP_USER, {"iam:PolicyARN": ADMIN, **BOUNDED}),
    # a role or user without the boundary (or with another one), or an inline policy on one
    Request("iam:CreateRole", SERVER_ROLE),
    Request("iam:CreateRole", SERVER_ROLE, {"iam:PermissionsBoundary": ADMIN}),
    Request("iam:CreateUser", BACKUP_USER),
    Request("iam:PutRolePolicy", SERVER_ROLE),
    Request("iam:PutUserPolicy", BACKUP_USER),
    Request("iam:PutRolePermissionsBoundary", SERVER_ROLE, {"iam:PermissionsBoundary": ADMIN}),
    # a role of another name, even with the boundary
    Request("iam:CreateRole", _iam("role", "admin"), BOUNDED),
    # removing the boundary
    Request("iam:DeleteRolePermissionsBoundary", SERVER_ROLE, BOUNDED),
    Request("iam:DeleteUserPermissionsBoundary", BACKUP_USER, BOUNDED),
    # passing a role to anything but EC2, or another role to EC2
    Request("iam:PassRole", SERVER_ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}),
    Request("iam:PassRole", _iam("role", "admin"), {"iam:PassedToService": "ec2.amazonaws.com"}),
    # another role's trust policy
    Request("iam:UpdateAssumeRolePolicy", _iam("role", "break-glass")),
], ids=lambda r: f"{r.action} {r.resource.rsplit(':', 1)[-1]} {sorted(r.context.values())}")
def test_a_deploy_cannot_make_an_admin(request_):
    """Review finding 2: `iam:*Role*` on role/* and `iam:*User*`+`iam:*AccessKey*` unconditioned
    let a deploy attach AdministratorAccess and mint a key, or take over any role."""
    assert evaluate(DEPLOY, request_) != "Allow"


@pytest.mark.parametrize("request_", [
    Request("iam:CreatePolicyVersion", BOUNDARY),
    Request("iam:SetDefaultPolicyVersion", BOUNDARY),
    Request("iam:DeletePolicy", BOUNDARY),
    Request("iam:CreateAccessKey", _iam("user", "admin")),
    Request("iam:CreateAccessKey", _iam("user", "other/rancher-backups-user-42c37a0")),
], ids=lambda r: f"{r.action} {r.resource.rsplit(':', 1)[-1]}")
def test_a_deploy_cannot_change_the_boundary_or_key_other_users(request_):
    """What the boundary rests on (the first release's documents already denied these)."""
    assert evaluate(DEPLOY, request_) != "Allow"


def _program_iam(result) -> tuple[list[str], list[str], list[str]]:
    def names(type_token: str) -> list[str]:
        return [r.outputs["name"] for r in result.of_type(type_token)]
    return (names("aws:iam/role:Role"), names("aws:iam/instanceProfile:InstanceProfile"),
            [f"{r.inputs['path'].strip('/')}/{r.outputs['name']}" for r in result.of_type("aws:iam/user:User")])


@pytest.fixture(scope="module")
def iam_stack():
    """Every IAM resource the program makes (both instance roles and the backup user), with
    the setting the CI roles require: iamPermissionsBoundaryArn."""
    return cached_run({**RKE2, **NGINX_L7, "rancher-ha:etcdSnapshotS3": True, "rancher-ha:rancherBackups": True,
                       "rancher-ha:iamPermissionsBoundaryArn": BOUNDARY})


def test_a_deploy_may_do_what_the_program_does(iam_stack):
    roles, profiles, users = _program_iam(iam_stack)
    assert len(roles) == 2 and len(profiles) == 2 and len(users) == 1
    # The boundary each role and user is created with is the program's own input.
    assert [r.inputs.get("permissionsBoundary") for t in ("aws:iam/role:Role", "aws:iam/user:User")
            for r in iam_stack.of_type(t)] == [BOUNDARY] * 3
    requests = [Request(a, _iam("role", n), BOUNDED) for n in roles for a in (
        "iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary", "iam:GetRole", "iam:TagRole",
        "iam:UpdateAssumeRolePolicy", "iam:ListInstanceProfilesForRole", "iam:DeleteRolePolicy", "iam:DeleteRole")]
    requests += [Request("iam:PassRole", _iam("role", n), {"iam:PassedToService": "ec2.amazonaws.com"}) for n in roles]
    # AddRoleToInstanceProfile checks iam:PassRole on the role (IAM API reference, "The caller
    # of this operation must be granted the PassRole permission"); AWS documents no
    # iam:PassedToService for that check, so the grant must not depend on the key's presence.
    requests += [Request("iam:PassRole", _iam("role", n)) for n in roles]
    requests += [Request(a, _iam("instance-profile", n)) for n in profiles for a in (
        "iam:CreateInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:TagInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile")]
    requests += [Request(a, _iam("user", n), BOUNDED) for n in users for a in (
        "iam:CreateUser", "iam:PutUserPolicy", "iam:PutUserPermissionsBoundary", "iam:TagUser", "iam:CreateAccessKey",
        "iam:DeleteAccessKey", "iam:ListAccessKeys", "iam:DeleteUserPolicy", "iam:DeleteUser")]
    assert {f"{r.action} {r.resource}": evaluate(DEPLOY, r) for r in requests} == {
        f"{r.action} {r.resource}": "Allow" for r in requests}


def test_the_boundary_allows_everything_the_programs_own_policies_grant(iam_stack):
    """The boundary caps the program's principals: each action on each resource of their
    inline policies (with the values of their conditions) must stay allowed."""
    boundary = json.loads((REPO_ROOT / "docs" / "ci-roles" / "rancher-ha-workload-boundary.policy.json").read_text())
    policies = [json.loads(r.inputs["policy"]) for t in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/userPolicy:UserPolicy")
                for r in iam_stack.of_type(t)]
    assert len(policies) == 3
    grants = [Request(action, resource.replace("123456789012", SITE.account),
                      {k: v for values in (s.get("Condition") or {}).values() for k, v in values.items()})
              for p in policies for s in p["Statement"] if s["Effect"] == "Allow"
              for action in _as_list(s["Action"]) for resource in _as_list(s["Resource"])]
    assert {f"{g.action} {g.resource}": evaluate([boundary], g) for g in grants} == {
        f"{g.action} {g.resource}": "Allow" for g in grants}
    for escalation in (Request("iam:CreateUser", "*"), Request("iam:PassRole", "*"), Request("s3:PutObject", "arn:aws:s3:::other/x"),
                       Request("ssm:GetParameter", f"arn:aws:ssm:eu-west-1:{SITE.account}:parameter/other")):
        assert evaluate([boundary], escalation) == "ImplicitDeny"


def _deployed_stacks() -> list[str]:
    """The stacks the deploy workflow runs `pulumi up` for, each with its CI deploy role."""
    jobs = _workflows()["deploy.yml"]["jobs"].values()
    return sorted(job["with"]["stack"] for job in jobs if "pulumi-up.yml" in str(job.get("uses", "")))


@pytest.mark.parametrize("stack", _deployed_stacks())
def test_the_shipped_stacks_can_be_deployed_by_their_ci_roles(stack):
    """A shipped stack file, deployed by the shipped workflow with its environment's deploy
    role, must be able to create its own IAM: the role creates roles and users only with the
    workload boundary, so a stack that leaves the boundary unset fails with AccessDenied at
    its first role. The boundary ARN is what AWS sees: the program's input, in the account
    the deploy runs in (the mocks' 123456789012 is that account here)."""
    from offline.runner import run_stack

    deploy = [ROLES[f"rancher-ha-deploy-{stack}"]["permissions"]]
    result = run_stack(stack)
    principals = [(kind, r) for kind, type_token in (("role", "aws:iam/role:Role"), ("user", "aws:iam/user:User"))
                  for r in result.of_type(type_token)]
    assert principals
    decisions = {}
    for kind, r in principals:
        boundary = r.inputs.get("permissionsBoundary")
        context = {"iam:PermissionsBoundary": boundary.replace("123456789012", SITE.account)} if boundary else {}
        name = f"{r.inputs['path'].strip('/')}/{r.outputs['name']}" if kind == "user" else r.outputs["name"]
        action = "iam:CreateUser" if kind == "user" else "iam:CreateRole"
        decisions[f"{action} {name}"] = evaluate(deploy, Request(action, _iam(kind, name), context))
    assert decisions == {what: "Allow" for what in decisions}
