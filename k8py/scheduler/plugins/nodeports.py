"""NodePorts: a pod's host ports must be free on the node (``0.0.0.0`` conflicts with every
address of the same protocol and port).

PreFilter collects the pod's host ports (containers and sidecars) and answers Skip when there
are none, so the Filter runs only for the few pods that ask for host ports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from k8py.scheduler.framework.interface import (
    SKIP,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    Code,
    CycleState,
    EventResource,
    Handle,
    PreFilterResult,
    QueueingHint,
    Status,
    unschedulable,
)
from k8py.scheduler.framework.types import HostPortInfo, NodeInfo, Obj, PodInfo

NAME = "NodePorts"
ERR_REASON = "node(s) didn't have free ports for the requested pod ports"

HostPort = tuple[str, str, int]


def fits_ports(want: Iterable[HostPort], used: HostPortInfo) -> bool:
    """fitsPorts: none of the wanted (hostIP, protocol, port) conflicts with `used`."""
    if not used:
        return True
    check = used.check_conflict
    for ip, proto, port in want:
        if check(ip, proto, port):
            return False
    return True


class NodePorts:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        pass

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        ports = pod.host_ports()
        if not ports:
            return None, SKIP
        state[NAME] = tuple(ports)
        return None, None

    def pre_filter_extensions(self) -> None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> Status | None:
        used = node_info.used_ports
        if not used:
            return None
        try:
            want = state[NAME]
        except KeyError:
            return Status(Code.ERROR, f'reading "PreFilter{NAME}" from cycleState: not found')
        check = used.check_conflict
        for ip, proto, port in want:
            if check(ip, proto, port):
                return unschedulable(ERR_REASON)
        return None

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            # a pod's ports are immutable: only deletions free ports
            ClusterEventWithHint(ClusterEvent(EventResource.POD, ActionType.DELETE), self._after_pod_deleted),
            # no hint: a new node is always worth a retry
            ClusterEventWithHint(ClusterEvent(EventResource.NODE, ActionType.ADD)),
        ]

    def _after_pod_deleted(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if old is None:
            return QueueingHint.QUEUE
        spec = old.get("spec") or {}
        if not spec.get("nodeName") and not (old.get("status") or {}).get("nominatedNodeName"):
            return QueueingHint.SKIP  # an unscheduled pod held no ports
        freed = PodInfo(old).host_ports()
        if not freed:
            return QueueingHint.SKIP
        in_use = HostPortInfo()
        for ip, proto, port in freed:
            in_use.add(ip, proto, port)
        if fits_ports(PodInfo(pod).host_ports(), in_use):
            return QueueingHint.SKIP  # no port in common
        return QueueingHint.QUEUE
