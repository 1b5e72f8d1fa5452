"""Reaching the new cluster without SSH: the admin kubeconfig, the readiness gate and
the Kubernetes provider every in-cluster resource uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from rendering.kubeconfig import build_kubeconfig

from .api_gate import ApiConnection, ApiGate, ApiGateArgs
from .naming import child, stack_name

API_PORT = 6443


@dataclass
class ClusterAccessArgs:
    api_hostname: str  # the stable address in the kubeconfig, and in new servers' tls-san
    # The name TLS is checked against: Rancher's hostname, which every server's tls-san has
    # held since the first release (whose servers predate apiHostname and ignore new user
    # data), so the kubeconfig and the gate verify the same way on old and new servers.
    tls_server_name: str
    load_balancer_address: pulumi.Input[str]  # where the gate connects (no DNS wait)
    server_ca_pem: pulumi.Input[str]
    admin_cert_pem: pulumi.Input[str]
    admin_key_pem: pulumi.Input[str]
    ready_timeout_seconds: int
    # Every server's private address: the gate waits until each is a Ready node.
    server_addresses: Sequence[pulumi.Input[str]] = ()
    # Replacing any of these makes the gate wait again (NGINX launch template version).
    triggers: Sequence[pulumi.Input[str]] = ()
    # The API path: the gate depends on all of it, and every in-cluster resource depends
    # on the gate, so no destroy or delete can take the path away before them.
    wait_for: Sequence[pulumi.Resource] = ()


def cluster_identifier() -> str:
    """The Kubernetes provider's clusterIdentifier: the provider is replaced only when it
    changes (pulumi-kubernetes `Provider(cluster_identifier=...)`), and a replaced provider
    replaces every in-cluster resource with it (their provider changes, and they are
    deleted_with it), creating the fixed-name releases and namespace while the old ones still
    exist. The stacks deployed so far hold rancher-ha-<stack>; the identity lock refuses any
    change of it (a stack rename), so it never changes on a deployed stack."""
    return f"rancher-ha-{stack_name()}"


class ClusterAccess(pulumi.ComponentResource):
    kubeconfig: pulumi.Output[str]  # secret
    server_url: str
    gate: ApiGate
    provider: k8s.Provider
    connection: ApiConnection  # for resources that wait on an object's status

    def __init__(self, name: str, args: ClusterAccessArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:access:ClusterAccess", name, None, opts)
        cluster_name = cluster_identifier()
        self.server_url = f"https://{args.api_hostname}:{API_PORT}"
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(args.server_ca_pem, args.admin_cert_pem, args.admin_key_pem).apply(
                lambda values: build_kubeconfig(
                    cluster_name=cluster_name,
                    server_url=self.server_url,
                    ca_pem=values[0],
                    client_cert_pem=values[1],
                    client_key_pem=values[2],
                    tls_server_name=args.tls_server_name,
                )
            )
        )
        # How the program reaches the API (the load balancer's address, the Rancher name, the
        # admin client): the gate, the upgrade wait (components/upgrades.py) and the
        # rancher-backup waits (components/backups.py) all use it.
        self.connection = ApiConnection(
            url=pulumi.Output.concat("https://", args.load_balancer_address, f":{API_PORT}"),
            server_name=args.tls_server_name,
            ca_pem=args.server_ca_pem,
            client_cert_pem=args.admin_cert_pem,
            client_key_pem=args.admin_key_pem,
        )
        # ... and which servers the gate waits for.
        self.gate_args = ApiGateArgs(
            url=self.connection.url,
            server_name=self.connection.server_name,
            ca_pem=self.connection.ca_pem,
            client_cert_pem=self.connection.client_cert_pem,
            client_key_pem=self.connection.client_key_pem,
            timeout_seconds=args.ready_timeout_seconds,
            expected_nodes=list(args.server_addresses),
            triggers=list(args.triggers),
        )
        self.gate = ApiGate(f"{name}-api-ready", self.gate_args, opts=child(self, depends_on=list(args.wait_for)))
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # A stable identity: a kubeconfig text change (a renewed admin certificate)
            # must not look like a new cluster and replace every Kubernetes resource.
            cluster_identifier=cluster_name,
            opts=child(self, depends_on=[self.gate]),
        )
        self.register_outputs({"kubeconfig": self.kubeconfig})
