"""The readiness gate's provider: wait until the Kubernetes API is ready through the load
balancer AND every server is a Ready node.

Self-contained (standard library + pulumi.dynamic): shipped to the provider process as
source (see shipping.py). The probe connects to the load balancer's address and checks
the certificate against a name every server's tls-san holds (the Rancher hostname, as
SNI), so it does not depend on DNS having propagated to the machine running `pulumi up`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlsplit

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

# Inputs whose change means "a new cluster, load balancer or server to wait for".
REPLACING_INPUTS = ("url", "serverName", "caPem", "expectedNodes", "triggers")


class ApiNotReady(Exception):
    """The API did not become ready in time; the message says what to check."""


@dataclass(frozen=True)
class ApiProbe:
    url: str  # https://<load balancer address>:6443
    server_name: str  # a name in the server certificate's SANs (the Rancher hostname)
    ca_pem: str
    client_cert_pem: str
    client_key_pem: str
    expected_nodes: Sequence[str] = ()  # InternalIP of every server


def ssl_context(probe: ApiProbe) -> ssl.SSLContext:
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


def get(probe: ApiProbe, context: ssl.SSLContext, path: str, timeout: float) -> tuple[int, bytes]:
    return request(probe, context, "GET", path, timeout)


def request(
    probe: ApiProbe, context: ssl.SSLContext, method: str, path: str, timeout: float,
    body: Optional[dict] = None, content_type: str = "application/json",
) -> tuple[int, bytes]:
    """One Kubernetes API call through the load balancer, TLS checked for probe.server_name."""
    parts = urlsplit(probe.url)
    raw = socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout)
    try:
        tls = context.wrap_socket(raw, server_hostname=probe.server_name)
    except BaseException:
        raw.close()
        raise
    connection = http.client.HTTPSConnection(probe.server_name, parts.port or 443, timeout=timeout, context=context)
    connection.sock = tls
    try:
        headers = {"Host": probe.server_name, "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def ready_node_addresses(node_list: dict) -> set[str]:
    ready = set()
    for node in node_list.get("items", []):
        status = node.get("status", {})
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])):
            ready.update(a.get("address") for a in status.get("addresses", []) if a.get("type") == "InternalIP")
    return ready


def probe_once(probe: ApiProbe, context: ssl.SSLContext, request_timeout: float) -> Optional[str]:
    """None when the API is ready and every expected server is a Ready node, else why not."""
    try:
        status, _ = get(probe, context, "/readyz", request_timeout)
        if status != 200:
            return f"/readyz answered HTTP {status}"
        if not probe.expected_nodes:
            return None
        status, body = get(probe, context, "/api/v1/nodes", request_timeout)
        if status != 200:
            return f"/api/v1/nodes answered HTTP {status}"
        missing = sorted(set(probe.expected_nodes) - ready_node_addresses(json.loads(body)))
        return f"servers not Ready yet: {', '.join(missing)}" if missing else None
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as error:
        return f"{type(error).__name__}: {error}"


# How often the gate asks again: a probe is two small requests, and every second the
# gate waits for nothing is a second of every first `pulumi up`.
POLL_INTERVAL_SECONDS = 1.0


API_ADVICE = (
    "Check: that the servers booted "
    "(EC2 console output, /var/log/cloud-init-output.log), that they could read their SSM "
    "parameters and download K3s/RKE2 (NAT or proxy), that the load balancer's targets are "
    "healthy on 6443, and that adminCidrs includes the address this `pulumi up` runs from. "
    "Raise apiReadyTimeoutSeconds if boots are just slow."
)


def poll_until(
    attempt: Callable[[float], tuple[bool, Any]],
    timeout_seconds: float,
    interval_seconds: float,
    request_timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    fail: Callable[[int, Any], Exception],
) -> tuple[Any, int]:
    """Call `attempt(request timeout)` -> (done, value) until done; return (value, attempts).
    Past the deadline raise `fail(attempts, last value)`."""
    deadline = clock() + timeout_seconds
    attempts = 0
    while True:
        attempts += 1
        done, value = attempt(min(request_timeout, max(1.0, deadline - clock())))
        if done:
            return value, attempts
        remaining = deadline - clock()
        if remaining <= 0:
            raise fail(attempts, value)
        sleep(min(interval_seconds, remaining))


def wait_for_api(
    probe: ApiProbe,
    timeout_seconds: float,
    interval_seconds: float = POLL_INTERVAL_SECONDS,
    request_timeout: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    check: Callable[[ApiProbe, ssl.SSLContext, float], Optional[str]] = probe_once,
    waiting_for: str = "ready",
    advice: str = API_ADVICE,
) -> int:
    """Poll `check` until it returns None; return the number of attempts. Raise ApiNotReady
    on timeout (or at once when `check` raises it: a state no waiting can fix)."""
    context = ssl_context(probe)

    def attempt(request_seconds: float) -> tuple[bool, Optional[str]]:
        reason = check(probe, context, request_seconds)
        return reason is None, reason

    def fail(attempts: int, reason: Any) -> Exception:
        return ApiNotReady(
            f"The Kubernetes API at {probe.url} ({probe.server_name}) was not {waiting_for} within {timeout_seconds:g}s "
            f"({attempts} attempts; last: {reason}). {advice}"
        )

    _, attempts = poll_until(attempt, timeout_seconds, interval_seconds, request_timeout, clock, sleep, fail)
    return attempts


def probe_from(props: dict[str, Any]) -> ApiProbe:
    return ApiProbe(
        url=props["url"],
        server_name=props["serverName"],
        ca_pem=props["caPem"],
        client_cert_pem=props["clientCertPem"],
        client_key_pem=props["clientKeyPem"],
        expected_nodes=tuple(props.get("expectedNodes") or ()),
    )


def shrink_without_members(olds: dict[str, Any], news: dict[str, Any]) -> Optional[str]:
    """Why this update must be refused: it removes servers while the state predates their
    ClusterMembers (components/membership.py), so nothing would take them out of the
    cluster before their instances terminate; or None."""
    before, after = (olds or {}).get("expectedNodes"), news.get("expectedNodes")
    if not olds or olds.get("serverMembers") or not isinstance(before, list) or not isinstance(after, list):
        return None
    if len(after) >= len(before):
        return None
    return (
        f"serverCount: this `pulumi up` removes servers ({len(before)} -> {len(after)}) while upgrading a stack "
        "deployed before servers had a ClusterMember: their instances would terminate with their Nodes and etcd "
        f"members still in the cluster (dead members: quorum lost). Fix: set serverCount back to {len(before)}, run "
        f"`pulumi up` once (it only adds a member per server), then lower serverCount."
    )


class ApiGateProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        reason = shrink_without_members(olds, news)
        return CheckResult(inputs=news, failures=[CheckFailure("expectedNodes", reason)] if reason else [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        attempts = wait_for_api(
            probe_from(props),
            timeout_seconds=float(props["timeoutSeconds"]),
            interval_seconds=float(props.get("intervalSeconds") or POLL_INTERVAL_SECONDS),
        )
        return CreateResult(id_=props["url"], outs={**props, "attempts": attempts})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A new address, CA, server or load balancer means a cluster to wait for again;
        # a timeout change alone does not.
        replaces = [key for key in REPLACING_INPUTS if olds.get(key) != news.get(key)]
        changes = bool(replaces) or olds.get("timeoutSeconds") != news.get("timeoutSeconds")
        return DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**news, "attempts": _olds.get("attempts")})


# -- the in-place upgrade's wait (components/upgrades.py) --------------------------------
# system-upgrade-controller labels a node with this + the plan's name, valued the plan's
# status.latestHash, once that plan's job completed on it, and uncordons it
# (rancher/system-upgrade-controller v0.20.1 pkg/upgrade/handle_batch.go, constants.go).
PLAN_LABEL_PREFIX = "plan.upgrade.cattle.io/"
UPGRADE_ADVICE = (
    "The upgrade goes on in the cluster: see `kubectl -n system-upgrade get plans,jobs,pods` and the "
    "logs of the job on the node named above. Run `pulumi up` again to go on waiting once it moves."
)


class ClusterAhead(ApiNotReady):
    """A node runs a newer Kubernetes minor than the stack: nothing can downgrade it."""


def _release(version: str) -> tuple[int, int, int]:
    """(minor, patch, build) of 'v1.34.2+k3s1' / 'v1.34.2+rke2r1'."""
    core, _, build = version.lstrip("v").partition("+")
    parts = core.split(".")
    return int(parts[1]), int(parts[2]), int("".join(ch for ch in build if ch.isdigit()) or 0)


def servers_ahead(node_list: dict, version: str) -> list[str]:
    """'<node> runs <version>' for every node running a newer release than `version`
    (minor, patch or build): system-upgrade-controller would install `version` over it
    (rke2-upgrade/k3s-upgrade replace the binary whenever it differs, in either direction)."""
    ahead = []
    for node in node_list.get("items", []):
        running = node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        if running and _release(running) > _release(version):
            ahead.append(f"{node.get('metadata', {}).get('name', '?')} runs {running}")
    return ahead


def ahead_message(ahead: Sequence[str], version: str) -> str:
    newest = max((entry.rsplit(" runs ", 1)[1] for entry in ahead), key=_release)
    return (
        f"{', '.join(ahead)}: newer than kubernetesVersion {version}. Kubernetes cannot be downgraded (etcd "
        f"refuses an older member, and the upgrade controller would install {version} over them). Set "
        f"kubernetesVersion to {newest}: the stack must say what the cluster runs, or a replacement server "
        "would install the older one."
    )


def no_server_ahead_check(version: str) -> Callable[[ApiProbe, ssl.SSLContext, float], Optional[str]]:
    """Before the upgrade Plan is created or changed: fail at once if any node runs a newer
    release than `version`; done as soon as the nodes are listed."""

    def check(probe: ApiProbe, context: ssl.SSLContext, request_timeout: float) -> Optional[str]:
        try:
            status, body = get(probe, context, "/api/v1/nodes", request_timeout)
        except (OSError, ssl.SSLError, http.client.HTTPException) as error:
            return f"{type(error).__name__}: {error}"
        if status != 200:
            return f"/api/v1/nodes answered HTTP {status}"
        ahead = servers_ahead(json.loads(body), version)
        if ahead:
            raise ClusterAhead(ahead_message(ahead, version))
        return None

    return check


def upgrade_progress(
    node_list: dict, plan: dict, expected: Sequence[str], version: str, plan_finished: bool = True
) -> Optional[str]:
    """None when every expected server is a Ready, schedulable node running `version` and,
    with `plan_finished`, the plan's controller has resolved `version` and finished on every
    one of them; else why not."""
    status = plan.get("status") or {}
    latest_hash = status.get("latestHash")
    # The controller records spec.version with '+' made '-' (an image tag cannot hold '+':
    # pkg/upgrade/plan/plan.go MungeVersion, handle_upgrade.go).
    if plan_finished and (status.get("latestVersion") != version.replace("+", "-") or not latest_hash):
        return f"the plan has not resolved {version} yet (status.latestVersion {status.get('latestVersion')!r})"
    plan_label = PLAN_LABEL_PREFIX + plan.get("metadata", {}).get("name", "")
    by_address: dict[str, dict] = {}
    for node in node_list.get("items", []):
        for address in node.get("status", {}).get("addresses", []):
            if address.get("type") == "InternalIP":
                by_address[address.get("address")] = node
    waiting = []
    for address in expected:
        node = by_address.get(address)
        if node is None:
            waiting.append(f"{address}: no node")
            continue
        name = node.get("metadata", {}).get("name", address)
        running = node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in node.get("status", {}).get("conditions", [])
        )
        if running and _release(running) > _release(version):
            raise ClusterAhead(ahead_message([f"{name} runs {running}"], version))
        if running != version:  # a server down before its turn holds every other one (the Plan's prepare)
            waiting.append(f"{name}: runs {running or 'unknown'}{'' if ready else ' and is not Ready'}")
        elif plan_finished and node.get("metadata", {}).get("labels", {}).get(plan_label) != latest_hash:
            waiting.append(f"{name}: plan not finished")
        elif not ready:
            waiting.append(f"{name}: not Ready")
        elif node.get("spec", {}).get("unschedulable"):
            waiting.append(f"{name}: cordoned")
    return f"waiting for {', '.join(waiting)}" if waiting else None


def upgrade_check(
    plan_path: str, version: str, plan_finished: bool
) -> Callable[[ApiProbe, ssl.SSLContext, float], Optional[str]]:
    def check(probe: ApiProbe, context: ssl.SSLContext, request_timeout: float) -> Optional[str]:
        try:
            status, body = get(probe, context, plan_path, request_timeout)
            if status != 200:
                return f"{plan_path} answered HTTP {status}"
            plan = json.loads(body)
            status, body = get(probe, context, "/api/v1/nodes", request_timeout)
            if status != 200:
                return f"/api/v1/nodes answered HTTP {status}"
            return upgrade_progress(json.loads(body), plan, probe.expected_nodes, version, plan_finished)
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as error:
            return f"{type(error).__name__}: {error}"

    return check


# Inputs whose change means "the cluster must reach this again".
UPGRADE_INPUTS = ("version", "planPath", "expectedNodes", "url", "caPem")


class KubernetesUpgradeWaitProvider(ResourceProvider):
    """Waits until the system-upgrade-controller plan has brought every server to `version`.
    Never replaced: a new version, server or cluster address updates it, and the update waits.

    On create the servers were installed at `version` by their user data (or, on a stack
    deployed before this wait existed, run what they run): it waits for every one to run it,
    Ready and schedulable, not for the controller or its pass over them, so a new stack's
    Rancher does not wait for them. An update of the version waits for that pass too."""

    def _wait(self, props: dict[str, Any], plan_finished: bool) -> dict[str, Any]:
        attempts = wait_for_api(
            probe_from(props),
            timeout_seconds=float(props["timeoutSeconds"]),
            interval_seconds=float(props.get("intervalSeconds") or 10.0),
            check=upgrade_check(props["planPath"], props["version"], plan_finished),
            waiting_for=f"running Kubernetes {props['version']} on every server",
            advice=UPGRADE_ADVICE,
        )
        return {**props, "attempts": attempts, "runningVersion": props["version"]}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=props["planPath"], outs=self._wait(props, plan_finished=False))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in UPGRADE_INPUTS if olds.get(key) != news.get(key)]
        changes = bool(changed) or olds.get("timeoutSeconds") != news.get("timeoutSeconds")
        return DiffResult(changes=changes, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if any(olds.get(key) != news.get(key) for key in UPGRADE_INPUTS):
            return UpdateResult(outs=self._wait(news, plan_finished=olds.get("version") != news.get("version")))
        return UpdateResult(outs={**news, "attempts": olds.get("attempts"), "runningVersion": olds.get("runningVersion")})


class KubernetesVersionCheckProvider(ResourceProvider):
    """Runs before the upgrade Plan is created or changed (the Plan depends on it): refuses a
    kubernetesVersion older than what any node runs, before the controller could act on it.
    Checks again whenever the version changes; never replaced."""

    def _check(self, props: dict[str, Any]) -> dict[str, Any]:
        attempts = wait_for_api(
            probe_from(props),
            timeout_seconds=float(props["timeoutSeconds"]),
            check=no_server_ahead_check(props["version"]),
            waiting_for=f"listing its nodes to compare them with {props['version']}",
        )
        return {**props, "attempts": attempts}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"no-server-ahead-of-{props['version']}", outs=self._check(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=olds.get("version") != news.get("version"), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._check(news))


# -- waiting for an object's status (rancher-backup's Backup and Restore) ------------------
class ObjectNotReady(Exception):
    """The object did not report completion in time; the message says what it last said."""


def completion(obj: dict, needs_file: bool) -> tuple[bool, str]:
    """(done, what it says) for a resources.cattle.io Backup or Restore.

    backup-restore-operator (pkg/controllers/backup/controller.go, restore/controller.go
    at v10.0.8 and v11.0.0) marks the end of a one-time backup or a restore by resetting
    the conditions to `Ready: True` with the message `Completed` (a backup also sets
    `Uploaded: True` and `status.filename`). `Ready: True` alone is set midway, before
    the upload; failures leave `Reconciling: True` with the error as its message and
    retry.
    """
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    done = ready.get("status") == "True" and ready.get("message") == "Completed"
    if needs_file:
        done = done and bool(status.get("filename"))
    reconciling = conditions.get("Reconciling") or {}
    said = reconciling.get("message") or ready.get("message") or "no status yet"
    return done, said


def wait_for_object(
    probe: ApiProbe,
    path: str,
    needs_file: bool,
    timeout_seconds: float,
    interval_seconds: float = 5.0,
    request_timeout: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Poll GET <path> until the object reports completion; return its status."""
    context = ssl_context(probe)

    def attempt(request_seconds: float) -> tuple[bool, Any]:
        try:
            status, body = get(probe, context, path, request_seconds)
            if status != 200:
                return False, f"GET {path} answered HTTP {status}"
            obj = json.loads(body)
            done, said = completion(obj, needs_file)
            return done, (obj.get("status") or {}) if done else said
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as error:
            return False, f"{type(error).__name__}: {error}"

    def fail(_attempts: int, last: Any) -> Exception:
        return ObjectNotReady(
            f"{path} did not complete within {timeout_seconds:g}s (last: {last}). Check the operator: "
            "kubectl -n cattle-resources-system logs deploy/rancher-backup; its S3 credentials and "
            "bucket (kubectl get backups,restores)."
        )

    status, _ = poll_until(attempt, timeout_seconds, interval_seconds, request_timeout, clock, sleep, fail)
    return status


class ObjectReadyProvider(ResourceProvider):
    """Creating it waits until the object at `path` reports completion. A new `path` (a new
    Backup or Restore name) is a replacement: the new object is waited for."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        status = wait_for_object(
            probe_from(props),
            props["path"],
            bool(props.get("needsFile")),
            timeout_seconds=float(props["timeoutSeconds"]),
        )
        return CreateResult(id_=props["path"], outs={**props, "filename": status.get("filename") or ""})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in ("path",) if olds.get(key) != news.get(key)]
        changes = bool(replaces) or any(
            olds.get(key) != news.get(key) for key in ("url", "serverName", "caPem", "timeoutSeconds")
        )
        return DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**news, "filename": olds.get("filename") or ""})
