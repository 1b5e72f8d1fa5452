"""Every stack file in stacks/ is valid and renders; the example names every setting."""

import re
from pathlib import Path

import pytest
import yaml

from offline.runner import STACKS_DIR, run_stack
from settings import stack_keys

STACKS = sorted(p.name.split(".")[1] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def test_expected_stacks_exist():
    assert {"dev", "staging", "prod", "example", "proxied"} <= set(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_runs(stack):
    run = run_stack(stack)
    assert run.outputs["rancherUrl"].value.startswith("https://")
    assert run.of_type("aws:ec2/instance:Instance")


def test_stack_choices():
    dev, staging, prod = (run_stack(name) for name in ("dev", "staging", "prod"))
    assert dev.outputs["distribution"].value == "k3s" and dev.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert staging.outputs["distribution"].value == "rke2" and not staging.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert prod.outputs["distribution"].value == "rke2" and prod.of_type("aws:s3/bucket:Bucket")
    assert all(r.protect for r in prod.of_type("aws:s3/bucket:Bucket"))


def test_example_mentions_every_setting():
    text = (STACKS_DIR / "Pulumi.example.yaml").read_text()
    mentioned = set(re.findall(r"rancher-ha:([A-Za-z0-9]+):", text))
    assert mentioned == set(stack_keys())


def test_stack_files_use_known_keys_only():
    for stack in STACKS:
        config = yaml.safe_load((STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key in config:
            namespace, name = key.split(":", 1)
            assert namespace in ("aws", "rancher-ha"), key
            if namespace == "rancher-ha":
                assert name in stack_keys(), key


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "example"])
def test_deployable_stacks_pin_the_versions_they_run(stack):
    """A stack that took a version from the program's defaults would be upgraded by the
    first `pulumi up` of a release that moves the default (components/upgrades.py acts on
    the setting's value, wherever it came from). The shipped stacks pin both versions."""
    config = yaml.safe_load((STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    missing = [key for key in ("rancher-ha:kubernetesVersion", "rancher-ha:rancherVersion") if key not in config]
    assert missing == [], f"stacks/Pulumi.{stack}.yaml leaves {missing} to the program's defaults"
