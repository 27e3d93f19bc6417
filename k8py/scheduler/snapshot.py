"""The cluster view of one scheduling cycle (``internalcache.Snapshot``).

The cache updates a snapshot incrementally (only the NodeInfos whose generation moved
since the last cycle are copied); plugins read it through ``framework.SharedLister``.
"""

from __future__ import annotations

from collections.abc import Iterable

from k8py.scheduler.framework.types import ImageStateSummary, NodeInfo, Obj, PodInfo


def normalized_image_name(name: str) -> str:
    """An image name with the implicit ":latest" tag, as the node status lists images."""
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        return name + ":latest"
    return name


def set_image_states(infos: Iterable[NodeInfo]) -> None:
    """Give every NodeInfo its images' summaries: size on this node, number of nodes having it."""
    infos = list(infos)
    num_nodes: dict[str, int] = {}
    for ni in infos:
        for name in _image_sizes(ni):
            num_nodes[name] = num_nodes.get(name, 0) + 1
    for ni in infos:
        ni.image_states = {
            name: ImageStateSummary(size, num_nodes[name]) for name, size in _image_sizes(ni).items()
        }


def _image_sizes(ni: NodeInfo) -> dict[str, int]:
    out: dict[str, int] = {}
    for image in ((ni.node or {}).get("status") or {}).get("images") or ():
        for name in image.get("names") or ():
            out[normalized_image_name(name)] = int(image.get("sizeBytes") or 0)
    return out


class Snapshot:
    __slots__ = (
        "node_info_map",
        "node_info_list",
        "pods_with_affinity_list",
        "pods_with_required_anti_affinity_list",
        "used_pvc_set",
        "generation",
    )

    def __init__(self) -> None:
        self.node_info_map: dict[str, NodeInfo] = {}
        self.node_info_list: list[NodeInfo] = []
        self.pods_with_affinity_list: list[NodeInfo] = []
        self.pods_with_required_anti_affinity_list: list[NodeInfo] = []
        self.used_pvc_set: set[str] = set()
        self.generation = 0

    @classmethod
    def from_objects(cls, pods: Iterable[Obj], nodes: Iterable[Obj]) -> Snapshot:
        """internalcache.NewSnapshot: a snapshot of `nodes` with the `pods` bound to them (tests, tools)."""
        snap = cls()
        for node in nodes:
            ni = NodeInfo(node)
            snap.node_info_map[ni.name] = ni
            snap.node_info_list.append(ni)
        set_image_states(snap.node_info_list)
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName") or ""
            ni = snap.node_info_map.get(node_name)
            if ni is None:
                ni = snap.node_info_map[node_name] = NodeInfo()
                ni.name = node_name
            ni.add_pod(PodInfo(pod))
        snap.refresh_lists()
        return snap

    def refresh_lists(self) -> None:
        """Recompute the lists derived from the NodeInfos (after nodes or affinity pods changed)."""
        infos = [ni for ni in self.node_info_list if ni.node is not None]
        self.pods_with_affinity_list = [ni for ni in infos if ni.pods_with_affinity]
        self.pods_with_required_anti_affinity_list = [
            ni for ni in infos if ni.pods_with_required_anti_affinity
        ]
        self.used_pvc_set = {key for ni in infos for key in ni.pvc_ref_counts}

    # -- framework.SharedLister --

    def node_infos(self) -> list[NodeInfo]:
        return self.node_info_list

    def get(self, node_name: str) -> NodeInfo | None:
        return self.node_info_map.get(node_name)

    def have_pods_with_affinity(self) -> list[NodeInfo]:
        return self.pods_with_affinity_list

    def have_pods_with_required_anti_affinity(self) -> list[NodeInfo]:
        return self.pods_with_required_anti_affinity_list

    def is_pvc_used_by_pods(self, key: str) -> bool:
        return key in self.used_pvc_set

    def num_nodes(self) -> int:
        return len(self.node_info_list)
