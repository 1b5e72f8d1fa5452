"""What `pulumi destroy` would do with a mock run's resources, offline.

Modelled on the Pulumi engine as read in pulumi/pulumi at commit
1b5949891b3cefcb9974752b24a5ecef0acc86c8 (2026-08-21). Paths below are relative to that
repository.

Edges ("A depends on B", so A is deleted first)
    pkg/resource/graph/dependency_graph.go:201-256 `DependenciesOf`: the provider, every
    `dependencies` URN, every `propertyDependencies` URN, `deletedWith` and `replaceWith`
    targets, and the parent. A dependency on a *component* also counts every (transitive)
    child of that component that precedes the resource in the snapshot's topological order
    (lines 236-247). Children are therefore deleted before their parents and a resource
    before its provider.

Rounds
    pkg/resource/deploy/step_generator.go:2747-2797 `ScheduleDeletes`: the condemned set is
    peeled into antichains, each round taking every resource none of whose dependencies is
    still condemned; the list is then reversed. pkg/resource/deploy/deployment_executor.go:
    501-553 runs each antichain with `ExecuteParallel` and waits for it (`tok.Wait`) before
    starting the next. So a step's start round is its antichain index, every step of round r
    has completed before any step of round r+1 starts, and two steps in the same round run
    side by side. This is coarser than "start as soon as my dependents are gone": a resource
    with no dependencies at all (a VPC) lands in the LAST round even when nothing depends on
    it. When a delete fails, the executor drops every transitive dependency of the failed
    resource from the later rounds (deployment_executor.go:513-548): a failed
    `helm uninstall` keeps the cluster, its nodes and everything under them.

deleted_with
    pkg/resource/deploy/step.go:603-613 `isDeletedWith` and :663 `DeleteStep.Apply`: the
    provider's Delete is not called when the resource named in `deletedWith` is also being
    deleted in the same operation (`otherDeletions` is the step generator's `sg.deletes`,
    filled for every delete it generates, step_generator.go:2145, 2421, 2426, 2463). The step is
    still scheduled (it keeps its round: `deletedWith` is an edge), it just makes no API call.

--target / --exclude (step_generator.go:2328-2541 `GenerateDeletes`)
    --target: the delete set is the targets plus, transitively, everything that depends on
    them or is their child (`getTargetDependents`, 2543-2574, `DependingOn(..., true)`),
    plus what calculateDependentReplacements and findDependentCascadeReplacements add
    (`replaceWith`/`deletedWith` naming a target; 2611-2671). If that set
    holds a resource that was not itself targeted, the engine errors ("resource will be
    destroyed but was not specified in --target list", 2510-2533) unless
    `--target-dependents` is given. Modelled: `UntargetedDeleteError`.
    --exclude: everything is deleted except the excluded resources and, transitively, what
    they depend on (`getExcludeDependencies`, 2576-2605: `DependenciesOf`), and with
    `--exclude-dependents` also what depends on them. Targets take precedence over excludes
    (2337-2346).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from .mocks import Registration

K8S_PROVIDER = "pulumi:providers:kubernetes"


def provider_urn(reference: str) -> str:
    """A provider reference is `<provider URN>::<provider id>`."""
    if not reference:
        return ""
    urn, _, _ = reference.rpartition("::")
    return urn if urn.startswith("urn:pulumi:") else reference


def direct_edges(resource: Registration) -> set[str]:
    """URNs `resource` depends on, parent excluded (dependency_graph.go:207-227)."""
    edges = set(resource.dependencies or [])
    for urns in (resource.property_dependencies or {}).values():
        edges.update(urns)
    if getattr(resource, "deleted_with", ""):
        edges.add(resource.deleted_with)
    edges.update(getattr(resource, "replace_with", None) or [])
    provider = provider_urn(resource.provider)
    if provider:
        edges.add(provider)
    edges.discard(resource.urn)
    return edges


def topological_order(resources: Sequence[Registration]) -> list[Registration]:
    """A snapshot-like order: every resource after its parent and its dependencies.

    The engine's snapshot is in registration order, which is topological; a mock run is
    sorted by URN, so rebuild a deterministic topological order (ties by URN).
    """
    by_urn = {r.urn: r for r in resources}
    needs: dict[str, set[str]] = {}
    for r in resources:
        wanted = {u for u in direct_edges(r) if u in by_urn}
        if r.parent in by_urn:
            wanted.add(r.parent)
        needs[r.urn] = wanted
    users: dict[str, set[str]] = defaultdict(set)
    for urn, wanted in needs.items():
        for dep in wanted:
            users[dep].add(urn)
    import heapq

    ready = [urn for urn, wanted in needs.items() if not wanted]
    heapq.heapify(ready)
    remaining = {urn: len(wanted) for urn, wanted in needs.items()}
    order: list[Registration] = []
    while ready:
        urn = heapq.heappop(ready)
        order.append(by_urn[urn])
        for user in users[urn]:
            remaining[user] -= 1
            if remaining[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(resources):  # a cycle: keep the rest in URN order rather than fail
        placed = {r.urn for r in order}
        order += sorted((r for r in resources if r.urn not in placed), key=lambda r: r.urn)
    return order


class DependencyGraph:
    """pkg/resource/graph/dependency_graph.go over a list of registrations."""

    def __init__(self, resources: Sequence[Registration]):
        self.order = topological_order(resources)
        self.index = {r.urn: i for i, r in enumerate(self.order)}
        self.by_urn = {r.urn: r for r in self.order}
        self.children: dict[str, list[str]] = defaultdict(list)  # transitive
        for r in self.order:
            parent = r.parent
            seen = set()
            while parent and parent in self.by_urn and parent not in seen:
                seen.add(parent)
                self.children[parent].append(r.urn)
                parent = self.by_urn[parent].parent
        self._deps: dict[str, set[str]] = {}

    def dependencies_of(self, urn: str) -> set[str]:
        """`DependenciesOf` (dependency_graph.go:207-256)."""
        if urn in self._deps:
            return self._deps[urn]
        r = self.by_urn[urn]
        cursor = self.index[urn]
        result: set[str] = set()
        for dep in direct_edges(r):
            if dep in self.by_urn and self.index[dep] < cursor:
                result.add(dep)
                if not self.by_urn[dep].custom:
                    result.update(c for c in self.children[dep] if self.index[c] < cursor)
        if r.parent in self.by_urn:
            result.add(r.parent)
        result.discard(urn)
        self._deps[urn] = result
        return result

    def depending_on(self, urns: Iterable[str], include_children: bool = True) -> set[str]:
        """Transitive dependents (`DependingOn`, dependency_graph.go:55-126), seeds included."""
        found = set(u for u in urns if u in self.by_urn)
        for r in self.order:
            if r.urn in found:
                continue
            if direct_edges(r) & found or (include_children and r.parent in found):
                found.add(r.urn)
        return found

    def transitive_dependencies(self, urns: Iterable[str]) -> set[str]:
        found: set[str] = set()
        frontier = [u for u in urns if u in self.by_urn]
        while frontier:
            urn = frontier.pop()
            if urn in found:
                continue
            found.add(urn)
            frontier.extend(self.dependencies_of(urn) - found)
        return found


def schedule_rounds(graph: DependencyGraph, condemned: Iterable[str]) -> dict[str, int]:
    """`ScheduleDeletes` (step_generator.go:2747-2797): URN -> round (0 = first to start)."""
    remaining = set(condemned)
    chains: list[list[str]] = []
    while remaining:
        chain = sorted(u for u in remaining if not (graph.dependencies_of(u) & remaining))
        if not chain:  # a cycle cannot happen in a real snapshot; do not loop forever
            chain = sorted(remaining)
        remaining.difference_update(chain)
        chains.append(chain)
    chains.reverse()
    return {urn: number for number, chain in enumerate(chains) for urn in chain}


@dataclass
class DeleteStep:
    urn: str
    type: str
    name: str
    round: int  # start round: every step of earlier rounds has completed before it starts
    order: int  # completion order: rank by (round, urn); equal rounds complete in either order
    skipped: bool = False  # deleted_with: no provider Delete call
    reason: str = ""
    custom: bool = True

    @property
    def completes_before_round(self) -> int:
        return self.round + 1


class UntargetedDeleteError(ValueError):
    """The engine refuses: a --target delete would also delete resources not targeted."""

    def __init__(self, urns: list[str]):
        self.urns = sorted(urns)
        super().__init__(
            "resources would be destroyed but were not specified in --target (use --target-dependents): "
            + ", ".join(self.urns)
        )


def _matches(urn: str, patterns: Iterable[str]) -> bool:
    # UrnTargets accepts exact URNs and globs with `*`/`**`.
    import fnmatch

    return any(urn == p or (("*" in p) and fnmatch.fnmatchcase(urn, p)) for p in patterns)


def delete_set(
    graph: DependencyGraph,
    targets: Optional[Iterable[str]] = None,
    excludes: Optional[Iterable[str]] = None,
    target_dependents: bool = False,
    exclude_dependents: bool = False,
) -> set[str]:
    everything = set(graph.by_urn)
    targets = list(targets or [])
    excludes = list(excludes or [])
    if targets:
        seeds = {u for u in everything if _matches(u, targets)}
        allowed = graph.depending_on(seeds, include_children=True)
        # replaceWith / deletedWith naming a target (findDependentCascadeReplacements)
        for r in graph.order:
            if r.deleted_with in seeds or set(getattr(r, "replace_with", None) or []) & seeds:
                allowed.add(r.urn)
        untargeted = [u for u in allowed if not _matches(u, targets)]
        if untargeted and not target_dependents:
            raise UntargetedDeleteError(untargeted)
        return allowed
    if excludes:
        seeds = {u for u in everything if _matches(u, excludes)}
        keep = graph.transitive_dependencies(seeds)
        if exclude_dependents:
            frontier = set(keep)
            while True:
                grown = graph.depending_on(frontier, include_children=True)
                grown = graph.transitive_dependencies(grown)
                if grown == frontier:
                    break
                frontier = grown
            keep = frontier
        return everything - keep
    return everything


def destroy_schedule(
    run,
    targets: Optional[Iterable[str]] = None,
    excludes: Optional[Iterable[str]] = None,
    target_dependents: bool = False,
    exclude_dependents: bool = False,
) -> list[DeleteStep]:
    """`pulumi destroy [--target URN ...] [--exclude URN ...]` for a MockRun (or a list of
    registrations). The stack resource itself is not in a mock run and is not modelled."""
    registrations = list(getattr(run, "registrations", run))
    graph = DependencyGraph(registrations)
    condemned = delete_set(graph, targets, excludes, target_dependents, exclude_dependents)
    rounds = schedule_rounds(graph, condemned)
    ranked = sorted(condemned, key=lambda u: (rounds[u], u))
    steps = []
    for order, urn in enumerate(ranked):
        r = graph.by_urn[urn]
        skipped = bool(r.deleted_with) and r.deleted_with in condemned
        steps.append(
            DeleteStep(
                urn=urn,
                type=r.type,
                name=r.name,
                round=rounds[urn],
                order=order,
                skipped=skipped,
                reason=f"deleted with {r.deleted_with.rsplit('::', 1)[-1]}" if skipped else "",
                custom=r.custom,
            )
        )
    return steps


def _type_matches(type_token: str, patterns: Iterable[str]) -> bool:
    return any(type_token == p or (p.endswith("*") and type_token.startswith(p[:-1])) for p in patterns)


def check_in_cluster_deletes(run, schedule: Sequence[DeleteStep], api_path_types: Iterable[str]) -> list[str]:
    """Every in-cluster (kubernetes:*) delete must be skipped via deleted_with, or complete
    before the delete of every resource on the API path starts (a strictly earlier round).
    Returns one message per violation; [] means the destroy cannot strand a `helm uninstall`."""
    api_path_types = list(api_path_types)
    api_steps = [s for s in schedule if _type_matches(s.type, api_path_types) and not s.skipped]
    problems = []
    for step in schedule:
        if not step.type.startswith("kubernetes:") or step.type == K8S_PROVIDER or step.skipped:
            continue
        blockers = [a for a in api_steps if a.round <= step.round]
        if blockers:
            first = min(blockers, key=lambda a: (a.round, a.urn))
            problems.append(
                f"{step.type} {step.name} is deleted in round {step.round}, but {len(blockers)} API-path "
                f"resource(s) start deleting in the same or an earlier round (e.g. {first.type} {first.name} in "
                f"round {first.round}): the Kubernetes API may be gone; set deleted_with or depend on the path"
            )
    return problems
