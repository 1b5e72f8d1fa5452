"""Day 2: routine edits planned from a deployed run to the edited run, the upgrade from
the first release, and destroys that complete.

Every edit is planned with offline/plan.py (the engine's rules, the providers' force-new
data, the program's own dynamic-provider diffs) on a K3s stack, an RKE2 stack and, where
the edit touches it, an NGINX L7 stack. What must hold for every routine edit: no two
resources claim one physical identity, no server, datastore or bucket is replaced or
restarted, and an edit that running servers ignore says so in the plan.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import NGINX_L4, NGINX_L7, PROXY, RKE2, run
from offline.destroy import UntargetedDeleteError, check_in_cluster_deletes, destroy_schedule
from offline.plan import RDS_INSTANCE, SERVER_INSTANCE, plan_update
from offline.runner import STACKS_DIR, run_program, run_stack, stack_config

BUCKET_PREFIX = "aws:s3/bucket"
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
FIRST_RELEASE = "f024eb3"
BASE_DATE = "2026-03-01"  # inside the first renewal window of both certificates
ADMIN = "203.0.113.0/24"  # conftest BASE_CONFIG
OTHER = "198.51.100.0/24"

SHAPES = {"k3s": {}, "rke2": RKE2, "nginx-l7": NGINX_L7}
# A patch upgrade from v1.34.1 (the settings' default is v1.34.1+k3s1 but v1.34.10+rke2r1:
# from the RKE2 default, v1.34.2 would be a downgrade, which the identity lock refuses).
K8S_VERSION = {"k3s": "v1.34.2+k3s1", "rke2": "v1.34.2+rke2r1", "nginx-l7": "v1.34.2+k3s1"}
K8S_BASE = {shape: version.replace("v1.34.2+", "v1.34.1+") for shape, version in K8S_VERSION.items()}


# -- runs and plans ---------------------------------------------------------------------
_runs: dict = {}


def lifecycle_run(overrides: Optional[dict] = None, today: str = BASE_DATE, stack: str = "dev"):
    """A run with the renewal date pinned (components/renewal.py), cached per config."""
    key = (repr(sorted((overrides or {}).items())), today, stack)
    if key not in _runs:
        before = os.environ.get("RANCHER_HA_TODAY")
        os.environ["RANCHER_HA_TODAY"] = today
        try:
            _runs[key] = run(overrides, stack=stack)
        finally:
            if before is None:
                os.environ.pop("RANCHER_HA_TODAY", None)
            else:
                os.environ["RANCHER_HA_TODAY"] = before
    return _runs[key]


def plan(old, new, **options):
    from tools.plan import program_dynamic_diffs

    return plan_update(old, new, dynamic_diffs=program_dynamic_diffs(), **options)


def is_server(step) -> bool:
    return step.type == SERVER_INSTANCE and "-server-" in step.name


def is_stateful(step) -> bool:
    return is_server(step) or step.type == RDS_INSTANCE or step.type.startswith(BUCKET_PREFIX)


def assert_routine(p) -> None:
    """No collision, no error, no server/datastore/bucket replaced, restarted or deleted."""
    assert p.errors == [], p.errors
    assert p.collisions == [], [c.describe() for c in p.collisions]
    touched = [
        f"{s.op} {s.name} {s.replace_reasons or s.stop_start}"
        for s in p.steps
        if is_stateful(s) and (s.op in ("replace", "delete") or s.stop_start)
    ]
    assert touched == [], touched
    assert p.flagged == [], [s.flag for s in p.flagged]


def assert_ignored_on_running_servers(p, path: str) -> None:
    """The edit reaches the servers only through an ignored property: the plan must say it
    takes effect only on replacement servers, for every server."""
    servers = [s for s in p.steps if is_server(s)]
    assert servers
    for server in servers:
        assert server.op == "same", (server.name, server.op)
        assert path in [c.path for c in server.ignored], (server.name, [c.path for c in server.ignored])
        assert any(
            note.startswith(f"{server.name}: `{path}`") and "only on replacement" in note for note in p.notes
        ), (server.name, p.notes)


def assert_parameters_move_below_the_stack_identity(p, stack: str, new_parameters: tuple[str, ...] = ()) -> None:
    """A stack created before StackIdentity kept its SSM parameters in /rancher-ha/<stack>:
    each is replaced by one of the same name below /rancher-ha/<stack>/<id> (SSM names are
    force-new), created before the old one is deleted (which runs last, after every
    create and update); none is created or deleted alone, so none goes missing."""
    changed = [s for s in p.steps if s.type == SSM_PARAMETER and s.op != "same" and not s.replacement]
    assert sorted(s.name for s in changed if s.op == "create") == sorted(new_parameters)
    assert [s.name for s in p.steps if s.type == SSM_PARAMETER and s.op == "delete" and not s.replacement] == []
    moved = [s for s in changed if s.op != "create"]
    assert moved, "no parameter moved"
    for step in moved:
        assert step.op == "replace" and not step.replacement, (step.name, step.op)
        assert step.replace_reasons == ["force-new name"] and not step.delete_before_replace, (step.name, step.replace_reasons)
        (name,) = [c for c in step.changes if c.path == "name"]
        prefix = f"/rancher-ha/{stack}/"
        assert name.old.startswith(prefix) and re.fullmatch(rf"{re.escape(prefix)}[0-9a-f]{{8}}/{re.escape(name.old[len(prefix):])}", name.new), (name.old, name.new)
        (old_half,) = [s for s in p.steps if s.replacement and s.urn in (step.urn, step.old_urn)]
        assert old_half.phase == "delete" and old_half.seq > step.seq, (step.name, old_half.phase)


# -- routine edits ----------------------------------------------------------------------
def _edits():
    """(id, shape, base overrides, edited overrides, ignored server path or None)."""
    cases = []
    for shape_id, shape in SHAPES.items():
        cases += [
            (f"{shape_id}-admin-cidr-appended", shape, {}, {"rancher-ha:adminCidrs": [ADMIN, OTHER]}, None),
            (f"{shape_id}-admin-cidr-prepended", shape, {}, {"rancher-ha:adminCidrs": [OTHER, ADMIN]}, None),
            (f"{shape_id}-admin-cidr-removed", shape, {"rancher-ha:adminCidrs": [OTHER, ADMIN]}, {"rancher-ha:adminCidrs": [ADMIN]}, None),
            (f"{shape_id}-admin-cidr-removed-first", shape, {"rancher-ha:adminCidrs": [OTHER, ADMIN]}, {"rancher-ha:adminCidrs": [OTHER]}, None),
            (f"{shape_id}-ssh-key-set", shape, {}, {"rancher-ha:sshKeyName": "ops-break-glass"}, "keyName"),
            (f"{shape_id}-ssh-key-unset", shape, {"rancher-ha:sshKeyName": "ops-break-glass"}, {"rancher-ha:sshKeyName": None}, "keyName"),
            (f"{shape_id}-rancher-patch", shape, {}, {"rancher-ha:rancherVersion": "2.14.5"}, None),
            (f"{shape_id}-kubernetes-patch", shape, {"rancher-ha:kubernetesVersion": K8S_BASE[shape_id]},
             {"rancher-ha:kubernetesVersion": K8S_VERSION[shape_id]}, "userData"),
            (f"{shape_id}-server-instance-type", shape, {}, {"rancher-ha:serverInstanceType": "m6i.2xlarge"}, "instanceType"),
        ]
    cases += [
        ("rke2-etcd-snapshot-schedule", RKE2, {}, {"rancher-ha:etcdSnapshotSchedule": "0 */4 * * *"}, "userData"),
        ("rke2-s3-etcd-snapshot-schedule", RKE2, {"rancher-ha:etcdSnapshotS3": True}, {"rancher-ha:etcdSnapshotSchedule": "15 */2 * * *"}, "userData"),
        ("proxy-no-proxy-entry", PROXY, {}, {"rancher-ha:proxyNoProxy": [*PROXY["rancher-ha:proxyNoProxy"], "artifacts.corp.example"]}, "userData"),
        ("proxy-rke2-no-proxy-entry", {**PROXY, **RKE2}, {}, {"rancher-ha:proxyNoProxy": [*PROXY["rancher-ha:proxyNoProxy"], "artifacts.corp.example"]}, "userData"),
    ]
    return cases


EDITS = _edits()


@pytest.mark.parametrize("case_id, shape, base, edit, ignored_path", EDITS, ids=[c[0] for c in EDITS])
def test_a_routine_edit_is_planned_safely(case_id, shape, base, edit, ignored_path):
    old = lifecycle_run({**shape, **base})
    new = lifecycle_run({**shape, **base, **edit})
    p = plan(old, new)
    assert_routine(p)
    changed = [s for s in p.steps if s.op != "same"]
    if ignored_path is None:
        assert changed, "the edit must reach the plan (or this test proves nothing)"
    else:
        assert_ignored_on_running_servers(p, ignored_path)


@pytest.mark.parametrize("shape_id", SHAPES)
def test_admin_cidr_edits_only_create_or_delete_their_own_rules(shape_id):
    shape = SHAPES[shape_id]
    rule = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
    for base, edit, op, cidr in [
        ({}, [OTHER, ADMIN], "create", OTHER),
        ({}, [ADMIN, OTHER], "create", OTHER),
        ({"rancher-ha:adminCidrs": [OTHER, ADMIN]}, [ADMIN], "delete", OTHER),
        ({"rancher-ha:adminCidrs": [OTHER, ADMIN]}, [OTHER], "delete", ADMIN),
    ]:
        p = plan(lifecycle_run({**shape, **base}), lifecycle_run({**shape, **base, "rancher-ha:adminCidrs": edit}))
        changed = [s for s in p.steps if s.op != "same"]
        assert changed and all(s.op == op and s.type == rule for s in changed), [(s.op, s.name) for s in changed]
        assert all(cidr.replace(".", "-").replace("/", "-") in s.name for s in changed)


def test_rancher_patch_release_is_accepted_and_only_upgrades_the_chart():
    """2.14.5 has no reference chart here (reference/rancher-chart holds 2.14.4); the settings
    accept any 2.14.x, so the bump must plan as one Helm release update."""
    from settings import versions

    reference = Path(__file__).resolve().parents[1] / "reference" / "rancher-chart"
    assert not (reference / versions.reference_chart_tag("2.14.5")).exists()
    assert versions.parse_rancher_version("2.14.5") == (2, 14, 5)
    for shape in SHAPES.values():
        p = plan(lifecycle_run(shape), lifecycle_run({**shape, "rancher-ha:rancherVersion": "2.14.5"}))
        changed = [(s.op, s.type, s.name, [c.path for c in s.changes]) for s in p.steps if s.op != "same"]
        # ...and, once the release is upgraded, the record of the versions the cluster reached.
        assert changed == [
            ("update", "kubernetes:helm.sh/v3:Release", "rancher", ["version"]),
            ("update", "pulumi-python:dynamic/rancher-ha:ClusterVersions", "running-versions-record", ["versions.rancherVersion"]),
        ], changed


def test_ssh_key_on_the_nginx_shape_updates_the_launch_template_only():
    p = plan(lifecycle_run(NGINX_L7), lifecycle_run({**NGINX_L7, "rancher-ha:sshKeyName": "ops-break-glass"}))
    (template,) = [s for s in p.steps if s.type == "aws:ec2/launchTemplate:LaunchTemplate"]
    assert template.name == "nginx-lb-instance" and template.op == "update"
    assert [c.path for c in template.changes] == ["keyName"]


def test_a_launch_template_update_shows_that_nginx_is_rolled():
    p = plan(lifecycle_run(NGINX_L7), lifecycle_run({**NGINX_L7, "rancher-ha:sshKeyName": "ops-break-glass"}))
    group = p.step("nginx-lb-group")
    assert group.op == "update" and "launchTemplate.version" in [c.path for c in group.changes]
    # Rolled only because the group has an instance refresh (offline.plan.instance_refresh_starts).
    assert [n for n in group.notes if "rolls its instance (instance refresh" in n], group.notes


# -- certificate renewal --------------------------------------------------------------------
RENEWAL_DATE = "2026-10-01"  # seven months later: past half of both validities


@pytest.mark.parametrize("shape_id, renewed", [
    ("k3s", {"cluster-ca-admin"}),
    ("rke2", {"cluster-ca-admin"}),
    ("nginx-l7", {"cluster-ca-admin", "rancher-certificate-server"}),
    ("rke2-nginx-l7", {"cluster-ca-admin", "rancher-certificate-server"}),
])
def test_certificate_renewal_replaces_only_the_certificates(shape_id, renewed):
    shape = {**RKE2, **NGINX_L7} if shape_id == "rke2-nginx-l7" else SHAPES[shape_id]
    p = plan(lifecycle_run(shape, today=BASE_DATE), lifecycle_run(shape, today=RENEWAL_DATE))
    assert_routine(p)
    replaced = {s.name for s in p.by_op("replace")}
    assert replaced == renewed
    for step in p.by_op("replace"):
        assert step.type == "tls:index/locallySignedCert:LocallySignedCert"
        assert step.replace_reasons == ["replacement_trigger changed"] and not step.delete_before_replace
    provider = p.step("cluster-access-k8s")
    assert provider.type == "pulumi:providers:kubernetes" and provider.op == "update"
    # Nothing that runs the cluster or serves it moves.
    untouchable = ("aws:ec2/instance:Instance", "aws:autoscaling/group:Group", "aws:ec2/launchTemplate:LaunchTemplate",
                   "aws:lb/", "kubernetes:", "aws:rds/", "aws:ec2/eip:Eip")
    moved = [(s.op, s.name) for s in p.steps if s.op != "same" and s.type.startswith(untouchable) and s.type != "pulumi:providers:kubernetes"]
    assert moved == [], moved
    # The old certificate is deleted only after every create and update.
    deletes = [s for s in p.steps if s.op == "delete"]
    assert {s.name for s in deletes} == renewed and all(s.phase == "delete" and s.replacement for s in deletes)


def test_no_renewal_within_a_window():
    p = plan(lifecycle_run({}, today=BASE_DATE), lifecycle_run({}, today="2026-05-15"))
    assert p.counts() == {"same": len(lifecycle_run({}, today=BASE_DATE).resources)}


# -- locked settings ------------------------------------------------------------------------
LOCK = "pulumi-python:dynamic/rancher-ha:IdentityLock"
LOCKED_EDITS = [
    ("hostname", {"rancher-ha:hostname": "rancher2.dev.example.com"}),
    ("distribution", {"rancher-ha:distribution": "rke2"}),
    ("vpcCidr", {"rancher-ha:vpcCidr": "10.1.0.0/16"}),
    ("nodePlacement", {"rancher-ha:nodePlacement": "public"}),
]


def _lock_inputs(result) -> dict:
    (lock,) = result.of_type(LOCK)
    return {k: v for k, v in lock.inputs.items() if k != "__provider"}


@pytest.mark.parametrize("key, edit", LOCKED_EDITS, ids=[k for k, _ in LOCKED_EDITS])
def test_a_locked_setting_is_refused_with_the_setting_and_the_safe_way(key, edit):
    from components.providers.identity_lock_provider import IdentityLockProvider

    old, new = lifecycle_run(), lifecycle_run(edit)
    olds, news = _lock_inputs(old), _lock_inputs(new)
    result = IdentityLockProvider().check(olds, news)
    failures = {f.property: f.reason for f in result.failures}
    assert key in failures, failures
    reason = failures[key]
    assert key in reason or (key == "hostname" and "renamed" in reason)
    assert str(olds["locked"][key]) in reason, reason  # says what to set it back to
    assert "back to" in reason and "new stack" in reason and "rancher-backup" in reason, reason
    # The unchanged stack is not refused.
    assert IdentityLockProvider().check(olds, olds).failures == []


@pytest.mark.parametrize("key, edit", LOCKED_EDITS, ids=[k for k, _ in LOCKED_EDITS])
def test_the_plan_refuses_a_locked_edit_as_the_engine_does(key, edit):
    """The engine Checks the lock before it diffs anything: the preview fails with the lock's
    own message and `pulumi up` changes nothing (no "replace 58", no collisions)."""
    from components.providers.identity_lock_provider import IdentityLockProvider

    old, new = lifecycle_run(), lifecycle_run(edit)
    p = plan(old, new)
    expected = {f.property: f.reason for f in IdentityLockProvider().check(_lock_inputs(old), _lock_inputs(new)).failures}
    assert p.refused and p.steps == [] and p.collisions == [] and p.counts() == {}
    assert any(e.startswith("REFUSED in preview by rancher-hostname-lock") and f"{key}: {expected[key]}" in e for e in p.errors), p.errors
    assert expected[key] in p.to_markdown().replace("\\|", "|")


# -- the Kubernetes provider: what replaces it, and why it must not be ------------------------
K8S_PROVIDER_TYPE = "pulumi:providers:kubernetes"
# The rancher release's namespace is the namespace's output: unknown while the namespace is
# replaced, so the plan cannot name its collision; the namespace's own comes first anyway.
FIXED_IN_CLUSTER = {("helm-release", "cert-manager"), ("Namespace", "cattle-system")}


def _fixed_name_collisions(p) -> set:
    found = set()
    for collision in p.collisions:
        identity = collision.identity
        if identity[0] == "helm-release":
            found.add(("helm-release", identity[-1]))
        elif identity[0] == "k8s" and identity[3] == "Namespace":
            found.add(("Namespace", identity[-1]))
    return found


def _stack_renamed(result, old: str, new: str):
    """The state after `pulumi stack rename old new`: every URN names the new stack; inputs
    and outputs are what was deployed."""
    from dataclasses import replace as copy_with
    from types import SimpleNamespace

    def swap(value):
        if isinstance(value, str):
            return value.replace(f"urn:pulumi:{old}::", f"urn:pulumi:{new}::")
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    fields = ("urn", "parent", "dependencies", "provider", "property_dependencies", "aliases", "deleted_with", "replace_with")
    return SimpleNamespace(
        registrations=[copy_with(r, **{f: swap(getattr(r, f)) for f in fields}) for r in result.registrations],
        secret_values=set(result.secret_values),
    )


def test_replacing_the_kubernetes_provider_collides_on_the_fixed_name_releases_and_namespace():
    """`pulumi up --replace <provider>`: every in-cluster resource is replaced with it (its
    provider is replaced, and it is deleted_with the provider), create-before-delete, so the
    new `rancher`/`cert-manager` releases and the cattle-system namespace are created while
    the old ones still exist: the real `up` fails half-way. The plan shows it."""
    dev = lifecycle_run()
    (provider,) = [r.urn for r in dev.registrations if r.type == K8S_PROVIDER_TYPE]
    p = plan(dev, dev, replace=[provider])
    assert p.step("cluster-access-k8s").op == "replace"
    in_cluster = {s.name: s for s in p.steps if s.type.startswith("kubernetes:") and not s.replacement}
    for name in ("rancher", "cert-manager", "rancher-namespace"):
        step = in_cluster[name]
        assert step.op == "replace" and not step.delete_before_replace, step
        assert "deleted_with: cluster-access-k8s is replaced" in step.replace_reasons
    assert _fixed_name_collisions(p) >= FIXED_IN_CLUSTER, [c.describe() for c in p.collisions]


def test_a_stack_rename_is_refused_before_it_replaces_the_kubernetes_provider():
    """A stack rename changes the provider's clusterIdentifier (rancher-ha-<stack>), which
    replaces the provider and every in-cluster resource, as above. The identity lock refuses
    it in preview, naming the identifier the cluster was deployed with."""
    from tools.plan import program_dynamic_diffs

    old = _stack_renamed(lifecycle_run(), "dev", "dev-renamed")
    new = lifecycle_run({"rancher-ha:environment": "dev"}, stack="dev-renamed")
    # Without the lock's check, this is what the engine would do:
    unchecked = plan_update(old, new, dynamic_diffs={t: provider.diff for t, provider in program_dynamic_diffs().items()})
    assert "clusterIdentifier" in [c.path for c in unchecked.step("cluster-access-k8s", "replace").changes]
    assert _fixed_name_collisions(unchecked) >= FIXED_IN_CLUSTER
    p = plan(old, new)
    assert p.refused and p.steps == []
    (refusal,) = [e for e in p.errors if "clusterIdentifier" in e]
    assert "'rancher-ha-dev'" in refusal and "rename the stack back" in refusal and "Kubernetes provider" in refusal, refusal


# -- updates the AWS API refuses ---------------------------------------------------------------
def test_shrinking_the_server_root_volumes_is_flagged_as_refused_by_aws():
    bigger = {"rancher-ha:serverRootVolumeGb": 100}
    p = plan(lifecycle_run(bigger), lifecycle_run({"rancher-ha:serverRootVolumeGb": 80}))
    servers = [s for s in p.steps if is_server(s)]
    assert servers and all(s.op == "update" and s.flag.startswith("REJECTED BY AWS") for s in servers), [(s.name, s.op, s.flag) for s in servers]
    refused = [e for e in p.errors if "rootBlockDevice.volumeSize` 100 → 80 is refused by AWS" in e]
    assert len(refused) == len(servers) and all("keep the size at 100 GiB or more" in e for e in refused), p.errors
    assert "REJECTED BY AWS" in p.to_markdown()
    grown = plan(lifecycle_run(bigger), lifecycle_run({"rancher-ha:serverRootVolumeGb": 120}))
    assert grown.errors == [] and not grown.flagged


def test_shrinking_the_datastore_storage_is_flagged_as_refused_by_aws():
    p = plan(lifecycle_run({"rancher-ha:dbAllocatedStorageGb": 40}), lifecycle_run({"rancher-ha:dbAllocatedStorageGb": 20}))
    (db,) = [s for s in p.steps if s.type == RDS_INSTANCE]
    assert db.op == "update" and db.flag.startswith("REJECTED BY AWS"), db
    assert any("allocatedStorage` 40 → 20 is refused by AWS" in e and "can't reduce" in e for e in p.errors), p.errors
    assert plan(lifecycle_run({"rancher-ha:dbAllocatedStorageGb": 20}), lifecycle_run({"rancher-ha:dbAllocatedStorageGb": 40})).errors == []


def test_routine_edits_pass_the_identity_lock():
    from components.providers.identity_lock_provider import IdentityLockProvider

    for _, shape, base, edit, _ in EDITS:
        olds = _lock_inputs(lifecycle_run({**shape, **base}))
        news = _lock_inputs(lifecycle_run({**shape, **base, **edit}))
        assert IdentityLockProvider().check(olds, news).failures == []


# -- from the first release ----------------------------------------------------------------
@pytest.fixture(scope="module")
def first_release_states():
    """The dev and prod stacks as the first release deployed them (tools/plan.py runs that
    revision in a temporary `git worktree`; the work tree and the index are untouched)."""
    from tools.plan import base_states

    olds, errors = base_states(FIRST_RELEASE, ["dev", "prod"])
    assert errors == {}, errors
    return olds


@pytest.fixture(scope="module")
def first_release_plans(first_release_states):
    return {stack: plan(first_release_states[stack], run_stack(stack)) for stack in ("dev", "prod")}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_upgrading_from_the_first_release_collides_with_nothing(first_release_plans, stack):
    p = first_release_plans[stack]
    sg_rules = [c for c in p.collisions if c.identity[0] == "sg-rule"]
    assert sg_rules == [], [c.describe() for c in sg_rules]
    assert p.collisions == [], [c.describe() for c in p.collisions]
    assert p.errors == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_upgrading_from_the_first_release_replaces_nothing_stateful(first_release_plans, stack):
    p = first_release_plans[stack]
    assert_routine(p)
    # Only the readiness gate is replaced (its provider sees new inputs: the expected
    # servers, the TLS name, triggers; it waits once more for a cluster that is up), and
    # the SSM parameters, which move below the stack's unique identity.
    replaced = [(s.name, s.replace_reasons) for s in p.by_op("replace") if s.type != SSM_PARAMETER]
    assert [name for name, _ in replaced] == ["cluster-access-api-ready"], replaced
    # (The first release wrote no cluster-initialized marker: RKE2's prod gets one.)
    assert_parameters_move_below_the_stack_identity(p, stack, ("cluster-state-cluster-initialized",) if stack == "prod" else ())
    assert_ignored_on_running_servers(p, "userData")
    # The lock takes over the first release's hostname lock in place.
    lock = p.step("rancher-hostname-lock")
    assert lock.op == "update" and lock.old_urn.endswith("HostnameLock::rancher-hostname-lock")


def test_the_first_release_lock_state_still_refuses_a_rename(first_release_states):
    from components.providers.identity_lock_provider import IdentityLockProvider

    (old_lock,) = [r for r in first_release_states["dev"].registrations if r.name == "rancher-hostname-lock"]
    news = _lock_inputs(run_stack("dev", overrides={"rancher-ha:hostname": "rancher2.dev.example.com"}))
    failures = {f.property for f in IdentityLockProvider().check(old_lock.inputs, news).failures}
    assert "hostname" in failures


def _default_route_tables(result) -> dict[str, str]:
    """route table URN -> URN of its 0.0.0.0/0 route."""
    routes = {}
    for r in result.of_type("aws:ec2/route:Route"):
        if r.inputs.get("destinationCidrBlock") == "0.0.0.0/0":
            for table in r.property_dependencies.get("routeTableId", []):
                routes[table] = r.urn
    return routes


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_subnet_moves_to_a_new_route_table_only_once_its_default_route_exists(first_release_plans, stack):
    from offline.destroy import DependencyGraph

    new = run_stack(stack)
    graph = DependencyGraph(new.registrations)
    defaults = _default_route_tables(new)
    p = first_release_plans[stack]
    moved = [s for s in p.steps if s.type == "aws:ec2/routeTableAssociation:RouteTableAssociation" and s.op == "update"
             and any(c.path == "routeTableId" for c in s.changes)]
    assert moved
    late = []
    for step in moved:
        association = graph.by_urn[step.urn]
        (table,) = association.property_dependencies["routeTableId"]
        if defaults[table] not in graph.transitive_dependencies(graph.dependencies_of(step.urn)):
            late.append(step.name)
    assert late == []


def test_first_release_upgrade_report(first_release_plans):
    """Not an assertion of taste: the list of what the upgrade does, for the report."""
    for stack, p in first_release_plans.items():
        deletes = sorted(s.name for s in p.steps if s.op == "delete" and not s.replacement)
        assert deletes, stack
        if stack == "prod":
            # The internal registration NLB is removed; RKE2 joins through the private DNS name now.
            assert {"registration-lb", "registration-lb-9345", "network-nat"} <= set(deletes)
            assert p.step("rancher-dns-registration").op == "create"
            assert p.step("rancher-server-policy").op == "update"  # the HeadBucket fix


# -- destroy that completes -----------------------------------------------------------------
API_PATH_TYPES = [
    "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/listener:Listener",
    "aws:lb/targetGroup:TargetGroup",
    "aws:lb/targetGroupAttachment:TargetGroupAttachment",
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "aws:ec2/securityGroupRule:SecurityGroupRule",
    "aws:ec2/eip:Eip",
    "aws:ec2/eipAssociation:EipAssociation",
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/route:Route",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment",
    "aws:ec2/instance:Instance",
    "aws:autoscaling/group:Group",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:rds/instance:Instance",
    "aws:route53/record:Record",
]
DESTROY_SHAPES = {
    "k3s": {},
    "rke2": RKE2,
    "nginx-l4": NGINX_L4,
    "nginx-l7": NGINX_L7,
    "rke2-nginx-l7": {**RKE2, **NGINX_L7},
    "proxy": PROXY,
    # A private hosted zone with a VPC the stack creates: the stack associates the two.
    "private-zone-created-vpc": {"rancher-ha:hostedZonePrivate": True, "rancher-ha:loadBalancerScheme": "internal",
                                 "rancher-ha:adminCidrs": ["10.10.0.0/16"]},
}
STACK_FILES = sorted(p.name.split(".")[1] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def _destroy_run(kind: str, name: str):
    return lifecycle_run(DESTROY_SHAPES[name]) if kind == "shape" else run_stack(name)


def _in_cluster(result) -> list:
    return [r for r in result.registrations if r.type.startswith("kubernetes:") and r.type != "pulumi:providers:kubernetes"]


DESTROYS = [("shape", s) for s in DESTROY_SHAPES] + [("stack", s) for s in STACK_FILES]


@pytest.mark.parametrize("kind, name", DESTROYS, ids=[f"{k}-{n}" for k, n in DESTROYS])
def test_destroy_never_strands_an_in_cluster_delete(kind, name):
    result = _destroy_run(kind, name)
    schedule = destroy_schedule(result)
    assert {s.urn for s in schedule} == {r.urn for r in result.registrations}
    api = [s for s in schedule if s.type in API_PATH_TYPES]
    assert len({s.type for s in api}) >= 8  # the check has something to check against
    assert _in_cluster(result)
    assert check_in_cluster_deletes(result, schedule, API_PATH_TYPES) == []
    first_api_round = min(s.round for s in api if not s.skipped)
    for step in schedule:
        if step.type.startswith("kubernetes:") and step.type != "pulumi:providers:kubernetes":
            assert step.skipped or step.round < first_api_round, (step.name, step.round, first_api_round)


def _urn(result, type_token: str, name: str) -> str:
    (match,) = [r.urn for r in result.registrations if r.type == type_token and r.name == name]
    return match


def test_destroy_removes_the_zone_association_after_the_records_and_before_the_vpc():
    """The records in a private zone go first (AWS keeps a record whatever VPCs the zone
    has, but the records name this stack's load balancer), then the association, then
    the VPC, which AWS refuses to delete while a hosted zone is associated with it."""
    result = lifecycle_run(DESTROY_SHAPES["private-zone-created-vpc"])
    rounds = {s.name: s.round for s in destroy_schedule(result)}
    association = rounds["api-dns-hosted-zone-association"]
    assert rounds["rancher-dns-api"] < association and rounds["rancher-dns-rancher"] < association, rounds
    assert association < rounds["network-vpc"], rounds


@pytest.mark.parametrize("shape_id", ["k3s", "rke2-nginx-l7"])
def test_targeted_destroy_of_one_helm_release(shape_id):
    result = lifecycle_run(DESTROY_SHAPES[shape_id])
    release = _urn(result, "kubernetes:helm.sh/v3:Release", "rancher")
    # The record of the versions the cluster reached depends on the release (it is written
    # once the release is): it goes first, and a targeted destroy must name it too.
    with pytest.raises(UntargetedDeleteError):
        destroy_schedule(result, targets=[release])
    schedule = destroy_schedule(result, targets=[release], target_dependents=True)
    assert [(s.name, s.skipped) for s in schedule] == [("running-versions-record", False), ("rancher", False)]  # a real helm uninstall
    assert check_in_cluster_deletes(result, schedule, API_PATH_TYPES) == []


def test_targeted_destroy_of_cert_manager_needs_its_dependents_and_keeps_the_order():
    result = lifecycle_run({})
    cert_manager = _urn(result, "kubernetes:helm.sh/v3:Release", "cert-manager")
    with pytest.raises(UntargetedDeleteError):
        destroy_schedule(result, targets=[cert_manager])
    schedule = destroy_schedule(result, targets=[cert_manager], target_dependents=True)
    rounds = {s.name: s.round for s in schedule}
    assert rounds["rancher"] < rounds["cert-manager"]
    assert not any(s.type in API_PATH_TYPES for s in schedule)
    assert check_in_cluster_deletes(result, schedule, API_PATH_TYPES) == []


@pytest.mark.parametrize("shape_id", ["k3s", "rke2", "rke2-nginx-l7"])
def test_destroy_excluding_the_nodes_keeps_in_cluster_deletes_off_the_api_path(shape_id):
    result = lifecycle_run(DESTROY_SHAPES[shape_id])
    servers = [r.urn for r in result.registrations if r.type == SERVER_INSTANCE and "-server-" in r.name]
    schedule = destroy_schedule(result, excludes=servers)
    assert not {s.urn for s in schedule} & set(servers)
    assert any(s.type in API_PATH_TYPES for s in schedule)
    assert check_in_cluster_deletes(result, schedule, API_PATH_TYPES) == []


# -- RDS edits: now or in the maintenance window (issue 17, defect 4) ----------------------
RDS_EDITS = [
    ("instanceClass", {"rancher-ha:dbInstanceClass": "db.t4g.large"}),
    ("multiAz", {"rancher-ha:dbMultiAz": True}),
    ("allocatedStorage", {"rancher-ha:dbAllocatedStorageGb": 40}),
    ("engineVersion", {"rancher-ha:dbEngineVersion": "8.4.7"}),
]


def _rds_notes(p) -> list[str]:
    return [note for note in p.notes if note.startswith("datastore-mysql:")]


@pytest.mark.parametrize("path, edit", RDS_EDITS, ids=[path for path, _ in RDS_EDITS])
def test_a_deferred_rds_edit_says_it_waits_for_the_maintenance_window(path, edit):
    """prod (dbApplyImmediately false by default): `pulumi up` reports success and RDS
    applies the change in the next maintenance window; the plan must say so."""
    base = {"rancher-ha:dbMultiAz": False} if path == "multiAz" else {}
    p = plan(lifecycle_run(base, stack="prod"), lifecycle_run({**base, **edit}, stack="prod"))
    assert_routine(p)
    step = p.step("datastore-mysql")
    assert step.op == "update" and path in [c.path for c in step.changes], (step.op, [c.path for c in step.changes])
    (note,) = _rds_notes(p)
    assert f"`{path}`" in note and "next maintenance window" in note and "dbApplyImmediately: false" in note, note
    assert "datastore-mysql: " + note.split(": ", 1)[1] in p.to_markdown()


@pytest.mark.parametrize("path, edit", RDS_EDITS, ids=[path for path, _ in RDS_EDITS])
def test_an_immediate_rds_edit_says_it_applies_now(path, edit):
    p = plan(lifecycle_run({}), lifecycle_run(edit))
    assert_routine(p)
    (note,) = _rds_notes(p)
    assert f"`{path}`" in note and "applies during this `pulumi up`" in note and "maintenance window" not in note, note


def test_the_apply_immediately_setting_alone_changes_nothing_on_the_database():
    p = plan(lifecycle_run({}, stack="prod"), lifecycle_run({"rancher-ha:dbApplyImmediately": True}, stack="prod"))
    assert [c.path for c in p.step("datastore-mysql").changes] == ["applyImmediately"]
    (note,) = _rds_notes(p)
    assert "changes nothing on the database" in note and "governs the next edit" in note, note


# -- RDS final snapshot -------------------------------------------------------------------
def _final_snapshot(result):
    (instance,) = result.of_type(RDS_INSTANCE)
    return instance


def test_final_snapshot_identifier_is_a_valid_rds_identifier():
    for stack in ("dev", "prod"):
        instance = _final_snapshot(lifecycle_run({"rancher-ha:dbFinalSnapshot": True}, stack=stack))
        identifier = instance.inputs["finalSnapshotIdentifier"]
        assert instance.inputs["skipFinalSnapshot"] is False
        assert re.fullmatch(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,253}[A-Za-z0-9]", identifier), identifier
        assert stack in identifier


def test_final_snapshot_identifier_is_unique_per_deletion():
    result = lifecycle_run({"rancher-ha:dbFinalSnapshot": True})
    instance = _final_snapshot(result)
    by_urn = {r.urn: r for r in result.registrations}
    sources = instance.property_dependencies.get("finalSnapshotIdentifier", [])
    generated = [u for u in sources if u in by_urn and by_urn[u].type.startswith("random:")]
    assert generated, f"{instance.inputs['finalSnapshotIdentifier']!r} depends on {sources}"


# -- a seam found on the way: the NLB health check and the rule that lets it in ----------
def _health_checked_ports(result) -> dict[str, set[int]]:
    """target group name -> ports the NLB sends traffic and health checks to."""
    ports = {}
    for group in result.of_type("aws:lb/targetGroup:TargetGroup"):
        check = group.inputs.get("healthCheck") or {}
        check_port = check.get("port", "traffic-port")
        ports[group.name] = {int(group.inputs["port"]), int(group.inputs["port"] if check_port == "traffic-port" else check_port)}
    return ports


def _open_from(result, target_sg: str, source_sg: str, port: int) -> bool:
    for rule in result.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        i = rule.inputs
        if i.get("securityGroupId") != target_sg or i.get("referencedSecurityGroupId") != source_sg:
            continue
        if str(i.get("ipProtocol")) == "-1" or (i.get("ipProtocol") == "tcp" and i["fromPort"] <= port <= i["toPort"]):
            return True
    return False


@pytest.mark.parametrize("stack_shape", [
    pytest.param({}, id="k3s"),
    pytest.param(RKE2, id="rke2"),
])
def test_every_nlb_health_check_port_is_open_from_the_load_balancer(stack_shape):
    result = lifecycle_run(stack_shape)
    groups = {r.name: r.outputs.get("id") for r in result.of_type("aws:ec2/securityGroup:SecurityGroup")}
    closed = [
        (group, port)
        for group, ports in _health_checked_ports(result).items()
        for port in sorted(ports)
        if not _open_from(result, groups["firewall-nodes"], groups["firewall-lb"], port)
    ]
    assert closed == []


# -- replacing the load balancer ----------------------------------------------------------
@pytest.mark.parametrize("shape_id", ["k3s", "rke2"])
def test_replacing_the_load_balancer_keeps_every_server_and_tls_name(shape_id):
    """Issue 12: the API's names belong to the stack, so a new NLB (here: internet-facing
    to internal, which forces one) leaves every server and the kubeconfig alone. The
    replacement must also go through: ELBv2 lets a target group serve one load balancer
    at a time, so new listeners on the new NLB cannot take over the old groups while the
    old listeners still hold them (they are deleted last). The groups are replaced with
    the NLB."""
    shape = SHAPES[shape_id]
    p = plan(lifecycle_run(shape), lifecycle_run({**shape, "rancher-ha:loadBalancerScheme": "internal"}))
    assert p.errors == [], p.errors
    assert p.collisions == [], [c.describe() for c in p.collisions]
    by_type: dict[str, dict[str, str]] = {}
    for step in p.steps:
        if step.phase == "update":
            by_type.setdefault(step.type, {})[step.name] = step.op
    assert by_type["aws:lb/loadBalancer:LoadBalancer"] == {"rancher-lb": "replace"}
    groups = by_type["aws:lb/targetGroup:TargetGroup"]
    assert groups and set(groups.values()) == {"replace"}, groups
    assert set(by_type["aws:lb/targetGroupAttachment:TargetGroupAttachment"].values()) == {"replace"}
    servers = [s for s in p.steps if is_server(s)]
    assert servers and all(s.op == "same" and not s.ignored for s in servers), [(s.name, s.op, s.ignored) for s in servers]
    assert by_type.get("pulumi:providers:kubernetes", {}) in ({}, {"cluster-access-k8s": "same"})
    assert all(op == "same" for op in by_type.get("pulumi:providers:kubernetes", {}).values())
    # The gate waits once more, for the API through the new load balancer.
    assert by_type["pulumi-python:dynamic/rancher-ha:ApiGate"] == {"cluster-access-api-ready": "replace"}
    assert_routine(p)


@pytest.mark.parametrize("shape_id", ["k3s", "rke2"])
def test_users_are_sent_to_a_new_nlb_only_once_it_serves(shape_id):
    """A new NLB serves nothing until its new target groups have registered and checked
    their targets ("a few minutes", AWS). The Rancher record moves to it only after the
    gate has seen the API through it; the API record, which the program's own Kubernetes
    calls need, is one of the things the gate waits for."""
    from offline.destroy import DependencyGraph

    shape = SHAPES[shape_id]
    new = lifecycle_run({**shape, "rancher-ha:loadBalancerScheme": "internal"})
    graph = DependencyGraph(new.registrations)
    by_name = {r.name: r.urn for r in new.registrations}
    gate, rancher_record, api_record = by_name["cluster-access-api-ready"], by_name["rancher-dns-rancher"], by_name["rancher-dns-api"]
    assert gate in graph.transitive_dependencies(graph.dependencies_of(rancher_record))
    assert api_record in graph.transitive_dependencies(graph.dependencies_of(gate))
    p = plan(lifecycle_run(shape), new)
    order = {(s.name, s.op): s.seq for s in p.steps}
    assert order[("rancher-dns-rancher", "update")] > order[("cluster-access-api-ready", "replace")]


# -- from the last landed revision (stop 14) -------------------------------------------------
LAST_LANDED = "acadfd1"  # the API and registration records were children of RancherDns there


@pytest.fixture(scope="module")
def last_landed_plans():
    from tools.plan import base_states

    olds, errors = base_states(LAST_LANDED, ["dev", "prod"])
    assert errors == {}, errors
    return {stack: plan(olds[stack], run_stack(stack)) for stack in ("dev", "prod")}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_dns_records_moved_to_apidns_keep_their_identity(last_landed_plans, stack):
    """The aliases to the former parent make the moved records the same resources: a
    delete and create of a Route53 record with the same name would collide."""
    p = last_landed_plans[stack]
    assert p.errors == [] and p.collisions == [], [c.describe() for c in p.collisions]
    records = [(s.op, s.name) for s in p.steps if s.type == "aws:route53/record:Record" and s.op in ("create", "delete", "replace")]
    assert records == [], records
    moved = [s for s in p.steps if s.name in ("rancher-dns-api", "rancher-dns-registration")]
    assert moved and all(s.old_urn.split("::")[2].startswith("rancher-ha:dns:RancherDns$") for s in moved), [
        (s.name, s.old_urn) for s in moved
    ]
    assert [s.name for s in p.steps if s.type == "rancher-ha:dns:ApiDns"] == ["api-dns"]


# -- from the last landed revision (stack identity) ------------------------------------------
IDENTITY_BASE = "bb6a910"  # SSM parameters under /rancher-ha/<stack>, the EIP condition on the stack name


@pytest.fixture(scope="module")
def identity_plans():
    from tools.plan import base_states

    stacks = ["dev", "prod", "staging"]  # K3s + NLB, RKE2 + NLB, RKE2 + NGINX L7
    olds, errors = base_states(IDENTITY_BASE, stacks)
    assert errors == {}, errors
    return {stack: (olds[stack], run_stack(stack), plan(olds[stack], run_stack(stack))) for stack in stacks}


@pytest.mark.parametrize("stack", ["dev", "prod", "staging"])
def test_an_existing_stack_moves_its_parameters_below_its_identity_safely(identity_plans, stack):
    old, new, p = identity_plans[stack]
    assert p.errors == [] and p.collisions == [], [c.describe() for c in p.collisions]
    assert_routine(p)
    assert_parameters_move_below_the_stack_identity(p, stack)
    # New in-cluster objects and waits of the same release (ClusterMembers, the upgrade
    # controller, the backups) are covered by their own tests; this is about AWS.
    created = sorted(s.name for s in p.steps if s.op == "create" and s.custom and s.type.startswith(("aws:", "random:", "tls:"))
                     and not s.name.startswith("rancher-backups"))
    buckets = [s for s in p.steps if s.type == "aws:s3/bucket:Bucket"]
    if buckets:  # RKE2 stacks with S3 snapshots: the bucket gets its key and policy in place
        assert created == ["etcd-snapshots-key", "etcd-snapshots-key-alias", "etcd-snapshots-policy", "stack-identity-id"], created
        assert [b.op for b in buckets] == ["same"], [(b.op, b.changes) for b in buckets]
        (encryption,) = [s for s in p.steps if s.type.startswith("aws:s3/bucketServerSideEncryptionConfiguration")]
        assert encryption.op == "update" and [c.path for c in encryption.changes] == ["rules[0].applyServerSideEncryptionByDefault.kmsMasterKeyId"], encryption.changes
    else:
        assert created == ["stack-identity-id"], created
    assert [s.name for s in p.steps if s.op == "replace" and s.type != SSM_PARAMETER] == []
    # Every parameter the old stack had is there under the new root, and nothing else moved.
    root = {r.inputs["name"].rsplit("/node/", 1)[0].rsplit("/nginx/", 1)[0] for r in new.of_type(SSM_PARAMETER)}
    (root,) = root
    assert {n.inputs["name"].replace(f"/rancher-ha/{stack}/", f"{root}/", 1) for n in old.of_type(SSM_PARAMETER)} == {
        n.inputs["name"] for n in new.of_type(SSM_PARAMETER)
    }
    # Running servers read SSM only at their first boot: their user data (the new root) is
    # ignored and takes effect on replacement servers, which find every parameter there.
    assert_ignored_on_running_servers(p, "userData")
    # The roles are updated in place to the new root only (not the old one).
    for policy in [s for s in p.steps if s.type == "aws:iam/rolePolicy:RolePolicy"]:
        assert policy.op == "update", (policy.name, policy.op)
        read = [x for x in json.loads(policy_input(new, policy.name))["Statement"] if x.get("Sid") == "ReadOwnParameters"]
        assert read and all(f"parameter{root}/" in x["Resource"] for x in read), read
    if stack == "prod":
        # The replaced first server's marker: under the new root before the old one goes.
        marker = p.step("cluster-state-cluster-initialized")
        assert marker.op == "replace"
    if stack == "staging":
        # NGINX's refresh timer reads the root written in its launch template: the new
        # version rolls the instance onto the new root (a failed read keeps the running
        # configuration until then: rendering/templates/nginx-refresh.sh.j2, `set -e`).
        (template,) = [s for s in p.steps if s.type == "aws:ec2/launchTemplate:LaunchTemplate"]
        assert template.op == "update" and "userData" in [c.path for c in template.changes], template
        group = p.step("nginx-lb-group")
        assert [n for n in group.notes if "rolls its instance (instance refresh" in n], group.notes


def policy_input(result, name: str) -> str:
    (policy,) = [r for r in result.registrations if r.name == name]
    return policy.inputs["policy"]


# -- the ingress controller is frozen at creation (issue 18 defect 2) ------------------------
# Without Rancher backups: the chart pinned for 2.15 declares Kubernetes up to 1.35 only
# (settings refuse it on 1.36; tests/test_settings.py, tests/test_backup_chart_real.py).
NO_BACKUPS = {"rancher-ha:rancherBackups": False}
STAGING_135 = {"rancher-ha:rancherVersion": "2.15.0", "rancher-ha:kubernetesVersion": "v1.35.7+rke2r1", **NO_BACKUPS}
STAGING_136 = {"rancher-ha:rancherVersion": "2.15.0", "rancher-ha:kubernetesVersion": "v1.36.3+rke2r1", **NO_BACKUPS}
HELM_CHART_CONFIG = "kubernetes:helm.cattle.io/v1:HelmChartConfig"


def _base_config(user_data: str) -> dict:
    import yaml

    (entry,) = [f for f in yaml.safe_load(user_data)["write_files"] if f["path"].endswith("config.base.yaml")]
    return yaml.safe_load(entry["content"])


def test_a_minor_bump_is_refused_until_the_ingress_controller_the_cluster_runs_is_kept():
    """staging created at 1.35 runs ingress-nginx. Bumping to 1.36, whose default for NEW
    clusters is Traefik, must not swap it (RKE2 --disable would delete ingress-nginx, the
    HelmChartConfig with use-forwarded-headers would go): the lock refuses in preview and
    says how to keep it."""
    from components.providers.identity_lock_provider import IdentityLockProvider

    old, new = run_stack("staging", overrides=STAGING_135), run_stack("staging", overrides=STAGING_136)
    failures = {f.property: f.reason for f in IdentityLockProvider().check(_lock_inputs(old), _lock_inputs(new)).failures}
    assert "ingressController" in failures, failures
    reason = failures["ingressController"]
    assert "'ingress-nginx'" in reason and "ingressController: ingress-nginx" in reason, reason


def test_a_minor_bump_keeps_the_ingress_controller_and_everything_that_depends_on_it():
    """With the controller kept, 1.35 -> 1.36 deletes no HelmChartConfig and leaves the
    servers' rendered config as it is (a replacement server still gets ingress-nginx)."""
    from components.providers.identity_lock_provider import IdentityLockProvider

    old = run_stack("staging", overrides=STAGING_135)
    new = run_stack("staging", overrides={**STAGING_136, "rancher-ha:ingressController": "ingress-nginx"})
    assert IdentityLockProvider().check(_lock_inputs(old), _lock_inputs(new)).failures == []
    p = plan(old, new)
    assert p.errors == [] and p.collisions == []
    charts = [s for s in p.steps if s.type == HELM_CHART_CONFIG]
    assert charts and all(s.op in ("same", "update") for s in charts), [(s.name, s.op) for s in charts]
    (chart,) = new.of_type(HELM_CHART_CONFIG)
    assert chart.inputs["metadata"]["name"] == "rke2-ingress-nginx"
    for before, after in zip(server_instances_of(old), server_instances_of(new)):
        assert _base_config(after.inputs["userData"]) == _base_config(before.inputs["userData"])
        assert _base_config(after.inputs["userData"])["ingress-controller"] == "ingress-nginx"


def test_switching_a_running_cluster_to_traefik_is_refused_with_the_safe_way():
    from components.providers.identity_lock_provider import IdentityLockProvider

    old = run_stack("staging", overrides=STAGING_135)
    new = run_stack("staging", overrides={**STAGING_135, "rancher-ha:ingressController": "traefik"})
    failures = {f.property: f.reason for f in IdentityLockProvider().check(_lock_inputs(old), _lock_inputs(new)).failures}
    reason = failures["ingressController"]
    assert "back to 'ingress-nginx'" in reason and "new stack" in reason and "rancher-backup" in reason, reason


def test_a_new_stack_on_136_gets_traefik_and_keeps_it():
    from components.providers.identity_lock_provider import IdentityLockProvider

    created = run_stack("staging", overrides=STAGING_136)
    (chart,) = created.of_type(HELM_CHART_CONFIG)
    assert chart.inputs["metadata"]["name"] == "rke2-traefik"
    assert IdentityLockProvider().check(_lock_inputs(created), _lock_inputs(created)).failures == []


def server_instances_of(result):
    return sorted((i for i in result.of_type(SERVER_INSTANCE) if "-server-" in i.name), key=lambda i: i.name)


BEFORE_INGRESS_LOCK = "bb6a910"  # the last landed revision: its lock did not record the ingress controller


@pytest.fixture(scope="module")
def last_landed_staging():
    from tools.plan import base_states

    olds, errors = base_states(BEFORE_INGRESS_LOCK, ["staging"])
    assert errors == {}, errors
    return olds["staging"]


def test_a_stack_deployed_before_the_lock_recorded_the_ingress_controller(last_landed_staging):
    """bb6a910's lock lacks ingressController. Unchanged (1.34: ingress-nginx, the only
    controller such a stack can run) the lock records it silently; moved to 1.36, where the
    default would be Traefik, the stack must say which controller the cluster runs."""
    from components.providers.identity_lock_provider import IdentityLockProvider

    (old_lock,) = [r for r in last_landed_staging.registrations if r.name == "rancher-hostname-lock"]
    olds = {k: v for k, v in old_lock.inputs.items() if k != "__provider"}
    assert "ingressController" not in olds["locked"]
    unchanged = _lock_inputs(run_stack("staging"))
    assert unchanged["locked"]["ingressController"] == "ingress-nginx"
    assert IdentityLockProvider().check(olds, unchanged).failures == []
    bumped = _lock_inputs(run_stack("staging", overrides=STAGING_136))
    failures = {f.property: f.reason for f in IdentityLockProvider().check(olds, bumped).failures}
    assert "did not record its ingress controller" in failures["ingressController"], failures
    kept = _lock_inputs(run_stack("staging", overrides={**STAGING_136, "rancher-ha:ingressController": "ingress-nginx"}))
    assert IdentityLockProvider().check(olds, kept).failures == []


IAM_PRINCIPALS = ("aws:iam/role:Role", "aws:iam/user:User")
WORKLOAD_BOUNDARY = "arn:aws:iam::111122223333:policy/rancher-ha-workload-boundary"
# The name the shipped stacks give, as an ARN in the account the mocks deploy in.
MOCK_ACCOUNT_BOUNDARY = "arn:aws:iam::123456789012:policy/rancher-ha-workload-boundary"


def _principal_changes(p) -> dict[str, tuple[str, list]]:
    return {s.name: (s.op, [(c.path, c.new) for c in s.changes]) for s in p.steps if s.type in IAM_PRINCIPALS}


def test_setting_the_permissions_boundary_updates_the_roles_in_place(last_landed_staging):
    """iamPermissionsBoundary (shipped staging names the policy; the program builds the ARN
    in the deploying account) on a stack bb6a910 deployed (both instance roles):
    `permissionsBoundary` is not force-new (reference/upstream/force-new/aws.json), so each
    role is updated in place with that change alone and nothing depending on them moves.
    (bb6a910 had no backup user: the plan creates it, with the boundary.)"""
    unbounded = {k: v for k, v in stack_config("staging").items() if k != "rancher-ha:iamPermissionsBoundary"}
    unset = plan(last_landed_staging, run_program(unbounded, stack="staging"))
    bounded = run_stack("staging")
    p = plan(last_landed_staging, bounded)
    assert_routine(p)
    boundary = [("permissionsBoundary", MOCK_ACCOUNT_BOUNDARY)]
    assert _principal_changes(p) == {"nginx-lb-instance-role": ("update", boundary), "rancher-server-role": ("update", boundary),
                                     "rancher-backups-user": ("create", [])}
    assert bounded.named("rancher-backups-user").inputs["permissionsBoundary"] == MOCK_ACCOUNT_BOUNDARY
    ops = lambda q: {s.name: s.op for s in q.steps if s.type not in IAM_PRINCIPALS}  # noqa: E731
    assert ops(p) == ops(unset)


def test_setting_the_permissions_boundary_updates_the_backup_user_in_place():
    """The same from a stack this release deployed without it: the backup user too."""
    staging = {"rancher-ha:environment": "staging"}  # rancherBackups on
    p = plan(lifecycle_run({**NGINX_L7, **staging}),
             lifecycle_run({**NGINX_L7, **staging, "rancher-ha:iamPermissionsBoundaryArn": WORKLOAD_BOUNDARY}))
    assert_routine(p)
    boundary = ("update", [("permissionsBoundary", WORKLOAD_BOUNDARY)])
    assert _principal_changes(p) == {"nginx-lb-instance-role": boundary, "rancher-server-role": boundary,
                                     "rancher-backups-user": boundary}
    assert {s.name for s in p.steps if s.op != "same"} == set(_principal_changes(p))


# -- from the previous release (v0.1.0) -------------------------------------------------------
PREVIOUS_RELEASE = "e5b208f"  # tag v0.1.0, the last landed revision (stop 21)
ALL_STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))
# What this release replaces on a stack v0.1.0 created, and why (empty: nothing).
REPLACED_SINCE_PREVIOUS_RELEASE: dict[str, str] = {}


@pytest.fixture(scope="module")
def previous_release_states():
    from tools.plan import base_states

    olds, errors = base_states(PREVIOUS_RELEASE, ALL_STACKS)
    assert errors == {}, errors
    return olds


@pytest.fixture(scope="module")
def previous_release_plans(previous_release_states):
    return {stack: plan(previous_release_states[stack], run_stack(stack)) for stack in ALL_STACKS}


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_the_previous_releases_upgrade_plan_gains_its_prepare_in_place_without_a_new_pass(
        previous_release_states, previous_release_plans, stack):
    """v0.1.0's server Plan had no prepare and no postCompleteDelay: this release updates the
    Plan object in place (a Kubernetes object: a patch, no replacement). system-upgrade-controller
    v0.20.1 hashes status.latestVersion, spec.serviceAccountName, the fields its digest
    annotation names and the Plan's secrets (pkg/upgrade/plan/plan.go DigestStatus), neither
    of those two: no new hash, so no new pass over the servers; the rehearsal cordons and
    restarts nothing. Where the stack file itself moves the version (dev and proxied: K3s
    v1.34.1 → v1.34.8), the pass it starts is an upgrade like any other, and safe under the
    most pessimistic completion."""
    from offline import upgrade_model as suc
    from offline.cluster_model import cluster_for, rehearse

    p = previous_release_plans[stack]
    (step,) = [s for s in p.steps if s.type == suc.PLAN]
    old, new = previous_release_states[stack], run_stack(stack)
    (old_plan,) = old.of_type(suc.PLAN)
    version_moved = old_plan.inputs["spec"]["version"] != new.of_type(suc.PLAN)[0].inputs["spec"]["version"]
    expected = ["spec.postCompleteDelay", "spec.prepare"] + (["spec.version"] if version_moved else [])
    assert step.op == "update" and sorted(c.path for c in step.changes) == expected, step
    assert suc.passes_again(step) == version_moved
    cluster = cluster_for(old, etcd=step.name.endswith("rke2-server-plan"))
    result = rehearse(p, new, cluster, completion=suc.SEEN_AT_EXIT_READY_STALE)
    assert result.violations == [] and result.failed == {}, result.log
    if version_moved:
        assert len(result.restarts) == len(cluster.machines), result.log
    else:
        assert result.restarts == {} and not [line for line in result.log if "upgrade Job" in line], result.log


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_every_stack_the_previous_release_created_takes_this_release_as_a_routine_update(previous_release_plans, stack):
    """Every shipped stack, as v0.1.0 deployed it, planned to this tree: no collision, no
    server, datastore or bucket replaced or restarted, and nothing else replaced unless
    REPLACED_SINCE_PREVIOUS_RELEASE says why."""
    p = previous_release_plans[stack]
    assert_routine(p)
    replaced = sorted(s.name for s in p.by_op("replace"))
    assert replaced == sorted(n for n in REPLACED_SINCE_PREVIOUS_RELEASE if n in replaced), [
        (s.name, s.replace_reasons) for s in p.by_op("replace")
    ]
    deleted = [s.name for s in p.by_op("delete")]
    assert deleted == [], deleted


@pytest.mark.parametrize("stack", ["dev", "prod", "staging"])
def test_every_cluster_member_of_the_previous_release_takes_this_releases_removal_code(previous_release_plans, stack):
    """A dynamic resource's delete runs the provider code stored in its state by its last
    create or update (pulumi/pulumi sdk/python/lib/pulumi/dynamic/__main__.py: `Delete` reads
    the provider from the old properties; only `Create`/`Update` store the new one). A
    member's removal is its delete, so a change to that code reaches a running stack only if
    the member is updated: v0.1.0's members would otherwise remove a server by v0.1.0's rules
    (after a restore: wait for the other old, NotReady servers, and time out)."""
    p = previous_release_plans[stack]
    members = [s for s in p.steps if s.type.endswith("ClusterMember")]
    assert members and all(s.op == "update" and [c.path for c in s.changes] == ["__provider"] for s in members), [
        (s.name, s.op, [c.path for c in s.changes]) for s in members
    ]
