"""A server's cluster membership: deleting it takes the server out of the cluster before
its instance terminates.

K3s and RKE2 remove a server's etcd member only through its Kubernetes Node: the etcd
member controller (k3s-io/k3s pkg/etcd/member_controller.go, read at commit
14cf9632252443ce7227df556b476f786e79a1b5; RKE2 runs the same code with `version.Program`
set to `rke2`) removes the member when the Node carries the annotation
`etcd.<program>.cattle.io/remove: "true"` (and records `etcd.<program>.cattle.io/removed-node-name`),
or when the Node is deleted (a wrangler OnRemove handler, which holds the Node with a
finalizer until the member is gone). Terminating an instance deletes nothing, so without
this a dead member stays and counts against quorum.

delete(): refuse if the cluster would lose quorum, cordon, evict the pods (the Eviction API
respects PodDisruptionBudgets), ask for the etcd member's removal and wait for it, delete
the Node and wait until it is gone, every remaining server is Ready and every budget that
allowed a disruption before allows one again (Rancher's evicted pod is back, Ready,
elsewhere), so the next server's removal starts from a whole cluster. Bounded in time,
with a message saying what to check. The removal itself makes calls fail for a while (the
member's removal may elect a new etcd leader; the leaving server's own API loses its etcd
while the load balancer may still send it calls): unanswered calls, 5xx and 429 are
retried until the deadline (see `transient`). K3s on an external datastore has no etcd member; its
Node is still deleted (a stale Node keeps Rancher's replica count and scheduling wrong).

Self-contained (standard library + pulumi.dynamic + the gate's API client, shipped before
this module as a prelude, see shipping.py).
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar
from urllib.parse import quote

from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

if TYPE_CHECKING:
    from .api_gate_provider import ApiProbe, request, ssl_context
else:
    try:
        from .api_gate_provider import ApiProbe, request, ssl_context
    except ImportError:  # shipped: the gate's source ran first in this module's namespace
        pass

# The input whose change means "another machine": the member of the old one must go.
REPLACING_INPUTS = ("instanceId",)
# Inputs the delete uses, kept current in the state: a renewed admin certificate (its key
# is renewed with it) or a new load balancer must reach a later delete.
UPDATING_INPUTS = ("address", "program", "url", "serverName", "caPem", "clientCertPem", "timeoutSeconds")
# The provider's own code, as the program ships it. A delete runs the code stored in the
# state by the last create or update (pulumi sdk/python/lib/pulumi/dynamic/__main__.py), and
# the removal IS this resource's delete: new removal code reaches a running stack only
# through an update.
PROVIDER_CODE = "__provider"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
ETCD_LABEL = "node-role.kubernetes.io/etcd"
MIRROR_POD = "kubernetes.io/config.mirror"
POLL_SECONDS = 2.0
T = TypeVar("T")


class MemberNotRemoved(Exception):
    """The server could not leave the cluster safely; the message says why and what to do."""


class ApiError(OSError):
    """The API answered a call with a status the removal did not expect."""

    def __init__(self, what: str, status: int):
        super().__init__(f"{what} answered HTTP {status}")
        self.status = status


def transient(error: BaseException) -> bool:
    """Whether waiting may cure `error`: no answer (refused, reset, timed out, closed: the load
    balancer sent the call to the leaving server, or etcd is electing a leader) or an answer
    meaning "later" (5xx, 429). A refused certificate or another 4xx will not get better."""
    if isinstance(error, ApiError):
        return error.status >= 500 or error.status == 429
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    return isinstance(error, (OSError, http.client.HTTPException))


def remove_annotation(program: str) -> str:
    return f"etcd.{program}.cattle.io/remove"


def removed_annotation(program: str) -> str:
    return f"etcd.{program}.cattle.io/removed-node-name"


def internal_ip(node: dict) -> Optional[str]:
    for address in node.get("status", {}).get("addresses", []):
        if address.get("type") == "InternalIP":
            return address.get("address")
    return None


def is_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in node.get("status", {}).get("conditions", []))


def is_server(node: dict) -> bool:
    labels = node.get("metadata", {}).get("labels", {}) or {}
    return labels.get(CONTROL_PLANE_LABEL) == "true" or labels.get(ETCD_LABEL) == "true"


def is_etcd(node: dict) -> bool:
    return (node.get("metadata", {}).get("labels", {}) or {}).get(ETCD_LABEL) == "true"


def quorum_problem(nodes: list[dict], leaving: dict) -> Optional[str]:
    """Why removing `leaving` now would lose etcd quorum, or None.

    After the removal the members are the other etcd nodes; a majority of them must be Ready."""
    if not is_etcd(leaving):
        others = [n for n in nodes if is_server(n) and n is not leaving]
        if not any(is_ready(n) for n in others):
            return "no other server is Ready: removing this one would leave the cluster without a server"
        return None
    members = [n for n in nodes if is_etcd(n) and n is not leaving]
    ready = [n for n in members if is_ready(n)]
    if not members:
        return "it is the last etcd member"
    if len(ready) * 2 <= len(members):
        names = ", ".join(sorted(n["metadata"]["name"] for n in members if not is_ready(n)))
        return (f"only {len(ready)} of the {len(members)} remaining etcd members would be Ready (not Ready: {names}): "
                "no quorum")
    return None


def evictable(pod: dict) -> bool:
    metadata = pod.get("metadata", {})
    if MIRROR_POD in (metadata.get("annotations") or {}):
        return False  # a static pod: the kubelet owns it
    if any(owner.get("kind") == "DaemonSet" for owner in metadata.get("ownerReferences") or []):
        return False  # DaemonSet pods would come straight back (kubectl drain --ignore-daemonsets)
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


class Api:
    """The few calls a removal makes, with the admin client certificate through the load balancer."""

    def __init__(self, probe: "ApiProbe", context: Optional[ssl.SSLContext] = None, timeout: float = 10.0):
        self.probe, self.timeout = probe, timeout
        self.context = context or ssl_context(probe)

    def call(self, method: str, path: str, body: Optional[dict] = None, content_type: str = "application/json") -> tuple[int, Any]:
        status, raw = request(self.probe, self.context, method, path, self.timeout, body=body, content_type=content_type)
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:
            return status, {}

    def nodes(self) -> list[dict]:
        status, body = self.call("GET", "/api/v1/nodes")
        if status != 200:
            raise ApiError("GET /api/v1/nodes", status)
        return body.get("items", [])

    def patch_node(self, name: str, patch: dict) -> None:
        status, _ = self.call("PATCH", f"/api/v1/nodes/{quote(name)}", patch, "application/merge-patch+json")
        if status not in (200, 201):
            raise ApiError(f"PATCH node {name}", status)


    def budgets(self) -> dict[str, int]:
        """namespace/name -> disruptionsAllowed of every PodDisruptionBudget."""
        status, body = self.call("GET", "/apis/policy/v1/poddisruptionbudgets")
        if status != 200:
            raise ApiError("GET /apis/policy/v1/poddisruptionbudgets", status)
        return {f"{b['metadata']['namespace']}/{b['metadata']['name']}": int((b.get("status") or {}).get("disruptionsAllowed", 0))
                for b in body.get("items", [])}


def find_node(nodes: list[dict], address: str) -> Optional[dict]:
    return next((n for n in nodes if internal_ip(n) == address), None)


def remove_member(
    api: Api,
    address: str,
    program: str,
    timeout_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
) -> list[str]:
    """Take the server at `address` out of the cluster; return what was done, step by step."""
    deadline = clock() + timeout_seconds
    done: list[str] = []

    def wait(what: str, condition: Callable[[], Optional[str]], record: bool = True) -> None:
        while True:
            try:
                reason = condition()
            except Exception as error:  # noqa: BLE001 - only transient ones are retried
                if not transient(error):
                    raise
                reason = f"the API did not answer: {error}" if not isinstance(error, ApiError) else str(error)
            if reason is None:
                if record:
                    done.append(what)
                return
            if clock() >= deadline:
                raise MemberNotRemoved(
                    f"Server {address} did not leave the cluster within {timeout_seconds:g}s: {what} did not happen "
                    f"(last: {reason}). Its instance was NOT terminated. Check the cluster (kubectl get nodes; "
                    f"kubectl get pdb -A; kubectl -n kube-system logs of the {program} servers), fix the cause and run "
                    "`pulumi up` again: the removal resumes where it stopped."
                )
            sleep(poll_seconds)

    def attempt(what: str, action: Callable[[], T]) -> T:
        """One call, retried like a wait while it fails transiently."""
        outcome: list[T] = []

        def once() -> None:
            outcome.append(action())

        wait(what, once, record=False)
        return outcome[0]

    nodes = attempt("listing the Nodes", api.nodes)
    node = find_node(nodes, address)
    if node is None:
        done.append("no Node with this address: nothing to remove")
        return done
    name = node["metadata"]["name"]
    problem = quorum_problem(nodes, node)
    if problem:
        raise MemberNotRemoved(
            f"Refusing to remove server {name} ({address}): {problem}. Its instance was NOT terminated. Bring the other "
            "servers back to Ready first (or replace a lost one with `pulumi up --replace`), then run `pulumi up` again."
        )
    # The servers to wait for once it is gone: those Ready now. A Node already NotReady (a lost
    # server: after an etcd restore the snapshot remembers every old server's Node) may never
    # be Ready again; its own ClusterMember delete removes it.
    others = [n["metadata"]["name"] for n in nodes if is_server(n) and n is not node and is_ready(n)]
    # Budgets that allow a disruption now must allow one again before the next server
    # leaves: the evicted pods' replacements Ready (Rancher's new pod), not only scheduled.
    budgets = [key for key, allowed in attempt("reading the PodDisruptionBudgets", api.budgets).items() if allowed >= 1]

    leaving_ready = is_ready(node)
    attempt(f"cordoning {name}", lambda: api.patch_node(name, {"spec": {"unschedulable": True}}))
    done.append(f"cordoned {name}")

    def pods_left() -> list[dict]:
        status, body = api.call("GET", f"/api/v1/pods?fieldSelector={quote('spec.nodeName=' + name)}")
        if status != 200:
            raise ApiError(f"listing pods on {name}", status)
        return [p for p in body.get("items", []) if evictable(p)]

    def drained() -> Optional[str]:
        # A lost server's kubelet never confirms its pods' end: once evicted they count as gone.
        left = [p for p in pods_left() if leaving_ready or not p["metadata"].get("deletionTimestamp")]
        blocked = []
        for pod in left:
            metadata = pod["metadata"]
            if metadata.get("deletionTimestamp"):
                continue  # already evicted, terminating
            eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]}}
            status, _ = api.call("POST", f"/api/v1/namespaces/{quote(metadata['namespace'])}/pods/{quote(metadata['name'])}/eviction", eviction)
            if status == 429:  # a PodDisruptionBudget allows no disruption now: try again later
                blocked.append(f"{metadata['namespace']}/{metadata['name']}")
            elif status not in (200, 201, 404):
                blocked.append(f"{metadata['namespace']}/{metadata['name']} (HTTP {status})")
        if not left:
            return None
        return f"{len(left)} pod(s) still on {name}" + (f"; eviction refused by a PodDisruptionBudget: {', '.join(blocked)}" if blocked else "")

    wait(f"drained {name} (evictions respect PodDisruptionBudgets)", drained)

    def node_now() -> Optional[dict]:
        status, body = api.call("GET", f"/api/v1/nodes/{quote(name)}")
        if status == 404:
            return None
        if status != 200:
            raise ApiError(f"GET node {name}", status)
        return body

    if is_etcd(node):
        attempt(f"asking for the removal of {name}'s etcd member",
                lambda: api.patch_node(name, {"metadata": {"annotations": {remove_annotation(program): "true"}}}))

        def member_removed() -> Optional[str]:
            current = node_now()
            if current is None or (current["metadata"].get("annotations") or {}).get(removed_annotation(program)):
                return None
            return f"{removed_annotation(program)} not set on {name} yet"

        wait(f"etcd member of {name} removed", member_removed)

    def delete_node() -> None:
        status, _ = api.call("DELETE", f"/api/v1/nodes/{quote(name)}")
        if status not in (200, 202, 404):
            error = ApiError(f"DELETE node {name}", status)
            if transient(error):
                raise error
            raise MemberNotRemoved(f"Deleting Node {name} answered HTTP {status}. Its instance was NOT terminated.")

    attempt(f"deleting Node {name}", delete_node)
    wait(f"Node {name} deleted", lambda: None if node_now() is None else f"Node {name} still exists (finalizers)")

    def others_ready() -> Optional[str]:
        current = {n["metadata"]["name"]: n for n in api.nodes()}
        waiting = sorted(o for o in others if o not in current or not is_ready(current[o]))
        return f"servers not Ready: {', '.join(waiting)}" if waiting else None

    wait(f"remaining servers Ready ({', '.join(sorted(others))})", others_ready)

    def budgets_whole() -> Optional[str]:
        current = api.budgets()
        short = sorted(key for key in budgets if current.get(key, 1) < 1)
        return f"PodDisruptionBudgets allowing no disruption yet: {', '.join(short)}" if short else None

    wait("disrupted workloads Ready again (PodDisruptionBudgets allow a disruption)", budgets_whole)

    # The removed server still runs until its instance terminates, right after this delete.
    # If its service restarted meanwhile, it may have joined again as a new member, with a
    # new, uncordoned Node: K3s's embedded etcd writes `<data-dir>/db/etcd/tombstone` when its
    # member is removed and logs "please restart ... to rejoin" (k3s-io/k3s
    # pkg/daemons/executor/embed.go, stored versions), and on the next start `Register`
    # moves the data dir aside and the server joins afresh (pkg/etcd/etcd.go at
    # 001bb933737b9152072a7c26d556e74221a72d00). RKE2's etcd is a static pod: its handling was
    # not read; the check below does not depend on it. The delete must not end then:
    # terminating the instance would leave a dead member behind.
    def not_back() -> None:
        again = find_node(api.nodes(), address)
        if again is not None:
            raise MemberNotRemoved(
                f"Server {address} registered again as Node {again['metadata']['name']} after it left the cluster (its "
                f"{program} service restarted and rejoined). Its instance was NOT terminated. Run `pulumi up` again: "
                "the removal starts over and takes the new member out."
            )

    attempt(f"checking that {address} did not register again", not_back)
    done.append(f"{address} did not register again")
    return done


def probe_from(props: dict[str, Any]) -> "ApiProbe":
    return ApiProbe(url=props["url"], server_name=props["serverName"], ca_pem=props["caPem"],
                    client_cert_pem=props["clientCertPem"], client_key_pem=props["clientKeyPem"])


class ClusterMemberProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        # Joining is the server's own boot; the readiness gate (a dependency) saw it Ready.
        return CreateResult(id_=str(props["instanceId"]), outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Only another machine replaces a member (and so removes the old one from the
        # cluster); new credentials, a new load balancer address or timeout are updates.
        replaces = [key for key in REPLACING_INPUTS if olds.get(key) != news.get(key)]
        changes = bool(replaces) or any(olds.get(k) != news.get(k) for k in (*UPDATING_INPUTS, PROVIDER_CODE))
        return DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        remove_member(Api(probe_from(props)), props["address"], props["program"], float(props["timeoutSeconds"]))
