"""The ``simulated`` runtime: containers that run without processes, as kwok's nodes do.

Sandboxes get addresses from the node's pod CIDR; a started container is running at once and
stays so, except that a Job's pod (label ``batch.kubernetes.io/job-name``) completes with exit 0
after ``job_seconds``, and any container can be told how it ends through its env:
``K8PY_SIMULATED_EXIT_CODE`` after ``K8PY_SIMULATED_RUN_SECONDS`` (default 0). Stopping is
immediate. Nothing is persisted: a restarted simulated kubelet starts its pods again. Exec,
attach and port-forward have nothing to reach and fail clearly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import Mapping

from k8py import __version__
from k8py.kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    CRIError,
    ExecSession,
    NotFound,
    PodSandboxConfig,
    PodSandboxStatus,
    SandboxState,
    has_labels,
)
from k8py.kubelet.runtime.process import NoImages, now_ns

JOB_LABEL = "batch.kubernetes.io/job-name"
EXIT_CODE_ENV = "K8PY_SIMULATED_EXIT_CODE"
RUN_SECONDS_ENV = "K8PY_SIMULATED_RUN_SECONDS"
MEMORY = 4 * 1024 * 1024  # reported working set of a simulated container


class SimulatedRuntime(NoImages):
    name = "simulated"

    def __init__(self, *, job_seconds: float = 5.0) -> None:
        self.job_seconds = job_seconds
        self._network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        self._next_ip = 2
        self._free_ips: list[str] = []
        self._sandboxes: dict[str, tuple[PodSandboxStatus, PodSandboxConfig]] = {}
        self._containers: dict[str, ContainerStatus] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._endings: dict[str, tuple[int, float]] = {}  # container id -> (exit code, seconds to run)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def version(self) -> tuple[str, str]:
        return "k8py-simulated", __version__

    async def update_runtime_config(self, pod_cidr: str) -> None:
        self._network = ipaddress.ip_network(pod_cidr, strict=False)

    def _allocate_ip(self) -> str:
        if self._free_ips:
            return self._free_ips.pop()
        if self._network is None or self._next_ip >= self._network.num_addresses - 1:
            return ""
        ip = str(self._network[self._next_ip])
        self._next_ip += 1
        return ip

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        sid = uuid.uuid4().hex
        status = PodSandboxStatus(
            id=sid, name=config.name, namespace=config.namespace, uid=config.uid, attempt=config.attempt,
            state=SandboxState.READY, created_at=now_ns(), ip="" if config.host_network else self._allocate_ip(),
            labels=dict(config.labels), annotations=dict(config.annotations),
        )
        self._sandboxes[sid] = (status, config)
        return sid

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        entry = self._sandboxes.get(sandbox_id)
        if entry is None:
            return
        for c in self._containers.values():
            if c.sandbox_id == sandbox_id:
                await self.stop_container(c.id, 0)
        if entry[0].state == SandboxState.READY and entry[0].ip:
            self._free_ips.append(entry[0].ip)
        entry[0].state = SandboxState.NOTREADY

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        await self.stop_pod_sandbox(sandbox_id)
        for cid in [c.id for c in self._containers.values() if c.sandbox_id == sandbox_id]:
            await self.remove_container(cid)
        self._sandboxes.pop(sandbox_id, None)

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        entry = self._sandboxes.get(sandbox_id)
        if entry is None:
            raise NotFound(f"pod sandbox {sandbox_id} not found")
        return entry[0]

    async def list_pod_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[PodSandboxStatus]:
        return [status for status, _ in self._sandboxes.values() if has_labels(status.labels, labels)]

    async def create_container(
        self, sandbox_id: str, config: ContainerConfig, sandbox_config: PodSandboxConfig
    ) -> str:
        if sandbox_id not in self._sandboxes:
            raise NotFound(f"pod sandbox {sandbox_id} not found")
        cid = uuid.uuid4().hex
        status = ContainerStatus(
            id=cid, sandbox_id=sandbox_id, name=config.name, attempt=config.attempt,
            state=ContainerState.CREATED, created_at=now_ns(), image=config.image, image_ref=config.image,
            labels=dict(config.labels), annotations=dict(config.annotations),
        )
        self._containers[cid] = status
        env = dict(config.envs)
        exit_code: int | None = None
        run_for = 0.0
        if EXIT_CODE_ENV in env:
            exit_code, run_for = int(env[EXIT_CODE_ENV]), float(env.get(RUN_SECONDS_ENV) or 0)
        elif JOB_LABEL in sandbox_config.labels:
            exit_code, run_for = 0, self.job_seconds
        if exit_code is not None:
            self._endings[cid] = (exit_code, run_for)
        return cid

    async def start_container(self, container_id: str) -> None:
        c = self._containers.get(container_id)
        if c is None:
            raise NotFound(f"container {container_id} not found")
        c.state, c.started_at = ContainerState.RUNNING, now_ns()
        ending = self._endings.pop(container_id, None)
        if ending is not None:
            loop = asyncio.get_running_loop()
            self._timers[container_id] = loop.call_later(ending[1], self._exit, container_id, ending[0])

    def _exit(self, container_id: str, code: int) -> None:
        self._timers.pop(container_id, None)
        c = self._containers.get(container_id)
        if c is not None and c.state == ContainerState.RUNNING:
            c.state, c.finished_at, c.exit_code = ContainerState.EXITED, now_ns(), code
            c.reason = "Completed" if code == 0 else "Error"

    async def stop_container(self, container_id: str, timeout: int) -> None:
        timer = self._timers.pop(container_id, None)
        if timer is not None:
            timer.cancel()
        c = self._containers.get(container_id)
        if c is not None and c.state == ContainerState.RUNNING:
            c.state, c.finished_at, c.exit_code, c.reason = ContainerState.EXITED, now_ns(), 137, "Error"

    async def remove_container(self, container_id: str) -> None:
        await self.stop_container(container_id, 0)
        self._containers.pop(container_id, None)
        self._endings.pop(container_id, None)

    async def container_status(self, container_id: str) -> ContainerStatus:
        c = self._containers.get(container_id)
        if c is None:
            raise NotFound(f"container {container_id} not found")
        return c

    async def list_containers(
        self, sandbox_id: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[ContainerStatus]:
        return [
            c for c in self._containers.values()
            if (sandbox_id is None or c.sandbox_id == sandbox_id) and has_labels(c.labels, labels)
        ]

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[bytes, bytes, int]:
        raise CRIError("simulated containers run no processes: exec is not possible")

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        raise CRIError("simulated containers run no processes: exec is not possible")

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ExecSession:
        raise CRIError("simulated containers run no processes: attach is not possible")

    async def port_forward(self, sandbox_id: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise CRIError("simulated pods listen on no ports: port-forward is not possible")

    async def list_container_stats(self) -> list[ContainerStats]:
        ts = now_ns()
        return [
            ContainerStats(
                id=c.id, sandbox_id=c.sandbox_id, name=c.name, timestamp=ts,
                cpu_usage_core_nanoseconds=(ts - c.started_at) // 1000, memory_working_set_bytes=MEMORY,
            )
            for c in self._containers.values()
            if c.state == ContainerState.RUNNING
        ]
