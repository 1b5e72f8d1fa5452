"""Failure model: what each stack keeps when one zone or one instance is lost.

Runs the real program under the offline mocks (offline/runner.py), reads each
resource's placement from the registrations (zone via subnet; instance; AZ-less
regional services), and evaluates, for every stack file, every single zone loss and
every single instance loss (each server, the NGINX instance, the RDS primary, each
NAT gateway) against four columns:

- Rancher 443   : clients reach Rancher through the load balancer
- API 6443      : the Kubernetes API through the load balancer
- datastore/etcd: RDS (K3s) or etcd quorum (RKE2) keeps working
- egress        : the surviving nodes can still pull images and reach SSM

Each cell is `ok`, `degraded (<interruption>: <by what>)` or `down (<why>)`.
Placement that AWS decides at run time (the zone of the RDS primary, the zone of the
NGINX instance of its Auto Scaling group) is taken at its worst: a zone loss is
evaluated as if the primary / the NGINX instance were in that zone.

    .venv/bin/python benchmarks/failure_model.py [--stack NAME] [--markdown]

Recovery figures and their sources (D = AWS/upstream documentation, I = inferred,
not measured here; see docs/upstream-facts.md):

- NLB health checks: the program's target groups (interval x unhealthy threshold,
  3 x 10 s) decide when a lost target stops receiving new flows; with cross-zone on,
  the surviving zones' NLB nodes send to every healthy target (D: NLB target-group
  health checks; an AZ with no healthy target is removed from DNS).
- Route 53 alias to an NLB: clients may hold a lost zone's NLB address until the
  alias answer expires, about 60 s (D: NLB "Delete" guide, "Route 53 alias (A)
  record: wait at least 60 seconds").
- NGINX ASG of one: health check type EC2 and grace period from the program's
  Auto Scaling group. Replacement = detection (EC2 status checks run every minute,
  D: StatusCheckFailed "in the last minute"; ASG replaces an InService instance it
  finds unhealthy, D: ec2-auto-scaling-health-checks / health-check-grace-period;
  a terminated or stopped instance is noticed sooner) 60-180 s (I)
  + RunInstances to running 15-60 s (I) + boot: apt-get nginx, AWS CLI snap, SSM
  fetch, AssociateAddress of the stack's Elastic IP 60-180 s (I). The grace period
  is not on this path; it delays only the replacement OF a replacement that fails
  to boot (then add grace period + another cycle).
- RDS Multi-AZ DB instance failover: 60-120 s (D: Concepts.MultiAZ.Failover).
  Single-AZ: no standby, down with its zone or its host.
- etcd (RKE2): quorum = floor(n/2)+1 servers; a lost leader is re-elected within
  a few seconds (etcd election timeout 1 s default, I).
- Rancher replicas: min(3, servers) with required pod anti-affinity on the hostname
  (one per node). A lost replica's endpoints leave the Service when its node turns
  NotReady: node-monitor-grace-period 40 s (50 s since Kubernetes 1.32, I).
  Without a surviving replica, pods are rescheduled only after the 300 s
  not-ready/unreachable toleration (DefaultTolerationSeconds, I) plus start-up.
- NAT gateways are zonal (D): a lost NAT zone cuts every subnet whose route table
  points at it; nothing re-routes automatically.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OK, DEGRADED, DOWN = "ok", "degraded", "down"
_RANK = {OK: 0, DEGRADED: 1, DOWN: 2}
COLUMNS = ("Rancher 443", "API 6443", "datastore/etcd", "egress")
ENVIRONMENTS = ("dev", "staging", "prod")

# --- recovery figures (see the module docstring for sources) ---------------------
RDS_MULTI_AZ_FAILOVER_S = (60, 120)
ETCD_ELECTION_S = (1, 5)
NODE_NOT_READY_S = 50
POD_EVICTION_TOLERATION_S = 300
RANCHER_START_S = (60, 120)
ROUTE53_ALIAS_S = 60
ASG_DETECTION_S = (60, 180)
EC2_LAUNCH_S = (15, 60)
NGINX_BOOT_S = (60, 180)
NGINX_HTTP_CONNECT_DEFAULT_S = 60  # nginx proxy_connect_timeout default (http and stream)


# --- placement -------------------------------------------------------------------
@dataclass(frozen=True)
class Egress:
    kind: str  # nat | igw | proxy | unknown
    via: str = ""  # NAT gateway name (kind nat)
    zone: str = ""  # NAT gateway zone (kind nat)


@dataclass(frozen=True)
class Server:
    name: str
    zone: str
    egress: Egress


@dataclass(frozen=True)
class Nat:
    name: str
    zone: str


@dataclass(frozen=True)
class Nlb:
    zones: tuple[str, ...]
    cross_zone: bool
    # port -> seconds until a lost target is marked unhealthy (interval x threshold)
    detect_s: dict = field(default_factory=dict)
    # port -> names of the servers registered as targets
    targets: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Nginx:
    zones: tuple[str, ...]  # zones of the ASG subnets
    layer: str  # l4 | l7
    health_check_type: str
    grace_s: int
    min_size: int
    egress_zones: tuple[str, ...]  # ASG zones whose subnet has a way out (IGW/NAT up)
    subnet_egress: dict = field(default_factory=dict)  # zone -> Egress of the ASG subnet
    # seconds NGINX waits on a dead backend before the next one, by section
    connect_timeout_s: dict = field(default_factory=dict)  # {"stream": s, "http": s}


@dataclass(frozen=True)
class Rds:
    name: str
    multi_az: bool
    zones: tuple[str, ...]  # the subnet group's zones: where AWS may place it
    pinned_zone: Optional[str] = None


@dataclass(frozen=True)
class Topology:
    stack: str
    environment: Optional[str]
    distribution: str  # k3s | rke2
    servers: tuple[Server, ...]
    nats: tuple[Nat, ...] = ()
    nlb: Optional[Nlb] = None
    nginx: Optional[Nginx] = None
    rds: Optional[Rds] = None
    rancher_replicas: int = 1
    anti_affinity: str = "preferred"  # required | preferred
    proxied: bool = False

    @property
    def zones(self) -> list[str]:
        found = {s.zone for s in self.servers} | {n.zone for n in self.nats}
        if self.nlb:
            found |= set(self.nlb.zones)
        if self.nginx:
            found |= set(self.nginx.zones)
        if self.rds:
            found |= set(self.rds.zones)
        return sorted(z for z in found if z)

    @property
    def prod_class(self) -> bool:
        return self.environment == "prod"


# --- reading the graph -------------------------------------------------------------
def _resource_id(reg) -> str:
    from offline.mocks import digest

    return reg.outputs.get("id") or f"{reg.name}-{digest(reg.type, reg.name, length=8)}"


def _existing_subnet_zone(region: str, subnet_id: str) -> str:
    """Zone of a subnet the program does not create: the mock's getSubnet answer."""
    from offline.mocks import StackMocks

    answer, _ = StackMocks(region=region, preview=False).call(
        SimpleNamespace(token="aws:ec2/getSubnet:getSubnet", args={"id": subnet_id}, provider="")
    )
    return answer["availabilityZone"]


def _nginx_timeouts(conf: str) -> dict:
    """proxy_connect_timeout of the stream and http sections (nginx default where unset)."""
    result = {}
    for section in ("stream", "http"):
        match = re.search(rf"^{section}\s*\{{", conf, re.M)
        if not match:
            continue
        # Up to the next top-level section.
        rest = conf[match.end():]
        end = re.search(r"^(stream|http|events)\s*\{", rest, re.M)
        body = rest[: end.start()] if end else rest
        timeout = re.search(r"proxy_connect_timeout\s+(\d+)s?;", body)
        result[section] = int(timeout.group(1)) if timeout else NGINX_HTTP_CONNECT_DEFAULT_S
    return result


def topology_from_run(run, stack: str, config: dict) -> Topology:
    """Placement of everything that can fail, from a MockRun of the program."""
    regs = run.registrations
    region = config.get("aws:region", "eu-west-1")
    by_type: dict[str, list] = {}
    for reg in regs:
        by_type.setdefault(reg.type, []).append(reg)

    def of(token: str) -> list:
        return sorted(by_type.get(token, []), key=lambda r: r.name)

    subnet_zone = {_resource_id(s): s.inputs["availabilityZone"] for s in of("aws:ec2/subnet:Subnet")}

    def zone_of(subnet_id: str) -> str:
        if subnet_id not in subnet_zone:
            subnet_zone[subnet_id] = _existing_subnet_zone(region, subnet_id)
        return subnet_zone[subnet_id]

    nats_by_id = {}
    for reg in of("aws:ec2/natGateway:NatGateway"):
        nats_by_id[_resource_id(reg)] = Nat(reg.name, zone_of(reg.inputs["subnetId"]))
    igws = {_resource_id(reg) for reg in of("aws:ec2/internetGateway:InternetGateway")}
    table_of_subnet = {
        reg.inputs["subnetId"]: reg.inputs["routeTableId"] for reg in of("aws:ec2/routeTableAssociation:RouteTableAssociation")
    }
    default_route = {}
    for reg in of("aws:ec2/route:Route"):
        if reg.inputs.get("destinationCidrBlock") == "0.0.0.0/0":
            default_route[reg.inputs["routeTableId"]] = reg.inputs.get("natGatewayId") or reg.inputs.get("gatewayId")

    rancher_values = {}
    for reg in of("kubernetes:helm.sh/v3:Release"):
        if reg.inputs.get("name") == "rancher":
            rancher_values = reg.inputs.get("values") or {}
    proxied = bool(rancher_values.get("proxy"))

    def egress_of(subnet_id: str, node: bool = True) -> Egress:
        if proxied and node:
            return Egress("proxy")
        target = default_route.get(table_of_subnet.get(subnet_id, ""), "")
        if target in nats_by_id:
            nat = nats_by_id[target]
            return Egress("nat", nat.name, nat.zone)
        if target in igws:
            return Egress("igw")
        return Egress("unknown")

    servers, server_by_instance_id = [], {}
    for reg in of("aws:ec2/instance:Instance"):
        if "rancher-ha:cluster:ClusterNodes" not in reg.parent:
            continue
        subnet = reg.inputs["subnetId"]
        server = Server(reg.name, zone_of(subnet), egress_of(subnet))
        servers.append(server)
        server_by_instance_id[_resource_id(reg)] = server.name

    nlb = None
    for reg in of("aws:lb/loadBalancer:LoadBalancer"):
        if reg.inputs.get("loadBalancerType") != "network":
            continue
        groups = {}
        for group in of("aws:lb/targetGroup:TargetGroup"):
            check = group.inputs.get("healthCheck") or {}
            groups[group.outputs.get("arn")] = (
                int(group.inputs["port"]),
                int(check.get("interval", 30)) * int(check.get("unhealthyThreshold", 2)),
            )
        detect, targets = {}, {}
        for arn, (port, seconds) in groups.items():
            detect[port] = seconds
            targets[port] = tuple(sorted(
                server_by_instance_id.get(a.inputs["targetId"], a.inputs["targetId"])
                for a in of("aws:lb/targetGroupAttachment:TargetGroupAttachment")
                if a.inputs.get("targetGroupArn") == arn
            ))
        nlb = Nlb(
            zones=tuple(sorted({zone_of(s) for s in reg.inputs.get("subnets") or []})),
            cross_zone=bool(reg.inputs.get("enableCrossZoneLoadBalancing")),
            detect_s=detect,
            targets=targets,
        )

    nginx = None
    for reg in of("aws:autoscaling/group:Group"):
        if "NginxLoadBalancer" not in reg.parent:
            continue
        subnets = list(reg.inputs.get("vpcZoneIdentifiers") or [])
        conf = ""
        for param in of("aws:ssm/parameter:Parameter"):
            if str(param.inputs.get("name", "")).endswith("/nginx/nginx.conf"):
                conf = str(param.inputs.get("value", ""))
        layer = "l7" if re.search(r"listen\s+\S*443\s+ssl", conf) else "l4"
        subnet_egress = {zone_of(s): egress_of(s, node=False) for s in subnets}
        nginx = Nginx(
            zones=tuple(sorted(subnet_egress)),
            layer=layer,
            health_check_type=reg.inputs.get("healthCheckType", "EC2"),
            grace_s=int(reg.inputs.get("healthCheckGracePeriod", 0)),
            min_size=int(reg.inputs.get("minSize", 0)),
            egress_zones=tuple(sorted(z for z, e in subnet_egress.items() if e.kind in ("igw", "nat"))),
            subnet_egress=subnet_egress,
            connect_timeout_s=_nginx_timeouts(conf),
        )

    rds = None
    for reg in of("aws:rds/instance:Instance"):
        group_name = reg.inputs.get("dbSubnetGroupName")
        zones: set[str] = set()
        for group in of("aws:rds/subnetGroup:SubnetGroup"):
            if group.outputs.get("name") == group_name or group.name == group_name:
                zones = {zone_of(s) for s in group.inputs.get("subnetIds") or []}
        rds = Rds(reg.name, bool(reg.inputs.get("multiAz")), tuple(sorted(zones)), reg.inputs.get("availabilityZone"))

    distribution = run.outputs["distribution"].value if "distribution" in run.outputs else ("k3s" if rds else "rke2")
    environment = config.get("rancher-ha:environment") or (stack if stack in ENVIRONMENTS else None)
    return Topology(
        stack=stack,
        environment=environment,
        distribution=distribution,
        servers=tuple(servers),
        nats=tuple(sorted(nats_by_id.values(), key=lambda n: n.name)),
        nlb=nlb,
        nginx=nginx,
        rds=rds,
        rancher_replicas=int(rancher_values.get("replicas") or 1),
        anti_affinity=rancher_values.get("antiAffinity") or "preferred",
        proxied=proxied,
    )


# --- outcomes ----------------------------------------------------------------------
@dataclass
class Outcome:
    status: str
    why: str = ""  # by what it recovers / why it is down
    seconds: Optional[tuple[int, int]] = None  # interruption, if any
    manual: bool = False  # degraded with no automatic recovery of the lost redundancy
    tag: str = ""  # short form, where another column depends on this one

    def cell(self) -> str:
        if self.status == OK:
            return OK if not self.why else f"ok ({self.why})"
        if self.status == DOWN:
            return f"down ({self.why})"
        time = ""
        if self.seconds:
            lo, hi = self.seconds
            time = f"{lo}–{hi} s: " if lo >= 30 and lo != hi else f"≤{hi} s: "
        return f"degraded ({time}{self.why})"


def _ok(why: str = "") -> Outcome:
    return Outcome(OK, why)


def _combine(*outcomes: Outcome) -> Outcome:
    """Worst status wins; degraded reasons and times add up as the longest path."""
    worst = max(outcomes, key=lambda o: _RANK[o.status])
    if worst.status == OK:
        return worst
    if worst.status == DOWN:
        downs = [o.tag or o.why for o in outcomes if o.status == DOWN]
        return Outcome(DOWN, "; ".join(dict.fromkeys(downs)))
    degraded = [o for o in outcomes if o.status == DEGRADED]
    spans = [o.seconds for o in degraded if o.seconds]
    seconds = (max(s[0] for s in spans), max(s[1] for s in spans)) if spans else None
    why = "; ".join(dict.fromkeys(o.tag or o.why for o in degraded))
    return Outcome(DEGRADED, why, seconds, any(o.manual for o in degraded))


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # zone | server | nginx | rds | nat
    zone: Optional[str] = None
    server: Optional[str] = None
    nat: Optional[str] = None


@dataclass
class Row:
    scenario: Scenario
    cells: dict  # column -> Outcome


def scenarios(topology: Topology) -> list[Scenario]:
    result = [Scenario(f"zone {z} lost", "zone", zone=z) for z in topology.zones]
    result += [Scenario(f"server {s.name} ({s.zone}) lost", "server", server=s.name) for s in topology.servers]
    if topology.nginx:
        result.append(Scenario("NGINX instance lost", "nginx"))
    if topology.rds:
        result.append(Scenario(f"RDS primary {topology.rds.name} lost", "rds"))
    result += [Scenario(f"NAT {n.name} ({n.zone}) lost", "nat", nat=n.name) for n in topology.nats]
    return result


def _lost_servers(t: Topology, s: Scenario) -> set[str]:
    if s.kind == "zone":
        return {x.name for x in t.servers if x.zone == s.zone}
    if s.kind == "server":
        return {s.server}
    return set()


def _lost_nats(t: Topology, s: Scenario) -> set[str]:
    if s.kind == "zone":
        return {n.name for n in t.nats if n.zone == s.zone}
    if s.kind == "nat":
        return {s.nat}
    return set()


def datastore_outcome(t: Topology, s: Scenario) -> Outcome:
    if t.rds is not None:
        rds = t.rds
        if s.kind == "rds":
            primary_lost, where = True, ""
        elif s.kind == "zone":
            possible = [rds.pinned_zone] if rds.pinned_zone else list(rds.zones)
            primary_lost = s.zone in possible
            where = "" if rds.pinned_zone or len(possible) == 1 else f"if the primary is in {s.zone}: "
        else:
            primary_lost, where = False, ""
        if not primary_lost:
            return _ok()
        if rds.multi_az and (s.kind != "zone" or len(rds.zones) > 1):
            return Outcome(DEGRADED, f"{where}RDS Multi-AZ failover", RDS_MULTI_AZ_FAILOVER_S, tag="RDS failover")
        return Outcome(DOWN, f"{where}single-AZ RDS {rds.name}, no standby", tag="datastore down")
    # embedded etcd
    total = len(t.servers)
    lost = len(_lost_servers(t, s))
    if lost == 0:
        return _ok()
    left, quorum = total - lost, total // 2 + 1
    if left >= quorum:
        return Outcome(
            DEGRADED,
            f"leader re-election; etcd {left}/{total} ≥ quorum {quorum}, no spare until the server is replaced",
            ETCD_ELECTION_S,
            manual=True,
            tag="etcd re-election",
        )
    return Outcome(DOWN, f"etcd {left}/{total} below quorum {quorum}", tag="etcd quorum lost")


def nginx_replacement(t: Topology, s: Scenario) -> Outcome:
    """The NGINX instance is (or may be) gone: can its ASG bring it back, and how fast."""
    n = t.nginx
    assert n is not None
    if n.min_size < 1:
        return Outcome(DOWN, "NGINX ASG min size 0: no replacement")
    usable = [z for z in n.egress_zones if not (s.kind == "zone" and z == s.zone)]
    usable = [z for z in usable if not (n.subnet_egress[z].kind == "nat" and n.subnet_egress[z].via in _lost_nats(t, s))]
    if not usable:
        return Outcome(DOWN, "NGINX ASG has no other zone with a way out to boot a replacement")
    lo = ASG_DETECTION_S[0] + EC2_LAUNCH_S[0] + NGINX_BOOT_S[0]
    hi = ASG_DETECTION_S[1] + EC2_LAUNCH_S[1] + NGINX_BOOT_S[1]
    where = f"if NGINX is in {s.zone}: " if s.kind == "zone" and len(n.zones) > 1 else ""
    return Outcome(DEGRADED, f"{where}NGINX ASG replaces it in {'/'.join(usable)}, takes the EIP", (lo, hi))


def lb_outcome(t: Topology, s: Scenario, port: int, lost: set[str]) -> Outcome:
    """The load balancer path to the surviving servers on `port`."""
    survivors = [x for x in t.servers if x.name not in lost]
    if not survivors:
        return Outcome(DOWN, "no server left")
    if t.nlb is not None:
        nlb = t.nlb
        targets = set(nlb.targets.get(port, ()))
        live_targets = [x for x in survivors if x.name in targets]
        if not live_targets:
            return Outcome(DOWN, f"no surviving NLB target on {port}")
        nlb_zones = [z for z in nlb.zones if not (s.kind == "zone" and z == s.zone)]
        if not nlb_zones:
            return Outcome(DOWN, "no NLB zone left")
        if not nlb.cross_zone and not any(x.zone in nlb_zones for x in live_targets):
            return Outcome(DOWN, "cross-zone off: no NLB zone with a surviving target")
        parts, hi = [], 0
        if lost & targets:
            detect = nlb.detect_s.get(port, 60)
            parts.append(f"NLB health checks {detect} s")
            hi = max(hi, detect)
            if not nlb.cross_zone:
                parts.append("cross-zone off: lost zone's share dropped")
        if s.kind == "zone" and s.zone in nlb.zones:
            parts.append(f"alias DNS {ROUTE53_ALIAS_S} s")
            hi = max(hi, ROUTE53_ALIAS_S)
        if not parts:
            return _ok()
        return Outcome(DEGRADED, ", ".join(parts), (0, hi))
    if t.nginx is not None:
        n = t.nginx
        nginx_lost = s.kind == "nginx" or (s.kind == "zone" and s.zone in n.zones)
        outcomes = []
        if nginx_lost:
            outcomes.append(nginx_replacement(t, s))
        if lost:
            section = "http" if (port == 443 and n.layer == "l7") else "stream"
            wait = n.connect_timeout_s.get(section, NGINX_HTTP_CONNECT_DEFAULT_S)
            outcomes.append(
                Outcome(DEGRADED, f"NGINX connect timeout {wait} s per request to the lost node", (0, wait))
            )
        return _combine(_ok(), *outcomes)
    return Outcome(DOWN, "no load balancer found in the graph")


def rancher_pods(t: Topology, lost: set[str]) -> Outcome:
    total = len(t.servers)
    survivors = total - len(lost)
    if survivors <= 0:
        return Outcome(DOWN, "no node left")
    replicas = min(t.rancher_replicas, total)
    if not lost:
        return _ok()
    if t.anti_affinity == "required":
        left = replicas - min(len(lost), replicas)
    else:
        left = 0  # preferred: replicas may share the lost node(s), worst case all
    if left >= 1:
        return Outcome(DEGRADED, f"{left}/{replicas} replicas until node NotReady", (0, NODE_NOT_READY_S), manual=True)
    lo = NODE_NOT_READY_S + POD_EVICTION_TOLERATION_S + RANCHER_START_S[0]
    hi = NODE_NOT_READY_S + POD_EVICTION_TOLERATION_S + RANCHER_START_S[1]
    return Outcome(DEGRADED, f"0/{replicas} replicas left: rescheduled after eviction", (lo, hi), manual=True)


def egress_outcome(t: Topology, s: Scenario, lost: set[str]) -> Outcome:
    survivors = [x for x in t.servers if x.name not in lost]
    if not survivors:
        return Outcome(DOWN, "no node left")
    cut_nats = _lost_nats(t, s)
    cut, unknown = [], []
    for x in survivors:
        if x.egress.kind == "nat" and (x.egress.via in cut_nats or (s.kind == "zone" and x.egress.zone == s.zone)):
            cut.append(x)
        elif x.egress.kind == "unknown":
            unknown.append(x)
    if unknown and not cut:
        return Outcome(OK, "unverified: the existing VPC's routes are outside the program")
    if not cut:
        kinds = sorted({x.egress.kind for x in survivors})
        return _ok() if kinds != ["proxy"] else _ok("proxy, assumed reachable")
    via = ", ".join(sorted({x.egress.via for x in cut}))
    if len(cut) == len(survivors):
        who = "the surviving node routes" if len(cut) == 1 else f"all {len(cut)} surviving nodes route"
        return Outcome(DOWN, f"{who} via lost NAT {via}")
    return Outcome(
        DEGRADED,
        f"{', '.join(x.name for x in cut)} ({len(cut)}/{len(survivors)}) without egress: lost NAT {via}, no automatic re-route",
        manual=True,
    )


def evaluate(t: Topology) -> list[Row]:
    rows = []
    for s in scenarios(t):
        lost = _lost_servers(t, s)
        data = datastore_outcome(t, s)
        api = _combine(lb_outcome(t, s, 6443, lost), data)
        rancher = _combine(lb_outcome(t, s, 443, lost), rancher_pods(t, lost), data)
        rows.append(Row(s, dict(zip(COLUMNS, (rancher, api, data, egress_outcome(t, s, lost))))))
    return rows


def single_points_of_failure(rows: Sequence[Row]) -> list[tuple[str, str, str]]:
    """(scenario, column, why) for every `down` cell."""
    return [(r.scenario.name, c, o.why) for r in rows for c, o in r.cells.items() if o.status == DOWN]


def summary(t: Topology, rows: Sequence[Row]) -> str:
    downs = single_points_of_failure(rows)
    label = f"{t.stack} ({t.environment or 'no environment'}, {t.distribution}, " + (
        f"NLB{' cross-zone' if t.nlb and t.nlb.cross_zone else ''}" if t.nlb else f"NGINX {t.nginx.layer if t.nginx else '?'} ASG"
    ) + ")"
    worst = max((o.seconds[1] for r in rows for o in r.cells.values() if o.seconds and o.status != DOWN), default=0)
    manual = []
    if any(r.cells[c].manual for r in rows for c in COLUMNS[:3]):
        manual.append("a lost server is a plain EC2 instance: nothing replaces it until `pulumi up` (etcd members / Rancher replicas stay reduced)")
    if any(r.cells["egress"].manual for r in rows):
        manual.append("a lost NAT gateway is not re-routed: its zone's nodes stay without egress")
    tail = f" Not automatic: {'; '.join(manual)}." if manual else ""
    if not downs:
        return f"{label}: survives every single zone and instance loss (longest interruption ≤{worst} s).{tail}"
    grouped: dict[str, dict[str, list[str]]] = {}
    for scenario, column, why in downs:
        grouped.setdefault(scenario, {}).setdefault(why, []).append(column)
    parts = [
        f"{scenario}: " + ", ".join(f"{'/'.join(columns)} down ({why})" for why, columns in reasons.items())
        for scenario, reasons in grouped.items()
    ]
    return f"{label}: does NOT survive — " + "; ".join(parts) + f".{tail}"


# --- rendering ---------------------------------------------------------------------
def _server_label(server: Server) -> str:
    via = f" {server.egress.via}" if server.egress.via else ""
    return f"{server.name}@{server.zone} ({server.egress.kind}{via})"


def render_table(t: Topology, rows: Sequence[Row], markdown: bool = False) -> str:
    header = ["scenario", *COLUMNS]
    body = [[r.scenario.name, *(r.cells[c].cell() for c in COLUMNS)] for r in rows]
    placement = (
        "servers: " + ", ".join(_server_label(s) for s in t.servers)
        + (f"; NAT: {', '.join(f'{n.name}@{n.zone}' for n in t.nats)}" if t.nats else "")
        + (f"; RDS {'Multi-AZ' if t.rds.multi_az else 'single-AZ'} in {'/'.join(t.rds.zones)}" if t.rds else "; etcd on the servers")
        + (f"; NLB in {'/'.join(t.nlb.zones)}, cross-zone {'on' if t.nlb.cross_zone else 'off'}" if t.nlb else "")
        + (
            f"; NGINX ASG of {t.nginx.min_size} in {'/'.join(t.nginx.zones)}, {t.nginx.health_check_type} checks, grace {t.nginx.grace_s} s"
            if t.nginx
            else ""
        )
        + f"; Rancher replicas {t.rancher_replicas} ({t.anti_affinity} anti-affinity)"
    )
    lines = []
    if markdown:
        lines.append(f"### {t.stack}\n")
        lines.append(placement + "\n")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(row) + " |" for row in body]
        lines.append(f"\n**{summary(t, rows)}**\n")
    else:
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        fmt = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()  # noqa: E731
        lines.append(f"== {t.stack}")
        lines.append(placement)
        lines.append(fmt(header))
        lines.append(fmt(["-" * w for w in widths]))
        lines += [fmt(row) for row in body]
        lines.append(summary(t, rows))
        lines.append("")
    return "\n".join(lines)


def stack_names() -> list[str]:
    from offline.runner import STACKS_DIR

    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def model_stack(stack: str) -> tuple[Topology, list[Row]]:
    from offline.runner import run_stack, stack_config

    config = stack_config(stack)
    topology = topology_from_run(run_stack(stack), stack, config)
    return topology, evaluate(topology)


def model_config(config: dict, stack: str) -> tuple[Topology, list[Row]]:
    """The same for a config map, through offline.runner.run_program."""
    from offline.runner import run_program

    topology = topology_from_run(run_program(config, stack=stack), stack, dict(config))
    return topology, evaluate(topology)


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", action="append", help="stack file name (stacks/Pulumi.<NAME>.yaml); repeatable; default all")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables (for README.md)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    names = args.stack or stack_names()
    unknown = [n for n in names if n not in stack_names()]
    if unknown:
        parser.error(f"no stack file for {', '.join(unknown)}; have {', '.join(stack_names())}")
    failed_prod = False
    for name in names:
        topology, rows = model_stack(name)
        print(render_table(topology, rows, markdown=args.markdown))
        failed_prod |= topology.prod_class and bool(single_points_of_failure(rows))
    return 1 if failed_prod else 0


if __name__ == "__main__":
    sys.exit(main())
