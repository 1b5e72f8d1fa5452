"""Read a stack's configuration from Pulumi and turn it into `Settings`.

All validation failures are collected into one `SettingsError` whose lines each say
`<key> = <value>: <what is wrong>. Fix: <what to do>`, so a bad stack file is fixed in
one pass instead of one `pulumi up` per mistake.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Mapping

from pydantic import ValidationError

from .model import ENVIRONMENTS, Settings

PROJECT = "rancher-ha"
SECRET_KEYS = {"tlsPrivateKey", "restoreEncryptionKey"}


class SettingsError(Exception):
    """A stack configuration that cannot produce a working deployment."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "Invalid stack configuration:\n" + "\n".join(f"  - {line}" for line in problems)
        )


def stack_keys() -> dict[str, Any]:
    """Stack key (camelCase) -> field info, for every setting a stack file may hold."""
    return {info.alias: info for info in Settings.model_fields.values() if info.alias != "region"}


def _decode(key: str, raw: Any) -> Any:
    # Pulumi hands structured values (lists, numbers, booleans) to the program as JSON
    # text; plain strings arrive as they are.
    if not isinstance(raw, str):
        return raw
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw
    # A string that happens to be valid JSON ("8.4", "2") stays text where text is expected.
    annotation = Settings.model_fields[_field_name(key)].annotation
    if annotation in (str, "str") or str(annotation) in ("typing.Optional[str]", "Optional[str]"):
        return raw
    return decoded


def _field_name(alias: str) -> str:
    for name, info in Settings.model_fields.items():
        if info.alias == alias:
            return name
    raise KeyError(alias)


def _redact(key: str, value: Any) -> Any:
    return "[secret]" if key in SECRET_KEYS else value


def settings_from_values(
    values: Mapping[str, Any], stack: str, region: str | None
) -> Settings:
    """Validate raw `<key>: value` pairs (without the project prefix)."""
    known = stack_keys()
    problems: list[str] = []
    data: dict[str, Any] = {}
    for key, raw in sorted(values.items()):
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f"Did you mean '{close[0]}'?" if close else "See the settings table in README.md."
            problems.append(
                f"{PROJECT}:{key} = {_redact(key, raw)!r}: is not a setting of this program. Fix: {hint}"
            )
            continue
        data[key] = _decode(key, raw)

    if "environment" not in data and stack in ENVIRONMENTS:
        data["environment"] = stack
    if region is not None:
        data["region"] = region
    if problems:
        raise SettingsError(problems)

    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise SettingsError(_explain(error, data)) from None


def _explain(error: ValidationError, data: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if not location:
            # Cross-field checks already say "<key> = <value>: ..." per line.
            lines.extend(message.splitlines())
            continue
        key = location[0]
        prefix = "aws:" if key == "region" else f"{PROJECT}:"
        value = _redact(key, data.get(key, item.get("input")))
        if item["type"] == "missing":
            lines.append(f"{prefix}{key} is required but not set. Fix: {_missing_fix(key)}")
        elif item["type"] in ("literal_error", "enum"):
            lines.append(f"{prefix}{key} = {value!r}: {message}. Fix: use one of the listed values")
        elif item["type"].endswith("_type") or item["type"].endswith("_parsing"):
            lines.append(f"{prefix}{key} = {value!r}: {message}. Fix: write a value of that type")
        else:
            lines.append(f"{prefix}{key} = {value!r}: {message}")
    return lines


def _missing_fix(key: str) -> str:
    fixes = {
        "environment": "set environment to dev, staging or prod (stacks named dev/staging/prod get it from the name)",
        "region": "pulumi config set aws:region <region>",
        "adminCidrs": "list the networks that may reach the Kubernetes API, e.g. ['203.0.113.10/32']",
    }
    return fixes.get(key, f"pulumi config set {key} <value>")


def load_settings() -> Settings:
    """Read the current stack's config through the Pulumi runtime."""
    import pulumi
    from pulumi.runtime.config import CONFIG, get_config_env

    raw: dict[str, Any] = {}
    for source in (get_config_env(), CONFIG.get()):
        for full_key, value in source.items():
            namespace, _, key = full_key.partition(":")
            if namespace == PROJECT:
                raw[key] = value
    region = pulumi.Config("aws").get("region")
    return settings_from_values(raw, stack=pulumi.get_stack(), region=region)
