"""An IAM action and the API call that needs it, tested together.

A role policy is only right if the calls the machine really makes are allowed by it.
This module has a small IAM evaluator (identity policies: Allow/Deny, Action and
Resource wildcards, StringEquals/StringLike) and, for every machine the program
builds, the requests its software sends — each with the source that says so:

- K3s/RKE2 etcd S3 snapshots: the client in k3s `pkg/etcd/s3/s3.go` (read at
  k3s-io/k3s 0d0a789ab9188bf5594259c746f2cf022d6c4403; RKE2 embeds it):
  * `GetClient` calls minio `BucketExists` = HeadBucket before anything else. AWS:
    "To use this operation, you must have permissions to perform the s3:ListBucket
    action" (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html); a
    HeadBucket request carries no `s3:prefix`, so the key is absent from the context.
  * `ListSnapshots`: ListObjects with `Prefix: etcdS3.Folder` (the folder, no trailing
    slash) -> s3:ListBucket with s3:prefix=<folder>.
  * `SnapshotRetention`: ListObjects with `Prefix: path.Join(folder, <snapshot prefix>)`
    -> s3:ListBucket with s3:prefix=<folder>/<name prefix>.
  * `Upload`: FPutObject of `<folder>/<name>` and `<folder>/.metadata/<name>` -> s3:PutObject
    (multipart uploads are authorised as s3:PutObject too).
  * `Download`: FGetObject of the same keys; `DeleteSnapshot`: StatObject (HEAD object,
    authorised as s3:GetObject) then RemoveObject -> s3:DeleteObject.
  * GetBucketLocation -> s3:GetBucketLocation on the bucket (minio asks it when it does
    not know the region; granted by the program, modelled here).
  Action -> resource/condition-key mapping: "Actions, resources, and condition keys for
  Amazon S3" (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html):
  s3:prefix is a ListBucket condition key, set only when the request has a prefix.
- SSM: the boot scripts read one parameter at a time with `aws ssm get-parameter`
  (rendering/templates/ssm.sh.j2 `fetch_parameter` / `parameter_exists`) ->
  ssm:GetParameter on arn:<partition>:ssm:<region>:<account>:parameter<name>.
- NGINX takes over the stack's Elastic IP at boot with `aws ec2 associate-address
  --allocation-id <eip> --instance-id <self>` (rendering/templates/nginx-bootstrap.sh.j2):
  ec2:AssociateAddress is authorised on the elastic-ip ARN and on the instance ARN
  (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html),
  `aws:ResourceTag/<key>` being the tag of the resource evaluated.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest
import yaml

from conftest import DEV_PARAMETER_ROOT, NGINX_L7, RKE2, run
from offline.mocks import ACCOUNT_ID

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST_RELEASE = "f024eb3"
REGION = "eu-west-1"
STACK = "dev"
FOLDER = f"rancher-ha/{STACK}"  # EtcdSnapshots.s3_folder in stages/cluster.py


# -- the evaluator -------------------------------------------------------------------------
def _wildcard(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IAM `*` (any run, `/` included) and `?` (one character)."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class Request:
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)  # condition keys present in the request

    def value(self, key: str):
        for name, value in self.context.items():  # condition key names are case-insensitive
            if name.lower() == key.lower():
                return value
        return None


CONDITION_OPERATORS = {
    "StringEquals": lambda pattern, value: pattern == value,
    "StringLike": lambda pattern, value: _wildcard(pattern, value),
    "ArnEquals": lambda pattern, value: pattern == value,
    "ArnLike": lambda pattern, value: _wildcard(pattern, value),
    "Bool": lambda pattern, value: str(pattern).lower() == str(value).lower(),
}
# Null: "true" holds when the key is absent, "false" when it is present.
# A negated operator holds when none of its values match, and when the key is absent
# ("IAM JSON policy elements: Condition operators").
NEGATED_OPERATORS = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike",
                     "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike"}


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]], request: Request) -> bool:
    """Every operator and every key must hold (AND); any of a key's values may (OR). A key
    absent from the request context does not match a positive operator."""
    for operator, keys in conditions.items():
        if operator == "Null":
            if any((request.value(key) is None) != (str(flag).lower() == "true") for key, flag in keys.items()):
                return False
            continue
        # ...IfExists: holds when the key is absent, else as the operator without the suffix.
        if_exists = operator.endswith("IfExists")
        operator = operator.removesuffix("IfExists")
        negated = operator in NEGATED_OPERATORS
        if operator not in CONDITION_OPERATORS and not negated:
            raise NotImplementedError(f"condition operator {operator}")
        test = CONDITION_OPERATORS[NEGATED_OPERATORS.get(operator, operator)]
        for key, patterns in keys.items():
            value = request.value(key)
            if value is None:
                if negated or if_exists:
                    continue
                return False
            if any(test(p, value) for p in _as_list(patterns)) == negated:
                return False
    return True


def _statement_applies(statement: Mapping[str, Any], request: Request, resource_policy: bool = False) -> bool:
    """NotAction/NotResource: the statement applies to every action/resource NOT listed."""
    for unsupported in ("NotPrincipal",) + (() if resource_policy else ("Principal",)):
        if unsupported in statement:
            raise NotImplementedError(unsupported)
    if resource_policy and not _principal_names(statement["Principal"], request):
        return False
    listed = "Action" in statement
    actions = _as_list(statement["Action"] if listed else statement["NotAction"])
    if any(_wildcard(a, request.action, case_sensitive=False) for a in actions) != listed:
        return False
    listed = "Resource" in statement
    resources = _as_list(statement["Resource"] if listed else statement["NotResource"])
    if any(_wildcard(r, request.resource) for r in resources) != listed:
        return False
    return _conditions_hold(statement.get("Condition") or {}, request)


def evaluate(policies: Iterable[Mapping[str, Any]], request: Request) -> str:
    """'Allow', 'Deny' (explicit) or 'ImplicitDeny' for one action on one resource."""
    statements = [s for p in policies for s in _as_list(p["Statement"])]
    applying = [s for s in statements if _statement_applies(s, request)]
    if any(s["Effect"] == "Deny" for s in applying):
        return "Deny"
    if any(s["Effect"] == "Allow" for s in applying):
        return "Allow"
    return "ImplicitDeny"


def _principal_names(principal: Any, request: Request, directly: bool = False) -> bool:
    """Whether a resource policy's Principal covers the caller (aws:PrincipalArn in the
    context): "*", the caller's ARN, or its account's root, which in a same-account
    resource policy hands the decision to the caller's IAM policies (not `directly`)."""
    if principal == "*":
        return not directly
    caller = request.value("aws:PrincipalArn") or ""
    for arn in _as_list(principal.get("AWS", [])):
        if arn == caller or (arn == "*" and not directly):
            return True
        if not directly and arn.endswith(":root") and arn.split(":")[4] == caller.split(":")[4]:
            return True
    return False


def evaluate_with_resource_policy(identity: Iterable[Mapping[str, Any]], resource: Mapping[str, Any] | None,
                                  request: Request, key_policy: bool = False, same_account: bool = True) -> str:
    """One request of a principal of the resource's own account. S3: an Allow in either the
    identity or the bucket policy allows. KMS ("Key policies in AWS KMS"): the key policy
    must allow, naming the caller, or naming the account (root), and then an IAM policy must
    allow too. An explicit Deny anywhere wins. A principal of another account (not
    `same_account`; "Cross-account policy evaluation logic"): the resource's policy must
    allow it (naming it or its account) AND its own identity policy must allow."""
    own = [s for p in identity for s in _as_list(p["Statement"]) if _statement_applies(s, request)]
    theirs = [s for s in _as_list((resource or {}).get("Statement") or []) if _statement_applies(s, request, resource_policy=True)]
    if any(s["Effect"] == "Deny" for s in own + theirs):
        return "Deny"
    identity_allows = any(s["Effect"] == "Allow" for s in own)
    if not same_account:
        return "Allow" if identity_allows and any(s["Effect"] == "Allow" for s in theirs) else "ImplicitDeny"
    if not key_policy:
        return "Allow" if identity_allows or any(s["Effect"] == "Allow" for s in theirs) else "ImplicitDeny"
    direct = any(s["Effect"] == "Allow" and _principal_names(s["Principal"], request, directly=True) for s in theirs)
    delegated = any(s["Effect"] == "Allow" for s in theirs)
    return "Allow" if direct or (delegated and identity_allows) else "ImplicitDeny"


def allowed(policies, requests: Iterable[Request]) -> bool:
    """A call that is authorised on several resources needs every one of them allowed."""
    return all(evaluate(policies, r) == "Allow" for r in requests)


def test_the_evaluator_itself():
    allow = {"Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/x/*"}]}
    assert evaluate([allow], Request("s3:GetObject", "arn:aws:s3:::b/x/y/z")) == "Allow"
    assert evaluate([allow], Request("S3:getobject", "arn:aws:s3:::b/x/1")) == "Allow"  # actions: case-insensitive
    assert evaluate([allow], Request("s3:GetObject", "arn:aws:s3:::b/X/1")) == "ImplicitDeny"  # ARNs: case-sensitive
    assert evaluate([allow], Request("s3:PutObject", "arn:aws:s3:::b/x/1")) == "ImplicitDeny"
    deny = {"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}
    assert evaluate([allow, deny], Request("s3:GetObject", "arn:aws:s3:::b/x/1")) == "Deny"
    conditioned = {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
                                  "Condition": {"StringLike": {"s3:prefix": ["x/*", "x"]}}}]}
    assert evaluate([conditioned], Request("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "x/a"})) == "Allow"
    assert evaluate([conditioned], Request("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "y"})) == "ImplicitDeny"
    # The rule the defect hinges on: a key absent from the request does not match.
    assert evaluate([conditioned], Request("s3:ListBucket", "arn:aws:s3:::b")) == "ImplicitDeny"
    equals = {"Statement": [{"Effect": "Allow", "Action": "ec2:AssociateAddress", "Resource": "*",
                             "Condition": {"StringEquals": {"aws:ResourceTag/team": "a"}}}]}
    assert evaluate([equals], Request("ec2:AssociateAddress", "arn:x", {"aws:resourcetag/team": "a"})) == "Allow"
    assert evaluate([equals], Request("ec2:AssociateAddress", "arn:x", {"aws:ResourceTag/team": "ab"})) == "ImplicitDeny"
    assert evaluate([equals], Request("ec2:AssociateAddress", "arn:x")) == "ImplicitDeny"
    with pytest.raises(NotImplementedError):
        evaluate([{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {}}}]}],
                 Request("a:b", "c"))
    # Negated operators hold for an absent key; Bool compares as text.
    not_like = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*",
                               "Condition": {"ArnNotLike": {"aws:PrincipalArn": ["arn:aws:iam::1:role/a", "arn:aws:iam::1:role/*/a"]}}}]}
    assert evaluate([not_like], Request("s3:GetObject", "x", {"aws:PrincipalArn": "arn:aws:iam::1:role/a"})) == "ImplicitDeny"
    assert evaluate([not_like], Request("s3:GetObject", "x", {"aws:PrincipalArn": "arn:aws:iam::1:role/p/a"})) == "ImplicitDeny"
    assert evaluate([not_like], Request("s3:GetObject", "x", {"aws:PrincipalArn": "arn:aws:iam::1:role/b"})) == "Deny"
    assert evaluate([not_like], Request("s3:GetObject", "x")) == "Deny"
    tls = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    assert evaluate([tls], Request("s3:GetObject", "x", {"aws:SecureTransport": "false"})) == "Deny"
    assert evaluate([tls], Request("s3:GetObject", "x", {"aws:SecureTransport": "true"})) == "ImplicitDeny"
    # Resource policies: who they name; a key policy naming the account needs IAM as well.
    me = {"aws:PrincipalArn": "arn:aws:iam::1:role/me"}
    grant = lambda principal: {"Statement": [{"Effect": "Allow", "Principal": principal, "Action": "kms:Decrypt", "Resource": "*"}]}  # noqa: E731
    iam = [{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}]
    assert evaluate_with_resource_policy([], grant({"AWS": "arn:aws:iam::1:role/me"}), Request("kms:Decrypt", "k", me), key_policy=True) == "Allow"
    assert evaluate_with_resource_policy([], grant({"AWS": "arn:aws:iam::1:root"}), Request("kms:Decrypt", "k", me), key_policy=True) == "ImplicitDeny"
    assert evaluate_with_resource_policy(iam, grant({"AWS": "arn:aws:iam::1:root"}), Request("kms:Decrypt", "k", me), key_policy=True) == "Allow"
    assert evaluate_with_resource_policy(iam, grant({"AWS": "arn:aws:iam::1:role/other"}), Request("kms:Decrypt", "k", me), key_policy=True) == "ImplicitDeny"
    assert evaluate_with_resource_policy(iam, None, Request("kms:Decrypt", "k", me)) == "Allow"  # S3: IAM alone suffices
    # Another account's principal: the resource policy AND its own IAM policy must allow.
    them = {"aws:PrincipalArn": "arn:aws:iam::2:role/them"}
    assert evaluate_with_resource_policy(iam, None, Request("kms:Decrypt", "k", them), same_account=False) == "ImplicitDeny"
    assert evaluate_with_resource_policy([], grant({"AWS": "arn:aws:iam::2:root"}), Request("kms:Decrypt", "k", them), key_policy=True, same_account=False) == "ImplicitDeny"
    assert evaluate_with_resource_policy(iam, grant({"AWS": "arn:aws:iam::2:root"}), Request("kms:Decrypt", "k", them), key_policy=True, same_account=False) == "Allow"
    assert evaluate_with_resource_policy(iam, grant({"AWS": "arn:aws:iam::1:root"}), Request("kms:Decrypt", "k", them), same_account=False) == "ImplicitDeny"
    # NotAction / NotResource: every action / resource but those listed.
    not_action = {"Statement": [{"Effect": "Deny", "NotAction": ["s3:GetObject", "s3:List*"], "Resource": "*"}]}
    assert evaluate([not_action], Request("s3:GetObject", "x")) == "ImplicitDeny"
    assert evaluate([not_action], Request("s3:ListBucket", "x")) == "ImplicitDeny"
    assert evaluate([not_action], Request("s3:PutObject", "x")) == "Deny"
    assert evaluate([not_action], Request("s3:GetObjectAcl", "x")) == "Deny"
    not_resource = {"Statement": [{"Effect": "Deny", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::b/x/*"}]}
    assert evaluate([not_resource], Request("s3:GetObject", "arn:aws:s3:::b/x/1")) == "ImplicitDeny"
    assert evaluate([not_resource], Request("s3:GetObject", "arn:aws:s3:::b/y/1")) == "Deny"
    # `?` in an action: exactly one character, so `s3:GetObject?*` is every GetObject<more>.
    question = {"Statement": [{"Effect": "Deny", "Action": "s3:GetObject?*", "Resource": "*"}]}
    assert evaluate([question], Request("s3:GetObjectAcl", "x")) == "Deny"
    assert evaluate([question], Request("s3:GetObject", "x")) == "ImplicitDeny"
    # Null (key present or not) and ...IfExists (holds when the key is absent).
    listed = {"Statement": [{"Effect": "Deny", "Action": "s3:ListBucket", "Resource": "*",
                             "Condition": {"Null": {"s3:prefix": "false"}, "StringNotLike": {"s3:prefix": ["x/*"]}}}]}
    assert evaluate([listed], Request("s3:ListBucket", "b")) == "ImplicitDeny"
    assert evaluate([listed], Request("s3:ListBucket", "b", {"s3:prefix": "x/a"})) == "ImplicitDeny"
    assert evaluate([listed], Request("s3:ListBucket", "b", {"s3:prefix": "y/"})) == "Deny"
    if_exists = {"Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*",
                                "Condition": {"StringLikeIfExists": {"s3:prefix": ["x/*"]}}}]}
    assert evaluate([if_exists], Request("s3:ListBucket", "b")) == "Allow"
    assert evaluate([if_exists], Request("s3:ListBucket", "b", {"s3:prefix": "x/a"})) == "Allow"
    assert evaluate([if_exists], Request("s3:ListBucket", "b", {"s3:prefix": "y"})) == "ImplicitDeny"


# -- the program's policies ----------------------------------------------------------------
@pytest.fixture(scope="module")
def stack():
    """rke2 + S3 snapshots + NGINX L7: both instance roles in one run."""
    return run({**RKE2, **NGINX_L7, "rancher-ha:etcdSnapshotS3": True})


def _policy(result, name: str) -> dict:
    return json.loads(result.named(name).inputs["policy"])


@pytest.fixture(scope="module")
def node_policy(stack):
    return _policy(stack, "rancher-server-policy")


@pytest.fixture(scope="module")
def nginx_policy(stack):
    return _policy(stack, "nginx-lb-instance-policy")


@pytest.fixture(scope="module")
def bucket(stack):
    (bucket,) = stack.of_type("aws:s3/bucket:Bucket")
    return bucket.outputs["bucket"]


def snapshot_client_requests(bucket: str, folder: str = FOLDER, node: str = "rancher-server-0") -> dict[str, Request]:
    """What k3s pkg/etcd/s3/s3.go sends for one snapshot's life (see the module docstring)."""
    bucket_arn = f"arn:aws:s3:::{bucket}"
    name = f"etcd-snapshot-{node}-1764547200"
    key = f"{folder}/{name}"
    metadata_key = f"{folder}/.metadata/{name}"
    return {
        "HeadBucket (BucketExists)": Request("s3:ListBucket", bucket_arn),
        "GetBucketLocation": Request("s3:GetBucketLocation", bucket_arn),
        "ListObjects (ListSnapshots, prefix=folder)": Request("s3:ListBucket", bucket_arn, {"s3:prefix": folder}),
        "ListObjects (prefix=folder/)": Request("s3:ListBucket", bucket_arn, {"s3:prefix": f"{folder}/"}),
        "ListObjects (SnapshotRetention)": Request("s3:ListBucket", bucket_arn, {"s3:prefix": f"{folder}/etcd-snapshot-{node}"}),
        "PutObject snapshot": Request("s3:PutObject", f"{bucket_arn}/{key}"),
        "PutObject metadata": Request("s3:PutObject", f"{bucket_arn}/{metadata_key}"),
        "GetObject snapshot": Request("s3:GetObject", f"{bucket_arn}/{key}"),
        "HeadObject (StatObject)": Request("s3:GetObject", f"{bucket_arn}/{key}"),
        "GetObject metadata": Request("s3:GetObject", f"{bucket_arn}/{metadata_key}"),
        "DeleteObject snapshot": Request("s3:DeleteObject", f"{bucket_arn}/{key}"),
        "DeleteObject metadata": Request("s3:DeleteObject", f"{bucket_arn}/{metadata_key}"),
    }


def test_the_node_role_allows_every_call_of_the_snapshot_client(node_policy, bucket):
    verdicts = {what: evaluate([node_policy], r) for what, r in snapshot_client_requests(bucket).items()}
    assert all(v == "Allow" for v in verdicts.values()), verdicts


def test_the_node_role_keeps_object_access_inside_the_snapshot_folder(node_policy, bucket):
    arn = f"arn:aws:s3:::{bucket}"
    outside = [
        Request("s3:GetObject", f"{arn}/other/secret"),
        Request("s3:PutObject", f"{arn}/rancher-ha/prod/etcd-snapshot-x"),  # another stack's folder
        Request("s3:PutObject", f"{arn}/rancher-ha/dev-old/etcd-snapshot-x"),  # a folder sharing the prefix
        Request("s3:DeleteObject", f"{arn}/rancher-ha/dev"),  # the folder key itself
        Request("s3:GetObject", "arn:aws:s3:::another-bucket/rancher-ha/dev/etcd-snapshot-x"),
        Request("s3:ListBucket", "arn:aws:s3:::another-bucket"),
        Request("s3:DeleteBucket", arn),
        Request("s3:PutBucketPolicy", arn),
    ]
    assert {r.action + " " + r.resource: evaluate([node_policy], r) for r in outside} == {
        r.action + " " + r.resource: "ImplicitDeny" for r in outside
    }


def _first_release_snapshot_statements():
    """`snapshot_statements` exactly as the first release shipped it (git show, read-only)."""
    source = subprocess.run(["git", "show", f"{FIRST_RELEASE}:components/cluster_nodes.py"], cwd=REPO_ROOT,
                            check=True, capture_output=True, text=True).stdout
    (function,) = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "snapshot_statements"]
    namespace: dict = {}
    exec(compile(ast.Module(body=[function], type_ignores=[]), "first-release", "exec"), {"__builtins__": __builtins__, "list": list, "dict": dict}, namespace)
    return namespace["snapshot_statements"]


def test_the_first_release_policy_denied_head_bucket_so_snapshots_stayed_local(bucket):
    statements = _first_release_snapshot_statements()(f"arn:aws:s3:::{bucket}", FOLDER)
    policy = {"Version": "2012-10-17", "Statement": statements}
    requests = snapshot_client_requests(bucket)
    # The defect: HeadBucket has no s3:prefix, so the prefix-conditioned ListBucket does not apply.
    assert evaluate([policy], requests["HeadBucket (BucketExists)"]) == "ImplicitDeny"
    # ...while the listings it was written for were allowed, which is why it looked right.
    assert evaluate([policy], requests["ListObjects (ListSnapshots, prefix=folder)"]) == "Allow"
    assert evaluate([policy], requests["ListObjects (SnapshotRetention)"]) == "Allow"
    assert evaluate([policy], requests["PutObject snapshot"]) == "Allow"


def test_the_current_grant_of_list_bucket_is_unconditioned_and_on_the_stack_bucket_only(node_policy, bucket):
    listing = [s for s in node_policy["Statement"] if "s3:ListBucket" in _as_list(s["Action"])]
    assert listing and all(not s.get("Condition") for s in listing)
    assert {r for s in listing for r in _as_list(s["Resource"])} == {f"arn:aws:s3:::{bucket}"}


# -- SSM: what the boot scripts read ------------------------------------------------------
def _parameter_arn(name: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter{name}"


def _script_text(cloud_config: dict) -> str:
    return "\n".join(str(entry.get("content", "")) for entry in cloud_config.get("write_files") or []) + "\n" + json.dumps(cloud_config.get("runcmd") or [])


def _parameters_read(script: str) -> set[str]:
    (prefix,) = set(re.findall(r"^PARAMETER_PREFIX='?([^'\s]+)'?$", script, re.M))
    names = re.findall(r"(?:fetch_parameter|parameter_exists) +'?([A-Za-z0-9_./-]+)'?", script)
    return {f"{prefix}/{n}" for n in names if not n.startswith("$")}


def _created_parameters(result) -> set[str]:
    return {r.inputs["name"] for r in result.of_type("aws:ssm/parameter:Parameter")}


def test_node_role_reads_every_node_parameter_and_nothing_of_nginx(stack, node_policy):
    created = _created_parameters(stack)
    node = {n for n in created if n.startswith(f"{DEV_PARAMETER_ROOT}/node/")}
    nginx = {n for n in created if n.startswith(f"{DEV_PARAMETER_ROOT}/nginx/")}
    assert {f"{DEV_PARAMETER_ROOT}/node/token", f"{DEV_PARAMETER_ROOT}/node/tls/server-ca.key", f"{DEV_PARAMETER_ROOT}/node/cluster-initialized"} <= node
    assert nginx and node | nginx == created
    for action in ("ssm:GetParameter", "ssm:GetParameters"):
        assert {n: evaluate([node_policy], Request(action, _parameter_arn(n))) for n in node} == {n: "Allow" for n in node}
        assert {n: evaluate([node_policy], Request(action, _parameter_arn(n))) for n in nginx} == {n: "ImplicitDeny" for n in nginx}
    # Another stack's node path, and parameters of this path in another region, are denied.
    assert evaluate([node_policy], Request("ssm:GetParameter", _parameter_arn("/rancher-ha/prod/node/token"))) == "ImplicitDeny"
    other_region = f"arn:aws:ssm:us-east-1:{ACCOUNT_ID}:parameter{DEV_PARAMETER_ROOT}/node/token"
    assert evaluate([node_policy], Request("ssm:GetParameter", other_region)) == "ImplicitDeny"
    assert evaluate([node_policy], Request("ssm:PutParameter", _parameter_arn(f"{DEV_PARAMETER_ROOT}/node/token"))) == "ImplicitDeny"


def test_every_parameter_a_server_boot_script_reads_is_created_and_allowed(stack, node_policy):
    from helpers import cloud_config, server_instances

    created = _created_parameters(stack)
    read = set()
    for server in server_instances(stack):
        names = _parameters_read(_script_text(cloud_config(server)))
        assert names, server.name
        read |= names
    assert f"{DEV_PARAMETER_ROOT}/node/tls/service.key" in read and f"{DEV_PARAMETER_ROOT}/node/token" in read
    assert read <= created, read - created
    assert {n: evaluate([node_policy], Request("ssm:GetParameter", _parameter_arn(n))) for n in read} == {n: "Allow" for n in read}


def test_the_k3s_datastore_endpoint_is_read_from_the_node_path():
    k3s = run()
    policy = _policy(k3s, "rancher-server-policy")
    from helpers import cloud_config, server_instances

    read = set().union(*(_parameters_read(_script_text(cloud_config(s))) for s in server_instances(k3s)))
    assert f"{DEV_PARAMETER_ROOT}/node/datastore-endpoint" in read
    assert read <= _created_parameters(k3s), read - _created_parameters(k3s)
    assert all(evaluate([policy], Request("ssm:GetParameter", _parameter_arn(n))) == "Allow" for n in read)


def test_nginx_role_reads_only_its_own_parameters(stack, nginx_policy):
    (template,) = stack.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    script = _script_text(yaml.safe_load(base64.b64decode(template.inputs["userData"]).decode()))
    read = _parameters_read(script)
    assert read == {f"{DEV_PARAMETER_ROOT}/nginx/nginx.conf", f"{DEV_PARAMETER_ROOT}/nginx/tls.crt", f"{DEV_PARAMETER_ROOT}/nginx/tls.key"}
    created = _created_parameters(stack)
    assert read <= created
    for name in created:
        verdict = evaluate([nginx_policy], Request("ssm:GetParameter", _parameter_arn(name)))
        assert verdict == ("Allow" if name.startswith(f"{DEV_PARAMETER_ROOT}/nginx/") else "ImplicitDeny"), name


# -- NGINX takes over the Elastic IP ----------------------------------------------------------
def _associate(allocation: str, instance_id: str, instance_tags: Mapping[str, str]) -> list[Request]:
    """`aws ec2 associate-address --allocation-id A --instance-id I`: authorised on both."""
    eip = Request("ec2:AssociateAddress", f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:elastic-ip/{allocation}")
    instance = Request("ec2:AssociateAddress", f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{instance_id}",
                       {f"aws:ResourceTag/{k}": v for k, v in instance_tags.items()})
    return [eip, instance]


def test_nginx_may_move_the_stack_address_onto_stack_instances_only(stack, nginx_policy):
    (address,) = [r for r in stack.of_type("aws:ec2/eip:Eip") if r.name == "nginx-lb-address"]
    allocation = address.outputs["allocationId"]
    (group,) = stack.of_type("aws:autoscaling/group:Group")
    # The tags the Auto Scaling group puts on the instance it launches.
    launched_tags = {t["key"]: t["value"] for t in group.inputs["tags"] if t.get("propagateAtLaunch")}
    assert launched_tags.get("rancher-ha:stack") == STACK
    assert allowed([nginx_policy], _associate(allocation, "i-0123456789abcdef0", launched_tags))
    # Another allocation (e.g. the NAT gateway's address, or another stack's) is denied.
    (nat,) = [r for r in stack.of_type("aws:ec2/eip:Eip") if r.name != "nginx-lb-address"][:1] or [None]
    others = ["eipalloc-0ffffffffffffffff"] + ([nat.outputs["allocationId"]] if nat is not None else [])
    for other in others:
        assert not allowed([nginx_policy], _associate(other, "i-0123456789abcdef0", launched_tags)), other
    # An untagged instance, or one of another stack, is denied.
    assert not allowed([nginx_policy], _associate(allocation, "i-0123456789abcdef0", {}))
    assert not allowed([nginx_policy], _associate(allocation, "i-0123456789abcdef0", {"rancher-ha:stack": "prod"}))
    assert not allowed([nginx_policy], _associate(allocation, "i-0123456789abcdef0", {"Name": "rancher-ha-dev-nginx-lb-instance"}))
    # Nothing else in EC2.
    assert evaluate([nginx_policy], Request("ec2:DisassociateAddress", f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:elastic-ip/{allocation}")) == "ImplicitDeny"


def _association_cases(allocation: str, stack_id: str) -> list[tuple[str, list[Request], str]]:
    """Concrete `associate-address` calls and the verdict each must get, written out by hand
    (not derived from the program): only this stack's address, only onto an instance that
    is this stack's NGINX (its unique identity and the NGINX role tag)."""
    own = {"rancher-ha:stack-id": stack_id, "rancher-ha:role": "nginx", "rancher-ha:stack": STACK}
    instance = "i-0123456789abcdef0"
    eip = lambda a, region=REGION: Request("ec2:AssociateAddress", f"arn:aws:ec2:{region}:{ACCOUNT_ID}:elastic-ip/{a}")  # noqa: E731
    return [
        ("own address onto own NGINX", _associate(allocation, instance, own), "Allow"),
        ("another address onto own NGINX", _associate("eipalloc-0ffffffffffffffff", instance, own), "Deny"),
        ("own address in another region", [eip(allocation, "us-east-1")], "Deny"),
        ("onto a server of the stack", _associate(allocation, instance, {"rancher-ha:stack-id": stack_id, "rancher-ha:stack": STACK}), "Deny"),
        ("onto a server tagged with another role", _associate(allocation, instance, {**own, "rancher-ha:role": "server"}), "Deny"),
        ("onto another deployment's NGINX", _associate(allocation, instance, {**own, "rancher-ha:stack-id": f"{STACK}/0badc0de"}), "Deny"),
        ("onto an instance tagged with the stack name only", _associate(allocation, instance, {"rancher-ha:stack": STACK, "rancher-ha:role": "nginx"}), "Deny"),
        ("onto an untagged instance", _associate(allocation, instance, {}), "Deny"),
        ("disassociate", [Request("ec2:DisassociateAddress", eip(allocation).resource)], "Deny"),
        ("release", [Request("ec2:ReleaseAddress", eip(allocation).resource)], "Deny"),
    ]


def test_association_statements_allow_exactly_the_stack_address_onto_its_nginx(stack, nginx_policy):
    """Both the function and the policy the program produced, against the hand-written table."""
    from components.nginx_lb import association_statements

    (address,) = [r for r in stack.of_type("aws:ec2/eip:Eip") if r.name == "nginx-lb-address"]
    allocation = address.outputs["allocationId"]
    (stack_id,) = {t["value"] for t in stack.of_type("aws:autoscaling/group:Group")[0].inputs["tags"] if t["key"] == "rancher-ha:stack-id"}
    assert re.fullmatch(rf"{STACK}/[0-9a-f]{{8}}", stack_id), stack_id
    policies = {
        "produced": {"Statement": [s for s in nginx_policy["Statement"] if s.get("Sid") != "ReadOwnParameters"]},
        "function": {"Statement": association_statements("aws", REGION, ACCOUNT_ID, allocation, stack_id)},
    }
    for source, policy in policies.items():
        verdicts = {what: "Allow" if allowed([policy], requests) else "Deny" for what, requests, _ in _association_cases(allocation, stack_id)}
        assert verdicts == {what: expected for what, _, expected in _association_cases(allocation, stack_id)}, source


# -- two deployments with one stack name (another team's fork, one account and region) -----
@pytest.fixture(scope="module")
def other_team(stack):
    """The same project and stack name, deployed from another state (another fork or team)."""
    return run({**RKE2, **NGINX_L7, "rancher-ha:etcdSnapshotS3": True}, deployment="team-b")


def test_two_deployments_of_one_stack_name_share_no_parameter(stack, other_team):
    ours, theirs = _created_parameters(stack), _created_parameters(other_team)
    assert ours and theirs
    # SSM names are unique per account and region: a shared one is ParameterAlreadyExists.
    assert ours & theirs == set(), sorted(ours & theirs)


def test_a_node_cannot_read_the_other_deployments_parameters(stack, other_team, node_policy, nginx_policy):
    for policy, other_policy in ((node_policy, _policy(other_team, "rancher-server-policy")),
                                 (nginx_policy, _policy(other_team, "nginx-lb-instance-policy"))):
        for name in sorted(_created_parameters(other_team)):
            assert evaluate([policy], Request("ssm:GetParameter", _parameter_arn(name))) == "ImplicitDeny", name
        for name in sorted(_created_parameters(stack)):
            assert evaluate([other_policy], Request("ssm:GetParameter", _parameter_arn(name))) == "ImplicitDeny", name


def _instance_tags(result) -> dict[str, dict[str, str]]:
    """Instance id -> the tags EC2 puts on it: the servers' own, and the NGINX group's propagated ones."""
    found = {r.outputs["id"]: dict(r.inputs["tags"]) for r in result.of_type("aws:ec2/instance:Instance")}
    for group in result.of_type("aws:autoscaling/group:Group"):
        found["i-0nginx" + group.name[-8:]] = {t["key"]: t["value"] for t in group.inputs["tags"] if t.get("propagateAtLaunch")}
    return found


def test_nginx_moves_the_address_only_onto_its_own_nginx_instance(stack, other_team, nginx_policy):
    (address,) = [r for r in stack.of_type("aws:ec2/eip:Eip") if r.name == "nginx-lb-address"]
    allocation = address.outputs["allocationId"]
    ours = _instance_tags(stack)
    servers = {i: t for i, t in ours.items() if not i.startswith("i-0nginx")}
    (nginx_id,) = [i for i in ours if i.startswith("i-0nginx")]
    assert len(servers) == 3
    assert allowed([nginx_policy], _associate(allocation, nginx_id, ours[nginx_id]))
    # A server of this very stack carries the stack's tags too: the address must not land there.
    for server, server_tags in servers.items():
        assert not allowed([nginx_policy], _associate(allocation, server, server_tags)), (server, server_tags)
    # Nor on any instance of the other deployment of the same stack name, its NGINX included.
    for instance, instance_tags in _instance_tags(other_team).items():
        assert not allowed([nginx_policy], _associate(allocation, instance + "b", instance_tags)), (instance, instance_tags)


# -- Session Manager: the SSM Agent's calls ------------------------------------------------
# The agent (snap amazon-ssm-agent on Canonical's Ubuntu AMIs) registers and keeps the
# instance online with ssm:UpdateInstanceInformation, and for a session opens its control
# and data channels on the ssmmessages endpoint (AWS, "Reference: ec2messages, ssmmessages,
# and other API operations"). ssmmessages names no resource type, so the request's
# resource is '*'; EC2 role credentials carry ec2:SourceInstanceARN.
SESSION_CALLS = ("ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                 "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel")


def _from_instance(action: str, resource: str = "*", account: str = ACCOUNT_ID, region: str = REGION) -> Request:
    return Request(action, resource, {"ec2:SourceInstanceARN": f"arn:aws:ec2:{region}:{account}:instance/i-0123456789abcdef0"})


@pytest.mark.parametrize("role", ["rancher-server-policy", "nginx-lb-instance-policy"])
def test_every_node_may_open_a_session_manager_channel_and_nothing_broader(stack, role):
    policy = _policy(stack, role)
    assert {a: evaluate([policy], _from_instance(a)) for a in SESSION_CALLS} == {a: "Allow" for a in SESSION_CALLS}
    broader = {
        "Run Command": _from_instance("ec2messages:GetMessages"),
        "Run Command reply": _from_instance("ec2messages:SendReply"),
        "start a session elsewhere": _from_instance("ssm:StartSession", f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/i-0ffffffffffffffff"),
        "send a command": _from_instance("ssm:SendCommand", f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript"),
        "read documents": _from_instance("ssm:GetDocument", f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:document/x"),
        "inventory": _from_instance("ssm:PutInventory", f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/i-0123456789abcdef0"),
        "any parameter (ManagedInstanceCore)": _from_instance("ssm:GetParameter", _parameter_arn("/rancher-ha/prod/node/token")),
        "the credentials used off the instance": Request("ssmmessages:OpenControlChannel", "*"),
        "from another account's instance": _from_instance("ssmmessages:OpenControlChannel", account="210987654321"),
        "from another region's instance": _from_instance("ssmmessages:OpenDataChannel", region="us-east-1"),
    }
    assert {what: evaluate([policy], r) for what, r in broader.items()} == {what: "ImplicitDeny" for what in broader}


def test_session_manager_off_grants_none_of_it():
    result = run({"rancher-ha:sessionManager": False})
    policy = _policy(result, "rancher-server-policy")
    assert {a: evaluate([policy], _from_instance(a)) for a in SESSION_CALLS} == {a: "ImplicitDeny" for a in SESSION_CALLS}


# -- the snapshot bucket: who may read the snapshots (they hold every secret of the cluster) --
NODE_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/rancher-server-role"  # the mocks' ARN of the node role
DEPLOYER = f"arn:aws:iam::{ACCOUNT_ID}:user/offline"  # the mocks' get_caller_identity
AUDITOR = f"arn:aws:iam::{ACCOUNT_ID}:role/auditor"
# What the managed ReadOnlyAccess / an administrator's policy grant in the account.
READ_ONLY_ACCESS = {"Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "kms:Describe*", "kms:Get*", "kms:List*"], "Resource": "*"}]}
ADMINISTRATOR = {"Statement": [{"Effect": "Allow", "Action": ["s3:*", "kms:*"], "Resource": "*"}]}


def _resource_policy(result, type_token: str, field_name: str) -> dict | None:
    found = [json.loads(r.inputs[field_name]) for r in result.of_type(type_token)]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.fixture(scope="module")
def bucket_policy(stack):
    return _resource_policy(stack, "aws:s3/bucketPolicy:BucketPolicy", "policy")


@pytest.fixture(scope="module")
def key_policy(stack):
    (key,) = stack.of_type("aws:kms/key:Key")
    return json.loads(key.inputs["policy"])


def _by(principal: str, request: Request, tls: bool = True) -> Request:
    return Request(request.action, request.resource,
                   {**request.context, "aws:PrincipalArn": principal, "aws:SecureTransport": "true" if tls else "false"})


def _via_s3(action: str, principal: str, region: str = REGION) -> Request:
    return Request(action, f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/etcd-snapshots-key",
                   {"aws:PrincipalArn": principal, "kms:ViaService": f"s3.{region}.amazonaws.com"})


def test_a_read_only_principal_of_the_account_cannot_read_a_snapshot(bucket, bucket_policy):
    snapshot = snapshot_client_requests(bucket)["GetObject snapshot"]
    for principal, policy in ((AUDITOR, READ_ONLY_ACCESS), (AUDITOR, ADMINISTRATOR), (DEPLOYER, ADMINISTRATOR)):
        assert evaluate_with_resource_policy([policy], bucket_policy, _by(principal, snapshot)) == "Deny", principal


def test_no_request_without_tls_is_served_not_even_the_nodes(node_policy, bucket, bucket_policy):
    verdicts = {what: evaluate_with_resource_policy([node_policy], bucket_policy, _by(NODE_ROLE, r, tls=False))
                for what, r in snapshot_client_requests(bucket).items()}
    assert verdicts == {what: "Deny" for what in verdicts}


def test_the_nodes_read_and_write_their_folder_over_tls_with_the_key(node_policy, bucket, bucket_policy, key_policy):
    verdicts = {what: evaluate_with_resource_policy([node_policy], bucket_policy, _by(NODE_ROLE, r))
                for what, r in snapshot_client_requests(bucket).items()}
    assert verdicts == {what: "Allow" for what in verdicts}
    # SSE-KMS: S3 asks KMS for a data key on PutObject and to decrypt it on GetObject.
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert evaluate_with_resource_policy([node_policy], key_policy, _via_s3(action, NODE_ROLE), key_policy=True) == "Allow"
        # ...only through S3 in the stack's region, not with the key directly.
        direct = Request(action, f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/etcd-snapshots-key", {"aws:PrincipalArn": NODE_ROLE})
        assert evaluate_with_resource_policy([node_policy], key_policy, direct, key_policy=True) == "ImplicitDeny"
        assert evaluate_with_resource_policy([node_policy], key_policy, _via_s3(action, NODE_ROLE, "us-east-1"), key_policy=True) == "ImplicitDeny"


def test_no_principal_outside_the_key_policy_can_decrypt(key_policy):
    for principal, policy in ((AUDITOR, ADMINISTRATOR), (DEPLOYER, ADMINISTRATOR), (AUDITOR, READ_ONLY_ACCESS)):
        for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:ReEncryptFrom"):
            assert evaluate_with_resource_policy([policy], key_policy, _via_s3(action, principal), key_policy=True) == "ImplicitDeny", (principal, action)
    # The account can still administer it (rotation, policy, deletion): through IAM only.
    admin = Request("kms:PutKeyPolicy", "arn:aws:kms:eu-west-1:123456789012:key/k", {"aws:PrincipalArn": DEPLOYER})
    assert evaluate_with_resource_policy([ADMINISTRATOR], key_policy, admin, key_policy=True) == "Allow"
    assert evaluate_with_resource_policy([READ_ONLY_ACCESS], key_policy, admin, key_policy=True) == "ImplicitDeny"


def test_the_deployer_keeps_managing_and_emptying_the_bucket_but_reads_nothing(bucket, bucket_policy):
    arn = f"arn:aws:s3:::{bucket}"
    manage = [Request("s3:PutBucketPolicy", arn), Request("s3:GetBucketPolicy", arn), Request("s3:PutBucketVersioning", arn),
              Request("s3:ListBucketVersions", arn), Request("s3:DeleteObjectVersion", f"{arn}/rancher-ha/dev/etcd-snapshot-x"),
              Request("s3:DeleteBucket", arn)]
    assert {r.action: evaluate_with_resource_policy([ADMINISTRATOR], bucket_policy, _by(DEPLOYER, r)) for r in manage} == {
        r.action: "Allow" for r in manage}
    # Another administrator of the account, not named in snapshotBucketAdmins, cannot.
    assert {r.action: evaluate_with_resource_policy([ADMINISTRATOR], bucket_policy, _by(AUDITOR, r)) for r in manage} == {
        r.action: "Deny" for r in manage}


def test_snapshot_bucket_admins_and_an_assumed_role_deployer_are_recognised():
    from components.snapshot_bucket import bucket_policy as policy_of, principal_arn_patterns

    patterns = principal_arn_patterns(f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/ci-deploy/github-1234")
    policy = policy_of("arn:aws:s3:::b", NODE_ROLE, [*patterns, f"arn:aws:iam::{ACCOUNT_ID}:role/breakglass"])
    put = Request("s3:PutBucketPolicy", "arn:aws:s3:::b")
    for principal in (f"arn:aws:iam::{ACCOUNT_ID}:role/ci-deploy", f"arn:aws:iam::{ACCOUNT_ID}:role/deploy/ci-deploy",
                      f"arn:aws:iam::{ACCOUNT_ID}:role/breakglass"):
        assert evaluate_with_resource_policy([ADMINISTRATOR], policy, _by(principal, put)) == "Allow", principal
    assert evaluate_with_resource_policy([ADMINISTRATOR], policy, _by(f"arn:aws:iam::{ACCOUNT_ID}:role/ci-deploy-2", put)) == "Deny"
    assert principal_arn_patterns(DEPLOYER) == [DEPLOYER]


# snapshotBucketAdmins set: the administrators are exactly those, whoever runs `pulumi up`
# (review finding 5: a policy derived from the caller flipped with every deployer and
# locked the previous one out).
CI_DEPLOY_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/github-ci/rancher-ha-deploy-dev"
BREAK_GLASS_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/break-glass"


def _bucket_policy_run_by(monkeypatch, caller_arn: str) -> tuple[dict, str]:
    from offline.mocks import StackMocks

    answer = StackMocks._answer

    def as_caller(self, args):
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": caller_arn, "id": ACCOUNT_ID, "userId": "x"}, []
        return answer(self, args)

    monkeypatch.setattr(StackMocks, "_answer", as_caller)
    result = run({**RKE2, "rancher-ha:etcdSnapshotS3": True, "rancher-ha:snapshotBucketAdmins": [CI_DEPLOY_ROLE, BREAK_GLASS_ROLE]})
    policy = _resource_policy(result, "aws:s3/bucketPolicy:BucketPolicy", "policy")
    assert policy is not None
    (bucket,) = result.of_type("aws:s3/bucket:Bucket")
    return policy, f"arn:aws:s3:::{bucket.outputs['bucket']}"


def test_listed_admins_are_never_locked_out_and_no_deployer_locks_itself_out(monkeypatch):
    """Review findings: the policy once admitted only the last deployer (deployers locked each
    other out), then only the list (a list missing the deployer locked it out for good)."""
    ci_caller = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/rancher-ha-deploy-dev/github-1"
    person_caller = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/someone-unlisted/alice"
    by_ci, arn = _bucket_policy_run_by(monkeypatch, ci_caller)
    by_person, _ = _bucket_policy_run_by(monkeypatch, person_caller)
    requests = (Request("s3:PutBucketPolicy", arn), Request("s3:GetBucketLocation", arn), Request("s3:ListBucketVersions", arn))
    for policy in (by_ci, by_person):
        for request in requests:
            for admin in (CI_DEPLOY_ROLE, BREAK_GLASS_ROLE):
                assert evaluate_with_resource_policy([ADMINISTRATOR], policy, _by(admin, request)) == "Allow", (admin, request)
    person_role = f"arn:aws:iam::{ACCOUNT_ID}:role/someone-unlisted"
    for request in requests:
        # The unlisted deployer keeps the bucket it just applied a policy to...
        assert evaluate_with_resource_policy([ADMINISTRATOR], by_person, _by(person_role, request)) == "Allow", request
        # ...and is not let in by anyone else's `up`.
        assert evaluate_with_resource_policy([ADMINISTRATOR], by_ci, _by(person_role, request)) == "Deny", request


def test_prod_stack_file_admits_the_ci_deploy_role_tools_ci_roles_creates():
    from offline.runner import run_stack
    from tools.ci_roles import ROLE_PATH, roles

    result = run_stack("prod")
    policy = _resource_policy(result, "aws:s3/bucketPolicy:BucketPolicy", "policy")
    (bucket,) = result.of_type("aws:s3/bucket:Bucket")
    put = Request("s3:PutBucketPolicy", f"arn:aws:s3:::{bucket.outputs['bucket']}")
    deploy_role = f"arn:aws:iam::{ACCOUNT_ID}:role{ROLE_PATH}rancher-ha-deploy-prod"
    assert "rancher-ha-deploy-prod" in roles()
    assert evaluate_with_resource_policy([ADMINISTRATOR], policy, _by(deploy_role, put)) == "Allow"
    assert evaluate_with_resource_policy([ADMINISTRATOR], policy, _by(f"arn:aws:iam::{ACCOUNT_ID}:role{ROLE_PATH}rancher-ha-deploy-dev", put)) == "Deny"
    # Whoever runs this `up` keeps the bucket too: a list that misses it cannot lock it out.
    assert evaluate_with_resource_policy([ADMINISTRATOR], policy, _by(DEPLOYER, put)) == "Allow"


# -- a move to a new stack: the new stack's backup user reads the old stack's backup file ---
# Rancher's "Migrating Rancher to a New Cluster", as docs/disaster-recovery.md runs it: the
# old stack ("blue") admits the new stack's backup user by a pattern named before that user
# exists (rancherBackupReaders), the new stack ("green") restores from the old bucket.
OLD_STACK, NEW_STACK = "blue", "green"
MOVE_FILE = "rancher-ha-blue-5c0e1d2f-2026-12-07T06-00-00Z.tar.gz.enc"
MOVE_KEY = base64.b64encode(bytes(range(32))).decode()
BACKUPS_ON = {"rancher-ha:environment": "dev", "rancher-ha:rancherBackups": True}
NEW_STACK_USERS = f"arn:aws:iam::{ACCOUNT_ID}:user/rancher-ha/{NEW_STACK}/*"  # the pattern the runbook gives


@dataclass
class Move:
    bucket: str  # the old stack's bucket name
    folder: str  # its rancherBackupFolder output
    bucket_policy: dict
    key_policy: dict
    key_arn: str
    user_arn: str  # the new stack's backup user
    user_policy: dict  # ...and its own IAM policy

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    def restore_requests(self) -> dict[str, Request]:
        """What the operator's Restore sends (backup-restore-operator v11.0.0 cf5cd485 / v10.0.8
        1e4997ca: restore/download.go downloadFromS3 -> objectstore GetS3Client, whose
        SetS3Service calls minio BucketExists = HeadBucket; DownloadFromS3WithPrefix lists with
        the prefix `<folder>/<file>`, then GetObject (HEAD included) of that key)."""
        key = f"{self.folder}/{MOVE_FILE}"
        return {
            "HeadBucket (BucketExists)": Request("s3:ListBucket", self.bucket_arn),
            "ListObjects (prefix folder/file)": Request("s3:ListBucket", self.bucket_arn, {"s3:prefix": key}),
            "GetObject": Request("s3:GetObject", f"{self.bucket_arn}/{key}"),
        }

    def decrypt(self, principal: str, via: str | None = f"s3.{REGION}.amazonaws.com", context: str | None = None) -> Request:
        """S3's kms:Decrypt of the object's (bucket) key on the caller's behalf: SSE-KMS with a
        bucket key has the bucket's ARN as encryption context (AWS, "Reducing the cost of
        SSE-KMS with Amazon S3 Bucket Keys")."""
        request_context = {"aws:PrincipalArn": principal, "kms:EncryptionContext:aws:s3:arn": context or self.bucket_arn}
        if via:
            request_context["kms:ViaService"] = via
        return Request("kms:Decrypt", self.key_arn, request_context)


def _move(readers: list[str] | None) -> Move:
    old = run({**RKE2, **BACKUPS_ON, "rancher-ha:etcdSnapshotS3": True,
               **({"rancher-ha:rancherBackupReaders": readers} if readers is not None else {})}, stack=OLD_STACK)
    bucket, folder = old.outputs["rancherBackupBucket"].value, old.outputs["rancherBackupFolder"].value
    new = run({**BACKUPS_ON, "rancher-ha:hostname": "rancher.green.example.com", "rancher-ha:restoreFromBackup": MOVE_FILE,
               "rancher-ha:restoreFromBucket": bucket, "rancher-ha:restoreFromFolder": folder,
               "rancher-ha:restoreEncryptionKey": MOVE_KEY}, stack=NEW_STACK)
    (user,) = new.of_type("aws:iam/user:User")
    (key,) = old.of_type("aws:kms/key:Key")
    bucket_policy = _resource_policy(old, "aws:s3/bucketPolicy:BucketPolicy", "policy")
    assert bucket_policy is not None
    return Move(bucket, folder, bucket_policy, json.loads(key.inputs["policy"]), key.outputs["arn"], user.outputs["arn"],
                _policy(new, "rancher-backups-user-policy"))


@pytest.fixture(scope="module")
def move() -> Move:
    return _move([NEW_STACK_USERS])


def test_the_new_stacks_backup_user_reads_and_decrypts_the_old_stacks_backup_file(move):
    """The defect: the old bucket denied every reader but its own writers, so the documented
    move failed at the Restore (the runbook told users to copy the file by hand)."""
    assert _wildcard(NEW_STACK_USERS, move.user_arn), move.user_arn
    verdicts = {what: evaluate_with_resource_policy([move.user_policy], move.bucket_policy, _by(move.user_arn, r))
                for what, r in move.restore_requests().items()}
    assert verdicts == {what: "Allow" for what in verdicts}
    assert evaluate_with_resource_policy([move.user_policy], move.key_policy, move.decrypt(move.user_arn), key_policy=True) == "Allow"


def _etcd_snapshot(move: Move) -> Request:
    return Request("s3:GetObject", f"{move.bucket_arn}/rancher-ha/{OLD_STACK}/etcd-snapshot-rancher-server-0-1764547200")


def test_a_backup_reader_cannot_read_an_etcd_snapshot_of_the_old_stack(move):
    """A snapshot holds every secret of the cluster: the readers' grant is the backup folder
    only, whatever the reader's own IAM policy allows (a pattern may name a powerful role)."""
    snapshot = _etcd_snapshot(move)
    requests = {
        "GetObject snapshot": snapshot,
        "GetObjectVersion snapshot": Request("s3:GetObjectVersion", snapshot.resource),
        "GetObject snapshot metadata": Request("s3:GetObject", f"{move.bucket_arn}/rancher-ha/{OLD_STACK}/.metadata/etcd-snapshot-x"),
        "GetObject beside the folder": Request("s3:GetObject", f"{move.bucket_arn}/{move.folder}-x/{MOVE_FILE}"),
        "GetObject the folder's parent": Request("s3:GetObject", f"{move.bucket_arn}/rancher-backups/{MOVE_FILE}"),
        "ListObjects of the snapshots": Request("s3:ListBucket", move.bucket_arn, {"s3:prefix": f"rancher-ha/{OLD_STACK}/"}),
    }
    for identity in (move.user_policy, ADMINISTRATOR):
        verdicts = {what: evaluate_with_resource_policy([identity], move.bucket_policy, _by(move.user_arn, r)) for what, r in requests.items()}
        assert verdicts == {what: "Deny" for what in requests}, identity is ADMINISTRATOR


def test_a_backup_reader_cannot_write_delete_or_manage_the_old_bucket(move):
    backup = f"{move.bucket_arn}/{move.folder}/{MOVE_FILE}"
    requests = [Request("s3:PutObject", backup), Request("s3:DeleteObject", backup), Request("s3:DeleteObjectVersion", backup),
                Request("s3:GetObjectAcl", backup), Request("s3:PutObjectAcl", backup), Request("s3:GetObjectVersion", backup),
                Request("s3:RestoreObject", backup), Request("s3:PutBucketPolicy", move.bucket_arn),
                Request("s3:DeleteBucket", move.bucket_arn), Request("s3:ListBucketVersions", move.bucket_arn),
                Request("s3:PutBucketVersioning", move.bucket_arn)]
    for identity in (move.user_policy, ADMINISTRATOR):
        verdicts = {r.action: evaluate_with_resource_policy([identity], move.bucket_policy, _by(move.user_arn, r)) for r in requests}
        assert verdicts == {r.action: "Deny" for r in requests}, identity is ADMINISTRATOR


def test_a_backup_reader_decrypts_only_through_s3_and_only_the_old_bucket(move):
    for identity in (move.user_policy, ADMINISTRATOR):
        def verdict(request: Request) -> str:
            return evaluate_with_resource_policy([identity], move.key_policy, request, key_policy=True)

        assert verdict(move.decrypt(move.user_arn)) == "Allow"
        assert verdict(move.decrypt(move.user_arn, via=None)) == "ImplicitDeny"  # with the key directly
        assert verdict(move.decrypt(move.user_arn, via="s3.us-east-1.amazonaws.com")) == "ImplicitDeny"
        assert verdict(move.decrypt(move.user_arn, context="arn:aws:s3:::another-bucket")) == "ImplicitDeny"
        for action in ("kms:GenerateDataKey", "kms:Encrypt", "kms:ReEncryptFrom", "kms:CreateGrant"):
            request = move.decrypt(move.user_arn)
            assert verdict(Request(action, request.resource, request.context)) == "ImplicitDeny", action


def test_a_principal_not_listed_still_cannot_read_the_backups(move):
    other_stack_user = move.user_arn.replace(f"/rancher-ha/{NEW_STACK}/", "/rancher-ha/other/")
    get = move.restore_requests()["GetObject"]
    for principal, identity in ((other_stack_user, move.user_policy), (AUDITOR, ADMINISTRATOR), (DEPLOYER, ADMINISTRATOR)):
        assert evaluate_with_resource_policy([identity], move.bucket_policy, _by(principal, get)) == "Deny", principal
        assert evaluate_with_resource_policy([identity], move.key_policy, move.decrypt(principal), key_policy=True) == "ImplicitDeny", principal
    # Without rancherBackupReaders (the default) nobody but the old stack's writers reads.
    closed = _move(None)
    assert evaluate_with_resource_policy([closed.user_policy], closed.bucket_policy, _by(closed.user_arn, get)) == "Deny"
    assert evaluate_with_resource_policy([closed.user_policy], closed.key_policy, closed.decrypt(closed.user_arn), key_policy=True) == "ImplicitDeny"


OTHER_ACCOUNT = "210987654321"


def test_a_move_to_another_account_reads_with_both_accounts_policies():
    """Cross-account: the old bucket's and key's policies must admit the other account (its
    root, narrowed to the readers' pattern), AND the new user's own policy must allow the
    read and kms:Decrypt of the old key through S3."""
    readers = f"arn:aws:iam::{OTHER_ACCOUNT}:user/rancher-ha/{NEW_STACK}/*"
    move = _move([readers])
    user = move.user_arn.replace(f":{ACCOUNT_ID}:", f":{OTHER_ACCOUNT}:")
    assert _wildcard(readers, user)

    def s3(identity: dict, request: Request, principal: str = user) -> str:
        return evaluate_with_resource_policy([identity], move.bucket_policy, _by(principal, request), same_account=False)

    def kms(identity: dict, principal: str = user) -> str:
        return evaluate_with_resource_policy([identity], move.key_policy, move.decrypt(principal), key_policy=True, same_account=False)

    assert {w: s3(move.user_policy, r) for w, r in move.restore_requests().items()} == {w: "Allow" for w in move.restore_requests()}
    assert kms(move.user_policy) == "Allow"
    # Both sides needed: the new user's policy without its restore statements reads nothing.
    bare = {"Statement": [s for s in move.user_policy["Statement"] if not s.get("Sid", "").startswith("RestoreSource")]}
    assert s3(bare, move.restore_requests()["GetObject"]) == "ImplicitDeny" and kms(bare) == "ImplicitDeny"
    assert s3(ADMINISTRATOR, _etcd_snapshot(move)) == "Deny"
    # Under iamPermissionsBoundaryArn (tools/ci_roles.py's workload boundary, in the new
    # stack's account) the calls must be inside the boundary too: it bounds, never grants.
    from tools.ci_roles import Site, workload_boundary

    boundary = workload_boundary(Site(account=OTHER_ACCOUNT))
    for request in [*move.restore_requests().values(), move.decrypt(user)]:
        assert evaluate([boundary], request) == "Allow", request.action
    # Another principal of that account, not matching the pattern, is not admitted.
    stranger = f"arn:aws:iam::{OTHER_ACCOUNT}:role/admin"
    assert s3(ADMINISTRATOR, move.restore_requests()["GetObject"], stranger) == "Deny"
    assert kms(ADMINISTRATOR, stranger) == "ImplicitDeny"


def test_a_reader_pattern_that_also_matches_an_administrator_locks_nobody_out():
    """A broad pattern (role/*) may match an administrator of the bucket: it keeps managing
    the bucket, and gains the backup files only, never a snapshot nor a write."""
    from components.snapshot_bucket import BackupReaders, bucket_policy as policy_of

    bucket, folder = "arn:aws:s3:::b", f"rancher-backups/{OLD_STACK}"
    policy = policy_of(bucket, [NODE_ROLE], [BREAK_GLASS_ROLE], BackupReaders([f"arn:aws:iam::{ACCOUNT_ID}:role/*"], folder))

    def verdict(request: Request, principal: str = BREAK_GLASS_ROLE) -> str:
        return evaluate_with_resource_policy([ADMINISTRATOR], policy, _by(principal, request))

    backup = f"{bucket}/{folder}/{MOVE_FILE}"
    assert {a: verdict(Request(a, bucket)) for a in ("s3:PutBucketPolicy", "s3:ListBucketVersions")} == {
        "s3:PutBucketPolicy": "Allow", "s3:ListBucketVersions": "Allow"}
    assert verdict(Request("s3:DeleteObjectVersion", backup)) == "Allow"  # emptying the bucket
    assert verdict(Request("s3:GetObject", backup)) == "Allow"
    for request in (Request("s3:GetObject", f"{bucket}/rancher-ha/{OLD_STACK}/etcd-snapshot-x"),
                    Request("s3:PutObject", backup), Request("s3:GetObjectAcl", backup)):
        assert verdict(request) == "Deny", request.action
    # The nodes, which the pattern matches too, keep every call of the snapshot client.
    requests = snapshot_client_requests("b", folder=f"rancher-ha/{OLD_STACK}")
    assert {w: verdict(r, NODE_ROLE) for w, r in requests.items()} == {w: "Allow" for w in requests}
