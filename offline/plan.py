"""What `pulumi up` would do to go from one mock run (the deployed state) to another.

`plan_update(old, new)` matches resources, diffs them like the engine and the providers,
orders the steps like the engine, and reports what an operator must not miss: replaced or
restarted servers, databases and buckets, and two resources claiming the same physical
identity at the same time (the `InvalidPermission.Duplicate` class of failures).

Engine semantics, as read in pulumi/pulumi at commit 1b5949891b3cefcb9974752b24a5ecef0acc86c8
(pkg/resource/deploy/step_generator.go unless another file is named). That commit is on the
way to v3.260.0, the first release in which a `deletedWith` target's replacement replaces
the dependent (5cd93859e8, #23818); from v3.226.0 to it, nothing else the plan models
changed. The plan models that engine, and `requiredPulumiVersion` in Pulumi.yaml accepts no
older CLI (ENGINE_FEATURES; tests/test_plan_engine.py checks both; docs/upstream-facts.md).

- Matching: by URN, or by an alias URN of the new resource (`generateAliases` /
  `getOldResource`, 621-713); a child of an aliased parent is also found under the parent's
  old type chain (`inheritedChildAlias`, 590-619).
- `pulumi up --replace <urn>` (`plan_update(replace=...)`): the new copy is checked from
  the program's inputs alone, not the old ones (the same test in `generateSteps`), so it
  gets the current user data and AMI.
- Diff order (`diff`, 2884-2960): `--replace` (`isTargetedReplace`) first, then `replaceWith` — replace when any listed resource is
  being replaced (2895-2907) — then a `deletedWith` target being replaced (2910-2918), then
  a changed provider reference (2921-2927), then the provider's own Diff.
  `replacementTrigger` (`generateStepsFromDiff`, 1797-1818; `shouldTriggerReplace`,
  3683-3698): replace when old and new triggers differ, when either is unknown; never when
  either is null.
- ignore_changes (`processIgnoreChanges`, 3076-3096): the ignored paths of the new inputs
  are reset to the old values before diffing (applied at 1267); a change there is silently
  accepted and only reaches a replacement: a replacement is re-Checked from the program's
  own inputs, `goal.Properties` (2006-2023), so a new node gets the new userData.
- replace_on_changes (`applyReplaceOnChanges`, 3170-3230): a changed path contained in one
  of the listed paths turns the change into a replacement ("*" = any).
- Replacement mode (`continueStepsFromDiff`, 2041-2165): create-before-delete unless
  delete-before-replace: the provider's `DeleteBeforeReplace` in its diff, overridden by the
  resource option whenever the program set it, true or false (`goal.DeleteBeforeReplace`, a
  *bool, 2043-2046; source_eval.go:2350-2356 sets it when `deleteBeforeReplaceDefined`). An
  engine-level replace (`replaceWith`, `deletedWith`, a replaced provider, `--replace`,
  a trigger) never asks the provider, so only the option can make it delete-before-replace. For
  create-before-delete "the delete step is generated later on, after all creates/updates
  finish" (2164) — `GenerateDeletes` runs in `performPostSteps` only once the program has
  finished and every step has completed (deployment_executor.go:326-332, 486-553), in
  rounds (`ScheduleDeletes`, 2747-2797; see offline/destroy.py). Delete-before-replace
  deletes first the dependents that would be replaced by the change
  (`calculateDependentReplacements`, 3268-3416, plus `findDependentCascadeReplacements`,
  3419-3445), then the resource, then creates it, all inside the update phase.
- Cascade (3296-3355): a replaced resource's outputs are unknown until it is recreated, so a
  dependent's input whose property dependency is replaced is diffed as unknown: a force-new
  property then replaces the dependent, any other is an update. Same for a resource whose
  provider is replaced (3297-3312).
- Protect: replacing a resource protected in both old and new state is an error
  (1954-1975).

Providers:
- AWS/TLS/random (Terraform-bridged): force-new paths from `offline.force_new` (the
  injectable `tables`).
- Kubernetes objects: `.metadata.name` and `.metadata.namespace` always replace
  (pulumi/pulumi-kubernetes provider/pkg/provider, `forceNewProperties` ->
  `metadataForceNewProperties(".metadata")`); a Helm v3 Release replaces on `name` and
  `namespace` (helm_release.go `Diff`: `forceNewFields := []string{".name", ".namespace"}`,
  `DeleteBeforeReplace: false`).
- Dynamic providers (`pulumi-python:dynamic/...`): the provider's own `diff(id, olds,
  news)`; pass one callable per type in `dynamic_diffs`. It gets `__provider` (the pickled
  code) in both, as the engine gives it (sdk/python/lib/pulumi/dynamic/__main__.py `Diff`);
  a change of it alone is shown as `__provider` only when the provider's diff reports it.

Modelling limits: the cascade treats every input that depends on a replaced resource as
unknown (a real `up` may learn the new value equals the old one, e.g. an id built only from
inputs); an update does not cascade (mocks already show changed outputs of an update in the
new inputs of its dependents).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from .destroy import DependencyGraph, direct_edges, provider_urn, schedule_rounds, topological_order
from .mocks import Registration

# The engine features the plan models, with the first CLI release that has each (the
# commit in pulumi/pulumi; docs/upstream-facts.md). Pulumi.yaml's requiredPulumiVersion
# must accept none older than the newest of them.
ENGINE_FEATURES: dict[str, tuple[str, str]] = {
    "replaceWith replaces with its targets": ("3.207.0", "32235a17d287d5a63407a3ba8bfab1d4870089ad"),
    "replacementTrigger, without spurious replacements": ("3.226.0", "v3.226.0"),
    "deletedWith replaces with its target": ("3.260.0", "5cd93859e8a79cef4886fbd00048c15406ddd018"),
}
ENGINE_MIN_VERSION = max((v for v, _ in ENGINE_FEATURES.values()), key=lambda v: tuple(int(p) for p in v.split(".")))

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN
REDACTED = "[secret]"
DYNAMIC_PREFIX = "pulumi-python:dynamic/"
PROVIDER_CODE = "__provider"  # a dynamic resource's pickled provider, in its inputs and state


def _code_digest(code: Any) -> Optional[str]:
    """The provider's code as the plan shows it: a digest, not the pickle."""
    import hashlib

    return None if code is None else "code sha256 " + hashlib.sha256(str(code).encode()).hexdigest()[:12]
K8S_PROVIDER = "pulumi:providers:kubernetes"
SERVER_INSTANCE = "aws:ec2/instance:Instance"
RDS_INSTANCE = "aws:rds/instance:Instance"

# Identities of fixed-name resources: the input that is the resource's name in AWS.
FIXED_NAMES: dict[str, tuple[str, ...]] = {
    "aws:ssm/parameter:Parameter": ("name",),
    "aws:iam/role:Role": ("name",),
    "aws:iam/instanceProfile:InstanceProfile": ("name",),
    "aws:iam/policy:Policy": ("path", "name"),
    "aws:iam/rolePolicy:RolePolicy": ("role", "name"),
    "aws:iam/user:User": ("name",),
    "aws:rds/instance:Instance": ("identifier",),
    "aws:rds/subnetGroup:SubnetGroup": ("name",),
    "aws:rds/parameterGroup:ParameterGroup": ("name",),
    "aws:lb/loadBalancer:LoadBalancer": ("name",),
    "aws:lb/targetGroup:TargetGroup": ("name",),
    "aws:ec2/securityGroup:SecurityGroup": ("vpcId", "name"),
    "aws:ec2/keyPair:KeyPair": ("keyName",),
    "aws:s3/bucket:Bucket": ("bucket",),
    "aws:s3/bucketV2:BucketV2": ("bucket",),
    "aws:secretsmanager/secret:Secret": ("name",),
}


def _is_unknown(value: Any) -> bool:
    return value == UNKNOWN or type(value).__name__ == "Unknown"


def _has_unknown(value: Any) -> bool:
    if _is_unknown(value):
        return True
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False


# -- property paths --------------------------------------------------------------------
def _normalise(path: str) -> str:
    """`a.b[0].c` -> `a.b.c` (force-new tables use nested names without indexes)."""
    out, depth = [], 0
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _contains(outer: str, inner: str) -> bool:
    """Does the (normalised) path `outer` contain `inner`? `*` contains everything."""
    if outer == "*":
        return True
    outer, inner = _normalise(outer), _normalise(inner)
    return inner == outer or inner.startswith(outer + ".")


def _overlaps(a: str, b: str) -> bool:
    return _contains(a, b) or _contains(b, a)


def _split(path: str) -> list:
    parts: list = []
    for piece in path.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        if name:
            parts.append(name)
        parts.extend(int(i) for i in indexes if i != "")
    return parts


_MISSING = object()


def _walk(value: Any, parts: list) -> Any:
    """The value at `parts` inside `value`, or _MISSING."""
    for part in parts:
        if isinstance(part, int) and isinstance(value, list) and part < len(value):
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _get(value: Any, path: str) -> Any:
    return _walk(value, _split(path))


def _set(root: dict, path: str, value: Any) -> bool:
    parts = _split(path)
    target = _walk(root, parts[:-1])
    if target is _MISSING:
        return False
    last = parts[-1] if parts else None
    if isinstance(last, int) and isinstance(target, list) and last < len(target):
        target[last] = value
    elif isinstance(last, str) and isinstance(target, dict):
        if value is _MISSING:
            target.pop(last, None)
        else:
            target[last] = value
    else:
        return False
    return True


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def diff_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """Changed paths, as fine as the structures allow (unknowns always differ)."""
    if _is_unknown(new) or _is_unknown(old):
        return [path or "*"]
    if isinstance(old, dict) and isinstance(new, dict):
        changed = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            if key not in old or key not in new:
                changed.append(sub)
            else:
                changed.extend(diff_paths(old[key], new[key], sub))
        return changed
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        changed = []
        for index, (a, b) in enumerate(zip(old, new)):
            changed.extend(diff_paths(a, b, f"{path}[{index}]"))
        return changed
    return [] if _same_scalar(old, new) else [path or "*"]


def _substitute(value: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, pairs) for v in value]
    if isinstance(value, str):
        for new, old in sorted(pairs, key=lambda pair: -len(pair[0])):
            value = value.replace(new, old)
    return value


def _same_scalar(old: Any, new: Any) -> bool:
    """Equal, or equal once the bridge coerces to the schema type ("30" vs 30, "true" vs True)."""
    if old == new and type(old) is type(new):
        return True
    if isinstance(old, bool) or isinstance(new, bool):
        return str(old).lower() == str(new).lower()
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return float(old) == float(new)
    if isinstance(old, str) != isinstance(new, str) and isinstance(old, (str, int, float)) and isinstance(new, (str, int, float)):
        try:
            return float(old) == float(new)
        except ValueError:
            return False
    return old == new


# -- force-new tables --------------------------------------------------------------------
@dataclass
class Tables:
    """The provider knowledge the planner needs; see offline/force_new.py."""

    force_new_paths: Callable[[str], frozenset]
    stop_start_paths: Callable[[str], frozenset]
    conditional_replacements: Callable[[str], Any]
    source: str = "offline.force_new"

    @classmethod
    def from_module(cls) -> "Tables":
        try:
            from . import force_new  # noqa: PLC0415 - lazy: another engineer's module
        except ImportError:
            return cls(lambda t: frozenset(), lambda t: frozenset(), lambda t: (), source="none (offline.force_new missing)")
        return cls(
            force_new.force_new_paths,
            getattr(force_new, "stop_start_paths", lambda t: frozenset()),
            getattr(force_new, "conditional_replacements", lambda t: ()),
        )

    @classmethod
    def of(cls, force_new: Mapping[str, Iterable[str]] | None = None, stop_start: Mapping[str, Iterable[str]] | None = None,
           conditional: Mapping[str, Any] | None = None) -> "Tables":
        """Small literal tables, for tests."""
        force_new, stop_start, conditional = force_new or {}, stop_start or {}, conditional or {}
        return cls(
            lambda t: frozenset(force_new.get(t, ())),
            lambda t: frozenset(stop_start.get(t, ())),
            lambda t: conditional.get(t, ()),
            source="literal",
        )


def _arch(instance_type: Any) -> str:
    """x86_64 or arm64 from an EC2 instance type name (Graviton families carry a `g`)."""
    family = str(instance_type or "").split(".")[0]
    import re

    match = re.match(r"^([a-z]+)(\d+)([a-z-]*)$", family)
    if not match:
        return "unknown"
    return "arm64" if "g" in match.group(3) and family not in ("g4dn", "g5", "g6", "g6e", "p4d", "p5") else "x86_64"


def _source_type_changes(old: Any, new: Any) -> bool:
    return (old in (None, "")) != (new in (None, ""))


# Evaluators for conditional replacements that offline/force_new.py describes in words
# (`when`); keyed by path, or by (type, path). Unlisted ones become "may replace" notes.
CONDITIONAL_EVALUATORS: dict[Any, Callable[[Any, Any], bool]] = {
    # securityGroup{In,E}gressRule ModifyPlan: replaced when the rule's source TYPE changes
    "cidrIpv4": _source_type_changes,
    "cidrIpv6": _source_type_changes,
    "prefixListId": _source_type_changes,
    "referencedSecurityGroupId": _source_type_changes,
    # forceNewIfRegionChanges: between unset and the provider region is in place
    "region": lambda old, new: old not in (None, "") and new not in (None, "") and old != new,
    "enablePrimaryIpv6": lambda old, new: bool(old) and not new,
    ("aws:ec2/instance:Instance", "instanceType"): lambda old, new: _arch(old) != _arch(new),
    ("aws:ec2/vpc:Vpc", "cidrBlock"): lambda old, new: old != new,
    ("aws:ssm/parameter:Parameter", "tier"): lambda old, new: old == "Advanced" and new in (None, "", "Standard"),
    ("random:index/randomPassword:RandomPassword", "overrideSpecial"): lambda old, new: {old, new} != {None, ""} and old != new,
}


def _conditional_rules(type_token: str, raw: Any) -> list[tuple[str, Optional[Callable[[Any, Any], bool]], str]]:
    """(path, predicate(old, new) or None when only described, why). Accepts offline/force_new's
    [{"path", "when", ...}], {path: predicate} or [(path, predicate[, why])]."""
    rules: list = []
    if not raw:
        return rules
    items = raw.items() if isinstance(raw, Mapping) else raw
    for item in items:
        if isinstance(item, tuple):
            path, predicate, *rest = item
            why = rest[0] if rest else "conditional replacement"
        elif isinstance(item, Mapping):
            if item.get("output_only"):
                continue  # decided from state at plan time (certificate renewal), not from inputs
            path, why = item["path"], item.get("when", "conditional replacement")
            predicate = next((item[k] for k in ("predicate", "replaces") if callable(item.get(k))), None)
        else:
            path = getattr(item, "path")
            why = getattr(item, "when", "") or getattr(item, "reason", "") or "conditional replacement"
            predicate = next((getattr(item, k) for k in ("predicate", "replaces") if callable(getattr(item, k, None))), None)
        if predicate is None:
            predicate = CONDITIONAL_EVALUATORS.get((type_token, path)) or CONDITIONAL_EVALUATORS.get(path)
        rules.append((path, predicate, str(why)))
    return rules


# -- identities ----------------------------------------------------------------------------
def _k8s_api_version_kind(type_token: str) -> tuple[str, str]:
    # kubernetes:core/v1:Namespace -> ("v1", "Namespace"); kubernetes:apps/v1:Deployment -> ("apps/v1", ...)
    _, module, kind = type_token.split(":", 2)
    group, _, version = module.partition("/")
    return (version if group in ("core", "") else f"{group}/{version}"), kind


NEW_LOAD_BALANCER = "(a load balancer this update creates)"


def _claims_clash(held: tuple, claimed: tuple) -> bool:
    """Whether a claimed identity is taken by a held one. Most identities are exclusive;
    a target group's association is taken only by another load balancer."""
    if held[0] == "tg-association" or claimed[0] == "tg-association":
        return held[0] == claimed[0] and held[1] == claimed[1] and held[2] != claimed[2]
    return held == claimed


def identities(r: Registration, inputs: Mapping[str, Any]) -> list[tuple]:
    """Physical identities a resource with these inputs claims in the cloud or the cluster.
    An identity containing an unknown value can match nothing and is dropped."""
    t, i = r.type, inputs
    found: list[tuple] = []
    if t in ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"):
        direction = "ingress" if "Ingress" in t else "egress"
        protocol = str(i.get("ipProtocol", "")).lower()
        ports = ("all",) if protocol in ("-1", "all") else (i.get("fromPort"), i.get("toPort"))
        peer = next(((k, i[k]) for k in ("cidrIpv4", "cidrIpv6", "referencedSecurityGroupId", "prefixListId") if i.get(k)), None)
        found.append(("sg-rule", direction, i.get("securityGroupId"), protocol, *ports, peer))
    elif t == "aws:ec2/securityGroupRule:SecurityGroupRule":
        protocol = str(i.get("protocol", "")).lower()
        ports = ("all",) if protocol in ("-1", "all") else (i.get("fromPort"), i.get("toPort"))
        peers = [("cidr", c) for c in i.get("cidrBlocks") or []] + [("cidr6", c) for c in i.get("ipv6CidrBlocks") or []]
        if i.get("sourceSecurityGroupId"):
            peers.append(("sg", i["sourceSecurityGroupId"]))
        if i.get("self"):
            peers.append(("self", True))
        for peer in peers:  # each CIDR is its own permission in EC2
            found.append(("sg-rule", i.get("type"), i.get("securityGroupId"), protocol, *ports, peer))
    elif t == "aws:route53/record:Record":
        name = str(i.get("name", "")).lower().rstrip(".")
        found.append(("route53", i.get("zoneId"), name, i.get("type"), i.get("setIdentifier") or ""))
    elif t == "aws:lb/targetGroupAttachment:TargetGroupAttachment":
        found.append(("tg-attachment", i.get("targetGroupArn"), i.get("targetId"), i.get("port")))
    elif t == "aws:lb/listener:Listener":
        # ELBv2 lets a target group serve one load balancer at a time: a listener on
        # another load balancer that forwards to it fails with TargetGroupAssociationLimit
        # ("cannot be associated with more than one load balancer",
        # hashicorp/terraform-provider-aws#22005). A load balancer that is being
        # (re)created has an unknown ARN: it is a new one, never the old.
        balancer = i.get("loadBalancerArn")
        if _is_unknown(balancer):  # named by the resource it comes from: two new ones differ
            source = (r.property_dependencies or {}).get("loadBalancerArn") or []
            balancer = f"{NEW_LOAD_BALANCER} {source[0].rsplit('::', 1)[-1]}" if source else NEW_LOAD_BALANCER
        actions = i.get("defaultActions")
        for action in actions if isinstance(actions, list) else []:
            if not isinstance(action, dict):  # unknown: forwards to a group being created
                continue
            groups = [action.get("targetGroupArn")] + [g.get("arn") for g in ((action.get("forward") or {}).get("targetGroups") or [])]
            for group in groups:
                if group and not _is_unknown(group):  # an unknown group is a new one: free
                    found.append(("tg-association", group, balancer))
    elif t.startswith("kubernetes:helm.sh/") and t.endswith(":Release"):
        found.append(("helm-release", provider_urn(r.provider), i.get("namespace") or "default", i.get("name")))
    elif t.startswith("kubernetes:") and not t.startswith("pulumi:"):
        metadata = i.get("metadata") or {}
        if metadata.get("name"):
            api_version, kind = _k8s_api_version_kind(t)
            found.append(("k8s", provider_urn(r.provider), api_version, kind, metadata.get("namespace") or "", metadata.get("name")))
    if t in FIXED_NAMES:
        values = tuple(i.get(k) for k in FIXED_NAMES[t])
        if values[-1]:  # the name itself is set (not auto-named)
            found.append(("name", t, *values))
    if t == RDS_INSTANCE and i.get("finalSnapshotIdentifier") and not i.get("skipFinalSnapshot"):
        found.append(("rds-final-snapshot", i["finalSnapshotIdentifier"]))
    return [identity for identity in found if not _has_unknown(identity) and None not in identity[2:]]


def _describe_identity(identity: tuple) -> str:
    kind = identity[0]
    if kind == "sg-rule":
        return f"security-group {identity[1]} rule {identity[2]} {' '.join(str(p) for p in identity[3:-1])} {identity[-1][1]}"
    if kind == "rds-final-snapshot":
        return f"RDS final snapshot identifier {identity[1]}"
    if kind == "tg-association":
        return f"target group {identity[1]} (one load balancer at a time; this claim: {identity[2]})"
    return " ".join(str(part) for part in identity if part != "")


# -- the plan -----------------------------------------------------------------------------
@dataclass
class Change:
    path: str
    old: Any
    new: Any
    secret: bool = False
    replaces: bool = False
    ignored: bool = False
    unknown: bool = False  # computed: depends on a replaced resource


@dataclass
class Step:
    op: str  # create | same | update | replace | delete
    urn: str
    type: str
    name: str
    custom: bool = True
    old_urn: str = ""
    delete_before_replace: bool = False
    changes: list[Change] = field(default_factory=list)
    ignored: list[Change] = field(default_factory=list)
    replace_reasons: list[str] = field(default_factory=list)
    stop_start: list[str] = field(default_factory=list)
    flag: str = ""
    phase: str = "update"  # update (creates, updates, replacement creates, DBR deletes) | delete
    seq: int = 0  # position in the printed order
    round: Optional[int] = None  # delete phase round (offline/destroy.py)
    skipped: bool = False  # delete made no API call (deleted_with)
    replacement: bool = False  # a delete that is half of a replacement
    notes: list[str] = field(default_factory=list)


@dataclass
class Collision:
    identity: tuple
    claimant: str  # URN of the step that claims the identity
    holder: str  # URN (old state) of the resource still holding it
    certain: bool
    why: str

    def describe(self) -> str:
        short = lambda urn: urn.rsplit("::", 1)[-1]  # noqa: E731
        mode = "collides" if self.certain else "may collide (parallel steps, order not guaranteed)"
        return f"{short(self.claimant)} {mode} with {short(self.holder)} on {_describe_identity(self.identity)}: {self.why}"


@dataclass
class Plan:
    steps: list[Step]
    collisions: list[Collision]
    notes: list[str]
    title: str = "Offline plan"
    secrets: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    refused: bool = False  # a provider's check failed: the preview fails, nothing changes

    def counts(self) -> dict[str, int]:
        """Custom resources per operation; a replacement's delete half is not a delete."""
        counts: dict[str, int] = {}
        for step in self.steps:
            if step.custom and not step.replacement:
                counts[step.op] = counts.get(step.op, 0) + 1
        return counts

    def by_op(self, op: str) -> list[Step]:
        return [s for s in self.steps if s.op == op]

    def step(self, name: str, op: Optional[str] = None) -> Step:
        """The step of a resource by name; without `op`, the delete half of a replacement is skipped."""
        matches = [s for s in self.steps if s.name == name and (s.op == op if op else not s.replacement)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} steps named {name} (op {op})")
        return matches[0]

    @property
    def flagged(self) -> list[Step]:
        return [s for s in self.steps if s.flag]

    def to_markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        counts = self.counts()
        lines += ["| operation | resources |", "|---|---|"]
        for op in ("create", "update", "replace", "delete", "same"):
            lines.append(f"| {op} | {counts.get(op, 0)} |")
        lines.append("")
        for error in self.errors:
            lines.append(f"**ERROR: {_md(error)}**")
        if self.flagged:
            lines += ["### ⚠️ Must not be missed", ""]
            for step in self.flagged:
                lines.append(f"- **{_md(step.flag)}**")
            lines.append("")
        if self.collisions:
            lines += ["### ❌ Physical identity collisions", ""]
            for collision in self.collisions:
                lines.append(f"- **{_md(collision.describe())}**")
            lines.append("")
        if self.notes:
            lines += ["### Notes", ""]
            lines += [f"- {_md(note)}" for note in self.notes]
            lines.append("")
        lines += ["### Steps (in the order the engine runs them)", "", "| # | op | type | name | changes |", "|---|---|---|---|---|"]
        for step in self.steps:
            if step.op == "same":
                continue
            op = step.op
            if step.op == "replace":
                op = "replace (delete-before-replace)" if step.delete_before_replace else "replace"
            if step.op == "delete" and step.phase == "update":
                op = "delete (before replace, skipped: deleted with)" if step.skipped else "delete (before replace)"
            if step.op == "delete" and step.round is not None:
                what = "delete old copy" if step.replacement else "delete"
                op = f"{what} (round {step.round}{', skipped: deleted with' if step.skipped else ''})"
            details = [self._change(c) for c in step.changes]
            tied = lambda reason: any(reason.startswith((f"{c.path}:", f"force-new {c.path}", f"replace_on_changes {c.path}")) for c in step.changes)  # noqa: E731
            details += [f"replace: {_md(_brief(reason))}" for reason in step.replace_reasons if not tied(reason)]
            details += [_md(note) for note in step.notes if "may replace" in note or "alias" in note]
            details += [f"ignored: {self._change(c)}" for c in step.ignored]
            lines.append(f"| {step.seq} | {op} | `{step.type}` | {_md(step.name)} | {'<br>'.join(details)} |")
        lines.append("")
        lines += self._user_data_diffs()
        return "\n".join(lines)

    def _user_data_diffs(self) -> list[str]:
        """Each changed user data as a unified diff of the files the machine receives."""
        from offline import machine_files

        lines: list[str] = []
        for step in self.steps:
            for change, ignored in [(c, False) for c in step.changes] + [(c, True) for c in step.ignored]:
                if change.path != "userData" or change.secret or not isinstance(change.new, str):
                    continue
                old = change.old if isinstance(change.old, str) else None
                diff = self._redact(machine_files.unified_diff(old, change.new, step.name))
                if not diff:
                    continue
                if not lines:
                    lines += ["### User data changes (the files the machine receives)", ""]
                lines += [f"#### {_md(step.name)}: {_user_data_effect(step, ignored)}", "", "```diff", diff.rstrip("\n"), "```", ""]
        return lines

    def _redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=lambda s: (-len(s), s)):
            if secret and secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _change(self, change: Change) -> str:
        marker = " (replace)" if change.replaces else ""
        if change.secret:
            return f"`{change.path}`: {REDACTED} → {REDACTED}{marker}"
        if change.path == "userData" and isinstance(change.old, str) and isinstance(change.new, str):
            return f"`userData`: changed, see its diff below{marker}"
        return f"`{change.path}`: {self._show(change.old)} → {'(known after replacement)' if change.unknown else self._show(change.new)}{marker}"

    def _show(self, value: Any) -> str:
        if value is _MISSING or value is None:
            return "∅"
        if _is_unknown(value):
            return "(unknown)"
        text = self._redact(value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str))
        if len(text) > 60:
            import hashlib

            text = f"{text[:40]}… ({len(text)} chars, sha256 {hashlib.sha256(text.encode()).hexdigest()[:8]})"
        return f"`{_md(text)}`".replace("\n", " ")


def _user_data_effect(step: Step, ignored: bool) -> str:
    if ignored:
        return "ignored on the running machine (ignoreChanges); takes effect on a replacement"
    if step.op == "replace":
        return "the machine is replaced and boots with it"
    if step.type == "aws:ec2/launchTemplate:LaunchTemplate":
        return "a new launch template version: machines launched from now on boot with it"
    return f"{step.op}: the running machine does not re-run cloud-init; it takes effect on a replacement"


def _brief(reason: str, limit: int = 90) -> str:
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _secret_paths(*registrations: Optional[Registration]) -> list[str]:
    paths: list[str] = []
    for r in registrations:
        if r is not None:
            paths.extend(p for p in (r.secret_inputs or []) if p != "<root>")
            if "<root>" in (r.secret_inputs or []):
                paths.append("*")
    return paths


def _secret_strings(run) -> set[str]:
    pieces = set()
    for value in getattr(run, "secret_values", None) or ():
        value = str(value).strip()
        pieces.add(value)
        if value.startswith("-----BEGIN"):
            pieces.update(line for line in value.splitlines()[1:-1] if line)
    return {p for p in pieces if len(p) >= 8}


def _flag_kind(r: Registration) -> str:
    if r.type == SERVER_INSTANCE and "-server-" in r.name:
        return "server node"
    if r.type == RDS_INSTANCE:
        return "database"
    if r.type.startswith("aws:s3/bucket"):
        return "S3 bucket"
    return ""


def _dynamic_methods(providers: Mapping[str, Any]) -> tuple[dict, dict]:
    """(type -> diff, type -> check) from providers or bare diff callables."""
    diffs, checks = {}, {}
    for type_token, value in providers.items():
        if callable(getattr(value, "diff", None)):
            diffs[type_token] = value.diff
            if callable(getattr(value, "check", None)):
                checks[type_token] = value.check
        else:
            diffs[type_token] = value
    return diffs, checks


def _check_failures(n: Registration, o: Optional[Registration], check: Optional[Callable]) -> list[str]:
    """The engine Checks a resource's inputs before it diffs them (step_generator.go
    1325-1348): with the old inputs for an update, without them for a create."""
    if check is None:
        return []
    olds = {k: v for k, v in (o.inputs if o is not None else {}).items() if k != PROVIDER_CODE}
    news = {k: v for k, v in n.inputs.items() if k != PROVIDER_CODE}
    result = check(olds, news)
    failures = (result.get("failures") if isinstance(result, Mapping) else getattr(result, "failures", None)) or []
    found = []
    for failure in failures:
        prop = failure.get("property") if isinstance(failure, Mapping) else getattr(failure, "property", "")
        reason = failure.get("reason") if isinstance(failure, Mapping) else getattr(failure, "reason", "")
        found.append(f"REFUSED in preview by {n.name} ({n.type}): {prop + ': ' if prop else ''}{reason}")
    return found


# Updates the provider plans in place but the AWS API refuses, so the real `up` fails at
# that step (after a clean preview). (type, path, refused(old, new), why and the safe way).
# Not here, because they are allowed: a launch template's smaller blockDeviceMappings
# volumeSize (a new version; new instances get new volumes), an aws:ebs/volume:Volume's
# smaller size (the provider replaces the volume: CustomizeDiff ForceNewIfChange).
def _shrinks(old: Any, new: Any) -> bool:
    try:
        return float(new) < float(old)
    except (TypeError, ValueError):
        return False


AWS_REJECTED_UPDATES: list[tuple[str, str, Callable[[Any, Any], bool], str]] = [
    (SERVER_INSTANCE, "rootBlockDevice.volumeSize", _shrinks,
     "an EBS volume cannot shrink (EC2 ModifyVolume: InvalidParameterValue \"New size cannot be smaller than existing "
     "size\"; Amazon EBS User Guide, \"Modify a volume using Amazon EBS Elastic Volumes\"). The safe way: keep the size "
     "at {old} GiB or more; a smaller disk needs a new instance."),
    (SERVER_INSTANCE, "ebsBlockDevices.volumeSize", _shrinks,
     "an EBS volume cannot shrink (EC2 ModifyVolume). The safe way: keep the size at {old} GiB or more."),
    (RDS_INSTANCE, "allocatedStorage", _shrinks,
     "RDS cannot reduce a DB instance's allocated storage (Amazon RDS User Guide, \"Increasing DB instance storage "
     "capacity\": \"You can't reduce the amount of storage for a DB instance after storage has been allocated\"). The "
     "safe way: keep it at {old} GiB or more; a smaller database is a new instance restored from a snapshot."),
]


def _rejected_update(type_token: str, change: "Change") -> str:
    if change.replaces or change.unknown or change.secret:
        return ""
    for rule_type, path, refused, why in AWS_REJECTED_UPDATES:
        if rule_type == type_token and _normalise(change.path) == path and refused(change.old, change.new):
            return f"`{change.path}` {change.old} → {change.new} is refused by AWS: {why.format(old=change.old, new=change.new)}"
    return ""


def _dynamic_result(result: Any) -> tuple[bool, list[str], Optional[bool]]:
    if isinstance(result, Mapping):
        get = result.get
    else:
        get = lambda key, default=None: getattr(result, key, default)  # noqa: E731
    changes = get("changes", None)
    replaces = list(get("replaces", None) or [])
    dbr = get("delete_before_replace", None)
    return (bool(replaces) if changes is None else bool(changes)), replaces, dbr


def _match_old(new: Registration, olds: Mapping[str, Registration], parent_old: Mapping[str, str]) -> Optional[Registration]:
    if new.urn in olds:
        return olds[new.urn]
    for alias in new.aliases or []:
        if alias in olds:
            return olds[alias]
    # inheritedChildAlias: the parent was found under an old URN, so look for the child under
    # the parent's old type chain.
    # The engine's URN carries the full type chain; pulumi's MockMonitor.make_urn only the
    # parent's own type: try both. A child named "<parent name>-x" follows a renamed parent.
    old_parent = parent_old.get(new.parent)
    if old_parent and old_parent != new.parent:
        prefix, chain, old_parent_name = old_parent.split("::", 3)[:2], old_parent.split("::")[2], old_parent.rsplit("::", 1)[-1]
        new_parent_name = new.parent.rsplit("::", 1)[-1]
        names = [new.name]
        if new.name.startswith(new_parent_name):
            names.append(old_parent_name + new.name[len(new_parent_name):])
        for types in (chain, chain.split("$")[-1]):
            for name in names:
                candidate = f"{prefix[0]}::{prefix[1]}::{types}${new.type}::{name}"
                if candidate in olds:
                    return olds[candidate]
    return None


def plan_update(
    old,
    new,
    tables: Optional[Tables] = None,
    dynamic_diffs: Optional[Mapping[str, Any]] = None,
    title: str = "Offline plan",
    replace: Iterable[str] = (),
) -> Plan:
    """Plan `pulumi up` from the state `old` (a MockRun, or None for a new stack) to the
    program run `new`. `dynamic_diffs` maps a dynamic resource type to its provider (its
    `check` and `diff` are used, as the engine uses them) or to a bare `diff` callable.
    `replace` lists the URNs given to `pulumi up --replace`."""
    tables = tables or Tables.from_module()
    dynamic_diffs, dynamic_checks = _dynamic_methods(dynamic_diffs or {})
    replace_urns = set(replace)
    old_regs: list[Registration] = list(old.registrations) if old is not None else []
    new_regs: list[Registration] = list(new.registrations)
    olds = {r.urn: r for r in old_regs}
    notes: list[str] = []
    errors: list[str] = []
    if tables.source.startswith("none"):
        notes.append("Force-new tables unavailable (offline.force_new missing): only replace_on_changes, triggers and Kubernetes names replace.")

    order = topological_order(new_regs)
    new_graph = DependencyGraph(new_regs)
    matched: dict[str, Registration] = {}  # new URN -> old registration
    parent_old: dict[str, str] = {}
    replaced: set[str] = set()  # new URNs
    decisions: dict[str, Step] = {}
    effective: dict[str, dict] = {}  # new URN -> inputs as diffed (cascade unknowns, ignore_changes)
    rewrites: dict[str, list[tuple[str, str]]] = {}  # renamed resource -> (mock value, kept value)
    claimed: dict[str, str] = {}  # old URN -> new URN

    for n in order:
        o = _match_old(n, olds, parent_old)
        step = Step(op="create", urn=n.urn, type=n.type, name=n.name, custom=n.custom)
        decisions[n.urn] = step
        effective[n.urn] = _copy(n.inputs)
        if o is not None and o.urn in claimed:
            errors.append(f"{n.name} and {claimed[o.urn].rsplit('::', 1)[-1]} both claim the old resource {o.urn} (duplicate alias)")
            o = None
        refusals = _check_failures(n, o, dynamic_checks.get(n.type))
        if refusals:
            # issueCheckErrors marks the resource invalid and the step generator bails
            # ("resource ... is invalid", step_generator.go:1346-1348, 1476-1477): the
            # preview fails, and `pulumi up` changes nothing.
            return Plan(steps=[], collisions=[], title=title, errors=refusals, refused=True,
                        notes=[f"`pulumi up` stops in its preview at {n.name}: nothing is changed"])
        if o is None:
            continue
        claimed[o.urn] = n.urn
        matched[n.urn] = o
        parent_old[n.urn] = o.urn
        step.old_urn = o.urn if o.urn != n.urn else ""
        if step.old_urn:
            step.notes.append(f"renamed from {o.urn} (alias): same resource")
        step.op = "same"
        reasons: list[str] = []

        # Inputs as the provider will see them: unknown where they depend on a replaced resource
        # (calculateDependentReplacements, 3327-3340), then ignore_changes (processIgnoreChanges).
        news = _copy(n.inputs)
        # A renamed (aliased) resource keeps its physical id, but the mocks derive ids from
        # names: show dependents the old values, not the mock's new ones.
        for key, urns in (n.property_dependencies or {}).items():
            for u in urns:
                if key in news and rewrites.get(u):
                    news[key] = _substitute(news[key], rewrites[u])
        unknown_keys = set()
        for key, urns in (n.property_dependencies or {}).items():
            if key in news and any(u in replaced for u in urns):
                news[key] = UNKNOWN
                unknown_keys.add(key)
        olds_in = _copy(o.inputs)
        ignored_changes = []
        for path in n.ignore_changes or []:
            raw_old, raw_new = _get(olds_in, path), _get(n.inputs, path)
            if raw_old is not _MISSING or raw_new is not _MISSING:
                if raw_old != raw_new:
                    ignored_changes.append(Change(path, raw_old, raw_new, secret=_is_secret(path, n, o)))
            if raw_old is _MISSING:
                _set(news, path, _MISSING)
            else:
                _set(news, path, _copy(raw_old))
        effective[n.urn] = news
        step.ignored = ignored_changes

        # Engine-level reasons, in `diff`'s order: `--replace` (isTargetedReplace) first.
        if n.urn in replace_urns or o.urn in replace_urns:
            reasons.append("--replace")
        for target in n.replace_with or []:
            if target in replaced:
                reasons.append(f"replace_with: {target.rsplit('::', 1)[-1]} is replaced")
        if n.deleted_with and n.deleted_with in replaced:
            reasons.append(f"deleted_with: {n.deleted_with.rsplit('::', 1)[-1]} is replaced")
        provider = provider_urn(n.provider)
        if provider and provider in replaced:
            reasons.append(f"provider {provider.rsplit('::', 1)[-1]} is replaced")
        if _trigger_replaces(getattr(n, "replacement_trigger", None), getattr(o, "replacement_trigger", None)):
            reasons.append("replacement_trigger changed")

        # The provider's diff. After an engine-level reason the engine never asks the provider
        # (diff returns early; generateStepsFromDiff skips it for a trigger), so its
        # DeleteBeforeReplace does not count; the plan still diffs, to show what changed.
        engine_level = bool(reasons)
        dbr_from_provider: Optional[bool] = None
        if n.type.startswith(DYNAMIC_PREFIX):
            olds_state = {k: v for k, v in (o.outputs or o.inputs).items() if k != PROVIDER_CODE}
            news_dyn = {k: v for k, v in news.items() if k != PROVIDER_CODE}
            old_inputs = {k: v for k, v in olds_in.items() if k != PROVIDER_CODE}
            paths = diff_paths(old_inputs, news_dyn)
            diff = dynamic_diffs.get(n.type)
            if diff is not None:
                # The engine gives the provider's diff the stored code and the new one too.
                old_code, new_code = olds_in.get(PROVIDER_CODE), news.get(PROVIDER_CODE)
                has_changes, replace_keys, dbr_from_provider = _dynamic_result(
                    diff((o.outputs or {}).get("id", ""), {**olds_state, PROVIDER_CODE: old_code}, {**news_dyn, PROVIDER_CODE: new_code})
                )
                if not has_changes:
                    paths = []
                changes = [Change(p, _get(old_inputs, p), _get(news_dyn, p), _is_secret(p, n, o), any(_overlaps(k, p) for k in replace_keys), unknown=p.split(".")[0].split("[")[0] in unknown_keys) for p in paths]
                if has_changes and not paths and not replace_keys and old_code != new_code:
                    changes = [Change(PROVIDER_CODE, _code_digest(old_code), _code_digest(new_code))]
                elif has_changes and not paths:
                    changes = [Change(k, _get(old_inputs, k), _get(news_dyn, k), _is_secret(k, n, o), True) for k in replace_keys] or [Change("*", None, None)]
                reasons += [f"provider diff replaces {k}" for k in replace_keys]
            else:
                changes = [Change(p, _get(old_inputs, p), _get(news_dyn, p), _is_secret(p, n, o)) for p in paths]
                if paths:
                    step.notes.append("dynamic provider diff not supplied: assumed an in-place update")
        else:
            paths = diff_paths(olds_in, news)
            force_new = set(_table(tables.force_new_paths, n, frozenset(), notes if paths else None))
            if n.type.startswith("kubernetes:helm.sh/") and n.type.endswith(":Release"):
                force_new |= {"name", "namespace"}
            elif n.type.startswith("kubernetes:"):
                force_new |= {"metadata.name", "metadata.namespace"}
            elif n.type == K8S_PROVIDER:
                force_new |= {"clusterIdentifier"}
            conditional = _conditional_rules(n.type, _table(tables.conditional_replacements, n, ()))
            changes = []
            for p in paths:
                change = Change(p, _get(olds_in, p), _get(news, p), _is_secret(p, n, o), unknown=_is_unknown(_get(news, p)))
                if any(_overlaps(f, p) for f in force_new):
                    change.replaces = True
                    reasons.append(f"force-new {p}")
                for rule_path, predicate, why in conditional:
                    if not _overlaps(rule_path, p):
                        continue
                    if predicate is None:
                        step.notes.append(f"`{p}` may replace: {why}")
                        notes.append(f"{n.name}: `{p}` changed and may replace the resource ({why}); not evaluated offline")
                        continue
                    old_value, new_value = _get(olds_in, rule_path), _get(news, rule_path)
                    if _is_unknown(new_value) or _is_unknown(old_value):
                        hit = True  # unknown: the bridge plans a replacement
                    else:
                        try:
                            hit = bool(predicate(None if old_value is _MISSING else old_value, None if new_value is _MISSING else new_value))
                        except Exception:
                            hit = True
                    if hit:
                        change.replaces = True
                        reasons.append(f"{rule_path}: {why}")
                changes.append(change)
            stop_start = _table(tables.stop_start_paths, n, frozenset())
            step.stop_start = sorted({p for p in paths for s in stop_start if _overlaps(s, p)} - {c.path for c in changes if c.replaces})
        # replace_on_changes (applyReplaceOnChanges)
        for change in changes:
            if any(_contains(r, change.path) for r in n.replace_on_changes or []):
                if not change.replaces:
                    change.replaces = True
                    reasons.append(f"replace_on_changes {change.path}")
        step.changes = changes
        step.replace_reasons = list(dict.fromkeys(reasons))

        if step.replace_reasons:
            step.op = "replace"
            step.delete_before_replace = _delete_before_replace(n.delete_before_replace, None if engine_level else dbr_from_provider)
            replaced.add(n.urn)
            if n.protect and o.protect:
                errors.append(f"{n.name} is protected and cannot be replaced ({'; '.join(step.replace_reasons)})")
        elif changes:
            step.op = "update"
            for change in changes:
                rejection = _rejected_update(n.type, change)
                if rejection:
                    errors.append(f"{n.name}: {rejection}")
                    step.flag = step.flag or f"REJECTED BY AWS {n.name}: `{change.path}` {change.old} → {change.new}"
        if step.old_urn and step.op != "replace":
            rewrites[n.urn] = [
                (str(n.outputs[k]), str(o.outputs[k])) for k in sorted(set(n.outputs or {}) & set(o.outputs or {}))
                if isinstance(n.outputs[k], str) and isinstance(o.outputs[k], str) and n.outputs[k] != o.outputs[k] and len(n.outputs[k]) >= 6
            ]

        kind = _flag_kind(n)
        if step.flag:
            pass
        elif kind and step.op == "replace":
            step.flag = f"REPLACE {kind} {n.name} ({'; '.join(_brief(r) for r in step.replace_reasons)})"
        elif kind and step.stop_start:
            step.flag = f"STOP/START {kind} {n.name} (changes {', '.join(step.stop_start)})"
        for change in step.ignored:
            what = "accepted, takes effect only on replacement nodes" if n.type == SERVER_INSTANCE else "accepted by ignore_changes: not applied to the existing resource"
            notes.append(f"{n.name}: `{change.path}` changed but ignored — {what}")

    # -- removed resources -----------------------------------------------------------------
    claimed_old = {o.urn for o in matched.values()}
    removed = [o for o in old_regs if o.urn not in claimed_old]

    # -- ordering ----------------------------------------------------------------------------
    # Update phase: creates/updates/replacement creates in dependency order; a delete-before-
    # replace first deletes the replaced dependents (reverse dependency order), then itself.
    steps: list[Step] = []
    early_deleted: set[str] = set()  # old URNs deleted inside the update phase
    delete_steps_early: dict[str, Step] = {}
    for n in order:
        step = decisions[n.urn]
        if step.op == "replace" and step.delete_before_replace:
            o = matched[n.urn]
            chain = [d for d in _replaced_dependents(n.urn, new_graph, replaced) if matched[d].urn not in early_deleted]
            # Every delete of the chain is generated (sg.deletes) before any runs, and the old
            # copy is marked deleted too (5cd93859e8): a dependent deleted_with one of them
            # makes no provider call (isDeletedWith at apply time).
            chain_olds = {o.urn} | {matched[d].urn for d in chain}
            for d in reversed(chain):
                dep_step = decisions[d]
                dep_step.delete_before_replace = True
                dep_step.notes.append(f"deleted before {n.name} is replaced (delete-before-replace chain)")
                delete = _delete_step(matched[d], phase="update", dbr=True)
                delete.skipped = bool(matched[d].deleted_with) and matched[d].deleted_with in chain_olds | early_deleted
                steps.append(delete)
                early_deleted.add(matched[d].urn)
            if o.urn not in early_deleted:
                steps.append(_delete_step(o, phase="update", dbr=True))
                early_deleted.add(o.urn)
        steps.append(step)

    # Delete phase: removed resources and the old copies of create-before-delete replacements.
    old_graph = DependencyGraph(old_regs)
    condemned = {o.urn for o in removed}
    condemned |= {matched[u].urn for u in replaced if matched[u].urn not in early_deleted}
    rounds = schedule_rounds(old_graph, condemned)
    all_deletes = condemned | early_deleted
    delete_phase = []
    for urn in sorted(condemned, key=lambda u: (rounds[u], u)):
        o = olds[urn]
        is_replacement = urn not in {r.urn for r in removed}
        d = _delete_step(o, phase="delete", dbr=False, replacement=is_replacement)
        d.round = rounds[urn]
        d.skipped = bool(o.deleted_with) and o.deleted_with in all_deletes
        d.notes.append("old copy of a create-before-delete replacement" if is_replacement else "removed from the program")
        if not is_replacement:
            kind = _flag_kind(o)
            if kind:
                d.flag = f"DELETE {kind} {o.name} (removed from the program)"
        delete_phase.append(d)
    steps += delete_phase
    _launch_template_rollouts(steps, new_regs, notes)
    _rds_modifications(steps, new_regs, notes)
    for seq, step in enumerate(steps, 1):
        step.seq = seq

    collisions = _collisions(steps, decisions, matched, olds, effective, new_regs, new_graph, replaced, removed)
    secrets = _secret_strings(old) | _secret_strings(new)
    return Plan(steps=steps, collisions=collisions, notes=list(dict.fromkeys(notes)), title=title, secrets=secrets, errors=errors)


# Group changes that start an instance refresh (terraform-provider-aws
# internal/service/autoscaling/group.go, resourceGroupUpdate: `shouldRefreshInstances` on a
# change of launch_configuration, launch_template or mixed_instances_policy, else on a change
# of any property named in instance_refresh.triggers; no refresh without instance_refresh).
REFRESH_PATHS = ("launchConfiguration", "launchTemplate", "mixedInstancesPolicy")
GROUP = "aws:autoscaling/group:Group"


def _camel(name: str) -> str:
    head, *rest = str(name).split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def instance_refresh_starts(group_inputs: Mapping[str, Any], changed_paths: Iterable[str]) -> bool:
    """Whether an update of an Auto Scaling group with these inputs and changes rolls its
    instances (starts an instance refresh)."""
    refresh = group_inputs.get("instanceRefresh")
    if not isinstance(refresh, Mapping) or not refresh:
        return False
    changed = list(changed_paths)
    if any(_overlaps(path, c) for path in REFRESH_PATHS for c in changed):
        return True
    triggers = [_camel(t) for t in refresh.get("triggers") or [] if t]
    return any(_overlaps(t, c) for t in triggers for c in changed)


def _launch_template_rollouts(steps: list, new_regs, notes: list) -> None:
    """A launch template update creates a new version (terraform-provider-aws
    resourceLaunchTemplateUpdate: CreateLaunchTemplateVersion, latest_version + 1), so an
    Auto Scaling group whose version follows `latest_version` is updated (the mocks cannot
    bump the version, so the plan adds that change). A group update rolls the group's
    instances only when the group has an instance refresh that the change triggers
    (instance_refresh_starts); otherwise the running instances keep the old version."""
    changed = {step.urn for step in steps if step.type == "aws:ec2/launchTemplate:LaunchTemplate" and step.op in ("update", "replace")}
    by_urn = {r.urn: r for r in new_regs}
    for step in steps:
        r = by_urn.get(step.urn)
        if r is None or step.type != GROUP or step.replacement or step.op == "delete":
            continue
        version = (r.inputs.get("launchTemplate") or {}).get("version") if isinstance(r.inputs.get("launchTemplate"), Mapping) else None
        follows = set(r.property_dependencies.get("launchTemplate", [])) & changed and version not in ("$Latest", "$Default")
        # Also when the group updates for another reason (new tags, say): the new version
        # comes with it.
        if follows and step.op in ("same", "update"):
            step.op = "update"
            if not any(_overlaps("launchTemplate", c.path) for c in step.changes):
                step.changes.append(Change("launchTemplate.version", "n", "n+1"))
        if step.op != "update":
            continue
        paths = [c.path for c in step.changes]
        if instance_refresh_starts(r.inputs, paths):
            refresh = r.inputs["instanceRefresh"]
            message = (f"{step.name}: a new launch template version rolls its instance (instance refresh, "
                       f"{refresh.get('strategy', 'Rolling')}); for the NGINX load balancer that is a short outage while the replacement boots"
                       if any(_overlaps("launchTemplate", p) for p in paths) else
                       f"{step.name}: the change of {', '.join(paths)} starts an instance refresh: its instances are rolled")
        elif any(_overlaps(path, p) for path in REFRESH_PATHS for p in paths):
            message = (f"{step.name}: the launch template changes but the group starts no instance refresh: its running "
                       "instances keep the old version until they are replaced (start an instance refresh by hand)")
        else:
            continue
        step.notes.append(message)
        notes.append(message)


# RDS modifications that `apply_immediately` holds for the maintenance window (RDS
# ModifyDBInstance, ApplyImmediately), and what each does when applied now (RDS User
# Guide, "Settings for DB instances" and "Multi-AZ DB instance deployments").
RDS_DEFERRABLE = {
    "instanceClass": "an outage while the instance is changed (Multi-AZ: the standby first, then a failover, "
                     "typically 60-120 s)",
    "engineVersion": "an outage while MySQL is upgraded (Multi-AZ too: primary and standby are upgraded together)",
    "multiAz": "no outage; slower I/O while the standby is created from a snapshot",
    "allocatedStorage": "no outage; storage optimization follows, and storage cannot change again for 6 hours",
}


def _rds_modifications(steps: list, new_regs, notes: list) -> None:
    """An in-place update of an RDS instance with `applyImmediately` false reports success
    while RDS keeps the change pending until the next maintenance window: say so, or, when
    applied now, what it costs."""
    by_urn = {r.urn: r for r in new_regs}
    for step in steps:
        r = by_urn.get(step.urn)
        if r is None or step.type != RDS_INSTANCE or step.op != "update" or step.replacement:
            continue
        if [c.path for c in step.changes] == ["applyImmediately"]:
            # terraform-provider-aws v6.58.0 resourceInstanceUpdate sends ModifyDBInstance
            # whenever anything but a few listed attributes changed, applyImmediately too; the
            # request always carries DeletionProtection at its current value
            # (dbInstancePopulateModify: "Always set this"), so it is a modification that
            # changes nothing, not an empty one.
            message = (f"{step.name}: only `applyImmediately` changes: the provider sends RDS a modification that "
                       "restates deletionProtection and changes nothing on the database; the setting governs the "
                       "next edit of the instance")
            step.notes.append(message)
            notes.append(message)
            continue
        paths = [c.path for c in step.changes if c.path in RDS_DEFERRABLE]
        if not paths:
            continue
        listed = ", ".join(f"`{p}`" for p in paths)
        if r.inputs.get("applyImmediately") is True:
            effects = "; ".join(f"`{p}`: {RDS_DEFERRABLE[p]}" for p in paths)
            message = f"{step.name}: {listed} applies during this `pulumi up` (dbApplyImmediately: true): {effects}"
        else:
            message = (f"{step.name}: {listed} waits for the next maintenance window (dbApplyImmediately: false): "
                       "`pulumi up` succeeds while RDS holds the change as pending (a refresh reads the old value "
                       "until then, so the change shows again); set dbApplyImmediately: true to make it now")
        step.notes.append(message)
        notes.append(message)


def _table(lookup: Callable[[str], Any], r: Registration, default: Any, notes: Optional[list] = None) -> Any:
    """Provider tables cover bridged resources only: not components, providers, dynamic or
    Kubernetes resources (their rules are above). An unknown type is a loud note, not a crash."""
    if not r.custom or r.type.startswith(("pulumi:", DYNAMIC_PREFIX, "kubernetes:")):
        return default
    try:
        return lookup(r.type)
    except KeyError:
        if notes is not None:
            notes.append(f"**no force-new data for {r.type}: its changes were planned as in-place updates — check by hand**")
        return default


def _is_secret(path: str, n: Registration, o: Optional[Registration]) -> bool:
    return any(_overlaps(p, path) for p in _secret_paths(n, o))


def _delete_before_replace(option: Optional[bool], from_provider: Optional[bool]) -> bool:
    """continueStepsFromDiff (2043-2046): the provider's choice unless the option was set."""
    return bool(from_provider) if option is None else bool(option)


def _trigger_replaces(new: Any, old: Any) -> bool:
    """shouldTriggerReplace (step_generator.go:3683-3698)."""
    if _has_unknown(new) or _has_unknown(old):
        return True
    if new is None or old is None:
        return False
    return new != old


def _delete_step(o: Registration, phase: str, dbr: bool, replacement: bool = True) -> Step:
    return Step(op="delete", urn=o.urn, type=o.type, name=o.name, custom=o.custom, phase=phase,
                delete_before_replace=dbr, replacement=replacement)


def _replaced_dependents(root: str, graph: DependencyGraph, replaced: set[str]) -> list[str]:
    """Replaced resources reachable from `root` through replaced dependents, in dependency order."""
    found = {root}
    for r in graph.order:
        if r.urn in found or r.urn not in replaced:
            continue
        if direct_edges(r) & found:
            found.add(r.urn)
    found.discard(root)
    return [r.urn for r in graph.order if r.urn in found]


def _collisions(steps, decisions, matched, olds, effective, new_regs, new_graph, replaced, removed) -> list[Collision]:
    """Two resources holding one physical identity at the same moment.

    Holders (old state): a removed resource or the old copy of a create-before-delete
    replacement holds its identity until the delete phase — after every create and update;
    an old resource updated to another identity releases it at its update; a same/updated
    resource keeping its identity holds it for good. Claims (new state): creates,
    replacement creates and updates that change the identity.
    """
    new_by_urn = {r.urn: r for r in new_regs}
    old_to_new = {o.urn: n for n, o in matched.items()}
    seq = {}
    for s in steps:
        seq.setdefault((s.urn, s.op), s.seq)

    def live(r, inputs):  # identities held while the resource exists (not delete-time names)
        return [i for i in identities(r, inputs) if i[0] != "rds-final-snapshot"]

    holders = []  # (identity, old urn, release kind, releasing new urn or "")
    for o in olds.values():
        n_urn = old_to_new.get(o.urn)
        for identity in live(o, o.inputs):
            if n_urn is None:
                holders.append((identity, o.urn, "delete-phase", ""))
                continue
            step = decisions[n_urn]
            if step.op == "replace":
                holders.append((identity, o.urn, "dbr" if step.delete_before_replace else "delete-phase", n_urn))
            elif identity in live(new_by_urn[n_urn], effective[n_urn]):
                holders.append((identity, o.urn, "never", n_urn))
            else:
                holders.append((identity, o.urn, "update", n_urn))

    found: list[Collision] = []
    seen = set()
    for n in new_regs:
        step = decisions[n.urn]
        if step.op == "same":
            continue
        mine = live(n, effective[n.urn])
        if step.op == "update":
            before = live(matched[n.urn], matched[n.urn].inputs)
            mine = [i for i in mine if i not in before]
        own_old = matched.get(n.urn)
        for identity in mine:
            for held, holder, release, releaser in holders:
                if not _claims_clash(held, identity):
                    continue
                if own_old is not None and holder == own_old.urn:
                    if step.op == "replace" and not step.delete_before_replace:
                        why = ("the new copy is created while the old one still exists and still holds it"
                               if identity[0] == "tg-association" else
                               "create-before-delete replacement keeps the same identity: the new copy is created while the old one still exists (set delete_before_replace or change the name)")
                        _add(found, seen, Collision(identity, n.urn, holder, True, why))
                    continue
                if release == "delete-phase":
                    why = "the holder is deleted only after every create and update (step_generator.go:2164)"
                    _add(found, seen, Collision(identity, n.urn, holder, True, why))
                elif release == "never":
                    why = "the holder keeps this identity in the new state: a permanent duplicate"
                    _add(found, seen, Collision(identity, n.urn, holder, True, why))
                else:  # released inside the update phase by releaser's update or DBR delete
                    if releaser in new_graph.transitive_dependencies(new_graph.dependencies_of(n.urn)):
                        continue  # the claimant waits for the releaser
                    if n.urn in new_graph.transitive_dependencies(new_graph.dependencies_of(releaser)):
                        why = "the holder's update waits for this step, so the identity is still taken"
                        _add(found, seen, Collision(identity, n.urn, holder, True, why))
                    else:
                        why = f"the holder moves off this identity in its own {'update' if release == 'update' else 'delete-before-replace'}, in parallel with this step"
                        _add(found, seen, Collision(identity, n.urn, holder, False, why))
    # Two resources of the new state with one identity.
    final: dict[tuple, list[str]] = {}
    for n in new_regs:
        for identity in identities(n, effective[n.urn]):
            final.setdefault(identity, []).append(n.urn)
    associations: dict[Any, dict[Any, str]] = {}
    for identity, urns in final.items():
        if identity[0] == "tg-association":
            associations.setdefault(identity[1], {}).setdefault(identity[2], urns[0])
    for group, balancers in associations.items():
        claimants = list(balancers.values())
        for other in claimants[1:]:
            _add(found, seen, Collision(("tg-association", group, "two load balancers"), other, claimants[0], True,
                                        "listeners on two load balancers of the new state forward to one target group"))
    for identity, urns in final.items():
        if len(urns) > 1 and identity[0] not in ("rds-final-snapshot", "tg-association"):
            for other in urns[1:]:
                _add(found, seen, Collision(identity, other, urns[0], True, "two resources of the new state claim it"))
    # RDS final snapshot names are used at delete time.
    deleted_snapshots = {}
    for o in list(removed) + [matched[u] for u in replaced]:
        for identity in identities(o, o.inputs):
            if identity[0] == "rds-final-snapshot":
                deleted_snapshots.setdefault(identity, []).append(o.urn)
    for identity, urns in deleted_snapshots.items():
        for other in urns[1:]:
            _add(found, seen, Collision(identity, other, urns[0], True, "two deletes in this operation write the same final snapshot"))
        if identity in final:
            _add(found, seen, Collision(identity, final[identity][0], urns[0], True,
                                        "the delete writes this final snapshot; the next delete of the new instance will fail with DBSnapshotAlreadyExists"))
    return found


def _add(found: list, seen: set, collision: Collision) -> None:
    key = (collision.identity, collision.claimant, collision.holder)
    if key not in seen:
        seen.add(key)
        found.append(collision)
