"""User data as the machine receives it: the files cloud-init writes and the commands it runs.

EC2 hands cloud-init the user data (a launch template's base64-decoded first); cloud-init's
`write_files` module writes each entry's decoded content to its path, and `runcmd` runs the
commands. A reviewer wants those files, one per file: shell as shell, YAML as YAML, so a
one-line template change is a one-line diff (the user data itself holds each file as one
escaped YAML string). Used by the render (tools/render.py) and the plan (offline/plan.py).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import gzip
from dataclasses import dataclass
from typing import Any, Optional

import yaml

CLOUD_CONFIG = "#cloud-config"
# cloud-init's write_files encodings (cloudinit/config/cc_write_files.py, decode_perms/extract_contents).
GZIP_B64 = ("gz+base64", "gzip+base64", "gz+b64", "gzip+b64")
B64 = ("b64", "base64")
GZIP = ("gz", "gzip")


@dataclass(frozen=True)
class MachineFiles:
    """What cloud-init does with one machine's user data."""

    files: dict[str, str]  # path -> content, as written on the machine
    layout: dict[str, Any]  # the cloud-config with each file's content replaced by where it is shown


def decode_user_data(raw: str) -> str:
    """Plain text from an instance's user data, or a launch template's base64."""
    if raw.startswith(CLOUD_CONFIG) or raw.startswith("#!"):
        return raw
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return raw


def _content(entry: dict) -> str:
    content = entry.get("content", "")
    encoding = str(entry.get("encoding", "")).lower()
    data: bytes = content.encode() if isinstance(content, str) else bytes(content)
    if encoding in GZIP_B64:
        data = gzip.decompress(base64.b64decode(data))
    elif encoding in B64:
        data = base64.b64decode(data)
    elif encoding in GZIP:
        data = gzip.decompress(data)
    return data.decode(errors="replace")


def split(raw: str, shown_at: str = "files") -> Optional[MachineFiles]:
    """The files and the layout of a cloud-config; None for user data that is not one."""
    text = decode_user_data(raw)
    if not text.startswith(CLOUD_CONFIG):
        return None
    document = yaml.safe_load(text) or {}
    files: dict[str, str] = {}
    layout = dict(document)
    entries = []
    for entry in document.get("write_files") or []:
        path = entry["path"]
        files[path] = _content(entry)
        shown = {k: v for k, v in entry.items() if k not in ("content", "encoding")}
        shown["content"] = f"see {shown_at}{path}"
        entries.append(shown)
    if "write_files" in document:
        layout["write_files"] = entries
    return MachineFiles(files=files, layout=layout)


def layout_yaml(machine: MachineFiles) -> str:
    return "#cloud-config (each file's content is shown as its own file)\n" + yaml.safe_dump(
        machine.layout, default_flow_style=False, sort_keys=False, width=120
    )


def unified_diff(old_raw: Optional[str], new_raw: Optional[str], label: str) -> str:
    """A unified diff of two user data as the machine receives them: per file, then the layout."""
    old = split(old_raw or "") if old_raw else None
    new = split(new_raw or "") if new_raw else None
    if old is None or new is None:
        old_lines = decode_user_data(old_raw or "").splitlines(keepends=True)
        new_lines = decode_user_data(new_raw or "").splitlines(keepends=True)
        return "".join(difflib.unified_diff(old_lines, new_lines, f"a/{label}", f"b/{label}"))
    chunks = []
    for path in sorted(set(old.files) | set(new.files)):
        before, after = old.files.get(path), new.files.get(path)
        if before == after:
            continue
        chunks.append(
            "".join(
                difflib.unified_diff(
                    (before or "").splitlines(keepends=True),
                    (after or "").splitlines(keepends=True),
                    f"a/{label}{path}" if before is not None else "/dev/null",
                    f"b/{label}{path}" if after is not None else "/dev/null",
                )
            )
        )
    old_layout, new_layout = layout_yaml(old), layout_yaml(new)
    if old_layout != new_layout:
        chunks.append(
            "".join(
                difflib.unified_diff(
                    old_layout.splitlines(keepends=True), new_layout.splitlines(keepends=True),
                    f"a/{label}/user-data.yaml", f"b/{label}/user-data.yaml",
                )
            )
        )
    return "".join(chunk if chunk.endswith("\n") else chunk + "\n" for chunk in chunks)
