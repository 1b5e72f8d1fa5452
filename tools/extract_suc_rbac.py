#!/usr/bin/env python3
"""Extract, from system-upgrade-controller's release manifests, what an upgrade Job may do.

The Job's pod runs as the Plan's `serviceAccountName` (pkg/upgrade/job/job.go `New`); the
program's Plan names the release manifest's ServiceAccount `system-upgrade`, and its prepare
container runs `kubectl wait` on nodes with the image SUC itself uses for its cordon/drain
init container. From a git directory holding rancher/system-upgrade-controller history, at a
tag, this reads:

- `kustomization.yaml`: the namespace the release build (`scripts/package-controller`:
  `kustomize build`) puts every object in, and the manifests it takes;
- those manifests: the ServiceAccounts, and every ClusterRoleBinding / RoleBinding with a
  ServiceAccount subject, resolved to the rules (apiGroups, resources, resourceNames,
  verbs) of the role it binds;
- the ConfigMap `default-controller-env` value `SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE`, and
  `defaultKubectlImage` in pkg/upgrade/job/job.go (used when the variable is empty).

Writes reference/upstream/crds/suc-rbac-<tag>.json: facts only (no upstream text), with a
`$comment` naming repo, tag, commit and paths. Never reads the network.

    # fetch github:rancher/system-upgrade-controller -> /work/.mirror/rancher+system-upgrade-controller/repo
    .venv/bin/python tools/extract_suc_rbac.py --git-dir <that repo> --tag v0.20.1
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import yaml

REPO = "rancher/system-upgrade-controller"
JOB_GO = "pkg/upgrade/job/job.go"
OUT_DIR = Path(__file__).resolve().parents[1] / "reference" / "upstream" / "crds"
RULE_KEYS = ("apiGroups", "resources", "resourceNames", "verbs")


def extract(git_dir: Path, tag: str) -> dict:
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
        "tools/extract_suc_rbac.py. See README.md beside this file."
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
    out = OUT_DIR / f"suc-rbac-{args.tag}.json"
    out.write_text(json.dumps(extract(args.git_dir, args.tag), indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
