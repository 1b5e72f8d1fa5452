"""An AWS Network Load Balancer in TCP mode (the only mode Rancher supports on an NLB)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from .naming import child, tags


PUBLIC_PORTS = [80, 443, 6443]  # Rancher, and the API for admins and the readiness gate


@dataclass(frozen=True)
class HealthCheck:
    """How a target group decides a node is worth sending traffic to."""

    protocol: str  # TCP | HTTP | HTTPS
    port: str = "traffic-port"
    path: Optional[str] = None
    matcher: Optional[str] = None  # HTTP codes that count as healthy


@dataclass
class NetworkLoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    ports: list[int]
    internal: bool = False
    # Per port; TCP on the traffic port where a port has none.
    health_checks: dict[int, HealthCheck] = field(default_factory=dict[int, HealthCheck])
    # An internet-facing NLB created before the internet gateway is attached fails at
    # random ("InvalidSubnet ... has no internet gateway").
    depends_on: Sequence[pulumi.Resource] = ()


class NetworkLoadBalancer(pulumi.ComponentResource):
    address: pulumi.Output[str]  # where the readiness gate connects (DNS names point here)
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
            opts=child(self, depends_on=list(args.depends_on)),
        )
        self.listeners: list[aws.lb.Listener] = []
        self.target_group_arns = {}
        for port in args.ports:
            group = aws.lb.TargetGroup(
                f"{name}-{port}",
                port=port,
                protocol="TCP",
                target_type="instance",
                vpc_id=args.vpc_id,
                # Instance targets keep the client IP by default, and a node that reaches
                # itself through the NLB (the local cluster agent on 443) then times out:
                # the hairpin. Off on every group.
                preserve_client_ip="false",
                deregistration_delay=30,
                health_check=_health_check_args(args.health_checks.get(port, HealthCheck("TCP"))),
                tags=tags(f"{name}-{port}"),
                # A target group serves one load balancer at a time: a new NLB's listeners
                # cannot take the old groups over while the old listeners, deleted last,
                # still hold them (TargetGroupAssociationLimit). New groups come with a new
                # NLB; they are auto-named, so both copies can exist during the switch.
                opts=child(self, replace_with=[balancer]),
            )
            listener = aws.lb.Listener(
                f"{name}-{port}",
                load_balancer_arn=balancer.arn,
                port=port,
                protocol="TCP",
                default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=group.arn)],
                tags=tags(f"{name}-{port}"),
                opts=child(self),
            )
            self.listeners.append(listener)
            self.target_group_arns[port] = group.arn

        self.address = balancer.dns_name
        self.dns_name = balancer.dns_name
        self.zone_id = balancer.zone_id
        self.register_outputs(
            {"dns_name": self.dns_name, "zone_id": self.zone_id, "target_group_arns": list(self.target_group_arns.values())}
        )


def _health_check_args(check: HealthCheck) -> aws.lb.TargetGroupHealthCheckArgs:
    # Rancher's NLB guide: healthy/unhealthy 3 at a 10 s interval.
    return aws.lb.TargetGroupHealthCheckArgs(
        protocol=check.protocol,
        port=check.port,
        path=check.path,
        matcher=check.matcher,
        healthy_threshold=3,
        unhealthy_threshold=3,
        interval=10,
        # Explicit: must stay below the interval; an HTTPS check defaults to 10 s.
        timeout=5,
    )


def rancher_health_checks(distribution: str, ingress_controller: str) -> dict[int, HealthCheck]:
    """Real health endpoints where the component has one; TCP where it has none.

    - 6443: K3s answers `GET /ping` with "pong" on 6443 (its supervisor shares the port);
      RKE2's supervisor answers it on 9345 of the same server.
    - 80/443: ingress-nginx's default server answers `GET /healthz` with 200 on port 80
      (the controller is alive and serving); Traefik exposes no health endpoint on the
      host ports, so TCP.
    """
    api = HealthCheck("HTTPS", path="/ping", matcher="200") if distribution == "k3s" else HealthCheck(
        "HTTPS", port="9345", path="/ping", matcher="200"
    )
    checks = {6443: api}
    if ingress_controller == "ingress-nginx":
        ingress = HealthCheck("HTTP", port="80", path="/healthz", matcher="200")
        checks.update({80: ingress, 443: ingress})
    return checks
