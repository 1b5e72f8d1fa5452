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


def test_rke2_needs_no_registration_load_balancer():
    run = cached_run(RKE2)
    assert [b.name for b in run.of_type("aws:lb/loadBalancer:LoadBalancer")] == ["rancher-lb"]
    assert _ports(run) == [80, 443, 6443]


@pytest.mark.parametrize("overrides", [{}, RKE2], ids=["k3s", "rke2"])
def test_target_groups(overrides):
    run = cached_run(overrides)
    groups = run.of_type("aws:lb/targetGroup:TargetGroup")
    assert sorted(g.inputs["port"] for g in groups) == [80, 443, 6443]
    for group in groups:
        assert group.inputs["protocol"] == "TCP" and group.inputs["targetType"] == "instance"
        assert group.inputs["preserveClientIp"] == "false" and group.inputs["deregistrationDelay"] == 30
        check = group.inputs["healthCheck"]
        assert (check["healthyThreshold"], check["unhealthyThreshold"], check["interval"]) == (3, 3, 10)
    servers = [i for i in run.of_type("aws:ec2/instance:Instance")]
    attachments = run.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    assert {(a.inputs["targetGroupArn"], a.inputs["targetId"]) for a in attachments} == {
        (g.outputs["arn"], s.outputs["id"]) for g in groups for s in servers
    }
    # Named by what they are (server and port), answering to their first-release names.
    first = next(a for a in attachments if a.name == "rancher-server-0-6443")
    assert first.aliases[0].endswith("::rancher-server-0-tg-2")


def test_health_checks_ask_real_health_endpoints():
    def checks(run):
        return {g.inputs["port"]: g.inputs["healthCheck"] for g in run.of_type("aws:lb/targetGroup:TargetGroup")}

    k3s, rke2 = checks(cached_run({})), checks(cached_run(RKE2))
    # K3s answers /ping on 6443 (supervisor); RKE2's supervisor answers it on 9345.
    assert {k: k3s[6443].get(k) for k in ("protocol", "port", "path", "matcher")} == {"protocol": "HTTPS", "port": "traffic-port", "path": "/ping", "matcher": "200"}
    assert {k: rke2[6443].get(k) for k in ("protocol", "port", "path")} == {"protocol": "HTTPS", "port": "9345", "path": "/ping"}
    # RKE2 <1.36 ships ingress-nginx, whose default server answers /healthz on 80; Traefik has no such endpoint.
    assert {k: rke2[443].get(k) for k in ("protocol", "port", "path")} == {"protocol": "HTTP", "port": "80", "path": "/healthz"}
    assert k3s[443]["protocol"] == "TCP"
