"""Generate the settings documentation from the settings model.

`python -m tools.settings_docs table` prints the README table,
`python -m tools.settings_docs errors` the README's example of a stack with mistakes and
what one run reports for it, and `python -m tools.settings_docs project` the `config:`
block of Pulumi.yaml; the tests compare each with the committed files, so none can
drift from the model. `python -m tools.settings_docs readme` rewrites the README's two
generated blocks (between their `<!-- settings-...:start/end -->` markers).
"""

from __future__ import annotations

import sys
import typing
from typing import Any

from pydantic_core import PydanticUndefined

from settings import Settings, stack_keys
from tools import readme_blocks

PROJECT = "rancher-ha"


def _python_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    arguments = [argument for argument in typing.get_args(annotation) if argument is not type(None)]
    if origin is typing.Union and len(arguments) == 1:
        return _python_type(arguments[0])
    if origin is list:
        return "array"
    if origin is typing.Literal:
        return "string"
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    return "string"


def _static_default(info: Any) -> Any:
    if info.default is not PydanticUndefined and info.default is not None:
        return info.default
    if info.default_factory is not None:
        return info.default_factory()
    return PydanticUndefined


def rows() -> list[dict[str, Any]]:
    result = []
    for key, info in stack_keys().items():
        extra = info.json_schema_extra or {}
        default = _static_default(info)
        if "default_doc" in extra:
            default_text = extra["default_doc"]
        elif default is PydanticUndefined:
            default_text = "required"
        else:
            default_text = f"`{default}`"
        result.append(
            {
                "key": key,
                "type": _python_type(info.annotation),
                "default": default,
                "default_text": default_text,
                "derived": "default_doc" in extra,
                "required": info.is_required() and "default_doc" not in extra,
                "secret": key == "tlsPrivateKey",
                "description": info.description,
                "validation": extra["validation"],
            }
        )
    return result


def table() -> str:
    lines = [
        "| Setting | Type | Default | Validation | What it does |",
        "|---|---|---|---|---|",
    ]
    for row in rows():
        lines.append(
            f"| `{row['key']}` | {row['type']} | {row['default_text']} | {row['validation']} | {row['description']} |"
        )
    return "\n".join(lines) + "\n"


# A stack file with one mistake of each kind: a foreign namespace, an unknown key, two
# settings wrong on their own, and a combination that cannot work.
EXAMPLE_MISTAKES: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "rancherha:distribution": "rke2",
    "rancher-ha:hostname": "rancher.example.com",
    "rancher-ha:hostedZone": "example.com",
    "rancher-ha:serverCont": 3,
    "rancher-ha:serverInstanceType": "t3.24xlarge",
    "rancher-ha:loadBalancerType": "alb",
    "rancher-ha:adminCidrs": ["0.0.0.0/0"],
}


def errors_example() -> str:
    """The example stack file and the one report its validation gives, as README text."""
    import yaml

    from settings import SettingsError, settings_from_config

    try:
        settings_from_config(EXAMPLE_MISTAKES, stack="dev")
    except SettingsError as error:
        report = str(error)
    else:  # pragma: no cover - the example must fail
        raise AssertionError("EXAMPLE_MISTAKES validates")
    stack_file = yaml.safe_dump({"config": EXAMPLE_MISTAKES}, sort_keys=False, width=1000)
    return f"```yaml\n# stacks/Pulumi.dev.yaml\n{stack_file}```\n\n```\n{report}\n```\n"


README_BLOCKS = {"settings-table": table, "settings-errors": errors_example}


def readme_block(readme: str, name: str) -> str:
    return readme_blocks.block(readme, name)


def rewrite_readme(readme: str) -> str:
    return readme_blocks.rewrite(readme, README_BLOCKS)


def project_config() -> dict[str, Any]:
    """Declared keys: fixed defaults (typed, defaulted) and required keys (typed, no default)."""
    config: dict[str, Any] = {}
    for row in rows():
        if row["derived"] or (row["default"] is PydanticUndefined and not row["required"]):
            continue
        entry: dict[str, Any] = {"type": row["type"], "description": row["description"]}
        if row["type"] == "array":
            entry["items"] = {"type": "string"}
        if row["default"] is not PydanticUndefined:
            entry["default"] = row["default"]
        config[f"{PROJECT}:{row['key']}"] = entry
    return config


def undeclared_keys() -> list[str]:
    declared = {key.split(":", 1)[1] for key in project_config()}
    return [row["key"] for row in rows() if row["key"] not in declared]


def main(argv: list[str]) -> int:
    import yaml

    if argv[1:] == ["table"]:
        sys.stdout.write(table())
    elif argv[1:] == ["errors"]:
        sys.stdout.write(errors_example())
    elif argv[1:] == ["readme"]:
        from pathlib import Path

        path = Path(__file__).resolve().parents[1] / "README.md"
        path.write_text(rewrite_readme(path.read_text()))
    elif argv[1:] == ["project"]:
        sys.stdout.write(yaml.safe_dump({"config": project_config()}, sort_keys=False, width=1000))
        sys.stdout.write("# Not declared (optional, or derived from other settings): " + ", ".join(undeclared_keys()) + "\n")
    else:
        sys.stderr.write("usage: python -m tools.settings_docs table|errors|readme|project\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
