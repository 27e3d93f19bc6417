"""The kubelet as a long-running host service, as kubeadm's `kubelet-start` phase leaves it: its
flags in ``/var/lib/kubelet/kubeadm-flags.env`` (``KUBELET_KUBEADM_ARGS``), run by systemd
(``k8py-kubelet.service``) or k8py's own supervisor (:mod:`k8py.kubeadm.hostservice`). `k8py reset`
stops it through the same module.
"""

from __future__ import annotations

from collections.abc import Callable

from k8py.kubeadm.hostservice import HostService, uses_systemd
from k8py.kubeadm.layout import Layout

__all__ = ["KUBELET", "read_flags", "start", "stop", "supervisor_pid", "unit_text", "uses_systemd", "write_flags"]

KUBELET = HostService("kubelet", "k8py kubelet: the Kubernetes node agent", "kubelet", "KUBELET_KUBEADM_ARGS",
                      lambda layout: layout.kubelet_flags_file)


def write_flags(layout: Layout, flags: list[str]) -> None:
    KUBELET.write_flags(layout, flags)


def read_flags(layout: Layout) -> list[str]:
    return KUBELET.read_flags(layout)


def unit_text(layout: Layout) -> str:
    return KUBELET.unit_text(layout)


def supervisor_pid(layout: Layout) -> int | None:
    return KUBELET.supervisor_pid(layout)


def start(layout: Layout, progress: Callable[[str], None]) -> None:
    """Start (or restart) the kubelet service with the flags file's flags."""
    progress(f"[kubelet-start] Starting the kubelet ({KUBELET.start(layout)})")


def stop(layout: Layout, timeout: float = 30.0) -> bool:
    """Stop the kubelet service; False if none was running."""
    return KUBELET.stop(layout, timeout)
