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

from conftest import NGINX_L7, RKE2, run
from offline.mocks import ACCOUNT_ID

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST_RELEASE = "f024eb3"
REGION = "eu-west-1"
STACK = "dev"
FOLDER = f"rancher-ha/{STACK}"  # EtcdSnapshots.s3_folder in app.py


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
}


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]], request: Request) -> bool:
    """Every operator and every key must hold (AND); any of a key's values may (OR). A key
    absent from the request context does not match a positive operator."""
    for operator, keys in conditions.items():
        if operator not in CONDITION_OPERATORS:
            raise NotImplementedError(f"condition operator {operator}")
        test = CONDITION_OPERATORS[operator]
        for key, patterns in keys.items():
            value = request.value(key)
            if value is None:
                return False
            if not any(test(p, value) for p in _as_list(patterns)):
                return False
    return True


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal", "Principal"):
        if unsupported in statement:
            raise NotImplementedError(unsupported)
    if not any(_wildcard(a, request.action, case_sensitive=False) for a in _as_list(statement["Action"])):
        return False
    if not any(_wildcard(r, request.resource) for r in _as_list(statement["Resource"])):
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
    node = {n for n in created if n.startswith(f"/rancher-ha/{STACK}/node/")}
    nginx = {n for n in created if n.startswith(f"/rancher-ha/{STACK}/nginx/")}
    assert {"/rancher-ha/dev/node/token", "/rancher-ha/dev/node/tls/server-ca.key", "/rancher-ha/dev/node/cluster-initialized"} <= node
    assert nginx and node | nginx == created
    for action in ("ssm:GetParameter", "ssm:GetParameters"):
        assert {n: evaluate([node_policy], Request(action, _parameter_arn(n))) for n in node} == {n: "Allow" for n in node}
        assert {n: evaluate([node_policy], Request(action, _parameter_arn(n))) for n in nginx} == {n: "ImplicitDeny" for n in nginx}
    # Another stack's node path, and parameters of this path in another region, are denied.
    assert evaluate([node_policy], Request("ssm:GetParameter", _parameter_arn("/rancher-ha/prod/node/token"))) == "ImplicitDeny"
    other_region = f"arn:aws:ssm:us-east-1:{ACCOUNT_ID}:parameter/rancher-ha/dev/node/token"
    assert evaluate([node_policy], Request("ssm:GetParameter", other_region)) == "ImplicitDeny"
    assert evaluate([node_policy], Request("ssm:PutParameter", _parameter_arn("/rancher-ha/dev/node/token"))) == "ImplicitDeny"


def test_every_parameter_a_server_boot_script_reads_is_created_and_allowed(stack, node_policy):
    from helpers import cloud_config, server_instances

    created = _created_parameters(stack)
    read = set()
    for server in server_instances(stack):
        names = _parameters_read(_script_text(cloud_config(server)))
        assert names, server.name
        read |= names
    assert "/rancher-ha/dev/node/tls/service.key" in read and "/rancher-ha/dev/node/token" in read
    assert read <= created, read - created
    assert {n: evaluate([node_policy], Request("ssm:GetParameter", _parameter_arn(n))) for n in read} == {n: "Allow" for n in read}


def test_the_k3s_datastore_endpoint_is_read_from_the_node_path():
    k3s = run()
    policy = _policy(k3s, "rancher-server-policy")
    from helpers import cloud_config, server_instances

    read = set().union(*(_parameters_read(_script_text(cloud_config(s))) for s in server_instances(k3s)))
    assert "/rancher-ha/dev/node/datastore-endpoint" in read
    assert read <= _created_parameters(k3s), read - _created_parameters(k3s)
    assert all(evaluate([policy], Request("ssm:GetParameter", _parameter_arn(n))) == "Allow" for n in read)


def test_nginx_role_reads_only_its_own_parameters(stack, nginx_policy):
    (template,) = stack.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    script = _script_text(yaml.safe_load(base64.b64decode(template.inputs["userData"]).decode()))
    read = _parameters_read(script)
    assert read == {"/rancher-ha/dev/nginx/nginx.conf", "/rancher-ha/dev/nginx/tls.crt", "/rancher-ha/dev/nginx/tls.key"}
    created = _created_parameters(stack)
    assert read <= created
    for name in created:
        verdict = evaluate([nginx_policy], Request("ssm:GetParameter", _parameter_arn(name)))
        assert verdict == ("Allow" if name.startswith("/rancher-ha/dev/nginx/") else "ImplicitDeny"), name


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


def test_association_statements_match_the_policy_the_program_produces(stack, nginx_policy):
    from components.nginx_lb import association_statements

    (address,) = [r for r in stack.of_type("aws:ec2/eip:Eip") if r.name == "nginx-lb-address"]
    expected = association_statements("aws", REGION, ACCOUNT_ID, address.outputs["allocationId"])
    for statement in expected:  # stack_name() is the stack of the last run: pin it to dev
        condition = statement.get("Condition", {}).get("StringEquals", {})
        for key in condition:
            condition[key] = STACK
    produced = [s for s in nginx_policy["Statement"] if s.get("Sid") != "ReadOwnParameters"]
    assert produced == json.loads(json.dumps(expected, sort_keys=True))
