"""Benchmark: time to a ready Rancher on a first `pulumi up`, from the program's real graph.

    .venv/bin/python benchmarks/time_to_ready.py [--durations sourced|reference] [--stack NAME] [--markdown]

The program runs under the offline mocks (offline/runner.py), so the resource graph is
exactly the one `pulumi up` would build. On it we model the Pulumi engine:

- a resource starts when every resource it depends on (``dependencies`` and
  ``property_dependencies``) has completed; a dependency on a component means all of
  the component's (custom) descendants; parent/child is not a wait; components take no
  time; parallelism is unbounded (the CLI's default ``--parallel``);
- a resource takes the duration of its type in a table (benchmarks/durations.py).

What happens inside machines is not a resource, so it is modelled explicitly from the
boot scripts (rendering/templates/node-bootstrap.sh.j2, nginx-bootstrap.sh.j2):

- server i: running (the instance resource) -> boot (cloud-init, snap seed) -> install,
  which starts only when egress exists (the NAT route of the server's subnet: servers do
  not depend on the NAT gateway in Pulumi, their boot polls for it, rendering/polls.py);
- K3s: then the ``datastore-endpoint`` SSM parameter (created after RDS), polled every
  2 s (rendering/polls.py); then "distribution start to API ready";
- RKE2 first server: start to API ready; its supervisor answers /ping early;
- RKE2 joiners: wait for the registration record and the first server's supervisor,
  join etcd as a learner one at a time (the leader promotes every 15 s,
  manageTickerTime), then start to API ready;
- the readiness gate (``pulumi-python:dynamic/rancher-ha:ApiGate``) completes when the
  API is ready through the load balancer (NLB: active, target registered, and 3 checks x
  10 s after the health endpoint answers; NGINX: the ASG's instance launched, nginx
  installed, config from SSM) AND every server is Ready, plus its own poll; an NLB
  target is registered (minutes, durations.py) before its health checks start;
- Helm releases and other in-cluster resources follow in their dependency order.

Printed per stack: the critical chain with start/finish times, the total, the physical
bound (K3s: datastore creation + distribution start + Helm; RKE2: the longer of load
balancer and server boot, + start + Helm; an NLB's load balancer time includes AWS's
registration of its targets, which any gate through the NLB waits for) and their ratio.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

from durations import TABLES, Duration, seconds  # noqa: E402

GATE_TYPE = "pulumi-python:dynamic/rancher-ha:ApiGate"
INSTANCE_TYPE = "aws:ec2/instance:Instance"
SERVERS_COMPONENT = "rancher-ha:cluster:ClusterNodes"
HELM_TYPE = "kubernetes:helm.sh/v3:Release"
RDS_TYPE = "aws:rds/instance:Instance"
CONFIG_FILE_TYPE = "kubernetes:yaml/v2:ConfigFile"
NLB_TYPE = "aws:lb/loadBalancer:LoadBalancer"
ASG_TYPE = "aws:autoscaling/group:Group"

# The target, for every stack and both duration tables: total <= 1.05 x the physical bound.
TARGET_RATIO = 1.05
AWS_REGISTRATION = "phase:nlb-registration"
# The spread of AWS's registration time reported in its source (durations.py,
# phase:nlb-registration): 70-120 s in reports, 3-5 minutes quoted by AWS support.
NLB_REGISTRATION_RANGE_S = (70, 300)


# ---------------------------------------------------------------------------------
# The scheduling model: a DAG of tasks, each starting when its dependencies finish.
# ---------------------------------------------------------------------------------
@dataclass
class Task:
    key: str
    label: str
    duration: float = 0.0
    deps: list[str] = field(default_factory=list)
    # Alternatives: the task may start once ANY one group has finished entirely
    # (e.g. "the API answers through the LB": one healthy, ready server is enough).
    any_of: list[list[str]] = field(default_factory=list)
    # finish = finish_fn(start, finish_times) instead of start + duration.
    finish_fn: Optional[Callable[[float, Mapping[str, float]], float]] = None
    type: str = ""  # the Pulumi type, or "" for a phase inside a machine


@dataclass
class Timing:
    start: float
    finish: float
    waited_on: Optional[str]  # the dependency that finished last (the binding one)


class CycleError(ValueError):
    pass


def _order(tasks: Mapping[str, Task]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(key: str, trail: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise CycleError(" -> ".join(trail + (key,)))
        state[key] = 1
        task = tasks[key]
        for dep in list(task.deps) + [d for group in task.any_of for d in group]:
            if dep in tasks:
                visit(dep, trail + (key,))
        state[key] = 2
        order.append(key)

    for key in sorted(tasks):
        visit(key, ())
    return order


def schedule(tasks: Mapping[str, Task]) -> dict[str, Timing]:
    """Earliest start/finish of every task (unbounded parallelism)."""
    timings: dict[str, Timing] = {}
    finish: dict[str, float] = {}
    for key in _order(tasks):
        task = tasks[key]
        start, waited_on = 0.0, None
        for dep in task.deps:
            if dep in finish and finish[dep] > start:
                start, waited_on = finish[dep], dep
        if task.any_of:
            best_time, best_dep = math.inf, None
            for group in task.any_of:
                group_time, group_dep = 0.0, None
                for dep in group:
                    if dep in finish and finish[dep] >= group_time:
                        group_time, group_dep = finish[dep], dep
                if group_time < best_time:
                    best_time, best_dep = group_time, group_dep
            if best_time > start:
                start, waited_on = best_time, best_dep
        end = task.finish_fn(start, finish) if task.finish_fn else start + task.duration
        timings[key] = Timing(start, end, waited_on)
        finish[key] = end
    return timings


def critical_chain(tasks: Mapping[str, Task], timings: Mapping[str, Timing], end: Optional[str] = None) -> list[str]:
    """The chain of binding dependencies that ends at `end` (default: the last task to finish)."""
    if end is None:
        end = max(timings, key=lambda k: (timings[k].finish, k))
    chain = [end]
    while timings[chain[-1]].waited_on is not None:
        chain.append(timings[chain[-1]].waited_on)  # type: ignore[arg-type]
    return list(reversed(chain))


# ---------------------------------------------------------------------------------
# The program's graph, as the engine sees it.
# ---------------------------------------------------------------------------------
def _is_task(registration) -> bool:
    """A step that takes time: a custom resource, or a multi-language component (a
    kubernetes:yaml/v2:ConfigFile) whose children the provider plugin creates and the mocks
    never see; its registration returns once they are applied, so it counts as one step."""
    return bool(registration.custom or getattr(registration, "remote", False))


def engine_dependencies(registrations: Sequence) -> dict[str, set[str]]:
    """URN -> the custom resources (and remote components) it waits for (component
    dependencies expanded)."""
    by_urn = {r.urn: r for r in registrations}
    children: dict[str, list[str]] = {}
    for r in registrations:
        children.setdefault(r.parent, []).append(r.urn)

    def custom_descendants(urn: str) -> set[str]:
        found: set[str] = set()
        for child in children.get(urn, []):
            if _is_task(by_urn[child]):
                found.add(child)
            found |= custom_descendants(child)
        return found

    def expand(urn: str) -> set[str]:
        if urn not in by_urn:
            return set()
        return {urn} if _is_task(by_urn[urn]) else custom_descendants(urn)

    graph: dict[str, set[str]] = {}
    for r in registrations:
        if not _is_task(r):
            continue
        # The SDK also awaits the URNs of replace_with and deleted_with targets before it
        # registers (pulumi/runtime/resource.py), and a URN resolves when that resource's
        # step is done: they are waits like any dependency.
        raw = set(r.dependencies) | {d for deps in r.property_dependencies.values() for d in deps}
        raw |= set(getattr(r, "replace_with", None) or ()) | ({r.deleted_with} if getattr(r, "deleted_with", None) else set())
        # A resource's explicit provider must be registered (configured) before it.
        if r.provider and "::" in r.provider:
            raw.add(r.provider.rsplit("::", 1)[0])
        graph[r.urn] = set().union(*(expand(d) for d in raw)) - {r.urn} if raw else set()
    return graph


def ancestors(graph: Mapping[str, set[str]], urn: str) -> set[str]:
    """Everything `urn` waits for, directly or transitively."""
    seen: set[str] = set()
    stack = list(graph.get(urn, ()))
    while stack:
        dep = stack.pop()
        if dep not in seen:
            seen.add(dep)
            stack.extend(graph.get(dep, ()))
    return seen


# ---------------------------------------------------------------------------------
# From registrations to tasks, with the machines' phases.
# ---------------------------------------------------------------------------------
@dataclass
class Model:
    stack: str
    distribution: str
    table_name: str
    tasks: dict[str, Task]
    timings: dict[str, Timing]
    servers: list[str]
    gate: str
    bound: float
    bound_terms: list[tuple[str, float]]
    load_balancer: str

    @property
    def total(self) -> float:
        return max(t.finish for t in self.timings.values())

    @property
    def ratio(self) -> float:
        return self.total / self.bound

    def chain(self) -> list[str]:
        return critical_chain(self.tasks, self.timings)


def _variant(registration) -> Optional[str]:
    if registration.type == RDS_TYPE:
        return "multi-az" if registration.inputs.get("multiAz") else "single-az"
    if registration.type == HELM_TYPE:
        return registration.inputs.get("chart")
    if registration.type == CONFIG_FILE_TYPE:
        return str(registration.inputs.get("file", "")).rsplit("/", 1)[-1]
    return None


def resource_seconds(table: Mapping[str, Duration], registration) -> float:
    if registration.type == GATE_TYPE:
        return seconds(table, "phase:gate-poll")
    return seconds(table, registration.type, _variant(registration))


def build_model(run, stack: str, distribution: str, table_name: str, table: Optional[Mapping[str, Duration]] = None) -> Model:
    table = TABLES[table_name] if table is None else table
    regs = {r.urn: r for r in run.registrations}
    graph = engine_dependencies(run.registrations)
    tasks: dict[str, Task] = {}
    for urn, deps in graph.items():
        r = regs[urn]
        tasks[urn] = Task(urn, r.name, resource_seconds(table, r), sorted(deps), type=r.type)

    def of_type(type_token: str) -> list:
        return sorted((r for r in run.registrations if r.custom and r.type == type_token), key=lambda r: r.name)

    def deps_of_type(urn: str, type_token: str) -> list[str]:
        return sorted(d for d in graph[urn] if regs[d].type == type_token)

    def phase(key: str, label: str, duration: float, deps: Iterable[str] = (), **extra) -> str:
        tasks[key] = Task(key, label, duration, [d for d in deps if d], **extra)
        return key

    def egress_deps(subnet_urns: Iterable[str]) -> list[str]:
        """The route-table association and default route a machine in these subnets needs."""
        found: list[str] = []
        for subnet in subnet_urns:
            for assoc in of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
                if subnet not in graph[assoc.urn]:
                    continue
                found.append(assoc.urn)
                for table_urn in deps_of_type(assoc.urn, "aws:ec2/routeTable:RouteTable"):
                    for route in of_type("aws:ec2/route:Route"):
                        if table_urn in graph[route.urn] and route.inputs.get("destinationCidrBlock") == "0.0.0.0/0":
                            found.append(route.urn)
        return found  # none: an existing network (NAT or proxy already there)

    k3s = distribution == "k3s"
    servers = [
        r.urn for r in of_type(INSTANCE_TYPE) if r.parent in regs and regs[r.parent].type == SERVERS_COMPONENT
    ]
    gates = of_type(GATE_TYPE)
    if len(gates) != 1 or not servers:
        raise ValueError(f"{stack}: expected one {GATE_TYPE} and server instances, found {len(gates)} gates, {len(servers)} servers")
    gate = gates[0].urn
    parameters = of_type("aws:ssm/parameter:Parameter")
    datastore_parameter = next((p.urn for p in parameters if str(p.inputs.get("name", "")).endswith("/datastore-endpoint")), None)
    records = of_type("aws:route53/record:Record")
    registration_record = next((r.urn for r in records if r.name.endswith("-registration")), None)
    start_key = f"phase:start#{distribution}"
    api: dict[str, str] = {}
    supervisor: dict[str, str] = {}

    for index, server in enumerate(servers):
        name = regs[server].name
        boot = phase(f"{name}:boot", f"{name}: boot (cloud-init, snap seed)", seconds(table, "phase:boot"), [server])
        # The boot polls for the way out; in a network the stack does not create it is there already.
        routes = egress_deps(deps_of_type(server, "aws:ec2/subnet:Subnet"))
        noticed = seconds(table, "phase:egress-poll") if routes else 0.0
        egress = phase(f"{name}:egress", f"{name}: egress noticed (route to NAT/IGW, then the boot's probe)", noticed, routes)
        install = phase(
            f"{name}:install", f"{name}: download + install {distribution}, aws-cli, SSM reads", seconds(table, "phase:install", distribution), [boot, egress]
        )
        if k3s:
            ready_to_start = install
            if datastore_parameter:
                ready_to_start = phase(
                    f"{name}:datastore-endpoint", f"{name}: reads datastore-endpoint (SSM poll)", seconds(table, "phase:ssm-poll"), [install, datastore_parameter]
                )
            supervisor[server] = phase(f"{name}:supervisor", f"{name}: k3s supervisor /ping on 6443", seconds(table, "phase:supervisor-up"), [ready_to_start])
            api[server] = phase(f"{name}:api-ready", f"{name}: k3s start -> API ready, node Ready", seconds(table, start_key), [ready_to_start])
        elif index == 0:
            supervisor[server] = phase(f"{name}:supervisor", f"{name}: rke2 supervisor /ping on 9345", seconds(table, "phase:supervisor-up"), [install])
            api[server] = phase(f"{name}:api-ready", f"{name}: rke2 start -> API ready, node Ready", seconds(table, start_key), [install])

    if not k3s:
        first = servers[0]
        joiners = servers[1:]
        join_wait: dict[str, str] = {}
        for server in joiners:
            name = regs[server].name
            join_wait[server] = phase(
                f"{name}:join-wait",
                f"{name}: registration /ping answers (poll)",
                seconds(table, "phase:join-poll"),
                [f"{name}:install", registration_record, supervisor[first]],
            )
            supervisor[server] = phase(f"{name}:supervisor", f"{name}: rke2 supervisor /ping on 9345", seconds(table, "phase:supervisor-up"), [join_wait[server]])
        # One learner at a time, in the order the joiners get there (schedule once to know it).
        arrival = schedule(tasks)
        ordered = sorted(joiners, key=lambda s: (arrival[join_wait[s]].finish, regs[s].name))
        tick = seconds(table, "phase:learner-tick")
        previous: Optional[str] = None
        first_promotion: Optional[str] = None
        for server in ordered:
            name = regs[server].name
            added = phase(f"{name}:learner-add", f"{name}: etcd MemberAddAsLearner", seconds(table, "phase:learner-add"), [join_wait[server]])
            slot = added
            if previous is not None:
                # ErrTooManyLearners until the previous learner is promoted; retried every 1 s.
                slot = phase(f"{name}:learner-slot", f"{name}: learner slot free (retry 1 s)", 0.5, [added, previous])
            if first_promotion is None:
                # The leader's 15 s ticker has a random phase: mean wait half a tick.
                promoted = phase(f"{name}:promoted", f"{name}: promoted to voter (ticker 15 s)", tick / 2, [slot])
                first_promotion = promoted
            else:
                anchor = first_promotion

                def next_tick(start: float, finish: Mapping[str, float], anchor: str = anchor) -> float:
                    # The ticker is periodic: promotions happen at anchor + n * tick.
                    if tick <= 0:
                        return start
                    return finish[anchor] + math.ceil((start - finish[anchor]) / tick - 1e-9) * tick

                promoted = phase(f"{name}:promoted", f"{name}: promoted to voter (next 15 s tick)", 0.0, [slot], finish_fn=next_tick)
            # What the gate waits for is the Node's Ready condition (kubelet + CNI), which
            # the joiner reaches through the supervisor's load balancer to a running
            # server: it starts with the service (after the registration wait) and does
            # not wait for this member's etcd promotion, which settles beside it.
            started = phase(f"{name}:started", f"{name}: rke2 start (after the registration wait) -> node up", seconds(table, start_key), [join_wait[server]])
            api[server] = phase(f"{name}:api-ready", f"{name}: node Ready (needs a running server's API)", 0.0, [started, api[first]])
            previous = promoted

    # The API through the load balancer.
    nlbs, groups = of_type(NLB_TYPE), of_type(ASG_TYPE)
    if nlbs:
        load_balancer = "nlb"
        listener = next(r.urn for r in of_type("aws:lb/listener:Listener") if r.inputs.get("port") == 6443)
        api_group = next(r.urn for r in of_type("aws:lb/targetGroup:TargetGroup") if r.inputs.get("port") == 6443)
        alternatives = []
        for server in servers:
            name = regs[server].name
            attachment = next(
                r.urn
                for r in of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
                if api_group in graph[r.urn] and server in graph[r.urn]
            )
            # Registration starts once the target is in a group a listener uses; checks
            # start after it, and pass once the supervisor answers.
            registered = phase(
                f"{name}:registered",
                f"{name}: registered with the NLB (target 'initial')",
                seconds(table, "phase:nlb-registration"),
                [listener, attachment],
            )
            healthy = phase(
                f"{name}:healthy",
                f"{name}: healthy in the 6443 target group (3 checks, 10 s apart)",
                seconds(table, "phase:nlb-healthy"),
                [registered, supervisor[server]],
            )
            alternatives.append([healthy, api[server]])
        through_lb = phase("api-through-lb", "API ready through the NLB (one healthy, ready server)", 0.0, [listener], any_of=alternatives)
    elif groups:
        load_balancer = "nginx"
        group = groups[0]
        boot = phase("nginx:boot", "nginx instance: boot (cloud-init, snap seed)", seconds(table, "phase:boot"), [group.urn])
        egress = phase("nginx:egress", "nginx instance: egress (public route)", 0.0, egress_deps(deps_of_type(group.urn, "aws:ec2/subnet:Subnet")))
        installed = phase(
            "nginx:install", "nginx instance: install nginx, EIP, config from SSM", seconds(table, "phase:nginx-install"), [boot, egress]
        )
        through_lb = phase(
            "api-through-lb", "API ready through NGINX (one ready server)", 0.0, [installed], any_of=[[api[s]] for s in servers]
        )
    else:
        raise ValueError(f"{stack}: no load balancer found")

    tasks[gate].deps = sorted(set(tasks[gate].deps) | {through_lb} | set(api.values()))
    timings = schedule(tasks)

    # The physical bound.
    helm = helm_chain_seconds(tasks, graph)
    start = seconds(table, start_key)
    if k3s:
        rds = of_type(RDS_TYPE)
        datastore = resource_seconds(table, rds[0]) if rds else 0.0
        terms = [("datastore creation", datastore), ("distribution start", start), ("Helm", helm)]
    else:
        boot_total = seconds(table, INSTANCE_TYPE) + seconds(table, "phase:boot") + seconds(table, "phase:install", distribution)
        if load_balancer == "nlb":
            # AWS's own time, as physical as the RDS create: a target is 'initial' until
            # its registration completes, and any gate through the NLB waits for it.
            lb_total = seconds(table, NLB_TYPE) + seconds(table, AWS_REGISTRATION)
        else:
            lb_total = seconds(table, ASG_TYPE) + seconds(table, "phase:boot") + seconds(table, "phase:nginx-install")
        lb_name = "load balancer + NLB target registration" if load_balancer == "nlb" else "load balancer"
        longer = (lb_name, lb_total) if lb_total >= boot_total else ("server boot", boot_total)
        terms = [longer, ("distribution start", start), ("Helm", helm)]
    bound = sum(value for _, value in terms)
    return Model(stack, distribution, table_name, tasks, timings, servers, gate, bound, terms, load_balancer)


def helm_chain_seconds(tasks: Mapping[str, Task], graph: Mapping[str, set[str]]) -> float:
    """The longest chain of Helm releases (each waiting for the ones before it)."""
    releases = [k for k, t in tasks.items() if t.type == HELM_TYPE]
    memo: dict[str, float] = {}

    def chain(key: str) -> float:
        if key not in memo:
            before = [r for r in ancestors(graph, key) if r in releases]
            memo[key] = tasks[key].duration + max((chain(r) for r in before), default=0.0)
        return memo[key]

    return max((chain(r) for r in releases), default=0.0)


# ---------------------------------------------------------------------------------
# Stacks and output.
# ---------------------------------------------------------------------------------
def stack_names() -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))


_RUNS: dict[str, object] = {}


def stack_run(stack: str):
    if stack not in _RUNS:
        from offline.runner import run_stack

        _RUNS[stack] = run_stack(stack)
    return _RUNS[stack]


def stack_distribution(stack: str) -> str:
    from offline.runner import stack_config

    return str(stack_config(stack).get("rancher-ha:distribution", "k3s"))


def model_for(stack: str, table_name: str) -> Model:
    return build_model(stack_run(stack), stack, stack_distribution(stack), table_name)


def holding_range(stack: str, key: str, table_name: str = "sourced", limit: int = 300) -> list[tuple[int, int]]:
    """The values of one duration (whole seconds, 0..limit) for which the ratio target holds.

    Most entries are estimates; this says how far the result stands from a different one.
    """
    distribution = stack_distribution(stack)
    base = TABLES[table_name]
    holds = []
    for value in range(limit + 1):
        table = dict(base)
        table[key] = replace(base[key], seconds=float(value))
        model = build_model(stack_run(stack), stack, distribution, table_name, table)
        holds.append(model.ratio <= TARGET_RATIO)
    ranges: list[tuple[int, int]] = []
    for value, ok in enumerate(holds):
        if ok and ranges and ranges[-1][1] == value - 1:
            ranges[-1] = (ranges[-1][0], value)
        elif ok:
            ranges.append((value, value))
    return ranges


def sensitivity_keys(stack: str) -> list[str]:
    distribution = stack_distribution(stack)
    keys = [
        "aws:ec2/natGateway:NatGateway",
        "aws:iam/instanceProfile:InstanceProfile",
        INSTANCE_TYPE,
        "phase:boot",
        f"phase:install#{distribution}",
        f"phase:start#{distribution}",
        "phase:supervisor-up",
    ]
    if model_for(stack, "sourced").load_balancer == "nlb":
        keys.append(AWS_REGISTRATION)
    if distribution == "k3s":
        keys.append(f"{RDS_TYPE}#single-az")
    return keys


def sensitivity(stacks: Sequence[str], limit: int = 300) -> str:
    lines = [f"| stack | duration (sourced estimate) | ratio target holds for (0-{limit} s) |", "|---|---|---|"]
    for stack in stacks:
        for key in sensitivity_keys(stack):
            estimate = TABLES["sourced"][key].seconds
            lines.append(f"| {stack} | `{key}` ({estimate:g} s) | {format_ranges(holding_range(stack, key, limit=limit), limit)} |")
    return "\n".join(lines)


def format_ranges(ranges: Sequence[tuple[int, int]], limit: int = 300) -> str:
    if not ranges:
        return "none"
    if list(ranges) == [(0, limit)]:
        return f"any (0-{limit} s)"
    return ", ".join(f"{lo}-{hi} s" if hi < limit else f">= {lo} s" for lo, hi in ranges)


def minutes(value: float) -> str:
    return f"{int(value // 60)}m{value % 60:04.1f}s"


def target_misses(model: Model) -> list[str]:
    return [f"ratio {model.ratio:.3f} > {TARGET_RATIO}"] if model.ratio > TARGET_RATIO else []


def format_chain(model: Model) -> str:
    lines = []
    for key in model.chain():
        task, timing = model.tasks[key], model.timings[key]
        if timing.finish - timing.start < 1e-9 and key not in (model.gate,):
            marker = "  "
        else:
            marker = "->"
        kind = task.type or "phase"
        lines.append(f"  {marker} {timing.start:7.1f} -> {timing.finish:7.1f} s  {task.label}  [{kind}]")
    return "\n".join(lines)


def report(model: Model) -> str:
    terms = " + ".join(f"{name} {value:g}" for name, value in model.bound_terms)
    misses = target_misses(model)
    status = "MISSED: " + "; ".join(misses) if misses else "targets met"
    return "\n".join(
        [
            f"== {model.stack} ({model.distribution}, {model.load_balancer}, {len(model.servers)} servers), durations: {model.table_name}",
            "critical chain:",
            format_chain(model),
            f"total {model.total:.1f} s ({minutes(model.total)}); physical bound {model.bound:.1f} s ({terms}); "
            f"ratio {model.ratio:.3f} (target <= {TARGET_RATIO}): {status}",
        ]
    )


def markdown(models: Sequence[Model]) -> str:
    rows = {}
    for m in models:
        rows.setdefault(m.stack, {})[m.table_name] = m
    lines = [
        "| stack | cluster | sourced: total | bound | ratio | reference: total | bound | ratio | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stack, by_table in rows.items():
        any_model = next(iter(by_table.values()))
        cells = [stack, f"{any_model.distribution} x{len(any_model.servers)}, {any_model.load_balancer}"]
        for name in ("sourced", "reference"):
            m = by_table.get(name)
            cells += [minutes(m.total), minutes(m.bound), f"{m.ratio:.3f}"] if m else ["-", "-", "-"]
        misses = [x for m in by_table.values() for x in target_misses(m)]
        cells.append(f"ratio <= {TARGET_RATIO}" + (" (missed)" if misses else " (met)"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", choices=sorted(TABLES), action="append", help="table(s) to use (default: both)")
    parser.add_argument("--stack", action="append", help="stack name (default: every stacks/Pulumi.*.yaml)")
    parser.add_argument("--markdown", action="store_true", help="print a table for the README instead")
    parser.add_argument("--sensitivity", action="store_true", help="for each uncertain duration, the values for which the ratio target holds")
    args = parser.parse_args(argv)
    stacks = args.stack or stack_names()
    tables = args.durations or ["sourced", "reference"]
    models = [model_for(stack, table) for stack in stacks for table in tables]
    if args.sensitivity:
        print(sensitivity(stacks))
    elif args.markdown:
        print(markdown(models))
    else:
        print("\n\n".join(report(m) for m in models))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
