"""NodeAffinity: ``spec.nodeSelector`` and ``spec.affinity.nodeAffinity`` (plus the profile's
``addedAffinity``), as kube-scheduler and component-helpers' ``nodeaffinity`` package apply them.

Node selector terms are compiled once (per pod per cycle, or once per plugin for
``addedAffinity``) into tuples with integer operators, so matching a node is a few dict
lookups. The rules are component-helpers':

* terms are ORed, the requirements inside a term ANDed; an empty term (no expressions, no
  fields) selects nothing and a required affinity with no terms matches no node;
* ``matchExpressions`` are label requirements (In, NotIn, Exists, DoesNotExist, Gt, Lt; Gt/Lt
  compare integers and fail on a label that is not one); ``matchFields`` support only
  ``In``/``NotIn`` with one value, against ``metadata.name``;
* a term that does not parse matches nothing, but the other terms still count (the lazy
  error selector a pod's required affinity uses); ``addedAffinity`` and preferred terms are
  parsed strictly and fail (plugin construction, PreScore) on an error.

``node_selector_matches`` and ``pod_matches_node_selector_and_affinity`` are the public entry
points other components (the DaemonSet controller) share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from k8py.api.errors import StatusError
from k8py.api.selectors import Operator, Requirement
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
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo
from k8py.scheduler.plugins.helper import default_normalize_score

NAME = "NodeAffinity"
_PRESCORE_KEY = "PreScore" + NAME

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"
ERR_REASON_ENFORCED = "node(s) didn't match scheduler-enforced node affinity"
ERR_REASON_CONFLICT = "pod affinity terms conflict"

OBJECT_NAME_FIELD = "metadata.name"

_IN, _NOT_IN, _EXISTS, _DOES_NOT_EXIST, _GT, _LT = range(6)
_OPERATORS = {
    "In": (_IN, Operator.IN),
    "NotIn": (_NOT_IN, Operator.NOT_IN),
    "Exists": (_EXISTS, Operator.EXISTS),
    "DoesNotExist": (_DOES_NOT_EXIST, Operator.DOES_NOT_EXIST),
    "Gt": (_GT, Operator.GREATER_THAN),
    "Lt": (_LT, Operator.LESS_THAN),
}
_INT_RE = re.compile(r"[+-]?[0-9]+")
_EMPTY: Obj = {}
_ZERO = (0, None)


def _parse_int64(s: str) -> int | None:
    """strconv.ParseInt(s, 10, 64); None on error."""
    if not _INT_RE.fullmatch(s):
        return None
    n = int(s)
    return n if -(1 << 63) <= n < (1 << 63) else None


# -- compiled node selector terms -----------------------------------------------------------------

Expr = tuple[str, int, Any]  # (key, operator, frozenset of values | int for Gt/Lt | None)
FieldReq = tuple[str, bool, str]  # (field, equal (In) / not equal (NotIn), value)


class NodeSelectorTerm:
    """One v1.NodeSelectorTerm, parsed (nodeaffinity.nodeSelectorTerm)."""

    __slots__ = ("exprs", "fields", "errors")

    def __init__(self, term: Mapping[str, Any], path: str = "") -> None:
        self.exprs: tuple[Expr, ...] | None = None
        self.fields: tuple[FieldReq, ...] | None = None
        errors: list[str] = []
        if exprs := term.get("matchExpressions"):
            self.exprs = _parse_expressions(exprs, f"{path}.matchExpressions", errors)
        if fields := term.get("matchFields"):
            self.fields = _parse_fields(fields, f"{path}.matchFields", errors)
        self.errors = tuple(errors)

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        """Whether a node with `labels` and `name` satisfies the term (False when it did not parse)."""
        if self.errors:
            return False
        exprs = self.exprs
        if exprs is not None:
            for key, op, val in exprs:
                if op == _IN:
                    v = labels.get(key)
                    if v is None or v not in val:
                        return False
                elif op == _NOT_IN:
                    v = labels.get(key)
                    if v is not None and v in val:
                        return False
                elif op == _EXISTS:
                    if key not in labels:
                        return False
                elif op == _DOES_NOT_EXIST:
                    if key in labels:
                        return False
                else:
                    v = labels.get(key)
                    if v is None:
                        return False
                    n = _parse_int64(v)
                    if n is None or not (n > val if op == _GT else n < val):
                        return False
        fields = self.fields
        if fields is not None and name:
            for key, equal, value in fields:
                have = name if key == OBJECT_NAME_FIELD else ""
                if (have == value) != equal:
                    return False
        return True


def _parse_expressions(exprs: Iterable[Mapping[str, Any]], path: str, errors: list[str]) -> tuple[Expr, ...]:
    """nodeSelectorRequirementsAsSelector."""
    out: list[Expr] = []
    for i, expr in enumerate(exprs):
        key = expr.get("key") or ""
        op_name = expr.get("operator") or ""
        values = tuple(expr.get("values") or ())
        ops = _OPERATORS.get(op_name)
        if ops is None:
            errors.append(f'{path}[{i}].operator: Unsupported value: "{op_name}"')
            continue
        op, selector_op = ops
        try:
            Requirement.new(key, selector_op, values)  # labels.NewRequirement's validation
        except StatusError as e:
            errors.append(f"{path}[{i}]: {e}")
            continue
        if op in (_IN, _NOT_IN):
            out.append((key, op, frozenset(values)))
        elif op in (_GT, _LT):
            out.append((key, op, _parse_int64(values[0])))
        else:
            out.append((key, op, None))
    return tuple(out)


def _parse_fields(reqs: Iterable[Mapping[str, Any]], path: str, errors: list[str]) -> tuple[FieldReq, ...]:
    """nodeSelectorRequirementsAsFieldSelector: In/NotIn with exactly one value."""
    out: list[FieldReq] = []
    for i, r in enumerate(reqs):
        op = r.get("operator") or ""
        values = r.get("values") or []
        if op not in ("In", "NotIn"):
            errors.append(f'{path}[{i}].operator: Unsupported value: "{op}": supported values: "In", "NotIn"')
        elif len(values) != 1:
            errors.append(f"{path}[{i}].values: Invalid value: {values!r}: must have one element")
        else:
            out.append((r.get("key") or "", op == "In", values[0]))
    return tuple(out)


def _is_empty_term(term: Mapping[str, Any] | None) -> bool:
    return not term or (not term.get("matchExpressions") and not term.get("matchFields"))


class NodeSelector:
    """A v1.NodeSelector: its non-empty terms, ORed (nodeaffinity.LazyErrorNodeSelector).

    ``NodeSelector.strict`` is nodeaffinity.NewNodeSelector: it raises ValueError when a term
    does not parse."""

    __slots__ = ("terms",)

    def __init__(self, selector: Mapping[str, Any] | None, path: str = "nodeSelectorTerms") -> None:
        self.terms = tuple(
            NodeSelectorTerm(t, f"{path}[{i}]")
            for i, t in enumerate((selector or _EMPTY).get("nodeSelectorTerms") or ())
            if not _is_empty_term(t)
        )

    @classmethod
    def strict(cls, selector: Mapping[str, Any] | None, path: str = "nodeSelectorTerms") -> NodeSelector:
        ns = cls(selector, path)
        errors = [e for t in ns.terms for e in t.errors]
        if errors:
            raise ValueError(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
        return ns

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        for term in self.terms:
            if term.matches(labels, name):
                return True
        return False

    def match_node(self, node: Obj | None) -> bool:
        if node is None:
            return False
        meta = node.get("metadata") or _EMPTY
        return self.matches(meta.get("labels") or _EMPTY, meta.get("name") or "")


class RequiredNodeAffinity:
    """nodeaffinity.RequiredNodeAffinity: a pod's nodeSelector AND its required node affinity."""

    __slots__ = ("selector", "affinity")

    def __init__(self, node_selector: Mapping[str, str] | None, required: Mapping[str, Any] | None) -> None:
        self.selector: tuple[tuple[str, str], ...] | None = (
            tuple(node_selector.items()) if node_selector else None
        )
        self.affinity: NodeSelector | None = NodeSelector(required) if required is not None else None

    @classmethod
    def from_pod(cls, pod: Obj) -> RequiredNodeAffinity:
        """nodeaffinity.GetRequiredNodeAffinity."""
        spec = pod.get("spec") or _EMPTY
        return cls(spec.get("nodeSelector"), _required_affinity(spec))

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        selector = self.selector
        if selector is not None:
            for k, v in selector:
                if labels.get(k) != v:
                    return False
        affinity = self.affinity
        if affinity is None:
            return True
        for term in affinity.terms:
            if term.matches(labels, name):
                return True
        return False

    def match_node(self, node: Obj | None) -> bool:
        if node is None:
            return False
        meta = node.get("metadata") or _EMPTY
        return self.matches(meta.get("labels") or _EMPTY, meta.get("name") or "")


class PreferredSchedulingTerms:
    """nodeaffinity.PreferredSchedulingTerms: weighted terms, parsed strictly (ValueError);
    terms with weight 0 or an empty preference are dropped."""

    __slots__ = ("terms",)

    def __init__(
        self, terms: Iterable[Mapping[str, Any]] | None, path: str = "PreferredSchedulingTerms"
    ) -> None:
        parsed: list[tuple[NodeSelectorTerm, int]] = []
        errors: list[str] = []
        for i, t in enumerate(terms or ()):
            weight = int(t.get("weight") or 0)
            pref = t.get("preference")
            if weight == 0 or _is_empty_term(pref):
                continue
            term = NodeSelectorTerm(pref or _EMPTY, f"{path}[{i}]")
            if term.errors:
                errors.extend(term.errors)
                continue
            parsed.append((term, weight))
        if errors:
            raise ValueError(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
        self.terms = tuple(parsed)

    def score(self, labels: Mapping[str, str], name: str) -> int:
        total = 0
        for term, weight in self.terms:
            if term.matches(labels, name):
                total += weight
        return total


def _node_affinity(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return (spec.get("affinity") or _EMPTY).get("nodeAffinity") or _EMPTY


def _required_affinity(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return _node_affinity(spec).get("requiredDuringSchedulingIgnoredDuringExecution")


def node_selector_matches(node: Obj, node_selector_terms: Sequence[Mapping[str, Any]] | None) -> bool:
    """Whether `node` matches any of `node_selector_terms` (a v1.NodeSelector's terms, ORed);
    terms that do not parse, and empty terms, match nothing."""
    return NodeSelector({"nodeSelectorTerms": node_selector_terms or []}).match_node(node)


def pod_matches_node_selector_and_affinity(pod: Obj, node: Obj) -> bool:
    """GetRequiredNodeAffinity(pod).Match(node): the pod's nodeSelector and required node
    affinity (requiredDuringSchedulingIgnoredDuringExecution) both admit `node`."""
    return RequiredNodeAffinity.from_pod(pod).match_node(node)


# -- the plugin ----------------------------------------------------------------------------------


class NodeAffinity:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle = handle
        added = args.get("addedAffinity") or _EMPTY
        self.added_node_selector: NodeSelector | None = None
        self.added_pref_terms: PreferredSchedulingTerms | None = None
        required = added.get("requiredDuringSchedulingIgnoredDuringExecution")
        try:
            if required is not None:
                path = "addedAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
                self.added_node_selector = NodeSelector.strict(required, path)
            if preferred := added.get("preferredDuringSchedulingIgnoredDuringExecution"):
                path = "addedAffinity.preferredDuringSchedulingIgnoredDuringExecution"
                self.added_pref_terms = PreferredSchedulingTerms(preferred, path)
        except ValueError as e:
            raise ValueError(f"parsing addedAffinity: {e}") from None

    # -- PreFilter / Filter --

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        spec = pod.pod.get("spec") or _EMPTY
        required = _required_affinity(spec)
        node_selector = spec.get("nodeSelector")
        if required is None and self.added_node_selector is None and not node_selector:
            return None, SKIP  # nothing for Filter to check
        state[NAME] = RequiredNodeAffinity(node_selector, required)
        terms = (required or _EMPTY).get("nodeSelectorTerms")
        if not terms:
            return None, None
        # required terms that pin metadata.name narrow the search to those nodes
        node_names: set[str] | None = None
        for t in terms:
            term_names: set[str] | None = None
            for r in (t or _EMPTY).get("matchFields") or ():
                if r.get("key") == OBJECT_NAME_FIELD and r.get("operator") == "In":
                    s = set(r.get("values") or ())
                    term_names = s if term_names is None else term_names & s
            if term_names is None:
                return None, None  # this term does not pin names: any node may match
            node_names = term_names if node_names is None else node_names | term_names
        if node_names is not None and not node_names:
            return None, unresolvable(ERR_REASON_CONFLICT)
        if node_names:
            return PreFilterResult(node_names), None
        return None, None

    def pre_filter_extensions(self) -> None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> Status | None:
        labels = node_info.labels
        added = self.added_node_selector
        if added is not None and not added.matches(labels, node_info.name):
            return unresolvable(ERR_REASON_ENFORCED)
        try:
            required = state[NAME]
        except KeyError:  # PreFilter disabled
            required = RequiredNodeAffinity.from_pod(pod.pod)
        if required.matches(labels, node_info.name):
            return None
        return unresolvable(ERR_REASON_POD)

    # -- PreScore / Score --

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        try:
            preferred = _preferred_terms(pod.pod)
        except ValueError as e:
            return Status(Code.ERROR, str(e))
        if preferred is None and self.added_pref_terms is None:
            return SKIP  # nothing to score
        state[_PRESCORE_KEY] = preferred
        return None

    def score(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> tuple[int, Status | None]:
        count = 0
        added = self.added_pref_terms
        if added is not None:
            count = added.score(node_info.labels, node_info.name)
        try:
            preferred = state[_PRESCORE_KEY]
        except KeyError:  # PreScore disabled
            try:
                preferred = _preferred_terms(pod.pod)
            except ValueError as e:
                return 0, Status(Code.ERROR, str(e))
        if preferred is not None:
            count += preferred.score(node_info.labels, node_info.name)
        return (count, None) if count else _ZERO

    def score_extensions(self) -> NodeAffinity:
        return self

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[NodeScore]) -> Status | None:
        return default_normalize_score(MAX_NODE_SCORE, False, scores)

    # -- EnqueueExtensions --

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL),
                self._after_node_change,
            )
        ]

    def _after_node_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """Queue when the node (now) matches the pod's required affinity and did not before."""
        if new is None:
            return QueueingHint.SKIP
        if self.added_node_selector is not None and not self.added_node_selector.match_node(new):
            return QueueingHint.SKIP
        required = RequiredNodeAffinity.from_pod(pod)
        if not required.match_node(new):
            return QueueingHint.SKIP
        if old is None:
            return QueueingHint.QUEUE
        return QueueingHint.SKIP if required.match_node(old) else QueueingHint.QUEUE


def _preferred_terms(pod: Obj) -> PreferredSchedulingTerms | None:
    preferred = _node_affinity(pod.get("spec") or _EMPTY).get(
        "preferredDuringSchedulingIgnoredDuringExecution"
    )
    if preferred is None:
        return None
    return PreferredSchedulingTerms(preferred)
