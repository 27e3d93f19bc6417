"""VolumeZone: a pod's bound volumes must be in the node's zone and region.

Modelled on kube-scheduler 1.32's ``volumezone`` plugin. PreFilter reads the topology labels
(``topology.kubernetes.io/zone``/``region`` and the deprecated
``failure-domain.beta.kubernetes.io`` ones) of the PVs bound to the pod's claims; a label may
name several zones separated by ``__``. Filter rejects a node that carries topology labels but
not the PV's value (a beta label on the PV also matches the node's GA label):
``node(s) had no available volume zone``. A node without any topology label fits every volume
(single-zone clusters often label nothing). Unbound claims of a WaitForFirstConsumer class are
VolumeBinding's business and are skipped here; other unbound claims make the pod unresolvable
until the PV controller binds them.

PreFilter answers Skip when the pod's claims carry no topology, so pods without claims (the
common case) never reach Filter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, PodInfo
from k8py.scheduler.plugins.volumebinding import WAIT_FOR_FIRST_CONSUMER, not_found, pvc_storage_class

Obj = dict[str, Any]

NAME = "VolumeZone"
PRE_FILTER_STATE_KEY = "PreFilter" + NAME
ERR_REASON_CONFLICT = "node(s) had no available volume zone"

LABEL_FAILURE_DOMAIN_BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"
LABEL_FAILURE_DOMAIN_BETA_REGION = "failure-domain.beta.kubernetes.io/region"
LABEL_TOPOLOGY_ZONE = "topology.kubernetes.io/zone"
LABEL_TOPOLOGY_REGION = "topology.kubernetes.io/region"
TOPOLOGY_LABELS = (
    LABEL_FAILURE_DOMAIN_BETA_ZONE,
    LABEL_FAILURE_DOMAIN_BETA_REGION,
    LABEL_TOPOLOGY_ZONE,
    LABEL_TOPOLOGY_REGION,
)
_GA_LABEL = {
    LABEL_FAILURE_DOMAIN_BETA_ZONE: LABEL_TOPOLOGY_ZONE,
    LABEL_FAILURE_DOMAIN_BETA_REGION: LABEL_TOPOLOGY_REGION,
}
LABEL_MULTI_ZONE_DELIMITER = "__"


class PVTopology:
    """One topology label of a PV: its key and the zones (or regions) it names."""

    __slots__ = ("pv_name", "key", "values")

    def __init__(self, pv_name: str, key: str, values: frozenset[str]) -> None:
        self.pv_name = pv_name
        self.key = key
        self.values = values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PVTopology) and (self.pv_name, self.key, self.values) == (
            other.pv_name,
            other.key,
            other.values,
        )

    def __hash__(self) -> int:
        return hash((self.pv_name, self.key, self.values))

    def __repr__(self) -> str:
        return f"PVTopology({self.pv_name!r}, {self.key!r}, {sorted(self.values)!r})"


def label_zones_to_set(value: str) -> frozenset[str] | None:
    """volumehelpers.LabelZonesToSet: None when an element is empty."""
    zones = set()
    for zone in value.split(LABEL_MULTI_ZONE_DELIMITER):
        zone = zone.strip()
        if not zone:
            return None
        zones.add(zone)
    return frozenset(zones)


def pv_topologies(pv: Obj) -> list[PVTopology]:
    labels = (pv.get("metadata") or {}).get("labels") or {}
    name = (pv.get("metadata") or {}).get("name", "")
    out = []
    for key in TOPOLOGY_LABELS:
        if key in labels:
            values = label_zones_to_set(labels[key])
            if values is not None:  # an unparsable label is ignored
                out.append(PVTopology(name, key, values))
    return out


class _State:
    __slots__ = ("pod_pv_topologies",)

    def __init__(self, topologies: list[PVTopology]) -> None:
        self.pod_pv_topologies = topologies

    def clone(self) -> _State:
        return self


class VolumeZone:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle = handle

    # -- EnqueueExtensions ---------------------------------------------------------------------

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            # a new WaitForFirstConsumer class makes unbound claims of it skippable
            # (volumeBindingMode is immutable: updates do not matter)
            ClusterEventWithHint(
                ClusterEvent(EventResource.STORAGE_CLASS, ActionType.ADD), self._after_storage_class_added
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL)
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.PVC, ActionType.ADD | ActionType.UPDATE), self._after_pvc_change
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.PV, ActionType.ADD | ActionType.UPDATE), self._after_pv_change
            ),
        ]

    @staticmethod
    def _after_pvc_change(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        pvc_meta = (new or {}).get("metadata") or {}
        if pvc_meta.get("namespace") != (pod.get("metadata") or {}).get("namespace"):
            return QueueingHint.SKIP
        for vol in (pod.get("spec") or {}).get("volumes") or ():
            src = vol.get("persistentVolumeClaim")
            if src is not None and src.get("claimName") == pvc_meta.get("name"):
                return QueueingHint.QUEUE
        return QueueingHint.SKIP

    @staticmethod
    def _after_storage_class_added(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if (new or {}).get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER:
            return QueueingHint.QUEUE
        return QueueingHint.SKIP

    @staticmethod
    def _after_pv_change(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if old is None or new is None:
            return QueueingHint.QUEUE
        if pv_topologies(old) != pv_topologies(new):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP

    # -- PreFilter / Filter ---------------------------------------------------------------------

    def _get_pv_by_pod(self, pod: PodInfo) -> tuple[list[PVTopology], Status | None]:
        topologies: list[PVTopology] = []
        pvcs = pvs = classes = None
        for vol in pod.spec.get("volumes") or ():
            src = vol.get("persistentVolumeClaim")
            if src is None:
                continue
            claim = src.get("claimName") or ""
            if not claim:
                return [], unresolvable("PersistentVolumeClaim had no name")
            if pvcs is None:
                pvcs = self.handle.lister("persistentvolumeclaims")
            pvc = pvcs.get_by_key(f"{pod.namespace}/{claim}")
            if pvc is None:
                return [], unresolvable(not_found("persistentvolumeclaim", claim))
            pv_name = (pvc.get("spec") or {}).get("volumeName")
            if not pv_name:
                class_name = pvc_storage_class(pvc)
                if not class_name:
                    return [], unresolvable("PersistentVolumeClaim had no pv name and storageClass name")
                if classes is None:
                    classes = self.handle.lister("storageclasses")
                cls = classes.get_by_key(class_name)
                if cls is None:
                    return [], unresolvable(not_found("storageclass.storage.k8s.io", class_name))
                mode = cls.get("volumeBindingMode")
                if mode is None:
                    return [], unresolvable(f'VolumeBindingMode not set for StorageClass "{class_name}"')
                if mode == WAIT_FOR_FIRST_CONSUMER:
                    continue  # unbound volumes are VolumeBinding's to place
                return [], unresolvable("PersistentVolume had no name")
            if pvs is None:
                pvs = self.handle.lister("persistentvolumes")
            pv = pvs.get_by_key(pv_name)
            if pv is None:
                return [], unresolvable(not_found("persistentvolume", pv_name))
            topologies.extend(pv_topologies(pv))
        return topologies, None

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        if not pod.spec.get("volumes"):
            return None, SKIP
        topologies, status = self._get_pv_by_pod(pod)
        if status is not None:
            return None, status
        if not topologies:
            return None, SKIP
        state[PRE_FILTER_STATE_KEY] = _State(topologies)
        return None, None

    def pre_filter_extensions(self) -> None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not pod.spec.get("volumes"):
            return None
        s: _State | None = state.get(PRE_FILTER_STATE_KEY)
        if s is None:
            # PreFilter did not run: compute here
            topologies, status = self._get_pv_by_pod(pod)
            if status is not None:
                return status
        else:
            topologies = s.pod_pv_topologies
        labels = node.labels
        if not any(key in labels for key in TOPOLOGY_LABELS):
            # a node without zone labels fits every volume (single-zone clusters)
            return None
        for t in topologies:
            value = labels.get(t.key)
            if value is None:
                # a PV's beta label also matches the node's GA label
                value = labels.get(_GA_LABEL.get(t.key, t.key))
            if value is None or value not in t.values:
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_CONFLICT)
        return None
