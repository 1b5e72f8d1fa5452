"""The hardened EC2 instance every rancher-ha machine is built from.

One place decides IMDSv2, the encrypted root volume, the Ubuntu 24.04 image and the
absence of SSH, so server nodes and the NGINX load balancer cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from .naming import child, tags

CANONICAL_OWNER = "099720109477"
UBUNTU_2404_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"


def ubuntu_2404_ami(parent: pulumi.Resource) -> pulumi.Output[str]:
    return aws.ec2.get_ami_output(
        owners=[CANONICAL_OWNER],
        most_recent=True,
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[UBUNTU_2404_NAME]),
            aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
        ],
        opts=pulumi.InvokeOptions(parent=parent),
    ).id


@dataclass
class InstanceSpec:
    name: str
    ami: pulumi.Input[str]
    instance_type: str
    instance_profile: pulumi.Input[str]
    user_data: pulumi.Input[str]
    root_volume_gb: int
    # Either a subnet, security groups and whether to get a public address...
    subnet_id: Optional[pulumi.Input[str]] = None
    security_group_ids: Sequence[pulumi.Input[str]] = ()
    public_ip: bool = False
    # ...or a pre-created network interface that carries all three.
    network_interface_id: Optional[pulumi.Input[str]] = None
    imds_hop_limit: int = 1
    ssh_key_name: Optional[str] = None
    # Server nodes must not be replaced or restarted by a user-data change (etcd
    # quorum); the stateless NGINX instance may.
    replace_on_user_data_change: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    # A replacement must free a pre-created network interface before taking it over.
    delete_before_replace: bool = False
    depends_on: Sequence[pulumi.Resource] = ()


def hardened_instance(parent: pulumi.Resource, spec: InstanceSpec) -> aws.ec2.Instance:
    if spec.network_interface_id is not None:
        placement = dict(
            network_interfaces=[
                aws.ec2.InstanceNetworkInterfaceArgs(network_interface_id=spec.network_interface_id, device_index=0)
            ]
        )
    else:
        placement = dict(
            subnet_id=spec.subnet_id,
            vpc_security_group_ids=list(spec.security_group_ids),
            associate_public_ip_address=spec.public_ip,
        )
    return aws.ec2.Instance(
        spec.name,
        ami=spec.ami,
        instance_type=spec.instance_type,
        **placement,
        iam_instance_profile=spec.instance_profile,
        user_data=spec.user_data,
        user_data_replace_on_change=spec.replace_on_user_data_change,
        key_name=spec.ssh_key_name,
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=spec.imds_hop_limit,
            instance_metadata_tags="disabled",
        ),
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            volume_type="gp3",
            volume_size=spec.root_volume_gb,
            encrypted=True,
            delete_on_termination=True,
        ),
        tags=tags(spec.name),
        volume_tags=tags(spec.name),
        opts=child(
            parent,
            ignore_changes=spec.ignore_changes,
            depends_on=list(spec.depends_on),
            delete_before_replace=spec.delete_before_replace,
        ),
    )
