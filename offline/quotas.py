"""What a stack takes of its AWS account's regional quotas, counted from the program.

The counts come from a mock run's registrations (the resources the program really
declares), never from a table of what a stack is supposed to need. Quotas are per
account and region: stacks share them when they deploy into the same account and
region. The account is not in the program's settings files (credentials decide it), so
the stacks declare it as a label, `rancher-ha:awsAccount`; stacks without one are taken
to share one account, the assumption that costs the most quota.

Default quotas (new accounts; check yours with
`aws service-quotas get-service-quota --service-code <code> --quota-code <quota>`):
  * EC2-VPC Elastic IPs: 5 per Region (ec2 L-0263D0A3). AWS General Reference,
    "Amazon EC2 endpoints and quotas"; Amazon VPC User Guide, "Elastic IP address quotas".
  * NAT gateways per Availability Zone: 5 (vpc L-FE5A380F); VPCs per Region: 5 (vpc
    L-F678F1CE). AWS General Reference, "Amazon Virtual Private Cloud endpoints and quotas".
  * Network Load Balancers per Region: 50 (elasticloadbalancing L-69A177A2). Elastic
    Load Balancing User Guide, "Quotas for your Network Load Balancers".
  * Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances: 5 vCPUs (ec2
    L-1216C47A), the Service Quotas default value. AWS raises the applied value with an
    account's usage, so an older account often has more; new accounts start here.
  * DB instances: 40 per Region (rds L-7B6409FD). AWS General Reference, "Amazon
    Relational Database Service endpoints and quotas".
Nothing here was read from a live account.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from settings.instance_types import standard_quota_family, vcpus

from .mocks import Registration
from .runner import STACKS_DIR, run_stack, stack_config

DEFAULT_ACCOUNT = "(shared)"


@dataclass(frozen=True)
class Quota:
    key: str
    name: str
    code: str  # service/quota code in Service Quotas
    default: int
    per_zone: bool = False  # counted per Availability Zone, not per region


QUOTAS: tuple[Quota, ...] = (
    Quota("elasticIps", "Elastic IPs", "ec2/L-0263D0A3", 5),
    Quota("natGatewaysPerZone", "NAT gateways per zone", "vpc/L-FE5A380F", 5, per_zone=True),
    Quota("vpcs", "VPCs", "vpc/L-F678F1CE", 5),
    Quota("networkLoadBalancers", "Network Load Balancers", "elasticloadbalancing/L-69A177A2", 50),
    Quota("standardVcpus", "On-Demand Standard vCPUs", "ec2/L-1216C47A", 5),
    Quota("dbInstances", "RDS DB instances", "rds/L-7B6409FD", 40),
)

# Quota increases this repository's README tells a team to request before deploying the
# default stacks, by (account label, region). Anything above a default and not listed
# here fails tests/test_quotas.py.
REQUESTED: dict[tuple[str, str], dict[str, int]] = {
    (DEFAULT_ACCOUNT, "eu-west-1"): {"standardVcpus": 32},
    ("prod", "eu-west-1"): {"standardVcpus": 16},
}


@dataclass
class Needs:
    """One stack's share of its account's regional quotas (steady state)."""

    counts: dict[str, int] = field(default_factory=dict)
    nat_gateways_by_zone: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what could not be counted


def _instance_vcpus(instance_type: str, what: str, needs: Needs) -> int:
    count = vcpus(instance_type)
    if count is None or not standard_quota_family(instance_type):
        needs.problems.append(f"{what}: cannot count {instance_type!r} against the On-Demand Standard vCPU quota")
        return 0
    return count


def stack_needs(registrations: Iterable[Registration]) -> Needs:
    regs = list(registrations)
    needs = Needs()
    by_type: dict[str, list[Registration]] = defaultdict(list)
    for r in regs:
        by_type[r.type].append(r)
    subnets = {r.outputs.get("id"): r for r in by_type["aws:ec2/subnet:Subnet"]}
    zones: dict[str, int] = defaultdict(int)
    for nat in by_type["aws:ec2/natGateway:NatGateway"]:
        subnet = subnets.get(nat.inputs.get("subnetId"))
        zones[subnet.inputs.get("availabilityZone", "?") if subnet else "?"] += 1
    needs.nat_gateways_by_zone = dict(sorted(zones.items()))
    cpus = sum(_instance_vcpus(i.inputs.get("instanceType", ""), i.name, needs) for i in by_type["aws:ec2/instance:Instance"])
    templates = {r.urn: r for r in by_type["aws:ec2/launchTemplate:LaunchTemplate"]}
    for group in by_type["aws:autoscaling/group:Group"]:
        (template_urn,) = [u for u in group.property_dependencies.get("launchTemplate", []) if u in templates]
        instance_type = templates[template_urn].inputs.get("instanceType", "")
        cpus += int(group.inputs.get("desiredCapacity", 0)) * _instance_vcpus(instance_type, group.name, needs)
    needs.counts = {
        "elasticIps": len(by_type["aws:ec2/eip:Eip"]),
        "natGatewaysPerZone": max(zones.values(), default=0),
        "vpcs": len(by_type["aws:ec2/vpc:Vpc"]),
        "networkLoadBalancers": sum(
            1 for r in by_type["aws:lb/loadBalancer:LoadBalancer"] if r.inputs.get("loadBalancerType") == "network"
        ),
        "standardVcpus": cpus,
        "dbInstances": len(by_type["aws:rds/instance:Instance"]),
    }
    return needs


def summary_lines(needs: Needs) -> list[str]:
    """The render summary's table: this stack's share and the default quota it counts against."""
    lines = ["| quota | this stack | AWS default (per account) |", "|---|---|---|"]
    for quota in QUOTAS:
        lines.append(f"| {quota.name} ({quota.code}) | {needs.counts[quota.key]} | {quota.default} per {'zone' if quota.per_zone else 'region'} |")
    lines += [f"- cannot count: {problem}" for problem in needs.problems]
    return lines


@dataclass
class AccountRegion:
    account: str
    region: str
    stacks: list[str]
    totals: dict[str, int]
    limits: dict[str, int]

    def excesses(self) -> list[str]:
        found = []
        for quota in QUOTAS:
            need, limit = self.totals[quota.key], self.limits[quota.key]
            if need > limit:
                raised = " (as requested)" if limit != quota.default else ""
                found.append(
                    f"account {self.account}, {self.region} ({', '.join(self.stacks)}): {need} {quota.name} needed, "
                    f"the quota is {limit}{raised} per {'zone' if quota.per_zone else 'region'} ({quota.code}). Fix: put a "
                    "stack in another account (rancher-ha:awsAccount) or region, or request an increase and record it "
                    "in offline/quotas.py REQUESTED and the README's Quotas table"
                )
        return found


def by_account_region(stacks: Mapping[str, tuple[str, str, Needs]]) -> list[AccountRegion]:
    """stack -> (account label, region, needs): totals per account and region (NAT
    gateways summed per zone, then the fullest zone)."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for stack, (account, region, _) in sorted(stacks.items()):
        groups[(account, region)].append(stack)
    result = []
    for (account, region), names in sorted(groups.items()):
        totals = {q.key: sum(stacks[name][2].counts[q.key] for name in names) for q in QUOTAS}
        zones: dict[str, int] = defaultdict(int)
        for name in names:
            for zone, count in stacks[name][2].nat_gateways_by_zone.items():
                zones[zone] += count
        totals["natGatewaysPerZone"] = max(zones.values(), default=0)
        requested = REQUESTED.get((account, region), {})
        limits = {q.key: requested.get(q.key, q.default) for q in QUOTAS}
        result.append(AccountRegion(account, region, names, totals, limits))
    return result


def readme_table(groups: list[AccountRegion]) -> str:
    """The README's Quotas table (tests/test_quotas.py keeps it equal to this)."""
    header = "| account | region | stacks | " + " | ".join(q.name for q in QUOTAS) + " |"
    lines = [header, "|" + "---|" * (3 + len(QUOTAS))]
    for group in groups:
        cells = []
        for quota in QUOTAS:
            need, limit = group.totals[quota.key], group.limits[quota.key]
            cells.append(f"{need} of {limit}" + (" (raise)" if limit != quota.default else ""))
        lines.append(f"| {group.account} | {group.region} | {', '.join(group.stacks)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def stack_files(stacks_dir=STACKS_DIR) -> dict[str, tuple[str, str, Needs]]:
    """Every stack file in stacks/ as committed: stack -> (awsAccount label, aws:region, needs)."""
    stacks = {}
    for path in sorted(stacks_dir.glob("Pulumi.*.yaml")):
        name = path.name.split(".")[1]
        config = stack_config(name, stacks_dir)
        account = config.get("rancher-ha:awsAccount") or DEFAULT_ACCOUNT
        stacks[name] = (account, config["aws:region"], stack_needs(run_stack(name, stacks_dir=stacks_dir).registrations))
    return stacks


if __name__ == "__main__":
    # python -m offline.quotas: the README's Quotas table.
    print(readme_table(by_account_region(stack_files())), end="")
