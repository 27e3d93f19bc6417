"""What every volume plugin shares: the plugin contract, the per-pod set-up context, the wrapped
emptyDir the file-projecting volumes are written into, and fsGroup ownership.

Upstream's plugins are mounter objects built per volume; k8py's are stateless objects whose
``set_up`` gets a :class:`SetUpContext` (the pod, its directory, and the kubelet services a plugin
may use) and returns the host path.  The four file-projecting volumes (configMap, secret,
downwardAPI, projected) "wrap" an emptyDir, as upstream's do: plain disk for configMap, memory
(tmpfs) for the others, so secrets never touch the disk where the kubelet may mount.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from k8py.api.resources import pod_limits
from k8py.api.validation.quantity import parse_quantity
from k8py.kubelet.envvars import ObjectLookup
from k8py.kubelet.volumes import mount
from k8py.kubelet.volumes.atomic_writer import AtomicWriter, FileProjection
from k8py.kubelet.volumes.token import TokenManager

log = logging.getLogger(__name__)

Obj = dict[str, Any]
EMPTY_DIR_PERM = 0o777
RW_MASK, RO_MASK, EXEC_MASK = 0o660, 0o440, 0o110


class SetUpError(Exception):
    """A volume could not be set up; the message is the plugin's (kube's) wording."""


def aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate's message."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


class Mounter:
    """Mounts when it can: as root with CAP_SYS_ADMIN.  Without, memory-backed volumes are plain
    directories (and a warning says so once).  ``can_mount`` also tells whether the kubelet may
    change volume ownership (fsGroup, a token's owner): the same privilege."""

    def __init__(self) -> None:
        self.can_mount = os.geteuid() == 0

    def mount_tmpfs(self, target: str, size: int) -> bool:
        """tmpfs at ``target`` (``size`` bytes; 0: the kernel's default, half the RAM); False if not allowed."""
        if not self.can_mount:
            return False
        try:
            mount.mount("tmpfs", target, "tmpfs", 0, f"size={size}" if size > 0 else "")
        except PermissionError:
            log.warning("mounting tmpfs is not permitted: memory-backed volumes are plain directories")
            self.can_mount = False
            return False
        return True


@dataclass(slots=True)
class SetUpContext:
    """One pod's volume set-up: the pod and the kubelet services plugins may use."""

    pod: Obj
    pod_dir: str
    lookup: ObjectLookup
    tokens: TokenManager
    mounter: Mounter
    node_allocatable: Callable[[], Awaitable[Mapping[str, Any]]]

    @property
    def namespace(self) -> str:
        return self.pod["metadata"].get("namespace", "default")

    @property
    def fs_group(self) -> int | None:
        return ((self.pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")

    @property
    def fs_user(self) -> int | None:
        """volumeutil.FsUserFrom: the one runAsUser every (init) container runs as, if there is one."""
        spec = self.pod.get("spec") or {}
        pod_user = (spec.get("securityContext") or {}).get("runAsUser")
        users = {
            (c.get("securityContext") or {}).get("runAsUser", pod_user)
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        }
        return users.pop() if len(users) == 1 and None not in users else None

    def volume_dir(self, plugin: str, name: str) -> str:
        """``<pod>/volumes/kubernetes.io~<plugin>/<name>`` (EscapeQualifiedNameForDisk)."""
        return os.path.join(self.pod_dir, "volumes", plugin.replace("/", "~"), name)

    async def set_up_empty_dir(self, path: str, medium: str, size_limit: Any = None) -> bool:
        """An emptyDir at ``path``: a 0777 directory, with a tmpfs mounted on it for ``Memory``.

        True when it was set up now, False when it already was."""
        created = await asyncio.to_thread(_setup_dir, path)
        if medium != "Memory" or not self.mounter.can_mount:
            return created
        if await asyncio.to_thread(os.path.ismount, path):
            return False
        size = calculate_empty_dir_memory_size(
            parse_quantity((await self.node_allocatable()).get("memory")), size_limit, self.pod
        )
        await asyncio.to_thread(self.mounter.mount_tmpfs, path, size)
        return True

    async def write_atomically(self, path: str, medium: str, payload: Mapping[str, FileProjection], what: str) -> None:
        """Set up the wrapped emptyDir and make it show ``payload`` (read-only volume ownership)."""
        await self.set_up_empty_dir(path, medium)
        fs_group = self.fs_group if self.mounter.can_mount else None
        writer = AtomicWriter(path, f"pod {self.namespace}/{self.pod['metadata'].get('name')} volume {what}")

        def set_perms(_: str) -> None:
            if fs_group is not None:
                set_volume_ownership(path, fs_group, readonly=True)

        try:
            await asyncio.to_thread(writer.write, payload, set_perms)
        except (OSError, ValueError) as e:
            raise SetUpError(str(e)) from e


class VolumePlugin(Protocol):
    name: str  # "kubernetes.io/configmap"
    requires_remount: bool  # set up again on every resync (file contents follow the API)
    read_only: bool  # GetAttributes().ReadOnly: containers always mount it read-only

    def can_support(self, volume: Obj) -> bool: ...

    async def set_up(self, ctx: SetUpContext, volume: Obj) -> str:
        """Make the volume ready; its host path.  Raises SetUpError."""
        ...


def calculate_empty_dir_memory_size(allocatable: Any, size_limit: Any, pod: Obj) -> int:
    """The tmpfs size in bytes (0: unbounded): node allocatable memory, lowered to the pod's memory
    limit (when every container has one) and to the volume's sizeLimit (SizeMemoryBackedVolumes)."""
    size = allocatable.value if allocatable is not None else 0
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    if containers and all(((c.get("resources") or {}).get("limits") or {}).get("memory") for c in containers):
        pod_limit = pod_limits(pod).get("memory")
        if pod_limit is not None and pod_limit.value > 0 and (size == 0 or pod_limit.value <= size):
            size = pod_limit.value
    limit = parse_quantity(size_limit) if size_limit is not None else None
    if limit is not None and limit.value > 0 and (size == 0 or limit.value <= size):
        size = limit.value
    return int(size)


def _setup_dir(path: str) -> bool:
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    try:
        os.mkdir(path, EMPTY_DIR_PERM)
    except FileExistsError:
        return False
    os.chmod(path, EMPTY_DIR_PERM)  # mkdir(2) applied the umask
    return True


def set_volume_ownership(path: str, fs_group: int, *, readonly: bool) -> None:
    """volume.SetVolumeOwnership: group ``fs_group`` on everything, group-readable (-writable unless
    ``readonly``) files, setgid directories (new files inherit the group)."""
    mask = RO_MASK if readonly else RW_MASK

    def change(target: str) -> None:
        st = os.lstat(target)
        os.lchown(target, -1, fs_group)
        if not stat.S_ISLNK(st.st_mode):
            extra = mask | stat.S_ISGID | EXEC_MASK if stat.S_ISDIR(st.st_mode) else mask
            os.chmod(target, stat.S_IMODE(st.st_mode) | extra)

    change(path)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            change(os.path.join(root, name))
