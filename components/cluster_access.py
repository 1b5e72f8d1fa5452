"""Reaching the new cluster without SSH: the admin kubeconfig, the readiness gate and
the Kubernetes provider every in-cluster resource uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from rendering.kubeconfig import build_kubeconfig

from .api_gate import ApiGate, ApiGateArgs
from .naming import child, stack_name

API_PORT = 6443


@dataclass
class ClusterAccessArgs:
    api_address: pulumi.Input[str]
    server_ca_pem: pulumi.Input[str]
    admin_cert_pem: pulumi.Input[str]
    admin_key_pem: pulumi.Input[str]
    ready_timeout_seconds: int
    # The gate waits for these too (instances, target registrations, the NGINX box).
    wait_for: Sequence[pulumi.Resource] = field(default_factory=list)


class ClusterAccess(pulumi.ComponentResource):
    kubeconfig: pulumi.Output[str]  # secret
    server_url: pulumi.Output[str]
    gate: ApiGate
    provider: k8s.Provider

    def __init__(self, name: str, args: ClusterAccessArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:access:ClusterAccess", name, None, opts)
        cluster_name = f"rancher-ha-{stack_name()}"
        self.server_url = pulumi.Output.concat("https://", args.api_address, f":{API_PORT}")
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.server_url, args.server_ca_pem, args.admin_cert_pem, args.admin_key_pem).apply(
                lambda values: build_kubeconfig(
                    cluster_name=cluster_name,
                    server_url=values[0],
                    ca_pem=values[1],
                    client_cert_pem=values[2],
                    client_key_pem=values[3],
                )
            )
        )
        self.gate = ApiGate(
            f"{name}-api-ready",
            ApiGateArgs(
                url=pulumi.Output.concat(self.server_url, "/readyz"),
                ca_pem=args.server_ca_pem,
                client_cert_pem=args.admin_cert_pem,
                client_key_pem=args.admin_key_pem,
                timeout_seconds=args.ready_timeout_seconds,
            ),
            opts=child(self, depends_on=list(args.wait_for)),
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # A stable identity: a kubeconfig text change (a renewed admin certificate)
            # must not look like a new cluster and replace every Kubernetes resource.
            cluster_identifier=cluster_name,
            opts=child(self, depends_on=[self.gate]),
        )
        self.register_outputs({"server_url": self.server_url, "kubeconfig": self.kubeconfig})
