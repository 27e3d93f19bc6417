"""mount(2)/umount2(2) through libc, and the mount table (/proc/self/mountinfo).

The kubelet mounts only what upstream's volume plugins mount: tmpfs for memory-backed emptyDirs
(and the secret/projected/downwardAPI volumes that wrap one), bind mounts of local PersistentVolumes
and the bind mounts that pin subPaths.  Calling libc directly spares a process per mount.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from typing import NamedTuple

MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MNT_DETACH = 0x2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class MountInfo(NamedTuple):
    mount_point: str
    fstype: str
    source: str
    super_options: str  # e.g. "rw,size=65536k"


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    """mount(2); raises OSError (EPERM without CAP_SYS_ADMIN)."""
    if _libc.mount(source.encode(), target.encode(), fstype.encode() or None, flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def unmount(target: str) -> None:
    """umount2(2); a busy mount is detached (lazily unmounted) instead."""
    if _libc.umount2(target.encode(), 0) == 0:
        return
    err = ctypes.get_errno()
    if err == 16 and _libc.umount2(target.encode(), MNT_DETACH) == 0:  # EBUSY
        return
    err = ctypes.get_errno() if err == 16 else err
    raise OSError(err, os.strerror(err), target)


def mount_table() -> list[MountInfo]:
    """This mount namespace's mounts, in mount order."""
    table = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            table.append(
                MountInfo(
                    _OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields[4]),
                    fields[sep + 1],
                    fields[sep + 2],
                    fields[sep + 3] if len(fields) > sep + 3 else "",
                )
            )
    return table


def mount_info(path: str) -> MountInfo | None:
    """The topmost mount at exactly ``path``, or None when it is not a mount point."""
    path = os.path.realpath(path)
    found = [m for m in mount_table() if m.mount_point == path]
    return found[-1] if found else None


def mount_points_under(root: str) -> list[str]:
    """Mount points at or below ``root``, deepest (and latest) first: the order to unmount them."""
    root = os.path.realpath(root)
    points = [m.mount_point for m in mount_table() if m.mount_point == root or m.mount_point.startswith(root + "/")]
    return sorted(reversed(points), key=lambda p: p.count("/"), reverse=True)
