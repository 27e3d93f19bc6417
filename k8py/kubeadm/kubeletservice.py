"""The kubelet as a long-running host service, as kubeadm's `kubelet-start` phase leaves it: its
flags in ``/var/lib/kubelet/kubeadm-flags.env`` (``KUBELET_KUBEADM_ARGS``), run by systemd
(``k8py-kubelet.service``) or k8py's own supervisor (:mod:`k8py.kubeadm.hostservice`). `k8py reset`
stops it (``KUBELET.stop``).
"""

from __future__ import annotations

from collections.abc import Callable

from k8py.kubeadm.hostservice import HostService
from k8py.kubeadm.layout import Layout

KUBELET = HostService("kubelet", "k8py kubelet: the Kubernetes node agent", "kubelet", "KUBELET_KUBEADM_ARGS",
                      lambda layout: layout.kubelet_flags_file)


def start(layout: Layout, progress: Callable[[str], None]) -> None:
    """Start (or restart) the kubelet service with the flags file's flags."""
    progress(f"[kubelet-start] Starting the kubelet ({KUBELET.start(layout)})")
