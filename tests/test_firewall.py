"""Security groups: the whole port matrix, asserted as a set."""

from conftest import RKE2, cached_run

WORLD = "0.0.0.0/0"
ADMIN = "203.0.113.0/24"


def rule_set(run):
    groups = {g.outputs["id"]: g.name.split("-", 1)[1] for g in run.of_type("aws:ec2/securityGroup:SecurityGroup")}
    rules = set()
    for rule in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        inputs = rule.inputs
        source = groups.get(inputs.get("referencedSecurityGroupId")) or inputs.get("cidrIpv4")
        rules.add((groups[inputs["securityGroupId"]], inputs["ipProtocol"], inputs["fromPort"], inputs["toPort"], source))
    return rules


NODE_TO_NODE_K3S = {
    ("nodes", "tcp", 6443, 6443, "nodes"),
    ("nodes", "tcp", 10250, 10250, "nodes"),
    ("nodes", "udp", 8472, 8472, "nodes"),
}
NODE_TO_NODE_RKE2 = NODE_TO_NODE_K3S | {
    ("nodes", "tcp", 9345, 9345, "nodes"),
    ("nodes", "tcp", 2379, 2381, "nodes"),
    ("nodes", "tcp", 9099, 9099, "nodes"),
}
FROM_LB = {
    ("nodes", "tcp", 80, 80, "lb"),
    ("nodes", "tcp", 443, 443, "lb"),
    ("nodes", "tcp", 6443, 6443, "lb"),
}
LB_INBOUND = {
    ("lb", "tcp", 80, 80, WORLD),
    ("lb", "tcp", 443, 443, WORLD),
    ("lb", "tcp", 6443, 6443, ADMIN),
}


def test_k3s_rules_are_exactly_the_expected_set(dev_run):
    # Admins reach the API through the load balancer only, never a node directly.
    expected = NODE_TO_NODE_K3S | FROM_LB | LB_INBOUND | {
        ("db", "tcp", 3306, 3306, "nodes"),
    }
    assert rule_set(dev_run) == expected


def test_rke2_rules_are_exactly_the_expected_set():
    expected = NODE_TO_NODE_RKE2 | FROM_LB | LB_INBOUND | {
        ("nodes", "tcp", 9345, 9345, "lb"),  # the API target group's health check (/ping)
    }
    assert rule_set(cached_run(RKE2)) == expected


def test_only_lb_http_and_https_face_the_internet(dev_run):
    world = {rule for rule in rule_set(dev_run) if rule[4] == WORLD}
    assert world == {("lb", "tcp", 80, 80, WORLD), ("lb", "tcp", 443, 443, WORLD)}


def test_no_ssh_by_default_and_only_from_admins_when_asked(dev_run):
    assert not any(rule[2] <= 22 <= rule[3] for rule in rule_set(dev_run))
    with_key = rule_set(cached_run({"rancher-ha:sshKeyName": "break-glass"}))
    assert {rule for rule in with_key if rule[2] == 22} == {("nodes", "tcp", 22, 22, ADMIN)}
    assert all(i.inputs.get("keyName") is None for i in dev_run.of_type("aws:ec2/instance:Instance"))


def test_datastore_reachable_from_nodes_only(dev_run):
    assert {rule for rule in rule_set(dev_run) if rule[0] == "db"} == {("db", "tcp", 3306, 3306, "nodes")}
    assert not any(e.name.endswith("db-out") for e in dev_run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"))


def test_rules_are_named_by_what_they_allow(dev_run):
    names = {r.name for r in dev_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}
    assert {"firewall-lb-in-tcp-6443-from-203-0-113-0-24", "firewall-lb-in-tcp-443-from-0-0-0-0-0",
            "firewall-nodes-in-udp-8472-from-nodes", "firewall-db-in-tcp-3306-from-nodes"} <= names


def test_adding_an_admin_network_renames_no_other_rule(dev_run):
    before = {r.name: r.inputs for r in dev_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}
    after_run = cached_run({"rancher-ha:adminCidrs": ["198.51.100.0/24", ADMIN]})
    after = {r.name: r.inputs for r in after_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}
    assert set(before) < set(after)
    assert {name: after[name] for name in before} == before  # every old rule unchanged, by name and content
    assert sorted(set(after) - set(before)) == ["firewall-lb-in-tcp-6443-from-198-51-100-0-24"]


def test_rules_answer_to_their_first_release_index_names(dev_run):
    from components.firewall import first_release_names, firewall_rules

    rule = next(r for r in dev_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                if r.name == "firewall-lb-in-tcp-443-from-0-0-0-0-0")
    # First release, k3s, one admin network, no SSH: lb 443 from the world was rule 9.
    assert rule.aliases == ["urn:pulumi:dev::rancher-ha::rancher-ha:firewall:Firewall$aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule::firewall-lb-in-9"]
    names = first_release_names("firewall", distribution="rke2", admin_cidrs=[ADMIN], ssh=False, datastore=False)
    assert len(names) == 16 and names[("lb", "tcp", 9345, 9345, "nodes")] == "firewall-lb-in-15"
    assert names[("lb", "tcp", 6443, 6443, "nodes")] == "firewall-lb-in-14"


def test_an_internal_load_balancer_serves_rancher_to_the_admins_and_the_vpc_not_the_world():
    from conftest import PROXY

    run = cached_run({**PROXY, "rancher-ha:loadBalancerScheme": "internal", "rancher-ha:adminCidrs": ["10.10.0.0/16"]})
    web = {(r[2], r[4]) for r in rule_set(run) if r[0] == "lb" and r[2] in (80, 443)}
    assert web == {(port, source) for port in (80, 443) for source in ("10.10.0.0/16", "10.20.0.0/16")}
