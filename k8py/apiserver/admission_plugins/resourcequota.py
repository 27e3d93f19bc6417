"""ResourceQuota: refuse what would take a namespace over one of its ResourceQuotas.

kube's staging/.../admission/plugin/resourcequota with the evaluators of
pkg/quota/v1/evaluator/core. An evaluator knows, for one resource, which
quota resource names it accounts for (`count/pods`, `requests.cpu`,
`services.nodeports`, `<class>.storageclass.storage.k8s.io/requests.storage`,
...), an object's usage, the quota scopes an object falls in, and (pods only)
the constraint that every container states the compute resources a quota
restricts. A request is checked against every quota of its namespace that
restricts one of those names and whose scopes match; the first one exceeded
answers 403 `exceeded quota: <name>, requested: ..., used: ..., limited: ...`.

Differences from kube, on purpose: the hard limits are read from `spec.hard`
(kube reads `status.hard`, which the resource quota controller copies from
`spec.hard`), and usage is summed from the watch cache at admission time with
the same evaluators the resource quota controller (k8py/controllers/resourcequota.py)
uses to write `status.used`, instead of kube's "read `status.used`, add the
request, write `status.used` back" (a conditional status update per admitted
object). The two agree whenever the controller has caught up; admission never
answers "status unknown for quota" for a quota the controller has not synced
yet, and `status.used` follows the objects' creation by the controller's
informer latency instead of being incremented in the request. Two concurrent
requests may both fit a quota that has room for one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from k8py.api import meta, resources
from k8py.api.registry import ResourceInfo
from k8py.api.resources import ResourceList
from k8py.api.selectors import LabelSelector
from k8py.apiserver.admission import Attributes, forbidden
from k8py.apiserver.watchcache import WatchCache

Obj = dict[str, Any]
# The object-count evaluators that also answer to the legacy name (generic.NewObjectCountEvaluator's alias).
LEGACY_COUNT_NAMES = frozenset({"configmaps", "resourcequotas", "replicationcontrollers", "secrets"})
IGNORED = frozenset({("", "events")})
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"


def _count_name(group: str, resource: str) -> str:
    return f"count/{resource}.{group}" if group else f"count/{resource}"


class Evaluator:
    """quota.Evaluator: object count only (the generic evaluator every resource gets)."""

    operations: tuple[str, ...] = ("CREATE",)

    def __init__(self, group: str, resource: str) -> None:
        self.names = {_count_name(group, resource)}
        if not group and resource in LEGACY_COUNT_NAMES:
            self.names.add(resource)

    def matching_resources(self, names: list[str]) -> list[str]:
        return [n for n in names if n in self.names]

    def usage(self, obj: Obj) -> ResourceList:
        return {n: resources.count(1) for n in self.names}

    def matches_scope(self, selector: Obj, obj: Obj) -> bool:
        """Quota scopes are about pods: a scoped quota never matches other objects (MatchesNoScopeFunc)."""
        return False

    def constraints(self, required: list[str], obj: Obj) -> str | None:
        return None


class ServiceEvaluator(Evaluator):
    operations = ("CREATE", "UPDATE")

    def __init__(self) -> None:
        super().__init__("", "services")
        self.names |= {"services", "services.loadbalancers", "services.nodeports"}

    def usage(self, obj: Obj) -> ResourceList:
        spec = obj.get("spec") or {}
        ports = spec.get("ports") or []
        out = {"services": resources.count(1), "count/services": resources.count(1)}
        if spec.get("type") == "NodePort":
            out["services.nodeports"] = resources.count(len(ports))
        elif spec.get("type") == "LoadBalancer":
            allocate = spec.get("allocateLoadBalancerNodePorts")
            node_ports = len(ports) if allocate is not False else sum(1 for p in ports if p.get("nodePort"))
            out["services.nodeports"] = resources.count(node_ports)
            out["services.loadbalancers"] = resources.count(1)
        return out


class ClaimEvaluator(Evaluator):
    operations = ("CREATE", "UPDATE")

    def __init__(self) -> None:
        super().__init__("", "persistentvolumeclaims")
        self.names |= {"persistentvolumeclaims", "requests.storage"}

    def matching_resources(self, names: list[str]) -> list[str]:
        def matches(n: str) -> bool:
            if n in self.names:
                return True
            _, sep, rest = n.partition(STORAGE_CLASS_SUFFIX)
            return bool(sep) and rest in ("persistentvolumeclaims", "requests.storage")

        return [n for n in names if matches(n)]

    def usage(self, obj: Obj) -> ResourceList:
        spec = obj.get("spec") or {}
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        storage_class = annotations.get("volume.beta.kubernetes.io/storage-class") or spec.get("storageClassName") or ""
        out = {"persistentvolumeclaims": resources.count(1), "count/persistentvolumeclaims": resources.count(1)}
        if storage_class:
            out[f"{storage_class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = resources.count(1)
        requested = resources.parse_list((spec.get("resources") or {}).get("requests")).get("storage")
        allocated = resources.parse_list((obj.get("status") or {}).get("allocatedResources")).get("storage")
        if allocated is not None and (requested is None or allocated.value > requested.value):
            requested = allocated
        if requested is not None:
            out["requests.storage"] = requested
            if storage_class:
                out[f"{storage_class}{STORAGE_CLASS_SUFFIX}requests.storage"] = requested
        return out


# The compute resources a quota can only account for when every container states them.
_EXPLICIT = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})
_POD_NAMES = frozenset(
    {
        "count/pods", "pods", "cpu", "memory", "ephemeral-storage",
        "requests.cpu", "requests.memory", "requests.ephemeral-storage",
        "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    }
)  # fmt: skip


def _extended(name: str) -> bool:
    """helper.IsExtendedResourceName: a domain-qualified name outside kubernetes.io."""
    return "/" in name and "kubernetes.io/" not in name and not name.startswith("requests.")


def compute_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """podComputeUsageHelper: the quota names one pod's (or container's) requests and limits account for."""
    out: ResourceList = {"pods": resources.count(1)}
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name in requests:
            out[name] = out[f"requests.{name}"] = requests[name]
        if name in limits:
            out[f"limits.{name}"] = limits[name]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            out[name] = out[f"requests.{name}"] = q
        if _extended(name):
            out[f"requests.{name}"] = q
    return out


class PodEvaluator(Evaluator):
    def __init__(self) -> None:
        super().__init__("", "pods")

    def matching_resources(self, names: list[str]) -> list[str]:
        return [
            n for n in names
            if n in _POD_NAMES or n.startswith(("hugepages-", "requests.hugepages-"))
            or (n.startswith("requests.") and _extended(n.removeprefix("requests.")))
        ]  # fmt: skip

    def usage(self, obj: Obj) -> ResourceList:
        out = {"count/pods": resources.count(1)}
        if not _counts_compute(obj):
            return out
        return {**out, **compute_usage(resources.pod_requests(obj), resources.pod_limits(obj))}

    def matches_scope(self, selector: Obj, obj: Obj) -> bool:
        spec = obj.get("spec") or {}
        scope = str(selector.get("scopeName", ""))
        if scope in ("Terminating", "NotTerminating"):
            deadline = spec.get("activeDeadlineSeconds")
            return (deadline is not None and deadline >= 0) == (scope == "Terminating")
        if scope in ("BestEffort", "NotBestEffort"):
            return _best_effort(spec) == (scope == "BestEffort")
        if scope == "PriorityClass":
            if selector.get("operator") == "Exists":
                return bool(spec.get("priorityClassName"))
            expr = {"key": "PriorityClass", "operator": selector.get("operator"), "values": selector.get("values")}
            return LabelSelector.from_label_selector({"matchExpressions": [expr]}).matches(
                {"PriorityClass": spec.get("priorityClassName") or ""}
            )
        if scope == "CrossNamespacePodAffinity":
            return _cross_namespace_affinity(spec)
        return False

    def constraints(self, required: list[str], obj: Obj) -> str | None:
        spec = obj.get("spec") or {}
        wanted = _EXPLICIT.intersection(required)
        missing: dict[str, set[str]] = {}
        for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
            res = c.get("resources") or {}
            stated = compute_usage(resources.parse_list(res.get("requests")), resources.parse_list(res.get("limits")))
            for name in wanted - stated.keys():
                missing.setdefault(name, set()).add(c.get("name", ""))
        if not missing:
            return None
        parts = sorted(f"{name} for: {','.join(sorted(containers))}" for name, containers in missing.items())
        return "must specify " + "; ".join(parts)


def _counts_compute(pod: Obj) -> bool:
    """QuotaV1Pod: terminal pods, and pods past their deletion grace period, use no compute quota."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    md = pod.get("metadata") or {}
    deletion, grace = md.get("deletionTimestamp"), md.get("deletionGracePeriodSeconds")
    if deletion and grace is not None:
        return dt.datetime.now(dt.UTC) <= meta.parse_time(deletion) + dt.timedelta(seconds=grace)
    return True


def _best_effort(spec: Obj) -> bool:
    """qos.GetPodQOS == BestEffort: no container requests or limits cpu or memory."""
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        res = c.get("resources") or {}
        for field in ("requests", "limits"):
            if any(resources.parse_list(res.get(field)).get(n, resources.ZERO).value for n in ("cpu", "memory")):
                return False
    return True


def _cross_namespace_affinity(spec: Obj) -> bool:
    affinity = spec.get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        a = affinity.get(kind) or {}
        terms = list(a.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [t.get("podAffinityTerm") or {} for t in a.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
            return True
    return False


def evaluator_for(info: ResourceInfo) -> Evaluator | None:
    """The evaluator kube's registry has (or makes, for object counts) for a resource; None if ignored."""
    return evaluator_for_resource(info.group, info.resource)


def evaluator_for_resource(group: str, resource: str) -> Evaluator | None:
    """`evaluator_for` by group and resource name (the resource quota controller's lookup)."""
    if (group, resource) in IGNORED:
        return None
    if not group:
        special: dict[str, Callable[[], Evaluator]] = {
            "pods": PodEvaluator, "services": ServiceEvaluator, "persistentvolumeclaims": ClaimEvaluator,
        }  # fmt: skip
        if resource in special:
            return special[resource]()
    return Evaluator(group, resource)


def scope_selectors(quota: Obj) -> list[Obj]:
    """A quota's spec.scopes and spec.scopeSelector as one list of scope selector requirements."""
    return _scope_selectors(quota)


def _scope_selectors(quota: Obj) -> list[Obj]:
    spec = quota.get("spec") or {}
    selectors = [{"scopeName": s, "operator": "Exists"} for s in spec.get("scopes") or []]
    return selectors + list((spec.get("scopeSelector") or {}).get("matchExpressions") or [])


class ResourceQuota:
    name = "ResourceQuota"

    def __init__(self, cache: WatchCache, quotas: ResourceInfo) -> None:
        self._cache = cache
        self._quotas = quotas

    async def validate(self, attrs: Attributes) -> None:
        if attrs.subresource or not attrs.namespace or attrs.obj is None:
            return
        quotas = self._cache.list(self._quotas.prefix(attrs.namespace))
        evaluator = evaluator_for(attrs.info) if quotas else None
        if evaluator is None or attrs.operation not in evaluator.operations:
            return
        obj = attrs.obj
        matching: list[tuple[Obj, ResourceList, list[Obj]]] = []
        for quota in quotas:
            hard = resources.parse_list((quota.get("spec") or {}).get("hard"))
            restricted = evaluator.matching_resources(list(hard))
            selectors = _scope_selectors(quota)
            if not restricted or not all(evaluator.matches_scope(s, obj) for s in selectors):
                continue
            problem = evaluator.constraints(restricted, obj)
            if problem:
                raise forbidden(attrs, f"failed quota: {quota['metadata']['name']}: {problem}")
            matching.append((quota, hard, selectors))
        if not matching:
            return
        delta = evaluator.usage(obj)
        if negative := sorted(n for n, q in delta.items() if q.value < 0):
            raise forbidden(attrs, f"quota usage is negative for resource(s): {','.join(negative)}")
        if attrs.operation == "UPDATE" and attrs.old is not None:
            delta = resources.subtract_non_negative(delta, evaluator.usage(attrs.old))
        if resources.is_zero(delta):
            return
        await self._cache.sync()  # count every object written so far
        existing = self._cache.list(attrs.info.prefix(attrs.namespace))
        for quota, hard, selectors in matching:
            requested = resources.mask(delta, hard)
            used = self._used(evaluator, existing, requested, selectors)
            over = resources.exceeded(resources.add(used, requested), hard)
            if over:
                raise forbidden(
                    attrs,
                    f"exceeded quota: {quota['metadata']['name']}, "
                    f"requested: {resources.pretty(resources.mask(requested, over))}, "
                    f"used: {resources.pretty(resources.mask(used, over))}, "
                    f"limited: {resources.pretty(resources.mask(hard, over))}",
                )

    @staticmethod
    def _used(evaluator: Evaluator, objects: list[Obj], names: ResourceList, selectors: list[Obj]) -> ResourceList:
        """What the quota's `names` are already used by the namespace's objects in the quota's scopes."""
        used: ResourceList = dict.fromkeys(names, resources.ZERO)
        for obj in objects:
            if all(evaluator.matches_scope(s, obj) for s in selectors):
                used = resources.add(used, resources.mask(evaluator.usage(obj), names))
        return used
