"""LimitRanger: default and bound compute requests/limits from the namespace's LimitRanges.

kube's plugin/pkg/admission/limitranger. Mutating: containers (and init
containers) of a new pod get the `default` limits and `defaultRequest`
requests of every `Container` item they do not set, recorded in the
`kubernetes.io/limit-ranger` annotation. Validating: per container and per
pod min/max/maxLimitRequestRatio, and per PersistentVolumeClaim storage
min/max; a violation is 403 Forbidden with kube's messages, all of one
LimitRange's violations aggregated. Pod updates are skipped (containers'
resources are immutable), as are objects already being deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from k8py.api import resources
from k8py.api.registry import ResourceInfo
from k8py.api.resources import ResourceList
from k8py.api.validation.quantity import Quantity
from k8py.apiserver.admission import Attributes, aggregate, forbidden
from k8py.apiserver.watchcache import WatchCache

Obj = dict[str, Any]
ANNOTATION = "kubernetes.io/limit-ranger"


class LimitRanger:
    name = "LimitRanger"

    def __init__(self, cache: WatchCache, limit_ranges: ResourceInfo) -> None:
        self._cache = cache
        self._lr = limit_ranges

    def _supports(self, attrs: Attributes) -> bool:
        if attrs.subresource or attrs.obj is None or attrs.info.group:
            return False
        if attrs.operation not in ("CREATE", "UPDATE"):
            return False
        if attrs.info.kind == "Pod":
            return attrs.operation == "CREATE"
        if attrs.info.kind != "PersistentVolumeClaim":
            return False
        return not ((attrs.old or {}).get("metadata") or {}).get("deletionTimestamp")

    def _ranges(self, namespace: str) -> list[Obj]:
        return self._cache.list(self._lr.prefix(namespace))

    def admit(self, attrs: Attributes) -> None:
        if not self._supports(attrs) or attrs.info.kind != "Pod":
            return
        assert attrs.obj is not None
        for lr in self._ranges(attrs.namespace):
            _default_pod(lr, attrs.obj)

    def validate(self, attrs: Attributes) -> None:
        if not self._supports(attrs):
            return
        assert attrs.obj is not None
        check = _validate_pod if attrs.info.kind == "Pod" else _validate_claim
        for lr in self._ranges(attrs.namespace):
            problems = check(lr, attrs.obj)
            if problems:
                raise forbidden(attrs, aggregate(problems))


def _items(lr: Obj, limit_type: str) -> list[Obj]:
    return [i for i in (lr.get("spec") or {}).get("limits") or [] if i.get("type") == limit_type]


def _default_pod(lr: Obj, pod: Obj) -> None:
    """mergePodResourceRequirements with the LimitRange's Container defaults."""
    default_requests: Obj = {}
    default_limits: Obj = {}
    for item in _items(lr, "Container"):
        default_requests.update(item.get("defaultRequest") or {})
        default_limits.update(item.get("default") or {})
    spec = pod.get("spec") or {}
    notes: list[str] = []
    for containers, what in ((spec.get("containers"), "container"), (spec.get("initContainers"), "init container")):
        for c in containers or []:
            res = c.setdefault("resources", {})
            limits = res.setdefault("limits", {})
            requests = res.setdefault("requests", {})
            set_limits = sorted(k for k in default_limits if k not in limits)
            set_requests = sorted(k for k in default_requests if k not in requests)
            limits.update({k: default_limits[k] for k in set_limits})
            requests.update({k: default_requests[k] for k in set_requests})
            if set_requests:
                notes.append(f"{', '.join(set_requests)} request for {what} {c.get('name', '')}")
            if set_limits:
                notes.append(f"{', '.join(set_limits)} limit for {what} {c.get('name', '')}")
            for key in ("limits", "requests"):
                if not res[key]:
                    del res[key]
    if notes:
        pod.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION] = (
            "LimitRanger plugin set: " + "; ".join(notes)
        )


Constraint = Callable[[str, str, Quantity, ResourceList, ResourceList], str | None]


def _min(limit_type: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    if req is None:
        return f"minimum {name} usage per {limit_type} is {enforced}.  No request is specified"
    if resources.milli(req) < resources.milli(enforced):
        return f"minimum {name} usage per {limit_type} is {enforced}, but request is {req}"
    if lim is not None and resources.milli(lim) < resources.milli(enforced):
        return f"minimum {name} usage per {limit_type} is {enforced}, but limit is {lim}"
    return None


def _max(limit_type: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    if lim is None:
        return f"maximum {name} usage per {limit_type} is {enforced}.  No limit is specified"
    if resources.milli(lim) > resources.milli(enforced):
        return f"maximum {name} usage per {limit_type} is {enforced}, but limit is {lim}"
    if req is not None and resources.milli(req) > resources.milli(enforced):
        return f"maximum {name} usage per {limit_type} is {enforced}, but request is {req}"
    return None


def _max_request(limit_type: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    """maxRequestConstraint: the max applied to requests only (claims have no limits)."""
    req = requests.get(name)
    if req is None:
        return f"maximum {name} usage per {limit_type} is {enforced}.  No request is specified"
    if resources.milli(req) > resources.milli(enforced):
        return f"maximum {name} usage per {limit_type} is {enforced}, but request is {req}"
    return None


def _ratio(limit_type: str, name: str, enforced: Quantity, requests: ResourceList, limits: ResourceList) -> str | None:
    req, lim = requests.get(name), limits.get(name)
    prefix = f"{name} max limit to request ratio per {limit_type} is {enforced}"
    if req is None or resources.milli(req) == 0:
        return f"{prefix}, but no request is specified or request is 0"
    if lim is None or resources.milli(lim) == 0:
        return f"{prefix}, but no limit is specified or limit is 0"
    observed = resources.milli(lim) / resources.milli(req)
    if observed * 1000 > resources.milli(enforced):
        return f"{prefix}, but provided ratio is {observed:f}"
    return None


def _check(item: Obj, limit_type: str, requests: ResourceList, limits: ResourceList, rules: tuple[tuple[str, Constraint], ...]) -> list[str]:
    problems: list[str] = []
    for field, constraint in rules:
        for name, enforced in resources.parse_list(item.get(field)).items():
            problem = constraint(limit_type, name, enforced, requests, limits)
            if problem:
                problems.append(problem)
    return problems


_POD_RULES: tuple[tuple[str, Constraint], ...] = (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio))
_CLAIM_RULES: tuple[tuple[str, Constraint], ...] = (("min", _min), ("max", _max_request))


def _validate_pod(lr: Obj, pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    problems: list[str] = []
    for item in (lr.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
                res = c.get("resources") or {}
                requests, limits = resources.parse_list(res.get("requests")), resources.parse_list(res.get("limits"))
                problems += _check(item, "Container", requests, limits, _POD_RULES)
        elif item.get("type") == "Pod":
            requests = resources.pod_requests(pod, overhead=False)
            limits = resources.pod_limits(pod, overhead=False)
            problems += _check(item, "Pod", requests, limits, _POD_RULES)
    return problems


def _validate_claim(lr: Obj, claim: Obj) -> list[str]:
    requests = resources.parse_list(((claim.get("spec") or {}).get("resources") or {}).get("requests"))
    problems: list[str] = []
    for item in _items(lr, "PersistentVolumeClaim"):
        problems += _check(item, "PersistentVolumeClaim", requests, {}, _CLAIM_RULES)
    return problems
