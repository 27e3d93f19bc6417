"""The kubelet: the node agent (upstream pkg/kubelet/kubelet.go).

Sources of pods: the API server (pods bound to this node, through an informer) and static pod
manifests (``static_pods.py``). Each pod gets a pod worker (``pod_workers.py``) that calls
``sync_pod`` / ``sync_terminating_pod`` / ``sync_terminated_pod`` here; those drive the runtime
manager (``kuberuntime.py``) of the pod's runtime (the default one, or the one its RuntimeClass
handler names, e.g. ``process`` for the control plane's static pods), the volume manager, the
prober, and compute the API status (``status.py``) that the status manager writes to the pod (the
mirror pod for a static pod). The PLEG relists the runtimes every second and wakes the workers
of pods whose containers changed. The node registers itself, renews its Lease every 10 s and
posts its status when it changes (or every ``node_status_report`` seconds).

Restart safety: runtimes keep their containers across a kubelet restart, and on start the
kubelet adopts them (its first sync of a pod finds them running). Containers of pods no source
knows any more are stopped and removed once the API pods were listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from k8py.api.meta import format_time
from k8py.client import ClientError, RESTClient, is_already_exists, is_not_found
from k8py.client.events import NORMAL, WARNING, EventRecorder
from k8py.client.informer import ResourceEventHandlerFuncs, SharedIndexInformer
from k8py.client.resources import NODES, PODS, SERVICES, builtin
from k8py.client.rest import PatchType
from k8py.kubelet import nodestatus
from k8py.kubelet.dns import pod_dns
from k8py.kubelet.envvars import APIObjectLookup, ContainerConfigError, make_environment
from k8py.kubelet.eviction import (
    DEFAULT_EVICTION_HARD,
    Pressure,
    crossed,
    eviction_message,
    parse_thresholds,
    rank,
)
from k8py.kubelet.kuberuntime import PodStatus, RuntimeManager, SyncResult, all_containers
from k8py.kubelet.lifecycle import FAILED_POST_START_HOOK, FAILED_PRE_STOP_HOOK, HandlerRunner
from k8py.kubelet.nodelease import RENEW_INTERVAL, renew_lease
from k8py.kubelet.pod_workers import PodWorkers, WorkState
from k8py.kubelet.prober.manager import ProbeManager
from k8py.kubelet.prober.results import ProbeType, Result
from k8py.kubelet.runtime.interface import (
    ContainerState,
    ContainerStatus,
    CRIError,
    DNSConfig,
    Mount,
    Runtime,
)
from k8py.kubelet.static_pods import MIRROR_ANNOTATION, StaticPodSource, is_static, mirror_pod_of
from k8py.kubelet.stats import StatsProvider
from k8py.kubelet.status import StatusInputs, generate_pod_status, status_patch
from k8py.kubelet.volumes.manager import VolumeManager, VolumeMountError

T = TypeVar("T")
log = logging.getLogger(__name__)

Obj = dict[str, Any]
RUNTIME_CLASSES = builtin("runtimeclasses", "node.k8s.io")
PLEG_PERIOD = 1.0
NODE_STATUS_UPDATE = 10.0
NODE_STATUS_REPORT = 300.0
VOLUME_REFRESH = 60.0  # seconds between rewrites of a pod's configMap/secret/projected volumes


@dataclass
class KubeletConfig:
    node_name: str
    root_dir: Path
    host_ip: str = "127.0.0.1"
    port: int = 10250
    pod_manifest_path: Path | None = None
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    resolv_conf: str = "/etc/resolv.conf"
    max_pods: int = 110
    node_labels: dict[str, str] = field(default_factory=dict)
    register_with_taints: list[Obj] = field(default_factory=list)
    reserved: dict[str, str] = field(default_factory=dict)
    resync: float = 60.0  # seconds between a pod's periodic syncs (the kubelet's --sync-frequency, 1m)
    eviction_hard: str = DEFAULT_EVICTION_HARD
    eviction_interval: float = 10.0  # seconds between the eviction manager's looks at the signals
    tls_cert_file: str = ""  # the kubelet server's certificate (default: self-signed, in <root>/pki)
    tls_private_key_file: str = ""
    client_ca_file: str = ""  # who may call the kubelet server (default: the kubeconfig's CA)
    pod_cidr: str = ""  # used when the Node gets none from the controller manager (kubelet --pod-cidr)
    on_pod_cidr: Callable[[str], Awaitable[None]] | None = None  # e.g. write the CNI config


class Kubelet:
    def __init__(
        self,
        client: RESTClient,
        config: KubeletConfig,
        runtimes: dict[str, Runtime],
    ) -> None:
        """``runtimes`` by RuntimeClass handler; "" is the default runtime."""
        self.client = client
        self.config = config
        self.runtimes = runtimes
        self.pods_dir = config.root_dir / "pods"
        self.logs_dir = config.root_dir / "logs" / "pods"
        self.recorder = EventRecorder(client, component="kubelet", host=config.node_name)
        self.node_memory = nodestatus.meminfo()["MemTotal"]
        self.stats = StatsProvider(config.node_name)
        self.thresholds = parse_thresholds(config.eviction_hard)
        self._evicted: dict[str, str] = {}  # uid -> the Evicted message
        self.volumes = VolumeManager(client, str(self.pods_dir), node_name=config.node_name)
        # A runtime may serve several handlers (the process runtime is also the default one on a node
        # without containerd): each runtime gets one probe manager, hook runner and runtime manager.
        self._runtimes = _distinct(runtimes.values())
        probes = {id(rt): ProbeManager(rt, on_result=self._probe_result, recorder=self._container_event)
                  for rt in self._runtimes}
        hooks = {id(rt): HandlerRunner(rt, self.recorder) for rt in self._runtimes}
        managers = {
            id(rt): RuntimeManager(
                rt,
                pods_dir=self.pods_dir,
                logs_dir=self.logs_dir,
                environment=self._environment,
                node_memory=self.node_memory,
                cluster_domain=config.cluster_domain,
                dns_config=self._dns_config,
                on_container_started=self._post_start,
                is_started=probes[id(rt)].is_started,
                liveness_failed=self._liveness_failed(probes[id(rt)]),
                pre_stop=self._pre_stop,
                event=self._container_event,
            )
            for rt in self._runtimes
        }
        self.probes = {handler: probes[id(rt)] for handler, rt in runtimes.items()}
        self.hooks = {handler: hooks[id(rt)] for handler, rt in runtimes.items()}
        self.managers = {handler: managers[id(rt)] for handler, rt in runtimes.items()}
        self.pod_workers = PodWorkers(
            sync_pod=self.sync_pod,
            sync_terminating_pod=self.sync_terminating_pod,
            sync_terminated_pod=self.sync_terminated_pod,
            resync=config.resync,
        )
        self.informer = SharedIndexInformer(client, PODS, field_selector=f"spec.nodeName={config.node_name}")
        self.informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda p, _i: self._api_pod(p),
                update_func=lambda _o, n: self._api_pod(n),
                delete_func=lambda p: self._api_pod_deleted(p),
            )
        )
        self.services = SharedIndexInformer(client, SERVICES)
        self.static_pods = (
            StaticPodSource(config.pod_manifest_path, config.node_name, on_change=self._static_changed)
            if config.pod_manifest_path
            else None
        )
        self.pods: dict[str, Obj] = {}  # uid -> the pod as the kubelet runs it (static pods by their uid)
        self.runtime_status: dict[str, PodStatus] = {}  # uid -> the runtime's view at the last relist
        self._pod_handler: dict[str, str] = {}
        self._api_status: dict[str, Obj] = {}  # uid -> the status last written (or read) for the pod
        self._status_dirty: set[str] = set()
        self._status_wake = asyncio.Event()
        self._node_uid = ""
        self.registered = asyncio.Event()  # set once the Node exists
        self._last_node_status: Obj | None = None
        self._last_report = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._runtime_version = ""
        self._pod_cidr = ""
        self._volume_paths: dict[str, dict[str, str]] = {}  # uid -> volume name -> host path
        self._volumes_refreshed: dict[str, float] = {}

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for rt in self._runtimes:
            await rt.start()
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.runtime_status = await self._relist_all()
        spawn = asyncio.create_task
        self._tasks = [
            spawn(self._pleg(), name="kubelet-pleg"),
            spawn(self._status_writer(), name="kubelet-status"),
            spawn(self._eviction_loop(), name="kubelet-eviction"),
        ]
        try:
            await self._register_node(retry_for=0)
            self._start_node_loops()
        except ClientError as e:
            # the API server may be one of this node's static pods (kubeadm's control plane): run
            # them, and register once it answers, as the kubelet's node status loop does
            log.warning("registering node %s: %s; retrying in the background", self.config.node_name, e)
            self._tasks.append(spawn(self._register_in_background(), name="kubelet-register"))
        if self.static_pods is not None:
            await self.static_pods.start()
        self.services.start()
        self.informer.start()
        self._tasks.append(spawn(self._housekeeping_after_sync(), name="kubelet-housekeeping"))

    async def stop(self) -> None:
        """Stop the agent; containers keep running for the next kubelet to adopt."""
        if self.static_pods is not None:
            await self.static_pods.stop()
        await self.informer.stop()
        await self.services.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pod_workers.stop()
        for probes in _distinct(self.probes.values()):
            await probes.stop()
        for hooks in _distinct(self.hooks.values()):
            await hooks.close()
        for rt in self._runtimes:
            await rt.stop()
        await self.recorder.stop()

    # -- what the kubelet server asks (KubeletHost) ---------------------------------------

    def get_pods(self) -> list[Obj]:
        """The pods this kubelet runs, each with the status it last computed."""
        return [
            {**pod, "status": self._api_status.get(uid) or pod.get("status") or {}}
            for uid, pod in self.pods.items()
        ]

    def runtime_for(self, pod: Obj) -> Runtime:
        return self.managers[self._pod_handler.get(pod["metadata"].get("uid", ""), "")].runtime

    async def summary(self) -> Obj:
        stats = [s for rt in self._runtimes for s in await rt.list_container_stats()]
        starts = {uid: (st or {}).get("startTime", "") for uid, st in self._api_status.items()}
        return self.stats.summary(stats, self.runtime_status, starts)

    # -- pod sources ----------------------------------------------------------------------

    def _api_pod(self, pod: Obj) -> None:
        if MIRROR_ANNOTATION in (pod["metadata"].get("annotations") or {}):
            self._mirror_changed(pod)
            return
        uid = pod["metadata"]["uid"]
        self.pods[uid] = pod
        self._api_status.setdefault(uid, pod.get("status") or {})
        self.pod_workers.update_pod(pod)

    def _api_pod_deleted(self, pod: Obj) -> None:
        md = pod["metadata"]
        if MIRROR_ANNOTATION in (md.get("annotations") or {}):
            self._mirror_changed(None, name=md["name"], namespace=md["namespace"])
            return
        self.pod_workers.remove_pod(md["uid"])

    def _static_changed(self, added: list[Obj], removed: list[Obj]) -> None:
        for pod in added:
            uid = pod["metadata"]["uid"]
            self.pods[uid] = pod
            self.pod_workers.update_pod(pod)
            self._ensure_mirror(pod)
        for pod in removed:
            self.pod_workers.remove_pod(pod["metadata"]["uid"])

    # -- syncing (called by the pod workers) ----------------------------------------------

    async def sync_pod(self, pod: Obj) -> bool:
        uid = pod["metadata"]["uid"]
        if uid in self._evicted:
            return True
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not is_static(pod):
            return True  # terminal in the API (e.g. evicted): only stopping is left
        manager = await self._manager(pod)
        probes = self.probes[self._pod_handler[uid]]
        probes.add_pod(pod)
        status = await manager.get_pod_status(uid)
        if not await self._mount_volumes(pod, manager):
            self._set_status(pod, self._generate_status(pod, status, None))  # ContainerCreating
            return False
        result = await manager.sync_pod(pod, status)
        self._report_sync(pod, result)
        status = await manager.get_pod_status(uid)
        self.runtime_status[uid] = status
        self._update_probes(probes, pod, status)
        new = self._generate_status(pod, status, result)
        self._set_status(pod, new)
        expiry = manager.next_backoff_expiry(pod, status)
        if expiry is not None:
            self.pod_workers.request_resync(uid, expiry + 0.05)
        if result.waiting or result.pod_error:
            self.pod_workers.request_resync(uid, 1.0)
        return new["phase"] in ("Succeeded", "Failed")

    def _update_probes(self, probes: ProbeManager, pod: Obj, status: PodStatus) -> None:
        ip = status.ips[0] if status.ips else self.config.host_ip
        for c in all_containers(pod):
            cs = status.latest(c["name"])
            if cs is not None:
                probes.update_container(
                    pod["metadata"]["uid"], c["name"], cs.id, cs.started_at, ip,
                    running=cs.state == ContainerState.RUNNING,
                )

    def _probe_result(self, uid: str, name: str, probe_type: ProbeType, result: Result, message: str) -> None:
        """A probe's state changed: the pod's Ready conditions, or a restart, are due."""
        self.pod_workers.wake(uid)

    def _container_event(self, pod: Obj, container: str, event_type: str, reason: str, message: str) -> None:
        self.recorder.event(pod, event_type, reason, message, field_path=f"spec.containers{{{container}}}")

    def _liveness_failed(self, probes: ProbeManager) -> Callable[[str, str, str], bool]:
        def failed(uid: str, name: str, cid: str) -> bool:
            return probes.liveness_failed(uid, name, cid) or probes.startup_failed(uid, name, cid)

        return failed

    async def _run_hook(self, pod: Obj, container: Obj, cid: str, hook: str) -> bool:
        """Run the container's ``postStart`` or ``preStop`` handler (if any); False when it failed."""
        handler = (container.get("lifecycle") or {}).get(hook)
        if not handler:
            return True
        uid = pod["metadata"]["uid"]
        ip = (self.runtime_status.get(uid) or PodStatus(uid=uid)).ips
        ok, message = await self.hooks[self._pod_handler.get(uid, "")].run(
            cid, pod, container, handler, ip[0] if ip else self.config.host_ip
        )
        if not ok:
            reason = FAILED_POST_START_HOOK if hook == "postStart" else FAILED_PRE_STOP_HOOK
            self._container_event(pod, container["name"], WARNING, reason, message)
        return ok

    async def _post_start(self, pod: Obj, container: Obj, cid: str) -> None:
        """A failed postStart hook kills the container (the restart policy decides what follows)."""
        if not await self._run_hook(pod, container, cid, "postStart"):
            with contextlib.suppress(CRIError):
                await self.runtime_for(pod).stop_container(cid, 0)

    async def _pre_stop(self, pod: Obj, container: Obj, cid: str) -> None:
        await self._run_hook(pod, container, cid, "preStop")

    async def sync_terminating_pod(self, pod: Obj, grace: int) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._evicted:
            grace = 0  # hard eviction thresholds kill at once
        manager = await self._manager(pod)
        self.probes[self._pod_handler[uid]].stop_liveness_and_startup(uid)
        status = await manager.get_pod_status(uid)
        for cs in status.running():
            self.recorder.event(
                pod, NORMAL, "Killing", f"Stopping container {cs.name}", field_path=f"spec.containers{{{cs.name}}}"
            )
        await manager.kill_pod(pod, status, grace=grace)
        status = await manager.get_pod_status(uid)
        self.runtime_status[uid] = status
        new = self._generate_status(pod, status, None, terminal=True)
        if uid in self._evicted:
            new.update(phase="Failed", reason="Evicted", message=self._evicted[uid])
            new["conditions"].append({
                "type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                "message": self._evicted[uid], "lastProbeTime": None,
                "lastTransitionTime": format_time(dt.datetime.now(dt.UTC)),
            })
        self._set_status(pod, new)

    async def sync_terminated_pod(self, pod: Obj, removed: bool) -> None:
        uid = pod["metadata"]["uid"]
        if removed or pod["metadata"].get("deletionTimestamp"):
            manager = await self._manager(pod)
            status = await manager.get_pod_status(uid)
            await manager.remove_pod(status)
            self.probes[self._pod_handler.get(uid, "")].remove_pod(uid)
            await self._unmount_volumes(uid)
            self.runtime_status.pop(uid, None)
        if removed:
            self._evicted.pop(uid, None)
            self.pods.pop(uid, None)
            self._api_status.pop(uid, None)
            self._pod_handler.pop(uid, None)
            if is_static(pod):
                await self._delete_mirror(pod)
            return
        if pod["metadata"].get("deletionTimestamp") and not is_static(pod):
            await self._flush_status(uid)
            await self._delete_pod(pod)

    def _report_sync(self, pod: Obj, result: SyncResult) -> None:
        if result.pod_error:
            self.recorder.event(pod, WARNING, result.pod_error[0], result.pod_error[1])
        for name, (reason, message) in result.waiting.items():
            event_type = NORMAL if reason == "CrashLoopBackOff" else WARNING
            reason = "BackOff" if reason in ("CrashLoopBackOff", "ImagePullBackOff") else "Failed"
            self.recorder.event(pod, event_type, reason, message, field_path=f"spec.containers{{{name}}}")

    async def _manager(self, pod: Obj) -> RuntimeManager:
        uid = pod["metadata"]["uid"]
        handler = self._pod_handler.get(uid)
        if handler is None:
            handler = await self._runtime_handler(pod)
            self._pod_handler[uid] = handler
        return self.managers[handler]

    async def _runtime_handler(self, pod: Obj) -> str:
        rc = (pod.get("spec") or {}).get("runtimeClassName")
        if not rc:
            return ""
        if rc in self.managers and is_static(pod):
            return rc  # static pods may name a handler directly: there may be no API server yet
        try:
            obj = await self.client.get(RUNTIME_CLASSES, rc)
            handler = obj.get("handler", "")
        except ClientError:
            handler = rc
        if handler not in self.managers:
            log.warning("pod %s: no runtime for RuntimeClass %s (handler %r)", pod["metadata"]["name"], rc, handler)
            return ""
        return handler

    def _generate_status(self, pod: Obj, status: PodStatus, result: SyncResult | None, *, terminal: bool = False) -> Obj:
        uid = pod["metadata"]["uid"]
        manager = self.managers[self._pod_handler.get(uid, "")]
        prefix = {"cri": "containerd"}.get(manager.runtime.name, manager.runtime.name)
        current = {**pod, "status": self._api_status.get(uid) or pod.get("status") or {}}
        specs = {c["name"]: c for c in all_containers(pod)}

        def message(c: Obj, cs: ContainerStatus) -> str:
            return manager.termination_message(pod, specs.get(c["name"], c), cs)

        inputs = StatusInputs(
            runtime_prefix=prefix,
            host_ip=self.config.host_ip,
            is_ready=self._is_ready,
            is_started=self._is_started,
            termination_message=message,
        )
        return generate_pod_status(current, status, result, inputs, terminal=terminal)

    def _is_ready(self, uid: str, name: str) -> bool:
        return self.probes[self._pod_handler.get(uid, "")].is_ready(uid, name)

    def _is_started(self, uid: str, name: str) -> bool:
        return self.probes[self._pod_handler.get(uid, "")].is_started(uid, name)

    # -- container environment and volumes -------------------------------------------------

    async def _environment(self, pod: Obj, container: Obj, pod_ip: str) -> tuple[list[tuple[str, str]], list[Mount]]:
        uid = pod["metadata"]["uid"]
        if self.managers[self._pod_handler.get(uid, "")].runtime.name == "simulated":
            return [(e["name"], e.get("value", "")) for e in container.get("env") or [] if "value" in e], []
        allocatable = (self._last_node_status or {}).get("allocatable") or {}
        try:
            envs = await make_environment(
                pod, container, lookup=APIObjectLookup(self.client), services=self.services.indexer.list(),
                pod_ip=pod_ip, host_ip=self.config.host_ip, node_name=self.config.node_name,
                node_allocatable=allocatable,
            )
            mounts = self.volumes.make_mounts(pod, container, self._volume_paths.get(uid, {}), env=envs)
        except ContainerConfigError as e:
            raise CRIError(str(e), reason=e.reason) from e
        return envs, mounts

    def _dns_config(self, pod: Obj) -> DNSConfig | None:
        config, warning = pod_dns(
            pod, cluster_dns=self.config.cluster_dns, cluster_domain=self.config.cluster_domain,
            resolv_conf=self.config.resolv_conf,
        )
        if warning:
            self.recorder.event(pod, WARNING, "MissingClusterDNS", warning)
        return config

    async def _mount_volumes(self, pod: Obj, manager: RuntimeManager) -> bool:
        """Set up (or every VOLUME_REFRESH seconds, refresh) the pod's volumes; False on failure."""
        uid = pod["metadata"]["uid"]
        if manager.runtime.name == "simulated":
            return True
        now = time.monotonic()
        try:
            if uid not in self._volume_paths:
                self._volume_paths[uid] = await self.volumes.mount_volumes(pod)
                self._volumes_refreshed[uid] = now
            elif now - self._volumes_refreshed.get(uid, 0.0) > VOLUME_REFRESH:
                self._volumes_refreshed[uid] = now
                await self.volumes.refresh(pod)
        except VolumeMountError as e:
            for message in e.messages:
                self.recorder.event(pod, WARNING, e.reason, message)
            self.pod_workers.request_resync(uid, 2.0)
            return uid in self._volume_paths
        return True

    async def _unmount_volumes(self, uid: str) -> None:
        self._volume_paths.pop(uid, None)
        self._volumes_refreshed.pop(uid, None)
        try:
            await self.volumes.unmount_volumes(uid)
        except OSError as e:
            log.warning("pod %s: tearing down volumes: %s", uid, e)

    # -- status manager -------------------------------------------------------------------

    def _set_status(self, pod: Obj, status: Obj) -> None:
        uid = pod["metadata"]["uid"]
        old = self._api_status.get(uid) or {}
        if status_patch(old, status) is None:
            return
        self._api_status[uid] = {**old, **status, "conditions": _merged_conditions(old, status)}
        self._status_dirty.add(uid)
        self._status_wake.set()

    async def _status_writer(self) -> None:
        while True:
            await self._status_wake.wait()
            self._status_wake.clear()
            dirty, self._status_dirty = self._status_dirty, set()
            await asyncio.gather(*(self._flush_status(uid) for uid in dirty))

    async def _flush_status(self, uid: str) -> None:
        pod = self.pods.get(uid)
        status = self._api_status.get(uid)
        if pod is None or status is None:
            return
        target = mirror_pod_of(pod) if is_static(pod) else pod
        md = target["metadata"]
        try:
            await self.client.patch(
                PODS, md["name"], {"status": status}, namespace=md["namespace"],
                subresource="status", patch_type=PatchType.STRATEGIC,
            )
        except ClientError as e:
            if not is_not_found(e):
                log.warning("pod %s/%s: status update failed: %s", md["namespace"], md["name"], e)
                self._status_dirty.add(uid)
                await asyncio.sleep(1.0)
                self._status_wake.set()

    async def _delete_pod(self, pod: Obj) -> None:
        """The pod's containers are gone: let the API server delete it (grace 0, by uid)."""
        md = pod["metadata"]
        try:
            await self.client.delete(
                PODS, md["name"], namespace=md["namespace"], grace_period_seconds=0,
                preconditions={"uid": md["uid"]},
            )
        except ClientError as e:
            if not is_not_found(e) and getattr(e, "code", 0) != 409:
                raise

    # -- mirror pods ----------------------------------------------------------------------

    def _ensure_mirror(self, pod: Obj) -> None:
        task = asyncio.create_task(self._create_mirror(pod))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _create_mirror(self, pod: Obj) -> None:
        """Create the mirror pod once the Node exists (it is the mirror's owner), retrying failures
        (the API server may be a static pod starting) while the static pod runs."""
        uid = pod["metadata"]["uid"]
        delay = 0.5
        await self.registered.wait()
        while True:
            mirror = mirror_pod_of(pod)
            mirror["metadata"]["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.config.node_name, "uid": self._node_uid,
                 "controller": True}
            ]
            try:
                await self.client.create(PODS, mirror, namespace=mirror["metadata"]["namespace"])
                break
            except ClientError as e:
                if is_already_exists(e):
                    break
                log.warning("mirror pod %s: %s; retrying", mirror["metadata"]["name"], e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            if uid not in self.pods:
                return
        self._status_dirty.add(uid)
        self._status_wake.set()

    def _mirror_changed(self, mirror: Obj | None, *, name: str = "", namespace: str = "") -> None:
        """A mirror pod changed or went: recreate it if its static pod still runs (kube does the same)."""
        if mirror is not None:
            md = mirror["metadata"]
            name, namespace = md["name"], md["namespace"]
            if not md.get("deletionTimestamp"):
                return
        for pod in list(self.pods.values()):
            pmd = pod["metadata"]
            if is_static(pod) and pmd["name"] == name and pmd["namespace"] == namespace:
                if mirror is not None:
                    # Deleting the mirror with grace: finish its deletion, then recreate it.
                    task = asyncio.create_task(self._replace_mirror(pod, mirror))
                else:
                    task = asyncio.create_task(self._create_mirror(pod))
                self._tasks.append(task)
                task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _replace_mirror(self, pod: Obj, mirror: Obj) -> None:
        await self._delete_pod(mirror)

    async def _delete_mirror(self, pod: Obj) -> None:
        md = pod["metadata"]
        with contextlib.suppress(ClientError):
            await self.client.delete(PODS, md["name"], namespace=md["namespace"], grace_period_seconds=0)

    # -- PLEG -----------------------------------------------------------------------------

    async def _relist_all(self) -> dict[str, PodStatus]:
        out: dict[str, PodStatus] = {}
        for manager in _distinct(self.managers.values()):
            out.update(await manager.get_pod_statuses())
        return out

    async def _pleg(self) -> None:
        """GenericPLEG: relist, compare container states, wake the workers of changed pods."""
        while True:
            await asyncio.sleep(PLEG_PERIOD)
            try:
                current = await self._relist_all()
            except Exception:
                log.exception("PLEG relist failed")
                continue
            for uid in set(current) | set(self.runtime_status):
                if _fingerprint(current.get(uid)) != _fingerprint(self.runtime_status.get(uid)):
                    self.runtime_status[uid] = current.get(uid) or PodStatus(uid=uid)
                    self.pod_workers.wake(uid)

    async def _housekeeping_after_sync(self) -> None:
        """Once the API pods are listed: stop and remove containers of pods nobody knows."""
        while not self.informer.has_synced():
            await asyncio.sleep(0.1)
        if self.static_pods is not None:
            await self.static_pods.synced.wait()
        while True:
            known = self.pod_workers.known() | set(self.pods)
            for uid, status in list(self.runtime_status.items()):
                if uid not in known and (status.containers or status.sandboxes):
                    log.info("removing containers of orphaned pod %s/%s (%s)", status.namespace, status.name, uid)
                    for manager in _distinct(self.managers.values()):
                        with contextlib.suppress(CRIError):
                            await manager.kill_pod(None, status, grace=0)
                            await manager.remove_pod(status)
                    self.runtime_status.pop(uid, None)
            now = time.time()
            for manager in _distinct(self.managers.values()):
                manager.backoff.gc(now)
                manager.image_backoff.gc(now)
            await asyncio.sleep(30.0)

    # -- node -----------------------------------------------------------------------------

    def _node_config(self) -> nodestatus.NodeConfig:
        return nodestatus.NodeConfig(
            name=self.config.node_name,
            addresses=[("InternalIP", self.config.host_ip), ("Hostname", self.config.node_name)],
            kubelet_port=self.config.port,
            runtime_version=self._runtime_version,
            max_pods=self.config.max_pods,
            labels=self.config.node_labels,
            taints=self.config.register_with_taints,
            reserved=self.config.reserved,
            eviction_hard=self.thresholds,
        )

    def _start_node_loops(self) -> None:
        self._tasks += [
            asyncio.create_task(self._heartbeat(), name="kubelet-lease"),
            asyncio.create_task(self._node_status_loop(), name="kubelet-node-status"),
        ]

    async def _register_in_background(self) -> None:
        await self._register_node(retry_for=None)
        self._start_node_loops()

    async def _register_node(self, retry_for: float | None) -> None:
        """Create (or find) the Node; retry failures for ``retry_for`` seconds (None: until it works)."""
        name, version = await self.runtimes[""].version()
        prefix = {"containerd": "containerd"}.get(name, name)
        self._runtime_version = f"{prefix}://{version}"
        obs, _ = self._observe()
        status = nodestatus.node_status(self._node_config(), obs, ready=False, images=[], old=None)
        node = nodestatus.node_object(self._node_config(), status)
        deadline = None if retry_for is None else time.monotonic() + retry_for
        while True:
            try:
                created = await self.client.create(NODES, node)
                self._node_uid = created["metadata"]["uid"]
                self._last_node_status = created.get("status")
                break
            except ClientError as e:
                if is_already_exists(e):
                    existing = await self.client.get(NODES, name=self.config.node_name)
                    created = existing
                    self._node_uid = existing["metadata"]["uid"]
                    self._last_node_status = existing.get("status")
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                log.warning("registering node %s: %s; retrying", self.config.node_name, e)
                await asyncio.sleep(1.0)
        await self._set_pod_cidr(created)
        await self._update_node_status(force=True)
        self.registered.set()
        log.info("node %s registered", self.config.node_name)

    async def _set_pod_cidr(self, node: Obj) -> None:
        """The node's pod CIDR became known: tell the runtime (CRI UpdateRuntimeConfig) and the network."""
        cidr = (node.get("spec") or {}).get("podCIDR") or self.config.pod_cidr
        if not cidr or cidr == self._pod_cidr:
            return
        self._pod_cidr = cidr
        for rt in self._runtimes:
            await rt.update_runtime_config(cidr)
        if self.config.on_pod_cidr is not None:
            await self.config.on_pod_cidr(cidr)
        log.info("node %s: pod CIDR %s", self.config.node_name, cidr)

    def _needs_cidr(self) -> bool:
        return self.runtimes[""].name != "process"

    def _network_ready(self) -> bool:
        """A CRI node needs its pod CIDR (its CNI config) before pods can have a network."""
        return self.runtimes[""].name != "cri" or bool(self._pod_cidr)

    async def _heartbeat(self) -> None:
        while True:
            try:
                await renew_lease(self.client, self.config.node_name, owner_uid=self._node_uid)
            except ClientError as e:
                log.warning("renewing the node lease: %s", e)
            await asyncio.sleep(RENEW_INTERVAL)

    async def _node_status_loop(self) -> None:
        while True:
            await asyncio.sleep(NODE_STATUS_UPDATE if self._pod_cidr or not self._needs_cidr() else 1.0)
            try:
                if not self._pod_cidr and self._needs_cidr():
                    await self._set_pod_cidr(await self.client.get(NODES, self.config.node_name))
                await self._update_node_status()
            except ClientError as e:
                log.warning("updating node status: %s", e)

    def _observe(self) -> tuple[nodestatus.Observation, list[Pressure]]:
        obs = nodestatus.observe(self.config.root_dir)
        pressures = crossed(self.thresholds, {
            "memory.available": (obs.memory_available, obs.memory_capacity),
            "nodefs.available": (obs.nodefs_available, obs.nodefs_capacity),
        })
        obs.memory_pressure = any(p.resource == "memory" for p in pressures)
        obs.disk_pressure = any(p.resource == "ephemeral-storage" for p in pressures)
        return obs, pressures

    async def _eviction_loop(self) -> None:
        """The eviction manager: under a crossed threshold, evict one pod per interval."""
        pressured = False
        while True:
            await asyncio.sleep(self.config.eviction_interval)
            _, pressures = self._observe()
            if bool(pressures) != pressured:
                pressured = bool(pressures)
                with contextlib.suppress(ClientError):
                    await self._update_node_status(force=True)
            if pressures:
                await self._evict_one(pressures[0])

    async def _evict_one(self, pressure: Pressure) -> None:
        candidates = [
            pod for uid, pod in self.pods.items()
            if uid not in self._evicted and not is_static(pod)
            and self.pod_workers.state(uid) is WorkState.SYNCING
            and (self._api_status.get(uid) or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        if not candidates:
            return
        summary = await self.summary()
        usage = {p["podRef"]["uid"]: p["memory"]["workingSetBytes"] for p in summary["pods"]}
        pod = rank(candidates, pressure, usage)[0]
        message = eviction_message(pressure, pod, usage)
        log.warning("evicting pod %s/%s: %s", pod["metadata"]["namespace"], pod["metadata"]["name"], message)
        self.recorder.event(pod, WARNING, "Evicted", message)
        self._evicted[pod["metadata"]["uid"]] = message
        self.pod_workers.wake(pod["metadata"]["uid"])

    async def _update_node_status(self, *, force: bool = False) -> None:
        obs, _ = self._observe()
        images = [
            {"names": [*img.repo_tags, *img.repo_digests] or [img.id], "sizeBytes": img.size}
            for rt in self._runtimes
            for img in await rt.list_images()
        ][:50]
        status = nodestatus.node_status(
            self._node_config(), obs, ready=self._network_ready(), images=images, old=self._last_node_status
        )
        changed = _node_status_key(status) != _node_status_key(self._last_node_status or {})
        if not (force or changed or time.monotonic() - self._last_report > NODE_STATUS_REPORT):
            return
        node = await self.client.patch(
            NODES, self.config.node_name, {"status": status}, subresource="status", patch_type=PatchType.STRATEGIC
        )
        self._last_node_status = node.get("status")
        self._last_report = time.monotonic()


def _distinct(items: Iterable[T]) -> list[T]:
    """Each object once (handlers may share one runtime and its managers), in order."""
    return list({id(item): item for item in items}.values())


def _node_status_key(status: Obj) -> Any:
    conds = [(c.get("type"), c.get("status"), c.get("reason")) for c in status.get("conditions") or []]
    return (conds, status.get("allocatable"), status.get("addresses"), status.get("images"))


def _fingerprint(status: PodStatus | None) -> Any:
    if status is None:
        return None
    return (
        tuple((s.id, s.state) for s in status.sandboxes),
        tuple((c.id, c.state) for c in status.containers),
    )


def _merged_conditions(old: Obj, new: Obj) -> list[Obj]:
    kept = {c["type"] for c in new.get("conditions") or []}
    return [*(new.get("conditions") or []), *(c for c in old.get("conditions") or [] if c.get("type") not in kept)]
