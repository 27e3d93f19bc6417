"""The kubelet's volume manager (upstream pkg/kubelet/volumemanager, reduced to what a node without
attachable volumes needs).

Upstream runs a desired-state populator and a reconciler loop; k8py's pod workers call in directly:

- :meth:`VolumeManager.mount_volumes` before a pod's containers start: every volume of the pod set
  up by its plugin under ``<pods-dir>/<pod-uid>/volumes/kubernetes.io~<plugin>/<name>`` (hostPath
  and, without root, local volumes are the node path itself).  Idempotent: a second call for a
  set-up pod changes nothing but stale projected files.  Failures raise :class:`VolumeMountError`
  carrying one FailedMount event message per volume (``MountVolume.SetUp failed for volume "cfg" :
  configmap "x" not found``); the pod stays in ContainerCreating and the pod worker retries.
- :meth:`VolumeManager.refresh` on the periodic resync: configMap, secret, downwardAPI and projected
  volumes are written again (nothing changes on disk unless their contents did; tokens renew).
- :meth:`VolumeManager.unmount_volumes` when the pod is gone: every mount under the pod's directory
  (tmpfs, local binds, subPath pins) is unmounted, then the volume directories are removed.  It
  works from the mount table and the directory alone, so it also cleans up after a restart.
- :meth:`VolumeManager.make_mounts`: a container's volumeMounts as runtime :class:`Mount` s.

A persistentVolumeClaim is resolved to its bound PersistentVolume, which must be ``hostPath`` or
``local`` (the volume is then set up under the PV's name, as upstream).  ConfigMaps and Secrets are
read through the API on every call, once per call; service account tokens are cached by the token
manager.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

from k8py.client import ClientError, NotFound, RESTClient
from k8py.client.resources import NODES, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES
from k8py.kubelet.envvars import APIObjectLookup, ContainerConfigError, client_error_message
from k8py.kubelet.runtime.interface import Mount
from k8py.kubelet.volumes import mount
from k8py.kubelet.volumes.configmap import ConfigMapPlugin
from k8py.kubelet.volumes.downwardapi import DownwardAPIPlugin
from k8py.kubelet.volumes.emptydir import EmptyDirPlugin
from k8py.kubelet.volumes.hostpath import HostPathPlugin
from k8py.kubelet.volumes.local import LocalVolumePlugin
from k8py.kubelet.volumes.plugin import Mounter, SetUpContext, SetUpError, VolumePlugin
from k8py.kubelet.volumes.projected import ProjectedPlugin
from k8py.kubelet.volumes.secret import SecretPlugin
from k8py.kubelet.volumes.subpath import expand_subpath_expr, prepare_subpath
from k8py.kubelet.volumes.token import TokenManager

log = logging.getLogger(__name__)

Obj = dict[str, Any]
FAILED_MOUNT = "FailedMount"
PLUGINS: tuple[VolumePlugin, ...] = (
    EmptyDirPlugin(),
    HostPathPlugin(),
    ConfigMapPlugin(),
    SecretPlugin(),
    DownwardAPIPlugin(),
    ProjectedPlugin(),
    LocalVolumePlugin(),
)


class VolumeMountError(Exception):
    """Some of a pod's volumes could not be set up; ``messages`` are the FailedMount events."""

    reason = FAILED_MOUNT

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def find_plugin(volume: Obj) -> VolumePlugin | None:
    return next((p for p in PLUGINS if p.can_support(volume)), None)


class VolumeManager:
    """Sets up, refreshes and tears down pods' volumes on node ``node_name``; see the module docstring.

    ``node_allocatable`` (a ResourceList) bounds memory-backed volumes and defaults the limits the
    downward API reports; without it the Node's ``status.allocatable`` is read when needed."""

    def __init__(
        self,
        client: RESTClient,
        pods_dir: str,
        *,
        node_name: str,
        node_allocatable: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.pods_dir = pods_dir
        self.node_name = node_name
        self._node_allocatable = node_allocatable
        self.tokens = TokenManager(client)
        self.mounter = Mounter()
        self._locks: dict[str, asyncio.Lock] = {}

    def pod_dir(self, pod_uid: str) -> str:
        return os.path.join(self.pods_dir, pod_uid)

    async def node_allocatable(self) -> Mapping[str, Any]:
        if self._node_allocatable is not None:
            return self._node_allocatable
        try:
            node = await self.client.get(NODES, self.node_name)
        except NotFound:
            return {}
        return (node.get("status") or {}).get("allocatable") or {}

    def _lock(self, pod_uid: str) -> asyncio.Lock:
        return self._locks.setdefault(pod_uid, asyncio.Lock())

    def _context(self, pod: Obj) -> SetUpContext:
        return SetUpContext(
            pod=pod,
            pod_dir=self.pod_dir(pod["metadata"]["uid"]),
            lookup=APIObjectLookup(self.client),
            tokens=self.tokens,
            mounter=self.mounter,
            node_allocatable=self.node_allocatable,
        )

    # ---- set-up ---------------------------------------------------------------------------------

    async def mount_volumes(self, pod: Obj) -> dict[str, str]:
        """Set up every volume of ``pod``: volume name -> host path.  Raises VolumeMountError."""
        return await self._set_up(pod, only_remount=False)

    async def refresh(self, pod: Obj) -> None:
        """Rewrite the pod's configMap, secret, downwardAPI and projected volumes from the API
        (the periodic resync).  Raises VolumeMountError for the volumes that failed, whose files
        stay as they were."""
        await self._set_up(pod, only_remount=True)

    async def _set_up(self, pod: Obj, *, only_remount: bool) -> dict[str, str]:
        uid = pod["metadata"]["uid"]
        async with self._lock(uid):
            ctx = self._context(pod)
            await asyncio.to_thread(_make_pod_dirs, ctx.pod_dir)
            volumes = [
                v for v in (pod.get("spec") or {}).get("volumes") or []
                if not only_remount or getattr(find_plugin(v), "requires_remount", False)
            ]
            results = await asyncio.gather(*(self._set_up_volume(ctx, v) for v in volumes), return_exceptions=True)
        paths: dict[str, str] = {}
        messages: list[str] = []
        for volume, result in zip(volumes, results, strict=True):
            if isinstance(result, _VolumeFailure):
                messages.append(str(result))
            elif isinstance(result, BaseException):
                raise result
            else:
                paths[volume["name"]] = result
        if messages:
            raise VolumeMountError(messages)
        return paths

    async def _set_up_volume(self, ctx: SetUpContext, volume: Obj) -> str:
        name = volume.get("name", "")
        if (claim := volume.get("persistentVolumeClaim")) is not None:
            volume = await self._persistent_volume_spec(ctx.namespace, claim)
            name = volume["name"]
        plugin = find_plugin(volume)
        if plugin is None:
            raise _VolumeFailure(
                f'failed to get Plugin from volumeSpec for volume "{name}" err=no volume plugin matched'
            )
        try:
            return await plugin.set_up(ctx, volume)
        except SetUpError as e:
            raise _VolumeFailure(f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
        except ClientError as e:
            raise _VolumeFailure(f'MountVolume.SetUp failed for volume "{name}" : {client_error_message(e)}') from e

    async def _persistent_volume_spec(self, namespace: str, claim: Obj) -> Obj:
        """The bound PV's source as a volume named after the PV (the desired-state populator's part)."""
        claim_name = claim.get("claimName", "")

        def failure(message: str) -> _VolumeFailure:
            return _VolumeFailure(f"error processing PVC {namespace}/{claim_name}: {message}")

        try:
            pvc = await self.client.get(PERSISTENT_VOLUME_CLAIMS, claim_name, namespace=namespace)
        except ClientError as e:
            raise failure(f"failed to fetch PVC from API server: {client_error_message(e)}") from e
        if pvc["metadata"].get("deletionTimestamp"):
            raise failure(f"can't start pod because PVC {namespace}/{claim_name} is being deleted")
        if (pvc.get("status") or {}).get("phase") != "Bound":
            raise failure("PVC is not bound")
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name:
            raise failure("PVC has empty pvc.Spec.VolumeName")
        try:
            pv = await self.client.get(PERSISTENT_VOLUMES, pv_name)
        except ClientError as e:
            raise failure(f"failed to fetch PV {pv_name} from API server: {client_error_message(e)}") from e
        claim_ref = (pv.get("spec") or {}).get("claimRef")
        if claim_ref is None:
            raise failure(f"found PV object {pv_name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim")
        if claim_ref.get("uid") != pvc["metadata"]["uid"]:
            raise failure(
                f"found PV object {pv_name} but its pv.Spec.ClaimRef.UID {claim_ref.get('uid')} "
                f"does not point to claim.UID {pvc['metadata']['uid']}"
            )
        spec = pv["spec"]
        for source in ("hostPath", "local"):
            if source in spec:
                return {"name": pv_name, source: spec[source], "readOnly": bool(claim.get("readOnly"))}
        raise failure(f"PV {pv_name} is neither hostPath nor local: k8py's kubelet mounts no other volume source")

    # ---- tear-down --------------------------------------------------------------------------------

    async def unmount_volumes(self, pod_uid: str) -> None:
        """Unmount everything under the pod's directory and remove its volumes (and the directory when
        nothing else is left in it).  Raises OSError when a mount cannot be removed."""
        async with self._lock(pod_uid):
            await asyncio.to_thread(tear_down_pod_dir, self.pod_dir(pod_uid))
            self.tokens.delete_service_account_token(pod_uid)
        self._locks.pop(pod_uid, None)

    # ---- container mounts -------------------------------------------------------------------------

    def make_mounts(
        self, pod: Obj, container: Obj, volume_paths: Mapping[str, str], *, env: Iterable[tuple[str, str]] = ()
    ) -> list[Mount]:
        """makeMounts: the container's volumeMounts (subPath, subPathExpr expanded from ``env``, the
        container's environment).  Raises ContainerConfigError (CreateContainerConfigError)."""
        volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
        env = list(env)
        mounts: list[Mount] = []
        for index, vm in enumerate(container.get("volumeMounts") or []):
            name = vm.get("name", "")
            host_path = volume_paths.get(name)
            if host_path is None or name not in volumes:
                raise ContainerConfigError(f'cannot find volume "{name}" to mount into container "{container["name"]}"')
            sub_path = vm.get("subPath", "")
            if vm.get("subPathExpr"):
                sub_path = expand_subpath_expr(vm["subPathExpr"], env)
            if sub_path:
                host_path = self._subpath(pod, container, index, vm, host_path, sub_path)
            container_path = vm.get("mountPath", "")
            mounts.append(
                Mount(
                    container_path=container_path if container_path.startswith("/") else posixpath.normpath("/" + container_path),
                    host_path=host_path,
                    readonly=bool(vm.get("readOnly")) or _read_only(volumes[name]),
                )
            )
        return mounts

    def _subpath(self, pod: Obj, container: Obj, index: int, vm: Obj, volume_path: str, sub_path: str) -> str:
        if sub_path.startswith("/"):
            raise ContainerConfigError(f"error SubPath `{sub_path}` must not be an absolute path")
        if ".." in sub_path.split("/"):
            raise ContainerConfigError(f"unable to provision SubPath `{sub_path}`: must not contain '..'")
        pin = None
        if self.mounter.can_mount:
            pod_dir = self.pod_dir(pod["metadata"]["uid"])
            pin = os.path.join(pod_dir, "volume-subpaths", vm["name"], container["name"], str(index))
        try:
            return prepare_subpath(volume_path, sub_path, pin)
        except OSError as e:
            log.error("failed to prepare subPath %r of volumeMount %r of container %r: %s",
                      sub_path, vm["name"], container["name"], e)
            raise ContainerConfigError(
                f'failed to prepare subPath for volumeMount "{vm["name"]}" of container "{container["name"]}"'
            ) from e


class _VolumeFailure(Exception):
    """One volume's FailedMount message."""


def _read_only(volume: Obj) -> bool:
    """Whether containers must mount the volume read-only (the mounter's ReadOnly attribute)."""
    if (claim := volume.get("persistentVolumeClaim")) is not None:
        return bool(claim.get("readOnly"))
    plugin = find_plugin(volume)
    return plugin is not None and plugin.read_only


def _make_pod_dirs(pod_dir: str) -> None:
    os.makedirs(os.path.join(pod_dir, "volumes"), 0o750, exist_ok=True)


def tear_down_pod_dir(pod_dir: str) -> None:
    """Unmount everything under a pod's directory and remove its volumes."""
    if not os.path.isdir(pod_dir):
        return
    for point in mount.mount_points_under(pod_dir):
        mount.unmount(point)
    if left := mount.mount_points_under(pod_dir):
        raise OSError(f"mounts left under {pod_dir}: {', '.join(left)}")
    for sub in ("volumes", "volume-subpaths"):
        path = os.path.join(pod_dir, sub)
        if os.path.isdir(path):
            shutil.rmtree(path)
    try:
        os.rmdir(pod_dir)
    except OSError:
        pass  # other kubelet state (etc-hosts, container directories) is not the volume manager's
