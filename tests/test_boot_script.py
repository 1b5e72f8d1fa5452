"""The generated boot scripts, rehearsed scenario by scenario on a first boot.

Each test boots one instance's real user data with tests/rehearsal (cloud-init's own
modules in an unshare+overlay sandbox, real bash/coreutils/python3/nginx, stubs only for
aws/snap/curl/systemctl/apt-get/sleep) against the SSM store the program created, and
bends ONE thing a real first boot can meet: a parameter the engine creates late or never,
the NAT not up yet, the registration address not answering, an SSM error that is not
NotFound, an NGINX configuration that `nginx -t` rejects. tests/test_first_boot.py boots
every instance of every shape the happy way; this file is about what the scripts do when
the world is not ready. The static checks (shellcheck, `cloud-init schema`) are at the end.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import DEV_PARAMETER_ROOT, NGINX_L4, NGINX_L7, PROXY, RKE2, cached_run
from helpers import server_instances
from rehearsal import with_real_pems, LateParameter, Scenario, boot, pem_self_signed
from rendering.node_config import CLUSTER_CA_FILES
from rendering import polls
from settings.versions import EXAMPLE_KUBERNETES_VERSION, INSTALLERS

REHEARSAL_READY = os.geteuid() == 0 and shutil.which("unshare") is not None and Path("/usr/bin/python3").exists()
rehearsal = pytest.mark.skipif(not REHEARSAL_READY, reason="the rehearsal needs root, unshare(1) and the system python3 with cloud-init")

PREFIX = f"{DEV_PARAMETER_ROOT}/node"
NGINX_PREFIX = f"{DEV_PARAMETER_ROOT}/nginx"
HOSTNAME = "rancher.dev.example.com"
API_HOSTNAME = "api.rancher.dev.example.com"
REGISTRATION = "registration.rancher-ha-dev.internal"  # the stack's private zone
REGISTRATION_URL = f"https://{REGISTRATION}:9345"
K3S_VERSION, RKE2_VERSION = EXAMPLE_KUBERNETES_VERSION["k3s"], EXAMPLE_KUBERNETES_VERSION["rke2"]  # the defaults
PROXY_URL = "http://proxy.corp.example:3128"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


# ---------------------------------------------------------------------------- helpers
def store_of(run) -> dict[str, str]:
    """The whole SSM store the program created (full names), with real PEMs where the
    mocks made fake ones (only `nginx -t` reads them, but keep every consumer honest)."""
    parameters = {p.inputs["name"]: p.inputs["value"] for p in run.of_type("aws:ssm/parameter:Parameter")}
    return with_real_pems(parameters, HOSTNAME)


def server(run, index: int) -> str:
    return server_instances(run)[index].inputs["userData"]


def scenario(**overrides) -> Scenario:
    return Scenario(**{"instance_id": "i-0a1b2c3d4e5f60718", **overrides})


def describe(result) -> str:
    return (f"exit {result.returncode}{' (timed out)' if result.timed_out else ''}\n--- stderr (last 3000) ---\n"
            f"{result.stderr[-3000:]}\n--- calls (last 25) ---\n" + "".join(result.log.splitlines(True)[-25:]))


def index_of(result, predicate) -> int:
    """Position of the first stubbed call matching predicate(cmd, argv); -1 if none."""
    return next((n for n, call in enumerate(result.calls) if predicate(call["cmd"], call["argv"])), -1)


def ssm_read(name: str):
    return lambda cmd, argv: cmd == "aws" and argv[:2] == ["ssm", "get-parameter"] and name in argv


def installer(result) -> dict:
    (call,) = [c for c in result.calls if c["cmd"] == "installer"]
    return call


def started(result, unit: str) -> bool:
    return ["enable", "--now", unit] in result.calls_of("systemctl")


def unit_state(result, unit: str) -> dict:
    return result.state.get("systemd", {}).get(unit, {})


def secret_fragments(store: dict[str, str]) -> set[str]:
    fragments = set()
    for value in store.values():
        fragments.add(value.strip())
        fragments.update(line for line in value.splitlines() if len(line) >= 12 and not line.startswith("-----"))
        fragments.update(re.findall(r"://[^:/@]+:([^@]+)@", value))
    return {f for f in fragments if len(f) >= 8}


def assert_no_secret_seen(result, store: dict[str, str]) -> None:
    seen = result.log + result.stdout + result.stderr + repr(result.calls)
    leaked = sorted(f[:10] + "..." for f in secret_fragments(store) if f in seen)
    assert not leaked, leaked


def config_yaml(result, distribution: str) -> dict:
    return yaml.safe_load(result.files[f"/etc/rancher/{distribution}/config.yaml"].text)


_booted: dict[str, object] = {}


def booted(key: str, make):
    """One boot per key for the module (several tests read the same boot)."""
    if key not in _booted:
        _booted[key] = make()
    return _booted[key]


@pytest.fixture(scope="module", autouse=True)
def _close_machines():
    yield
    for result in _booted.values():
        result.close()


# ------------------------------------------------------------------ K3s first server
def k3s_first():
    run = cached_run({})
    # snapd refuses install/set for many calls unless the script waits for the seed.
    return booted("k3s-first", lambda: boot(server(run, 0), store_of(run), scenario(snap_seed_after_calls=1000)))


@rehearsal
def test_k3s_first_server_writes_the_final_config():
    result, store = k3s_first(), store_of(cached_run({}))
    assert result.returncode == 0, describe(result)
    config = config_yaml(result, "k3s")
    assert config["token"] == store[f"{PREFIX}/token"].strip()
    assert config["datastore-endpoint"] == store[f"{PREFIX}/datastore-endpoint"].strip()
    assert config["tls-san"] == [HOSTNAME, API_HOSTNAME]
    assert config["datastore-cafile"] == "/etc/rancher/k3s/rds-ca-bundle.pem"
    assert config["write-kubeconfig-mode"] == "0600"
    assert "server" not in config  # K3s on a shared datastore needs no join address
    assert result.files["/etc/rancher/k3s/config.yaml"].mode == 0o600
    assert result.files["/etc/rancher/k3s"].mode == 0o700
    assert result.files["/etc/rancher/k3s/rds-ca-bundle.pem"].text.startswith("-----BEGIN CERTIFICATE-----")
    assert "/etc/rancher/k3s/rds-ca-bundle.pem.partial" not in result.files
    assert "/var/lib/rancher-ha/bootstrap.done" in result.files


@rehearsal
def test_k3s_first_server_gets_the_cluster_ca_with_modes():
    result, store = k3s_first(), store_of(cached_run({}))
    assert result.returncode == 0, describe(result)
    tls = "/var/lib/rancher/k3s/server/tls"
    assert result.files[tls].mode == 0o700
    for name in CLUSTER_CA_FILES:
        entry = result.files[f"{tls}/{name}"]
        assert entry.text.strip() == store[f"{PREFIX}/tls/{name}"].strip()
        assert entry.mode == (0o600 if name.endswith(".key") else 0o644), name
        assert entry.owner == "root:root"
    assert not any(path.endswith(".partial") for path in result.files.under(tls))


@rehearsal
def test_k3s_is_installed_unstarted_before_the_datastore_is_read_then_started():
    result = k3s_first()
    assert result.returncode == 0, describe(result)
    call = installer(result)
    assert call["argv"] == ["k3s"]
    assert {k: v for k, v in call["env"].items() if k.startswith("INSTALL_")} == {
        "INSTALL_K3S_EXEC": "server", "INSTALL_K3S_SKIP_ENABLE": "true", "INSTALL_K3S_VERSION": K3S_VERSION}
    install = index_of(result, lambda cmd, _: cmd == "installer")
    datastore = index_of(result, ssm_read(f"{PREFIX}/datastore-endpoint"))
    start = index_of(result, lambda cmd, argv: cmd == "systemctl" and argv == ["enable", "--now", "k3s.service"])
    assert 0 <= install < datastore < start, result.log
    # The installer neither enabled nor started the unit (SKIP_ENABLE); the script did both, once configured.
    assert [c for c in result.calls_of("systemctl") if "k3s.service" in c] == [["enable", "--now", "k3s.service"]]
    assert unit_state(result, "k3s.service") == {"active": True, "enabled": True}
    assert ["install", "aws-cli", "--classic"] in result.calls_of("snap")


@rehearsal
def test_snap_waits_for_the_seed_before_any_install_or_set():
    result = k3s_first()
    assert result.returncode == 0, describe(result)  # would fail: the scenario refuses early snap calls
    snaps = result.calls_of("snap")
    assert snaps[0] == ["wait", "system", "seed.loaded"], snaps
    assert result.state["snap"]["early_calls"] == 0


@rehearsal
def test_k3s_secrets_are_staged_privately_removed_and_never_logged():
    result, store = k3s_first(), store_of(cached_run({}))
    assert result.returncode == 0, describe(result)
    assert "/run/rancher-ha/config-secrets" not in result.files
    assert not [path for path in result.files if path.endswith(".partial")]
    assert_no_secret_seen(result, store)
    # Every name read is one the program created (no guessed names).
    assert set(result.state["ssm_reads"]) <= set(store)


# ----------------------------------------------------- K3s servers while RDS is created
@rehearsal
def test_k3s_server_waits_for_the_datastore_endpoint_created_later():
    """RDS takes 5-15 minutes: the endpoint parameter appears after more reads than the
    ordinary SSM budget (60 x 5 s) allows, and within the datastore's own."""
    run = cached_run({})
    store = store_of(run)
    name = f"{PREFIX}/datastore-endpoint"
    late = {**store, name: LateParameter(store[name], hidden_reads=65)}
    with boot(server(run, 1), late, scenario()) as result:
        assert result.returncode == 0, describe(result)
        assert result.state["ssm_reads"][name] == 66  # read until it appeared, once
        announced = result.stderr.index(f"waiting for the datastore endpoint {name} (RDS is created in parallel)")
        budget = polls.DATASTORE.attempts
        assert announced < result.stderr.index(f"waiting for SSM parameter {name} (attempt 1 of {budget})")
        # The first attempts, then one line every 60: a long wait does not flood the log.
        assert f"(attempt 60 of {budget})" in result.stderr and f"(attempt 4 of {budget})" not in result.stderr
        assert " of 60)" not in result.stderr
        assert config_yaml(result, "k3s")["datastore-endpoint"] == store[name].strip()
        assert unit_state(result, "k3s.service")["active"]
        assert_no_secret_seen(result, store)


@rehearsal
def test_k3s_server_fails_clearly_when_the_datastore_never_appears_and_k3s_stays_stopped():
    # RANCHER_HA_DATASTORE_ATTEMPTS is the budget for this parameter.
    run = cached_run({})
    store = store_of(run)
    name = f"{PREFIX}/datastore-endpoint"
    del store[name]
    with boot(server(run, 0), store, scenario(environment={"RANCHER_HA_DATASTORE_ATTEMPTS": "4"})) as result:
        assert result.returncode != 0, describe(result)
        assert (f"SSM parameter {name} is still not readable after 4 attempts. Check that it exists in eu-west-1 "
                f"and that the instance role may read {PREFIX}/*. It is written once the stack's RDS instance is "
                "available: check that instance and the pulumi up output.") in result.stderr
        assert result.state["ssm_reads"][name] == 4
        # Installed, but neither enabled nor started: a reboot must not start an unconfigured
        # K3s (it would come up as a standalone SQLite server with the stack's CA).
        state = unit_state(result, "k3s.service")
        assert not state.get("enabled") and not state.get("active"), state
        assert "/etc/systemd/system/k3s.service" in result.files  # installed all the same
        assert installer(result)["env"].get("INSTALL_K3S_SKIP_ENABLE") == "true"
        assert not [call for call in result.calls_of("systemctl") if "k3s.service" in call], result.calls_of("systemctl")
        assert "/etc/systemd/system/multi-user.target.wants/k3s.service" not in result.files
        assert "/etc/rancher/k3s/config.yaml" not in result.files
        assert "/var/lib/rancher-ha/bootstrap.done" not in result.files


# --------------------------------------------------------------- the pinned installer
def test_the_boot_script_runs_only_the_pinned_installer():
    """Each boot script downloads the install script at a fixed upstream commit and checks
    its sha256 (reference/upstream/installers/installers.json) before running it."""
    for overrides, distribution in (({}, "k3s"), (RKE2, "rke2")):
        script = yaml.safe_load(server(cached_run(overrides), 0))["write_files"][0]["content"]
        pin = INSTALLERS[distribution]
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w-]+/[\w-]+/[0-9a-f]{40}/install\.sh", pin.url)
        assert re.fullmatch(r"[0-9a-f]{64}", pin.sha256)
        assert f"INSTALLER_URL={pin.url}\n" in script and f"INSTALLER_SHA256={pin.sha256}\n" in script
        assert "get.k3s.io" not in script and "get.rke2.io" not in script
        assert script.index("sha256sum --check") < script.index('sh "$INSTALLER"')


@rehearsal
def test_a_tampered_installer_aborts_the_boot_before_it_runs():
    run = cached_run({})
    with boot(server(run, 1), store_of(run), scenario(installer_tampered=True)) as result:
        assert result.returncode != 0, describe(result)
        assert f"the installer from {INSTALLERS['k3s'].url} has sha256 " in result.stderr
        assert f"not the pinned " in result.stderr and "not running it" in result.stderr
        assert not [c for c in result.calls if c["cmd"] == "installer"]
        assert "/usr/local/bin/k3s" not in result.files
        assert not [c for c in result.calls_of("systemctl") if "k3s.service" in c]


# ------------------------------------------------------------------- the token, late
@rehearsal
def test_a_token_created_later_is_waited_for():
    run = cached_run({})
    store = store_of(run)
    name = f"{PREFIX}/token"
    with boot(server(run, 1), {**store, name: LateParameter(store[name], hidden_reads=2)}, scenario()) as result:
        assert result.returncode == 0, describe(result)
        assert f"waiting for SSM parameter {name} (attempt 1 of 60)" in result.stderr
        assert "(attempt 2 of 60)" in result.stderr and "(attempt 3 of 60)" not in result.stderr
        assert result.state["ssm_reads"][name] == 3
        assert config_yaml(result, "k3s")["token"] == store[name].strip()


@rehearsal
def test_a_token_that_never_appears_fails_naming_the_parameter_and_the_role_path():
    run = cached_run({})
    store = store_of(run)
    name = f"{PREFIX}/token"
    del store[name]
    with boot(server(run, 0), store, scenario(environment={"RANCHER_HA_SSM_ATTEMPTS": "4"})) as result:
        assert result.returncode != 0, describe(result)
        assert (f"SSM parameter {name} is still not readable after 4 attempts. Check that it exists in eu-west-1 "
                f"and that the instance role may read {PREFIX}/*.") in result.stderr
        assert "/etc/rancher/k3s/config.yaml" not in result.files
        assert not started(result, "k3s.service") and not unit_state(result, "k3s.service").get("active")
        assert f"{PREFIX}/token.partial" not in result.stderr


# ------------------------------------------------------------------------------ egress
def egress_probes(result) -> list[dict]:
    return [c for c in result.calls if c["cmd"] == "curl" and "-I" in c["argv"]]


@rehearsal
def test_the_boot_waits_for_egress_then_proceeds():
    run = cached_run({})
    with boot(server(run, 1), store_of(run), scenario(egress_from_request=4)) as result:
        assert result.returncode == 0, describe(result)
        probes = egress_probes(result)
        assert [p["exit"] for p in probes] == [28, 28, 28, 0]
        assert probes[0]["argv"][-1] == INSTALLERS["k3s"].url
        # The rendered cadence (rendering/polls.py, which the benchmark models too).
        assert result.calls_of("sleep")[:3] == [[str(polls.EGRESS.interval_s)]] * 3
        assert all(p["argv"][p["argv"].index("--connect-timeout") + 1] == str(polls.EGRESS.connect_timeout_s) for p in probes)
        # Nothing was downloaded or installed before the way out existed.
        assert index_of(result, lambda cmd, _: cmd == "installer") > result.calls.index(probes[-1])
        assert unit_state(result, "k3s.service")["active"]


@rehearsal
def test_no_way_out_fails_clearly_before_installing_anything():
    run = cached_run({})
    with boot(server(run, 0), store_of(run), scenario(egress_from_request=None, environment={"RANCHER_HA_EGRESS_ATTEMPTS": "3"})) as result:
        assert result.returncode != 0, describe(result)
        assert len(egress_probes(result)) == 3
        assert (f"no way out to {INSTALLERS['k3s'].url} after 3 attempts. Check the NAT gateway and the private route tables, "
                "or the proxy settings.") in result.stderr
        assert not [c for c in result.calls if c["cmd"] in ("installer", "aws")]
        assert "/etc/rancher/k3s/config.yaml" not in result.files


# ---------------------------------------------------------------------- RKE2 servers
def rke2_store(initialized: bool) -> dict[str, str]:
    store = store_of(cached_run(RKE2))
    if not initialized:
        del store[f"{PREFIX}/cluster-initialized"]  # the program writes it once the cluster was ready
    return store


@rehearsal
def test_rke2_first_server_of_a_new_cluster_initializes_it():
    store = rke2_store(initialized=False)
    with boot(server(cached_run(RKE2), 0), store, scenario()) as result:
        assert result.returncode == 0, describe(result)
        config = config_yaml(result, "rke2")
        assert "server" not in config
        assert config["token"] == store[f"{PREFIX}/token"].strip()
        assert config["tls-san"] == [HOSTNAME, API_HOSTNAME, REGISTRATION]
        assert config["ingress-controller"] == "ingress-nginx"
        assert "no cluster yet: initializing it" in result.stderr
        assert result.state["ssm_reads"][f"{PREFIX}/cluster-initialized"] == 1
        for name in CLUSTER_CA_FILES:
            assert result.files[f"/var/lib/rancher/rke2/server/tls/{name}"].text.strip() == store[f"{PREFIX}/tls/{name}"].strip()
        assert "/ping" not in result.log
        assert {k: v for k, v in installer(result)["env"].items() if k.startswith("INSTALL_")} == {
            "INSTALL_RKE2_TYPE": "server", "INSTALL_RKE2_VERSION": RKE2_VERSION}
        assert unit_state(result, "rke2-server.service") == {"active": True, "enabled": True}
        assert "/run/rancher-ha/config-secrets" not in result.files
        assert_no_secret_seen(result, store)


@rehearsal
def test_a_replaced_rke2_first_server_joins_the_running_cluster():
    store = rke2_store(initialized=True)
    with boot(server(cached_run(RKE2), 0), store, scenario(supervisors={REGISTRATION: 3})) as result:
        assert result.returncode == 0, describe(result)
        assert config_yaml(result, "rke2")["server"] == REGISTRATION_URL
        assert f"cluster already initialized: joining through {REGISTRATION_URL}" in result.stderr
        pings = [c for c in result.calls if c["cmd"] == "curl" and c["argv"][-1] == f"{REGISTRATION_URL}/ping"]
        assert [p["exit"] for p in pings] == [7, 7, 0]
        start = index_of(result, lambda cmd, argv: cmd == "systemctl" and argv == ["enable", "--now", "rke2-server.service"])
        assert result.calls.index(pings[-1]) < start
        assert "/run/rancher-ha/config-secrets" not in result.files


@rehearsal
def test_an_ssm_error_on_the_initialized_check_fails_instead_of_making_a_second_cluster():
    store = rke2_store(initialized=True)
    name = f"{PREFIX}/cluster-initialized"
    errors = {name: "AccessDeniedException"}
    with boot(server(cached_run(RKE2), 0), store,
              scenario(ssm_errors=errors, environment={"RANCHER_HA_SSM_ATTEMPTS": "3"})) as result:
        assert result.returncode != 0, describe(result)
        assert f"cannot tell whether SSM parameter {name} exists after 3 attempts" in result.stderr
        assert "AccessDeniedException" in result.stderr
        assert "initializing" not in result.stderr
        assert "/etc/rancher/rke2/config.yaml" not in result.files
        assert not started(result, "rke2-server.service")
        assert not unit_state(result, "rke2-server.service").get("active")


@rehearsal
def test_rke2_joiner_waits_for_the_registration_address_and_gets_no_ca():
    run = cached_run(RKE2)
    store = rke2_store(initialized=False)  # joiners never ask
    with boot(server(run, 1), store, scenario(supervisors={REGISTRATION: 3})) as result:
        assert result.returncode == 0, describe(result)
        config = config_yaml(result, "rke2")
        assert config["server"] == REGISTRATION_URL
        assert config["token"] == store[f"{PREFIX}/token"].strip()
        assert not result.files.under("/var/lib/rancher/rke2/server/tls")
        assert not [n for n in result.state["ssm_reads"] if "/tls/" in n or n.endswith("cluster-initialized")]
        pings = [c for c in result.calls if c["cmd"] == "curl" and c["argv"][-1] == f"{REGISTRATION_URL}/ping"]
        assert len(pings) == 3 and pings[-1]["exit"] == 0  # polled until it answered, then no more
        log = result.log
        assert log.index(INSTALLERS["rke2"].url) < log.index("/ping") < log.index("systemctl enable --now rke2-server.service")
        assert f"waiting for {REGISTRATION_URL}/ping" in result.stderr


@rehearsal
def test_rke2_joiner_starts_anyway_when_the_registration_address_stays_silent():
    run = cached_run(RKE2)
    with boot(server(run, 2), rke2_store(initialized=True), scenario(supervisors={REGISTRATION: None},
              environment={"RANCHER_HA_JOIN_ATTEMPTS": "3"})) as result:
        assert result.returncode == 0, describe(result)
        assert "registration address not answering yet; starting anyway, rke2 retries the join" in result.stderr
        assert "if every server was lost, restore a snapshot: docs/disaster-recovery.md#whole-cluster-lost" in result.stderr
        assert started(result, "rke2-server.service")


# --------------------------------------------------- RKE2 restore (docs/disaster-recovery.md)
SNAPSHOT = "etcd-snapshot-ip-10-0-1-10-1733550000"
RESTORE = {**RKE2, "rancher-ha:etcdSnapshotS3": True, "rancher-ha:etcdRestoreSnapshot": SNAPSHOT}


def restore_store(restored: bool) -> dict[str, str]:
    """An existing stack whose servers were all replaced: cluster-initialized exists; the
    restored marker only once the restored cluster was ready."""
    store = store_of(cached_run(RESTORE))
    assert f"{PREFIX}/cluster-initialized" in store
    if not restored:
        del store[f"{PREFIX}/etcd-restored-{SNAPSHOT}"]  # written after the gate
    return store


def binary_runs(result, name: str) -> list[list[str]]:
    return [call["argv"] for call in result.calls if call["cmd"] == name]


@rehearsal
def test_rke2_first_server_restores_the_s3_snapshot_then_starts_the_restored_cluster():
    from rendering.server_flags import config_problems

    store = restore_store(restored=False)
    # Every old server is gone: the registration name answers no more.
    with boot(server(cached_run(RESTORE), 0), store, scenario(supervisors={REGISTRATION: None})) as result:
        assert result.returncode == 0, describe(result)
        assert f"restoring etcd from the S3 snapshot {SNAPSHOT} (cluster-reset)" in result.stderr
        (restore,) = binary_runs(result, "rke2")
        assert restore == ["server", "--cluster-reset", f"--cluster-reset-restore-path={SNAPSHOT}"]
        (call,) = [c for c in result.calls if c["cmd"] == "rke2"]
        assert call["config_present"], "the restore ran before config.yaml (token, etcd-s3) was written"
        start = index_of(result, lambda cmd, argv: cmd == "systemctl" and argv == ["enable", "--now", "rke2-server.service"])
        assert result.calls.index(call) < start
        config = config_yaml(result, "rke2")
        # A cluster of one: no join address, the stack's token, the S3 settings to fetch it with.
        assert "server" not in config and "cluster-reset" not in config
        assert config["token"] == store[f"{PREFIX}/token"].strip()
        assert config["etcd-s3"] is True and config["etcd-s3-folder"] == "rancher-ha/dev" and config["etcd-s3-bucket"]
        # The restore run's flags and the config it reads are real `rke2 server` flags.
        flags = {arg[2:].split("=", 1)[0]: (arg.split("=", 1)[1] if "=" in arg else True) for arg in restore[1:]}
        assert config_problems("rke2", RKE2_VERSION, {**config, **flags}) == []
        # The cluster CA files this stack's kubeconfig trusts are on disk, as in the snapshot's bootstrap data.
        for name in CLUSTER_CA_FILES:
            assert result.files[f"/var/lib/rancher/rke2/server/tls/{name}"].text.strip() == store[f"{PREFIX}/tls/{name}"].strip()
        assert started(result, "rke2-server.service")
        # Nobody to join: the registration address was asked once (silent), before the restore.
        (ping,) = [c for c in result.calls if c["cmd"] == "curl" and c["argv"][-1] == f"{REGISTRATION_URL}/ping"]
        assert ping["exit"] != 0 and result.calls.index(ping) < result.calls.index(call)
        assert_no_secret_seen(result, store)


@rehearsal
def test_a_restore_is_refused_while_a_server_of_the_old_cluster_still_answers():
    # Review finding 6: etcdRestoreSnapshot with an old server still running (a partial
    # replacement, or server 0 replaced alone) would reset this server into a second
    # cluster beside the old one. The registration name still lists the old servers.
    store = restore_store(restored=False)
    with boot(server(cached_run(RESTORE), 0), store, scenario(supervisors={REGISTRATION: 1},
              environment={"RANCHER_HA_RESTORE_SILENCE_ATTEMPTS": "3"})) as result:
        assert result.returncode != 0, describe(result)
        assert f"refusing to restore {SNAPSHOT}: a server of the old cluster still answers at {REGISTRATION_URL}" in result.stderr
        assert "docs/disaster-recovery.md#whole-cluster-lost" in result.stderr
        pings = [c for c in result.calls if c["cmd"] == "curl" and c["argv"][-1] == f"{REGISTRATION_URL}/ping"]
        assert len(pings) == 3  # waited for it to fall silent, within the bound
        assert not binary_runs(result, "rke2")
        assert not started(result, "rke2-server.service")


@rehearsal
def test_a_failed_restore_stops_the_boot_before_the_service_starts():
    store = restore_store(restored=False)
    with boot(server(cached_run(RESTORE), 0), store, scenario(supervisors={REGISTRATION: None},
              environment={"PATH": "/rehearsal-no-rke2:/usr/sbin:/usr/bin:/sbin:/bin"})) as result:
        # Without the binary on PATH the restore command fails; nothing may start a cluster.
        assert result.returncode != 0, describe(result)
        assert f"the etcd restore of {SNAPSHOT} failed" in result.stderr
        assert not started(result, "rke2-server.service")


@rehearsal
def test_a_first_server_created_after_the_restore_joins_instead_of_restoring_again():
    store = restore_store(restored=True)
    with boot(server(cached_run(RESTORE), 0), store, scenario(supervisors={REGISTRATION: 1})) as result:
        assert result.returncode == 0, describe(result)
        assert not binary_runs(result, "rke2")
        assert config_yaml(result, "rke2")["server"] == REGISTRATION_URL
        assert f"cluster already initialized: joining through {REGISTRATION_URL}" in result.stderr


@rehearsal
def test_joiners_of_a_restore_join_the_restored_first_server():
    run = cached_run(RESTORE)
    with boot(server(run, 1), restore_store(restored=False), scenario(supervisors={REGISTRATION: 2})) as result:
        assert result.returncode == 0, describe(result)
        assert not binary_runs(result, "rke2")
        assert config_yaml(result, "rke2")["server"] == REGISTRATION_URL


# ------------------------------------------------------------------------------ proxy
@rehearsal
def test_proxy_settings_reach_the_installer_and_snapd_and_spare_the_registration_name():
    run = cached_run({**RKE2, **PROXY})
    store = store_of(run)  # cluster-initialized present: a replaced first server, which pings
    with boot(server(run, 0), store, scenario(reachable_proxies=("proxy.corp.example",), supervisors={REGISTRATION: 2})) as result:
        assert result.returncode == 0, describe(result)
        env_file = result.files["/etc/default/rke2-server"]
        assert env_file.mode == 0o644
        values = dict(line.split("=", 1) for line in env_file.text.splitlines())
        assert values["HTTP_PROXY"] == values["HTTPS_PROXY"] == PROXY_URL
        assert values["CONTAINERD_HTTPS_PROXY"] == PROXY_URL
        no_proxy = values["NO_PROXY"].split(",")
        assert ".internal" in no_proxy and "git.corp.example" in no_proxy
        install = installer(result)
        assert install["env"]["HTTPS_PROXY"] == PROXY_URL and install["env"]["NO_PROXY"] == values["NO_PROXY"]
        downloads = [c for c in result.calls if c["cmd"] == "curl" and c["argv"][-1] == INSTALLERS["rke2"].url]
        assert downloads and all(c.get("via_proxy") == PROXY_URL for c in downloads if c["exit"] == 0)
        # Through a proxy the connect timeout covers the CONNECT and the far TLS handshake too.
        probes = egress_probes(result)
        assert probes and all(p["argv"][p["argv"].index("--connect-timeout") + 1] == str(polls.EGRESS_VIA_PROXY.connect_timeout_s)
                              for p in probes)
        assert ["set", "system", f"proxy.http={PROXY_URL}", f"proxy.https={PROXY_URL}"] in result.calls_of("snap")
        assert result.state["snap"]["system"] == {"proxy.http": PROXY_URL, "proxy.https": PROXY_URL}
        snaps = result.calls_of("snap")
        assert snaps[0] == ["wait", "system", "seed.loaded"]
        pings = [c for c in result.calls if c["cmd"] == "curl" and c["argv"][-1] == f"{REGISTRATION_URL}/ping"]
        assert pings and pings[-1]["exit"] == 0
        assert all(p.get("via_proxy") is None for p in pings), pings  # .internal is in NO_PROXY


# ------------------------------------------------------------------------------ NGINX
def nginx_run():
    return cached_run(NGINX_L7)


def nginx_user_data(run) -> str:
    (template,) = run.of_type(LAUNCH_TEMPLATE)
    return base64.b64decode(template.inputs["userData"], validate=True).decode()


def nginx_allocation(run) -> str:
    (eip,) = [e for e in run.of_type("aws:ec2/eip:Eip") if e.name.startswith("nginx")]
    return eip.outputs["allocationId"]


def nginx_boot():
    run = nginx_run()
    allocations = tuple(e.outputs["allocationId"] for e in run.of_type("aws:ec2/eip:Eip"))
    return booted("nginx-l7", lambda: boot(nginx_user_data(run), store_of(run), scenario(eip_allocations=allocations)))


REFRESH = "/usr/local/sbin/rancher-ha-nginx-refresh"


@rehearsal
def test_nginx_boots_from_the_launch_template_and_takes_over_the_elastic_ip():
    result, run = nginx_boot(), nginx_run()
    store = store_of(run)
    assert result.returncode == 0, describe(result)
    assert ["install", "-y", "-q", "nginx", "libnginx-mod-stream"] in result.calls_of("apt-get")
    associate = [argv for argv in result.calls_of("aws") if argv[:2] == ["ec2", "associate-address"]]
    assert len(associate) == 1
    argv = associate[0]
    assert argv[argv.index("--allocation-id") + 1] == nginx_allocation(run)  # the stack's EIP, not the NAT's
    assert argv[argv.index("--instance-id") + 1] == "i-0a1b2c3d4e5f60718"  # from IMDSv2
    assert "--allow-reassociation" in argv
    assert result.state["eip"] == {nginx_allocation(run): "i-0a1b2c3d4e5f60718"}
    assert result.files["/etc/nginx/nginx.conf"].text.strip() == store[f"{NGINX_PREFIX}/nginx.conf"].strip()
    assert result.files["/etc/nginx/tls/rancher.crt"].text.strip() == store[f"{NGINX_PREFIX}/tls.crt"].strip()
    assert result.files["/etc/nginx/tls/rancher.key"].mode == 0o600
    assert result.files["/etc/nginx/tls"].mode == 0o700
    assert unit_state(result, "nginx.service")["enabled"] and unit_state(result, "nginx.service")["active"]
    timer = unit_state(result, "rancher-ha-nginx-refresh.timer")
    assert timer["enabled"] and timer["active"]
    assert result.calls_of("snap")[0] == ["wait", "system", "seed.loaded"]
    assert_no_secret_seen(result, {k: v for k, v in store.items() if k.endswith("tls.key")})
    check = result.run_again(["nginx", "-t", "-c", "/etc/nginx/nginx.conf"], timeout=30)
    assert check.returncode == 0 and "test is successful" in check.stderr, describe(check)


@rehearsal
def test_a_replacement_nginx_in_another_zone_boots_to_the_same_working_load_balancer():
    """What the Auto Scaling group launches after losing the instance or its zone: the
    same launch template user data on a new instance id, in another zone. It takes the
    Elastic IP over (allow-reassociation) and serves the configuration from SSM."""
    run = nginx_run()
    store = store_of(run)
    allocations = tuple(e.outputs["allocationId"] for e in run.of_type("aws:ec2/eip:Eip"))
    replacement = "i-0fedcba9876543210"
    with boot(nginx_user_data(run), store, scenario(instance_id=replacement, availability_zone="eu-west-1c",
                                                    eip_allocations=allocations)) as result:
        assert result.returncode == 0, describe(result)
        assert result.state["eip"] == {nginx_allocation(run): replacement}
        (argv,) = [argv for argv in result.calls_of("aws") if argv[:2] == ["ec2", "associate-address"]]
        assert "--allow-reassociation" in argv
        assert result.files["/etc/nginx/nginx.conf"].text.strip() == store[f"{NGINX_PREFIX}/nginx.conf"].strip()
        assert unit_state(result, "nginx.service")["active"]
        check = result.run_again(["nginx", "-t", "-c", "/etc/nginx/nginx.conf"], timeout=30)
        assert check.returncode == 0 and "test is successful" in check.stderr, describe(check)


@rehearsal
def test_nginx_refresh_installs_a_changed_config_and_reloads():
    result, run = nginx_boot(), nginx_run()
    assert result.returncode == 0, describe(result)
    store = store_of(run)
    old_conf = store[f"{NGINX_PREFIX}/nginx.conf"]
    old_address = run.outputs["nodePrivateIps"].value[0]
    assert f"server {old_address}:" in old_conf
    changed = {**store, f"{NGINX_PREFIX}/nginx.conf": old_conf.replace(f"server {old_address}:", "server 10.0.77.7:")}
    again = result.run_again(REFRESH, ssm=changed)
    assert again.returncode == 0, describe(again)
    installed = again.files["/etc/nginx/nginx.conf"].text
    assert "server 10.0.77.7:" in installed and f"server {old_address}:" not in installed
    assert again.calls_of("systemctl").count(["reload", "nginx.service"]) == 1
    assert "reloaded nginx: /etc/nginx/nginx.conf" in again.stderr
    # And once more with nothing new: nothing is installed, nothing reloaded.
    unchanged = again.run_again(REFRESH, ssm=changed)
    assert unchanged.returncode == 0, describe(unchanged)
    assert not [argv for argv in unchanged.calls_of("systemctl") if argv[0] in ("reload", "restart")], unchanged.log
    assert unchanged.files["/etc/nginx/nginx.conf"].text == installed


@rehearsal
def test_nginx_refresh_rolls_back_a_config_nginx_rejects():
    run = nginx_run()
    store = store_of(run)
    allocations = tuple(e.outputs["allocationId"] for e in run.of_type("aws:ec2/eip:Eip"))
    with boot(nginx_user_data(run), store, scenario(eip_allocations=allocations)) as result:
        assert result.returncode == 0, describe(result)
        before = result.files["/etc/nginx/nginx.conf"].data
        broken = {**store, f"{NGINX_PREFIX}/nginx.conf": store[f"{NGINX_PREFIX}/nginx.conf"] + "\nthis_is_not_a_directive on;\n"}
        again = result.run_again(REFRESH, ssm=broken)
        assert again.returncode != 0, describe(again)
        assert "nginx -t rejected the new configuration from SSM; kept the previous one" in again.stderr
        assert again.files["/etc/nginx/nginx.conf"].data == before
        assert not [argv for argv in again.calls_of("systemctl") if argv[0] in ("reload", "restart")], again.log
        assert unit_state(again, "nginx.service")["active"]  # the running one is kept


# -------------------------------------------------------------- static checks, shapes
STATIC_SHAPES = {"k3s": {}, "rke2": RKE2, "nginx-l7": NGINX_L7, "rke2-nginx-l7": {**RKE2, **NGINX_L7},
                 "proxy": PROXY, "rke2-proxy": {**RKE2, **PROXY}, "nginx-l4": NGINX_L4,
                 "rke2-etcd-restore": RESTORE}


def user_data_documents() -> dict[str, str]:
    """label -> user data of every instance and (decoded) launch template, deduplicated."""
    documents, seen = {}, set()
    for shape, overrides in STATIC_SHAPES.items():
        run = cached_run(overrides)
        sources = [(r.name, r.inputs["userData"]) for r in run.of_type("aws:ec2/instance:Instance") if r.inputs.get("userData")]
        sources += [(r.name, base64.b64decode(r.inputs["userData"]).decode()) for r in run.of_type(LAUNCH_TEMPLATE)]
        for name, text in sources:
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                documents[f"{shape}/{name}"] = text
    return documents


def generated_scripts() -> dict[str, str]:
    scripts, seen = {}, set()
    for label, text in user_data_documents().items():
        for entry in yaml.safe_load(text)["write_files"]:
            content = entry["content"]
            if content.startswith("#!") and content not in seen:
                seen.add(content)
                scripts[f"{label}:{entry['path']}"] = content
    return scripts


def check_all(tmp_path, command, items: dict[str, str], suffix: str, accepted) -> int:
    def one(pair):
        label, text = pair
        path = tmp_path / (re.sub(r"[^A-Za-z0-9.-]+", "_", label) + suffix)
        path.write_text(text)
        completed = subprocess.run([*command, str(path)], capture_output=True, text=True)
        return label, completed

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, items.items()))
    failures = [f"{label}:\n{c.stdout}{c.stderr}" for label, c in results if not accepted(c)]
    assert not failures, "\n".join(failures)
    return len(results)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)")
def test_shellcheck_passes_on_every_generated_script(tmp_path):
    # ssm.sh.j2 sets DATASTORE_ATTEMPTS in every script; only the K3s node bootstrap uses
    # it (SC2034 in the RKE2 and NGINX scripts).
    scripts = generated_scripts()
    kinds = {path.rsplit(":", 1)[1] for path in scripts}
    assert kinds == {"/usr/local/sbin/rancher-ha-bootstrap", REFRESH}
    # Distinct scripts: first/joining x k3s/rke2 x direct/proxy, and NGINX L4/L7 bootstrap + refresh.
    assert sum(1 for s in scripts.values() if "NGINX load balancer bootstrap" in s) == 2, list(scripts)
    assert sum(1 for path in scripts if path.endswith(REFRESH)) == 2, list(scripts)
    # ... plus the RKE2 first server that restores an etcd snapshot (its joiners' script is the plain one).
    assert sum(1 for s in scripts.values() if "server bootstrap (" in s) == 9, list(scripts)
    check_all(tmp_path, ["shellcheck", "--severity=style", "--shell=bash"], scripts, ".sh",
              lambda completed: completed.returncode == 0)


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed (apt-get install cloud-init)")
def test_cloud_init_schema_accepts_every_user_data(tmp_path):
    documents = user_data_documents()
    assert sum(1 for label in documents if "nginx-lb" in label) == 2, list(documents)  # L4 and L7 launch templates
    assert sum(1 for label in documents if "rancher-server" in label) == 10, list(documents)  # + the restore shape: its first server and its joiners (with S3)
    check_all(tmp_path, ["cloud-init", "schema", "--config-file"], documents, ".yaml",
              lambda completed: completed.returncode == 0 and "Valid" in completed.stdout)


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed (apt-get install cloud-init)")
def test_cloud_init_schema_rejects_a_broken_document(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nwrite_files: {path: /x}\nruncmd: 5\n")
    completed = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert completed.returncode != 0
