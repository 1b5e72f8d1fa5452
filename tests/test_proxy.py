"""Proxy mode: nodes, containerd, installers, Rancher and cert-manager all use the proxy,
and NO_PROXY always carries what must stay direct."""

import pytest
import yaml

from conftest import PROXY, RKE2, cached_run
from helpers import server_instances, written_file
from offline.runner import run_stack

PROXY_URL = "http://proxy.corp.example:3128"
# 10.20.0.0/16: the existing VPC's own CIDR (from AWS), not the vpcCidr setting.
REQUIRED_NO_PROXY = {"10.42.0.0/16", "10.43.0.0/16", "10.20.0.0/16", ".svc", ".cluster.local", "rancher.dev.example.com",
                     "169.254.169.254", "127.0.0.0/8", "localhost", "git.corp.example"}


@pytest.mark.parametrize("distribution, env_path", [({}, "/etc/default/k3s"), (RKE2, "/etc/default/rke2-server")])
def test_node_environment_files(distribution, env_path):
    run = cached_run({**distribution, **PROXY})
    for instance in server_instances(run):
        lines = written_file(instance, env_path)["content"].splitlines()
        values = dict(line.split("=", 1) for line in lines)
        for prefix in ("", "CONTAINERD_"):
            assert values[f"{prefix}HTTP_PROXY"] == PROXY_URL and values[f"{prefix}HTTPS_PROXY"] == PROXY_URL
            assert REQUIRED_NO_PROXY <= set(values[f"{prefix}NO_PROXY"].split(","))
        script = written_file(instance, "/usr/local/sbin/rancher-ha-bootstrap")["content"]
        assert f"snap set system proxy.http={PROXY_URL} proxy.https={PROXY_URL}" in script


def test_rancher_and_cert_manager_values_carry_the_proxy():
    run = cached_run(PROXY)
    releases = {r.inputs["name"]: r.inputs["values"] for r in run.of_type("kubernetes:helm.sh/v3:Release")}
    rancher = releases["rancher"]
    assert rancher["proxy"] == PROXY_URL
    assert REQUIRED_NO_PROXY <= set(rancher["noProxy"].split(","))
    cert_manager = releases["cert-manager"]
    assert cert_manager["http_proxy"] == PROXY_URL and cert_manager["https_proxy"] == PROXY_URL
    assert REQUIRED_NO_PROXY <= set(cert_manager["no_proxy"].split(","))
    assert cert_manager["crds"] == {"enabled": True}


def test_private_nodes_in_an_existing_vpc_without_nat_or_public_addresses():
    run = cached_run(PROXY)
    assert run.of_type("aws:ec2/natGateway:NatGateway") == [] and run.of_type("aws:ec2/vpc:Vpc") == []
    assert run.of_type("aws:ec2/routeTable:RouteTable") == [] and run.of_type("aws:ec2/route:Route") == []
    assert all(i.inputs["associatePublicIpAddress"] is False for i in server_instances(run))


def test_no_proxy_without_proxy_mode(dev_run):
    releases = {r.inputs["name"]: r.inputs["values"] for r in dev_run.of_type("kubernetes:helm.sh/v3:Release")}
    assert "proxy" not in releases["rancher"] and "http_proxy" not in releases["cert-manager"]
    for instance in server_instances(dev_run):
        paths = [f["path"] for f in yaml.safe_load(instance.inputs["userData"])["write_files"]]
        assert "/etc/default/k3s" not in paths


def test_the_documented_proxy_stack():
    run = run_stack("proxied")
    values = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "rancher").inputs["values"]
    assert values["proxy"] == "http://proxy.corp.example.net:3128"
    assert {".corp.example.net", "10.10.0.0/16", "rancher.corp.example.net"} <= set(values["noProxy"].split(","))
    assert run.of_type("aws:ec2/natGateway:NatGateway") == []
    # Private mode: internal load balancer, records in the private hosted zone.
    (balancer,) = run.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert balancer.inputs["internal"] is True
    assert balancer.inputs["subnets"] == ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]
