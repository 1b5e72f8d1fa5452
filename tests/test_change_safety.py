"""Changing Rancher (version, values, bootstrap settings) never touches an EC2 instance."""

import pytest

from conftest import RKE2, run

INSTANCE = "aws:ec2/instance:Instance"
RANCHER_ONLY_CHANGES = [
    {"rancher-ha:rancherVersion": "2.13.8"},
    {"rancher-ha:certManagerVersion": "v1.18.2"},
    {"rancher-ha:tlsSource": "letsEncrypt", "rancher-ha:letsEncryptEmail": "ops@example.com"},
    {"rancher-ha:apiReadyTimeoutSeconds": 1800},
]


def _instances(result):
    return {r.name: r.inputs for r in result.of_type(INSTANCE)}


def _everything_else(result):
    return {(r.type, r.name): r.inputs for r in result.resources if r.type != INSTANCE}


@pytest.mark.parametrize("distribution", [{}, RKE2], ids=["k3s", "rke2"])
@pytest.mark.parametrize("change", RANCHER_ONLY_CHANGES, ids=lambda change: ",".join(k.split(":")[1] for k in change))
def test_rancher_changes_leave_instances_byte_identical(distribution, change):
    before = run(distribution)
    after = run({**distribution, **change})
    assert _instances(before) == _instances(after)
    # ...while the change itself did reach the program (so this test can fail).
    assert _everything_else(before) != _everything_else(after)


def test_a_node_relevant_change_does_change_user_data():
    before, after = run(RKE2), run({**RKE2, "rancher-ha:etcdSnapshotRetention": 10})
    assert _instances(before) != _instances(after)


def test_servers_ignore_later_ami_user_data_key_and_type_changes(dev_run):
    servers = [r for r in dev_run.of_type(INSTANCE) if "-server-" in r.name]
    assert servers and all(sorted(r.ignore_changes) == ["ami", "instanceType", "keyName", "userData"] for r in servers)
    assert all(r.inputs["userDataReplaceOnChange"] is False for r in servers)


def _lock_inputs(result):
    (lock,) = result.of_type("pulumi-python:dynamic/rancher-ha:IdentityLock")
    return lock.inputs


@pytest.mark.parametrize(
    "key, change, says",
    [
        ("hostname", {"rancher-ha:hostname": "rancher2.dev.example.com"}, "Rancher cannot be renamed"),
        ("distribution", {"rancher-ha:distribution": "rke2"}, "would be a different cluster"),
        ("vpcCidr", {"rancher-ha:vpcCidr": "10.1.0.0/16", "rancher-ha:clusterCidr": "10.42.0.0/16"}, "replaces the VPC"),
        ("nodePlacement", {"rancher-ha:nodePlacement": "public"}, "replaces every server at once"),
    ],
)
def test_identity_changes_are_refused_in_preview_with_the_safe_way(key, change, says):
    from components.providers.identity_lock_provider import IdentityLockProvider

    old, new = _lock_inputs(run()), _lock_inputs(run(change))
    failures = IdentityLockProvider().check(old, new).failures
    # (A new hostname also moves the derived apiHostname: both are named.)
    assert key in [failure.property for failure in failures]
    reason = next(failure.reason for failure in failures if failure.property == key)
    assert says in reason and "new stack" in reason
    # The same settings pass; so does a first deployment (no old inputs).
    assert IdentityLockProvider().check(old, old).failures == []
    assert IdentityLockProvider().check({}, new).failures == []


def test_a_first_release_lock_still_refuses_a_rename():
    from components.providers.identity_lock_provider import IdentityLockProvider

    new = _lock_inputs(run({"rancher-ha:hostname": "rancher2.dev.example.com"}))
    (failure,) = IdentityLockProvider().check({"hostname": "rancher.dev.example.com"}, new).failures
    assert failure.property == "hostname" and "Set hostname back to 'rancher.dev.example.com'" in failure.reason


def test_every_component_waits_for_the_hostname_guard(dev_run):
    (lock,) = dev_run.of_type("pulumi-python:dynamic/rancher-ha:IdentityLock")
    assert lock.inputs["locked"]["hostname"] == "rancher.dev.example.com"
    assert "urn:pulumi:dev::rancher-ha::rancher-ha:guard:HostnameGuard$pulumi-python:dynamic/rancher-ha:HostnameLock::rancher-hostname-lock" in lock.aliases
    top_level = [r for r in dev_run.registrations if r.parent.endswith("pulumi:pulumi:Stack::rancher-ha-dev")]
    assert all(not r.custom for r in top_level)
    top_level = [r for r in top_level if r.type != "rancher-ha:guard:HostnameGuard"]
    assert len(top_level) >= 9
    for component in top_level:
        assert lock.urn in component.dependencies, component.name
    assert lock.urn.endswith("rancher-hostname-lock")


def test_every_resource_inside_every_component_waits_for_the_lock(dev_run):
    """A component's depends_on does not order its children: each resource carries it."""
    (lock,) = dev_run.of_type("pulumi-python:dynamic/rancher-ha:IdentityLock")
    laggards = [r.name for r in dev_run.resources if r.urn != lock.urn and lock.urn not in r.dependencies]
    assert laggards == []


@pytest.mark.parametrize("direction", ["created-to-existing", "existing-to-created"])
def test_moving_between_a_created_and_an_existing_vpc_is_refused(direction):
    """The locked keys differ between the two (vpcCidr vs vpcId): a key that disappears changed too."""
    from components.providers.identity_lock_provider import IdentityLockProvider
    from conftest import EXISTING_VPC

    created, existing = _lock_inputs(run()), _lock_inputs(run(EXISTING_VPC))
    old, new = (created, existing) if direction == "created-to-existing" else (existing, created)
    failures = {failure.property: failure.reason for failure in IdentityLockProvider().check(old, new).failures}
    assert ("vpcCidr" if direction == "created-to-existing" else "vpcId") in failures
    assert all("new stack" in reason for reason in failures.values())


def test_the_api_name_may_change_tls_is_checked_against_the_rancher_hostname():
    from components.providers.identity_lock_provider import IdentityLockProvider

    old, new = run(), run({"rancher-ha:apiHostname": "k8s.dev.example.com"})
    assert IdentityLockProvider().check(_lock_inputs(old), _lock_inputs(new)).failures == []
    (gate,) = new.of_type("pulumi-python:dynamic/rancher-ha:ApiGate")
    assert gate.inputs["serverName"] == "rancher.dev.example.com"
