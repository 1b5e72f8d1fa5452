"""The K3s/RKE2 server nodes: instance role, per-node user data and the instances.

Per-node user data carries only non-secret data: the boot script, the base config and
proxy settings. Everything that changes over a cluster's life (Rancher version and
values) stays out of it, and the instances ignore later user-data and AMI changes, so
no `pulumi up` ever replaces etcd members as a side effect.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from rendering import cloud_init, node_config
from settings import placement

from .ec2_instance import InstanceSpec, hardened_instance, ubuntu_2404_ami
from .instance_role import InstanceRole, InstanceRoleArgs, Statement
from .naming import child
from .secure_parameters import SecureParameters, SecureParametersArgs

NODE_PARAMETER_PATH_SUFFIX = "node"


@dataclass
class ClusterNodesArgs:
    distribution: str
    server_count: int
    kubernetes_version: str
    region: str
    # Resolved to a string before node_boot_spec (an Output in the program: StackIdentity).
    parameter_path: pulumi.Input[str]
    instance_type: str
    root_volume_gb: int
    subnet_ids: Sequence[pulumi.Input[str]]
    public_ip: bool
    security_group_id: pulumi.Input[str]
    imds_hop_limit: int
    # Names, not addresses: known before any load balancer exists (components/dns.py).
    tls_sans: Sequence[str]
    cluster_cidr: str
    service_cidr: str
    ingress_controller: str
    # RKE2: the round-robin registration name joiners (and a replaced first server) use.
    registration_hostname: Optional[str] = None
    etcd_snapshots: Optional[node_config.EtcdSnapshots] = None
    # An Output bucket name replaces etcd_snapshots.s3_bucket (created by the stack).
    etcd_snapshot_bucket: Optional[pulumi.Input[str]] = None
    etcd_snapshot_bucket_arn: Optional[pulumi.Input[str]] = None
    proxy: Optional[cloud_init.ProxySpec] = None
    ssh_key_name: Optional[str] = None
    session_manager: bool = False
    # The server role's permissions boundary (setting iamPermissionsBoundary: a policy name or ARN), or None.
    permissions_boundary: Optional[str] = None
    # Load balancer port -> target group ARN; every server registers in each.
    target_groups: Mapping[int, pulumi.Input[str]] = field(default_factory=dict[int, pulumi.Input[str]])
    # Secrets the nodes read at boot besides the generated token, by SSM name below
    # parameter_path: the cluster CA files (tls/...). The servers are created after these.
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict[str, pulumi.Input[str]])
    # Secrets that appear while the servers boot (the datastore DSN, once RDS exists):
    # the servers do not wait for them; the boot script does, bounded.
    late_secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict[str, pulumi.Input[str]])
    # RKE2: the S3 snapshot a newly created first server restores (docs/disaster-recovery.md).
    etcd_restore_snapshot: Optional[str] = None


def node_boot_spec(args: ClusterNodesArgs, index: int, bucket: Optional[str], parameter_prefix: str) -> cloud_init.NodeBootSpec:
    first = index == 0
    rke2 = args.distribution == "rke2"
    # RKE2 servers after the first join through the registration name; K3s servers
    # share the external datastore and need no join address.
    registration_url = f"https://{args.registration_hostname}:9345" if rke2 and args.registration_hostname else None
    snapshots = args.etcd_snapshots
    if snapshots is not None and bucket is not None:
        snapshots = dataclasses.replace(snapshots, s3_bucket=bucket, s3_region=args.region)
    config = node_config.server_config(
        node_config.ServerConfigSpec(
            distribution=args.distribution,
            tls_sans=list(args.tls_sans),
            cluster_cidr=args.cluster_cidr,
            service_cidr=args.service_cidr,
            # The first server's user data never names a server: it decides at boot
            # (join if the cluster was initialized before, see the boot script).
            registration_url=None if first else registration_url,
            ingress_controller=args.ingress_controller if rke2 else None,
            etcd_snapshots=snapshots if rke2 else None,
        )
    )
    return cloud_init.NodeBootSpec(
        distribution=args.distribution,
        first_server=first,
        region=args.region,
        parameter_prefix=parameter_prefix,
        kubernetes_version=args.kubernetes_version,
        config=config,
        # RKE2 joiners get the CA from a running server over the supervisor. K3s
        # servers may start in any order against the shared datastore, so all get it.
        deliver_cluster_ca=first or not rke2,
        registration_url=registration_url,
        proxy=args.proxy,
        etcd_restore_snapshot=args.etcd_restore_snapshot if (first and rke2) else None,
    )


def snapshot_statements(bucket_arn: str, folder: str) -> list[Statement]:
    """What the K3s/RKE2 S3 client needs, and no more.

    Before any upload the client calls HeadBucket (minio BucketExists), which AWS
    authorises as s3:ListBucket on the bucket with no s3:prefix in the request
    context: a ListBucket grant with a prefix condition denies it, and snapshots then
    silently stay local. ListBucket is therefore granted on the stack's own bucket
    without a condition; object access stays limited to the snapshot folder.
    """
    return [
        {"Sid": "FindAndListSnapshotBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": bucket_arn},
        {
            "Sid": "ReadWriteSnapshots",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": f"{bucket_arn}/{folder}/*",
        },
    ]


class ClusterNodes(pulumi.ComponentResource):
    instances: list[aws.ec2.Instance]
    private_ips: list[pulumi.Output[str]]
    instance_ids: list[pulumi.Output[str]]
    role_arn: pulumi.Output[str]
    user_data: list[pulumi.Output[str]]

    def __init__(self, name: str, args: ClusterNodesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:cluster:ClusterNodes", name, None, opts)

        extra_statements = None
        if args.etcd_snapshot_bucket_arn is not None and args.etcd_snapshots is not None:
            folder = args.etcd_snapshots.s3_folder
            extra_statements = pulumi.Output.from_input(args.etcd_snapshot_bucket_arn).apply(
                lambda arn: snapshot_statements(arn, folder)
            )
        role = InstanceRole(
            f"{name}-server",
            InstanceRoleArgs(
                region=args.region,
                parameter_path=args.parameter_path,
                extra_statements=extra_statements,
                description=f"rancher-ha {args.distribution} servers",
                session_manager=args.session_manager,
                permissions_boundary=args.permissions_boundary,
            ),
            opts=child(self),
        )
        ami = ubuntu_2404_ami(self)
        # The join token: letters and digits only, so it is safe in YAML and URLs.
        token = random.RandomPassword(f"{name}-token", length=48, special=False, opts=child(self))
        parameters = SecureParameters(
            f"{name}-secrets",
            SecureParametersArgs(path=args.parameter_path, values={"token": token.result, **args.secrets}),
            opts=child(self),
        )
        if args.late_secrets:
            # Not a dependency of the servers: they boot while these are still coming.
            SecureParameters(
                f"{name}-late-secrets",
                SecureParametersArgs(
                    path=args.parameter_path,
                    values=dict(args.late_secrets),
                    # The first release kept the DSN with the other secrets.
                    previously_in=(f"{name}-secrets", parameters),
                ),
                opts=child(self),
            )

        self.instances, self.user_data = [], []
        for index in range(args.server_count):
            server = f"{name}-server-{index}"
            user_data = pulumi.Output.all(args.etcd_snapshot_bucket, args.parameter_path).apply(
                lambda values, index=index: cloud_init.node_user_data(
                    node_boot_spec(args, index, values[0], values[1])
                )
            )
            instance = hardened_instance(
                self,
                InstanceSpec(
                    name=server,
                    ami=ami,
                    instance_type=args.instance_type,
                    # Round-robin over the subnets spreads servers across zones.
                    subnet_id=placement.subnet_of(index, args.subnet_ids),
                    security_group_ids=[args.security_group_id],
                    instance_profile=role.profile_name,
                    user_data=user_data,
                    root_volume_gb=args.root_volume_gb,
                    public_ip=args.public_ip,
                    imds_hop_limit=args.imds_hop_limit,
                    ssh_key_name=args.ssh_key_name,
                    replace_on_user_data_change=False,
                    # A running etcd member is never replaced or restarted by a config
                    # edit: new AMIs, boot settings, a key pair or an instance type apply
                    # to replacement servers only (see "Day 2" in README.md), one at a time.
                    ignore_changes=["ami", "userData", "keyName", "instanceType"],
                    depends_on=[parameters],
                ),
            )
            for position, (port, group_arn) in enumerate(sorted(args.target_groups.items())):
                aws.lb.TargetGroupAttachment(
                    f"{server}-{port}",
                    target_group_arn=group_arn,
                    target_id=instance.id,
                    # The first release named these by position.
                    opts=child(self, aliases=[pulumi.Alias(name=f"{server}-tg-{position}")]),
                )
            self.instances.append(instance)
            self.user_data.append(user_data)

        self.role_arn = role.role_arn
        self.private_ips = [instance.private_ip for instance in self.instances]
        self.instance_ids = [instance.id for instance in self.instances]
        self.register_outputs({"private_ips": self.private_ips, "instance_ids": self.instance_ids})
