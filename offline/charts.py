"""Render the real Helm charts with a real helm, and validate what they produce.

`render_chart` runs `helm template` (helm v3.19.0, installed by scripts/bootstrap.sh
into .tools/helm/helm) on a vendored chart directory (reference/charts/<chart>-<version>)
with `--kube-version`, so the chart's `kubeVersion` constraint is enforced (`helm lint`
does not enforce it), and `--api-versions` for capability checks such as
`cert-manager.io/v1`. Values go to helm as a JSON file (JSON is YAML): ints stay ints,
exactly what pulumi-kubernetes' `helm.v3.Release` hands to the Helm library, and helm
validates them against the chart's values.schema.json.

`helm template` never prints NOTES.txt (and `helm install --dry-run=client` still needs
a reachable cluster), so the chart is rendered from a private copy in which NOTES.txt is
also wrapped into a ConfigMap template; its text is returned as `RenderedChart.notes`
and the ConfigMap is dropped from the manifests. Rancher, for one, prints its
cert-manager dependency warning only there.

`validate_manifests` checks each manifest with the `kubernetes-validate` package in
strict mode (unknown fields rejected), against the schemas of the Kubernetes minor
closest to the cluster's: kubernetes-validate 1.37.0 ships v1.25.0 ... v1.37.0, one
schema set per minor (x.y.0), so v1.34.1 is checked against v1.34.0. Custom resources
are checked against the openAPIV3Schema of their CRD (given, or rendered alongside),
made strict the same way; a kind with no schema at all is reported, never passed.
"""

from __future__ import annotations

import atexit
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CHARTS_DIR = REPO_ROOT / "reference" / "charts"
CRDS_DIR = REPO_ROOT / "reference" / "upstream" / "crds"
HELM_VERSION = "v3.19.0"
HELM_TIMEOUT_SECONDS = 60

_NOTES_CONFIGMAP = "zz-helm-notes-capture"
_NOTES_DEFINE = "zz-helm-notes-capture.text"


class HelmError(RuntimeError):
    def __init__(self, command: Sequence[str], returncode: int, stderr: str):
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"helm exited {returncode}: {stderr.strip()}")


@dataclass(frozen=True)
class RenderedChart:
    release: str
    namespace: str
    kube_version: str
    manifests: list[dict]
    stderr: str = ""
    # helm's own warnings (stderr lines) and the chart's "[WARNING] ..." / "WARNING:" lines in NOTES.
    warnings: list[str] = field(default_factory=list)
    notes: Optional[str] = None  # None: the chart has no NOTES.txt (or it could not be captured)

    def of_kind(self, kind: str) -> list[dict]:
        return [m for m in self.manifests if m.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict:
        matches = [m for m in self.of_kind(kind) if m.get("metadata", {}).get("name") == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} {kind} named {name} in {self.release}")
        return matches[0]


# --- helm ---------------------------------------------------------------------------


def helm_binary() -> Optional[str]:
    """The helm v3.19 binary: $RANCHER_HA_HELM, .tools/helm/helm, or `helm` on PATH if it is v3.19."""
    candidates = [os.environ.get("RANCHER_HA_HELM"), str(REPO_ROOT / ".tools" / "helm" / "helm"), shutil.which("helm")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and _helm_version(candidate).startswith(HELM_VERSION):
            return candidate
    return None


@functools.lru_cache(maxsize=None)
def _helm_version(binary: str) -> str:
    try:
        result = subprocess.run([binary, "version", "--short"], capture_output=True, text=True, timeout=20, env=_helm_env())
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


_scratch: list[str] = []


def _mkdtemp(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    _scratch.append(path)
    return path


@atexit.register
def _clean_scratch() -> None:
    for path in _scratch:
        shutil.rmtree(path, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _helm_home() -> str:
    return _mkdtemp("rancher-ha-helm-home-")


def _helm_env() -> dict[str, str]:
    # No user config, repositories, plugins or cluster: a template run must be hermetic.
    home = _helm_home()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HELM_") and key != "KUBECONFIG"}
    env.update(
        HELM_CACHE_HOME=f"{home}/cache",
        HELM_CONFIG_HOME=f"{home}/config",
        HELM_DATA_HOME=f"{home}/data",
        KUBECONFIG=f"{home}/no-kubeconfig",
    )
    return env


def vendored_chart(chart: str, version: str) -> Path:
    """reference/charts/<chart>-<version>, whose Chart.yaml must say that name and version."""
    directory = CHARTS_DIR / f"{chart}-{version}"
    if not (directory / "Chart.yaml").is_file():
        raise FileNotFoundError(f"no vendored chart {chart} {version} (expected {directory.relative_to(REPO_ROOT)})")
    meta = yaml.safe_load((directory / "Chart.yaml").read_text())
    if meta.get("name") != chart or str(meta.get("version")) != version:
        raise ValueError(f"{directory} holds {meta.get('name')} {meta.get('version')}, not {chart} {version}")
    return directory


_copy_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _chart_with_notes_capture(chart_dir: str) -> tuple[str, bool]:
    """A private copy of the chart whose NOTES.txt also renders into a ConfigMap."""
    with _copy_lock:
        target = Path(_mkdtemp("rancher-ha-chart-")) / Path(chart_dir).name
        shutil.copytree(chart_dir, target)
        notes = target / "templates" / "NOTES.txt"
        if not notes.is_file() or "{{ define" in notes.read_text() or "{{- define" in notes.read_text():
            return str(target), False
        (target / "templates" / "_zz_helm_notes_capture.tpl").write_text(
            f'{{{{- define "{_NOTES_DEFINE}" -}}}}\n{notes.read_text()}\n{{{{- end -}}}}\n'
        )
        (target / "templates" / "zz-helm-notes-capture.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
            f"  name: {_NOTES_CONFIGMAP}\n"
            f'data:\n  notes: {{{{ include "{_NOTES_DEFINE}" . | toJson }}}}\n'
        )
        return str(target), True


def strip_kube_version(version: str) -> str:
    """v1.34.1+k3s1 / v1.34.1+rke2r1 -> v1.34.1 (what `--kube-version` takes)."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?", version.strip())
    if not match:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return "v{}.{}.{}".format(*match.groups())


def render_chart(
    chart_dir: Path | str,
    release: str,
    namespace: str,
    values: Mapping[str, Any],
    kube_version: str,
    api_versions: Iterable[str] = (),
    timeout: float = HELM_TIMEOUT_SECONDS,
) -> RenderedChart:
    """`helm template` the chart; raises HelmError when helm refuses (kubeVersion, schema, `fail`)."""
    binary = helm_binary()
    if binary is None:
        raise FileNotFoundError(f"helm {HELM_VERSION} not found (scripts/bootstrap.sh install_helm puts it in .tools/helm/helm)")
    kube_version = strip_kube_version(kube_version)
    chart_path, captures_notes = _chart_with_notes_capture(str(Path(chart_dir).resolve()))
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="values-", delete=False) as handle:
        json.dump(values, handle)
        values_file = handle.name
    command = [
        binary, "template", release, chart_path,
        "--namespace", namespace,
        "--kube-version", kube_version,
        "--include-crds",
        "--values", values_file,
    ]
    for api_version in api_versions:
        command += ["--api-versions", api_version]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_helm_env())
    except subprocess.TimeoutExpired as error:
        raise HelmError(command, -1, f"timed out after {timeout} s") from error
    finally:
        os.unlink(values_file)
    if result.returncode != 0:
        raise HelmError(command, result.returncode, result.stderr)
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    notes = None
    if captures_notes:
        captured = [m for m in manifests if m.get("kind") == "ConfigMap" and m["metadata"].get("name") == _NOTES_CONFIGMAP]
        manifests = [m for m in manifests if m not in captured]
        notes = captured[0]["data"]["notes"] if captured else None
    warnings = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    warnings += [line.strip() for line in (notes or "").splitlines() if "WARNING" in line]
    return RenderedChart(release, namespace, kube_version, manifests, result.stderr, warnings, notes)


# --- validation ---------------------------------------------------------------------


def schema_version_for(kube_version: str) -> str:
    """The kubernetes-validate schema set closest to a Kubernetes version (same minor when shipped)."""
    from kubernetes_validate.utils import all_versions

    major, minor = (int(part) for part in strip_kube_version(kube_version)[1:].split(".")[:2])
    shipped = [tuple(int(p) for p in v.split(".")[:2]) + (v,) for v in all_versions()]
    # Nearest minor; on a tie the older one (its schemas are what the cluster surely serves).
    best = min(shipped, key=lambda item: (abs(item[0] - major) * 1000 + abs(item[1] - minor), item[1] > minor))
    return best[2]


@functools.lru_cache(maxsize=None)
def _builtin_validator(schema_version: str, kind: str, api_version: str):
    """A cached Draft 2020-12 validator for a built-in kind, or None when there is no schema."""
    import importlib_resources
    import jsonschema
    from referencing import Registry, Resource

    root = importlib_resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", f"v{schema_version}-local-strict")
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_file = root.joinpath(f"{kind.lower()}-{group}.json")
    if not schema_file.is_file():
        return None
    schema = json.loads(schema_file.read_text())
    definitions = _definitions(schema_version)
    registry = Resource.from_contents(schema) @ (Resource.from_contents(definitions) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=None)
def _definitions(schema_version: str) -> dict:
    import importlib_resources

    root = importlib_resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", f"v{schema_version}-local-strict")
    return json.loads(root.joinpath("_definitions.json").read_text())


def strict_crd_schema(open_api_v3: Mapping[str, Any]) -> dict:
    """A CRD's openAPIV3Schema as a JSON Schema that rejects unknown fields.

    The API server prunes (or, with kubectl's default strict field validation, rejects)
    fields a structural schema does not declare; here every object with `properties`
    and without x-kubernetes-preserve-unknown-fields gets additionalProperties: false.
    `nullable` and x-kubernetes-int-or-string are translated; `metadata` stays open.
    """

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: convert(value) for key, value in node.items() if key not in ("properties", "items", "additionalProperties")}
        if "properties" in node:
            out["properties"] = {key: convert(value) for key, value in node["properties"].items()}
        if "items" in node:
            out["items"] = convert(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = convert(node["additionalProperties"])
        elif "additionalProperties" in node:
            out["additionalProperties"] = node["additionalProperties"]
        if node.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out

    schema = convert(copy.deepcopy(dict(open_api_v3)))
    schema.get("properties", {}).pop("metadata", None)
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def crd_schemas(manifests: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict]:
    """{(apiVersion, kind): strict schema} for every served version of the CRDs among manifests."""
    schemas: dict[tuple[str, str], dict] = {}
    for manifest in manifests:
        if manifest.get("kind") != "CustomResourceDefinition":
            continue
        spec = manifest["spec"]
        for version in spec.get("versions", []):
            open_api = (version.get("schema") or {}).get("openAPIV3Schema")
            if version.get("served") and open_api:
                schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = strict_crd_schema(open_api)
    return schemas


@functools.lru_cache(maxsize=None)
def reference_crd_schema(filename: str) -> dict:
    """A CRD schema extracted into reference/upstream/crds/ (see its README), made strict."""
    raw = json.loads((CRDS_DIR / filename).read_text())
    raw.pop("$comment", None)
    return strict_crd_schema(raw)


@functools.lru_cache(maxsize=None)
def rancher_backup_schemas(operator_tag: str) -> dict[tuple[str, str], dict]:
    """resources.cattle.io/v1 Backup and Restore of a backup-restore-operator tag, from
    reference/upstream/crds/rancher-backup-<tag>.json."""
    raw = json.loads((CRDS_DIR / f"rancher-backup-{operator_tag}.json").read_text())
    return {
        ("resources.cattle.io/v1", "Backup"): strict_crd_schema(raw["backups"]),
        ("resources.cattle.io/v1", "Restore"): strict_crd_schema(raw["restores"]),
    }


def helmchartconfig_schema() -> dict:
    """helm.cattle.io/v1 HelmChartConfig, from reference/upstream/crds/helmchartconfig.json."""
    return reference_crd_schema("helmchartconfig.json")


def suc_plan_schema() -> dict:
    """upgrade.cattle.io/v1 Plan of system-upgrade-controller v0.20.1 (components/upgrades.py)."""
    return reference_crd_schema("suc-plan-v0.20.1.json")


def _describe(manifest: Mapping[str, Any]) -> str:
    metadata = manifest.get("metadata") or {}
    where = f"{metadata.get('namespace')}/" if metadata.get("namespace") else ""
    return f"{manifest.get('apiVersion')} {manifest.get('kind')} {where}{metadata.get('name')}"


def validate_manifests(
    manifests: Iterable[Mapping[str, Any]],
    kube_version: str,
    custom_schemas: Optional[Mapping[tuple[str, str], Mapping[str, Any]]] = None,
) -> list[str]:
    """Problems found, one line each (empty: all valid).

    Built-in kinds: kubernetes-validate's strict schemas for the closest shipped minor.
    Custom kinds: `custom_schemas` (see crd_schemas), plus the CRDs found among the
    manifests themselves and the extracted HelmChartConfig and Plan CRDs (reference/upstream/crds/).
    """
    import jsonschema

    manifests = list(manifests)
    version = schema_version_for(kube_version)
    custom = {
        ("helm.cattle.io/v1", "HelmChartConfig"): helmchartconfig_schema(),
        ("upgrade.cattle.io/v1", "Plan"): suc_plan_schema(),
        **crd_schemas(manifests),
        **dict(custom_schemas or {}),
    }
    problems: list[str] = []
    for manifest in manifests:
        if not isinstance(manifest, Mapping) or "apiVersion" not in manifest or "kind" not in manifest:
            problems.append(f"not a Kubernetes object: {str(manifest)[:120]}")
            continue
        key = (manifest["apiVersion"], manifest["kind"])
        validator = _builtin_validator(version, manifest["kind"], manifest["apiVersion"])
        if validator is None and key in custom:
            validator = jsonschema.Draft202012Validator(custom[key])
        if validator is None:
            problems.append(f"{_describe(manifest)}: no schema (Kubernetes {version}, and no CRD given)")
            continue
        for error in sorted(validator.iter_errors(dict(manifest)), key=lambda e: list(map(str, e.absolute_path))):
            path = ".".join(str(part) for part in error.absolute_path) or "<root>"
            problems.append(f"{_describe(manifest)} (Kubernetes {version} schema): {path}: {error.message[:300]}")
        if manifest.get("kind") not in ("List",) and not (manifest.get("metadata") or {}).get("name"):
            problems.append(f"{_describe(manifest)}: metadata.name is empty")
    return problems
