"""The node's stats/v1alpha1 Summary (upstream pkg/kubelet/server/stats): node CPU and memory from
/proc, containers' from the runtimes' ContainerStats, rates (usageNanoCores) from the previous sample."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from k8py.api.meta import format_time
from k8py.kubelet.kuberuntime import PodStatus
from k8py.kubelet.nodestatus import meminfo
from k8py.kubelet.runtime.interface import ContainerStats

Obj = dict[str, Any]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def node_cpu_ns() -> int:
    """CPU time spent not idle, all CPUs, in ns (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) * 1_000_000_000 // CLK_TCK


class StatsProvider:
    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.start_time = format_time(dt.datetime.now(dt.UTC))
        self._previous: dict[str, tuple[int, int]] = {}  # id -> (timestamp ns, cpu ns)

    def _cpu(self, key: str, timestamp: int, usage: int) -> Obj:
        cpu: Obj = {"time": _time(timestamp), "usageCoreNanoSeconds": usage}
        prev = self._previous.get(key)
        if prev is not None and timestamp > prev[0]:
            cpu["usageNanoCores"] = max(0, (usage - prev[1]) * 1_000_000_000 // (timestamp - prev[0]))
        self._previous[key] = (timestamp, usage)
        return cpu

    def summary(self, stats: Iterable[ContainerStats], pods: dict[str, PodStatus], starts: dict[str, str]) -> Obj:
        """``pods``: the runtime's view by uid (container id -> pod); ``starts``: uid -> status.startTime."""
        now = time.time_ns()
        mem = meminfo()
        working_set = mem["MemTotal"] - mem.get("MemAvailable", mem.get("MemFree", 0))
        node = {
            "nodeName": self.node_name,
            "startTime": self.start_time,
            "cpu": self._cpu("node", now, node_cpu_ns()),
            "memory": {
                "time": _time(now),
                "availableBytes": mem.get("MemAvailable", 0),
                "usageBytes": working_set,
                "workingSetBytes": working_set,
            },
        }
        owner = {c.id: ps for ps in pods.values() for c in ps.containers}
        by_pod: dict[str, list[Obj]] = {}
        for s in stats:
            ps = owner.get(s.id)
            if ps is None:
                continue
            by_pod.setdefault(ps.uid, []).append({
                "name": s.name,
                "startTime": starts.get(ps.uid) or self.start_time,
                "cpu": self._cpu(s.id, s.timestamp, s.cpu_usage_core_nanoseconds),
                "memory": {"time": _time(s.timestamp), "workingSetBytes": s.memory_working_set_bytes},
            })
        live = {s.id for s in stats} | {"node"}
        for key in [k for k in self._previous if k not in live]:
            del self._previous[key]
        out_pods = []
        for uid, containers in by_pod.items():
            ps = pods[uid]
            out_pods.append({
                "podRef": {"name": ps.name, "namespace": ps.namespace, "uid": uid},
                "startTime": starts.get(uid) or self.start_time,
                "containers": containers,
                "cpu": {
                    "time": _time(now),
                    "usageNanoCores": sum(c["cpu"].get("usageNanoCores", 0) for c in containers),
                    "usageCoreNanoSeconds": sum(c["cpu"]["usageCoreNanoSeconds"] for c in containers),
                },
                "memory": {"time": _time(now), "workingSetBytes": sum(c["memory"]["workingSetBytes"] for c in containers)},
            })
        return {"node": node, "pods": out_pods}


def _time(ns: int) -> str:
    """RFC 3339 with milliseconds: /metrics/resource timestamps (and so CPU rates) need them."""
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1_000_000 % 1000:03d}Z"
