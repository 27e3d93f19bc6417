"""The certificate controllers (``pkg/controller/certificates``): CSR approving, signing and cleaning.

* ``csrapproving`` (`approver`): approves kubelet client CSRs whose requester may create
  ``certificatesigningrequests/nodeclient`` (a new node) or ``/selfnodeclient`` (a node renewing
  its own), asked of the API server with a SubjectAccessReview.
* ``csrsigning`` (`signer`): issues the certificates of approved CSRs for the kubernetes.io
  signers with the cluster CA.
* ``csrcleaner`` (`cleaner`): deletes CSRs that are done with or were left pending too long.
"""

from __future__ import annotations

from k8py.client.informer import ResourceEventHandlerFuncs, SharedIndexInformer
from k8py.client.resources import CERTIFICATE_SIGNING_REQUESTS as CSRS
from k8py.controllers.base import QueueController

__all__ = ["CSRS", "watch_csrs"]


def watch_csrs(controller: QueueController, informer: SharedIndexInformer) -> None:
    """Queue every CSR added or updated (deletions need no work)."""
    controller.synced.append(informer)
    informer.add_event_handler(
        ResourceEventHandlerFuncs(
            add_func=lambda csr, _initial: controller.enqueue(csr),
            update_func=lambda _old, csr: controller.enqueue(csr),
        )
    )
