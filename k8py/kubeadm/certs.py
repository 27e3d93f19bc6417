"""kubeadm's PKI under the certificate directory (``/etc/kubernetes/pki``): three CAs, the leaves
every control-plane component uses, the service-account key pair; and what `k8py certs
check-expiration` / `renew` read and rewrite.

Layout and subjects as kubeadm's (cmd/kubeadm/app/phases/certs)::

    ca                       kubernetes                        CA
    apiserver                kube-apiserver                    serving: node name, kubernetes.default...,
                                                               the first Service IP, the advertise address,
                                                               127.0.0.1 (the node-local load balancer's
                                                               clients dial it, as k3s' do)
    apiserver-kubelet-client kube-apiserver-kubelet-client     client, O kubeadm:cluster-admins
    front-proxy-ca           front-proxy-ca                    CA
    front-proxy-client       front-proxy-client                client
    etcd/ca                  etcd-ca                           CA
    etcd/server, etcd/peer   <node name>                       serving + client: localhost, node name,
                                                               127.0.0.1, ::1, the advertise address
    etcd/healthcheck-client  kube-etcd-healthcheck-client      client
    apiserver-etcd-client    kube-apiserver-etcd-client        client
    sa.key / sa.pub          the service-account token signing key pair

An existing file is kept when it is valid for its CA and (for serving certificates) covers the
names wanted, so that the phase can be re-run; a CA is never replaced. With an external etcd the
etcd CA and its leaves are not made (kubeadm's "External etcd mode"): the configuration names the
external cluster's files, which may sit at the same paths.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from k8py.bootstrap.pki import (
    CertificateAuthority,
    CertKeyPair,
    PKIPaths,
    create_ca,
    ensure_service_account_key,
    issue_cert,
    load_ca,
    load_pair,
    renew_cert,
    save_pair,
)
from k8py.kubeadm.config import InitConfig

CLUSTER_ADMINS_GROUP = "kubeadm:cluster-admins"


@dataclass(frozen=True)
class CA:
    name: str  # kubeadm's name, also the file base: "ca", "front-proxy-ca", "etcd/ca"
    common_name: str


ETCD_CA = "etcd/ca"
CAS = (CA("ca", "kubernetes"), CA("front-proxy-ca", "front-proxy-ca"), CA(ETCD_CA, "etcd-ca"))


@dataclass(frozen=True)
class Leaf:
    name: str  # kubeadm's name, as `kubeadm certs renew <name>` takes it
    base: str  # file base under the cert dir
    ca: str
    common_name: Callable[[InitConfig], str]
    organizations: tuple[str, ...] = ()
    server: bool = False
    client: bool = False

    def alt_names(self, config: InitConfig) -> tuple[list[str], list[str]]:
        """(DNS names, IP addresses) of a serving certificate."""
        if self.name == "apiserver":
            dns = [config.node_name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   f"kubernetes.default.svc.{config.dns_domain}"]
            ips = [config.first_service_ip, config.advertise_address, "127.0.0.1"]
            extras = [config.endpoint[0]] if config.control_plane_endpoint else []
            for extra in [*extras, *config.apiserver_cert_sans]:
                (ips if _is_ip(extra) else dns).append(extra)
            return dns, ips
        if self.name in ("etcd-server", "etcd-peer"):
            return ["localhost", config.node_name], ["127.0.0.1", "::1", config.advertise_address]
        return [], []


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _fixed(name: str) -> Callable[[InitConfig], str]:
    return lambda _config: name


def _node_name(config: InitConfig) -> str:
    return config.node_name


LEAVES = (
    Leaf("apiserver", "apiserver", "ca", _fixed("kube-apiserver"), server=True),
    Leaf("apiserver-kubelet-client", "apiserver-kubelet-client", "ca", _fixed("kube-apiserver-kubelet-client"),
         (CLUSTER_ADMINS_GROUP,), client=True),
    Leaf("front-proxy-client", "front-proxy-client", "front-proxy-ca", _fixed("front-proxy-client"), client=True),
    Leaf("etcd-server", "etcd/server", "etcd/ca", _node_name, server=True, client=True),
    Leaf("etcd-peer", "etcd/peer", "etcd/ca", _node_name, server=True, client=True),
    Leaf("etcd-healthcheck-client", "etcd/healthcheck-client", "etcd/ca", _fixed("kube-etcd-healthcheck-client"),
         client=True),
    Leaf("apiserver-etcd-client", "apiserver-etcd-client", "etcd/ca", _fixed("kube-apiserver-etcd-client"),
         client=True),
)


def paths(cert_dir: Path, base: str) -> tuple[Path, Path]:
    return cert_dir / f"{base}.crt", cert_dir / f"{base}.key"


def ensure_cas(cert_dir: Path, progress: Callable[[str], None],
               cas_wanted: tuple[CA, ...] = CAS) -> dict[str, CertificateAuthority]:
    cas = {}
    for ca in cas_wanted:
        cert, key = paths(cert_dir, ca.name)
        if cert.exists() and key.exists():
            cas[ca.name] = load_ca(cert, key)
            progress(f"[certs] Using the existing \"{ca.name}\" certificate and key")
            continue
        cert.parent.mkdir(parents=True, exist_ok=True)
        cas[ca.name] = create_ca(ca.common_name)
        save_pair(cas[ca.name], cert, key)
        progress(f"[certs] Generating \"{ca.name}\" certificate and key")
    return cas


def _usable(leaf: Leaf, config: InitConfig, ca: CertificateAuthority, cert_path: Path, key_path: Path) -> bool:
    """The existing files are a pair, signed by ``ca``, unexpired, with the subject and names wanted."""
    try:
        pair = load_pair(cert_path, key_path)
    except (OSError, ValueError):
        return False
    if pair.cert.issuer != ca.cert.subject or pair.cert.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        return False
    if _subject(pair.cert) != (leaf.common_name(config), leaf.organizations):
        return False
    dns, ips = leaf.alt_names(config)
    try:
        san = pair.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not dns and not ips
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(dns) <= set(san.get_values_for_type(x509.DNSName)) and {
        str(ipaddress.ip_address(ip)) for ip in ips
    } <= have_ips


def _subject(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else "", tuple(str(o.value) for o in orgs))


def create_certs(config: InitConfig, progress: Callable[[str], None]) -> None:
    """kubeadm's `init phase certs all`."""
    cert_dir = config.cert_dir
    progress(f"[certs] Using certificateDir folder \"{cert_dir}\"")
    external = config.external_etcd is not None
    if external:
        progress(f"[certs] External etcd mode: Skipping {ETCD_CA} certificate authority generation")
    cas = ensure_cas(cert_dir, progress, tuple(ca for ca in CAS if not (external and ca.name == ETCD_CA)))
    for leaf in LEAVES:
        if leaf.ca not in cas:
            progress(f"[certs] External etcd mode: Skipping {leaf.base} certificate generation")
            continue
        cert_path, key_path = paths(cert_dir, leaf.base)
        if _usable(leaf, config, cas[leaf.ca], cert_path, key_path):
            progress(f"[certs] Using the existing \"{leaf.name}\" certificate and key")
            continue
        dns, ips = leaf.alt_names(config)
        pair = issue_cert(cas[leaf.ca], leaf.common_name(config), leaf.organizations, server=leaf.server,
                          client=leaf.client, dns_names=dns, ip_addresses=ips)
        save_pair(pair, cert_path, key_path)
        progress(f"[certs] Generating \"{leaf.name}\" certificate and key")
        if dns or ips:
            progress(f"[certs] {leaf.name} serving cert is signed for DNS names [{' '.join(dns)}] "
                     f"and IPs [{' '.join(ips)}]")
    created = ensure_service_account_key(PKIPaths.in_dir(cert_dir))
    progress("[certs] Generating \"sa\" key and public key" if created else "[certs] Using the existing \"sa\" key")


def renew_leaf(cert_dir: Path, leaf: Leaf, cas: dict[str, CertificateAuthority]) -> CertKeyPair:
    """A new key and certificate for ``leaf`` with the subject and names of the one in place."""
    cert_path, key_path = paths(cert_dir, leaf.base)
    old = x509.load_pem_x509_certificate(cert_path.read_bytes())
    pair = renew_cert(cas[leaf.ca], old)
    save_pair(pair, cert_path, key_path)
    return pair

