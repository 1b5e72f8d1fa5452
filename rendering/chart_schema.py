"""Validate Rancher Helm values the way Helm does: chart defaults deep-merged with ours,
checked against the chart's values.schema.json, plus a check that every key we set
exists in the chart (the schema alone does not forbid unknown keys)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

from .ha_values import HelmValues, deep_merge, is_helm_values

# A copy of shared/reference/rancher-chart, so renders validate without the shared tree
# (tests check the copy is identical where shared/ exists).
REFERENCE_ROOT = Path(__file__).resolve().parents[1] / "reference" / "rancher-chart"
# Keys the chart reads but documents only as comments in values.yaml.
COMMENTED_KEY = re.compile(r"^#\s?([A-Za-z][A-Za-z0-9]*):")


def chart_dir(rancher_version: str, root: Path = REFERENCE_ROOT) -> Path:
    return root / f"v{rancher_version}"


def known_keys(values_yaml: str) -> tuple[HelmValues, set[str]]:
    defaults: HelmValues = yaml.safe_load(values_yaml) or {}
    commented = {match.group(1) for line in values_yaml.splitlines() if (match := COMMENTED_KEY.match(line))}
    return defaults, commented


def unknown_keys(values: HelmValues, defaults: HelmValues, commented_top_level: set[str], path: str = "") -> list[str]:
    problems: list[str] = []
    for key, value in values.items():
        here = f"{path}{key}"
        if key not in defaults:
            if not path and key in commented_top_level:
                continue
            # Free-form maps in the chart (annotations, email under letsEncrypt) accept any key.
            if path.endswith(("extraAnnotations.", "annotations.")) or here in ("letsEncrypt.email",):
                continue
            problems.append(here)
        elif is_helm_values(value) and is_helm_values(default := defaults[key]) and default:
            problems.extend(unknown_keys(value, default, commented_top_level, here + "."))
    return problems


def _kind(value: object) -> str:
    # Pulumi carries every number as a double: 2.0 is the integer 2 on the wire, and
    # JSON Schema (like Helm's validator) treats it as one.
    if isinstance(value, float) and value.is_integer():
        return "int"
    return type(value).__name__


def type_mismatches(values: HelmValues, defaults: HelmValues, path: str = "") -> list[str]:
    """Keys whose value type differs from the chart default's (e.g. replicas as "3")."""
    problems: list[str] = []
    for key, value in values.items():
        default = defaults.get(key)
        here = f"{path}{key}"
        if default is None or value is None:
            continue
        if is_helm_values(default) and is_helm_values(value):
            problems.extend(type_mismatches(value, default, here + "."))
        elif _kind(default) != _kind(value) and not (is_helm_values(default) and not default):
            problems.append(f"{here}: chart default is {_kind(default)}, got {_kind(value)}")
    return problems


def validate_rancher_values(values: HelmValues, rancher_version: str, root: Path = REFERENCE_ROOT) -> list[str]:
    """Return the problems Helm (or the chart) would have with these values; [] when valid."""
    directory = chart_dir(rancher_version, root)
    values_yaml = (directory / "values.yaml").read_text()
    schema = json.loads((directory / "values.schema.json").read_text())
    defaults, commented = known_keys(values_yaml)
    merged = deep_merge(defaults, values)
    validator = jsonschema.Draft202012Validator(schema)
    # types-jsonschema's iter_errors keeps a deprecated overload with an unannotated parameter.
    errors = validator.iter_errors(merged)  # pyright: ignore[reportUnknownMemberType]
    problems = [f"{'.'.join(map(str, error.path)) or '<root>'}: {error.message}" for error in errors]
    problems += [f"{key}: not a value of the rancher chart {rancher_version}" for key in unknown_keys(values, defaults, commented)]
    problems += type_mismatches(values, defaults)
    return problems
