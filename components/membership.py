"""Each server's membership of the cluster, as a resource whose delete takes the server out
of the cluster (drain, etcd member, Node) before its instance terminates.

Why a dynamic resource and not a Pulumi resource hook (`pulumi.ResourceHook`, in the
pinned SDK 3.272; the engine runs hooks since CLI 3.182.0, below our requiredPulumiVersion
3.226): a `before_delete` hook on each instance would run right before that instance's
delete, and the engine deletes independent instances in the same round, in parallel, so a
shrink would drain several servers at once; hooks add no ordering. Delete hooks must also
be named hooks the program registers on every run, and `pulumi destroy` then refuses to
run without `--run-program` (engine 3.182.0, "Prevent destroy without running the program
if any resource have delete hooks"); the hook would need the admin credentials as plain
values inside the program. A dynamic resource is a node in the dependency graph: the
chain below orders the removals, its delete is stored with its inputs in the state
(shipping.py), and destroy skips it (`deleted_with`).

Ordering, by the engine's own rules (offline/destroy.py):
- a member depends on its instance, so it is deleted BEFORE the instance;
- member N depends on member N+1, so deletes run ONE AT A TIME (N, then N+1, ...): the
  engine deletes dependents before their dependencies, and independent ones in parallel;
- members depend on the readiness gate, so a new member (a replacement server) is created
  only once its node is Ready: the new server joins before the old one leaves;
- `deleted_with` the cluster's Kubernetes provider: `pulumi destroy` takes the whole
  cluster and skips the drains.

The leaving server's load-balancer targets are NOT ordered against its member. Deregistering
them before the drain would need the target-group attachment to depend on the member (a
dependent is deleted first); the member is created after the gate, and the gate waits for
the API through the load balancer, i.e. for the targets: the attachment would then be
created after the gate that waits for it (on a first deploy, no target at all). The member's
delete cannot deregister them itself either: it holds Kubernetes credentials only. So the
attachment is deleted in parallel with the member (both depend only on the instance), and
the removal survives the leaving server answering badly instead: every call opens a new
connection, which the NLB hashes to any registered target, and NGINX balances over its
upstream list, and a call that goes unanswered or gets a 5xx/429 is retried until the
removal's deadline (cluster_member_provider.transient), so it reaches a remaining server.
Neither balancer's checks take the leaving server out by themselves: the NLB's 6443 check is
the supervisor's /ping, which keeps answering after the member is gone, and NGINX's passive
check (max_fails) only counts refused connections, while its upstream list comes from an
SSM parameter its timer re-reads (NGINX_REFRESH_INTERVAL). The NLB target's deregistration
(the attachment's delete) does, for new connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
from pulumi.dynamic import Resource

from .naming import child
from .providers import api_gate_provider as gate_implementation
from .providers import cluster_member_provider as implementation
from .providers.shipping import loader_expression, source_of

# A drain waits for evictions that PodDisruptionBudgets hold back (Rancher's new pod must be
# Ready first), then the etcd removal and the Node's finalizer: generous, bounded.
MEMBER_REMOVAL_TIMEOUT_SECONDS = 900
# The distribution's program name: the etcd annotations are etcd.<program>.cattle.io/...
PROGRAM = {"k3s": "k3s", "rke2": "rke2"}


class ShippedClusterMemberProvider(implementation.ClusterMemberProvider):
    def __reduce__(self):
        return (
            eval,
            (loader_expression(source_of(implementation.__file__), "ClusterMemberProvider",
                               preludes=[source_of(gate_implementation.__file__)]),),
        )


class ClusterMember(Resource, module="rancher-ha", name="ClusterMember"):
    def __init__(self, name: str, props: pulumi.Inputs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            ShippedClusterMemberProvider(),
            name,
            props,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["clientKeyPem"])),
        )


@dataclass
class ClusterMembershipArgs:
    distribution: str
    instances: Sequence[pulumi.Resource]  # the server instances, by index
    instance_ids: Sequence[pulumi.Input[str]]
    addresses: Sequence[pulumi.Input[str]]  # their private addresses (the Node's InternalIP)
    api_url: pulumi.Input[str]  # https://<load balancer address>:6443
    server_name: str  # the name the API certificate is checked for
    ca_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str]
    timeout_seconds: int
    gate: pulumi.Resource  # the readiness gate: a member is created once its node is Ready
    provider: pulumi.Resource  # the Kubernetes provider: destroy skips the drains (deleted_with)


class ClusterMembership(pulumi.ComponentResource):
    members: list[ClusterMember]

    def __init__(self, name: str, args: ClusterMembershipArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:cluster:ClusterMembership", name, None, opts)
        self.members = []
        following: Optional[ClusterMember] = None
        # From the last server down, so member N can depend on member N+1.
        for index in reversed(range(len(args.instances))):
            member = ClusterMember(
                f"{args.instances[index]._name}-member",
                {
                    "instanceId": args.instance_ids[index],
                    "address": args.addresses[index],
                    "program": PROGRAM[args.distribution],
                    "url": args.api_url,
                    "serverName": args.server_name,
                    "caPem": args.ca_pem,
                    "clientCertPem": args.client_cert_pem,
                    "clientKeyPem": pulumi.Output.secret(args.client_key_pem),
                    "timeoutSeconds": args.timeout_seconds,
                },
                opts=child(
                    self,
                    depends_on=[args.instances[index], args.gate] + ([following] if following else []),
                    deleted_with=args.provider,
                ),
            )
            self.members.insert(0, member)
            following = member
        self.register_outputs({})
