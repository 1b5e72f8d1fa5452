"""A first-boot rehearsal: run an instance's user data as cloud-init would, at the real
paths, in a throw-away machine built from this host's filesystem.

How the machine is built (see `_setup_script`): `unshare --mount --net --pid --fork
--kill-child` gives a private mount table, a network namespace with only `lo` (brought
up) and a PID namespace whose init is the setup shell, so nothing outlives a session. In
it a tmpfs becomes the new root; /etc /usr /var /opt /root /home /srv /snap are overlay
mounts (lower = the host directory, or an empty one for /snap; upper/work in this
session's temp dir), /run and /tmp are fresh tmpfs, /proc is the namespace's own, /dev
holds only null/zero/full/random/urandom/tty; every other top-level directory (/work,
/boot, ...) is an empty directory, so the repository is out of reach. Then `chroot` and
the replay (cloud_init_replay.py under /usr/bin/python3) with only PATH set, as in
cloud-final.service.

Stubs: /usr's overlay has one extra lower layer above the host's /usr holding
usr/bin/{curl,snap,systemctl,apt-get,sleep} and usr/lib/rancher-ha-rehearsal/ (the aws
stub, put at /snap/bin/aws by `snap install aws-cli --classic`, and the fake installer).
Only those names are shadowed; bash, coreutils, python3, install, mktemp, ip and the real
nginx stay the host's. The stub log/state live in /run/rehearsal, a bind mount of a host
directory that is not part of the machine's filesystem.

Result: the upper directories ARE the machine's changes (`BootResult.files`, with
whiteouts honoured). The mounts vanish with the namespace; the temp dir goes with
`BootResult.close()` (or garbage collection). `run_again` starts a new session whose
overlays stack the earlier uppers as lower layers, and whose /run is restored from the
snapshot taken when the previous session ended (the machine did not reboot).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import grp
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import weakref
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence, Union

from settings.versions import INSTALLERS

HERE = Path(__file__).resolve().parent
STUBS = HERE / "stubs"
REPLAY = HERE / "cloud_init_replay.py"
OVERLAID = ("etc", "usr", "var", "opt", "root", "home", "srv", "snap")
TMPFS = ("run", "tmp")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
STUBBED_COMMANDS = ("curl", "snap", "systemctl", "apt-get", "sleep")
UBUNTU_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


@dataclass(frozen=True)
class LateParameter:
    """An SSM parameter the engine creates after the instance boots: the first
    `hidden_reads` GetParameter calls fail with ParameterNotFound."""

    value: str
    hidden_reads: int = 1
    type: str = "SecureString"


@dataclass(frozen=True)
class Scenario:
    region: str = "eu-west-1"
    instance_id: str = "i-0123456789abcdef0"
    availability_zone: str = "eu-west-1a"
    local_ipv4: str = "10.0.1.10"
    metadata: Mapping[str, str] = field(default_factory=dict)  # extra IMDS meta-data paths
    imds_v2_required: bool = True
    # /ping on :6443/:9345: host -> the attempt from which it answers (None: never).
    # `supervisors=None` means every host answers from the first attempt.
    supervisors: Optional[Mapping[str, Optional[int]]] = None
    documents: Mapping[str, str] = field(default_factory=dict)  # more URL -> body
    reachable_proxies: Sequence[str] = ()  # proxy host names curl can reach
    # A corporate proxy reaches the internet, not the cluster's 6443/9345 (the nodes'
    # security group admits those from the nodes only).
    proxy_reaches_supervisors: bool = False
    eip_allocations: Optional[Sequence[str]] = None  # None: any well-formed id exists
    # cloud-config.service is After=snapd.seeded.service, so by the final stage snapd is
    # seeded (0); a positive number makes that many early install/set calls fail.
    snap_seed_after_calls: int = 0
    apt_packages: Sequence[str] = ("nginx", "libnginx-mod-stream", "nginx-common", "curl", "jq", "unzip", "ca-certificates")
    # SSM GetParameter of these full names fails with this error code (e.g.
    # "AccessDeniedException", "ThrottlingException") on every read.
    ssm_errors: Mapping[str, str] = field(default_factory=dict)
    # The internet (installers, documents) answers from this request on, counting every
    # such request; earlier ones time out, as while the NAT gateway is still being
    # created. None: never (no route out).
    egress_from_request: Optional[int] = 1
    # Extra environment of cloud-final.service (as a systemd drop-in's Environment=
    # would set it), e.g. the boot script's RANCHER_HA_*_ATTEMPTS knobs.
    environment: Mapping[str, str] = field(default_factory=dict)
    # The pinned installer URL serves other bytes than the pinned ones (a compromised or
    # rewriting mirror/proxy): the boot must refuse to run them.
    installer_tampered: bool = False


@dataclass
class FileEntry:
    path: str
    kind: str  # file | dir | symlink | other
    mode: int
    uid: int
    gid: int
    data: Optional[bytes] = None
    target: Optional[str] = None

    @property
    def owner(self) -> str:
        def name(lookup, key):
            try:
                return lookup(key)[0]
            except KeyError:
                return str(key)
        return f"{name(pwd.getpwuid, self.uid)}:{name(grp.getgrgid, self.gid)}"

    @property
    def text(self) -> str:
        assert self.data is not None, f"{self.path} is a {self.kind}"
        return self.data.decode()


class Files(Mapping[str, FileEntry]):
    """What the machine changed: the merged upper layers (newest first), whiteouts and
    opaque directories honoured, plus the /run snapshot of the last session."""

    def __init__(self, layers: Sequence[Path], run_snapshot: Optional[Path]):
        self._entries: dict[str, FileEntry] = {}
        self.deleted: set[str] = set()
        hidden: list[str] = []  # opaque dirs / deleted paths of newer layers

        def is_hidden(path: str) -> bool:
            return any(path == h or path.startswith(h.rstrip("/") + "/") for h in hidden)

        for layer in layers:
            newly_hidden: list[str] = []
            for top in OVERLAID:
                self._walk(layer / top, "/" + top, is_hidden, newly_hidden)
            hidden += newly_hidden
        if run_snapshot is not None and run_snapshot.is_dir():
            self._walk(run_snapshot, "/run", lambda p: False, [])

    def _walk(self, root: Path, prefix: str, is_hidden, newly_hidden: list[str]) -> None:
        if not root.is_dir():
            return
        for directory, dirs, names in os.walk(root):
            relative = os.path.relpath(directory, root)
            base = prefix if relative == "." else f"{prefix}/{relative}"
            if relative != "." and _is_opaque(directory):
                newly_hidden.append(base)  # an opaque dir hides what older layers had in it
            for name in dirs + names:
                full = os.path.join(directory, name)
                path = f"{base}/{name}"
                if path in self._entries or is_hidden(path):
                    continue
                info = os.lstat(full)
                if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:  # overlay whiteout
                    self.deleted.add(path)
                    newly_hidden.append(path)
                    continue
                if stat.S_ISLNK(info.st_mode):
                    entry = FileEntry(path, "symlink", 0o777, info.st_uid, info.st_gid, target=os.readlink(full))
                elif stat.S_ISDIR(info.st_mode):
                    entry = FileEntry(path, "dir", stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
                elif stat.S_ISREG(info.st_mode):
                    entry = FileEntry(path, "file", stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, data=Path(full).read_bytes())
                else:
                    entry = FileEntry(path, "other", stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
                self._entries[path] = entry

    def __getitem__(self, path: str) -> FileEntry:
        return self._entries[path]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def under(self, prefix: str) -> dict[str, FileEntry]:
        prefix = prefix.rstrip("/") + "/"
        return {p: e for p, e in self._entries.items() if p.startswith(prefix)}


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


class RehearsalError(RuntimeError):
    pass


class _Machine:
    """The temp dir of one rehearsed machine: its layers and sessions."""

    def __init__(self) -> None:
        base = Path(tempfile.gettempdir()).resolve()
        if base.parts[1:2] and base.parts[1] in OVERLAID + TMPFS:
            base = Path("/tmp") if Path("/tmp").is_dir() else base
        if len(base.parts) > 1 and base.parts[1] in OVERLAID:
            raise RehearsalError(f"temp dir {base} lies in an overlaid directory")
        self.root = Path(tempfile.mkdtemp(prefix="rehearsal-", dir=base))
        self.layers: list[Path] = []  # oldest first
        self.sessions = 0
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        stub_usr = self.root / "stub-layer" / "usr"
        (stub_usr / "bin").mkdir(parents=True)
        lib = stub_usr / "lib" / "rancher-ha-rehearsal"
        lib.mkdir(parents=True)
        for name in STUBBED_COMMANDS:
            shutil.copy2(STUBS / name, stub_usr / "bin" / name)
        for name in ("aws", "installer", "_stublib.py", "fake-installer.sh"):
            shutil.copy2(STUBS / name, lib / name)
        (self.root / "empty").mkdir()
        # Compiled once by the sandbox's interpreter, so no stub writes __pycache__.
        subprocess.run(["/usr/bin/python3", "-m", "py_compile", str(lib / "_stublib.py")], check=True)

    def close(self) -> None:
        self._finalizer()


def _parameter_entry(value: Union[str, LateParameter]) -> dict:
    if isinstance(value, LateParameter):
        return {"value": value.value, "hidden_reads": value.hidden_reads, "type": value.type}
    return {"value": value, "hidden_reads": 0, "type": "SecureString"}


def _scenario_json(scenario: Scenario) -> dict:
    data = asdict(scenario)
    metadata = {
        "instance-id": scenario.instance_id,
        "placement/availability-zone": scenario.availability_zone,
        "placement/region": scenario.region,
        "local-ipv4": scenario.local_ipv4,
        **dict(scenario.metadata),
    }
    data["metadata"] = metadata
    documents = {RDS_CA_BUNDLE_URL: pem_self_signed("Amazon RDS eu-west-1 Root CA RSA2048 G1 (rehearsal)")[0], **dict(scenario.documents)}
    data["documents"] = documents
    data["supervisors"] = dict(scenario.supervisors) if scenario.supervisors is not None else None
    data["installers"] = {pin.url: distribution for distribution, pin in INSTALLERS.items()}
    return data


def stand_in_installer(distribution: str) -> bytes:
    """What the curl stub serves at a pinned installer URL (stubs/fake-installer.sh)."""
    return (STUBS / "fake-installer.sh").read_text().replace("@DIST@", distribution).encode()


def with_stand_in_installer_pins(user_data: str) -> str:
    """The user data with each pinned installer sha256 replaced by the stand-in's.

    The rehearsal cannot serve upstream's install.sh (its code is not committed here), so
    it serves a stand-in and re-pins the user data to it: what is rehearsed is that the
    boot fetches exactly the pinned URL and refuses bytes that do not match the pin. The
    real pin is required to be in the user data (exactly once) before it is swapped."""
    for distribution, pin in INSTALLERS.items():
        if pin.url in user_data:
            if user_data.count(pin.sha256) != 1:
                raise RehearsalError(f"the user data does not carry the {distribution} installer's pinned sha256 once")
            user_data = user_data.replace(pin.sha256, hashlib.sha256(stand_in_installer(distribution)).hexdigest())
    return user_data


_PEM_CACHE: dict[str, tuple[str, str]] = {}


def pem_self_signed(common_name: str) -> tuple[str, str]:
    """(certificate PEM, private key PEM) of a real self-signed EC P-256 certificate."""
    if common_name not in _PEM_CACHE:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        )
        if "." in common_name:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        certificate = builder.sign(key, hashes.SHA256())
        _PEM_CACHE[common_name] = (
            certificate.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode(),
        )
    return _PEM_CACHE[common_name]


def _setup_script(machine: _Machine, session: Path, layer: Path, replay_args: list[str],
                  environment: Optional[Mapping[str, str]] = None) -> str:
    new_root = session / "root"
    lines = ["set -u", f"R={shlex.quote(str(new_root))}", 'mount -t tmpfs -o mode=0755 rehearsal-root "$R"']
    for entry in sorted(os.listdir("/")):
        host = Path("/") / entry
        target = f'"$R"/{shlex.quote(entry)}'
        if entry in OVERLAID:
            continue
        if host.is_symlink():
            lines.append(f"ln -s {shlex.quote(os.readlink(host))} {target}")
        elif host.is_dir():
            lines.append(f"mkdir {target}")
    for top in OVERLAID:
        host = Path("/") / top
        if host.is_symlink():
            raise RehearsalError(f"/{top} is a symlink on this host")
        lowers = []
        if top == "usr":
            lowers.append(str(machine.root / "stub-layer" / "usr"))
        lowers += [str(old / top) for old in reversed(machine.layers)]
        lowers.append(str(host) if host.is_dir() else str(machine.root / "empty"))
        upper, work = layer / top, layer / f".work-{top}"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
        lines += [f'mkdir -p "$R"/{top}', f'mount -t overlay rehearsal-{top} -o {shlex.quote(options)} "$R"/{top}']
    lines += [
        'mount -t proc proc "$R"/proc',
        'mount -t tmpfs -o mode=0755,nosuid dev "$R"/dev',
        *[f'touch "$R"/dev/{d} && mount --bind /dev/{d} "$R"/dev/{d}' for d in DEVICES],
        'ln -s /proc/self/fd "$R"/dev/fd; ln -s /proc/self/fd/0 "$R"/dev/stdin; ln -s /proc/self/fd/1 "$R"/dev/stdout; ln -s /proc/self/fd/2 "$R"/dev/stderr',
        'mkdir "$R"/dev/shm && mount -t tmpfs -o mode=1777 shm "$R"/dev/shm',
        'mount -t tmpfs -o mode=0755,nosuid,nodev run "$R"/run',
        'mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$R"/tmp',
    ]
    extra_env = "".join(shlex.quote(f"{key}={value}") + " " for key, value in sorted((environment or {}).items()))
    previous_run = session.parent / f"{int(session.name) - 1}" / "run-snapshot" if int(session.name) > 0 else None
    if previous_run is not None:
        lines.append(f'[ -d {shlex.quote(str(previous_run))} ] && cp -a {shlex.quote(str(previous_run))}/. "$R"/run/')
    lines += [
        'mkdir -p "$R"/run/systemd/system "$R"/run/lock "$R"/run/rehearsal',  # a systemd-booted machine
        f'mount --bind {shlex.quote(str(session / "io"))} "$R"/run/rehearsal',
        "ip link set lo up",
        f"chroot \"$R\" /usr/bin/env -i PATH={UBUNTU_PATH} {extra_env}/usr/bin/python3 /run/rehearsal/cloud_init_replay.py {' '.join(shlex.quote(a) for a in replay_args)}",
        "rc=$?",
        f'mkdir -p {shlex.quote(str(session / "run-snapshot"))}',
        f'(cd "$R"/run && tar --exclude=./rehearsal -cf - .) | tar -xf - -C {shlex.quote(str(session / "run-snapshot"))}',
        'exit "$rc"',
    ]
    return "\n".join(lines) + "\n"


@dataclass
class BootResult:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict]
    files: Files
    state: dict
    timed_out: bool
    _machine: _Machine = field(repr=False)
    _ssm: dict = field(repr=False)
    _scenario: Scenario = field(repr=False)

    @property
    def log(self) -> str:
        """The call log, one `command arg...` line per stubbed call."""
        return "".join(" ".join([c["cmd"], *c["argv"]]) + "\n" for c in self.calls)

    def calls_of(self, command: str) -> list[list[str]]:
        return [c["argv"] for c in self.calls if c["cmd"] == command]

    def run_again(self, command: Union[str, Sequence[str]], ssm: Optional[Mapping[str, Union[str, LateParameter]]] = None,
                  scenario: Optional[Scenario] = None, timeout: float = 60) -> "BootResult":
        """Run a further command on the same machine (same files, /run and stub state)."""
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        store = {name: _parameter_entry(v) for name, v in ssm.items()} if ssm is not None else self._ssm
        return _session(self._machine, ["run", (scenario or self._scenario).instance_id, json.dumps(argv)], None,
                        store, scenario or self._scenario, timeout)

    def close(self) -> None:
        self._machine.close()

    def __enter__(self) -> "BootResult":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _session(machine: _Machine, replay_args: list[str], user_data: Optional[str], store: dict,
             scenario: Scenario, timeout: float) -> BootResult:
    number = machine.sessions
    machine.sessions += 1
    session = machine.root / "sessions" / str(number)
    io_dir = session / "io"
    io_dir.mkdir(parents=True)
    (session / "root").mkdir()
    layer = machine.root / "layers" / str(number)
    if number > 0:
        previous_state = machine.root / "sessions" / str(number - 1) / "io" / "state.json"
        if previous_state.exists():
            shutil.copy2(previous_state, io_dir / "state.json")
    shutil.copy2(REPLAY, io_dir / "cloud_init_replay.py")
    scenario_data = _scenario_json(scenario)
    (io_dir / "config.json").write_text(json.dumps({"scenario": scenario_data, "ssm": store}))
    if user_data is not None:
        (io_dir / "user-data").write_text(user_data)
        replay_args = ["boot", "/run/rehearsal/user-data", scenario.instance_id]
    script = session / "setup.sh"
    script.write_text(_setup_script(machine, session, layer, replay_args, scenario.environment))
    process = subprocess.Popen(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--propagation", "private", "/bin/sh", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    machine.layers.append(layer)
    calls_file = io_dir / "calls.jsonl"
    calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
    state_file = io_dir / "state.json"
    return BootResult(
        returncode=-9 if timed_out else process.returncode,
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
        calls=calls,
        files=Files(list(reversed(machine.layers)), session / "run-snapshot"),
        state=json.loads(state_file.read_text()) if state_file.exists() else {},
        timed_out=timed_out,
        _machine=machine,
        _ssm=store,
        _scenario=scenario,
    )


def boot(user_data: str, ssm: Mapping[str, Union[str, LateParameter]], scenario: Scenario = Scenario(),
         timeout: float = 120) -> BootResult:
    """First boot of a fresh machine with this user data; `ssm` is the whole parameter
    store of `scenario.region` (full names)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        raise RehearsalError("the rehearsal needs root and unshare(1)")
    machine = _Machine()
    store = {name: _parameter_entry(value) for name, value in ssm.items()}
    return _session(machine, [], with_stand_in_installer_pins(user_data), store, scenario, timeout)
