"""Documentation that cannot drift: the README settings table and Pulumi.yaml."""

import re
from pathlib import Path

import yaml

from tools import settings_docs

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_readme_settings_table_matches_the_model():
    readme = (REPO_ROOT / "README.md").read_text()
    assert settings_docs.readme_block(readme, "settings-table") == settings_docs.table(), "regenerate with: python -m tools.settings_docs readme"


def test_readme_example_of_a_stack_with_mistakes_is_what_one_run_reports():
    readme = (REPO_ROOT / "README.md").read_text()
    block = settings_docs.readme_block(readme, "settings-errors")
    assert block == settings_docs.errors_example(), "regenerate with: python -m tools.settings_docs readme"
    # One run, one mistake of each kind, each reported with a fix.
    reported = block.split("Invalid stack configuration:\n", 1)[1].splitlines()[:-1]
    assert len(reported) == 5 and all("Fix:" in line for line in reported), reported


def test_readme_writer_rewrites_only_the_generated_blocks():
    readme = (REPO_ROOT / "README.md").read_text()
    assert settings_docs.rewrite_readme(readme) == readme
    stale = readme.replace("| `hostname` | string | required |", "| `hostname` | string | optional |")
    assert stale != readme and settings_docs.rewrite_readme(stale) == readme


def test_readme_says_where_helm_comes_from_as_bootstrap_pins_it():
    readme = (REPO_ROOT / "README.md").read_text()
    bootstrap = (REPO_ROOT / "scripts" / "bootstrap.sh").read_text()
    pins = dict(re.findall(r'^(HELM_VERSION|HELM_WHEEL|HELM_SHA256)="([^"]+)"$', bootstrap, re.M))
    assert set(pins) == {"HELM_VERSION", "HELM_WHEEL", "HELM_SHA256"}
    assert f"helm {pins['HELM_VERSION']}" in readme
    assert f"`{pins['HELM_WHEEL']}`" in readme and "`HELM_SHA256`" in readme
    assert "a real helm from PyPI" not in readme


def test_the_readme_way_to_start_a_stack_works(tmp_path):
    from offline.runner import stack_config
    from settings import settings_from_config

    readme = (REPO_ROOT / "README.md").read_text()
    command = re.search(r"`cp stacks/Pulumi\.([\w-]+)\.yaml stacks/Pulumi\.([\w-]+)\.yaml && pulumi stack init ([\w-]+)`", readme)
    assert command, "README.md lost its instruction to start a stack"
    source, copy, stack = command.groups()
    assert copy == stack and stack not in ("dev", "staging", "prod")
    (tmp_path / f"Pulumi.{copy}.yaml").write_text((REPO_ROOT / "stacks" / f"Pulumi.{source}.yaml").read_text())
    copied = settings_from_config(stack_config(stack, tmp_path), stack=stack)
    assert copied == settings_from_config(stack_config(source), stack=source)


def test_readme_table_has_every_setting():
    table = settings_docs.table()
    for row in settings_docs.rows():
        assert f"| `{row['key']}` |" in table


def test_pulumi_yaml_config_matches_the_model():
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "rancher-ha" and project["stackConfigDir"] == "stacks"
    assert project["runtime"]["name"] == "python"
    # Older CLIs silently ignore replacement_trigger: certificates would never renew; the
    # minimum is the engine the offline plan models (tests/test_plan_engine.py).
    assert project["requiredPulumiVersion"] == ">=3.260.0"
    assert project["config"] == settings_docs.project_config(), "regenerate with: python -m tools.settings_docs project"
    # The text too, comments included: the "Not declared" line names today's settings, once.
    text = (REPO_ROOT / "Pulumi.yaml").read_text()
    generated = yaml.safe_dump({"config": settings_docs.project_config()}, sort_keys=False, width=1000)
    assert text[text.index("\nconfig:\n") + 1:].startswith(generated), "regenerate with: python -m tools.settings_docs project"
    undeclared = [line for line in text.splitlines() if line.startswith("# Not declared")]
    assert undeclared == ["# Not declared (optional, or derived from other settings): " + ", ".join(settings_docs.undeclared_keys())]


def test_pulumi_yaml_defaults_are_what_the_program_uses():
    from settings import Settings

    declared = settings_docs.project_config()
    for key, entry in declared.items():
        field = next(info for info in Settings.model_fields.values() if info.alias == key.split(":", 1)[1])
        if "default" in entry:
            default = field.default if field.default_factory is None else field.default_factory()
            assert entry["default"] == default, key
        else:
            assert field.is_required(), key


def test_readme_names_the_two_setup_commands_and_ci_uses_the_test_one():
    readme = (REPO_ROOT / "README.md").read_text()
    head = readme[: readme.index("## What it builds")]
    assert "bash scripts/render.sh dev" in head and "bash scripts/test.sh" in head
    assert "bash scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()


# --- the benchmarks' figures in the README are their output --------------------------

def test_readme_failure_model_figures_are_the_models_output():
    from tools import benchmark_docs

    readme = (REPO_ROOT / "README.md").read_text()
    assert benchmark_docs.block(readme, "failure-model") == benchmark_docs.failure_model_block(), (
        "regenerate with: python -m tools.benchmark_docs"
    )


def test_readme_l7_overhead_figures_are_the_recorded_run():
    import json

    from tools import benchmark_docs

    readme = (REPO_ROOT / "README.md").read_text()
    record = json.loads(benchmark_docs.L7_RECORD.read_text())
    assert benchmark_docs.block(readme, "l7-overhead") == benchmark_docs.l7_block(record), (
        "regenerate with: python -m tools.benchmark_docs"
    )
    # The record is the benchmark's own: the command that writes it, both paths measured.
    assert record["command"].startswith("benchmarks/l7_overhead.py ") and record["command"].endswith(" --record")
    for path in ("direct", "through_l7_nginx"):
        assert record[path]["requests_per_second"] > 0 and record[path]["p99_ms"] > 0


def test_benchmark_docs_writer_restores_a_changed_cell():
    from tools import benchmark_docs

    readme = (REPO_ROOT / "README.md").read_text()
    changed = readme.replace("| zone eu-west-1a lost | degraded (≤60 s", "| zone eu-west-1a lost | degraded (≤30 s", 1)
    assert changed != readme
    assert benchmark_docs.block(changed, "failure-model") != benchmark_docs.failure_model_block()
    assert benchmark_docs.rewrite(changed) == readme
