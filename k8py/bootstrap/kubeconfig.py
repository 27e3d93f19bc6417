"""Kubeconfig files with embedded credentials, in the shape ``kubeadm`` writes ``admin.conf``.

Certificates and the key are embedded base64-encoded (``*-data`` fields) rather than referenced
by path, so the file stays valid when copied to another machine or user.  The file holds a
private key and is written mode 0600, atomically.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from k8py.bootstrap.pki import PKIPaths, atomic_write, ensure_client_cert


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig_dict(
    server_url: str,
    ca_pem: bytes,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    *,
    cluster_name: str = "k8py",
    user: str = "kubernetes-admin",
    context: str = "kubernetes-admin@k8py",
) -> dict[str, Any]:
    """A v1 Config with one cluster, one user and one context, the context selected."""
    return {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {"certificate-authority-data": _b64(ca_pem), "server": server_url},
                "name": cluster_name,
            }
        ],
        "contexts": [{"context": {"cluster": cluster_name, "user": user}, "name": context}],
        "current-context": context,
        "kind": "Config",
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
    }


def write_kubeconfig(
    path: Path,
    server_url: str,
    ca_pem: bytes,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    *,
    cluster_name: str = "k8py",
    user: str = "kubernetes-admin",
    context: str = "kubernetes-admin@k8py",
) -> Path:
    """Write :func:`kubeconfig_dict` as YAML to ``path`` (mode 0600) and return the path."""
    config = kubeconfig_dict(
        server_url,
        ca_pem,
        client_cert_pem,
        client_key_pem,
        cluster_name=cluster_name,
        user=user,
        context=context,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, yaml.safe_dump(config, sort_keys=False, default_flow_style=False).encode(), mode=0o600)
    return path


def component_kubeconfig(
    pki_dir: Path, path: Path, server_url: str, stem: str, user: str, organizations: Sequence[str] = ()
) -> Path:
    """A component's kubeconfig at ``path`` with its own client certificate ``<stem>.crt`` from
    the cluster CA in ``pki_dir`` (made once, then reused), as kubeadm writes scheduler.conf."""
    pair = ensure_client_cert(pki_dir, stem, user, organizations)
    return write_kubeconfig(
        path,
        server_url,
        PKIPaths.in_dir(pki_dir).ca_cert.read_bytes(),
        pair.cert_pem(),
        pair.key_pem(),
        user=user,
        context=f"{user}@k8py",
    )
