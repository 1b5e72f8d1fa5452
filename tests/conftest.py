import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from offline.mocks import digest  # noqa: E402
from offline.runner import MockRun, run_program, stack_config  # noqa: E402

# The SSM root of a `dev` run under the mocks: /rancher-ha/<stack>/<StackIdentity's random id>.
DEV_PARAMETER_ROOT = "/rancher-ha/dev/" + digest("random:index/randomId:RandomId", "stack-identity-id", length=8)

# A minimal valid stack; tests override single keys.
BASE_CONFIG: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "rancher-ha:hostname": "rancher.dev.example.com",
    "rancher-ha:hostedZone": "example.com",
    "rancher-ha:adminCidrs": ["203.0.113.0/24"],
}

# prod requires snapshotBucketAdmins (the bucket's administrators, never whoever ran `pulumi up`):
# prod runs get the CI deploy role (tools/ci_roles.py) unless the test sets its own.
PROD_BUCKET_ADMINS = ["arn:aws:iam::123456789012:role/github-ci/rancher-ha-deploy-prod"]


def with_prod_bucket_admins(config: dict[str, Any], stack: str, key: str = "rancher-ha:snapshotBucketAdmins") -> dict[str, Any]:
    environment = config.get(key.replace("snapshotBucketAdmins", "environment"), stack)
    return {key: PROD_BUCKET_ADMINS, **config} if environment == "prod" else config


RKE2 = {"rancher-ha:distribution": "rke2"}
NGINX_L4 = {"rancher-ha:loadBalancerType": "nginx", "rancher-ha:loadBalancerLayer": "l4"}
NGINX_L7 = {"rancher-ha:loadBalancerType": "nginx", "rancher-ha:loadBalancerLayer": "l7"}
EXISTING_VPC = {
    "rancher-ha:vpcId": "vpc-0123456789abcdef0",
    "rancher-ha:nodeSubnetIds": ["subnet-00000000000000001", "subnet-00000000000000002", "subnet-00000000000000003"],
    "rancher-ha:lbSubnetIds": ["subnet-0000000000000000a", "subnet-0000000000000000b"],
}
# Private mode: an existing VPC without NAT, where the proxy is the only way out.
PROXY = {
    **EXISTING_VPC,
    "rancher-ha:proxyHttp": "http://proxy.corp.example:3128",
    "rancher-ha:proxyHttps": "http://proxy.corp.example:3128",
    "rancher-ha:proxyNoProxy": ["git.corp.example"],
}


def run(overrides: dict[str, Any] | None = None, stack: str = "dev", preview: bool = False, deployment: str = "") -> MockRun:
    config = {**BASE_CONFIG, **(overrides or {})}
    config = {key: value for key, value in with_prod_bucket_admins(config, stack).items() if value is not None}
    return run_program(config, stack=stack, preview=preview, deployment=deployment)


_cache: dict[tuple, MockRun] = {}


def cached_run(overrides: dict[str, Any] | None = None, stack: str = "dev", preview: bool = False) -> MockRun:
    """Runs are pure functions of their config; share them between tests."""
    key = (repr(sorted((overrides or {}).items())), stack, preview)
    if key not in _cache:
        _cache[key] = run(overrides, stack, preview)
    return _cache[key]


@pytest.fixture(scope="session")
def dev_run() -> MockRun:
    return run_program(stack_config("dev"), stack="dev")


@pytest.fixture(scope="session")
def dev_preview() -> MockRun:
    return run_program(stack_config("dev"), stack="dev", preview=True)


# --- real charts (offline/charts.py): shared by the tests that render them ----------------


@pytest.fixture(scope="session")
def helm() -> str:
    from offline import charts

    binary = charts.helm_binary()
    if binary is None:
        pytest.skip(f"helm {charts.HELM_VERSION} is not installed (bash scripts/test.sh installs it into .tools/helm/helm)")
    return binary


@pytest.fixture(scope="session")
def kubernetes_validate():
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (requirements-dev.txt)")
