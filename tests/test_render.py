"""The offline render: every stack, its files, byte-identical reruns, bad stacks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from offline.runner import STACKS_DIR, run_stack
from rendering.cloud_init import BASE_CONFIG_PATH as BASE_CONFIG, BOOTSTRAP_PATH

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
        assert instances and all((folder / "machines" / r["name"] / "user-data.yaml").is_file() for r in instances)
        servers = [r for r in instances if "-server-" in r["name"]]
        assert all((folder / "machines" / r["name"] / "files" / BASE_CONFIG.lstrip("/")).is_file() for r in servers)
        assert (folder / "helm" / "rancher.values.yaml").is_file()
        assert all(r["parent"] != "stack" for r in resources if not r["component"])
        summary = (folder / "summary.md").read_text()
        assert "## What the internet can reach" in summary and "## Resources by type" in summary


def test_stack_specific_files(rendered):
    assert (rendered / "staging" / "nginx" / "nginx.conf").is_file()
    assert "listen 443 ssl http2;" in (rendered / "staging" / "nginx" / "nginx.conf").read_text()
    assert not (rendered / "dev" / "nginx").exists()
    node = yaml.safe_load((rendered / "prod" / "machines" / "rancher-server-1" / "files" / BASE_CONFIG.lstrip("/")).read_text())
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


# -- what a reviewer reads: the files each machine receives, and which values are mocks ---------
def test_each_file_a_machine_receives_is_its_own_readable_file(rendered):
    """Shell as shell (bash parses it), YAML as YAML, and cloud-init's layout points at them."""
    for stack in STACKS:
        machines = sorted((rendered / stack / "machines").iterdir())
        assert machines, stack
        for machine in machines:
            layout = yaml.safe_load((machine / "user-data.yaml").read_text())
            paths = [entry["path"] for entry in layout["write_files"]]
            assert BOOTSTRAP_PATH in paths and layout["runcmd"] == [[BOOTSTRAP_PATH]]
            for entry in layout["write_files"]:
                assert entry["content"] == f"see files{entry['path']}"
                assert (machine / "files" / entry["path"].lstrip("/")).is_file(), (machine, entry["path"])
            script = machine / "files" / BOOTSTRAP_PATH.lstrip("/")
            assert script.read_text().startswith("#!/bin/bash\n")
            assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
            base = machine / "files" / BASE_CONFIG.lstrip("/")
            if base.exists():
                assert isinstance(yaml.safe_load(base.read_text()), dict)


def _changed_lines(old: Path, new: Path) -> dict[str, list[str]]:
    import difflib

    before, after = _tree(old), _tree(new)
    changed = {}
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            diff = difflib.unified_diff(before.get(name, b"").decode().splitlines(), after.get(name, b"").decode().splitlines(), lineterm="")
            changed[name] = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    return changed


def test_a_one_line_template_change_is_a_one_line_diff_per_machine(tmp_path, monkeypatch):
    """The issue's example: `--max-time 20` -> `30` in one template changes one line of each
    machine's boot script in the render, and nothing else."""
    import jinja2

    from rendering import templating
    from tools.render import render as render_run

    render_run(run_stack("prod"), tmp_path / "before")
    source = (templating.TEMPLATE_DIR / "ssm.sh.j2").read_text()
    assert source.count("--max-time 20") == 1
    patched = templating.environment().overlay(
        loader=jinja2.ChoiceLoader([jinja2.DictLoader({"ssm.sh.j2": source.replace("--max-time 20", "--max-time 30")}),
                                    templating.environment().loader])
    )
    monkeypatch.setattr(templating, "environment", lambda: patched)
    render_run(run_stack("prod"), tmp_path / "after")

    changed = _changed_lines(tmp_path / "before", tmp_path / "after")
    servers = sorted(p.name for p in (tmp_path / "after" / "machines").iterdir())
    assert set(changed) == {f"machines/{server}/files{BOOTSTRAP_PATH}" for server in servers}, sorted(changed)
    for lines in changed.values():
        assert len(lines) == 2 and lines[0].startswith("-") and "--max-time 20" in lines[0] and "--max-time 30" in lines[1]


def test_values_the_mocks_invented_are_marked_wherever_they_appear(rendered):
    import re

    for stack in STACKS:
        invented = run_stack(stack).mock_values
        assert invented, stack
        summary = (rendered / stack / "summary.md").read_text()
        address = re.search(r"^\| loadBalancerAddress \| (.*) \|$", summary, re.M).group(1)
        assert address.startswith("«mock:") and address.endswith("»"), address
        for path in (rendered / stack).rglob("*"):
            if path.is_file():
                unmarked = re.sub(r"«mock:[^»]*»", "", path.read_text())
                left = sorted(value for value in invented if value in unmarked)
                assert not left, (path, left[:5])


def test_values_the_program_chose_are_not_marked(rendered):
    summary = (rendered / "dev" / "summary.md").read_text()
    assert "| rancherUrl | https://rancher.dev.example.com |" in summary
    assert "| kubernetesApiUrl | https://api.rancher.dev.example.com:6443 |" in summary
