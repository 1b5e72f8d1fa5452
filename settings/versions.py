"""Version facts: which Kubernetes minors each Rancher minor supports, and how
K3s/RKE2 release strings look.

The table mirrors the Rancher support matrix and the chart's own `kubeVersion`
constraint, so a stack that Rancher would refuse to install is refused here first,
before any EC2 instance exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# Rancher minor -> (lowest, highest) supported Kubernetes minor, inclusive.
RANCHER_KUBERNETES_SUPPORT: dict[tuple[int, int], tuple[int, int]] = {
    (2, 12): (31, 33),
    (2, 13): (32, 34),
    (2, 14): (33, 35),
    (2, 15): (34, 36),
}

RANCHER_VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# K3s releases look like v1.34.1+k3s1, RKE2 releases like v1.34.1+rke2r1.
KUBERNETES_VERSION_PATTERN = re.compile(r"^v1\.(\d+)\.(\d+)\+(k3s|rke2r)(\d+)$")
DISTRIBUTION_SUFFIX = {"k3s": "k3s", "rke2": "rke2r"}

# Pinned installers and the newest releases verified from upstream snapshots, each with
# its source and commit (written by tools/update_versions.py).
INSTALLERS_DATA = Path(__file__).resolve().parents[1] / "reference" / "upstream" / "installers" / "installers.json"
_PINS = json.loads(INSTALLERS_DATA.read_text())


@dataclass(frozen=True)
class Installer:
    """An install script at a fixed upstream commit, with the sha256 of its bytes."""

    url: str
    sha256: str


INSTALLERS = {dist: Installer(url=pin["url"], sha256=pin["sha256"]) for dist, pin in _PINS["installers"].items()}
# The newest RKE2 patch of each supported minor (rancher/rke2 tags), and the newest
# Kubernetes patch k3s merged on each current release branch, as its +k3s1 release (no K3s
# tag list can be fetched here: reference/upstream/installers/README.md).
NEWEST_RKE2_RELEASES: dict[str, str] = _PINS["releases"]["rke2"]["newest_per_minor"]
NEWEST_K3S_RELEASES: dict[str, str] = _PINS["releases"]["k3s"]["newest_per_minor"]
EXAMPLE_KUBERNETES_VERSION = {"k3s": NEWEST_K3S_RELEASES["1.34"], "rke2": NEWEST_RKE2_RELEASES["1.34"]}

# Where Rancher publishes the chart (Rancher's install docs). Every tag goes to `latest`;
# only some are promoted to `stable`, the one Rancher recommends for production; Rancher
# Prime subscribers use the Prime repository. A pinned version must exist in the one
# named: `helm search repo rancher-stable/rancher --versions` (not checkable offline).
RANCHER_CHART_REPOSITORIES = {
    "stable": "https://releases.rancher.com/server-charts/stable",
    "latest": "https://releases.rancher.com/server-charts/latest",
    "prime": "https://charts.rancher.com/server-charts/prime",
}

# RKE2 ships ingress-nginx up to v1.35 and Traefik from v1.36 on.
RKE2_FIRST_TRAEFIK_MINOR = 36


@dataclass(frozen=True)
class KubernetesRelease:
    minor: int
    patch: int
    flavour: str

    @property
    def distribution(self) -> str:
        return "k3s" if self.flavour == "k3s" else "rke2"


def parse_rancher_version(value: str) -> tuple[int, int, int]:
    match = RANCHER_VERSION_PATTERN.match(value)
    if not match:
        raise ValueError(
            "is not a Rancher chart version. Fix: use the chart version without a 'v', "
            "e.g. '2.14.4'"
        )
    major, minor, patch = (int(part) for part in match.groups())
    if (major, minor) not in RANCHER_KUBERNETES_SUPPORT:
        known = ", ".join(f"{a}.{b}" for a, b in RANCHER_KUBERNETES_SUPPORT)
        raise ValueError(
            f"Rancher {major}.{minor} is not a supported minor. Fix: choose a release "
            f"of {known}"
        )
    return major, minor, patch


def parse_kubernetes_version(value: str) -> KubernetesRelease:
    match = KUBERNETES_VERSION_PATTERN.match(value)
    if not match:
        raise ValueError(
            "is not a K3s or RKE2 release. Fix: use the exact release tag, e.g. "
            f"'{EXAMPLE_KUBERNETES_VERSION['k3s']}' or "
            f"'{EXAMPLE_KUBERNETES_VERSION['rke2']}'"
        )
    minor, patch, flavour, _ = match.groups()
    return KubernetesRelease(minor=int(minor), patch=int(patch), flavour=flavour)


def supported_kubernetes_range(rancher_version: str) -> tuple[int, int]:
    major, minor, _ = parse_rancher_version(rancher_version)
    return RANCHER_KUBERNETES_SUPPORT[(major, minor)]


def rke2_ingress_controller(kubernetes_minor: int) -> str:
    return "traefik" if kubernetes_minor >= RKE2_FIRST_TRAEFIK_MINOR else "ingress-nginx"


def reference_chart_tag(rancher_version: str) -> str:
    """The folder name under reference/rancher-chart for this version."""
    return f"v{rancher_version}"


# Rancher minor -> (rancher-backup chart version in https://charts.rancher.io, the
# rancher/backup-restore-operator tag it packages). Read in rancher/charts
# charts/rancher-backup/<version>/Chart.yaml (commits cdb1fb1f922c and b87054da9443):
# catalog.cattle.io/rancher-version '>= 2.14.0-0 < 2.15.0-0' and '>= 2.15.0-0 < 2.16.0-0',
# appVersion v10.0.8 and v11.0.0. Other minors: set rancherBackupChartVersion.
RANCHER_BACKUP_CHARTS: dict[tuple[int, int], tuple[str, str]] = {
    (2, 14): ("109.0.7+up10.0.8", "v10.0.8"),
    (2, 15): ("110.0.0+up11.0.0", "v11.0.0"),
}


# The Kubernetes minors each pinned chart declares itself for (inclusive), read in the same
# Chart.yaml: catalog.cattle.io/kube-version '>= 1.33.0-0 < 1.36.0-0' in both (the operator's
# charts/rancher-backup/Chart.yaml at v10.0.8 and v11.0.0 says the same; v11.0.1 widened it
# to '< 1.37.0-0'). Rancher's Apps page offers no chart outside it; helm only enforces
# `kubeVersion` (no upper bound; v11.0.0's is '>= 1.34.0-0', which Rancher 2.15 requires
# anyway), so the settings refuse the rest.
RANCHER_BACKUP_KUBERNETES: dict[str, tuple[int, int]] = {
    "109.0.7+up10.0.8": (33, 35),
    "110.0.0+up11.0.0": (33, 35),
}


def default_backup_chart_version(rancher_version: str) -> str | None:
    major, minor, _ = parse_rancher_version(rancher_version)
    entry = RANCHER_BACKUP_CHARTS.get((major, minor))
    return entry[0] if entry else None
