"""The scheduling framework's contract: statuses, cycle state, and the plugin extension points.

Modelled on kube-scheduler's ``pkg/scheduler/framework/interface.go``. A plugin is any
object with a ``name`` and one or more of the extension-point methods below; the
framework (``runtime.Framework``) finds out which by the protocols it satisfies and
knows nothing else about it.

As in Go, where a nil ``*Status`` means success, a plugin returns ``None`` for
success: the filter and score loops run thousands of times per pod, and not
allocating a status on the happy path is most of what keeps them fast.

Everything here runs on the scheduler's one event loop. The scheduling cycle is
synchronous (no ``await`` between taking the snapshot and assuming the pod), so
no informer event can change the cluster view under a cycle; only the binding
cycle (PreBind, Bind) awaits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from k8py.scheduler.framework.types import NodeInfo, PodInfo

Obj = dict[str, Any]

MAX_NODE_SCORE = 100
MIN_NODE_SCORE = 0
MAX_TOTAL_SCORE = (1 << 63) - 1


class Code(IntEnum):
    """framework.Code, in upstream's order."""

    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    WAIT = 4
    SKIP = 5
    PENDING = 6


class Status:
    """framework.Status: a non-success outcome of a plugin (success is ``None``)."""

    __slots__ = ("code", "reasons", "plugin", "error")

    def __init__(
        self, code: Code, *reasons: str, plugin: str = "", error: BaseException | None = None
    ) -> None:
        self.code = code
        self.reasons: tuple[str, ...] = reasons or ((str(error),) if error is not None else ())
        self.plugin = plugin
        self.error = error

    def is_rejected(self) -> bool:
        """Unschedulable, UnschedulableAndUnresolvable or Pending."""
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE, Code.PENDING)

    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        self.plugin = plugin
        return self

    def __repr__(self) -> str:
        return f"Status({self.code.name}, {self.reasons!r}, plugin={self.plugin!r})"


def unschedulable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE, *reasons)


def unresolvable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, *reasons)


def as_status(error: BaseException) -> Status:
    return Status(Code.ERROR, error=error)


SKIP = Status(Code.SKIP)


def is_success(status: Status | None) -> bool:
    return status is None or status.code == Code.SUCCESS


class CycleState(dict[str, Any]):
    """framework.CycleState: what plugins computed for one pod in one cycle, keyed by plugin.

    ``skip_filter_plugins``/``skip_score_plugins`` hold the plugins whose PreFilter or
    PreScore returned Skip. ``clone`` is shallow, as upstream's is (values that a plugin
    mutates during preemption's what-if runs implement ``clone()`` themselves).
    """

    def __init__(self) -> None:
        super().__init__()
        self.skip_filter_plugins: set[str] = set()
        self.skip_score_plugins: set[str] = set()

    def clone(self) -> CycleState:
        c = CycleState()
        for k, v in self.items():
            c[k] = v.clone() if hasattr(v, "clone") else v
        c.skip_filter_plugins = set(self.skip_filter_plugins)
        c.skip_score_plugins = set(self.skip_score_plugins)
        return c


@dataclass(slots=True)
class PreFilterResult:
    """Nodes a PreFilter plugin narrowed the search to; ``None`` means all nodes."""

    node_names: set[str] | None = None

    def all_nodes(self) -> bool:
        return self.node_names is None

    def merge(self, other: PreFilterResult | None) -> PreFilterResult:
        if other is None or other.node_names is None:
            return self
        if self.node_names is None:
            return PreFilterResult(set(other.node_names))
        return PreFilterResult(self.node_names & other.node_names)


@dataclass(slots=True)
class NodeScore:
    name: str
    score: int


@dataclass(slots=True)
class PostFilterResult:
    """What PostFilter (preemption) decided: the node the pod is nominated to."""

    nominated_node_name: str = ""
    # upstream's ModeOverride: "" keeps the pod's nomination as is
    mode: str = "Override"


@dataclass(slots=True)
class NodeToStatus:
    """framework.NodeToStatus: why each node was rejected; nodes not listed got ``absent``."""

    statuses: dict[str, Status] = field(default_factory=dict)
    absent: Status | None = None

    def get(self, node: str) -> Status | None:
        return self.statuses.get(node, self.absent)

    def set(self, node: str, status: Status) -> None:
        self.statuses[node] = status

    def __len__(self) -> int:
        return len(self.statuses)


class ActionType(IntFlag):
    """framework.ActionType: what happened to a resource in a cluster event."""

    ADD = 1
    DELETE = 2
    UPDATE_NODE_ALLOCATABLE = 4
    UPDATE_NODE_LABEL = 8
    UPDATE_NODE_TAINT = 16
    UPDATE_NODE_CONDITION = 32
    UPDATE_NODE_ANNOTATION = 64
    UPDATE_POD_LABEL = 128
    UPDATE_POD_SCALE_DOWN = 256
    UPDATE_POD_TOLERATIONS = 512
    UPDATE_POD_SCHEDULING_GATES_ELIMINATED = 1024
    UPDATE_POD_GENERATED_RESOURCE_CLAIM = 2048
    UPDATE = (
        UPDATE_NODE_ALLOCATABLE
        | UPDATE_NODE_LABEL
        | UPDATE_NODE_TAINT
        | UPDATE_NODE_CONDITION
        | UPDATE_NODE_ANNOTATION
        | UPDATE_POD_LABEL
        | UPDATE_POD_SCALE_DOWN
        | UPDATE_POD_TOLERATIONS
        | UPDATE_POD_SCHEDULING_GATES_ELIMINATED
        | UPDATE_POD_GENERATED_RESOURCE_CLAIM
        | 4096
    )
    ALL = ADD | DELETE | UPDATE


class EventResource:
    POD = "Pod"
    ASSIGNED_POD = "AssignedPod"
    UNSCHEDULED_POD = "UnscheduledPod"
    NODE = "Node"
    PVC = "PersistentVolumeClaim"
    PV = "PersistentVolume"
    STORAGE_CLASS = "StorageClass"
    CSI_NODE = "CSINode"
    CSI_DRIVER = "CSIDriver"
    CSI_STORAGE_CAPACITY = "CSIStorageCapacity"
    WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """framework.ClusterEvent: a change to the cluster that may make pods schedulable."""

    resource: str
    action: ActionType
    label: str = ""

    def matches(self, registered: ClusterEvent) -> bool:
        """Whether this (concrete) event is covered by an event a plugin registered for."""
        if registered.resource == EventResource.WILDCARD:
            return bool(registered.action & self.action)
        if registered.resource == EventResource.POD and self.resource in (
            EventResource.ASSIGNED_POD,
            EventResource.UNSCHEDULED_POD,
        ):
            return bool(registered.action & self.action)
        return registered.resource == self.resource and bool(registered.action & self.action)


class QueueingHint(IntEnum):
    SKIP = 0
    QUEUE = 1


class QueueingHintFn(Protocol):
    def __call__(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint: ...


@dataclass(frozen=True, slots=True)
class ClusterEventWithHint:
    event: ClusterEvent
    hint: QueueingHintFn | None = None


# -- extension points --------------------------------------------------------------------------


class Plugin(Protocol):
    name: str


@runtime_checkable
class PreEnqueuePlugin(Protocol):
    name: str

    def pre_enqueue(self, pod: Obj) -> Status | None: ...


@runtime_checkable
class QueueSortPlugin(Protocol):
    name: str

    def less(self, a: Any, b: Any) -> bool: ...


@runtime_checkable
class EnqueueExtensions(Protocol):
    name: str

    def events_to_register(self) -> list[ClusterEventWithHint]: ...


class PreFilterExtensions(Protocol):
    """Incremental updates of a PreFilter's state when preemption adds or removes pods."""

    def add_pod(
        self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo, node: NodeInfo
    ) -> Status | None: ...

    def remove_pod(
        self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo, node: NodeInfo
    ) -> Status | None: ...


@runtime_checkable
class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]: ...

    def pre_filter_extensions(self) -> PreFilterExtensions | None: ...


@runtime_checkable
class FilterPlugin(Protocol):
    name: str

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None: ...


@runtime_checkable
class PostFilterPlugin(Protocol):
    name: str

    async def post_filter(
        self, state: CycleState, pod: PodInfo, filtered: NodeToStatus
    ) -> tuple[PostFilterResult | None, Status | None]: ...


@runtime_checkable
class PreScorePlugin(Protocol):
    name: str

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None: ...


class ScoreExtensions(Protocol):
    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[NodeScore]) -> Status | None: ...


@runtime_checkable
class ScorePlugin(Protocol):
    name: str

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> tuple[int, Status | None]: ...

    def score_extensions(self) -> ScoreExtensions | None: ...


@runtime_checkable
class ReservePlugin(Protocol):
    name: str

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None: ...

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None: ...


@runtime_checkable
class PermitPlugin(Protocol):
    name: str

    def permit(self, state: CycleState, pod: PodInfo, node_name: str) -> tuple[Status | None, float]: ...


@runtime_checkable
class PreBindPlugin(Protocol):
    name: str

    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None: ...


@runtime_checkable
class BindPlugin(Protocol):
    name: str

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None: ...


@runtime_checkable
class PostBindPlugin(Protocol):
    name: str

    def post_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> None: ...


class Handle(Protocol):
    """framework.Handle (implemented by ``runtime.Framework``): what a plugin may use besides
    its arguments. Preemption also uses the framework's run_* methods through it."""

    def snapshot(self) -> Any:
        """The cycle's ``Snapshot`` (a SharedLister)."""
        ...

    def lister(self, resource: str) -> Any:
        """The informer cache (an ``Indexer``) of a resource: "pods", "namespaces", "services", ..."""
        ...

    @property
    def client(self) -> Any: ...
