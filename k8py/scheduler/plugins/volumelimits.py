"""NodeVolumeLimits: a node attaches at most so many volumes of each CSI driver.

Modelled on kube-scheduler 1.32's ``nodevolumelimits/csi.go`` (the ``CSILimits`` plugin, named
NodeVolumeLimits). A node's limit for a driver is its CSINode's
``spec.drivers[].allocatable.count``, or else the node's allocatable
``attachable-volumes-csi-<driver>`` (hashed when the name would pass 63 characters). Filter
counts the distinct volumes (driver + volume handle) the node's pods already use per driver,
adds the pod's new ones, and rejects the node past any limit: ``node(s) exceed max volume count``.

A claim's volume is its bound PV's ``csi`` source; a claim not bound yet (or whose PV is not
in the cache) counts for its StorageClass's provisioner, under a handle unique to the claim.
In-tree cloud disks (EBS, GCE PD, Azure Disk, Cinder), inline or through PVs, count for their
CSI driver once the node's CSINode says the plugin migrated
(``storage.alpha.kubernetes.io/migrated-plugins``).

PreFilter answers Skip for a pod with no claim, ephemeral or migratable volume, so the common
pod never reaches Filter.
"""

from __future__ import annotations

import hashlib
import secrets
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
from k8py.scheduler.plugins.volumebinding import (
    not_found,
    pvc_storage_class,
    volume_claim_name,
    volume_is_for_pod,
)

Obj = dict[str, Any]

NAME = "NodeVolumeLimits"
ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED = "node(s) exceed max volume count"

CSI_ATTACH_LIMIT_PREFIX = "attachable-volumes-csi-"
ATTACHABLE_VOLUMES_PREFIX = "attachable-volumes-"
RESOURCE_NAME_LENGTH_LIMIT = 63
MIGRATED_PLUGINS_ANNOTATION = "storage.alpha.kubernetes.io/migrated-plugins"

# in-tree plugin -> (volume source field, CSI driver, the field naming the disk); the plugins
# whose migration 1.32 turns on (isCSIMigrationOn)
_MIGRATED: dict[str, tuple[str, str, str]] = {
    "kubernetes.io/aws-ebs": ("awsElasticBlockStore", "ebs.csi.aws.com", "volumeID"),
    "kubernetes.io/gce-pd": ("gcePersistentDisk", "pd.csi.storage.gke.io", "pdName"),
    "kubernetes.io/azure-disk": ("azureDisk", "disk.csi.azure.com", "diskURI"),
    "kubernetes.io/cinder": ("cinder", "cinder.csi.openstack.org", "volumeID"),
}
_PLUGIN_BY_SOURCE = {source: plugin for plugin, (source, _, _) in _MIGRATED.items()}
# every in-tree plugin csi-translation-lib knows (IsMigratableIntreePluginByName)
_MIGRATABLE_PLUGINS = frozenset(
    [*_MIGRATED, "kubernetes.io/azure-file", "kubernetes.io/vsphere-volume", "kubernetes.io/portworx-volume"]
)
# the inline sources csi-translation-lib can translate (IsInlineMigratable)
_INLINE_MIGRATABLE = (
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "azureDisk",
    "azureFile",
    "cinder",
    "vsphereVolume",
    "portworxVolume",
)


class _NotFound(Exception):
    pass


class _VolumeError(Exception):
    pass


def csi_attach_limit_key(driver: str) -> str:
    """GetCSIAttachLimitKey: the node resource naming a CSI driver's attach limit."""
    if len(CSI_ATTACH_LIMIT_PREFIX) + len(driver) >= RESOURCE_NAME_LENGTH_LIMIT:
        hashed = hashlib.sha1(driver.encode()).hexdigest()[:16]
        return CSI_ATTACH_LIMIT_PREFIX + driver[:23] + hashed
    return CSI_ATTACH_LIMIT_PREFIX + driver


def _is_inline_migratable(vol: Mapping[str, Any]) -> bool:
    return any(vol.get(k) is not None for k in _INLINE_MIGRATABLE)


def _is_csi_migration_on(csi_node: Obj | None, plugin: str) -> bool:
    if csi_node is None or plugin not in _MIGRATED:
        return False
    migrated: str = ((csi_node.get("metadata") or {}).get("annotations") or {}).get(
        MIGRATED_PLUGINS_ANNOTATION
    ) or ""
    return plugin in migrated.split(",")


def _volume_handle(source: str, src: Mapping[str, Any]) -> str:
    """The disk an in-tree source names (its CSI volume handle, up to the driver's own format)."""
    plugin = _PLUGIN_BY_SOURCE[source]
    value = str(src.get(_MIGRATED[plugin][2]) or "")
    if source == "awsElasticBlockStore" and value.startswith("aws://"):
        value = value.rsplit("/", 1)[-1]  # aws://<zone>/<vol-id>
    return value


def get_volume_limits(node: NodeInfo, csi_node: Obj | None) -> dict[str, int]:
    """The node's attach limits by resource name: allocatable attachable-volumes-*, overridden
    by the CSINode's per-driver allocatable counts."""
    limits = {
        name: v
        for name, v in node.allocatable.scalar_resources.items()
        if name.startswith(ATTACHABLE_VOLUMES_PREFIX)
    }
    if csi_node is not None:
        for driver in (csi_node.get("spec") or {}).get("drivers") or ():
            count = (driver.get("allocatable") or {}).get("count")
            if count is not None:
                limits[csi_attach_limit_key(driver.get("name", ""))] = int(count)
    return limits


class NodeVolumeLimits:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle = handle
        # unbound claims count under a handle no real volume has
        self._random_volume_id_prefix = secrets.token_hex(16)

    # -- EnqueueExtensions ---------------------------------------------------------------------

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            # any new CSINode may raise a limit
            ClusterEventWithHint(ClusterEvent(EventResource.CSI_NODE, ActionType.ADD)),
            ClusterEventWithHint(ClusterEvent(EventResource.POD, ActionType.DELETE), self._after_pod_deleted),
            ClusterEventWithHint(ClusterEvent(EventResource.PVC, ActionType.ADD), self._after_pvc_added),
        ]

    @staticmethod
    def _after_pod_deleted(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        deleted = old or new or {}
        spec = deleted.get("spec") or {}
        if not spec.get("volumes") or not spec.get("nodeName"):
            return QueueingHint.SKIP
        for vol in spec["volumes"]:
            if "persistentVolumeClaim" in vol or "ephemeral" in vol or _is_inline_migratable(vol):
                return QueueingHint.QUEUE
        return QueueingHint.SKIP

    @staticmethod
    def _after_pvc_added(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        pvc_meta = (new or {}).get("metadata") or {}
        if pvc_meta.get("namespace") != (pod.get("metadata") or {}).get("namespace"):
            return QueueingHint.SKIP
        for vol in (pod.get("spec") or {}).get("volumes") or ():
            claim = volume_claim_name(pod, vol)
            if claim is not None and claim[0] == pvc_meta.get("name"):
                return QueueingHint.QUEUE
        return QueueingHint.SKIP

    # -- PreFilter / Filter ---------------------------------------------------------------------

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        for vol in pod.spec.get("volumes") or ():
            if "persistentVolumeClaim" in vol or "ephemeral" in vol or _is_inline_migratable(vol):
                return None, None
        return None, SKIP

    def pre_filter_extensions(self) -> None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not pod.spec.get("volumes"):
            return None
        # without a CSINode, the limits may still come from the Node's allocatable
        csi_node = self.handle.lister("csinodes").get_by_key(node.name)
        new_volumes: dict[str, str] = {}
        try:
            self._filter_attachable_volumes(pod.pod, csi_node, True, new_volumes)
        except _NotFound as e:
            # the claim does not exist: nothing will change that but a PVC event
            return unresolvable(str(e))
        except _VolumeError as e:
            return Status(Code.ERROR, str(e), error=e)
        if not new_volumes:
            return None
        limits = get_volume_limits(node, csi_node)
        if not limits:
            return None
        attached: dict[str, str] = {}
        try:
            for existing in node.pods:
                self._filter_attachable_volumes(existing.pod, csi_node, False, attached)
        except (_NotFound, _VolumeError) as e:
            return Status(Code.ERROR, str(e), error=e)
        attached_count: dict[str, int] = {}
        for unique_name, key in attached.items():
            # a volume the node already attaches costs nothing more
            new_volumes.pop(unique_name, None)
            attached_count[key] = attached_count.get(key, 0) + 1
        new_count: dict[str, int] = {}
        for key in new_volumes.values():
            new_count[key] = new_count.get(key, 0) + 1
        for key, count in new_count.items():
            limit = limits.get(key)
            if limit is not None and attached_count.get(key, 0) + count > limit:
                return Status(Code.UNSCHEDULABLE, ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED)
        return None

    def _filter_attachable_volumes(
        self, pod: Obj, csi_node: Obj | None, new_pod: bool, result: dict[str, str]
    ) -> None:
        """Add the pod's CSI volumes to `result` as unique name -> limit key."""
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace", "")
        pvcs = self.handle.lister("persistentvolumeclaims")
        for vol in (pod.get("spec") or {}).get("volumes") or ():
            claim = volume_claim_name(pod, vol)
            if claim is None:
                # an inline volume counts when it is a migrated in-tree disk
                self._check_attachable_inline_volume(vol, csi_node, result)
                continue
            name, ephemeral = claim
            if not name:
                raise _VolumeError("PersistentVolumeClaim had no name")
            pvc = pvcs.get_by_key(f"{namespace}/{name}")
            if pvc is None:
                if new_pod:
                    # the new pod cannot run without it
                    raise _NotFound(
                        f"looking up PVC {namespace}/{name}: {not_found('persistentvolumeclaim', name)}"
                    )
                continue  # an invalid claim of a running pod: not counted
            if ephemeral and (err := volume_is_for_pod(pod, pvc)):
                raise _VolumeError(err)
            driver, handle = self._csi_driver_info(csi_node, pvc)
            if not driver or not handle:
                continue
            result[f"{driver}/{handle}"] = csi_attach_limit_key(driver)

    def _check_attachable_inline_volume(self, vol: Obj, csi_node: Obj | None, result: dict[str, str]) -> None:
        for source, plugin in _PLUGIN_BY_SOURCE.items():
            src = vol.get(source)
            if src is None:
                continue
            if not _is_csi_migration_on(csi_node, plugin):
                return
            driver = _MIGRATED[plugin][1]
            result[f"{driver}/{_volume_handle(source, src)}"] = csi_attach_limit_key(driver)
            return

    def _csi_driver_info(self, csi_node: Obj | None, pvc: Obj) -> tuple[str, str]:
        """(CSI driver, volume handle) of a claim: its PV's, or its class's provisioner's."""
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name:
            return self._csi_driver_info_from_sc(csi_node, pvc)
        pv = self.handle.lister("persistentvolumes").get_by_key(pv_name)
        if pv is None:
            # deleted, or the claim is prebound to a PV not created yet: count by the class
            return self._csi_driver_info_from_sc(csi_node, pvc)
        spec = pv.get("spec") or {}
        csi = spec.get("csi")
        if csi is not None:
            return csi.get("driver") or "", csi.get("volumeHandle") or ""
        for source, plugin in _PLUGIN_BY_SOURCE.items():
            src = spec.get(source)
            if src is not None:
                if not _is_csi_migration_on(csi_node, plugin):
                    return "", ""
                return _MIGRATED[plugin][1], _volume_handle(source, src)
        return "", ""

    def _csi_driver_info_from_sc(self, csi_node: Obj | None, pvc: Obj) -> tuple[str, str]:
        class_name = pvc_storage_class(pvc)
        # no class: the claim binds immediately, so it is bound before scheduling; not counted
        if not class_name:
            return "", ""
        cls = self.handle.lister("storageclasses").get_by_key(class_name)
        if cls is None:
            return "", ""
        meta = pvc.get("metadata") or {}
        # unique to the claim: a claim bound meanwhile and used by another pod may count twice
        handle = f"{self._random_volume_id_prefix}-{meta.get('namespace', '')}/{meta.get('name', '')}"
        provisioner = cls.get("provisioner") or ""
        if provisioner in _MIGRATABLE_PLUGINS:
            if not _is_csi_migration_on(csi_node, provisioner):
                return "", ""
            return _MIGRATED[provisioner][1], handle
        return provisioner, handle
