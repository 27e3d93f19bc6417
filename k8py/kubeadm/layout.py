"""Where `k8py init` / `k8py join` put things on a node: kubeadm's paths, under ``rootfs``.

``rootfs`` is "/" on a real node; tests that run several nodes on one machine give each its own
(kubeadm's ``--rootfs`` flag has the same meaning: the host's root file system).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    rootfs: Path = Path("/")

    def _at(self, path: str) -> Path:
        return self.rootfs / path.lstrip("/")

    @property
    def kubernetes_dir(self) -> Path:  # kubeconfig files
        return self._at("/etc/kubernetes")

    @property
    def cert_dir(self) -> Path:
        return self._at("/etc/kubernetes/pki")

    @property
    def manifests_dir(self) -> Path:  # static pods
        return self._at("/etc/kubernetes/manifests")

    @property
    def kubelet_dir(self) -> Path:  # the kubelet's --root-dir
        return self._at("/var/lib/kubelet")

    @property
    def kubelet_flags_file(self) -> Path:  # kubeadm's kubeadm-flags.env
        return self.kubelet_dir / "kubeadm-flags.env"

    @property
    def etcd_dir(self) -> Path:
        return self._at("/var/lib/etcd")

    @property
    def apiserver_dir(self) -> Path:  # the API server's --data-dir (its store unless it runs on etcd)
        return self._at("/var/lib/k8py/apiserver")

    @property
    def run_dir(self) -> Path:  # pid files of supervised services
        return self._at("/run/k8py")

    @property
    def log_dir(self) -> Path:
        return self._at("/var/log/k8py")

    @property
    def systemd_dir(self) -> Path:  # the host services' units
        return self._at("/etc/systemd/system")
