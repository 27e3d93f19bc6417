"""Long-running host services of a kubeadm node (the kubelet, the API server load balancer): each
runs one k8py command with its flags from an environment file, as systemd unit
``k8py-<name>.service`` (``Restart=always``) where systemd runs the host, otherwise under k8py's
own supervisor (:mod:`k8py.kubeadm.supervise`, pid file ``/run/k8py/<name>.pid``, log
``/var/log/k8py/<name>.log``), so that k8py works without systemd.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from k8py.kubeadm.layout import Layout


def uses_systemd(layout: Layout) -> bool:
    """systemd manages this host (and the layout is the host's own root)."""
    return layout.rootfs == Path("/") and Path("/run/systemd/system").is_dir()


@dataclass(frozen=True)
class HostService:
    name: str  # "kubelet": unit k8py-kubelet.service, pid file kubelet.pid, log kubelet.log
    description: str  # the unit's
    subcommand: str  # `k8py <subcommand> FLAGS...`
    flags_var: str  # the environment variable of the flags file holding the flags
    flags_file: Callable[[Layout], Path]

    @property
    def unit(self) -> str:
        return f"k8py-{self.name}.service"

    def unit_file(self, layout: Layout) -> Path:
        return layout.systemd_dir / self.unit

    def command(self) -> list[str]:
        return [sys.executable, "-m", "k8py.cli", self.subcommand]

    def write_flags(self, layout: Layout, flags: list[str]) -> None:
        path = self.flags_file(layout)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{self.flags_var}={shlex.quote(shlex.join(flags))}\n")

    def read_flags(self, layout: Layout) -> list[str]:
        for line in self.flags_file(layout).read_text().splitlines():
            key, _, value = line.partition("=")
            if key == self.flags_var:
                return shlex.split(shlex.split(value)[0]) if value else []
        return []

    def unit_text(self, layout: Layout) -> str:
        return (
            f"[Unit]\nDescription={self.description}\nAfter=network-online.target\n"
            "Wants=network-online.target\n\n"
            f"[Service]\nEnvironmentFile=-{self.flags_file(layout)}\n"
            f"ExecStart={shlex.join(self.command())} ${self.flags_var}\n"
            "Restart=always\nRestartSec=1\nStartLimitInterval=0\nKillMode=process\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )

    def pidfile(self, layout: Layout) -> Path:
        return layout.run_dir / f"{self.name}.pid"

    def log(self, layout: Layout) -> Path:
        return layout.log_dir / f"{self.name}.log"

    def supervisor_pid(self, layout: Layout) -> int | None:
        """The pid of the running supervisor, if any."""
        try:
            pid = int(self.pidfile(layout).read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def start(self, layout: Layout) -> str:
        """Start (or restart) the service with the flags file's flags; how it runs, for the user."""
        if uses_systemd(layout):
            unit = self.unit_file(layout)
            unit.parent.mkdir(parents=True, exist_ok=True)
            unit.write_text(self.unit_text(layout))
            for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", self.unit],
                         ["systemctl", "restart", self.unit]):
                subprocess.run(argv, check=True, capture_output=True, text=True)
            return self.unit
        self.stop(layout)
        log = self.log(layout)
        subprocess.Popen(
            [sys.executable, "-m", "k8py.kubeadm.supervise", "--pidfile", str(self.pidfile(layout)), "--log",
             str(log), "--", *self.command(), *self.read_flags(layout)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while self.supervisor_pid(layout) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} supervisor did not start (see {log})")
            time.sleep(0.05)
        return f"supervised, no systemd; log {log}"

    def stop(self, layout: Layout, timeout: float = 30.0) -> bool:
        """Stop the service; False if none was running."""
        if uses_systemd(layout):
            if not self.unit_file(layout).exists():
                return False
            subprocess.run(["systemctl", "disable", "--now", self.unit], check=False, capture_output=True)
            return True
        pid = self.supervisor_pid(layout)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.supervisor_pid(layout) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.supervisor_pid(layout) == pid:
            os.kill(pid, signal.SIGKILL)
            self.pidfile(layout).unlink(missing_ok=True)
        return True
