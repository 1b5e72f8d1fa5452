"""The admin kubeconfig, built from certificates the program generated."""

from __future__ import annotations

import base64

import yaml


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def build_kubeconfig(*, cluster_name: str, server_url: str, ca_pem: str, client_cert_pem: str, client_key_pem: str,
                     tls_server_name: str | None = None) -> str:
    user = f"{cluster_name}-admin"
    cluster = {"server": server_url, "certificate-authority-data": _b64(ca_pem)}
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(client_cert_pem), "client-key-data": _b64(client_key_pem)}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
    }
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=False)
