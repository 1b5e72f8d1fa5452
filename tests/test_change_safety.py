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


def test_servers_ignore_later_ami_and_user_data_changes(dev_run):
    servers = [r for r in dev_run.of_type(INSTANCE) if "-server-" in r.name]
    assert servers and all(sorted(r.ignore_changes) == ["ami", "userData"] for r in servers)
    assert all(r.inputs["userDataReplaceOnChange"] is False for r in servers)


def test_hostname_change_is_refused_with_an_explanation():
    from components.hostname_lock import HostnameLockProvider

    provider = HostnameLockProvider()
    result = provider.check({"hostname": "rancher.example.com"}, {"hostname": "rancher2.example.com"})
    (failure,) = result.failures
    assert failure.property == "hostname"
    assert "Rancher cannot be renamed" in failure.reason and "Set hostname back to 'rancher.example.com'" in failure.reason
    assert provider.check({}, {"hostname": "rancher.example.com"}).failures == []
    assert provider.check({"hostname": "rancher.example.com"}, {"hostname": "rancher.example.com"}).failures == []
    assert provider.diff("x", {"hostname": "a"}, {"hostname": "a"}).changes is False


def test_every_component_waits_for_the_hostname_guard(dev_run):
    (lock,) = dev_run.of_type("pulumi-python:dynamic/rancher-ha:HostnameLock")
    assert lock.inputs["hostname"] == "rancher.dev.example.com"
    top_level = [r for r in dev_run.registrations if r.parent.endswith("pulumi:pulumi:Stack::rancher-ha-dev")]
    assert all(not r.custom for r in top_level)
    top_level = [r for r in top_level if r.type != "rancher-ha:guard:HostnameGuard"]
    assert len(top_level) >= 9
    for component in top_level:
        assert lock.urn in component.dependencies, component.name
    assert lock.urn.endswith("rancher-hostname-lock")
