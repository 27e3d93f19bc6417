"""downwardAPI (upstream pkg/volume/downwardapi): pod metadata and container resources as files,
on a tmpfs, kept current (labels and annotations may change while the pod runs).

``fieldRef`` may name metadata.name, namespace, uid, labels, annotations (or one label or
annotation); ``resourceFieldRef`` a container's requests or limits (limits default to the node's
allocatable) over a ``divisor``.  Errors of all items are reported together.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from k8py.kubelet.volumes.atomic_writer import FileProjection
from k8py.kubelet.volumes.fieldpath import (
    FieldPathError,
    extract_field_path_as_string,
    extract_resource_value_by_container_name,
)
from k8py.kubelet.volumes.plugin import SetUpContext, SetUpError, aggregate

Obj = dict[str, Any]
DEFAULT_MODE = 0o644


def needs_allocatable(items: list[Obj] | None) -> bool:
    return any(item.get("resourceFieldRef") for item in items or [])


def collect_data(
    items: list[Obj] | None, pod: Obj, allocatable: Mapping[str, Any], default_mode: int
) -> tuple[dict[str, FileProjection], list[str]]:
    """downwardapi.CollectData: the payload, and the errors of the items that failed."""
    payload: dict[str, FileProjection] = {}
    errors: list[str] = []
    for item in items or []:
        data = b""
        try:
            if (ref := item.get("fieldRef")) is not None:
                data = extract_field_path_as_string(pod, ref.get("fieldPath", "")).encode()
            elif (ref := item.get("resourceFieldRef")) is not None:
                value = extract_resource_value_by_container_name(ref, pod, ref.get("containerName", ""), allocatable)
                data = value.encode()
        except FieldPathError as e:
            errors.append(str(e))
        payload[posixpath.normpath(item.get("path", ""))] = FileProjection(data, item.get("mode", default_mode))
    return payload, errors


class DownwardAPIPlugin:
    name = "kubernetes.io/downward-api"
    requires_remount = True
    read_only = True

    def can_support(self, volume: Obj) -> bool:
        return "downwardAPI" in volume

    async def set_up(self, ctx: SetUpContext, volume: Obj) -> str:
        source = volume["downwardAPI"]
        items = source.get("items")
        allocatable = await ctx.node_allocatable() if needs_allocatable(items) else {}
        payload, errors = collect_data(items, ctx.pod, allocatable, source.get("defaultMode", DEFAULT_MODE))
        if errors:
            raise SetUpError(aggregate(errors))
        path = ctx.volume_dir(self.name, volume["name"])
        await ctx.write_atomically(path, "Memory", payload, volume["name"])
        return path
