"""The failure model (benchmarks/failure_model.py): prod-class stacks survive every single
zone and instance loss; dev shows what it does not survive; the model's logic on
synthetic topologies, so a wrong rule fails here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import failure_model as fm  # noqa: E402
from conftest import NGINX_L7, RKE2, run  # noqa: E402
from offline.runner import stack_config  # noqa: E402


def _cells(rows):
    return [(row.scenario.name, column, outcome) for row in rows for column, outcome in row.cells.items()]


def assert_survives(topology, rows):
    assert topology.prod_class
    for scenario, column, outcome in _cells(rows):
        assert outcome.status != fm.DOWN, f"{topology.stack}: {scenario} → {column}: {outcome.cell()}"
        if outcome.status == fm.DEGRADED:
            assert outcome.why, f"{scenario} → {column}: degraded without saying by what"
    # Every single zone, every server, every NAT is a scenario.
    names = {row.scenario.name for row in rows}
    assert {f"zone {z} lost" for z in topology.zones} <= names
    assert all(any(s.name in n for n in names) for s in topology.servers)
    assert all(any(n.name in x for x in names) for n in topology.nats)


# --- the program's own stacks --------------------------------------------------------
@pytest.fixture(scope="module")
def prod():
    return fm.model_stack("prod")


@pytest.fixture(scope="module")
def dev():
    return fm.model_stack("dev")


@pytest.fixture(scope="module")
def prod_nginx_l7():
    """staging's shape (RKE2 + NGINX L7) made prod-class."""
    config = {**stack_config("staging"), **RKE2, **NGINX_L7, "rancher-ha:environment": "prod"}
    topology = fm.topology_from_run(run(config, stack="staging"), "staging", config)
    return topology, fm.evaluate(topology)


def test_prod_survives_every_single_zone_and_instance_loss(prod):
    topology, rows = prod
    assert topology.distribution == "rke2" and topology.nlb and topology.nlb.cross_zone
    assert len({s.zone for s in topology.servers}) == 3
    assert len(topology.nats) == 3 and all(s.egress.zone == s.zone for s in topology.servers)
    assert_survives(topology, rows)
    assert "survives every single zone and instance loss" in fm.summary(topology, rows)


def test_prod_zone_loss_is_bounded_by_nlb_checks_and_dns(prod):
    topology, rows = prod
    zone_row = next(r for r in rows if r.scenario.kind == "zone")
    rancher = zone_row.cells["Rancher 443"]
    assert rancher.status == fm.DEGRADED and rancher.seconds[1] <= 60
    assert "NLB health checks 30 s" in rancher.why  # 3 x 10 s, read from the target groups
    assert zone_row.cells["egress"].status == fm.OK  # per-zone NAT


def test_prod_like_nginx_l7_survives_with_asg_replacement(prod_nginx_l7):
    topology, rows = prod_nginx_l7
    assert topology.nginx and topology.nginx.layer == "l7" and len(topology.nginx.zones) == 3
    assert topology.nginx.grace_s == 300 and topology.nginx.health_check_type == "EC2"
    assert len(topology.nats) == 3
    assert_survives(topology, rows)
    nginx_row = next(r for r in rows if r.scenario.kind == "nginx")
    for column in ("Rancher 443", "API 6443"):
        cell = nginx_row.cells[column]
        assert cell.status == fm.DEGRADED and "NGINX ASG" in cell.why
        assert cell.seconds == (135, 420)


def test_dev_single_nat_cuts_the_other_zones_when_its_zone_is_lost(dev):
    topology, rows = dev
    (nat,) = topology.nats
    row = next(r for r in rows if r.scenario.name == f"zone {nat.zone} lost")
    assert row.cells["egress"].status == fm.DOWN
    assert nat.name in row.cells["egress"].why
    # Losing another zone leaves the NAT, and the egress, alone.
    other = next(r for r in rows if r.scenario.kind == "zone" and r.scenario.zone != nat.zone)
    assert other.cells["egress"].status == fm.OK


def test_dev_single_az_rds_is_down_with_its_zone(dev):
    topology, rows = dev
    assert topology.rds and not topology.rds.multi_az
    for row in rows:
        if row.scenario.kind == "zone" and row.scenario.zone in topology.rds.zones or row.scenario.kind == "rds":
            assert row.cells["datastore/etcd"].status == fm.DOWN
            assert row.cells["Rancher 443"].status == fm.DOWN  # Rancher needs the API, the API the datastore
    table = fm.render_table(topology, rows)
    assert "single-AZ RDS" in table and "does NOT survive" in table
    markdown = fm.render_table(topology, rows, markdown=True)
    assert "| scenario | Rancher 443 | API 6443 | datastore/etcd | egress |" in markdown


def test_existing_vpc_zones_come_from_get_subnet():
    topology, _ = fm.model_stack("proxied")
    assert topology.proxied and not topology.nats
    assert [s.zone for s in topology.servers] == ["eu-central-1b", "eu-central-1c"]  # mock getSubnet
    assert all(s.egress.kind == "proxy" for s in topology.servers)


def test_cli(capsys):
    assert fm.main(["--stack", "prod", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### prod") and "survives every single zone" in out
    with pytest.raises(SystemExit):
        fm.main(["--stack", "no-such-stack"])


# --- the model on synthetic topologies ---------------------------------------------
def server(name, zone, egress=None):
    return fm.Server(name, zone, egress or fm.Egress("nat", "nat-a", "a"))


def nlb(servers, cross_zone=True, zones=("a", "b", "c")):
    names = tuple(s.name for s in servers)
    return fm.Nlb(zones=zones, cross_zone=cross_zone, detect_s={443: 30, 6443: 30}, targets={443: names, 6443: names})


def topo(servers, **kwargs):
    defaults = dict(stack="synthetic", environment="prod", distribution="rke2", nats=(fm.Nat("nat-a", "a"),),
                    rancher_replicas=min(3, len(servers)), anti_affinity="required")
    defaults.update(kwargs)
    if "nlb" not in kwargs and "nginx" not in kwargs:
        defaults["nlb"] = nlb(servers)
    return fm.Topology(servers=tuple(servers), **defaults)


def row(rows, name):
    return next(r for r in rows if r.scenario.name == name).cells


def per_zone(zone):
    return fm.Egress("nat", f"nat-{zone}", zone)


def test_etcd_two_servers_in_one_zone_lose_quorum_with_it():
    servers = [server("s0", "a", per_zone("a")), server("s1", "a", per_zone("a")), server("s2", "b", per_zone("b"))]
    rows = fm.evaluate(topo(servers, nats=(fm.Nat("nat-a", "a"), fm.Nat("nat-b", "b"))))
    cells = row(rows, "zone a lost")
    assert cells["datastore/etcd"].status == fm.DOWN and "below quorum 2" in cells["datastore/etcd"].why
    assert cells["API 6443"].status == fm.DOWN and cells["Rancher 443"].status == fm.DOWN
    assert row(rows, "zone b lost")["datastore/etcd"].status == fm.DEGRADED
    assert fm.single_points_of_failure(rows)


def test_five_etcd_servers_keep_quorum_without_two():
    servers = [server(f"s{i}", "abc"[i % 3], per_zone("abc"[i % 3])) for i in range(5)]
    rows = fm.evaluate(topo(servers, nats=tuple(fm.Nat(f"nat-{z}", z) for z in "abc")))
    assert row(rows, "zone a lost")["datastore/etcd"].status == fm.DEGRADED  # 3/5 left


def test_single_nat_zone_loss_cuts_other_zones_per_zone_nat_does_not():
    single = [server("s0", "a"), server("s1", "b"), server("s2", "c")]
    assert row(fm.evaluate(topo(single)), "zone a lost")["egress"].status == fm.DOWN
    assert row(fm.evaluate(topo(single)), "zone b lost")["egress"].status == fm.OK
    zonal = [server(n, z, per_zone(z)) for n, z in (("s0", "a"), ("s1", "b"), ("s2", "c"))]
    rows = fm.evaluate(topo(zonal, nats=tuple(fm.Nat(f"nat-{z}", z) for z in "abc")))
    assert row(rows, "zone a lost")["egress"].status == fm.OK
    nat_loss = row(rows, "NAT nat-a (a) lost")["egress"]
    assert nat_loss.status == fm.DEGRADED and nat_loss.manual and "s0" in nat_loss.why


def test_proxied_nodes_keep_egress_whatever_happens_to_nat():
    servers = [server(n, z, fm.Egress("proxy")) for n, z in (("s0", "a"), ("s1", "b"))]
    rows = fm.evaluate(topo(servers, proxied=True))
    assert all(r.cells["egress"].status == fm.OK for r in rows)


def test_rds_multi_az_fails_over_single_az_does_not():
    servers = [server("s0", "a", per_zone("a")), server("s1", "b", per_zone("b"))]
    nats = (fm.Nat("nat-a", "a"), fm.Nat("nat-b", "b"))
    multi = topo(servers, nats=nats, distribution="k3s", rds=fm.Rds("db", True, ("a", "b")))
    cells = row(fm.evaluate(multi), "RDS primary db lost")
    assert cells["datastore/etcd"].status == fm.DEGRADED and cells["datastore/etcd"].seconds == (60, 120)
    assert cells["Rancher 443"].status == fm.DEGRADED and cells["Rancher 443"].seconds[1] == 120
    single = topo(servers, nats=nats, distribution="k3s", rds=fm.Rds("db", False, ("a", "b"), pinned_zone="a"))
    rows = fm.evaluate(single)
    assert row(rows, "zone a lost")["datastore/etcd"].status == fm.DOWN
    assert row(rows, "zone b lost")["datastore/etcd"].status == fm.OK  # pinned elsewhere
    assert row(rows, "RDS primary db lost")["API 6443"].status == fm.DOWN


def test_nlb_cross_zone_off_needs_a_target_in_a_surviving_nlb_zone():
    servers = [server("s0", "a", per_zone("a")), server("s1", "b", per_zone("b")), server("s2", "b", per_zone("b"))]
    off = topo(servers, nlb=nlb(servers, cross_zone=False, zones=("a", "c")))
    assert row(fm.evaluate(off), "zone a lost")["datastore/etcd"].status == fm.DEGRADED  # 2/3 etcd
    assert row(fm.evaluate(off), "zone a lost")["API 6443"].status == fm.DOWN  # s1, s2 in b; NLB only in c
    on = topo(servers, nlb=nlb(servers, cross_zone=True, zones=("a", "c")))
    assert row(fm.evaluate(on), "zone a lost")["API 6443"].status == fm.DEGRADED


def test_nginx_asg_in_one_zone_is_down_with_it_and_min_size_zero_never_returns():
    servers = [server("s0", "a", per_zone("a")), server("s1", "b", per_zone("b")), server("s2", "c", per_zone("c"))]
    nats = tuple(fm.Nat(f"nat-{z}", z) for z in "abc")
    one_zone = fm.Nginx(zones=("a",), layer="l7", health_check_type="EC2", grace_s=300, min_size=1, egress_zones=("a",),
                        subnet_egress={"a": fm.Egress("igw")}, connect_timeout_s={"http": 60, "stream": 5})
    rows = fm.evaluate(topo(servers, nats=nats, nginx=one_zone))
    assert row(rows, "zone a lost")["Rancher 443"].status == fm.DOWN
    assert row(rows, "zone b lost")["Rancher 443"].status == fm.DEGRADED
    spread = fm.Nginx(**{**one_zone.__dict__, "zones": ("a", "b"), "egress_zones": ("a", "b"),
                         "subnet_egress": {"a": fm.Egress("igw"), "b": fm.Egress("igw")}})
    assert row(fm.evaluate(topo(servers, nats=nats, nginx=spread)), "zone a lost")["Rancher 443"].status == fm.DEGRADED
    never = fm.Nginx(**{**spread.__dict__, "min_size": 0})
    assert row(fm.evaluate(topo(servers, nats=nats, nginx=never)), "NGINX instance lost")["API 6443"].status == fm.DOWN


def test_rancher_replicas_and_anti_affinity():
    servers = [server("s0", "a", fm.Egress("igw")), server("s1", "b", fm.Egress("igw")), server("s2", "c", fm.Egress("igw"))]
    required = row(fm.evaluate(topo(servers, nats=())), "server s0 (a) lost")["Rancher 443"]
    assert required.status == fm.DEGRADED and required.seconds[1] <= 60
    # preferred: the replicas may all sit on the lost node; back only after eviction.
    preferred = row(fm.evaluate(topo(servers, nats=(), anti_affinity="preferred")), "server s0 (a) lost")["Rancher 443"]
    assert preferred.status == fm.DEGRADED and preferred.seconds[0] >= 300
    single = row(fm.evaluate(topo(servers, nats=(), rancher_replicas=1)), "server s0 (a) lost")["Rancher 443"]
    assert single.seconds[0] >= 300  # the one replica may have been there
    alone = [server("s0", "a", fm.Egress("igw"))]
    assert row(fm.evaluate(topo(alone, nats=())), "server s0 (a) lost")["Rancher 443"].status == fm.DOWN


def test_nginx_timeouts_are_read_per_section():
    conf = "events {\n}\nstream {\n  proxy_connect_timeout 5s;\n}\nhttp {\n  proxy_read_timeout 1800s;\n}\n"
    assert fm._nginx_timeouts(conf) == {"stream": 5, "http": 60}  # http: nginx default


def test_the_graph_path_can_fail_prod_with_one_nat():
    """Read from the real graph, a prod stack with one NAT is caught: its zone cuts the others."""
    config = {**stack_config("prod"), "rancher-ha:natGatewayPerZone": False}
    topology, rows = fm.model_config(config, "prod")
    assert len(topology.nats) == 1
    downs = fm.single_points_of_failure(rows)
    assert (f"zone {topology.nats[0].zone} lost", "egress") in [(s, c) for s, c, _ in downs]
