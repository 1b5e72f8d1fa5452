"""The program's NGINX configurations, run by a real NGINX on 127.0.0.1."""

import dataclasses
import json
import socket
import ssl
import time
from collections import Counter

import pytest
import yaml

from conftest import DEV_PARAMETER_ROOT, NGINX_L4, NGINX_L7, cached_run
from nginx_lab import BACKEND_ADDRESSES, HOSTNAME, Backends, Nginx, http_get, lab_spec, make_certificate, nginx_missing_reason
from rendering.nginx import NginxSpec, render_nginx_conf

pytestmark = pytest.mark.skipif(nginx_missing_reason() is not None, reason=nginx_missing_reason() or "")


def program_spec(layer: str, distribution: str = "k3s") -> NginxSpec:
    """The spec the program builds for a stack at default settings."""
    return NginxSpec(hostname=HOSTNAME, layer=layer, backends=["10.0.1.10"], distribution=distribution)


@pytest.mark.parametrize("overrides, layer", [(NGINX_L4, "l4"), (NGINX_L7, "l7")])
def test_the_lab_config_is_the_programs_config(overrides, layer):
    """The deployed nginx.conf is this renderer's output for the node IPs, nothing else."""
    run = cached_run(overrides)
    # NGINX reads it from SSM at boot and on every refresh (it self-heals in an ASG).
    (parameter,) = [p for p in run.of_type("aws:ssm/parameter:Parameter") if p.inputs["name"] == f"{DEV_PARAMETER_ROOT}/nginx/nginx.conf"]
    node_ips = run.outputs["nodePrivateIps"].value
    expected = render_nginx_conf(dataclasses.replace(program_spec(layer), hostname="rancher.dev.example.com", backends=node_ips))
    assert parameter.inputs["value"] == expected


@pytest.fixture
def l4(tmp_path):
    spec = lab_spec(program_spec("l4"), tmp_path)
    with Backends(spec.backend_ports["http"]) as backends, Nginx(spec, tmp_path) as nginx:
        yield spec, backends, nginx


def _via_l4(spec) -> str:
    status, _, body = http_get("127.0.0.1", spec.ports["http"])
    assert status == 200
    return json.loads(body)["backend"]


def test_l4_nginx_t_passes(tmp_path):
    result = Nginx(lab_spec(program_spec("l4", "rke2"), tmp_path), tmp_path).test_config()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_l4_spreads_connections_and_survives_a_dead_backend(l4):
    spec, backends, _ = l4
    seen = Counter(_via_l4(spec) for _ in range(30))
    assert set(seen) == set(BACKEND_ADDRESSES), seen
    assert min(seen.values()) >= 5, seen

    backends.stop(BACKEND_ADDRESSES[1])
    after = Counter(_via_l4(spec) for _ in range(30))  # every request must succeed
    assert BACKEND_ADDRESSES[1] not in after and sum(after.values()) == 30


def test_l4_passes_443_through_as_raw_tcp(l4):
    spec, _, _ = l4
    # At L4 NGINX holds no certificate: bytes on 443 reach the node's 443 untouched
    # (there the cluster ingress speaks TLS; here a plain backend proves nothing is added).
    with Backends(spec.backend_ports["https"]):
        status, _, body = http_get("127.0.0.1", spec.ports["https"], "/raw")
    assert status == 200 and json.loads(body)["path"] == "/raw"
    assert "x-forwarded-proto" not in {key.lower() for key in json.loads(body)["headers"]}


@pytest.fixture
def l7(tmp_path):
    certificate = make_certificate(tmp_path)
    spec = lab_spec(program_spec("l7"), tmp_path, certificate)
    with Backends(spec.backend_ports["http"]) as backends, Nginx(spec, tmp_path) as nginx:
        yield spec, backends, nginx, certificate


def _tls_context(certificate, alpn=None):
    context = ssl.create_default_context(cafile=str(certificate["ca"]))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def test_l7_nginx_t_passes(tmp_path):
    certificate = make_certificate(tmp_path)
    result = Nginx(lab_spec(program_spec("l7", "rke2"), tmp_path, certificate), tmp_path).test_config()
    assert result.returncode == 0, result.stderr


def test_l7_serves_https_with_the_configured_certificate_and_forwards_headers(l7):
    import http.client

    spec, _, _, certificate = l7
    connection = http.client.HTTPSConnection("127.0.0.1", spec.ports["https"], context=_tls_context(certificate), timeout=5)
    # SNI and verification use the Rancher hostname; the CA is the one we configured.
    connection.sock = _tls_context(certificate).wrap_socket(
        socket.create_connection(("127.0.0.1", spec.ports["https"]), timeout=5), server_hostname=HOSTNAME
    )
    subject = dict(item[0] for item in connection.sock.getpeercert()["subject"])
    assert subject["commonName"] == HOSTNAME
    connection.request("GET", "/v3/settings?x=1", headers={"Host": HOSTNAME, "X-Forwarded-For": "198.51.100.9"})
    response = connection.getresponse()
    assert response.status == 200
    seen = json.loads(response.read())
    headers = {key.lower(): value for key, value in seen["headers"].items()}
    assert headers["host"] == HOSTNAME
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == str(spec.ports["https"])
    assert headers["x-forwarded-for"] == "198.51.100.9, 127.0.0.1"
    assert seen["path"] == "/v3/settings?x=1"


def _h2_get(tls, path):
    """One HTTP/2 GET over an established TLS socket, with the h2 protocol library."""
    import h2.connection
    import h2.events

    connection = h2.connection.H2Connection()
    connection.initiate_connection()
    connection.send_headers(1, [(":method", "GET"), (":authority", HOSTNAME), (":scheme", "https"), (":path", path)], end_stream=True)
    tls.sendall(connection.data_to_send())
    status, body, deadline = None, b"", time.monotonic() + 5
    while time.monotonic() < deadline:
        data = tls.recv(65535)
        if not data:
            break
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                return status, body
        tls.sendall(connection.data_to_send())
    raise AssertionError("no complete HTTP/2 response")


def test_l7_negotiates_http2(l7):
    spec, _, _, certificate = l7
    with socket.create_connection(("127.0.0.1", spec.ports["https"]), timeout=5) as raw:
        with _tls_context(certificate, ["h2", "http/1.1"]).wrap_socket(raw, server_hostname=HOSTNAME) as tls:
            assert tls.selected_alpn_protocol() == "h2"
            status, body = _h2_get(tls, "/ping")
    assert status == 200
    headers = {key.lower(): value for key, value in json.loads(body)["headers"].items()}
    assert headers["x-forwarded-proto"] == "https" and headers["host"] == HOSTNAME


def test_l7_still_passes_the_api_port_through_as_raw_tcp(l7):
    spec, _, _, _ = l7
    # 6443 carries kubectl and the gate with client certificates:
    # NGINX must pass them through as TCP even when it terminates TLS on 443.
    with Backends(spec.backend_ports["api"]):
        status, _, body = http_get("127.0.0.1", spec.ports["api"], "/version")
    assert status == 200 and json.loads(body)["path"] == "/version"


def test_l7_redirects_http_to_https_with_the_same_path(l7):
    spec, _, _, _ = l7
    status, headers, _ = http_get("127.0.0.1", spec.ports["http"], "/dashboard/home?x=1")
    assert status == 301
    assert headers["Location"] == f"https://{HOSTNAME}/dashboard/home?x=1"


def _websocket(spec, certificate, path="/v3/subscribe"):
    from websockets.sync.client import connect

    return connect(
        f"wss://{HOSTNAME}:{spec.ports['https']}{path}",
        ssl=_tls_context(certificate),
        sock=socket.create_connection(("127.0.0.1", spec.ports["https"]), timeout=5),
        server_hostname=HOSTNAME,
        ping_interval=None,  # no keep-alive: the connection must survive idle on its own
        open_timeout=5,
    )


def test_l7_websocket_echoes_and_survives_65_seconds_idle(l7):
    spec, _, _, certificate = l7
    with _websocket(spec, certificate) as websocket:
        websocket.send("hello")
        assert websocket.recv(timeout=5) == "hello"
        time.sleep(65)  # NGINX's default proxy_read_timeout (60 s) would cut here
        websocket.send("still there")
        assert websocket.recv(timeout=5) == "still there"


def test_a_short_proxy_timeout_would_cut_an_idle_websocket(tmp_path):
    """Control for the 65 s test: the same setup with a 2 s timeout drops the idle socket."""
    from websockets.exceptions import ConnectionClosed

    certificate = make_certificate(tmp_path)
    spec = dataclasses.replace(lab_spec(program_spec("l7"), tmp_path, certificate), proxy_timeout_seconds=2)
    with Backends(spec.backend_ports["http"]), Nginx(spec, tmp_path):
        with _websocket(spec, certificate) as websocket:
            websocket.send("hello")
            assert websocket.recv(timeout=5) == "hello"
            time.sleep(4)
            with pytest.raises((ConnectionClosed, TimeoutError)):
                websocket.send("gone?")
                websocket.recv(timeout=3)
