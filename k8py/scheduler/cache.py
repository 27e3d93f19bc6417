"""The scheduler cache (``internalcache.cacheImpl``): nodes and the pods on them, assumed pods.

Assigned pods come from the pod informer; a pod the scheduler has just placed is
*assumed* onto its node at once (before the binding is written), so the next cycle
already counts it. When the informer then delivers the bound pod, the assumption is
confirmed; if binding fails, the scheduler forgets it.

``update_snapshot`` copies into the cycle's snapshot only the NodeInfos that changed
since the last call (tracked as a dirty set; upstream walks a list ordered by
generation, which comes to the same thing for a single snapshot), and rebuilds the
node order only when nodes come or go. The node order interleaves zones, like
upstream's nodeTree, so that the nodes a cycle looks at are spread over zones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo
from k8py.scheduler.snapshot import Snapshot, set_image_states

log = logging.getLogger(__name__)

ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")


def zone_key(node: Obj) -> str:
    """utilnode.GetZoneKey: region and zone joined, "" when the node has neither."""
    labels = node["metadata"].get("labels") or {}
    region = next((labels[k] for k in REGION_LABELS if k in labels), "")
    zone = next((labels[k] for k in ZONE_LABELS if k in labels), "")
    return f"{region}:\x00:{zone}" if region or zone else ""


@dataclass(slots=True)
class _PodState:
    info: PodInfo
    node_name: str
    assumed: bool = False
    binding_finished: bool = False


class Cache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.pod_states: dict[str, _PodState] = {}
        self.zones: dict[str, list[str]] = {}
        self._dirty: set[str] = set()
        self._order_changed = True
        self._images_changed = True
        self._positions: dict[str, int] = {}

    # -- pods -----------------------------------------------------------------------------

    def assume_pod(self, pod: PodInfo, node_name: str) -> PodInfo:
        """Place `pod` on `node_name` in the cache; returns the assumed PodInfo (nodeName set)."""
        if pod.uid in self.pod_states:
            raise ValueError(f"pod {pod.key}({pod.uid}) is in the cache, so can't be assumed")
        assumed = PodInfo({**pod.pod, "spec": {**pod.spec, "nodeName": node_name}})
        self._add_to_node(assumed, node_name)
        self.pod_states[pod.uid] = _PodState(assumed, node_name, assumed=True)
        return assumed

    def finish_binding(self, pod: PodInfo) -> None:
        state = self.pod_states.get(pod.uid)
        if state is not None and state.assumed:
            state.binding_finished = True

    def forget_pod(self, pod: PodInfo) -> None:
        """Undo assume_pod (binding failed)."""
        state = self.pod_states.get(pod.uid)
        if state is None or not state.assumed:
            return
        self._remove_from_node(state.info, state.node_name)
        del self.pod_states[pod.uid]

    def is_assumed_pod(self, uid: str) -> bool:
        state = self.pod_states.get(uid)
        return state is not None and state.assumed

    def add_pod(self, pod: Obj) -> None:
        """An assigned pod from the informer (confirms an assumption)."""
        info = PodInfo(pod)
        node_name = info.node_name
        state = self.pod_states.get(info.uid)
        if state is not None:
            if state.assumed and state.node_name != node_name:
                log.warning(
                    "pod %s was assumed on %s but assigned to %s", info.key, state.node_name, node_name
                )
            self._remove_from_node(state.info, state.node_name)
        self._add_to_node(info, node_name)
        self.pod_states[info.uid] = _PodState(info, node_name)

    def update_pod(self, old: Obj, new: Obj) -> None:
        uid = new["metadata"].get("uid", "")
        state = self.pod_states.get(uid)
        if state is None or state.assumed:
            self.add_pod(new)
            return
        info = PodInfo(new)
        self._remove_from_node(state.info, state.node_name)
        self._add_to_node(info, info.node_name)
        self.pod_states[uid] = _PodState(info, info.node_name)

    def remove_pod(self, pod: Obj) -> None:
        uid = pod["metadata"].get("uid", "")
        state = self.pod_states.pop(uid, None)
        if state is not None:
            self._remove_from_node(state.info, state.node_name)

    def pod_count(self) -> int:
        return len(self.pod_states)

    def _add_to_node(self, info: PodInfo, node_name: str) -> None:
        ni = self.nodes.get(node_name)
        if ni is None:  # the pod's node is not (yet) known: a node-less NodeInfo holds its pods
            ni = self.nodes[node_name] = NodeInfo()
            ni.name = node_name
        ni.add_pod(info)
        self._dirty.add(node_name)

    def _remove_from_node(self, info: PodInfo, node_name: str) -> None:
        ni = self.nodes.get(node_name)
        if ni is None:
            return
        ni.remove_pod(info)
        self._dirty.add(node_name)
        if ni.node is None and not ni.pods:
            del self.nodes[node_name]

    # -- nodes ----------------------------------------------------------------------------

    def add_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo()
        elif ni.node is not None:
            self._remove_from_zone(ni.node)
        ni.set_node(node)
        self.zones.setdefault(zone_key(node), []).append(name)
        self._dirty.add(name)
        self._order_changed = True
        self._images_changed = True

    def update_node(self, old: Obj, new: Obj) -> None:
        name = new["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None or ni.node is None:
            self.add_node(new)
            return
        if zone_key(ni.node) != zone_key(new):
            self._remove_from_zone(ni.node)
            self.zones.setdefault(zone_key(new), []).append(name)
            self._order_changed = True
        if ((ni.node.get("status") or {}).get("images")) != ((new.get("status") or {}).get("images")):
            self._images_changed = True
        ni.set_node(new)
        self._dirty.add(name)

    def remove_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None or ni.node is None:
            return
        self._remove_from_zone(ni.node)
        if ni.pods:  # keep the pods until their deletions arrive
            ni.remove_node()
        else:
            del self.nodes[name]
        self._dirty.add(name)
        self._order_changed = True
        self._images_changed = True

    def _remove_from_zone(self, node: Obj) -> None:
        zone = zone_key(node)
        names = self.zones.get(zone)
        if names is not None:
            names.remove(node["metadata"]["name"])
            if not names:
                del self.zones[zone]

    def node_count(self) -> int:
        return sum(1 for ni in self.nodes.values() if ni.node is not None)

    def node_order(self) -> list[str]:
        """nodeTree.list: one node of each zone in turn."""
        out: list[str] = []
        columns = [names for _, names in sorted(self.zones.items())]
        for i in range(max((len(c) for c in columns), default=0)):
            out.extend(c[i] for c in columns if i < len(c))
        return out

    # -- snapshot -------------------------------------------------------------------------

    def update_snapshot(self, snapshot: Snapshot) -> None:
        """Bring `snapshot` up to date, copying only the NodeInfos that changed."""
        if self._images_changed:
            set_image_states(ni for ni in self.nodes.values() if ni.node is not None)
            self._dirty.update(self.nodes)
            self._images_changed = False
        affinity_changed = False
        m = snapshot.node_info_map
        for name in self._dirty:
            ni = self.nodes.get(name)
            old = m.get(name)
            if ni is None or ni.node is None:
                if old is not None:
                    del m[name]
                    affinity_changed = True
                continue
            clone = ni.clone()
            if old is not None and (
                bool(old.pods_with_affinity) != bool(clone.pods_with_affinity)
                or bool(old.pods_with_required_anti_affinity) != bool(clone.pods_with_required_anti_affinity)
                or old.pvc_ref_counts != clone.pvc_ref_counts
                or old.pods_with_affinity
            ):
                affinity_changed = True
            m[name] = clone
            if not self._order_changed and old is not None:
                # keep the list's entry pointing at the new clone
                snapshot.node_info_list[self._positions[name]] = clone
        self._dirty.clear()
        if self._order_changed:
            snapshot.node_info_list = [m[name] for name in self.node_order() if name in m]
            self._positions = {ni.name: i for i, ni in enumerate(snapshot.node_info_list)}
            self._order_changed = False
            affinity_changed = True
        if affinity_changed:
            snapshot.refresh_lists()
        snapshot.generation += 1
