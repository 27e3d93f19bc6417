"""certificates.k8s.io/v1 CertificateSigningRequests (pkg/apis/certificates/validation).

The spec is judged on create only: every update keeps it (the strategy copies it from the
stored object). Conditions and the issued certificate are judged on every write.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509

from k8py.api.certificates import APPROVED, DENIED, FAILED, KEY_USAGES, LEGACY_UNKNOWN, parse_csr, request_pem
from k8py.api.validation.field import Cause, duplicate, forbidden, invalid, not_supported, required
from k8py.api.validation.meta import Obj, validate_meta
from k8py.api.validation.names import is_dns1123_subdomain, name_is_anything

_SIGNER_FORM = "must be a fully qualified domain and path of the form 'example.com/signer-name'"


def validate_signer_name(path: str, name: str) -> list[Cause]:
    """ValidateSignerName: `<domain>/<path>`, the domain a DNS subdomain."""
    if not name:
        return [required(path)]
    domain, slash, rest = name.partition("/")
    if not slash or not domain or not rest:
        return [invalid(path, name, _SIGNER_FORM)]
    return [invalid(path, name, f"validating domain component: {msg}") for msg in is_dns1123_subdomain(domain)]


def _validate_spec(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    try:
        parse_csr(request_pem({"spec": spec}))
    except ValueError as e:
        causes.append(invalid("spec.request", "<request data>", str(e)))
    usages = spec.get("usages") or []
    if not usages:
        causes.append(required("spec.usages", "usages must be provided"))
    seen: set[str] = set()
    for i, usage in enumerate(usages):
        if usage not in KEY_USAGES:
            causes.append(not_supported(f"spec.usages[{i}]", usage, KEY_USAGES))
        elif usage in seen:
            causes.append(duplicate(f"spec.usages[{i}]", usage))
        seen.add(usage)
    signer = spec.get("signerName") or ""
    if signer == LEGACY_UNKNOWN:
        causes.append(invalid("spec.signerName", signer, "the legacy signerName is not allowed via this API version"))
    else:
        causes += validate_signer_name("spec.signerName", signer)
    seconds = spec.get("expirationSeconds")
    if seconds is not None and seconds < 600:
        causes.append(invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 600 seconds (10 minutes)"))
    return causes


def _validate_conditions(conditions: list[Obj]) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, c in enumerate(conditions):
        path, type_, status = f"status.conditions[{i}]", c.get("type") or "", c.get("status") or ""
        if not type_:
            causes.append(required(f"{path}.type"))
        if type_ in (APPROVED, DENIED, FAILED):
            if type_ in seen:
                causes.append(duplicate(f"{path}.type", type_))
            seen.add(type_)
            if status != "True":
                causes.append(not_supported(f"{path}.status", status, ("True",)))
        elif not status:
            causes.append(required(f"{path}.status"))
        elif status not in ("True", "False", "Unknown"):
            causes.append(not_supported(f"{path}.status", status, ("False", "True", "Unknown")))
    if APPROVED in seen and DENIED in seen:
        causes.append(invalid("status.conditions", conditions, "Approved and Denied conditions are mutually exclusive"))
    return causes


def _validate_certificate(cert: str) -> list[Cause]:
    try:
        x509.load_pem_x509_certificates(base64.b64decode(cert, validate=True))
    except (binascii.Error, ValueError) as e:
        return [invalid("status.certificate", "<certificate data>", str(e))]
    return []


def validate_csr(csr: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(csr, old, False, name_is_anything)
    if old is None:
        causes += _validate_spec(csr.get("spec") or {})
    status = csr.get("status") or {}
    causes += _validate_conditions(status.get("conditions") or [])
    cert = status.get("certificate") or ""
    old_cert = ((old or {}).get("status") or {}).get("certificate") or ""
    if old_cert and cert != old_cert:
        causes.append(forbidden("status.certificate", "updates may not modify existing certificate content"))
    elif cert and cert != old_cert:
        causes += _validate_certificate(cert)
    return causes


VALIDATORS = {"CertificateSigningRequest": validate_csr}
