"""subPath and subPathExpr (upstream pkg/volume/util/subpath, kubecontainer.ExpandContainerVolumeMounts).

A subPath must stay inside its volume, even through symlinks a container may have planted there:
a missing subPath directory is created component by component without following symlinks (under
the part that exists, which must resolve inside the volume), the path is resolved and checked to
be within the resolved volume, then opened component by component with O_NOFOLLOW and, when the
kubelet may mount, bind-mounted from that file descriptor to ``<pod>/volume-subpaths/<volume>/
<container>/<index>``: the runtime mounts that pinned path, which later symlink swaps cannot
redirect.  Without the right to mount, the checked, resolved path is used as it is.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from k8py.kubelet.envvars import ContainerConfigError, expand
from k8py.kubelet.volumes import mount


def expand_subpath_expr(expr: str, env: Iterable[tuple[str, str]]) -> str:
    """``$(VAR)`` in a subPathExpr from the container's environment; every reference must be set."""
    values = dict(env)
    missing: set[str] = set()

    def mapping(name: str) -> str:
        if not values.get(name):
            missing.add(name)
        return values.get(name, "")

    expanded = expand(expr, mapping)
    if missing:
        raise ContainerConfigError(f"missing value for {', '.join(sorted(missing))}")
    return expanded


def within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def safe_make_dir(sub_path: str, base: str, perm: int) -> None:
    """Create ``base/sub_path`` as directories with mode ``perm``, never leaving ``base``."""
    parts = [p for p in sub_path.split("/") if p and p != "."]
    existing = 0
    while existing < len(parts) and os.path.lexists(os.path.join(base, *parts[: existing + 1])):
        existing += 1
    real_base = os.path.realpath(base)
    real_existing = os.path.realpath(os.path.join(base, *parts[:existing]))
    if not within(real_existing, real_base):
        raise OSError(f"path {real_existing} is outside of allowed base {real_base}")
    fd = os.open(real_existing, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for segment in parts[existing:]:
            os.mkdir(segment, perm, dir_fd=fd)
            child = os.open(segment, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = child
            os.fchmod(fd, perm)  # mkdir(2) applied the umask
    finally:
        os.close(fd)


def _safe_open(path: str, base: str) -> int:
    """An O_PATH descriptor of ``path`` (inside ``base``), opened without following any symlink."""
    fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for segment in [p for p in os.path.relpath(path, base).split("/") if p and p != "."]:
            child = os.open(segment, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def prepare_subpath(volume_path: str, sub_path: str, pin: str | None) -> str:
    """The host path to mount for ``sub_path`` of the volume at ``volume_path``; see the module
    docstring.  Raises OSError with the details (which the kubelet logs, not reports)."""
    path = os.path.join(volume_path, sub_path)
    if not os.path.lexists(path):
        safe_make_dir(sub_path, volume_path, stat.S_IMODE(os.stat(volume_path).st_mode))
    real_volume = os.path.realpath(volume_path)
    real_path = os.path.realpath(path)
    if not within(real_path, real_volume):
        raise OSError(f"subpath {real_path!r} not within volume path {real_volume!r}")
    if pin is None:
        return real_path
    fd = _safe_open(real_path, real_volume)
    try:
        st = os.fstat(fd)
        current = mount.mount_info(pin)
        if current is not None:
            if os.path.samestat(os.stat(pin), st):
                return pin
            mount.unmount(pin)
        if stat.S_ISDIR(st.st_mode):
            os.makedirs(pin, 0o750, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(pin), 0o750, exist_ok=True)
            os.close(os.open(pin, os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, 0o640))
        mount.mount(f"/proc/self/fd/{fd}", pin, "", mount.MS_BIND)
    finally:
        os.close(fd)
    return pin
