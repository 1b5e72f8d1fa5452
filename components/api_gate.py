"""A readiness gate: a resource whose creation waits until the cluster is really ready.

It passes when the Kubernetes API answers /readyz through the load balancer AND every
server is a Ready node, so Helm never races a cluster whose joiners are still joining
etcd. Every in-cluster resource depends on it. It is created again (and waits again)
when the load balancer address, the CA, a server or the NGINX launch template changes:
a replaced server is waited for. In preview nothing waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
from pulumi.dynamic import Resource

from .providers import api_gate_provider as implementation
from .providers.shipping import loader_expression, source_of


class ShippedApiGateProvider(implementation.ApiGateProvider):
    def __reduce__(self):
        return (eval, (loader_expression(source_of(implementation.__file__), "ApiGateProvider"),))


@dataclass
class ApiGateArgs:
    url: pulumi.Input[str]  # https://<load balancer address>:6443
    server_name: str  # the name checked against the server certificate: the Rancher hostname (in every server's tls-san)
    ca_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str]
    timeout_seconds: int
    expected_nodes: Sequence[pulumi.Input[str]] = ()
    # Identities whose change means "wait again" (e.g. a launch template version).
    triggers: Sequence[pulumi.Input[str]] = ()


class ApiGate(Resource, module="rancher-ha", name="ApiGate"):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: ApiGateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ShippedApiGateProvider(),
            name,
            {
                "url": args.url,
                "serverName": args.server_name,
                "caPem": args.ca_pem,
                "clientCertPem": args.client_cert_pem,
                "clientKeyPem": pulumi.Output.secret(args.client_key_pem),
                "timeoutSeconds": args.timeout_seconds,
                "expectedNodes": list(args.expected_nodes),
                "triggers": list(args.triggers),
                "attempts": None,
            },
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["clientKeyPem"])),
        )
