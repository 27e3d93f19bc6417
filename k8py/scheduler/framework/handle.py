"""What a profile's framework (the plugins' ``Handle``) shares with the scheduler.

One ``SchedulerContext`` per scheduler: the API client, the informer caches by resource,
the cycle's snapshot (replaced by the scheduler each cycle), the nominator and the
event recorder. Tests build one around a ``Snapshot`` and plain ``Indexer``s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from k8py.client.cache import Indexer
from k8py.scheduler.snapshot import Snapshot

if TYPE_CHECKING:
    from k8py.scheduler.framework.types import PodInfo


class Nominator:
    """Pods nominated to nodes by preemption (status.nominatedNodeName), by node."""

    def __init__(self) -> None:
        self.nominated: dict[str, list[PodInfo]] = {}
        self.node_of: dict[str, str] = {}

    def add(self, pod: PodInfo, node_name: str = "") -> None:
        """Nominate `pod` to `node_name` (default: its status.nominatedNodeName)."""
        self.delete(pod)
        node_name = node_name or ((pod.pod.get("status") or {}).get("nominatedNodeName") or "")
        if not node_name:
            return
        self.node_of[pod.uid] = node_name
        self.nominated.setdefault(node_name, []).append(pod)

    def delete(self, pod: PodInfo) -> None:
        node_name = self.node_of.pop(pod.uid, None)
        if node_name is None:
            return
        pods = [p for p in self.nominated.get(node_name, ()) if p.uid != pod.uid]
        if pods:
            self.nominated[node_name] = pods
        else:
            self.nominated.pop(node_name, None)

    def update(self, old: PodInfo, new: PodInfo) -> None:
        # a pod that keeps its nomination in the scheduler but not yet in its status stays nominated
        node_name = (new.pod.get("status") or {}).get("nominatedNodeName") or self.node_of.get(old.uid, "")
        self.delete(old)
        self.add(new, node_name)

    def nominated_pods_for_node(self, node_name: str) -> list[PodInfo]:
        return list(self.nominated.get(node_name, ()))


@dataclass
class SchedulerContext:
    client: Any = None
    listers: Mapping[str, Indexer] = field(default_factory=dict)
    snapshot: Snapshot = field(default_factory=Snapshot)
    nominator: Nominator = field(default_factory=Nominator)
    recorder: Any = None

    def lister(self, resource: str) -> Indexer:
        """The informer cache of `resource` (an empty one when the scheduler does not watch it)."""
        found = self.listers.get(resource)
        return found if found is not None else _EMPTY

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = self.lister("namespaces").get_by_key(namespace)
        return ((ns or {}).get("metadata") or {}).get("labels") or {}


_EMPTY = Indexer()
