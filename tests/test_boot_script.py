"""The node boot script, run for real (bash, python3, coreutils) in a temporary root."""

import shutil
import subprocess

import pytest
import yaml

from bootsim import mode, run_boot
from conftest import NGINX_L7, RKE2, cached_run
from helpers import server_instances
from rendering.node_config import CLUSTER_CA_FILES


def ssm_values(run, prefix="/rancher-ha/dev/node/"):
    return {p.inputs["name"]: p.inputs["value"] for p in run.of_type("aws:ssm/parameter:Parameter") if p.inputs["name"].startswith(prefix)}


def test_k3s_first_server_writes_config_and_ca(dev_run, tmp_path):
    parameters = ssm_values(dev_run)
    first = server_instances(dev_run)[0]
    result = run_boot(first.inputs["userData"], tmp_path, parameters)
    assert result.returncode == 0, result.stderr

    config_path = result.root / "etc/rancher/k3s/config.yaml"
    config = yaml.safe_load(config_path.read_text())
    assert config["token"] == parameters["/rancher-ha/dev/node/token"]
    assert config["datastore-endpoint"] == parameters["/rancher-ha/dev/node/datastore-endpoint"]
    assert config["tls-san"] == ["rancher.dev.example.com", dev_run.outputs["loadBalancerAddress"].value]
    assert config["write-kubeconfig-mode"] == "0600"
    assert config["datastore-cafile"] == "/etc/rancher/k3s/rds-ca-bundle.pem"
    assert mode(config_path) == "0o600"
    assert mode(result.root / "etc/rancher/k3s") == "0o700"

    tls = result.root / "var/lib/rancher/k3s/server/tls"
    for name in CLUSTER_CA_FILES:
        path = tls / name
        assert path.read_text().strip() == parameters[f"/rancher-ha/dev/node/tls/{name}"].strip()
        assert mode(path) == ("0o600" if name.endswith(".key") else "0o644")
    assert (result.root / "etc/rancher/k3s/rds-ca-bundle.pem").exists()

    installer_env = (result.state / "installer.env").read_text().split()
    assert installer_env == ["INSTALL_K3S_EXEC=server", "INSTALL_K3S_VERSION=v1.34.1+k3s1"]
    assert "snap install aws-cli --classic" in result.log
    assert (result.root / "var/lib/rancher-ha/bootstrap.done").exists()
    # Secrets were staged in a private directory and removed after the merge.
    assert not (result.root / "run/rancher-ha/config-secrets").exists()
    for secret in parameters.values():
        assert secret.strip() not in result.stderr and secret.strip() not in result.log


def test_waits_for_a_parameter_that_appears_late(dev_run, tmp_path):
    result = run_boot(
        server_instances(dev_run)[1].inputs["userData"], tmp_path, ssm_values(dev_run), env={"STUB_SSM_APPEAR_AFTER": "3"}
    )
    assert result.returncode == 0, result.stderr
    assert "waiting for SSM parameter /rancher-ha/dev/node/token (attempt 1 of 60)" in result.stderr
    assert "(attempt 2 of 60)" in result.stderr and "(attempt 3 of 60)" not in result.stderr
    assert yaml.safe_load((result.root / "etc/rancher/k3s/config.yaml").read_text())["token"]


def test_fails_clearly_when_a_parameter_never_appears(dev_run, tmp_path):
    parameters = ssm_values(dev_run)
    del parameters["/rancher-ha/dev/node/datastore-endpoint"]
    result = run_boot(server_instances(dev_run)[0].inputs["userData"], tmp_path, parameters, env={"RANCHER_HA_SSM_ATTEMPTS": "4"})
    assert result.returncode != 0
    assert (
        "SSM parameter /rancher-ha/dev/node/datastore-endpoint is still not readable after 4 attempts. "
        "Check that it exists in eu-west-1 and that the instance role may read /rancher-ha/dev/node/*."
    ) in result.stderr
    assert not (result.root / "etc/rancher/k3s/config.yaml").exists()
    assert not (result.state / "installer.env").exists()


def test_rke2_joining_server_waits_for_registration_then_starts(tmp_path):
    run = cached_run(RKE2)
    joiner = server_instances(run)[1]
    result = run_boot(joiner.inputs["userData"], tmp_path, ssm_values(run), env={"STUB_PING_OK_AFTER": "3"})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((result.root / "etc/rancher/rke2/config.yaml").read_text())
    lb = next(b for b in run.of_type("aws:lb/loadBalancer:LoadBalancer") if b.name == "registration-lb").outputs["dnsName"]
    assert config["server"] == f"https://{lb}:9345"
    assert config["token"] == ssm_values(run)["/rancher-ha/dev/node/token"]
    assert not (result.root / "var/lib/rancher/rke2/server/tls").exists()
    pings = [line for line in result.log.splitlines() if line.endswith(f"https://{lb}:9345/ping")]
    assert len(pings) == 3  # polled until it answered, then no more
    log = result.log
    assert log.index("/ping") < log.index("https://get.rke2.io") < log.index("systemctl enable --now rke2-server.service")
    assert (result.state / "installer.env").read_text().split() == ["INSTALL_RKE2_TYPE=server", "INSTALL_RKE2_VERSION=v1.34.1+rke2r1"]


def test_rke2_first_server_gets_the_ca_and_no_server_key(tmp_path):
    run = cached_run(RKE2)
    result = run_boot(server_instances(run)[0].inputs["userData"], tmp_path, ssm_values(run))
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((result.root / "etc/rancher/rke2/config.yaml").read_text())
    assert "server" not in config and config["ingress-controller"] == "ingress-nginx"
    assert (result.root / "var/lib/rancher/rke2/server/tls/etcd/peer-ca.key").exists()
    assert "/ping" not in result.log


def test_proxy_environment_reaches_installer_and_services(tmp_path):
    run = cached_run({**RKE2, **{"rancher-ha:proxyHttps": "http://proxy.corp.example:3128", "rancher-ha:natGateway": False}})
    result = run_boot(server_instances(run)[0].inputs["userData"], tmp_path, ssm_values(run))
    assert result.returncode == 0, result.stderr
    env_file = (result.root / "etc/default/rke2-server").read_text()
    assert "HTTPS_PROXY=http://proxy.corp.example:3128" in env_file
    assert "snap set system proxy.https=http://proxy.corp.example:3128" in result.log


def _scripts():
    stacks = {"k3s": {}, "rke2": RKE2, "rke2-proxy": {**RKE2, "rancher-ha:proxyHttp": "http://p.example:3128", "rancher-ha:natGateway": False}, "nginx-l7": NGINX_L7}
    for label, overrides in stacks.items():
        run = cached_run(overrides)
        for instance in run.of_type("aws:ec2/instance:Instance"):
            document = yaml.safe_load(instance.inputs["userData"])
            yield f"{label}/{instance.name}", document["write_files"][0]["content"], instance.inputs["userData"]


def _check_each(tmp_path, command, suffix, pick, accepted):
    """Run `command <file>` on every generated script or user data; return how many passed."""
    checked = 0
    for label, script, user_data in _scripts():
        path = tmp_path / (label.replace("/", "_") + suffix)
        path.write_text(pick(script, user_data))
        completed = subprocess.run([*command, str(path)], capture_output=True, text=True)
        assert accepted(completed), f"{label}:\n{completed.stdout}{completed.stderr}"
        checked += 1
    return checked


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)")
def test_shellcheck_passes_on_every_generated_script(tmp_path):
    checked = _check_each(tmp_path, ["shellcheck", "--severity=style"], ".sh", lambda script, _: script,
                          lambda completed: completed.returncode == 0)
    assert checked >= 9


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed (apt-get install cloud-init)")
def test_cloud_init_schema_accepts_every_user_data(tmp_path):
    checked = _check_each(tmp_path, ["cloud-init", "schema", "--config-file"], ".yaml", lambda _, user_data: user_data,
                          lambda completed: completed.returncode == 0 and "Valid cloud-config" in completed.stdout)
    assert checked >= 9


def test_cloud_init_schema_rejects_a_broken_document(tmp_path):
    if shutil.which("cloud-init") is None:
        pytest.skip("cloud-init is not installed (apt-get install cloud-init)")
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nwrite_files: {path: /x}\nruncmd: 5\n")
    completed = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert completed.returncode != 0
