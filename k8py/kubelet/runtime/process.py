"""The ``process`` runtime: every container is a host process.

For nodes without root or containerd, and for the control plane's static pods (k8py runs its own
components as pods this way, with no image). A sandbox is bookkeeping only: its pods share the
host's network (the pod IP is the node's IP) and file system; a container is ``command + args``
started in its own session (process group) with the container's env and working directory.
An image's entrypoint is unknown here: ``command + args`` is run as if the image had none (so
``args`` alone is the command, as with busybox), and a container with neither fails to be created
with a clear message.

Output goes straight from the process into append-only raw files (``<id>.stdout`` and
``<id>.stderr`` in the state dir), never through a pipe, so a container outlives a kubelet restart; one tailer
task turns new raw output into the CRI log file (``<RFC3339Nano> stdout|stderr F|P text``).
State (one JSON file per sandbox and container under ``state_dir``) lets a restarted kubelet adopt
the processes it had started: a live one is recognised by pid + start time; the exit code of an
adopted process that ends is unknown (it is no longer our child) and is reported as such.

Mounts: as root, a container whose mounts put a host path somewhere else (a projected service
account token at /var/run/secrets/kubernetes.io/serviceaccount, a ConfigMap volume...) runs in a
mount namespace of its own (``unshare --mount``, propagation slave) where each is bind-mounted
(read-only when asked) before the command is exec'd; a missing mount point is created on the host
(a directory, or an empty file for a file), as a container runtime creates it in the rootfs.
Without root, only mounts whose host path is the container path take effect. Requests/limits set
no cgroups (no OOMKilled).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import pty
import shutil
import signal
import struct
import termios
import time
import uuid
from collections.abc import Mapping
from fcntl import ioctl
from pathlib import Path
from typing import Any

import orjson

from k8py.kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    CRIError,
    DNSConfig,
    ExecSession,
    Image,
    LinuxResources,
    Mount,
    NotFound,
    PodSandboxConfig,
    PodSandboxStatus,
    PortMapping,
    SandboxState,
    has_labels,
)

log = logging.getLogger(__name__)

TAIL_INTERVAL = 0.1  # seconds between passes of the log tailer
UNKNOWN_EXIT = 255
MAX_CRI_LINE = 16 * 1024  # longer lines are split into P (partial) entries, as containerd does
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def now_ns() -> int:
    return time.time_ns()


def cri_timestamp(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


def _proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@dataclasses.dataclass
class _Sandbox:
    id: str
    config: PodSandboxConfig
    created_at: int
    state: SandboxState = SandboxState.READY


@dataclasses.dataclass
class _Container:
    id: str
    sandbox_id: str
    config: ContainerConfig
    log_path: str
    created_at: int
    state: ContainerState = ContainerState.CREATED
    pid: int = 0
    pid_start: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    # log tailer offsets into the raw files
    offsets: dict[str, int] = dataclasses.field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    partial: dict[str, bytes] = dataclasses.field(default_factory=dict)

    def status(self) -> ContainerStatus:
        return ContainerStatus(
            id=self.id,
            sandbox_id=self.sandbox_id,
            name=self.config.name,
            attempt=self.config.attempt,
            state=self.state,
            created_at=self.created_at,
            image=self.config.image,
            image_ref=self.config.image,
            started_at=self.started_at,
            finished_at=self.finished_at,
            exit_code=self.exit_code,
            reason=self.reason,
            message=self.message,
            log_path=self.log_path,
            labels=dict(self.config.labels),
            annotations=dict(self.config.annotations),
        )


def _sandbox_from(d: dict[str, Any]) -> _Sandbox:
    cfg = dict(d["config"])
    cfg["dns_config"] = DNSConfig(**cfg["dns_config"]) if cfg.get("dns_config") else None
    cfg["port_mappings"] = [PortMapping(**p) for p in cfg.get("port_mappings", ())]
    return _Sandbox(
        id=d["id"], config=PodSandboxConfig(**cfg), created_at=d["created_at"], state=SandboxState(d["state"])
    )


def _container_from(d: dict[str, Any]) -> _Container:
    cfg = dict(d["config"])
    cfg["envs"] = [tuple(e) for e in cfg.get("envs", ())]
    cfg["mounts"] = [Mount(**m) for m in cfg.get("mounts", ())]
    cfg["resources"] = LinuxResources(**cfg.get("resources", {}))
    d = {**d, "config": ContainerConfig(**cfg), "state": ContainerState(d["state"])}
    d["partial"] = {k: v.encode("latin-1") for k, v in d.get("partial", {}).items()}
    return _Container(**d)


def _dump(obj: _Sandbox | _Container) -> bytes:
    return orjson.dumps(dataclasses.asdict(obj), default=lambda b: b.decode("latin-1"))


class NoImages:
    """The ImageService of runtimes without images: any name "is present"."""

    async def pull_image(self, image: str) -> str:
        return image

    async def image_status(self, image: str) -> Image | None:
        return Image(id=image, repo_tags=[image])

    async def list_images(self) -> list[Image]:
        return []

    async def remove_image(self, image: str) -> None:
        return None


class ProcessRuntime(NoImages):
    """See the module docstring. ``host_ip`` is what sandboxes report as their IP."""

    name = "process"

    def __init__(self, state_dir: str | Path, *, host_ip: str = "127.0.0.1") -> None:
        self.state_dir = Path(state_dir)
        self.host_ip = host_ip
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._waiters: set[asyncio.Task[None]] = set()
        self._tailer: asyncio.Task[None] | None = None

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        (self.state_dir / "sandboxes").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "containers").mkdir(parents=True, exist_ok=True)
        for path in (self.state_dir / "sandboxes").glob("*.json"):
            sb = _sandbox_from(orjson.loads(path.read_bytes()))
            self._sandboxes[sb.id] = sb
        for path in (self.state_dir / "containers").glob("*.json"):
            c = _container_from(orjson.loads(path.read_bytes()))
            self._containers[c.id] = c
            if c.state == ContainerState.RUNNING and _proc_start_time(c.pid) != c.pid_start:
                self._exited(c, UNKNOWN_EXIT, reason="Unknown", message="the process ended while no kubelet ran")
        self._tailer = asyncio.create_task(self._tail_logs(), name="process-runtime-logs")

    async def stop(self) -> None:
        """Stop watching; the processes keep running for the next kubelet to adopt."""
        tasks = [*self._waiters, *([self._tailer] if self._tailer else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tail_once()
        for c in self._containers.values():
            self._save_container(c)

    async def version(self) -> tuple[str, str]:
        from k8py import __version__

        return "k8py-process", __version__

    async def update_runtime_config(self, pod_cidr: str) -> None:
        return None  # pods share the host's network

    # -- sandboxes ------------------------------------------------------------------------

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        sb = _Sandbox(id=uuid.uuid4().hex, config=config, created_at=now_ns())
        if config.log_directory:
            Path(config.log_directory).mkdir(parents=True, exist_ok=True)
        self._sandboxes[sb.id] = sb
        self._save_sandbox(sb)
        return sb.id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            return
        await asyncio.gather(
            *(self.stop_container(c.id, 0) for c in list(self._containers.values()) if c.sandbox_id == sandbox_id)
        )
        sb.state = SandboxState.NOTREADY
        self._save_sandbox(sb)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        await self.stop_pod_sandbox(sandbox_id)
        for c in [c for c in self._containers.values() if c.sandbox_id == sandbox_id]:
            await self.remove_container(c.id)
        self._sandboxes.pop(sandbox_id, None)
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "sandboxes" / f"{sandbox_id}.json").unlink()

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            raise NotFound(f"pod sandbox {sandbox_id} not found")
        return self._sandbox_status(sb)

    async def list_pod_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[PodSandboxStatus]:
        return [self._sandbox_status(sb) for sb in self._sandboxes.values() if has_labels(sb.config.labels, labels)]

    def _sandbox_status(self, sb: _Sandbox) -> PodSandboxStatus:
        c = sb.config
        return PodSandboxStatus(
            id=sb.id,
            name=c.name,
            namespace=c.namespace,
            uid=c.uid,
            attempt=c.attempt,
            state=sb.state,
            created_at=sb.created_at,
            ip=self.host_ip,
            labels=dict(c.labels),
            annotations=dict(c.annotations),
            runtime_handler=c.runtime_handler,
        )

    # -- containers -----------------------------------------------------------------------

    async def create_container(
        self, sandbox_id: str, config: ContainerConfig, sandbox_config: PodSandboxConfig
    ) -> str:
        if sandbox_id not in self._sandboxes:
            raise NotFound(f"pod sandbox {sandbox_id} not found")
        if not config.command and not config.args:
            raise CRIError(
                f"the process runtime cannot run image {config.image!r} without spec.containers[].command "
                "(or args): it does not know the image's entrypoint",
                reason="CreateContainerError",
            )
        log_path = os.path.join(sandbox_config.log_directory, config.log_path) if config.log_path else ""
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        c = _Container(
            id=uuid.uuid4().hex, sandbox_id=sandbox_id, config=config, log_path=log_path, created_at=now_ns()
        )
        self._containers[c.id] = c
        self._save_container(c)
        return c.id

    async def start_container(self, container_id: str) -> None:
        c = self._container(container_id)
        if c.state != ContainerState.CREATED:
            raise CRIError(f"container {container_id} is not in created state")
        cfg = c.config
        env = _environ(cfg)
        argv = [*cfg.command, *cfg.args]
        if binds := _binds(cfg.mounts):
            if shutil.which(argv[0], path=env["PATH"]) is None:  # what exec would fail with, said before unshare
                argv = [argv[0]]
            else:
                argv = ["unshare", "--mount", "--propagation", "slave", "--", "/bin/sh", "-c", _MOUNT_SCRIPT,
                        "k8py-mounts", *binds, "--", *argv]
        out = os.open(self._raw(c, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        err = os.open(self._raw(c, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cfg.working_dir or None,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            c.state, c.exit_code, c.reason = ContainerState.EXITED, 128, "StartError"
            c.message = f"failed to start {argv[0]!r}: {e.strerror or e}"
            c.finished_at = now_ns()
            self._save_container(c)
            raise CRIError(c.message, reason="StartError") from e
        finally:
            os.close(out)
            os.close(err)
        c.pid, c.started_at, c.state = proc.pid, now_ns(), ContainerState.RUNNING
        c.pid_start = _proc_start_time(proc.pid) or 0
        self._procs[c.id] = proc
        self._save_container(c)
        task = asyncio.create_task(self._wait(c, proc), name=f"process-{c.config.name}")
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)

    async def _wait(self, c: _Container, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self._procs.pop(c.id, None)
        self._exited(c, code if code >= 0 else 128 - code)

    def _exited(self, c: _Container, code: int, *, reason: str = "", message: str = "") -> None:
        self._tail_container(c)
        c.state, c.exit_code, c.finished_at = ContainerState.EXITED, code, now_ns()
        c.reason = reason or ("Completed" if code == 0 else "Error")
        c.message = message
        self._save_container(c)

    async def stop_container(self, container_id: str, timeout: int) -> None:
        c = self._containers.get(container_id)
        if c is None or c.state != ContainerState.RUNNING:
            return
        proc = self._procs.get(container_id)
        self._signal(c, signal.SIGTERM if timeout > 0 else signal.SIGKILL)
        deadline = time.monotonic() + max(timeout, 0)
        while c.state == ContainerState.RUNNING:
            if proc is None and _proc_start_time(c.pid) != c.pid_start:
                self._exited(c, UNKNOWN_EXIT, reason="Unknown", message="adopted process; exit code unknown")
                break
            if time.monotonic() >= deadline:
                self._signal(c, signal.SIGKILL)
                deadline = float("inf")
            await asyncio.sleep(0.02)
        # The session's other processes (a shell's children) go with the container.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.pid, signal.SIGKILL)

    def _signal(self, c: _Container, sig: int) -> None:
        if _proc_start_time(c.pid) != c.pid_start:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.pid, sig)

    async def remove_container(self, container_id: str) -> None:
        c = self._containers.get(container_id)
        if c is None:
            return
        if c.state == ContainerState.RUNNING:
            await self.stop_container(container_id, 0)
        self._containers.pop(container_id, None)
        for stream in ("stdout", "stderr"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._raw(c, stream))
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "containers" / f"{container_id}.json").unlink()

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._container(container_id).status()

    async def list_containers(
        self, sandbox_id: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[ContainerStatus]:
        return [
            c.status()
            for c in self._containers.values()
            if (sandbox_id is None or c.sandbox_id == sandbox_id) and has_labels(c.config.labels, labels)
        ]

    def _container(self, container_id: str) -> _Container:
        c = self._containers.get(container_id)
        if c is None:
            raise NotFound(f"container {container_id} not found")
        return c

    # -- exec, attach, port-forward -------------------------------------------------------

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[bytes, bytes, int]:
        c = self._container(container_id)
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=c.config.working_dir or None,
            env=_environ(c.config),
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout or None)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise CRIError(f"command {cmd} timed out after {timeout}s") from None
        return out, err, proc.returncode or 0

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        c = self._container(container_id)
        if c.state != ContainerState.RUNNING:
            raise CRIError(f"container {c.config.name} is not running")
        kwargs: dict[str, Any] = {
            "cwd": c.config.working_dir or None,
            "env": _environ(c.config),
            "start_new_session": True,
        }
        loop = asyncio.get_running_loop()
        if tty:
            master, slave = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd, stdin=slave, stdout=slave, stderr=slave, **kwargs
                )
            finally:
                os.close(slave)
            reader = asyncio.StreamReader()
            rfile = os.fdopen(os.dup(master), "rb", buffering=0)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), rfile)
            writer = _PtyWriter(master)

            async def resize(width: int, height: int) -> None:
                ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

            async def close() -> None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                rfile.close()
                writer.close()

            return ExecSession(
                stdout=reader, stderr=None, stdin=writer if stdin else None, wait=proc.wait, resize=resize,
                close=close,
            )
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            **kwargs,
        )
        assert proc.stdout is not None and proc.stderr is not None

        async def no_resize(width: int, height: int) -> None:
            return None

        async def close_pipes() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        return ExecSession(
            stdout=proc.stdout, stderr=proc.stderr, stdin=proc.stdin, wait=proc.wait, resize=no_resize,
            close=close_pipes,
        )

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ExecSession:
        """Follows the container's output from now on; stdin cannot be attached (it is /dev/null)."""
        c = self._container(container_id)
        if stdin:
            raise CRIError("the process runtime cannot attach to a container's stdin")
        out, err = asyncio.StreamReader(), asyncio.StreamReader()
        done = asyncio.Event()

        async def follow() -> None:
            offsets = {s: _size(self._raw(c, s)) for s in ("stdout", "stderr")}
            while True:
                for stream, reader in (("stdout", out), ("stderr", err)):
                    data = _read_from(self._raw(c, stream), offsets[stream])
                    offsets[stream] += len(data)
                    if data:
                        reader.feed_data(data)
                if c.state != ContainerState.RUNNING:
                    break
                await asyncio.sleep(TAIL_INTERVAL)
            out.feed_eof()
            err.feed_eof()
            done.set()

        task = asyncio.create_task(follow())

        async def wait() -> int:
            await done.wait()
            return c.exit_code

        async def no_resize(width: int, height: int) -> None:
            return None

        async def close() -> None:
            task.cancel()

        return ExecSession(stdout=out, stderr=None if tty else err, stdin=None, wait=wait, resize=no_resize, close=close)

    async def port_forward(self, sandbox_id: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if sandbox_id not in self._sandboxes:
            raise NotFound(f"pod sandbox {sandbox_id} not found")
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            raise CRIError(f"failed to connect to localhost:{port}: {e.strerror or e}") from e

    async def list_container_stats(self) -> list[ContainerStats]:
        stats = []
        ts = now_ns()
        usage = _usage_by_session()  # one pass over /proc for every container
        for c in self._containers.values():
            if c.state != ContainerState.RUNNING:
                continue
            cpu, rss = usage.get(c.pid, (0, 0))
            stats.append(
                ContainerStats(
                    id=c.id, sandbox_id=c.sandbox_id, name=c.config.name, timestamp=ts,
                    cpu_usage_core_nanoseconds=cpu, memory_working_set_bytes=rss,
                )
            )
        return stats

    # -- state and logs ---

    def _raw(self, c: _Container, stream: str) -> str:
        """The file the process writes ``stream`` to (the tailer turns it into the CRI log)."""
        return str(self.state_dir / "containers" / f"{c.id}.{stream}")

    def _save_sandbox(self, sb: _Sandbox) -> None:
        _write_atomic(self.state_dir / "sandboxes" / f"{sb.id}.json", _dump(sb))

    def _save_container(self, c: _Container) -> None:
        if c.id in self._containers:
            _write_atomic(self.state_dir / "containers" / f"{c.id}.json", _dump(c))

    async def _tail_logs(self) -> None:
        while True:
            await asyncio.sleep(TAIL_INTERVAL)
            self._tail_once()

    def _tail_once(self) -> None:
        for c in list(self._containers.values()):
            if c.state == ContainerState.RUNNING:
                self._tail_container(c)

    def _tail_container(self, c: _Container) -> None:
        """Append the raw output written since the last pass to the CRI log file."""
        if not c.log_path:
            return
        chunks = []
        ts = cri_timestamp(now_ns())
        for stream in ("stdout", "stderr"):
            data = _read_from(self._raw(c, stream), c.offsets[stream])
            if not data:
                continue
            c.offsets[stream] += len(data)
            data = c.partial.pop(stream, b"") + data
            *lines, rest = data.split(b"\n")
            for line in lines:
                chunks.extend(_cri_lines(ts, stream, line, final=True))
            if len(rest) >= MAX_CRI_LINE or (rest and c.state != ContainerState.RUNNING):
                chunks.extend(_cri_lines(ts, stream, rest, final=c.state != ContainerState.RUNNING))
            elif rest:
                c.partial[stream] = rest
        if chunks:
            with open(c.log_path, "ab") as f:
                f.write(b"".join(chunks))


def _cri_lines(ts: str, stream: str, line: bytes, *, final: bool) -> list[bytes]:
    pieces = [line[i : i + MAX_CRI_LINE] for i in range(0, max(len(line), 1), MAX_CRI_LINE)]
    out = []
    for i, piece in enumerate(pieces):
        tag = "F" if final and i == len(pieces) - 1 else "P"
        out.append(f"{ts} {stream} {tag} ".encode() + piece + b"\n")
    return out


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _read_from(path: str, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# Run by /bin/sh in the container's new mount namespace: "$@" is  SRC DST ro|rw ... -- COMMAND...
_MOUNT_SCRIPT = """set -e
while [ "$1" != -- ]; do
    if [ -d "$1" ]; then mkdir -p "$2"; elif [ ! -e "$2" ]; then mkdir -p "$(dirname "$2")"; : > "$2"; fi
    mount --bind "$1" "$2"
    if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi
    shift 3
done
shift
exec "$@"
"""


def _binds(mounts: list[Mount]) -> list[str]:
    """``SRC DST ro|rw`` triples for the mounts that need a mount namespace (none without root)."""
    if os.geteuid() != 0:
        return []
    binds: list[str] = []
    for m in mounts:
        if m.host_path and os.path.realpath(m.host_path) != os.path.realpath(m.container_path):
            binds += [m.host_path, m.container_path, "ro" if m.readonly else "rw"]
    return binds


def _environ(cfg: ContainerConfig) -> dict[str, str]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    env.update(dict(cfg.envs))
    return env


def _usage_by_session() -> dict[int, tuple[int, int]]:
    """CPU time (ns) and RSS (bytes) summed over the processes of each session, by session id (a
    container's session is its pid: it is started in a session of its own)."""
    usage: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        sid = int(fields[3])  # field 6: session id
        cpu, rss = usage.get(sid, (0, 0))
        usage[sid] = (
            cpu + (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK,
            rss + int(fields[21]) * PAGE_SIZE,
        )
    return usage


class _PtyWriter:
    """stdin of a TTY exec: writes to the pty master; EOF is the terminal's ^D."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def write_eof(self) -> None:
        os.write(self.fd, b"\x04")

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
