"""The scheduler's view of pods and nodes: ``PodInfo``, ``NodeInfo`` and ``Resource``.

Modelled on ``pkg/scheduler/framework/types.go``. A ``PodInfo`` parses what the
plugins need from a pod once (requests, affinity terms, host ports), so the filter
and score loops only compare numbers and sets. A ``NodeInfo`` aggregates a node and
the pods on it (assumed ones included); every change bumps its ``generation``, which
is how the cache's snapshot copies only what changed since the last cycle.

Pod and node dicts are informer objects: shared, never mutated here.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from k8py.api.resources import ResourceList, milli, parse_list, pod_requests
from k8py.api.selectors import LabelSelector

Obj = dict[str, Any]

# what the scorers assume a container without requests uses (schedutil.DefaultMilliCPURequest/-MemoryRequest)
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

_generation = itertools.count(1)


def next_generation() -> int:
    return next(_generation)


class Resource:
    """framework.Resource: compute resources as integers (cpu in millicores, the rest in units)."""

    __slots__ = ("milli_cpu", "memory", "ephemeral_storage", "allowed_pod_number", "scalar_resources")

    def __init__(
        self,
        milli_cpu: int = 0,
        memory: int = 0,
        ephemeral_storage: int = 0,
        allowed_pod_number: int = 0,
        scalar_resources: dict[str, int] | None = None,
    ) -> None:
        self.milli_cpu = milli_cpu
        self.memory = memory
        self.ephemeral_storage = ephemeral_storage
        self.allowed_pod_number = allowed_pod_number
        self.scalar_resources: dict[str, int] = scalar_resources or {}

    @classmethod
    def from_list(cls, rl: ResourceList) -> Resource:
        r = cls()
        for name, q in rl.items():
            if name == "cpu":
                r.milli_cpu = milli(q)
            elif name == "memory":
                r.memory = _value(q.value)
            elif name == "ephemeral-storage":
                r.ephemeral_storage = _value(q.value)
            elif name == "pods":
                r.allowed_pod_number = _value(q.value)
            elif is_scalar_resource_name(name):
                r.scalar_resources[name] = _value(q.value)
        return r

    def add(self, other: Resource, sign: int = 1) -> None:
        self.milli_cpu += sign * other.milli_cpu
        self.memory += sign * other.memory
        self.ephemeral_storage += sign * other.ephemeral_storage
        self.allowed_pod_number += sign * other.allowed_pod_number
        if other.scalar_resources:
            sr = self.scalar_resources
            for name, v in other.scalar_resources.items():
                sr[name] = sr.get(name, 0) + sign * v

    def get(self, name: str) -> int:
        if name == "cpu":
            return self.milli_cpu
        if name == "memory":
            return self.memory
        if name == "ephemeral-storage":
            return self.ephemeral_storage
        if name == "pods":
            return self.allowed_pod_number
        return self.scalar_resources.get(name, 0)

    def clone(self) -> Resource:
        return Resource(
            self.milli_cpu,
            self.memory,
            self.ephemeral_storage,
            self.allowed_pod_number,
            dict(self.scalar_resources),
        )

    def is_zero(self) -> bool:
        return not (
            self.milli_cpu or self.memory or self.ephemeral_storage or any(self.scalar_resources.values())
        )

    def __repr__(self) -> str:
        return (
            f"Resource(cpu={self.milli_cpu}m, memory={self.memory}, ephemeral={self.ephemeral_storage},"
            f" pods={self.allowed_pod_number}, scalar={self.scalar_resources})"
        )


def _value(d: Any) -> int:
    """Quantity.Value(): rounded up to an integer."""
    i = int(d)
    return i + 1 if d > i else i


def is_scalar_resource_name(name: str) -> bool:
    """Extended resources, hugepages-*, attachable-volumes-*, and names in the *kubernetes.io/
    namespace (v1helper.IsScalarResourceName, IsPrefixedNativeResource included)."""
    return (
        name.startswith("hugepages-")
        or name.startswith("attachable-volumes-")
        or is_extended_resource_name(name)
        or name.startswith("requests.hugepages-")
        or "kubernetes.io/" in name
    )


def is_extended_resource_name(name: str) -> bool:
    """A fully-qualified name outside the kubernetes.io domain that is not a quota name."""
    if name.startswith("requests.") or "/" not in name:
        return False
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


# -- pods ------------------------------------------------------------------------------------


class AffinityTerm:
    """framework.AffinityTerm: a pod (anti-)affinity term with its namespaces resolved."""

    __slots__ = ("namespaces", "selector", "topology_key", "namespace_selector")

    def __init__(self, pod: Obj, term: Mapping[str, Any]) -> None:
        namespaces = term.get("namespaces") or []
        ns_selector = term.get("namespaceSelector")
        if not namespaces and ns_selector is None:
            namespaces = [pod["metadata"].get("namespace", "")]
        self.namespaces: frozenset[str] = frozenset(namespaces)
        self.selector = LabelSelector.from_label_selector(term.get("labelSelector"))
        self.topology_key: str = term.get("topologyKey", "")
        self.namespace_selector = (
            LabelSelector.nothing() if ns_selector is None else LabelSelector.from_label_selector(ns_selector)
        )

    def matches(self, pod: Obj, ns_labels: Mapping[str, str] | None) -> bool:
        """Whether `pod` (in a namespace labelled `ns_labels`) is selected by this term."""
        meta = pod["metadata"]
        if meta.get("namespace", "") in self.namespaces or (
            not self.namespace_selector.matches_nothing and self.namespace_selector.matches(ns_labels or {})
        ):
            return self.selector.matches(meta.get("labels") or {})
        return False


@dataclass(slots=True)
class WeightedAffinityTerm:
    term: AffinityTerm
    weight: int


def _terms(pod: Obj, raw: Iterable[Mapping[str, Any]] | None) -> list[AffinityTerm]:
    return [AffinityTerm(pod, t) for t in raw or ()]


def _weighted(pod: Obj, raw: Iterable[Mapping[str, Any]] | None) -> list[WeightedAffinityTerm]:
    return [
        WeightedAffinityTerm(AffinityTerm(pod, t.get("podAffinityTerm") or {}), int(t.get("weight", 0)))
        for t in raw or ()
    ]


class PodInfo:
    """framework.PodInfo: a pod with what the plugins need of it parsed once."""

    __slots__ = (
        "pod",
        "uid",
        "key",
        "namespace",
        "name",
        "labels",
        "priority",
        "required_affinity_terms",
        "required_anti_affinity_terms",
        "preferred_affinity_terms",
        "preferred_anti_affinity_terms",
        "_requests",
        "_non_zero",
    )

    def __init__(self, pod: Obj) -> None:
        self._requests: Resource | None = None
        self._non_zero: tuple[int, int] | None = None
        self.update(pod)

    def update(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self.pod = pod
        self.uid: str = meta.get("uid", "")
        self.namespace: str = meta.get("namespace", "")
        self.name: str = meta.get("name", "")
        self.key = f"{self.namespace}/{self.name}"
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.priority: int = (pod.get("spec") or {}).get("priority") or 0
        affinity = (pod.get("spec") or {}).get("affinity") or {}
        pa = affinity.get("podAffinity") or {}
        paa = affinity.get("podAntiAffinity") or {}
        self.required_affinity_terms = _terms(pod, pa.get("requiredDuringSchedulingIgnoredDuringExecution"))
        self.required_anti_affinity_terms = _terms(
            pod, paa.get("requiredDuringSchedulingIgnoredDuringExecution")
        )
        self.preferred_affinity_terms = _weighted(
            pod, pa.get("preferredDuringSchedulingIgnoredDuringExecution")
        )
        self.preferred_anti_affinity_terms = _weighted(
            pod, paa.get("preferredDuringSchedulingIgnoredDuringExecution")
        )
        self._requests = None
        self._non_zero = None

    @property
    def spec(self) -> Obj:
        return self.pod.get("spec") or {}

    @property
    def node_name(self) -> str:
        return self.spec.get("nodeName") or ""

    def requests(self) -> Resource:
        """resourcehelper.PodRequests: containers, init containers and overhead."""
        if self._requests is None:
            self._requests = Resource.from_list(pod_requests(self.pod))
        return self._requests

    def non_zero_requests(self) -> tuple[int, int]:
        """(milli cpu, memory) with the scorers' defaults for containers that request none."""
        if self._non_zero is None:
            self._non_zero = _non_zero_requests(self.pod)
        return self._non_zero

    def has_affinity(self) -> bool:
        return bool(
            self.required_affinity_terms
            or self.preferred_affinity_terms
            or self.required_anti_affinity_terms
            or self.preferred_anti_affinity_terms
        )

    def host_ports(self) -> list[tuple[str, str, int]]:
        """(hostIP, protocol, hostPort) of every container port with a host port (util.GetHostPorts:
        sidecars, i.e. init containers with restartPolicy Always, first, then the containers)."""
        out = []
        spec = self.spec
        sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
        for c in (*sidecars, *(spec.get("containers") or ())):
            for p in c.get("ports") or ():
                if hp := p.get("hostPort"):
                    out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", hp))
        return out

    def __repr__(self) -> str:
        return f"PodInfo({self.key})"


def _non_zero_requests(pod: Obj) -> tuple[int, int]:
    """PodRequests with NonMissingContainerRequests: per container, a missing cpu or memory
    request counts as the default; init containers raise the total as for real requests."""
    spec = pod.get("spec") or {}

    def one(c: Mapping[str, Any]) -> tuple[int, int]:
        req = parse_list((c.get("resources") or {}).get("requests"))
        cpu = milli(req["cpu"]) if "cpu" in req else DEFAULT_MILLI_CPU_REQUEST
        mem = _value(req["memory"].value) if "memory" in req else DEFAULT_MEMORY_REQUEST
        return cpu, mem

    cpu = mem = 0
    for c in spec.get("containers") or ():
        a, b = one(c)
        cpu += a
        mem += b
    side_cpu = side_mem = peak_cpu = peak_mem = 0
    for c in spec.get("initContainers") or ():
        a, b = one(c)
        if c.get("restartPolicy") == "Always":
            cpu += a
            mem += b
            side_cpu += a
            side_mem += b
            need_cpu, need_mem = side_cpu, side_mem
        else:
            need_cpu, need_mem = a + side_cpu, b + side_mem
        peak_cpu, peak_mem = max(peak_cpu, need_cpu), max(peak_mem, need_mem)
    cpu, mem = max(cpu, peak_cpu), max(mem, peak_mem)
    overhead = parse_list(spec.get("overhead"))
    if "cpu" in overhead:
        cpu += milli(overhead["cpu"])
    if "memory" in overhead:
        mem += _value(overhead["memory"].value)
    return cpu, mem


class QueuedPodInfo:
    """framework.QueuedPodInfo: a pod in the scheduling queue with its attempt history."""

    __slots__ = (
        "pod_info",
        "timestamp",
        "initial_attempt_timestamp",
        "attempts",
        "unschedulable_plugins",
        "pending_plugins",
        "gated",
        "backoff_expiration",
        "seq",
    )

    def __init__(self, pod_info: PodInfo, seq: int) -> None:
        now = time.monotonic()
        self.pod_info = pod_info
        self.timestamp = now
        self.initial_attempt_timestamp: float | None = None
        self.attempts = 0
        self.unschedulable_plugins: set[str] = set()
        self.pending_plugins: set[str] = set()
        self.gated = False
        self.backoff_expiration = 0.0
        self.seq = seq

    @property
    def pod(self) -> Obj:
        return self.pod_info.pod

    def __repr__(self) -> str:
        return f"QueuedPodInfo({self.pod_info.key}, attempts={self.attempts})"


# -- nodes -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ImageStateSummary:
    size: int
    num_nodes: int


class HostPortInfo(dict[str, set[tuple[str, int]]]):
    """framework.HostPortInfo: host IP -> {(protocol, port)}; 0.0.0.0 conflicts with every IP."""

    def add(self, ip: str, protocol: str, port: int) -> None:
        self.setdefault(ip or "0.0.0.0", set()).add((protocol or "TCP", port))

    def remove(self, ip: str, protocol: str, port: int) -> None:
        ports = self.get(ip or "0.0.0.0")
        if ports is not None:
            ports.discard((protocol or "TCP", port))
            if not ports:
                del self[ip or "0.0.0.0"]

    def check_conflict(self, ip: str, protocol: str, port: int) -> bool:
        ip = ip or "0.0.0.0"
        pp = (protocol or "TCP", port)
        if ip == "0.0.0.0":
            return any(pp in ports for ports in self.values())
        return pp in self.get(ip, ()) or pp in self.get("0.0.0.0", ())

    def clone(self) -> HostPortInfo:
        c = HostPortInfo()
        for ip, ports in self.items():
            c[ip] = set(ports)
        return c


class NodeInfo:
    """framework.NodeInfo: a node, the pods on it, and their aggregate requests."""

    __slots__ = (
        "node",
        "name",
        "pods",
        "pods_with_affinity",
        "pods_with_required_anti_affinity",
        "used_ports",
        "requested",
        "non_zero_cpu",
        "non_zero_mem",
        "allocatable",
        "image_states",
        "pvc_ref_counts",
        "generation",
        "labels",
        "taints",
        "unschedulable",
    )

    def __init__(self, node: Obj | None = None, pods: Iterable[PodInfo] = ()) -> None:
        self.node: Obj | None = None
        self.name = ""
        self.labels: dict[str, str] = {}
        self.taints: list[Obj] = []
        self.unschedulable = False
        self.pods: list[PodInfo] = []
        self.pods_with_affinity: list[PodInfo] = []
        self.pods_with_required_anti_affinity: list[PodInfo] = []
        self.used_ports = HostPortInfo()
        self.requested = Resource()
        self.non_zero_cpu = 0
        self.non_zero_mem = 0
        self.allocatable = Resource()
        self.image_states: dict[str, ImageStateSummary] = {}
        self.pvc_ref_counts: dict[str, int] = {}
        self.generation = next_generation()
        if node is not None:
            self.set_node(node)
        for p in pods:
            self.add_pod(p)

    def set_node(self, node: Obj) -> None:
        self.node = node
        self.name = node["metadata"]["name"]
        self.labels = node["metadata"].get("labels") or {}
        spec = node.get("spec") or {}
        self.taints = spec.get("taints") or []
        self.unschedulable = bool(spec.get("unschedulable"))
        self.allocatable = Resource.from_list(parse_list((node.get("status") or {}).get("allocatable")))
        self.generation = next_generation()

    def remove_node(self) -> None:
        self.node = None
        self.generation = next_generation()

    def add_pod(self, pi: PodInfo) -> None:
        self.pods.append(pi)
        if (
            pi.required_affinity_terms
            or pi.preferred_affinity_terms
            or pi.preferred_anti_affinity_terms
            or pi.required_anti_affinity_terms
        ):
            self.pods_with_affinity.append(pi)
        if pi.required_anti_affinity_terms:
            self.pods_with_required_anti_affinity.append(pi)
        self._update(pi, 1)

    def remove_pod(self, pi: PodInfo) -> bool:
        """Remove the pod with pi's UID; False when it is not on this node."""
        uid = pi.uid
        for i, p in enumerate(self.pods):
            if p.uid == uid:
                del self.pods[i]
                _remove_uid(self.pods_with_affinity, uid)
                _remove_uid(self.pods_with_required_anti_affinity, uid)
                self._update(p, -1)
                return True
        return False

    def _update(self, pi: PodInfo, sign: int) -> None:
        self.requested.add(pi.requests(), sign)
        cpu, mem = pi.non_zero_requests()
        self.non_zero_cpu += sign * cpu
        self.non_zero_mem += sign * mem
        for ip, proto, port in pi.host_ports():
            if sign > 0:
                self.used_ports.add(ip, proto, port)
            else:
                self.used_ports.remove(ip, proto, port)
        for vol in pi.spec.get("volumes") or ():
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                key = f"{pi.namespace}/{claim}"
                n = self.pvc_ref_counts.get(key, 0) + sign
                if n > 0:
                    self.pvc_ref_counts[key] = n
                else:
                    self.pvc_ref_counts.pop(key, None)
        self.generation = next_generation()

    def clone(self) -> NodeInfo:
        c = NodeInfo.__new__(NodeInfo)
        c.node = self.node
        c.name = self.name
        c.labels = self.labels
        c.taints = self.taints
        c.unschedulable = self.unschedulable
        c.pods = list(self.pods)
        c.pods_with_affinity = list(self.pods_with_affinity)
        c.pods_with_required_anti_affinity = list(self.pods_with_required_anti_affinity)
        c.used_ports = self.used_ports.clone()
        c.requested = self.requested.clone()
        c.non_zero_cpu = self.non_zero_cpu
        c.non_zero_mem = self.non_zero_mem
        c.allocatable = self.allocatable
        c.image_states = self.image_states
        c.pvc_ref_counts = dict(self.pvc_ref_counts)
        c.generation = self.generation
        return c

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, pods={len(self.pods)}, requested={self.requested})"


def _remove_uid(pods: list[PodInfo], uid: str) -> None:
    for i, p in enumerate(pods):
        if p.uid == uid:
            del pods[i]
            return
