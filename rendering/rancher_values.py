"""Helm values for Rancher, cert-manager and the packaged ingress controllers.

Values are typed Python data (ints stay ints), never `--set` strings, and the Rancher
values are checked against the chart's own values.schema.json in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .ha_values import HelmValues, cert_manager_ha_values, deep_merge, rancher_spread_values

CERT_MANAGER_REPOSITORY = "https://charts.jetstack.io"
RANCHER_NAMESPACE = "cattle-system"  # fixed by Rancher
CERT_MANAGER_NAMESPACE = "cert-manager"
INGRESS_SECRET_NAME = "tls-rancher-ingress"
PRIVATE_CA_SECRET_NAME = "tls-ca"
PRIVATE_CA_SECRET_KEY = "cacerts.pem"
# One owner of the local cluster's Kubernetes version: this stack (components/upgrades.py).
# Rancher 2.12-2.15 also upgrade their own local K3s/RKE2 cluster through SUC plans while
# the setting `imported-cluster-version-management` is "true", its default
# (pkg/settings/setting.go; pkg/controllers/management/k3sbasedupgrade,
# importedclusterversionmanagement, dashboard/systemcharts at rancher/rancher v2.14.4,
# commit 79b003279fec). A setting's CATTLE_<NAME> environment variable wins over the
# Setting object and makes it read-only (dashboardapi/settings/settings.go Get/Set), so
# the chart's extraEnv turns it off from the first start. A `local` Cluster annotated
# rancher.io/imported-cluster-version-management: "true" would still override it: leave
# that annotation alone.
RANCHER_STAND_DOWN_ENV = {"name": "CATTLE_IMPORTED_CLUSTER_VERSION_MANAGEMENT", "value": "false"}


@dataclass(frozen=True)
class RancherValuesSpec:
    hostname: str
    replicas: int
    layer: str  # l4 | l7
    tls_source: str  # rancher | letsEncrypt | provided | generated
    private_ca: bool
    agent_tls_mode: str
    ingress_controller: str  # traefik | ingress-nginx
    lets_encrypt_email: Optional[str] = None
    proxy: Optional[str] = None
    no_proxy: Sequence[str] = ()
    # Keep replicas on different nodes and one node's loss from taking them all.
    spread: bool = True


def rancher_values(spec: RancherValuesSpec, bootstrap_password: Any) -> HelmValues:
    values: HelmValues = {
        "hostname": spec.hostname,
        "replicas": spec.replicas,
        "bootstrapPassword": bootstrap_password,
        "agentTLSMode": spec.agent_tls_mode,
        "privateCA": spec.private_ca,
        "extraEnv": [dict(RANCHER_STAND_DOWN_ENV)],
    }
    if spec.layer == "l7":
        # The load balancer terminates TLS; Rancher serves HTTP and trusts X-Forwarded-Proto.
        values["tls"] = "external"
        # The chart's cert-manager check looks at ingress.tls.source alone (default
        # "rancher") and warns even with tls=external; "secret" says no issuer is wanted.
        # With tls=external the Ingress gets no tls section, so no secret is read.
        values["ingress"] = {"tls": {"source": "secret"}}
    else:
        values["tls"] = "ingress"
        ingress: HelmValues = {"tls": {"source": "secret" if spec.tls_source in ("provided", "generated") else spec.tls_source}}
        if spec.ingress_controller == "ingress-nginx":
            # Rancher 2.14+ no longer adds these by default; without them ingress-nginx
            # cuts idle WebSockets after 60 s.
            ingress["extraAnnotations"] = {
                "nginx.ingress.kubernetes.io/proxy-connect-timeout": "30",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "1800",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "1800",
            }
        values["ingress"] = ingress
        if spec.tls_source == "letsEncrypt":
            values["letsEncrypt"] = {
                "email": spec.lets_encrypt_email,
                "environment": "production",
                "ingress": {"class": "traefik" if spec.ingress_controller == "traefik" else "nginx"},
            }
    if spec.proxy:
        values["proxy"] = spec.proxy
        values["noProxy"] = ",".join(spec.no_proxy)
    if spec.spread:
        values = deep_merge(values, rancher_spread_values(spec.replicas))
    return values


def cert_manager_values(proxy_http: Optional[str], proxy_https: Optional[str], no_proxy: Sequence[str], server_count: int = 1) -> HelmValues:
    # Highly available with 2+ servers: replicas, PDBs and spread over nodes.
    values: HelmValues = {"crds": {"enabled": True}, **cert_manager_ha_values(server_count)}
    # cert-manager reaches ACME servers itself; the chart takes the proxy as env values.
    if proxy_http:
        values["http_proxy"] = proxy_http
    if proxy_https:
        values["https_proxy"] = proxy_https
    if proxy_http or proxy_https:
        values["no_proxy"] = ",".join(no_proxy)
    return values


def forwarded_headers_chart_name(distribution: str, ingress_controller: str) -> str:
    """The HelmChartConfig that configures the distribution's packaged ingress controller."""
    if ingress_controller == "traefik":
        return "traefik" if distribution == "k3s" else "rke2-traefik"
    return "rke2-ingress-nginx"


def forwarded_headers_values(ingress_controller: str, trusted_cidrs: Sequence[str], timeout_seconds: int = 1800) -> HelmValues:
    """Values making the packaged ingress trust X-Forwarded-* from the peers it really sees
    behind the L7 load balancer (stages.cluster.trusted_forwarders: the pod network and the LB subnets).

    Without this the ingress overwrites X-Forwarded-Proto with "http" and Rancher
    (tls=external) redirects every request to itself.
    """
    trusted = list(trusted_cidrs)
    if ingress_controller == "traefik":
        return {"ports": {"web": {"forwardedHeaders": {"trustedIPs": trusted}}}}
    return {
        "controller": {
            "config": {
                "use-forwarded-headers": "true",
                "proxy-real-ip-cidr": ",".join(trusted),
                # WebSockets through the LB stay open as long as on the LB itself.
                "proxy-read-timeout": str(timeout_seconds),
                "proxy-send-timeout": str(timeout_seconds),
            }
        }
    }
