"""Dynamic providers are unpickled by Pulumi in another process: prove they load and run
where this project is not importable."""

import subprocess
import sys

from pulumi.dynamic.dynamic import serialize_provider

from components.api_gate import ApiGateProvider
from components.hostname_lock import HostnameLockProvider

LOADER = """
import base64, sys, dill
provider = dill.loads(base64.b64decode(sys.stdin.read()))
assert "components" not in sys.modules, "unpickling imported the project"
if sys.argv[1] == "gate":
    try:
        provider.create({"url": "https://127.0.0.1:9/readyz", "caPem": "-", "clientCertPem": "-", "clientKeyPem": "-", "timeoutSeconds": 1})
    except Exception as error:
        print(type(error).__name__)
else:
    print(provider.check({"hostname": "a.example.com"}, {"hostname": "b.example.com"}).failures[0].reason.split(":")[0])
"""


def _load_elsewhere(provider, kind, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", LOADER, kind], input=serialize_provider(provider), cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_api_gate_provider_runs_without_the_project(tmp_path):
    # It got as far as building the TLS context from the (bogus) CA: the code ran.
    assert _load_elsewhere(ApiGateProvider(), "gate", tmp_path) == "SSLError"


def test_hostname_lock_provider_runs_without_the_project(tmp_path):
    assert _load_elsewhere(HostnameLockProvider(), "lock", tmp_path) == "Rancher cannot be renamed"
