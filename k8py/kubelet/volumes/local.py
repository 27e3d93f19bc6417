"""local PersistentVolumes (upstream pkg/volume/local): a node path bind-mounted at
``<pod>/volumes/kubernetes.io~local-volume/<pv-name>`` (read-only when the claim is).

Without the right to mount (not root), the volume's host path is the local path itself.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from k8py.kubelet.volumes import mount
from k8py.kubelet.volumes.plugin import SetUpContext, SetUpError

Obj = dict[str, Any]


class LocalVolumePlugin:
    name = "kubernetes.io/local-volume"
    requires_remount = False
    read_only = False

    def can_support(self, volume: Obj) -> bool:
        return "local" in volume

    async def set_up(self, ctx: SetUpContext, volume: Obj) -> str:
        source = volume["local"]
        path = source.get("path", "")
        if not os.path.exists(path):
            raise SetUpError(f'path "{path}" does not exist')
        if not ctx.mounter.can_mount:
            return path
        target = ctx.volume_dir(self.name, volume["name"])
        try:
            await asyncio.to_thread(_bind, path, target, bool(volume.get("readOnly")))
        except OSError as e:
            raise SetUpError(f"mount failed: {e}") from e
        return target


def _bind(source: str, target: str, read_only: bool) -> None:
    if mount.mount_info(target) is not None:
        return
    os.makedirs(target, 0o750, exist_ok=True)
    mount.mount(source, target, "", mount.MS_BIND)
    if read_only:
        mount.mount(source, target, "", mount.MS_REMOUNT | mount.MS_BIND | mount.MS_RDONLY)
