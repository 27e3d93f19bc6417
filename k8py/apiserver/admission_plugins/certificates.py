"""The CSR admission plugins (plugin/pkg/admission/certificates): who may approve and sign for a signer.

* CertificateApproval: an update of ``certificatesigningrequests/approval`` needs the verb
  ``approve`` on ``signers`` named the CSR's signerName (or ``<domain>/*``).
* CertificateSigning: a ``status`` update that changes the certificate or adds a Failed
  condition needs ``sign`` on the signer.
* CertificateSubjectRestriction: no ``kubernetes.io/kube-apiserver-client`` CSR for the
  ``system:masters`` group.

The checks ask the API server's authorizer, so they bind once RBAC replaces AlwaysAllow.
"""

from __future__ import annotations

from typing import Any

from k8py.api.certificates import FAILED, KUBE_APISERVER_CLIENT, conditions, parse_csr, request_pem, subject
from k8py.api.gofmt import go_quote
from k8py.apiserver.admission import Attributes, UserInfo, forbidden
from k8py.apiserver.authorization import Attributes as AuthzAttributes
from k8py.apiserver.authorization import Authorizer, Decision

GROUP = "certificates.k8s.io"
Obj = dict[str, Any]


def authorized_for_signer(authorizer: Authorizer, user: UserInfo, verb: str, signer: str) -> bool:
    """IsAuthorizedForSignerName: the exact signer name, else its domain's wildcard."""
    domain = signer.split("/", 1)[0]
    for name in (signer, f"{domain}/*"):
        attrs = AuthzAttributes(verb=verb, api_group=GROUP, resource="signers", name=name)
        if authorizer.authorize(user, attrs)[0] is Decision.ALLOW:
            return True
    return False


def _is_csr(attrs: Attributes) -> bool:
    return attrs.info.group == GROUP and attrs.info.resource == "certificatesigningrequests" and attrs.obj is not None


class CertificateAdmission:
    """CertificateApproval, CertificateSigning and CertificateSubjectRestriction (validating)."""

    name = "CertificateApproval"

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def validate(self, attrs: Attributes) -> None:
        if not _is_csr(attrs):
            return
        csr = attrs.obj or {}
        signer = (csr.get("spec") or {}).get("signerName", "")
        if attrs.operation == "CREATE" and signer == KUBE_APISERVER_CLIENT:
            try:
                _, orgs = subject(parse_csr(request_pem(csr)))
            except ValueError:
                return  # validation reports it
            if "system:masters" in orgs:
                raise forbidden(attrs, f"use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed")
        if attrs.operation != "UPDATE":
            return
        if attrs.subresource == "approval":
            if not authorized_for_signer(self.authorizer, attrs.user, "approve", signer):
                raise forbidden(attrs, f"user not permitted to approve requests with signerName {go_quote(signer)}")
        elif attrs.subresource == "status" and self._signs(csr, attrs.old or {}):
            if not authorized_for_signer(self.authorizer, attrs.user, "sign", signer):
                raise forbidden(attrs, f"user not permitted to sign requests with signerName {go_quote(signer)}")

    @staticmethod
    def _signs(csr: Obj, old: Obj) -> bool:
        """A status update that issues a certificate or adds a Failed condition."""
        cert = (csr.get("status") or {}).get("certificate")
        return cert != (old.get("status") or {}).get("certificate") or len(conditions(csr, FAILED)) > len(conditions(old, FAILED))
