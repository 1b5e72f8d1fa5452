"""The NGINX load balancer's configuration.

The same function renders the production file and the one the tests run against a
real NGINX on loopback: only addresses, ports and file paths differ, never the
directives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .templating import render

HTTP_PORT, HTTPS_PORT, API_PORT = 80, 443, 6443
CERTIFICATE_PATH = "/etc/nginx/tls/rancher.crt"
CERTIFICATE_KEY_PATH = "/etc/nginx/tls/rancher.key"


@dataclass(frozen=True)
class TcpListener:
    name: str
    listen_port: int
    backend_port: int


@dataclass(frozen=True)
class NginxSpec:
    hostname: str
    layer: str  # l4 | l7
    backends: Sequence[str]
    distribution: str
    worker_processes: str = "auto"
    worker_connections: int = 8192
    worker_rlimit_nofile: int = 40000
    proxy_timeout_seconds: int = 1800
    # Where NGINX listens and what it reaches; tests move these to loopback ports.
    listen_address: str = ""
    ports: dict[str, int] = field(
        default_factory=lambda: {"http": HTTP_PORT, "https": HTTPS_PORT, "api": API_PORT}
    )
    backend_ports: dict[str, int] = field(
        default_factory=lambda: {"http": HTTP_PORT, "https": HTTPS_PORT, "api": API_PORT}
    )
    certificate_path: str = CERTIFICATE_PATH
    certificate_key_path: str = CERTIFICATE_KEY_PATH
    pid_path: str = "/run/nginx.pid"
    error_log_path: str = "/var/log/nginx/error.log"
    access_log_path: str = "/var/log/nginx/access.log"
    modules_include: str = "include /etc/nginx/modules-enabled/*.conf;"
    # Ubuntu's package defaults, spelled out so tests can relocate them.
    user: str = "www-data"
    temp_dir: str = "/var/lib/nginx"


def tcp_listeners(spec: NginxSpec) -> list[TcpListener]:
    """Ports passed through as TCP: the API always, 80/443 only at L4.

    RKE2's supervisor (9345) is not here: servers register with each other directly,
    through the round-robin registration name (components/dns.py).
    """
    names = ["http", "https"] if spec.layer == "l4" else []
    names.append("api")
    return [TcpListener(f"{name}_nodes", spec.ports[name], spec.backend_ports[name]) for name in names]


def render_nginx_conf(spec: NginxSpec) -> str:
    if not spec.backends:
        raise ValueError("an NGINX load balancer needs at least one backend")
    return render(
        "nginx.conf.j2",
        hostname=spec.hostname,
        layer=spec.layer,
        backends=list(spec.backends),
        tcp_listeners=tcp_listeners(spec),
        worker_processes=spec.worker_processes,
        worker_connections=spec.worker_connections,
        worker_rlimit_nofile=spec.worker_rlimit_nofile,
        proxy_timeout_seconds=spec.proxy_timeout_seconds,
        listen_prefix=f"{spec.listen_address}:" if spec.listen_address else "",
        http_port=spec.ports["http"],
        https_port=spec.ports["https"],
        http_backend_port=spec.backend_ports["http"],
        certificate_path=spec.certificate_path,
        certificate_key_path=spec.certificate_key_path,
        pid_path=spec.pid_path,
        error_log_path=spec.error_log_path,
        access_log_path=spec.access_log_path,
        modules_include=spec.modules_include,
        user=spec.user,
        temp_dir=spec.temp_dir,
    )
