"""kubeadm's kubeconfig files in ``/etc/kubernetes`` (cmd/kubeadm/app/phases/kubeconfig): each
embeds the cluster CA and a client certificate of its own.

    admin.conf               kubernetes-admin, O kubeadm:cluster-admins (bound to cluster-admin)
    super-admin.conf         kubernetes-super-admin, O system:masters (bypasses RBAC)
    controller-manager.conf  system:kube-controller-manager   (this node's API server)
    scheduler.conf           system:kube-scheduler            (this node's API server)
    kubelet.conf             system:node:<node name>, O system:nodes  (the node-local load balancer)

A file that already names the same CA and server is kept, as kubeadm does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from k8py.bootstrap.kubeconfig import write_kubeconfig
from k8py.bootstrap.pki import CertificateAuthority, CertKeyPair, issue_client_cert
from k8py.kubeadm import apiserverlb
from k8py.kubeadm.certs import CLUSTER_ADMINS_GROUP
from k8py.kubeadm.config import InitConfig


@dataclass(frozen=True)
class KubeconfigSpec:
    file: str
    user: Callable[[InitConfig], str]
    organizations: tuple[str, ...] = ()
    local: bool = False  # the node's own API server rather than the control-plane endpoint
    balanced: bool = False  # the node-local load balancer rather than the control-plane endpoint

    def server(self, config: InitConfig) -> str:
        if self.balanced:
            return apiserverlb.LOCAL_URL
        return config.local_url if self.local else config.endpoint_url


KUBECONFIGS = (
    KubeconfigSpec("admin.conf", lambda _c: "kubernetes-admin", (CLUSTER_ADMINS_GROUP,)),
    KubeconfigSpec("super-admin.conf", lambda _c: "kubernetes-super-admin", ("system:masters",)),
    KubeconfigSpec("controller-manager.conf", lambda _c: "system:kube-controller-manager", local=True),
    KubeconfigSpec("scheduler.conf", lambda _c: "system:kube-scheduler", local=True),
    KubeconfigSpec("kubelet.conf", lambda c: f"system:node:{c.node_name}", ("system:nodes",), balanced=True),
)


def read_kubeconfig(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a kubeconfig")
    return doc


def embedded_ca_and_server(doc: dict[str, Any]) -> tuple[bytes, str]:
    cluster = doc["clusters"][0]["cluster"]
    return base64.b64decode(cluster["certificate-authority-data"]), cluster["server"]


def embedded_client_cert(doc: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))


def write_spec(path: Path, spec: KubeconfigSpec, config: InitConfig, ca: CertificateAuthority,
               pair: CertKeyPair | None = None) -> None:
    """Write ``spec``'s kubeconfig with ``pair`` (default: a new client certificate)."""
    user = spec.user(config)
    pair = pair or issue_client_cert(ca, user, spec.organizations)
    write_kubeconfig(path, spec.server(config), ca.cert_pem(), pair.cert_pem(), pair.key_pem(),
                     cluster_name=config.cluster_name, user=user, context=f"{user}@{config.cluster_name}")


def create_kubeconfigs(config: InitConfig, ca: CertificateAuthority, progress: Callable[[str], None],
                       files: tuple[str, ...] | None = None) -> None:
    """kubeadm's `init phase kubeconfig all` (or only ``files``)."""
    progress(f"[kubeconfig] Using kubeconfig folder \"{config.kubernetes_dir}\"")
    config.kubernetes_dir.mkdir(parents=True, exist_ok=True)
    for spec in KUBECONFIGS:
        if files is not None and spec.file not in files:
            continue
        path = config.kubernetes_dir / spec.file
        if path.exists():
            try:
                current = embedded_ca_and_server(read_kubeconfig(path))
            except (OSError, ValueError, KeyError, IndexError, TypeError, yaml.YAMLError):
                current = None
            if current != (ca.cert_pem(), spec.server(config)):
                raise FileExistsError(f"a kubeconfig file {path} exists already but has got the wrong CA or server "
                                      f"(delete it, or run `k8py reset`)")
            progress(f"[kubeconfig] Using existing kubeconfig file: \"{path}\"")
            continue
        write_spec(path, spec, config, ca)
        progress(f"[kubeconfig] Writing \"{spec.file}\" kubeconfig file")
