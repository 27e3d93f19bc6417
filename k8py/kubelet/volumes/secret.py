"""secret (upstream pkg/volume/secret): a Secret's keys as files, on a tmpfs, kept current.

Like configMap: all keys of ``data`` (base64-decoded) or the ``items``; a missing key or Secret
fails the mount unless ``optional``.  The wrapped emptyDir is memory-backed.
"""

from __future__ import annotations

from typing import Any

from k8py.kubelet.envvars import ObjectNotFound, secret_data
from k8py.kubelet.volumes.atomic_writer import FileProjection
from k8py.kubelet.volumes.plugin import SetUpContext, SetUpError

Obj = dict[str, Any]
DEFAULT_MODE = 0o644


async def get_secret(ctx: SetUpContext, name: str, optional: bool) -> dict[str, bytes]:
    """The Secret's decoded data, empty if it is missing and optional."""
    try:
        return secret_data(await ctx.lookup.get_secret(ctx.namespace, name))
    except ObjectNotFound as e:
        if not optional:
            raise SetUpError(str(e)) from None
        return {}


def make_payload(items: list[Obj] | None, data: dict[str, bytes], default_mode: int, optional: bool) -> dict[str, FileProjection]:
    """secret.MakePayload."""
    if not items:
        return {key: FileProjection(value, default_mode) for key, value in data.items()}
    payload: dict[str, FileProjection] = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise SetUpError(f"references non-existent secret key: {key}")
        payload[item.get("path", "")] = FileProjection(data[key], item.get("mode", default_mode))
    return payload


class SecretPlugin:
    name = "kubernetes.io/secret"
    requires_remount = True
    read_only = True

    def can_support(self, volume: Obj) -> bool:
        return "secret" in volume

    async def set_up(self, ctx: SetUpContext, volume: Obj) -> str:
        source = volume["secret"]
        optional = bool(source.get("optional"))
        data = await get_secret(ctx, source.get("secretName", ""), optional)
        payload = make_payload(source.get("items"), data, source.get("defaultMode", DEFAULT_MODE), optional)
        path = ctx.volume_dir(self.name, volume["name"])
        await ctx.write_atomically(path, "Memory", payload, volume["name"])
        return path
