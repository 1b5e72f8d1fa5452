"""Names and tags shared by every component."""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence, TypedDict, Unpack

import pulumi

PROJECT = "rancher-ha"


def stack_name() -> str:
    return pulumi.get_stack()


def stack_label(limit: int = 40) -> str:
    """The stack name as a DNS label / S3 / RDS name part: lowercase letters, digits and
    single hyphens ("Prod_EU.1" -> "prod-eu-1")."""
    label = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", stack_name().lower())).strip("-")[:limit].strip("-")
    return label or "stack"


def parameter_root() -> str:
    """SSM path of this stack; instance roles are scoped below it."""
    return f"/{PROJECT}/{stack_name()}"


def tags(name: str, **extra: str) -> dict[str, str]:
    return {"Name": f"{PROJECT}-{stack_name()}-{name}", "rancher-ha:stack": stack_name(), **extra}


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
