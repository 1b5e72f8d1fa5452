"""The offline render: every stack, its files, byte-identical reruns, bad stacks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from offline.runner import STACKS_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
STACKS = sorted(p.name.split(".")[1] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def render(out: Path, *args: str, seed: str = "0") -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run([sys.executable, "-m", "tools.render", *args, "--out", str(out)], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render")
    result = render(out, "--all", seed="1")
    assert result.returncode == 0, result.stderr
    return out


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_every_stack_renders_its_files(rendered):
    for stack in STACKS:
        folder = rendered / stack
        assert (folder / "summary.md").is_file() and (folder / "resources.yaml").is_file()
        resources = yaml.safe_load((folder / "resources.yaml").read_text())
        instances = [r for r in resources if r["type"] == "aws:ec2/instance:Instance"]
        assert instances and all((folder / "user-data" / f"{r['name']}.yaml").is_file() for r in instances)
        servers = [r for r in instances if "-server-" in r["name"]]
        assert all((folder / "node-config" / f"{r['name']}.yaml").is_file() for r in servers)
        assert (folder / "helm" / "rancher.values.yaml").is_file()
        assert all(r["parent"] != "stack" for r in resources if not r["component"])
        summary = (folder / "summary.md").read_text()
        assert "## What the internet can reach" in summary and "## Resources by type" in summary


def test_stack_specific_files(rendered):
    assert (rendered / "staging" / "nginx" / "nginx.conf").is_file()
    assert "listen 443 ssl http2;" in (rendered / "staging" / "nginx" / "nginx.conf").read_text()
    assert not (rendered / "dev" / "nginx").exists()
    node = yaml.safe_load((rendered / "prod" / "node-config" / "rancher-server-1.yaml").read_text())
    assert node["server"].endswith(":9345") and node["etcd-s3"] is True
    values = yaml.safe_load((rendered / "staging" / "helm" / "rancher.values.yaml").read_text())
    assert values["tls"] == "external" and values["bootstrapPassword"] == "[secret]"


def test_secrets_are_redacted(rendered):
    for stack in STACKS:
        resources = (rendered / stack / "resources.yaml").read_text()
        assert "PRIVATE KEY-----\n" not in resources
        parameters = [r for r in yaml.safe_load(resources) if r["type"] == "aws:ssm/parameter:Parameter"]
        assert parameters and all(p["inputs"]["value"] == "[secret]" for p in parameters)
        for path in (rendered / stack).rglob("*"):
            if path.is_file():
                text = path.read_text()
                assert "mysql://k3s:" not in text.replace("mysql://k3s:[secret]", "")


def test_a_second_run_is_byte_identical(rendered, tmp_path):
    result = render(tmp_path, "--all", seed="12345")
    assert result.returncode == 0, result.stderr
    for stack in STACKS:
        assert _tree(tmp_path / stack) == _tree(rendered / stack), stack


def test_a_bad_stack_exits_non_zero_with_the_message(tmp_path):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    bad = yaml.safe_load((STACKS_DIR / "Pulumi.dev.yaml").read_text())
    bad["config"]["rancher-ha:distribution"] = "rke"
    (stacks / "Pulumi.dev.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, "-m", "tools.render", "dev", "--stacks-dir", str(stacks), "--out", str(tmp_path / "out")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "rancher-ha:distribution = 'rke': RKE1 reached end of life on 2025-07-31" in result.stderr
    assert not (tmp_path / "out" / "dev").exists()


def test_unknown_stack(tmp_path):
    result = render(tmp_path, "no-such-stack")
    assert result.returncode == 2 and "no stack file" in result.stderr
