"""DefaultStorageClass and DefaultIngressClass: a new claim or Ingress without a class gets the default one.

kube's plugin/pkg/admission/storage/storageclass/setdefault and
plugin/pkg/admission/network/defaultingressclass. The default class is the one
annotated `storageclass.kubernetes.io/is-default-class: "true"` (or the beta
annotation) / `ingressclass.kubernetes.io/is-default-class: "true"`; when
several are, the newest wins (ties: the first name), as since kube 1.26.
Only creations are defaulted; an explicitly empty class (`""`) or the legacy
class annotation counts as a choice and is left alone.
"""

from __future__ import annotations

from typing import Any

from k8py.api.registry import ResourceInfo
from k8py.apiserver.admission import Attributes
from k8py.apiserver.watchcache import WatchCache

Obj = dict[str, Any]


def newest_default(classes: list[Obj], annotations: tuple[str, ...]) -> Obj | None:
    """The default class among `classes`: annotated "true" by any of `annotations`, newest first."""
    defaults = [
        c for c in classes if any((c["metadata"].get("annotations") or {}).get(a) == "true" for a in annotations)
    ]
    defaults.sort(key=lambda c: c["metadata"]["name"])
    defaults.sort(key=lambda c: c["metadata"].get("creationTimestamp", ""), reverse=True)
    return defaults[0] if defaults else None


class _DefaultClass:
    """Sets `spec.<field>` of new `kind` objects to the default class's name unless a class was chosen."""

    name: str
    group: str
    kind: str
    field: str
    legacy_annotation: str
    default_annotations: tuple[str, ...]

    def __init__(self, cache: WatchCache, classes: ResourceInfo) -> None:
        self._cache = cache
        self._classes = classes

    def admit(self, attrs: Attributes) -> None:
        info, obj = attrs.info, attrs.obj
        if info.group != self.group or info.kind != self.kind or attrs.subresource or obj is None:
            return
        if attrs.operation != "CREATE":
            return
        spec = obj.setdefault("spec", {})
        if spec.get(self.field) is not None or self.legacy_annotation in (obj["metadata"].get("annotations") or {}):
            return
        default = newest_default(self._cache.list(self._classes.prefix()), self.default_annotations)
        if default is not None:
            spec[self.field] = default["metadata"]["name"]


class DefaultStorageClass(_DefaultClass):
    name = "DefaultStorageClass"
    group = ""
    kind = "PersistentVolumeClaim"
    field = "storageClassName"
    legacy_annotation = "volume.beta.kubernetes.io/storage-class"
    default_annotations = (
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    )


class DefaultIngressClass(_DefaultClass):
    name = "DefaultIngressClass"
    group = "networking.k8s.io"
    kind = "Ingress"
    field = "ingressClassName"
    legacy_annotation = "kubernetes.io/ingress.class"
    default_annotations = ("ingressclass.kubernetes.io/is-default-class",)
