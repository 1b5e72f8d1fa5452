"""The program's Helm releases, rendered from the real charts with a real helm.

Every `kubernetes:helm.sh/v3:Release` the program registers (under the offline mocks)
is rendered from the vendored chart of exactly that version (reference/charts/) with
`helm template --kube-version <the stack's Kubernetes>` and validated strictly against
the Kubernetes schemas of that minor (kubernetes-validate) and against the CRDs
(cert-manager's own, HelmChartConfig from k3s-io/helm-controller). Objects the program
creates itself (Namespace, Secret, HelmChartConfig, system-upgrade-controller's Plan against
the Plan CRD extracted into reference/upstream/crds/) are validated the same way.

helm comes from scripts/bootstrap.sh (`install_helm`, .tools/helm/helm); without it the
tests that need it skip and say so.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from typing import Any, Optional

import pytest
import yaml

from conftest import BASE_CONFIG, NGINX_L7, PROXY, RKE2, cached_run
from offline import charts
from offline.runner import STACKS_DIR, MockRun, run_stack, stack_config
from rendering.ha_values import cert_manager_ha_values, rancher_spread_values

RELEASE = "kubernetes:helm.sh/v3:Release"
DEFAULT_KUBERNETES = "v1.34.1"  # settings default for both distributions (+k3s1 / +rke2r1)
HOSTNAME_KEY = "kubernetes.io/hostname"
CERT_MANAGER_API = "cert-manager.io/v1"
LETS_ENCRYPT = {"rancher-ha:tlsSource": "letsEncrypt", "rancher-ha:letsEncryptEmail": "ops@example.com"}

SHAPES: dict[str, dict[str, Any]] = {
    "k3s-nlb": {},
    "rke2-nlb": RKE2,
    "k3s-nginx-l7": NGINX_L7,
    "rke2-nginx-l7": {**RKE2, **NGINX_L7},
    "k3s-letsencrypt": LETS_ENCRYPT,
    "k3s-proxy": PROXY,
    # More servers than Rancher replicas: replicas must stay at 3.
    "rke2-5-servers": {**RKE2, "rancher-ha:serverCount": 5},
}
STACKS = sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in STACKS_DIR.glob("Pulumi.*.yaml"))
CASES = [f"shape:{name}" for name in SHAPES] + [f"stack:{name}" for name in STACKS]


# --- fixtures and caches ---------------------------------------------------------------


@dataclass
class Case:
    label: str
    config: dict[str, Any]
    run: MockRun

    @property
    def distribution(self) -> str:
        return self.config.get("rancher-ha:distribution", "k3s")

    @property
    def servers(self) -> int:
        return int(self.config.get("rancher-ha:serverCount", 3 if self.distribution == "rke2" else 2))

    @property
    def kube_version(self) -> str:
        return charts.strip_kube_version(self.config.get("rancher-ha:kubernetesVersion", DEFAULT_KUBERNETES))

    @property
    def layer(self) -> str:
        return self.config.get("rancher-ha:loadBalancerLayer", "l4")

    def release(self, chart: str) -> Optional[dict]:
        found = [r.inputs for r in self.run.of_type(RELEASE) if r.inputs["chart"] == chart]
        assert len(found) <= 1, f"{len(found)} {chart} releases"
        return found[0] if found else None

    @property
    def api_versions(self) -> tuple[str, ...]:
        # Capabilities the chart sees: cert-manager's API once the program installs it.
        return (CERT_MANAGER_API,) if self.release("cert-manager") else ()


@functools.lru_cache(maxsize=None)
def case(label: str) -> Case:
    kind, name = label.split(":", 1)
    if kind == "shape":
        return Case(label, {**BASE_CONFIG, **SHAPES[name]}, cached_run(SHAPES[name]))
    return Case(label, stack_config(name), run_stack(name))


@functools.lru_cache(maxsize=None)
def _render(chart: str, version: str, release: str, namespace: str, values_json: str, kube_version: str, api_versions: tuple) -> charts.RenderedChart:
    return charts.render_chart(charts.vendored_chart(chart, version), release, namespace, json.loads(values_json), kube_version, api_versions)


def render(inputs: dict, kube_version: str, api_versions: tuple = (), values: Optional[dict] = None) -> charts.RenderedChart:
    """Render a Release registration's chart, at its version, with its (or the given) values."""
    values = inputs.get("values") or {} if values is None else values
    return _render(
        inputs["chart"], inputs["version"], inputs["name"], inputs["namespace"],
        json.dumps(values, sort_keys=True), kube_version, tuple(api_versions),
    )


@functools.lru_cache(maxsize=None)
def cert_manager_crd_schemas(version: str = "v1.19.2") -> dict:
    """Schemas of cert-manager's CRDs (Issuer, Certificate, ...), from its real chart."""
    rendered = _render("cert-manager", version, "cert-manager", "cert-manager", json.dumps({"crds": {"enabled": True}}), DEFAULT_KUBERNETES, ())
    return charts.crd_schemas(rendered.manifests)


def deep_merge(base: dict, extra: dict, path: str = "") -> dict:
    """base + extra; a key both set to different non-dict values is a conflict (AssertionError)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value, where)
        else:
            assert key not in merged or merged[key] == value, f"HA values override the program's {where}"
            merged[key] = copy.deepcopy(value)
    return merged


def ha_values(c: Case, chart: str) -> dict:
    """The values the program itself passes (it merges rendering/ha_values.py in)."""
    return c.release(chart)["values"] or {}


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"].get("labels") or {}


def selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels + matchExpressions In/NotIn/Exists) against labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def spread_over_nodes(deployment: dict) -> list[str]:
    """How the Deployment's pods are spread over nodes (empty: not at all)."""
    spec = deployment["spec"]["template"]["spec"]
    labels = pod_labels(deployment)
    how = []
    for constraint in spec.get("topologySpreadConstraints") or []:
        if constraint.get("topologyKey") == HOSTNAME_KEY and selects(constraint.get("labelSelector") or {}, labels):
            how.append(f"topologySpread/{constraint.get('whenUnsatisfiable')}")
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        if term.get("topologyKey") == HOSTNAME_KEY and selects(term.get("labelSelector") or {}, labels):
            how.append("podAntiAffinity/required")
    for weighted in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        term = weighted["podAffinityTerm"]
        if term.get("topologyKey") == HOSTNAME_KEY and selects(term.get("labelSelector") or {}, labels):
            how.append("podAntiAffinity/preferred")
    return how


def disruption_budgets_for(rendered: charts.RenderedChart, deployment: dict) -> list[dict]:
    labels = pod_labels(deployment)
    return [pdb for pdb in rendered.of_kind("PodDisruptionBudget") if selects(pdb["spec"]["selector"], labels)]


def own_objects(c: Case) -> list[dict]:
    """The program's own Kubernetes objects as the API server would receive them."""
    objects = []
    for registration in c.run.registrations:
        # A remote component (yaml/v2 ConfigFile: system-upgrade-controller's release
        # assets) is no object of the program's: the provider fetches and applies it.
        if not registration.type.startswith("kubernetes:") or registration.type == RELEASE or not registration.custom:
            continue
        inputs = registration.inputs
        obj = {key: inputs[key] for key in ("apiVersion", "kind", "metadata", "type", "data", "stringData", "spec", "immutable", "rules", "roleRef", "subjects") if key in inputs}
        objects.append(obj)
    return objects


# --- the program's own values ------------------------------------------------------------


# Charts this repository has no real copy of (../shared/reference/charts holds Rancher's and
# cert-manager's): their values and objects are checked against the keys and CRD fields
# extracted from the operator's source (tests/test_backups.py), and rendered for real where a
# local snapshot of the operator's repository is given (tests/test_backup_chart_real.py).
NOT_VENDORED = {"rancher-backup", "rancher-backup-crd"}


def vendored_releases(c: Case) -> list:
    return [r for r in c.run.of_type(RELEASE) if r.inputs["chart"] not in NOT_VENDORED]


@pytest.mark.parametrize("label", CASES)
def test_releases_render_for_the_stacks_kubernetes(label, helm):
    c = case(label)
    releases = vendored_releases(c)
    assert {r.inputs["chart"] for r in releases} >= {"rancher"}
    for registration in releases:
        try:
            rendered = render(registration.inputs, c.kube_version, c.api_versions)
        except charts.HelmError as error:
            pytest.fail(f"{registration.inputs['chart']} {registration.inputs['version']} refused on Kubernetes {c.kube_version}: {error.stderr}")
        assert rendered.manifests, registration.inputs["chart"]


@pytest.mark.parametrize("label", CASES)
def test_rendered_manifests_are_valid_kubernetes(label, helm, kubernetes_validate):
    c = case(label)
    problems = []
    for registration in vendored_releases(c):
        rendered = render(registration.inputs, c.kube_version, c.api_versions)
        problems += charts.validate_manifests(rendered.manifests, c.kube_version, cert_manager_crd_schemas())
    assert problems == []


@pytest.mark.parametrize("label", CASES)
def test_own_kubernetes_objects_are_valid(label, kubernetes_validate):
    c = case(label)
    objects = own_objects(c)
    assert any(o["kind"] == "Namespace" for o in objects)
    assert [o["kind"] for o in objects].count("Plan") == 1
    custom: dict = {}
    for release in c.run.of_type(RELEASE):
        if release.inputs["chart"] == "rancher-backup":
            from components.backups import operator_tag

            custom.update(charts.rancher_backup_schemas(operator_tag(release.inputs["version"])))
    assert charts.validate_manifests(objects, c.kube_version, custom) == []
    for obj in objects:
        if obj["kind"] == "Secret":
            keys = set(obj.get("stringData") or {}) | set(obj.get("data") or {})
            if obj.get("type") == "kubernetes.io/tls":
                # The API server's own rule for this type; the schema does not say it.
                assert {"tls.crt", "tls.key"} <= keys, obj["metadata"]
            assert all(isinstance(v, str) and v for v in (obj.get("stringData") or {}).values()), obj["metadata"]
        if obj["kind"] == "HelmChartConfig":
            assert obj["metadata"]["namespace"] == "kube-system"
            assert isinstance(yaml.safe_load(obj["spec"]["valuesContent"]), dict)


@pytest.mark.parametrize("label", CASES)
def test_rancher_leaves_the_local_clusters_version_to_the_stack(label, helm):
    """One owner of the Kubernetes version (components/upgrades.py): the rendered Rancher
    container carries CATTLE_IMPORTED_CLUSTER_VERSION_MANAGEMENT=false, which Rancher reads
    before its Setting object (rendering/rancher_values.py cites the source)."""
    c = case(label)
    rendered = render(c.release("rancher"), c.kube_version, c.api_versions)
    (container,) = [k for k in rendered.get("Deployment", "rancher")["spec"]["template"]["spec"]["containers"] if k["name"] == "rancher"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("CATTLE_IMPORTED_CLUSTER_VERSION_MANAGEMENT") == "false", sorted(env)


@pytest.mark.parametrize("label", CASES)
def test_rancher_replicas_at_most_three_one_per_server(label, helm):
    c = case(label)
    rendered = render(c.release("rancher"), c.kube_version, c.api_versions)
    replicas = rendered.get("Deployment", "rancher")["spec"].get("replicas")
    assert replicas == min(3, c.servers) and replicas <= 3, f"{replicas} Rancher replicas on {c.servers} servers"


TEMPLATE_MODE_NOTE = "(Note: This is expected in template/dry-run mode)"


@pytest.mark.parametrize("label", CASES)
def test_rancher_cert_manager_warning_only_where_cert_manager_is_used(label, helm):
    c = case(label)
    rancher = c.release("rancher")
    if c.layer == "l7":
        assert rancher["values"].get("tls") == "external" and c.release("cert-manager") is None
    rendered = render(rancher, c.kube_version, c.api_versions)
    assert rendered.notes is not None, "NOTES.txt was not captured"
    warnings = [w for w in rendered.warnings if "cert-manager" in w.lower()]
    if c.release("cert-manager") is not None:
        # The chart looks the CRD up in the cluster; under helm template the lookup is
        # empty, so only that warning may appear (not "too old" / "not a valid version").
        assert all(TEMPLATE_MODE_NOTE in w for w in warnings), warnings
        return
    # templates/_helpers.tpl "rancher.certmanager.notes", included by NOTES.txt, checks
    # only ingress.tls.source (default "rancher"), whatever `tls` says: with tls=external
    # the program must set ingress.tls.source=secret (see the next test) or helm warns.
    assert warnings == []
    assert [m for m in rendered.manifests if m["apiVersion"].startswith(("cert-manager.io/", "acme.cert-manager.io/"))] == []


def test_tls_external_with_source_secret_only_silences_the_warning(helm):
    # Proof for the fix: with tls=external, ingress.tls.source only feeds that warning.
    base = {"hostname": "r.example.com", "replicas": 3, "tls": "external", "privateCA": True, "agentTLSMode": "strict"}
    chart = charts.vendored_chart("rancher", "2.14.4")
    default = charts.render_chart(chart, "rancher", "cattle-system", base, DEFAULT_KUBERNETES)
    secret = charts.render_chart(chart, "rancher", "cattle-system", {**base, "ingress": {"tls": {"source": "secret"}}}, DEFAULT_KUBERNETES)
    assert any("Cert-manager dependency check failed" in w for w in default.warnings)
    assert secret.warnings == [] and secret.manifests == default.manifests


# --- HA: the program's own values ----------------------------------------------------------


@pytest.mark.parametrize("label", CASES)
def test_cert_manager_is_highly_available(label, helm, kubernetes_validate):
    c = case(label)
    release = c.release("cert-manager")
    if release is None:
        pytest.skip("no cert-manager in this stack")
    if c.servers < 2:
        pytest.skip("a single server: nothing to spread over")
    rendered = render(release, c.kube_version, c.api_versions, ha_values(c, "cert-manager"))
    assert charts.validate_manifests(rendered.manifests, c.kube_version) == []
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in rendered.of_kind("Deployment")}
    assert set(deployments) == {"controller", "webhook", "cainjector"}
    for component, deployment in deployments.items():
        assert deployment["spec"]["replicas"] >= 2, component
        assert len(disruption_budgets_for(rendered, deployment)) == 1, f"{component}: one PodDisruptionBudget"
        assert spread_over_nodes(deployment), f"{component} is not spread over nodes"


@pytest.mark.parametrize("label", CASES)
def test_rancher_is_spread_over_nodes(label, helm, kubernetes_validate):
    c = case(label)
    if c.servers < 2:
        pytest.skip("a single server: nothing to spread over")
    rendered = render(c.release("rancher"), c.kube_version, c.api_versions, ha_values(c, "rancher"))
    assert charts.validate_manifests(rendered.manifests, c.kube_version, cert_manager_crd_schemas()) == []
    deployment = rendered.get("Deployment", "rancher")
    assert "podAntiAffinity/required" in spread_over_nodes(deployment)
    assert len(disruption_budgets_for(rendered, deployment)) == 1
    priority = deployment["spec"]["template"]["spec"]["priorityClassName"]
    assert priority in {p["metadata"]["name"] for p in rendered.of_kind("PriorityClass")}


def test_ha_values_are_empty_for_one_node_and_grow_with_servers():
    assert cert_manager_ha_values(1) == {} and rancher_spread_values(1) == {}
    two, three = cert_manager_ha_values(2), cert_manager_ha_values(3)
    assert two["replicaCount"] == 2 and two["webhook"]["replicaCount"] == 2 and three["webhook"]["replicaCount"] == 3
    assert all(part["podDisruptionBudget"]["enabled"] for part in (two, two["webhook"], two["cainjector"]))


# --- the harness itself can fail -----------------------------------------------------------


def test_helm_refuses_a_kubernetes_the_chart_does_not_support(helm):
    with pytest.raises(charts.HelmError, match=r"incompatible with Kubernetes v1\.36\.0"):
        charts.render_chart(charts.vendored_chart("rancher", "2.14.4"), "rancher", "cattle-system", {"hostname": "r.example.com"}, "v1.36.0+rke2r1")


def test_helm_rejects_a_value_the_chart_schema_forbids(helm):
    # rancher-2.14.4/values.schema.json types agentTLSMode, auditLog, service, networkExposure,
    # ingress.servicePort and gateway only (not `replicas`).
    chart = charts.vendored_chart("rancher", "2.14.4")
    for bad, where in (({"auditLog": {"level": 7}}, "/auditLog/level"), ({"agentTLSMode": "bogus"}, "/agentTLSMode")):
        with pytest.raises(charts.HelmError, match=where):
            charts.render_chart(chart, "rancher", "cattle-system", {"hostname": "r.example.com", **bad}, DEFAULT_KUBERNETES)


def test_validation_catches_invalid_objects(kubernetes_validate):
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replicas": "2", "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": []}}, "surge": 1},
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringdata": {"k": "v"}}
    helm_chart_config = {
        "apiVersion": "helm.cattle.io/v1", "kind": "HelmChartConfig", "metadata": {"name": "traefik", "namespace": "kube-system"},
        "spec": {"valuesContent": {"ports": {}}, "failurePolicy": "sometimes", "values": {}},
    }
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    problems = charts.validate_manifests([deployment, secret, helm_chart_config, unknown], "v1.34.1+k3s1")
    text = "\n".join(problems)
    for expected in ("spec.replicas", "surge", "stringdata", "spec.valuesContent", "spec.failurePolicy", "'values' was unexpected", "Widget w: no schema"):
        assert expected in text, f"{expected!r} not reported in:\n{text}"
    # The harness uses kubernetes-validate's strict schemas with cached validators; the
    # package's own entry point agrees.
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.34.1", strict=True)
    valid = {**deployment, "spec": {k: v for k, v in deployment["spec"].items() if k != "surge"} | {"replicas": 2}}
    valid["spec"]["template"] = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert kubernetes_validate.validate(valid, "1.34.1", strict=True) == "1.34"
    assert charts.validate_manifests([valid], "v1.34.1") == []


def test_schemas_map_to_the_clusters_minor(kubernetes_validate):
    # kubernetes-validate 1.37.0 ships one schema set per minor, v1.25.0 ... v1.37.0.
    assert charts.schema_version_for("v1.34.1+k3s1") == "1.34.0"
    assert charts.schema_version_for("v1.33.5+rke2r1") == "1.33.0"
