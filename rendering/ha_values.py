"""Helm values that keep cert-manager and Rancher available when a server node goes away.

Pure functions over the server count; the keys were read from the vendored charts
(reference/charts/) and are proved with `helm template` in tests/test_charts_real.py.
They are meant to be deep-merged into `cert_manager_values(...)` / `rancher_values(...)`
of rendering/rancher_values.py (no key overlaps with what those produce today).

cert-manager v1.19.2 (reference/charts/cert-manager-v1.19.2):
- `replicaCount`, `webhook.replicaCount`, `cainjector.replicaCount` (values.yaml; default
  1 each: "in production set this to 2 or 3"). The controller and cainjector elect a
  leader, so a second replica is a warm standby; the webhook serves every admission
  request for cert-manager resources, so it gets one replica per node up to 3.
- `podDisruptionBudget`, `webhook.podDisruptionBudget`, `cainjector.podDisruptionBudget`
  (templates/poddisruptionbudget.yaml, webhook-/cainjector-poddisruptionbudget.yaml):
  `enabled: true` renders a policy/v1 PDB; `maxUnavailable: 1` lets a drain move one pod
  at a time whatever the replica count (the chart's default is `minAvailable: 1`).
- `topologySpreadConstraints` for each component (templates/*deployment.yaml render them
  verbatim). The selector uses the pod labels the chart sets on every component:
  `app.kubernetes.io/instance: <release>` and `app.kubernetes.io/component:
  controller|webhook|cainjector`. `whenUnsatisfiable: ScheduleAnyway` keeps the spread
  soft: with 2 nodes and 2 replicas a hard rule would block the rolling update's surge
  pod (the chart's Deployments use the default 25 % surge / 25 % unavailable, i.e. 1/0
  for 2 replicas). `matchLabelKeys: [pod-template-hash]` counts only pods of the same
  ReplicaSet, so old pods draining during a rollout do not skew the spread
  (feature gate MatchLabelKeysInPodTopologySpread: beta and on by default since
  Kubernetes 1.27; the field is in the 1.34 schema the tests validate against).
- 1 server: {} (nothing to spread over; chart defaults).

Rancher 2.14.4 (reference/charts/rancher-2.14.4):
- `replicas` is set by rancher_values already (min(3, servers) is asserted there).
- `antiAffinity` (values.yaml: `preferred` default, or `required`) and `topologyKey`
  (default kubernetes.io/hostname) drive the Deployment's podAntiAffinity on the
  `app: rancher` label (templates/deployment.yaml). With replicas <= nodes, `required`
  guarantees one Rancher pod per node; the chart's rolling update uses maxUnavailable 1
  for replicas > 1, so an update still progresses when every node already runs a pod.
- `priorityClassName` (default rancher-critical; templates/priorityClass.yaml always
  creates a PriorityClass of exactly that name, so any other value would point at a
  class that does not exist): pinned to it.
- The chart has no PodDisruptionBudget; it renders `extraObjects` with `tpl`
  (templates/extra-manifests.yaml), so a policy/v1 PDB selecting `app: rancher` with
  maxUnavailable 1 goes there. `metadata.namespace` is left out: Helm installs it in the
  release namespace (cattle-system).
- 1 replica: {} (chart defaults).
"""

from __future__ import annotations

from typing import Any, TypeGuard

CERT_MANAGER_RELEASE = "cert-manager"
RANCHER_RELEASE = "rancher"
HOSTNAME_TOPOLOGY_KEY = "kubernetes.io/hostname"
RANCHER_PRIORITY_CLASS = "rancher-critical"  # the only class the chart creates


# A chart's values: a YAML tree (keys are text); a leaf may be a Pulumi Output.
HelmValues = dict[str, Any]


def is_helm_values(value: object) -> TypeGuard[HelmValues]:
    """A mapping inside values (YAML mappings of values have text keys)."""
    return isinstance(value, dict)


def deep_merge(base: HelmValues, extra: HelmValues) -> HelmValues:
    """Helm's merge: mappings merge key by key, anything else in `extra` replaces."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        merged[key] = deep_merge(current, value) if is_helm_values(current) and is_helm_values(value) else value
    return merged


def _spread(release: str, component: str) -> list[dict[str, Any]]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": HOSTNAME_TOPOLOGY_KEY,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": release,
                    "app.kubernetes.io/component": component,
                }
            },
            "matchLabelKeys": ["pod-template-hash"],
        }
    ]


def cert_manager_ha_values(server_count: int, release: str = CERT_MANAGER_RELEASE) -> HelmValues:
    """cert-manager values for `server_count` server nodes ({} for a single node)."""
    if server_count < 2:
        return {}
    pdb = {"enabled": True, "maxUnavailable": 1}
    return {
        "replicaCount": 2,
        "podDisruptionBudget": dict(pdb),
        "topologySpreadConstraints": _spread(release, "controller"),
        "webhook": {
            "replicaCount": min(server_count, 3),
            "podDisruptionBudget": dict(pdb),
            "topologySpreadConstraints": _spread(release, "webhook"),
        },
        "cainjector": {
            "replicaCount": 2,
            "podDisruptionBudget": dict(pdb),
            "topologySpreadConstraints": _spread(release, "cainjector"),
        },
    }


def rancher_spread_values(replicas: int, release: str = RANCHER_RELEASE) -> HelmValues:
    """Rancher values spreading `replicas` pods over nodes and keeping them available."""
    if replicas < 2:
        return {}
    return {
        "antiAffinity": "required",
        "topologyKey": HOSTNAME_TOPOLOGY_KEY,
        "priorityClassName": RANCHER_PRIORITY_CLASS,
        "extraObjects": [
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": release, "labels": {"app": release}},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": release}}},
            }
        ],
    }
