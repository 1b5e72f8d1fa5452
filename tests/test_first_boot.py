"""First boot of every instance of every stack shape, rehearsed for real.

Each instance's user data goes through Debian's cloud-init modules (write_files, runcmd,
scripts-user) inside a sandbox (tests/rehearsal/sandbox.py): the boot script runs at its
real paths with the real bash/coreutils/python3/nginx and stubs only for what a machine
without a cloud cannot do (aws, snap, curl, systemctl, apt-get, sleep). The SSM store
holds ONLY the parameters the program created, by their full names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from conftest import DEV_PARAMETER_ROOT, NGINX_L4, NGINX_L7, PROXY, RKE2, BASE_CONFIG, cached_run
from offline.runner import STACKS_DIR, run_stack, stack_config
from rehearsal import LateParameter, with_real_pems, Scenario, boot, pem_self_signed

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/usr/bin/python3").exists(),
    reason="the rehearsal needs root, unshare(1) and the system python3 with cloud-init",
)

EXISTING_VPC = {
    "rancher-ha:vpcId": "vpc-0123456789abcdef0",
    "rancher-ha:nodeSubnetIds": ["subnet-00000000000000001", "subnet-00000000000000002", "subnet-00000000000000003"],
    "rancher-ha:lbSubnetIds": ["subnet-0000000000000000a", "subnet-0000000000000000b"],
}
SHAPES = {
    "k3s-nlb": {},
    "rke2-nlb": RKE2,
    "k3s-nginx-l4": NGINX_L4,
    "k3s-nginx-l7": NGINX_L7,
    "rke2-nginx-l7": {**RKE2, **NGINX_L7},
    "rke2-proxy": {**RKE2, **PROXY},
    "existing-vpc": EXISTING_VPC,
    # docs/disaster-recovery.md: every server of a lost cluster replaced with the restore settings.
    "rke2-etcd-restore": {**RKE2, "rancher-ha:etcdSnapshotS3": True,
                          "rancher-ha:etcdRestoreSnapshot": "etcd-snapshot-ip-10-0-1-10-1733550000"},
    "k3s-datastore-restore": {"rancher-ha:dbRestoreSourceInstance": "datastore-mysql-1a2b3c4", "rancher-ha:dbRestoreTime": "latest"},
}
STACKS = sorted(path.name[len("Pulumi."):-len(".yaml")] for path in STACKS_DIR.glob("Pulumi.*.yaml"))
CASES = [f"shape:{name}" for name in SHAPES] + [f"stack:{name}" for name in STACKS]

SERVER_MARKER = "/etc/rancher/rancher-ha/config.base.yaml"
NGINX_STAGED_CONF = "/etc/rancher-ha/nginx.conf"  # L4: staged in user data; L7: installed from SSM
NGINX_MARKER = "nginx"
INSTANCE_TYPES = ("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate")  # NGINX may run in an ASG


# ----------------------------------------------------------------------------- set-up
def _config_and_run(case: str):
    kind, name = case.split(":", 1)
    if kind == "shape":
        return {**BASE_CONFIG, **SHAPES[name]}, cached_run(SHAPES[name])
    config = stack_config(name)
    try:
        return config, run_stack(name)
    except ValueError as error:  # an encrypted value the offline run cannot read
        pytest.skip(f"stack {name}: {error}")


def _closure(run, start: str, edges) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def store_at_first_boot(run, instance, store: dict) -> dict:
    """The SSM parameters as they are when this machine first boots, by the engine's order:
    a parameter the instance depends on exists; one that depends on the instance (e.g.
    cluster-initialized, written after the readiness gate) does not exist yet; one with no
    order between them (the K3s datastore endpoint, created when RDS is done) appears while
    the machine boots, so it is hidden for its first reads."""
    by_urn = {r.urn: r for r in run.registrations}
    children: dict[str, list[str]] = {}
    for r in run.registrations:
        children.setdefault(r.parent, []).append(r.urn)

    def needs(urn):  # direct dependencies, components expanded to their children
        out = []
        for dep in by_urn[urn].dependencies if urn in by_urn else []:
            out.append(dep)
            out.extend(_closure(run, dep, lambda u: children.get(u, [])))
        return out

    dependents: dict[str, list[str]] = {}
    for r in run.registrations:
        for dep in needs(r.urn):
            dependents.setdefault(dep, []).append(r.urn)
    before = _closure(run, instance.urn, needs)
    after = _closure(run, instance.urn, lambda u: dependents.get(u, []))
    result = {}
    for parameter in run.of_type("aws:ssm/parameter:Parameter"):
        name = parameter.inputs["name"]
        if name not in store or parameter.urn in after:
            continue
        result[name] = store[name] if parameter.urn in before else LateParameter(store[name], hidden_reads=5)
    return result


def _instance_id(name: str) -> str:
    return "i-" + hashlib.sha256(name.encode()).hexdigest()[:17]


def _user_data(resource) -> str:
    """An instance's user data is text; a launch template's is base64 (EC2 API)."""
    text = resource.inputs["userData"]
    if resource.type.endswith("LaunchTemplate"):
        try:
            return base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return text
    return text


def _restores(user_data: str) -> bool:
    """The first server of an etcdRestoreSnapshot: it runs the cluster-reset restore."""
    return "--cluster-reset-restore-path=" in user_data


def _scenario(config: dict, instance, eip_allocations=None, user_data: str = "") -> Scenario:
    region = config.get("aws:region", "eu-west-1")
    # A restore replaces every server of a lost cluster: no old server answers at the
    # registration name when the restoring first server asks (its joiners find it).
    silent = re.findall(r"https://([^:/'\"]+):9345/ping", user_data) if _restores(user_data) else []
    proxies = {urlparse(str(config[key])).hostname for key in ("rancher-ha:proxyHttp", "rancher-ha:proxyHttps") if config.get(key)}
    return Scenario(
        region=region,
        instance_id=_instance_id(instance.name),
        availability_zone=f"{region}a",
        local_ipv4=str(instance.inputs.get("privateIp") or "10.0.1.10"),
        reachable_proxies=tuple(sorted(proxies)),  # the corporate proxy is there in that design
        eip_allocations=eip_allocations,
        supervisors={host: None for host in silent} if silent else None,
    )


_boots: dict[str, list] = {}


def _booted(case: str):
    """[(instance, user data, store, result)] for every instance of the case, booted in
    parallel (each boot is its own sandbox) and cached for the module."""
    if case not in _boots:
        config, run = _config_and_run(case)
        parameters = {p.inputs["name"]: p.inputs["value"] for p in run.of_type("aws:ssm/parameter:Parameter")}
        store = with_real_pems(parameters, str(config.get("rancher-ha:hostname", "rancher.example.com")))
        instances = [r for kind in INSTANCE_TYPES for r in run.of_type(kind) if r.inputs.get("userData")]
        assert instances, f"{case}: no instances"
        allocations = tuple(sorted(e.outputs.get("allocationId") or e.outputs.get("id") for e in run.of_type("aws:ec2/eip:Eip")))

        def one(instance):
            user_data = _user_data(instance)
            at_boot = store_at_first_boot(run, instance, store)
            return instance, user_data, store, boot(user_data, at_boot, _scenario(config, instance, allocations, user_data), timeout=120)

        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            _boots[case] = list(pool.map(one, instances))
    return _boots[case]


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    for entries in _boots.values():
        for *_, result in entries:
            result.close()


def _paths(user_data: str) -> list[str]:
    return [entry["path"] for entry in yaml.safe_load(user_data).get("write_files", [])]


def _is_server(user_data: str) -> bool:
    return SERVER_MARKER in _paths(user_data)


def _base_config(user_data: str) -> dict:
    (entry,) = [e for e in yaml.safe_load(user_data)["write_files"] if e["path"] == SERVER_MARKER]
    return yaml.safe_load(entry["content"]) or {}


def _joins(user_data: str) -> bool:
    """The program's own view: a server whose config names a `server:` joins through it."""
    return _is_server(user_data) and "server" in _base_config(user_data)


def _of_kind(case: str, marker: str):
    """Servers (by their base config), or NGINX: every other instance the program boots, so
    a renamed NGINX file makes the NGINX tests fail instead of finding no instance."""
    wanted = _is_server if marker == SERVER_MARKER else (lambda ud: not _is_server(ud))
    return [entry for entry in _booted(case) if wanted(entry[1])]


def _case_config(case: str) -> dict:
    kind, name = case.split(":", 1)
    return {**BASE_CONFIG, **SHAPES[name]} if kind == "shape" else stack_config(name)


def _has_nginx(case: str) -> bool:
    """From the settings, not from what the program rendered: the NGINX load balancer."""
    return _case_config(case).get("rancher-ha:loadBalancerType") == "nginx"


def _describe(result) -> str:
    return (f"exit {result.returncode}{' (timed out)' if result.timed_out else ''}\n"
            f"--- stderr (last 4000) ---\n{result.stderr[-4000:]}\n--- stdout (last 1500) ---\n{result.stdout[-1500:]}\n"
            f"--- calls (last 30) ---\n" + "".join(result.log.splitlines(True)[-30:]))


def _secret_fragments(store: dict[str, str]) -> set[str]:
    fragments = set()
    for value in store.values():
        fragments.add(value.strip())
        for line in value.splitlines():
            if len(line) >= 12 and not line.startswith("-----"):
                fragments.add(line)
        fragments.update(m for m in re.findall(r"://[^:/@]+:([^@]+)@", value) if len(m) >= 8)
    return {f for f in fragments if len(f) >= 8}


def _installed(result) -> tuple[str, str]:
    (call,) = [c for c in result.calls if c["cmd"] == "installer"]
    distribution = call["argv"][0]
    return distribution, call["env"].get(f"INSTALL_{distribution.upper()}_VERSION", "")


# ------------------------------------------------------------------------------ tests
HOST_PATHS = ["/usr/local/sbin/rancher-ha-bootstrap", "/etc/rancher", "/var/lib/rancher-ha", "/var/lib/rancher",
              "/etc/rancher-ha", "/etc/nginx/nginx.conf", "/etc/nginx/tls", "/snap", "/etc/systemd/system/k3s.service",
              "/usr/local/lib/systemd/system", "/usr/local/bin/k3s", "/usr/local/bin/rke2", "/var/lib/cloud",
              "/usr/bin/snap"]


def _fingerprint(path: str):
    target = Path(path)
    if not os.path.lexists(target):
        return None
    if target.is_file():
        return hashlib.sha256(target.read_bytes()).hexdigest()
    return sorted(str(p) for p in target.rglob("*")) if target.is_dir() else os.readlink(target)


def test_sandbox_leaves_the_host_untouched():
    before = {path: _fingerprint(path) for path in HOST_PATHS}
    mounts_before = Path("/proc/self/mountinfo").read_text()
    entries = _booted("shape:k3s-nlb") + _of_kind("shape:k3s-nginx-l4", NGINX_MARKER)
    after = {path: _fingerprint(path) for path in HOST_PATHS}
    assert after == before
    assert Path("/proc/self/mountinfo").read_text().count("rehearsal-") == mounts_before.count("rehearsal-") == 0
    server = next(result for _, user_data, _, result in entries if _is_server(user_data))
    nginx = next(result for _, user_data, _, result in entries if not _is_server(user_data))
    # ...while the machine's upper layers received them.
    runcmd = f"/var/lib/cloud/instances/{server._scenario.instance_id}/scripts/runcmd"
    for path in ("/usr/local/sbin/rancher-ha-bootstrap", "/etc/rancher/k3s/config.yaml", "/var/lib/rancher-ha/bootstrap.done",
                 "/etc/systemd/system/k3s.service", "/snap/bin/aws", runcmd):
        assert path in server.files, path
    assert server.files["/usr/local/sbin/rancher-ha-bootstrap"].mode == 0o700
    assert server.files["/etc/rancher/k3s/config.yaml"].mode == 0o600
    assert server.files["/usr/local/sbin/rancher-ha-bootstrap"].owner == "root:root"
    host_conf = Path("/etc/nginx/nginx.conf").read_bytes() if Path("/etc/nginx/nginx.conf").exists() else b""
    assert nginx.files["/etc/nginx/nginx.conf"].data != host_conf
    # The runcmd script is cloud-init's own shellify() output.
    assert server.files["/var/lib/cloud/instance"].target.endswith(server._scenario.instance_id)
    assert server.files[runcmd].text == "#!/bin/sh\n'/usr/local/sbin/rancher-ha-bootstrap'\n"


def test_the_temp_dir_goes_with_close():
    config, run = _config_and_run("shape:k3s-nlb")
    instance = run.of_type("aws:ec2/instance:Instance")[0]
    result = boot("#cloud-config\nwrite_files:\n- path: /etc/rehearsal-probe\n  content: hi\n  permissions: '0640'\n  defer: true\n"
                  "runcmd:\n- [sh, -c, 'cat /etc/rehearsal-probe > /var/tmp/probe-copy']\n", {}, _scenario(config, instance), timeout=30)
    root = result._machine.root
    assert result.returncode == 0, _describe(result)
    assert result.files["/etc/rehearsal-probe"].mode == 0o640
    assert result.files["/var/tmp/probe-copy"].data == b"hi"  # deferred write_files ran before scripts-user
    again = result.run_again("rm /etc/rehearsal-probe && test -f /var/tmp/probe-copy")
    assert again.returncode == 0, _describe(again)
    assert "/etc/rehearsal-probe" not in again.files and "/etc/rehearsal-probe" in again.files.deleted
    result.close()
    assert not root.exists()


@pytest.mark.parametrize("case", CASES)
def test_every_server_boots_to_the_end(case):
    servers = _of_kind(case, SERVER_MARKER)
    assert servers, f"{case}: no server instances"
    failures = [f"{instance.name}: {_describe(result)}" for instance, _, _, result in servers if result.returncode != 0]
    assert not failures, "\n\n".join(failures)
    for instance, _, store, result in servers:
        distribution, _ = _installed(result)
        config_path = f"/etc/rancher/{distribution}/config.yaml"
        assert config_path in result.files, f"{instance.name}: no {config_path}"
        assert result.files[config_path].mode == 0o600
        assert "/var/lib/rancher-ha/bootstrap.done" in result.files
        assert "/run/rancher-ha/config-secrets" not in result.files  # removed after the merge
        service = "k3s.service" if distribution == "k3s" else "rke2-server.service"
        assert result.state["systemd"][service]["active"] and result.state["systemd"][service]["enabled"], result.state
        # Every parameter it read exists in the store under that exact name.
        assert set(result.state.get("ssm_reads", {})) <= set(store), f"{instance.name}: read names the program never created"


@pytest.mark.parametrize("case", CASES)
def test_no_secret_reaches_the_log_or_the_console(case):
    for instance, _, store, result in _booted(case):
        fragments = _secret_fragments(store)
        seen = result.log + result.stdout + result.stderr + repr(result.calls)
        leaked = sorted(f[:12] + "..." for f in fragments if f in seen)
        assert not leaked, f"{instance.name}: {leaked}"


@pytest.mark.parametrize("case", CASES)
def test_server_config_keys_are_real_flags(case):
    try:
        server_flags = importlib.import_module("rendering.server_flags")
    except ModuleNotFoundError:
        pytest.skip("rendering.server_flags (config_problems) does not exist yet")
    servers = _of_kind(case, SERVER_MARKER)
    problems = {}
    for instance, _, _, result in servers:
        if result.returncode != 0:
            continue  # reported by test_every_server_boots_to_the_end
        distribution, version = _installed(result)
        config = yaml.safe_load(result.files[f"/etc/rancher/{distribution}/config.yaml"].text)
        found = server_flags.config_problems(distribution, version, config)
        # One-off runs of the binary (the etcd restore): their flags on top of config.yaml.
        for call in (c for c in result.calls if c["cmd"] == distribution):
            flags = {arg[2:].split("=", 1)[0]: (arg.split("=", 1)[1] if "=" in arg else True)
                     for arg in call["argv"][1:] if arg.startswith("--")}
            found += server_flags.config_problems(distribution, version, {**config, **flags})
        if found:
            problems[instance.name] = found
    assert not problems, problems


NGINX_CASES = [case for case in CASES if _has_nginx(case)]


def _nginx_conf_source(user_data: str, store: dict[str, str]) -> str:
    """What /etc/nginx/nginx.conf must end up as: the staged file from user data, or the
    SSM parameter the refresh script installs."""
    for entry in yaml.safe_load(user_data)["write_files"]:
        if entry["path"] == NGINX_STAGED_CONF:
            return entry["content"]
    (name,) = [n for n in store if n.endswith("/nginx.conf")]
    return store[name]


@pytest.mark.parametrize("case", NGINX_CASES)
def test_nginx_instance_boots_and_its_config_passes_real_nginx(case):
    nginx = _of_kind(case, NGINX_MARKER)
    assert nginx, f"{case}: loadBalancerType nginx, but no NGINX instance was booted"
    for instance, user_data, store, result in nginx:
        assert result.returncode == 0, f"{instance.name}: {_describe(result)}"
        assert result.files["/etc/nginx/nginx.conf"].text.strip() == _nginx_conf_source(user_data, store).strip()
        assert result.state["systemd"]["nginx.service"]["active"]
        check = result.run_again(["nginx", "-t", "-c", "/etc/nginx/nginx.conf"], timeout=30)
        assert check.returncode == 0, _describe(check)
        assert "test is successful" in check.stderr


def _exec_start(result, unit: str) -> str:
    for line in result.files[f"/etc/systemd/system/{unit}"].text.splitlines():
        if line.startswith("ExecStart="):
            return line.split("=", 1)[1].lstrip("-@+!")
    raise AssertionError(f"{unit} has no ExecStart")


@pytest.mark.parametrize("case", ["shape:k3s-nginx-l7"])
def test_nginx_refresh_timer_picks_up_a_renewed_certificate(case):
    nginx = _of_kind(case, NGINX_MARKER)
    assert len(nginx) == 1, f"{case}: expected one NGINX instance, booted {len(nginx)}"
    instance, user_data, store, result = nginx[0]
    assert "/etc/systemd/system/rancher-ha-nginx-refresh.timer" in _paths(user_data), _paths(user_data)
    assert result.returncode == 0, _describe(result)
    assert result.state["systemd"]["rancher-ha-nginx-refresh.timer"]["active"]
    renewed = dict(store)
    certificate, key = pem_self_signed("renewed." + str(BASE_CONFIG["rancher-ha:hostname"]))
    for name in store:
        if name.endswith("/tls.crt"):
            renewed[name] = certificate
        elif name.endswith("/tls.key"):
            renewed[name] = key
    again = result.run_again(_exec_start(result, "rancher-ha-nginx-refresh.service"), ssm=renewed)
    assert again.returncode == 0, _describe(again)
    # `--output text` prints the value and a newline, as the real CLI does.
    assert again.files["/etc/nginx/tls/rancher.crt"].text.strip() == certificate.strip()
    assert again.files["/etc/nginx/tls/rancher.key"].mode == 0o600
    assert ["reload", "nginx.service"] in again.calls_of("systemctl"), again.log
    unchanged = again.run_again(_exec_start(result, "rancher-ha-nginx-refresh.service"), ssm=renewed)
    assert unchanged.returncode == 0 and ["reload", "nginx.service"] not in unchanged.calls_of("systemctl")


@pytest.mark.parametrize("case", CASES)
def test_no_stub_crashed_and_joiners_reached_the_registration_address(case):
    for instance, user_data, _, result in _booted(case):
        crashes = [c for c in result.calls if "stub_crash" in c]
        assert not crashes, f"{instance.name}: rehearsal stub bug:\n{crashes[0]['stub_crash']}"
        pings = [c for c in result.calls if c["cmd"] == "curl" and any(a.endswith("/ping") for a in c["argv"])]
        if _restores(user_data):
            # It asks whether an old server still answers, and restores only on silence.
            assert pings and all(p["exit"] != 0 for p in pings), f"{instance.name}: restored beside a live server"
            continue
        if not _joins(user_data):
            # The first server of a new cluster (and any K3s server) waits for no one.
            assert not pings, f"{instance.name}: pinged a registration address it does not join"
            continue
        # A joiner (its config names a `server:` to join) must wait for that address
        # before starting, and reach it.
        assert pings, f"{instance.name}: joins {_base_config(user_data)['server']} without waiting for its /ping"
        last = pings[-1]
        assert last["exit"] == 0, (
            f"{instance.name}: {last['argv'][-1]} never answered in {len(pings)} attempts "
            f"(curl exit {last['exit']}, via proxy {last.get('via_proxy')}, NO_PROXY={last['env'].get('NO_PROXY')})")
        assert last["argv"][-1] == _base_config(user_data)["server"] + "/ping"
        start = next(n for n, c in enumerate(result.calls) if c["cmd"] == "systemctl" and c["argv"][:2] == ["enable", "--now"])
        assert result.calls.index(last) < start, f"{instance.name}: started before the registration address answered"


def test_stubs_behave_like_the_real_commands():
    config, run = _config_and_run("shape:k3s-nlb")
    instance = run.of_type("aws:ec2/instance:Instance")[0]
    store = {f"{DEV_PARAMETER_ROOT}/node/token": "t0ken-value-for-the-rehearsal"}
    first = boot("#cloud-config\nruncmd:\n- [sh, -c, 'command -v aws || echo no-aws-cli']\n", store, _scenario(config, instance), timeout=30)
    try:
        assert first.returncode == 0 and "no-aws-cli" in first.stdout  # the image has no AWS CLI
        installed = first.run_again("snap install aws-cli --classic && command -v aws")
        assert installed.stdout.strip().endswith("/snap/bin/aws"), _describe(installed)
        missing = installed.run_again("aws ssm get-parameter --region eu-west-1 --name /nope --with-decryption --query Parameter.Value --output text")
        assert missing.returncode == 254
        assert missing.stderr == "\nAn error occurred (ParameterNotFound) when calling the GetParameter operation: \n"
        wrong_region = missing.run_again(f"aws ssm get-parameter --region us-east-1 --name {DEV_PARAMETER_ROOT}/node/token --with-decryption")
        assert wrong_region.returncode == 254
        bad_argument = missing.run_again("aws ssm get-parameter --region eu-west-1 --nme /x")
        assert bad_argument.returncode == 252 and "Unknown options: --nme" in bad_argument.stderr
        read = missing.run_again(f"aws ssm get-parameter --region eu-west-1 --name {DEV_PARAMETER_ROOT}/node/token --with-decryption --query Parameter.Value --output text")
        assert (read.returncode, read.stdout) == (0, "t0ken-value-for-the-rehearsal\n")
        imds = read.run_again("t=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')"
                              " && curl -sf -H \"X-aws-ec2-metadata-token: $t\" http://169.254.169.254/latest/meta-data/instance-id"
                              " && ! curl -sf http://169.254.169.254/latest/meta-data/instance-id")
        assert (imds.returncode, imds.stdout) == (0, _instance_id(instance.name)), _describe(imds)
        offline = read.run_again("curl -sS https://example.org/; echo \"rc=$?\"")
        assert "curl: (6) Could not resolve host: example.org" in offline.stderr and "rc=6" in offline.stdout
        eip = read.run_again(f"aws ec2 associate-address --region eu-west-1 --allocation-id eipalloc-0123456789abcdef0 "
                             f"--instance-id {_instance_id(instance.name)} --allow-reassociation")
        assert eip.returncode == 0 and "eipassoc-" in eip.stdout, _describe(eip)
        assert eip.state["eip"] == {"eipalloc-0123456789abcdef0": _instance_id(instance.name)}
        unit = read.run_again("systemctl enable --now no-such.service")
        assert unit.returncode == 1 and "Unit file no-such.service does not exist" in unit.stderr
    finally:
        first.close()


def test_a_parameter_created_later_is_waited_for():
    from rehearsal import LateParameter

    (instance, user_data, store, _), *_ = _of_kind("shape:k3s-nlb", SERVER_MARKER)
    config, _ = _config_and_run("shape:k3s-nlb")
    token_name = next(name for name in store if name.endswith("/token"))
    late = {**store, token_name: LateParameter(store[token_name], hidden_reads=3)}
    with boot(user_data, late, _scenario(config, instance)) as result:
        assert result.returncode == 0, _describe(result)
        assert result.state["ssm_reads"][token_name] == 4
        assert result.calls_of("sleep").count(["5"]) >= 3


def test_a_hanging_boot_is_killed_at_the_timeout_and_leaves_nothing_behind():
    marker = "rehearsal-hang-" + hashlib.sha256(os.urandom(8)).hexdigest()[:8]
    result = boot(f"#cloud-config\nruncmd:\n- [sh, -c, 'while :; do : {marker}; done']\n", {}, timeout=3)
    root = result._machine.root
    assert result.timed_out and result.returncode == -9
    lingering = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                lingering.append(pid)
        except OSError:
            pass
    assert not lingering
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
    result.close()
    assert not root.exists()
