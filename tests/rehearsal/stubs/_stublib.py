"""Shared code of the rehearsal's stub commands. Runs INSIDE the sandbox under
`/usr/bin/python3 -S` (stdlib only, no repository code).

Every stub appends one JSON line per call to /run/rehearsal/calls.jsonl and keeps its
state (SSM read counters, systemd unit states, snap state, EIP associations) in
/run/rehearsal/state.json, both in a directory bind-mounted from the host so the test can
read them afterwards; the machine's own filesystem never holds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys

REHEARSAL = "/run/rehearsal"
CALLS = f"{REHEARSAL}/calls.jsonl"
STATE = f"{REHEARSAL}/state.json"
CONFIG = f"{REHEARSAL}/config.json"  # scenario + SSM store, written by the host side
LOCK = f"{REHEARSAL}/.lock"
RECORDED_ENV = re.compile(r"^(INSTALL_\w+|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy|CONTAINERD_\w+|AWS_\w+)$")


def config() -> dict:
    with open(CONFIG) as handle:
        return json.load(handle)


@contextlib.contextmanager
def state():
    """Read-modify-write the shared stub state under an exclusive lock."""
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(STATE) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            data = {}
        yield data
        with open(STATE + ".partial", "w") as handle:
            json.dump(data, handle)
        os.replace(STATE + ".partial", STATE)


def record(name: str, argv: list[str], **extra) -> None:
    entry = {
        "cmd": name,
        "argv": argv,
        "env": {k: v for k, v in sorted(os.environ.items()) if RECORDED_ENV.match(k)},
        **extra,
    }
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(CALLS, "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


# ---------------------------------------------------------------------------- sleep
def sleep_main(argv: list[str]) -> int:
    record("sleep", argv)
    if not argv:
        err("sleep: missing operand\nTry 'sleep --help' for more information.\n")
        return 1
    for value in argv:
        if not re.fullmatch(r"(\d+(\.\d*)?|\.\d+)[smhd]?|inf(inity)?", value):
            err(f"sleep: invalid time interval '{value}'\nTry 'sleep --help' for more information.\n")
            return 1
    return 0  # no-op: retries are instant


# -------------------------------------------------------------------------- apt-get
def apt_get_main(argv: list[str]) -> int:
    record("apt-get", argv)
    options = [a for a in argv if a.startswith("-")]
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        err("E: No command given\n")  # close to apt's "Invalid operation" family
        return 100
    command, packages = words[0], words[1:]
    if command == "update":
        print("Reading package lists...")
        return 0
    if command == "install":
        print("Reading package lists...\nBuilding dependency tree...\nReading state information...")
        available = set(config()["scenario"]["apt_packages"])
        for package in packages:
            if package not in available:
                err(f"E: Unable to locate package {package}\n")
                return 100
        if not ({"-y", "--yes", "--assume-yes", "-qy", "-yq"} & set(options)) and os.environ.get("DEBIAN_FRONTEND") != "noninteractive":
            err("Do you want to continue? [Y/n] Abort.\n")
            return 1
        for package in packages:
            print(f"{package} is already the newest version.")  # the sandbox's base image has them
        return 0
    err(f"E: Invalid operation {command}\n")
    return 100


# --------------------------------------------------------------------------- systemctl
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def _unit(name: str) -> str:
    return name if "." in name else name + ".service"


def _unit_file(unit: str) -> str | None:
    for directory in UNIT_DIRS:
        path = os.path.join(directory, unit)
        if os.path.exists(path):
            return path
    return None


def _wanted_by(path: str) -> list[str]:
    targets = []
    with open(path) as handle:
        section = None
        for line in handle:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Install]" and line.startswith("WantedBy="):
                targets += line.split("=", 1)[1].split()
    return targets


def systemctl_main(argv: list[str]) -> int:
    record("systemctl", argv)
    flags = {a for a in argv if a.startswith("-")}
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        return 0  # `systemctl` alone lists units
    verb, units = words[0], [_unit(u) for u in words[1:]]
    with state() as data:
        services = data.setdefault("systemd", {})
        if verb in ("daemon-reload", "daemon-reexec"):
            return 0
        if verb in ("enable", "disable", "start", "restart", "reload", "try-restart", "reload-or-restart", "stop", "mask", "unmask") and not units:
            err(f"Too few arguments.\n")
            return 1
        for unit in units:
            entry = services.setdefault(unit, {"active": False, "enabled": False})
            path = _unit_file(unit)
            if verb in ("enable", "disable"):
                if path is None:
                    err(f"Failed to {verb} unit: Unit file {unit} does not exist.\n")
                    return 1
                for target in _wanted_by(path):
                    link_dir = f"/etc/systemd/system/{target}.wants"
                    link = os.path.join(link_dir, unit)
                    if verb == "enable":
                        os.makedirs(link_dir, exist_ok=True)
                        if not os.path.lexists(link):
                            os.symlink(path, link)
                            err(f"Created symlink {link} \u2192 {path}.\n")
                    elif os.path.lexists(link):
                        os.unlink(link)
                        err(f"Removed \"{link}\".\n")
                entry["enabled"] = verb == "enable"
                if "--now" in flags:
                    entry["active"] = verb == "enable"
            elif verb in ("start", "restart", "reload-or-restart", "try-restart", "reload"):
                if path is None:
                    err(f"Failed to {verb} {unit}: Unit {unit} not found.\n")
                    return 5
                if verb == "reload" and not entry["active"]:
                    err(f"Job for {unit} failed.\nSee \"systemctl status {unit}\" and \"journalctl -xeu {unit}\" for details.\n")
                    return 1
                if verb != "try-restart" or entry["active"]:
                    entry["active"] = True
                    entry.setdefault("starts", 0)
                    entry["starts"] += 1
            elif verb == "stop":
                entry["active"] = False
            elif verb == "is-active":
                if not ({"--quiet", "-q"} & flags):
                    print("active" if entry["active"] else "inactive")
                if not entry["active"]:
                    return 3
            elif verb == "is-enabled":
                if path is None:
                    err(f"Failed to get unit file state for {unit}: No such file or directory\n")
                    return 1
                if not ({"--quiet", "-q"} & flags):
                    print("enabled" if entry["enabled"] else "disabled")
                if not entry["enabled"]:
                    return 1
            elif verb == "status":
                print(f"* {unit} - {'active (running)' if entry['active'] else 'inactive (dead)'}")
                if not entry["active"]:
                    return 3
            elif verb in ("mask", "unmask", "show", "cat", "list-timers"):
                pass
            else:
                err(f"Unknown command verb {verb}.\n")
                return 1
    return 0


# ------------------------------------------------------------------------------ snap
SNAP_PROXY_KEYS = {"proxy.http", "proxy.https", "proxy.ftp", "proxy.no-proxy", "proxy.store"}


def snap_main(argv: list[str]) -> int:
    record("snap", argv)
    scenario = config()["scenario"]
    if not argv:
        err("error: Please specify a command\n")
        return 1
    with state() as data:
        snap = data.setdefault("snap", {"seeded": False, "early_calls": 0, "installed": [], "system": {}})
        verb, rest = argv[0], argv[1:]
        if verb == "wait":
            if rest == ["system", "seed.loaded"]:
                snap["seeded"] = True
                return 0
            err("error: unsupported wait target in the rehearsal\n")
            return 1
        if verb in ("install", "set") and not snap["seeded"]:
            # snapd refuses changes until the image's seed is loaded; on a fresh instance
            # that takes a while after cloud-init's final stage starts.
            snap["early_calls"] += 1
            if snap["early_calls"] <= scenario["snap_seed_after_calls"]:
                err("error: too early for operation, device not yet seeded or device model not acknowledged\n")
                return 1
            snap["seeded"] = True
        if verb == "install":
            names = [a for a in rest if not a.startswith("-")]
            if names != ["aws-cli"]:
                err(f"error: snap {names!r} is not known to the rehearsal store\n")
                return 1
            if "--classic" not in rest:
                err('error: This revision of snap "aws-cli" was published using classic confinement and thus may\n'
                    '       perform arbitrary system changes outside of the security sandbox that snaps are usually\n'
                    '       confined to, which may put your system at risk.\n\n'
                    '       If you understand and want to proceed repeat the command including --classic.\n')
                return 1
            if "aws-cli" not in snap["installed"]:
                os.makedirs("/snap/bin", exist_ok=True)
                with open("/usr/lib/rancher-ha-rehearsal/aws") as source, open("/snap/bin/aws", "w") as target:
                    target.write(source.read())
                os.chmod("/snap/bin/aws", 0o755)
                snap["installed"].append("aws-cli")
                print("aws-cli (v2/stable) 2.31.0 from Amazon Web Services (aws\u2713) installed")
            else:
                print('snap "aws-cli" is already installed, see \'snap help refresh\'')
            return 0
        if verb == "set":
            if not rest or rest[0] != "system":
                err("error: the rehearsal models only `snap set system`\n")
                return 1
            if len(rest) < 2:
                err("error: the required argument `<conf value> (at least 1 argument)` was not provided\n")
                return 1
            for item in rest[1:]:
                if "=" not in item:
                    err(f"error: invalid configuration: {item!r} (want key=value)\n")
                    return 1
                key, value = item.split("=", 1)
                if key not in SNAP_PROXY_KEYS:
                    err(f"error: cannot perform the following tasks:\n- Run configure hook of \"core\" snap (unknown option {key!r})\n")
                    return 1
                snap["system"][key] = value
            return 0
        if verb in ("list", "version", "changes"):
            return 0
        err(f"error: unknown command \"{verb}\", see 'snap help'.\n")
        return 1


# ------------------------------------------------------------------------------- aws
AWS_USAGE = """
usage: aws [options] <command> <subcommand> [<subcommand> ...] [parameters]
To see help text, you can run:

  aws help
  aws <command> help
  aws <command> <subcommand> help

"""

# Global options of AWS CLI v2 that take a value / that are flags.
AWS_GLOBAL_VALUE = {"--region", "--output", "--query", "--profile", "--endpoint-url", "--cli-read-timeout", "--cli-connect-timeout", "--color", "--ca-bundle", "--cli-binary-format"}
AWS_GLOBAL_FLAG = {"--debug", "--no-verify-ssl", "--no-paginate", "--no-cli-pager", "--no-sign-request", "--cli-auto-prompt", "--no-cli-auto-prompt"}
# Operation parameters: name -> (value options, flag options, required)
AWS_OPERATIONS = {
    ("ssm", "get-parameter"): ({"--name"}, {"--with-decryption", "--no-with-decryption"}, {"--name"}),
    ("ec2", "associate-address"): (
        {"--allocation-id", "--instance-id", "--public-ip", "--network-interface-id", "--private-ip-address"},
        {"--allow-reassociation", "--no-allow-reassociation", "--dry-run", "--no-dry-run"},
        set(),
    ),
}
AWS_OUTPUTS = ("json", "text", "table", "yaml", "yaml-stream", "off")


def _usage_error(message: str) -> int:
    err(AWS_USAGE + message + "\n")
    return 252  # AWS CLI v2: command syntax invalid / unknown parameter


def _client_error(code: str, operation: str, message: str) -> int:
    err(f"\nAn error occurred ({code}) when calling the {operation} operation: {message}\n")
    return 254  # AWS CLI v2: the service returned an error


def _query(document, expression: str | None):
    if not expression:
        return document
    for part in expression.split("."):
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


def _emit(document, output: str) -> None:
    if output == "off":
        return
    if output == "text":
        if isinstance(document, dict):
            print("\t".join(str(v) for v in document.values() if not isinstance(v, (dict, list))))
        elif document is None:
            print("None")
        else:
            print(document)
    else:
        print(json.dumps(document, indent=4))


def aws_main(argv: list[str]) -> int:
    record("aws", argv)
    scenario = config()["scenario"]
    options: dict[str, str] = {}
    flags: set[str] = set()
    positional: list[str] = []
    unknown: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg.startswith("--"):
            name, _, inline = arg.partition("=")
            takes_value = name in AWS_GLOBAL_VALUE or any(name in spec[0] for spec in AWS_OPERATIONS.values())
            if takes_value:
                if inline:
                    options[name] = inline
                elif index + 1 < len(argv):
                    options[name] = argv[index + 1]
                    index += 1
                else:
                    return _usage_error(f"aws: error: argument {name}: expected one argument")
            elif name in AWS_GLOBAL_FLAG or any(name in spec[1] for spec in AWS_OPERATIONS.values()):
                flags.add(name)
            else:
                unknown.append(arg)
        else:
            positional.append(arg)
        index += 1
    if len(positional) < 2:
        return _usage_error("aws: error: the following arguments are required: command, operation" if not positional else "aws: error: the following arguments are required: operation")
    operation = tuple(positional[:2])
    if operation not in AWS_OPERATIONS:
        return _usage_error(f"aws: error: argument operation: Invalid choice (the rehearsal models only {sorted(' '.join(o) for o in AWS_OPERATIONS)})")
    value_options, flag_options, required = AWS_OPERATIONS[operation]
    allowed = AWS_GLOBAL_VALUE | AWS_GLOBAL_FLAG | value_options | flag_options
    unknown += [o for o in list(options) + list(flags) if o not in allowed]
    unknown += positional[2:]
    if unknown:
        return _usage_error("Unknown options: " + ", ".join(unknown))
    missing = sorted(required - set(options))
    if missing:
        return _usage_error("aws: error: the following arguments are required: " + ", ".join(missing))
    output = options.get("--output", "json")
    if output not in AWS_OUTPUTS:
        return _usage_error(f"aws: error: argument --output: Invalid choice, valid choices are:\n\n" + " | ".join(AWS_OUTPUTS))
    region = options.get("--region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        err('\nYou must specify a region. You can also configure your region by running "aws configure".\n')
        return 253
    if operation == ("ssm", "get-parameter"):
        name = options["--name"]
        with state() as data:
            reads = data.setdefault("ssm_reads", {})
            reads[name] = reads.get(name, 0) + 1
            count = reads[name]
        failure = (scenario.get("ssm_errors") or {}).get(name)
        if failure is not None:
            if failure == "AccessDeniedException":
                message = (f"User: arn:aws:sts::123456789012:assumed-role/rancher-ha-node/{scenario['instance_id']} is not authorized "
                           f"to perform: ssm:GetParameter on resource: arn:aws:ssm:{region}:123456789012:parameter{name} "
                           "because no identity-based policy allows the ssm:GetParameter action")
            else:
                message = "Rate exceeded" if failure == "ThrottlingException" else "rehearsal: injected error"
            return _client_error(failure, "GetParameter", message)
        store = config()["ssm"] if region == scenario["region"] else {}
        entry = store.get(name)
        if entry is None or count <= entry["hidden_reads"]:
            return _client_error("ParameterNotFound", "GetParameter", "")
        decrypt = "--with-decryption" in flags and "--no-with-decryption" not in flags
        value = entry["value"]
        if entry["type"] == "SecureString" and not decrypt:
            value = "AQICAHh" + str(abs(hash(value)))  # ciphertext stand-in
        document = {"Parameter": {"Name": name, "Type": entry["type"], "Value": value, "Version": 1,
                                  "ARN": f"arn:aws:ssm:{region}:123456789012:parameter{name}", "DataType": "text"}}
        _emit(_query(document, options.get("--query")), output)
        return 0
    # ec2 associate-address
    allocation, instance = options.get("--allocation-id"), options.get("--instance-id")
    if allocation is None and options.get("--public-ip") is None:
        return _client_error("MissingParameter", "AssociateAddress", "Either public IP or allocation id must be specified")
    known = scenario.get("eip_allocations")
    # An id the scenario lists exists (the offline mocks make ids of their own shape);
    # any other id must have the real shape.
    if allocation is not None and not (known and allocation in known) and not re.fullmatch(r"eipalloc-([0-9a-f]{8}|[0-9a-f]{17})", allocation):
        return _client_error("InvalidAllocationID.Malformed", "AssociateAddress", f'Invalid id: "{allocation}" (expecting "eipalloc-...")')
    if instance is not None and not re.fullmatch(r"i-([0-9a-f]{8}|[0-9a-f]{17})", instance):
        return _client_error("InvalidInstanceID.Malformed", "AssociateAddress", f'Invalid id: "{instance}"')
    if instance is not None and instance != scenario["instance_id"]:
        return _client_error("InvalidInstanceID.NotFound", "AssociateAddress", f"The instance ID '{instance}' does not exist")
    if known is not None and allocation not in known:
        return _client_error("InvalidAllocationID.NotFound", "AssociateAddress", f"The allocation ID '{allocation}' does not exist")
    with state() as data:
        associations = data.setdefault("eip", {})
        current = associations.get(allocation)
        if current and current != instance and "--allow-reassociation" not in flags:
            return _client_error("Resource.AlreadyAssociated", "AssociateAddress", f"resource {allocation} is already associated with associate-id eipassoc-0000000000000000")
        associations[allocation] = instance
    _emit(_query({"AssociationId": "eipassoc-0a1b2c3d4e5f60718"}, options.get("--query")), output)
    return 0


# ------------------------------------------------------------------------------ curl
CURL_VALUE = {"-o", "--output", "-X", "--request", "-H", "--header", "-m", "--max-time", "--connect-timeout",
              "-w", "--write-out", "-d", "--data", "--data-binary", "--data-raw", "--retry", "--retry-delay",
              "--retry-max-time", "-x", "--proxy", "--noproxy", "--cacert", "-A", "--user-agent", "-u", "--user", "-e", "--referer"}
CURL_FLAG = {"-f", "--fail", "-s", "--silent", "-S", "--show-error", "-L", "--location", "-k", "--insecure", "-v",
             "--verbose", "-I", "--head", "--retry-connrefused", "--retry-all-errors", "-4", "-6", "--fail-with-body", "-g", "--globoff", "-q"}
SHORT_VALUE = {c[1] for c in CURL_VALUE if len(c) == 2}
SHORT_FLAG = {c[1] for c in CURL_FLAG if len(c) == 2}
LONG_ALIASES = {"--output": "-o", "--request": "-X", "--header": "-H", "--max-time": "-m", "--write-out": "-w", "--data": "-d",
                "--proxy": "-x", "--fail": "-f", "--silent": "-s", "--show-error": "-S", "--location": "-L", "--insecure": "-k",
                "--user-agent": "-A", "--user": "-u", "--verbose": "-v", "--head": "-I", "--referer": "-e", "--globoff": "-g"}
IMDS = "169.254.169.254"
IMDS_TOKEN = "AQAEAFakeImdsV2Token=="


class CurlExit(Exception):
    def __init__(self, code: int, message: str):
        self.code, self.message = code, message


def _no_proxy_match(host: str, no_proxy: str) -> bool:
    import ipaddress
    for entry in (e.strip() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            continue
        entry = entry.lstrip(".").lower()
        if host.lower() == entry or host.lower().endswith("." + entry):
            return True
    return False


def _proxy_for(scheme: str, host: str, explicit: str | None, noproxy: str | None) -> str | None:
    # curl reads http_proxy ONLY in lower case (CGI safety), HTTPS_PROXY in either case.
    proxy = explicit or (os.environ.get("http_proxy") if scheme == "http" else os.environ.get("https_proxy") or os.environ.get("HTTPS_PROXY"))
    proxy = proxy or os.environ.get("all_proxy") or os.environ.get("ALL_PROXY")
    if not proxy:
        return None
    no_proxy = noproxy if noproxy is not None else (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "")
    return None if _no_proxy_match(host, no_proxy) else proxy




def _egress_up(scenario: dict) -> bool:
    """Counts internet requests; True once `egress_from_request` is reached."""
    from_request = scenario.get("egress_from_request", 1)
    with state() as data:
        data["internet_requests"] = data.get("internet_requests", 0) + 1
        count = data["internet_requests"]
    return from_request is not None and count >= from_request


def _respond(method: str, url: str, headers: dict[str, str], insecure: bool, scenario: dict, via_proxy: str | None) -> tuple[int, bytes]:
    match = re.fullmatch(r"(https?)://([^/:]+)(?::(\d+))?(/.*)?", url)
    if not match:
        raise CurlExit(3, f"URL rejected: Malformed input to a URL function")
    scheme, host, port, path = match.group(1), match.group(2), match.group(3), match.group(4) or "/"
    port = int(port) if port else (443 if scheme == "https" else 80)
    if via_proxy is not None:
        proxy_host = re.sub(r"^\w+://", "", via_proxy).split(":")[0].split("/")[0]
        if proxy_host not in scenario["reachable_proxies"]:
            raise CurlExit(5, f"Could not resolve proxy: {proxy_host}")
        if host == IMDS:
            return 403, b"Forbidden"  # the proxy cannot reach this instance's link-local IMDS
    if host == IMDS:
        token_ttl = headers.get("x-aws-ec2-metadata-token-ttl-seconds")
        if path == "/latest/api/token":
            if method != "PUT":
                return 405, b""
            if token_ttl is None or not token_ttl.isdigit() or not 1 <= int(token_ttl) <= 21600:
                return 400, b""
            return 200, IMDS_TOKEN.encode()
        if scenario["imds_v2_required"] and headers.get("x-aws-ec2-metadata-token") != IMDS_TOKEN:
            return 401, b""
        metadata = scenario["metadata"]
        key = path.removeprefix("/latest/meta-data/")
        if path.startswith("/latest/meta-data/") and key in metadata:
            return 200, metadata[key].encode()
        return 404, b"<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<title>404 - Not Found</title>\n"
    installers = scenario["installers"]  # the pinned installer URLs -> distribution
    internet = url in installers or url in scenario["documents"]
    if internet and not _egress_up(scenario):
        # No NAT (or proxy path) yet: the VPC resolver answers, the connection times out.
        raise CurlExit(28, f"Failed to connect to {host} port {port} after 10002 ms: Timeout was reached")
    if url in installers:
        with open("/usr/lib/rancher-ha-rehearsal/fake-installer.sh") as handle:
            body = handle.read().replace("@DIST@", installers[url])
        if scenario["installer_tampered"]:
            body += "# changed on the way\n"
        return 200, body.encode()
    if url in scenario["documents"]:
        return 200, scenario["documents"][url].encode()
    supervisors = scenario["supervisors"]  # None: every host answers from the first attempt
    if via_proxy is not None and path == "/ping" and port in (6443, 9345) and not scenario["proxy_reaches_supervisors"]:
        # The nodes' security group admits 6443/9345 from the nodes, not from the proxy.
        raise CurlExit(56, "CONNECT tunnel failed, response 503")
    if path == "/ping" and port in (6443, 9345) and (supervisors is None or host in supervisors):
        with state() as data:
            pings = data.setdefault("pings", {})
            pings[url] = pings.get(url, 0) + 1
            attempt = pings[url]
        ready_after = 1 if supervisors is None else supervisors[host]
        if ready_after is None or attempt < ready_after:
            raise CurlExit(7, f"Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server")
        if scheme == "https" and not insecure:
            raise CurlExit(60, "SSL certificate problem: unable to get local issuer certificate")
        return 200, b"pong"
    import ipaddress
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise CurlExit(6, f"Could not resolve host: {host}")
    raise CurlExit(7, f"Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server")


def curl_main(argv: list[str]) -> int:
    scenario = config()["scenario"]
    opts: dict[str, list[str]] = {}
    flags: set[str] = set()
    urls: list[str] = []
    index = 0
    try:
        while index < len(argv):
            arg = argv[index]
            if arg.startswith("--"):
                name, eq, inline = arg.partition("=")
                if name in CURL_VALUE:
                    if eq:
                        value = inline
                    else:
                        index += 1
                        if index >= len(argv):
                            raise CurlExit(2, f"option {name}: requires parameter")
                        value = argv[index]
                    opts.setdefault(LONG_ALIASES.get(name, name), []).append(value)
                elif name in CURL_FLAG:
                    flags.add(LONG_ALIASES.get(name, name))
                else:
                    raise CurlExit(2, f"option {arg}: is unknown")
            elif arg.startswith("-") and len(arg) > 1:
                chars = arg[1:]
                for position, char in enumerate(chars):
                    if char in SHORT_FLAG:
                        flags.add("-" + char)
                    elif char in SHORT_VALUE:
                        value = chars[position + 1:]
                        if not value:
                            index += 1
                            if index >= len(argv):
                                raise CurlExit(2, f"option -{char}: requires parameter")
                            value = argv[index]
                        opts.setdefault("-" + char, []).append(value)
                        break
                    else:
                        raise CurlExit(2, f"option -{char}: is unknown")
            else:
                urls.append(arg)
            index += 1
        if not urls:
            raise CurlExit(2, "no URL specified")
    except CurlExit as error:
        record("curl", argv, exit=error.code)
        err(f"curl: {error.message}\ncurl: try 'curl --help' or 'curl --manual' for more information\n")
        return error.code
    headers = {}
    for header in opts.get("-H", []):
        key, _, value = header.partition(":")
        headers[key.strip().lower()] = value.strip()
    method = (opts.get("-X") or ["POST" if "-d" in opts else "GET"])[-1]
    url = urls[0]
    scheme = url.split("://", 1)[0]
    host = re.sub(r"^\w+://", "", url).split("/")[0].split(":")[0]
    proxy = _proxy_for(scheme, host, (opts.get("-x") or [None])[-1], (opts.get("--noproxy") or [None])[-1])
    silent, show = "-s" in flags, "-S" in flags
    try:
        status, body = _respond(method, url, headers, "-k" in flags, scenario, proxy)
    except CurlExit as error:
        record("curl", argv, exit=error.code, via_proxy=proxy)
        if not silent or show:
            err(f"curl: ({error.code}) {error.message}\n")
        return error.code
    if status >= 400 and "-f" in flags:
        record("curl", argv, exit=22, status=status, via_proxy=proxy)
        if not silent or show:
            err(f"curl: (22) The requested URL returned error: {status}\n")
        return 22
    record("curl", argv, exit=0, status=status, via_proxy=proxy)
    output = (opts.get("-o") or [None])[-1]
    if output and output != "-":
        try:
            with open(output, "wb") as handle:
                handle.write(body)
        except OSError as error:
            if not silent or show:
                err(f"curl: (23) Failure writing output to destination ({error.strerror})\n")
            return 23
    else:
        sys.stdout.buffer.write(body)
    for template in opts.get("-w", []):
        sys.stdout.write(template.replace("%{http_code}", str(status)).replace("\\n", "\n"))
    return 0


# ------------------------------------------------------------------- fake installers
K3S_UNIT = """[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/k3s.service.env
ExecStart=/usr/local/bin/k3s {exec}
"""

RKE2_UNIT = """[Unit]
Description=Rancher Kubernetes Engine v2 ({kind})
Documentation=https://github.com/rancher/rke2#readme
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/usr/local/lib/systemd/system/%N.env
ExecStart=/usr/local/bin/rke2 {kind}
"""

# The installed k3s/rke2 binary: records its call (and whether its config.yaml was there,
# which `rke2 server --cluster-reset` reads) and exits 0, as a finished reset does.
FAKE_BINARY = """#!/usr/bin/python3 -S
# rehearsal stand-in for {name}
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, "/usr/lib/rancher-ha-rehearsal")
import _stublib
_stublib.record("{name}", sys.argv[1:], config_present=os.path.exists("/etc/rancher/{name}/config.yaml"))
"""


def _write(path: str, text: str, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def installer_main(argv: list[str]) -> int:
    import subprocess

    distribution = argv[0]
    record("installer", argv)
    if distribution == "k3s":
        version = os.environ.get("INSTALL_K3S_VERSION", "")
        if version and not re.fullmatch(r"v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+", version):
            err(f"[ERROR]  Download failed: no k3s release {version!r}\n")
            return 1
        exec_args = os.environ.get("INSTALL_K3S_EXEC", "")
        if not exec_args or exec_args.split()[0] not in ("server", "agent"):
            exec_args = ("agent " if os.environ.get("K3S_URL") else "server ") + exec_args
        print(f"[INFO]  Using {version or 'latest'} as release")
        _write("/usr/local/bin/k3s", FAKE_BINARY.format(name="k3s"), 0o755)
        for link in ("kubectl", "crictl", "ctr"):
            if not os.path.lexists(f"/usr/local/bin/{link}"):
                os.symlink("/usr/local/bin/k3s", f"/usr/local/bin/{link}")
        _write("/usr/local/bin/k3s-killall.sh", "#!/bin/sh\n", 0o755)
        _write("/usr/local/bin/k3s-uninstall.sh", "#!/bin/sh\n", 0o755)
        proxy = "".join(f"{k}={v}\n" for k, v in sorted(os.environ.items())
                        if re.match(r"^(K3S_|CONTAINERD_|(NO|HTTP|HTTPS)_PROXY$)", k, re.I))
        _write("/etc/systemd/system/k3s.service.env", proxy, 0o600)
        _write("/etc/systemd/system/k3s.service", K3S_UNIT.format(exec=exec_args.strip()), 0o644)
        calls = [["daemon-reload"]]
        if not os.environ.get("INSTALL_K3S_SKIP_ENABLE"):
            calls.append(["enable", "k3s.service"])
            if not os.environ.get("INSTALL_K3S_SKIP_START"):
                calls.append(["restart", "k3s.service"])
        for call in calls:
            if subprocess.run(["systemctl", *call]).returncode:
                return 1
        return 0
    version = os.environ.get("INSTALL_RKE2_VERSION", "")
    if version and not re.fullmatch(r"v\d+\.\d+\.\d+(-rc\d+)?\+rke2r\d+", version):
        err(f"[ERROR]  download failed: no rke2 release {version!r}\n")
        return 1
    kind = os.environ.get("INSTALL_RKE2_TYPE", "server")
    if kind not in ("server", "agent"):
        err(f"[ERROR]  invalid INSTALL_RKE2_TYPE {kind!r}\n")
        return 1
    print(f"[INFO]  using {version or 'stable'} as release")
    _write("/usr/local/bin/rke2", FAKE_BINARY.format(name="rke2"), 0o755)
    _write("/usr/local/bin/rke2-killall.sh", "#!/bin/sh\n", 0o755)
    _write("/usr/local/bin/rke2-uninstall.sh", "#!/bin/sh\n", 0o755)
    for unit_kind in ("server", "agent"):
        _write(f"/usr/local/lib/systemd/system/rke2-{unit_kind}.service", RKE2_UNIT.format(kind=unit_kind), 0o644)
        _write(f"/usr/local/lib/systemd/system/rke2-{unit_kind}.env", "HOME=/root\n", 0o644)
    return 0


MAINS = {"aws": aws_main, "snap": snap_main, "curl": curl_main, "systemctl": systemctl_main, "apt-get": apt_get_main, "sleep": sleep_main, "installer": installer_main}


def main() -> None:
    name = os.path.basename(sys.argv[0])
    try:
        code = MAINS[name](sys.argv[1:])
    except Exception:
        # A bug of the stub, not behaviour of the real command: make it loud.
        import traceback
        text = traceback.format_exc()
        err(f"rehearsal stub {name} crashed:\n{text}")
        with open(CALLS, "a") as handle:
            handle.write(json.dumps({"cmd": name, "argv": sys.argv[1:], "env": {}, "stub_crash": text}) + "\n")
        code = 255
    sys.exit(code)
