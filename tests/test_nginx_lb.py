"""The NGINX load balancer instance (mock level): placement, exposure, secrets."""

import json

import pytest
import yaml

from conftest import NGINX_L4, NGINX_L7, RKE2, cached_run
from test_firewall import rule_set


def _nginx(run):
    (instance,) = [i for i in run.of_type("aws:ec2/instance:Instance") if i.name.startswith("nginx-lb")]
    return instance


@pytest.mark.parametrize("overrides", [NGINX_L4, NGINX_L7, {**RKE2, **NGINX_L7}], ids=["l4", "l7", "rke2-l7"])
def test_dedicated_hardened_instance_with_elastic_ip(overrides):
    run = cached_run(overrides)
    nginx = _nginx(run)
    servers = [i for i in run.of_type("aws:ec2/instance:Instance") if "-server-" in i.name]
    assert nginx.outputs["privateIp"] not in {s.outputs["privateIp"] for s in servers}
    assert nginx.inputs["metadataOptions"]["httpTokens"] == "required"
    assert nginx.inputs["rootBlockDevice"]["encrypted"] is True
    assert nginx.inputs["userDataReplaceOnChange"] is True
    (interface,) = run.of_type("aws:ec2/networkInterface:NetworkInterface")
    assert nginx.inputs["networkInterfaces"] == [{"deviceIndex": 0, "networkInterfaceId": interface.outputs["id"]}]
    assert "subnetId" not in nginx.inputs and "associatePublicIpAddress" not in nginx.inputs
    (association,) = run.of_type("aws:ec2/eipAssociation:EipAssociation")
    eip = next(e for e in run.of_type("aws:ec2/eip:Eip") if e.name == "nginx-lb-address")
    assert association.inputs == {"allocationId": eip.outputs["allocationId"], "networkInterfaceId": interface.outputs["id"]}
    lb_group = next(g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name == "firewall-lb")
    assert interface.inputs["securityGroups"] == [lb_group.outputs["id"]]
    assert run.of_type("aws:lb/loadBalancer:LoadBalancer") == []
    assert run.outputs["loadBalancerAddress"].value == eip.outputs["publicIp"]
    config = yaml.safe_load(nginx.inputs["userData"])["write_files"][1]["content"]
    for server in servers:
        assert f"server {server.outputs['privateIp']}:6443 max_fails=3 fail_timeout=5s;" in config


def test_rke2_servers_register_through_the_private_interface():
    from helpers import server_instances, written_file
    from rendering.cloud_init import BASE_CONFIG_PATH

    run = cached_run({**RKE2, **NGINX_L7})
    (interface,) = run.of_type("aws:ec2/networkInterface:NetworkInterface")
    private = interface.outputs["privateIp"]
    joiner = yaml.safe_load(written_file(server_instances(run)[1], BASE_CONFIG_PATH)["content"])
    assert joiner["server"] == f"https://{private}:9345"
    assert private in joiner["tls-san"] and run.outputs["loadBalancerAddress"].value in joiner["tls-san"]
    assert _nginx(run).outputs["privateIp"] == private


def test_security_group_exposure():
    rules = rule_set(cached_run({**RKE2, **NGINX_L7}))
    world = {r for r in rules if r[4] == "0.0.0.0/0"}
    assert world == {("lb", "tcp", 80, 80, "0.0.0.0/0"), ("lb", "tcp", 443, 443, "0.0.0.0/0")}
    assert {r[4] for r in rules if r[0] == "lb" and r[2] == 6443} == {"nodes", "203.0.113.0/24"}
    assert {r[4] for r in rules if r[0] == "lb" and r[2] == 9345} == {"nodes"}


def test_l7_certificate_reaches_nginx_through_ssm_only():
    run = cached_run(NGINX_L7)
    nginx = _nginx(run)
    parameters = {p.inputs["name"]: p for p in run.of_type("aws:ssm/parameter:Parameter")}
    key = parameters["/rancher-ha/dev/nginx/tls.key"]
    assert key.inputs["type"] == "SecureString" and "value" in key.secret_inputs
    body = key.inputs["value"].strip().splitlines()[1]
    assert body not in nginx.inputs["userData"]
    script = yaml.safe_load(nginx.inputs["userData"])["write_files"][0]["content"]
    assert "fetch_parameter nginx/tls.key" in script and "nginx -t" in script
    policies = [json.loads(p.inputs["policy"]) for p in run.of_type("aws:iam/rolePolicy:RolePolicy")]
    resources = sorted(statement["Resource"] for policy in policies for statement in policy["Statement"])
    assert resources == [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/rancher-ha/dev/nginx/*",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/rancher-ha/dev/node/*",
    ]


def test_l4_nginx_has_no_certificate():
    run = cached_run(NGINX_L4)
    assert not [p for p in run.of_type("aws:ssm/parameter:Parameter") if "/nginx/" in p.inputs["name"]]
    config = yaml.safe_load(_nginx(run).inputs["userData"])["write_files"][1]["content"]
    assert "ssl_certificate" not in config and "http {" not in config
    assert "listen 443;" in config and "listen 80;" in config


def test_worker_limits_are_configurable():
    run = cached_run({**NGINX_L7, "rancher-ha:nginxWorkerConnections": 16384, "rancher-ha:nginxWorkerRlimitNofile": 65536})
    config = yaml.safe_load(_nginx(run).inputs["userData"])["write_files"][1]["content"]
    assert "worker_connections 16384;" in config and "worker_rlimit_nofile 65536;" in config
    default = yaml.safe_load(_nginx(cached_run(NGINX_L7)).inputs["userData"])["write_files"][1]["content"]
    assert "worker_connections 8192;" in default and "worker_rlimit_nofile 40000;" in default
