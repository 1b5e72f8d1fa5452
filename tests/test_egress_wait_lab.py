"""The boot's egress wait against a real kernel and the real curl.

benchmarks/time_to_ready.py charges every private server the time its boot takes to
notice the NAT route once it exists (`phase:egress-poll`, modelled by
`durations.wait_for_a_route_appearing_at` from the poll cadence in rendering/polls.py and
Linux's SYN retransmission times). This runs the rendered `wait_for_egress` function in a
network namespace whose way out silently drops SYNs (what a VPC route table without a
default route does), opens the way at a chosen moment and measures when the function
returns. Only the lab's own namespaces carry traffic; nothing reaches the host's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import durations  # noqa: E402
from rendering import polls  # noqa: E402
from rendering.templating import render  # noqa: E402

IP = shutil.which("ip")
IPTABLES = shutil.which("iptables")
CURL = shutil.which("curl")
pytestmark = [
    pytest.mark.skipif(
        not (IP and IPTABLES and CURL),
        reason="needs `ip`, `iptables` and `curl` (scripts/bootstrap.sh installs iproute2, iptables, curl)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)"),
]

WORLD = "198.51.100.10"  # TEST-NET-2: "the internet", an address of the lab's world namespace
PORT = 8080
SERVER = f"""
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("{WORLD}", {PORT}), Handler).serve_forever()
"""


def sh(*args: str, timeout: float = 5) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed: {done.stderr.strip()}"
    return done.stdout


@pytest.fixture
def lab(tmp_path):
    tag = uuid.uuid4().hex[:6]
    node, world = f"eglab-{tag}-node", f"eglab-{tag}-world"
    server = None
    try:
        for ns in (node, world):
            sh(IP, "netns", "add", ns)
            sh(IP, "netns", "exec", ns, IP, "link", "set", "lo", "up")
        sh(IP, "link", "add", f"eg{tag}n", "netns", node, "type", "veth", "peer", "name", f"eg{tag}w", "netns", world)
        sh(IP, "netns", "exec", node, IP, "addr", "add", "10.0.128.10/24", "dev", f"eg{tag}n")
        sh(IP, "netns", "exec", node, IP, "link", "set", f"eg{tag}n", "up")
        sh(IP, "netns", "exec", node, IP, "route", "add", "default", "via", "10.0.128.1")
        sh(IP, "netns", "exec", world, IP, "addr", "add", "10.0.128.1/24", "dev", f"eg{tag}w")
        sh(IP, "netns", "exec", world, IP, "addr", "add", f"{WORLD}/32", "dev", "lo")
        sh(IP, "netns", "exec", world, IP, "link", "set", f"eg{tag}w", "up")
        server = subprocess.Popen([IP, "netns", "exec", world, sys.executable, "-c", SERVER])
        deadline = time.monotonic() + 5
        while subprocess.run([IP, "netns", "exec", node, CURL, "-fsS", "--max-time", "1", "-o", "/dev/null", "-I",
                              f"http://{WORLD}:{PORT}/"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "the lab's server did not come up"
            time.sleep(0.1)
        script = tmp_path / "ssm.sh"
        script.write_text(render("ssm.sh.j2", region="eu-west-1", parameter_prefix="/rancher-ha/lab"))
        yield node, world, script
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=5)
        for ns in (node, world):
            subprocess.run([IP, "netns", "delete", ns], capture_output=True)
        left = subprocess.run([IP, "netns", "list"], capture_output=True, text=True).stdout
        assert node not in left and world not in left, f"lab namespaces left behind: {left}"


def syn_linear_timeouts(namespace: str) -> int:
    """The setting the probe's namespace has (it is per network namespace): Linux 6.5+ has
    the sysctl (default 4); older kernels back off exponentially from the first resend (0)."""
    done = subprocess.run([IP, "netns", "exec", namespace, "cat", "/proc/sys/net/ipv4/tcp_syn_linear_timeouts"],
                          capture_output=True, text=True, timeout=5)
    return int(done.stdout) if done.returncode == 0 and done.stdout.strip() else 0


def blackhole(world: str, on: bool) -> None:
    # Silently dropped SYNs: what a private subnet sees before its default route exists.
    sh(IP, "netns", "exec", world, IPTABLES, "-I" if on else "-D", "INPUT", "-p", "tcp", "--dport", str(PORT), "-j", "DROP")


@pytest.mark.parametrize("opens_at", [0.5, 1.5, 3.2, 5.6])
def test_the_wait_notices_a_new_route_when_the_model_says(lab, opens_at):
    node, world, script = lab
    blackhole(world, True)
    started = time.monotonic()
    probe = subprocess.Popen([IP, "netns", "exec", node, "bash", "-c", f'. {script} && wait_for_egress "$0"',
                              f"http://{WORLD}:{PORT}/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(max(0.0, started + opens_at - time.monotonic()))
        blackhole(world, False)
        opened = time.monotonic()
        _, stderr = probe.communicate(timeout=30)
        noticed = time.monotonic()
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait(timeout=5)
    assert probe.returncode == 0, stderr
    measured = noticed - opened
    expected = durations.wait_for_a_route_appearing_at(polls.EGRESS, opened - started, syn_linear_timeouts(node))
    # Process start-up of bash and each curl adds a few tens of milliseconds per probe.
    assert measured == pytest.approx(expected, abs=0.4), (measured, expected)


def test_the_model_is_the_cycle_the_script_runs():
    """The same function the benchmark's mean comes from, at the cycle's landmarks, for
    the kernel Ubuntu 24.04 runs (SYNs at 0, 1, 2 s within a 3 s connect timeout) and an
    older one (0, 1 s)."""
    poll = polls.EGRESS
    period = poll.connect_timeout_s + poll.interval_s
    assert durations.syn_retransmits(4)[:6] == (1, 2, 3, 4, 5, 7)  # 1,1,1,1,1,2,... (ccce324dabfe)
    assert durations.syn_retransmits(0)[:3] == (1, 3, 7)
    assert durations.wait_for_a_route_appearing_at(poll, 0.25) == pytest.approx(0.75)  # the 1 s resend
    assert durations.wait_for_a_route_appearing_at(poll, 1.5) == pytest.approx(0.5)  # the 2 s resend
    assert durations.wait_for_a_route_appearing_at(poll, 1.5, linear_timeouts=0) == pytest.approx(period - 1.5)
    assert durations.wait_for_a_route_appearing_at(poll, 2.5) == pytest.approx(period - 2.5)  # the next probe
    assert durations.wait_for_a_route_appearing_at(poll, period + 0.5) == pytest.approx(0.5)
