"""Wait until a Kubernetes API answers, authenticating with a client certificate.

Standard library only: this module is shipped to the dynamic provider process, which
must not need anything beyond the Python that runs `pulumi up`.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional


class ApiNotReady(Exception):
    """The API did not answer in time; the message says what to check."""


@dataclass(frozen=True)
class ApiProbe:
    url: str  # e.g. https://lb.example.com:6443/readyz
    ca_pem: str
    client_cert_pem: str
    client_key_pem: str


def _ssl_context(probe: ApiProbe) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=probe.ca_pem)
    # load_cert_chain reads files only; keep them private and short-lived.
    with tempfile.TemporaryDirectory() as directory:
        cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        for path, text in ((cert_path, probe.client_cert_pem), (key_path, probe.client_key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
        context.load_cert_chain(cert_path, key_path)
    return context


def probe_once(probe: ApiProbe, context: ssl.SSLContext, request_timeout: float) -> Optional[str]:
    """None when the API answered 200, else a short reason."""
    try:
        with urllib.request.urlopen(probe.url, context=context, timeout=request_timeout) as response:
            if response.status == 200:
                return None
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, socket.timeout, ConnectionError, ssl.SSLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{type(reason).__name__}: {reason}"


def wait_for_api(
    probe: ApiProbe,
    timeout_seconds: float,
    interval_seconds: float = 10.0,
    request_timeout: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll until the API answers 200; return the number of attempts. Raise ApiNotReady on timeout."""
    context = _ssl_context(probe)
    deadline = clock() + timeout_seconds
    attempts, last_reason = 0, "no attempt made"
    while True:
        attempts += 1
        last_reason = probe_once(probe, context, min(request_timeout, max(1.0, deadline - clock())))
        if last_reason is None:
            return attempts
        remaining = deadline - clock()
        if remaining <= 0:
            raise ApiNotReady(
                f"The Kubernetes API at {probe.url} did not become ready within {timeout_seconds:g}s "
                f"({attempts} attempts; last: {last_reason}). Check: that the servers booted "
                "(EC2 console output, /var/log/cloud-init-output.log), that they could read their SSM "
                "parameters and download K3s/RKE2 (NAT or proxy), that the load balancer's targets are "
                "healthy on 6443, and that adminCidrs includes the address this `pulumi up` runs from. "
                "Raise apiReadyTimeoutSeconds if boots are just slow."
            )
        sleep(min(interval_seconds, remaining))


# What the gate's dynamic provider runs, shipped by value (see by_value.py).
PROVIDER_CODE = (ApiProbe, ApiNotReady, _ssl_context, probe_once, wait_for_api)
