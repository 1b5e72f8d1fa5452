"""Run `deploy(load_settings())` in-process under the offline mocks.

This is the program exactly as `pulumi up` runs it, minus the engine and the cloud:
the same settings loader, components and rendering. Used by the tests and by
`tools/render.py`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import pulumi
import yaml
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from .mocks import Registration, RecordingMonitor, StackMocks

PROJECT = "rancher-ha"
REPO_ROOT = Path(__file__).resolve().parents[1]
STACKS_DIR = REPO_ROOT / "stacks"


@dataclass
class OutputValue:
    value: Any
    known: bool
    secret: bool


@dataclass
class MockRun:
    registrations: list[Registration]
    outputs: dict[str, OutputValue]
    secret_values: set[str]
    logs: list[str] = field(default_factory=list)
    mock_values: set[str] = field(default_factory=set)  # strings the mocks invented (ids, addresses)

    def of_type(self, type_token: str) -> list[Registration]:
        return sorted((r for r in self.registrations if r.type == type_token), key=lambda r: r.name)

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name}")
        return matches[0]

    @property
    def resources(self) -> list[Registration]:
        """Custom (cloud) resources only, not components."""
        return [r for r in self.registrations if r.custom]


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(level=logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def stack_config(stack: str, stacks_dir: Path = STACKS_DIR) -> dict[str, Any]:
    """The `config:` map of stacks/Pulumi.<stack>.yaml, keys with their namespace."""
    document = yaml.safe_load((stacks_dir / f"Pulumi.{stack}.yaml").read_text()) or {}
    return dict(document.get("config") or {})


def _as_config_strings(config: Mapping[str, Any]) -> dict[str, str]:
    # The engine hands structured values to the program as JSON text; do the same.
    result = {}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            raise ValueError(f"{key} is encrypted; the offline render needs plaintext stand-ins")
        result[key] = value if isinstance(value, str) else json.dumps(value)
    return result


def run_program(
    config: Mapping[str, Any],
    stack: str = "dev",
    preview: bool = False,
    secret_keys: Optional[list[str]] = None,
    deployment: str = "",
) -> MockRun:
    """Run the program for a config map ({"rancher-ha:key": value, "aws:region": ...})."""
    from app import deploy
    from settings import load_settings

    strings = _as_config_strings(config)
    region = strings.get("aws:region", "eu-west-1")
    mocks = StackMocks(region=region, preview=preview, deployment=deployment)
    logs: list[str] = []
    logger = logging.getLogger(f"rancher-ha-offline-{id(mocks)}")
    logger.propagate = False
    logger.addHandler(_ListHandler(logs))

    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, logger=logger, monitor=RecordingMonitor(mocks))
    set_all_config(strings, secret_keys or [])
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()

    collected: dict[str, OutputValue] = {}

    async def collect(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            known = await output.is_known()
            resolved = await output.future(with_unknowns=True)
            collected[key] = OutputValue(value=resolved if known else None, known=known, secret=await output.is_secret())

    def body() -> None:
        outputs = deploy(load_settings())
        _sync_await(collect(outputs))

    try:
        _sync_await(run_pulumi_func(body))
    except Exception as error:
        # Tests assert that a bad stack registers nothing: hand them what was registered.
        error.registrations = list(mocks.registrations)  # type: ignore[attr-defined]
        raise
    registrations = sorted(mocks.registrations, key=lambda r: r.urn)
    return MockRun(registrations=registrations, outputs=collected, secret_values=set(mocks.secret_values), logs=logs,
                   mock_values=set(mocks.invented) - set(mocks.secret_values))


def run_stack(stack: str, preview: bool = False, overrides: Optional[Mapping[str, Any]] = None, stacks_dir: Path = STACKS_DIR) -> MockRun:
    config = {**stack_config(stack, stacks_dir), **(overrides or {})}
    return run_program(config, stack=stack, preview=preview)
