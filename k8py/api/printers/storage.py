"""Printers of storage.k8s.io."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from k8py.api.printers._common import (
    AGE,
    NAME,
    UNSET,
    Column,
    Obj,
    Printer,
    Printers,
    age,
    get,
    items,
    join_or_none,
    mapping,
    name,
    quantity,
)

_DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def _storage_class_cells(obj: Obj, now: datetime) -> list[Any]:
    annotations = mapping(obj, "metadata", "annotations")
    is_default = any(annotations.get(a) == "true" for a in _DEFAULT_CLASS_ANNOTATIONS)
    return [
        name(obj) + (" (default)" if is_default else ""),
        obj.get("provisioner", ""),
        obj.get("reclaimPolicy") or "Delete",
        obj.get("volumeBindingMode") or "Immediate",
        bool(obj.get("allowVolumeExpansion")),
        age(obj, now),
    ]


def _class_doc(field: str) -> tuple[str, str]:
    return ("storage.v1.StorageClass", field)


STORAGE_CLASS = Printer(
    (
        NAME,
        Column("Provisioner", doc=_class_doc("provisioner")),
        Column("ReclaimPolicy", doc=_class_doc("reclaimPolicy")),
        Column("VolumeBindingMode", doc=_class_doc("volumeBindingMode")),
        Column("AllowVolumeExpansion", doc=_class_doc("allowVolumeExpansion")),
        AGE,
    ),
    _storage_class_cells,
)

VOLUME_ATTACHMENT = Printer(
    (
        NAME,
        # upstream gives Attacher the "name" format too
        Column("Attacher", doc=("storage.v1.VolumeAttachmentSpec", "attacher"), format="name"),
        Column("PV", doc=("storage.v1.VolumeAttachmentSource", "persistentVolumeName")),
        Column("Node", doc=("storage.v1.VolumeAttachmentSpec", "nodeName")),
        Column("Attached", "boolean", ("storage.v1.VolumeAttachmentStatus", "attached")),
        AGE,
    ),
    lambda o, now: [
        name(o),
        get(o, "spec", "attacher") or "",
        get(o, "spec", "source", "persistentVolumeName") or "",
        get(o, "spec", "nodeName") or "",
        bool(get(o, "status", "attached")),
        age(o, now),
    ],
)


def _csi_driver_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = mapping(obj, "spec")
    token_requests = spec.get("tokenRequests")
    attach_required = spec.get("attachRequired")
    return [
        name(obj),
        True if attach_required is None else attach_required,
        bool(spec.get("podInfoOnMount")),
        bool(spec.get("storageCapacity")),
        UNSET if token_requests is None else ",".join(t.get("audience", "") for t in token_requests),
        bool(spec.get("requiresRepublish")),
        join_or_none(items(spec, "volumeLifecycleModes")),
        age(obj, now),
    ]


def _driver_doc(field: str) -> tuple[str, str]:
    return ("storage.v1.CSIDriverSpec", field)


CSI_DRIVER = Printer(
    (
        NAME,
        Column("AttachRequired", "boolean", _driver_doc("attachRequired")),
        Column("PodInfoOnMount", "boolean", _driver_doc("podInfoOnMount")),
        Column("StorageCapacity", "boolean", _driver_doc("storageCapacity")),
        Column("TokenRequests", doc=_driver_doc("tokenRequests")),
        Column("RequiresRepublish", "boolean", _driver_doc("requiresRepublish")),
        Column("Modes", doc=_driver_doc("volumeLifecycleModes")),
        AGE,
    ),
    _csi_driver_cells,
)

CSI_NODE = Printer(
    (
        NAME,
        Column(
            "Drivers", "integer", text="Drivers indicates the number of CSI drivers registered on the node"
        ),
        AGE,
    ),
    lambda o, now: [name(o), len(items(o, "spec", "drivers")), age(o, now)],
)

CSI_STORAGE_CAPACITY = Printer(
    (
        NAME,
        Column("StorageClassName", doc=("storage.v1.CSIStorageCapacity", "storageClassName")),
        Column("Capacity", doc=("storage.v1.CSIStorageCapacity", "capacity")),
    ),
    lambda o, now: [name(o), o.get("storageClassName", ""), quantity(o.get("capacity"), UNSET)],
)

PRINTERS: Printers = {
    ("storage.k8s.io", "CSIDriver"): CSI_DRIVER,
    ("storage.k8s.io", "CSINode"): CSI_NODE,
    ("storage.k8s.io", "CSIStorageCapacity"): CSI_STORAGE_CAPACITY,
    ("storage.k8s.io", "StorageClass"): STORAGE_CLASS,
    ("storage.k8s.io", "VolumeAttachment"): VOLUME_ATTACHMENT,
}
