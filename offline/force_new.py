"""Which inputs of a resource force replacement, from the providers' own source.

Stdlib only.  Reads ``reference/upstream/force-new/{aws,tls,random}.json``,
written by ``tools/extract_force_new.py`` (see
``reference/upstream/force-new/README.md`` for the upstream refs).

Paths are Pulumi wire names (camelCase).  A flattened MaxItems-1 block is
``rootBlockDevice.encrypted``; an element of a list/set is
``ebsBlockDevices[*].deviceName``.  A change of a nested path, or of its
containing top-level input, is what the planner has to look at: see
:func:`requires_replacement` for the matching rule.

* ``force_new_paths``     replaced whenever the value changes
* ``stop_start_paths``    updated in place, but the update stops and starts the
                          instance (aws_instance only)
* ``conditional_replacements``  replaced only when ``when`` holds (CustomizeDiff /
                          ModifyPlan logic or a conditional plan modifier)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "reference" / "upstream" / "force-new"
PROVIDERS = ("aws", "tls", "random")


@functools.lru_cache(maxsize=None)
def _load() -> dict[str, dict]:
    resources: dict[str, dict] = {}
    for name in PROVIDERS:
        data = json.loads((DATA_DIR / f"{name}.json").read_text())
        for token, entry in data["resources"].items():
            resources[token] = entry
    return resources


def _entry(type_token: str) -> dict:
    resources = _load()
    try:
        return resources[type_token]
    except KeyError:
        raise KeyError(
            f"no force-new data for resource type {type_token!r}; known types: "
            f"{', '.join(sorted(resources))}. Add it to tools/extract_force_new.py and re-run it."
        ) from None


def known_types() -> set[str]:
    return set(_load())


def force_new_paths(type_token: str) -> frozenset[str]:
    return frozenset(_entry(type_token)["force_new"])


def stop_start_paths(type_token: str) -> frozenset[str]:
    return frozenset(_entry(type_token)["stop_start"])


def conditional_replacements(type_token: str) -> list[dict]:
    """``[{"path", "tf_path", "when", ["output_only"]}]`` (copies)."""
    return [dict(c) for c in _entry(type_token)["conditional"]]


def tf_type(type_token: str) -> str:
    return _entry(type_token)["tf_type"]


def _normalise(path: str) -> str:
    """``ebsBlockDevices[0].deviceName`` -> ``ebsBlockDevices[*].deviceName``."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "[":
            j = path.index("]", i)
            out.append("[*]")
            i = j + 1
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def _covers(rule: str, changed: str) -> bool:
    """A rule path covers a changed path if they are equal, or one is a prefix
    of the other at a segment boundary.  ``rootBlockDevice`` changing as a whole
    may change ``rootBlockDevice.encrypted``; ``rootBlockDevice.encrypted``
    changing is a change of a force-new path."""
    rule, changed = _normalise(rule), _normalise(changed)
    if rule == changed:
        return True
    for a, b in ((rule, changed), (changed, rule)):
        if b.startswith(a) and b[len(a)] in ".[":
            return True
    return False


def requires_replacement(type_token: str, changed_paths) -> list[str]:
    """Force-new rule paths hit by any of ``changed_paths`` (sorted).

    Coarse on purpose: a changed top-level object (``rootBlockDevice``) is
    reported against every force-new path under it; compare nested values
    first if you need precision."""
    rules = force_new_paths(type_token)
    return sorted({r for r in rules for c in changed_paths if _covers(r, c)})
