"""An AWS Network Load Balancer in TCP mode (the only mode Rancher supports on an NLB)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from .naming import child, tags


PUBLIC_PORTS = [80, 443, 6443]  # Rancher, and the API for admins and the readiness gate
# Joining RKE2 servers reach the supervisor (and API) privately: from a private subnet,
# an internet-facing NLB's public address is reached through NAT, and security-group
# rules that reference the node group never match such traffic.
INTERNAL_PORTS = [6443, 9345]


@dataclass
class NetworkLoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    ports: list[int]
    internal: bool = False


class NetworkLoadBalancer(pulumi.ComponentResource):
    address: pulumi.Output[str]  # what nodes put in tls-san and the kubeconfig uses
    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]
    target_group_arns: dict[int, pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkLoadBalancerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:loadbalancer:NetworkLoadBalancer", name, None, opts)
        balancer = aws.lb.LoadBalancer(
            name,
            load_balancer_type="network",
            internal=args.internal,
            subnets=list(args.subnet_ids),
            security_groups=[args.security_group_id],
            # Off by default on NLBs: with it off, a zone whose node is down black-holes
            # the share of traffic DNS sends to that zone.
            enable_cross_zone_load_balancing=True,
            tags=tags(name),
            opts=child(self),
        )
        self.target_group_arns = {}
        for port in args.ports:
            group = aws.lb.TargetGroup(
                f"{name}-{port}",
                port=port,
                protocol="TCP",
                target_type="instance",
                vpc_id=args.vpc_id,
                # Instance targets keep the client IP by default, and a node that reaches
                # itself through the NLB (a joining server on 9345/6443, the local
                # cluster agent on 443) then times out: the hairpin. Off on every group.
                preserve_client_ip="false",
                deregistration_delay="30",
                health_check=aws.lb.TargetGroupHealthCheckArgs(
                    protocol="TCP",
                    port="traffic-port",
                    healthy_threshold=3,
                    unhealthy_threshold=3,
                    interval=10,
                ),
                tags=tags(f"{name}-{port}"),
                opts=child(self),
            )
            aws.lb.Listener(
                f"{name}-{port}",
                load_balancer_arn=balancer.arn,
                port=port,
                protocol="TCP",
                default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=group.arn)],
                tags=tags(f"{name}-{port}"),
                opts=child(self),
            )
            self.target_group_arns[port] = group.arn

        self.address = balancer.dns_name
        self.dns_name = balancer.dns_name
        self.zone_id = balancer.zone_id
        self.register_outputs(
            {"dns_name": self.dns_name, "zone_id": self.zone_id, "target_group_arns": list(self.target_group_arns.values())}
        )
