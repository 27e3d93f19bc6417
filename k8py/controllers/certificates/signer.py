"""``csrsigning``: issues the certificates of approved CSRs (``pkg/controller/certificates/signer``).

The kubernetes.io signers kube-controller-manager runs, all with the cluster CA
(``--cluster-signing-cert-file``/``--cluster-signing-key-file``; without them the controller
does nothing, as upstream leaves the signers off):

* ``kube-apiserver-client``: usages client auth, optionally digital signature and key encipherment;
* ``kube-apiserver-client-kubelet``: a kubelet's client certificate (ValidateKubeletClientCSR);
* ``kubelet-serving``: a kubelet's serving certificate (ValidateKubeletServingCSR);
* ``legacy-unknown``: anything.

A request its signer refuses gets a Failed condition (reason SignerValidationFailure). The
certificate lasts ``--cluster-signing-duration``, or the CSR's expirationSeconds when shorter
(at least 10 minutes), backdated by 1% of that (5 minutes at most) for clock skew, and never
beyond the CA's own expiry (PermissiveSigningPolicy).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from k8py.api.certificates import (
    FAILED,
    KUBE_APISERVER_CLIENT,
    KUBE_APISERVER_CLIENT_KUBELET,
    KUBELET_SERVING,
    LEGACY_UNKNOWN,
    has_true_condition,
    is_approved,
    parse_csr,
    request_pem,
    validate_kubelet_client_csr,
    validate_kubelet_serving_csr,
)
from k8py.api.meta import now
from k8py.bootstrap.pki import CertificateAuthority, load_ca
from k8py.controllers.base import QueueController
from k8py.controllers.certificates import CSRS, watch_csrs

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_DURATION = dt.timedelta(days=365)
MIN_REQUESTED_DURATION = dt.timedelta(minutes=10)
_MAX_BACKDATE = dt.timedelta(minutes=5)

_KEY_USAGES = {
    "signing": "digital_signature",
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
_EXT_KEY_USAGES = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
}


def _api_server_client_usages(_req: x509.CertificateSigningRequest, usages: Iterable[str]) -> None:
    """validAPIServerClientUsages: client auth, plus optionally digital signature and key encipherment."""
    usages = list(usages)
    for u in usages:
        if u not in ("digital signature", "key encipherment", "client auth"):
            raise ValueError(f"invalid usage for client certificate: {u}")
    if "client auth" not in usages:
        raise ValueError("missing required usage for client certificate: client auth")


# signerName -> the check its requests must pass
SIGNERS: dict[str, Callable[[x509.CertificateSigningRequest, Iterable[str]], None]] = {
    KUBE_APISERVER_CLIENT: _api_server_client_usages,
    KUBE_APISERVER_CLIENT_KUBELET: validate_kubelet_client_csr,
    KUBELET_SERVING: validate_kubelet_serving_csr,
    LEGACY_UNKNOWN: lambda _req, _usages: None,
}


def duration(ttl: dt.timedelta, expiration_seconds: int | None) -> dt.timedelta:
    """The signer's duration: its TTL, or the requested expirationSeconds when shorter (10 minutes at least)."""
    if expiration_seconds is None:
        return ttl
    return max(min(dt.timedelta(seconds=expiration_seconds), ttl), MIN_REQUESTED_DURATION)


def _key_usage(usages: Iterable[str]) -> x509.KeyUsage | None:
    flags = {v: False for v in _KEY_USAGES.values()}
    for u in usages:
        if u in _KEY_USAGES:
            flags[_KEY_USAGES[u]] = True
    if not flags["key_agreement"]:  # encipher/decipher only qualify key agreement
        flags["encipher_only"] = flags["decipher_only"] = False
    return x509.KeyUsage(**flags) if any(flags.values()) else None


def sign(ca: CertificateAuthority, req: x509.CertificateSigningRequest, usages: list[str], ttl: dt.timedelta) -> bytes:
    """A PEM certificate for the request's subject, key and SANs, with `usages`, valid `ttl`."""
    start = dt.datetime.now(dt.UTC) - min(_MAX_BACKDATE, ttl / 100)
    builder = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(ca.cert.subject)
        .public_key(req.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + ttl, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(req.public_key()), critical=False)
    )
    if (key_usage := _key_usage(usages)) is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if ext := list(dict.fromkeys(_EXT_KEY_USAGES[u] for u in usages if u in _EXT_KEY_USAGES)):
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
    try:
        ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    except x509.ExtensionNotFound:
        pass
    try:
        sans = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        builder = builder.add_extension(sans, critical=False)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class CSRSigningController(QueueController):
    name = "csrsigning"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("csrsigning", 5))
        self.client = ctx.client
        opts = ctx.options
        self.ca: CertificateAuthority | None = None
        if opts.cluster_signing_cert_file and opts.cluster_signing_key_file:
            self.ca = load_ca(Path(opts.cluster_signing_cert_file), Path(opts.cluster_signing_key_file))
        self.ttl = dt.timedelta(seconds=opts.cluster_signing_duration)
        self.csrs = ctx.informers.informer_for(CSRS)
        watch_csrs(self, self.csrs)

    async def run(self) -> None:
        if self.ca is None:
            log.warning("csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file: not signing")
            return
        await super().run()

    async def sync(self, key: str) -> None:
        csr = self.csrs.indexer.get_by_key(key)
        if csr is None or not is_approved(csr) or has_true_condition(csr, FAILED):
            return
        status, spec = csr.get("status") or {}, csr.get("spec") or {}
        check = SIGNERS.get(spec.get("signerName", ""))
        if status.get("certificate") or check is None or self.ca is None:
            return
        usages = spec.get("usages") or []
        try:
            req = parse_csr(request_pem(csr))
        except ValueError as e:
            raise ValueError(f"unable to parse csr {key!r}: {e}") from None
        try:
            check(req, usages)
        except ValueError as e:
            condition = {"type": FAILED, "status": "True", "reason": "SignerValidationFailure",
                         "message": str(e), "lastUpdateTime": now()}
            conditions = [*(status.get("conditions") or []), condition]
            await self.client.update_status(CSRS, {**csr, "status": {**status, "conditions": conditions}})
            return
        pem = sign(self.ca, req, usages, duration(self.ttl, spec.get("expirationSeconds")))
        certificate = base64.b64encode(pem).decode()
        await self.client.update_status(CSRS, {**csr, "status": {**status, "certificate": certificate}})
