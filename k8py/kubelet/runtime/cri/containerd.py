"""A containerd of k8py's own, supervised like k3s does it.

Everything lives under ``<data-dir>/containerd/``: the generated ``config.toml`` (schema
``version = 2``, the one containerd 1.6 from Debian 12 reads), ``root``, ``state``, the gRPC and
ttrpc sockets, runc's state (its own ``Root``), the log file and a pid file. Settings that matter on
the hosts k8py runs on:

- cgroupfs driver (``SystemdCgroup = false``): PID 1 is not necessarily systemd, cgroups may be v1;
- ``restrict_oom_score_adj = true``: without CAP_SYS_RESOURCE runc cannot lower oom_score_adj and
  every RunPodSandbox fails with "can't get final child's PID from pipe";
- ``netns_mounts_under_state_dir = true``: pod network namespaces are bind-mounted under the state
  dir, not in the host's shared /var/run/netns;
- the sandbox image is k8py's own pause image (pause.py), built and imported at start when missing;
- CNI: plugins from ``/usr/lib/cni`` (Debian's containernetworking-plugins), configuration from
  ``<data-dir>/cni/net.d``, which the kubelet fills with ``write_cni_config`` once it knows the
  Node's podCIDR. containerd brings up each pod's ``lo`` itself (its built-in loopback network).

containerd runs as a child in its own session (a terminal's ^C does not reach it); containers
outlive it through their shims, so a restarted kubelet adopts them. ``start`` adopts a containerd
this data dir already runs (pid file + live socket) instead of starting a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from k8py.kubelet.runtime.cri.pause import PAUSE_IMAGE, build_pause_image

BINARIES = ("containerd", "containerd-shim-runc-v2", "runc", "ctr")
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
CNI_CONFIG_NAME = "10-k8py.conflist"
NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin works in
MAX_SOCKET_PATH = 107  # sockaddr_un.sun_path, less the NUL


def write_cni_config(
    conf_dir: Path, pod_cidr: str, *, bridge: str = "k8py0", network: str = "k8py", ipam_dir: Path | None = None
) -> Path:
    """Write the node's CNI network: bridge (gateway, masquerade) + host-local IPAM + portmap.

    ``ipam_dir`` holds host-local's leases (default: ``<conf_dir>/../ipam``). Written atomically,
    since containerd watches ``conf_dir`` and reloads on change.
    """
    conf_dir.mkdir(parents=True, exist_ok=True)
    ipam_dir = ipam_dir or conf_dir.parent / "ipam"
    conflist = {
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                # No masquerading here: traffic leaving the cluster is the network agent's to SNAT
                # (or to refuse); per-pod iptables rules would also serialize pod start-up.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }
    path = conf_dir / CNI_CONFIG_NAME
    tmp = conf_dir / f".{CNI_CONFIG_NAME}.tmp"
    tmp.write_text(json.dumps(conflist, indent=2) + "\n")
    tmp.replace(path)
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class Containerd:
    """Supervisor of the containerd that serves one k8py data dir."""

    def __init__(self, data_dir: Path, *, sandbox_image: str = PAUSE_IMAGE, log_level: str = "info") -> None:
        self.data_dir = Path(data_dir).absolute()
        self.dir = self.data_dir / "containerd"
        self.config_path = self.dir / "config.toml"
        self.address = str(self.dir / "containerd.sock")
        self.log_path = self.dir / "containerd.log"
        self.pid_path = self.dir / "containerd.pid"
        self.cni_conf_dir = self.data_dir / "cni" / "net.d"
        self.sandbox_image = sandbox_image
        self.log_level = log_level
        self.pid: int | None = None
        self._wait_task: asyncio.Task[int] | None = None  # set when this object started containerd

    @staticmethod
    def available() -> bool:
        """Root, and the containerd, runc and CNI binaries installed."""
        return (
            os.geteuid() == 0
            and all(shutil.which(b) for b in BINARIES)
            and all((CNI_BIN_DIR / p).exists() for p in CNI_PLUGINS)
        )

    def config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        sections: dict[str, dict[str, object]] = {
            "": {
                "version": 2,
                "root": self.dir / "root",
                "state": self.dir / "state",
                "oom_score": 0,
            },
            "grpc": {"address": self.address},
            "ttrpc": {"address": self.address + ".ttrpc"},
            "debug": {"level": self.log_level},
            'plugins."io.containerd.internal.v1.opt"': {"path": self.dir / "opt"},
            cri: {
                "sandbox_image": self.sandbox_image,
                "restrict_oom_score_adj": True,
                "netns_mounts_under_state_dir": True,
                "stream_server_address": "127.0.0.1",
                "stream_server_port": "0",
                "disable_apparmor": True,
                "tolerate_missing_hugetlb_controller": True,
                "disable_hugetlb_controller": True,
            },
            f"{cri}.containerd": {"snapshotter": "overlayfs", "default_runtime_name": "runc"},
            f"{cri}.containerd.runtimes.runc": {"runtime_type": "io.containerd.runc.v2"},
            f"{cri}.containerd.runtimes.runc.options": {
                "SystemdCgroup": False,
                "Root": self.dir / "runc",
            },
            f"{cri}.cni": {"bin_dir": CNI_BIN_DIR, "conf_dir": self.cni_conf_dir, "max_conf_num": 1},
        }
        lines = [f'disabled_plugins = {json.dumps(self.DISABLED_PLUGINS)}']
        for name, values in sections.items():
            if name:
                lines.append(f"\n[{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
        return "\n".join(lines) + "\n"

    # Snapshotters and services k8py does not use: fewer plugins, faster start, quieter log.
    DISABLED_PLUGINS = [
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]

    def write_config(self) -> Path:
        if len(self.address) + len(".ttrpc") > MAX_SOCKET_PATH:
            raise RuntimeError(f"containerd socket path too long for a unix socket: {self.address}")
        for d in (self.dir, self.cni_conf_dir, self.dir / "runc"):
            d.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        return self.config_path

    def _running_pid(self) -> int | None:
        """The pid of a live containerd started for this data dir, from the pid file."""
        try:
            pid = int(self.pid_path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if cmdline[:1] and cmdline[0].endswith(b"containerd") and str(self.config_path).encode() in cmdline:
            return pid
        return None

    def serving(self) -> bool:
        """A containerd of this data dir is running and answering on its socket."""
        return self._running_pid() is not None and self._socket_ready()

    def _socket_ready(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(self.address)
            except OSError:
                return False
            return True

    async def start(self, timeout: float = 30.0) -> None:
        """Start (or adopt) containerd, wait for its socket, and make sure the pause image is there."""
        if not self.available():
            raise RuntimeError("containerd needs root and the containerd, runc and CNI binaries")
        self.write_config()
        self.pid = self._running_pid()
        if self.pid is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
            with open(self.log_path, "ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    "containerd", "--config", str(self.config_path),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                )
            self.pid = proc.pid
            self.pid_path.write_text(f"{proc.pid}\n")
            # Reap it when it exits, so that a stopped containerd leaves no zombie.
            self._wait_task = asyncio.create_task(proc.wait())
        else:
            self._wait_task = None
        try:
            deadline = time.monotonic() + timeout
            while not self._socket_ready():
                if self._wait_task is not None and self._wait_task.done():
                    raise RuntimeError(f"containerd exited with {self._wait_task.result()}; see {self.log_path}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"containerd did not serve {self.address} within {timeout}s; see {self.log_path}")
                await asyncio.sleep(0.02)
            await self.ensure_image(self.sandbox_image, lambda: build_pause_image(self.data_dir / "pause"))
        except BaseException:
            if self._wait_task is not None:  # started here: leave nothing running
                await self.stop()
            raise

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM containerd (SIGKILL after ``timeout``); its shims and containers keep running."""
        pid = self.pid or self._running_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            await asyncio.sleep(0.02)
        self.pid, self._wait_task = None, None
        self.pid_path.unlink(missing_ok=True)

    def _alive(self, pid: int) -> bool:
        if self._wait_task is not None:
            return not self._wait_task.done()
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    async def _ctr(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "ctr", "--address", self.address, "--namespace", NAMESPACE, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {err.decode().strip() or out.decode().strip()}")
        return out.decode()

    async def import_image(self, tar_path: Path) -> list[str]:
        """Import an OCI or docker-archive tar into the ``k8s.io`` namespace (via ``ctr images import``).

        The layers are unpacked into the overlayfs snapshotter the CRI plugin uses. Returns the
        names of the images now present that the archive brought.
        """
        before = set(await self.list_images())
        out = await self._ctr("images", "import", "--snapshotter", "overlayfs", str(tar_path))
        after = await self.list_images()
        # ctr prints "unpacking <name> (<digest>)...done" per image.
        named = [line.split()[1] for line in out.splitlines() if line.startswith("unpacking ")]
        return named or [n for n in after if n not in before]

    async def list_images(self) -> list[str]:
        """Names of the images in the ``k8s.io`` namespace (CRI adds ``sha256:<id>`` aliases too)."""
        return (await self._ctr("images", "list", "--quiet")).split()

    async def ensure_image(self, ref: str, build: Callable[[], Path]) -> None:
        """Import the archive ``build()`` writes (in a thread) unless ``ref`` is already present."""
        if ref in await self.list_images():
            return
        tar_path = await asyncio.to_thread(build)
        await self.import_image(tar_path)
