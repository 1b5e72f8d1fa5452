"""Update the pinned installers and the newest verified releases from upstream snapshots.

Writes reference/upstream/installers/installers.json, the data the boot script's installer
pin (URL + sha256) and settings/versions.py read. Every value records where it came from
(repository, commit, how the checksum was obtained). Nothing is downloaded: it reads git
snapshots you fetched (bare git directories).

    # RKE2: newest tag of each supported minor, and install.sh at the newest tag
    python tools/update_versions.py rke2 <rancher/rke2 git dir>

    # K3s: install.sh at a commit of a k3s snapshot (k3s-io/k3s, or a fork with upstream
    # commits); the sha256 is computed from the bytes and checked against the
    # install.sh.sha256sum k3s commits beside it
    python tools/update_versions.py k3s <k3s git dir> --commit <commit>

    # K3s when no snapshot holds the bytes: k3s's own recorded checksum
    python tools/update_versions.py k3s-recorded --commit <commit> --sha256 <hex> --note "<where it was read>"

Add --check to compare instead of write (exit 1 on a difference).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "reference" / "upstream" / "installers" / "installers.json"
SUPPORTED_MINORS = range(31, 37)  # settings/versions.py RANCHER_KUBERNETES_SUPPORT, lowest to highest
RAW = "https://raw.githubusercontent.com/{repository}/{commit}/install.sh"
RKE2_TAG = re.compile(r"^v1\.(\d+)\.(\d+)\+rke2r(\d+)$")


def git(git_dir: str, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True).stdout


def newest_rke2_tags(git_dir: str) -> dict[str, str]:
    newest: dict[int, tuple[tuple[int, int], str]] = {}
    for tag in git(git_dir, "tag").decode().split():
        match = RKE2_TAG.match(tag)
        if not match:
            continue
        minor, patch, build = (int(part) for part in match.groups())
        if minor in SUPPORTED_MINORS and (minor not in newest or (patch, build) > newest[minor][0]):
            newest[minor] = ((patch, build), tag)
    return {f"1.{minor}": tag for minor, (_, tag) in sorted(newest.items())}


def installer_at(git_dir: str, repository: str, commit: str) -> dict:
    commit = git(git_dir, "rev-parse", f"{commit}^{{commit}}").decode().strip()
    script = git(git_dir, "show", f"{commit}:install.sh")
    return {
        "url": RAW.format(repository=repository, commit=commit),
        "sha256": hashlib.sha256(script).hexdigest(),
        "repository": repository,
        "commit": commit,
        "path": "install.sh",
        "bytes": len(script),
    }


def update(data: dict, args: argparse.Namespace) -> dict:
    data = json.loads(json.dumps(data))
    if args.what == "rke2":
        head = git(args.git_dir, "rev-parse", "HEAD").decode().strip()
        tags = newest_rke2_tags(args.git_dir)
        newest_tag = tags[max(tags, key=lambda minor: int(minor.split(".")[1]))]
        installer = installer_at(args.git_dir, "rancher/rke2", newest_tag)
        installer["tag"] = newest_tag
        installer["checksum_from"] = "sha256 of install.sh at the commit, read from a rancher/rke2 git snapshot"
        data["installers"]["rke2"] = installer
        data["releases"]["rke2"] = {
            "newest_per_minor": tags,
            "source": {"repository": "rancher/rke2", "snapshot_head": head, "how": "newest vX.Y.Z+rke2rN tag of each minor in the snapshot"},
        }
    elif args.what == "k3s":
        installer = installer_at(args.git_dir, "k3s-io/k3s", args.commit)
        try:
            recorded = git(args.git_dir, "show", f"{installer['commit']}:install.sh.sha256sum").decode().split()[0]
        except subprocess.CalledProcessError:
            recorded = None
        if recorded is not None and recorded != installer["sha256"]:
            raise SystemExit(f"install.sh at {installer['commit']} hashes to {installer['sha256']}, "
                             f"but install.sh.sha256sum there says {recorded}")
        installer["checksum_from"] = "sha256 of install.sh at the commit, read from a k3s git snapshot" + (
            " (equal to install.sh.sha256sum at the same commit)" if recorded else "")
        data["installers"]["k3s"] = installer
    else:  # k3s-recorded
        if not re.fullmatch(r"[0-9a-f]{40}", args.commit) or not re.fullmatch(r"[0-9a-f]{64}", args.sha256):
            raise SystemExit("--commit needs a full 40-hex commit and --sha256 a 64-hex digest")
        data["installers"]["k3s"] = {
            "url": RAW.format(repository="k3s-io/k3s", commit=args.commit),
            "sha256": args.sha256,
            "repository": "k3s-io/k3s",
            "commit": args.commit,
            "path": "install.sh",
            "checksum_from": args.note,
        }
    return data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["rke2", "k3s", "k3s-recorded"])
    parser.add_argument("git_dir", nargs="?")
    parser.add_argument("--commit")
    parser.add_argument("--sha256")
    parser.add_argument("--note", default="")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.what in ("rke2", "k3s") and not args.git_dir:
        parser.error(f"{args.what} needs a git directory")
    current = json.loads(DATA.read_text()) if DATA.exists() else {"installers": {}, "releases": {}}
    new = update(current, args)
    text = json.dumps(new, indent=2, sort_keys=True) + "\n"
    if args.check:
        if DATA.read_text() != text:
            sys.stderr.write(f"{DATA.relative_to(REPO_ROOT)} differs from what the snapshot gives\n")
            return 1
        return 0
    DATA.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
