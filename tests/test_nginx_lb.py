"""The NGINX load balancer (mock level): a self-healing Auto Scaling group of one that
takes over the stack's Elastic IP, with configuration and certificate from SSM."""

import base64
import json

import pytest
import yaml

from conftest import DEV_PARAMETER_ROOT, NGINX_L4, NGINX_L7, RKE2, cached_run
from test_firewall import rule_set


def _template(run):
    (template,) = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    return template


def _user_data(run):
    return yaml.safe_load(base64.b64decode(_template(run).inputs["userData"]).decode())


def _parameters(run):
    return {p.inputs["name"]: p for p in run.of_type("aws:ssm/parameter:Parameter")}


@pytest.mark.parametrize("overrides", [NGINX_L4, NGINX_L7, {**RKE2, **NGINX_L7}], ids=["l4", "l7", "rke2-l7"])
def test_a_hardened_auto_scaling_group_of_one_across_zones(overrides):
    run = cached_run(overrides)
    template = _template(run)
    assert template.inputs["metadataOptions"]["httpTokens"] == "required"
    assert template.inputs["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"
    lb_group = next(g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name == "firewall-lb")
    assert template.inputs["networkInterfaces"][0]["securityGroups"] == [lb_group.outputs["id"]]
    (group,) = run.of_type("aws:autoscaling/group:Group")
    assert (group.inputs["minSize"], group.inputs["maxSize"], group.inputs["desiredCapacity"]) == (1, 1, 1)
    public = sorted(s.outputs["id"] for s in run.of_type("aws:ec2/subnet:Subnet") if "public" in s.name)
    assert sorted(group.inputs["vpcZoneIdentifiers"]) == public  # a replacement may come up in any zone
    assert group.inputs["healthCheckType"] == "EC2" and group.inputs["healthCheckGracePeriod"] == 300
    assert group.inputs["launchTemplate"]["id"] == template.outputs["id"]
    assert {t["key"]: t["value"] for t in group.inputs["tags"] if t["propagateAtLaunch"]}["rancher-ha:stack"] == "dev"
    assert run.of_type("aws:lb/loadBalancer:LoadBalancer") == [] and run.of_type("aws:ec2/networkInterface:NetworkInterface") == []
    eip = next(e for e in run.of_type("aws:ec2/eip:Eip") if e.name == "nginx-lb-address")
    assert run.outputs["loadBalancerAddress"].value == eip.outputs["publicIp"]
    # Servers never run NGINX, and no server waits for it.
    servers = [i for i in run.of_type("aws:ec2/instance:Instance") if "-server-" in i.name]
    assert all(group.urn not in s.dependencies and template.urn not in s.dependencies for s in servers)


def test_user_data_is_static_and_names_no_node():
    """Node addresses and certificates come from SSM: a replaced server or a renewed
    certificate changes a parameter, never the launch template (no NGINX replacement)."""
    run = cached_run(NGINX_L7)
    user_data = base64.b64decode(_template(run).inputs["userData"]).decode()
    for ip in run.outputs["nodePrivateIps"].value:
        assert ip not in user_data
    paths = [entry["path"] for entry in _user_data(run)["write_files"]]
    assert paths == ["/usr/local/sbin/rancher-ha-bootstrap", "/usr/local/sbin/rancher-ha-nginx-refresh",
                     "/etc/systemd/system/nginx.service.d/rancher-ha-restart.conf",
                     "/etc/systemd/system/rancher-ha-nginx-refresh.service", "/etc/systemd/system/rancher-ha-nginx-refresh.timer"]
    assert "Restart=always" in _user_data(run)["write_files"][2]["content"]
    eip = next(e for e in run.of_type("aws:ec2/eip:Eip") if e.name == "nginx-lb-address")
    assert f"--allocation-id {eip.outputs['allocationId']}" in _user_data(run)["write_files"][0]["content"]
    timer = _user_data(run)["write_files"][4]["content"]
    assert "OnUnitActiveSec=5min" in timer and "WantedBy=timers.target" in timer


def test_configuration_and_certificate_reach_nginx_through_ssm_only():
    run = cached_run(NGINX_L7)
    parameters = _parameters(run)
    assert {f"{DEV_PARAMETER_ROOT}/nginx/nginx.conf", f"{DEV_PARAMETER_ROOT}/nginx/tls.crt", f"{DEV_PARAMETER_ROOT}/nginx/tls.key"} <= set(parameters)
    key = parameters[f"{DEV_PARAMETER_ROOT}/nginx/tls.key"]
    assert key.inputs["type"] == "SecureString" and "value" in key.secret_inputs
    body = key.inputs["value"].strip().splitlines()[1]
    assert body not in base64.b64decode(_template(run).inputs["userData"]).decode()
    for ip in run.outputs["nodePrivateIps"].value:
        assert f"server {ip}:6443 max_fails=3 fail_timeout=5s;" in parameters[f"{DEV_PARAMETER_ROOT}/nginx/nginx.conf"].inputs["value"]
    refresh = _user_data(run)["write_files"][1]["content"]
    assert "fetch_parameter tls.key" in refresh and "fetch_parameter nginx.conf" in refresh and "nginx -t" in refresh
    (group,) = run.of_type("aws:autoscaling/group:Group")
    # The group does not wait for them (the instance boots while the servers are created);
    # its boot waits for them instead (rehearsed in test_first_boot with late parameters).
    assert not any(parameters[name].urn in group.dependencies for name in (f"{DEV_PARAMETER_ROOT}/nginx/nginx.conf", f"{DEV_PARAMETER_ROOT}/nginx/tls.key"))
    servers = {i.urn for i in run.of_type("aws:ec2/instance:Instance")}
    assert not servers & set(group.dependencies)


def test_the_instance_role_reads_its_parameters_and_moves_only_its_address():
    run = cached_run(NGINX_L7)
    role = next(p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.startswith("nginx-lb"))
    statements = {s["Sid"]: s for s in json.loads(role.inputs["policy"])["Statement"]}
    assert statements["ReadOwnParameters"]["Resource"] == f"arn:aws:ssm:eu-west-1:123456789012:parameter{DEV_PARAMETER_ROOT}/nginx/*"
    eip = next(e for e in run.of_type("aws:ec2/eip:Eip") if e.name == "nginx-lb-address")
    assert statements["TakeOverStackAddress"]["Resource"] == f"arn:aws:ec2:eu-west-1:123456789012:elastic-ip/{eip.outputs['allocationId']}"
    stack_id = DEV_PARAMETER_ROOT.removeprefix("/rancher-ha/")
    assert statements["OntoStackInstances"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/rancher-ha:stack-id": stack_id, "aws:ResourceTag/rancher-ha:role": "nginx"}
    }


def test_security_group_exposure():
    rules = rule_set(cached_run({**RKE2, **NGINX_L7}))
    world = {r for r in rules if r[4] == "0.0.0.0/0"}
    assert world == {("lb", "tcp", 80, 80, "0.0.0.0/0"), ("lb", "tcp", 443, 443, "0.0.0.0/0")}
    assert {r[4] for r in rules if r[0] == "lb" and r[2] == 6443} == {"203.0.113.0/24"}
    assert not [r for r in rules if r[0] == "lb" and r[2] == 9345]


def test_l4_nginx_has_no_certificate():
    run = cached_run(NGINX_L4)
    assert not [name for name in _parameters(run) if name.endswith(("tls.crt", "tls.key"))]
    config = _parameters(run)[f"{DEV_PARAMETER_ROOT}/nginx/nginx.conf"].inputs["value"]
    assert "ssl_certificate" not in config and "http {" not in config
    assert "listen 443;" in config and "listen 80;" in config and "listen 9345;" not in config


def test_worker_limits_are_configurable():
    run = cached_run({**NGINX_L7, "rancher-ha:nginxWorkerConnections": 16384, "rancher-ha:nginxWorkerRlimitNofile": 65536})
    config = _parameters(run)[f"{DEV_PARAMETER_ROOT}/nginx/nginx.conf"].inputs["value"]
    assert "worker_connections 16384;" in config and "worker_rlimit_nofile 65536;" in config
    default = _parameters(cached_run(NGINX_L7))[f"{DEV_PARAMETER_ROOT}/nginx/nginx.conf"].inputs["value"]
    assert "worker_connections 8192;" in default and "worker_rlimit_nofile 40000;" in default


def test_a_new_launch_template_version_makes_the_gate_wait_again():
    run = cached_run(NGINX_L7)
    (gate,) = run.of_type("pulumi-python:dynamic/rancher-ha:ApiGate")
    (template,) = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert gate.inputs["triggers"] == [f"{template.outputs['id']}:1"]
    (group,) = run.of_type("aws:autoscaling/group:Group")
    assert group.inputs["launchTemplate"] == {"id": template.outputs["id"], "version": "1"}


def test_l7_without_the_certificate_pair_is_refused():
    # Once, L7 without a pair stored None as the served tls.crt and tls.key.
    from components.nginx_lb import NginxLoadBalancerArgs

    common = dict(hostname="rancher.example.com", layer="l7", distribution="rke2", region="eu-west-1", node_private_ips=[],
                  subnet_ids=[], security_group_id="sg-1", address=None, instance_type="t3.small", imds_hop_limit=1,
                  worker_processes="auto", worker_connections=1024, worker_rlimit_nofile=4096, proxy_timeout_seconds=60,
                  parameter_root="/rancher-ha/dev/0123abcd", stack_id="dev/0123abcd")
    with pytest.raises(ValueError, match="certificate_pem and private_key_pem"):
        NginxLoadBalancerArgs(**common, certificate_pem="PEM")
    assert NginxLoadBalancerArgs(**common, certificate_pem="PEM", private_key_pem="KEY").tls_pair() == ("PEM", "KEY")
