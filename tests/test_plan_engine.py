"""The offline engine model: offline/plan.py (pulumi up) and offline/destroy.py (pulumi destroy).

Synthetic registrations pin each engine rule; one end-to-end test plans a real change of
the program.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from offline.destroy import UntargetedDeleteError, check_in_cluster_deletes, destroy_schedule
from offline.mocks import Registration
from offline.plan import UNKNOWN, Tables, plan_update

from conftest import REPO_ROOT

STACK_URN = "urn:pulumi:test::rancher-ha::pulumi:pulumi:Stack::rancher-ha-test"
THING = "aws:test/thing:Thing"
INSTANCE = "aws:ec2/instance:Instance"
SUBNET = "aws:ec2/subnet:Subnet"
RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SSM = "aws:ssm/parameter:Parameter"
TABLES = Tables.of(
    force_new={INSTANCE: {"subnetId", "availabilityZone"}, SUBNET: {"cidrBlock", "vpcId"}, SSM: {"name", "type"},
               RULE: {"securityGroupId"}, THING: {"zone"}},
    stop_start={INSTANCE: {"instanceType"}},
)


def urn(name: str, type_: str = THING, parent: Registration | None = None) -> str:
    chain = type_ if parent is None else f"{parent.urn.split('::')[2]}${type_}"
    if parent is not None and parent.urn.split("::")[2].startswith("pulumi:pulumi:Stack"):
        chain = type_
    return f"urn:pulumi:test::rancher-ha::{chain}::{name}"


def reg(name: str, type_: str = THING, inputs: dict | None = None, parent: Registration | None = None,
        deps: tuple = (), propdeps: dict | None = None, provider: Registration | None = None, **options) -> Registration:
    return Registration(
        type=type_, name=name, inputs=dict(inputs or {}), urn=options.pop("urn", urn(name, type_, parent)),
        parent=parent.urn if parent is not None else STACK_URN, dependencies=[d.urn for d in deps],
        provider=f"{provider.urn}::prov-id" if provider is not None else "",
        custom=options.pop("custom", True),
        property_dependencies={k: [d.urn for d in v] for k, v in (propdeps or {}).items()},
        **options,
    )


def state(*registrations: Registration, secrets: tuple = ()) -> SimpleNamespace:
    return SimpleNamespace(registrations=list(registrations), secret_values=set(secrets))


def plan(old, new, **kw):
    return plan_update(old, new, tables=kw.pop("tables", TABLES), **kw)


# -- pulumi up ----------------------------------------------------------------------------
def test_create_then_same():
    a = reg("a", inputs={"x": 1})
    first = plan(None, state(a))
    assert [s.op for s in first.steps] == ["create"] and first.counts() == {"create": 1}
    again = plan(state(a), state(reg("a", inputs={"x": 1})))
    assert [s.op for s in again.steps] == ["same"] and not again.collisions


def test_update_in_place_lists_the_changed_path():
    result = plan(state(reg("a", inputs={"x": 1, "tags": {"k": "v"}})), state(reg("a", inputs={"x": 1, "tags": {"k": "w"}})))
    step = result.step("a")
    assert step.op == "update" and [c.path for c in step.changes] == ["tags.k"] and not step.replace_reasons


def test_ignore_changes_accepts_user_data_and_says_so():
    old = reg("rancher-server-0", INSTANCE, {"userData": "v1", "instanceType": "m5.large"}, ignore_changes=["userData"])
    new = reg("rancher-server-0", INSTANCE, {"userData": "v2", "instanceType": "m5.large"}, ignore_changes=["userData"])
    result = plan(state(old), state(new))
    step = result.step("rancher-server-0")
    assert step.op == "same" and [c.path for c in step.ignored] == ["userData"] and not step.flag
    assert any("takes effect only on replacement nodes" in n for n in result.notes)
    assert "takes effect only on replacement nodes" in result.to_markdown()


def test_force_new_change_replaces_create_before_delete_and_flags_a_server():
    old = reg("rancher-server-0", INSTANCE, {"subnetId": "subnet-a"})
    new = reg("rancher-server-0", INSTANCE, {"subnetId": "subnet-b"})
    result = plan(state(old), state(new))
    ops = [(s.op, s.phase) for s in result.steps]
    assert ops == [("replace", "update"), ("delete", "delete")]
    assert result.counts() == {"replace": 1}
    assert result.flagged and "REPLACE server node rancher-server-0" in result.flagged[0].flag
    assert "**REPLACE server node rancher-server-0" in result.to_markdown()


def test_stop_start_of_a_server_is_flagged():
    old = reg("rancher-server-1", INSTANCE, {"instanceType": "m5.large"})
    new = reg("rancher-server-1", INSTANCE, {"instanceType": "m5.xlarge"})
    step = plan(state(old), state(new)).step("rancher-server-1")
    assert step.op == "update" and step.stop_start == ["instanceType"] and step.flag.startswith("STOP/START server node")


def test_conditional_replacements_described_in_words_are_evaluated_or_noted():
    tables = Tables.of(conditional={RULE: [{"path": "cidrIpv4", "when": "replaced when the rule's source TYPE changes"},
                                           {"path": "referencedSecurityGroupId", "when": "replaced when the rule's source TYPE changes"}],
                                    THING: [{"path": "mode", "when": "replaced when the moon is full"}]})
    base = {"securityGroupId": "sg-1", "ipProtocol": "tcp", "fromPort": 80, "toPort": 80}
    old = reg("r", RULE, {**base, "cidrIpv4": "10.0.0.0/8"})
    assert plan(state(old), state(reg("r", RULE, {**base, "cidrIpv4": "10.1.0.0/16"})), tables=tables).step("r").op == "update"
    switched = plan(state(old), state(reg("r", RULE, {**base, "referencedSecurityGroupId": "sg-2"})), tables=tables)
    assert switched.step("r").op == "replace"
    moon = plan(state(reg("m", THING, {"mode": 1})), state(reg("m", THING, {"mode": 2})), tables=tables)
    assert moon.step("m").op == "update" and any("may replace" in n for n in moon.notes)


def test_replace_on_changes():
    old = reg("a", inputs={"spec": {"size": 1}}, replace_on_changes=["spec"])
    new = reg("a", inputs={"spec": {"size": 2}}, replace_on_changes=["spec"])
    assert plan(state(old), state(new)).step("a").op == "replace"


def test_cascade_through_a_property_dependency():
    subnet_old = reg("subnet", SUBNET, {"cidrBlock": "10.0.1.0/24"})
    subnet_new = reg("subnet", SUBNET, {"cidrBlock": "10.0.2.0/24"})
    # The mocks echo deterministic ids, so the dependents' inputs look unchanged: only the
    # property dependency on a replaced resource reveals that they change.
    server_old = reg("rancher-server-0", INSTANCE, {"subnetId": "subnet-1"}, propdeps={"subnetId": [subnet_old]})
    server_new = reg("rancher-server-0", INSTANCE, {"subnetId": "subnet-1"}, propdeps={"subnetId": [subnet_new]})
    tagger_old = reg("tagger", THING, {"note": "subnet-1"}, propdeps={"note": [subnet_old]})
    tagger_new = reg("tagger", THING, {"note": "subnet-1"}, propdeps={"note": [subnet_new]})
    plain_old = reg("plain", THING, {"note": "x"}, deps=(subnet_old,))
    plain_new = reg("plain", THING, {"note": "x"}, deps=(subnet_new,))
    result = plan(state(subnet_old, server_old, tagger_old, plain_old), state(subnet_new, server_new, tagger_new, plain_new))
    assert result.step("subnet", "replace")
    server = result.step("rancher-server-0", "replace")
    assert any(c.unknown and c.path == "subnetId" for c in server.changes)
    assert result.step("tagger").op == "update"  # not force-new: an update with the new value
    assert result.step("plain").op == "same"  # depends_on alone re-runs nothing
    assert "(known after replacement)" in result.to_markdown()


def test_alias_rename_is_the_same_resource():
    old = reg("firewall-nodes-in-0", RULE, {"securityGroupId": "sg-1", "ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "203.0.113.0/24"})
    new = reg("firewall-nodes-in-ssh-203-0-113-0-24", RULE, dict(old.inputs), aliases=[old.urn])
    result = plan(state(old), state(new))
    assert [s.op for s in result.steps] == ["same"] and result.steps[0].old_urn == old.urn
    assert not result.collisions


def test_a_renamed_resource_keeps_its_id_for_its_dependents():
    # The mocks derive ids from names; a real rename (alias) keeps the physical id.
    subnet_old = reg("public-0", SUBNET, {"cidrBlock": "10.0.1.0/24"}, outputs={"id": "subnet-aaa111"})
    subnet_new = reg("public-eu-west-1a", SUBNET, {"cidrBlock": "10.0.1.0/24"}, outputs={"id": "subnet-bbb222"},
                     aliases=[subnet_old.urn])
    server_old = reg("rancher-server-0", INSTANCE, {"subnetId": "subnet-aaa111"}, propdeps={"subnetId": [subnet_old]})
    server_new = reg("rancher-server-0", INSTANCE, {"subnetId": "subnet-bbb222"}, propdeps={"subnetId": [subnet_new]})
    result = plan(state(subnet_old, server_old), state(subnet_new, server_new))
    assert [s.op for s in result.steps] == ["same", "same"]


def test_child_of_an_aliased_parent_follows_it():
    # inheritedChildAlias: a component's type changed (with an alias); its child's URN embeds
    # the parent's type chain, so the child is found under the parent's old chain.
    parent_old = reg("net", "rancher-ha:network:Network", custom=False)
    child_old = reg("vpc", "aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16"}, parent=parent_old,
                    urn="urn:pulumi:test::rancher-ha::rancher-ha:network:Network$aws:ec2/vpc:Vpc::vpc")
    parent_new = reg("net", "rancher-ha:net:Net", custom=False, aliases=[parent_old.urn])
    child_new = reg("vpc", "aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16"}, parent=parent_new,
                    urn="urn:pulumi:test::rancher-ha::rancher-ha:net:Net$aws:ec2/vpc:Vpc::vpc")
    result = plan(state(parent_old, child_old), state(parent_new, child_new))
    assert [(s.name, s.op) for s in result.steps] == [("net", "same"), ("vpc", "same")]


def test_delete_before_replace_deletes_dependents_first_inside_the_update_phase():
    a_old = reg("a", THING, {"zone": "z1"}, delete_before_replace=True)
    a_new = reg("a", THING, {"zone": "z2"}, delete_before_replace=True)
    b_old = reg("b", THING, {"zone": "a-id"}, propdeps={"zone": [a_old]})
    b_new = reg("b", THING, {"zone": "a-id"}, propdeps={"zone": [a_new]})
    result = plan(state(a_old, b_old), state(a_new, b_new))
    sequence = [(s.op, s.name, s.phase) for s in result.steps]
    assert sequence == [("delete", "b", "update"), ("delete", "a", "update"), ("replace", "a", "update"), ("replace", "b", "update")]
    assert result.step("a", "replace").delete_before_replace
    assert result.counts() == {"replace": 2}


def test_all_deletes_run_after_every_create_and_update():
    gone = reg("gone", THING, {"zone": "z"})
    moved_old = reg("moved", THING, {"zone": "z1"})
    moved_new = reg("moved", THING, {"zone": "z2"})
    fresh = reg("fresh", THING, {"zone": "z"})
    changed_old, changed_new = reg("changed", THING, {"x": 1}), reg("changed", THING, {"x": 2})
    result = plan(state(gone, moved_old, changed_old), state(moved_new, fresh, changed_new))
    last_update_phase = max(s.seq for s in result.steps if s.phase == "update")
    deletes = [s for s in result.steps if s.op == "delete"]
    assert {s.name for s in deletes} == {"gone", "moved"}
    assert all(s.phase == "delete" and s.seq > last_update_phase for s in deletes)
    assert result.counts() == {"create": 1, "update": 1, "replace": 1, "delete": 1}


def test_replace_with_follows_a_replaced_resource():
    a_old, a_new = reg("a", THING, {"zone": "z1"}), reg("a", THING, {"zone": "z2"})
    b_old = reg("b", THING, {"x": 1}, replace_with=[a_old.urn])
    b_new = reg("b", THING, {"x": 1}, replace_with=[a_new.urn])
    result = plan(state(a_old, b_old), state(a_new, b_new))
    assert result.step("b", "replace").replace_reasons == ["replace_with: a is replaced"]
    # and nothing when a only updates
    calm = plan(state(a_old, b_old), state(reg("a", THING, {"zone": "z1", "t": 1}), b_new))
    assert calm.step("b").op == "same"


def test_deleted_with_a_replaced_resource_is_replaced_too():
    a_old, a_new = reg("a", THING, {"zone": "z1"}), reg("a", THING, {"zone": "z2"})
    b_old = reg("b", THING, {"x": 1}, deleted_with=a_old.urn)
    b_new = reg("b", THING, {"x": 1}, deleted_with=a_new.urn)
    assert plan(state(a_old, b_old), state(a_new, b_new)).step("b").op == "replace"


def test_a_delete_before_replace_takes_its_deleted_with_dependents_without_calling_their_provider():
    """pulumi 3.260 (5cd93859e8): the dependent is replaced with its target; the target's old
    copy is marked deleted before any delete runs, so the dependent's delete is skipped."""
    a_old = reg("a", THING, {"zone": "z1"}, delete_before_replace=True)
    a_new = reg("a", THING, {"zone": "z2"}, delete_before_replace=True)
    b_old = reg("b", THING, {"x": 1}, deleted_with=a_old.urn)
    b_new = reg("b", THING, {"x": 1}, deleted_with=a_new.urn)
    result = plan(state(a_old, b_old), state(a_new, b_new))
    assert [(s.op, s.name, s.skipped) for s in result.steps] == [
        ("delete", "b", True), ("delete", "a", False), ("replace", "a", False), ("replace", "b", False)]
    assert "delete (before replace, skipped: deleted with)" in result.to_markdown()


@pytest.mark.parametrize(
    "old_trigger, new_trigger, op",
    [("v1", "v2", "replace"), ("v1", "v1", "same"), (None, "v1", "same"), ("v1", None, "same"),
     ({"k": [1, 2]}, {"k": [1, 3]}, "replace"), ("v1", UNKNOWN, "replace")],
)
def test_replacement_trigger(old_trigger, new_trigger, op):
    old = reg("a", THING, {"x": 1}, replacement_trigger=old_trigger)
    new = reg("a", THING, {"x": 1}, replacement_trigger=new_trigger)
    assert plan(state(old), state(new)).step("a").op == op


def test_protected_resource_cannot_be_replaced():
    result = plan(state(reg("db", "aws:rds/instance:Instance", {"engine": "mysql"}, protect=True)),
                  state(reg("db", "aws:rds/instance:Instance", {"engine": "postgres"}, protect=True)),
                  tables=Tables.of(force_new={"aws:rds/instance:Instance": {"engine"}}))
    assert result.errors and "protected" in result.errors[0] and result.flagged[0].flag.startswith("REPLACE database db")


def test_dynamic_provider_diff_decides_and_sees_the_pickle_as_the_engine_gives_it():
    """The engine hands a dynamic provider's diff the stored `__provider` and the new one
    (pulumi sdk/python/lib/pulumi/dynamic/__main__.py `Diff`): a diff that ignores it leaves a
    code-only change `same`; one that reports it makes an update, shown as a digest."""
    gate = "pulumi-python:dynamic/rancher-ha:ApiGate"

    def diff(_id, olds, news):
        assert olds["__provider"].startswith("pickle-") and news["__provider"].startswith("pickle-")
        changed = [k for k in ("url",) if olds.get(k) != news.get(k)]
        return SimpleNamespace(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def diff_with_code(_id, olds, news):
        return SimpleNamespace(changes=olds["__provider"] != news["__provider"], replaces=[], delete_before_replace=False)

    old = reg("gate", gate, {"url": "https://a:6443", "timeoutSeconds": 600, "__provider": "pickle-1"})
    timeout_only = reg("gate", gate, {"url": "https://a:6443", "timeoutSeconds": 900, "__provider": "pickle-2"})
    moved = reg("gate", gate, {"url": "https://b:6443", "timeoutSeconds": 600, "__provider": "pickle-1"})
    assert plan(state(old), state(timeout_only), dynamic_diffs={gate: diff}).step("gate").op == "same"
    assert plan(state(old), state(moved), dynamic_diffs={gate: diff}).step("gate").op == "replace"
    pickle_only = reg("gate", gate, {"url": "https://a:6443", "timeoutSeconds": 600, "__provider": "pickle-9"})
    assert plan(state(old), state(pickle_only)).step("gate").op == "same"
    assert plan(state(old), state(pickle_only), dynamic_diffs={gate: diff}).step("gate").op == "same"
    step = plan(state(old), state(pickle_only), dynamic_diffs={gate: diff_with_code}).step("gate")
    assert step.op == "update" and [c.path for c in step.changes] == ["__provider"]
    assert "pickle" not in str(step.changes[0].old) + str(step.changes[0].new)


def test_kubernetes_names_and_helm_release_names_replace():
    ns_old = reg("ns", "kubernetes:core/v1:Namespace", {"metadata": {"name": "cattle-system", "labels": {"a": "1"}}})
    ns_new = reg("ns", "kubernetes:core/v1:Namespace", {"metadata": {"name": "cattle-system2", "labels": {"a": "1"}}})
    assert plan(state(ns_old), state(ns_new), tables=Tables.of()).step("ns").op == "replace"
    labels = reg("ns", "kubernetes:core/v1:Namespace", {"metadata": {"name": "cattle-system", "labels": {"a": "2"}}})
    assert plan(state(ns_old), state(labels), tables=Tables.of()).step("ns").op == "update"
    rel_old = reg("rancher", "kubernetes:helm.sh/v3:Release", {"name": "rancher", "namespace": "cattle-system", "version": "2.12.1"})
    rel_new = reg("rancher", "kubernetes:helm.sh/v3:Release", {"name": "rancher", "namespace": "cattle", "version": "2.12.1"})
    step = plan(state(rel_old), state(rel_new), tables=Tables.of()).step("rancher", "replace")
    assert not step.delete_before_replace


def test_secret_values_are_never_printed():
    old = reg("param", SSM, {"name": "/rancher/token", "value": "hunter2-old-token"}, secret_inputs=["value"])
    new = reg("param", SSM, {"name": "/rancher/token", "value": "hunter2-new-token"}, secret_inputs=["value"])
    other_old = reg("cfg", THING, {"text": "token=generated-secret-1234"})
    other_new = reg("cfg", THING, {"text": "token=generated-secret-5678"})
    result = plan(state(old, other_old, secrets=("generated-secret-1234",)), state(new, other_new, secrets=("generated-secret-5678",)))
    text = result.to_markdown()
    assert "hunter2" not in text and "generated-secret" not in text and "[secret]" in text


# -- collisions -----------------------------------------------------------------------------
def _rules(cidrs, name_of):
    return [reg(name_of(i, c), RULE, {"securityGroupId": "sg-1", "ipProtocol": "tcp", "fromPort": 6443, "toPort": 6443, "cidrIpv4": c})
            for i, c in enumerate(cidrs)]


def test_security_group_rules_named_by_index_collide_when_the_list_shifts():
    by_index = lambda i, c: f"admin-{i}"  # noqa: E731
    old, new = _rules(["203.0.113.0/24"], by_index), _rules(["198.51.100.0/24", "203.0.113.0/24"], by_index)
    result = plan(state(*old), state(*new))
    assert [(s.op, s.name) for s in result.steps] == [("update", "admin-0"), ("create", "admin-1")]
    (collision,) = result.collisions
    assert collision.claimant.endswith("admin-1") and collision.holder.endswith("admin-0") and not collision.certain
    assert "Physical identity collisions" in result.to_markdown()
    # force-new on the CIDR (replacement instead of update): certain, the old copy goes last
    forced = plan(state(*old), state(*new), tables=Tables.of(force_new={RULE: {"cidrIpv4"}}))
    assert [c.certain for c in forced.collisions] == [True]
    # removing the first entry: admin-0 is updated into admin-1's shape, admin-1 is deleted last
    shrink = plan(state(*_rules(["198.51.100.0/24", "203.0.113.0/24"], by_index)), state(*_rules(["203.0.113.0/24"], by_index)))
    assert [c.certain for c in shrink.collisions] == [True] and shrink.collisions[0].holder.endswith("admin-1")


def test_security_group_rules_named_by_content_do_not_collide():
    by_content = lambda i, c: f"admin-{c.replace('/', '-')}"  # noqa: E731
    old, new = _rules(["203.0.113.0/24"], by_content), _rules(["198.51.100.0/24", "203.0.113.0/24"], by_content)
    result = plan(state(*old), state(*new))
    assert sorted(s.op for s in result.steps) == ["create", "same"] and result.collisions == []


def test_create_before_delete_of_a_fixed_name_collides():
    old = reg("param", SSM, {"name": "/rancher/x", "type": "String"})
    new = reg("param", SSM, {"name": "/rancher/x", "type": "SecureString"})
    result = plan(state(old), state(new))
    assert result.step("param", "replace") and result.collisions and result.collisions[0].certain
    dbr = plan(state(old), state(reg("param", SSM, {"name": "/rancher/x", "type": "SecureString"}, delete_before_replace=True)))
    assert dbr.collisions == []


def test_route53_record_moved_to_a_new_resource_collides_until_the_old_one_is_deleted():
    record = {"zoneId": "Z1", "name": "rancher.example.com", "type": "A"}
    result = plan(state(reg("dns-old", "aws:route53/record:Record", record)), state(reg("dns-new", "aws:route53/record:Record", record)))
    assert [c.certain for c in result.collisions] == [True]


# -- pulumi destroy -------------------------------------------------------------------------
def _tree():
    provider = reg("k8s", "pulumi:providers:kubernetes", {"kubeconfig": "..."})
    component = reg("nodes", "rancher-ha:cluster:ClusterNodes", custom=False)
    vpc = reg("vpc", "aws:ec2/vpc:Vpc")
    first = reg("server-0", INSTANCE, parent=component, propdeps={"subnetId": [vpc]})
    second = reg("server-1", INSTANCE, parent=component, deps=(first,))
    namespace = reg("ns", "kubernetes:core/v1:Namespace", provider=provider, deps=(first, second))
    return provider, component, vpc, first, second, namespace


def test_destroy_deletes_children_before_parents_and_dependents_first():
    provider, component, vpc, first, second, namespace = _tree()
    schedule = {s.name: s for s in destroy_schedule(state(provider, component, vpc, first, second, namespace))}
    assert schedule["ns"].round < schedule["server-1"].round < schedule["server-0"].round < schedule["nodes"].round
    assert schedule["ns"].round < schedule["k8s"].round  # a resource before its provider
    assert schedule["server-0"].round < schedule["vpc"].round
    orders = [s.order for s in schedule.values()]
    assert sorted(orders) == list(range(len(orders)))


def test_independent_deletes_share_a_round_and_leaves_go_last():
    lonely = reg("lonely", THING)
    a = reg("a", THING)
    b = reg("b", THING, deps=(a,))
    schedule = {s.name: s.round for s in destroy_schedule(state(lonely, a, b))}
    # ScheduleDeletes peels resources without dependencies first, then reverses: the lonely
    # resource runs beside `a`, in the last round, not in the first.
    assert schedule == {"b": 0, "a": 1, "lonely": 1}


def test_deleted_with_skips_the_delete_only_when_the_target_goes_too():
    provider, component, vpc, first, second, _ = _tree()
    namespace = reg("ns", "kubernetes:core/v1:Namespace", provider=provider, deleted_with=first.urn)
    run = state(provider, component, vpc, first, second, namespace)
    steps = {s.name: s for s in destroy_schedule(run)}
    assert steps["ns"].skipped and steps["ns"].round < steps["server-0"].round  # deletedWith is an edge too
    kept = {s.name: s for s in destroy_schedule(run, excludes=[first.urn])}
    assert "server-0" not in kept and "ns" in kept and not kept["ns"].skipped


def test_target_needs_target_dependents_and_exclude_keeps_dependencies():
    a = reg("a", THING)
    b = reg("b", THING, deps=(a,))
    c = reg("c", THING)
    run = state(a, b, c)
    with pytest.raises(UntargetedDeleteError) as error:
        destroy_schedule(run, targets=[a.urn])
    assert error.value.urns == [b.urn]
    assert {s.name for s in destroy_schedule(run, targets=[a.urn], target_dependents=True)} == {"a", "b"}
    assert {s.name for s in destroy_schedule(run, targets=[b.urn])} == {"b"}
    assert {s.name for s in destroy_schedule(run, excludes=[b.urn])} == {"c"}  # b needs a
    assert {s.name for s in destroy_schedule(run, excludes=[a.urn])} == {"b", "c"}
    assert {s.name for s in destroy_schedule(run, excludes=[a.urn], exclude_dependents=True)} == {"c"}


def test_in_cluster_deletes_must_finish_before_the_api_path_goes():
    vpc = reg("vpc", "aws:ec2/vpc:Vpc")
    lb = reg("lb", "aws:lb/loadBalancer:LoadBalancer", deps=(vpc,))
    listener = reg("listener", "aws:lb/listener:Listener", propdeps={"loadBalancerArn": [lb]})
    provider = reg("k8s", "pulumi:providers:kubernetes")
    release = reg("rancher", "kubernetes:helm.sh/v3:Release", provider=provider)
    api_path = ["aws:lb/listener:Listener", "aws:lb/loadBalancer:*"]
    # Unrelated chains interleave: the listener (longest chain) starts in round 0, the
    # release in round 1 beside the load balancer.
    schedule = destroy_schedule(state(vpc, lb, listener, provider, release))
    assert {s.name: s.round for s in schedule} == {"listener": 0, "lb": 1, "rancher": 1, "vpc": 2, "k8s": 2}
    problems = check_in_cluster_deletes(None, schedule, api_path)
    assert len(problems) == 1 and "rancher" in problems[0]
    # the provider (and so the release) depends on the listener: the release goes first
    provider2 = reg("k8s", "pulumi:providers:kubernetes", deps=(listener,))
    release2 = reg("rancher", "kubernetes:helm.sh/v3:Release", provider=provider2)
    assert check_in_cluster_deletes(None, destroy_schedule(state(vpc, lb, listener, provider2, release2)), api_path) == []
    release3 = reg("rancher", "kubernetes:helm.sh/v3:Release", provider=provider, deleted_with=vpc.urn)
    assert check_in_cluster_deletes(None, destroy_schedule(state(vpc, lb, listener, provider, release3)), api_path) == []


# -- tools/plan.py serialization -------------------------------------------------------------
def test_state_round_trip_tolerates_an_older_registration_shape():
    from offline.runner import MockRun
    from tools.plan import load_state, state_document

    a = reg("a", THING, {"x": 1}, replacement_trigger={"v": 1}, aliases=["urn:old"])
    document = json.loads(json.dumps(state_document(MockRun(registrations=[a], outputs={}, secret_values={"s3cr3t-value"}))))
    back = load_state(document)
    assert back.registrations == [a] and back.secret_values == {"s3cr3t-value"}
    legacy = {"registrations": [{k: v for k, v in document["registrations"][0].items()
                                 if k in ("type", "name", "inputs", "urn", "parent", "dependencies", "provider", "custom", "outputs")}]}
    old = load_state(legacy).registrations[0]
    assert old.property_dependencies == {} and old.aliases == [] and old.replacement_trigger is None and old.deleted_with == ""


# -- end to end ----------------------------------------------------------------------------
ADMIN_CIDRS_PREPENDED = {"rancher-ha:adminCidrs": ["198.51.100.0/24", "203.0.113.0/24"]}


@pytest.fixture(scope="module")
def admin_cidr_plan():
    from conftest import run
    from tools.plan import program_dynamic_diffs

    return plan_update(run(), run(ADMIN_CIDRS_PREPENDED), dynamic_diffs=program_dynamic_diffs())


def test_prepending_an_admin_cidr_only_adds_its_rules(admin_cidr_plan):
    # This test began (per the brief) as `assert plan.collisions` + a strict xfail expecting
    # none, documenting that rules named by list index shift into each other's shape
    # (InvalidPermission.Duplicate; pinned synthetically by
    # test_security_group_rules_named_by_index_collide_when_the_list_shifts). The rules are
    # now named by content (components/firewall.py rule_name), the xfail passed, so it flipped.
    assert admin_cidr_plan.collisions == [], [c.describe() for c in admin_cidr_plan.collisions]
    created = admin_cidr_plan.by_op("create")
    assert created and all(s.type == RULE and "198-51-100-0-24" in s.name for s in created)
    assert set(admin_cidr_plan.counts()) <= {"create", "same"} and not admin_cidr_plan.flagged


def test_the_plan_of_a_real_change_prints_without_secrets(admin_cidr_plan):
    from conftest import run

    text = admin_cidr_plan.to_markdown()
    assert "| create |" in text
    for secret in run().secret_values:
        assert secret.strip() not in text


# The resources a `helm uninstall` needs to reach the API: the servers and the load balancer path.
API_PATH = ("aws:ec2/instance:Instance", "aws:lb/loadBalancer:LoadBalancer", "aws:lb/listener:Listener",
            "aws:lb/targetGroup:TargetGroup", "aws:lb/targetGroupAttachment:TargetGroupAttachment",
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:ec2/securityGroup:SecurityGroup",
            "aws:ec2/natGateway:NatGateway", "aws:ec2/route:Route", "aws:rds/instance:Instance")


def test_destroying_the_dev_stack_is_scheduled_and_checked():
    from dataclasses import replace

    from conftest import run

    dev = run()
    schedule = destroy_schedule(dev)
    assert {s.urn for s in schedule} == {r.urn for r in dev.registrations}
    assert [s.order for s in schedule] == list(range(len(schedule)))
    assert [s.round for s in schedule] == sorted(s.round for s in schedule)
    by_urn = {s.urn: s for s in schedule}
    for r in dev.registrations:  # children before parents, dependents before dependencies
        for dep in [r.parent, *r.dependencies, *(u for us in r.property_dependencies.values() for u in us)]:
            if dep in by_urn:
                assert by_urn[r.urn].round < by_urn[dep].round, (r.name, dep)
    k8s = [s for s in schedule if s.type.startswith("kubernetes:")]
    provider = [s for s in schedule if s.type == "pulumi:providers:kubernetes"]
    gate = [s for s in schedule if s.type == "pulumi-python:dynamic/rancher-ha:ApiGate"]
    api_path = [s for s in schedule if s.type in API_PATH]
    assert {s.name for s in k8s} >= {"rancher", "cert-manager", "rancher-namespace"} and len(provider) == len(gate) == 1
    assert {s.type for s in api_path} >= {"aws:ec2/instance:Instance", "aws:lb/listener:Listener", "aws:lb/loadBalancer:LoadBalancer"}
    # A destroy takes the cluster with it: no `helm uninstall`, no namespace delete is attempted.
    for step in k8s:
        assert step.skipped and step.reason == f"deleted with {provider[0].name}", step
    # Even if they were attempted, every in-cluster delete and the provider's complete before the
    # gate's, and the gate's before anything on the API path starts.
    assert max(s.round for s in k8s + provider) < gate[0].round < min(s.round for s in api_path)
    attempted = [replace(s, skipped=False) for s in schedule]
    assert check_in_cluster_deletes(dev, attempted, API_PATH) == []
    # The check itself finds an in-cluster delete that would start with the path's.
    listener = next(s for s in attempted if s.type == "aws:lb/listener:Listener")
    raced = [replace(s, round=listener.round) if s.name == "rancher" and s.type.startswith("kubernetes:helm") else s for s in attempted]
    assert len(check_in_cluster_deletes(dev, raced, API_PATH)) == 1
    # The identity lock, which every component depends on, goes last.
    assert schedule[-2].type == "pulumi-python:dynamic/rancher-ha:IdentityLock" and schedule[-1].type == "rancher-ha:guard:HostnameGuard"


def test_dump_state_and_the_fallback_for_old_revisions_agree(tmp_path):
    """tools/plan.py reads a base revision with `tools.render --dump-state`, or with its
    fallback script where that revision predates the option: both must give the same state."""
    import subprocess
    import sys
    from pathlib import Path

    from tools.plan import FALLBACK_SCRIPT, load_state

    root = Path(__file__).resolve().parents[1]
    dumped, fallback = tmp_path / "dump.json", tmp_path / "fallback.json"
    first = subprocess.run([sys.executable, "-m", "tools.render", "--dump-state", str(dumped), "dev"], cwd=root,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT, str(fallback), "dev"], cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    a = load_state(json.loads(dumped.read_text())["stacks"]["dev"])
    b = load_state(json.loads(fallback.read_text())["stacks"]["dev"])
    def comparable(run):  # the pickled dynamic provider differs from process to process
        for r in run.registrations:  # and dependency lists come in registration (thread) order
            r.inputs.pop("__provider", None)
            r.outputs.pop("__provider", None)
            r.dependencies.sort()
            r.property_dependencies = {k: sorted(v) for k, v in r.property_dependencies.items()}
        return run.registrations

    assert comparable(a) == comparable(b) and a.secret_values == b.secret_values
    assert plan_update(a, b).counts() == {"same": len(a.resources)}


def test_the_plan_uses_the_programs_own_dynamic_provider_diffs():
    """The gate's provider replaces (waits again) when its expected servers change: the
    plan must say so, not assume an in-place update."""
    from conftest import run as run_program
    from tools.plan import program_dynamic_diffs

    diffs = program_dynamic_diffs()
    assert set(diffs) == {
        "pulumi-python:dynamic/rancher-ha:ApiGate",
        "pulumi-python:dynamic/rancher-ha:IdentityLock",
        "pulumi-python:dynamic/rancher-ha:ClusterVersions",
        "pulumi-python:dynamic/rancher-ha:ClusterMember",
        "pulumi-python:dynamic/rancher-ha:KubernetesUpgradeWait",
        "pulumi-python:dynamic/rancher-ha:KubernetesVersionCheck",
        "pulumi-python:dynamic/rancher-ha:ObjectReady",
    }
    old = run_program()
    new = run_program({"rancher-ha:apiReadyTimeoutSeconds": 1800})
    gate = plan_update(old, new, dynamic_diffs=diffs).step("cluster-access-api-ready")
    assert gate.op == "update"  # a timeout change alone does not wait again
    # One more server: a new node to wait for, so the gate is replaced (created again).
    grown = run_program({"rancher-ha:serverCount": 3})
    assert plan_update(old, grown, dynamic_diffs=diffs).step("cluster-access-api-ready").op == "replace"


def test_pulumi_up_replace_replaces_the_named_resource_create_before_delete():
    """`pulumi up --replace <urn>`: the engine replaces a targeted resource whatever its diff
    (step_generator.go `diff`: `sg.isTargetedReplace(urn)` before the provider's Diff)."""
    from conftest import run as run_program

    run = run_program()
    server = next(r for r in run.registrations if r.name == "rancher-server-1" and r.custom)
    p = plan_update(run, run, replace=[server.urn])
    step = p.step("rancher-server-1")
    assert step.op == "replace" and step.replace_reasons == ["--replace"] and not step.delete_before_replace
    assert p.step("rancher-server-1", op="delete").phase == "delete"
    assert p.step("rancher-server-0").op == "same"


LISTENER = "aws:lb/listener:Listener"
NLB = "aws:lb/loadBalancer:LoadBalancer"
GROUP = "aws:lb/targetGroup:TargetGroup"


def _listener(name, balancer_arn, group_arn, deps=()):
    return reg(name, LISTENER, {"loadBalancerArn": balancer_arn, "port": 443,
                                "defaultActions": [{"type": "forward", "targetGroupArn": group_arn}]}, deps=deps)


def test_a_target_group_serves_one_load_balancer_at_a_time():
    """ELBv2's TargetGroupAssociationLimit: a listener on a second load balancer cannot
    forward to a group a listener on the first still uses."""
    tables = Tables.of(force_new={LISTENER: {"loadBalancerArn"}, NLB: {"internal"}})
    old_nlb = reg("nlb", NLB, {"internal": False})
    old = state(old_nlb, _listener("l", "arn:nlb/old", "arn:tg/1", deps=(old_nlb,)))
    # The NLB is replaced; the listener follows (force-new loadBalancerArn) onto the old group.
    new_nlb = reg("nlb", NLB, {"internal": True})
    moved = plan(old, state(new_nlb, _listener("l", UNKNOWN, "arn:tg/1", deps=(new_nlb,))), tables=tables)
    assert [c.identity[:2] for c in moved.collisions] == [("tg-association", "arn:tg/1")]
    # With a new group (unknown ARN: being created) there is nothing to collide with.
    fresh = plan(old, state(new_nlb, _listener("l", UNKNOWN, UNKNOWN, deps=(new_nlb,))), tables=tables)
    assert fresh.collisions == []
    # Two listeners of one load balancer may share a group.
    shared = state(old_nlb, _listener("l", "arn:nlb/old", "arn:tg/1"), _listener("m", "arn:nlb/old", "arn:tg/1"))
    assert plan(old, shared, tables=tables).collisions == []
    # ...two load balancers of the new state may not.
    split = state(old_nlb, _listener("l", "arn:nlb/old", "arn:tg/1"), _listener("m", "arn:nlb/other", "arn:tg/1"))
    assert {c.claimant.rsplit("::", 1)[-1] for c in plan(old, split, tables=tables).collisions} == {"m"}


# -- engine version and delete-before-replace -----------------------------------------------
def test_the_minimum_cli_has_every_engine_behaviour_the_plan_models():
    """The plan models pulumi/pulumi's step generator from v3.260.0 on (deletedWith replaces
    with its target, 5cd93859e8); an older CLI would plan differently from it."""
    import yaml

    from offline.plan import ENGINE_FEATURES, ENGINE_MIN_VERSION

    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    spec = project["requiredPulumiVersion"]
    assert spec.startswith(">="), spec
    minimum = tuple(int(p) for p in spec[2:].split("."))
    for feature, (version, _commit) in ENGINE_FEATURES.items():
        assert minimum >= tuple(int(p) for p in version.split(".")), f"{spec} accepts a CLI without: {feature} ({version})"
    assert ENGINE_MIN_VERSION == "3.260.0" and minimum == (3, 260, 0)
    assert f"Pulumi CLI](https://www.pulumi.com/docs/install/) {ENGINE_MIN_VERSION[:-2]} or newer" in (REPO_ROOT / "README.md").read_text()


DBR_GATE = "pulumi-python:dynamic/rancher-ha:Dbr"


def _dbr_diff(provider_dbr: bool):
    def diff(_id, olds, news):
        changed = [k for k in news if olds.get(k) != news.get(k)]
        return SimpleNamespace(changes=bool(changed), replaces=changed, delete_before_replace=provider_dbr)
    return diff


@pytest.mark.parametrize(
    "option, provider_dbr, expected",
    [(None, True, True), (None, False, False), (False, True, False), (True, False, True), (True, True, True), (False, False, False)],
)
def test_the_delete_before_replace_option_overrides_the_provider_both_ways(option, provider_dbr, expected):
    """continueStepsFromDiff: `deleteBeforeReplace := diff.DeleteBeforeReplace; if
    goal.DeleteBeforeReplace != nil { deleteBeforeReplace = *goal.DeleteBeforeReplace }`."""
    old = reg("thing", DBR_GATE, {"zone": "a"}, delete_before_replace=option)
    new = reg("thing", DBR_GATE, {"zone": "b"}, delete_before_replace=option)
    result = plan(state(old), state(new), dynamic_diffs={DBR_GATE: _dbr_diff(provider_dbr)})
    assert result.step("thing", "replace").delete_before_replace is expected
    ops = [(s.op, s.phase) for s in result.steps]
    assert ops == ([("delete", "update"), ("replace", "update")] if expected else [("replace", "update"), ("delete", "delete")])


def test_an_engine_level_replacement_does_not_ask_the_provider_for_delete_before_replace():
    """diff() returns early for replaceWith/deletedWith/provider; the provider's
    DeleteBeforeReplace never reaches continueStepsFromDiff then."""
    a_old, a_new = reg("a", THING, {"zone": "z1"}), reg("a", THING, {"zone": "z2"})
    b_old = reg("b", DBR_GATE, {"x": 1}, replace_with=[a_old.urn])
    b_new = reg("b", DBR_GATE, {"x": 2}, replace_with=[a_new.urn])
    result = plan(state(a_old, b_old), state(a_new, b_new), dynamic_diffs={DBR_GATE: _dbr_diff(True)})
    assert not result.step("b", "replace").delete_before_replace


def test_the_mocks_record_whether_the_program_set_delete_before_replace():
    from pulumi.runtime.proto import resource_pb2

    from offline.mocks import RecordingMonitor, StackMocks

    mocks = StackMocks(region="eu-west-1", preview=False)
    monitor = RecordingMonitor(mocks)
    for name, defined, value in (("unset", False, False), ("off", True, False), ("on", True, True)):
        monitor.RegisterResource(resource_pb2.RegisterResourceRequest(
            type=THING, name=name, custom=True, deleteBeforeReplaceDefined=defined, deleteBeforeReplace=value))
    recorded = {r.name: r.delete_before_replace for r in mocks.registrations}
    assert recorded == {"unset": None, "off": False, "on": True}


# -- Auto Scaling groups: what rolls the instances ----------------------------------------------
TEMPLATE, ASG = "aws:ec2/launchTemplate:LaunchTemplate", "aws:autoscaling/group:Group"


def _group_plan(refresh, version="1", group_change=None):
    t_old, t_new = reg("lt", TEMPLATE, {"userData": "a"}), reg("lt", TEMPLATE, {"userData": "b"})
    inputs = {"launchTemplate": {"id": "lt-1", "version": version}, "desiredCapacity": 1}
    if refresh is not None:
        inputs["instanceRefresh"] = refresh
    g_old = reg("group", ASG, inputs, propdeps={"launchTemplate": [t_old]})
    new_inputs = {**inputs, **(group_change or {})}
    g_new = reg("group", ASG, new_inputs, propdeps={"launchTemplate": [t_new]})
    return plan(state(t_old, g_old), state(t_new if group_change is None else t_old, g_new), tables=Tables.of())


def test_a_group_following_the_template_is_rolled_only_with_an_instance_refresh():
    rolled = _group_plan({"strategy": "Rolling"})
    assert rolled.step("group").op == "update"
    assert any("rolls its instance (instance refresh, Rolling)" in n for n in rolled.step("group").notes)
    kept = _group_plan(None)
    assert kept.step("group").op == "update"
    assert not any("rolls" in n for n in kept.notes)
    assert any("starts no instance refresh" in n for n in kept.step("group").notes)
    # "$Latest" is not a version change: the group is not updated, nothing is rolled.
    latest = _group_plan({"strategy": "Rolling"}, version="$Latest")
    assert latest.step("group").op == "same" and not latest.notes


def test_instance_refresh_triggers_roll_the_group_on_their_own_properties():
    change = {"desiredCapacity": 2}
    assert not _group_plan({"strategy": "Rolling"}, group_change=change).notes
    triggered = _group_plan({"strategy": "Rolling", "triggers": ["desired_capacity"]}, group_change=change)
    assert any("desiredCapacity starts an instance refresh" in n for n in triggered.notes)


def test_a_dynamic_providers_check_runs_before_its_diff_and_a_failure_stops_the_up():
    lock = "pulumi-python:dynamic/rancher-ha:Lock"
    calls = []

    class Provider:
        def check(self, olds, news):
            calls.append(("check", dict(olds), dict(news)))
            bad = olds.get("cidr") not in (None, news.get("cidr"))
            return SimpleNamespace(inputs=news, failures=[SimpleNamespace(property="cidr", reason="set it back to 10.0.0.0/16")] if bad else [])

        def diff(self, _id, olds, news):
            calls.append(("diff",))
            return SimpleNamespace(changes=olds != news, replaces=[], delete_before_replace=None)

    old = reg("lock", lock, {"cidr": "10.0.0.0/16", "__provider": "p"})
    vpc_old, vpc_new = reg("vpc", THING, {"zone": "10.0.0.0/16"}), reg("vpc", THING, {"zone": "10.1.0.0/16"})
    refused = plan(state(old, vpc_old), state(reg("lock", lock, {"cidr": "10.1.0.0/16", "__provider": "p"}), vpc_new),
                   dynamic_diffs={lock: Provider()})
    assert calls == [("check", {"cidr": "10.0.0.0/16"}, {"cidr": "10.1.0.0/16"})]  # no diff after a failed check
    assert refused.steps == [] and refused.counts() == {}
    assert refused.errors == [f"REFUSED in preview by lock ({lock}): cidr: set it back to 10.0.0.0/16"]
    calls.clear()
    created = plan(None, state(reg("lock", lock, {"cidr": "10.1.0.0/16"})), dynamic_diffs={lock: Provider()})
    assert calls == [("check", {}, {"cidr": "10.1.0.0/16"})] and created.errors == []
