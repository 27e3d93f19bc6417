"""The ``cri`` runtime: CRI v1 over gRPC (grpc.aio) to containerd, runc underneath.

Each verb of the Runtime protocol (interface.py) is one CRI call, with the dataclasses mapped to
and from the protobuf messages of api.proto the way upstream's ``kuberuntime`` manager fills them
(namespace options from hostNetwork/hostPID/hostIPC, given to the sandbox *and* to every container:
without its own options a container may land in the pod's PID namespace).

Streaming: CRI answers Exec/Attach/PortForward with the URL of the runtime's streaming server,
which speaks SPDY/WebSocket itself. k8py's kubelet wants byte streams instead, so:

- ``port_forward`` does not use the URL: it connects to the port from inside the sandbox's network
  namespace (its path from the verbose PodSandboxStatus), in a short-lived thread that setns()es
  into it, creates and connects the socket, and goes back. The socket stays in the pod's netns.
- ``exec``/``attach`` do use the URL: they connect to containerd's streaming server as client-go
  does (SPDY/3.1, remotecommand protocol v4; ``remotecommand.py``) and hand its streams over.

Errors: NOT_FOUND becomes ``NotFound``; every other failure ``CRIError`` with the runtime's message.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
import orjson
from google.protobuf.message import Message

from k8py.kubelet.runtime.cri import api_pb2 as pb
from k8py.kubelet.runtime.cri import api_pb2_grpc as pb_grpc
from k8py.kubelet.runtime.cri import remotecommand
from k8py.kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    CRIError,
    ExecSession,
    Image,
    NotFound,
    PodSandboxConfig,
    PodSandboxStatus,
    SandboxState,
)
from k8py.streaming.spdy import SpdyProtocolError

CRI_API_VERSION = "v1"
CLONE_NEWNET = 0x40000000
MAX_MESSAGE = 16 * 1024 * 1024 + 4096  # ExecSync output is capped at 16 MiB per stream
_PROTOCOLS = {"TCP": pb.TCP, "UDP": pb.UDP, "SCTP": pb.SCTP}

R = TypeVar("R", bound=Message)


def namespace_options(config: PodSandboxConfig) -> pb.NamespaceOption:
    """Upstream's namespacesForPod: NODE for host namespaces, else POD (network, IPC), CONTAINER (PID)."""
    return pb.NamespaceOption(
        network=pb.NODE if config.host_network else pb.POD,
        pid=pb.NODE if config.host_pid else pb.CONTAINER,
        ipc=pb.NODE if config.host_ipc else pb.POD,
    )


def sandbox_config_to_pb(config: PodSandboxConfig) -> pb.PodSandboxConfig:
    msg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(
            name=config.name, uid=config.uid, namespace=config.namespace, attempt=config.attempt
        ),
        # As upstream's kubelet: a host-network pod has the node's UTS namespace, so no hostname.
        hostname="" if config.host_network else config.hostname,
        log_directory=config.log_directory,
        port_mappings=[
            pb.PortMapping(
                protocol=_PROTOCOLS.get(p.protocol.upper(), pb.TCP),
                container_port=p.container_port,
                host_port=p.host_port,
                host_ip=p.host_ip,
            )
            for p in config.port_mappings
        ],
        labels=config.labels,
        annotations=config.annotations,
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=config.cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=namespace_options(config), privileged=config.privileged
            ),
        ),
    )
    if config.dns_config is not None:
        msg.dns_config.CopyFrom(
            pb.DNSConfig(
                servers=config.dns_config.servers,
                searches=config.dns_config.searches,
                options=config.dns_config.options,
            )
        )
    return msg


def container_config_to_pb(config: ContainerConfig, sandbox: PodSandboxConfig) -> pb.ContainerConfig:
    r = config.resources
    security = pb.LinuxContainerSecurityContext(
        privileged=config.privileged, namespace_options=namespace_options(sandbox)
    )
    if config.run_as_user is not None:
        security.run_as_user.value = config.run_as_user
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=config.name, attempt=config.attempt),
        image=pb.ImageSpec(image=config.image),
        command=config.command,
        args=config.args,
        working_dir=config.working_dir,
        envs=[pb.KeyValue(key=k, value=v) for k, v in config.envs],
        mounts=[
            pb.Mount(container_path=m.container_path, host_path=m.host_path, readonly=m.readonly)
            for m in config.mounts
        ],
        labels=config.labels,
        annotations=config.annotations,
        log_path=config.log_path,
        stdin=config.stdin,
        stdin_once=config.stdin_once,
        tty=config.tty,
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(
                cpu_period=r.cpu_period,
                cpu_quota=r.cpu_quota,
                cpu_shares=r.cpu_shares,
                memory_limit_in_bytes=r.memory_limit_in_bytes,
                oom_score_adj=r.oom_score_adj,
            ),
            security_context=security,
        ),
    )


def sandbox_status_from_pb(s: pb.PodSandboxStatus | pb.PodSandbox) -> PodSandboxStatus:
    status = PodSandboxStatus(
        id=s.id,
        name=s.metadata.name,
        namespace=s.metadata.namespace,
        uid=s.metadata.uid,
        attempt=s.metadata.attempt,
        state=SandboxState(s.state),
        created_at=s.created_at,
        labels=dict(s.labels),
        annotations=dict(s.annotations),
        runtime_handler=s.runtime_handler,
    )
    if isinstance(s, pb.PodSandboxStatus):
        status.ip = s.network.ip
        status.additional_ips = [ip.ip for ip in s.network.additional_ips]
    return status


def container_status_from_pb(s: pb.ContainerStatus, sandbox_id: str) -> ContainerStatus:
    return ContainerStatus(
        id=s.id,
        sandbox_id=sandbox_id,
        name=s.metadata.name,
        attempt=s.metadata.attempt,
        state=ContainerState(s.state),
        created_at=s.created_at,
        image=s.image.image,
        image_ref=s.image_ref,
        started_at=s.started_at,
        finished_at=s.finished_at,
        exit_code=s.exit_code,
        reason=s.reason,
        message=s.message,
        log_path=s.log_path,
        labels=dict(s.labels),
        annotations=dict(s.annotations),
    )


def image_from_pb(i: pb.Image) -> Image:
    return Image(id=i.id, repo_tags=list(i.repo_tags), repo_digests=list(i.repo_digests), size=i.size)


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def connect_in_netns(netns_path: str, port: int, timeout: float) -> socket.socket:
    """Connect to ``127.0.0.1:port`` inside the network namespace at ``netns_path``.

    setns() moves the calling *thread*, so call this only in a thread of its own that ends
    afterwards (``run_in_new_thread``): if switching back ever failed, no pooled thread is left in
    the pod's namespace. A socket stays in the namespace it was created in, wherever it is used.
    """
    with open("/proc/thread-self/ns/net", "rb") as own, open(netns_path, "rb") as target:
        _setns(target.fileno())
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(own.fileno())
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def run_in_new_thread(fn: Callable[..., socket.socket], *args: Any) -> socket.socket:
    """Run ``fn`` in a fresh thread; a socket it returns after the caller gave up is closed."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[socket.socket] = loop.create_future()

    def succeed(sock: socket.socket) -> None:
        if future.cancelled():
            sock.close()
        else:
            future.set_result(sock)

    def fail(error: BaseException) -> None:
        if not future.cancelled():
            future.set_exception(error)

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as e:  # handed to the awaiting task
            loop.call_soon_threadsafe(fail, e)
        else:
            loop.call_soon_threadsafe(succeed, result)

    threading.Thread(target=run, name="cri-netns", daemon=True).start()
    return await future


class CRIRuntime:
    """Runtime (RuntimeService + ImageService) over containerd's CRI socket."""

    name = "cri"

    def __init__(self, address: str, *, request_timeout: float = 120.0) -> None:
        self.address = address
        self.request_timeout = request_timeout  # upstream's --runtime-request-timeout default (2m)
        self._channel: grpc.aio.Channel | None = None
        self._runtime: pb_grpc.RuntimeServiceStub | None = None
        self._images: pb_grpc.ImageServiceStub | None = None

    async def start(self, timeout: float = 30.0) -> None:
        """Open the channel and wait until the runtime reports RuntimeReady."""
        self._channel = grpc.aio.insecure_channel(
            f"unix://{self.address}",
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
        )
        self._runtime = pb_grpc.RuntimeServiceStub(self._channel)
        self._images = pb_grpc.ImageServiceStub(self._channel)
        deadline = time.monotonic() + timeout
        while True:
            try:
                conditions = await self.status()
                if conditions.get("RuntimeReady", (False, "", ""))[0]:
                    return
                last = f"RuntimeReady is false: {conditions.get('RuntimeReady')}"
            except CRIError as e:  # containerd still starting: UNAVAILABLE, "not initialized yet"
                last = str(e)
            if time.monotonic() > deadline:
                await self.stop()
                raise CRIError(f"container runtime at {self.address} not ready after {timeout}s: {last}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._runtime = self._images = None

    @property
    def rs(self) -> pb_grpc.RuntimeServiceStub:
        if self._runtime is None:
            raise CRIError("CRI runtime not started")
        return self._runtime

    @property
    def ims(self) -> pb_grpc.ImageServiceStub:
        if self._images is None:
            raise CRIError("CRI runtime not started")
        return self._images

    async def _call(
        self, method: Callable[..., Awaitable[R]], request: Message, timeout: float | None = None, reason: str = ""
    ) -> R:
        try:
            return await method(request, timeout=timeout or self.request_timeout)
        except grpc.aio.AioRpcError as e:
            name = type(request).__name__.removesuffix("Request")
            message = f"{name}: {e.details() or e.code().name}"
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(message, reason=reason) from None
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise CRIError(message, reason=reason or "DeadlineExceeded") from None
            raise CRIError(message, reason=reason) from None

    # ---- runtime ----

    async def version(self) -> tuple[str, str]:
        resp = await self._call(self.rs.Version, pb.VersionRequest(version=CRI_API_VERSION))
        return resp.runtime_name, resp.runtime_version

    async def status(self) -> dict[str, tuple[bool, str, str]]:
        """The runtime's conditions (RuntimeReady, NetworkReady): type -> (status, reason, message)."""
        resp = await self._call(self.rs.Status, pb.StatusRequest(), timeout=10.0)
        return {c.type: (c.status, c.reason, c.message) for c in resp.status.conditions}

    async def update_runtime_config(self, pod_cidr: str) -> None:
        """Tell the runtime the node's pod CIDR (containerd uses it only with a CNI conf template)."""
        request = pb.UpdateRuntimeConfigRequest(
            runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=pod_cidr))
        )
        await self._call(self.rs.UpdateRuntimeConfig, request)

    # ---- sandboxes ----

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        request = pb.RunPodSandboxRequest(config=sandbox_config_to_pb(config), runtime_handler=config.runtime_handler)
        return (await self._call(self.rs.RunPodSandbox, request)).pod_sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        await self._call(self.rs.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        await self._call(self.rs.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))

    async def _sandbox_status(self, sandbox_id: str, verbose: bool) -> pb.PodSandboxStatusResponse:
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        return await self._call(self.rs.PodSandboxStatus, request)

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        return sandbox_status_from_pb((await self._sandbox_status(sandbox_id, False)).status)

    async def list_pod_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[PodSandboxStatus]:
        """All sandboxes; as with ListPodSandbox, ``ip`` is only filled by ``pod_sandbox_status``."""
        request = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector=dict(labels or {})))
        resp = await self._call(self.rs.ListPodSandbox, request)
        return [sandbox_status_from_pb(s) for s in resp.items]

    async def sandbox_netns(self, sandbox_id: str) -> str:
        """Path of the sandbox's network namespace, from containerd's verbose status info."""
        resp = await self._sandbox_status(sandbox_id, True)
        info: dict[str, Any] = orjson.loads(resp.info.get("info", "{}"))
        for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network" and ns.get("path"):
                return str(ns["path"])
        if info.get("pid"):
            return f"/proc/{info['pid']}/ns/net"
        raise CRIError(f"sandbox {sandbox_id} has no network namespace (state {resp.status.state})")

    # ---- containers ----

    async def create_container(
        self, sandbox_id: str, config: ContainerConfig, sandbox_config: PodSandboxConfig
    ) -> str:
        request = pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id,
            config=container_config_to_pb(config, sandbox_config),
            sandbox_config=sandbox_config_to_pb(sandbox_config),
        )
        return (await self._call(self.rs.CreateContainer, request, reason="CreateContainerError")).container_id

    async def start_container(self, container_id: str) -> None:
        request = pb.StartContainerRequest(container_id=container_id)
        await self._call(self.rs.StartContainer, request, reason="RunContainerError")

    async def stop_container(self, container_id: str, timeout: int) -> None:
        request = pb.StopContainerRequest(container_id=container_id, timeout=timeout)
        await self._call(self.rs.StopContainer, request, timeout=self.request_timeout + timeout)

    async def remove_container(self, container_id: str) -> None:
        await self._call(self.rs.RemoveContainer, pb.RemoveContainerRequest(container_id=container_id))

    async def _container_status(self, container_id: str, sandbox_id: str = "") -> ContainerStatus:
        resp = await self._call(self.rs.ContainerStatus, pb.ContainerStatusRequest(container_id=container_id))
        if not sandbox_id:  # ContainerStatus does not name the sandbox; the list does
            listed = await self._call(
                self.rs.ListContainers,
                pb.ListContainersRequest(filter=pb.ContainerFilter(id=container_id)),
            )
            sandbox_id = listed.containers[0].pod_sandbox_id if listed.containers else ""
        return container_status_from_pb(resp.status, sandbox_id)

    async def container_status(self, container_id: str) -> ContainerStatus:
        return await self._container_status(container_id)

    async def list_containers(
        self, sandbox_id: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[ContainerStatus]:
        """ListContainers alone: states, labels and annotations, without exit codes, times or reasons
        (``container_status`` has those), so that the kubelet's relist costs one call."""
        request = pb.ListContainersRequest(
            filter=pb.ContainerFilter(pod_sandbox_id=sandbox_id or "", label_selector=dict(labels or {}))
        )
        listed = (await self._call(self.rs.ListContainers, request)).containers
        return [
            ContainerStatus(
                id=c.id, sandbox_id=c.pod_sandbox_id, name=c.metadata.name, attempt=c.metadata.attempt,
                state=ContainerState(c.state), created_at=c.created_at, image=c.image.image, image_ref=c.image_ref,
                labels=dict(c.labels), annotations=dict(c.annotations),
            )
            for c in listed
        ]

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[bytes, bytes, int]:
        request = pb.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=math.ceil(timeout))
        deadline = self.request_timeout + timeout if timeout else None
        try:
            resp = await self.rs.ExecSync(request, timeout=deadline)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"ExecSync: {e.details()}") from None
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED or "timeout" in (e.details() or ""):
                raise CRIError(f"command {cmd} timed out after {timeout}s", reason="DeadlineExceeded") from None
            raise CRIError(f"ExecSync: {e.details()}") from None
        return resp.stdout, resp.stderr, resp.exit_code

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        request = pb.ExecRequest(container_id=container_id, cmd=cmd, tty=tty, stdin=stdin, stdout=True, stderr=not tty)
        return await self._stream((await self._call(self.rs.Exec, request)).url, stdin=stdin, tty=tty)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ExecSession:
        """stdin reaches the container only if it was created with ``stdin``; ``tty`` must match its
        config (as upstream's kubelet takes it from the container spec)."""
        request = pb.AttachRequest(container_id=container_id, stdin=stdin, tty=tty, stdout=True, stderr=not tty)
        return await self._stream((await self._call(self.rs.Attach, request)).url, stdin=stdin, tty=tty)

    async def _stream(self, url: str, *, stdin: bool, tty: bool) -> ExecSession:
        try:
            return await remotecommand.connect(url, stdin=stdin, tty=tty)
        except (ConnectionError, OSError, TimeoutError, SpdyProtocolError) as e:
            raise CRIError(f"connecting to the runtime's streaming server: {e}") from None

    async def port_forward(self, sandbox_id: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        netns = await self.sandbox_netns(sandbox_id)
        try:
            sock = await run_in_new_thread(connect_in_netns, netns, port, 10.0)
        except OSError as e:
            raise CRIError(f"port-forward to port {port} of sandbox {sandbox_id}: {e}") from None
        return await asyncio.open_connection(sock=sock)

    async def list_container_stats(self) -> list[ContainerStats]:
        stats, listed = await asyncio.gather(
            self._call(self.rs.ListContainerStats, pb.ListContainerStatsRequest()),
            self._call(self.rs.ListContainers, pb.ListContainersRequest()),
        )
        sandboxes = {c.id: c.pod_sandbox_id for c in listed.containers}
        return [
            ContainerStats(
                id=s.attributes.id,
                sandbox_id=sandboxes.get(s.attributes.id, ""),
                name=s.attributes.metadata.name,
                timestamp=s.cpu.timestamp or s.memory.timestamp or time.time_ns(),
                cpu_usage_core_nanoseconds=s.cpu.usage_core_nano_seconds.value,
                memory_working_set_bytes=s.memory.working_set_bytes.value,
            )
            for s in stats.stats
        ]

    # ---- images ----

    async def pull_image(self, image: str) -> str:
        """The image's id if present (offline-first: no registry contact), else CRI PullImage."""
        present = await self.image_status(image)
        if present is not None:
            return present.id
        request = pb.PullImageRequest(image=pb.ImageSpec(image=image))
        try:
            return (await self._call(self.ims.PullImage, request, reason="ErrImagePull")).image_ref
        except CRIError as e:
            raise CRIError(f"failed to pull image {image!r}: {e}", reason="ErrImagePull") from None

    async def image_status(self, image: str) -> Image | None:
        resp = await self._call(self.ims.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image=image)))
        return image_from_pb(resp.image) if resp.HasField("image") else None

    async def list_images(self) -> list[Image]:
        resp = await self._call(self.ims.ListImages, pb.ListImagesRequest())
        return [image_from_pb(i) for i in resp.images]

    async def remove_image(self, image: str) -> None:
        await self._call(self.ims.RemoveImage, pb.RemoveImageRequest(image=pb.ImageSpec(image=image)))

