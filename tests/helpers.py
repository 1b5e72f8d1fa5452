"""Small readers for mock runs."""

from __future__ import annotations

import yaml

from offline.mocks import Registration
from offline.runner import MockRun

INSTANCE = "aws:ec2/instance:Instance"


def cloud_config(registration: Registration) -> dict:
    text = registration.inputs["userData"]
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def written_file(registration: Registration, path: str) -> dict:
    for entry in cloud_config(registration)["write_files"]:
        if entry["path"] == path:
            return entry
    raise KeyError(path)


def server_instances(run: MockRun) -> list[Registration]:
    return [r for r in run.of_type(INSTANCE) if "-server-" in r.name]


def children_of(run: MockRun, component_type: str) -> list[Registration]:
    components = {r.urn for r in run.registrations if r.type == component_type}
    return [r for r in run.registrations if r.parent in components]
