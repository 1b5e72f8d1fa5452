"""A readiness gate: a resource whose creation waits for the Kubernetes API.

Every Kubernetes resource depends on it, so Helm never races a cluster that is still
booting. It is a dynamic provider because the wait has to happen during `up`, between
the EC2 resources and the Kubernetes ones; in preview nothing waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

from . import api_wait
from .api_wait import ApiProbe, wait_for_api
from .by_value import ship_by_value


class ApiGateProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        probe = ApiProbe(
            url=props["url"], ca_pem=props["caPem"], client_cert_pem=props["clientCertPem"], client_key_pem=props["clientKeyPem"]
        )
        attempts = wait_for_api(
            probe,
            timeout_seconds=float(props["timeoutSeconds"]),
            interval_seconds=float(props.get("intervalSeconds") or 10),
        )
        return CreateResult(id_=props["url"], outs={**props, "attempts": attempts})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A new address or CA means a new cluster to wait for; a timeout change does not.
        changed = [key for key in ("url", "caPem") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)


ship_by_value(ApiGateProvider, *api_wait.PROVIDER_CODE)


@dataclass
class ApiGateArgs:
    url: pulumi.Input[str]
    ca_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str]
    timeout_seconds: int


class ApiGate(Resource, module="rancher-ha", name="ApiGate"):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: ApiGateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ApiGateProvider(),
            name,
            {
                "url": args.url,
                "caPem": args.ca_pem,
                "clientCertPem": args.client_cert_pem,
                "clientKeyPem": pulumi.Output.secret(args.client_key_pem),
                "timeoutSeconds": args.timeout_seconds,
                "attempts": None,
            },
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["clientKeyPem"])),
        )
