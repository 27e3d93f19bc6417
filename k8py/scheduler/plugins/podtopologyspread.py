"""PodTopologySpread: ``spec.topologySpreadConstraints`` and the cluster's default constraints.

Modelled on kube-scheduler 1.32's ``plugins/podtopologyspread``. Hard constraints
(``whenUnsatisfiable: DoNotSchedule``) are PreFilter + Filter: PreFilter counts, per
constraint and topology domain, the pods in the incoming pod's namespace that the
constraint's selector matches, over the nodes that carry every constraint's topology key and
pass the constraint's node inclusion policies (``nodeAffinityPolicy``: Honor by default,
``nodeTaintsPolicy``: Ignore by default); Filter then rejects a node whose domain would
exceed ``maxSkew`` over the global minimum (taken as 0 while fewer than ``minDomains``
domains exist). Soft constraints (``ScheduleAnyway``) are PreScore + Score +
NormalizeScore: fewer matching pods in a node's domains scores higher, each constraint's
count weighted by ``log(domains + 2)``. A pod without constraints of its own gets the
profile's default constraints (``defaultingType: System``: hostname maxSkew 3 and zone
maxSkew 5, both ScheduleAnyway), with the selector of the Services, ReplicationControllers,
ReplicaSets and StatefulSets that select it (upstream's ``helper.DefaultSelector``).

Performance. Upstream visits every pod on every node in PreFilter (in parallel); in Python
that is milliseconds per pod on a thousand nodes. Here the per-node counts are kept across
scheduling cycles in a :class:`TopologyTally`, one per *signature* (namespace, constraints,
the inclusion inputs), and only the nodes whose ``NodeInfo.generation`` moved since the last
cycle (typically the one that got the previous pod) are recounted. The trade-off: the tally
relies on the framework's invariant that every change to a node or its pods bumps the
NodeInfo's generation, and it holds memory for a bounded number of recent signatures. The
cycle state shares the tally's count dicts (copy-on-write: preemption's ``add_pod`` /
``remove_pod`` copy before changing them), so Filter and Score read plain dicts and allocate
nothing on the happy path.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from k8py.api.selectors import LabelSelector, Operator, Requirement
from k8py.scheduler.framework.interface import (
    MAX_NODE_SCORE,
    SKIP,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    Code,
    CycleState,
    EventResource,
    Handle,
    NodeScore,
    PreFilterResult,
    QueueingHint,
    Status,
    as_status,
)
from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo
from k8py.scheduler.plugins.helper import (
    compile_tolerations,
    compiled_tolerate,
    do_not_schedule_taints_filter,
)
from k8py.scheduler.plugins.nodeaffinity import RequiredNodeAffinity

NAME = "PodTopologySpread"
PRE_FILTER_KEY = "PreFilter" + NAME
PRE_SCORE_KEY = "PreScore" + NAME

ERR_REASON_CONSTRAINTS_NOT_MATCH = "node(s) didn't match pod topology spread constraints"
ERR_REASON_NODE_LABEL_NOT_MATCH = ERR_REASON_CONSTRAINTS_NOT_MATCH + " (missing required label)"

LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_TOPOLOGY_ZONE = "topology.kubernetes.io/zone"

DO_NOT_SCHEDULE = "DoNotSchedule"
SCHEDULE_ANYWAY = "ScheduleAnyway"
HONOR = "Honor"
IGNORE = "Ignore"

SYSTEM_DEFAULTING = "System"
LIST_DEFAULTING = "List"

SYSTEM_DEFAULT_CONSTRAINTS: tuple[Obj, ...] = (
    {"topologyKey": LABEL_HOSTNAME, "whenUnsatisfiable": SCHEDULE_ANYWAY, "maxSkew": 3},
    {"topologyKey": LABEL_TOPOLOGY_ZONE, "whenUnsatisfiable": SCHEDULE_ANYWAY, "maxSkew": 5},
)

_MAX_INT32 = (1 << 31) - 1
_INVALID_SCORE = -1
_EMPTY: Obj = {}
_ZERO = (0, None)

# -- label matching ------------------------------------------------------------------------------

Matcher = Callable[[Mapping[str, str]], bool]


def _never(labels: Mapping[str, str]) -> bool:
    return False


def _always(labels: Mapping[str, str]) -> bool:
    return True


def compile_selector(selector: LabelSelector) -> Matcher:
    """A fast predicate equivalent to ``selector.matches``.

    The equality part (``matchLabels``, single-valued ``In``) is one C-level items-view
    comparison; the remaining requirements are checked one by one."""
    if selector.matches_nothing:
        return _never
    reqs = selector.requirements
    if not reqs:
        return _always
    eq: dict[str, str] = {}
    rest: list[Requirement] = []
    for r in reqs:
        if (
            r.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
            and len(r.values) == 1
            and r.key not in eq
        ):
            eq[r.key] = r.values[0]
        else:
            rest.append(r)
    items = eq.items()
    if not rest:

        def match_eq(labels: Mapping[str, str]) -> bool:
            return items <= labels.items()

        return match_eq
    rest_t = tuple(rest)

    def match(labels: Mapping[str, str]) -> bool:
        if items and not items <= labels.items():
            return False
        for r in rest_t:
            if not r.matches(labels):
                return False
        return True

    return match


def count_pods_match_selector(pods: Iterable[PodInfo], match: Matcher, namespace: str) -> int:
    """countPodsMatchSelector: pods in `namespace` whose labels `match`, terminating ones excluded."""
    n = 0
    for p in pods:
        if p.namespace == namespace and match(p.labels) and not p.pod["metadata"].get("deletionTimestamp"):
            n += 1
    return n


# -- the cross-cycle tally -------------------------------------------------------------------------

Contribution = tuple[Hashable, str, int]  # (slot, topology value, amount)


class TopologyTally:
    """Per-slot, per-topology-value sums of what each node contributes, kept across cycles.

    ``refresh(nodes, contributions_of)`` recomputes the contributions of the nodes whose
    NodeInfo generation changed (or that are new), subtracts those of nodes that are gone,
    and leaves the rest alone. ``sums[slot][value]`` is the total amount, ``nodes[slot][value]``
    how many node contributions made it: a value is present in ``sums`` exactly while at
    least one node contributes to it (a domain with zero matching pods is still a domain).
    Callers treat ``sums`` as read-only; a cycle state that needs to change a dict copies it.
    """

    __slots__ = ("entries", "sums", "nodes")

    def __init__(self) -> None:
        # node name -> (NodeInfo generation, contributions)
        self.entries: dict[str, tuple[int, Sequence[Contribution]]] = {}
        self.sums: dict[Hashable, dict[str, int]] = {}
        self.nodes: dict[Hashable, dict[str, int]] = {}

    def refresh(
        self, infos: Sequence[NodeInfo], contributions_of: Callable[[NodeInfo], Sequence[Contribution]]
    ) -> None:
        entries = self.entries
        get = entries.get
        apply = self._apply
        absent = 0  # NodeInfos without a node (pods of a node not yet known) count for nothing
        for ni in infos:
            e = get(ni.name)
            if e is not None and e[0] == ni.generation:
                continue  # the common case: nothing changed on this node
            if e is not None:
                apply(e[1], -1)
            if ni.node is None:
                absent += 1
                if e is not None:
                    del entries[ni.name]
                continue
            contribs = contributions_of(ni)
            apply(contribs, 1)
            entries[ni.name] = (ni.generation, contribs)
        if len(entries) != len(infos) - absent:  # some nodes are gone
            names = {ni.name for ni in infos if ni.node is not None}
            for name in [n for n in entries if n not in names]:
                apply(entries.pop(name)[1], -1)

    def _apply(self, contribs: Sequence[Contribution], sign: int) -> None:
        sums_by_slot = self.sums
        nodes_by_slot = self.nodes
        for slot, value, amount in contribs:
            sums = sums_by_slot.get(slot)
            if sums is None:
                sums = sums_by_slot[slot] = {}
                nodes_by_slot[slot] = {}
            nodes = nodes_by_slot[slot]
            n = nodes.get(value, 0) + sign
            if n > 0:
                nodes[value] = n
                sums[value] = sums.get(value, 0) + sign * amount
            else:
                nodes.pop(value, None)
                sums.pop(value, None)

    def get(self, slot: Hashable) -> dict[str, int]:
        """The sums of `slot` (shared: do not change it)."""
        found = self.sums.get(slot)
        return found if found is not None else {}


class TallyCache:
    """The tallies of the most recently used signatures (least recently used dropped first)."""

    __slots__ = ("tallies", "limit")

    def __init__(self, limit: int = 32) -> None:
        self.tallies: dict[Hashable, TopologyTally] = {}
        self.limit = limit

    def get(self, signature: Hashable) -> TopologyTally:
        tallies = self.tallies
        tally = tallies.pop(signature, None)
        if tally is None:
            tally = TopologyTally()
            if len(tallies) >= self.limit:
                del tallies[next(iter(tallies))]
        tallies[signature] = tally
        return tally


class NodeCountCache:
    """Per (namespace, selector): node name -> (generation, count of matching pods)."""

    __slots__ = ("counts", "limit")

    def __init__(self, limit: int = 64) -> None:
        self.counts: dict[Hashable, dict[str, tuple[int, int]]] = {}
        self.limit = limit

    def get(self, key: Hashable) -> dict[str, tuple[int, int]]:
        counts = self.counts
        found = counts.pop(key, None)
        if found is None:
            found = {}
            if len(counts) >= self.limit:
                del counts[next(iter(counts))]
        counts[key] = found
        return found


# -- constraints ---------------------------------------------------------------------------------


class Constraint:
    """topologySpreadConstraint: a v1.TopologySpreadConstraint with its selector parsed."""

    __slots__ = (
        "max_skew",
        "topology_key",
        "selector",
        "match",
        "min_domains",
        "node_affinity_policy",
        "node_taints_policy",
    )

    def __init__(
        self,
        max_skew: int,
        topology_key: str,
        selector: LabelSelector,
        min_domains: int = 1,
        node_affinity_policy: str = HONOR,
        node_taints_policy: str = IGNORE,
    ) -> None:
        self.max_skew = max_skew
        self.topology_key = topology_key
        self.selector = selector
        self.match = compile_selector(selector)
        self.min_domains = min_domains
        self.node_affinity_policy = node_affinity_policy
        self.node_taints_policy = node_taints_policy

    def signature(self) -> tuple[Any, ...]:
        return (
            self.max_skew,
            self.topology_key,
            self.selector,
            self.min_domains,
            self.node_affinity_policy,
            self.node_taints_policy,
        )

    def __repr__(self) -> str:
        return (
            f"Constraint(maxSkew={self.max_skew}, topologyKey={self.topology_key!r}, "
            f"selector={self.selector!r}, minDomains={self.min_domains})"
        )


def _merge_label_set_with_selector(match_labels: Mapping[str, str], selector: LabelSelector) -> LabelSelector:
    """mergeLabelSetWithSelector: the set's equalities plus the selector's requirements (a
    Nothing selector has none to add)."""
    reqs = [Requirement(k, Operator.EQUALS, (v,)) for k, v in match_labels.items()]
    if not selector.matches_nothing:
        reqs.extend(selector.requirements)
    return LabelSelector(reqs)


def filter_topology_spread_constraints(
    constraints: Iterable[Mapping[str, Any]], pod_labels: Mapping[str, str], action: str
) -> list[Constraint]:
    """filterTopologySpreadConstraints: the constraints with `action`, selectors parsed and
    matchLabelKeys merged in. Raises on an invalid label selector."""
    out: list[Constraint] = []
    for c in constraints:
        if c.get("whenUnsatisfiable") != action:
            continue
        selector = LabelSelector.from_label_selector(c.get("labelSelector"))
        if keys := c.get("matchLabelKeys"):
            match_labels = {k: pod_labels[k] for k in keys if k in pod_labels}
            if match_labels:
                selector = _merge_label_set_with_selector(match_labels, selector)
        min_domains = c.get("minDomains")
        out.append(
            Constraint(
                int(c.get("maxSkew") or 0),
                c.get("topologyKey") or "",
                selector,
                1 if min_domains is None else int(min_domains),
                c.get("nodeAffinityPolicy") or HONOR,
                c.get("nodeTaintsPolicy") or IGNORE,
            )
        )
    return out


def node_labels_match_spread_constraints(
    labels: Mapping[str, str], constraints: Sequence[Constraint]
) -> bool:
    """nodeLabelsMatchSpreadConstraints: the node has every constraint's topology key."""
    for c in constraints:
        if c.topology_key not in labels:
            return False
    return True


def _in_namespace(indexer: Any, namespace: str) -> list[Obj]:
    """The cached objects in `namespace` (by the namespace index when the cache has one)."""
    try:
        return indexer.by_index("namespace", namespace)
    except KeyError:
        return [o for o in indexer.list() if (o.get("metadata") or _EMPTY).get("namespace") == namespace]


def _controller_of(pod: Obj) -> Mapping[str, Any] | None:
    for ref in (pod.get("metadata") or _EMPTY).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def _parse_group_version(gv: str) -> tuple[str, str] | None:
    """schema.ParseGroupVersion: "v1" is the core group; more than one slash is an error."""
    if not gv:
        return "", ""
    parts = gv.split("/")
    if len(parts) == 1:
        return "", gv
    if len(parts) == 2:
        return parts[0], parts[1]
    return None


def default_selector(pod: Obj, handle: Handle) -> LabelSelector:
    """helper.DefaultSelector: the union of the selectors of the Services selecting the pod
    and of its controlling ReplicationController, ReplicaSet or StatefulSet."""
    meta = pod.get("metadata") or _EMPTY
    namespace = meta.get("namespace") or ""
    pod_items = (meta.get("labels") or _EMPTY).items()
    label_set: dict[str, str] = {}
    for svc in _in_namespace(handle.lister("services"), namespace):
        sel = (svc.get("spec") or _EMPTY).get("selector")
        if sel is None:  # services with nil selectors match nothing, not everything
            continue
        if sel.items() <= pod_items:
            label_set.update(sel)
    selector = LabelSelector.from_set(label_set)
    owner = _controller_of(pod)
    if owner is None:
        return selector
    gv = _parse_group_version(owner.get("apiVersion") or "")
    if gv is None:
        return selector
    gvk = (*gv, owner.get("kind") or "")
    key = f"{namespace}/{owner.get('name') or ''}"
    if gvk == ("", "v1", "ReplicationController"):
        rc = handle.lister("replicationcontrollers").get_by_key(key)
        if rc is not None:
            label_set.update((rc.get("spec") or _EMPTY).get("selector") or {})
            selector = LabelSelector.from_set(label_set)
    elif gvk in (("apps", "v1", "ReplicaSet"), ("apps", "v1", "StatefulSet")):
        resource = "replicasets" if gvk[2] == "ReplicaSet" else "statefulsets"
        owner_obj = handle.lister(resource).get_by_key(key)
        if owner_obj is not None:
            try:
                other = LabelSelector.from_label_selector((owner_obj.get("spec") or _EMPTY).get("selector"))
            except Exception:
                return selector
            if not other.matches_nothing:
                selector = LabelSelector((*selector.requirements, *other.requirements))
    return selector


# -- node inclusion ------------------------------------------------------------------------------


class _Inclusion:
    """The incoming pod's side of the node inclusion policies (matchNodeInclusionPolicies)."""

    __slots__ = ("affinity", "tolerations", "signature")

    def __init__(self, pod: PodInfo, constraints: Sequence[Constraint]) -> None:
        spec = pod.spec
        self.affinity: RequiredNodeAffinity | None = None
        self.tolerations: tuple[Any, ...] | None = None
        sig: list[Any] = []
        if any(c.node_affinity_policy == HONOR for c in constraints):
            required = RequiredNodeAffinity.from_pod(pod.pod)
            if required.selector is not None or required.affinity is not None:
                self.affinity = required
                sig.append(_freeze(spec.get("nodeSelector")))
                sig.append(
                    _freeze(
                        ((spec.get("affinity") or _EMPTY).get("nodeAffinity") or _EMPTY).get(
                            "requiredDuringSchedulingIgnoredDuringExecution"
                        )
                    )
                )
        if any(c.node_taints_policy == HONOR for c in constraints):
            self.tolerations = compile_tolerations(spec.get("tolerations"))
            sig.append(self.tolerations)
        self.signature = tuple(sig)

    def affinity_ok(self, ni: NodeInfo) -> bool:
        return self.affinity is None or self.affinity.matches(ni.labels, ni.name)

    def taints_ok(self, ni: NodeInfo) -> bool:
        tolerations = self.tolerations
        if tolerations is None:
            return True
        for taint in ni.taints:
            if do_not_schedule_taints_filter(taint) and not compiled_tolerate(tolerations, taint):
                return False
        return True

    def node_included(self, c: Constraint, ni: NodeInfo) -> bool:
        if c.node_affinity_policy == HONOR and not self.affinity_ok(ni):
            return False
        if c.node_taints_policy == HONOR and not self.taints_ok(ni):
            return False
        return True


def _freeze(obj: Any) -> Hashable:
    """A hashable, order-insensitive (for mappings) rendering of a JSON value."""
    if isinstance(obj, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in obj.items()))
    if isinstance(obj, list | tuple):
        return tuple(_freeze(v) for v in obj)
    return obj


# -- PreFilter state -----------------------------------------------------------------------------


def _critical_paths(counts: Mapping[str, int]) -> list[Any]:
    """The two smallest (value, count) pairs: [value0, count0, value1, count1] (criticalPaths)."""
    two = heapq.nsmallest(2, counts.items(), key=itemgetter(1))
    if not two:
        return ["", _MAX_INT32, "", _MAX_INT32]
    if len(two) == 1:
        return [two[0][0], two[0][1], "", _MAX_INT32]
    return [two[0][0], two[0][1], two[1][0], two[1][1]]


def _update_critical_paths(p: list[Any], value: str, num: int) -> None:
    """criticalPaths.update, exactly as upstream (the pair is only approximately the two minima
    after updates, which is what preemption's one-node-at-a-time what-ifs need)."""
    if value == p[0]:
        p[1] = num
        if p[1] > p[3]:
            p[0], p[1], p[2], p[3] = p[2], p[3], p[0], p[1]
    elif value == p[2]:
        p[3] = num
        if p[1] > p[3]:
            p[0], p[1], p[2], p[3] = p[2], p[3], p[0], p[1]
    elif num < p[1]:
        p[2], p[3] = p[0], p[1]
        p[0], p[1] = value, num
    elif num < p[3]:
        p[2], p[3] = value, num


class PreFilterState:
    """preFilterState: per constraint, the matching pods by topology value and the critical paths.

    ``checks`` is what Filter reads: per constraint (topology key, counts, limit) where a node
    fails when its domain's count exceeds ``limit = maxSkew + minMatch - selfMatch``."""

    __slots__ = ("constraints", "tp_counts", "critical_paths", "self_match", "inclusion", "checks", "shared")

    def __init__(
        self,
        constraints: list[Constraint],
        tp_counts: list[dict[str, int]],
        self_match: list[int],
        inclusion: _Inclusion,
        shared: bool,
    ) -> None:
        self.constraints = constraints
        self.tp_counts = tp_counts
        self.critical_paths = [_critical_paths(c) for c in tp_counts]
        self.self_match = self_match
        self.inclusion = inclusion
        self.shared = shared
        self.checks: tuple[tuple[str, dict[str, int], int], ...] = ()
        self._rebuild_checks()

    def min_match_num(self, i: int) -> int:
        """minMatchNum: the global minimum, 0 while fewer than minDomains domains exist."""
        if len(self.tp_counts[i]) < self.constraints[i].min_domains:
            return 0
        return self.critical_paths[i][1]

    def _rebuild_checks(self) -> None:
        self.checks = tuple(
            (c.topology_key, self.tp_counts[i], c.max_skew + self.min_match_num(i) - self.self_match[i])
            for i, c in enumerate(self.constraints)
        )

    def clone(self) -> PreFilterState:
        c = PreFilterState.__new__(PreFilterState)
        c.constraints = self.constraints
        c.tp_counts = [dict(d) for d in self.tp_counts]
        c.critical_paths = [list(p) for p in self.critical_paths]
        c.self_match = self.self_match
        c.inclusion = self.inclusion
        c.shared = False
        c._rebuild_checks()
        return c

    def update(self, i: int, value: str, delta: int) -> None:
        if self.shared:  # copy-on-write: the counts belong to the plugin's tally
            self.tp_counts = [dict(d) for d in self.tp_counts]
            self.shared = False
        counts = self.tp_counts[i]
        n = counts[value] = counts.get(value, 0) + delta
        _update_critical_paths(self.critical_paths[i], value, n)
        self._rebuild_checks()


class PreScoreState:
    """preScoreState: the soft constraints, the nodes not scored, per-domain counts and weights.

    ``items`` is what Score reads: per constraint (topology key, hostname memo or None, terms,
    weight, maxSkew - 1, matcher), where the terms map a topology value to its share of the score."""

    __slots__ = ("constraints", "ignored_nodes", "counts", "weights", "items", "value_items", "namespace")

    def __init__(self) -> None:
        self.value_items: tuple[tuple[str, dict[str, float], int], ...] | None = None
        self.constraints: list[Constraint] = []
        self.ignored_nodes: set[str] = set()
        self.counts: list[dict[str, int]] = []
        self.weights: list[float] = []
        self.items: tuple[Any, ...] = ()
        self.namespace = ""

    def clone(self) -> PreScoreState:
        return self  # read-only after PreScore


def topology_normalizing_weight(size: int) -> float:
    """topologyNormalizingWeight: log(size + 2)."""
    return math.log(size + 2)


def score_for_count(cnt: int, max_skew: int, tp_weight: float) -> float:
    """scoreForCount: cnt * weight + (maxSkew - 1)."""
    return cnt * tp_weight + (max_skew - 1)


# -- the plugin ----------------------------------------------------------------------------------


def _validate_args(args: Mapping[str, Any]) -> tuple[str, list[Obj]]:
    """ValidatePodTopologySpreadArgs (the parts that matter to the plugin)."""
    defaulting = args.get("defaultingType") or SYSTEM_DEFAULTING
    constraints = list(args.get("defaultConstraints") or ())
    errors: list[str] = []
    if defaulting not in (SYSTEM_DEFAULTING, LIST_DEFAULTING):
        errors.append(
            f'defaultingType: Unsupported value: "{defaulting}": supported values: "{LIST_DEFAULTING}", '
            f'"{SYSTEM_DEFAULTING}"'
        )
    elif defaulting == SYSTEM_DEFAULTING and constraints:
        errors.append(
            f'defaultingType: Invalid value: "{defaulting}": when .defaultingType is "{SYSTEM_DEFAULTING}", '
            ".defaultConstraints must be empty"
        )
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(constraints):
        path = f"defaultConstraints[{i}]"
        max_skew = c.get("maxSkew") or 0
        if max_skew <= 0:
            errors.append(f"{path}.maxSkew: Invalid value: {max_skew}: must be greater than zero")
        if not c.get("topologyKey"):
            errors.append(f"{path}.topologyKey: Required value: can not be empty")
        when = c.get("whenUnsatisfiable") or ""
        if when not in (DO_NOT_SCHEDULE, SCHEDULE_ANYWAY):
            errors.append(
                f'{path}.whenUnsatisfiable: Unsupported value: "{when}": supported values: '
                f'"{DO_NOT_SCHEDULE}", "{SCHEDULE_ANYWAY}"'
            )
        pair = (c.get("topologyKey") or "", when)
        if pair in seen:
            errors.append(f"{path}: Duplicate value: {{{pair[0]!r}, {pair[1]!r}}}")
        seen.add(pair)
        if c.get("labelSelector") is not None:
            errors.append(
                f"{path}.labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"
            )
    if errors:
        raise ValueError("; ".join(errors))
    return defaulting, constraints


class PodTopologySpread:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle = handle
        defaulting, constraints = _validate_args(args or _EMPTY)
        self.system_defaulted = defaulting == SYSTEM_DEFAULTING
        self.default_constraints: list[Obj] = (
            list(SYSTEM_DEFAULT_CONSTRAINTS) if self.system_defaulted else constraints
        )
        self._filter_tallies = TallyCache()
        self._score_tallies = TallyCache()
        self._node_counts = NodeCountCache()

    # -- constraints --

    def _build_default_constraints(self, pod: Obj, action: str) -> list[Constraint]:
        """buildDefaultConstraints: the default constraints with `action`, every one with the
        pod's default selector; none when that selector is empty."""
        constraints = filter_topology_spread_constraints(
            self.default_constraints, (pod.get("metadata") or _EMPTY).get("labels") or _EMPTY, action
        )
        if not constraints:
            return []
        selector = default_selector(pod, self.handle)
        if selector.empty:
            return []
        match = compile_selector(selector)
        for c in constraints:
            c.selector = selector
            c.match = match
        return constraints

    def get_constraints(self, pod: Obj, action: str = DO_NOT_SCHEDULE) -> list[Constraint]:
        """The pod's own constraints with `action`, or the default ones when it has none."""
        own = (pod.get("spec") or _EMPTY).get("topologySpreadConstraints")
        if own:
            labels = (pod.get("metadata") or _EMPTY).get("labels") or _EMPTY
            return filter_topology_spread_constraints(own, labels, action)
        return self._build_default_constraints(pod, action)

    # -- PreFilter / Filter --

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        try:
            constraints = self.get_constraints(pod.pod, DO_NOT_SCHEDULE)
        except Exception as e:
            return None, as_status(e)
        if not constraints:
            return None, SKIP
        state[PRE_FILTER_KEY] = self._pre_filter_state(pod, constraints, nodes)
        return None, None

    def _pre_filter_state(
        self, pod: PodInfo, constraints: list[Constraint], nodes: Sequence[NodeInfo]
    ) -> PreFilterState:
        """calPreFilterState, through the tally of the pod's signature."""
        namespace = pod.namespace
        inclusion = _Inclusion(pod, constraints)
        signature = (namespace, tuple(c.signature() for c in constraints), inclusion.signature)
        tally = self._filter_tallies.get(signature)
        indexed = tuple(enumerate(constraints))

        def contributions(ni: NodeInfo) -> tuple[Contribution, ...]:
            labels = ni.labels
            for c in constraints:
                if c.topology_key not in labels:
                    return ()
            out = []
            for i, c in indexed:
                if not inclusion.node_included(c, ni):
                    continue
                out.append(
                    (i, labels[c.topology_key], count_pods_match_selector(ni.pods, c.match, namespace))
                )
            return tuple(out)

        tally.refresh(nodes, contributions)
        tp_counts = [tally.get(i) for i in range(len(constraints))]
        self_match = [1 if c.match(pod.labels) else 0 for c in constraints]
        return PreFilterState(constraints, tp_counts, self_match, inclusion, shared=True)

    def pre_filter_extensions(self) -> PodTopologySpread:
        return self

    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is None:
            return _state_not_found(PRE_FILTER_KEY)
        self._update_with_pod(s, pod_to_add, pod, node, 1)
        return None

    def remove_pod(
        self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo, node: NodeInfo
    ) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is None:
            return _state_not_found(PRE_FILTER_KEY)
        self._update_with_pod(s, pod_to_remove, pod, node, -1)
        return None

    @staticmethod
    def _update_with_pod(
        s: PreFilterState, updated: PodInfo, preemptor: PodInfo, node: NodeInfo, delta: int
    ) -> None:
        if updated.namespace != preemptor.namespace or node.node is None:
            return
        labels = node.labels
        if not node_labels_match_spread_constraints(labels, s.constraints):
            return
        for i, c in enumerate(s.constraints):
            if not c.match(updated.labels):
                continue
            if not s.inclusion.node_included(c, node):
                continue
            s.update(i, labels[c.topology_key], delta)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is None:
            return _state_not_found(PRE_FILTER_KEY)
        labels = node.labels
        for key, counts, limit in s.checks:
            value = labels.get(key)
            if value is None:
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_NODE_LABEL_NOT_MATCH)
            if counts.get(value, 0) > limit:
                return Status(Code.UNSCHEDULABLE, ERR_REASON_CONSTRAINTS_NOT_MATCH)
        return None

    # -- PreScore / Score --

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        all_nodes = self.handle.snapshot().node_infos()
        if not nodes or not all_nodes:
            return SKIP
        own = pod.spec.get("topologySpreadConstraints")
        try:
            if own:
                constraints = filter_topology_spread_constraints(own, pod.labels, SCHEDULE_ANYWAY)
            else:
                constraints = self._build_default_constraints(pod.pod, SCHEDULE_ANYWAY)
        except Exception as e:
            return as_status(e)
        if not constraints:
            return SKIP
        # only require nodes to have all topology labels under non-system-default rules, so that
        # nodes without a zone label still get hostname spreading
        require_all = bool(own) or not self.system_defaulted
        s = PreScoreState()
        s.constraints = constraints
        s.namespace = namespace = pod.namespace
        ignored = s.ignored_nodes
        indexed = tuple(enumerate(constraints))
        if require_all:
            keys = frozenset(c.topology_key for c in constraints)
            eligible = [ni for ni in nodes if ni.labels.keys() >= keys]
            if len(eligible) != len(nodes):
                ignored.update(ni.name for ni in nodes if not ni.labels.keys() >= keys)
        else:
            eligible = list(nodes)
        # the topology values of the candidate nodes (hostname counts are done per node in Score)
        domains = [
            set()
            if c.topology_key == LABEL_HOSTNAME
            else {ni.labels.get(c.topology_key, "") for ni in eligible}
            for c in constraints
        ]

        inclusion = _Inclusion(pod, constraints)
        signature = (namespace, tuple(c.signature() for c in constraints), require_all, inclusion.signature)
        tally = self._score_tallies.get(signature)

        def contributions(ni: NodeInfo) -> tuple[Contribution, ...]:
            labels = ni.labels
            if require_all and not node_labels_match_spread_constraints(labels, constraints):
                return ()
            out = []
            for i, c in indexed:
                if c.topology_key == LABEL_HOSTNAME or not inclusion.node_included(c, ni):
                    continue
                out.append(
                    (
                        i,
                        labels.get(c.topology_key, ""),
                        count_pods_match_selector(ni.pods, c.match, namespace),
                    )
                )
            return tuple(out)

        tally.refresh(all_nodes, contributions)
        items = []
        for i, c in indexed:
            if c.topology_key == LABEL_HOSTNAME:
                counts: dict[str, int] = {}
                size = len(nodes) - len(ignored)
                memo: dict[str, tuple[int, int]] | None = self._node_counts.get((namespace, c.selector))
            else:
                sums = tally.get(i)
                counts = {v: sums.get(v, 0) for v in domains[i]}
                size = len(domains[i])
                memo = None
            weight = topology_normalizing_weight(size)
            s.counts.append(counts)
            s.weights.append(weight)
            # per topology value, the constraint's whole term of the score (scoreForCount)
            terms = {v: score_for_count(cnt, c.max_skew, weight) for v, cnt in counts.items()}
            items.append((c.topology_key, memo, terms, weight, c.max_skew - 1, c.match))
        s.items = tuple(items)
        if all(memo is None for _, memo, *_ in items):  # no hostname constraint: the lean Score loop
            s.value_items = tuple((key, terms, offset) for key, _, terms, _, offset, _ in items)
        state[PRE_SCORE_KEY] = s
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> tuple[int, Status | None]:
        s = state.get(PRE_SCORE_KEY)
        if s is None:
            return 0, _state_not_found(PRE_SCORE_KEY)
        if node.name in s.ignored_nodes:
            return _ZERO
        labels = node.labels
        score = 0.0
        value_items = s.value_items
        if value_items is not None:
            for key, terms, skew_offset in value_items:
                value = labels.get(key)
                if value is not None:
                    term = terms.get(value)
                    score += skew_offset if term is None else term
            return int(score + 0.5), None
        for key, memo, terms, weight, skew_offset, match in s.items:
            value = labels.get(key)
            if value is None:
                continue
            if memo is None:
                term = terms.get(value)
                score += skew_offset if term is None else term
                continue
            # hostname: the matching pods on this very node
            e = memo.get(node.name)
            if e is not None and e[0] == node.generation:
                cnt = e[1]
            else:
                cnt = count_pods_match_selector(node.pods, match, s.namespace)
                memo[node.name] = (node.generation, cnt)
            score += cnt * weight + skew_offset
        # math.Round: half away from zero (the score is never negative)
        return int(score + 0.5), None

    def score_extensions(self) -> PodTopologySpread:
        return self

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[NodeScore]) -> Status | None:
        s = state.get(PRE_SCORE_KEY)
        if s is None:
            return None
        ignored = s.ignored_nodes
        if not ignored and scores:  # the common case, without the per-node set lookups
            min_score = min([ns.score for ns in scores])
            max_score = max(max([ns.score for ns in scores]), 0)
            if max_score == 0:
                for ns in scores:
                    ns.score = MAX_NODE_SCORE
                return None
            base = max_score + min_score
            for ns in scores:
                ns.score = MAX_NODE_SCORE * (base - ns.score) // max_score
            return None
        min_score = None
        max_score = 0
        for ns in scores:
            if ns.name in ignored:
                ns.score = _INVALID_SCORE
                continue
            if min_score is None or ns.score < min_score:
                min_score = ns.score
            if ns.score > max_score:
                max_score = ns.score
        for ns in scores:
            if ns.score == _INVALID_SCORE:
                ns.score = 0
                continue
            if max_score == 0:
                ns.score = MAX_NODE_SCORE
                continue
            ns.score = MAX_NODE_SCORE * (max_score + (min_score or 0) - ns.score) // max_score
        return None

    # -- EnqueueExtensions --

    def events_to_register(self) -> list[ClusterEventWithHint]:
        pod_actions = (
            ActionType.ADD
            | ActionType.UPDATE_POD_LABEL
            | ActionType.UPDATE_POD_TOLERATIONS
            | ActionType.DELETE
        )
        node_actions = (
            ActionType.ADD | ActionType.DELETE | ActionType.UPDATE_NODE_LABEL | ActionType.UPDATE_NODE_TAINT
        )
        return [
            ClusterEventWithHint(ClusterEvent(EventResource.POD, pod_actions), self._after_pod_change),
            ClusterEventWithHint(ClusterEvent(EventResource.NODE, node_actions), self._after_node_change),
        ]

    def _after_pod_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """isSchedulableAfterPodChange."""
        if (new is not None and not _involved_in_spreading(new, pod)) or (
            old is not None and not _involved_in_spreading(old, pod)
        ):
            return QueueingHint.SKIP
        try:
            constraints = self.get_constraints(pod)
        except Exception:
            return QueueingHint.QUEUE
        if new is not None and old is not None:
            if (
                _uid(pod) == _uid(new)
                and _spec(new).get("tolerations") != _spec(old).get("tolerations")
                and any(c.node_taints_policy == HONOR for c in constraints)
            ):
                return QueueingHint.QUEUE
            old_labels, new_labels = _labels(old), _labels(new)
            if old_labels == new_labels:
                return QueueingHint.SKIP
            for c in constraints:
                if c.match(old_labels) != c.match(new_labels):
                    return QueueingHint.QUEUE
            return QueueingHint.SKIP
        changed = new if new is not None else old
        if changed is not None and any(c.match(_labels(changed)) for c in constraints):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP

    def _after_node_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """isSchedulableAfterNodeChange."""
        try:
            constraints = self.get_constraints(pod)
        except Exception:
            return QueueingHint.QUEUE
        old_matching = old is not None and node_labels_match_spread_constraints(_labels(old), constraints)
        new_matching = new is not None and node_labels_match_spread_constraints(_labels(new), constraints)
        if old is not None and new is not None:
            if old_matching != new_matching:
                return QueueingHint.QUEUE
            if new_matching:
                old_labels, new_labels = _labels(old), _labels(new)
                if any(old_labels.get(c.topology_key) != new_labels.get(c.topology_key) for c in constraints):
                    return QueueingHint.QUEUE
                if _spec(old).get("taints") != _spec(new).get("taints"):
                    return QueueingHint.QUEUE
            return QueueingHint.SKIP
        if new is not None:
            return QueueingHint.QUEUE if new_matching else QueueingHint.SKIP
        return QueueingHint.QUEUE if old_matching else QueueingHint.SKIP


def _state_not_found(key: str) -> Status:
    return Status(Code.ERROR, f'reading "{key}" from cycleState: not found')


def _labels(obj: Obj) -> Mapping[str, str]:
    return (obj.get("metadata") or _EMPTY).get("labels") or _EMPTY


def _spec(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or _EMPTY


def _uid(obj: Obj) -> str:
    return (obj.get("metadata") or _EMPTY).get("uid") or ""


def _involved_in_spreading(incoming: Obj, pod_with_spreading: Obj) -> bool:
    """involvedInTopologySpreading: the pod itself, or an assigned pod in its namespace."""
    return _uid(incoming) == _uid(pod_with_spreading) or (
        bool(_spec(incoming).get("nodeName"))
        and (incoming.get("metadata") or _EMPTY).get("namespace")
        == (pod_with_spreading.get("metadata") or _EMPTY).get("namespace")
    )
