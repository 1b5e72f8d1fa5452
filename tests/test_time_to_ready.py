"""Time to a ready Rancher on a first `pulumi up` (benchmarks/time_to_ready.py).

Three kinds of checks:
- the graph facts the design promises, on every stack's real graph under the mocks;
- the benchmark's own model (engine scheduling, critical chain, component expansion,
  machine phases) on small synthetic graphs and on the real ones;
- the ratio target (total <= 1.05 x the physical bound) for every stack, with both
  duration tables. A miss fails and prints the critical chain.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import durations  # noqa: E402
import time_to_ready as ttr  # noqa: E402
from durations import REFERENCE, REFERENCE_OVERRIDES, SOURCED  # noqa: E402
from offline.mocks import Registration  # noqa: E402
from rendering import polls as polls_module  # noqa: E402

STACKS = ttr.stack_names()

# What no server may wait for: the load balancer path, the datastore and the NAT.
SLOW_FOR_SERVERS = {
    "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/listener:Listener",
    "aws:lb/targetGroup:TargetGroup",
    "aws:autoscaling/group:Group",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:rds/instance:Instance",
    "aws:ec2/natGateway:NatGateway",
}


def graph_of(stack: str):
    run = ttr.stack_run(stack)
    return run, {r.urn: r for r in run.registrations}, ttr.engine_dependencies(run.registrations)


def servers_of(run, regs) -> list[str]:
    return [r.urn for r in run.of_type(ttr.INSTANCE_TYPE) if regs[r.parent].type == ttr.SERVERS_COMPONENT]


def gate_of(run) -> str:
    gates = run.of_type(ttr.GATE_TYPE)
    assert len(gates) == 1
    return gates[0].urn


# ---------------------------------------------------------------------------------
# Graph facts
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_servers_wait_for_nothing_slow(stack):
    run, regs, graph = graph_of(stack)
    servers = servers_of(run, regs)
    assert servers, "no server instances found"
    for server in servers:
        waits_for = ttr.ancestors(graph, server)
        slow = sorted(f"{regs[u].type} {regs[u].name}" for u in waits_for if regs[u].type in SLOW_FOR_SERVERS)
        assert not slow, f"{regs[server].name} waits for {slow}"
        endpoint = [u for u in waits_for if str(regs[u].inputs.get("name", "")).endswith("/datastore-endpoint")]
        assert not endpoint, f"{regs[server].name} waits for the datastore-endpoint parameter"


@pytest.mark.parametrize("stack", STACKS)
def test_k3s_gate_waits_for_the_datastore(stack):
    if ttr.stack_distribution(stack) != "k3s":
        pytest.skip("RKE2: no external datastore")
    run, regs, graph = graph_of(stack)
    rds = run.of_type("aws:rds/instance:Instance")
    assert rds, "a K3s stack without RDS"
    assert {r.urn for r in rds} <= ttr.ancestors(graph, gate_of(run))


@pytest.mark.parametrize("stack", STACKS)
def test_every_in_cluster_resource_waits_for_the_gate(stack):
    run, regs, graph = graph_of(stack)
    gate = gate_of(run)
    in_cluster = [r for r in run.resources if r.type.startswith("kubernetes:") or r.type == "pulumi:providers:kubernetes"]
    assert any(r.type == ttr.HELM_TYPE for r in in_cluster)
    missing = [f"{r.type} {r.name}" for r in in_cluster if gate not in ttr.ancestors(graph, r.urn)]
    assert not missing, f"not behind the readiness gate: {missing}"


@pytest.mark.parametrize("stack", STACKS)
def test_cert_manager_before_rancher(stack):
    run, regs, graph = graph_of(stack)
    releases = {r.inputs.get("chart"): r.urn for r in run.of_type(ttr.HELM_TYPE)}
    assert "rancher" in releases
    if stack in ("dev", "prod"):
        assert "cert-manager" in releases, "dev and prod use Rancher's own CA: cert-manager is needed"
    if "cert-manager" in releases:
        assert releases["cert-manager"] in ttr.ancestors(graph, releases["rancher"])


# ---------------------------------------------------------------------------------
# The model on synthetic graphs
# ---------------------------------------------------------------------------------
def tasks(*specs) -> dict[str, ttr.Task]:
    return {key: ttr.Task(key, key, duration, list(deps)) for key, duration, deps in specs}


def test_schedule_starts_when_all_dependencies_finish_and_finds_the_chain():
    graph = tasks(("a", 2, []), ("b", 3, ["a"]), ("c", 10, ["a"]), ("d", 1, ["b", "c"]), ("e", 4, []))
    timings = ttr.schedule(graph)
    assert (timings["b"].start, timings["c"].start) == (2, 2)
    assert (timings["d"].start, timings["d"].finish) == (12, 13)
    assert timings["e"].start == 0  # independent: in parallel from the start
    assert ttr.critical_chain(graph, timings) == ["a", "c", "d"]


def test_any_of_starts_with_the_first_complete_group():
    graph = tasks(("fast", 1, []), ("slow", 9, []), ("gate", 0, ["x"]), ("x", 2, []))
    graph["gate"].any_of = [["slow"], ["fast", "x"]]
    timings = ttr.schedule(graph)
    assert timings["gate"].start == 2
    assert timings["gate"].waited_on == "x"


def test_finish_fn_models_a_periodic_ticker():
    graph = tasks(("anchor", 10, []), ("late", 13, []), ("promoted", 0, ["late"]))
    graph["promoted"].finish_fn = lambda start, finish: finish["anchor"] + -(-(start - finish["anchor"]) // 15) * 15
    assert ttr.schedule(graph)["promoted"].finish == 25


def test_cycles_are_refused():
    graph = tasks(("a", 1, ["b"]), ("b", 1, ["a"]))
    with pytest.raises(ttr.CycleError):
        ttr.schedule(graph)


def registration(name, type_="test:index:Thing", parent="", deps=(), prop_deps=None, custom=True):
    return Registration(
        type=type_, name=name, inputs={}, urn=f"urn:{name}", parent=parent, dependencies=list(deps), provider="",
        custom=custom, property_dependencies=prop_deps or {},
    )


def test_engine_dependencies_expand_components_and_ignore_parents():
    regs = [
        registration("stack", "pulumi:pulumi:Stack", custom=False),
        registration("comp", "test:index:Component", parent="urn:stack", custom=False),
        registration("inner", "test:index:Component", parent="urn:comp", custom=False),
        registration("child", parent="urn:comp"),
        registration("grandchild", parent="urn:inner", prop_deps={"x": ["urn:other"]}),
        registration("other", parent="urn:stack"),
        # depends on the component: waits for all of its custom descendants
        registration("user", parent="urn:stack", deps=["urn:comp"]),
    ]
    graph = ttr.engine_dependencies(regs)
    assert graph["urn:user"] == {"urn:child", "urn:grandchild"}
    assert graph["urn:child"] == set()  # its parent is not a wait
    assert graph["urn:grandchild"] == {"urn:other"}  # property dependencies count
    assert ttr.ancestors(graph, "urn:user") == {"urn:child", "urn:grandchild", "urn:other"}
    assert "urn:comp" not in graph  # components take no time


def test_helm_chain_counts_only_releases_in_order():
    graph = tasks(("gate", 5, []), ("ns", 1, ["gate"]), ("cm", 120, ["gate"]), ("rancher", 120, ["cm", "ns"]))
    for key in ("cm", "rancher"):
        graph[key].type = ttr.HELM_TYPE
    deps = {k: set(t.deps) for k, t in graph.items()}
    assert ttr.helm_chain_seconds(graph, deps) == 240


def test_reference_table_is_the_brief():
    assert REFERENCE["aws:rds/instance:Instance#single-az"].seconds == 480
    assert REFERENCE["aws:lb/loadBalancer:LoadBalancer"].seconds == 180
    assert REFERENCE["aws:ec2/instance:Instance"].seconds == 45
    for distribution in ("k3s", "rke2"):
        assert REFERENCE["phase:boot"].seconds + REFERENCE[f"phase:install#{distribution}"].seconds == 105
        assert REFERENCE[f"phase:start#{distribution}"].seconds == 45
    assert REFERENCE["kubernetes:helm.sh/v3:Release#cert-manager"].seconds == 120
    assert REFERENCE["kubernetes:helm.sh/v3:Release#rancher"].seconds == 120
    assert REFERENCE["aws:ec2/natGateway:NatGateway"].seconds == 120
    for key, entry in REFERENCE.items():
        if key not in REFERENCE_OVERRIDES:
            assert entry == SOURCED[key], key
    assert all(entry.source for entry in SOURCED.values())


# ---------------------------------------------------------------------------------
# The machine phases, on the real graphs
# ---------------------------------------------------------------------------------
def task_key(model, label: str) -> str:
    """The one task with this label (a resource name), or whose label starts with it (a phase)."""
    exact = [k for k, t in model.tasks.items() if t.label == label]
    (key,) = exact or [k for k, t in model.tasks.items() if t.label.startswith(label)]
    return key


def finish(model, label: str) -> float:
    return model.timings[task_key(model, label)].finish


def start(model, label: str) -> float:
    return model.timings[task_key(model, label)].start


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_the_upgrade_controllers_config_files_take_time_on_the_way_to_rancher(stack):
    """system-upgrade-controller's ConfigFiles are remote components: the provider applies
    their objects, the mocks never see them; each is one step with its own duration,
    after the gate, before the Plan (and so before Rancher's release)."""
    model = ttr.model_for(stack, "reference")
    crd, controller = "kubernetes-upgrades-suc-crd", "kubernetes-upgrades-suc-controller"
    assert model.tasks[task_key(model, crd)].duration == REFERENCE["kubernetes:yaml/v2:ConfigFile#crd.yaml"].seconds
    assert model.tasks[task_key(model, controller)].duration == REFERENCE[
        "kubernetes:yaml/v2:ConfigFile#system-upgrade-controller.yaml"].seconds
    assert start(model, crd) >= model.timings[model.gate].finish
    assert start(model, controller) >= finish(model, crd)
    plan = next(t.label for t in model.tasks.values() if t.label.endswith("-server-plan"))
    assert start(model, plan) >= finish(model, controller)
    assert start(model, "rancher") >= finish(model, controller)


def test_k3s_servers_start_after_the_datastore_endpoint_and_install_after_the_nat():
    model = ttr.model_for("dev", "reference")
    endpoint = finish(model, "rancher-late-secrets-datastore-endpoint")
    route = finish(model, "network-private-eu-west-1a-default")
    assert start(model, "rancher-server-0: download") >= route
    assert start(model, "rancher-server-0: k3s start") >= endpoint
    assert model.timings[model.gate].start >= finish(model, "rancher-server-1: k3s start")


def test_rke2_joiners_start_after_the_first_supervisor_and_the_gate_waits_for_their_nodes():
    model = ttr.model_for("prod", "reference")
    supervisor = finish(model, "rancher-server-0: rke2 supervisor")
    record = finish(model, "rancher-dns-registration")
    promoted = sorted(finish(model, f"rancher-server-{i}: promoted") for i in (1, 2))
    assert min(start(model, f"rancher-server-{i}: registration") for i in (1, 2)) >= max(supervisor, record)
    # etcd learners are still promoted one per tick, beside the start (not a gate condition).
    assert promoted[1] - promoted[0] == pytest.approx(REFERENCE["phase:learner-tick"].seconds)
    assert model.timings[model.gate].start >= max(finish(model, f"rancher-server-{i}: node Ready") for i in (1, 2))
    assert model.timings[model.gate].start >= finish(model, "rancher-server-0: rke2 start")


def test_api_through_the_nlb_waits_for_health_checks():
    model = ttr.model_for("prod", "reference")
    healthy = min(finish(model, f"rancher-server-{i}: healthy") for i in range(3))
    assert finish(model, "API ready through the NLB") >= healthy
    assert healthy >= finish(model, "rancher-lb") + REFERENCE["phase:nlb-healthy"].seconds


# ---------------------------------------------------------------------------------
# The bound: NLB target registration is AWS's own time
# ---------------------------------------------------------------------------------
def test_the_nlb_bound_counts_aws_target_registration():
    registration = SOURCED[ttr.AWS_REGISTRATION]
    for table_name in ("sourced", "reference"):
        prod = ttr.model_for("prod", table_name)
        table = ttr.TABLES[table_name]
        terms = dict(prod.bound_terms)
        assert terms["load balancer + NLB target registration"] == table[ttr.NLB_TYPE].seconds + registration.seconds
        # Across the range its source reports, the bound moves with the registration one for one.
        for value in ttr.NLB_REGISTRATION_RANGE_S:
            changed = dict(table)
            changed[ttr.AWS_REGISTRATION] = replace(registration, seconds=float(value))
            model = ttr.build_model(ttr.stack_run("prod"), "prod", "rke2", table_name, changed)
            assert model.bound == pytest.approx(prod.bound + value - registration.seconds)
    # The estimate and the range its source gives (reports 70-120 s, AWS support 3-5 minutes).
    assert registration.seconds == 120
    assert "70-120 s" in registration.source and "3-5 minutes" in registration.source
    assert ttr.NLB_REGISTRATION_RANGE_S == (70, 300)
    staging = ttr.model_for("staging", "sourced")
    assert all("registration" not in name for name, _ in staging.bound_terms)


@pytest.mark.parametrize("stack", STACKS)
def test_reference_ratio_target(stack):
    model = ttr.model_for(stack, "reference")
    assert not ttr.target_misses(model), "\n" + ttr.report(model)


# ---------------------------------------------------------------------------------
# The model's waits are the boot script's own polls (read from the rendered user data)
# ---------------------------------------------------------------------------------
def boot_script(registration) -> str:
    from rendering.cloud_init import BOOTSTRAP_PATH

    from helpers import written_file

    return written_file(registration, BOOTSTRAP_PATH)["content"]


def egress_cadence(script: str) -> polls_module.Poll:
    """(sleep, per-attempt timeout) of wait_for_egress, as the rendered script has them."""
    match = re.search(r'retry "\$EGRESS_ATTEMPTS" (\d+) curl ([^\n]*)', script)
    assert match, "wait_for_egress not found in the boot script"
    timeout = (re.search(r'--connect-timeout "\$\{2:-(\d+)\}"', match.group(2)) or re.search(r"--connect-timeout (\d+)", match.group(2))
               or re.search(r"--max-time (\d+)", match.group(2)))
    return polls_module.Poll(interval_s=int(match.group(1)), attempts=1, connect_timeout_s=int(timeout.group(1)))


@pytest.mark.parametrize("stack", STACKS)
def test_the_model_waits_for_egress_as_long_as_the_boot_script_polls(stack):
    """The egress wait is real time: a probe that times out, then a sleep. The model
    must charge what the rendered script does, not 0 (a first version did)."""
    model = ttr.model_for(stack, "sourced")
    regs = {r.urn: r for r in ttr.stack_run(stack).registrations}
    for server in model.servers:
        registration = regs[server]
        cadence = egress_cadence(boot_script(registration))
        egress = model.tasks[f"{registration.name}:egress"]
        if egress.deps:  # the stack creates the route: the boot polls until it exists
            assert egress.duration == pytest.approx(durations.mean_wait_for_a_new_route(cadence)), registration.name
            assert egress.duration > 0
        else:  # an existing network: the first probe gets through
            assert egress.duration == 0


def simulated_wait(poll, steps: int = 20000) -> float:
    """Brute force: probes send a SYN at their start and at each retransmission before
    their connect timeout (Linux 6.5+: 1, 2, 3, 4, 5, 7, 11 s), then sleep; a route
    appears at a uniform moment."""
    timeout = poll.connect_timeout_s or 0
    sends, t = [], 0.0
    while t < 10 * (timeout + poll.interval_s) + 100:
        sends += [t] + [t + r for r in (1, 2, 3, 4, 5, 7, 11, 19) if r < timeout]
        t += timeout + poll.interval_s
    period = timeout + poll.interval_s
    waits = []
    for i in range(steps):
        appears = period * (i + 0.5) / steps
        waits.append(min(s for s in sends if s >= appears) - appears)
    return sum(waits) / len(waits)


@pytest.mark.parametrize("cadence", [(2, 3), (10, 10), (1, 2), (5, 20)])
def test_mean_wait_for_a_new_route_matches_a_simulation(cadence):
    poll = polls_module.Poll(interval_s=cadence[0], attempts=1, connect_timeout_s=cadence[1])
    assert durations.mean_wait_for_a_new_route(poll) == pytest.approx(simulated_wait(poll), abs=0.01)


def test_join_and_datastore_waits_are_the_scripts_cadence():
    run = ttr.stack_run("prod")
    regs = {r.urn: r for r in run.registrations}
    model = ttr.model_for("prod", "sourced")
    joiner = boot_script(regs[model.servers[1]])
    join_sleep = int(re.search(r'retry "\$JOIN_ATTEMPTS" (\d+) registration_answers', joiner).group(1))
    assert SOURCED["phase:join-poll"].seconds == join_sleep / 2
    dev = {r.urn: r for r in ttr.stack_run("dev").registrations}
    k3s = boot_script(dev[ttr.model_for("dev", "sourced").servers[0]])
    datastore_sleep = int(re.search(r'SSM_DELAY="\$\{RANCHER_HA_DATASTORE_DELAY:-(\d+)\}"', k3s).group(1))
    call = durations.AWS_CLI_CALL_S
    assert SOURCED["phase:ssm-poll"].seconds == (datastore_sleep + call) / 2 + durations.SSM_REQUEST_S


# ---------------------------------------------------------------------------------
# Targets (sourced durations) and how far they stand from the least certain estimate
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_sourced_ratio_target(stack):
    model = ttr.model_for(stack, "sourced")
    assert model.ratio <= ttr.TARGET_RATIO, "\n" + ttr.report(model)


def test_holding_range_agrees_with_the_model_at_its_edges():
    stack, key = "prod", "phase:nlb-registration"

    def ratio_at(value):
        table = dict(SOURCED)
        table[key] = replace(SOURCED[key], seconds=float(value))
        return ttr.build_model(ttr.stack_run(stack), stack, "rke2", "sourced", table).ratio

    ranges = ttr.holding_range(stack, key)
    assert ranges
    for lo, hi in ranges:
        assert ratio_at(lo) <= ttr.TARGET_RATIO and ratio_at(hi) <= ttr.TARGET_RATIO
        if hi < 300:
            assert ratio_at(hi + 1) > ttr.TARGET_RATIO
        if lo > 0:
            assert ratio_at(lo - 1) > ttr.TARGET_RATIO


# ---------------------------------------------------------------------------------
# The figures in the docs are the benchmark's output, not a copy that can go stale
# ---------------------------------------------------------------------------------
def test_the_readme_table_is_the_benchmarks_output():
    readme = (REPO / "README.md").read_text()
    models = [ttr.model_for(stack, table) for stack in STACKS for table in ("sourced", "reference")]
    assert ttr.markdown(models) in readme, "regenerate with: .venv/bin/python -m tools.time_to_ready_docs"


def test_the_sensitivity_table_is_the_benchmarks_output():
    doc = (REPO / "docs" / "time-to-ready.md").read_text()
    command = re.search(r"benchmarks/time_to_ready.py --sensitivity((?: --stack \w+)+)", doc)
    assert command, "docs/time-to-ready.md lost its command line"
    stacks = command.group(1).split(" --stack ")[1:]
    assert ttr.sensitivity(stacks) in doc, "regenerate with: .venv/bin/python -m tools.time_to_ready_docs"
