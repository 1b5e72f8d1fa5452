"""Which peer Traefik really sees behind K3s ServiceLB, proved with the real netfilter rules.

The trust list the program gives Traefik (`ports.web.forwardedHeaders.trustedIPs`, stages/cluster.py
`trusted_forwarders`) must contain the address Traefik sees as the TCP peer when the L7
NGINX forwards a request, or Traefik drops NGINX's X-Forwarded-Proto, sets its own
("http") and Rancher with tls=external redirects forever (k3s #1710, klipper-lb #31).

This builds that path out of Linux network namespaces (all addresses private to the
namespaces, nothing is routed to the host):

    nginx ns  10.0.0.10/20 (the stack's first load-balancer subnet)
      |  veth, "VPC routing": on-link routes between the two subnets
    node ns   10.0.128.10/20 (the stack's first node subnet), ip_forward=1,
      |       CNI portmap hostPort DNAT, a model of kube-proxy's ClusterIP rules
      +-- veth (ptp pod network, 10.42.0.1 on the host side) -- svclb ns 10.42.0.5
      +-- veth                                                -- traefik ns 10.42.0.7:8000

In the svclb namespace it applies the netfilter rules klipper-lb's entry script installs
(`KLIPPER_LB_ENTRY_RULES`, k3s-io/klipper-lb@v0.4.17 `entry` lines 63 and 76-78; unchanged
from v0.4.9, see docs/upstream-facts.md section 1), with the environment K3s gives the
Traefik svclb pod (pkg/cloudprovider/servicelb.go `newDaemonSet`, Cluster policy:
DEST_IPS = the Service's ClusterIP, DEST_PORT = SRC_PORT = the Service port).

A tiny HTTP server in the traefik namespace answers with the peer address it sees and
the X-Forwarded-Proto it received.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import select
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from string import Template

import pytest
import yaml

from conftest import NGINX_L7, cached_run

IP = shutil.which("ip")
IPTABLES = shutil.which("iptables")
pytestmark = pytest.mark.skipif(
    not (IP and IPTABLES),
    reason="needs `ip` (iproute2) and `iptables` to build the netfilter lab "
    "(scripts/bootstrap.sh installs iptables; `apt-get install -y iptables iproute2`)",
)

# --- the rules k3s-io/klipper-lb@v0.4.17:entry installs (the same in v0.4.9 .. v0.4.17) ---
# Line 63, once per ${SRC_RANGES} entry:
KLIPPER_LB_SRC_RANGE_RULE = (
    "iptables -t filter -I FORWARD -s ${src_range} -p ${DEST_PROTO} --dport ${DEST_PORT} -j ACCEPT"
)
# Lines 76-78, once per ${DEST_IPS} entry, only when /proc/sys/net/ipv4/ip_forward is 1:
KLIPPER_LB_DEST_IP_RULES = (
    "iptables -t filter -A FORWARD -d ${dest_ip}/32 -p ${DEST_PROTO} --dport ${DEST_PORT} -j DROP",
    "iptables -t nat -I PREROUTING -p ${DEST_PROTO} --dport ${SRC_PORT} -j DNAT --to ${dest_ip}:${DEST_PORT}",
    "iptables -t nat -I POSTROUTING -d ${dest_ip}/32 -p ${DEST_PROTO} -j MASQUERADE",
)

CLUSTER_CIDR = "10.42.0.0/16"  # K3s default --cluster-cidr
POD_GATEWAY = "10.42.0.1"  # the host side of every pod veth (cni0 on flannel)
SVCLB_POD = "10.42.0.5"
TRAEFIK_POD = "10.42.0.7"
TRAEFIK_CLUSTER_IP = "10.43.0.10"  # in K3s's default --service-cidr 10.43.0.0/16
TRAEFIK_WEB_PORT = 8000  # the chart's `web` entrypoint (targetPort of Service port 80)

# The env K3s sets on the svclb-traefik pod's port-80 container (externalTrafficPolicy
# Cluster, no loadBalancerSourceRanges). The container takes the node's port 80 through
# a hostPort; K3s sets the pod sysctl net.ipv4.ip_forward=1.
SVCLB_ENV = {
    "SRC_PORT": "80",
    "SRC_RANGES": "0.0.0.0/0",
    "DEST_PROTO": "TCP",
    "DEST_PORT": "80",
    "DEST_IPS": TRAEFIK_CLUSTER_IP,
}


def klipper_lb_rules(env: dict[str, str]) -> list[str]:
    """The entry script's start_proxy() for IPv4, in its order, as iptables command lines."""
    rules = [Template(KLIPPER_LB_SRC_RANGE_RULE).substitute(env, src_range=r) for r in env["SRC_RANGES"].split(",")]
    for dest_ip in env["DEST_IPS"].split(","):
        rules += [Template(rule).substitute(env, dest_ip=dest_ip) for rule in KLIPPER_LB_DEST_IP_RULES]
    return rules


# CNI portmap's hostPort DNAT, reduced to its effect (the real plugin jumps through
# CNI-HOSTPORT-DNAT / CNI-DN-<hash>; it masquerades only hairpin and localhost traffic,
# so an external source is kept).
def hostport_rules(port: int, pod: str, pod_port: int) -> list[str]:
    return [
        f"iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport {port} "
        f"-j DNAT --to-destination {pod}:{pod_port}"
    ]


# A model of kube-proxy (iptables mode) for Traefik's ClusterIP: KUBE-SERVICES ->
# KUBE-SVC-* marks for masquerade only sources outside the cluster CIDR, KUBE-SEP-* DNATs
# to the endpoint, KUBE-POSTROUTING masquerades marked packets.
KUBE_PROXY_CLUSTER_IP_RULES = [
    f"iptables -t nat -A PREROUTING -d {TRAEFIK_CLUSTER_IP}/32 -p tcp --dport 80 ! -s {CLUSTER_CIDR} "
    "-j MARK --set-xmark 0x4000/0x4000",
    f"iptables -t nat -A PREROUTING -d {TRAEFIK_CLUSTER_IP}/32 -p tcp --dport 80 "
    f"-j DNAT --to-destination {TRAEFIK_POD}:{TRAEFIK_WEB_PORT}",
    "iptables -t nat -A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE",
]

# The other Cluster-policy path (docs/upstream-facts.md section 1, "A second path"):
# ServiceLB publishes the node IPs as the Service's load-balancer ingress, so kube-proxy
# on the node itself DNATs nodeIP:80 straight to a Traefik endpoint, marking external
# traffic for masquerade (KUBE-EXT-* -> KUBE-MARK-MASQ), before the svclb hostPort.
def kube_proxy_lb_ip_rules(node_ip: str) -> list[str]:
    return [
        f"iptables -t nat -A PREROUTING -d {node_ip}/32 -p tcp --dport 80 -j MARK --set-xmark 0x4000/0x4000",
        f"iptables -t nat -A PREROUTING -d {node_ip}/32 -p tcp --dport 80 "
        f"-j DNAT --to-destination {TRAEFIK_POD}:{TRAEFIK_WEB_PORT}",
        "iptables -t nat -A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE",
    ]


TRAEFIK_STANDIN = r"""
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"peer": self.client_address[0],
                           "x_forwarded_proto": self.headers.get("X-Forwarded-Proto")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
print("ready", flush=True)
server.serve_forever()
"""

NGINX_CLIENT = r"""
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], 80, timeout=5)
conn.request("GET", "/", headers={"Host": "rancher.dev.example.com", "X-Forwarded-Proto": "https",
                                  "X-Forwarded-For": "203.0.113.9"})
print(conn.getresponse().read().decode())
"""


def sh(*args: str, timeout: float = 5) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class Lab:
    """Namespaces named lab-<tag>-*, veths named fw<tag>*: unique per run, always removed."""

    ROLES = ("nginx", "node", "svclb", "traefik")

    def __init__(self, nginx: str, nginx_prefix: int, node: str, node_prefix: int):
        self.tag = uuid.uuid4().hex[:6]
        self.ns = {role: f"fwlab-{self.tag}-{role}" for role in self.ROLES}
        self.nginx, self.nginx_prefix, self.node, self.node_prefix = nginx, nginx_prefix, node, node_prefix
        self.server: subprocess.Popen | None = None

    def exec(self, role: str, *args: str, timeout: float = 5) -> str:
        return sh(IP, "netns", "exec", self.ns[role], *args, timeout=timeout)

    def iptables(self, role: str, rule: str) -> None:
        argv = shlex.split(rule)
        assert argv[0] == "iptables"
        self.exec(role, IPTABLES, *argv[1:])

    def sysctl(self, role: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        self.exec(role, "sh", "-c", f"echo {value} > {path}")

    def veth(self, role_a: str, name_a: str, role_b: str, name_b: str) -> None:
        # Both ends are created directly inside their namespaces: nothing in the host's.
        sh(IP, "link", "add", name_a, "netns", self.ns[role_a], "type", "veth", "peer", "name", name_b, "netns", self.ns[role_b])
        self.exec(role_a, IP, "link", "set", name_a, "up")
        self.exec(role_b, IP, "link", "set", name_b, "up")

    def build(self) -> None:
        for role, ns in self.ns.items():
            sh(IP, "netns", "add", ns)
            self.exec(role, IP, "link", "set", "lo", "up")
            for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
                self.sysctl(role, key, "0")
        for role in ("node", "svclb"):
            self.sysctl(role, "net.ipv4.ip_forward", "1")
        t = self.tag
        # NGINX in the load-balancer subnet <-> the node in the node subnet ("VPC routing").
        self.veth("nginx", f"fw{t}ng", "node", f"fw{t}nv")
        self.exec("nginx", IP, "addr", "add", f"{self.nginx}/{self.nginx_prefix}", "dev", f"fw{t}ng")
        self.exec("node", IP, "addr", "add", f"{self.node}/{self.node_prefix}", "dev", f"fw{t}nv")
        node_net = ipaddress.ip_interface(f"{self.node}/{self.node_prefix}").network
        nginx_net = ipaddress.ip_interface(f"{self.nginx}/{self.nginx_prefix}").network
        self.exec("nginx", IP, "route", "add", str(node_net), "dev", f"fw{t}ng")
        self.exec("node", IP, "route", "add", str(nginx_net), "dev", f"fw{t}nv")
        # Pods: a routed (ptp) pod network, so every pod-to-pod packet crosses the node's
        # netfilter (what br_netfilter does for flannel's cni0 bridge).
        for role, pod, host_if, pod_if in (
            ("svclb", SVCLB_POD, f"fw{t}sh", f"fw{t}sp"),
            ("traefik", TRAEFIK_POD, f"fw{t}th", f"fw{t}tp"),
        ):
            self.veth("node", host_if, role, pod_if)
            self.exec("node", IP, "addr", "add", f"{POD_GATEWAY}/32", "dev", host_if)
            self.exec("node", IP, "route", "add", f"{pod}/32", "dev", host_if)
            self.exec(role, IP, "addr", "add", f"{pod}/32", "dev", pod_if)
            self.exec(role, IP, "route", "add", POD_GATEWAY, "dev", pod_if, "scope", "link")
            self.exec(role, IP, "route", "add", "default", "via", POD_GATEWAY, "dev", pod_if)

    def start_traefik(self) -> None:
        self.server = subprocess.Popen(
            [IP, "netns", "exec", self.ns["traefik"], sys.executable, "-c", TRAEFIK_STANDIN, TRAEFIK_POD, str(TRAEFIK_WEB_PORT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        ready, _, _ = select.select([self.server.stdout], [], [], 5)
        assert ready and self.server.stdout.readline().strip() == "ready", "the Traefik stand-in did not start"

    def request_from_nginx(self) -> dict:
        out = self.exec("nginx", sys.executable, "-c", NGINX_CLIENT, self.node, timeout=10)
        return json.loads(out)

    def counters(self, role: str, table: str, chain: str) -> dict[str, int]:
        """Packets per target in one chain (e.g. {"DNAT": 1, "MASQUERADE": 1})."""
        out = self.exec(role, IPTABLES, "-t", table, "-L", chain, "-n", "-v", "-x")
        counts: dict[str, int] = {}
        for line in out.splitlines()[2:]:
            fields = line.split()
            if len(fields) >= 3:
                counts[fields[2]] = counts.get(fields[2], 0) + int(fields[0])
        return counts

    def leftovers(self) -> list[str]:
        names = sh(IP, "netns", "list") + sh(IP, "-o", "link", "show")
        return [line for line in names.splitlines() if self.tag in line]

    def destroy(self) -> None:
        if self.server is not None:
            self.server.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(timeout=5)
            for stream in (self.server.stdout, self.server.stderr):
                if stream:
                    stream.close()
        for ns in self.ns.values():
            # Deleting a namespace deletes the veths in it, and with them their peers.
            subprocess.run([IP, "netns", "delete", ns], capture_output=True, timeout=5)
        for _ in range(50):  # bounded: at most ~5 s
            if not self.leftovers():
                return
            time.sleep(0.1)


@contextlib.contextmanager
def lab(nginx: str, nginx_prefix: int, node: str, node_prefix: int):
    the_lab = Lab(nginx, nginx_prefix, node, node_prefix)
    try:
        the_lab.build()
        yield the_lab
    finally:
        the_lab.destroy()
        assert the_lab.leftovers() == [], "the lab left namespaces or links behind"


def program_trusted_ips() -> list[str]:
    run = cached_run(NGINX_L7)
    (config,) = [r for r in run.resources if r.type == "kubernetes:helm.cattle.io/v1:HelmChartConfig"]
    assert config.inputs["metadata"] == {"name": "traefik", "namespace": "kube-system"}
    return yaml.safe_load(config.inputs["spec"]["valuesContent"])["ports"]["web"]["forwardedHeaders"]["trustedIPs"]


def stack_addresses() -> tuple[str, int, str, int]:
    """An NGINX address in the stack's first LB subnet, the node's in its first node subnet."""
    run = cached_run(NGINX_L7)
    subnets = sorted(s.inputs["cidrBlock"] for s in run.of_type("aws:ec2/subnet:Subnet") if "public" in s.name)
    nodes = sorted(s.inputs["cidrBlock"] for s in run.of_type("aws:ec2/subnet:Subnet") if "private" in s.name)
    lb_net, node_net = ipaddress.ip_network(subnets[0]), ipaddress.ip_network(nodes[0])
    return str(lb_net[10]), lb_net.prefixlen, str(node_net[10]), node_net.prefixlen


def trusts(trusted_ips: list[str], peer: str) -> bool:
    """Traefik's entrypoint `forwardedHeaders.trustedIPs`: keep X-Forwarded-* only from a
    peer (the TCP remote address) inside one of the CIDRs/IPs."""
    return any(ipaddress.ip_address(peer) in ipaddress.ip_network(c, strict=False) for c in trusted_ips)


def proto_rancher_gets(trusted_ips: list[str], peer: str, received: str) -> str:
    """What Traefik passes on: the received header from a trusted peer; otherwise it drops
    X-Forwarded-* and sets its own, "http" on the plain `web` entrypoint."""
    return received if trusts(trusted_ips, peer) else "http"


def test_behind_k3s_servicelb_traefik_sees_the_svclb_pod_and_the_program_trusts_it():
    nginx, nginx_prefix, node, node_prefix = stack_addresses()
    assert (nginx, node) == ("10.0.0.10", "10.0.128.10")
    with lab(nginx, nginx_prefix, node, node_prefix) as the_lab:
        for rule in hostport_rules(80, SVCLB_POD, 80) + KUBE_PROXY_CLUSTER_IP_RULES:
            the_lab.iptables("node", rule)
        rules = klipper_lb_rules(SVCLB_ENV)
        assert rules[2] == "iptables -t nat -I PREROUTING -p TCP --dport 80 -j DNAT --to 10.43.0.10:80"
        assert rules[3] == "iptables -t nat -I POSTROUTING -d 10.43.0.10/32 -p TCP -j MASQUERADE"
        for rule in rules:
            the_lab.iptables("svclb", rule)
        the_lab.start_traefik()

        seen = the_lab.request_from_nginx()

        # The request really went through klipper-lb's DNAT and MASQUERADE.
        assert the_lab.counters("svclb", "nat", "PREROUTING").get("DNAT", 0) >= 1
        assert the_lab.counters("svclb", "nat", "POSTROUTING").get("MASQUERADE", 0) >= 1
        # kube-proxy's masquerade mark did not fire: the source was already a pod's.
        assert the_lab.counters("node", "nat", "POSTROUTING").get("MASQUERADE", 0) == 0

    peer = seen["peer"]
    assert seen["x_forwarded_proto"] == "https"  # NAT does not touch the header...
    assert peer == SVCLB_POD and peer != nginx  # ...but Traefik's peer is the svclb pod
    assert ipaddress.ip_address(peer) in ipaddress.ip_network(CLUSTER_CIDR)

    program = program_trusted_ips()
    first_release = [f"{nginx}/32"]
    assert trusts(program, peer)
    assert proto_rancher_gets(program, peer, seen["x_forwarded_proto"]) == "https"
    assert not trusts(first_release, peer)
    # Traefik would have set X-Forwarded-Proto: http, and Rancher (tls=external) would
    # answer every request with a redirect to https://, forever.
    assert proto_rancher_gets(first_release, peer, seen["x_forwarded_proto"]) == "http"


def test_via_kube_proxy_load_balancer_ip_rules_traefik_sees_the_pod_gateway_and_the_program_trusts_it():
    nginx, nginx_prefix, node, node_prefix = stack_addresses()
    with lab(nginx, nginx_prefix, node, node_prefix) as the_lab:
        # kube-proxy's KUBE-SERVICES come first; the svclb hostPort would only see what they leave.
        for rule in kube_proxy_lb_ip_rules(node) + hostport_rules(80, SVCLB_POD, 80):
            the_lab.iptables("node", rule)
        for rule in klipper_lb_rules(SVCLB_ENV):
            the_lab.iptables("svclb", rule)
        the_lab.start_traefik()
        seen = the_lab.request_from_nginx()
        assert the_lab.counters("node", "nat", "POSTROUTING").get("MASQUERADE", 0) >= 1
        assert the_lab.counters("svclb", "nat", "PREROUTING").get("DNAT", 0) == 0  # not via svclb

    # The node's address toward the pod: cni0's 10.42.N.1 on flannel (10.42.N.0 through
    # flannel.1 when Traefik runs on another node): the cluster CIDR again, never NGINX.
    assert seen == {"peer": POD_GATEWAY, "x_forwarded_proto": "https"}
    assert trusts(program_trusted_ips(), POD_GATEWAY)
    assert not trusts([f"{nginx}/32"], POD_GATEWAY)


def test_control_on_host_ports_traefik_sees_nginx_and_the_program_trusts_it_too():
    """RKE2 runs its ingress (ingress-nginx, or Traefik) on host ports: only the CNI
    hostPort DNAT, no klipper-lb MASQUERADE, so the peer is the NGINX address."""
    nginx, nginx_prefix, node, node_prefix = stack_addresses()
    with lab(nginx, nginx_prefix, node, node_prefix) as the_lab:
        for rule in hostport_rules(80, TRAEFIK_POD, TRAEFIK_WEB_PORT):
            the_lab.iptables("node", rule)
        the_lab.start_traefik()
        seen = the_lab.request_from_nginx()
        assert the_lab.counters("node", "nat", "PREROUTING").get("DNAT", 0) >= 1

    assert seen == {"peer": nginx, "x_forwarded_proto": "https"}
    program = program_trusted_ips()
    assert trusts(program, nginx) and trusts([f"{nginx}/32"], nginx)
    assert proto_rancher_gets(program, nginx, "https") == "https"
