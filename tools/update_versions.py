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

    # K3s releases: the newest Kubernetes patch of each supported minor that k3s merged
    # ("Update to v1.X.Y" commits), as the +k3s1 release of it
    python tools/update_versions.py k3s-releases <k3s git dir>

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
# k3s's commit that moves a release branch to a Kubernetes patch: "Update to v1.34.8 (#14049)",
# "[release-1.34] Update to v1.34.6-k3s1 and Go 1.24.13 (#13834)".
# Kubernetes patches come monthly: a branch with no update for two months is not current.
CURRENT_BRANCH_DAYS = 60
K3S_KUBERNETES_UPDATE = re.compile(r"^(?:\[[\w.-]+\] )?Update to v1\.(\d+)\.(\d+)(?:-k3s\d+)?(?:\s|$)")


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


def newest_k3s_releases(git_dir: str) -> dict[str, dict[str, str]]:
    """minor -> the +k3s1 release of the newest Kubernetes patch k3s merged, with its commit.

    K3s release tags are not in the snapshots this machine can fetch (k3s-io/k3s is over the
    size limit; the fork that carries its commits has none of its tags); the commit that
    updates a branch to a Kubernetes patch is, and each is released as v1.X.Y+k3s1 (a
    re-release adds +k3s2, and +k3s1 stays)."""
    newest: dict[int, tuple[int, str, str, str]] = {}
    log = git(git_dir, "log", "--all", "--format=%H%x09%cs%x09%s").decode()
    for line in log.splitlines():
        commit, date, subject = line.split("\t", 2)
        match = K3S_KUBERNETES_UPDATE.match(subject)
        if not match:
            continue
        minor, patch = int(match.group(1)), int(match.group(2))
        if minor in SUPPORTED_MINORS and (minor not in newest or patch > newest[minor][0]):
            newest[minor] = (patch, commit, date, subject)
    # A branch whose last update is long before the snapshot's newest one is a branch the
    # snapshot stopped carrying (or k3s stopped releasing): its "newest" would be stale.
    latest = max((date for _, _, date, _ in newest.values()), default="")
    current = {minor: entry for minor, entry in newest.items() if _days_between(entry[2], latest) <= CURRENT_BRANCH_DAYS}
    return {f"1.{minor}": {"release": f"v1.{minor}.{patch}+k3s1", "commit": commit, "date": date, "subject": subject}
            for minor, (patch, commit, date, subject) in sorted(current.items())}


def _days_between(earlier: str, later: str) -> int:
    from datetime import date

    return (date.fromisoformat(later) - date.fromisoformat(earlier)).days


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
    elif args.what == "k3s-releases":
        found = newest_k3s_releases(args.git_dir)
        data["releases"]["k3s"] = {
            "newest_per_minor": {minor: entry["release"] for minor, entry in found.items()},
            "commits": {minor: {k: entry[k] for k in ("commit", "date", "subject")} for minor, entry in found.items()},
            "source": {"repository": "k3s-io/k3s", "snapshot": "a git snapshot carrying k3s-io/k3s's commits",
                       "how": "newest 'Update to v1.X.Y' commit of each minor, released as v1.X.Y+k3s1"},
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
    parser.add_argument("what", choices=["rke2", "k3s", "k3s-releases", "k3s-recorded"])
    parser.add_argument("git_dir", nargs="?")
    parser.add_argument("--commit")
    parser.add_argument("--sha256")
    parser.add_argument("--note", default="")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.what in ("rke2", "k3s", "k3s-releases") and not args.git_dir:
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
