"""certificates.k8s.io helpers shared by the API server, the CSR controllers and the kubelet.

Upstream's ``pkg/apis/certificates`` helpers: the well-known signer names, the key usages,
parsing ``spec.request`` (``ParseCSR``), the checks a kubelet's client and serving CSRs must
pass (``ValidateKubeletClientCSR``, ``ValidateKubeletServingCSR``: as upstream, the signer and
the approver apply them, not the API's validation) and reading a CSR's Approved/Denied/Failed
conditions. Then the registry strategy (``pkg/registry/certificates``): the requesting user goes
into the spec on create, updates never change the spec, and the ``status`` and ``approval``
subresources each change their own part of the status.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k8py.api import errors
from k8py.api.meta import now

Obj = dict[str, Any]

KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"

APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"

# KeyUsage values, in upstream's order (allValidUsages)
KEY_USAGES = (
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
)

_KUBELET_CLIENT_USAGES = (
    frozenset({"digital signature", "key encipherment", "client auth"}),
    frozenset({"digital signature", "client auth"}),  # keys other than RSA
)
_KUBELET_SERVING_USAGES = (
    frozenset({"digital signature", "key encipherment", "server auth"}),
    frozenset({"digital signature", "server auth"}),
)


def request_pem(csr: Obj) -> bytes:
    """``spec.request`` (base64 on the wire) as PEM bytes; ValueError when it is not base64."""
    data = (csr.get("spec") or {}).get("request") or ""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"request is not base64: {e}") from None


def parse_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """ParseCSR: one PEM ``CERTIFICATE REQUEST`` block with a valid self-signature."""
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        req = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise ValueError(f"x509: malformed certificate request: {e}") from None
    if not req.is_signature_valid:  # CheckSignature, in Go's words
        ec_key = isinstance(req.public_key(), ec.EllipticCurvePublicKey)
        raise ValueError("x509: ECDSA verification failure" if ec_key else "crypto/rsa: verification error")
    return req


def subject(req: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    """(common name, organizations) of a request."""
    cns = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cns[0].value) if cns else ""), [str(o.value) for o in orgs]


def _sans(req: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def validate_kubelet_client_csr(req: x509.CertificateSigningRequest, usages: Iterable[str]) -> None:
    """ValidateKubeletClientCSR: O system:nodes alone, CN system:node:<name>, no SANs, client usages."""
    cn, orgs = subject(req)
    if orgs != ["system:nodes"]:
        raise ValueError("subject organization is not system:nodes")
    sans = _sans(req)
    for kind, label in ((x509.DNSName, "DNS"), (x509.RFC822Name, "Email"), (x509.IPAddress, "IP"),
                        (x509.UniformResourceIdentifier, "URI")):
        if sans is not None and sans.get_values_for_type(kind):
            raise ValueError(f"{label} subjectAltNames are not allowed")
    if not cn.startswith("system:node:"):
        raise ValueError("subject common name does not begin with system:node:")
    if frozenset(usages) not in _KUBELET_CLIENT_USAGES:
        raise ValueError("usages did not match [client auth digital signature key encipherment]")


def validate_kubelet_serving_csr(req: x509.CertificateSigningRequest, usages: Iterable[str]) -> None:
    """ValidateKubeletServingCSR: O system:nodes alone, CN system:node:<name>, DNS/IP SANs only, server usages."""
    cn, orgs = subject(req)
    if orgs != ["system:nodes"]:
        raise ValueError("subject organization is not system:nodes")
    sans = _sans(req)
    dns = sans.get_values_for_type(x509.DNSName) if sans is not None else []
    ips = sans.get_values_for_type(x509.IPAddress) if sans is not None else []
    if not dns and not ips:
        raise ValueError("DNS or IP subjectAltName is required")
    if sans is not None and sans.get_values_for_type(x509.RFC822Name):
        raise ValueError("Email subjectAltNames are not allowed")
    if sans is not None and sans.get_values_for_type(x509.UniformResourceIdentifier):
        raise ValueError("URI subjectAltNames are not allowed")
    if not cn.startswith("system:node:"):
        raise ValueError("subject common name does not begin with system:node:")
    if frozenset(usages) not in _KUBELET_SERVING_USAGES:
        raise ValueError("usages did not match [digital signature key encipherment server auth]")


def conditions(csr: Obj, type_: str) -> list[Obj]:
    return [c for c in (csr.get("status") or {}).get("conditions") or [] if c.get("type") == type_]


def has_true_condition(csr: Obj, type_: str) -> bool:
    return any(c.get("status") == "True" for c in conditions(csr, type_))


def approval(csr: Obj) -> tuple[bool, bool]:
    """GetCertApprovalCondition: (approved, denied)."""
    return bool(conditions(csr, APPROVED)), bool(conditions(csr, DENIED))


def is_approved(csr: Obj) -> bool:
    """IsCertificateRequestApproved: approved and not denied."""
    approved, denied = approval(csr)
    return approved and not denied


# ---- the registry strategy (pkg/registry/certificates/certificates/strategy.go) ----------------


class Requester(Protocol):
    """The user a request is made by (the API server's UserInfo)."""

    name: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


def prepare_for_create(csr: Obj, user: Requester) -> None:
    """spec.username/uid/groups/extra are the requesting user's, whatever the client sent; no status."""
    spec = csr.setdefault("spec", {})
    for key in ("username", "uid", "groups", "extra"):
        spec.pop(key, None)
    spec["username"] = user.name
    if user.uid:
        spec["uid"] = user.uid
    if user.groups:
        spec["groups"] = list(user.groups)
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    csr.pop("status", None)


def prepare_for_update(new: Obj, old: Obj) -> None:
    """An update of the main resource changes metadata only."""
    for key in ("spec", "status"):
        if key in old:
            new[key] = old[key]
        else:
            new.pop(key, None)


def _forbidden(name: str, message: str) -> errors.StatusError:
    return errors.invalid("certificates.k8s.io", "CertificateSigningRequest", name,
                          [errors.cause("status.conditions", f"Forbidden: {message}", "FieldValueForbidden")])


def _preserve(name: str, new_conds: list[Obj], old_conds: list[Obj], type_: str) -> list[Obj]:
    """preserveConditionInstances: the old conditions of `type_` in place of the new ones (which may
    be neither more nor fewer)."""
    olds = [c for c in old_conds if c.get("type") == type_]
    news = [c for c in new_conds if c.get("type") == type_]
    if len(olds) != len(news):
        raise _forbidden(name, f'updates may not {"add" if len(news) > len(olds) else "remove"} a condition of type "{type_}"')
    kept = iter(olds)
    return [next(kept) if c.get("type") == type_ else c for c in new_conds]


def prepare_for_subresource_update(new: Obj, old: Obj, subresource: str) -> None:
    """`status` writes the certificate and conditions other than Approved/Denied; `approval` writes
    the conditions but Failed, and removes no Approved/Denied one. Timestamps are filled in."""
    new["spec"] = old.get("spec") or {}
    status = new.setdefault("status", {})
    old_status = old.get("status") or {}
    old_conds = list(old_status.get("conditions") or [])
    new_conds = list(status.get("conditions") or [])
    name = (old.get("metadata") or {}).get("name", "")
    if subresource == "approval":
        if "certificate" in old_status:
            status["certificate"] = old_status["certificate"]
        else:
            status.pop("certificate", None)
        for t in (APPROVED, DENIED):
            if len(conditions(new, t)) < len(conditions(old, t)):
                raise _forbidden(name, f'updates may not remove a condition of type "{t}"')
        new_conds = _preserve(name, new_conds, old_conds, FAILED)
    else:
        for t in (APPROVED, DENIED):
            new_conds = _preserve(name, new_conds, old_conds, t)
    _populate_timestamps(new_conds, old_conds)
    if new_conds:
        status["conditions"] = new_conds
    else:
        status.pop("conditions", None)


def _populate_timestamps(new_conds: list[Obj], old_conds: list[Obj]) -> None:
    """populateConditionTimestamps: lastUpdateTime now when unset; lastTransitionTime kept from an old
    condition of the same type and status, else now."""
    stamp = now()
    for c in new_conds:
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = stamp
        if not c.get("lastTransitionTime"):
            previous = [o.get("lastTransitionTime") for o in old_conds
                        if o.get("type") == c.get("type") and o.get("status") == c.get("status") and o.get("lastTransitionTime")]
            c["lastTransitionTime"] = previous[0] if previous else stamp
