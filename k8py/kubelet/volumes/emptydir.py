"""emptyDir (upstream pkg/volume/emptydir): a 0777 directory on the node's disk, or a tmpfs for
``medium: Memory`` sized by ``sizeLimit``, the pod's memory limit or the node's allocatable memory.

Without the right to mount (not root), a Memory emptyDir is a plain directory: it works, but its
contents live on disk and its size is not bounded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from k8py.kubelet.volumes.plugin import SetUpContext, SetUpError, set_volume_ownership

Obj = dict[str, Any]


class EmptyDirPlugin:
    name = "kubernetes.io/empty-dir"
    requires_remount = False
    read_only = False

    def can_support(self, volume: Obj) -> bool:
        return "emptyDir" in volume

    async def set_up(self, ctx: SetUpContext, volume: Obj) -> str:
        source = volume.get("emptyDir") or {}
        medium = source.get("medium") or ""
        if medium not in ("", "Memory"):
            raise SetUpError(f"emptyDir medium {medium} is not supported")
        path = ctx.volume_dir(self.name, volume["name"])
        try:
            created = await ctx.set_up_empty_dir(path, medium, source.get("sizeLimit"))
            if created and ctx.fs_group is not None and ctx.mounter.can_mount:
                await asyncio.to_thread(set_volume_ownership, path, ctx.fs_group, readonly=False)
        except OSError as e:
            raise SetUpError(str(e)) from e
        return path
