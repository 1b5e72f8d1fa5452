"""Guardrails for rancher-ha stacks (and anything deployed next to them).

Each policy reads the resource's input properties as the engine passes them
(camelCase). They are mandatory in the pack: a violation fails `pulumi preview`.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, Optional

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

Report = Callable[[str, Optional[str]], None]
WORLD = {"0.0.0.0/0", "::/0"}
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
EBS_VOLUME = "aws:ebs/volume:Volume"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
IAM_POLICIES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
PUBLIC_LB_PORTS = {80, 443}


def _stack(args: ResourceValidationArgs) -> str:
    # urn:pulumi:<stack>::<project>::<type>::<name>
    prefix = "urn:pulumi:"
    return args.urn[len(prefix):].split("::", 1)[0] if args.urn.startswith(prefix) else ""


def _is_prod(args: ResourceValidationArgs) -> bool:
    stack = _stack(args)
    return stack == "prod" or stack.startswith("prod-")


def _known(value: Any) -> bool:
    # In a first preview, values from other resources are unknown: judge what is known.
    return value is not None and not (isinstance(value, str) and value.startswith("04da6b54-80e4-46f7-96ec-b56ff0331ba9"))


# --- IMDSv2 -------------------------------------------------------------------------
def _imdsv2(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return
    options = args.props.get("metadataOptions") or {}
    if options.get("httpEndpoint") == "disabled":
        return
    if options.get("httpTokens") != "required":
        report("IMDSv2 must be required (metadataOptions.httpTokens = 'required'): IMDSv1 lets any SSRF read the instance credentials.", None)


# --- encryption ---------------------------------------------------------------------
def _ebs_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type == EBS_VOLUME and args.props.get("encrypted") is not True:
        report("EBS volumes must be encrypted (encrypted: true).", None)
    if args.resource_type == INSTANCE:
        devices = [args.props.get("rootBlockDevice") or {}] + list(args.props.get("ebsBlockDevices") or [])
        if any(device.get("encrypted") is not True for device in devices):
            report("Every EBS volume of an instance must be encrypted (rootBlockDevice/ebsBlockDevices encrypted: true).", None)


def _rds_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type in (RDS_INSTANCE, RDS_CLUSTER) and args.props.get("storageEncrypted") is not True:
        report("RDS storage must be encrypted (storageEncrypted: true).", None)


def _rds_private(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type == RDS_INSTANCE and args.props.get("publiclyAccessible") is True:
        report("RDS instances must not be publicly accessible: the K3s datastore holds the whole cluster state.", None)


# --- network exposure ---------------------------------------------------------------
def _world_rules(args: ResourceValidationArgs) -> Iterable[tuple[str, int, int, str]]:
    """(protocol, from, to, cidr) of every ingress rule open to the internet."""
    props = args.props
    if args.resource_type == SG_INGRESS:
        for cidr in (props.get("cidrIpv4"), props.get("cidrIpv6")):
            if cidr in WORLD:
                yield str(props.get("ipProtocol")), int(props.get("fromPort") or 0), int(props.get("toPort") or 65535), cidr
    elif args.resource_type == SG_RULE and props.get("type") == "ingress":
        for cidr in list(props.get("cidrBlocks") or []) + list(props.get("ipv6CidrBlocks") or []):
            if cidr in WORLD:
                yield str(props.get("protocol")), int(props.get("fromPort") or 0), int(props.get("toPort") or 65535), cidr
    elif args.resource_type == SG:
        for rule in props.get("ingress") or []:
            for cidr in list(rule.get("cidrBlocks") or []) + list(rule.get("ipv6CidrBlocks") or []):
                if cidr in WORLD:
                    yield str(rule.get("protocol")), int(rule.get("fromPort") or 0), int(rule.get("toPort") or 65535), cidr


def _covers(protocol: str, low: int, high: int, port: int) -> bool:
    return protocol in ("-1", "all") or low <= port <= high


def _no_world_except_lb_web(args: ResourceValidationArgs, report: Report) -> None:
    # rancher-ha names load-balancer rules "<firewall>-lb-in-<n>"; only those may face the internet.
    load_balancer_rule = "-lb-in-" in args.name
    for protocol, low, high, cidr in _world_rules(args):
        web_only = protocol == "tcp" and low == high and low in PUBLIC_LB_PORTS
        if not (load_balancer_rule and web_only):
            report(
                f"Ingress {protocol} {low}-{high} from {cidr}: only the load balancer's TCP 80 and 443 may be open "
                "to the internet. Restrict the source (e.g. to adminCidrs).",
                None,
            )


def _no_ssh_from_internet(args: ResourceValidationArgs, report: Report) -> None:
    for protocol, low, high, cidr in _world_rules(args):
        if _covers(protocol, low, high, 22):
            report(f"SSH (22) is open to {cidr}. Use sshKeyName with adminCidrs, or SSM Session Manager.", None)


# --- stateful resources -------------------------------------------------------------
def _prod_datastore_protected(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type in (RDS_INSTANCE, RDS_CLUSTER) and _is_prod(args):
        if args.props.get("deletionProtection") is not True:
            report(f"Datastores in prod stacks need deletionProtection: true (stack '{_stack(args)}').", None)
        if args.props.get("skipFinalSnapshot") is True:
            report("Datastores in prod stacks must take a final snapshot (skipFinalSnapshot: false).", None)


# --- our choice: least-privilege IAM --------------------------------------------------
def _statements(document: Any) -> list[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    if not isinstance(document, Mapping):
        return []
    statements = document.get("Statement") or []
    return [statements] if isinstance(statements, Mapping) else list(statements)


# Actions that name no resource type, so '*' is their only resource (Service Authorization
# Reference, ssmmessages), and ssm:UpdateInstanceInformation that goes with them in AWS's
# Session Manager instance policy. Allowed on '*' only when the statement is limited to
# requests from EC2 instances' role credentials (ec2:SourceInstanceARN).
INSTANCE_AGENT_ACTIONS = {
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
}


def _instance_only_agent_statement(actions: list, condition: Any) -> bool:
    keys = {key.lower() for block in (condition or {}).values() if isinstance(block, Mapping) for key in block}
    return bool(actions) and set(actions) <= INSTANCE_AGENT_ACTIONS and "ec2:sourceinstancearn" in keys


def _no_wildcard_iam(args: ResourceValidationArgs, report: Report) -> None:
    """Instance roles are reachable from every process on a node; keep them narrow."""
    if args.resource_type not in IAM_POLICIES or not _known(args.props.get("policy")):
        return
    for statement in _statements(args.props.get("policy")):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action") or []
        resources = statement.get("Resource") or []
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if any(action == "*" or action.endswith(":*") for action in actions):
            report(f"IAM statement {statement.get('Sid', '')!r} allows wildcard actions {actions}; list the actions needed.", None)
        if "*" in resources and not _instance_only_agent_statement(actions, statement.get("Condition")):
            report(f"IAM statement {statement.get('Sid', '')!r} applies to every resource ('*'); scope it to ARNs.", None)


def _policy(name: str, description: str, validate) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=validate, enforcement_level=EnforcementLevel.MANDATORY)


POLICIES = [
    _policy("imdsv2-required", "EC2 instances and launch templates require IMDSv2.", _imdsv2),
    _policy("ebs-encrypted", "EBS volumes, including instance root volumes, are encrypted.", _ebs_encrypted),
    _policy("rds-encrypted", "RDS storage is encrypted.", _rds_encrypted),
    _policy("rds-not-public", "RDS instances are not publicly accessible.", _rds_private),
    _policy("no-world-ingress-except-lb-web", "Only the load balancer's 80/443 accept traffic from 0.0.0.0/0 or ::/0.", _no_world_except_lb_web),
    _policy("no-ssh-from-internet", "Port 22 is never open to the internet.", _no_ssh_from_internet),
    _policy("prod-datastore-deletion-protection", "Datastores in prod stacks have deletion protection and a final snapshot.", _prod_datastore_protected),
    _policy("iam-no-wildcards", "IAM policies name their actions and resources (no '*').", _no_wildcard_iam),
]
