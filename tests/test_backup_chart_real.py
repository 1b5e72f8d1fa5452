"""The real rancher-backup charts, rendered by the real helm with the program's own values.

tests/test_backups.py checks the program's values and Backup/Restore objects against facts
extracted from rancher/backup-restore-operator (reference/upstream/). Here the charts
themselves are rendered: `charts/rancher-backup-crd` and `charts/rancher-backup` at the
operator tag each pinned chart packages (settings/versions.py RANCHER_BACKUP_CHARTS),
exported with `git archive` from a local snapshot of rancher/backup-restore-operator and
packaged as its scripts/package-helm does (Chart.yaml version/appVersion, `%TAG%` in
values.yaml); rancher/charts publishes that package as `<chart version>` (the same
Chart.yaml but for version/appVersion/icon, read at the commits versions.py cites).

No upstream chart is committed here and CI has no network, so this module needs
RANCHER_HA_BACKUP_RESTORE_OPERATOR_GIT_DIR (tests/upstream.py) and skips without it:

    RANCHER_HA_BACKUP_RESTORE_OPERATOR_GIT_DIR=<git dir> python -m pytest tests/test_backup_chart_real.py

Checked, per Rancher minor with a pinned operator line and per stack shape (backups,
behind a proxy, restoring into a new stack):
- `helm template --kube-version` succeeds on every Kubernetes minor the program allows with
  that Rancher minor, and every manifest validates strictly (kubernetes-validate; the
  ResourceSet against the rendered CRD); the program installs the chart only on the minors
  its catalog.cattle.io/kube-version declares (helm enforces only `kubeVersion`);
- the program's Backup and Restore objects validate against the openAPIV3Schema of the
  RENDERED CRDs (unknown fields rejected, types, bounds, required);
- the Deployment runs the operator tag the chart version names, in the namespace the
  program writes its Secrets to, reading the S3 location and the credential Secret the
  program means, behind the proxy when there is one; the ResourceSet the Backups name exists;
- every value the program sets is read by the chart (changing it changes the output: a
  misspelled key would not); neither tag ships a values.schema.json (asserted) for helm
  to check them against;
- the extracted facts in reference/upstream/ are what the chart at that tag yields.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
import tarfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components import backups
from conftest import PROXY, cached_run
from offline import charts
from offline.runner import MockRun
from settings.loader import SettingsError
from settings.versions import RANCHER_BACKUP_CHARTS, RANCHER_BACKUP_KUBERNETES, RANCHER_KUBERNETES_SUPPORT
from test_backups import RESTORE_SETTINGS
from tests import upstream
from tools import extract_rancher_backup

REPO_ROOT = Path(__file__).resolve().parents[1]
OPERATOR_REPOSITORY = "rancher/backup-restore-operator"
RELEASE = "kubernetes:helm.sh/v3:Release"
CUSTOM = ("kubernetes:resources.cattle.io/v1:Backup", "kubernetes:resources.cattle.io/v1:Restore")
SECRET = "kubernetes:core/v1:Secret"
CHARTS = ("rancher-backup-crd", "rancher-backup")

SHAPES: dict[str, dict[str, Any]] = {"backups": {}, "proxy": PROXY, "restore": RESTORE_SETTINGS}
RANCHER_MINORS = sorted(RANCHER_BACKUP_CHARTS)
CASES = [(f"{major}.{minor}", shape) for major, minor in RANCHER_MINORS for shape in SHAPES]
KUBE_CASES = [(f"{major}.{minor}", f"v1.{kube}.0")
              for major, minor in RANCHER_MINORS
              for kube in range(RANCHER_KUBERNETES_SUPPORT[(major, minor)][0], RANCHER_KUBERNETES_SUPPORT[(major, minor)][1] + 1)]


# --- the charts at the tags the pins package -----------------------------------------------


@pytest.fixture(scope="module")
def operator_git() -> Path:
    return upstream.require("backup-restore-operator", OPERATOR_REPOSITORY, [tag for _, tag in RANCHER_BACKUP_CHARTS.values()])


def export_charts(git_dir: Path, tag: str, target: Path) -> dict[str, Path]:
    """`git archive <tag> charts/...` into target: the charts as the tag holds them (placeholders)."""
    archive = subprocess.run(["git", "-C", str(git_dir), "archive", "--format=tar", tag, *(f"charts/{c}" for c in CHARTS)],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return {chart: target / "charts" / chart for chart in CHARTS}


def package_like_upstream(chart_dirs: dict[str, Path], chart_version: str, tag: str) -> None:
    """What backup-restore-operator's scripts/package-helm (edit-charts) does before `helm
    package`, with rancher/charts' version: version, appVersion and upstream-version in
    Chart.yaml, the image tag for `%TAG%` in values.yaml."""
    for chart, directory in chart_dirs.items():
        chart_yaml = directory / "Chart.yaml"
        text = re.sub(r"(?m)^version:.*", f"version: {chart_version}", chart_yaml.read_text())
        text = re.sub(r"(?m)^appVersion:.*", f'appVersion: "{tag}"', text)
        text = re.sub(r"catalog\.cattle\.io/upstream-version:.*", f"catalog.cattle.io/upstream-version: {tag[1:]}", text)
        chart_yaml.write_text(text)
    values = chart_dirs["rancher-backup"] / "values.yaml"
    values.write_text(values.read_text().replace("%TAG%", tag))


@dataclass(frozen=True)
class Pin:
    rancher_minor: str
    chart_version: str
    tag: str
    commit: str
    raw: dict[str, Path]  # the charts as the tag holds them
    packaged: dict[str, Path]


@pytest.fixture(scope="module")
def pins(operator_git: Path, tmp_path_factory) -> dict[str, Pin]:
    found = {}
    for (major, minor), (chart_version, tag) in RANCHER_BACKUP_CHARTS.items():
        base = tmp_path_factory.mktemp(f"rancher-backup-{tag}")
        raw = export_charts(operator_git, tag, base / "raw")
        packaged = export_charts(operator_git, tag, base / "packaged")
        package_like_upstream(packaged, chart_version, tag)
        commit = subprocess.run(["git", "-C", str(operator_git), "rev-parse", f"{tag}^{{commit}}"],
                                check=True, capture_output=True, text=True).stdout.strip()
        found[f"{major}.{minor}"] = Pin(f"{major}.{minor}", chart_version, tag, commit, raw, packaged)
    return found


# --- the program's own releases and objects -------------------------------------------------


def program_run(rancher_minor: str, shape: str, kube_version: str | None = None) -> MockRun:
    overrides = {"rancher-ha:rancherBackups": True, "rancher-ha:rancherVersion": f"{rancher_minor}.0", **SHAPES[shape]}
    if kube_version:
        overrides["rancher-ha:kubernetesVersion"] = f"{kube_version[:-2]}.1+k3s1"
    return cached_run(overrides)


def releases(result: MockRun) -> dict[str, dict]:
    return {r.inputs["chart"]: r.inputs for r in result.of_type(RELEASE) if r.inputs["chart"] in CHARTS}


def custom_objects(result: MockRun) -> list[dict]:
    return [{key: r.inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}
            for token in CUSTOM for r in result.of_type(token)]


@functools.lru_cache(maxsize=None)
def _render(chart_dir: str, release: str, namespace: str, values_json: str, kube_version: str) -> charts.RenderedChart:
    return charts.render_chart(chart_dir, release, namespace, json.loads(values_json), kube_version)


def render(pin: Pin, inputs: dict, kube_version: str, values: dict | None = None) -> charts.RenderedChart:
    """A release the program registers, rendered from the real chart with its values."""
    assert inputs["version"] == pin.chart_version, (inputs["chart"], inputs["version"], pin.chart_version)
    values = inputs.get("values") or {} if values is None else values
    return _render(str(pin.packaged[inputs["chart"]]), inputs["name"], inputs["namespace"],
                   json.dumps(values, sort_keys=True), kube_version)


def rendered_pair(pin: Pin, result: MockRun, kube_version: str) -> tuple[charts.RenderedChart, charts.RenderedChart]:
    found = releases(result)
    assert set(found) == set(CHARTS), sorted(found)
    try:
        return render(pin, found["rancher-backup-crd"], kube_version), render(pin, found["rancher-backup"], kube_version)
    except charts.HelmError as error:
        pytest.fail(f"helm template refused on Kubernetes {kube_version}: {error.stderr}")


# --- the charts at their tags -----------------------------------------------------------------


@pytest.mark.parametrize("rancher_minor", [f"{a}.{b}" for a, b in RANCHER_MINORS])
def test_the_pinned_tag_holds_both_charts_for_that_rancher_minor(rancher_minor, pins):
    pin = pins[rancher_minor]
    for chart, directory in pin.raw.items():
        meta = yaml.safe_load((directory / "Chart.yaml").read_text())
        assert meta["name"] == chart
        # The tag holds placeholders that scripts/package-helm replaces.
        assert str(meta["version"]) == "999", meta["version"]
        # Neither chart types its values: helm has no values.schema.json to check them with,
        # so the reading test below is what catches a misspelled key.
        assert not (directory / "values.schema.json").exists(), f"{chart} at {pin.tag} now ships values.schema.json"
    assert "%TAG%" in (pin.raw["rancher-backup"] / "values.yaml").read_text()
    meta = yaml.safe_load((pin.packaged["rancher-backup"] / "Chart.yaml").read_text())
    assert (meta["version"], meta["appVersion"]) == (pin.chart_version, pin.tag)
    # The Rancher minor the chart declares itself for is the one the pin maps it to.
    low, high = re.fullmatch(r">= (\S+)-0 < (\S+)-0", meta["annotations"]["catalog.cattle.io/rancher-version"]).groups()
    assert tuple(int(p) for p in low.split(".")[:2]) == tuple(int(p) for p in rancher_minor.split("."))
    assert high.split(".")[:2] == [rancher_minor.split(".")[0], str(int(rancher_minor.split(".")[1]) + 1)]


def declared_kubernetes(pin: Pin) -> tuple[int, int]:
    """The chart's catalog.cattle.io/kube-version ('>= 1.33.0-0 < 1.36.0-0'), as inclusive minors."""
    meta = yaml.safe_load((pin.packaged["rancher-backup"] / "Chart.yaml").read_text())
    low, high = re.fullmatch(r">= 1\.(\d+)\.0-0 < 1\.(\d+)\.0-0", meta["annotations"]["catalog.cattle.io/kube-version"]).groups()
    return int(low), int(high) - 1


@pytest.mark.parametrize("rancher_minor, kube_version", KUBE_CASES)
def test_helm_renders_both_charts_on_every_kubernetes_the_program_allows(rancher_minor, kube_version, pins, helm, kubernetes_validate):
    """Every Kubernetes minor the program allows with the Rancher minor: the program installs
    the pinned charts only where the chart declares that minor (settings refuse the others,
    settings/versions.py RANCHER_BACKUP_KUBERNETES), and helm renders them there."""
    pin = pins[rancher_minor]
    low, high = declared_kubernetes(pin)
    assert RANCHER_BACKUP_KUBERNETES[pin.chart_version] == (low, high)
    minor = int(kube_version.split(".")[1])
    try:
        result = program_run(rancher_minor, "backups", kube_version)
    except SettingsError as error:
        assert not low <= minor <= high, f"refused on a Kubernetes the chart declares: {error}"
        assert "rancherBackupChartVersion" in str(error) and f"not 1.{minor}" in str(error)
        return
    assert low <= minor <= high, f"the program installs {pin.chart_version} on Kubernetes 1.{minor}; it declares 1.{low}-1.{high}"
    crd_chart, operator_chart = rendered_pair(pin, result, kube_version)
    assert crd_chart.warnings == [] and operator_chart.warnings == []
    kinds = sorted(m["kind"] for m in crd_chart.manifests)
    assert kinds == ["CustomResourceDefinition"] * 3, kinds
    assert operator_chart.of_kind("Deployment") and operator_chart.of_kind("ResourceSet")
    problems = charts.validate_manifests(crd_chart.manifests + operator_chart.manifests, kube_version)
    assert problems == []


@pytest.mark.parametrize("rancher_minor, shape", CASES)
def test_rendered_manifests_are_valid_kubernetes(rancher_minor, shape, pins, helm, kubernetes_validate):
    pin = pins[rancher_minor]
    kube_version = f"v1.{RANCHER_KUBERNETES_SUPPORT[tuple(map(int, rancher_minor.split('.')))][0]}.0"
    crd_chart, operator_chart = rendered_pair(pin, program_run(rancher_minor, shape), kube_version)
    assert charts.validate_manifests(crd_chart.manifests + operator_chart.manifests, kube_version) == []


@pytest.mark.parametrize("rancher_minor, shape", CASES)
def test_program_objects_are_valid_against_the_rendered_crds(rancher_minor, shape, pins, helm):
    pin = pins[rancher_minor]
    result = program_run(rancher_minor, shape)
    crd_chart, _ = rendered_pair(pin, result, "v1.34.0")
    schemas = charts.crd_schemas(crd_chart.manifests)
    objects = custom_objects(result)
    assert sorted(o["kind"] for o in objects) == (["Backup", "Backup", "Restore"] if shape == "restore" else ["Backup", "Backup"])
    for obj in objects:
        schema = schemas[(obj["apiVersion"], obj["kind"])]
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)]
        assert errors == [], f"{obj['kind']} {obj['metadata']['name']}"
    # backup_object with and without a schedule; restore_object with and without a source.
    direct = [backups.backup_object("a", "@hourly", 5), backups.backup_object("b"),
              backups.restore_object("f.tar.gz", None, False),
              backups.restore_object("f.tar.gz.enc", backups.S3Location("bucket", "folder", "eu-west-1").spec("creds"), True)]
    for obj in direct:
        jsonschema.validate(obj, schemas[(obj["apiVersion"], obj["kind"])])


@pytest.mark.parametrize("rancher_minor, shape", CASES)
def test_the_operator_runs_with_what_the_program_relies_on(rancher_minor, shape, pins, helm):
    pin = pins[rancher_minor]
    result = program_run(rancher_minor, shape)
    values = releases(result)["rancher-backup"]["values"]
    _, rendered = rendered_pair(pin, result, "v1.34.0")
    (deployment,) = rendered.of_kind("Deployment")
    assert deployment["metadata"]["namespace"] == backups.NAMESPACE
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"rancher/backup-restore-operator:{backups.operator_tag(pin.chart_version)}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The operator reads its default S3 location, the credential Secret it names and every
    # encryptionConfigSecretName from CHART_NAMESPACE (cmd/operator/main.go,
    # pkg/operator/start.go, pkg/util/encryptionconfig/config.go): where the program writes them.
    assert env["CHART_NAMESPACE"] == backups.NAMESPACE
    location = rendered.get("Secret", env["DEFAULT_S3_BACKUP_STORAGE_LOCATION"])
    assert location["metadata"]["namespace"] == backups.NAMESPACE
    assert location["stringData"] == {
        "credentialSecretName": backups.credentials_secret_name(), "credentialSecretNamespace": backups.NAMESPACE,
        "bucketName": values["s3"]["bucketName"], "folder": values["s3"]["folder"],
        "region": values["s3"]["region"], "endpoint": backups.s3_endpoint(values["s3"]["region"]),
    }
    own_secrets = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]): r.inputs for r in result.of_type(SECRET)}
    credentials = own_secrets[(backups.NAMESPACE, location["stringData"]["credentialSecretName"])]
    assert set(credentials["stringData"]) == {"accessKey", "secretKey"}
    for obj in custom_objects(result):
        secret_name = obj["spec"].get("encryptionConfigSecretName")
        if secret_name:
            assert backups.ENCRYPTION_CONFIG_KEY in own_secrets[(backups.NAMESPACE, secret_name)]["stringData"]
        if obj["kind"] == "Backup":
            assert "storageLocation" not in obj["spec"]  # the chart's default location above
            assert rendered.get("ResourceSet", obj["spec"]["resourceSetName"])
    # The program sets no placement: the chart's own (Linux nodes) is what every node has.
    assert "nodeSelector" not in values and "tolerations" not in values
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    proxy = values.get("proxy")
    assert (env.get("HTTP_PROXY"), env.get("HTTPS_PROXY")) == (proxy, proxy)
    assert env.get("NO_PROXY") == (values["noProxy"] if proxy else None)
    assert bool(proxy) == (shape == "proxy")


def _leaves(values: dict, prefix: tuple = ()) -> list[tuple]:
    found = []
    for key, value in values.items():
        found += _leaves(value, prefix + (key,)) if isinstance(value, dict) and value else [prefix + (key,)]
    return found


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, int):
        return value + 1
    return [*value, "changed"] if isinstance(value, list) else {"changed": True}


@pytest.mark.parametrize("rancher_minor, shape", CASES)
def test_the_chart_reads_every_value_the_program_sets(rancher_minor, shape, pins, helm):
    """helm ignores a key no template reads (the chart has no values.schema.json): a
    misspelled one would pass `helm template`. Each value must change the manifests."""
    pin = pins[rancher_minor]
    inputs = releases(program_run(rancher_minor, shape))["rancher-backup"]
    values = inputs["values"]
    base = render(pin, inputs, "v1.34.0").manifests
    unread = []
    for path in _leaves(values):
        changed = copy.deepcopy(values)
        node = changed
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = _changed(node[path[-1]])
        try:
            if render(pin, inputs, "v1.34.0", changed).manifests == base:
                unread.append(".".join(path))
        except charts.HelmError:
            pass  # refused: the chart reads it
    assert unread == []


# --- the extracted facts are what the chart at the tag yields --------------------------------


@pytest.mark.parametrize("rancher_minor", [f"{a}.{b}" for a, b in RANCHER_MINORS])
def test_extracted_facts_are_what_the_tag_yields(rancher_minor, pins, operator_git, helm):
    pin = pins[rancher_minor]
    fresh = extract_rancher_backup.facts(str(operator_git), pin.tag)
    for name, content in fresh.items():
        kept = json.loads((REPO_ROOT / "reference/upstream" / name).read_text())
        assert kept == content, f"reference/upstream/{name} differs from {OPERATOR_REPOSITORY} {pin.tag}: rerun tools/extract_rancher_backup.py"
        assert pin.commit in kept["$comment"]
    # ... and the CRDs helm renders from that chart are the extracted ones.
    crd_chart = _render(str(pin.packaged["rancher-backup-crd"]), "rancher-backup-crd", backups.NAMESPACE, "{}", "v1.34.0")
    rendered = {m["spec"]["names"]["plural"]: next(v for v in m["spec"]["versions"] if v["name"] == "v1")
                for m in crd_chart.of_kind("CustomResourceDefinition")}
    crds = fresh[f"crds/rancher-backup-{pin.tag}.json"]
    for plural in ("backups", "restores"):
        assert extract_rancher_backup.strip(rendered[plural]["schema"]["openAPIV3Schema"]) == crds[plural], plural
