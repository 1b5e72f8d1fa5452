"""cloud-init user data for server nodes and the NGINX load balancer.

User data is plain text readable by anyone with ec2:DescribeInstanceAttribute, so it
holds only non-secret files: the boot script, the base config and proxy settings.
Secrets are fetched from SSM by the boot script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, TypedDict

import yaml

from settings import versions

from . import node_config
from .templating import render

USER_DATA_LIMIT_BYTES = 16 * 1024
BOOTSTRAP_PATH = "/usr/local/sbin/rancher-ha-bootstrap"
BASE_CONFIG_PATH = "/etc/rancher/rancher-ha/config.base.yaml"
ENV_FILES = {"k3s": "/etc/default/k3s", "rke2": "/etc/default/rke2-server"}


@dataclass(frozen=True)
class ProxySpec:
    http: Optional[str]
    https: Optional[str]
    no_proxy: tuple[str, ...]

    def environment(self) -> dict[str, str]:
        """HTTP(S)_PROXY/NO_PROXY for the service and the CONTAINERD_ copies for image pulls."""
        values: dict[str, str] = {}
        if self.http:
            values["HTTP_PROXY"] = self.http
        if self.https:
            values["HTTPS_PROXY"] = self.https
        values["NO_PROXY"] = ",".join(self.no_proxy)
        for key in list(values):
            values[f"CONTAINERD_{key}"] = values[key]
        return values


@dataclass(frozen=True)
class NodeBootSpec:
    distribution: str
    first_server: bool
    region: str
    parameter_prefix: str
    kubernetes_version: str
    config: node_config.ServerConfig
    deliver_cluster_ca: bool
    registration_url: Optional[str] = None
    proxy: Optional[ProxySpec] = None
    # RKE2 first server: restore this S3 etcd snapshot unless it was restored before.
    etcd_restore_snapshot: Optional[str] = None


def environment_file(values: Mapping[str, str]) -> str:
    # systemd EnvironmentFile and POSIX sh both read KEY=value lines; values were
    # validated to contain no spaces or quotes.
    return "".join(f"{key}={value}\n" for key, value in sorted(values.items()))


def node_bootstrap_script(spec: NodeBootSpec) -> str:
    proxy = spec.proxy
    return render(
        "node-bootstrap.sh.j2",
        distribution=spec.distribution,
        role="first" if spec.first_server else "joining",
        region=spec.region,
        parameter_prefix=spec.parameter_prefix,
        kubernetes_version=spec.kubernetes_version,
        base_config_path=BASE_CONFIG_PATH,
        env_file_path=ENV_FILES[spec.distribution],
        config_secret_keys=node_config.secret_keys(spec.distribution),
        cluster_ca_files=node_config.CLUSTER_CA_FILES if spec.deliver_cluster_ca else (),
        datastore_ca_url=node_config.RDS_CA_BUNDLE_URL if spec.distribution == "k3s" else None,
        registration_url=spec.registration_url,
        installer=versions.INSTALLERS[spec.distribution],
        proxied=proxy is not None,
        proxy_http=proxy.http if proxy else None,
        proxy_https=proxy.https if proxy else None,
        restore_snapshot=spec.etcd_restore_snapshot,
        restore_argv=node_config.flags_argv(node_config.restore_flags(spec.etcd_restore_snapshot)) if spec.etcd_restore_snapshot else (),
        restored_parameter=(node_config.RESTORED_PARAMETER_PREFIX + spec.etcd_restore_snapshot) if spec.etcd_restore_snapshot else None,
    )


class WriteFile(TypedDict):
    """One entry of cloud-init's write_files."""

    path: str
    owner: str
    permissions: str
    content: str


def cloud_config(files: list[WriteFile], commands: list[list[str]]) -> str:
    document = {"write_files": files, "runcmd": commands}
    text = "#cloud-config\n" + yaml.safe_dump(document, default_flow_style=False, sort_keys=False, width=1000)
    if len(text.encode()) > USER_DATA_LIMIT_BYTES:
        raise ValueError(f"user data is {len(text.encode())} bytes; EC2 allows {USER_DATA_LIMIT_BYTES}")
    return text


def node_user_data(spec: NodeBootSpec) -> str:
    files: list[WriteFile] = [
        {"path": BOOTSTRAP_PATH, "owner": "root:root", "permissions": "0700", "content": node_bootstrap_script(spec)},
        {"path": BASE_CONFIG_PATH, "owner": "root:root", "permissions": "0600", "content": node_config.to_yaml(dict(spec.config))},
    ]
    if spec.proxy is not None:
        files.append(
            {"path": ENV_FILES[spec.distribution], "owner": "root:root", "permissions": "0644", "content": environment_file(spec.proxy.environment())}
        )
    return cloud_config(files, [[BOOTSTRAP_PATH]])


NGINX_REFRESH_PATH = "/usr/local/sbin/rancher-ha-nginx-refresh"
NGINX_REFRESH_SERVICE = "rancher-ha-nginx-refresh.service"
NGINX_REFRESH_TIMER = "rancher-ha-nginx-refresh.timer"
# How often NGINX re-reads SSM: a renewed certificate or a replaced server is live within this.
NGINX_REFRESH_INTERVAL = "5min"


def systemd_unit(sections: dict[str, dict[str, str]]) -> str:
    lines: list[str] = []
    for section, entries in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key}={value}" for key, value in entries.items()]
        lines.append("")
    return "\n".join(lines)


def nginx_user_data(*, layer: str, region: str, parameter_prefix: str, eip_allocation_id: str,
                    certificate_path: str, certificate_key_path: str) -> str:
    """Static per stack: the configuration and certificates come from SSM, so a new node
    list or a renewed certificate never changes the launch template."""
    common = dict(layer=layer, region=region, parameter_prefix=parameter_prefix, refresh_timer=NGINX_REFRESH_TIMER)
    bootstrap = render("nginx-bootstrap.sh.j2", eip_allocation_id=eip_allocation_id, refresh_path=NGINX_REFRESH_PATH, **common)
    refresh = render("nginx-refresh.sh.j2", certificate_path=certificate_path, certificate_key_path=certificate_key_path, **common)
    service = systemd_unit(
        {
            "Unit": {"Description": "rancher-ha: install NGINX configuration and certificate from SSM", "After": "network-online.target"},
            "Service": {"Type": "oneshot", "ExecStart": NGINX_REFRESH_PATH},
        }
    )
    timer = systemd_unit(
        {
            "Unit": {"Description": f"rancher-ha: refresh NGINX from SSM every {NGINX_REFRESH_INTERVAL}"},
            "Timer": {"OnBootSec": NGINX_REFRESH_INTERVAL, "OnUnitActiveSec": NGINX_REFRESH_INTERVAL, "RandomizedDelaySec": "30s"},
            "Install": {"WantedBy": "timers.target"},
        }
    )
    # The group's health check sees only EC2 status: a crashed nginx must restart itself.
    restart = systemd_unit({"Service": {"Restart": "always", "RestartSec": "2s"}})
    files: list[WriteFile] = [
        {"path": BOOTSTRAP_PATH, "owner": "root:root", "permissions": "0700", "content": bootstrap},
        {"path": NGINX_REFRESH_PATH, "owner": "root:root", "permissions": "0700", "content": refresh},
        {"path": "/etc/systemd/system/nginx.service.d/rancher-ha-restart.conf", "owner": "root:root", "permissions": "0644", "content": restart},
        {"path": f"/etc/systemd/system/{NGINX_REFRESH_SERVICE}", "owner": "root:root", "permissions": "0644", "content": service},
        {"path": f"/etc/systemd/system/{NGINX_REFRESH_TIMER}", "owner": "root:root", "permissions": "0644", "content": timer},
    ]
    return cloud_config(files, [[BOOTSTRAP_PATH]])
