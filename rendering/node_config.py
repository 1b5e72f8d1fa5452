"""The K3s/RKE2 `config.yaml` of a server node, as structured data.

Only non-secret keys live here; `token` and `datastore-endpoint` are added on the node
from SSM at boot (see node-bootstrap.sh.j2), so this text may sit in user data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import yaml

# Secret config keys, fetched from SSM parameters of the same name.
K3S_SECRET_KEYS = ("datastore-endpoint", "token")
RKE2_SECRET_KEYS = ("token",)
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"

# File names K3s/RKE2 look for in server/tls/ before generating their own CAs.
CLUSTER_CA_FILES = (
    "server-ca.crt",
    "server-ca.key",
    "client-ca.crt",
    "client-ca.key",
    "request-header-ca.crt",
    "request-header-ca.key",
    "etcd/server-ca.crt",
    "etcd/server-ca.key",
    "etcd/peer-ca.crt",
    "etcd/peer-ca.key",
    "service.key",
)


@dataclass(frozen=True)
class EtcdSnapshots:
    schedule: str
    retention: int
    s3_folder: str  # the IAM policy scopes object access to it
    s3_bucket: Optional[str] = None
    s3_region: Optional[str] = None


@dataclass(frozen=True)
class ServerConfigSpec:
    distribution: str  # k3s | rke2
    tls_sans: list[str]
    cluster_cidr: str
    service_cidr: str
    # rke2 only
    registration_url: Optional[str] = None  # None on the first server
    ingress_controller: Optional[str] = None
    etcd_snapshots: Optional[EtcdSnapshots] = None
    node_labels: list[str] = field(default_factory=list[str])


# A server's config.yaml: flag name -> value (server_flags.py checks it against the flag list).
ServerConfig = dict[str, str | int | bool | list[str]]


def server_config(spec: ServerConfigSpec) -> ServerConfig:
    config: ServerConfig = {
        "write-kubeconfig-mode": "0600",
        "tls-san": list(spec.tls_sans),
        "cluster-cidr": spec.cluster_cidr,
        "service-cidr": spec.service_cidr,
    }
    if spec.node_labels:
        config["node-label"] = list(spec.node_labels)
    if spec.distribution == "k3s":
        config["datastore-cafile"] = "/etc/rancher/k3s/rds-ca-bundle.pem"
        return config

    if spec.registration_url:
        config["server"] = spec.registration_url
    if spec.ingress_controller:
        config["ingress-controller"] = spec.ingress_controller
    snapshots = spec.etcd_snapshots
    if snapshots is not None:
        config["etcd-snapshot-schedule-cron"] = snapshots.schedule
        config["etcd-snapshot-retention"] = snapshots.retention
        if snapshots.s3_bucket:
            # No keys given: RKE2 uses the instance profile, scoped to this folder.
            config["etcd-s3"] = True
            config["etcd-s3-bucket"] = snapshots.s3_bucket
            if snapshots.s3_region:
                config["etcd-s3-region"] = snapshots.s3_region
            config["etcd-s3-folder"] = snapshots.s3_folder
    return config


# Written by the program once a restored cluster was ready: a first server created later
# (a replacement) joins instead of restoring the same snapshot again.
RESTORED_PARAMETER_PREFIX = "etcd-restored-"


def restore_flags(snapshot: str) -> dict[str, str | bool]:
    """The one-off `rke2 server` flags that restore an etcd snapshot (docs.rke2.io,
    "Backup and Restore"): with etcd-s3 in config.yaml the snapshot is fetched from S3.
    The process exits after the reset; the service is then started without them."""
    return {"cluster-reset": True, "cluster-reset-restore-path": snapshot}


def flags_argv(flags: Mapping[str, str | int | bool]) -> list[str]:
    return [f"--{key}" if value is True else f"--{key}={value}" for key, value in flags.items()]


def secret_keys(distribution: str) -> tuple[str, ...]:
    return K3S_SECRET_KEYS if distribution == "k3s" else RKE2_SECRET_KEYS


def to_yaml(config: ServerConfig) -> str:
    return yaml.safe_dump(config, default_flow_style=False, sort_keys=True)
