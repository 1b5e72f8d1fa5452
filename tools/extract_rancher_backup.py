"""Extract facts (no upstream text) from rancher/backup-restore-operator at a tag.

    python tools/extract_rancher_backup.py <git dir of a rancher/backup-restore-operator clone> v10.0.8 v11.0.0

writes, per tag:
- reference/upstream/crds/rancher-backup-<tag>.json: the openAPIV3Schema of the
  `backups` and `restores` CRDs (charts/rancher-backup-crd/templates/*.yaml), fields,
  types, enum, default and bounds only (every `description` dropped);
- reference/upstream/charts/rancher-backup-<tag>-values.json: the key tree of
  charts/rancher-backup/values.yaml (leaves replaced by their YAML type) and every
  `.Values.<path>` the chart's templates read (keys documented only as comments,
  such as `proxy`, are read by the templates and live there).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REPO = "rancher/backup-restore-operator"
KEPT = {"type", "properties", "items", "enum", "default", "required", "nullable", "minimum", "maximum",
        "format", "additionalProperties", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
        "x-kubernetes-list-type", "x-kubernetes-list-map-keys"}


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "-C", git_dir, *args], check=True, capture_output=True, text=True).stdout


def strip(node):
    if isinstance(node, list):
        return [strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key not in KEPT:
            continue
        if key == "properties":
            out[key] = {name: strip(child) for name, child in value.items()}
        else:
            out[key] = strip(value)
    return out


def key_tree(node):
    if isinstance(node, dict):
        return {key: key_tree(value) for key, value in node.items()}
    return type(node).__name__


def facts(git_dir: str, tag: str) -> dict[str, dict]:
    """{file under reference/upstream/: its content} for one tag, as extract() writes them."""
    commit = git(git_dir, "rev-parse", f"{tag}^{{commit}}").strip()
    crds = {}
    for plural in ("backups", "restores"):
        path = f"charts/rancher-backup-crd/templates/{plural[:-1]}.yaml"
        document = yaml.safe_load(git(git_dir, "show", f"{tag}:{path}"))
        version = next(v for v in document["spec"]["versions"] if v["name"] == "v1")
        crds[plural] = strip(version["schema"]["openAPIV3Schema"])
    crd_facts = {
        "$comment": (f"The fields and types of CRDs backups.resources.cattle.io and restores.resources.cattle.io v1 "
                     f"(no descriptions), from {REPO} tag {tag} (commit {commit}), "
                     "charts/rancher-backup-crd/templates/backup.yaml and restore.yaml. "
                     "Made by tools/extract_rancher_backup.py; see README.md beside this file."),
        **crds,
    }

    # The release build fills in placeholders such as `tag: %TAG%`; quote them to parse.
    raw_values = git(git_dir, "show", f"{tag}:charts/rancher-backup/values.yaml")
    values = yaml.safe_load(re.sub(r": (%[A-Z_]+%)", r": '\\1'", raw_values))
    templates = [p for p in git(git_dir, "ls-tree", "-r", "--name-only", tag, "charts/rancher-backup/templates").split()]
    referenced = set()
    for path in templates:
        referenced.update(re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", git(git_dir, "show", f"{tag}:{path}")))
    values_facts = {
        "$comment": (f"The key tree of charts/rancher-backup/values.yaml (leaf: its YAML type) and the .Values paths "
                     f"charts/rancher-backup/templates/* read, from {REPO} tag {tag} (commit {commit}). "
                     "Made by tools/extract_rancher_backup.py."),
        "values": key_tree(values),
        "templateReferences": sorted(ref.lstrip(".") for ref in referenced),
    }
    return {f"crds/rancher-backup-{tag}.json": crd_facts, f"charts/rancher-backup-{tag}-values.json": values_facts}


def extract(git_dir: str, tag: str) -> None:
    for name, content in facts(git_dir, tag).items():
        target = ROOT / "reference/upstream" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    for tag in sys.argv[2:]:
        extract(sys.argv[1], tag)
