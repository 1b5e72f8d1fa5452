"""Benchmark: requests/s and p99 latency through the program's L7 NGINX config
versus straight to a backend, on loopback. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/l7_overhead.py [--seconds 5] [--clients 8] [--record]

`--record` also writes the figures to benchmarks/results/l7_overhead.json, from which
`python -m tools.benchmark_docs` writes the README's sentence (tests compare the two).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import platform
import http.server
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from nginx_lab import HOSTNAME, Nginx, lab_spec, make_certificate, nginx_missing_reason  # noqa: E402
from rendering.nginx import NginxSpec  # noqa: E402

RECORD = REPO / "benchmarks" / "results" / "l7_overhead.json"


class _KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the cluster ingress behind NGINX
    disable_nagle_algorithm = True  # header and body are separate writes

    def do_GET(self):  # noqa: N802
        body = b'{"pong":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class KeepAliveBackend:
    def __init__(self, address: str, port: int):
        self.server = http.server.ThreadingHTTPServer((address, port), _KeepAliveHandler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def load(make_connection, seconds: float, clients: int) -> tuple[float, float, float, int]:
    """Keep-alive GETs from `clients` threads for `seconds`; returns (rps, p50 ms, p99 ms, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        connection = make_connection()
        local = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                connection.request("GET", "/v3/ping", headers={"Host": HOSTNAME})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(response.status)
                local.append(time.perf_counter() - started)
            except Exception as error:  # counted and shown: a load balancer must not drop requests
                with lock:
                    errors[0] += 1
                    if errors[0] <= 3:
                        print(f"  error: {type(error).__name__}: {error}", file=sys.stderr)
                connection.close()
                connection = make_connection()
        connection.close()
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
    return len(latencies) / seconds, statistics.median(latencies) * 1000, p99, errors[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--record", action="store_true", help=f"also write the figures to {RECORD.relative_to(REPO)}")
    args = parser.parse_args()
    reason = nginx_missing_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0

    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        certificate = make_certificate(directory)
        spec = lab_spec(NginxSpec(hostname=HOSTNAME, layer="l7", backends=["x"], distribution="k3s"), directory, certificate)
        context = ssl.create_default_context(cafile=str(certificate["ca"]))
        spec = dataclasses.replace(spec, backends=["127.0.0.2"])
        with KeepAliveBackend("127.0.0.2", spec.backend_ports["http"]), Nginx(spec, directory):
            direct = load(lambda: http.client.HTTPConnection("127.0.0.2", spec.backend_ports["http"], timeout=5), args.seconds, args.clients)
            through = load(
                lambda: _tls_connection(spec.ports["https"], context), args.seconds, args.clients
            )
    print(f"clients={args.clients} seconds={args.seconds} (loopback, one backend, keep-alive HTTP/1.1)")
    print(f"{'path':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for label, (rps, p50, p99, errors) in (("direct to backend", direct), ("through L7 NGINX", through)):
        print(f"{label:<22}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}{errors:>8}")
    print(f"ratio through/direct: throughput {through[0] / direct[0]:.2f}x, p99 latency {through[2] / direct[2]:.2f}x")
    if args.record:
        figures = {
            label: dict(zip(("requests_per_second", "p50_ms", "p99_ms", "errors"), (round(rps, 1), round(p50, 3), round(p99, 3), errors)))
            for label, (rps, p50, p99, errors) in (("direct", direct), ("through_l7_nginx", through))
        }
        record = {
            "command": f"benchmarks/l7_overhead.py --seconds {args.seconds:g} --clients {args.clients} --record",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "nginx": _nginx_version(),
            "recorded": time.strftime("%Y-%m-%d", time.gmtime()),
            "load_average_1min": round(os.getloadavg()[0], 2),  # the machine was shared or not
            **figures,
        }
        RECORD.parent.mkdir(exist_ok=True)
        RECORD.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _nginx_version() -> str:
    import subprocess

    result = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")


class _RancherTLSConnection(http.client.HTTPSConnection):
    """Connects to loopback but verifies the Rancher hostname (SNI), also when http.client
    reconnects on its own after NGINX closes a keep-alive connection (keepalive_requests)."""

    def connect(self) -> None:
        import socket

        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            socket.create_connection((self.host, self.port), timeout=self.timeout), server_hostname=HOSTNAME
        )


def _tls_connection(port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return _RancherTLSConnection("127.0.0.1", port, context=context, timeout=5)


if __name__ == "__main__":
    raise SystemExit(main())
