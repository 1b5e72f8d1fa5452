"""NO_PROXY: one list for nodes, Rancher and cert-manager, so they cannot disagree."""

from __future__ import annotations

from typing import Optional

from rendering.cloud_init import ProxySpec
from settings import Settings

# Rancher's chart default, plus IMDS and EC2's internal DNS names.
BASE_NO_PROXY = (
    "127.0.0.0/8",
    "localhost",
    "169.254.169.254",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    ".svc",
    ".cluster.local",
    ".internal",
)


def no_proxy_entries(settings: Settings, vpc_cidr: str) -> list[str]:
    """`vpc_cidr`: the VPC's real CIDR (settings' vpcCidr only applies to a created VPC)."""
    entries = list(BASE_NO_PROXY) + [
        settings.cluster_cidr,
        settings.service_cidr,
        vpc_cidr,
        settings.hostname,
        *settings.proxy_no_proxy,
    ]
    return list(dict.fromkeys(entries))  # keep order, drop repeats


def proxy_spec(settings: Settings, vpc_cidr: str) -> Optional[ProxySpec]:
    if not settings.proxied:
        return None
    return ProxySpec(http=settings.proxy_http, https=settings.proxy_https, no_proxy=tuple(no_proxy_entries(settings, vpc_cidr)))
