"""The API status of a pod from the runtime's view (upstream kubelet_pods.go generateAPIPodStatus).

Container statuses in spec order (state, lastState, ready, started, restartCount, image, imageID,
containerID), the phase (getPhase, including sidecars' special cases), and the conditions the
kubelet owns: PodReadyToStartContainers, Initialized, ContainersReady, Ready. A phase already
terminal in the API never goes back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8py.api.meta import format_time
from k8py.kubelet.kuberuntime import RESTART_COUNT, PodStatus, SyncResult, is_sidecar
from k8py.kubelet.runtime.interface import ContainerState, ContainerStatus
from k8py.kubelet.static_pods import is_static

Obj = dict[str, Any]

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
TERMINAL = ("Succeeded", "Failed")


def rfc3339(ns: int) -> str | None:
    if not ns:
        return None
    return format_time(dt.datetime.fromtimestamp(ns / 1e9, dt.UTC))


@dataclass
class StatusInputs:
    """What generate_pod_status needs besides the pod and the runtime's view."""

    runtime_prefix: str  # "containerd", "process", "simulated": the containerID scheme
    host_ip: str
    is_ready: Callable[[str, str], bool]  # (pod uid, container name): readiness probe (True without one)
    is_started: Callable[[str, str], bool]  # startup probe (True without one)
    termination_message: Callable[[Obj, ContainerStatus], str]  # (container spec, status)


def _terminated(cs: ContainerStatus, prefix: str, message: str) -> Obj:
    out: Obj = {
        "exitCode": cs.exit_code,
        "reason": cs.reason or ("Completed" if cs.exit_code == 0 else "Error"),
        "startedAt": rfc3339(cs.started_at),
        "finishedAt": rfc3339(cs.finished_at),
        "containerID": f"{prefix}://{cs.id}",
    }
    if message:
        out["message"] = message
    return out


def container_statuses(
    pod: Obj,
    containers: list[Obj],
    runtime: PodStatus,
    result: SyncResult | None,
    inputs: StatusInputs,
    *,
    init: bool,
    initialized: bool,
    old: list[Obj],
) -> list[Obj]:
    uid = pod["metadata"]["uid"]
    old_by_name = {s.get("name"): s for s in old}
    out = []
    for c in containers:
        name = c["name"]
        cs = runtime.latest(name)
        waiting = (result.waiting.get(name) if result else None) or None
        status: Obj = {
            "name": name,
            "image": c.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {},
            "lastState": {},
        }
        if cs is None:
            prev = old_by_name.get(name) or {}
            status["restartCount"] = prev.get("restartCount", 0)
            status["lastState"] = prev.get("lastState") or {}
            if waiting is None:
                reason = "PodInitializing" if (init or not initialized) else "ContainerCreating"
                status["state"] = {"waiting": {"reason": reason}}
            else:
                status["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
            out.append(status)
            continue
        prefix = inputs.runtime_prefix
        status["restartCount"] = int(cs.annotations.get(RESTART_COUNT, "0"))
        status["imageID"] = cs.image_ref
        status["containerID"] = f"{prefix}://{cs.id}"
        previous = runtime.previous(name)
        if previous is not None and previous.state == ContainerState.EXITED:
            status["lastState"] = {
                "terminated": _terminated(previous, prefix, inputs.termination_message(c, previous))
            }
        if cs.state == ContainerState.RUNNING:
            status["state"] = {"running": {"startedAt": rfc3339(cs.started_at)}}
            status["started"] = inputs.is_started(uid, name)
            status["ready"] = status["started"] and inputs.is_ready(uid, name)
        elif cs.state == ContainerState.EXITED:
            term = _terminated(cs, prefix, inputs.termination_message(c, cs))
            if waiting is not None:
                status["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
                status["lastState"] = {"terminated": term}
            else:
                status["state"] = {"terminated": term}
                status["ready"] = init and not is_sidecar(c) and cs.exit_code == 0
        else:
            reason = waiting or ("ContainerCreating", "")
            status["state"] = {"waiting": {"reason": reason[0], **({"message": reason[1]} if reason[1] else {})}}
        out.append(status)
    return out


def get_phase(pod: Obj, init_statuses: list[Obj], statuses: list[Obj], *, terminal: bool) -> str:
    """getPhase (kubelet_pods.go, 1.32)."""
    spec = pod.get("spec") or {}
    restart_policy = spec.get("restartPolicy", "Always")
    init_by_name = {s["name"]: s for s in init_statuses}
    pending_init = failed_init = 0
    unknown = running = waiting = stopped = succeeded = 0
    any_regular_started = any(
        (s.get("state") or {}).get("running") or (s.get("state") or {}).get("terminated") or s.get("lastState")
        for s in statuses
    )
    for c in spec.get("initContainers") or []:
        s = init_by_name.get(c["name"])
        state = (s or {}).get("state") or {}
        last = (s or {}).get("lastState") or {}
        if is_sidecar(c):
            if s is None:
                unknown += 1
            elif "running" in state:
                if not s.get("started"):
                    pending_init += 1
                running += 1
            elif "terminated" in state:
                pass
            elif "waiting" in state:
                if "terminated" not in last:
                    pending_init += 1
                    waiting += 1
            else:
                pending_init += 1
                unknown += 1
            continue
        if s is None or "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode") != 0:
                failed_init += 1
        elif "waiting" in state:
            if "terminated" in last:
                if last["terminated"].get("exitCode") != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    for s in statuses:
        state, last = s.get("state") or {}, s.get("lastState") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init and restart_policy == "Never":
        return "Failed"
    if (pending_init and not any_regular_started) or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if terminal and not is_static(pod):
            return "Succeeded" if stopped == succeeded else "Failed"
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": ctype, "status": "True" if ok else "False", "lastProbeTime": None}
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def generate_pod_status(
    pod: Obj,
    runtime: PodStatus,
    result: SyncResult | None,
    inputs: StatusInputs,
    *,
    terminal: bool = False,
) -> Obj:
    """The pod's new status; ``terminal`` when the kubelet stopped the pod for good."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    init_specs = list(spec.get("initContainers") or [])
    app_specs = list(spec.get("containers") or [])
    init_statuses = container_statuses(
        pod, init_specs, runtime, result, inputs, init=True, initialized=False,
        old=old.get("initContainerStatuses") or [],
    )
    unfinished = [
        s["name"]
        for c, s in zip(init_specs, init_statuses, strict=True)
        if (not is_sidecar(c) and (s["state"].get("terminated") or {}).get("exitCode") != 0)
        or (is_sidecar(c) and not s.get("started"))
    ]
    initialized = not unfinished
    statuses = container_statuses(
        pod, app_specs, runtime, result, inputs, init=False, initialized=initialized,
        old=old.get("containerStatuses") or [],
    )
    phase = old.get("phase") if old.get("phase") in TERMINAL else get_phase(
        pod, init_statuses, statuses, terminal=terminal
    )
    unready = [
        s["name"]
        for c, s in [*zip(init_specs, init_statuses, strict=True), *zip(app_specs, statuses, strict=True)]
        if (c in app_specs or is_sidecar(c)) and not s["ready"]
    ]
    conditions = []
    conditions.append(_condition("PodReadyToStartContainers", runtime.ready_sandbox is not None and phase not in TERMINAL))
    if init_specs:
        conditions.append(
            _condition("Initialized", initialized, "ContainersNotInitialized",
                       f"containers with incomplete status: [{' '.join(unfinished)}]")
        )
    else:
        conditions.append(_condition("Initialized", True))
    if phase == "Succeeded":
        ready = _condition("ContainersReady", False, "PodCompleted")
        conditions += [dict(ready, type="Ready"), ready]
    else:
        msg = f"containers with unready status: [{' '.join(unready)}]"
        containers_ready = _condition("ContainersReady", not unready, "ContainersNotReady", msg)
        gates = [
            g["conditionType"] for g in spec.get("readinessGates") or []
            if not any(c.get("type") == g["conditionType"] and c.get("status") == "True"
                       for c in old.get("conditions") or [])
        ]
        if unready:
            ready = dict(containers_ready, type="Ready")
        elif gates:
            ready = _condition("Ready", False, "ReadinessGatesNotReady",
                               f"corresponding condition of pod readiness gate \"{gates[0]}\" does not exist.")
        else:
            ready = _condition("Ready", True)
        conditions += [ready, containers_ready]
    now = format_time(dt.datetime.now(dt.UTC))
    old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
    for cond in conditions:
        prev = old_conditions.get(cond["type"])
        cond["lastTransitionTime"] = (
            prev.get("lastTransitionTime") if prev and prev.get("status") == cond["status"] else now
        )
    ips = runtime.ips
    if not ips and spec.get("hostNetwork") and runtime.ready_sandbox is not None:
        ips = [inputs.host_ip]
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": inputs.host_ip,
        "hostIPs": [{"ip": inputs.host_ip}],
        "startTime": old.get("startTime") or now,
        "containerStatuses": statuses,
        "qosClass": old.get("qosClass"),
    }
    if ips or old.get("podIP"):
        ips = ips or [p["ip"] for p in old.get("podIPs") or [{"ip": old["podIP"]}]]
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    if init_specs:
        status["initContainerStatuses"] = init_statuses
    if result is not None and result.pod_error is not None and not runtime.sandboxes:
        status["conditions"][0]["reason"] = result.pod_error[0]
    return status


def _pruned(value: Any) -> Any:
    """``value`` without nulls (the API server drops them), for comparing statuses."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def status_patch(old: Obj, new: Obj) -> Obj | None:
    """A strategic-merge patch of the pod's status, or None when nothing changed.

    Conditions merge by type, so the conditions others own (PodScheduled, DisruptionTarget) stay.
    """
    old_conditions = {c.get("type"): _pruned(c) for c in old.get("conditions") or []}
    same = all(_pruned(old.get(k)) == _pruned(v) for k, v in new.items() if k != "conditions") and all(
        old_conditions.get(c["type"]) == _pruned(c) for c in new["conditions"]
    )
    return None if same else {"status": new}
