"""configMap (upstream pkg/volume/configmap): a ConfigMap's keys as files, kept current.

Every key of ``data`` and ``binaryData`` becomes a file, or only the ``items`` (key -> path, with
their own ``mode``); a missing key fails the mount unless the volume is ``optional``, and so does
a missing ConfigMap (an optional one gives an empty volume).  Written with the AtomicWriter into a
wrapped emptyDir on disk.
"""

from __future__ import annotations

import base64
from typing import Any

from k8py.kubelet.envvars import ObjectNotFound
from k8py.kubelet.volumes.atomic_writer import FileProjection
from k8py.kubelet.volumes.plugin import SetUpContext, SetUpError

Obj = dict[str, Any]
DEFAULT_MODE = 0o644


async def get_config_map(ctx: SetUpContext, name: str, optional: bool) -> Obj:
    """The ConfigMap, an empty one if it is missing and optional."""
    try:
        return await ctx.lookup.get_config_map(ctx.namespace, name)
    except ObjectNotFound as e:
        if not optional:
            raise SetUpError(str(e)) from None
        return {}


def make_payload(items: list[Obj] | None, config_map: Obj, default_mode: int, optional: bool) -> dict[str, FileProjection]:
    """configmap.MakePayload."""
    data = {key: value.encode() for key, value in (config_map.get("data") or {}).items()}
    binary = {key: base64.b64decode(value) for key, value in (config_map.get("binaryData") or {}).items()}
    if not items:
        return {key: FileProjection(value, default_mode) for key, value in {**data, **binary}.items()}
    payload: dict[str, FileProjection] = {}
    for item in items:
        key = item.get("key", "")
        content = data[key] if key in data else binary.get(key)
        if content is None:
            if optional:
                continue
            raise SetUpError(f"configmap references non-existent config key: {key}")
        payload[item.get("path", "")] = FileProjection(content, item.get("mode", default_mode))
    return payload


class ConfigMapPlugin:
    name = "kubernetes.io/configmap"
    requires_remount = True
    read_only = True

    def can_support(self, volume: Obj) -> bool:
        return "configMap" in volume

    async def set_up(self, ctx: SetUpContext, volume: Obj) -> str:
        source = volume["configMap"]
        optional = bool(source.get("optional"))
        config_map = await get_config_map(ctx, source.get("name", ""), optional)
        payload = make_payload(source.get("items"), config_map, source.get("defaultMode", DEFAULT_MODE), optional)
        path = ctx.volume_dir(self.name, volume["name"])
        await ctx.write_atomically(path, "", payload, volume["name"])
        return path
