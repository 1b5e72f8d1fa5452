"""Restores and their runbook (docs/disaster-recovery.md).

The RKE2 restore's boot is rehearsed in tests/test_boot_script.py (`restore` tests); this
file covers what the program registers for a restore, what `pulumi up` would do with it
(the offline plan, with the identity lock's check as the engine runs it), and that every
runbook link the program prints leads to a section that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import RKE2, cached_run
from offline.plan import RDS_INSTANCE, SERVER_INSTANCE, plan_update

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "docs" / "disaster-recovery.md"
SNAPSHOT = "rds:datastore-mysql-1a2b3c4-2026-12-01-03-10"
SOURCE = "datastore-mysql-1a2b3c4"
PARAMETER = "aws:ssm/parameter:Parameter"


def plan(old, new, **options):
    from tools.plan import program_dynamic_diffs

    return plan_update(old, new, dynamic_diffs=program_dynamic_diffs(), **options)


def rds(run):
    (instance,) = run.of_type(RDS_INSTANCE)
    return instance.inputs


def assert_only_servers_replaced(p, servers) -> None:
    """`--replace` of every server: the servers, their target registrations, their
    ClusterMembers (the old one drains and removes the old server) and the gate (which
    waits for them again); nothing stateful."""
    names = {urn.rsplit("::", 1)[-1] for urn in servers}
    replaced = [s for s in p.steps if s.op == "replace"]
    assert {s.name for s in replaced if s.type == SERVER_INSTANCE} == names
    others = {s.type.rsplit(":", 1)[-1] for s in replaced if s.type != SERVER_INSTANCE}
    assert others <= {"TargetGroupAttachment", "ApiGate", "ClusterMember"}, others
    assert not [s for s in p.steps if s.type == RDS_INSTANCE and s.op not in ("same", "update")]


# --------------------------------------------------------------- K3s datastore restore
def test_the_datastore_is_created_from_the_snapshot_named():
    inputs = rds(cached_run({"rancher-ha:dbRestoreFromSnapshot": SNAPSHOT}))
    assert inputs["snapshotIdentifier"] == SNAPSHOT
    assert "restoreToPointInTime" not in inputs
    # The DSN's user and database are the ones every stack's datastore has, and the
    # stack's own password is set on the restored instance (the provider's ModifyDBInstance).
    assert inputs["username"] == "k3s" and inputs["dbName"] == "k3s" and inputs["password"]
    assert "snapshotIdentifier" not in rds(cached_run({}))


@pytest.mark.parametrize("time, expected", [
    ("latest", {"sourceDbInstanceIdentifier": SOURCE, "useLatestRestorableTime": True}),
    ("2026-12-07T05:40:00Z", {"sourceDbInstanceIdentifier": SOURCE, "restoreTime": "2026-12-07T05:40:00Z"}),
])
def test_the_datastore_is_created_at_the_point_in_time_named(time, expected):
    inputs = rds(cached_run({"rancher-ha:dbRestoreSourceInstance": SOURCE, "rancher-ha:dbRestoreTime": time}))
    assert inputs["restoreToPointInTime"] == expected
    assert "snapshotIdentifier" not in inputs


def test_a_restore_on_a_deployed_stack_is_refused_in_preview_with_the_runbook():
    """snapshotIdentifier is force-new: without the confirmation the lock refuses it
    before the engine diffs anything."""
    p = plan(cached_run({}), cached_run({"rancher-ha:dbRestoreFromSnapshot": SNAPSHOT}))
    assert p.refused and p.steps == []
    (error,) = [e for e in p.errors if "datastoreSource" in e]
    assert "'new'" in error and SNAPSHOT in error and "dbReplaceDatastore: true" in error
    assert "docs/disaster-recovery.md#datastore-lost" in error


def test_removing_the_restore_settings_later_is_refused_too():
    """Removing snapshotIdentifier replaces the datastore just the same (an empty one)."""
    restored = cached_run({"rancher-ha:dbRestoreFromSnapshot": SNAPSHOT, "rancher-ha:dbReplaceDatastore": True})
    p = plan(restored, cached_run({}))
    assert p.refused and any("datastoreSource" in e for e in p.errors)


def test_a_stack_locked_before_the_datastore_source_counts_as_new():
    """Stacks deployed before this release have no datastoreSource in the lock's state."""
    from components.providers.identity_lock_provider import IdentityLockProvider

    def lock_inputs(run):
        (lock,) = run.of_type("pulumi-python:dynamic/rancher-ha:IdentityLock")
        return {k: v for k, v in lock.inputs.items() if k != "__provider"}

    olds = lock_inputs(cached_run({}))
    olds["locked"] = {k: v for k, v in olds["locked"].items() if k != "datastoreSource"}
    news = lock_inputs(cached_run({"rancher-ha:dbRestoreFromSnapshot": SNAPSHOT}))
    failures = IdentityLockProvider().check(olds, news).failures
    assert [f.property for f in failures] == ["datastoreSource"]
    assert IdentityLockProvider().check(olds, lock_inputs(cached_run({}))).failures == []


def test_a_confirmed_restore_replaces_the_datastore_and_no_server():
    """Runbook step 1: the RDS instance is replaced (create-before-delete), the DSN
    parameter updated; running servers keep their config (user data is ignored): step 2
    replaces them, one `--replace` each."""
    old = cached_run({})
    new = cached_run({"rancher-ha:dbRestoreFromSnapshot": SNAPSHOT, "rancher-ha:dbReplaceDatastore": True})
    p = plan(old, new)
    assert not p.refused, p.errors
    (datastore,) = [s for s in p.steps if s.type == RDS_INSTANCE and s.op != "delete"]
    assert datastore.op == "replace" and any("snapshotIdentifier" in r for r in datastore.replace_reasons)
    assert not datastore.delete_before_replace
    assert [s.name for s in p.steps if s.type == SERVER_INSTANCE and s.op == "replace"] == []
    (dsn,) = [s for s in p.steps if s.type == PARAMETER and s.name.endswith("datastore-endpoint")]
    assert dsn.op == "update"
    # Step 2: the servers, replaced, boot with the new DSN (tests/test_boot_script.py boots K3s servers).
    servers = [r.urn for r in new.of_type(SERVER_INSTANCE) if "rancher-server" in r.name]
    assert_only_servers_replaced(plan(new, new, replace=servers), servers)


def test_a_protected_datastore_cannot_be_replaced_by_a_restore():
    """prod: protect (and deletion protection) must be lifted first, as the runbook says."""
    protected = {"rancher-ha:protectStatefulResources": True}
    p = plan(cached_run(protected), cached_run({**protected, "rancher-ha:dbRestoreFromSnapshot": SNAPSHOT,
                                                "rancher-ha:dbReplaceDatastore": True}))
    assert any("is protected and cannot be replaced" in e for e in p.errors), p.errors


# ------------------------------------------------------------------------ one server lost
@pytest.mark.parametrize("shape", [{}, RKE2], ids=["k3s", "rke2"])
def test_replacing_one_lost_server_replaces_it_alone(shape):
    run = cached_run(shape)
    (urn,) = [r.urn for r in run.of_type(SERVER_INSTANCE) if r.name == "rancher-server-1"]
    assert_only_servers_replaced(plan(run, run, replace=[urn]), [urn])


# ---------------------------------------------------------------------- RKE2 etcd restore
@pytest.mark.parametrize("version", ["v1.34.1+rke2r1", "v1.36.0+rke2r1"])
def test_the_restore_flags_are_real_rke2_flags(version):
    """Checked against the real `rke2 server` flag lists (reference/upstream/server-flags)."""
    from rendering.node_config import restore_flags
    from rendering.server_flags import config_problems

    assert config_problems("rke2", version, restore_flags(ETCD_SNAPSHOT)) == []
    assert config_problems("rke2", version, {"cluster-reset": True}) == []
    assert config_problems("rke2", version, {"cluster-reset-restore": ETCD_SNAPSHOT})  # a near miss is caught



ETCD_SNAPSHOT = "etcd-snapshot-ip-10-0-1-10-1733550000"
RESTORE = {**RKE2, "rancher-ha:etcdSnapshotS3": True}


def test_the_etcd_restore_setting_changes_no_running_server_and_marks_the_restore_after_the_gate():
    """Runbook: set etcdRestoreSnapshot, then `--replace` every server in one `up`."""
    old, new = cached_run(RESTORE), cached_run({**RESTORE, "rancher-ha:etcdRestoreSnapshot": ETCD_SNAPSHOT})
    p = plan(old, new)
    assert not p.refused, p.errors
    assert [s.name for s in p.steps if s.type == SERVER_INSTANCE and s.op != "same"] == []
    (marker,) = [r for r in new.of_type(PARAMETER) if r.inputs["name"].endswith(f"/etcd-restored-{ETCD_SNAPSHOT}")]
    from offline.destroy import DependencyGraph

    (gate,) = [r for r in new.registrations if r.type.endswith("ApiGate")]
    graph = DependencyGraph(new.registrations)
    assert gate.urn in graph.transitive_dependencies(graph.dependencies_of(marker.urn)), \
        "the restore is marked done only once the cluster was ready"
    servers = [r.urn for r in new.of_type(SERVER_INSTANCE) if "rancher-server" in r.name]
    assert len(servers) == 3
    replaced = plan(new, new, replace=servers)
    assert_only_servers_replaced(replaced, servers)


def test_only_the_first_server_restores():
    from helpers import server_instances

    run = cached_run({**RESTORE, "rancher-ha:etcdRestoreSnapshot": ETCD_SNAPSHOT})
    scripts = [instance.inputs["userData"] for instance in server_instances(run)]
    assert "--cluster-reset-restore-path=" + ETCD_SNAPSHOT in scripts[0]
    assert not any("cluster-reset" in script for script in scripts[1:])


# ------------------------------------------------------------------ not on a new stack
@pytest.mark.parametrize("key, overrides", [
    ("etcdRestoreSnapshot", {**RESTORE, "rancher-ha:etcdRestoreSnapshot": ETCD_SNAPSHOT}),
    ("dbRestoreFromSnapshot", {"rancher-ha:dbRestoreFromSnapshot": SNAPSHOT}),
    ("dbRestoreSourceInstance", {"rancher-ha:dbRestoreSourceInstance": SOURCE, "rancher-ha:dbRestoreTime": "latest"}),
])
def test_a_restore_on_a_stack_never_deployed_is_refused_in_preview(key, overrides):
    """Another stack's data is encrypted with its token and holds its CA: a new stack
    (new token, new CA, empty bucket) cannot use it. The first `up` is refused."""
    p = plan(None, cached_run(overrides))
    assert p.refused and p.steps == [], p.errors
    (error,) = [e for e in p.errors if f": {key}: " in e]
    assert "never been deployed" in error and "docs/disaster-recovery.md#move-to-a-new-stack" in error
    # A deployed stack may restore (RKE2 freely; K3s with the datastore replacement confirmed).
    deployed = cached_run(RESTORE if key == "etcdRestoreSnapshot" else {})
    confirmed = {**overrides, "rancher-ha:dbReplaceDatastore": True} if key != "etcdRestoreSnapshot" else overrides
    assert not plan(deployed, cached_run(confirmed)).refused


# ----------------------------------------------------------------------------- runbook
def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {_slug(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}


def test_every_runbook_link_the_program_prints_exists():
    from components import hostname_lock

    texts = list(hostname_lock.REFUSALS.values()) + [hostname_lock.NEW_STACK]
    from settings import model

    texts.append(Path(model.__file__).read_text())
    texts += [path.read_text() for path in (ROOT / "rendering" / "templates").glob("*.j2")]
    links = {m for text in texts for m in re.findall(r"docs/disaster-recovery\.md#([\w-]+)", text)}
    assert {"move-to-a-new-stack", "datastore-lost", "whole-cluster-lost"} <= links
    missing = links - runbook_anchors()
    assert not missing, f"anchors named by the program but not in {RUNBOOK.name}: {sorted(missing)}"


def test_every_identity_refusal_points_at_the_runbook():
    from components.hostname_lock import REFUSALS

    assert all("docs/disaster-recovery.md#" in reason for reason in REFUSALS.values()), [
        key for key, reason in REFUSALS.items() if "docs/disaster-recovery.md#" not in reason]


def test_every_runbook_step_names_its_test_or_says_only_a_live_run_shows_it():
    """Numbered steps in the runbook: each ends with the test that executes it (a
    `tests/...::name` that exists) or says that only a live AWS run can show it."""
    text = RUNBOOK.read_text()
    steps = re.findall(r"^\d+\. .*?(?=^\d+\. |^#|\Z)", text, re.M | re.S)
    assert len(steps) >= 15
    for step in steps:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", step)
        live = "only a live aws run can show" in step.lower()
        assert named or live, f"step without a test or the live-run mark:\n{step}"
        for path, name in named:
            source = (ROOT / path).read_text()
            assert re.search(rf"^def {name}\b", source, re.M), f"{path}::{name} does not exist"
