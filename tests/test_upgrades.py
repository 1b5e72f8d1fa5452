"""Kubernetes and Rancher upgrades from the stack file (components/upgrades.py).

- A `kubernetesVersion` edit, planned with the offline engine from the deployed run to
  the edited one, updates the system-upgrade-controller Plan and the wait, replaces and
  restarts no server, and Rancher's release waits for the upgrade.
- The controller is the pinned release's assets, fetched at deploy time by the Kubernetes
  provider (two yaml/v2 ConfigFiles, in order); the Plan validates against the Plan CRD's
  fields and types extracted from the tag (reference/upstream/crds/suc-plan-v0.20.1.json).
- Downgrades, skipped minors and unsupported Rancher/Kubernetes orders are refused by the
  identity lock's check, which runs in preview (as tests/test_change_safety.py does).
- The wait's rules: every server Ready, uncordoned, at the version, and finished by the plan.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from conftest import RKE2
from offline import charts
from test_lifecycle import assert_routine, is_server, lifecycle_run, plan

REPO = Path(__file__).resolve().parents[1]
PLAN_CRD = REPO / "reference" / "upstream" / "crds" / "suc-plan-v0.20.1.json"
SUC_FACTS = json.loads((REPO / "reference" / "upstream" / "crds" / "suc-rbac-v0.20.1.json").read_text())
CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"
GATE = "pulumi-python:dynamic/rancher-ha:ApiGate"
PLAN = "kubernetes:upgrade.cattle.io/v1:Plan"
WAIT = "pulumi-python:dynamic/rancher-ha:KubernetesUpgradeWait"
LOCK = "pulumi-python:dynamic/rancher-ha:IdentityLock"
RELEASE = "kubernetes:helm.sh/v3:Release"

# Every upgrade starts from v1.34.1 (the settings' defaults differ: v1.34.1+k3s1 and
# v1.34.10+rke2r1).
DISTRIBUTIONS = {"k3s": ({}, "k3s1"), "rke2": (RKE2, "rke2r1")}
UPGRADES = [
    (f"{dist}-{kind}", {**shape, "rancher-ha:kubernetesVersion": f"v1.34.1+{suffix}"}, f"v1.{minor}.{patch}+{suffix}")
    for dist, (shape, suffix) in DISTRIBUTIONS.items()
    for kind, minor, patch in (("patch", 34, 2), ("minor", 35, 0))
]


def version(overrides: dict, value: str) -> dict:
    return {**overrides, "rancher-ha:kubernetesVersion": value}


# -- system-upgrade-controller from the pinned release, the Plan against its CRD -----------
def test_the_plan_crd_schema_is_extracted_facts_with_its_source():
    raw = json.loads(PLAN_CRD.read_text())
    for fact in ("rancher/system-upgrade-controller", "tag v0.20.1", "f1362a3fe1a8d55a0c65847f7c2779909dc7ec95",
                 "pkg/crds/yaml/generated/upgrade.cattle.io_plans.yaml"):
        assert fact in raw["$comment"]

    def descriptions(node, path="$"):
        if isinstance(node, list):
            return [d for i, item in enumerate(node) for d in descriptions(item, f"{path}[{i}]")]
        if not isinstance(node, dict):
            return []
        found = [path] if isinstance(node.get("description"), str) else []
        for key, value in node.items():
            if key == "properties":
                found += [d for name, child in value.items() for d in descriptions(child, f"{path}.{name}")]
            elif key not in ("$comment", "description"):
                found += descriptions(value, f"{path}.{key}")
        return found

    assert descriptions(raw) == []  # no upstream prose
    assert "suc-plan-v0.20.1.json" in (PLAN_CRD.parent / "README.md").read_text()
    # No copy of upstream's release manifests in the repository.
    assert not (REPO / "reference" / "upstream" / "system-upgrade-controller").exists()


def test_the_extraction_keeps_structure_and_drops_prose():
    from tools.extract_suc_plan_crd import structure

    node = {"description": "prose", "type": "object", "required": ["a"], "properties": {
        "description": {"type": "string", "description": "a field named description stays"},
        "a": {"type": "array", "items": {"type": "integer", "format": "int32", "description": "x"}},
    }}
    assert structure(node) == {"type": "object", "required": ["a"], "properties": {
        "description": {"type": "string"}, "a": {"type": "array", "items": {"type": "integer", "format": "int32"}},
    }}


@pytest.mark.parametrize("distribution, image", [("k3s", "rancher/k3s-upgrade"), ("rke2", "rancher/rke2-upgrade")])
def test_the_server_plan_is_valid_against_the_extracted_crd(distribution, image):
    from components.upgrades import server_plan

    plan_object = server_plan(distribution, f"v1.35.0+{DISTRIBUTIONS[distribution][1]}")
    assert charts.validate_manifests([plan_object], "v1.34.1") == []
    spec = plan_object["spec"]
    assert spec["concurrency"] == 1 and spec["cordon"] is True and spec["upgrade"] == {"image": image}
    assert spec["version"] == f"v1.35.0+{DISTRIBUTIONS[distribution][1]}"
    assert spec["serviceAccountName"] == "system-upgrade"  # the release manifest's ServiceAccount
    assert spec["nodeSelector"]["matchExpressions"] == [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "In", "values": ["true"]}
    ]
    # The prepare (the Job's first init container): wait until every server node, the nodes
    # the Plan selects, is Ready, bounded, with SUC's own kubectl image (args only: its
    # entrypoint is kubectl, as for SUC's `cordon <node>`).
    assert spec["prepare"] == {
        "image": SUC_FACTS["jobKubectlImage"]["configMap"],
        "args": ["wait", "--for=condition=Ready", "node", "-l", "node-role.kubernetes.io/control-plane=true", "--timeout=600s"],
    }
    # The schema check has teeth: a wrong type, an unknown field or a missing required one fails.
    broken = copy.deepcopy(plan_object)
    broken["spec"]["concurrency"] = "1"
    broken["spec"]["drainPolicy"] = True
    del broken["spec"]["upgrade"]["image"]
    problems = charts.validate_manifests([broken], "v1.34.1")
    assert any("concurrency" in p for p in problems) and any("drainPolicy" in p for p in problems), problems
    assert any("image" in p for p in problems), problems


def _granted(account: str, verb: str, resource: str, group: str = "") -> list[str]:
    """The cluster-wide bindings whose rules let `account` `verb` `resource` (any name)."""
    return [
        grant["binding"]
        for grant in SUC_FACTS["grants"].get(account, [])
        if grant["scope"] == "cluster"
        for rule in grant["rules"]
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        and not rule.get("resourceNames")
    ]


def test_the_jobs_service_account_may_watch_nodes_as_the_prepare_needs():
    """`kubectl wait node -l ...` lists the nodes by the selector, then list+watches each by a
    field selector until its condition holds (kubectl's wait command): the Plan's service
    account needs nodes list and watch cluster-wide. The release's ClusterRoleBinding
    `system-upgrade` binds it the ClusterRole `system-upgrade-controller`, which grants nodes
    get/list/watch (the facts, extracted from the tag: suc-rbac-v0.20.1.json): nothing to add."""
    from components.upgrades import KUBECTL_IMAGE, SUC_NAMESPACE, SUC_SERVICE_ACCOUNT, server_plan

    for fact in ("rancher/system-upgrade-controller", "tag v0.20.1", "f1362a3fe1a8d55a0c65847f7c2779909dc7ec95",
                 "kustomization.yaml", "pkg/upgrade/job/job.go"):
        assert fact in SUC_FACTS["$comment"]
    assert "suc-rbac-v0.20.1.json" in (PLAN_CRD.parent / "README.md").read_text()
    account = server_plan("rke2", "v1.35.0+rke2r1")["spec"]["serviceAccountName"]
    assert account == SUC_SERVICE_ACCOUNT in SUC_FACTS["serviceAccounts"] and SUC_FACTS["namespace"] == SUC_NAMESPACE
    for verb in ("list", "watch"):
        assert _granted(account, verb, "nodes") == ["ClusterRoleBinding/system-upgrade"], verb
    assert "ClusterRoleBinding/system-upgrade" in _granted(account, "get", "nodes")  # (the drainer's role too)
    # The check has teeth: nothing grants watching pods, nor anything to an unknown account.
    assert _granted(account, "watch", "pods") == [] and _granted("default", "list", "nodes") == []
    # The image is the one SUC runs its own cordon with: configured and compiled-in alike.
    assert KUBECTL_IMAGE == SUC_FACTS["jobKubectlImage"]["configMap"] == SUC_FACTS["jobKubectlImage"]["default"]


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


@pytest.mark.parametrize("shape", [{}, RKE2], ids=["k3s", "rke2"])
def test_the_controller_is_the_pinned_release_applied_in_order(shape):
    """CRD and controller are the v0.20.1 release assets, fetched by the Kubernetes provider
    (kubernetes:yaml/v2:ConfigFile, a remote component); gate -> CRD -> controller -> Plan ->
    wait -> Rancher's release."""
    run = lifecycle_run(shape)
    release = "https://github.com/rancher/system-upgrade-controller/releases/download/v0.20.1"
    files = {r.name: r for r in run.of_type(CONFIG_FILE)}
    assert {name: r.inputs["file"] for name, r in files.items()} == {
        "kubernetes-upgrades-suc-crd": f"{release}/crd.yaml",
        "kubernetes-upgrades-suc-controller": f"{release}/system-upgrade-controller.yaml",
    }
    crd, controller = files["kubernetes-upgrades-suc-crd"], files["kubernetes-upgrades-suc-controller"]
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    (gate,) = run.of_type(GATE)
    (plan_registration,) = run.of_type(PLAN)
    (wait,) = run.of_type(WAIT)
    (rancher,) = [r for r in run.of_type(RELEASE) if r.name == "rancher"]
    for config_file in (crd, controller):
        assert config_file.remote and not config_file.custom
        assert config_file.provider.startswith(provider.urn + "::")
        assert config_file.deleted_with == provider.urn
    chain = [gate, crd, controller, plan_registration, wait, rancher]
    for before, after in zip(chain, chain[1:]):
        assert before.urn in after.dependencies, f"{_short(after.urn)} does not wait for {_short(before.urn)}"
    assert plan_registration.inputs["metadata"] == {"name": f"{'rke2' if shape else 'k3s'}-server", "namespace": "system-upgrade"}


# -- a kubernetesVersion edit, planned -----------------------------------------------------
@pytest.mark.parametrize("case_id, shape, target", UPGRADES, ids=[u[0] for u in UPGRADES])
def test_a_kubernetes_version_edit_upgrades_the_servers_in_place(case_id, shape, target):
    old, new = lifecycle_run(shape), lifecycle_run(version(shape, target))
    p = plan(old, new)
    assert_routine(p)  # no server replaced, restarted or deleted
    servers = [s for s in p.steps if is_server(s)]
    assert servers and all(s.op == "same" for s in servers), [(s.name, s.op) for s in servers]

    (plan_step,) = [s for s in p.steps if s.type == PLAN]
    assert plan_step.op == "update", plan_step.op
    assert [c.path for c in plan_step.changes] == ["spec.version"]
    (wait_step,) = [s for s in p.steps if s.type == WAIT]
    assert wait_step.op == "update" and "version" in [c.path for c in wait_step.changes]

    (plan_registration,) = new.of_type(PLAN)
    assert plan_registration.inputs["spec"]["version"] == target
    (wait,) = new.of_type(WAIT)
    assert wait.inputs["version"] == target
    assert plan_registration.urn in wait.dependencies
    # Rancher's release waits for every server to run the new version.
    (rancher,) = [r for r in new.of_type(RELEASE) if r.name == "rancher"]
    assert wait.urn in rancher.dependencies
    # A server replaced from now on installs the version the cluster runs.
    for server in new.of_type("aws:ec2/instance:Instance"):
        if "-server-" in server.name:
            assert target in server.inputs["userData"], server.name


def test_the_wait_updates_in_place_and_waits_again_only_for_a_new_target():
    from components.providers.api_gate_provider import KubernetesUpgradeWaitProvider

    provider = KubernetesUpgradeWaitProvider()
    olds = {"version": "v1.34.1+k3s1", "planPath": "/p", "expectedNodes": ["10.0.0.1"], "url": "u", "caPem": "c", "timeoutSeconds": 10}
    news = {**olds, "version": "v1.35.0+k3s1"}
    diff = provider.diff("id", olds, news)
    assert diff.changes and not diff.replaces
    assert not provider.diff("id", olds, dict(olds)).changes
    # A timeout edit alone records the new timeout without waiting.
    calm = provider.update("id", {**olds, "attempts": 3, "runningVersion": olds["version"]}, {**olds, "timeoutSeconds": 20})
    assert calm.outs["runningVersion"] == olds["version"] and calm.outs["attempts"] == 3


# -- the wait's rules ------------------------------------------------------------------------
def _node(name, address, kubelet, ready=True, cordoned=False, plan_hash="h2"):
    return {
        "metadata": {"name": name, "labels": {"plan.upgrade.cattle.io/k3s-server": plan_hash}},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {
            "addresses": [{"type": "InternalIP", "address": address}],
            "nodeInfo": {"kubeletVersion": kubelet},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


# As system-upgrade-controller v0.20.1 writes it: spec.version with '+' made '-' (MungeVersion).
PLAN_STATUS = {"metadata": {"name": "k3s-server"}, "status": {"latestVersion": "v1.35.0-k3s1", "latestHash": "h2"}}
ADDRESSES = ["10.0.0.1", "10.0.0.2"]


@pytest.mark.parametrize(
    "nodes, plan_object, waits_for",
    [
        ([_node("a", "10.0.0.1", "v1.35.0+k3s1"), _node("b", "10.0.0.2", "v1.34.1+k3s1", plan_hash="h1")], PLAN_STATUS, "b: runs v1.34.1+k3s1"),
        ([_node("a", "10.0.0.1", "v1.35.0+k3s1"), _node("b", "10.0.0.2", "v1.35.0+k3s1", cordoned=True)], PLAN_STATUS, "b: cordoned"),
        ([_node("a", "10.0.0.1", "v1.35.0+k3s1"), _node("b", "10.0.0.2", "v1.35.0+k3s1", ready=False)], PLAN_STATUS, "b: not Ready"),
        # A server down before its turn: named as such, not only as behind.
        ([_node("a", "10.0.0.1", "v1.35.0+k3s1"), _node("b", "10.0.0.2", "v1.34.1+k3s1", ready=False, plan_hash="h1")],
         PLAN_STATUS, "b: runs v1.34.1+k3s1 and is not Ready"),
        ([_node("a", "10.0.0.1", "v1.35.0+k3s1"), _node("b", "10.0.0.2", "v1.35.0+k3s1", plan_hash="h1")], PLAN_STATUS, "b: plan not finished"),
        ([_node("a", "10.0.0.1", "v1.35.0+k3s1")], PLAN_STATUS, "10.0.0.2: no node"),
        ([_node("a", "10.0.0.1", "v1.35.0+k3s1"), _node("b", "10.0.0.2", "v1.35.0+k3s1")],
         {"metadata": {"name": "k3s-server"}, "status": {"latestVersion": "v1.34.1-k3s1", "latestHash": "h1"}}, "not resolved"),
    ],
)
def test_the_upgrade_wait_waits_for_every_server(nodes, plan_object, waits_for):
    from components.providers.api_gate_provider import upgrade_progress

    reason = upgrade_progress({"items": nodes}, plan_object, ADDRESSES, "v1.35.0+k3s1")
    assert reason is not None and waits_for in reason, reason


def test_the_upgrade_wait_passes_when_every_server_is_done():
    from components.providers.api_gate_provider import upgrade_progress

    nodes = [_node("a", "10.0.0.1", "v1.35.0+k3s1"), _node("b", "10.0.0.2", "v1.35.0+k3s1")]
    assert upgrade_progress({"items": nodes}, PLAN_STATUS, ADDRESSES, "v1.35.0+k3s1") is None


def test_a_cluster_ahead_of_the_stack_fails_at_once_with_the_fix():
    from components.providers.api_gate_provider import ClusterAhead, upgrade_progress

    nodes = [_node("a", "10.0.0.1", "v1.35.2+k3s1"), _node("b", "10.0.0.2", "v1.35.2+k3s1")]
    plan_object = {"metadata": {"name": "k3s-server"}, "status": {"latestVersion": "v1.34.1-k3s1", "latestHash": "h2"}}
    with pytest.raises(ClusterAhead, match=r"Set kubernetesVersion to v1\.35\.2\+k3s1"):
        upgrade_progress({"items": nodes}, plan_object, ADDRESSES, "v1.34.1+k3s1")


# -- refused in preview ------------------------------------------------------------------
VERSIONS = "pulumi-python:dynamic/rancher-ha:ClusterVersions"


def _record_inputs(run) -> dict:
    (record,) = run.of_type(VERSIONS)
    return json.loads(json.dumps(record.inputs))


def refusals(old_overrides: dict, new_overrides: dict) -> dict[str, str]:
    """What the record of the reached versions refuses in preview, from the versions of
    `old_overrides` (reached) to those of `new_overrides`."""
    from components.providers.identity_lock_provider import ClusterVersionsProvider

    old, new = _record_inputs(lifecycle_run(old_overrides)), _record_inputs(lifecycle_run(new_overrides))
    return {f.property: f.reason for f in ClusterVersionsProvider().check(old, new).failures}


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_a_kubernetes_downgrade_is_refused_in_preview(dist):
    shape, suffix = DISTRIBUTIONS[dist]
    failures = refusals(version(shape, f"v1.34.2+{suffix}"), version(shape, f"v1.34.1+{suffix}"))
    assert list(failures) == ["kubernetesVersion"]
    assert "cannot be downgraded" in failures["kubernetesVersion"] and f"back to v1.34.2+{suffix}" in failures["kubernetesVersion"]


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_a_skipped_kubernetes_minor_is_refused_in_preview(dist):
    shape, suffix = DISTRIBUTIONS[dist]
    failures = refusals(version(shape, f"v1.33.5+{suffix}"), version(shape, f"v1.35.0+{suffix}"))
    assert list(failures) == ["kubernetesVersion"]
    assert "one minor at a time" in failures["kubernetesVersion"]
    assert "kubernetesVersion v1.34.x -> kubernetesVersion v1.35.x" in failures["kubernetesVersion"]


@pytest.mark.parametrize("case_id, shape, target", UPGRADES, ids=[u[0] for u in UPGRADES])
def test_a_supported_upgrade_passes_the_check(case_id, shape, target):
    assert refusals(shape, version(shape, target)) == {}


def test_prod_at_1_32_and_rancher_2_12_cannot_jump_to_1_35_and_2_15():
    """issue 18 defect 3: this edit validated, and Helm upgraded Rancher onto 1.32."""
    old = {**RKE2, "rancher-ha:rancherVersion": "2.12.12", "rancher-ha:kubernetesVersion": "v1.32.5+rke2r1"}
    new = {**RKE2, "rancher-ha:rancherVersion": "2.15.0", "rancher-ha:kubernetesVersion": "v1.35.1+rke2r1"}
    failures = refusals(old, new)
    assert set(failures) == {"kubernetesVersion", "rancherVersion"}
    path = ("rancherVersion 2.13.x -> kubernetesVersion v1.33.x -> rancherVersion 2.14.x -> kubernetesVersion v1.34.x "
            "-> rancherVersion 2.15.x -> kubernetesVersion v1.35.x")
    assert all(path in reason for reason in failures.values()), failures


def test_rancher_downgrade_and_skip_are_refused_in_preview():
    down = refusals({}, {"rancher-ha:rancherVersion": "2.13.8"})
    assert list(down) == ["rancherVersion"] and "does not support going back" in down["rancherVersion"]
    skip = refusals({"rancher-ha:rancherVersion": "2.13.8"}, {"rancher-ha:rancherVersion": "2.15.0"})
    assert list(skip) == ["rancherVersion"] and "rancherVersion 2.14.x -> rancherVersion 2.15.x" in skip["rancherVersion"]


def test_both_minors_at_once_are_refused_when_the_running_rancher_cannot_run_the_new_kubernetes():
    old = {"rancher-ha:rancherVersion": "2.14.4", "rancher-ha:kubernetesVersion": "v1.35.2+k3s1"}
    new = {"rancher-ha:rancherVersion": "2.15.0", "rancher-ha:kubernetesVersion": "v1.36.0+k3s1"}
    failures = refusals(old, new)
    assert list(failures) == ["kubernetesVersion"]
    assert "rancherVersion 2.15.x -> kubernetesVersion v1.36.x" in failures["kubernetesVersion"]


def test_both_minors_at_once_pass_when_kubernetes_first_is_supported():
    """2.14 runs on 1.35 during the Kubernetes upgrade, then 2.15 installs onto 1.35."""
    old = {"rancher-ha:rancherVersion": "2.14.4", "rancher-ha:kubernetesVersion": "v1.34.2+k3s1"}
    new = {"rancher-ha:rancherVersion": "2.15.0", "rancher-ha:kubernetesVersion": "v1.35.0+k3s1"}
    assert refusals(old, new) == {}


def test_a_stack_without_remembered_versions_is_not_refused():
    """Stacks deployed before the versions were recorded: the first `up` records them."""
    from components.providers.identity_lock_provider import ClusterVersionsProvider

    assert ClusterVersionsProvider().check({}, _record_inputs(lifecycle_run({}))).failures == []


def test_a_failed_version_edit_records_nothing_and_can_be_taken_back():
    """Reviewed: the lock recorded a new version at the start of the `up`, so after a mistyped
    version every edit back was refused as a downgrade. The record now updates only after the
    upgrade wait and the Rancher release succeeded (it depends on both): a failed `up` leaves
    it at what the cluster reached, and going back to it is no move at all."""
    from components.providers.identity_lock_provider import ClusterVersionsProvider
    from offline.destroy import DependencyGraph

    reached = lifecycle_run(version({}, "v1.34.2+k3s1"))
    (record,) = reached.of_type(VERSIONS)
    graph = DependencyGraph(reached.registrations)
    (wait,) = reached.of_type("pulumi-python:dynamic/rancher-ha:KubernetesUpgradeWait")
    releases = [r for r in reached.of_type(RELEASE) if r.inputs.get("name") == "rancher"]
    after = graph.transitive_dependencies(graph.dependencies_of(record.urn))
    assert wait.urn in after and releases and all(r.urn in after for r in releases)
    # The `up` to a mistyped v1.34.29 failed in the wait: the record still holds v1.34.2.
    assert refusals(version({}, "v1.34.2+k3s1"), version({}, "v1.34.2+k3s1")) == {}
    # And the lock refuses no version edit (it records none any more).
    from components.providers.identity_lock_provider import IdentityLockProvider

    (lock,) = reached.of_type(LOCK)
    typo = lifecycle_run(version({}, "v1.34.29+k3s1")).of_type(LOCK)[0]
    assert IdentityLockProvider().check(json.loads(json.dumps(typo.inputs)), json.loads(json.dumps(lock.inputs))).failures == []
    assert ClusterVersionsProvider().check(_record_inputs(reached), _record_inputs(lifecycle_run(version({}, "v1.34.29+k3s1")))).failures == []


def test_create_waits_for_the_version_and_an_update_also_for_the_plans_pass(monkeypatch):
    """A new stack's servers were installed at the version: creating the wait does not hold
    Rancher for SUC's pass over them; a version change waits for that pass on every server."""
    from components.providers import api_gate_provider as gate

    responses = {
        "/apis/upgrade.cattle.io/v1/namespaces/system-upgrade/plans/k3s-server": PLAN_STATUS,
        # b runs the version but the plan has not passed over it yet (old hash).
        "/api/v1/nodes": {"items": [_node("a", "10.0.0.1", "v1.35.0+k3s1"), _node("b", "10.0.0.2", "v1.35.0+k3s1", plan_hash="h1")]},
    }
    monkeypatch.setattr(gate, "ssl_context", lambda probe: None)
    monkeypatch.setattr(gate, "get", lambda probe, context, path, timeout: (200, json.dumps(responses[path]).encode()))
    props = {
        "url": "https://lb:6443", "serverName": "rancher.example.com", "caPem": "ca", "clientCertPem": "c", "clientKeyPem": "k",
        "expectedNodes": ADDRESSES, "planPath": "/apis/upgrade.cattle.io/v1/namespaces/system-upgrade/plans/k3s-server",
        "version": "v1.35.0+k3s1", "timeoutSeconds": 0.01, "intervalSeconds": 0.001,
    }
    created = gate.KubernetesUpgradeWaitProvider().create(props)
    assert created.outs["runningVersion"] == "v1.35.0+k3s1"
    with pytest.raises(gate.ApiNotReady, match="b: plan not finished"):
        gate.KubernetesUpgradeWaitProvider().update("id", {**props, "version": "v1.34.1+k3s1"}, props)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_a_rancher_minor_upgrade_plans_as_the_release_only(dist):
    """2.14 -> 2.15 on Kubernetes 1.34 (both support it): one Helm upgrade, no server touched,
    the record of the reached versions follows it; the check passes."""
    shape = DISTRIBUTIONS[dist][0]
    new_shape = {**shape, "rancher-ha:rancherVersion": "2.15.0"}
    p = plan(lifecycle_run(shape), lifecycle_run(new_shape))
    assert_routine(p)
    changed = [(s.op, s.type, s.name, [c.path for c in s.changes]) for s in p.steps if s.op != "same"]
    assert changed == [
        ("update", RELEASE, "rancher", ["version"]),
        ("update", VERSIONS, "running-versions-record", ["versions.rancherVersion"]),
    ], changed
    assert refusals(shape, new_shape) == {}


# -- nothing installs an older release over a server (reviewed: the Plan came before the check) --
def _version_check_props(version: str) -> dict:
    return {"url": "https://lb:6443", "serverName": "rancher.example.com", "caPem": "ca", "clientCertPem": "c",
            "clientKeyPem": "k", "expectedNodes": ADDRESSES, "version": version, "timeoutSeconds": 30}


@pytest.mark.parametrize("running", ["v1.34.4+k3s1", "v1.35.0+k3s1", "v1.34.1+k3s2"], ids=["patch", "minor", "build"])
def test_a_server_ahead_of_the_stack_is_refused_before_the_plan_changes(monkeypatch, running):
    """A hand-applied newer patch (or minor, or build): the check refuses at once, naming the
    version to set, and does not wait out its timeout."""
    from components.providers import api_gate_provider as gate

    nodes = {"items": [_node("a", "10.0.0.1", "v1.34.1+k3s1"), _node("b", "10.0.0.2", running)]}
    monkeypatch.setattr(gate, "ssl_context", lambda probe: None)
    monkeypatch.setattr(gate, "get", lambda probe, context, path, timeout: (200, json.dumps(nodes).encode()))
    monkeypatch.setattr(gate.time, "sleep", lambda seconds: pytest.fail("waited instead of refusing at once"))
    with pytest.raises(gate.ClusterAhead, match=rf"b runs {re.escape(running)}.*Set kubernetesVersion to {re.escape(running)}"):
        gate.KubernetesVersionCheckProvider().create(_version_check_props("v1.34.1+k3s1"))


def test_servers_at_or_below_the_version_pass_the_check(monkeypatch):
    from components.providers import api_gate_provider as gate

    nodes = {"items": [_node("a", "10.0.0.1", "v1.34.1+k3s1"), _node("b", "10.0.0.2", "v1.33.9+k3s1")]}
    monkeypatch.setattr(gate, "ssl_context", lambda probe: None)
    monkeypatch.setattr(gate, "get", lambda probe, context, path, timeout: (200, json.dumps(nodes).encode()))
    assert gate.KubernetesVersionCheckProvider().create(_version_check_props("v1.34.1+k3s1")).outs["attempts"] == 1


@pytest.mark.parametrize("shape", [{}, RKE2], ids=["k3s", "rke2"])
def test_the_plan_waits_for_the_check_and_the_check_for_the_gate(shape):
    from offline.destroy import DependencyGraph

    run = lifecycle_run(shape)
    graph = DependencyGraph(run.registrations)
    (check,) = run.of_type("pulumi-python:dynamic/rancher-ha:KubernetesVersionCheck")
    (plan_object,) = [r for r in run.registrations if r.type == "kubernetes:upgrade.cattle.io/v1:Plan"]
    (gate,) = run.of_type("pulumi-python:dynamic/rancher-ha:ApiGate")
    assert check.urn in graph.dependencies_of(plan_object.urn)
    assert gate.urn in graph.dependencies_of(check.urn)
    assert check.inputs["version"] == plan_object.inputs["spec"]["version"]


def test_a_version_edit_runs_the_check_again():
    from components.providers.api_gate_provider import KubernetesVersionCheckProvider

    provider = KubernetesVersionCheckProvider()
    assert provider.diff("id", _version_check_props("v1.34.1+k3s1"), _version_check_props("v1.34.2+k3s1")).changes
    assert not provider.diff("id", _version_check_props("v1.34.1+k3s1"), _version_check_props("v1.34.1+k3s1")).changes
