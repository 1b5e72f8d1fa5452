"""A readiness gate: a resource whose creation waits until the cluster is really ready.

It passes when the Kubernetes API answers /readyz through the load balancer AND every
server is a Ready node, so Helm never races a cluster whose joiners are still joining
etcd. Every in-cluster resource depends on it. It is created again (and waits again)
when the load balancer address, the CA, a server or the NGINX launch template changes:
a replaced server is waited for. In preview nothing waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, TypedDict

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


class ProbeInputs(TypedDict):
    url: pulumi.Input[str]
    serverName: str
    caPem: pulumi.Input[str]
    clientCertPem: pulumi.Input[str]
    clientKeyPem: pulumi.Output[str]
    expectedNodes: list[pulumi.Input[str]]


def probe_inputs(args: ApiGateArgs) -> ProbeInputs:
    """How a provider reaches the API and which servers it checks (api_gate_provider.probe_from)."""
    return {
        "url": args.url,
        "serverName": args.server_name,
        "caPem": args.ca_pem,
        "clientCertPem": args.client_cert_pem,
        "clientKeyPem": pulumi.Output.secret(args.client_key_pem),
        "expectedNodes": list(args.expected_nodes),
    }


SECRET_PROBE_OUTPUTS = pulumi.ResourceOptions(additional_secret_outputs=["clientKeyPem"])


class ApiGate(Resource, module="rancher-ha", name="ApiGate"):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: ApiGateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ShippedApiGateProvider(),
            name,
            {
                **probe_inputs(args),
                "timeoutSeconds": args.timeout_seconds,
                "triggers": list(args.triggers),
                # Every server has a ClusterMember from this release on: a later shrink is safe
                # (the provider's check refuses one from a state without it).
                "serverMembers": True,
                "attempts": None,
            },
            pulumi.ResourceOptions.merge(opts, SECRET_PROBE_OUTPUTS),
        )


@dataclass
class ApiConnection:
    """How this program reaches the API itself (the gate's address, name and admin client)."""

    url: pulumi.Input[str]
    server_name: str
    ca_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str]


class ShippedObjectReadyProvider(implementation.ObjectReadyProvider):
    def __reduce__(self):
        return (eval, (loader_expression(source_of(implementation.__file__), "ObjectReadyProvider"),))


class ObjectReady(Resource, module="rancher-ha", name="ObjectReady"):
    """Waits (on create, and again when `path` changes) until a rancher-backup Backup or
    Restore at `path` reports completion. In preview nothing waits."""

    filename: pulumi.Output[str]

    def __init__(self, name: str, connection: ApiConnection, path: pulumi.Input[str], needs_file: bool,
                 timeout_seconds: int, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ShippedObjectReadyProvider(),
            name,
            {
                "url": connection.url,
                "serverName": connection.server_name,
                "caPem": connection.ca_pem,
                "clientCertPem": connection.client_cert_pem,
                "clientKeyPem": pulumi.Output.secret(connection.client_key_pem),
                "path": path,
                "needsFile": needs_file,
                "timeoutSeconds": timeout_seconds,
                "filename": None,
            },
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["clientKeyPem"])),
        )
