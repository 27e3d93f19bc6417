"""``csrapproving``: auto-approval of kubelet client CSRs (``pkg/controller/certificates/approver``).

A pending CSR for ``kubernetes.io/kube-apiserver-client-kubelet`` that passes
ValidateKubeletClientCSR is approved when its requester (spec.username, groups, ...) may
``create`` ``certificatesigningrequests/selfnodeclient`` (the CN is the requester: a node
renewing its own certificate) or ``/nodeclient`` (any node name: a bootstrapping node), as a
SubjectAccessReview answers. Anything else is left for someone else to decide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from k8py.api.certificates import (
    APPROVED,
    KUBE_APISERVER_CLIENT_KUBELET,
    approval,
    parse_csr,
    request_pem,
    subject,
    validate_kubelet_client_csr,
)
from k8py.client.resources import Resource
from k8py.controllers.base import QueueController
from k8py.controllers.certificates import CSRS, watch_csrs

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False)


def is_node_client_cert(csr: Obj, req: x509.CertificateSigningRequest) -> bool:
    if (csr.get("spec") or {}).get("signerName") != KUBE_APISERVER_CLIENT_KUBELET:
        return False
    try:
        validate_kubelet_client_csr(req, (csr.get("spec") or {}).get("usages") or [])
    except ValueError:
        return False
    return True


def is_self_node_client_cert(csr: Obj, req: x509.CertificateSigningRequest) -> bool:
    return is_node_client_cert(csr, req) and (csr.get("spec") or {}).get("username") == subject(req)[0]


@dataclass(frozen=True)
class Recognizer:
    recognize: Callable[[Obj, x509.CertificateSigningRequest], bool]
    subresource: str
    message: str


RECOGNIZERS = (
    Recognizer(is_self_node_client_cert, "selfnodeclient",
               "Auto approving self kubelet client certificate after SubjectAccessReview."),
    Recognizer(is_node_client_cert, "nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview."),
)


class CSRApprovingController(QueueController):
    name = "csrapproving"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("csrapproving", 5))
        self.client = ctx.client
        self.csrs = ctx.informers.informer_for(CSRS)
        watch_csrs(self, self.csrs)

    async def sync(self, key: str) -> None:
        csr = self.csrs.indexer.get_by_key(key)
        if csr is None or (csr.get("status") or {}).get("certificate") or any(approval(csr)):
            return
        try:
            req = parse_csr(request_pem(csr))
        except ValueError as e:
            log.info("csrapproving: unable to parse csr %q: %s", key, e)
            return
        tried = []
        for r in RECOGNIZERS:
            if not r.recognize(csr, req):
                continue
            tried.append(r.subresource)
            if await self._authorized(csr, r.subresource):
                await self._approve(csr, r.message)
                return
        if tried:
            log.info("csrapproving: recognized csr %q as %s but subject access review was not approved", key, tried)

    async def _authorized(self, csr: Obj, subresource: str) -> bool:
        spec = csr.get("spec") or {}
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": spec.get("username", ""),
                "uid": spec.get("uid", ""),
                "groups": spec.get("groups") or [],
                "extra": spec.get("extra") or {},
                "resourceAttributes": {
                    "group": "certificates.k8s.io", "version": "*", "resource": "certificatesigningrequests",
                    "subresource": subresource, "verb": "create",
                },
            },
        }
        answer = await self.client.create(SUBJECT_ACCESS_REVIEWS, review)
        return bool((answer.get("status") or {}).get("allowed"))

    async def _approve(self, csr: Obj, message: str) -> None:
        updated = {**csr, "status": dict(csr.get("status") or {})}
        updated["status"]["conditions"] = [
            *(updated["status"].get("conditions") or []),
            {"type": APPROVED, "status": "True", "reason": "AutoApproved", "message": message},
        ]
        await self.client.update(CSRS, updated, subresource="approval")
