"""Extract, per resource type, the inputs whose change forces replacement.

Reads Terraform provider Go source (never vendors it) and writes
``reference/upstream/force-new/{aws,tls,random}.json`` for the offline planner
(``offline/force_new.py``).

What is extracted
-----------------
* SDKv2 resources: every schema attribute with ``ForceNew: true`` (nested blocks
  followed through ``Elem: &schema.Resource{...}`` and same-package helper
  functions that return a schema / resource / schema map).
* terraform-plugin-framework resources: every attribute or block whose
  ``PlanModifiers`` contain ``...planmodifier.RequiresReplace()``.  Custom
  replacing modifiers listed in ``EFFECTIVELY_UNCONDITIONAL`` (replace on every
  real change) also go to ``force_new``, with a note; other
  ``RequiresReplaceIf...`` modifiers become *conditional* entries.
* CustomizeDiff / ModifyPlan conditional replacements (``customdiff.ForceNewIf``,
  ``ForceNewIfChange``, ``diff.ForceNew(...)``, ``RequiresReplace = ...``) are
  recorded as ``conditional`` entries; the ``when`` text is written by hand in
  ``CONDITION_NOTES`` below from reading the source (the extractor fails loudly
  if a note refers to a path the source no longer force-news, or a found path
  has no note).
* aws_instance only: ``stop_start`` - properties whose in-place update stops
  and starts the instance, from the ``if d.HasChange(...)`` blocks of
  ``resourceInstanceUpdate`` that call ``stopInstance`` or
  ``modifyInstanceAttributeWithStopStart``.
* AWS provider v6 injects a top-level ``region`` argument into every regional
  resource and force-news it in an interceptor
  (``internal/provider/sdkv2/func.forceNewIfRegionChanges``,
  ``internal/provider/framework/func.resourceForceNewIfRegionChanges``), except
  when it flips between unset and the provider's region: recorded as a
  conditional entry for every type whose SDK args have ``region``.

Terraform paths are translated to Pulumi wire paths by walking the installed
Python SDK's input types (``pulumi._types.input_type_py_to_pulumi_names``), so
every emitted path exists in the installed SDK.  Lists/sets that are not
flattened (MaxItems != 1) are written ``name[*].child``; MaxItems-1 blocks
that Pulumi flattens are written ``name.child``.  TF paths that could not be
mapped are listed under ``unmapped`` per resource.

Sources (fetch with the workspace ``fetch`` tool; bare git dirs):
* github:lonegunmanb/terraform-provider-aws-index  ref v6.58.0
  (terraform-provider-aws v6.58.0 split one Go function per file)
* github:hashicorp/terraform-provider-tls  HEAD d72d90e1 (v4.2.1-23); pulumi-tls
  HEAD (5.6.x) pins 609226f53114 which is not in the snapshot (see README)
* github:hashicorp/terraform-provider-random  tag v3.9.0 = f8d869dc98d9, the
  exact commit pulumi-random pins in provider/go.mod

Re-run (from /work/main)::

    .venv/bin/python tools/extract_force_new.py \
        [--mirror /work/.mirror] [--aws-ref v6.58.0] [--tls-ref HEAD] \
        [--random-ref v3.9.0]

Needs the mirrors above and the installed pulumi-aws / pulumi-tls /
pulumi-random SDKs in the virtualenv.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "reference" / "upstream" / "force-new"

AWS_REPO = "lonegunmanb/terraform-provider-aws-index"
TLS_REPO = "hashicorp/terraform-provider-tls"
RANDOM_REPO = "hashicorp/terraform-provider-random"

# Pulumi token -> (tf type, kind, locator)
#   kind "sdk": locator = (service dir, resource constructor func, update func or None)
#   kind "fw":  locator = (service dir, framework resource struct)
AWS_TYPES: dict[str, tuple[str, str, tuple]] = {
    "aws:ec2/instance:Instance": ("aws_instance", "sdk", ("ec2", "resourceInstance", "resourceInstanceUpdate")),
    "aws:ec2/securityGroup:SecurityGroup": ("aws_security_group", "sdk", ("ec2", "resourceSecurityGroup", None)),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (
        "aws_vpc_security_group_ingress_rule", "fw", ("ec2", "securityGroupRuleResource")),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (
        "aws_vpc_security_group_egress_rule", "fw", ("ec2", "securityGroupRuleResource")),
    "aws:ec2/vpc:Vpc": ("aws_vpc", "sdk", ("ec2", "resourceVPC", None)),
    "aws:ec2/subnet:Subnet": ("aws_subnet", "sdk", ("ec2", "resourceSubnet", None)),
    "aws:ec2/internetGateway:InternetGateway": ("aws_internet_gateway", "sdk", ("ec2", "resourceInternetGateway", None)),
    "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment": (
        "aws_internet_gateway_attachment", "sdk", ("ec2", "resourceInternetGatewayAttachment", None)),
    "aws:ec2/natGateway:NatGateway": ("aws_nat_gateway", "sdk", ("ec2", "resourceNATGateway", None)),
    "aws:ec2/eip:Eip": ("aws_eip", "sdk", ("ec2", "resourceEIP", None)),
    "aws:ec2/eipAssociation:EipAssociation": ("aws_eip_association", "sdk", ("ec2", "resourceEIPAssociation", None)),
    "aws:ec2/networkInterface:NetworkInterface": (
        "aws_network_interface", "sdk", ("ec2", "resourceNetworkInterface", None)),
    "aws:ec2/routeTable:RouteTable": ("aws_route_table", "sdk", ("ec2", "resourceRouteTable", None)),
    "aws:ec2/route:Route": ("aws_route", "sdk", ("ec2", "resourceRoute", None)),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": (
        "aws_route_table_association", "sdk", ("ec2", "resourceRouteTableAssociation", None)),
    "aws:ec2/launchTemplate:LaunchTemplate": ("aws_launch_template", "sdk", ("ec2", "resourceLaunchTemplate", None)),
    "aws:autoscaling/group:Group": ("aws_autoscaling_group", "sdk", ("autoscaling", "resourceGroup", None)),
    "aws:lb/loadBalancer:LoadBalancer": ("aws_lb", "sdk", ("elbv2", "resourceLoadBalancer", None)),
    "aws:lb/targetGroup:TargetGroup": ("aws_lb_target_group", "sdk", ("elbv2", "resourceTargetGroup", None)),
    "aws:lb/listener:Listener": ("aws_lb_listener", "sdk", ("elbv2", "resourceListener", None)),
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": (
        "aws_lb_target_group_attachment", "sdk", ("elbv2", "resourceTargetGroupAttachment", None)),
    "aws:route53/record:Record": ("aws_route53_record", "sdk", ("route53", "resourceRecord", None)),
    "aws:route53/zone:Zone": ("aws_route53_zone", "sdk", ("route53", "resourceZone", None)),
    "aws:route53/zoneAssociation:ZoneAssociation": (
        "aws_route53_zone_association", "sdk", ("route53", "resourceZoneAssociation", None)),
    "aws:ssm/parameter:Parameter": ("aws_ssm_parameter", "sdk", ("ssm", "resourceParameter", None)),
    "aws:iam/role:Role": ("aws_iam_role", "sdk", ("iam", "resourceRole", None)),
    "aws:iam/rolePolicy:RolePolicy": ("aws_iam_role_policy", "sdk", ("iam", "resourceRolePolicy", None)),
    "aws:iam/user:User": ("aws_iam_user", "sdk", ("iam", "resourceUser", None)),
    "aws:iam/userPolicy:UserPolicy": ("aws_iam_user_policy", "sdk", ("iam", "resourceUserPolicy", None)),
    "aws:iam/accessKey:AccessKey": ("aws_iam_access_key", "sdk", ("iam", "resourceAccessKey", None)),
    "aws:iam/instanceProfile:InstanceProfile": (
        "aws_iam_instance_profile", "sdk", ("iam", "resourceInstanceProfile", None)),
    "aws:rds/instance:Instance": ("aws_db_instance", "sdk", ("rds", "resourceInstance", None)),
    "aws:rds/subnetGroup:SubnetGroup": ("aws_db_subnet_group", "sdk", ("rds", "resourceSubnetGroup", None)),
    "aws:rds/parameterGroup:ParameterGroup": ("aws_db_parameter_group", "sdk", ("rds", "resourceParameterGroup", None)),
    "aws:s3/bucket:Bucket": ("aws_s3_bucket", "sdk", ("s3", "resourceBucket", None)),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "aws_s3_bucket_public_access_block", "sdk", ("s3", "resourceBucketPublicAccessBlock", None)),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "aws_s3_bucket_server_side_encryption_configuration", "sdk",
        ("s3", "resourceBucketServerSideEncryptionConfiguration", None)),
    "aws:s3/bucketVersioning:BucketVersioning": (
        "aws_s3_bucket_versioning", "sdk", ("s3", "resourceBucketVersioning", None)),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        "aws_s3_bucket_lifecycle_configuration", "fw", ("s3", "bucketLifecycleConfigurationResource")),
}

# Pulumi token -> (tf type, source file, framework resource struct)
TLS_TYPES = {
    "tls:index/privateKey:PrivateKey": ("tls_private_key", "internal/provider/resource_private_key.go", "privateKeyResource"),
    "tls:index/selfSignedCert:SelfSignedCert": (
        "tls_self_signed_cert", "internal/provider/resource_self_signed_cert.go", "selfSignedCertResource"),
    "tls:index/certRequest:CertRequest": ("tls_cert_request", "internal/provider/resource_cert_request.go", "certRequestResource"),
    "tls:index/locallySignedCert:LocallySignedCert": (
        "tls_locally_signed_cert", "internal/provider/resource_locally_signed_cert.go", "locallySignedCertResource"),
}
RANDOM_TYPES = {
    "random:index/randomPassword:RandomPassword": (
        "random_password", "internal/provider/resource_password.go", "passwordResource"),
    "random:index/randomId:RandomId": ("random_id", "internal/provider/resource_id.go", "idResource"),
    "random:index/randomBytes:RandomBytes": ("random_bytes", "internal/provider/resource_bytes.go", "bytesResource"),
}

# Hand-written notes for conditional replacements found in the source.  Keys are
# (tf type, tf path).  The extractor checks both directions against the source.
CONDITION_NOTES: dict[tuple[str, str], str] = {
    ("aws_instance", "user_data"): (
        "customdiff.ForceNewIf: replaced when user_data_replace_on_change is true; otherwise "
        "an in-place update that stops and starts the instance"),
    ("aws_instance", "user_data_base64"): (
        "customdiff.ForceNewIf: replaced when user_data_replace_on_change is true; otherwise "
        "an in-place update that stops and starts the instance"),
    ("aws_instance", "enable_primary_ipv6"): (
        "customdiff.ForceNewIf: replaced when changed from true to false (enabling is in place)"),
    ("aws_instance", "instance_type"): (
        "customdiff.ForceNewIf: replaced when the old and new instance types share no supported "
        "CPU architecture (e.g. x86_64 -> arm64); otherwise stop/start in place"),
    ("aws_instance", "ipv6_addresses"): (
        "customdiff.ForceNewIf: replaced on an explicit change of ipv6_addresses unless "
        "ipv6_address_count changes at the same time"),
    ("aws_instance", "launch_template.version"): (
        "CustomizeDiff diff.ForceNew: replaced when launch_template.version ($Default/$Latest or a "
        "number) resolves to a different template version than the one the instance runs"),
    ("aws_vpc", "cidr_block"): (
        "resourceVPCCustomizeDiff: replaced on any change of cidr_block on an existing VPC, "
        "unless ipv4_netmask_length is set (IPAM-derived: the change is ignored)"),
    ("aws_vpc", "instance_tenancy"): (
        "resourceVPCCustomizeDiff: replaced on any change except dedicated -> default (in place)"),
    ("aws_subnet", "ipv6_cidr_block"): (
        "customdiff.ForceNewIf: replaced when ipv6_cidr_block changes on a subnet whose prior "
        "assign_ipv6_address_on_creation was true; otherwise in place"),
    ("aws_nat_gateway", "secondary_private_ip_address_count"): (
        "resourceNATGatewayCustomizeDiff: replaced when the configured count changes on an "
        "existing private NAT gateway (configured value known and non-null)"),
    ("aws_network_interface", "enable_primary_ipv6"): (
        "customdiff.ForceNewIf: replaced when changed from true to false"),
    ("aws_network_interface", "private_ips"): (
        "customdiff.ForceNewIf: with private_ip_list_enabled false, replaced when the new set "
        "no longer contains the current primary private IP"),
    ("aws_network_interface", "private_ip_list"): (
        "customdiff.ForceNewIf: with private_ip_list_enabled true, replaced when the first "
        "element (the primary private IP) changes"),
    ("aws_lb", "subnets"): (
        "customizeDiffLoadBalancerNLB: network LB only - replaced unless the change only ADDS "
        "subnets (a removal or same-count swap replaces); application LBs update in place"),
    ("aws_lb", "subnet_mapping"): (
        "customizeDiffLoadBalancerNLB/ALB: network LB - replaced unless mappings are only added; "
        "application LB - replaced when an existing mapping changes (pure add/remove in place)"),
    ("aws_lb", "security_groups"): (
        "resourceLoadBalancerCustomizeDiff: network LB only - replaced when going from no security "
        "groups to some (an NLB created without SGs can never get them) or from some to none"),
    ("aws_lb", "secondary_ips_auto_assigned_per_subnet"): (
        "resourceLoadBalancerCustomizeDiff: network LB only - replaced when the value decreases"),
    ("aws_ssm_parameter", "tier"): (
        "customdiff.ForceNewIfChange: replaced when tier goes Advanced -> Standard; other tier "
        "changes are in place"),
    ("aws_s3_bucket_server_side_encryption_configuration", "expected_bucket_owner"): (
        "CustomizeDiff: replaced when expected_bucket_owner changes, except from unset to the "
        "caller's own account ID"),
    ("aws_s3_bucket_versioning", "expected_bucket_owner"): (
        "CustomizeDiff: replaced when expected_bucket_owner changes, except from unset to the "
        "caller's own account ID"),
    ("tls_self_signed_cert", "ready_for_renewal"): (
        "ModifyPlan (modifyPlanIfCertificateReadyForRenewal): replaced when the certificate is "
        "within early_renewal_hours of validity_end_time (or expired) at plan time"),
    ("tls_locally_signed_cert", "ready_for_renewal"): (
        "ModifyPlan (modifyPlanIfCertificateReadyForRenewal): replaced when the certificate is "
        "within early_renewal_hours of validity_end_time (or expired) at plan time"),
}

# Custom replacing plan modifiers that replace on every real change for state
# written by the provider versions in use: recorded in force_new with a note.
EFFECTIVELY_UNCONDITIONAL = {
    "requireReplaceIfStateContainsPEMString": (
        "tls common.go: RequiresReplaceIf the prior state value is a PEM block, which it "
        "always is for state written by terraform-provider-tls v4+ (older states held hashes)"),
    "RequiresReplaceIfValuesNotNull": (
        "random internal/planmodifiers/map: replaced when keepers change, except when the only "
        "difference is keys whose values are null"),
}
# Conditional plan modifiers: name (as recorded) -> when.
MODIFIER_NOTES = {
    "RequiresReplaceIf(RequiresReplaceUnlessEmptyStringToNull)": (
        "replaced on change, unless the change is between \"\" and null (unset)"),
}

REGION_NOTE = (
    "provider v6 interceptor forceNewIfRegionChanges: replaced when region changes, except "
    "when it changes between unset and the provider's configured region")


# --------------------------------------------------------------------------- git

class Repo:
    def __init__(self, gitdir: Path, ref: str):
        self.gitdir = gitdir
        self.ref = ref
        self.commit = self._git("rev-parse", f"{ref}^{{commit}}").strip()
        self._cache: dict[str, str | None] = {}

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(self.gitdir), *args],
                              check=True, capture_output=True, text=True).stdout

    def read(self, path: str) -> str | None:
        if path not in self._cache:
            try:
                self._cache[path] = self._git("show", f"{self.commit}:{path}")
            except subprocess.CalledProcessError:
                self._cache[path] = None
        return self._cache[path]

    def describe(self) -> str:
        try:
            return self._git("describe", "--tags", self.commit).strip()
        except subprocess.CalledProcessError:
            return ""

    def commit_date(self) -> str:
        return self._git("log", "-1", "--format=%cI", self.commit).strip()


# --------------------------------------------------------------------------- Go tokens

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*.*?\*/)
  | (?P<str>"(?:\\.|[^"\\])*")
  | (?P<raw>`[^`]*`)
  | (?P<rune>'(?:\\.|[^'\\])+')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<num>[0-9][0-9A-Za-z_.]*)
  | (?P<op>:=|\.\.\.|&&|\|\||==|!=|<=|>=|<-|[{}()\[\],:;.&*!<>=+\-/%|^])
""", re.S | re.X)


def tokenize(src: str) -> list[str]:
    out = []
    pos = 0
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if not m:
            out.append(src[pos])
            pos += 1
            continue
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "lcomment", "bcomment"):
            continue
        out.append(m.group())
    return out


_OPEN = {"{": "}", "(": ")", "[": "]"}


def match_close(toks: list[str], i: int) -> int:
    """Index of the bracket closing toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j]
        if t in _OPEN:
            depth += 1
        elif t in ("}", ")", "]"):
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced brackets")


def split_items(toks: list[str]) -> list[list[str]]:
    """Split the inside of a composite literal at top-level commas."""
    items, cur, depth = [], [], 0
    for t in toks:
        if t in _OPEN:
            depth += 1
        elif t in ("}", ")", "]"):
            depth -= 1
        if t == "," and depth == 0:
            if cur:
                items.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        items.append(cur)
    return items


def split_kv(item: list[str]) -> tuple[list[str], list[str]] | None:
    depth = 0
    for k, t in enumerate(item):
        if t in _OPEN:
            depth += 1
        elif t in ("}", ")", "]"):
            depth -= 1
        elif t == ":" and depth == 0:
            return item[:k], item[k + 1:]
    return None


def struct_fields(toks: list[str]) -> dict[str, list[str]]:
    """Fields of a composite literal given as tokens ``Type{...}`` or ``{...}``."""
    if "{" not in toks:
        return {}
    i = toks.index("{")
    j = match_close(toks, i)
    out = {}
    for item in split_items(toks[i + 1:j]):
        kv = split_kv(item)
        if kv and len(kv[0]) == 1:
            out[kv[0][0]] = kv[1]
    return out


def literal_body(toks: list[str]) -> list[str]:
    i = toks.index("{")
    return toks[i + 1:match_close(toks, i)]


# Initialisms the provider writes in capitals in names.Attr* constants
# (terraform-provider-aws names/caps.csv convention).  Longest first.
_CAPS = sorted("""ACL ACM AMI API ARN AZ CIDR CPU DB DNS EBS EC2 ECS EIP ENI FIFO HTTP HTTPS IAM ID IOPS
    IP IPAM JSON KMS LB MFA NAT OIDC RDS S3 SAML SNS SQS SSE SSH SSL SSM TLS TTL URI URL VPC""".split(),
               key=len, reverse=True)


def _split_caps(run: str) -> list[str] | None:
    if not run:
        return []
    for c in _CAPS:
        if run.startswith(c):
            rest = _split_caps(run[len(c):])
            if rest is not None:
                return [c] + rest
    return None


def attr_const_to_name(ident: str) -> str:
    """names.AttrVPCSecurityGroupIDs -> vpc_security_group_ids (the provider's
    generator derives the constant from the snake name; this inverts it).
    Every result that matters is checked against the installed Pulumi SDK."""
    s = ident.split(".", 1)[1][len("Attr"):]
    s = s.replace("IPv4", "_ipv4_").replace("IPv6", "_ipv6_").replace("CloudWatch", "_cloudwatch_")
    words: list[str] = []
    for part in re.findall(r"_[a-z0-9]+_|[A-Z0-9]+(?:s(?=[A-Z_]|$))?(?![a-z])|[A-Z0-9]*[A-Z][a-z0-9]*|[a-z0-9]+", s):
        if part.startswith("_"):
            words.append(part.strip("_"))
            continue
        plural = part.endswith("s") and part[:-1].isupper()
        run = part[:-1] if plural else part
        if run.isupper() or run.isdigit():
            pieces = _split_caps(run) or [run]
            if plural:
                pieces[-1] += "s"
            words.extend(pieces)
        else:
            # "IPAddress" style: leading capitals then a capitalised word
            m = re.match(r"^([A-Z0-9]+)([A-Z][a-z0-9]*)$", run)
            if m and _split_caps(m.group(1)):
                words.extend(_split_caps(m.group(1)) + [m.group(2)])
            else:
                words.append(run)
    return "_".join(w.lower() for w in words if w)


def key_name(key: list[str]) -> str | None:
    if len(key) != 1:
        return None
    k = key[0]
    if k.startswith('"'):
        return json.loads(k)
    if k.startswith("names.Attr"):
        return attr_const_to_name(k)
    return None


# --------------------------------------------------------------------------- schema model

class Attr:
    def __init__(self, name: str):
        self.name = name
        self.force_new = False
        self.conditional: list[str] = []   # modifier names for RequiresReplaceIf...
        self.input = False                 # Optional or Required
        self.max_one = False
        self.children: dict[str, "Attr"] = {}
        self.is_block = False
        self.notes: list[str] = []


class AwsSource:
    def __init__(self, repo: Repo):
        self.repo = repo
        self.used_files: set[str] = set()
        self.unresolved: list[str] = []

    service = ""

    def key(self, key: list[str]) -> str | None:
        name = key_name(key)
        if name is None and len(key) == 1 and re.match(r"^[a-z]\w*$", key[0]):
            # package-level string constant, e.g. routeDestinationCIDRBlock
            path = f"index/internal/service/{self.service}/var.{key[0]}.goindex"
            src = self.repo.read(path)
            if src:
                m = re.search(rf"\b{key[0]}\s*=\s*\"([^\"]+)\"", src)
                if m:
                    self.used_files.add(path)
                    return m.group(1)
        return name

    def func_tokens(self, service: str, name: str, kind: str = "func") -> list[str] | None:
        path = f"index/internal/service/{service}/{kind}.{name}.goindex"
        src = self.repo.read(path)
        if src is None:
            return None
        self.used_files.add(path)
        toks = tokenize(src)
        # drop package/import header: start at the func keyword
        if "func" in toks:
            toks = toks[toks.index("func"):]
        return toks

    # ---- SDKv2

    def return_value(self, toks: list[str]) -> list[str] | None:
        """Tokens of the expression after the first top-level-ish ``return``."""
        if "return" not in toks:
            return None
        i = toks.index("return") + 1
        j = i
        depth = 0
        while j < len(toks):
            t = toks[j]
            if t in _OPEN:
                depth += 1
            elif t in ("}", ")", "]"):
                if depth == 0:
                    break
                depth -= 1
                if depth == 0 and t == "}":
                    j += 1
                    break
            j += 1
        return toks[i:j]

    def resolve_call(self, service: str, val: list[str]) -> list[str] | None:
        """``helper()`` in the same package -> the expression it returns."""
        if len(val) == 1 and re.match(r"^[a-z]\w*$", val[0]):
            # package-level variable holding a *schema.Schema / *schema.Resource
            path = f"index/internal/service/{service}/var.{val[0]}.goindex"
            src = self.repo.read(path)
            if src is None:
                self.unresolved.append(f"{service}.{val[0]}")
                return None
            self.used_files.add(path)
            toks = tokenize(src)
            for k in range(len(toks) - 2):
                if toks[k] == val[0] and toks[k + 1] == "=":
                    rest = toks[k + 2:]
                    i = rest.index("{")
                    return rest[:match_close(rest, i) + 1]
            return None
        if len(val) >= 3 and val[1] == "(" and "." not in val[0]:
            toks = self.func_tokens(service, val[0])
            if toks is None:
                self.unresolved.append(f"{service}.{val[0]}")
                return None
            return self.return_value(toks)
        return None

    def parse_schema_map(self, service: str, toks: list[str]) -> dict[str, Attr]:
        out: dict[str, Attr] = {}
        for item in split_items(literal_body(toks)):
            kv = split_kv(item)
            if not kv:
                continue
            name = self.key(kv[0])
            if name is None:
                self.unresolved.append("key " + " ".join(kv[0]))
                continue
            out[name] = self.parse_schema(service, name, kv[1])
        return out

    def parse_schema(self, service: str, name: str, val: list[str]) -> Attr:
        a = Attr(name)
        if val and val[0] != "{" and val[0] != "&":
            resolved = self.resolve_call(service, val)
            if resolved is None:
                if not val[0].startswith("tftags."):
                    self.unresolved.append(f"value of {name}: {' '.join(val[:3])}")
                return a      # tftags.TagsSchema() and friends: never force-new
            val = resolved
        f = struct_fields(val)
        a.force_new = f.get("ForceNew") == ["true"]
        a.input = f.get("Optional") == ["true"] or f.get("Required") == ["true"]
        a.max_one = f.get("MaxItems") == ["1"]
        elem = f.get("Elem")
        if elem:
            if elem[0] != "&":
                elem = self.resolve_call(service, elem) or []
            if elem[:2] == ["&", "schema.Resource"]:
                a.is_block = True
                rf = struct_fields(elem)
                sm = rf.get("Schema")
                if sm and sm[0] != "map":
                    sm = self.resolve_call(service, sm)
                if sm:
                    a.children = self.parse_schema_map(service, sm)
        return a

    def sdk_resource(self, service: str, func: str) -> tuple[dict[str, Attr], list[str]]:
        toks = self.func_tokens(service, func)
        if toks is None:
            raise SystemExit(f"no schema function {service}/{func}")
        res = self.return_value(toks)
        fields = struct_fields(res)
        if "Schema" in fields:
            sm = fields["Schema"]
        elif "SchemaFunc" in fields:
            sf = fields["SchemaFunc"]
            if sf[0] == "func":
                sm = self.return_value(sf)
            else:
                sm = self.return_value(self.func_tokens(service, sf[0]))
        else:
            raise SystemExit(f"{func}: no Schema/SchemaFunc")
        if sm[0] != "map":
            sm = self.resolve_call(service, sm)
        return self.parse_schema_map(service, sm), res

    # ---- framework

    def fw_attrs(self, toks: list[str], kind: str) -> dict[str, Attr]:
        out: dict[str, Attr] = {}
        for item in split_items(literal_body(toks)):
            kv = split_kv(item)
            if not kv:
                continue
            name = self.key(kv[0])
            if name is None:
                self.unresolved.append("key " + " ".join(kv[0]))
                continue
            out[name] = self.fw_attr(name, kv[1], kind)
        return out

    def fw_attr(self, name: str, val: list[str], kind: str) -> Attr:
        a = Attr(name)
        if "{" not in val or val.index("{") > 3:
            return a      # helper call (framework.IDAttribute(), tftags.TagsAttribute())
        f = struct_fields(val)
        a.input = f.get("Optional") == ["true"] or f.get("Required") == ["true"] or kind == "block"
        pm = f.get("PlanModifiers", [])
        k = 0
        while k < len(pm):
            t = pm[k]
            if t.endswith("RequiresReplace") and pm[k + 1:k + 3] == ["(", ")"]:
                a.force_new = True
            elif t.split(".")[-1] in EFFECTIVELY_UNCONDITIONAL:
                a.force_new = True
                a.notes.append(f"{t.split('.')[-1]}: {EFFECTIVELY_UNCONDITIONAL[t.split('.')[-1]]}")
            elif re.search(r"(?i)requires?Replace", t) and pm[k + 1:k + 2] == ["("]:
                inner = [x.split(".")[-1] for x in pm[k + 2:match_close(pm, k + 1)]
                         if re.search(r"(?i)replace", x)]
                a.conditional.append(t.split(".")[-1] + (f"({inner[0]})" if inner else ""))
                k = match_close(pm, k + 1)
            k += 1
        vals = " ".join(f.get("Validators", []))
        if "SizeAtMost ( 1 )" in vals or "SizeBetween ( 0 , 1 )" in vals:
            a.max_one = True
        no = f.get("NestedObject")
        if no:
            a.is_block = True
            nf = struct_fields(no)
            if "Attributes" in nf:
                a.children.update(self.fw_attrs(nf["Attributes"], "attr"))
            if "Blocks" in nf:
                a.children.update(self.fw_attrs(nf["Blocks"], "block"))
        return a

    def fw_resource(self, service: str, struct: str) -> dict[str, Attr]:
        toks = self.func_tokens(service, f"{struct}.Schema", kind="method")
        if toks is None:
            raise SystemExit(f"no Schema method for {struct}")
        return fw_schema_from_tokens(self, toks)


def fw_schema_from_tokens(src, toks: list[str]) -> dict[str, Attr]:
    out: dict[str, Attr] = {}
    for k, t in enumerate(toks):
        if t == "schema.Schema" and toks[k + 1] == "{" and toks[k - 1] in ("return", "="):
            f = struct_fields(toks[k:])
            if "Attributes" in f:
                out.update(src.fw_attrs(f["Attributes"], "attr"))
            if "Blocks" in f:
                out.update(src.fw_attrs(f["Blocks"], "block"))
            break
    return out


class PlainSource(AwsSource):
    """tls/random: whole .go files, framework only."""

    def __init__(self, repo: Repo):
        super().__init__(repo)

    def file_tokens(self, path: str) -> list[str]:
        src = self.repo.read(path)
        if src is None:
            raise SystemExit(f"{self.repo.gitdir}: no {path} at {self.repo.ref}")
        self.used_files.add(path)
        return tokenize(src)

    @staticmethod
    def func_in_file(toks: list[str], name: str) -> list[str]:
        for k in range(len(toks) - 2):
            if toks[k] == "func" and toks[k + 1] == name and toks[k + 2] == "(":
                # skip the parameter list and result type, take the body
                i = match_close(toks, k + 2) + 1
                while toks[i] != "{":
                    i += 1
                return toks[k:match_close(toks, i) + 1]
        raise SystemExit(f"helper {name} not found")

    def resource(self, path: str, struct: str) -> tuple[dict[str, Attr], list[str]]:
        toks = self.file_tokens(path)
        # find "func (r *struct) Schema("
        for k in range(len(toks) - 6):
            if toks[k] == "func" and toks[k + 1] == "(" and toks[k + 3:k + 6] == ["*", struct, ")"] \
                    and toks[k + 6] == "Schema":
                body_start = toks.index("{", k)
                body = toks[k:match_close(toks, body_start) + 1]
                attrs = fw_schema_from_tokens(self, body)
                if not attrs:
                    # resp.Schema = helperSchemaV3(): follow a helper in the same file
                    for j in range(len(body) - 3):
                        if body[j] == "=" and body[j + 2] == "(" and body[j + 1].endswith("Schema") is False \
                                and re.match(r"^[a-z]\w*$", body[j + 1]):
                            attrs = fw_schema_from_tokens(self, self.func_in_file(toks, body[j + 1]))
                            break
                return attrs, toks
        raise SystemExit(f"{path}: no Schema method on {struct}")


# --------------------------------------------------------------------------- flattening

def flatten(attrs: dict[str, Attr], prefix: tuple = ()) -> list[tuple[tuple, Attr]]:
    out = []
    for name, a in sorted(attrs.items()):
        path = prefix + (name,)
        out.append((path, a))
        out.extend(flatten(a.children, path))
    return out


# --------------------------------------------------------------------------- Pulumi SDK mapping

def _input_classes(tp) -> list[type]:
    from pulumi._types import is_input_type
    found = []
    if isinstance(tp, type) and is_input_type(tp):
        return [tp]
    for arg in typing.get_args(tp) or ():
        found.extend(_input_classes(arg))
    return found


def _is_list(tp) -> bool:
    origin = typing.get_origin(tp)
    import collections.abc as cabc
    if origin in (list, cabc.Sequence):
        return True
    return any(_is_list(a) for a in typing.get_args(tp) or () if typing.get_origin(a) is not None)


class SdkMapper:
    def __init__(self, token: str):
        self.token = token
        pkg, mod_type, _ = token.split(":")
        module_name, type_name = mod_type.split("/") if "/" in mod_type else ("index", mod_type)
        cls_name = token.rsplit(":", 1)[1]
        pymod = f"pulumi_{pkg}" if module_name == "index" else f"pulumi_{pkg}.{module_name}"
        mod = importlib.import_module(pymod)
        self.resource_cls = getattr(mod, cls_name)
        # take <Name>Args from the resource's own module: the package namespace may
        # export a same-named nested input type (s3.BucketVersioningArgs is the legacy
        # Bucket.versioning block)
        # (bucket_versioning.py names its resource args BucketVersioningInitArgs)
        own = sys.modules[self.resource_cls.__module__]
        self.args_cls = getattr(own, cls_name + "InitArgs", None) or getattr(own, cls_name + "Args")

    @staticmethod
    def names(cls) -> dict[str, str]:
        from pulumi._types import input_type_py_to_pulumi_names
        return input_type_py_to_pulumi_names(cls)

    @staticmethod
    def types(cls) -> dict[str, typing.Any]:
        from pulumi._types import input_type_types
        return input_type_types(cls)

    def top_level_inputs(self) -> set[str]:
        return set(self.names(self.args_cls).values())

    def map_path(self, tf_path: tuple) -> str | None:
        cls = self.args_cls
        out = []
        for depth, seg in enumerate(tf_path):
            if cls is None:
                return None
            names = self.names(cls)
            cands = [seg, seg + "s", seg + "es", seg[:-1] + "ies" if seg.endswith("y") else None]
            py = next((c for c in cands if c and c in names), None)
            if py is None:
                return None
            wire = names[py]
            tp = self.types(cls).get(wire)
            nested = _input_classes(tp) if tp is not None else []
            is_list = tp is not None and _is_list(tp)
            out.append(wire + ("[*]" if is_list and depth < len(tf_path) - 1 else ""))
            cls = nested[0] if nested else None
        return ".".join(out)


# --------------------------------------------------------------------------- conditional scan

_FORCE_NEW_IF_RE = re.compile(r"customdiff\.ForceNewIf(?:Change)? \( (\"[^\"]*\"|names\.Attr\w+)")


def scan_customize_diff(src: AwsSource, service: str, res_tokens: list[str], seen=None) -> set[str]:
    """TF paths force-new'd by CustomizeDiff code reachable from the resource."""
    seen = seen if seen is not None else set()
    text = " ".join(res_tokens)
    found = set()
    for m in _FORCE_NEW_IF_RE.finditer(text):
        found.add(_arg_name(m.group(1)))
    for m in re.finditer(r"\b\w+\.ForceNew \( (\"[^\"]*\"|names\.Attr\w+)", text):
        found.add(_arg_name(m.group(1)))
    # follow CustomizeDiff helpers defined in the same package
    fields = struct_fields(res_tokens) if res_tokens and res_tokens[0] != "func" else {}
    cd = fields.get("CustomizeDiff", [])
    for t in cd:
        if re.match(r"^[a-z]\w*$", t) and t not in seen and t not in GO_KEYWORDS:
            seen.add(t)
            path = f"index/internal/service/{service}/func.{t}.goindex"
            text_ = src.repo.read(path)
            if text_ and "ForceNew" in text_:
                src.used_files.add(path)
                toks = tokenize(text_)
                toks = toks[toks.index("func"):] if "func" in toks else toks
                found |= scan_customize_diff(src, service, toks, seen)
    return found


GO_KEYWORDS = {"func", "return", "if", "else", "for", "range", "switch", "case", "default", "var",
               "nil", "true", "false", "err", "ctx", "diff", "d", "meta", "v", "ok", "old", "new",
               "any", "bool", "string", "int", "error", "len", "make", "append", "break", "continue",
               "go", "defer", "map", "struct", "interface", "type", "const", "fallthrough"}


def _arg_name(tok: str) -> str:
    name = json.loads(tok) if tok.startswith('"') else attr_const_to_name(tok)
    return re.sub(r"\.\d+(?=\.|$)", "", name)   # launch_template.0.version -> launch_template.version


def stop_start_paths(src: AwsSource, service: str, update_func: str) -> list[str]:
    toks = src.func_tokens(service, update_func)
    out: list[str] = []
    k = 0
    while k < len(toks):
        if toks[k] == "if" and toks[k + 1] == "d.HasChange" or (toks[k] == "if" and toks[k + 1] == "d.HasChanges"):
            brace = toks.index("{", k)
            end = match_close(toks, brace)
            cond = toks[k:brace]
            body = toks[brace:end]
            if any(t in ("stopInstance", "modifyInstanceAttributeWithStopStart") for t in body):
                # the attributes in the condition, and nested HasChange blocks that stop/start
                # the attributes of the block's own condition (HasChange calls
                # inside the block only select what to send in the same stop/start)
                names_ = [_arg_name(t) for t in cond if t.startswith('"') or t.startswith("names.Attr")]
                for n in names_:
                    if n not in out:
                        out.append(n)
            k = end
        k += 1
    return out


# --------------------------------------------------------------------------- build

def build_entry(token: str, tf_type: str, attrs: dict[str, Attr], cond_tf: dict[str, str],
                stop_start_tf: list[str], source_files: list[str], regional: bool) -> dict:
    mapper = SdkMapper(token)
    force_new, conditional, unmapped, stop_start = [], [], [], []
    cond_from_modifiers = {}
    notes: dict[str, list[str]] = {}
    for path, a in flatten(attrs):
        tfp = ".".join(path)
        if a.conditional and a.input:
            cond_from_modifiers[tfp] = "; ".join(
                f"plan modifier {m}: {MODIFIER_NOTES.get(m, 'resource-specific condition, see source_files')}"
                for m in a.conditional)
        if a.notes and a.force_new and a.input:
            notes[tfp] = a.notes
        if not a.force_new:
            continue
        if not a.input:
            continue   # computed-only: never a Pulumi input
        wire = mapper.map_path(path)
        if wire is None:
            unmapped.append(tfp)
        else:
            force_new.append(wire)
    for tfp, note in list(cond_tf.items()) + list(cond_from_modifiers.items()):
        wire = mapper.map_path(tuple(tfp.split(".")))
        if wire is None:
            unmapped.append(tfp + " (conditional)")
            continue
        conditional.append({"path": wire, "tf_path": tfp, "when": note})
    if regional and "region" in mapper.top_level_inputs():
        conditional.append({"path": "region", "tf_path": "region", "when": REGION_NOTE})
    for tfp in stop_start_tf:
        wire = mapper.map_path(tuple(tfp.split(".")))
        if wire is None:
            unmapped.append(tfp + " (stop_start)")
        else:
            stop_start.append(wire)
    return {
        "tf_type": tf_type,
        "python_class": f"{mapper.args_cls.__module__}.{mapper.args_cls.__name__}",
        "force_new": sorted(set(force_new)),
        "stop_start": stop_start,
        "conditional": sorted(conditional, key=lambda c: c["path"]),
        "unmapped": sorted(set(unmapped)),
        "notes": {mapper.map_path(tuple(k.split("."))) or k: v for k, v in sorted(notes.items())},
        "source_files": sorted(source_files),
    }


def notes_for(tf_type: str, found: set[str]) -> dict[str, str]:
    out = {}
    wildcard = (tf_type, "*") in CONDITION_NOTES
    for p in sorted(found):
        if p == "region":
            continue
        note = CONDITION_NOTES.get((tf_type, p))
        if note is None and not wildcard:
            MISSING_NOTES.append(f"{tf_type}: CustomizeDiff force-news {p!r}: add a CONDITION_NOTES entry")
        out[p] = note or f"CustomizeDiff force-news {p} under a resource-specific condition (see source_files)"
    for (t, p), note in CONDITION_NOTES.items():
        if t == tf_type and p != "*" and p not in found and note:
            raise SystemExit(f"{tf_type}: CONDITION_NOTES has {p!r} but the source no longer force-news it")
    return out


MISSING_NOTES: list[str] = []

GLOBAL_AWS = ("aws:iam/", "aws:route53/")


def extract_aws(repo: Repo) -> dict:
    src = AwsSource(repo)
    resources = {}
    for token, (tf_type, kind, loc) in AWS_TYPES.items():
        src.used_files = set()
        src.service = loc[0]
        if kind == "sdk":
            service, func, update = loc
            attrs, res_tokens = src.sdk_resource(service, func)
            found = scan_customize_diff(src, service, res_tokens)
            stop = stop_start_paths(src, service, update) if update else []
        else:
            service, struct = loc
            attrs = src.fw_resource(service, struct)
            mp = src.func_tokens(service, f"{struct}.ModifyPlan", kind="method")
            found = set()
            if mp and "RequiresReplace" in " ".join(mp):
                found.add("*source_type*")
            stop = []
        cond = {}
        if "*source_type*" in found:
            found.discard("*source_type*")
            for p in ("cidr_ipv4", "cidr_ipv6", "prefix_list_id", "referenced_security_group_id"):
                cond[p] = ("ModifyPlan: replaced when the rule's source TYPE changes (e.g. cidr_ipv4 -> "
                           "referenced_security_group_id); changing the value within the same source "
                           "attribute, and ip_protocol/from_port/to_port/description, update in place")
        cond.update(notes_for(tf_type, found))
        index_json = f"index/resources/{tf_type}.json"
        if repo.read(index_json) is None and tf_type.startswith("aws_lb"):
            index_json = "index/resources/aws_alb" + tf_type[len("aws_lb"):] + ".json"   # alias
        resources[token] = build_entry(token, tf_type, attrs, cond, stop,
                                       [index_json] + sorted(src.used_files),
                                       regional=not token.startswith(GLOBAL_AWS))
    return {"source": {
        "repository": f"github.com/{AWS_REPO}",
        "upstream": "github.com/hashicorp/terraform-provider-aws",
        "ref": repo.ref, "commit": repo.commit, "describe": repo.describe(),
        "commit_date": repo.commit_date(),
        "note": "index repo: one Go function per file under index/internal/service/<svc>/; "
                "names.Attr* constants mapped to snake_case by inverting the provider's naming",
        "pulumi_sdk": _sdk_version("pulumi_aws"),
        "unresolved_helpers": sorted(set(src.unresolved)),
    }, "resources": resources}


def _sdk_version(dist: str) -> str:
    from importlib.metadata import version
    return f"{dist.replace('_', '-')} {version(dist.replace('_', '-'))}"


def extract_plain(repo: Repo, repo_name: str, types: dict, pulumi_dist: str, extra: dict) -> dict:
    src = PlainSource(repo)
    resources = {}
    for token, (tf_type, path, struct) in types.items():
        src.used_files = set()
        attrs, file_toks = src.resource(path, struct)
        found = set()
        text = " ".join(file_toks)
        if "modifyPlanIfCertificateReadyForRenewal" in text:
            common = " ".join(src.file_tokens("internal/provider/common_cert.go"))
            if "RequiresReplace = append" in common and "readyForRenewalPath" in common:
                found.add("ready_for_renewal")
        cond = notes_for(tf_type, found)
        # ready_for_renewal is computed in the SDK (not an input): keep it as an
        # engine-visible conditional with its TF name if the SDK has no input.
        entry = build_entry(token, tf_type, attrs, {}, [], sorted(src.used_files), regional=False)
        for p, note in cond.items():
            wire = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), p)
            entry["conditional"].append({"path": wire, "tf_path": p, "when": note,
                                         "output_only": True})
        resources[token] = entry
    source = {"repository": f"github.com/{repo_name}", "ref": repo.ref, "commit": repo.commit,
              "describe": repo.describe(), "commit_date": repo.commit_date(),
              "pulumi_sdk": _sdk_version(pulumi_dist)}
    source.update(extra)
    return {"source": source, "resources": resources}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mirror", default="/work/.mirror")
    ap.add_argument("--aws-ref", default="v6.58.0")
    ap.add_argument("--tls-ref", default="HEAD")
    ap.add_argument("--random-ref", default="v3.9.0")
    ap.add_argument("--out", default=str(OUT_DIR))
    ns = ap.parse_args(argv)
    mirror = Path(ns.mirror)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)

    def gitdir(name: str) -> Path:
        return mirror / name.replace("/", "+") / "repo"

    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    data = {
        "aws": extract_aws(Repo(gitdir(AWS_REPO), ns.aws_ref)),
        "tls": extract_plain(Repo(gitdir(TLS_REPO), ns.tls_ref), TLS_REPO, TLS_TYPES, "pulumi_tls", {
            "note": "pulumi/pulumi-tls provider/go.mod at its snapshot HEAD f7db93b (2026-08-14; "
                    "tags only up to v5.5.1 in the snapshot) pins terraform-provider-tls "
                    "609226f53114 (2026-05-13), which the terraform-provider-tls snapshot lacks; "
                    "its newest commit d72d90e1 (v4.2.1-23, 2026-04-28) is used instead"}),
        "random": extract_plain(Repo(gitdir(RANDOM_REPO), ns.random_ref), RANDOM_REPO, RANDOM_TYPES,
                                "pulumi_random", {
            "note": "v3.9.0 is f8d869dc98d9, the commit pulumi/pulumi-random's provider/go.mod pins "
                    "at its snapshot HEAD f64d8726 (2026-08-14; the snapshot has tags only up to "
                    "v4.21.1, so the pin for 4.21.4 itself is not confirmed)"}),
    }
    if MISSING_NOTES:
        raise SystemExit("\n".join(MISSING_NOTES))
    for name, d in data.items():
        d["source"]["generated"] = generated
        d["source"]["generator"] = "tools/extract_force_new.py"
        (out / f"{name}.json").write_text(json.dumps(d, indent=2, sort_keys=False) + "\n")
        n_unmapped = sum(len(r["unmapped"]) for r in d["resources"].values())
        print(f"{name}: {len(d['resources'])} types, {n_unmapped} unmapped paths -> {out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
