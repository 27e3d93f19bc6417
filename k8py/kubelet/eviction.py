"""Node-pressure eviction (upstream pkg/kubelet/eviction), hard thresholds only.

Signals: ``memory.available`` (MemAvailable) and ``nodefs.available`` (free space of the
kubelet's root dir file system), against ``--eviction-hard`` thresholds such as
``memory.available<100Mi,nodefs.available<10%`` (the kubelet's defaults). While a threshold is
crossed the node reports MemoryPressure / DiskPressure, and every monitoring interval one pod is
evicted, ranked as the kubelet ranks them: for memory, pods whose usage exceeds their requests
first, then lower priority, then usage above requests; for disk, lower priority, then BestEffort
before the rest. An evicted pod is killed at once and ends Failed with reason Evicted and kube's
message, and the DisruptionTarget condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k8py.api.resources import parse_list
from k8py.api.strategy import qos_class
from k8py.api.validation.quantity import parse_quantity

Obj = dict[str, Any]
SIGNALS = ("memory.available", "nodefs.available")
DEFAULT_EVICTION_HARD = "memory.available<100Mi,nodefs.available<10%"


@dataclass(frozen=True)
class Threshold:
    signal: str
    quantity: int = 0  # bytes, when not a percentage
    percentage: float = 0.0  # of capacity

    def value(self, capacity: int) -> int:
        return int(capacity * self.percentage / 100) if self.percentage else self.quantity

    def text(self) -> str:
        return f"{self.percentage:g}%" if self.percentage else _format_bytes(self.quantity)


def parse_thresholds(spec: str) -> list[Threshold]:
    """``--eviction-hard``: comma-separated ``signal<quantity|percent``; ValueError when malformed."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        signal, sep, value = item.partition("<")
        if not sep or signal not in SIGNALS:
            raise ValueError(f"invalid eviction threshold {item!r}: expected <signal><<quantity> with signal in {SIGNALS}")
        if value.endswith("%"):
            out.append(Threshold(signal, percentage=float(value[:-1])))
            continue
        q = parse_quantity(value)
        if q is None:
            raise ValueError(f"invalid eviction threshold {item!r}: {value!r} is not a quantity")
        out.append(Threshold(signal, quantity=int(q.value)))
    return out


def _format_bytes(n: int) -> str:
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n // 1024}Ki" if n >= 1024 else str(n)


@dataclass
class Pressure:
    signal: str
    threshold: Threshold
    available: int

    @property
    def resource(self) -> str:
        return "memory" if self.signal == "memory.available" else "ephemeral-storage"


def crossed(thresholds: list[Threshold], signals: dict[str, tuple[int, int]]) -> list[Pressure]:
    """``signals``: signal -> (available, capacity) bytes."""
    out = []
    for t in thresholds:
        available, capacity = signals[t.signal]
        if available < t.value(capacity):
            out.append(Pressure(t.signal, t, available))
    return out


def _memory_request(pod: Obj) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        q = parse_list((c.get("resources") or {}).get("requests")).get("memory")
        total += int(q.value) if q is not None else 0
    return total


def rank(pods: list[Obj], pressure: Pressure, usage: dict[str, int]) -> list[Obj]:
    """Pods in eviction order; ``usage``: pod uid -> memory working set bytes."""

    def priority(pod: Obj) -> int:
        return int((pod.get("spec") or {}).get("priority") or 0)

    if pressure.resource == "memory":

        def key(pod: Obj) -> tuple[int, int, int]:
            uid = pod["metadata"]["uid"]
            over = usage.get(uid, 0) - _memory_request(pod)
            return (0 if over > 0 else 1, priority(pod), -over)
    else:

        def key(pod: Obj) -> tuple[int, int, int]:  # type: ignore[misc]
            best_effort = qos_class(pod.get("spec") or {}) == "BestEffort"
            return (priority(pod), 0 if best_effort else 1, -usage.get(pod["metadata"]["uid"], 0))

    return sorted(pods, key=key)


def eviction_message(pressure: Pressure, pod: Obj, usage: dict[str, int]) -> str:
    """The Evicted status message, as kube words it."""
    msg = (
        f"The node was low on resource: {pressure.resource}. Threshold quantity: {pressure.threshold.text()}, "
        f"available: {pressure.available // 1024}Ki. "
    )
    if pressure.resource == "memory":
        used = usage.get(pod["metadata"]["uid"], 0)
        for c in (pod.get("spec") or {}).get("containers") or []:
            req = parse_list((c.get("resources") or {}).get("requests")).get("memory")
            msg += f"Container {c['name']} was using {used // 1024}Ki, request is {req if req else 0}, "
        msg = msg.rstrip(", ") + ". "
    return msg.rstrip()
