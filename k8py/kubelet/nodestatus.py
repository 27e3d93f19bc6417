"""The Node object a kubelet registers and keeps current (upstream pkg/kubelet/nodestatus).

Capacity is the machine's (CPUs, /proc/meminfo, the root dir's file system, ``--max-pods``);
allocatable subtracts ``--system-reserved``/``--kube-reserved`` and the hard eviction thresholds
(``--eviction-hard``), as the kubelet's node allocatable does; the eviction manager sets the
pressure conditions from the same thresholds.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k8py.api.meta import format_time
from k8py.api.resources import milli, parse_list
from k8py.kubelet.eviction import Threshold

Obj = dict[str, Any]

KUBELET_VERSION = "v1.32.0-k8py"


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


@dataclass
class Observation:
    """What the eviction manager's signals say now."""

    memory_available: int
    memory_capacity: int
    nodefs_available: int
    nodefs_capacity: int
    memory_pressure: bool = False
    disk_pressure: bool = False


def observe(root_dir: Path) -> Observation:
    mem = meminfo()
    fs = os.statvfs(root_dir)
    return Observation(
        memory_available=mem.get("MemAvailable", mem.get("MemFree", 0)),
        memory_capacity=mem["MemTotal"],
        nodefs_available=fs.f_bavail * fs.f_frsize,
        nodefs_capacity=fs.f_blocks * fs.f_frsize,
    )


@dataclass
class NodeConfig:
    name: str
    addresses: list[tuple[str, str]]  # (type, address): InternalIP, Hostname
    kubelet_port: int
    runtime_version: str  # e.g. "containerd://1.6.20"
    max_pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Obj] = field(default_factory=list)
    reserved: dict[str, str] = field(default_factory=dict)  # system + kube reserved, summed by the caller
    eviction_hard: list[Threshold] = field(default_factory=list)
    pod_cidr: str = ""


def capacity(config: NodeConfig, obs: Observation) -> tuple[Obj, Obj]:
    """(capacity, allocatable) as quantity strings."""
    cap = {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{obs.memory_capacity // 1024}Ki",
        "ephemeral-storage": f"{obs.nodefs_capacity // 1024}Ki",
        "pods": str(config.max_pods),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    reserved = parse_list(config.reserved)
    alloc = dict(cap)
    cpu_m = (os.cpu_count() or 1) * 1000 - (milli(reserved["cpu"]) if "cpu" in reserved else 0)
    alloc["cpu"] = f"{max(cpu_m, 0)}m" if cpu_m % 1000 else str(max(cpu_m, 0) // 1000)
    evict = {t.signal: t for t in config.eviction_hard}
    mem = obs.memory_capacity - int(reserved["memory"].value if "memory" in reserved else 0)
    if "memory.available" in evict:
        mem -= evict["memory.available"].value(obs.memory_capacity)
    alloc["memory"] = f"{max(mem, 0) // 1024}Ki"
    eph = obs.nodefs_capacity - int(reserved["ephemeral-storage"].value if "ephemeral-storage" in reserved else 0)
    if "nodefs.available" in evict:
        eph -= evict["nodefs.available"].value(obs.nodefs_capacity)
    alloc["ephemeral-storage"] = str(max(eph, 0))
    return cap, alloc


def _condition(ctype: str, status: bool, reason: str, message: str, now: str) -> Obj:
    return {
        "type": ctype,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def conditions(obs: Observation, *, ready: bool, not_ready_message: str = "") -> list[Obj]:
    now = format_time(dt.datetime.now(dt.UTC))
    mem, disk = obs.memory_pressure, obs.disk_pressure
    return [
        _condition(
            "MemoryPressure", mem, "KubeletHasInsufficientMemory" if mem else "KubeletHasSufficientMemory",
            "kubelet has insufficient memory available" if mem else "kubelet has sufficient memory available", now,
        ),
        _condition(
            "DiskPressure", disk, "KubeletHasDiskPressure" if disk else "KubeletHasNoDiskPressure",
            "kubelet has disk pressure" if disk else "kubelet has no disk pressure", now,
        ),
        _condition("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available", now),
        _condition(
            "Ready", ready, "KubeletReady" if ready else "KubeletNotReady",
            "kubelet is posting ready status" if ready else not_ready_message, now,
        ),
    ]


def merge_conditions(old: list[Obj], new: list[Obj]) -> list[Obj]:
    """New conditions keep their old lastTransitionTime when the status did not change."""
    by_type = {c.get("type"): c for c in old}
    for c in new:
        prev = by_type.get(c["type"])
        if prev is not None and prev.get("status") == c["status"]:
            c["lastTransitionTime"] = prev.get("lastTransitionTime", c["lastTransitionTime"])
    kept = [c for c in old if c.get("type") not in {n["type"] for n in new}]
    return [*new, *kept]


NETWORK_NOT_READY = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)


def node_status(config: NodeConfig, obs: Observation, *, ready: bool, images: list[Obj], old: Obj | None) -> Obj:
    cap, alloc = capacity(config, obs)
    uname = os.uname()
    return {
        "capacity": cap,
        "allocatable": alloc,
        "conditions": merge_conditions(
            (old or {}).get("conditions") or [], conditions(obs, ready=ready, not_ready_message=NETWORK_NOT_READY)
        ),
        "addresses": [{"type": t, "address": a} for t, a in config.addresses],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.kubelet_port}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": uname.release,
            "osImage": os_image(),
            "containerRuntimeVersion": config.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
        },
        "images": images,
    }


def node_object(config: NodeConfig, status: Obj) -> Obj:
    arch = status["nodeInfo"]["architecture"]
    spec: Obj = {}
    if config.pod_cidr:
        spec["podCIDR"] = config.pod_cidr
        spec["podCIDRs"] = [config.pod_cidr]
    if config.taints:
        spec["taints"] = config.taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.name,
            "labels": {
                "beta.kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "kubernetes.io/hostname": config.name,
                "kubernetes.io/os": "linux",
                **config.labels,
            },
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": spec,
        "status": status,
    }
