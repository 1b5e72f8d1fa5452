#!/usr/bin/env python3
"""Extract the fields and types of system-upgrade-controller's Plan CRD from upstream.

Reads `pkg/crds/yaml/generated/upgrade.cattle.io_plans.yaml` (controller-gen output, the
file `scripts/package-controller` concatenates into the release asset crd.yaml) at a tag
of a git directory holding rancher/system-upgrade-controller history, takes
`spec.versions[name=v1].schema.openAPIV3Schema` and drops every `description`: only
structure stays (properties, types, formats, enums, defaults, required, patterns and the
x-kubernetes-* markers). Writes reference/upstream/crds/suc-plan-<tag>.json with a
`$comment` naming repo, tag, commit and path. Never reads the network.

    # fetch github:rancher/system-upgrade-controller -> /work/.mirror/rancher+system-upgrade-controller/repo
    .venv/bin/python tools/extract_suc_plan_crd.py --git-dir <that repo> --tag v0.20.1
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = "rancher/system-upgrade-controller"
SOURCE = "pkg/crds/yaml/generated/upgrade.cattle.io_plans.yaml"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-dir", type=Path, required=True)
    parser.add_argument("--tag", default="v0.20.1")
    args = parser.parse_args()
    out = OUT_DIR / f"suc-plan-{args.tag}.json"
    out.write_text(json.dumps(extract(args.git_dir, args.tag), indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
