"""In-place Kubernetes upgrades: editing `kubernetesVersion` upgrades the running servers.

Running servers ignore user data, so the new version reaches them through the upstream
mechanism: system-upgrade-controller (SUC) applies one `upgrade.cattle.io/v1` Plan with the
distribution's upgrade image (rancher/k3s-upgrade, rancher/rke2-upgrade) to the server
nodes, one at a time: cordon, replace the binary and restart the service, wait for the
node, uncordon. With one server down at a time, 3 etcd members keep quorum and Rancher (one
replica per server, a PodDisruptionBudget) keeps ready replicas; K3s servers share the
external datastore.

SUC itself (its CRD; namespace, service account, RBAC, config map and deployment) is the
release's own manifests, fetched at deploy time from the GitHub release assets of the
pinned tag (SUC_TAG, `crd.yaml` and `system-upgrade-controller.yaml`: what the tag's
scripts/package-controller builds and .github/workflows/release.yml uploads), applied by
two `kubernetes:yaml/v2:ConfigFile`s. What this trusts: GitHub and the rancher org's
release assets at that tag (a tag names the files, not their bytes: a maintainer can
re-upload an asset); the program pins no checksum (the release workflow publishes
`sha256sum-<arch>.txt` beside them, on the same release, and ConfigFile cannot check
one). What the deployer needs: HTTPS egress to github.com (and its release-asset
redirect host) from the machine that runs `pulumi preview`/`up`: pulumi_kubernetes
registers a ConfigFile v2 as a remote component (`remote=True`), which the Kubernetes
provider plugin constructs on that machine, fetching an absolute URL there with Go's
`http.Get` (pulumi-kubernetes provider/pkg/provider/yaml/v2/yaml.go, read at commit
08f76d706b3f, not at the v4.34.2 tag). The Plan is the program's
own object, validated in tests against the Plan CRD's fields and types extracted from the
tag (reference/upstream/crds/suc-plan-v0.20.1.json).

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

from dataclasses import dataclass
from typing import Optional, TypedDict

import pulumi
import pulumi_kubernetes as k8s
from pulumi.dynamic import Resource

from .api_gate import SECRET_PROBE_OUTPUTS, ApiGateArgs, probe_inputs
from .naming import child
from .providers import api_gate_provider as implementation
from .providers.shipping import loader_expression, source_of

SUC_TAG = "v0.20.1"
SUC_RELEASE = f"https://github.com/rancher/system-upgrade-controller/releases/download/{SUC_TAG}"
SUC_CRD_URL = f"{SUC_RELEASE}/crd.yaml"
SUC_CONTROLLER_URL = f"{SUC_RELEASE}/system-upgrade-controller.yaml"
# The release manifest's namespace and service account (kustomization.yaml `namespace:`,
# manifests/system-upgrade-controller.yaml at the tag).
SUC_NAMESPACE = "system-upgrade"
SUC_SERVICE_ACCOUNT = "system-upgrade"
UPGRADE_IMAGES = {"k3s": "rancher/k3s-upgrade", "rke2": "rancher/rke2-upgrade"}
# The servers: the label K3s and RKE2 give every server node, `true`.
SERVER_LABEL = "node-role.kubernetes.io/control-plane"
# The image SUC itself runs its cordon/drain init containers with (the release ConfigMap's
# SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE at SUC_TAG, = pkg/upgrade/job/job.go defaultKubectlImage;
# reference/upstream/crds/suc-rbac-v0.20.1.json): no new image source. Its entrypoint is
# kubectl (SUC passes it `cordon <node>` as args only).
KUBECTL_IMAGE = "rancher/kubectl:v1.30.3"
# One attempt of the prepare's wait. A pod whose prepare gives up fails, and the Job retries
# it (backoffLimit 99) within its deadline (900 s), then fails: SUC records "Job ... failed
# on Node ..." on the Plan and creates a new Job after the failed one's TTL (900 s). Below
# the deadline, so an attempt that passes late still leaves the upgrade container time.
PREPARE_TIMEOUT_SECONDS = 600
# SUC's job deadline per node (SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS, 900 in the
# release's ConfigMap at the tag) plus the node's restart and Ready: one server's bound.
SECONDS_PER_SERVER = 900 + 300
# Listing the nodes once the gate has passed: seconds, unless the API path is broken.
VERSION_CHECK_TIMEOUT_SECONDS = 300


# Longer than a Node can look Ready after its kubelet died (offline/upgrade_model.py
# NOT_READY_SEEN_AFTER): a minute per server added to an upgrade.
POST_COMPLETE_DELAY = "60s"


def server_plan_name(distribution: str) -> str:
    return f"{distribution}-server"


class PlanMetadata(TypedDict):
    name: str
    namespace: str


class Plan(TypedDict):
    apiVersion: str
    kind: str
    metadata: PlanMetadata
    spec: dict[str, object]


def every_server_ready() -> dict[str, object]:
    """The Plan's prepare: SUC runs it as the first init container of each node's Job, before
    the cordon and the upgrade (pkg/upgrade/job/job.go at SUC_TAG). It waits until every
    server node is Ready, so a server is restarted only when no other one is down: neither
    one still coming back from its own upgrade (if SUC saw that Job complete as soon as its
    upgrade container exited, right after the SIGTERM), nor one lost or still joining. The
    Job runs as the Plan's service account, which the release's ClusterRole
    `system-upgrade-controller` lets get, list and watch nodes (tests/test_upgrades.py)."""
    return {
        "image": KUBECTL_IMAGE,
        "args": ["wait", "--for=condition=Ready", "node", "-l", f"{SERVER_LABEL}=true", f"--timeout={PREPARE_TIMEOUT_SECONDS}s"],
    }


def server_plan(distribution: str, kubernetes_version: str) -> Plan:
    """The Plan that upgrades every server node to `kubernetes_version`, one at a time, each
    only once every server is Ready."""
    return {
        "apiVersion": "upgrade.cattle.io/v1",
        "kind": "Plan",
        "metadata": {"name": server_plan_name(distribution), "namespace": SUC_NAMESPACE},
        "spec": {
            "version": kubernetes_version,
            "concurrency": 1,
            "cordon": True,
            "nodeSelector": {"matchExpressions": [{"key": SERVER_LABEL, "operator": "In", "values": ["true"]}]},
            "prepare": every_server_ready(),
            # The next server's Job only after this: a restarting server's kubelet dies without
            # a word, so its Node stays Ready until the node lifecycle controller's grace
            # period (50 s, plus a 5 s monitor period) has passed; by then it is back or seen
            # NotReady, and the prepare above waits for it (offline/upgrade_model.py).
            "postCompleteDelay": POST_COMPLETE_DELAY,
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


class ShippedKubernetesVersionCheckProvider(implementation.KubernetesVersionCheckProvider):
    def __reduce__(self):
        return (eval, (loader_expression(source_of(implementation.__file__), "KubernetesVersionCheckProvider"),))


class KubernetesVersionCheck(Resource, module="rancher-ha", name="KubernetesVersionCheck"):
    """Refuses, before the upgrade Plan exists or changes, a version older than any node runs."""

    def __init__(self, name: str, access: ApiGateArgs, version: str, timeout_seconds: int,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ShippedKubernetesVersionCheckProvider(),
            name,
            {**probe_inputs(access), "version": version, "timeoutSeconds": timeout_seconds, "attempts": None},
            pulumi.ResourceOptions.merge(opts, SECRET_PROBE_OUTPUTS),
        )


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

        # The CRD first, so the controller's informers find it; the Plan after the
        # controller's manifest (its namespace and service account). A ConfigFile's
        # registration returns once its objects are applied (and awaited), so these
        # depends_on are waits on the objects, not only on the fetch.
        crd = k8s.yaml.v2.ConfigFile(f"{name}-suc-crd", file=SUC_CRD_URL, opts=in_cluster())
        controller = k8s.yaml.v2.ConfigFile(f"{name}-suc-controller", file=SUC_CONTROLLER_URL, opts=in_cluster(crd))

        # Nothing may tell the controller to install an older release than a node runs (a
        # hand-applied upgrade, or an edit back): checked before the Plan exists or changes.
        no_server_ahead = KubernetesVersionCheck(
            f"{name}-no-server-ahead",
            args.access,
            args.kubernetes_version,
            timeout_seconds=VERSION_CHECK_TIMEOUT_SECONDS,
            opts=child(self, depends_on=[args.gate], deleted_with=args.provider),
        )
        plan = server_plan(args.distribution, args.kubernetes_version)
        plan_resource = k8s.apiextensions.CustomResource(
            f"{name}-{plan['metadata']['name']}-plan",
            api_version=plan["apiVersion"],
            kind=plan["kind"],
            metadata=k8s.meta.v1.ObjectMetaArgs(**plan["metadata"]),
            spec=plan["spec"],
            opts=in_cluster(crd, controller, no_server_ahead),
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

