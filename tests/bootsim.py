"""Run a generated boot script for real, in a temporary root, with stub commands.

The stubs stand in for what this machine cannot reach (SSM, the installers, systemd);
everything else (bash, python3 with PyYAML, mkdir, chmod, mv) is the real thing.
cloud-init's write_files is replayed from the actual user data first.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

STUB_AWS = r"""#!/bin/bash
# aws ssm get-parameter --region R --name NAME --with-decryption --query Parameter.Value --output text
echo "aws $*" >> "$STUB_LOG"
name=""
while [ $# -gt 0 ]; do
  case "$1" in --name) name="$2"; shift 2;; *) shift;; esac
done
count_file="$STUB_STATE/count$(echo "$name" | tr '/' '_')"
count=$(( $(cat "$count_file" 2>/dev/null || echo 0) + 1 ))
echo "$count" > "$count_file"
value_file="$STUB_SSM$name"
if [ ! -f "$value_file" ] || [ "$count" -lt "${STUB_SSM_APPEAR_AFTER:-1}" ]; then
  echo "An error occurred (ParameterNotFound) when calling the GetParameter operation" >&2
  exit 254
fi
cat "$value_file"
"""

STUB_CURL = r"""#!/bin/bash
# Records the call; -o targets get a fake installer (records its env) or a fake CA bundle.
echo "curl $*" >> "$STUB_LOG"
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift 2;; --max-time) shift 2;; -*) shift;; *) url="$1"; shift;; esac
done
case "$url" in
  */ping)
    count=$(( $(cat "$STUB_STATE/ping" 2>/dev/null || echo 0) + 1 )); echo "$count" > "$STUB_STATE/ping"
    [ "$count" -ge "${STUB_PING_OK_AFTER:-1}" ] || exit 7
    [ "$out" = /dev/null ] || echo pong > "$out"
    ;;
  https://get.k3s.io|https://get.rke2.io)
    printf '#!/bin/sh\nenv | grep -E "^INSTALL_(K3S|RKE2)_" | sort > "$STUB_STATE/installer.env"\n' > "$out"
    ;;
  *)
    echo "-----BEGIN CERTIFICATE-----" > "$out"
    ;;
esac
"""

STUB_RECORDER = r"""#!/bin/bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
"""

# The image has no AWS CLI: only `snap install aws-cli` makes the aws stub appear.
STUB_SNAP = r"""#!/bin/bash
echo "snap $*" >> "$STUB_LOG"
if [ "$1" = install ] && [ "$2" = aws-cli ]; then
  cp "$STUB_STATE/aws-cli" "$STUB_BIN/aws"
fi
"""


@dataclass
class BootResult:
    returncode: int
    stderr: str
    root: Path
    state: Path
    log: str


def replay_write_files(user_data: str, root: Path) -> str:
    """Write the files cloud-init would write; return the runcmd script path."""
    document = yaml.safe_load(user_data)
    for entry in document["write_files"]:
        target = root / entry["path"].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry["content"])
        target.chmod(int(entry["permissions"], 8))
    (command,) = document["runcmd"]
    return str(root / command[0].lstrip("/"))


def run_boot(user_data: str, tmp: Path, parameters: dict[str, str], env: dict[str, str] | None = None, timeout: int = 60) -> BootResult:
    root, stubs, state, ssm = tmp / "root", tmp / "stubs", tmp / "state", tmp / "ssm"
    for directory in (root, stubs, state, ssm):
        directory.mkdir(parents=True, exist_ok=True)
    for name, value in parameters.items():
        path = ssm / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    stub_files = {"curl": STUB_CURL, "systemctl": STUB_RECORDER, "snap": STUB_SNAP, "apt-get": STUB_RECORDER, "nginx": STUB_RECORDER}
    for name, body in stub_files.items():
        stub = stubs / name
        stub.write_text(body)
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    aws_cli = state / "aws-cli"
    aws_cli.write_text(STUB_AWS)
    aws_cli.chmod(0o755)
    script = replay_write_files(user_data, root)
    log = state / "calls.log"
    environment = {
        "PATH": f"{stubs}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "RANCHER_HA_ROOT": str(root),
        "RANCHER_HA_SSM_DELAY": "0",
        "RANCHER_HA_JOIN_DELAY": "0",
        "STUB_LOG": str(log),
        "STUB_STATE": str(state),
        "STUB_SSM": str(ssm),
        "STUB_BIN": str(stubs),
        "HOME": str(tmp),
        **(env or {}),
    }
    completed = subprocess.run(["bash", script], env=environment, capture_output=True, text=True, timeout=timeout)
    return BootResult(completed.returncode, completed.stderr, root, state, log.read_text() if log.exists() else "")


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)
