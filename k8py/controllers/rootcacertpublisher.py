"""The root CA certificate publisher (``pkg/controller/certificates/rootcacertpublisher``): the
``kube-root-ca.crt`` ConfigMap in every namespace.

The ConfigMap holds the cluster CA bundle under ``ca.crt`` (what the projected service account
token volume mounts, so that pods can verify the API server) and the ``kubernetes.io/description``
annotation. Keys are namespace names: a namespace added, or updated while Active, is queued, and
so is the namespace of a ``kube-root-ca.crt`` that was changed or deleted. ``sync`` creates the
ConfigMap when missing, and puts its data and annotation back when someone changed them.

The bundle is the file of ``--root-ca-file`` when given (``Options.root_ca_file``), else the CA
the controller manager's own kubeconfig trusts, as upstream.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from k8py.api import meta
from k8py.client import ClientError, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import CONFIGMAPS, NAMESPACES
from k8py.controllers.base import QueueController, unwrap
from k8py.controllers.endpointslice import NAMESPACE_TERMINATING_CAUSE, has_status_cause

log = logging.getLogger(__name__)

Obj = dict[str, Any]

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)


def root_ca(ctx: Any) -> str:
    """The CA bundle to publish: --root-ca-file, else the client's own trusted CA."""
    path = getattr(ctx.options, "root_ca_file", None)
    if path:
        data = Path(path).read_text()
        if "-----BEGIN CERTIFICATE-----" not in data:
            raise ValueError(f"--root-ca-file {path}: no PEM certificate in it")
        return data
    ca = ctx.client.config.ca_pem
    if not ca:
        raise ValueError("root-ca-cert-publisher: no --root-ca-file and the kubeconfig names no CA")
    return ca.decode()


class RootCACertPublisher(QueueController):
    """Keys are namespace names; see the module docstring."""

    name = "root-ca-cert-publisher"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("root-ca-cert-publisher", 1))
        self.client = ctx.client
        self.root_ca = root_ca(ctx)
        self.configmaps = ctx.informers.informer_for(CONFIGMAPS)
        self.namespaces = ctx.informers.informer_for(NAMESPACES)
        self.synced = [self.configmaps, self.namespaces]
        self.configmaps.add_event_handler(
            ResourceEventHandlerFuncs(
                update_func=lambda _old, cm: self._configmap_changed(cm), delete_func=self._configmap_changed
            )
        )
        self.namespaces.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda ns, _i: self.queue.add(ns["metadata"]["name"]),
                update_func=self._namespace_updated,
            )
        )

    def _configmap_changed(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        cm = unwrap(obj)
        if cm["metadata"].get("name") == ROOT_CA_CONFIGMAP and cm["metadata"].get("namespace"):
            self.queue.add(cm["metadata"]["namespace"])

    def _namespace_updated(self, _old: Obj, ns: Obj) -> None:
        if (ns.get("status") or {}).get("phase", "Active") == "Active":
            self.queue.add(ns["metadata"]["name"])

    async def sync(self, key: str) -> None:
        data = {"ca.crt": self.root_ca}
        cm = self.configmaps.indexer.get_by_key(f"{key}/{ROOT_CA_CONFIGMAP}")
        if cm is None:
            configmap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": ROOT_CA_CONFIGMAP,
                    "namespace": key,
                    "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
                },
                "data": data,
            }
            try:
                await self.client.create(CONFIGMAPS, configmap, namespace=key)
            except ClientError as e:
                # no retry when the namespace is gone or terminating
                if is_not_found(e) or has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                    return
                raise
            return
        if cm.get("data") == data and (cm["metadata"].get("annotations") or {}).get(DESCRIPTION_ANNOTATION):
            return
        cm = meta.clone(cm)
        cm.update(apiVersion="v1", kind="ConfigMap", data=data)
        cm["metadata"].setdefault("annotations", {})[DESCRIPTION_ANNOTATION] = DESCRIPTION
        await self.client.update(CONFIGMAPS, cm)
