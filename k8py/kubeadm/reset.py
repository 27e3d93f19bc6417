"""`k8py reset`: undo what `k8py init` / `k8py join` set up on this node, and nothing else
(kubeadm's `reset`): the node's etcd member (removed from the cluster first, unless it is the
last one), the kubelet and API server load balancer services, every pod and the node's containerd (`k8py killall`:
containers, CNI bridge, kube-proxy / NAT / NetworkPolicy tables and the agent's routes), the
static pod manifests, the kubelet's directory, the PKI, the kubeconfig files, the control plane's
data (etcd's and the embedded store's) and the supervisor's pid and log files.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

from k8py.kubeadm import kubeletservice
from k8py.kubeadm.apiserverlb import APISERVER_LB
from k8py.kubeadm.etcd import remove_local_member
from k8py.kubeadm.hostservice import uses_systemd
from k8py.kubeadm.layout import Layout

KUBECONFIG_FILES = ("admin.conf", "super-admin.conf", "kubelet.conf", "bootstrap-kubelet.conf",
                    "controller-manager.conf", "scheduler.conf")


def _clear(directory: Path) -> None:
    """Delete what ``directory`` holds (kubeadm keeps the directories themselves)."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def reset(layout: Layout, progress: Callable[[str], None]) -> None:
    from k8py.kubelet.app import killall

    asyncio.run(remove_local_member(layout, layout.cert_dir, progress))
    progress("[reset] Stopping the kubelet service")
    kubeletservice.KUBELET.stop(layout)
    if APISERVER_LB.stop(layout):
        progress("[reset] Stopped the API server load balancer service")
    if layout.kubelet_dir.is_dir():
        progress(f"[reset] Unmounting mounted directories in \"{layout.kubelet_dir}\" and stopping its pods")
        asyncio.run(killall(layout.kubelet_dir, progress))
    for data in (layout.etcd_dir, layout.apiserver_dir):
        if data.is_dir():
            _clear(data)
            progress(f"[reset] Deleted contents of the {'etcd' if data == layout.etcd_dir else 'store'} "
                     f"data directory: {data}")
    directories = [layout.manifests_dir, layout.kubelet_dir, layout.cert_dir]
    progress(f"[reset] Deleting contents of directories: [{' '.join(map(str, directories))}]")
    for directory in directories:
        _clear(directory)
    files = [*(layout.kubernetes_dir / name for name in KUBECONFIG_FILES), APISERVER_LB.flags_file(layout)]
    if uses_systemd(layout):
        files += [service.unit_file(layout) for service in (kubeletservice.KUBELET, APISERVER_LB)]
    progress(f"[reset] Deleting files: [{' '.join(map(str, files))}]")
    for path in files:
        path.unlink(missing_ok=True)
    for directory in (layout.run_dir, layout.log_dir):
        if directory.is_dir():
            shutil.rmtree(directory)
    progress("\nThe reset process does not clean your kubeconfig files and you must remove them manually.\n"
             "Please, check the contents of the $HOME/.kube/config file.")
