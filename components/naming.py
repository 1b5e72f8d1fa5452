"""Names and tags shared by every component."""

from __future__ import annotations

import pulumi

PROJECT = "rancher-ha"


def stack_name() -> str:
    return pulumi.get_stack()


def parameter_root() -> str:
    """SSM path of this stack; instance roles are scoped below it."""
    return f"/{PROJECT}/{stack_name()}"


def tags(name: str, **extra: str) -> dict[str, str]:
    return {"Name": f"{PROJECT}-{stack_name()}-{name}", "rancher-ha:stack": stack_name(), **extra}


def child(parent: pulumi.Resource, **options) -> pulumi.ResourceOptions:
    """Options for a component's child: always parented, so URNs and previews nest."""
    return pulumi.ResourceOptions(parent=parent, **options)
