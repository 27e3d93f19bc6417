"""`k8py certs check-expiration` and `k8py certs renew` (kubeadm's cmd/kubeadm/app/phases/certs/renewal):
the control plane's leaf certificates and the client certificates embedded in its kubeconfig files,
renewed with the same subject and names (a new key, one more year), signed by the CAs in place.
kubelet.conf is not among them: the kubelet rotates its own certificate.

A CA whose key is not on the node is externally managed (kubeadm's rule), and so are the
certificates it signed: they are listed as such and not renewed; those of them that are not on the
node either (a local etcd's, with an external etcd) are left out.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509

from k8py.api.duration import short_human_duration
from k8py.bootstrap.pki import CertificateAuthority, atomic_write, load_ca, renew_cert
from k8py.kubeadm.certs import CAS, LEAVES, Leaf, paths, renew_leaf
from k8py.kubeadm.kubeconfigs import embedded_client_cert, read_kubeconfig

# what kubeadm prints when each is renewed ("certificate ... renewed")
PURPOSE = {
    "admin.conf": "embedded in the kubeconfig file for the admin to use and for kubeadm itself",
    "apiserver": "for serving the Kubernetes API",
    "apiserver-etcd-client": "the apiserver uses to access etcd",
    "apiserver-kubelet-client": "for the API server to connect to kubelet",
    "controller-manager.conf": "embedded in the kubeconfig file for the controller manager to use",
    "etcd-healthcheck-client": "for liveness probes to healthcheck etcd",
    "etcd-peer": "for etcd nodes to communicate with each other",
    "etcd-server": "for serving etcd",
    "front-proxy-client": "for the front proxy client",
    "scheduler.conf": "embedded in the kubeconfig file for the scheduler manager to use",
    "super-admin.conf": "embedded in the kubeconfig file for the super-admin",
}
RENEWABLE = tuple(sorted(PURPOSE))  # kubeadm lists them alphabetically
CA_DISPLAY = {ca.name: ca.name.replace("/", "-") for ca in CAS}  # etcd/ca -> etcd-ca


@dataclass(frozen=True)
class Expiration:
    name: str
    expires: dt.datetime | None  # None: the file is missing
    ca: str
    external: bool = False  # its CA's key is not here


def _external(cert_dir: Path, ca: str) -> bool:
    return not paths(cert_dir, ca)[1].exists()


def _leaf(name: str) -> Leaf | None:
    return next((leaf for leaf in LEAVES if leaf.name == name), None)


def expirations(cert_dir: Path, kubernetes_dir: Path) -> tuple[list[Expiration], list[Expiration]]:
    """(the renewable certificates, the CAs), each with its expiry."""
    certs = []
    for name in RENEWABLE:
        leaf = _leaf(name)
        ca = leaf.ca if leaf is not None else "ca"
        external = _external(cert_dir, ca)
        try:
            if leaf is not None:
                cert = x509.load_pem_x509_certificate(paths(cert_dir, leaf.base)[0].read_bytes())
            else:
                cert = embedded_client_cert(read_kubeconfig(kubernetes_dir / name))
            certs.append(Expiration(name, cert.not_valid_after_utc, CA_DISPLAY[ca], external))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            if not external:
                certs.append(Expiration(name, None, CA_DISPLAY[ca]))
    cas = []
    for ca in sorted(CAS, key=lambda c: CA_DISPLAY[c.name]):
        external = _external(cert_dir, ca.name)
        try:
            cert = x509.load_pem_x509_certificate(paths(cert_dir, ca.name)[0].read_bytes())
            cas.append(Expiration(CA_DISPLAY[ca.name], cert.not_valid_after_utc, "", external))
        except (OSError, ValueError):
            if not external:
                cas.append(Expiration(CA_DISPLAY[ca.name], None, ""))
    return certs, cas


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _when(e: Expiration, now: dt.datetime) -> tuple[str, str]:
    if e.expires is None:
        return "<missing>", ""
    return e.expires.strftime("%b %d, %Y %H:%M UTC"), short_human_duration((e.expires - now).total_seconds())


def check_expiration(cert_dir: Path, kubernetes_dir: Path, now: dt.datetime | None = None) -> str:
    """kubeadm's two tables: certificates, then certificate authorities."""
    now = now or dt.datetime.now(dt.UTC)
    certs, cas = expirations(cert_dir, kubernetes_dir)
    rows = [["CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED"]]
    rows += [[e.name, *_when(e, now), e.ca, _yes_no(e.external)] for e in certs]
    ca_rows = [["CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"]]
    ca_rows += [[e.name, *_when(e, now), _yes_no(e.external)] for e in cas]
    return f"{_table(rows)}\n\n{_table(ca_rows)}\n"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _renew_kubeconfig(path: Path, ca: CertificateAuthority) -> None:
    doc = read_kubeconfig(path)
    pair = renew_cert(ca, embedded_client_cert(doc))
    user = doc["users"][0]["user"]
    user["client-certificate-data"] = base64.b64encode(pair.cert_pem()).decode()
    user["client-key-data"] = base64.b64encode(pair.key_pem()).decode()
    atomic_write(path, yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode(), mode=0o600)


def renew(names: list[str], cert_dir: Path, kubernetes_dir: Path) -> list[str]:
    """Renew ``names`` (or every renewable one for ``["all"]``); the lines kubeadm prints."""
    def ca_of(name: str) -> str:
        leaf = _leaf(name)
        return leaf.ca if leaf is not None else "ca"

    if names == ["all"]:
        wanted = [n for n in RENEWABLE if not _external(cert_dir, ca_of(n))]
    else:
        wanted = names
    unknown = [n for n in wanted if n not in PURPOSE]
    if unknown:
        raise ValueError(f"unknown certificate(s) {', '.join(unknown)}: expected all or one of {', '.join(RENEWABLE)}")
    external = [n for n in wanted if _external(cert_dir, ca_of(n))]
    if external:
        raise ValueError(f"{', '.join(external)}: externally managed (the key of their CA is not in {cert_dir})")
    cas = {ca: load_ca(*paths(cert_dir, ca)) for ca in {ca_of(n) for n in wanted}}
    lines = []
    for name in wanted:
        if (leaf := _leaf(name)) is not None:
            renew_leaf(cert_dir, leaf, cas)
        else:
            _renew_kubeconfig(kubernetes_dir / name, cas["ca"])
        lines.append(f"certificate {PURPOSE[name]} renewed")
    return lines
