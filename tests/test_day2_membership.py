"""A server leaving the cluster (components/providers/cluster_member_provider.py) against a
fake kube-apiserver on 127.0.0.1 that requires the admin client certificate, keeps Nodes
and Pods, answers evictions through a PodDisruptionBudget (429 while it allows no
disruption) and plays the K3s/RKE2 etcd member controller: `etcd.<program>.cattle.io/remove`
on a Node makes it record `removed-node-name` (k3s-io/k3s pkg/etcd/member_controller.go
at 14cf9632252443ce7227df556b476f786e79a1b5, `sync`)."""

import base64
import copy
import http.server
import json
import ssl
import subprocess
import sys
import threading
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.membership import ShippedClusterMemberProvider
from components.providers.api_gate_provider import ApiProbe
from components.providers.cluster_member_provider import Api, ClusterMemberProvider, MemberNotRemoved, remove_member
from test_api_wait import API_NAME, pki  # noqa: F401  (the module's PKI fixture)

SERVERS = {"server-a": "10.0.1.10", "server-b": "10.0.2.10", "server-c": "10.0.3.10"}


def _node(name, address, etcd=True, ready=True, program="rke2"):
    labels = {"node-role.kubernetes.io/control-plane": "true"}
    annotations = {}
    if etcd:
        labels["node-role.kubernetes.io/etcd"] = "true"
        annotations[f"etcd.{program}.cattle.io/node-name"] = f"{name}-1234"
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {},
            "status": {"addresses": [{"type": "InternalIP", "address": address}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _pod(name, node, namespace="cattle-system", daemonset=False):
    owners = [{"kind": "DaemonSet" if daemonset else "ReplicaSet", "name": "x"}]
    return {"metadata": {"name": name, "namespace": namespace, "ownerReferences": owners},
            "spec": {"nodeName": node}, "status": {"phase": "Running"}}


class Cluster:
    def __init__(self, nodes, pods, program="rke2", pdb_refusals=0, member_controller=True, pdb_recovery=3,
                 faults=(), faults_from="removal", fault_method=None, rejoin=False):
        self.nodes = {n["metadata"]["name"]: n for n in nodes}
        # Rancher's budget (maxUnavailable 1): an eviction takes its one allowed disruption;
        # the replacement pod is Ready after `pdb_recovery` more reads of the budget.
        self.disruptions_allowed = 1
        self.pdb_recovery = pdb_recovery
        self.recovering = None
        self.pods = pods
        self.program = program
        self.pdb_refusals = pdb_refusals  # evictions answered 429 before one is allowed
        self.member_controller = member_controller
        self.calls = []
        self.lock = threading.Lock()
        # What the API does to the next requests once armed ("start": from the first call;
        # "removal": from the etcd remove annotation, when the member removal's leader
        # election and the leaving server's own API going away make calls fail): "drop"
        # closes the connection unanswered, a number answers that status. Consumed in order.
        self.faults = list(faults)
        self.armed = faults_from == "start"
        self.fault_method = fault_method  # only calls with this method fail, if set
        # The leaving server's service restarts after its Node was deleted: it rejoins
        # (K3s's tombstone handling) and registers its Node again, uncordoned.
        self.rejoin = rejoin
        self.deleted = {}


def _handler(cluster: Cluster):
    class Handler(http.server.BaseHTTPRequestHandler):
        recovering = None

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else None

        def _answer(self, status, body=None):
            raw = json.dumps(body or {}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _serve(self, method):
            peer = dict(item[0] for item in self.connection.getpeercert()["subject"])
            if peer.get("commonName") != "system:admin":
                return self._answer(403)
            parts = urlsplit(self.path)
            path = [unquote(p) for p in parts.path.strip("/").split("/")]
            body = self._body()
            with cluster.lock:
                cluster.calls.append((method, parts.path, body))
                if cluster.armed and cluster.faults and cluster.fault_method in (None, method):
                    fault = cluster.faults.pop(0)
                    if fault == "drop":
                        self.close_connection = True
                        return None
                    return self._answer(fault)
                if len(path) == 3 and path[:3] == ["api", "v1", "nodes"] and cluster.rejoin and cluster.deleted:
                    for name, node in cluster.deleted.items():
                        cluster.nodes[name] = {**node, "spec": {}}
                    cluster.deleted, cluster.rejoin = {}, False
                if path[:3] == ["api", "v1", "nodes"]:
                    if len(path) == 3:
                        return self._answer(200, {"items": list(copy.deepcopy(cluster.nodes).values())})
                    node = cluster.nodes.get(path[3])
                    if node is None:
                        return self._answer(404)
                    if method == "GET":
                        return self._answer(200, node)
                    if method == "PATCH":
                        assert self.headers["Content-Type"] == "application/merge-patch+json"
                        node["spec"].update(body.get("spec", {}))
                        annotations = body.get("metadata", {}).get("annotations", {})
                        node["metadata"]["annotations"].update(annotations)
                        key = f"etcd.{cluster.program}.cattle.io/remove"
                        if annotations.get(key) == "true":
                            cluster.armed = True
                        if annotations.get(key) == "true" and cluster.member_controller:
                            member = node["metadata"]["annotations"].pop(f"etcd.{cluster.program}.cattle.io/node-name")
                            node["metadata"]["annotations"][f"etcd.{cluster.program}.cattle.io/removed-node-name"] = member
                        return self._answer(200, node)
                    if method == "DELETE":
                        cluster.deleted[path[3]] = cluster.nodes.pop(path[3])
                        return self._answer(200)
                if path == ["apis", "policy", "v1", "poddisruptionbudgets"]:
                    if Handler.recovering is not None:
                        Handler.recovering -= 1
                        if Handler.recovering <= 0:
                            cluster.disruptions_allowed, Handler.recovering = 1, None
                    budget = {"metadata": {"namespace": "cattle-system", "name": "rancher"},
                              "status": {"disruptionsAllowed": cluster.disruptions_allowed}}
                    return self._answer(200, {"items": [budget]})
                if path[:3] == ["api", "v1", "pods"]:
                    node = parse_qs(parts.query)["fieldSelector"][0].split("=", 1)[1]
                    return self._answer(200, {"items": [p for p in cluster.pods if p["spec"]["nodeName"] == node]})
                if path[:3] == ["api", "v1", "namespaces"] and path[-1] == "eviction" and method == "POST":
                    assert body["kind"] == "Eviction" and body["apiVersion"] == "policy/v1"
                    if cluster.pdb_refusals > 0:
                        cluster.pdb_refusals -= 1
                        return self._answer(429)
                    cluster.pods = [p for p in cluster.pods if p["metadata"]["name"] != path[5]]
                    if path[3] == "cattle-system":
                        cluster.disruptions_allowed, Handler.recovering = 0, cluster.pdb_recovery
                    return self._answer(201)
            return self._answer(404)

        def do_GET(self):  # noqa: N802
            self._serve("GET")

        def do_PATCH(self):  # noqa: N802
            self._serve("PATCH")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

        def do_DELETE(self):  # noqa: N802
            self._serve("DELETE")

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def api_server(pki):  # noqa: F811
    servers = []

    def start(cluster: Cluster):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(cluster))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki["dir"] / "server.crt", pki["dir"] / "server.key")
        context.load_verify_locations(pki["dir"] / "client-ca.crt")
        context.verify_mode = ssl.CERT_REQUIRED
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        probe = ApiProbe(url=f"https://127.0.0.1:{server.server_address[1]}", server_name=API_NAME, ca_pem=pki["ca_pem"],
                         client_cert_pem=pki["admin_cert"], client_key_pem=pki["admin_key"])
        return Api(probe, timeout=2)

    yield start
    for server in servers:
        server.shutdown()


def _three(program="rke2", etcd=True, ready=("server-a", "server-b", "server-c")):
    return [_node(name, address, etcd=etcd, ready=name in ready, program=program) for name, address in SERVERS.items()]


def _remove(api, address="10.0.3.10", program="rke2", timeout=10.0):
    return remove_member(api, address, program, timeout, poll_seconds=0.05)


def test_an_etcd_server_is_drained_through_the_pdb_its_member_removed_then_its_node_deleted(api_server):
    pods = [_pod("rancher-1", "server-c"), _pod("canal-x", "server-c", "kube-system", daemonset=True), _pod("rancher-2", "server-a")]
    cluster = Cluster(_three(), pods, pdb_refusals=2)
    done = _remove(api_server(cluster))
    assert "server-c" not in cluster.nodes
    calls = [(method, path) for method, path, _ in cluster.calls if method != "GET"]
    cordon = calls.index(("PATCH", "/api/v1/nodes/server-c"))
    evictions = [i for i, c in enumerate(calls) if c == ("POST", "/api/v1/namespaces/cattle-system/pods/rancher-1/eviction")]
    remove = len(calls) - 1 - calls[::-1].index(("PATCH", "/api/v1/nodes/server-c"))
    delete = calls.index(("DELETE", "/api/v1/nodes/server-c"))
    # cordon, evictions (two refused by the PDB, then allowed), member removal, Node delete
    assert cordon < evictions[0] and len(evictions) == 3 and evictions[-1] < remove < delete, calls
    assert not any("canal-x" in path for _, path in calls), "DaemonSet pods are not evicted"
    patches = [body for method, _, body in cluster.calls if method == "PATCH"]
    assert patches == [{"spec": {"unschedulable": True}}, {"metadata": {"annotations": {"etcd.rke2.cattle.io/remove": "true"}}}]
    assert [p["metadata"]["name"] for p in cluster.pods] == ["canal-x", "rancher-2"]
    assert any("etcd member of server-c removed" in step for step in done)
    # It returned only once Rancher's budget allowed a disruption again (its new pod Ready).
    assert done[-2].startswith("disrupted workloads Ready again") and cluster.disruptions_allowed == 1
    assert done[-1] == "10.0.3.10 did not register again"
    budget_reads = [i for i, (m, path, _) in enumerate(cluster.calls) if path == "/apis/policy/v1/poddisruptionbudgets"]
    assert budget_reads[0] < [i for i, (m, _, _) in enumerate(cluster.calls) if m == "PATCH"][0]


def test_k3s_uses_its_own_annotation(api_server):
    cluster = Cluster(_three(program="k3s"), [], program="k3s")
    _remove(api_server(cluster), program="k3s")
    patches = [body for method, _, body in cluster.calls if method == "PATCH"]
    assert {"metadata": {"annotations": {"etcd.k3s.cattle.io/remove": "true"}}} in patches
    assert "server-c" not in cluster.nodes


def test_k3s_on_a_datastore_has_no_member_but_its_node_is_deleted(api_server):
    cluster = Cluster(_three(program="k3s", etcd=False), [_pod("rancher-1", "server-c")], program="k3s")
    _remove(api_server(cluster), program="k3s")
    patches = [body for method, _, body in cluster.calls if method == "PATCH"]
    assert patches == [{"spec": {"unschedulable": True}}]
    assert "server-c" not in cluster.nodes and cluster.pods == []


def test_refuses_before_touching_anything_when_the_rest_would_lose_quorum(api_server):
    cluster = Cluster(_three(ready=("server-a", "server-c")), [])
    with pytest.raises(MemberNotRemoved, match=r"only 1 of the 2 remaining etcd members would be Ready \(not Ready: server-b\): no quorum"):
        _remove(api_server(cluster))
    assert [m for m, _, _ in cluster.calls] == ["GET"] and "server-c" in cluster.nodes


def test_a_drain_the_pdb_never_allows_times_out_and_keeps_the_node(api_server):
    cluster = Cluster(_three(), [_pod("rancher-1", "server-c")], pdb_refusals=10**6)
    with pytest.raises(MemberNotRemoved) as caught:
        _remove(api_server(cluster), timeout=0.5)
    message = str(caught.value)
    assert "eviction refused by a PodDisruptionBudget: cattle-system/rancher-1" in message
    assert "instance was NOT terminated" in message and "kubectl get pdb -A" in message
    assert "server-c" in cluster.nodes


def test_a_member_the_controller_never_removes_times_out_before_the_node_is_deleted(api_server):
    cluster = Cluster(_three(), [], member_controller=False)
    with pytest.raises(MemberNotRemoved, match="etcd member of server-c removed did not happen"):
        _remove(api_server(cluster), timeout=0.5)
    assert "server-c" in cluster.nodes and not any(m == "DELETE" for m, _, _ in cluster.calls)


def test_a_server_without_a_node_is_already_gone(api_server):
    cluster = Cluster(_three(), [])
    assert _remove(api_server(cluster), address="10.9.9.9") == ["no Node with this address: nothing to remove"]
    assert len(cluster.nodes) == 3


def test_diff_replaces_only_for_another_machine():
    provider = ClusterMemberProvider()
    old = {"instanceId": "i-1", "address": "10.0.1.10", "program": "rke2", "url": "https://lb:6443", "serverName": "r.example.com",
           "caPem": "ca", "clientCertPem": "cert-1", "clientKeyPem": "key-1", "timeoutSeconds": 900}
    assert provider.diff("i-1", old, dict(old)).changes is False
    renewed = provider.diff("i-1", old, {**old, "clientCertPem": "cert-2", "clientKeyPem": "key-2"})
    assert renewed.changes is True and renewed.replaces == []
    assert provider.diff("i-1", old, {**old, "instanceId": "i-2", "address": "10.0.1.11"}).replaces == ["instanceId"]


LOADER = """
import base64, json, sys
import dill
provider = dill.loads(base64.b64decode(sys.stdin.read()))
assert "components" not in sys.modules, "unpickling imported the project"
old = {"instanceId": "i-1", "address": "10.0.0.1"}
print(json.dumps({"replaces": provider.diff("i-1", old, {**old, "instanceId": "i-2"}).replaces,
                  "shares": callable(provider.delete) and callable(sys.modules[type(provider).__module__].request)}))
"""


def test_the_shipped_provider_carries_the_gate_client_and_loads_in_a_clean_process(tmp_path):
    done = subprocess.run([sys.executable, "-c", LOADER], input=serialize_provider(ShippedClusterMemberProvider()), cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"replaces": ["instanceId"], "shares": True}
    assert b"co_code" not in base64.b64decode(serialize_provider(ShippedClusterMemberProvider()))


def test_a_budget_that_never_recovers_times_out_after_the_node_is_gone(api_server):
    """The server has left (its member and Node are gone), but the next one must not start:
    the delete fails, so the engine stops before the next removal and the instance stays."""
    cluster = Cluster(_three(), [_pod("rancher-1", "server-c")], pdb_recovery=10**6)
    with pytest.raises(MemberNotRemoved, match="PodDisruptionBudgets allowing no disruption yet: cattle-system/rancher"):
        _remove(api_server(cluster), timeout=0.5)
    assert "server-c" not in cluster.nodes


def test_a_lost_server_leaves_once_its_pods_are_evicted(api_server):
    """Its kubelet is gone, so its evicted pods stay Terminating: the drain does not wait for them."""
    lost = _three(ready=("server-a", "server-b"))
    pod = _pod("rancher-1", "server-c")
    pod["metadata"]["deletionTimestamp"] = "2026-12-07T06:00:00Z"
    cluster = Cluster(lost, [pod])
    _remove(api_server(cluster))
    assert "server-c" not in cluster.nodes


def test_transient_api_failures_during_the_removal_are_retried_and_it_completes(api_server):
    """The member removal elects an etcd leader and the leaving server's own API loses its
    etcd while the load balancer may still send calls to it: unanswered connections and
    5xx/429 answers are "not yet"."""
    cluster = Cluster(_three(), [_pod("rancher-1", "server-c")], faults=["drop", 503, "drop", 500, 429, 503])
    done = _remove(api_server(cluster))
    assert "server-c" not in cluster.nodes and not cluster.faults
    assert done[-2].startswith("disrupted workloads Ready again")


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_the_calls_that_change_the_node_are_retried_too(api_server, method):
    """The cordon, the remove annotation and the Node's delete are single calls, not waits."""
    cluster = Cluster(_three(), [], faults=["drop", 503, "drop"], faults_from="start", fault_method=method)
    _remove(api_server(cluster))
    assert "server-c" not in cluster.nodes and not cluster.faults
    assert [m for m, _, _ in cluster.calls].count(method) == 3 + (2 if method == "PATCH" else 1)


def test_transient_failures_before_anything_is_done_are_retried_too(api_server):
    cluster = Cluster(_three(), [], faults=[503, "drop", 502], faults_from="start")
    _remove(api_server(cluster))
    assert "server-c" not in cluster.nodes and not cluster.faults


def test_an_api_that_stays_unavailable_fails_with_the_bounded_message(api_server):
    cluster = Cluster(_three(), [], faults=[503] * 10**6)
    with pytest.raises(MemberNotRemoved) as caught:
        _remove(api_server(cluster), timeout=0.5)
    message = str(caught.value)
    assert "did not leave the cluster within 0.5s" in message and "HTTP 503" in message, message
    assert "instance was NOT terminated" in message and "`pulumi up` again" in message
    assert "server-c" in cluster.nodes


def test_an_api_that_stops_answering_fails_with_the_bounded_message(api_server):
    cluster = Cluster(_three(), [], faults=["drop"] * 10**6, faults_from="start")
    with pytest.raises(MemberNotRemoved, match=r"within 0.5s: .*the API did not answer"):
        _remove(api_server(cluster), timeout=0.5)
    assert "server-c" in cluster.nodes


def test_a_refused_call_is_not_retried(api_server):
    """403 (the admin certificate no longer admitted) will not get better by waiting."""
    cluster = Cluster(_three(), [], faults=[403], faults_from="start")
    with pytest.raises(OSError, match="HTTP 403"):
        _remove(api_server(cluster), timeout=5)
    assert len(cluster.calls) == 1


def test_a_server_that_rejoins_after_its_node_was_deleted_fails_the_removal(api_server):
    """If its service restarts before the instance terminates, K3s/RKE2 find the tombstone
    of the removed member and rejoin: the delete fails, the instance stays, a rerun removes
    the new member."""
    cluster = Cluster(_three(), [], rejoin=True)
    with pytest.raises(MemberNotRemoved, match="registered again"):
        _remove(api_server(cluster))
    assert "server-c" in cluster.nodes


def test_after_a_restore_an_old_server_leaves_though_the_other_old_nodes_stay_not_ready(api_server):
    """docs/disaster-recovery.md#whole-cluster-lost: the restored snapshot remembers every old
    server's Node (NotReady: their machines are gone); the new servers are Ready. Each old
    server's ClusterMember delete waits for the servers that were Ready when it began, not
    for the other old Nodes, which never will be (their own deletes remove them next)."""
    old = _three(ready=())
    new = [_node(f"new-{name}", address.replace("10.0.", "10.1."), ready=True) for name, address in SERVERS.items()]
    cluster = Cluster(old + new, [])
    done = _remove(api_server(cluster), timeout=2.0)
    assert "server-c" not in cluster.nodes and {"server-a", "server-b"} <= set(cluster.nodes)
    assert any(step.startswith("remaining servers Ready (new-server-a, new-server-b, new-server-c)") for step in done), done
