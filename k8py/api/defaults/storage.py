"""Defaulting of storage.k8s.io/v1 (pkg/apis/storage/v1/defaults.go)."""

from __future__ import annotations

from k8py.api.defaults.core import Obj, set_if_unset


def default_storage_class(storage_class: Obj) -> None:
    set_if_unset(storage_class, "reclaimPolicy", "Delete")
    set_if_unset(storage_class, "volumeBindingMode", "Immediate")


def default_csi_driver(driver: Obj) -> None:
    spec = driver.setdefault("spec", {})
    for key, value in (
        ("attachRequired", True),
        ("podInfoOnMount", False),
        ("storageCapacity", False),
        ("fsGroupPolicy", "ReadWriteOnceWithFSType"),
        ("requiresRepublish", False),
        ("seLinuxMount", False),
    ):
        set_if_unset(spec, key, value)
    if not spec.get("volumeLifecycleModes"):
        spec["volumeLifecycleModes"] = ["Persistent"]


DEFAULTERS = {
    ("v1", "StorageClass"): default_storage_class,
    ("v1", "CSIDriver"): default_csi_driver,
}
