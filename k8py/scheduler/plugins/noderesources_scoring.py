"""The node resource scoring strategies of NodeResourcesFit and NodeResourcesBalancedAllocation.

Modelled on ``noderesources/resource_allocation.go``, ``least_allocated.go``,
``most_allocated.go``, ``requested_to_capacity_ratio.go`` and ``balanced_allocation.go``:

* for each configured resource, a node's *allocatable* and *requested* amounts, the latter
  being what its pods request plus what the incoming pod requests. Fit counts cpu and memory
  as ``NonZeroRequested`` (a container without a cpu/memory request counts as 100m / 200Mi,
  so best-effort pods still spread); BalancedAllocation uses the real requests. A scalar
  (extended, hugepages) resource the pod does not request, or that the node does not have, is
  left out (allocatable 0);
* a strategy turns the two lists into a score in [0, 100]: LeastAllocated favours free
  capacity, MostAllocated packs, RequestedToCapacityRatio follows a user-given broken-linear
  shape of utilization (scores 0-10 scaled to 0-100), each averaged with the resources'
  weights; BalancedAllocation scores ``(1 - std) * 100`` of the requested fractions.

All arithmetic is Go's: integer divisions of non-negative numbers, ``math.Round`` (half away
from zero) where upstream rounds, ``int64(float)`` truncation for the balanced score.

``ResourceAllocationScorer.score`` runs once per node per pod, so the common configuration
(cpu and memory, in either order) gets a specialized function without lists or loops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from k8py.scheduler.framework.interface import MAX_NODE_SCORE, CycleState
from k8py.scheduler.framework.types import NodeInfo, PodInfo, is_scalar_resource_name
from k8py.scheduler.plugins.helper import build_broken_linear_function

LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"
REQUESTED_TO_CAPACITY_RATIO = "RequestedToCapacityRatio"
STRATEGIES = (LEAST_ALLOCATED, MOST_ALLOCATED, REQUESTED_TO_CAPACITY_RATIO)

DEFAULT_RESOURCES: tuple[dict[str, Any], ...] = (
    {"name": "cpu", "weight": 1},
    {"name": "memory", "weight": 1},
)

MAX_CUSTOM_PRIORITY_SCORE = 10
MAX_UTILIZATION = 100
MAX_RESOURCE_WEIGHT = 100

# resource kinds
_CPU, _MEMORY, _EPHEMERAL, _SCALAR, _OTHER = range(5)

Scorer = Callable[[Sequence[int], Sequence[int]], int]


def _kind(name: str) -> int:
    if name == "cpu":
        return _CPU
    if name == "memory":
        return _MEMORY
    if name == "ephemeral-storage":
        return _EPHEMERAL
    if is_scalar_resource_name(name):
        return _SCALAR
    return _OTHER


def _go_round(x: float) -> int:
    """math.Round: half away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


# -- strategies ---------------------------------------------------------------------------------


def least_requested_score(requested: int, capacity: int) -> int:
    """Free capacity in [0, 100]; 0 when the node is (over)full or has none."""
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_requested_score(requested: int, capacity: int) -> int:
    """Used capacity in [0, 100]; requests above capacity (non-zero defaults) count as full."""
    if capacity == 0:
        return 0
    if requested > capacity:
        requested = capacity
    return requested * MAX_NODE_SCORE // capacity


def _weighted(per_resource: Callable[[int, int], int], weights: Sequence[int]) -> Scorer:
    def scorer(requested: Sequence[int], allocatable: Sequence[int]) -> int:
        node_score = weight_sum = 0
        for i, alloc in enumerate(allocatable):
            if alloc == 0:
                continue
            w = weights[i]
            node_score += per_resource(requested[i], alloc) * w
            weight_sum += w
        return node_score // weight_sum if weight_sum else 0

    return scorer


def least_resource_scorer(weights: Sequence[int]) -> Scorer:
    return _weighted(least_requested_score, weights)


def most_resource_scorer(weights: Sequence[int]) -> Scorer:
    return _weighted(most_requested_score, weights)


def requested_to_capacity_ratio_scorer(weights: Sequence[int], shape: Sequence[Mapping[str, Any]]) -> Scorer:
    """The shape's scores (0-10) scaled to the node score range; resources scoring 0 do not count."""
    scale = MAX_NODE_SCORE // MAX_CUSTOM_PRIORITY_SCORE
    raw = build_broken_linear_function(
        [(int(p.get("utilization", 0)), int(p.get("score", 0)) * scale) for p in shape]
    )
    full = raw(MAX_UTILIZATION)

    def resource_score(requested: int, capacity: int) -> int:
        if capacity == 0 or requested > capacity:
            return full
        return raw(requested * MAX_UTILIZATION // capacity)

    def scorer(requested: Sequence[int], allocatable: Sequence[int]) -> int:
        node_score = weight_sum = 0
        for i, alloc in enumerate(allocatable):
            if alloc == 0:
                continue
            s = resource_score(requested[i], alloc)
            if s > 0:
                w = weights[i]
                node_score += s * w
                weight_sum += w
        return _go_round(node_score / weight_sum) if weight_sum else 0

    return scorer


def balanced_resource_scorer(requested: Sequence[int], allocatable: Sequence[int]) -> int:
    """(1 - std of the requested fractions) * 100; with two resources std = |f1 - f2| / 2."""
    fractions = []
    total = 0.0
    for i, alloc in enumerate(allocatable):
        if alloc == 0:
            continue
        f = requested[i] / alloc
        if f > 1:
            f = 1.0
        total += f
        fractions.append(f)
    std = 0.0
    n = len(fractions)
    if n == 2:
        std = abs((fractions[0] - fractions[1]) / 2)
    elif n > 2:
        mean = total / n
        std = math.sqrt(sum((f - mean) * (f - mean) for f in fractions) / n)
    return int((1 - std) * MAX_NODE_SCORE)


# -- the allocation scorer ---------------------------------------------------------------------


class ResourceAllocationScorer:
    """resourceAllocationScorer: the configured resources, the strategy, and whether cpu/memory
    count by real requests (`use_requested`) or by NonZeroRequested."""

    def __init__(
        self,
        name: str,
        resources: Sequence[Mapping[str, Any]],
        scorer: Scorer,
        *,
        use_requested: bool = False,
        fast: FastFactory | None = None,
    ) -> None:
        self.name = name
        self.resources = [(r["name"], int(r.get("weight", 1))) for r in resources]
        self.kinds = tuple((_kind(n), n) for n, _ in self.resources)
        self.scorer = scorer
        self.use_requested = use_requested
        self._fast: FastFactory | None = None
        # cpu and memory (the default, in either order) get a function without lists or loops
        if fast is not None and len(self.kinds) == 2 and {k for k, _ in self.kinds} == {_CPU, _MEMORY}:
            self._fast = fast

    def pod_requests(self, pod: PodInfo) -> tuple[int, ...]:
        """calculatePodResourceRequestList, in the resources' order."""
        req = pod.requests()
        if self.use_requested:
            cpu, mem = req.milli_cpu, req.memory
        else:
            cpu, mem = pod.non_zero_requests()
        out = []
        for kind, name in self.kinds:
            if kind == _CPU:
                out.append(cpu)
            elif kind == _MEMORY:
                out.append(mem)
            else:
                out.append(req.get(name))
        return tuple(out)

    def allocatable_requested(
        self, node: NodeInfo, pod_requests: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """calculateResourceAllocatableRequest for every resource: (requested, allocatable)."""
        alloc = node.allocatable
        used = node.requested
        requested = [0] * len(self.kinds)
        allocatable = [0] * len(self.kinds)
        for i, (kind, name) in enumerate(self.kinds):
            pr = pod_requests[i]
            if kind == _CPU:
                a = alloc.milli_cpu
                r = (used.milli_cpu if self.use_requested else node.non_zero_cpu) + pr
            elif kind == _MEMORY:
                a = alloc.memory
                r = (used.memory if self.use_requested else node.non_zero_mem) + pr
            elif kind == _EPHEMERAL:
                a = alloc.ephemeral_storage
                r = used.ephemeral_storage + pr
            elif kind == _SCALAR and pr != 0 and name in alloc.scalar_resources:
                a = alloc.scalar_resources[name]
                r = used.scalar_resources.get(name, 0) + pr
            else:
                continue  # not requested, or not a resource the node reports
            if a == 0:
                continue
            allocatable[i] = a
            requested[i] = r
        return requested, allocatable

    def score(self, node: NodeInfo, pod_requests: Sequence[int]) -> int:
        """The node's score for a pod requesting `pod_requests` (from ``pod_requests``)."""
        requested, allocatable = self.allocatable_requested(node, pod_requests)
        return self.scorer(requested, allocatable)

    def plugin_score(self, key: str) -> PluginScore:
        """A plugin's ``score(state, pod, node_info)``, reading the pod's requests from the
        CycleState under `key` (computing them when PreScore did not run): one Python call per
        node, the cpu+memory arithmetic inlined."""
        pod_requests = self.pod_requests
        if self._fast is not None:
            ci = 0 if self.kinds[0][0] == _CPU else 1
            mi = 1 - ci
            return self._fast(ci, mi, self.resources[ci][1], self.resources[mi][1], key, pod_requests)
        score = self.score

        def generic(state: CycleState, pod: PodInfo, node: NodeInfo) -> tuple[int, None]:
            try:
                reqs = state[key]
            except KeyError:
                reqs = pod_requests(pod)
            return score(node, reqs), None

        return generic


# Specialized cpu+memory scorers: a factory gets the positions of cpu and memory in the pod's
# request tuple, their weights, the CycleState key of that tuple and the function computing it
# when PreScore did not run, and returns the plugin's score function. The arithmetic is the
# generic path's (MAX_NODE_SCORE is 100); least/most count NonZeroRequested, balanced the requests.

PluginScore = Callable[[CycleState, PodInfo, NodeInfo], tuple[int, None]]
FastFactory = Callable[[int, int, int, int, str, Callable[[PodInfo], Sequence[int]]], PluginScore]


def _least_cpu_memory(
    ci: int, mi: int, wc: int, wm: int, key: str, pod_requests: Callable[[PodInfo], Sequence[int]]
) -> PluginScore:
    both = wc + wm

    def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> tuple[int, None]:
        try:
            reqs = state[key]
        except KeyError:
            reqs = pod_requests(pod)
        alloc = node.allocatable
        ac = alloc.milli_cpu
        am = alloc.memory
        if ac and am:
            rc = node.non_zero_cpu + reqs[ci]
            rm = node.non_zero_mem + reqs[mi]
            sc = (ac - rc) * 100 // ac if rc <= ac else 0
            sm = (am - rm) * 100 // am if rm <= am else 0
            return (sc * wc + sm * wm) // both, None
        if ac:
            rc = node.non_zero_cpu + reqs[ci]
            return ((ac - rc) * 100 // ac if rc <= ac else 0), None
        if am:
            rm = node.non_zero_mem + reqs[mi]
            return ((am - rm) * 100 // am if rm <= am else 0), None
        return _ZERO

    return score


def _most_cpu_memory(
    ci: int, mi: int, wc: int, wm: int, key: str, pod_requests: Callable[[PodInfo], Sequence[int]]
) -> PluginScore:
    both = wc + wm

    def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> tuple[int, None]:
        try:
            reqs = state[key]
        except KeyError:
            reqs = pod_requests(pod)
        alloc = node.allocatable
        ac = alloc.milli_cpu
        am = alloc.memory
        if ac and am:
            rc = node.non_zero_cpu + reqs[ci]
            rm = node.non_zero_mem + reqs[mi]
            sc = (rc if rc < ac else ac) * 100 // ac
            sm = (rm if rm < am else am) * 100 // am
            return (sc * wc + sm * wm) // both, None
        if ac:
            rc = node.non_zero_cpu + reqs[ci]
            return (rc if rc < ac else ac) * 100 // ac, None
        if am:
            rm = node.non_zero_mem + reqs[mi]
            return (rm if rm < am else am) * 100 // am, None
        return _ZERO

    return score


def _balanced_cpu_memory(
    ci: int, mi: int, wc: int, wm: int, key: str, pod_requests: Callable[[PodInfo], Sequence[int]]
) -> PluginScore:
    def score(state: CycleState, pod: PodInfo, node: NodeInfo) -> tuple[int, None]:
        try:
            reqs = state[key]
        except KeyError:
            reqs = pod_requests(pod)
        alloc = node.allocatable
        ac = alloc.milli_cpu
        am = alloc.memory
        if not ac or not am:
            return _HUNDRED  # at most one fraction: no deviation
        used = node.requested
        fc = (used.milli_cpu + reqs[ci]) / ac
        fm = (used.memory + reqs[mi]) / am
        if fc > 1:
            fc = 1.0
        if fm > 1:
            fm = 1.0
        # the operations of balanced_resource_scorer, in resource order: the same float result
        d = (fc - fm) / 2 if ci == 0 else (fm - fc) / 2
        return int((1 - (d if d >= 0 else -d)) * 100), None

    return score


_ZERO = (0, None)
_HUNDRED = (100, None)


def fit_scorer(strategy: Mapping[str, Any]) -> ResourceAllocationScorer:
    """The scorer of NodeResourcesFit's (validated, defaulted) scoringStrategy."""
    kind = strategy.get("type") or LEAST_ALLOCATED
    resources = strategy.get("resources") or DEFAULT_RESOURCES
    weights = [int(r.get("weight", 1)) for r in resources]
    if kind == LEAST_ALLOCATED:
        return ResourceAllocationScorer(
            kind, resources, least_resource_scorer(weights), fast=_least_cpu_memory
        )
    if kind == MOST_ALLOCATED:
        return ResourceAllocationScorer(kind, resources, most_resource_scorer(weights), fast=_most_cpu_memory)
    shape = (strategy.get("requestedToCapacityRatio") or {}).get("shape") or ()
    return ResourceAllocationScorer(kind, resources, requested_to_capacity_ratio_scorer(weights, shape))


def balanced_scorer(resources: Sequence[Mapping[str, Any]] | None) -> ResourceAllocationScorer:
    return ResourceAllocationScorer(
        "NodeResourcesBalancedAllocation",
        resources or DEFAULT_RESOURCES,
        balanced_resource_scorer,
        use_requested=True,
        fast=_balanced_cpu_memory,
    )


# -- argument validation (ValidateNodeResourcesFitArgs / ...BalancedAllocationArgs) ---------------


def validate_fit_args(args: Mapping[str, Any]) -> None:
    errs: list[str] = []
    for i, group in enumerate(args.get("ignoredResourceGroups") or ()):
        if "/" in group:
            errs.append(
                f"ignoredResourceGroups[{i}]: Invalid value: \"{group}\": resource group name can't contain '/'"
            )
    strategy = args.get("scoringStrategy")
    if strategy is not None:
        kind = strategy.get("type")
        if kind not in STRATEGIES:
            supported = ", ".join(f'"{s}"' for s in STRATEGIES)
            errs.append(f'scoringStrategy.type: Unsupported value: "{kind}": supported values: {supported}')
        errs += _resource_errors(
            strategy.get("resources") or (), "scoringStrategy.resources", exact_weight=False
        )
        if kind == REQUESTED_TO_CAPACITY_RATIO:
            shape = (strategy.get("requestedToCapacityRatio") or {}).get("shape") or []
            errs += _shape_errors(shape, "scoringStrategy.requestedToCapacityRatio.shape")
    if errs:
        raise ValueError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")


def validate_balanced_args(args: Mapping[str, Any]) -> None:
    errs = _resource_errors(args.get("resources") or (), "resources", exact_weight=True)
    if errs:
        raise ValueError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")


def _resource_errors(resources: Sequence[Mapping[str, Any]], path: str, *, exact_weight: bool) -> list[str]:
    errs: list[str] = []
    seen: set[str] = set()
    for i, r in enumerate(resources):
        name = r.get("name", "")
        weight = r.get("weight", 0)
        if name in seen:
            errs.append(f'{path}[{i}].name: Duplicate value: "{name}"')
        seen.add(name)
        if exact_weight:
            if weight != 1:
                errs.append(f"{path}[{i}].weight: Invalid value: {weight}: must be 1")
        elif not isinstance(weight, int) or not 1 <= weight <= MAX_RESOURCE_WEIGHT:
            errs.append(
                f"{path}[{i}].weight: Invalid value: {weight}: resource weight of {name} should be in range "
                f"[1, {MAX_RESOURCE_WEIGHT}]"
            )
    return errs


def _shape_errors(shape: Sequence[Mapping[str, Any]], path: str) -> list[str]:
    if not shape:
        return [f"{path}: Required value: at least one point must be specified"]
    errs: list[str] = []
    for i, p in enumerate(shape):
        u, s = p.get("utilization", 0), p.get("score", 0)
        if not 0 <= u <= MAX_UTILIZATION:
            errs.append(
                f"{path}[{i}].utilization: Invalid value: {u}: not in valid range [0, {MAX_UTILIZATION}]"
            )
        elif i > 0 and u <= shape[i - 1].get("utilization", 0):
            errs.append(
                f"{path}[{i}].utilization: Invalid value: {u}: utilization values must be sorted in increasing order"
            )
        if not 0 <= s <= MAX_CUSTOM_PRIORITY_SCORE:
            errs.append(
                f"{path}[{i}].score: Invalid value: {s}: not in valid range [0, {MAX_CUSTOM_PRIORITY_SCORE}]"
            )
    return errs
