"""The bootstrap signer (``pkg/controller/bootstrap/bootstrapsigner.go``): signs ``kube-public/cluster-info``.

For every bootstrap token Secret in kube-system that may sign (well-formed, unexpired,
``usage-bootstrap-signing: "true"``) the ConfigMap gets ``jws-kubeconfig-<token id>``: the detached
JWS of its ``kubeconfig`` keyed by the token; signatures of tokens that are gone (deleted,
expired, no longer signing) are removed. One key: any change of the ConfigMap or of a token
Secret queues it; the ConfigMap is written only when a signature changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from k8py.api import meta
from k8py.bootstrap import token as bt
from k8py.client import NotFound
from k8py.client.cache import NAMESPACE_INDEX, DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import CONFIGMAPS, SECRETS
from k8py.controllers.base import QueueController, unwrap

Obj = dict[str, Any]

KEY = f"{bt.PUBLIC_NAMESPACE}/{bt.CLUSTER_INFO}"


class BootstrapSigner(QueueController):
    name = "bootstrapsigner"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=1)
        self.client = ctx.client
        self.configmaps = ctx.informers.informer_for(CONFIGMAPS)
        self.secrets = ctx.informers.informer_for(SECRETS)
        self.synced = [self.configmaps, self.secrets]
        self.configmaps.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda cm, _initial: self._configmap(cm), update_func=lambda _old, cm: self._configmap(cm)
            )
        )
        self.secrets.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda s, _initial: self._secret(s),
                update_func=lambda _old, s: self._secret(s),
                delete_func=self._secret,
            )
        )

    def _configmap(self, cm: Obj) -> None:
        if f"{cm['metadata'].get('namespace')}/{cm['metadata'].get('name')}" == KEY:
            self.queue.add(KEY)

    def _secret(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        secret = unwrap(obj)
        if secret.get("type") == bt.SECRET_TYPE and secret["metadata"].get("namespace") == bt.NAMESPACE:
            self.queue.add(KEY)

    def signing_tokens(self) -> dict[str, str]:
        """token id -> token secret of the Secrets that may sign."""
        now = dt.datetime.now(dt.UTC)
        tokens: dict[str, str] = {}
        for secret in self.secrets.indexer.by_index(NAMESPACE_INDEX, bt.NAMESPACE):
            found = bt.signing_token(secret, now)
            if found is not None:
                tokens.setdefault(*found)
        return tokens

    async def sync(self, key: str) -> None:
        cm = self.configmaps.indexer.get_by_key(KEY)
        if cm is None or bt.KUBECONFIG_KEY not in (cm.get("data") or {}):
            return
        data = {k: v for k, v in cm["data"].items() if not k.startswith(bt.JWS_PREFIX)}
        content = data[bt.KUBECONFIG_KEY]
        for token_id, secret in self.signing_tokens().items():
            data[bt.JWS_PREFIX + token_id] = bt.detached_signature(content, token_id, secret)
        if data == cm["data"]:
            return
        cm = meta.clone(cm)
        cm.update(apiVersion="v1", kind="ConfigMap", data=data)
        try:
            await self.client.update(CONFIGMAPS, cm)
        except NotFound:
            pass
