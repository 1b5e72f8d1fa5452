"""A dedicated NGINX instance as the load balancer (L4 pass-through or L7 TLS).

Built in two parts because of a dependency cycle between names, not resources: nodes
need the load balancer's addresses before they exist (certificates, and the RKE2
registration address), and NGINX needs the nodes' addresses for its upstreams. The
network interface and its Elastic IP come first (`NginxAddress`); the instance that
attaches them is created after the nodes (`NginxLoadBalancer`). Nodes register through
the interface's private address: from a private subnet, the Elastic IP is reached
through NAT, where no security-group rule can recognise them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from rendering import cloud_init
from rendering.nginx import CERTIFICATE_KEY_PATH, CERTIFICATE_PATH, NginxSpec, render_nginx_conf

from .ec2_instance import InstanceSpec, hardened_instance, ubuntu_2404_ami
from .instance_role import InstanceRole, InstanceRoleArgs
from .naming import child, parameter_root, tags
from .secure_parameters import SecureParameters, SecureParametersArgs

NGINX_PARAMETER_PATH_SUFFIX = "nginx"


@dataclass
class NginxAddressArgs:
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]


class NginxAddress(pulumi.ComponentResource):
    address: pulumi.Output[str]  # public (Elastic IP): DNS, admins
    private_address: pulumi.Output[str]  # nodes
    network_interface_id: pulumi.Output[str]

    def __init__(self, name: str, args: NginxAddressArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:loadbalancer:NginxAddress", name, None, opts)
        interface = aws.ec2.NetworkInterface(
            name, subnet_id=args.subnet_id, security_groups=[args.security_group_id], tags=tags(name), opts=child(self)
        )
        eip = aws.ec2.Eip(name, domain="vpc", tags=tags(name), opts=child(self))
        aws.ec2.EipAssociation(name, allocation_id=eip.allocation_id, network_interface_id=interface.id, opts=child(self))
        self.address = eip.public_ip
        self.private_address = interface.private_ip
        self.network_interface_id = interface.id
        self.register_outputs({"address": self.address, "private_address": self.private_address})


@dataclass
class NginxLoadBalancerArgs:
    hostname: str
    layer: str
    distribution: str
    region: str
    node_private_ips: Sequence[pulumi.Input[str]]
    network_interface_id: pulumi.Input[str]
    instance_type: str
    imds_hop_limit: int
    worker_processes: str
    worker_connections: int
    worker_rlimit_nofile: int
    proxy_timeout_seconds: int
    ssh_key_name: Optional[str] = None
    # L7 only: the served certificate chain and key.
    certificate_pem: Optional[pulumi.Input[str]] = None
    private_key_pem: Optional[pulumi.Input[str]] = None


class NginxLoadBalancer(pulumi.ComponentResource):
    private_ip: pulumi.Output[str]
    nginx_conf: pulumi.Output[str]
    user_data: pulumi.Output[str]

    def __init__(self, name: str, args: NginxLoadBalancerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:loadbalancer:NginxLoadBalancer", name, None, opts)
        parameter_path = f"{parameter_root()}/{NGINX_PARAMETER_PATH_SUFFIX}"
        depends_on: list[pulumi.Resource] = []
        if args.layer == "l7":
            certificate = SecureParameters(
                f"{name}-tls",
                SecureParametersArgs(
                    path=parameter_path,
                    values={"tls.crt": args.certificate_pem, "tls.key": args.private_key_pem},
                ),
                opts=child(self),
            )
            depends_on.append(certificate)
        role = InstanceRole(
            f"{name}-instance",
            InstanceRoleArgs(region=args.region, parameter_path=parameter_path, description="rancher-ha NGINX load balancer"),
            opts=child(self),
        )

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
        self.user_data = self.nginx_conf.apply(
            lambda conf: cloud_init.nginx_user_data(
                nginx_conf=conf,
                layer=args.layer,
                region=args.region,
                parameter_prefix=parameter_path,
                certificate_path=CERTIFICATE_PATH,
                certificate_key_path=CERTIFICATE_KEY_PATH,
            )
        )
        instance = hardened_instance(
            self,
            InstanceSpec(
                name=f"{name}-instance",
                ami=ubuntu_2404_ami(self),
                instance_type=args.instance_type,
                network_interface_id=args.network_interface_id,
                instance_profile=role.profile_name,
                user_data=self.user_data,
                root_volume_gb=20,
                imds_hop_limit=args.imds_hop_limit,
                ssh_key_name=args.ssh_key_name,
                # Stateless: a new node list or config is applied by a fresh instance,
                # which takes over the network interface, its addresses and DNS.
                replace_on_user_data_change=True,
                delete_before_replace=True,
                ignore_changes=["ami"],
                depends_on=depends_on,
            ),
        )
        self.private_ip = instance.private_ip
        self.register_outputs({"private_ip": self.private_ip, "nginx_conf": self.nginx_conf})
