"""SSM Parameter Store SecureStrings under a stack-scoped path.

This is how secrets reach machines: user data names a parameter, the instance role
may read that path only, and the value never appears in user data or logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from .naming import child, tags


@dataclass
class SecureParametersArgs:
    path: pulumi.Input[str]  # e.g. /rancher-ha/dev/1a2b3c4d/node (StackIdentity.parameter_root)
    values: Mapping[str, pulumi.Input[str]]  # name below the path -> value
    # Where these parameters lived before (component name, component): aliases keep
    # their URNs, so moving one does not create a second parameter of the same name
    # while the first still exists (ParameterAlreadyExists).
    previously_in: Optional[tuple[str, pulumi.Resource]] = None
    # Created only after these (a component's own depends_on does not reach its children).
    depends_on: Sequence[pulumi.Resource] = ()


class SecureParameters(pulumi.ComponentResource):
    parameters: dict[str, aws.ssm.Parameter]

    def __init__(self, name: str, args: SecureParametersArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:secrets:SecureParameters", name, None, opts)
        self.parameters = {}
        for key, value in sorted(args.values.items()):
            suffix = key.replace('/', '-').replace('.', '-')
            resource_name = f"{name}-{suffix}"
            aliases = None
            if args.previously_in is not None:
                old_name, old_parent = args.previously_in
                aliases = [pulumi.Alias(name=f"{old_name}-{suffix}", parent=old_parent)]
            self.parameters[key] = aws.ssm.Parameter(
                resource_name,
                name=pulumi.Output.concat(args.path, "/", key),
                type="SecureString",
                # Certificate chains can pass the 4 KB standard-tier limit.
                tier="Intelligent-Tiering",
                value=pulumi.Output.secret(value),
                tags=tags(resource_name),
                opts=child(self, aliases=aliases, depends_on=list(args.depends_on)),
            )
        self.register_outputs({"names": [self.parameters[key].name for key in sorted(self.parameters)]})
