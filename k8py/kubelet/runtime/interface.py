"""The kubelet's container runtime contract: CRI v1 in Python shapes.

Upstream's kubelet talks to every runtime through CRI (RuntimeService + ImageService); its
``kuberuntime`` manager turns pod specs into sandbox and container calls. k8py keeps that split:
the pod workers (``k8py.kubelet.kuberuntime``) hold all of the kubelet's logic (init containers,
restarts, back-off, hooks, status) once, over this interface, and each runtime only implements
the CRI-shaped verbs:

- ``cri``: containerd over CRI gRPC (runc underneath),
- ``process``: each container a host process, for nodes without root or containerd and for
  the control plane's static pods,
- ``simulated``: no processes at all, kwok-style, for scale tests.

Streaming (exec, attach, port-forward) is not CRI's "return a URL" dance: each runtime hands
back byte streams (``ExecSession``, ``PortForwardStream``) and the kubelet server speaks the
client protocols (WebSocket channels, SPDY) itself.

Times are nanoseconds since the epoch, as in CRI.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class ContainerState(enum.IntEnum):
    """CRI's ContainerState (values are the protobuf enum's)."""

    CREATED = 0
    RUNNING = 1
    EXITED = 2
    UNKNOWN = 3


class SandboxState(enum.IntEnum):
    """CRI's PodSandboxState."""

    READY = 0
    NOTREADY = 1


@dataclass(slots=True)
class PortMapping:
    container_port: int
    host_port: int = 0
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass(slots=True)
class DNSConfig:
    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PodSandboxConfig:
    """What RunPodSandbox needs (CRI PodSandboxConfig, the parts k8py uses)."""

    name: str
    namespace: str
    uid: str
    attempt: int = 0
    hostname: str = ""
    log_directory: str = ""
    dns_config: DNSConfig | None = None
    port_mappings: list[PortMapping] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    runtime_handler: str = ""
    privileged: bool = False  # some container of the pod is privileged (CRI requires saying so here)


@dataclass(slots=True)
class Mount:
    container_path: str
    host_path: str
    readonly: bool = False


@dataclass(slots=True)
class LinuxResources:
    """CRI LinuxContainerResources, computed from requests/limits as the kubelet does."""

    cpu_period: int = 0
    cpu_quota: int = 0
    cpu_shares: int = 0
    memory_limit_in_bytes: int = 0
    oom_score_adj: int = 0


@dataclass(slots=True)
class ContainerConfig:
    """What CreateContainer needs (CRI ContainerConfig, the parts k8py uses)."""

    name: str
    image: str
    attempt: int = 0
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    working_dir: str = ""
    envs: list[tuple[str, str]] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    log_path: str = ""  # relative to the sandbox's log_directory, as in CRI
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resources: LinuxResources = field(default_factory=LinuxResources)
    run_as_user: int | None = None
    privileged: bool = False


@dataclass(slots=True)
class PodSandboxStatus:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: SandboxState
    created_at: int
    ip: str = ""
    additional_ips: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    runtime_handler: str = ""


@dataclass(slots=True)
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    state: ContainerState
    created_at: int
    image: str
    image_ref: str = ""
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""  # e.g. "OOMKilled", "Completed", "Error"
    message: str = ""
    log_path: str = ""  # absolute path of the CRI-format log file
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Image:
    id: str  # the image's content id (sha256:...), reported as imageID
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0


@dataclass(slots=True)
class ContainerStats:
    """CRI ContainerStats: cumulative CPU time and current memory."""

    id: str
    sandbox_id: str
    name: str
    timestamp: int  # ns
    cpu_usage_core_nanoseconds: int = 0
    memory_working_set_bytes: int = 0


def has_labels(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    """CRI's label_selector filter: every selector pair is among ``labels``."""
    return not selector or all(labels.get(k) == v for k, v in selector.items())


class CRIError(Exception):
    """A runtime call failed; ``reason`` is the kubelet's reason to report (e.g. ErrImagePull)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class ImageNotFound(CRIError):
    pass


class NotFound(CRIError):
    """The sandbox or container does not exist (any more)."""


@dataclass(slots=True)
class ExecSession:
    """A running exec or attach: byte streams plus the exit code.

    ``stdin`` is None when the caller asked for none. ``stderr`` is None with a TTY (merged into
    stdout, as the runtime's terminal does). ``resize`` changes the TTY's size; ``wait`` returns
    the exit code; ``close`` ends the session (killing an exec'd process still running).
    """

    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader | None
    stdin: asyncio.StreamWriter | StdinWriter | None
    wait: Callable[[], Awaitable[int]]
    resize: Callable[[int, int], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


class StdinWriter(Protocol):
    """The part of asyncio.StreamWriter a session's stdin offers."""

    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    async def drain(self) -> None: ...


class RuntimeService(Protocol):
    """CRI RuntimeService, the verbs k8py's kubelet uses."""

    name: str  # "cri" | "process" | "simulated"

    async def version(self) -> tuple[str, str]:
        """(runtime_name, runtime_version), e.g. ("containerd", "1.6.20")."""
        ...

    async def update_runtime_config(self, pod_cidr: str) -> None:
        """The node's pod CIDR is known (CRI UpdateRuntimeConfig): pods get addresses from it."""
        ...

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str: ...
    async def stop_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def remove_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus: ...
    async def list_pod_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[PodSandboxStatus]:
        """Every sandbox (carrying all of ``labels``, when given)."""
        ...

    async def create_container(
        self, sandbox_id: str, config: ContainerConfig, sandbox_config: PodSandboxConfig
    ) -> str: ...
    async def start_container(self, container_id: str) -> None: ...
    async def stop_container(self, container_id: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (0: at once)."""
        ...

    async def remove_container(self, container_id: str) -> None: ...
    async def container_status(self, container_id: str) -> ContainerStatus: ...
    async def list_containers(
        self, sandbox_id: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[ContainerStatus]:
        """Every container (of one sandbox, carrying all of ``labels``): at least id, sandbox, name, state, created_at, labels and
        annotations; exit code, times and reason may be missing (``container_status`` has them)."""
        ...

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[bytes, bytes, int]:
        """Run ``cmd`` in the container, wait (``timeout`` seconds, 0 = none) and return its output."""
        ...

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool) -> ExecSession: ...
    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ExecSession: ...
    async def port_forward(
        self, sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to ``port`` inside the sandbox's network namespace."""
        ...

    async def list_container_stats(self) -> list[ContainerStats]: ...


class ImageService(Protocol):
    """CRI ImageService."""

    async def pull_image(self, image: str) -> str:
        """Pull ``image`` and return its image ref (the id); raises CRIError offline."""
        ...

    async def image_status(self, image: str) -> Image | None: ...
    async def list_images(self) -> list[Image]: ...
    async def remove_image(self, image: str) -> None: ...


class Runtime(RuntimeService, ImageService, Protocol):
    """One runtime: both CRI services, plus its own life cycle."""

    async def start(self) -> None: ...
    async def stop(self) -> None:
        """Release the connection; containers keep running (a kubelet restart adopts them)."""
        ...
