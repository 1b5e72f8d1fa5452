"""A dedicated NGINX instance as the load balancer (L4 pass-through or L7 TLS), that heals
itself.

An Auto Scaling group of one, across the load-balancer subnets of every zone, runs it.
When the instance or its zone fails, the group launches a replacement in a healthy
zone without anyone running `pulumi up`; at boot that instance takes over the stack's
Elastic IP (the stable address Rancher's DNS records point at) and installs the
configuration and certificate from SSM. A timer re-reads both every few minutes, so a
renewed certificate or a replaced server reaches NGINX without replacing it.

The Elastic IP exists before the nodes (`NginxAddress`); the configuration, which names
the nodes' addresses, is written to SSM after them (`NginxLoadBalancer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from rendering import cloud_init
from rendering.nginx import CERTIFICATE_KEY_PATH, CERTIFICATE_PATH, NginxSpec, render_nginx_conf

from .ec2_instance import MachineSpec, hardened_launch_template, ubuntu_2404_ami
from .instance_role import InstanceRole, InstanceRoleArgs, Statement
from .naming import ROLE_TAG, STACK_ID_TAG, child, tags
from .secure_parameters import SecureParameters, SecureParametersArgs

NGINX_PARAMETER_PATH_SUFFIX = "nginx"
# The role tag of the instances the Auto Scaling group launches: the only ones the
# Elastic IP may be moved onto (servers carry the stack's tags too, never this one).
NGINX_ROLE = "nginx"
NGINX_ROOT_VOLUME_GB = 20
# An instance whose EC2 status checks fail is replaced; new instances get this long to boot.
HEALTH_CHECK_GRACE_SECONDS = 300


@dataclass
class NginxAddressArgs:
    # Elastic IP associations fail at random before the internet gateway is attached.
    depends_on: Sequence[pulumi.Resource] = ()


class NginxAddress(pulumi.ComponentResource):
    address: pulumi.Output[str]  # public (Elastic IP): DNS, admins
    allocation_id: pulumi.Output[str]

    def __init__(self, name: str, args: NginxAddressArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:loadbalancer:NginxAddress", name, None, opts)
        eip = aws.ec2.Eip(name, domain="vpc", tags=tags(name), opts=child(self, depends_on=list(args.depends_on)))
        self.address = eip.public_ip
        self.allocation_id = eip.allocation_id
        self.register_outputs({"address": self.address, "allocation_id": self.allocation_id})


def association_statements(partition: str, region: str, account: str, allocation_id: str, stack_id: str) -> list[Statement]:
    """May move this stack's Elastic IP, onto this stack's NGINX instances only: those
    tagged with the stack's unique identity and the NGINX role (a server of the same
    stack, or an instance of another deployment with the same stack name, is neither)."""
    return [
        {
            "Sid": "TakeOverStackAddress",
            "Effect": "Allow",
            "Action": ["ec2:AssociateAddress"],
            "Resource": f"arn:{partition}:ec2:{region}:{account}:elastic-ip/{allocation_id}",
        },
        {
            "Sid": "OntoStackInstances",
            "Effect": "Allow",
            "Action": ["ec2:AssociateAddress"],
            "Resource": [
                f"arn:{partition}:ec2:{region}:{account}:instance/*",
                f"arn:{partition}:ec2:{region}:{account}:network-interface/*",
            ],
            "Condition": {"StringEquals": {f"aws:ResourceTag/{STACK_ID_TAG}": stack_id, f"aws:ResourceTag/{ROLE_TAG}": NGINX_ROLE}},
        },
    ]


@dataclass
class NginxLoadBalancerArgs:
    hostname: str
    layer: str
    distribution: str
    region: str
    # StackIdentity: the SSM root below which NGINX's parameters live, and the tag value
    # that marks this stack's instances.
    parameter_root: pulumi.Input[str]
    stack_id: pulumi.Input[str]
    node_private_ips: Sequence[pulumi.Input[str]]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    address: NginxAddress
    instance_type: str
    imds_hop_limit: int
    worker_processes: str
    worker_connections: int
    worker_rlimit_nofile: int
    proxy_timeout_seconds: int
    ssh_key_name: Optional[str] = None
    session_manager: bool = False
    # The instance role's permissions boundary (setting iamPermissionsBoundary: a policy name or ARN), or None.
    permissions_boundary: Optional[str] = None
    # L7 only: the served certificate chain and key.
    certificate_pem: Optional[pulumi.Input[str]] = None
    private_key_pem: Optional[pulumi.Input[str]] = None

    def __post_init__(self) -> None:
        if self.layer == "l7":
            self.tls_pair()

    def tls_pair(self) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
        """L7: the served certificate chain and key, both present."""
        if self.certificate_pem is None or self.private_key_pem is None:
            raise ValueError("NginxLoadBalancer layer 'l7' needs certificate_pem and private_key_pem")
        return self.certificate_pem, self.private_key_pem


class NginxLoadBalancer(pulumi.ComponentResource):
    nginx_conf: pulumi.Output[str]
    user_data: pulumi.Output[str]
    group: aws.autoscaling.Group

    def __init__(self, name: str, args: NginxLoadBalancerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:loadbalancer:NginxLoadBalancer", name, None, opts)
        parameter_path = pulumi.Output.concat(args.parameter_root, "/", NGINX_PARAMETER_PATH_SUFFIX)
        self.nginx_conf = pulumi.Output.all(*args.node_private_ips).apply(
            lambda ips: render_nginx_conf(
                NginxSpec(
                    hostname=args.hostname,
                    layer=args.layer,
                    backends=list(ips),
                    distribution=args.distribution,
                    worker_processes=args.worker_processes,
                    worker_connections=args.worker_connections,
                    worker_rlimit_nofile=args.worker_rlimit_nofile,
                    proxy_timeout_seconds=args.proxy_timeout_seconds,
                )
            )
        )
        served: dict[str, pulumi.Input[str]] = {"nginx.conf": self.nginx_conf}
        if args.layer == "l7":
            served["tls.crt"], served["tls.key"] = args.tls_pair()
        # Named as in the first release, which kept only the TLS pair here: the same
        # URNs, so the parameters are updated in place, never created twice.
        SecureParameters(f"{name}-tls", SecureParametersArgs(path=parameter_path, values=served), opts=child(self))

        invoke = pulumi.InvokeOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition
        role = InstanceRole(
            f"{name}-instance",
            InstanceRoleArgs(
                region=args.region,
                parameter_path=parameter_path,
                extra_statements=pulumi.Output.all(partition, account, args.address.allocation_id, args.stack_id).apply(
                    lambda values: association_statements(values[0], args.region, values[1], values[2], values[3])
                ),
                description="rancher-ha NGINX load balancer",
                session_manager=args.session_manager,
                permissions_boundary=args.permissions_boundary,
            ),
            opts=child(self),
        )
        self.user_data = pulumi.Output.all(args.address.allocation_id, parameter_path).apply(
            lambda values: cloud_init.nginx_user_data(
                layer=args.layer,
                region=args.region,
                parameter_prefix=values[1],
                eip_allocation_id=values[0],
                certificate_path=CERTIFICATE_PATH,
                certificate_key_path=CERTIFICATE_KEY_PATH,
            )
        )
        template = hardened_launch_template(
            self,
            MachineSpec(
                name=f"{name}-instance",
                ami=ubuntu_2404_ami(self),
                instance_type=args.instance_type,
                instance_profile=role.profile_name,
                user_data=self.user_data,
                root_volume_gb=NGINX_ROOT_VOLUME_GB,
                security_group_ids=[args.security_group_id],
                # A public address to reach the package mirrors and SSM until the
                # Elastic IP is taken over.
                public_ip=True,
                imds_hop_limit=args.imds_hop_limit,
                ssh_key_name=args.ssh_key_name,
            ),
        )
        self.group = aws.autoscaling.Group(
            f"{name}-group",
            min_size=1,
            max_size=1,
            desired_capacity=1,
            vpc_zone_identifiers=list(args.subnet_ids),
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str)),
            health_check_type="EC2",
            health_check_grace_period=HEALTH_CHECK_GRACE_SECONDS,
            # A new launch template version (instance type, key, boot script) rolls the
            # one instance: it is stateless, everything it serves comes from SSM.
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                # Launch the replacement first (it takes the Elastic IP over when ready),
                # then terminate the old one: no gap on a deliberate roll.
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=100, max_healthy_percentage=200
                ),
            ),
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in tags(f"{name}-instance", **{STACK_ID_TAG: args.stack_id, ROLE_TAG: NGINX_ROLE}).items()
            ],
            # Not after the configuration: the instance boots and installs NGINX while the
            # servers (whose addresses the configuration names) are still being created;
            # its boot waits for the parameters (bounded) like a server's does.
            opts=child(self),
        )
        self.register_outputs({"nginx_conf": self.nginx_conf, "group": self.group.name})
