"""The readiness gate's wait logic against a real HTTPS server on 127.0.0.1 that requires
a client certificate and serves /readyz and /api/v1/nodes like kube-apiserver: ready
after a delay, never, with servers that are not Ready nodes yet, or with the wrong name."""

import datetime
import http.server
import json
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.providers.api_gate_provider import ApiGateProvider, ApiNotReady, ApiProbe, wait_for_api

API_NAME = "api.rancher.example.test"  # the stable API name the gate checks the certificate for


def _pem(obj) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def _certificate(subject, issuer, public_key, signing_key, ca=False, server=False, name=API_NAME):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A server CA, a client CA and an admin cert, as K3s/RKE2 and the program set them up."""
    directory = tmp_path_factory.mktemp("pki")
    server_ca_key, client_ca_key, server_key, admin_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    server_ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k3s-server-ca")])
    client_ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k3s-client-ca")])
    server_ca = _certificate(server_ca_name, server_ca_name, server_ca_key.public_key(), server_ca_key, ca=True)
    client_ca = _certificate(client_ca_name, client_ca_name, client_ca_key.public_key(), client_ca_key, ca=True)
    server = _certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), server_ca_name, server_key.public_key(), server_ca_key, server=True)
    server_ca_key_pem = _pem(server_ca_key)
    admin_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:admin"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")])
    admin = _certificate(admin_name, client_ca_name, admin_key.public_key(), client_ca_key)
    files = {"server.crt": _pem(server), "server.key": _pem(server_key), "client-ca.crt": _pem(client_ca)}
    for name, text in files.items():
        (directory / name).write_text(text)
    return {"dir": directory, "ca_pem": _pem(server_ca), "admin_cert": _pem(admin), "admin_key": _pem(admin_key), "server_ca_key": server_ca_key_pem}



SERVERS = ["10.0.1.10", "10.0.2.10", "10.0.3.10"]


def _node(address, ready):
    return {"status": {"addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": "ip-x"}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class _ApiServer(http.server.BaseHTTPRequestHandler):
    ready_at = 0.0
    nodes_ready_at = 0.0
    requests: list

    def do_GET(self):  # noqa: N802
        peer = self.connection.getpeercert()
        subject = dict(item[0] for item in peer["subject"])
        self.requests.append((self.path, self.headers.get("Host")))
        if subject.get("commonName") != "system:admin":
            self._answer(403, b"forbidden")
        elif time.monotonic() < self.ready_at:
            self._answer(503, b"not ready")
        elif self.path == "/readyz":
            self._answer(200, b"ok")
        elif self.path == "/api/v1/nodes":
            joined = time.monotonic() >= self.nodes_ready_at
            items = [_node(SERVERS[0], True)] + [_node(address, joined) for address in SERVERS[1:]]
            self._answer(200, json.dumps({"kind": "NodeList", "items": items}).encode())
        else:
            self._answer(404, b"")

    def _answer(self, status, body):
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _server(pki, ready_after: float, nodes_after: float = 0.0):
    handler = type("Handler", (_ApiServer,), {"ready_at": time.monotonic() + ready_after,
                                               "nodes_ready_at": time.monotonic() + nodes_after, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["dir"] / "server.crt", pki["dir"] / "server.key")
    context.load_verify_locations(pki["dir"] / "client-ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handler = handler
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


def _probe(pki, port, nodes=(), name=API_NAME, ca=None):
    # Connect to the "load balancer" address, check the certificate for the API name.
    return ApiProbe(url=f"https://127.0.0.1:{port}", server_name=name, ca_pem=ca or pki["ca_pem"],
                    client_cert_pem=pki["admin_cert"], client_key_pem=pki["admin_key"], expected_nodes=tuple(nodes))


def test_succeeds_once_the_api_answers(pki):
    server = _server(pki, ready_after=1.5)
    try:
        started = time.monotonic()
        attempts = wait_for_api(_probe(pki, server.server_address[1]), timeout_seconds=20, interval_seconds=0.25, request_timeout=2)
        assert 1.4 <= time.monotonic() - started < 10
        assert attempts > 1
        # It asked for the API by its stable name, whatever address it connected to.
        assert ("/readyz", API_NAME) in server.handler.requests
    finally:
        server.shutdown()


def test_waits_until_every_server_is_a_ready_node(pki):
    server = _server(pki, ready_after=0, nodes_after=1.5)
    try:
        started = time.monotonic()
        wait_for_api(_probe(pki, server.server_address[1], nodes=SERVERS), timeout_seconds=20, interval_seconds=0.25, request_timeout=2)
        assert time.monotonic() - started >= 1.4  # /readyz was 200 from the start: it waited for the joiners
        with pytest.raises(ApiNotReady, match=r"servers not Ready yet: 10\.9\.9\.9"):
            wait_for_api(_probe(pki, server.server_address[1], nodes=SERVERS + ["10.9.9.9"]), timeout_seconds=0.6,
                         interval_seconds=0.2, request_timeout=0.5)
    finally:
        server.shutdown()


def test_times_out_with_what_to_check(pki):
    server = _server(pki, ready_after=3600)
    try:
        started = time.monotonic()
        with pytest.raises(ApiNotReady) as caught:
            wait_for_api(_probe(pki, server.server_address[1]), timeout_seconds=1.5, interval_seconds=0.25, request_timeout=1)
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert "was not ready within 1.5s" in message and "last: /readyz answered HTTP 503" in message
        assert "adminCidrs" in message and "apiReadyTimeoutSeconds" in message and "cloud-init-output.log" in message
    finally:
        server.shutdown()


def test_nothing_listening_times_out(pki):
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(ApiNotReady, match="ConnectionRefusedError"):
        wait_for_api(_probe(pki, port), timeout_seconds=0.6, interval_seconds=0.2, request_timeout=0.5)


def test_wrong_ca_or_wrong_name_is_not_ready(pki):
    server = _server(pki, ready_after=0)
    try:
        other_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other-ca")])
        other_ca = _pem(_certificate(name, name, other_key.public_key(), other_key, ca=True))
        with pytest.raises(ApiNotReady, match="CERTIFICATE_VERIFY_FAILED"):
            wait_for_api(_probe(pki, server.server_address[1], ca=other_ca), timeout_seconds=0.6, interval_seconds=0.2, request_timeout=0.5)
        # A certificate without the API name in its SANs (tls-san missing it) fails too.
        with pytest.raises(ApiNotReady, match="CERTIFICATE_VERIFY_FAILED"):
            wait_for_api(_probe(pki, server.server_address[1], name="other.example.test"), timeout_seconds=0.6,
                         interval_seconds=0.2, request_timeout=0.5)
    finally:
        server.shutdown()


def test_provider_create_waits_and_diff_replaces_when_there_is_something_new_to_wait_for(pki):
    server = _server(pki, ready_after=0.5)
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        props = {"url": url, "serverName": API_NAME, "caPem": pki["ca_pem"], "clientCertPem": pki["admin_cert"],
                 "clientKeyPem": pki["admin_key"], "timeoutSeconds": 15, "intervalSeconds": 0.2,
                 "expectedNodes": SERVERS, "triggers": ["lt-1:1"]}
        result = ApiGateProvider().create(props)
        assert result.id == url and result.outs["attempts"] >= 1
    finally:
        server.shutdown()
    provider = ApiGateProvider()
    diff = provider.diff(url, props, {**props, "timeoutSeconds": 30})
    assert diff.changes and not diff.replaces  # an update, no new wait
    assert provider.diff(url, props, {**props, "clientCertPem": "renewed"}).replaces == []
    assert provider.diff(url, props, {**props, "url": "https://other:6443"}).replaces == ["url"]
    assert provider.diff(url, props, {**props, "expectedNodes": SERVERS[:2] + ["10.0.2.77"]}).replaces == ["expectedNodes"]
    assert provider.diff(url, props, {**props, "triggers": ["lt-1:2"]}).replaces == ["triggers"]
    assert not provider.diff(url, props, dict(props)).changes
