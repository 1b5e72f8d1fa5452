"""The hardened EC2 instance every rancher-ha machine is built from.

One place decides IMDSv2, the encrypted root volume, the Ubuntu 24.04 image and the
absence of SSH, so server nodes and the NGINX load balancer cannot drift apart.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Optional, Sequence, TypedDict

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


class MetadataOptions(TypedDict):
    """The fields instances and launch templates share for their metadata options."""

    http_endpoint: str
    http_tokens: str
    http_put_response_hop_limit: int
    instance_metadata_tags: str


def metadata_options(hop_limit: int) -> MetadataOptions:
    """IMDSv2 only; hop limit 1 keeps pods (one hop further) away from the credentials."""
    return MetadataOptions(
        http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=hop_limit, instance_metadata_tags="disabled"
    )


@dataclass(kw_only=True)
class MachineSpec:
    """What every rancher-ha machine is made of, launched directly or by a group."""

    name: str
    ami: pulumi.Input[str]
    instance_type: str
    instance_profile: pulumi.Input[str]
    user_data: pulumi.Input[str]
    root_volume_gb: int
    security_group_ids: Sequence[pulumi.Input[str]] = ()
    public_ip: bool = False
    imds_hop_limit: int = 1
    ssh_key_name: Optional[str] = None


@dataclass(kw_only=True)
class InstanceSpec(MachineSpec):
    subnet_id: pulumi.Input[str]
    # Server nodes must not be replaced or restarted by a user-data change (etcd quorum).
    replace_on_user_data_change: bool = False
    ignore_changes: list[str] = field(default_factory=list[str])
    depends_on: Sequence[pulumi.Resource] = ()


def hardened_instance(parent: pulumi.Resource, spec: InstanceSpec) -> aws.ec2.Instance:
    return aws.ec2.Instance(
        spec.name,
        ami=spec.ami,
        instance_type=spec.instance_type,
        subnet_id=spec.subnet_id,
        vpc_security_group_ids=list(spec.security_group_ids),
        associate_public_ip_address=spec.public_ip,
        iam_instance_profile=spec.instance_profile,
        user_data=spec.user_data,
        user_data_replace_on_change=spec.replace_on_user_data_change,
        key_name=spec.ssh_key_name,
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(**metadata_options(spec.imds_hop_limit)),
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            volume_type="gp3",
            volume_size=spec.root_volume_gb,
            encrypted=True,
            delete_on_termination=True,
        ),
        tags=tags(spec.name),
        volume_tags=tags(spec.name),
        opts=child(parent, ignore_changes=spec.ignore_changes, depends_on=list(spec.depends_on)),
    )


# Ubuntu's EC2 images boot from /dev/sda1.
UBUNTU_ROOT_DEVICE = "/dev/sda1"


def hardened_launch_template(parent: pulumi.Resource, spec: MachineSpec) -> aws.ec2.LaunchTemplate:
    """The same hardening as hardened_instance, for machines an Auto Scaling group launches."""
    return aws.ec2.LaunchTemplate(
        spec.name,
        image_id=spec.ami,
        instance_type=spec.instance_type,
        iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(name=spec.instance_profile),
        user_data=pulumi.Output.from_input(spec.user_data).apply(lambda text: base64.b64encode(text.encode()).decode()),
        key_name=spec.ssh_key_name,
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(**metadata_options(spec.imds_hop_limit)),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=UBUNTU_ROOT_DEVICE,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_type="gp3", volume_size=spec.root_volume_gb, encrypted="true", delete_on_termination="true"
                ),
            )
        ],
        network_interfaces=[
            aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                device_index=0,
                associate_public_ip_address="true" if spec.public_ip else "false",
                security_groups=list(spec.security_group_ids),
                delete_on_termination="true",
            )
        ],
        tag_specifications=[
            aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags(spec.name)) for kind in ("instance", "volume", "network-interface")
        ],
        update_default_version=True,
        tags=tags(spec.name),
        # A new Canonical AMI must not roll the load balancer on a routine `pulumi up`;
        # roll it deliberately (`pulumi up --replace` of the template), like a server.
        opts=child(parent, ignore_changes=["imageId"]),
    )
