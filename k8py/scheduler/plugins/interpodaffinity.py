"""InterPodAffinity: ``spec.affinity.podAffinity`` / ``podAntiAffinity``, required and preferred.

Modelled on kube-scheduler 1.32's ``plugins/interpodaffinity``.

Filtering (PreFilter + Filter) counts, per topology pair (key, value):

* the existing pods whose *required anti-affinity* terms match the incoming pod (a node in
  such a domain fails with "node(s) didn't satisfy existing pods anti-affinity rules");
* the existing pods matching *all* the incoming pod's required affinity terms (a node must
  carry every term's topology key and sit in a domain with such a pod; the first pod of a
  group whose affinity selects itself is let through when no pod matches anywhere);
* the existing pods matching each of its required anti-affinity terms.

A term's ``namespaceSelector`` is resolved through the namespaces cache: for the incoming
pod's own terms it is unrolled into the term's namespace set once per cycle, and existing
pods' terms are matched against the incoming pod's namespace labels. PreFilter answers Skip
when the pod has no required terms and no existing pod's anti-affinity matches it.

Scoring (PreScore + Score + NormalizeScore) sums, per topology pair, the weights of the
incoming pod's preferred terms matched by existing pods, of the existing pods' preferred
terms matched by the incoming pod (anti-affinity negatively), and ``hardPodAffinityWeight``
for existing pods' required affinity terms matched by it; a node scores the sum over its
labels, normalized to 0..100 between the lowest and highest.

As in PodTopologySpread, the per-node counts live in a ``TopologyTally`` per signature and
only nodes whose NodeInfo generation moved are recounted each cycle; the cycle state shares
the tally's dicts copy-on-write, and Filter and Score only do dict lookups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k8py.api.selectors import LabelSelector
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
from k8py.scheduler.framework.types import AffinityTerm, NodeInfo, Obj, PodInfo
from k8py.scheduler.plugins.podtopologyspread import (
    Contribution,
    Matcher,
    TallyCache,
    compile_selector,
)

NAME = "InterPodAffinity"
PRE_FILTER_KEY = "PreFilter" + NAME
PRE_SCORE_KEY = "PreScore" + NAME

ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_REASON_AFFINITY_RULES_NOT_MATCH = "node(s) didn't match pod affinity rules"
ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH = "node(s) didn't match pod anti-affinity rules"

_EMPTY: Obj = {}
_EMPTY_COUNTS: dict[str, int] = {}
_MAX_SCORE_F = float(MAX_NODE_SCORE)

Counts = dict[str, dict[str, int]]  # topology key -> topology value -> count


class IncomingTerm:
    """An incoming pod's affinity term with its namespaceSelector unrolled into namespaces
    (mergeAffinityTermNamespacesIfNotEmpty): it selects pods in ``namespaces``, or in every
    namespace when the selector was empty (``{}``), whose labels ``match``."""

    __slots__ = ("namespaces", "all_namespaces", "selector", "match", "topology_key", "weight")

    def __init__(self, term: AffinityTerm, namespaces_lister: Any, weight: int = 0) -> None:
        namespaces = set(term.namespaces)
        ns_selector: LabelSelector = term.namespace_selector
        self.all_namespaces = False
        if not ns_selector.matches_nothing:
            if ns_selector.empty:
                self.all_namespaces = True
            else:
                for ns in namespaces_lister.list():
                    meta = ns.get("metadata") or _EMPTY
                    if ns_selector.matches(meta.get("labels") or _EMPTY):
                        namespaces.add(meta.get("name") or "")
        self.namespaces = frozenset(namespaces)
        self.selector = term.selector
        self.match: Matcher = compile_selector(term.selector)
        self.topology_key = term.topology_key
        self.weight = weight

    def matches(self, namespace: str, labels: Mapping[str, str]) -> bool:
        return (self.all_namespaces or namespace in self.namespaces) and self.match(labels)

    def signature(self) -> tuple[Any, ...]:
        return (self.namespaces, self.all_namespaces, self.selector, self.topology_key, self.weight)


def _matches_all(terms: Sequence[IncomingTerm], pod: PodInfo) -> bool:
    """podMatchesAllAffinityTerms: false for no terms."""
    if not terms:
        return False
    ns, labels = pod.namespace, pod.labels
    for t in terms:
        if not t.matches(ns, labels):
            return False
    return True


def _bump(counts: Counts, node_labels: Mapping[str, str], key: str, delta: int) -> None:
    """topologyToMatchedTermCount.update: entries that drop to zero are deleted."""
    value = node_labels.get(key)
    if value is None:
        return
    d = counts.get(key)
    if d is None:
        d = counts[key] = {}
    n = d.get(value, 0) + delta
    if n:
        d[value] = n
    else:
        d.pop(value, None)


class PreFilterState:
    """preFilterState: the three topology counts, the incoming pod's terms, its namespace labels.

    ``aff_keys``, ``anti_items``, ``existing_items`` and ``self_affinity_ok`` are derived for
    Filter and rebuilt whenever preemption's add_pod/remove_pod change the counts."""

    __slots__ = (
        "pod",
        "affinity_terms",
        "anti_affinity_terms",
        "namespace_labels",
        "existing_anti_affinity_counts",
        "affinity_counts",
        "anti_affinity_counts",
        "aff_keys",
        "anti_items",
        "existing_items",
        "self_affinity_ok",
        "shared",
    )

    def __init__(
        self,
        pod: PodInfo,
        affinity_terms: list[IncomingTerm],
        anti_affinity_terms: list[IncomingTerm],
        namespace_labels: Mapping[str, str],
        existing: Counts,
        affinity: Counts,
        anti_affinity: Counts,
        shared: bool,
    ) -> None:
        self.pod = pod
        self.affinity_terms = affinity_terms
        self.anti_affinity_terms = anti_affinity_terms
        self.namespace_labels = namespace_labels
        self.existing_anti_affinity_counts = existing
        self.affinity_counts = affinity
        self.anti_affinity_counts = anti_affinity
        self.shared = shared
        self._derive()

    def _derive(self) -> None:
        self.aff_keys = tuple(t.topology_key for t in self.affinity_terms)
        anti = self.anti_affinity_counts
        self.anti_items = tuple(
            (t.topology_key, anti.get(t.topology_key) or _EMPTY_COUNTS) for t in self.anti_affinity_terms
        )
        self.existing_items = tuple((k, d) for k, d in self.existing_anti_affinity_counts.items() if d)
        # the first pod of a group that selects itself: no pod anywhere matches its affinity
        self.self_affinity_ok = not any(self.affinity_counts.values()) and _matches_all(
            self.affinity_terms, self.pod
        )

    def clone(self) -> PreFilterState:
        c = PreFilterState.__new__(PreFilterState)
        c.pod = self.pod
        c.affinity_terms = self.affinity_terms
        c.anti_affinity_terms = self.anti_affinity_terms
        c.namespace_labels = self.namespace_labels
        c.existing_anti_affinity_counts = _copy_counts(self.existing_anti_affinity_counts)
        c.affinity_counts = _copy_counts(self.affinity_counts)
        c.anti_affinity_counts = _copy_counts(self.anti_affinity_counts)
        c.shared = False
        c._derive()
        return c

    def update_with_pod(self, pi: PodInfo, node: NodeInfo, delta: int) -> None:
        """updateWithPod: count (or uncount) `pi` on `node`."""
        if self.shared:  # copy-on-write: the counts belong to the plugin's tallies
            self.existing_anti_affinity_counts = _copy_counts(self.existing_anti_affinity_counts)
            self.affinity_counts = _copy_counts(self.affinity_counts)
            self.anti_affinity_counts = _copy_counts(self.anti_affinity_counts)
            self.shared = False
        labels = node.labels
        incoming = self.pod.pod
        for t in pi.required_anti_affinity_terms:
            if t.matches(incoming, self.namespace_labels):
                _bump(self.existing_anti_affinity_counts, labels, t.topology_key, delta)
        if _matches_all(self.affinity_terms, pi):
            for it in self.affinity_terms:
                _bump(self.affinity_counts, labels, it.topology_key, delta)
        for it in self.anti_affinity_terms:
            if it.matches(pi.namespace, pi.labels):
                _bump(self.anti_affinity_counts, labels, it.topology_key, delta)
        self._derive()


def _copy_counts(counts: Counts) -> Counts:
    return {k: dict(d) for k, d in counts.items()}


class PreScoreState:
    """preScoreState: topology key -> topology value -> score (``items`` for Score)."""

    __slots__ = ("topology_score", "items")

    def __init__(self, topology_score: Counts) -> None:
        self.topology_score = topology_score
        self.items = tuple(topology_score.items())

    def clone(self) -> PreScoreState:
        return self  # read-only after PreScore


class InterPodAffinity:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        args = args or _EMPTY
        weight = args.get("hardPodAffinityWeight", 1)
        if weight is None:
            weight = 1
        if not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ValueError(f"hardPodAffinityWeight: Invalid value: {weight}: not in valid range [0-100]")
        self.hard_pod_affinity_weight: int = weight
        self.ignore_preferred_terms_of_existing_pods = bool(args.get("ignorePreferredTermsOfExistingPods"))
        self.handle = handle
        self._existing_tallies = TallyCache()
        self._incoming_tallies = TallyCache()
        self._score_tallies = TallyCache()

    # -- helpers --

    def _namespace_labels(self, namespace: str) -> Mapping[str, str]:
        """GetNamespaceLabelsSnapshot: the labels of the pod's namespace (none when not cached)."""
        ns = self.handle.lister("namespaces").get_by_key(namespace)
        return ((ns or _EMPTY).get("metadata") or _EMPTY).get("labels") or _EMPTY

    # -- PreFilter / Filter --

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        snapshot = self.handle.snapshot()
        with_anti = snapshot.have_pods_with_required_anti_affinity()
        if not with_anti and not pod.required_affinity_terms and not pod.required_anti_affinity_terms:
            return None, SKIP
        try:
            lister = self.handle.lister("namespaces")
            affinity_terms = [IncomingTerm(t, lister) for t in pod.required_affinity_terms]
            anti_terms = [IncomingTerm(t, lister) for t in pod.required_anti_affinity_terms]
            ns_labels = self._namespace_labels(pod.namespace)
            existing = self._existing_anti_affinity_counts(pod, ns_labels, with_anti)
            if not existing and not affinity_terms and not anti_terms:
                return None, SKIP
            affinity, anti = self._incoming_counts(affinity_terms, anti_terms, nodes)
        except Exception as e:
            return None, as_status(e)
        state[PRE_FILTER_KEY] = PreFilterState(
            pod, affinity_terms, anti_terms, ns_labels, existing, affinity, anti, shared=True
        )
        return None, None

    def _existing_anti_affinity_counts(
        self, pod: PodInfo, ns_labels: Mapping[str, str], nodes: Sequence[NodeInfo]
    ) -> Counts:
        """getExistingAntiAffinityCounts: existing pods' required anti-affinity terms matching `pod`."""
        if not nodes:
            return {}
        signature = (pod.namespace, frozenset(pod.labels.items()), frozenset(ns_labels.items()))
        tally = self._existing_tallies.get(signature)
        incoming = pod.pod

        def contributions(ni: NodeInfo) -> list[Contribution]:
            labels = ni.labels
            out: list[Contribution] = []
            for existing in ni.pods_with_required_anti_affinity:
                for t in existing.required_anti_affinity_terms:
                    value = labels.get(t.topology_key)
                    if value is not None and t.matches(incoming, ns_labels):
                        out.append((t.topology_key, value, 1))
            return out

        tally.refresh(nodes, contributions)
        return {k: d for k, d in tally.sums.items() if d}

    def _incoming_counts(
        self, affinity_terms: list[IncomingTerm], anti_terms: list[IncomingTerm], nodes: Sequence[NodeInfo]
    ) -> tuple[Counts, Counts]:
        """getIncomingAffinityAntiAffinityCounts: existing pods matching all the affinity terms,
        and matching each anti-affinity term."""
        if not affinity_terms and not anti_terms:
            return {}, {}
        signature = (
            tuple(t.signature() for t in affinity_terms),
            tuple(t.signature() for t in anti_terms),
        )
        tally = self._incoming_tallies.get(signature)

        def contributions(ni: NodeInfo) -> list[Contribution]:
            labels = ni.labels
            pods = ni.pods
            out: list[Contribution] = []
            if affinity_terms:
                n = 0
                for p in pods:
                    if _matches_all(affinity_terms, p):
                        n += 1
                if n:
                    for t in affinity_terms:
                        value = labels.get(t.topology_key)
                        if value is not None:
                            out.append(((0, t.topology_key), value, n))
            for t in anti_terms:
                value = labels.get(t.topology_key)
                if value is None:
                    continue
                n = 0
                for p in pods:
                    if t.matches(p.namespace, p.labels):
                        n += 1
                if n:
                    out.append(((1, t.topology_key), value, n))
            return out

        tally.refresh(nodes, contributions)
        affinity: Counts = {}
        anti: Counts = {}
        for (kind, key), d in tally.sums.items():
            (affinity if kind == 0 else anti)[key] = d
        return affinity, anti

    def pre_filter_extensions(self) -> InterPodAffinity:
        return self

    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is None:
            return _state_not_found(PRE_FILTER_KEY)
        s.update_with_pod(pod_to_add, node, 1)
        return None

    def remove_pod(
        self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo, node: NodeInfo
    ) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is None:
            return _state_not_found(PRE_FILTER_KEY)
        s.update_with_pod(pod_to_remove, node, -1)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is None:
            return _state_not_found(PRE_FILTER_KEY)
        labels = node.labels
        aff_keys = s.aff_keys
        if aff_keys:  # satisfyPodAffinity
            pods_exist = True
            counts = s.affinity_counts
            for key in aff_keys:
                value = labels.get(key)
                if value is None:  # all topology labels must exist on the node
                    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_AFFINITY_RULES_NOT_MATCH)
                d = counts.get(key)
                if d is None or d.get(value, 0) <= 0:
                    pods_exist = False
            if not pods_exist and not s.self_affinity_ok:
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_AFFINITY_RULES_NOT_MATCH)
        for key, d in s.anti_items:  # satisfyPodAntiAffinity
            value = labels.get(key)
            if value is not None and d.get(value, 0) > 0:
                return Status(Code.UNSCHEDULABLE, ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH)
        for key, d in s.existing_items:  # satisfyExistingPodsAntiAffinity
            value = labels.get(key)
            if value is not None and d.get(value, 0) > 0:
                return Status(Code.UNSCHEDULABLE, ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH)
        return None

    # -- PreScore / Score --

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if not nodes:
            return SKIP
        has_constraints = bool(pod.preferred_affinity_terms or pod.preferred_anti_affinity_terms)
        if self.ignore_preferred_terms_of_existing_pods and not has_constraints:
            return SKIP
        snapshot = self.handle.snapshot()
        # unless the pod has preferred terms, only pods with affinity can contribute
        all_nodes = snapshot.node_infos() if has_constraints else snapshot.have_pods_with_affinity()
        if not all_nodes:
            return SKIP
        try:
            lister = self.handle.lister("namespaces")
            preferred = [IncomingTerm(wt.term, lister, wt.weight) for wt in pod.preferred_affinity_terms] + [
                IncomingTerm(wt.term, lister, -wt.weight) for wt in pod.preferred_anti_affinity_terms
            ]
            ns_labels = self._namespace_labels(pod.namespace)
        except Exception as e:
            return as_status(e)
        hard_weight = self.hard_pod_affinity_weight
        signature = (
            pod.namespace,
            frozenset(pod.labels.items()),
            frozenset(ns_labels.items()),
            has_constraints,
            tuple(t.signature() for t in preferred),
            hard_weight,
        )
        tally = self._score_tallies.get(signature)
        incoming = pod.pod

        def contributions(ni: NodeInfo) -> list[Contribution]:
            """processExistingPod for the pods of one node, summed per topology key."""
            labels = ni.labels
            if not labels:
                return []
            acc: dict[str, int] = {}
            for existing in ni.pods if has_constraints else ni.pods_with_affinity:
                for t in preferred:
                    key = t.topology_key
                    if key in labels and t.matches(existing.namespace, existing.labels):
                        acc[key] = acc.get(key, 0) + t.weight
                if hard_weight > 0:
                    for at in existing.required_affinity_terms:
                        key = at.topology_key
                        if key in labels and at.matches(incoming, ns_labels):
                            acc[key] = acc.get(key, 0) + hard_weight
                for wt in existing.preferred_affinity_terms:
                    key = wt.term.topology_key
                    if key in labels and wt.term.matches(incoming, ns_labels):
                        acc[key] = acc.get(key, 0) + wt.weight
                for wt in existing.preferred_anti_affinity_terms:
                    key = wt.term.topology_key
                    if key in labels and wt.term.matches(incoming, ns_labels):
                        acc[key] = acc.get(key, 0) - wt.weight
            return [(key, labels[key], total) for key, total in acc.items()]

        tally.refresh(all_nodes, contributions)
        topology_score = {k: d for k, d in tally.sums.items() if d}
        if not topology_score:
            return SKIP
        state[PRE_SCORE_KEY] = PreScoreState(topology_score)
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> tuple[int, Status | None]:
        s = state.get(PRE_SCORE_KEY)
        if s is None:
            return 0, _state_not_found(PRE_SCORE_KEY)
        labels = node.labels
        score = 0
        for key, values in s.items:
            value = labels.get(key)
            if value is not None:
                score += values.get(value, 0)
        return score, None

    def score_extensions(self) -> InterPodAffinity:
        return self

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[NodeScore]) -> Status | None:
        s = state.get(PRE_SCORE_KEY)
        if s is None or not s.topology_score or not scores:
            return None
        values = [ns.score for ns in scores]
        min_count = min(values)
        diff = max(values) - min_count
        if diff <= 0:
            for ns in scores:
                ns.score = 0
            return None
        for ns in scores:
            # float64(MaxNodeScore) * (float64(score-min) / float64(max-min)), truncated
            ns.score = int(_MAX_SCORE_F * ((ns.score - min_count) / diff))
        return None

    # -- EnqueueExtensions --

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.POD, ActionType.ADD | ActionType.UPDATE_POD_LABEL | ActionType.DELETE
                ),
                self._after_pod_change,
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL),
                self._after_node_change,
            ),
        ]

    def _after_pod_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """isSchedulableAfterPodChange: an assigned pod now matching the pod's affinity, or no
        longer matching its anti-affinity (updated or deleted)."""
        if (new is not None and not _node_name(new)) or (old is not None and not _node_name(old)):
            return QueueingHint.SKIP
        info = PodInfo(pod)
        terms, anti_terms = info.required_affinity_terms, info.required_anti_affinity_terms
        if new is not None and old is not None:
            if not _pod_matches_all(terms, old) and _pod_matches_all(terms, new):
                return QueueingHint.QUEUE
            if _pod_matches_all(anti_terms, old) and not _pod_matches_all(anti_terms, new):
                return QueueingHint.QUEUE
            return QueueingHint.SKIP
        if new is not None:
            return QueueingHint.QUEUE if _pod_matches_all(terms, new) else QueueingHint.SKIP
        if old is not None and _pod_matches_all(anti_terms, old):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP

    def _after_node_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """isSchedulableAfterNodeChange: a node gaining (or changing) an affinity topology key, or
        losing (or changing) an anti-affinity one; any new node for a pod with anti-affinity."""
        if new is None:
            return QueueingHint.SKIP
        info = PodInfo(pod)
        new_labels = _labels(new)
        old_labels = _labels(old) if old is not None else None
        for t in info.required_affinity_terms:
            key = t.topology_key
            if old_labels is None:
                if key in new_labels:
                    return QueueingHint.QUEUE
                continue
            if key in new_labels and (key not in old_labels or old_labels[key] != new_labels[key]):
                return QueueingHint.QUEUE
        for t in info.required_anti_affinity_terms:
            key = t.topology_key
            if old_labels is None:
                return QueueingHint.QUEUE
            if key in old_labels and (key not in new_labels or old_labels[key] != new_labels[key]):
                return QueueingHint.QUEUE
        return QueueingHint.SKIP


def _pod_matches_all(terms: Sequence[AffinityTerm], pod: Obj) -> bool:
    if not terms:
        return False
    return all(t.matches(pod, None) for t in terms)


def _state_not_found(key: str) -> Status:
    return Status(Code.ERROR, f'reading "{key}" from cycleState: not found')


def _labels(obj: Obj) -> Mapping[str, str]:
    return (obj.get("metadata") or _EMPTY).get("labels") or _EMPTY


def _node_name(pod: Obj) -> str:
    return (pod.get("spec") or _EMPTY).get("nodeName") or ""
