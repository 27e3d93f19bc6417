"""The kubelet as a long-running host service, as kubeadm's `kubelet-start` phase leaves it: its
flags in ``/var/lib/kubelet/kubeadm-flags.env`` (``KUBELET_KUBEADM_ARGS``), run by systemd
(``k8py-kubelet.service``, ``Restart=always``) where systemd runs the host, otherwise by
k8py's own supervisor (:mod:`k8py.kubeadm.supervise`, pid file in ``/run/k8py``), so that k8py
works without systemd. `k8py reset` stops it through the same module.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from k8py.kubeadm.layout import Layout

UNIT = "k8py-kubelet.service"


def uses_systemd(layout: Layout) -> bool:
    """systemd manages this host (and the layout is the host's own root)."""
    return layout.rootfs == Path("/") and Path("/run/systemd/system").is_dir()


def kubelet_command() -> list[str]:
    return [sys.executable, "-m", "k8py.cli", "kubelet"]


def write_flags(layout: Layout, flags: list[str]) -> None:
    layout.kubelet_flags_file.parent.mkdir(parents=True, exist_ok=True)
    layout.kubelet_flags_file.write_text(f"KUBELET_KUBEADM_ARGS={shlex.quote(shlex.join(flags))}\n")


def read_flags(layout: Layout) -> list[str]:
    for line in layout.kubelet_flags_file.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "KUBELET_KUBEADM_ARGS":
            return shlex.split(shlex.split(value)[0]) if value else []
    return []


def unit_text(layout: Layout) -> str:
    return (
        "[Unit]\nDescription=k8py kubelet: the Kubernetes node agent\nAfter=network-online.target\n"
        "Wants=network-online.target\n\n"
        f"[Service]\nEnvironmentFile=-{layout.kubelet_flags_file}\n"
        f"ExecStart={shlex.join(kubelet_command())} $KUBELET_KUBEADM_ARGS\n"
        "Restart=always\nRestartSec=1\nStartLimitInterval=0\nKillMode=process\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def _pidfile(layout: Layout) -> Path:
    return layout.run_dir / "kubelet.pid"


def supervisor_pid(layout: Layout) -> int | None:
    """The pid of the running supervisor, if any."""
    try:
        pid = int(_pidfile(layout).read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def start(layout: Layout, progress: Callable[[str], None]) -> None:
    """Start (or restart) the kubelet service with the flags file's flags."""
    if uses_systemd(layout):
        layout.systemd_unit.parent.mkdir(parents=True, exist_ok=True)
        layout.systemd_unit.write_text(unit_text(layout))
        for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", UNIT], ["systemctl", "restart", UNIT]):
            subprocess.run(argv, check=True, capture_output=True, text=True)
        progress(f"[kubelet-start] Starting the kubelet ({UNIT})")
        return
    stop(layout)
    log = layout.log_dir / "kubelet.log"
    subprocess.Popen(
        [sys.executable, "-m", "k8py.kubeadm.supervise", "--pidfile", str(_pidfile(layout)), "--log", str(log), "--",
         *kubelet_command(), *read_flags(layout)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while supervisor_pid(layout) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the kubelet supervisor did not start (see {log})")
        time.sleep(0.05)
    progress(f"[kubelet-start] Starting the kubelet (supervised, no systemd; log {log})")


def stop(layout: Layout, timeout: float = 30.0) -> bool:
    """Stop the kubelet service; False if none was running."""
    if uses_systemd(layout):
        if not layout.systemd_unit.exists():
            return False
        subprocess.run(["systemctl", "disable", "--now", UNIT], check=False, capture_output=True)
        return True
    pid = supervisor_pid(layout)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while supervisor_pid(layout) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    if supervisor_pid(layout) == pid:
        os.kill(pid, signal.SIGKILL)
        _pidfile(layout).unlink(missing_ok=True)
    return True
