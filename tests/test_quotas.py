"""AWS quotas: what each stack takes, counted from the program's own resources, summed
per account and region across stacks/ against AWS's default quotas (offline/quotas.py
cites them) and the increases the README tells a team to request."""

import re
from pathlib import Path

import pytest

from conftest import NGINX_L4, cached_run
from offline import quotas
from offline.runner import STACKS_DIR, run_stack, stack_config

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stack_files():
    return quotas.stack_files()


@pytest.fixture(scope="module")
def groups(stack_files):
    return quotas.by_account_region(stack_files)


def test_the_stacks_fit_their_accounts_quotas(groups):
    excesses = [line for group in groups for line in group.excesses()]
    assert excesses == [], "\n".join(excesses)


def test_the_check_catches_stacks_that_share_an_account_past_a_quota(stack_files):
    """The default stacks in one account and region need 7 Elastic IPs, AWS gives 5."""
    one_account = {name: (quotas.DEFAULT_ACCOUNT, region, needs) for name, (_, region, needs) in stack_files.items()}
    shared = {g.region: g for g in quotas.by_account_region(one_account)}["eu-west-1"]
    excess = shared.excesses()
    assert any("7 Elastic IPs needed, the quota is 5 per region (ec2/L-0263D0A3)" in line for line in excess), excess
    assert all("Fix:" in line and "rancher-ha:awsAccount" in line for line in excess)


def test_counts_come_from_the_registrations():
    base = quotas.stack_needs(cached_run({}).registrations).counts
    assert base["elasticIps"] == 1 and base["natGatewaysPerZone"] == 1 and base["vpcs"] == 1
    assert base["networkLoadBalancers"] == 1 and base["dbInstances"] == 1
    assert base["standardVcpus"] == 2 * 4  # two m6i.xlarge
    per_zone = quotas.stack_needs(cached_run({"rancher-ha:natGatewayPerZone": True}).registrations)
    assert per_zone.counts["elasticIps"] == 3 and per_zone.counts["natGatewaysPerZone"] == 1
    assert len(per_zone.nat_gateways_by_zone) == 3
    nginx = quotas.stack_needs(cached_run(NGINX_L4).registrations).counts
    # The NGINX instance (t3.small, 2 vCPUs, in its Auto Scaling group) and its Elastic IP.
    assert nginx["elasticIps"] == 2 and nginx["networkLoadBalancers"] == 0 and nginx["standardVcpus"] == 8 + 2


def test_an_instance_type_outside_the_standard_quota_cannot_be_counted_silently():
    needs = quotas.stack_needs(cached_run({"rancher-ha:serverInstanceType": "g5.xlarge"}).registrations)
    assert needs.problems and "g5.xlarge" in needs.problems[0]


def test_the_readme_quota_table_is_the_computed_one(groups):
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- quotas-table:start -->\n(.*?)<!-- quotas-table:end -->", readme, re.S)
    assert match, "README.md lost its quotas table markers"
    assert match.group(1) == quotas.readme_table(groups), "regenerate with: python -m offline.quotas"


def test_the_render_summary_counts_the_quotas(tmp_path):
    from tools.render import render

    run = run_stack("prod")
    render(run, tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "## AWS quotas" in summary
    assert "| Elastic IPs (ec2/L-0263D0A3) | 3 | 5 per region |" in summary
    assert "| On-Demand Standard vCPUs (ec2/L-1216C47A) | 12 | 5 per region |" in summary


def test_every_stack_file_states_its_region():
    for path in STACKS_DIR.glob("Pulumi.*.yaml"):
        assert stack_config(path.name.split(".")[1]).get("aws:region"), path.name
