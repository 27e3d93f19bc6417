"""NodeResourcesFit and NodeResourcesBalancedAllocation.

``Fit`` (NodeResourcesFit) filters out the nodes without room for the pod: a pod slot
("Too many pods", even for a pod requesting nothing), then cpu, memory, ephemeral-storage and
every scalar resource (extended resources, hugepages) the pod requests, one reason per
insufficient resource in that order (``ignoredResources``/``ignoredResourceGroups`` skip
extended resources). Requests are component-helpers' PodRequests: containers, raised to what
init containers need (sidecars add up), plus the pod overhead. It also scores nodes with the
configured ``scoringStrategy`` (see ``noderesources_scoring``).

``BalancedAllocation`` scores nodes by how evenly the pod would use their resources.

PreFilter packs the pod's requests into a tuple once; Filter answers None after a handful of
integer comparisons when everything fits and only computes reasons for nodes that reject.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from k8py.scheduler.framework.interface import (
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    Code,
    CycleState,
    EventResource,
    Handle,
    PreFilterResult,
    QueueingHint,
    Status,
)
from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo, Resource, is_extended_resource_name
from k8py.scheduler.plugins.noderesources_scoring import (
    balanced_scorer,
    fit_scorer,
    validate_balanced_args,
    validate_fit_args,
)

FIT_NAME = "NodeResourcesFit"
BALANCED_ALLOCATION_NAME = "NodeResourcesBalancedAllocation"
_FIT_PRESCORE_KEY = "PreScore" + FIT_NAME


class InsufficientResource(NamedTuple):
    resource_name: str
    reason: str
    requested: int
    used: int
    capacity: int


class _PodRequest(NamedTuple):
    """What Filter needs of the pod's requests."""

    milli_cpu: int
    memory: int
    ephemeral_storage: int
    scalars: tuple[tuple[str, int], ...]  # non-zero scalar requests, ignored resources left out
    resource: Resource


def fits_request(
    pod_request: Resource,
    node_info: NodeInfo,
    ignored_resources: frozenset[str] | set[str] = frozenset(),
    ignored_groups: frozenset[str] | set[str] = frozenset(),
) -> list[InsufficientResource]:
    """fitsRequest: every resource the node lacks for `pod_request`, in upstream's order."""
    out: list[InsufficientResource] = []
    alloc = node_info.allocatable
    used = node_info.requested
    allowed = alloc.allowed_pod_number
    if len(node_info.pods) + 1 > allowed:
        out.append(InsufficientResource("pods", "Too many pods", 1, len(node_info.pods), allowed))
    r = pod_request
    if r.milli_cpu == 0 and r.memory == 0 and r.ephemeral_storage == 0 and not r.scalar_resources:
        return out
    if r.milli_cpu > 0 and r.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        out.append(
            InsufficientResource("cpu", "Insufficient cpu", r.milli_cpu, used.milli_cpu, alloc.milli_cpu)
        )
    if r.memory > 0 and r.memory > alloc.memory - used.memory:
        out.append(InsufficientResource("memory", "Insufficient memory", r.memory, used.memory, alloc.memory))
    if r.ephemeral_storage > 0 and r.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage:
        out.append(
            InsufficientResource(
                "ephemeral-storage",
                "Insufficient ephemeral-storage",
                r.ephemeral_storage,
                used.ephemeral_storage,
                alloc.ephemeral_storage,
            )
        )
    for name, q in r.scalar_resources.items():
        if q == 0:
            continue
        if is_extended_resource_name(name) and (
            name in ignored_resources or (ignored_groups and name.split("/", 1)[0] in ignored_groups)
        ):
            continue
        have = alloc.scalar_resources.get(name, 0)
        in_use = used.scalar_resources.get(name, 0)
        if q > have - in_use:
            out.append(InsufficientResource(name, f"Insufficient {name}", q, in_use, have))
    return out


def fits(pod: Obj, node_info: NodeInfo) -> list[InsufficientResource]:
    """noderesources.Fits: what `node_info` lacks to run `pod` (empty when it fits)."""
    return fits_request(PodInfo(pod).requests(), node_info)


def _node_info(node: Obj) -> NodeInfo:
    return NodeInfo(node)


class Fit:
    name = FIT_NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        validate_fit_args(args)
        self.handle = handle
        self.ignored_resources = frozenset(args.get("ignoredResources") or ())
        self.ignored_resource_groups = frozenset(args.get("ignoredResourceGroups") or ())
        self.scorer = fit_scorer(args.get("scoringStrategy") or {})
        # the per-node score, built for the configured strategy and resources
        self.score = self.scorer.plugin_score(_FIT_PRESCORE_KEY)  # type: ignore[method-assign]

    # -- PreFilter / Filter --

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        r = pod.requests()
        ignored, groups = self.ignored_resources, self.ignored_resource_groups
        scalars = tuple(
            (name, q)
            for name, q in r.scalar_resources.items()
            if q != 0
            and not (
                is_extended_resource_name(name)
                and (name in ignored or (groups and name.split("/", 1)[0] in groups))
            )
        )
        state[FIT_NAME] = _PodRequest(r.milli_cpu, r.memory, r.ephemeral_storage, scalars, r)
        return None, None

    def pre_filter_extensions(self) -> None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> Status | None:
        try:
            cpu, mem, eph, scalars, r = state[FIT_NAME]
        except KeyError:
            return Status(Code.ERROR, f'error reading "PreFilter{FIT_NAME}" from cycleState: not found')
        alloc = node_info.allocatable
        used = node_info.requested
        if (
            len(node_info.pods) < alloc.allowed_pod_number
            and cpu <= alloc.milli_cpu - used.milli_cpu
            and mem <= alloc.memory - used.memory
            and eph <= alloc.ephemeral_storage - used.ephemeral_storage
        ):
            if not scalars:
                return None
            have, in_use = alloc.scalar_resources, used.scalar_resources
            for name, q in scalars:
                if q > have.get(name, 0) - in_use.get(name, 0):
                    break
            else:
                return None
        insufficient = fits_request(r, node_info, self.ignored_resources, self.ignored_resource_groups)
        if not insufficient:
            return None
        return Status(Code.UNSCHEDULABLE, *(i.reason for i in insufficient))

    # -- PreScore / Score --

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        state[_FIT_PRESCORE_KEY] = self.scorer.pod_requests(pod)
        return None

    def score(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> tuple[int, Status | None]:
        """Replaced per instance by the scorer's function (same result, one call less)."""
        try:
            reqs = state[_FIT_PRESCORE_KEY]
        except KeyError:  # PreScore disabled
            reqs = self.scorer.pod_requests(pod)
        return self.scorer.score(node_info, reqs), None

    def score_extensions(self) -> None:
        return None

    # -- EnqueueExtensions --

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(
                ClusterEvent(EventResource.POD, ActionType.DELETE | ActionType.UPDATE_POD_SCALE_DOWN),
                self._after_pod_event,
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_ALLOCATABLE),
                self._after_node_change,
            ),
        ]

    def _after_pod_event(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """A scheduled pod deleted, or one scaled down in a resource the pod asks for."""
        if new is None:
            if old is not None and not (old.get("spec") or {}).get("nodeName"):
                return QueueingHint.SKIP  # an unscheduled pod freed nothing
            return QueueingHint.QUEUE
        if old is None:
            return QueueingHint.SKIP
        if new["metadata"].get("uid") == pod["metadata"].get("uid"):
            return QueueingHint.QUEUE  # the pod itself got smaller
        if not (new.get("spec") or {}).get("nodeName"):
            return QueueingHint.SKIP
        before, after = PodInfo(old).requests(), PodInfo(new).requests()
        want = PodInfo(pod).requests()
        for name in ("cpu", "memory", "ephemeral-storage", *want.scalar_resources):
            if want.get(name) and before.get(name) > after.get(name):
                return QueueingHint.QUEUE
        return QueueingHint.SKIP

    def _after_node_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """A node added that fits the pod, or one whose allocatable grew where the pod needs it."""
        if new is None or fits(pod, _node_info(new)):
            return QueueingHint.SKIP
        if old is None:
            return QueueingHint.QUEUE
        return QueueingHint.QUEUE if _requested_resources_increased(pod, old, new) else QueueingHint.SKIP


def _requested_resources_increased(pod: Obj, old: Obj, new: Obj) -> bool:
    """haveAnyRequestedResourcesIncreased."""
    r = PodInfo(pod).requests()
    before, after = _node_info(old).allocatable, _node_info(new).allocatable
    if after.allowed_pod_number > before.allowed_pod_number:
        return True
    if r.milli_cpu == 0 and r.memory == 0 and r.ephemeral_storage == 0 and not r.scalar_resources:
        return False
    if (
        (r.milli_cpu > 0 and after.milli_cpu > before.milli_cpu)
        or (r.memory > 0 and after.memory > before.memory)
        or (r.ephemeral_storage > 0 and after.ephemeral_storage > before.ephemeral_storage)
    ):
        return True
    return any(
        q and after.scalar_resources.get(name, 0) > before.scalar_resources.get(name, 0)
        for name, q in r.scalar_resources.items()
    )


class BalancedAllocation:
    name = BALANCED_ALLOCATION_NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        validate_balanced_args(args)
        self.handle = handle
        self.scorer = balanced_scorer(args.get("resources"))
        self.score = self.scorer.plugin_score(BALANCED_ALLOCATION_NAME)  # type: ignore[method-assign]

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        state[BALANCED_ALLOCATION_NAME] = self.scorer.pod_requests(pod)
        return None

    def score(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> tuple[int, Status | None]:
        """Replaced per instance by the scorer's function (same result, one call less)."""
        try:
            reqs = state[BALANCED_ALLOCATION_NAME]
        except KeyError:  # PreScore disabled
            reqs = self.scorer.pod_requests(pod)
        return self.scorer.score(node_info, reqs), None

    def score_extensions(self) -> None:
        return None
