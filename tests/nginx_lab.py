"""A real NGINX on loopback, running the program's own configuration with local
addresses, ports and paths substituted, in front of local backends.

Backends listen on 127.0.0.2-127.0.0.4 (all loopback on Linux) with the same ports,
exactly as nodes share ports on different addresses. Everything stops by itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rendering.nginx import NginxSpec, render_nginx_conf

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
STREAM_MODULE = Path("/etc/nginx/modules-enabled")
BACKEND_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
HOSTNAME = "rancher.lab.example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx_missing_reason() -> Optional[str]:
    if NGINX is None:
        return "nginx is not installed (apt-get install nginx libnginx-mod-stream)"
    if not any(STREAM_MODULE.glob("*stream*")):
        return "the NGINX stream module is not installed (apt-get install libnginx-mod-stream)"
    return None


def make_certificate(directory: Path, hostname: str = HOSTNAME) -> dict[str, Path]:
    """A CA and a server certificate for `hostname`, like the generated L7 pair."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    )
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False).sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.crt", "cert": directory / "server.crt", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def lab_spec(base: NginxSpec, directory: Path, certificate: Optional[dict[str, Path]] = None) -> NginxSpec:
    """The program's spec with only addresses, ports and file paths moved to the lab."""
    ports = {name: free_port() for name in ("http", "https", "api")}
    backend_ports = {name: free_port() for name in ("http", "https", "api")}
    for name in ("temp", "logs"):
        (directory / name).mkdir(exist_ok=True)
    return dataclasses.replace(
        base,
        backends=BACKEND_ADDRESSES,
        listen_address="127.0.0.1",
        ports=ports,
        backend_ports=backend_ports,
        certificate_path=str(certificate["cert"]) if certificate else base.certificate_path,
        certificate_key_path=str(certificate["key"]) if certificate else base.certificate_key_path,
        pid_path=str(directory / "nginx.pid"),
        error_log_path=str(directory / "logs/error.log"),
        access_log_path=str(directory / "logs/access.log"),
        temp_dir=str(directory / "temp"),
        user="root" if os.geteuid() == 0 else base.user,
    )


class Nginx:
    def __init__(self, spec: NginxSpec, directory: Path):
        self.spec = spec
        self.directory = directory
        self.config = directory / "nginx.conf"
        self.config.write_text(render_nginx_conf(spec))
        self.process: Optional[subprocess.Popen] = None

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run([NGINX, "-t", "-c", str(self.config)], capture_output=True, text=True, timeout=30)

    def __enter__(self) -> "Nginx":
        self.process = subprocess.Popen(
            [NGINX, "-c", str(self.config), "-g", "daemon off;"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 10
        port = self.spec.ports["api"]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stderr.read()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening within 10 s")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


class Backends:
    """HTTP + WebSocket backends on the lab addresses (one asyncio loop in a thread).

    Plain HTTP requests get JSON {"backend": address, "headers": {...}}; WebSocket
    connections echo every message. Raw TCP ports (for L4) answer the same way.
    """

    def __init__(self, port: int, addresses: list[str] = BACKEND_ADDRESSES):
        self.port = port
        self.addresses = addresses
        self.loop = asyncio.new_event_loop()
        self.servers: dict[str, object] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start_one(self, address: str):
        from websockets.asyncio.server import serve
        from websockets.datastructures import Headers

        async def echo(connection):
            async for message in connection:
                await connection.send(message)

        def process_request(connection, request):
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return None
            body = json.dumps({"backend": address, "path": request.path, "headers": dict(request.headers.raw_items())})
            response = connection.respond(200, body)
            response.headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body.encode()))})
            return response

        return await serve(echo, address, self.port, process_request=process_request, ping_interval=None)

    def __enter__(self) -> "Backends":
        self.thread.start()
        for address in self.addresses:
            self.servers[address] = asyncio.run_coroutine_threadsafe(self._start_one(address), self.loop).result(10)
        return self

    def stop(self, address: str) -> None:
        server = self.servers.pop(address)

        async def close():
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)

    def __exit__(self, *exc) -> None:
        for address in list(self.servers):
            self.stop(address)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def http_get(host: str, port: int, path: str = "/", host_header: str = HOSTNAME, timeout: float = 5) -> tuple[int, dict, bytes]:
    """A minimal HTTP/1.1 GET over plain TCP; returns (status, headers, body)."""
    import http.client

    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host_header})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def wait_until(predicate, timeout: float = 10, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


__all__ = ["ipaddress"]
