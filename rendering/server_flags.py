"""Check a K3s/RKE2 server `config.yaml` against the real `server` flag list.

K3s and RKE2 turn /etc/rancher/<dist>/config.yaml into command-line flags before the
CLI parser sees them (k3s `pkg/configfilearg/parser.go`, which RKE2 uses as is):

* every top-level key is a flag name (`--key`, or `-k` for a one-letter key); a key
  ending in `+` appends to the same key from an earlier file, so `tls-san+` is
  `tls-san`;
* a YAML sequence becomes one `--key=<item>` per item; any other value becomes one
  `--key=<value>`; values are turned into text with Go's `fmt.Sprint` (wrangler
  `convert.ToString`): `true`, `5`, `0.5`, null -> "";
* a key that is not a flag name or alias of the `server` command is dropped with only
  a warning in the log ("Unknown flag ... found in config.yaml, skipping") - a typo
  fails silently;
* then urfave/cli v2 parses the flags: bool flags take Go `strconv.ParseBool`
  (1 t T TRUE true True 0 f F FALSE false False), int flags `strconv.ParseInt(s, 0, 64)`,
  duration flags `time.ParseDuration`, string and string-slice flags any text. Both
  binaries set `DisableSliceFlagSeparator`, so a scalar for a list flag is ONE item
  (no splitting on commas). A bad bool/int/duration stops the server at start.

`config_problems` reports, one readable line each:
* unknown keys (with a did-you-mean from difflib);
* values the CLI parser rejects (above);
* values the parser accepts but silently mangles: a mapping anywhere (Go prints it as
  `map[...]`), a sequence for a scalar flag (only the last item counts), a nested
  sequence in a list; and, for RKE2's `cni` / `ingress-controller`, items outside the
  values RKE2 knows (recorded in the data file).

Flag lists are data files extracted from upstream source by
tools/extract_server_flags.py into reference/upstream/server-flags/.
Version -> data file: the file for exactly that release if there is one, else the
newest file of the same distribution whose Kubernetes minor is the same or lower
(a patch release almost never changes flags; a newer minor may add flags the older
file lacks, so add its file when you pin it). No such file: `UnknownFlagData`.

Standard library and PyYAML only.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Mapping, NotRequired, Optional, TypedDict, TypeGuard

DATA_DIR = Path(__file__).resolve().parents[1] / "reference" / "upstream" / "server-flags"

_VERSION = re.compile(r"^v1\.(\d+)\.(\d+)\+(k3s|rke2r)(\d+)$")
_SUFFIX = {"k3s": "k3s", "rke2": "rke2r"}

GO_BOOL_WORDS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
_GO_INT = re.compile(r"^[+-]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO](_?[0-7])+|0(_?[0-7])*|[1-9](_?[0-9])*)$")
_GO_DURATION = re.compile(r"^[+-]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)$")


class FlagSpec(TypedDict):
    """One flag of a data file (tools/extract_server_flags.py writes them)."""

    kind: str  # string | list | bool | int | duration | float
    aliases: NotRequired[list[str]]
    values: NotRequired[Optional[list[str]]]  # the words RKE2 knows (cni, ingress-controller)
    values_note: NotRequired[str]


class FlagSource(TypedDict):
    version: NotRequired[str]
    dropped_k3s_flags: NotRequired[list[str]]


class FlagData(TypedDict):
    source: FlagSource
    flags: dict[str, FlagSpec]


class UnknownFlagData(LookupError):
    """No flag data file fits the distribution and version."""


def _parse_version(distribution: str, version: str) -> tuple[int, int, int]:
    if distribution not in _SUFFIX:
        raise UnknownFlagData(f"unknown distribution {distribution!r}: expected 'k3s' or 'rke2'")
    match = _VERSION.match(version)
    if not match or match.group(3) != _SUFFIX[distribution]:
        raise UnknownFlagData(
            f"{version!r} is not a {distribution} release tag (e.g. v1.34.1+{_SUFFIX[distribution]}1)"
        )
    minor, patch, _, revision = match.groups()
    return int(minor), int(patch), int(revision)


def available(distribution: str, data_dir: Path = DATA_DIR) -> dict[str, Path]:
    """Release tag -> data file, for one distribution."""
    result: dict[str, Path] = {}
    for path in sorted(data_dir.glob(f"{distribution}-v*.json")):
        version = path.stem[len(distribution) + 1:]
        if _VERSION.match(version):
            result[version] = path
    return result


def data_file(distribution: str, kubernetes_version: str, data_dir: Path = DATA_DIR) -> Path:
    """The data file for a release: exact, else newest of the same or a lower minor."""
    wanted = _parse_version(distribution, kubernetes_version)
    files = available(distribution, data_dir)
    if kubernetes_version in files:
        return files[kubernetes_version]
    candidates = [(_parse_version(distribution, v), p) for v, p in files.items()]
    candidates = [(key, p) for key, p in candidates if key[0] <= wanted[0]]
    if not candidates:
        known = ", ".join(files) or "none"
        raise UnknownFlagData(
            f"no {distribution} server flag list for {kubernetes_version} or an older minor in "
            f"{data_dir} (have: {known}); run tools/extract_server_flags.py for it"
        )
    return max(candidates)[1]


@lru_cache(maxsize=None)
def _load(path: Path) -> FlagData:
    return json.loads(path.read_text())


def flag_data(distribution: str, kubernetes_version: str, data_dir: Path = DATA_DIR) -> FlagData:
    return _load(data_file(distribution, kubernetes_version, data_dir))


# --------------------------------------------------------------------------- Go semantics


def go_sprint(value: object) -> Optional[str]:
    """fmt.Sprint of a scalar as yaml.v2 decodes it; None for a mapping or sequence."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if value.is_integer() and abs(value) < 1e6:
            # %v is %g with the shortest digits: plain up to 999999, 1e+06 from there on.
            return str(int(value))
        return repr(value)  # not Go's exact text, but never an integer either
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return None
    return str(value)  # dates etc. - PyYAML-only types; Go would print its own form


def _go_int_ok(text: str) -> bool:
    if not _GO_INT.match(text):
        return False
    return -(2**63) <= int(text.replace("_", ""), 0) < 2**63


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _scalar_problem(key: str, kind: str, value: object) -> Optional[str]:
    if isinstance(value, dict):
        return f"{key}: a mapping is not a flag value (Go would pass it as the text 'map[...]')"
    text = go_sprint(value)
    if text is None:
        return f"{key}: a nested list is not a flag value (only its first item would be used)"
    if kind in ("string", "list"):
        return None
    if kind == "bool" and text not in GO_BOOL_WORDS:
        return f"{key}: expects a bool (true/false), got {_describe(value)} - the server stops at start"
    if kind == "int" and not _go_int_ok(text):
        return f"{key}: expects an integer, got {_describe(value)} - the server stops at start"
    if kind == "duration" and not _GO_DURATION.match(text):
        return (
            f"{key}: expects a Go duration such as 30s, 5m or 1h30m, got {_describe(value)}"
            " - the server stops at start"
        )
    if kind == "float":
        try:
            float(text)
        except ValueError:
            return f"{key}: expects a number, got {_describe(value)} - the server stops at start"
    return None


def _is_sequence(value: object) -> TypeGuard[list[object] | tuple[object, ...]]:
    return isinstance(value, (list, tuple))


def _value_problems(key: str, spec: FlagSpec, value: object) -> list[str]:
    kind = spec["kind"]
    problems: list[str] = []
    if _is_sequence(value):
        if kind != "list" and len(value) > 1:
            problems.append(
                f"{key}: is a single {kind} flag but got a list of {len(value)}; the flag is repeated and "
                "only the last item counts"
            )
        items: list[object] = list(value)
    else:
        items = [value]
    for item in items:
        problem = _scalar_problem(key, kind, item)
        if problem:
            problems.append(problem)
    allowed = spec.get("values")
    if allowed and not problems:
        words = [w for item in items for w in (go_sprint(item) or "").split(",")]
        bad = [w for w in words if w not in allowed]
        if bad:
            note = f" - {values_note}" if (values_note := spec.get("values_note")) else ""
            problems.append(f"{key}: {', '.join(repr(w) for w in bad)} not one of {', '.join(allowed)}{note}")
    return problems


# --------------------------------------------------------------------------- the check


def config_problems(distribution: str, kubernetes_version: str, config: Mapping[object, object],
                    data_dir: Path = DATA_DIR) -> list[str]:
    """One readable line per problem in a server config.yaml (as a dict); [] if none."""
    data = flag_data(distribution, kubernetes_version, data_dir)
    flags = data["flags"]
    by_name: dict[str, tuple[str, FlagSpec]] = {}
    for name, spec in flags.items():
        by_name[name] = (name, spec)
        for alias in spec.get("aliases", []):
            by_name[alias] = (name, spec)
    label = f"{distribution} {data['source'].get('version', kubernetes_version)} server"

    problems: list[str] = []
    seen: dict[str, str] = {}
    for raw_key, value in config.items():
        if not isinstance(raw_key, str):
            problems.append(f"{raw_key!r}: keys must be flag names (text)")
            continue
        key = raw_key[:-1] if raw_key.endswith("+") else raw_key
        if key not in by_name:
            guesses = difflib.get_close_matches(key, list(flags), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(guesses)}?" if guesses else ""
            if key in data["source"].get("dropped_k3s_flags", []):
                hint = f" (a k3s flag that {distribution} drops){hint}"
            problems.append(
                f"{raw_key}: not a {label} flag - it would be skipped with only a warning{hint}"
            )
            continue
        name, spec = by_name[key]
        if name in seen and not raw_key.endswith("+"):
            problems.append(f"{raw_key}: same flag as {seen[name]}; one of them is lost")
        seen.setdefault(name, raw_key)
        problems.extend(_value_problems(raw_key, spec, value))
    return problems
