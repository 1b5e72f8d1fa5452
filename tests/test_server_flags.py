"""The server config.yaml the program writes uses only real `k3s server` / `rke2 server`
flags, with values the real config-file parser accepts (rendering/server_flags.py,
data from reference/upstream/server-flags/, extracted by tools/extract_server_flags.py).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from offline.runner import STACKS_DIR, run_stack
from rendering import node_config, server_flags
from rendering.cloud_init import BASE_CONFIG_PATH
from rendering.server_flags import DATA_DIR, UnknownFlagData, config_problems, data_file
from tests import upstream
from tests.helpers import cloud_config, server_instances, written_file

STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))
# Stand-ins for the keys node-bootstrap.sh adds from SSM on the node (always strings).
SECRET_KEYS = {"k3s": ("token", "datastore-endpoint"), "rke2": ("token",)}

RKE2_V134 = "v1.34.1+rke2r1"
RKE2_V136 = "v1.36.0+rke2r1"
K3S_V134 = "v1.34.1+k3s1"


# --------------------------------------------------------------------------- helpers


def _script_variable(registration, name: str) -> str | None:
    """DISTRIBUTION= / KUBERNETES_VERSION= of the boot script in the user data."""
    texts = [registration.inputs["userData"]]
    for entry in cloud_config(registration).get("write_files", []):
        if isinstance(entry.get("content"), str):
            texts.append(entry["content"])
    for text in texts:
        match = re.search(rf"^{name}=(\S+)$", text, re.M)
        if match:
            return shlex.split(match.group(1))[0]
    return None


def merged_server_configs(run, stack: str, overrides: dict | None = None) -> list[tuple[str, str, str, dict]]:
    """(instance name, distribution, version, merged config.yaml) for every server."""
    from offline.runner import stack_config
    from settings import versions

    config = {**stack_config(stack), **(overrides or {})}
    result = []
    for registration in server_instances(run):
        base = yaml.safe_load(written_file(registration, BASE_CONFIG_PATH)["content"]) or {}
        distribution = _script_variable(registration, "DISTRIBUTION") or config.get("rancher-ha:distribution", "k3s")
        version = _script_variable(registration, "KUBERNETES_VERSION") or config.get(
            "rancher-ha:kubernetesVersion", versions.EXAMPLE_KUBERNETES_VERSION[distribution]
        )
        merged = dict(base)
        secret_keys = set(node_config.secret_keys(distribution))
        assert set(SECRET_KEYS[distribution]) <= secret_keys, secret_keys
        for key in sorted(secret_keys):
            merged[key] = f"stand-in-{key}"  # the node writes each SSM parameter as a string
        # the boot script dumps the merge with yaml.safe_dump; read it back the same way
        merged = yaml.safe_load(yaml.safe_dump(merged, default_flow_style=False, sort_keys=True))
        result.append((registration.name, distribution, version, merged))
    return result


_runs: dict[tuple, object] = {}


def _run(stack: str, overrides: dict | None = None):
    key = (stack, json.dumps(overrides or {}, sort_keys=True))
    if key not in _runs:
        _runs[key] = run_stack(stack, overrides=overrides)
    return _runs[key]


# --------------------------------------------------------------------------- the program's configs

VARIANTS = [(stack, None) for stack in STACKS] + [
    # the other pinned minor: RKE2 v1.36 (Traefik by default) with a Rancher that supports it
    # (without Rancher backups: the chart pinned for 2.15 declares Kubernetes up to 1.35 only)
    ("prod", {"rancher-ha:kubernetesVersion": RKE2_V136, "rancher-ha:rancherVersion": "2.15.0", "rancher-ha:rancherBackups": False}),
    ("dev", {"rancher-ha:kubernetesVersion": "v1.36.0+k3s1", "rancher-ha:rancherVersion": "2.15.0"}),
]


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS, ids=lambda v: v if isinstance(v, str) else (v or {}).get("rancher-ha:kubernetesVersion", "pinned"))
def test_every_server_config_uses_real_flags(stack, overrides):
    run = _run(stack, overrides)
    servers = merged_server_configs(run, stack, overrides)
    assert servers, f"stack {stack}: no server instances found"
    problems = [
        f"{stack} {name} ({distribution} {version}): {problem}"
        for name, distribution, version, config in servers
        for problem in config_problems(distribution, version, config)
    ]
    assert not problems, "\n".join(problems)


def test_stacks_cover_both_distributions():
    distributions = set()
    for stack in STACKS:
        distributions |= {d for _, d, _, _ in merged_server_configs(_run(stack), stack)}
    assert distributions == {"k3s", "rke2"}


# --------------------------------------------------------------------------- the checker rejects


RKE2_GOOD = {
    "write-kubeconfig-mode": "0600",
    "tls-san": ["rancher.example.com", "10.0.0.10"],
    "cluster-cidr": "10.42.0.0/16",
    "service-cidr": "10.43.0.0/16",
    "server": "https://10.0.0.10:9345",
    "token": "secret",
    "ingress-controller": "ingress-nginx",
    "etcd-snapshot-schedule-cron": "0 */4 * * *",
    "etcd-snapshot-retention": 42,
    "etcd-s3": True,
    "etcd-s3-bucket": "bucket",
    "etcd-s3-region": "eu-west-1",
    "etcd-s3-folder": "prod",
    "node-label": ["a=b"],
}
K3S_GOOD = {
    "write-kubeconfig-mode": "0600",
    "tls-san": ["rancher.example.com"],
    "cluster-cidr": "10.42.0.0/16",
    "service-cidr": "10.43.0.0/16",
    "datastore-cafile": "/etc/rancher/k3s/rds-ca-bundle.pem",
    "datastore-endpoint": "mysql://u:p@tcp(db:3306)/k3s",
    "token": "secret",
}


def test_good_configs_pass():
    assert config_problems("rke2", RKE2_V134, RKE2_GOOD) == []
    assert config_problems("rke2", RKE2_V136, {**RKE2_GOOD, "ingress-controller": ["traefik"]}) == []
    assert config_problems("k3s", K3S_V134, K3S_GOOD) == []


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("etcd-snapshot-schedule", "etcd-snapshot-schedule-cron"),
        ("tls-sans", "tls-san"),
        ("etcd-s3-buckets", "etcd-s3-bucket"),
        ("ingress-controllers", "ingress-controller"),
        ("write-kubeconfig-permissions", None),
    ],
)
def test_typos_are_unknown_keys_with_a_suggestion(typo, meant):
    config = {**RKE2_GOOD, typo: "x"}
    problems = config_problems("rke2", RKE2_V134, config)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{typo}: not a rke2")
    if meant:
        assert f"did you mean {meant}" in problems[0]


def test_unknown_keys():
    assert config_problems("k3s", K3S_V134, {"hostname": "x"})[0].startswith("hostname: not a k3s")
    # k3s flags RKE2 drops are unknown to RKE2 (skipped with a warning)
    [problem] = config_problems("rke2", RKE2_V134, {"flannel-backend": "none"})
    assert "k3s flag that rke2 drops" in problem
    # RKE2-only flags are unknown to K3s
    assert config_problems("k3s", K3S_V134, {"ingress-controller": "traefik"})
    assert config_problems("k3s", K3S_V134, {"cni": "canal"})
    # `prime` is new in RKE2 v1.36
    assert config_problems("rke2", RKE2_V134, {"prime": True})
    assert config_problems("rke2", RKE2_V136, {"prime": True}) == []


def test_aliases_and_append_keys_are_flags():
    assert config_problems("k3s", K3S_V134, {"t": "secret", "d": "/data", "tls-san+": ["x"], "node-ip": "10.0.0.1"}) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("etcd-s3", "yes"),  # ParseBool does not know yes
        ("etcd-s3", "enabled"),
        ("etcd-s3", None),
        ("etcd-snapshot-retention", "five"),
        ("etcd-snapshot-retention", True),
        ("etcd-snapshot-retention", 2.5),
        ("etcd-snapshot-retention", None),
        ("etcd-s3-timeout", 300),  # a duration needs a unit
        ("etcd-s3-timeout", "5 minutes"),
        ("tls-san", {"a": "b"}),
        ("server", ["https://a:9345", "https://b:9345"]),  # scalar flag, only the last counts
        ("node-label", [["a=b"]]),
        ("ingress-controller", "nginx"),
        ("ingress-controller", "traefik,nginx"),
        ("cni", "weave"),
    ],
)
def test_wrong_value_kinds_are_rejected(key, value):
    problems = config_problems("rke2", RKE2_V134, {**RKE2_GOOD, key: value})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: ")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("etcd-s3", "true"),
        ("etcd-s3", "False"),
        ("etcd-s3", 1),
        ("etcd-s3", [True]),
        ("etcd-snapshot-retention", "7"),
        ("etcd-snapshot-retention", "0x10"),
        ("etcd-snapshot-retention", 7.0),
        ("etcd-s3-timeout", "5m"),
        ("etcd-s3-timeout", "1h30m"),
        ("etcd-s3-timeout", 0),
        ("tls-san", "one.example.com"),  # a scalar for a list flag is one item
        ("tls-san", []),
        ("etcd-s3-region", None),  # --etcd-s3-region= is an empty string
        ("write-kubeconfig-mode", 644),  # accepted (as the text "644")
        ("cni", ["multus", "canal"]),
        ("ingress-controller", "none"),
    ],
)
def test_values_the_parser_accepts(key, value):
    assert config_problems("rke2", RKE2_V134, {**RKE2_GOOD, key: value}) == []


# --------------------------------------------------------------------------- version -> data file


def test_version_mapping():
    assert data_file("rke2", RKE2_V134).name == f"rke2-{RKE2_V134}.json"
    assert data_file("rke2", "v1.34.7+rke2r2").name == f"rke2-{RKE2_V134}.json"
    assert data_file("rke2", "v1.35.3+rke2r1").name == f"rke2-{RKE2_V134}.json"
    assert data_file("rke2", RKE2_V136).name == f"rke2-{RKE2_V136}.json"
    assert data_file("rke2", "v1.37.0+rke2r1").name == f"rke2-{RKE2_V136}.json"
    assert data_file("k3s", "v1.34.9+k3s1").name == f"k3s-{K3S_V134}.json"


@pytest.mark.parametrize(
    ("distribution", "version"),
    [("rke2", "v1.33.5+rke2r1"), ("k3s", "v1.30.0+k3s1"), ("rke2", "v1.34.1+k3s1"), ("rke", "v1.34.1+rke2r1"), ("k3s", "1.34")],
)
def test_no_data_file_is_a_clear_error(distribution, version):
    with pytest.raises(UnknownFlagData):
        config_problems(distribution, version, {})


def test_newest_lower_minor_is_chosen(tmp_path: Path):
    for version in ("v1.30.2+rke2r1", "v1.32.0+rke2r1", "v1.32.4+rke2r1", "v1.36.0+rke2r1"):
        (tmp_path / f"rke2-{version}.json").write_text(json.dumps({"source": {"version": version}, "flags": {}}))
    assert data_file("rke2", "v1.33.0+rke2r1", tmp_path).name == "rke2-v1.32.4+rke2r1.json"
    assert data_file("rke2", "v1.32.1+rke2r1", tmp_path).name == "rke2-v1.32.4+rke2r1.json"
    assert data_file("rke2", "v1.31.9+rke2r1", tmp_path).name == "rke2-v1.30.2+rke2r1.json"
    with pytest.raises(UnknownFlagData):
        data_file("rke2", "v1.29.0+rke2r1", tmp_path)


# --------------------------------------------------------------------------- data file sanity


def _flags(name: str) -> dict:
    return json.loads((DATA_DIR / name).read_text())["flags"]


EXPECTED_FILES = [f"k3s-{K3S_V134}.json", f"rke2-{RKE2_V134}.json", f"rke2-{RKE2_V136}.json", "k3s-v1.36.0+k3s1.json"]


@pytest.mark.parametrize("name", EXPECTED_FILES)
def test_data_files_have_source_and_kinds(name):
    document = json.loads((DATA_DIR / name).read_text())
    source = document["source"]
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert source["files"] and source["version"] in name
    assert len(document["flags"]) > 100
    assert {spec["kind"] for spec in document["flags"].values()} <= {"list", "bool", "string", "int", "duration", "float"}
    common = _flags(name)
    assert common["tls-san"]["kind"] == "list"
    assert common["token"] == {**common["token"], "kind": "string", "aliases": ["t"]}
    assert common["etcd-snapshot-schedule-cron"]["kind"] == "string"
    assert "etcd-snapshot-schedule" not in common
    assert common["etcd-snapshot-retention"]["kind"] == "int"
    assert common["etcd-s3"]["kind"] == "bool"
    assert common["etcd-s3-timeout"]["kind"] == "duration"
    assert common["write-kubeconfig-mode"]["kind"] == "string"
    assert common["node-label"]["kind"] == "list"


@pytest.mark.parametrize("name", [f"rke2-{RKE2_V134}.json", f"rke2-{RKE2_V136}.json"])
def test_rke2_data(name):
    flags = _flags(name)
    for key in ("ingress-controller", "cni", "etcd-s3-bucket", "etcd-s3-region", "etcd-s3-folder", "server", "profile", "kube-apiserver-image"):
        assert key in flags, key
    assert flags["ingress-controller"]["kind"] == "list"
    assert set(flags["ingress-controller"]["values"]) == {"none", "ingress-nginx", "traefik"}
    for dropped in ("flannel-backend", "cluster-init", "https-listen-port", "disable-network-policy"):
        assert dropped not in flags
    source = json.loads((DATA_DIR / name).read_text())["source"]
    assert source["tag"] == source["version"]
    assert re.fullmatch(r"[0-9a-f]{40}", source["k3s"]["commit"])


@pytest.mark.parametrize("name", [f"k3s-{K3S_V134}.json", "k3s-v1.36.0+k3s1.json"])
def test_k3s_data(name):
    flags = _flags(name)
    for key in ("datastore-endpoint", "datastore-cafile", "cluster-init", "flannel-backend", "disable"):
        assert key in flags, key
    assert "ingress-controller" not in flags and "cni" not in flags


def test_pinned_rke2_is_built_from_the_pinned_k3s():
    """RKE2's copied flags are k3s's, with the same kinds."""
    rke2 = json.loads((DATA_DIR / f"rke2-{RKE2_V134}.json").read_text())
    k3s = _flags(f"k3s-{K3S_V134}.json")
    for name, spec in rke2["flags"].items():
        if spec.get("origin") == "k3s":
            assert k3s[name]["kind"] == spec["kind"], name
    dropped = set(rke2["source"]["dropped_k3s_flags"])
    assert set(k3s) - dropped == {n for n, s in rke2["flags"].items() if s.get("origin") == "k3s"}


def test_checker_uses_only_stdlib_and_yaml():
    text = Path(server_flags.__file__).read_text()
    imports = set(re.findall(r"^(?:from|import) (\w+)", text, re.M))
    assert imports <= {"__future__", "difflib", "json", "math", "re", "functools", "pathlib", "typing", "yaml"}


def test_a_typo_in_a_real_server_config_is_caught():
    [(_, distribution, version, config), *_] = merged_server_configs(_run("prod"), "prod")
    assert distribution == "rke2" and "etcd-snapshot-schedule-cron" in config
    config["etcd-snapshot-schedule"] = config.pop("etcd-snapshot-schedule-cron")
    config["etcd-snapshot-retention"] = str(config["etcd-snapshot-retention"]) + "d"
    problems = config_problems(distribution, version, config)
    assert sorted(p.split(":")[0] for p in problems) == ["etcd-snapshot-retention", "etcd-snapshot-schedule"], problems


# --------------------------------------------------------------------------- the extractor


def test_extractor_reads_go_flag_definitions(tmp_path: Path):
    from tools import extract_server_flags as extract

    pkg = tmp_path / "pkg" / "cli" / "cmds"
    pkg.mkdir(parents=True)
    (pkg / "server.go").write_text(
        '''package cmds

import (
\t"time"

\t"github.com/urfave/cli/v2"
)

const prefix = "etcd"

var (
\tServerConfig Server
\tTokenFlag = &cli.StringFlag{
\t\tName:    "token",
\t\tAliases: []string{"t"},
\t\tUsage:   "(cluster) secret, with a } and a \\" in it",
\t}
)

var ServerFlags = []cli.Flag{
\tTokenFlag,
\t&cli.StringSliceFlag{Name: "tls-san"},
\t&cli.DurationFlag{
\t\tName:  prefix + "-s3-timeout",
\t\tValue: 5 * time.Minute,
\t},
\t// a comment, and a hidden flag
\t&cli.BoolFlag{Name: "old", Hidden: true},
\tOtherFlag,
}

func NewServerCommand() *cli.Command { return &cli.Command{Flags: ServerFlags} }
'''
    )
    (pkg / "other_linux.go").write_text(
        'package cmds\n\nimport "github.com/urfave/cli/v2"\n\nvar OtherFlag = &cli.IntFlag{Name: "port,p"}\n'
    )
    (pkg / "other_windows.go").write_text(
        'package cmds\n\nimport "github.com/urfave/cli/v2"\n\nvar OtherFlag = &cli.StringFlag{Name: "port"}\n'
    )
    flags = extract.flags_json(extract.k3s_server_flags(extract.DirSource(tmp_path)))
    assert flags == {
        "etcd-s3-timeout": {"kind": "duration", "go_type": "cli.DurationFlag", "aliases": []},
        "old": {"kind": "bool", "go_type": "cli.BoolFlag", "aliases": [], "hidden": True},
        "port": {"kind": "int", "go_type": "cli.IntFlag", "aliases": ["p"]},
        "tls-san": {"kind": "list", "go_type": "cli.StringSliceFlag", "aliases": []},
        "token": {"kind": "string", "go_type": "cli.StringFlag", "aliases": ["t"]},
    }


def test_extractor_reads_the_k3s_pin_from_go_mod():
    from tools.extract_server_flags import k3s_pin_from_go_mod

    assert k3s_pin_from_go_mod("require (\n\tgithub.com/k3s-io/k3s v1.33.0-rc1.0.20250905195603-857412ae5891 // master\n)")[2] == "857412ae5891"
    replaced = "replace (\n\tgithub.com/k3s-io/k3s => github.com/k3s-io/k3s v1.36.1-0.20260508014929-7bbbf7c9b258\n)\nrequire github.com/k3s-io/k3s v1.36.0\n"
    assert k3s_pin_from_go_mod(replaced)[2] == "7bbbf7c9b258"


# Git snapshots of rancher/rke2 and of k3s (k3s-io/k3s, or a fork holding its commits, e.g.
# `fetch github:dereknola/k3s`), given by path. The Go source is upstream code and is not
# committed here, and CI has no network: CI checks the provenance each data file records
# (below); the re-derivation runs wherever snapshots are given (it did when the data was made).
MIRRORS = {name: upstream.git_dir(name) for name in ("rke2", "k3s")}


def test_every_data_file_records_its_commits_and_the_digest_of_every_source_file():
    for name in EXPECTED_FILES:
        source = json.loads((DATA_DIR / name).read_text())["source"]
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]), name
        if "k3s" in source and isinstance(source["k3s"], dict):
            assert re.fullmatch(r"[0-9a-f]{40}", source["k3s"]["commit"]), name
        assert sorted(source["file_sha256"]) == sorted(source["files"]), name
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in source["file_sha256"].values()), name
        assert source["extracted_by"] == "tools/extract_server_flags.py"


def test_the_extractor_records_the_digest_of_the_files_it_read(tmp_path: Path):
    import hashlib

    from tools import extract_server_flags as extract

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.go").write_bytes(b"package a\n")
    assert extract.file_digests({"": extract.DirSource(tmp_path)}, ["pkg/a.go"]) == {
        "pkg/a.go": hashlib.sha256(b"package a\n").hexdigest()}


@pytest.mark.skipif(not all(MIRRORS.values()), reason="needs local upstream snapshots: "
                    f"{upstream.how_to_get('rke2', 'rancher/rke2')}; {upstream.how_to_get('k3s', 'k3s-io/k3s')}")
def test_data_files_are_what_the_extractor_writes(tmp_path: Path):
    from tools import extract_server_flags as extract

    assert extract.main(["--out", str(tmp_path), "all", "--rke2-git-dir", str(MIRRORS["rke2"]), "--k3s-git-dir", str(MIRRORS["k3s"])]) == 0
    for name in EXPECTED_FILES:
        fresh = json.loads((tmp_path / name).read_text())
        kept = json.loads((DATA_DIR / name).read_text())
        assert fresh["flags"] == kept["flags"], name
        assert fresh["source"]["commit"] == kept["source"]["commit"], name
        assert fresh["source"]["file_sha256"] == kept["source"]["file_sha256"], name
