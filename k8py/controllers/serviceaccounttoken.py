"""The service account tokens controller (``pkg/controller/serviceaccount/tokens_controller.go``):
legacy Secret-based tokens, made only on request.

A Secret of type ``kubernetes.io/service-account-token`` annotated
``kubernetes.io/service-account.name: <sa>`` gets ``data.token`` (a legacy JWT signed with
``--service-account-private-key-file``, see k8py/apiserver/legacytokens.py), ``data.ca.crt`` (the
root CA: ``--root-ca-file``, else the kubeconfig's) and ``data.namespace``, and the annotation
``kubernetes.io/service-account.uid``. A token Secret whose ServiceAccount is gone (or has another
uid than the one recorded) is deleted. Keys are Secrets' ``namespace/name``; a deleted
ServiceAccount queues the token Secrets naming it. Like upstream (rootClientBuilder), it writes with
the controller manager's own client, never a ServiceAccount's; without a key it does not run.
"""

from __future__ import annotations

import base64
import copy
import logging
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from k8py.apiserver.legacytokens import (
    CA_KEY,
    NAME_ANNOTATION,
    NAMESPACE_KEY,
    SECRET_TYPE,
    TOKEN_KEY,
    UID_ANNOTATION,
    legacy_claims,
    secret_value,
)
from k8py.apiserver.tokens import TokenSigner
from k8py.client import ClientError, is_conflict, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import SECRETS, SERVICE_ACCOUNTS
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.rootcacertpublisher import root_ca

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def load_private_key(path: str) -> ec.EllipticCurvePrivateKey:
    """The service account signing key of ``--service-account-private-key-file`` (ECDSA P-256)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"--service-account-private-key-file {path}: not an ECDSA private key")
    return key


def _is_token_secret(obj: Obj) -> bool:
    return obj.get("type") == SECRET_TYPE


class TokensController(QueueController):
    """Keys are token Secrets' ``namespace/name``; see the module docstring."""

    name = "serviceaccount-token"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("serviceaccount-token", 1))
        self.client = ctx.client
        path = ctx.options.service_account_private_key_file
        self.signer = TokenSigner(load_private_key(path)) if path else None
        self.root_ca = root_ca(ctx).encode() if self.signer else b""
        self.accounts = ctx.informers.informer_for(SERVICE_ACCOUNTS)
        self.secrets = ctx.informers.informer_for(SECRETS)
        self.synced = [self.accounts, self.secrets]
        self.accounts.add_event_handler(ResourceEventHandlerFuncs(delete_func=self._account_deleted))
        self.secrets.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda s, _i: self.enqueue(s) if _is_token_secret(s) else None,
                update_func=lambda _old, s: self.enqueue(s) if _is_token_secret(s) else None,
            )
        )

    def _account_deleted(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        md = unwrap(obj)["metadata"]
        for secret in self.secrets.indexer.by_index("namespace", md.get("namespace", "")):
            if _is_token_secret(secret) and (secret["metadata"].get("annotations") or {}).get(NAME_ANNOTATION) == md["name"]:
                self.queue.add(key_of(secret))

    async def run(self) -> None:
        if self.signer is None:
            log.warning("serviceaccount-token: no --service-account-private-key-file: not making tokens")
            return
        await super().run()

    async def sync(self, key: str) -> None:
        secret = self.secrets.indexer.get_by_key(key)
        if secret is None or not _is_token_secret(secret) or secret["metadata"].get("deletionTimestamp"):
            return
        md = secret["metadata"]
        annotations = md.get("annotations") or {}
        sa = await self._account(md["namespace"], annotations.get(NAME_ANNOTATION, ""), annotations.get(UID_ANNOTATION, ""))
        if sa is None:
            log.info("deleting token secret %s: its service account is gone", key)
            try:
                await self.client.delete(SECRETS, md["name"], namespace=md["namespace"], preconditions={"uid": md["uid"]})
            except ClientError as e:
                if not (is_not_found(e) or is_conflict(e)):
                    raise
            return
        if self._needs_update(secret):
            await self._fill(secret, sa)

    async def _account(self, namespace: str, name: str, uid: str) -> Obj | None:
        """The ServiceAccount (cache, else a live read), None when missing or of another uid."""
        sa = self.accounts.indexer.get_by_key(f"{namespace}/{name}") if name else None
        if sa is None and name:
            try:
                sa = await self.client.get(SERVICE_ACCOUNTS, name, namespace=namespace)
            except ClientError as e:
                if not is_not_found(e):
                    raise
        if sa is None or sa["metadata"].get("deletionTimestamp") or (uid and sa["metadata"]["uid"] != uid):
            return None
        return sa

    def _needs_update(self, secret: Obj) -> bool:
        return (
            bool(self.root_ca) and secret_value(secret, CA_KEY) != self.root_ca
        ) or not secret_value(secret, NAMESPACE_KEY) or not secret_value(secret, TOKEN_KEY)

    async def _fill(self, cached: Obj, sa: Obj) -> None:
        """Write the missing data and the annotations onto the Secret as the cache holds it; a
        Secret changed or deleted meanwhile is synced again from its next event."""
        assert self.signer is not None
        secret = copy.deepcopy(cached)
        md, data = secret["metadata"], secret.setdefault("data", {})
        if self.root_ca and secret_value(secret, CA_KEY) != self.root_ca:
            data[CA_KEY] = base64.b64encode(self.root_ca).decode()
        if not secret_value(secret, NAMESPACE_KEY):
            data[NAMESPACE_KEY] = base64.b64encode(md["namespace"].encode()).decode()
        if not secret_value(secret, TOKEN_KEY):
            token = self.signer.sign(legacy_claims(sa, md["name"]))
            data[TOKEN_KEY] = base64.b64encode(token.encode()).decode()
        annotations = md.setdefault("annotations", {})
        annotations[NAME_ANNOTATION] = sa["metadata"]["name"]
        annotations[UID_ANNOTATION] = sa["metadata"]["uid"]
        try:
            await self.client.update(SECRETS, secret)
        except ClientError as e:
            if not (is_conflict(e) or is_not_found(e)):
                raise
