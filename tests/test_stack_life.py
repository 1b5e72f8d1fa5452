"""The life of a stack, from the previous release on: each shipped stack shape as v0.1.0
(e5b208f, the last landed revision) created it, taken through this release and then a
year of routine changes, one `pulumi up` each, every one planned by the offline engine
from the state the previous step left and rehearsed on ONE model of the running cluster
(offline/cluster_model.py, offline/upgrade_model.py) carried from step to step:

  this release → Kubernetes patch → Kubernetes minor → Rancher minor → grow → rotate
  every server → shrink back

At no step may a plan collide, be refused, or replace a server, datastore or bucket it
should not; at no moment may etcd lose quorum or Rancher lose its last Ready pod; at the
end the cluster is exactly the stack's servers, all at the last version, with no dead
member, and the stack's version record says what they run.

Stack shapes: K3s behind an NLB (dev), RKE2 behind an NLB (prod), RKE2 behind NGINX L7
(staging)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from offline.cluster_model import Cluster, cluster_for, is_server, rehearse
from offline.plan import RDS_INSTANCE, SERVER_INSTANCE
from offline.runner import run_stack, stack_config
from test_lifecycle import PREVIOUS_RELEASE, assert_routine, plan

RECORD = "pulumi-python:dynamic/rancher-ha:ClusterVersions"
# shape -> (stack, etcd, grown server count)
SHAPES = {"k3s-nlb": ("dev", False, 3), "rke2-nlb": ("prod", True, 5), "rke2-nginx": ("staging", True, 5)}


@pytest.fixture(scope="module")
def previous_release_states():
    from tools.plan import base_states

    olds, errors = base_states(PREVIOUS_RELEASE, sorted({stack for stack, _, _ in SHAPES.values()}))
    assert errors == {}, errors
    return olds


@dataclass
class Life:
    """One stack's life: the cluster model and the state each `pulumi up` leaves."""

    stack: str
    cluster: Cluster
    state: object
    clock: float = 0.0
    config: dict = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def up(self, what: str, edits: dict | None = None, replace: tuple[str, ...] = ()) -> object:
        self.config.update(edits or {})
        new = run_stack(self.stack, overrides=dict(self.config))
        urns = [r.urn for r in new.registrations if r.name in replace]
        p = plan(self.state, new, replace=urns)
        assert p.errors == [], (what, p.errors)
        assert p.collisions == [], (what, [c.describe() for c in p.collisions])
        stateful = [f"{s.op} {s.name}" for s in p.steps
                    if (s.type == RDS_INSTANCE or s.type.startswith("aws:s3/bucket")) and s.op in ("replace", "delete")]
        assert stateful == [], (what, stateful)
        servers_replaced = sorted(s.name for s in p.steps if s.type == SERVER_INSTANCE and is_server(s) and s.op == "replace")
        assert servers_replaced == sorted(replace), (what, servers_replaced)
        result = rehearse(p, new, self.cluster, start=self.clock)
        assert result.violations == [], "\n".join([what, *map(str, result.violations), *result.log])
        assert result.seconds_without_quorum == 0 and result.seconds_without_rancher == 0 and not result.broken_after, what
        self.clock += result.duration
        self.log.append(f"{what}: {result.duration:.0f} s")
        self.state = new
        return p


def _bump(version: str, minor: bool) -> str:
    from settings.versions import KUBERNETES_VERSION_PATTERN

    minor_number, patch, flavour, _ = KUBERNETES_VERSION_PATTERN.match(version).groups()
    if minor:
        return f"v1.{int(minor_number) + 1}.0+{flavour}1"
    return f"v1.{minor_number}.{int(patch) + 1}+{flavour}1"


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_stack_of_the_previous_release_lives_through_a_year_of_changes(previous_release_states, shape):
    stack, etcd, grown = SHAPES[shape]
    old = previous_release_states[stack]
    life = Life(stack, cluster_for(old, etcd=etcd), old)
    config = stack_config(stack)
    servers = int(config.get("rancher-ha:serverCount", 2 if not etcd else 3))
    version = config["rancher-ha:kubernetesVersion"]

    # 1. This release, settings unchanged: a routine update.
    assert_routine(life.up("this release"))
    # 2-3. A Kubernetes patch, then the next minor (Rancher 2.14 supports 1.33-1.35).
    patch, minor = _bump(version, minor=False), _bump(version, minor=True)
    life.up("kubernetes patch", {"rancher-ha:kubernetesVersion": patch})
    life.up("kubernetes minor", {"rancher-ha:kubernetesVersion": minor})
    # 4. Rancher's next minor (2.15 supports 1.34-1.36; the cluster now runs 1.35).
    life.up("rancher minor", {"rancher-ha:rancherVersion": "2.15.0"})
    # 5. Grow.
    life.up("grow", {"rancher-ha:serverCount": grown})
    # 6. Rotate every server (a new AMI): one `pulumi up --replace` each.
    for index in range(grown):
        life.up(f"rotate rancher-server-{index}", replace=(f"rancher-server-{index}",))
    # 7. Shrink back.
    life.up("shrink", {"rancher-ha:serverCount": servers})

    live = [m for m in life.cluster.machines if m.running]
    assert len(live) == servers, life.log
    assert all(m.ready and not m.cordoned and m.version == minor for m in live), [(m.key, m.version) for m in live]
    assert all(m.generation == 1 for m in live), "every server was rotated"
    assert not [m for m in life.cluster.machines if m.node and not m.running]
    if etcd:
        assert sorted(m.key for m in life.cluster.members) == sorted(m.key for m in live)
    (record,) = life.state.of_type(RECORD)
    assert record.inputs["versions"]["kubernetesVersion"] == minor
    assert record.inputs["versions"]["rancherVersion"] == "2.15.0"
