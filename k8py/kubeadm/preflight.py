"""Pre-flight checks of `k8py init` / `k8py join` (kubeadm's cmd/kubeadm/app/preflight): each has
kubeadm's name (``Port-6443``, ``FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml``,
``IsPrivilegedUser``...) and is an error or a warning; ``--ignore-preflight-errors`` names
errors to report as warnings instead (``all`` for every one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from k8py.kubeadm.apiserverlb import LISTEN_PORT as APISERVER_LB_PORT
from k8py.kubeadm.config import ExternalEtcd, InitConfig

ETCD_PORTS = (2379, 2380)  # client and peer
CONTROL_PLANE_PORTS = (10259, 10257, *ETCD_PORTS)  # scheduler, controller manager, a local etcd member
KUBELET_PORT = 10250
NODE_PORTS = (KUBELET_PORT, APISERVER_LB_PORT)  # the kubelet, the node-local API server load balancer
MANIFESTS = ("kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml", "etcd.yaml")
BINARIES = ("containerd", "runc", "ip", "nft", "nsenter", "mount")
MIN_MEMORY_MB = 1700
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Finding:
    name: str
    message: str
    error: bool


def _path_name(path: Path) -> str:
    """kubeadm's check-name form of a path: /etc/kubernetes/x.yaml -> -etc-kubernetes-x.yaml."""
    return str(path).replace("/", "-")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def _swap_on() -> bool:
    try:
        return len(Path("/proc/swaps").read_text().splitlines()) > 1
    except OSError:
        return False


def _common(kubernetes_dir: Path, ports: Iterable[int], node_name: str) -> Iterator[Finding]:
    if os.geteuid() != 0:
        yield Finding("IsPrivilegedUser", "user is not running as root", True)
    for port in ports:
        if _port_in_use(port):
            yield Finding(f"Port-{port}", f"Port {port} is in use", True)
    for binary in BINARIES:
        if shutil.which(binary) is None:
            yield Finding(f"FileExisting-{binary}", f"{binary} not found in system path", True)
    if not Path("/usr/lib/cni/bridge").exists():
        yield Finding("FileExisting--usr-lib-cni-bridge", "/usr/lib/cni/bridge not found (containernetworking-plugins)",
                      True)
    if not DNS1123_SUBDOMAIN.match(node_name) or len(node_name) > 253:
        yield Finding("Hostname", f"node name \"{node_name}\" is not a valid DNS-1123 subdomain: use --node-name", True)
    if (mb := _memory_mb()) < MIN_MEMORY_MB:
        yield Finding("Mem", f"the system RAM ({mb} MB) is less than the minimum {MIN_MEMORY_MB} MB", True)
    if _swap_on():
        yield Finding("Swap", "swap is supported for cgroup v2 only; the NodeSwap feature gate of the kubelet is "
                      "beta but disabled by default", False)
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
        yield Finding("FileContent--proc-sys-net-ipv4-ip_forward",
                      "/proc/sys/net/ipv4/ip_forward contents are not set to 1 (the network agent will set it)", False)
    kubelet_conf = kubernetes_dir / "kubelet.conf"
    if kubelet_conf.exists():
        yield Finding(f"FileAvailable-{_path_name(kubelet_conf)}", f"{kubelet_conf} already exists", True)


def control_plane_checks(config: InitConfig, etcd_data_dir: Path) -> list[Finding]:
    """What a control-plane node needs besides a node's checks (`init`, `join --control-plane`)."""
    local_etcd = config.external_etcd is None
    ports = CONTROL_PLANE_PORTS if local_etcd else tuple(p for p in CONTROL_PLANE_PORTS if p not in ETCD_PORTS)
    findings = [Finding(f"Port-{port}", f"Port {port} is in use", True)
                for port in (config.bind_port, *ports) if _port_in_use(port)]
    if (cpus := os.cpu_count() or 1) < 2:
        findings.append(Finding("NumCPU", f"the number of available CPUs {cpus} is less than the required 2", True))
    for manifest in MANIFESTS:
        path = config.kubernetes_dir / "manifests" / manifest
        if path.exists():
            findings.append(Finding(f"FileAvailable-{_path_name(path)}", f"{path} already exists", True))
    if local_etcd and etcd_data_dir.is_dir() and any(etcd_data_dir.iterdir()):
        findings.append(Finding(f"DirAvailable-{_path_name(etcd_data_dir)}", f"{etcd_data_dir} is not empty", True))
    if config.external_etcd is not None:
        findings += external_etcd_checks(config.external_etcd)
    return findings


def external_etcd_checks(etcd: ExternalEtcd, timeout: float = 3.0) -> list[Finding]:
    """kubeadm's ExternalEtcdClientCertificates (the files are there) and ExternalEtcdVersion (each endpoint
    answers /version, with the client certificate)."""
    files = [f for f in (etcd.ca_file, etcd.cert_file, etcd.key_file) if f]
    findings = [Finding("ExternalEtcdClientCertificates", f"{f} doesn't exist", True)
                for f in files if not Path(f).is_file()]
    if findings:
        return findings
    ctx = ssl.create_default_context(cafile=etcd.ca_file or None)
    if etcd.cert_file:
        ctx.load_cert_chain(etcd.cert_file, etcd.key_file or None)
    for endpoint in etcd.endpoints:
        try:
            with urllib.request.urlopen(f"{endpoint.rstrip('/')}/version", timeout=timeout, context=ctx) as resp:
                json.loads(resp.read())["etcdserver"]
        except (OSError, ValueError, KeyError) as e:
            findings.append(Finding("ExternalEtcdVersion", f"cannot reach etcd at {endpoint}: {e}", True))
    return findings


def init_checks(config: InitConfig, etcd_data_dir: Path) -> list[Finding]:
    return [*_common(config.kubernetes_dir, NODE_PORTS, config.node_name),
            *control_plane_checks(config, etcd_data_dir)]


def join_checks(kubernetes_dir: Path, node_name: str) -> list[Finding]:
    findings = list(_common(kubernetes_dir, NODE_PORTS, node_name))
    ca = kubernetes_dir / "pki" / "ca.crt"
    if ca.exists():
        findings.append(Finding(f"FileAvailable-{_path_name(ca)}", f"{ca} already exists", True))
    return findings


class PreflightError(Exception):
    """Fatal pre-flight errors; the message lists them as kubeadm does."""


def report(findings: list[Finding], ignore: set[str]) -> list[str]:
    """The warning lines; raises :class:`PreflightError` for errors not ignored."""
    ignore_all = "all" in ignore
    lowered = {i.lower() for i in ignore}
    warnings, errors = [], []
    for f in findings:
        if f.error and not ignore_all and f.name.lower() not in lowered:
            errors.append(f"\t[ERROR {f.name}]: {f.message}")
        else:
            warnings.append(f"\t[WARNING {f.name}]: {f.message}")
    if errors:
        raise PreflightError(
            "[preflight] Some fatal errors occurred:\n" + "\n".join(errors)
            + "\n[preflight] If you know what you are doing, you can make a check non-fatal with "
            "`--ignore-preflight-errors=...`"
        )
    return warnings
