"""The runtime manager: a pod spec turned into sandbox and container calls (upstream pkg/kubelet/kuberuntime).

``RuntimeManager.sync_pod`` is kubeGenericRuntimeManager.SyncPod: it reads the runtime's view of
the pod (``PodStatus``), computes the actions (``compute_pod_actions``: a new sandbox, containers
to kill, the next init container, app containers to start, restarts held back by
CrashLoopBackOff) and carries them out. Everything that is not "start" or "stop" (what the API
status says, when a pod is finished) is the pod workers' and status code's.

Containers carry upstream's labels and annotations (``io.kubernetes.pod.uid``,
``io.kubernetes.container.name``, ``io.kubernetes.container.restartCount``, ...), which is how a
restarted kubelet finds its pods' containers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from k8py.api.resources import ZERO, milli, parse_list
from k8py.api.strategy import qos_class
from k8py.kubelet.envvars import expand, mapping_func_for
from k8py.kubelet.hosts import make_hosts_mount, pod_hostname_and_domain
from k8py.kubelet.pod_workers import grace_period
from k8py.kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    CRIError,
    DNSConfig,
    LinuxResources,
    Mount,
    PodSandboxConfig,
    PodSandboxStatus,
    PortMapping,
    Runtime,
    SandboxState,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
RESTART_COUNT = "io.kubernetes.container.restartCount"
TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
TERMINATION_MESSAGE_POLICY = "io.kubernetes.container.terminationMessagePolicy"
TERMINATION_GRACE = "io.kubernetes.pod.terminationGracePeriod"
CONTAINER_KIND = "io.kubernetes.container.kind"  # "init", "sidecar" or "" (k8py's: which list it came from)

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
MIN_SHARES, MAX_SHARES, SHARES_PER_CPU = 2, 262144, 1024
QUOTA_PERIOD = 100_000
MIN_QUOTA = 1000
TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


class ContainerEnvironment(Protocol):
    """What the kubelet supplies for a container: env, mounts, whether it may start at all."""

    async def __call__(self, pod: Obj, container: Obj, pod_ip: str) -> tuple[list[tuple[str, str]], list[Mount]]:
        """Raise ``CRIError(reason="CreateContainerConfigError")`` when the config cannot be made."""
        ...


class Backoff:
    """client-go's flowcontrol.Backoff: per key, the delay doubles from ``initial`` up to ``maximum``;
    an entry untouched for twice the maximum starts over."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX) -> None:
        self.initial, self.maximum = initial, maximum
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (delay, last update)

    def next(self, key: str, now: float) -> None:
        delay, last = self._entries.get(key, (0.0, 0.0))
        if not delay or now - last > 2 * self.maximum:
            delay = self.initial
        else:
            delay = min(delay * 2, self.maximum)
        self._entries[key] = (delay, now)

    def get(self, key: str) -> float:
        return self._entries.get(key, (0.0, 0.0))[0]

    def is_in_backoff_since(self, key: str, event_time: float, now: float) -> bool:
        delay, _ = self._entries.get(key, (0.0, 0.0))
        return bool(delay) and now - event_time < delay

    def is_in_backoff_since_update(self, key: str, now: float) -> bool:
        """Within the delay of the last ``next`` (the image puller's check)."""
        delay, last = self._entries.get(key, (0.0, 0.0))
        return bool(delay) and now - last < delay

    def gc(self, now: float) -> None:
        for key, (_, last) in list(self._entries.items()):
            if now - last > 2 * self.maximum:
                del self._entries[key]


@dataclass
class PodStatus:
    """The runtime's view of one pod (kubecontainer.PodStatus): newest sandbox and containers first."""

    uid: str
    name: str = ""
    namespace: str = ""
    sandboxes: list[PodSandboxStatus] = field(default_factory=list)
    containers: list[ContainerStatus] = field(default_factory=list)

    def latest(self, name: str) -> ContainerStatus | None:
        for c in self.containers:
            if c.name == name:
                return c
        return None

    def previous(self, name: str) -> ContainerStatus | None:
        seen = False
        for c in self.containers:
            if c.name == name:
                if seen:
                    return c
                seen = True
        return None

    @property
    def ready_sandbox(self) -> PodSandboxStatus | None:
        if self.sandboxes and self.sandboxes[0].state == SandboxState.READY:
            return self.sandboxes[0]
        return None

    @property
    def ips(self) -> list[str]:
        sb = self.ready_sandbox
        return [sb.ip, *sb.additional_ips] if sb and sb.ip else []

    def running(self) -> list[ContainerStatus]:
        return [c for c in self.containers if c.state == ContainerState.RUNNING]


@dataclass
class SyncResult:
    """What a sync could not do, per container: kube's waiting reason and message."""

    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    pod_error: tuple[str, str] | None = None  # e.g. sandbox creation failed


def is_sidecar(container: Obj) -> bool:
    return container.get("restartPolicy") == "Always"


def should_restart(container: Obj, pod: Obj, exit_code: int) -> bool:
    """RestartPolicy for a terminated app (or init) container."""
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if policy == "Always":
        return True
    return policy == "OnFailure" and exit_code != 0


def backoff_key(pod: Obj, container: Obj) -> str:
    md = pod["metadata"]
    return f"{md['namespace']}_{md['name']}_{md.get('uid', '')}_{container['name']}"


def container_resources(pod: Obj, container: Obj, node_memory: int) -> LinuxResources:
    """CPU shares/quota, memory limit and OOM score adjustment as the kubelet derives them."""
    res = container.get("resources") or {}
    requests, limits = parse_list(res.get("requests")), parse_list(res.get("limits"))
    cpu_req = requests.get("cpu") or limits.get("cpu")
    shares = MIN_SHARES
    if cpu_req is not None:
        shares = max(MIN_SHARES, min(MAX_SHARES, milli(cpu_req) * SHARES_PER_CPU // 1000))
    quota = 0
    if "cpu" in limits:
        quota = max(MIN_QUOTA, milli(limits["cpu"]) * QUOTA_PERIOD // 1000)
    memory = int(limits["memory"].value) if "memory" in limits else 0
    qos = qos_class(pod.get("spec") or {})
    if qos == "Guaranteed":
        oom = -997
    elif qos == "BestEffort":
        oom = 1000
    else:
        mem_req = int((requests.get("memory") or limits.get("memory") or ZERO).value)
        oom = 1000 - (1000 * mem_req) // max(node_memory, 1)
        oom = min(max(oom, 2), 999)
    return LinuxResources(
        cpu_period=QUOTA_PERIOD if quota else 0,
        cpu_quota=quota,
        cpu_shares=shares,
        memory_limit_in_bytes=memory,
        oom_score_adj=oom,
    )


@dataclass
class PodActions:
    """computePodActions' answer."""

    kill_pod: bool = False
    create_sandbox: bool = False
    attempt: int = 0
    init_to_start: Obj | None = None  # the next regular init container
    sidecars_to_start: list[Obj] = field(default_factory=list)
    containers_to_start: list[Obj] = field(default_factory=list)
    containers_to_kill: dict[str, tuple[Obj, str]] = field(default_factory=dict)  # id -> (spec, why)
    backoff: dict[str, str] = field(default_factory=dict)  # container name -> CrashLoopBackOff message


class RuntimeManager:
    """kubeGenericRuntimeManager over a k8py Runtime; see the module docstring."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        pods_dir: Path,
        logs_dir: Path,
        environment: ContainerEnvironment,
        node_memory: int,
        cluster_domain: str = "cluster.local",
        dns_config: Callable[[Obj], DNSConfig | None] = lambda pod: None,
        on_container_started: Callable[[Obj, Obj, str], Awaitable[None]] | None = None,
        is_started: Callable[[str, str], bool] = lambda uid, name: True,
        liveness_failed: Callable[[str, str, str], bool] = lambda uid, name, cid: False,
        pre_stop: Callable[[Obj, Obj, str], Awaitable[None]] | None = None,
        event: Callable[[Obj, str, str, str, str], None] = lambda pod, container, type_, reason, message: None,
    ) -> None:
        self.runtime = runtime
        self.pods_dir = pods_dir
        self.logs_dir = logs_dir
        self.environment = environment
        self.node_memory = node_memory
        self.cluster_domain = cluster_domain
        self.dns_config = dns_config
        self.on_container_started = on_container_started
        self.is_started = is_started
        self.liveness_failed = liveness_failed
        self.pre_stop = pre_stop
        self.event = event  # (pod, container name, Normal|Warning, reason, message)
        self.backoff = Backoff()
        self.image_backoff = Backoff()
        self._sandbox_ips: dict[str, tuple[str, list[str]]] = {}

    # -- the runtime's view ---------------------------------------------------------------

    async def get_pod_statuses(self, uid: str | None = None) -> dict[str, PodStatus]:
        """Every pod the runtime knows (or just pod ``uid``), by uid, from k8py's labels."""
        selector = {POD_UID: uid} if uid else None
        sandboxes, containers = await asyncio.gather(
            self.runtime.list_pod_sandboxes(selector), self.runtime.list_containers(labels=selector)
        )
        pods: dict[str, PodStatus] = {}
        if uid is None:
            live = {sb.id for sb in sandboxes}
            for sid in [sid for sid in self._sandbox_ips if sid not in live]:
                del self._sandbox_ips[sid]
        for sb in sandboxes:
            if sb.state == SandboxState.READY and not sb.ip:
                # ListPodSandbox carries no addresses: ask once per sandbox (they never change).
                if sb.id not in self._sandbox_ips:
                    with contextlib.suppress(CRIError):
                        full = await self.runtime.pod_sandbox_status(sb.id)
                        self._sandbox_ips[sb.id] = (full.ip, full.additional_ips)
                sb.ip, sb.additional_ips = self._sandbox_ips.get(sb.id, ("", []))
            ps = pods.setdefault(sb.uid, PodStatus(uid=sb.uid, name=sb.name, namespace=sb.namespace))
            ps.sandboxes.append(sb)
        for c in containers:
            uid = c.labels.get(POD_UID)
            if uid:
                pods.setdefault(uid, PodStatus(uid=uid)).containers.append(c)
        for ps in pods.values():
            ps.sandboxes.sort(key=lambda s: s.created_at, reverse=True)
            ps.containers.sort(key=lambda c: c.created_at, reverse=True)
        return pods

    async def get_pod_status(self, uid: str) -> PodStatus:
        """One pod's full view: its containers' exit codes, times and reasons included."""
        status = (await self.get_pod_statuses(uid)).get(uid) or PodStatus(uid=uid)
        full = await asyncio.gather(*(self._full_status(c) for c in status.containers))
        status.containers = [c for c in full if c is not None]
        return status

    async def _full_status(self, c: ContainerStatus) -> ContainerStatus | None:
        if c.state == ContainerState.RUNNING and c.started_at:
            return c
        try:
            return await self.runtime.container_status(c.id)
        except CRIError:  # removed meanwhile
            return None

    # -- actions --------------------------------------------------------------------------

    def compute_pod_actions(self, pod: Obj, status: PodStatus) -> PodActions:
        spec = pod.get("spec") or {}
        uid = pod["metadata"]["uid"]
        restart_policy = spec.get("restartPolicy", "Always")
        actions = PodActions()
        sandbox = status.ready_sandbox
        now = time.time()
        if sandbox is None:
            if restart_policy == "Never" and status.containers and status.sandboxes:
                # The sandbox died after containers ran: a Never pod is over (the kubelet reports it).
                actions.kill_pod = True
                return actions
            actions.create_sandbox = True
            actions.kill_pod = bool(status.running())
            actions.attempt = status.sandboxes[0].attempt + 1 if status.sandboxes else 0
            if self._init_actions(pod, PodStatus(uid=uid), actions, now):
                actions.containers_to_start = list(spec.get("containers") or [])
            return actions
        initialized = self._init_actions(pod, status, actions, now)
        if actions.kill_pod or not initialized:
            return actions
        for c in spec.get("containers") or []:
            self._container_action(pod, c, status, actions, now, policy_restart=True)
        return actions

    def _init_actions(self, pod: Obj, status: PodStatus, actions: PodActions, now: float) -> bool:
        """Init containers in order (sidecars keep running); True once all regular ones succeeded."""
        spec = pod.get("spec") or {}
        for c in spec.get("initContainers") or []:
            cs = status.latest(c["name"])
            if is_sidecar(c):
                if cs is None or cs.state == ContainerState.EXITED:
                    if cs is None or self._may_restart(pod, c, cs, actions, now):
                        actions.sidecars_to_start.append(c)
                    return False
                if cs.state == ContainerState.RUNNING and self.liveness_failed(
                    pod["metadata"]["uid"], c["name"], cs.id
                ):
                    actions.containers_to_kill[cs.id] = (c, f"Container {c['name']} failed liveness probe")
                    return False
                if not self.is_started(pod["metadata"]["uid"], c["name"]):
                    return False
                continue
            if cs is None or cs.state == ContainerState.CREATED:
                actions.init_to_start = c
                return False
            if cs.state == ContainerState.RUNNING:
                return False
            if cs.exit_code == 0:
                continue
            # A failed init container: restart it unless the pod never restarts.
            if spec.get("restartPolicy", "Always") == "Never":
                actions.kill_pod = True
                return False
            if self._may_restart(pod, c, cs, actions, now):
                actions.init_to_start = c
            return False
        return True

    def _container_action(
        self, pod: Obj, c: Obj, status: PodStatus, actions: PodActions, now: float, *, policy_restart: bool
    ) -> None:
        cs = status.latest(c["name"])
        uid = pod["metadata"]["uid"]
        if cs is None or cs.state == ContainerState.CREATED:
            actions.containers_to_start.append(c)
            return
        if cs.state == ContainerState.RUNNING:
            if self.liveness_failed(uid, c["name"], cs.id):
                actions.containers_to_kill[cs.id] = (
                    c,
                    f"Container {c['name']} failed liveness probe, will be restarted",
                )
                if (pod.get("spec") or {}).get("restartPolicy", "Always") != "Never":
                    actions.containers_to_start.append(c)
            return
        if cs.state == ContainerState.EXITED and should_restart(c, pod, cs.exit_code):
            if self._may_restart(pod, c, cs, actions, now):
                actions.containers_to_start.append(c)

    def _may_restart(self, pod: Obj, c: Obj, cs: ContainerStatus, actions: PodActions, now: float) -> bool:
        """doBackOff: False (and a CrashLoopBackOff note) while the container's back-off runs."""
        key = backoff_key(pod, c)
        finished = cs.finished_at / 1e9 if cs.finished_at else now
        if self.backoff.is_in_backoff_since(key, finished, now):
            delay = self.backoff.get(key)
            md = pod["metadata"]
            actions.backoff[c["name"]] = (
                f"back-off {_go_duration(delay)} restarting failed container={c['name']} "
                f"pod={md['name']}_{md['namespace']}({md['uid']})"
            )
            return False
        self.backoff.next(key, now)
        return True

    def next_backoff_expiry(self, pod: Obj, status: PodStatus) -> float | None:
        """Seconds until the earliest back-off of this pod's containers ends (when to sync again)."""
        best = None
        now = time.time()
        spec = pod.get("spec") or {}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            cs = status.latest(c["name"])
            if cs is None or cs.state != ContainerState.EXITED:
                continue
            delay = self.backoff.get(backoff_key(pod, c))
            left = cs.finished_at / 1e9 + delay - now
            if delay and left > 0 and (best is None or left < best):
                best = left
        return best

    # -- carrying them out ----------------------------------------------------------------

    async def sync_pod(self, pod: Obj, status: PodStatus) -> SyncResult:
        result = SyncResult()
        actions = self.compute_pod_actions(pod, status)
        for name, message in actions.backoff.items():
            result.waiting[name] = ("CrashLoopBackOff", message)
        if actions.kill_pod:
            await self.kill_pod(pod, status, grace=grace_period(pod))
            if not actions.create_sandbox:
                return result
        for cid, (c, why) in actions.containers_to_kill.items():
            log.info("killing container %s of %s: %s", c["name"], _pod_name(pod), why)
            self.event(pod, c["name"], "Normal", "Killing", why)
            await self._kill_container(pod, c, cid, grace_period(pod))
        sandbox_config = self.sandbox_config(pod, actions.attempt if actions.create_sandbox else 0)
        if actions.create_sandbox:
            for old in status.sandboxes:
                with contextlib.suppress(CRIError):
                    await self.runtime.remove_pod_sandbox(old.id)
            try:
                sandbox_id = await self.runtime.run_pod_sandbox(sandbox_config)
            except CRIError as e:
                result.pod_error = ("FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
                return result
            status = PodStatus(uid=status.uid, name=status.name, namespace=status.namespace)
            status.sandboxes = [await self.runtime.pod_sandbox_status(sandbox_id)]
        else:
            sb = status.ready_sandbox
            assert sb is not None
            sandbox_id = sb.id
            sandbox_config = self.sandbox_config(pod, sb.attempt)
        pod_ip = status.ips[0] if status.ips else ""
        for c in actions.sidecars_to_start:
            if not await self._start(pod, c, "sidecar", status, sandbox_id, sandbox_config, pod_ip, result):
                return result
        if actions.init_to_start is not None:
            await self._start(pod, actions.init_to_start, "init", status, sandbox_id, sandbox_config, pod_ip, result)
            return result
        await asyncio.gather(
            *(
                self._start(pod, c, "", status, sandbox_id, sandbox_config, pod_ip, result)
                for c in actions.containers_to_start
            )
        )
        return result

    async def _start(
        self,
        pod: Obj,
        c: Obj,
        kind: str,
        status: PodStatus,
        sandbox_id: str,
        sandbox_config: PodSandboxConfig,
        pod_ip: str,
        result: SyncResult,
    ) -> bool:
        """startContainer: image, config, create, start, postStart. False (and why) on failure."""
        name = c["name"]
        try:
            image_ref = await self._ensure_image(pod, c)
        except CRIError as e:
            result.waiting[name] = (e.reason or "ErrImagePull", str(e))
            return False
        previous = status.latest(name)
        restart_count = 0
        if previous is not None:
            restart_count = int(previous.annotations.get(RESTART_COUNT, "0")) + 1
        try:
            envs, mounts = await self.environment(pod, c, pod_ip)
            mounts = [*mounts, *self._hosts_mount(pod, c, status.ips)]
        except CRIError as e:
            result.waiting[name] = (e.reason or "CreateContainerConfigError", str(e))
            return False
        mounts = [*mounts, *self._termination_message_mount(pod, c, restart_count)]
        config = self.container_config(pod, c, kind, restart_count, image_ref, envs, mounts)
        try:
            cid = await self.runtime.create_container(sandbox_id, config, sandbox_config)
        except CRIError as e:
            result.waiting[name] = (e.reason or "CreateContainerError", str(e))
            return False
        if previous is not None and previous.state == ContainerState.EXITED:
            # Keep one previous instance (for `logs --previous`), as the kubelet's container GC does.
            older = status.previous(name)
            if older is not None:
                with contextlib.suppress(CRIError):
                    await self.runtime.remove_container(older.id)
        self.event(pod, name, "Normal", "Created", f"Created container {name}")
        try:
            await self.runtime.start_container(cid)
        except CRIError as e:
            result.waiting[name] = (e.reason or "RunContainerError", str(e))
            return False
        self.event(pod, name, "Normal", "Started", f"Started container {name}")
        if self.on_container_started is not None:
            await self.on_container_started(pod, c, cid)
        return True

    async def _ensure_image(self, pod: Obj, c: Obj) -> str:
        image = c.get("image", "")
        policy = c.get("imagePullPolicy") or ("Always" if _latest(image) else "IfNotPresent")
        if policy != "Always":
            present = await self.runtime.image_status(image)
            if present is not None:
                if self.runtime.name == "cri":
                    self.event(pod, c["name"], "Normal", "Pulled", f'Container image "{image}" already present on machine')
                return present.id
            if policy == "Never":
                raise CRIError(
                    f'Container image "{image}" is not present with pull policy of Never',
                    reason="ErrImageNeverPull",
                )
        key = f"image:{image}"
        now = time.time()
        if self.image_backoff.is_in_backoff_since_update(key, now):
            raise CRIError(f'Back-off pulling image "{image}"', reason="ImagePullBackOff")
        self.event(pod, c["name"], "Normal", "Pulling", f'Pulling image "{image}"')
        try:
            return await self.runtime.pull_image(image)
        except CRIError as e:
            self.image_backoff.next(key, now)
            raise CRIError(f'Failed to pull image "{image}": {e}', reason="ErrImagePull") from e

    def _hosts_mount(self, pod: Obj, c: Obj, pod_ips: list[str]) -> list[Mount]:
        """The pod's managed /etc/hosts (hosts.py), for the cri runtime only: the process runtime has
        no mount namespace (its pods see the node's /etc/hosts) and the simulated one no containers."""
        if self.runtime.name != "cri":
            return []
        pod_dir = self.pods_dir / pod["metadata"]["uid"]
        try:
            return make_hosts_mount(pod_dir, pod, c, pod_ips, self.cluster_domain)
        except OSError as e:
            raise CRIError(f"failed to write the pod's hosts file: {e}", reason="CreateContainerConfigError") from e

    def _termination_message_mount(self, pod: Obj, c: Obj, attempt: int) -> list[Mount]:
        if self.runtime.name == "process":
            return []  # host processes cannot have a file mounted at the path
        path = c.get("terminationMessagePath") or "/dev/termination-log"
        host = self.pods_dir / pod["metadata"]["uid"] / "containers" / c["name"] / f"termination-{attempt}"
        host.parent.mkdir(parents=True, exist_ok=True)
        host.touch()
        return [Mount(container_path=path, host_path=str(host))]

    def termination_message(self, pod: Obj, c: Obj, cs: ContainerStatus) -> str:
        """The container's termination message: its file, or (FallbackToLogsOnError) its log's tail."""
        attempt = int(cs.annotations.get(RESTART_COUNT, "0"))
        host = self.pods_dir / pod["metadata"]["uid"] / "containers" / c["name"] / f"termination-{attempt}"
        with contextlib.suppress(OSError):
            msg = host.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
            if msg:
                return msg
        if c.get("terminationMessagePolicy") == "FallbackToLogsOnError" and cs.exit_code != 0 and cs.log_path:
            return tail_log(cs.log_path, FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES)
        return cs.message

    def sandbox_config(self, pod: Obj, attempt: int) -> PodSandboxConfig:
        md, spec = pod["metadata"], pod.get("spec") or {}
        ports = [
            PortMapping(
                container_port=p["containerPort"],
                host_port=p.get("hostPort", 0),
                protocol=p.get("protocol", "TCP"),
                host_ip=p.get("hostIP", ""),
            )
            for c in spec.get("containers") or []
            for p in c.get("ports") or []
            if p.get("hostPort")
        ]
        hostname, _ = pod_hostname_and_domain(pod, self.cluster_domain)
        return PodSandboxConfig(
            name=md["name"],
            namespace=md["namespace"],
            uid=md["uid"],
            attempt=attempt,
            hostname=hostname,
            log_directory=str(self.logs_dir / f"{md['namespace']}_{md['name']}_{md['uid']}"),
            dns_config=self.dns_config(pod),
            port_mappings=ports,
            labels={**(md.get("labels") or {}), POD_NAME: md["name"], POD_NAMESPACE: md["namespace"], POD_UID: md["uid"]},
            annotations=dict(md.get("annotations") or {}),
            cgroup_parent="",
            host_network=bool(spec.get("hostNetwork")),
            host_pid=bool(spec.get("hostPID")),
            host_ipc=bool(spec.get("hostIPC")),
            runtime_handler="",
            privileged=any(((c.get("securityContext") or {}).get("privileged")) for c in all_containers(pod)),
        )

    def container_config(
        self,
        pod: Obj,
        c: Obj,
        kind: str,
        restart_count: int,
        image_ref: str,
        envs: list[tuple[str, str]],
        mounts: list[Mount],
    ) -> ContainerConfig:
        md = pod["metadata"]
        sc = {**((pod.get("spec") or {}).get("securityContext") or {}), **(c.get("securityContext") or {})}
        mapping = mapping_func_for(dict(envs))  # $(VAR) in command and args (ExpandContainerCommandAndArgs)
        return ContainerConfig(
            name=c["name"],
            image=c.get("image", "") if self.runtime.name != "cri" else image_ref or c.get("image", ""),
            attempt=restart_count,
            command=[expand(part, mapping) for part in c.get("command") or []],
            args=[expand(part, mapping) for part in c.get("args") or []],
            working_dir=c.get("workingDir", ""),
            envs=envs,
            mounts=mounts,
            log_path=f"{c['name']}/{restart_count}.log",
            stdin=bool(c.get("stdin")),
            stdin_once=bool(c.get("stdinOnce")),
            tty=bool(c.get("tty")),
            labels={POD_NAME: md["name"], POD_NAMESPACE: md["namespace"], POD_UID: md["uid"], CONTAINER_NAME: c["name"]},
            annotations={
                RESTART_COUNT: str(restart_count),
                TERMINATION_MESSAGE_PATH: c.get("terminationMessagePath") or "/dev/termination-log",
                TERMINATION_MESSAGE_POLICY: c.get("terminationMessagePolicy") or "File",
                TERMINATION_GRACE: str(grace_period(pod)),
                CONTAINER_KIND: kind,
            },
            resources=container_resources(pod, c, self.node_memory),
            run_as_user=sc.get("runAsUser"),
            privileged=bool(sc.get("privileged")),
        )

    # -- stopping -------------------------------------------------------------------------

    async def kill_pod(self, pod: Obj | None, status: PodStatus, *, grace: int) -> None:
        """killPodWithSyncResult: app containers, then sidecars in reverse order, then the sandbox."""
        containers = {c["name"]: c for c in all_containers(pod)} if pod else {}
        running = status.running()
        sidecar_names = {
            c["name"] for c in ((pod or {}).get("spec") or {}).get("initContainers") or [] if is_sidecar(c)
        }
        apps = [cs for cs in running if cs.name not in sidecar_names]
        sidecars = [cs for cs in running if cs.name in sidecar_names]
        await asyncio.gather(
            *(self._kill_container(pod, containers.get(cs.name), cs.id, grace) for cs in apps)
        )
        for cs in sidecars:
            await self._kill_container(pod, containers.get(cs.name), cs.id, grace)
        for sb in status.sandboxes:
            if sb.state == SandboxState.READY:
                with contextlib.suppress(CRIError):
                    await self.runtime.stop_pod_sandbox(sb.id)

    async def _kill_container(self, pod: Obj | None, c: Obj | None, cid: str, grace: int) -> None:
        """preStop (within the grace period), then stop with what is left of it."""
        start = time.monotonic()
        pre_stop = ((c or {}).get("lifecycle") or {}).get("preStop")
        if pre_stop and pod is not None and self.pre_stop is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.pre_stop(pod, c or {}, cid), timeout=max(grace, 1))
        left = max(0, grace - int(time.monotonic() - start))
        if grace > 0:
            left = max(left, 2)  # kube's minimumGracePeriodInSeconds
        with contextlib.suppress(CRIError):
            await self.runtime.stop_container(cid, left)

    async def remove_pod(self, status: PodStatus) -> None:
        """Remove every container and sandbox of a pod that is gone."""
        for c in status.containers:
            with contextlib.suppress(CRIError):
                await self.runtime.remove_container(c.id)
        for sb in status.sandboxes:
            with contextlib.suppress(CRIError):
                await self.runtime.remove_pod_sandbox(sb.id)


def all_containers(pod: Obj | None) -> list[Obj]:
    """Init containers, then app containers."""
    spec = (pod or {}).get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _pod_name(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def _latest(image: str) -> bool:
    if "@" in image:
        return False
    last = image.rsplit("/", 1)[-1]
    return ":" not in last or last.endswith(":latest")


def _go_duration(seconds: float) -> str:
    s = int(seconds)
    m, s = divmod(s, 60)
    return f"{m}m{s}s" if m else f"{s}s"


def tail_log(path: str, lines: int, limit: int) -> str:
    """The last ``lines`` lines (at most ``limit`` bytes) of a CRI log file, prefixes stripped."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            raw = f.read()
    except OSError:
        return ""
    out = []
    for line in raw.splitlines()[-lines:]:
        parts = line.split(b" ", 3)
        if len(parts) == 4:
            out.append(parts[3] + (b"\n" if parts[2] == b"F" else b""))
    return b"".join(out)[-limit:].decode(errors="replace")
