"""Documentation that cannot drift: the README settings table and Pulumi.yaml."""

import re
from pathlib import Path

import yaml

from tools import settings_docs

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_readme_settings_table_matches_the_model():
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", readme, re.S)
    assert match, "README.md lost its settings table markers"
    assert match.group(1) == settings_docs.table(), "regenerate with: python -m tools.settings_docs table"


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
