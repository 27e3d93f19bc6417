"""The cluster PKI: a CA, the API server's serving certificate and the admin client certificate.

This mirrors what ``kubeadm init phase certs`` lays out, reduced to what a k8py control plane
needs today, with ECDSA P-256 keys throughout: generating one takes about a millisecond, so
bootstrapping a cluster (or a test fixture) never waits on RSA key generation.

Certificates carry the extensions both TLS stacks we must satisfy check for: Go's crypto/tls
(kubectl, client-go, operators) and OpenSSL through Python's ``ssl`` (aiohttp, urllib3 and the
official ``kubernetes`` client), including OpenSSL's ``VERIFY_X509_STRICT`` mode:

* CA: basicConstraints CA:TRUE (critical), keyUsage certSign/cRLSign/digitalSignature
  (critical), subject and authority key identifiers; valid 10 years, like kubeadm's.
* Leaves: basicConstraints CA:FALSE (critical), keyUsage digitalSignature (critical; the only
  usage an ECDSA key has in TLS), extendedKeyUsage serverAuth or clientAuth, SANs for serving
  certificates, key identifiers; valid 1 year.  Validity starts 5 minutes in the past to
  tolerate clock skew between nodes.

Client certificates name the user in the subject CN and the groups in O, which is how
kube-apiserver's x509 authenticator reads them; :func:`peer_identity` does the same with the
dict Python's ``ssl`` reports for a verified peer.

:func:`ensure_pki` is idempotent: existing files are reused across restarts, and a leaf is
reissued only when it is missing, unreadable, expired, not issued by the CA on disk, or (for
the serving certificate) lacks a requested name.  The service account key pair (``sa.key``,
``sa.pub``: kubeadm's names) signs and verifies service account tokens; it is no certificate and
is kept as long as it loads, so tokens outlive restarts (and a new CA).  Private keys are
written with mode 0600, atomically (temporary file, then rename), so a crash never leaves a
half-written key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
_BACKDATE = dt.timedelta(minutes=5)

# The names every kube-apiserver serving certificate carries (kubeadm's GetAPIServerAltNames).
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS = ("127.0.0.1",)
ADMIN_USER = "kubernetes-admin"
ADMIN_GROUP = "system:masters"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CertKeyPair(NamedTuple):
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return key_pem(self.key)


class CertificateAuthority(CertKeyPair):
    """A CA certificate with the key that signs leaves; unpacks as ``(cert, key)``."""


@dataclass(frozen=True, slots=True)
class PKIPaths:
    """Where :func:`ensure_pki` keeps the cluster's certificates and keys."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    apiserver_cert: Path
    apiserver_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path  # signs service account tokens (kube-apiserver's --service-account-signing-key-file)
    sa_pub: Path  # verifies them (--service-account-key-file)

    @classmethod
    def in_dir(cls, directory: Path) -> PKIPaths:
        d = Path(directory)
        return cls(
            directory=d,
            ca_cert=d / "ca.crt",
            ca_key=d / "ca.key",
            apiserver_cert=d / "apiserver.crt",
            apiserver_key=d / "apiserver.key",
            admin_cert=d / "admin.crt",
            admin_key=d / "admin.key",
            sa_key=d / "sa.key",
            sa_pub=d / "sa.pub",
        )


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as SEC1 ``EC PRIVATE KEY`` PEM, the form kubeadm writes."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _ski(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _validity(builder: x509.CertificateBuilder, duration: dt.timedelta) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - _BACKDATE).not_valid_after(now + duration)


def create_ca(common_name: str = "kubernetes") -> CertificateAuthority:
    """A self-signed CA valid for 10 years."""
    key = generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = _ski(key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    cert = _validity(builder, CA_VALIDITY).sign(key, hashes.SHA256())
    return CertificateAuthority(cert, key)


def _issue(
    ca: CertificateAuthority,
    subject: x509.Name,
    usages: Sequence[x509.ObjectIdentifier],
    san: x509.SubjectAlternativeName | None,
) -> CertKeyPair:
    key = generate_key()
    try:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:  # a CA made elsewhere without an SKI
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(_ski(key), critical=False)
        .add_extension(aki, critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = _validity(builder, LEAF_VALIDITY).sign(ca.key, hashes.SHA256())
    return CertKeyPair(cert, key)


def issue_serving_cert(
    ca: CertificateAuthority,
    common_name: str,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str | IPAddress],
) -> CertKeyPair:
    """A serverAuth certificate for the given DNS names and IP addresses, valid 1 year."""
    return issue_cert(ca, common_name, server=True, dns_names=dns_names, ip_addresses=ip_addresses)


def issue_client_cert(
    ca: CertificateAuthority, common_name: str, organizations: Sequence[str] = ()
) -> CertKeyPair:
    """A clientAuth certificate: CN is the user name, each O a group; valid 1 year."""
    return issue_cert(ca, common_name, organizations, client=True)


def issue_cert(
    ca: CertificateAuthority,
    common_name: str,
    organizations: Sequence[str] = (),
    *,
    server: bool = False,
    client: bool = False,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str | IPAddress] = (),
) -> CertKeyPair:
    """A leaf certificate for serverAuth and/or clientAuth, with SANs when given; valid 1 year."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usages = [u for u, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, server), (ExtendedKeyUsageOID.CLIENT_AUTH, client))
              if wanted]
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
    names += [x509.IPAddress(ip) for ip in dict.fromkeys(ipaddress.ip_address(a) for a in ip_addresses)]
    return _issue(ca, x509.Name(attrs), usages, x509.SubjectAlternativeName(names) if names else None)


def renew_cert(ca: CertificateAuthority, cert: x509.Certificate) -> CertKeyPair:
    """A new key and certificate with ``cert``'s subject, extended key usages and SANs (kubeadm's renewal)."""
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = []
    try:
        san: x509.SubjectAlternativeName | None = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        san = None
    return _issue(ca, cert.subject, usages, san)


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, with ``mode``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pair(pair: CertKeyPair, cert_path: Path, key_path: Path) -> None:
    """Write the key (mode 0600) and then the certificate (mode 0644) as PEM."""
    atomic_write(key_path, pair.key_pem(), mode=0o600)
    atomic_write(cert_path, pair.cert_pem(), mode=0o644)


def load_pair(cert_path: Path, key_path: Path) -> CertKeyPair:
    """Read a PEM certificate and its unencrypted EC key; ValueError if they do not belong together."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: not an EC private key")
    if key.public_key() != cert.public_key():
        raise ValueError(f"{key_path} does not match {cert_path}")
    return CertKeyPair(cert, key)


def load_ca(cert_path: Path, key_path: Path) -> CertificateAuthority:
    return CertificateAuthority(*load_pair(cert_path, key_path))


def _san_names(cert: x509.Certificate) -> tuple[set[str], set[IPAddress]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(san.get_values_for_type(x509.DNSName)), set(san.get_values_for_type(x509.IPAddress))


def _reusable_leaf(
    cert_path: Path,
    key_path: Path,
    ca: CertificateAuthority,
    dns_names: Iterable[str] = (),
    ips: Iterable[IPAddress] = (),
) -> bool:
    """True when the leaf on disk loads, is current, was issued by ``ca`` and covers the names."""
    try:
        pair = load_pair(cert_path, key_path)
        pair.cert.verify_directly_issued_by(ca.cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    if pair.cert.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        return False
    have_dns, have_ips = _san_names(pair.cert)
    return set(dns_names) <= have_dns and set(ips) <= have_ips


def ensure_pki(directory: Path, hostnames: Iterable[str] = (), ips: Iterable[str] = ()) -> PKIPaths:
    """Create or reuse the CA, the API server and admin certificates and the service account keys in ``directory``.

    The API server certificate covers localhost, this machine's host name, the
    ``kubernetes.default.svc...`` names and 127.0.0.1, plus ``hostnames`` and ``ips``.
    """
    paths = PKIPaths.in_dir(directory)
    paths.directory.mkdir(parents=True, exist_ok=True)
    try:
        ca = load_ca(paths.ca_cert, paths.ca_key)
    except (OSError, ValueError):
        ca = create_ca()
        save_pair(ca, paths.ca_cert, paths.ca_key)

    dns_names = list(dict.fromkeys([*APISERVER_DNS_NAMES, socket.gethostname().lower(), *hostnames]))
    ip_addrs = list(dict.fromkeys(ipaddress.ip_address(a) for a in [*APISERVER_IPS, *ips]))
    if not _reusable_leaf(paths.apiserver_cert, paths.apiserver_key, ca, dns_names, ip_addrs):
        save_pair(
            issue_serving_cert(ca, "kube-apiserver", dns_names, ip_addrs),
            paths.apiserver_cert,
            paths.apiserver_key,
        )
    if not _reusable_leaf(paths.admin_cert, paths.admin_key, ca):
        save_pair(issue_client_cert(ca, ADMIN_USER, [ADMIN_GROUP]), paths.admin_cert, paths.admin_key)
    ensure_service_account_key(paths)
    return paths


def ensure_service_account_key(paths: PKIPaths) -> bool:
    """Create the service account key pair (``sa.key``/``sa.pub``) unless a usable one exists; True if created."""
    if load_service_account_key(paths) is not None:
        return False
    key = generate_key()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write(paths.sa_key, key_pem(key), mode=0o600)
    atomic_write(paths.sa_pub, public, mode=0o644)
    return True


def ensure_client_cert(directory: Path, stem: str, common_name: str, organizations: Sequence[str] = ()) -> CertKeyPair:
    """Create or reuse ``<stem>.crt``/``<stem>.key`` in ``directory``: a client certificate from the
    cluster CA there, for a component's kubeconfig (``system:kube-scheduler``, ...)."""
    paths = PKIPaths.in_dir(directory)
    ca = load_ca(paths.ca_cert, paths.ca_key)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    if not _reusable_leaf(cert_path, key_path, ca):
        save_pair(issue_client_cert(ca, common_name, organizations), cert_path, key_path)
    return load_pair(cert_path, key_path)


def load_service_account_key(paths: PKIPaths) -> ec.EllipticCurvePrivateKey | None:
    """The service account signing key, or None when it is missing, unreadable or not matched by `sa.pub`."""
    try:
        key = serialization.load_pem_private_key(paths.sa_key.read_bytes(), password=None)
        public = serialization.load_pem_public_key(paths.sa_pub.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != public:
        return None
    return key


def server_ssl_context(pki: PKIPaths) -> ssl.SSLContext:
    """The API server's TLS context: its serving certificate, TLS 1.2+, optional client certificates.

    A client without a certificate completes the handshake (and is answered 401 later, except on
    health and version endpoints); a certificate is verified against the cluster CA and must
    allow clientAuth.  Unlike Go's kube-apiserver, which verifies client certificates after the
    handshake, OpenSSL rejects an untrusted client certificate during the handshake itself.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki.apiserver_cert, pki.apiserver_key)
    ctx.load_verify_locations(cafile=pki.ca_cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def peer_identity(peercert: Mapping[str, Any] | None) -> tuple[str, list[str]] | None:
    """(user, groups) from ``transport.get_extra_info("peercert")``: CN and the O values.

    Python's ``ssl`` reports the dict only for a certificate that verified, so its presence is
    the authentication.  A certificate without a CN authenticates no one, as upstream.
    """
    if not peercert:
        return None
    user = ""
    groups: list[str] = []
    for rdn in peercert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                user = value  # Go keeps the last CN, so do we
            elif attr == "organizationName":
                groups.append(value)
    return (user, groups) if user else None
