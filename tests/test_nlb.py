"""The network load balancer: TCP listeners, cross-zone, health checks, no hairpin."""

import pytest

from conftest import RKE2, cached_run


def _ports(run, prefix="rancher-lb-"):
    return sorted(l.inputs["port"] for l in run.of_type("aws:lb/listener:Listener") if l.name.startswith(prefix))


def test_listeners_and_balancer(dev_run):
    assert _ports(dev_run) == [80, 443, 6443]
    assert {l.inputs["protocol"] for l in dev_run.of_type("aws:lb/listener:Listener")} == {"TCP"}
    (balancer,) = dev_run.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert balancer.inputs["loadBalancerType"] == "network"
    assert balancer.inputs["enableCrossZoneLoadBalancing"] is True
    assert balancer.inputs["internal"] is False
    assert len(balancer.inputs["securityGroups"]) == 1


def test_rke2_registration_goes_through_an_internal_nlb():
    run = cached_run(RKE2)
    balancers = {b.name: b for b in run.of_type("aws:lb/loadBalancer:LoadBalancer")}
    assert balancers["rancher-lb"].inputs["internal"] is False
    internal = balancers["registration-lb"]
    assert internal.inputs["internal"] is True and internal.inputs["enableCrossZoneLoadBalancing"] is True
    # In the node subnets: nodes reach it on private addresses, which their rules recognise.
    node_subnets = {i.inputs["subnetId"] for i in run.of_type("aws:ec2/instance:Instance")}
    assert set(internal.inputs["subnets"]) == node_subnets
    assert _ports(run) == [80, 443, 6443] and _ports(run, "registration-lb-") == [6443, 9345]


@pytest.mark.parametrize("overrides, ports", [({}, [80, 443, 6443]), (RKE2, [80, 443, 6443, 6443, 9345])])
def test_target_groups(overrides, ports):
    run = cached_run(overrides)
    groups = run.of_type("aws:lb/targetGroup:TargetGroup")
    assert sorted(g.inputs["port"] for g in groups) == ports
    for group in groups:
        assert group.inputs["protocol"] == "TCP" and group.inputs["targetType"] == "instance"
        assert group.inputs["preserveClientIp"] == "false"
        check = group.inputs["healthCheck"]
        assert (check["protocol"], check["healthyThreshold"], check["unhealthyThreshold"], check["interval"]) == ("TCP", 3, 3, 10)
    assert sorted(l.inputs["port"] for l in run.of_type("aws:lb/listener:Listener")) == ports
    servers = [i for i in run.of_type("aws:ec2/instance:Instance")]
    attachments = run.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert {(a.inputs["targetGroupArn"], a.inputs["targetId"]) for a in attachments} == {
        (g.outputs["arn"], s.outputs["id"]) for g in groups for s in servers
    }
