"""Names and tags shared by every component."""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence, TypedDict, Unpack

import pulumi
import pulumi_random as random

PROJECT = "rancher-ha"


def stack_name() -> str:
    return pulumi.get_stack()


def stack_label(limit: int = 40) -> str:
    """The stack name as a DNS label / S3 / RDS name part: lowercase letters, digits and
    single hyphens ("Prod_EU.1" -> "prod-eu-1")."""
    label = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", stack_name().lower())).strip("-")[:limit].strip("-")
    return label or "stack"


# Tag keys that scope IAM grants: the stack's unique identity and a machine's role.
STACK_ID_TAG = f"{PROJECT}:stack-id"
ROLE_TAG = f"{PROJECT}:role"


def tags(name: str, **extra: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    return {"Name": f"{PROJECT}-{stack_name()}-{name}", "rancher-ha:stack": stack_name(), **extra}


class StackIdentity(pulumi.ComponentResource):
    """What no other stack shares, even one of the same project and stack name deployed
    from another state (another team's fork) in the same account and region.

    `stack_id` is `<stack>/<8 random hex digits>`, generated once and kept in the state;
    `parameter_root` is `/rancher-ha/<stack_id>`, the SSM path every instance role is
    scoped below. SSM names are unique per account and region, so a shared path meant
    `ParameterAlreadyExists` and, worse, each stack's nodes could read the other's CA keys.
    """

    stack_id: pulumi.Output[str]
    parameter_root: pulumi.Output[str]
    unique_suffix: pulumi.Output[str]  # the random part alone (for names with a stricter alphabet)

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:naming:StackIdentity", name, None, opts)
        suffix = random.RandomId(f"{name}-id", byte_length=4, opts=child(self))
        self.unique_suffix = suffix.hex
        self.stack_id = pulumi.Output.concat(stack_name(), "/", suffix.hex)
        self.parameter_root = pulumi.Output.concat("/", PROJECT, "/", self.stack_id)
        self.register_outputs({"stack_id": self.stack_id, "parameter_root": self.parameter_root})


# Resources every child waits for (the identity lock). A component's depends_on does
# not reach its children (the engine orders by each resource's own dependencies), so
# child() adds it to every one of them.
_ALL_CHILDREN_WAIT_FOR: list[pulumi.Resource] = []


def children_wait_for(*resources: pulumi.Resource) -> None:
    """Make every resource created through child() from now on depend on these."""
    _ALL_CHILDREN_WAIT_FOR[:] = list(resources)


class ChildOptions(TypedDict, total=False):
    """The resource options components give their children (child() adds the parent)."""

    aliases: Optional[Sequence[pulumi.Input[str | pulumi.Alias]]]
    deleted_with: pulumi.Resource
    depends_on: Sequence[pulumi.Resource]
    ignore_changes: list[str]
    protect: bool
    provider: pulumi.ProviderResource
    replace_with: list[pulumi.Resource]
    replacement_trigger: pulumi.Input[Any]  # pulumi's own type for it


def child(parent: pulumi.Resource, **options: Unpack[ChildOptions]) -> pulumi.ResourceOptions:
    """Options for a component's child: always parented, so URNs and previews nest."""
    if _ALL_CHILDREN_WAIT_FOR:
        options["depends_on"] = [*_ALL_CHILDREN_WAIT_FOR, *(options.get("depends_on") or [])]
    return pulumi.ResourceOptions(parent=parent, **options)
