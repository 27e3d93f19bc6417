"""VolumeRestrictions: volumes that cannot be shared the way the pod would share them.

Modelled on kube-scheduler 1.32's ``volumerestrictions`` plugin. Two rules:

- **Inline disks** (Filter): the same GCE PD, AWS EBS volume, Ceph RBD image or iSCSI target
  mounted by a pod already on the node conflicts, unless both mount it read-only (EBS: always):
  ``node(s) had no available disk``.
- **ReadWriteOncePod claims**: a claim with that access mode may be used by one pod in the
  whole cluster. PreFilter counts the scheduled pods using the pod's RWOP claims (the
  snapshot's set of claims in use); Filter rejects every node while any does, as Unschedulable
  (not unresolvable), so that preemption may evict the holder; the PreFilter extensions keep
  the count right while preemption adds and removes pods in its what-if runs.

PreFilter answers Skip for a pod with neither kind of volume, so the common pod pays one pass
over ``spec.volumes`` (and a cache lookup per claim it uses).
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
from k8py.scheduler.plugins.volumebinding import not_found

Obj = dict[str, Any]

NAME = "VolumeRestrictions"
PRE_FILTER_STATE_KEY = "PreFilter" + NAME

ERR_REASON_DISK_CONFLICT = "node(s) had no available disk"
ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT = (
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode"
)

_CONFLICT_SOURCES = ("gcePersistentDisk", "awsElasticBlockStore", "rbd", "iscsi")


class _PreFilterState:
    """The pod's RWOP claim names, its disk volumes to check, and how many scheduled pods
    use those claims."""

    __slots__ = ("namespace", "rwop_pvcs", "conflict_volumes", "conflicting_pvc_ref_count")

    def __init__(
        self, namespace: str, rwop_pvcs: frozenset[str], conflict_volumes: list[Obj], count: int
    ) -> None:
        self.namespace = namespace
        self.rwop_pvcs = rwop_pvcs
        self.conflict_volumes = conflict_volumes
        self.conflicting_pvc_ref_count = count

    def update_with_pod(self, pod: PodInfo, multiplier: int) -> None:
        if pod.namespace != self.namespace or not self.rwop_pvcs:
            return
        for vol in pod.spec.get("volumes") or ():
            src = vol.get("persistentVolumeClaim")
            if src is not None and src.get("claimName") in self.rwop_pvcs:
                self.conflicting_pvc_ref_count += multiplier

    def clone(self) -> _PreFilterState:
        return _PreFilterState(
            self.namespace, self.rwop_pvcs, self.conflict_volumes, self.conflicting_pvc_ref_count
        )


def needs_restrictions_check(vol: Mapping[str, Any]) -> bool:
    return any(vol.get(k) is not None for k in _CONFLICT_SOURCES)


def _have_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    return not set(a).isdisjoint(b)


def is_volume_conflict(vol: Mapping[str, Any], pod: Obj) -> bool:
    """Whether `vol` conflicts with a volume of `pod` (the pod already on the node)."""
    gce, ebs, iscsi, rbd = (vol.get(k) for k in ("gcePersistentDisk", "awsElasticBlockStore", "iscsi", "rbd"))
    for existing in (pod.get("spec") or {}).get("volumes") or ():
        if gce is not None and (e := existing.get("gcePersistentDisk")) is not None:
            # the same PD may be mounted by many pods only if all mount it read-only
            if gce.get("pdName") == e.get("pdName") and not (gce.get("readOnly") and e.get("readOnly")):
                return True
        if ebs is not None and (e := existing.get("awsElasticBlockStore")) is not None:
            if ebs.get("volumeID") == e.get("volumeID"):
                return True
        if iscsi is not None and (e := existing.get("iscsi")) is not None:
            # the same IQN: only read-only mounts may share it
            if iscsi.get("iqn") == e.get("iqn") and not (iscsi.get("readOnly") and e.get("readOnly")):
                return True
        if rbd is not None and (e := existing.get("rbd")) is not None:
            # the same image: a shared monitor, the same pool and image name; read-only shares
            if (
                _have_overlap(rbd.get("monitors") or (), e.get("monitors") or ())
                and (rbd.get("pool") or "rbd") == (e.get("pool") or "rbd")
                and rbd.get("image") == e.get("image")
                and not (rbd.get("readOnly") and e.get("readOnly"))
            ):
                return True
    return False


def satisfy_volume_conflicts(conflict_volumes: Sequence[Obj], node: NodeInfo) -> bool:
    for vol in conflict_volumes:
        for existing in node.pods:
            if is_volume_conflict(vol, existing.pod):
                return False
    return True


class VolumeRestrictions:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle = handle

    # -- EnqueueExtensions ---------------------------------------------------------------------

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            # a pod whose volumes conflicted, or which held an RWOP claim, went away
            ClusterEventWithHint(ClusterEvent(EventResource.POD, ActionType.DELETE), self._after_pod_deleted),
            # any new node may do (queue hints are on in 1.32: no node updates needed)
            ClusterEventWithHint(ClusterEvent(EventResource.NODE, ActionType.ADD)),
            # the claim whose access modes PreFilter needs was created
            ClusterEventWithHint(ClusterEvent(EventResource.PVC, ActionType.ADD), self._after_pvc_added),
        ]

    @staticmethod
    def _after_pvc_added(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        pvc_meta = (new or {}).get("metadata") or {}
        if pvc_meta.get("namespace") != (pod.get("metadata") or {}).get("namespace"):
            return QueueingHint.SKIP
        for vol in (pod.get("spec") or {}).get("volumes") or ():
            src = vol.get("persistentVolumeClaim")
            if src is not None and src.get("claimName") == pvc_meta.get("name"):
                return QueueingHint.QUEUE
        return QueueingHint.SKIP

    @staticmethod
    def _after_pod_deleted(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        deleted = old or new or {}
        if (deleted.get("metadata") or {}).get("namespace") != (pod.get("metadata") or {}).get("namespace"):
            return QueueingHint.SKIP
        volumes = (pod.get("spec") or {}).get("volumes") or ()
        for vol in volumes:
            if needs_restrictions_check(vol) and is_volume_conflict(vol, deleted):
                return QueueingHint.QUEUE
        # a deleted pod using one of the claims: the claim may have been ReadWriteOncePod
        claims = {
            src.get("claimName") for v in volumes if (src := v.get("persistentVolumeClaim")) is not None
        }
        for vol in (deleted.get("spec") or {}).get("volumes") or ():
            src = vol.get("persistentVolumeClaim")
            if src is not None and src.get("claimName") in claims:
                return QueueingHint.QUEUE
        return QueueingHint.SKIP

    # -- PreFilter ------------------------------------------------------------------------------

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        volumes = pod.spec.get("volumes")
        if not volumes:
            return None, SKIP
        conflict_volumes: list[Obj] = []
        rwop: set[str] = set()
        pvcs = None
        for vol in volumes:
            if needs_restrictions_check(vol):
                conflict_volumes.append(vol)
            src = vol.get("persistentVolumeClaim")
            if src is None:
                continue
            if pvcs is None:
                pvcs = self.handle.lister("persistentvolumeclaims")
            claim = src.get("claimName") or ""
            pvc = pvcs.get_by_key(f"{pod.namespace}/{claim}")
            if pvc is None:
                return None, unresolvable(not_found("persistentvolumeclaim", claim))
            if "ReadWriteOncePod" in ((pvc.get("spec") or {}).get("accessModes") or ()):
                rwop.add(claim)
        count = 0
        if rwop:
            snapshot = self.handle.snapshot()
            # at most one pod can use a ReadWriteOncePod claim
            count = sum(1 for claim in rwop if snapshot.is_pvc_used_by_pods(f"{pod.namespace}/{claim}"))
        if not conflict_volumes and count == 0:
            return None, SKIP
        state[PRE_FILTER_STATE_KEY] = _PreFilterState(pod.namespace, frozenset(rwop), conflict_volumes, count)
        return None, None

    def pre_filter_extensions(self) -> VolumeRestrictions:
        return self

    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_STATE_KEY)
        if s is None:
            return Status(Code.ERROR, f'cannot read "{PRE_FILTER_STATE_KEY}" from cycleState')
        s.update_with_pod(pod_to_add, 1)
        return None

    def remove_pod(
        self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo, node: NodeInfo
    ) -> Status | None:
        s = state.get(PRE_FILTER_STATE_KEY)
        if s is None:
            return Status(Code.ERROR, f'cannot read "{PRE_FILTER_STATE_KEY}" from cycleState')
        s.update_with_pod(pod_to_remove, -1)
        return None

    # -- Filter ---------------------------------------------------------------------------------

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s: _PreFilterState | None = state.get(PRE_FILTER_STATE_KEY)
        if s is None:
            return Status(Code.ERROR, f'cannot read "{PRE_FILTER_STATE_KEY}" from cycleState')
        if s.conflict_volumes and not satisfy_volume_conflicts(s.conflict_volumes, node):
            return Status(Code.UNSCHEDULABLE, ERR_REASON_DISK_CONFLICT)
        if s.conflicting_pvc_ref_count > 0:
            return Status(Code.UNSCHEDULABLE, ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT)
        return None
