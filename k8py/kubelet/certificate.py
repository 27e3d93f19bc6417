"""The kubelet's certificates: TLS bootstrapping and rotation (``pkg/kubelet/certificate``,
``k8s.io/client-go/util/certificate``).

Bootstrapping (``--bootstrap-kubeconfig``, :func:`load_client_cert`): when the ``--kubeconfig``
file is missing or its client certificate has expired, the kubelet asks for a client certificate
with the bootstrap credentials: an ECDSA P-256 key (kept in ``kubelet-client.key.tmp`` until
done, so that a restart asks again under the same CSR name), a CSR ``node-csr-<digest>`` for the
``kubernetes.io/kube-apiserver-client-kubelet`` signer with CN ``system:node:<node>``, O
``system:nodes`` and usages digital signature and client auth. Once the CSR is approved (the
csrapproving controller does that for system:bootstrappers) and issued, certificate and key go to
``<root>/pki/kubelet-client-<time>.pem``, linked as ``kubelet-client-current.pem``, and the
kubeconfig is written naming that file, with the bootstrap kubeconfig's server and CA.

Rotation (:class:`CertificateManager`): client-go's certificate manager renews a certificate at
a jittered 70-84% of its lifetime (sooner when what it should say has changed, such as a serving
certificate's addresses) through a new CSR made with the current credentials, stores it the same
way and hands it to ``on_rotate``: the API client's TLS context (:class:`RotatingClientConfig`)
for ``--rotate-certificates``, the kubelet server's for ``--rotate-server-certificates``
(``kubernetes.io/kubelet-serving``, whose CSRs an administrator approves: ``kubectl certificate
approve``). Until its first serving certificate is issued the kubelet serves with its self-signed
one (upstream fails TLS handshakes meanwhile). Connections already open keep the certificate they
were opened with (upstream closes them); every new one presents the renewed certificate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k8py.api.certificates import (
    DENIED,
    FAILED,
    KUBE_APISERVER_CLIENT_KUBELET,
    KUBELET_SERVING,
    conditions,
    is_approved,
)
from k8py.bootstrap.pki import atomic_write, generate_key, key_pem
from k8py.client import (
    ClientConfig,
    ClientError,
    ConfigError,
    RESTClient,
    TransportError,
    is_already_exists,
    load_kubeconfig,
)
from k8py.client.resources import CERTIFICATE_SIGNING_REQUESTS as CSRS

log = logging.getLogger(__name__)

Obj = dict[str, Any]
CLIENT_PAIR, SERVER_PAIR = "kubelet-client", "kubelet-server"
# ECDSA keys: no key encipherment (upstream adds it for RSA keys only)
CLIENT_USAGES = ("digital signature", "client auth")
SERVER_USAGES = ("digital signature", "server auth")
BOOTSTRAP_TIMEOUT = 3600.0  # how long bootstrapping waits for the certificate
ROTATION_TIMEOUT = 900.0  # how long a renewal waits for its certificate before trying again


@dataclass(frozen=True)
class CertificateOptions:
    """The kubelet's certificate flags."""

    kubeconfig: Path | None = None  # --kubeconfig (written by bootstrapping)
    bootstrap_kubeconfig: Path | None = None  # --bootstrap-kubeconfig
    rotate_certificates: bool = False  # --rotate-certificates: the client certificate
    rotate_server_certificates: bool = False  # --rotate-server-certificates: the serving certificate, by CSR


class CertificateError(Exception):
    """A CSR that was denied or failed, or a certificate that did not come in time."""


@dataclass(frozen=True)
class Template:
    """What a certificate should say: CN, O, and for serving certificates the SANs."""

    common_name: str
    organizations: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def matches(self, cert: x509.Certificate) -> bool:
        cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns, ips = set(sans.get_values_for_type(x509.DNSName)), {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
        except x509.ExtensionNotFound:
            dns, ips = set(), set()
        return (cn == [self.common_name] and sorted(orgs) == sorted(self.organizations)
                and dns == set(self.dns_names) and ips == set(self.ip_addresses))

    def csr_pem(self, key: ec.EllipticCurvePrivateKey) -> bytes:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in self.organizations]
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, self.common_name)])
        )
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in self.dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in self.ip_addresses]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def client_template(node_name: str) -> Template:
    return Template(f"system:node:{node_name}", ("system:nodes",))


def serving_template(node_name: str, hostnames: Sequence[str], ips: Sequence[str]) -> Template:
    return Template(f"system:node:{node_name}", ("system:nodes",), tuple(dict.fromkeys(hostnames)), tuple(dict.fromkeys(ips)))


class FileStore:
    """certificate.NewFileStore: `<dir>/<pair>-<time>.pem` (certificate, then key; mode 0600), the
    current one linked as `<pair>-current.pem`."""

    def __init__(self, directory: Path, pair: str) -> None:
        self.directory = directory
        self.pair = pair

    @property
    def current_path(self) -> Path:
        return self.directory / f"{self.pair}-current.pem"

    def current(self) -> x509.Certificate | None:
        """The current certificate, if there is one that loads with its key."""
        try:
            data = self.current_path.read_bytes()
            serialization.load_pem_private_key(data, password=None)
            return x509.load_pem_x509_certificate(data)
        except (OSError, ValueError):
            return None

    def update(self, cert_pem: bytes, key: ec.EllipticCurvePrivateKey) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
        path = self.directory / f"{self.pair}-{stamp}.pem"
        atomic_write(path, cert_pem + key_pem(key), mode=0o600)
        link = self.directory / f".{self.pair}-current.pem.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(path.name)
        os.replace(link, self.current_path)
        return path


def still_valid(cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
    now = now or dt.datetime.now(dt.UTC)
    return cert.not_valid_before_utc <= now < cert.not_valid_after_utc


def rotation_deadline(cert: x509.Certificate) -> dt.datetime:
    """nextRotationDeadline: 70% of the lifetime plus up to 20% of that (wait.Jitter(0.7 * total, 0.2))."""
    total = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_before_utc + total * 0.7 * (1 + 0.2 * random.random())


async def request_certificate(
    client: RESTClient, request: bytes, signer: str, usages: Sequence[str], *, name: str = ""
) -> Obj:
    """Create the CSR (`name`, else generateName csr-); an existing one of that name is reused when it
    asks for the same thing (a restart during bootstrapping)."""
    body: Obj = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name} if name else {"generateName": "csr-"},
        "spec": {"request": base64.b64encode(request).decode(), "signerName": signer, "usages": list(usages)},
    }
    try:
        return await client.create(CSRS, body)
    except ClientError as e:
        if not name or not is_already_exists(e):
            raise
    existing = await client.get(CSRS, name)
    spec = existing.get("spec") or {}
    if spec.get("request") != body["spec"]["request"] or spec.get("signerName") != signer:
        raise CertificateError(f"retrieved csr {name} is not compatible")
    return existing


def _issued(csr: Obj) -> bytes | None:
    """The CSR's certificate; CertificateError once it is denied or failed."""
    for type_, what in ((DENIED, "is denied"), (FAILED, "failed")):
        for c in conditions(csr, type_):
            raise CertificateError(
                f"certificate signing request {what}, reason: {c.get('reason', '')}, message: {c.get('message', '')}"
            )
    cert = (csr.get("status") or {}).get("certificate")
    return base64.b64decode(cert) if cert and is_approved(csr) else None


async def wait_for_certificate(client: RESTClient, csr: Obj, timeout: float) -> bytes:
    """csr.WaitForCertificate: watch the CSR until it is issued (CertificateError if denied or failed)."""
    name = csr["metadata"]["name"]

    async def watch() -> bytes:
        current = csr
        while True:
            if (cert := _issued(current)) is not None:
                return cert
            rv = current["metadata"].get("resourceVersion")
            with contextlib.suppress(TransportError):
                async for event in client.watch(CSRS, field_selector=f"metadata.name={name}", resource_version=rv,
                                                timeout_seconds=60):
                    if event.type == "DELETED":
                        raise CertificateError(f"csr {name} was deleted")
                    if (cert := _issued(event.object)) is not None:
                        return cert
            current = await client.get(CSRS, name)

    try:
        return await asyncio.wait_for(watch(), timeout)
    except TimeoutError:
        raise CertificateError(f"timed out waiting for the certificate of csr {name}") from None


async def obtain(
    client: RESTClient, template: Template, key: ec.EllipticCurvePrivateKey, signer: str, usages: Sequence[str],
    *, name: str = "", timeout: float,
) -> bytes:
    """Request a certificate for `key` as `template` says and wait for it (PEM)."""
    csr = await request_certificate(client, template.csr_pem(key), signer, usages, name=name)
    log.info("kubelet: waiting for the certificate of csr %s (%s)", csr["metadata"]["name"], signer)
    return await wait_for_certificate(client, csr, timeout)


def bootstrap_csr_name(key: ec.EllipticCurvePrivateKey, template: Template, usages: Sequence[str]) -> str:
    """digestedName: node-csr- and a digest of the public key, subject and usages."""
    digest = hashlib.sha512()
    digest.update(key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    digest.update(f"{template.common_name}|{','.join(template.organizations)}|{','.join(usages)}".encode())
    return "node-csr-" + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def kubeconfig_still_valid(path: Path) -> bool:
    """isClientConfigStillValid: the kubeconfig loads and its client certificate (if any) is current."""
    try:
        config = load_kubeconfig(path)
    except ConfigError:
        return False
    if config.client_cert_pem is None:
        return True
    try:
        return all(still_valid(c) for c in x509.load_pem_x509_certificates(config.client_cert_pem))
    except ValueError:
        return False


def write_kubelet_kubeconfig(path: Path, bootstrap: ClientConfig, cert_file: Path) -> None:
    """The kubeconfig a bootstrapped kubelet uses: the bootstrap server and CA, the stored pair's file."""
    cluster: Obj = {"server": bootstrap.server}
    if bootstrap.ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(bootstrap.ca_pem).decode()
    if bootstrap.insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster}],
        "users": [{"name": "default-auth", "user": {"client-certificate": str(cert_file), "client-key": str(cert_file)}}],
        "contexts": [{"name": "default-context", "context": {"cluster": "default-cluster", "user": "default-auth"}}],
        "current-context": "default-context",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, yaml.safe_dump(doc, sort_keys=False).encode(), mode=0o600)


async def load_client_cert(kubeconfig: Path, bootstrap_kubeconfig: Path, cert_dir: Path, node_name: str) -> bool:
    """LoadClientCert: make `kubeconfig` usable, asking for a certificate with the bootstrap credentials
    when it is missing or expired (see the module docstring). True when a certificate was requested."""
    if kubeconfig_still_valid(kubeconfig):
        return False
    bootstrap = load_kubeconfig(bootstrap_kubeconfig)
    store = FileStore(cert_dir, CLIENT_PAIR)
    current = store.current()
    if current is not None and still_valid(current):  # the kubeconfig went, the certificate did not
        write_kubelet_kubeconfig(kubeconfig, bootstrap, store.current_path)
        return False
    tmp_key = cert_dir / f"{CLIENT_PAIR}.key.tmp"
    key = _load_key(tmp_key)
    if key is None:
        key = generate_key()
        cert_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(tmp_key, key_pem(key), mode=0o600)
    template = client_template(node_name)
    async with RESTClient(bootstrap, component="kubelet") as client:
        cert = await obtain(client, template, key, KUBE_APISERVER_CLIENT_KUBELET, CLIENT_USAGES,
                            name=bootstrap_csr_name(key, template, CLIENT_USAGES), timeout=BOOTSTRAP_TIMEOUT)
    store.update(cert, key)
    tmp_key.unlink(missing_ok=True)
    write_kubelet_kubeconfig(kubeconfig, bootstrap, store.current_path)
    return True


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def rotating_client_config(config: ClientConfig, cert_dir: Path) -> RotatingClientConfig:
    """The client config of --rotate-certificates: with the stored certificate when it is current (a
    rotated one wins over the kubeconfig's, which only seeds the rotation), else as `config` says."""
    store = FileStore(cert_dir, CLIENT_PAIR)
    current = store.current()
    if current is not None and still_valid(current):
        data = store.current_path.read_bytes()
        config = dataclasses.replace(config, client_cert_pem=data, client_key_pem=data)
    return RotatingClientConfig.of(config)


class RotatingClientConfig(ClientConfig):
    """A ClientConfig whose one TLS context (every connection the client opens uses it) takes a
    renewed client certificate: :meth:`load` is the client's credential hot swap."""

    @classmethod
    def of(cls, config: ClientConfig) -> RotatingClientConfig:
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})

    @cached_property
    def _context(self) -> ssl.SSLContext | None:
        return super().ssl_context()

    def ssl_context(self) -> ssl.SSLContext | None:
        return self._context

    def load(self, pem_file: Path) -> None:
        """New connections present the certificate and key in `pem_file`."""
        if self._context is not None:
            self._context.load_cert_chain(pem_file)


class CertificateManager:
    """Keeps a certificate current: renews it through a CSR at its rotation deadline (or at once when
    there is none, or it no longer says what `template` says), then calls `on_rotate` with the file."""

    def __init__(
        self,
        client: RESTClient,
        store: FileStore,
        template: Callable[[], Template],
        signer: str,
        usages: Sequence[str],
        on_rotate: Callable[[Path], None],
        initial: x509.Certificate | None = None,
    ) -> None:
        """`initial`: the certificate in use while the store has none (the kubeconfig's)."""
        self.client = client
        self.store = store
        self.template = template
        self.signer = signer
        self.usages = usages
        self.on_rotate = on_rotate
        self.initial = initial

    def _deadline(self) -> dt.datetime:
        current = self.store.current() or self.initial
        now = dt.datetime.now(dt.UTC)
        if current is None or not still_valid(current) or not self.template().matches(current):
            return now
        return rotation_deadline(current)

    async def run(self) -> None:
        failures = 0
        while True:
            wait = (self._deadline() - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0:
                log.info("kubelet: %s certificate rotation in %.0fs", self.store.pair, wait)
                await asyncio.sleep(wait)
            try:
                await self.rotate()
                failures = 0
            except (ClientError, TransportError, CertificateError) as e:
                failures += 1
                log.warning("kubelet: renewing the %s certificate failed: %s", self.store.pair, e)
                await asyncio.sleep(min(2.0**failures, 128.0))

    async def rotate(self) -> None:
        key = generate_key()
        cert = await obtain(self.client, self.template(), key, self.signer, self.usages, timeout=ROTATION_TIMEOUT)
        path = self.store.update(cert, key)
        self.on_rotate(self.store.current_path)
        log.info("kubelet: rotated the %s certificate: %s", self.store.pair, path.name)


def client_manager(client: RESTClient, cert_dir: Path, node_name: str) -> CertificateManager:
    """--rotate-certificates: the client certificate, swapped into the client's TLS context."""
    config = client.config
    if not isinstance(config, RotatingClientConfig):
        raise TypeError("--rotate-certificates needs a client made from a RotatingClientConfig")
    initial = x509.load_pem_x509_certificate(config.client_cert_pem) if config.client_cert_pem else None
    return CertificateManager(client, FileStore(cert_dir, CLIENT_PAIR), lambda: client_template(node_name),
                              KUBE_APISERVER_CLIENT_KUBELET, CLIENT_USAGES, config.load, initial)


def serving_manager(
    client: RESTClient, cert_dir: Path, template: Callable[[], Template], on_rotate: Callable[[Path], None]
) -> CertificateManager:
    """--rotate-server-certificates: the serving certificate, from kubernetes.io/kubelet-serving."""
    return CertificateManager(client, FileStore(cert_dir, SERVER_PAIR), template, KUBELET_SERVING, SERVER_USAGES, on_rotate)
