"""Replay cloud-init's handling of a user-data document, INSIDE the rehearsal sandbox.

Run with the system interpreter `/usr/bin/python3` (Debian's cloud-init 22.4 and PyYAML
live in its dist-packages); it imports nothing from this repository. It calls the real
cloud-init module code where cloud-init's own code can run outside a booted datasource:

  init stage    cloudinit.config.cc_write_files.handle()           (write_files without defer:
                                                                     util.write_file + util.chownbyname,
                                                                     encoding/permissions/owner/append)
  config stage  cloudinit.config.cc_runcmd.handle()                (util.shellify(runcmd) written to
                                                                     <instance>/scripts/runcmd, 0700)
  final stage   cloudinit.config.cc_write_files_deferred.handle()  (write_files with defer: true)
                scripts-user: a mirror of cloudinit.subp.runparts()  (sorted, executable files of
                                                                     <instance>/scripts, run with
                                                                     capture=False), mirrored only
                                                                     so the exit code is kept: the
                                                                     real runparts() folds it into a
                                                                     RuntimeError.

The order is cloud-init's (/etc/cloud/cloud.cfg: write-files in cloud_init_modules, runcmd
in cloud_config_modules, write-files-deferred then scripts-user in cloud_final_modules).
The document is parsed with cloudinit.util.load_yaml and checked with
cloudinit.config.schema.validate_cloudconfig_schema, whose complaints cloud-init would
only log as warnings; they are printed here as `cloud-init schema:` lines on stderr.

Usage:
  cloud_init_replay.py boot <user-data file> <instance id>
  cloud_init_replay.py run <instance id> <argv as JSON>
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from types import SimpleNamespace

from cloudinit import subp, util
from cloudinit.config import cc_runcmd, cc_write_files, cc_write_files_deferred
from cloudinit.config import schema as cc_schema

LOG = logging.getLogger("rehearsal.cloud-init")
CLOUD_DIR = "/var/lib/cloud"


class ReplayCloud(SimpleNamespace):
    """The slice of cloudinit.cloud.Cloud that the modules above use."""

    def __init__(self, instance_id: str):
        super().__init__(distro=SimpleNamespace(default_owner="root:root"))  # Distro.default_owner
        self.instance_dir = os.path.join(CLOUD_DIR, "instances", instance_id)

    def get_ipath(self, name: str | None = None) -> str:  # Paths.get_ipath
        return os.path.join(self.instance_dir, name) if name else self.instance_dir

    def get_ipath_cur(self, name: str | None = None) -> str:  # Paths.get_ipath_cur
        current = os.path.join(CLOUD_DIR, "instance")
        return os.path.join(current, name) if name else current


def stage(label: str, function, *args) -> bool:
    """cloud-init runs each module on its own: a failure is logged and the boot goes on."""
    try:
        function(*args)
        return True
    except Exception:
        sys.stderr.write(f"cloud-init: module {label} failed:\n{traceback.format_exc()}")
        return False


def run_parts(directory: str) -> int:
    """Mirror of cloudinit.subp.runparts(dirp) keeping the worst exit code."""
    worst = 0
    if not os.path.isdir(directory):
        return 0
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if subp.is_exe(path):
            sys.stdout.flush()
            sys.stderr.flush()
            code = subprocess.run([path]).returncode  # subp(..., capture=False)
            if code != 0:
                sys.stderr.write(f"cloud-init: scripts-user: {path} exited {code}\n")
                worst = worst or code
    return worst


def boot(user_data_path: str, instance_id: str) -> int:
    cloud = ReplayCloud(instance_id)
    for sub in ("scripts", "sem", "handlers", "data"):
        os.makedirs(cloud.get_ipath(sub), exist_ok=True)
    if not os.path.lexists(cloud.get_ipath_cur()):
        os.symlink(cloud.instance_dir, cloud.get_ipath_cur())
    with open(user_data_path, "rb") as handle:
        raw = handle.read()
    util.write_file(cloud.get_ipath("user-data.txt"), raw, 0o600)  # as Stages._store_rawdata
    ok = True
    text = raw.decode()
    if text.startswith("#!"):
        # handlers/shell_script.py: a script part becomes <instance>/scripts/part-001
        util.write_file(os.path.join(cloud.get_ipath("scripts"), "part-001"), raw, 0o700)
        cfg: dict = {}
    elif text.startswith("#cloud-config"):
        cfg = util.load_yaml(text, default={})
        try:
            cc_schema.validate_cloudconfig_schema(cfg, cc_schema.get_schema(), strict=True, log_details=True)
        except Exception as error:  # SchemaValidationError: cloud-init only warns
            for line in str(error).splitlines():
                sys.stderr.write(f"cloud-init schema: {line}\n")
    else:
        sys.stderr.write("cloud-init: user data is neither #cloud-config nor a #! script; ignored\n")
        cfg = {}
    # init stage
    if "write_files" in cfg:
        ok &= stage("write-files", cc_write_files.handle, "write_files", cfg, cloud, LOG, [])
    # config stage
    if "runcmd" in cfg:
        ok &= stage("runcmd", cc_runcmd.handle, "runcmd", cfg, cloud, LOG, [])
    # final stage
    if "write_files" in cfg:
        ok &= stage("write-files-deferred", cc_write_files_deferred.handle, "write_files_deferred", cfg, cloud, LOG, [])
    code = run_parts(cloud.get_ipath_cur("scripts"))  # cc_scripts_user.handle
    util.write_file(os.path.join(CLOUD_DIR, "instance", "boot-finished"), "rehearsal\n", 0o644)
    return code or (0 if ok else 1)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="cloud-init[%(name)s] %(levelname)s: %(message)s", stream=sys.stderr)
    mode = sys.argv[1]
    if mode == "boot":
        return boot(sys.argv[2], sys.argv[3])
    if mode == "run":
        argv = json.loads(sys.argv[3])
        return subprocess.run(argv).returncode
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main())
