"""hostPath (upstream pkg/volume/hostpath): a path of the node, checked against its ``type``.

``DirectoryOrCreate`` makes a 0755 directory (and its parents), ``FileOrCreate`` an empty 0644 file
(not its parent); the other types only check what is there (following symlinks, as stat(2) does),
with kube's messages.  The volume's host path is the path itself: nothing is mounted.
"""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

from k8py.kubelet.volumes.plugin import SetUpContext, SetUpError

Obj = dict[str, Any]

_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _go_error(op: str, path: str, err: OSError) -> str:
    return f"{op} {path}: {(err.strerror or str(err)).lower()}"


def check_type(path: str, path_type: str) -> None:
    """checkTypeInternal: create what the ``...OrCreate`` types ask for, then check the type."""
    if not path_type:
        return
    if path_type == "DirectoryOrCreate":
        if not os.path.exists(path):
            try:
                os.makedirs(path, 0o755, exist_ok=True)
            except OSError as e:
                raise SetUpError(_go_error("mkdir", path, e)) from e
        path_type = "Directory"
    elif path_type == "FileOrCreate":
        if not os.path.exists(path):
            try:
                os.close(os.open(path, os.O_CREAT | os.O_RDONLY, 0o644))
            except OSError as e:
                raise SetUpError(_go_error("open", path, e)) from e
        path_type = "File"
    if path_type not in _CHECKS:
        raise SetUpError(f"{path_type} is an invalid volume type")
    is_type, what = _CHECKS[path_type]
    try:
        ok = is_type(os.stat(path).st_mode)
    except OSError:
        ok = False
    if not ok:
        raise SetUpError(f"hostPath type check failed: {path} is not {what}")


class HostPathPlugin:
    name = "kubernetes.io/host-path"
    requires_remount = False
    read_only = False

    def can_support(self, volume: Obj) -> bool:
        return "hostPath" in volume

    async def set_up(self, ctx: SetUpContext, volume: Obj) -> str:
        source = volume["hostPath"]
        path = source.get("path", "")
        await asyncio.to_thread(check_type, path, source.get("type") or "")
        return path
