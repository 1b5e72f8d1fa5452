"""In-place Kubernetes upgrades: editing `kubernetesVersion` upgrades the running servers.

Running servers ignore user data, so the new version reaches them through the upstream
mechanism: system-upgrade-controller (SUC), installed from the vendored release manifests
(reference/upstream/system-upgrade-controller/<tag>/), applies one `upgrade.cattle.io/v1`
Plan with the distribution's upgrade image (rancher/k3s-upgrade, rancher/rke2-upgrade) to
the server nodes, one at a time: cordon, replace the binary and restart the service, wait
for the node, uncordon. With one server down at a time, 3 etcd members keep quorum and
Rancher (one replica per server, a PodDisruptionBudget) keeps ready replicas; K3s servers
share the external datastore.

The wait (a dynamic resource, components/providers/api_gate_provider.py) makes `up`
finish only when every server is a Ready, schedulable node running the new version that
the plan has finished on; Rancher's release waits for it (app.py).

Exactly one owner of the version: Rancher manages its own local K3s/RKE2 cluster's version
too unless told not to (rendering/rancher_values.py sets
CATTLE_IMPORTED_CLUSTER_VERSION_MANAGEMENT=false). Downgrades, minor skips and unsupported
Rancher/Kubernetes pairs are refused in preview by the identity lock
(components/hostname_lock.py, `versions`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi.dynamic import Resource

from .api_gate import SECRET_PROBE_OUTPUTS, ApiGateArgs, probe_inputs
from .naming import child
from .providers import api_gate_provider as implementation
from .providers.shipping import loader_expression, source_of

SUC_TAG = "v0.20.1"
SUC_DIRECTORY = Path(__file__).resolve().parents[1] / "reference" / "upstream" / "system-upgrade-controller" / SUC_TAG
SUC_NAMESPACE = "system-upgrade"  # kustomization.yaml `namespace:`
SUC_IMAGE = "rancher/system-upgrade-controller"
SUC_SERVICE_ACCOUNT = "system-upgrade"
UPGRADE_IMAGES = {"k3s": "rancher/k3s-upgrade", "rke2": "rancher/rke2-upgrade"}
NAMESPACED_KINDS = {"ServiceAccount", "ConfigMap", "Deployment", "Role", "RoleBinding"}
# SUC's job deadline per node (SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS in the vendored
# ConfigMap) plus the node's restart and Ready: the bound on one server's upgrade.
SECONDS_PER_SERVER = 900 + 300


def controller_objects(tag: str = SUC_TAG) -> list[dict]:
    """The SUC release manifests of `tag`: the CRD, then what `kustomize build` makes of
    kustomization.yaml with the image set to the tag (see the SOURCE file beside them)."""
    directory = SUC_DIRECTORY.parent / tag
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects = [doc for doc in yaml.safe_load_all((directory / "crd.yaml").read_text()) if doc]
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((directory / Path(resource).name).read_text()):
            if doc:
                objects.append(_kustomize(doc, kustomization["namespace"], tag))
    return objects


def _kustomize(doc: dict, namespace: str, tag: str) -> dict:
    doc = copy.deepcopy(doc)
    if doc["kind"] in NAMESPACED_KINDS:
        doc["metadata"]["namespace"] = namespace
    for subject in doc.get("subjects", []):
        if subject.get("kind") == "ServiceAccount":
            subject.setdefault("namespace", namespace)
    if doc["kind"] == "Deployment":
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["image"].split(":")[0] == SUC_IMAGE:
                container["image"] = f"{SUC_IMAGE}:{tag}"
    return doc


def server_plan_name(distribution: str) -> str:
    return f"{distribution}-server"


def server_plan(distribution: str, kubernetes_version: str) -> dict:
    """The Plan that upgrades every server node to `kubernetes_version`, one at a time."""
    return {
        "apiVersion": "upgrade.cattle.io/v1",
        "kind": "Plan",
        "metadata": {"name": server_plan_name(distribution), "namespace": SUC_NAMESPACE},
        "spec": {
            "version": kubernetes_version,
            "concurrency": 1,
            "cordon": True,
            "nodeSelector": {
                "matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "In", "values": ["true"]}]
            },
            "serviceAccountName": SUC_SERVICE_ACCOUNT,
            "tolerations": [
                {"key": "CriticalAddonsOnly", "operator": "Exists"},
                {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "node-role.kubernetes.io/etcd", "operator": "Exists", "effect": "NoExecute"},
            ],
            "upgrade": {"image": UPGRADE_IMAGES[distribution]},
        },
    }


class ShippedKubernetesUpgradeWaitProvider(implementation.KubernetesUpgradeWaitProvider):
    def __reduce__(self):
        return (eval, (loader_expression(source_of(implementation.__file__), "KubernetesUpgradeWaitProvider"),))


class KubernetesUpgradeWait(Resource, module="rancher-ha", name="KubernetesUpgradeWait"):
    runningVersion: pulumi.Output[str]

    def __init__(self, name: str, access: ApiGateArgs, plan_path: str, version: str, timeout_seconds: int,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ShippedKubernetesUpgradeWaitProvider(),
            name,
            {
                **probe_inputs(access),
                "planPath": plan_path,
                "version": version,
                "timeoutSeconds": timeout_seconds,
                "attempts": None,
                "runningVersion": None,
            },
            pulumi.ResourceOptions.merge(opts, SECRET_PROBE_OUTPUTS),
        )


@dataclass
class KubernetesUpgradesArgs:
    provider: k8s.Provider
    gate: pulumi.Resource
    access: ApiGateArgs  # how the gate reaches the API, and which servers it waits for
    distribution: str
    kubernetes_version: str
    server_count: int


class KubernetesUpgrades(pulumi.ComponentResource):
    wait: KubernetesUpgradeWait

    def __init__(self, name: str, args: KubernetesUpgradesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:upgrades:KubernetesUpgrades", name, None, opts)

        def in_cluster(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            # Like every in-cluster resource (components/rancher.py): after the gate, and
            # skipped by a destroy that takes the cluster with it.
            return child(self, provider=args.provider, depends_on=[args.gate, *extra], deleted_with=args.provider)

        # The Plan needs its CRD, namespace and service account, not the running controller
        # (it picks up existing plans when it starts): a new stack's Rancher does not wait
        # for the controller's rollout.
        plan_needs: list[pulumi.Resource] = []
        namespace: list[pulumi.Resource] = []
        # The Namespace first, so namespaced objects can wait for it.
        for doc in sorted(controller_objects(), key=lambda doc: doc["kind"] != "Namespace"):
            kind = doc["kind"]
            needs = namespace if "namespace" in doc["metadata"] else []
            resource = _object(f"{name}-{_kebab(kind)}-{doc['metadata']['name']}", doc, in_cluster(*needs))
            if kind == "Namespace":
                namespace.append(resource)
            if kind != "Deployment":
                plan_needs.append(resource)

        plan = server_plan(args.distribution, args.kubernetes_version)
        plan_resource = k8s.apiextensions.CustomResource(
            f"{name}-{plan['metadata']['name']}-plan",
            api_version=plan["apiVersion"],
            kind=plan["kind"],
            metadata=k8s.meta.v1.ObjectMetaArgs(**plan["metadata"]),
            spec=plan["spec"],
            opts=in_cluster(*plan_needs),
        )
        plan_path = f"/apis/upgrade.cattle.io/v1/namespaces/{SUC_NAMESPACE}/plans/{plan['metadata']['name']}"
        self.wait = KubernetesUpgradeWait(
            f"{name}-servers-upgraded",
            args.access,
            plan_path,
            args.kubernetes_version,
            timeout_seconds=SECONDS_PER_SERVER * args.server_count,
            opts=child(self, depends_on=[args.gate, plan_resource], deleted_with=args.provider),
        )
        self.register_outputs({"runningVersion": self.wait.runningVersion})


def _kebab(kind: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(kind))


def _object(resource_name: str, doc: dict, opts: pulumi.ResourceOptions) -> pulumi.Resource:
    """One vendored manifest object as its typed pulumi_kubernetes resource."""
    metadata = k8s.meta.v1.ObjectMetaArgs(**{_snake(k): v for k, v in doc["metadata"].items()})
    kind = doc["kind"]
    if kind == "Namespace":
        return k8s.core.v1.Namespace(resource_name, metadata=metadata, opts=opts)
    if kind == "ServiceAccount":
        return k8s.core.v1.ServiceAccount(resource_name, metadata=metadata, opts=opts)
    if kind == "ConfigMap":
        return k8s.core.v1.ConfigMap(resource_name, metadata=metadata, data=doc.get("data"), opts=opts)
    if kind == "Deployment":
        return k8s.apps.v1.Deployment(resource_name, metadata=metadata, spec=doc["spec"], opts=opts)
    if kind == "CustomResourceDefinition":
        return k8s.apiextensions.v1.CustomResourceDefinition(resource_name, metadata=metadata, spec=doc["spec"], opts=opts)
    if kind in ("ClusterRole", "Role"):
        cls = k8s.rbac.v1.ClusterRole if kind == "ClusterRole" else k8s.rbac.v1.Role
        return cls(resource_name, metadata=metadata, rules=doc.get("rules"), opts=opts)
    if kind in ("ClusterRoleBinding", "RoleBinding"):
        cls = k8s.rbac.v1.ClusterRoleBinding if kind == "ClusterRoleBinding" else k8s.rbac.v1.RoleBinding
        return cls(resource_name, metadata=metadata, role_ref=doc["roleRef"], subjects=doc.get("subjects"), opts=opts)
    raise ValueError(f"no resource type for vendored {kind} {doc['metadata']['name']}: add it to _object")


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)

