#!/usr/bin/env python3
"""Extract the fields and types of system-upgrade-controller's Plan CRD from upstream.

Reads `pkg/crds/yaml/generated/upgrade.cattle.io_plans.yaml` (controller-gen output, the
file `scripts/package-controller` concatenates into the release asset crd.yaml) at a tag
of a git directory holding rancher/system-upgrade-controller history, takes
`spec.versions[name=v1].schema.openAPIV3Schema` and drops every `description`: only
structure stays (properties, types, formats, enums, defaults, required, patterns and the
x-kubernetes-* markers). Writes reference/upstream/crds/suc-plan-<tag>.json with a
`$comment` naming repo, tag, commit and path.

Beside it, reference/upstream/crds/suc-rbac-<tag>.json: what an upgrade Job may do. The
Job's pod runs as the Plan's `serviceAccountName` (pkg/upgrade/job/job.go `New`); the
program's Plan names the release's ServiceAccount `system-upgrade`, and its prepare runs
`kubectl wait` on nodes with the image SUC uses for its own cordon/drain init container.
Read at the same tag: `kustomization.yaml` (the namespace the release build,
`scripts/package-controller`'s `kustomize build`, puts every object in, and the manifests
it takes); in those manifests the ServiceAccounts and every ClusterRoleBinding /
RoleBinding with a ServiceAccount subject, resolved to its role's rules (apiGroups,
resources, resourceNames, verbs); the ConfigMap `default-controller-env` value
`SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE` and `defaultKubectlImage` in pkg/upgrade/job/job.go.
Facts only, no upstream text. Never reads the network.

    # fetch github:rancher/system-upgrade-controller -> /work/.mirror/rancher+system-upgrade-controller/repo
    .venv/bin/python tools/extract_suc_plan_crd.py --git-dir <that repo> --tag v0.20.1
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = "rancher/system-upgrade-controller"
SOURCE = "pkg/crds/yaml/generated/upgrade.cattle.io_plans.yaml"
JOB_GO = "pkg/upgrade/job/job.go"
RULE_KEYS = ("apiGroups", "resources", "resourceNames", "verbs")
OUT_DIR = Path(__file__).resolve().parents[1] / "reference" / "upstream" / "crds"


def structure(node: Any) -> Any:
    """The schema without its prose: every `description` removed, recursively."""
    if isinstance(node, list):
        return [structure(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key == "properties":
            out[key] = {name: structure(child) for name, child in value.items()}
        elif key in ("default", "enum", "required", "pattern", "x-kubernetes-list-map-keys"):
            out[key] = value  # values, not schemas
        else:
            out[key] = structure(value)
    return out


def extract(git_dir: Path, tag: str) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(git_dir), *args], check=True, capture_output=True, text=True).stdout

    commit = git("rev-parse", f"{tag}^{{commit}}").strip()
    crd = yaml.safe_load(git("show", f"{commit}:{SOURCE}"))
    assert crd["kind"] == "CustomResourceDefinition" and crd["metadata"]["name"] == "plans.upgrade.cattle.io", crd["metadata"]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = structure(version["schema"]["openAPIV3Schema"])
    comment = (
        f"The fields and types of CRD plans.upgrade.cattle.io v1 (no descriptions), as defined by {REPO} tag {tag} "
        f"(commit {commit}, {SOURCE}, which scripts/package-controller concatenates into the release asset crd.yaml). "
        "Written by tools/extract_suc_plan_crd.py. See README.md beside this file."
    )
    return {"$comment": comment, **schema}


def extract_rbac(git_dir: Path, tag: str) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(git_dir), *args], check=True, capture_output=True, text=True).stdout

    commit = git("rev-parse", f"{tag}^{{commit}}").strip()
    kustomization = yaml.safe_load(git("show", f"{commit}:kustomization.yaml"))
    namespace = kustomization["namespace"]
    objects = [o for path in kustomization["resources"] for o in yaml.safe_load_all(git("show", f"{commit}:{path}")) if o]
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in ("ClusterRole", "Role")}
    accounts = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount")
    grants: dict[str, list[dict]] = {}
    for binding in (o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for subject in binding.get("subjects") or []:
            if subject["kind"] != "ServiceAccount":
                continue
            grants.setdefault(subject["name"], []).append({
                "binding": f"{binding['kind']}/{binding['metadata']['name']}",
                "role": f"{role['kind']}/{role['metadata']['name']}",
                # A RoleBinding grants in the kustomization's namespace only; a ClusterRoleBinding cluster-wide.
                "scope": "cluster" if binding["kind"] == "ClusterRoleBinding" else f"namespace {namespace}",
                "rules": [{key: rule[key] for key in RULE_KEYS if key in rule} for rule in role["rules"]],
            })
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "default-controller-env"]
    default_image = re.search(r'defaultKubectlImage\s*=\s*"([^"]+)"', git("show", f"{commit}:{JOB_GO}"))
    assert default_image, "defaultKubectlImage not found"
    comment = (
        f"What the release manifests of {REPO} tag {tag} (commit {commit}) grant the ServiceAccounts an upgrade Job may "
        f"run as: kustomization.yaml (namespace, resources: {', '.join(kustomization['resources'])}), the bindings' "
        f"roles' rules (no upstream text); the Job's kubectl image from the ConfigMap default-controller-env "
        f"(manifests/system-upgrade-controller.yaml) and {JOB_GO} defaultKubectlImage. Written by "
        "tools/extract_suc_plan_crd.py. See README.md beside this file."
    )
    return {
        "$comment": comment,
        "namespace": namespace,
        "serviceAccounts": accounts,
        "grants": grants,
        "jobKubectlImage": {"configMap": config["data"]["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"], "default": default_image.group(1)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-dir", type=Path, required=True)
    parser.add_argument("--tag", default="v0.20.1")
    args = parser.parse_args()
    for kind, facts in (("plan", extract), ("rbac", extract_rbac)):
        out = OUT_DIR / f"suc-{kind}-{args.tag}.json"
        out.write_text(json.dumps(facts(args.git_dir, args.tag), indent=2, sort_keys=True) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
