"""Live end-to-end: a throwaway stack in a real AWS account, through the Automation API.

Runs only when the Pulumi CLI, AWS credentials and a hosted zone are present
(RANCHER_HA_LIVE_ZONE=example.com; optional RANCHER_HA_LIVE_REGION, PULUMI_BACKEND_URL,
PULUMI_CONFIG_PASSPHRASE). It creates the stack, checks https://<hostname>/ping and
the Kubernetes API through the load balancer, and destroys the stack, also on failure.
Manually triggered in CI by .github/workflows/live-e2e.yml.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ZONE = os.environ.get("RANCHER_HA_LIVE_ZONE")
REGION = os.environ.get("RANCHER_HA_LIVE_REGION", "eu-west-1")
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def missing() -> str | None:
    if shutil.which("pulumi") is None:
        return "the Pulumi CLI is not installed"
    if not any(os.environ.get(name) for name in CREDENTIAL_VARIABLES):
        return "no AWS credentials in the environment (" + ", ".join(CREDENTIAL_VARIABLES) + ")"
    if not ZONE:
        return "RANCHER_HA_LIVE_ZONE (a Route53 public hosted zone) is not set"
    return None


pytestmark = [pytest.mark.live, pytest.mark.skipif(missing() is not None, reason=f"live test: {missing()}")]


def _eventually(check, timeout: float, interval: float = 15):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            return check()
        except Exception as error:  # noqa: BLE001 - retried until the deadline, then re-raised
            last = error
            time.sleep(interval)
    raise AssertionError(f"gave up after {timeout:.0f}s: {last}")


def _ping(hostname: str) -> str:
    # Rancher's own CA issued this certificate; /ping is about reachability, not trust.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(f"https://{hostname}/ping", context=context, timeout=10) as response:
        return response.read().decode().strip()


def _api_version(kubeconfig_text: str, directory: Path) -> dict:
    import json

    config = yaml.safe_load(kubeconfig_text)
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    cert, key = directory / "admin.crt", directory / "admin.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    key.chmod(0o600)
    context = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    context.load_cert_chain(cert, key)
    with urllib.request.urlopen(f"{cluster['server']}/version", context=context, timeout=10) as response:
        return json.loads(response.read())


def test_live_stack_up_ping_api_destroy(tmp_path):
    from pulumi import automation as auto

    name = f"live-{uuid.uuid4().hex[:8]}"
    hostname = f"{name}.{ZONE}"
    work = tmp_path / "project"
    shutil.copytree(REPO_ROOT, work, ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "render", "__pycache__"))
    if (REPO_ROOT / ".venv").is_dir():
        (work / ".venv").symlink_to(REPO_ROOT / ".venv")
    my_address = urllib.request.urlopen("https://checkip.amazonaws.com", timeout=10).read().decode().strip()
    environment = {
        "PULUMI_BACKEND_URL": os.environ.get("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}"),
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", "live-e2e-throwaway"),
    }
    (tmp_path / "state").mkdir()
    stack = auto.create_stack(stack_name=name, work_dir=str(work), opts=auto.LocalWorkspaceOptions(env_vars=environment))
    try:
        stack.set_all_config(
            {
                "aws:region": auto.ConfigValue(REGION),
                "rancher-ha:environment": auto.ConfigValue("dev"),
                "rancher-ha:hostname": auto.ConfigValue(hostname),
                "rancher-ha:hostedZone": auto.ConfigValue(ZONE),
                "rancher-ha:serverInstanceType": auto.ConfigValue("t3.large"),
                "rancher-ha:dbInstanceClass": auto.ConfigValue("db.t4g.small"),
            }
        )
        # adminCidrs is typed as an array in Pulumi.yaml: set it structurally.
        stack.set_config("rancher-ha:adminCidrs[0]", auto.ConfigValue(f"{my_address}/32"), path=True)
        result = stack.up(on_output=print, color="never")
        outputs = result.outputs
        assert outputs["rancherUrl"].value == f"https://{hostname}"
        assert _eventually(lambda: _ping(hostname), timeout=900) == "pong"
        version = _eventually(lambda: _api_version(outputs["kubeconfig"].value, tmp_path), timeout=120)
        assert version["gitVersion"].startswith("v1.")
    finally:
        stack.destroy(on_output=print, color="never")
        stack.workspace.remove_stack(name)
