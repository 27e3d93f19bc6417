"""Admission: the plugins kube-apiserver runs between authorization and storage.

Each plugin is an object with optional `admit` (mutating) and `validate`
methods taking `Attributes`, plain or async. The chain runs every `admit` in
order, then (after the object's own validation) every `validate`. Plugins read
cluster state from the watch cache, never from the store directly.

Reinvocation is kube's: when a mutating webhook changed the object, the whole
mutating phase runs once more (`attrs.reinvoking`), so that built-in plugins
see what webhooks added and webhooks with `reinvocationPolicy: IfNeeded` see
what later webhooks changed. Built-in plugins are therefore idempotent.

This module holds the chain, the request attributes and the plugins small
enough to live here; the others are in `k8py.apiserver.admission_plugins`,
webhooks in `k8py.apiserver.webhooks`. `admission_plugins.default_chain`
assembles them in kube's recommended order.
"""

from __future__ import annotations

import inspect
import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from k8py.api import errors
from k8py.api.defaults import default_toleration_seconds
from k8py.api.registry import ResourceInfo
from k8py.apiserver.watchcache import WatchCache

Obj = dict[str, Any]

IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")


@dataclass
class UserInfo:
    name: str
    groups: list[str] = field(default_factory=list)
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Attributes:
    """admission.Attributes: one request as admission sees it. `obj` is mutated in place."""

    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    info: ResourceInfo
    namespace: str
    name: str
    obj: Obj | None
    old: Obj | None
    subresource: str
    user: UserInfo
    dry_run: bool
    warnings: list[str] = field(default_factory=list)  # answered as Warning headers
    reinvoke: bool = False  # a webhook changed the object: run the mutating phase again
    reinvoking: bool = False  # this is that second run
    reinvocation_state: dict[str, Any] = field(default_factory=dict)  # per plugin, kept across both runs


class Plugin(Protocol):
    name: str


def forbidden(attrs: Attributes, reason: str) -> errors.StatusError:
    """admission.NewForbidden: `<resource> "<name>" is forbidden: <reason>`, details naming the object."""
    info = attrs.info
    name = attrs.name or (attrs.obj or {}).get("metadata", {}).get("generateName") or "Unknown"
    resource = f"{info.resource}.{info.group}" if info.group else info.resource
    return errors.StatusError(
        403,
        "Forbidden",
        f'{resource} "{name}" is forbidden: {reason}',
        details={"name": name, **({"group": info.group} if info.group else {}), "kind": info.resource},
    )


def aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message as is, several (deduplicated) in brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


class Chain:
    """Plugins' `admit`/`validate` may be plain or async methods (webhooks are async)."""

    def __init__(self, plugins: list[Any]) -> None:
        self.plugins = plugins

    async def admit(self, attrs: Attributes) -> None:
        await self._admit_once(attrs)
        if attrs.reinvoke:
            attrs.reinvoking = True
            await self._admit_once(attrs)

    async def _admit_once(self, attrs: Attributes) -> None:
        for p in self.plugins:
            if hasattr(p, "admit"):
                result = p.admit(attrs)
                if inspect.isawaitable(result):
                    await result

    async def validate(self, attrs: Attributes) -> None:
        for p in self.plugins:
            if hasattr(p, "validate"):
                result = p.validate(attrs)
                if inspect.isawaitable(result):
                    await result

    async def close(self) -> None:
        """Release what plugins hold (the webhooks' HTTP client)."""
        for p in self.plugins:
            if hasattr(p, "close"):
                await p.close()


class NamespaceLifecycle:
    """No content in namespaces that are missing or terminating; the system namespaces are immortal."""

    name = "NamespaceLifecycle"

    def __init__(self, cache: WatchCache, namespaces: ResourceInfo) -> None:
        self._cache = cache
        self._ns = namespaces

    async def admit(self, attrs: Attributes) -> None:
        info = attrs.info
        if info.resource == "namespaces" and info.group == "":
            if attrs.operation == "DELETE" and attrs.name in IMMORTAL_NAMESPACES:
                raise forbidden(attrs, "this namespace may not be deleted")
            return
        if not info.namespaced or attrs.operation == "DELETE":
            return
        key = self._ns.key("", attrs.namespace)
        ns = self._cache.get(key)
        if ns is None:
            await self._cache.sync()  # kube looks again (live) before refusing: the namespace may be brand new
            ns = self._cache.get(key)
            if ns is None:
                raise errors.not_found("", "namespaces", attrs.namespace)
        if attrs.operation != "CREATE":
            return
        if (ns.get("status") or {}).get("phase") == "Terminating" or ns["metadata"].get("deletionTimestamp"):
            if info.resource == "events" and not info.group:
                return
            err = forbidden(
                attrs, f"unable to create new content in namespace {attrs.namespace} because it is being terminated"
            )
            assert err.details is not None
            err.details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {attrs.namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise err


class Priority:
    """Pods get the priority (and preemption policy) of their PriorityClass, or of the global default one.

    Without a class and without a global default: priority 0, PreemptLowerPriority. A pod may not
    state a priority or policy other than its class's; only one PriorityClass may be the default.
    """

    name = "Priority"

    def __init__(self, cache: WatchCache, priority_classes: ResourceInfo) -> None:
        self._cache = cache
        self._pc = priority_classes

    def _global_default(self) -> Obj | None:
        """The global default class; the lowest value when a race made several."""
        defaults = [pc for pc in self._cache.list(self._pc.prefix()) if pc.get("globalDefault")]
        return min(defaults, key=lambda pc: pc.get("value", 0), default=None)

    def admit(self, attrs: Attributes) -> None:
        info = attrs.info
        if info.group or info.resource != "pods" or attrs.subresource or attrs.obj is None:
            return
        spec = attrs.obj.setdefault("spec", {})
        if attrs.operation == "UPDATE":
            old_spec = (attrs.old or {}).get("spec") or {}
            for key in ("priority", "preemptionPolicy"):  # set at creation: kept (validation forbids changes)
                if spec.get(key) is None and old_spec.get(key) is not None:
                    spec[key] = old_spec[key]
            return
        if attrs.operation != "CREATE":
            return
        name = spec.get("priorityClassName")
        if name:
            pc = self._cache.get(self._pc.key("", name))
            if pc is None:
                raise forbidden(attrs, f"no PriorityClass with name {name} was found")
        else:
            pc = self._global_default() or {"value": 0, "preemptionPolicy": "PreemptLowerPriority"}
            if "metadata" in pc:
                spec["priorityClassName"] = pc["metadata"]["name"]
        priority, policy = pc.get("value", 0), pc.get("preemptionPolicy")
        computed = "priority admission controller computed"
        if spec.get("priority") is not None and spec["priority"] != priority:
            raise forbidden(
                attrs,
                f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; "
                f"{computed} {priority} from the given PriorityClass name",
            )
        spec["priority"] = priority
        if policy is not None:
            if spec.get("preemptionPolicy") is not None and spec["preemptionPolicy"] != policy:
                raise forbidden(
                    attrs,
                    f"the string value of PreemptionPolicy ({spec['preemptionPolicy']}) must not be provided in pod spec; "
                    f"{computed} {policy} from the given PriorityClass name",
                )
            spec["preemptionPolicy"] = policy

    def validate(self, attrs: Attributes) -> None:
        info = attrs.info
        if info.group != self._pc.group or info.resource != "priorityclasses" or not (attrs.obj or {}).get("globalDefault"):
            return
        current = self._global_default()
        if current is not None and (attrs.operation == "CREATE" or current["metadata"]["name"] != attrs.name):
            raise forbidden(
                attrs, f"PriorityClass {current['metadata']['name']} is already marked as default. Only one default can exist"
            )


class DefaultTolerationSeconds:
    """not-ready and unreachable tolerations of 300 s on every pod."""

    name = "DefaultTolerationSeconds"

    def admit(self, attrs: Attributes) -> None:
        if attrs.info.kind != "Pod" or attrs.info.group or attrs.operation != "CREATE" or attrs.subresource:
            return
        default_toleration_seconds(attrs.obj or {})


class ServiceAllocator:
    """Cluster IPs and node ports for Services (kube-apiserver does this in the service REST storage)."""

    name = "ServiceAllocator"
    NODE_PORTS = range(30000, 32768)

    def __init__(self, cache: WatchCache, services: ResourceInfo, service_cidr: str) -> None:
        self._cache = cache
        self._svc = services
        self.network = ipaddress.ip_network(service_cidr)
        self._reserved_ips: set[str] = set()
        self._reserved_ports: set[int] = set()

    def _used(self) -> tuple[set[str], set[int]]:
        ips: set[str] = set(self._reserved_ips)
        ports: set[int] = set(self._reserved_ports)
        for svc in self._cache.list(self._svc.prefix()):
            spec = svc.get("spec") or {}
            ips.update(spec.get("clusterIPs") or [spec.get("clusterIP") or ""])
            ports.update(p.get("nodePort", 0) for p in spec.get("ports") or [])
        return ips, ports

    def allocate_ip(self, used: set[str]) -> str:
        hosts = self.network.num_addresses - 2
        # Random first, like kube's allocator; then scan when the range is crowded.
        for _ in range(32):
            ip = str(self.network.network_address + random.randint(1, hosts))
            if ip not in used:
                return ip
        for offset in range(1, hosts + 1):
            ip = str(self.network.network_address + offset)
            if ip not in used:
                return ip
        raise errors.internal("failed to allocate a serviceIP: range is full")

    def admit(self, attrs: Attributes) -> None:
        if attrs.info.kind != "Service" or attrs.info.group or attrs.subresource:
            return
        if attrs.operation not in ("CREATE", "UPDATE") or attrs.obj is None:
            return
        if attrs.reinvoking:
            return  # kube allocates in the REST storage, once per request: reinvocation never reaches it
        spec = attrs.obj.setdefault("spec", {})
        old_spec = (attrs.old or {}).get("spec") or {}
        used_ips, used_ports = self._used()
        svc_type = spec.get("type", "ClusterIP")
        if svc_type == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        elif attrs.operation == "UPDATE" and old_spec.get("clusterIP") and "clusterIP" not in spec:
            spec["clusterIP"] = old_spec["clusterIP"]
            spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
        elif spec.get("clusterIP") == "None":
            spec["clusterIPs"] = ["None"]
        elif not spec.get("clusterIP") and not (attrs.old and old_spec.get("clusterIP")):
            ip = self.allocate_ip(used_ips)
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
        elif attrs.operation == "CREATE":
            ip = spec["clusterIP"]
            if ip in used_ips:
                raise errors.invalid(
                    "",
                    "Service",
                    attrs.name,
                    [errors.cause("spec.clusterIPs", f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: provided IP is already allocated')],
                )
            spec.setdefault("clusterIPs", [ip])
        if svc_type in ("NodePort", "LoadBalancer"):
            old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []}
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    kept = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
                    p["nodePort"] = kept or self._free_port(used_ports)
                    used_ports.add(p["nodePort"])
        else:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)
        if "clusterIP" in spec and not attrs.dry_run:
            self._reserved_ips.add(spec["clusterIP"])

    def _free_port(self, used: set[int]) -> int:
        free = [p for p in self.NODE_PORTS if p not in used]
        if not free:
            raise errors.internal("failed to allocate a nodePort: range is full")
        return random.choice(free)

    def release(self, obj: Obj) -> None:
        """Forget reservations of a stored or abandoned Service (the cache now holds the truth)."""
        spec = obj.get("spec") or {}
        self._reserved_ips.discard(spec.get("clusterIP") or "")
