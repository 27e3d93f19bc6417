"""PrioritySort: the active queue in order of priority, then of arrival."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k8py.scheduler.framework.interface import Handle
from k8py.scheduler.framework.types import QueuedPodInfo


class PrioritySort:
    name = "PrioritySort"

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        pass

    def less(self, a: QueuedPodInfo, b: QueuedPodInfo) -> bool:
        pa, pb = a.pod_info.priority, b.pod_info.priority
        return pa > pb or (pa == pb and a.timestamp < b.timestamp)
