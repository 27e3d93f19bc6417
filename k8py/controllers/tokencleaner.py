"""The token cleaner (``pkg/controller/bootstrap/tokencleaner.go``): deletes expired bootstrap tokens.

Keys are the kube-system bootstrap token Secrets (type ``bootstrap.kubernetes.io/token``). An
expired one (or one whose ``expiration`` does not parse) is deleted with its uid as the
precondition, so a Secret recreated under the same name survives; one still valid is looked at
again when it expires.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from k8py.bootstrap import token as bt
from k8py.client import Conflict, NotFound
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import SECRETS
from k8py.controllers.base import QueueController

Obj = dict[str, Any]


class TokenCleaner(QueueController):
    name = "tokencleaner"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=1)
        self.client = ctx.client
        self.secrets = ctx.informers.informer_for(SECRETS)
        self.synced = [self.secrets]
        self.secrets.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda s, _initial: self._secret(s), update_func=lambda _old, s: self._secret(s)
            )
        )

    def _secret(self, secret: Obj) -> None:
        if secret.get("type") == bt.SECRET_TYPE and secret["metadata"].get("namespace") == bt.NAMESPACE:
            self.enqueue(secret)

    async def sync(self, key: str) -> None:
        secret = self.secrets.indexer.get_by_key(key)
        if secret is None:
            return
        remaining = bt.time_remaining(bt.secret_data(secret), dt.datetime.now(dt.UTC))
        if remaining is None:
            return
        if remaining > 0:
            self.enqueue_after(key, remaining)
            return
        md = secret["metadata"]
        try:
            await self.client.delete(
                SECRETS, md["name"], namespace=md["namespace"], preconditions={"uid": md["uid"]} if md.get("uid") else None
            )
        except (NotFound, Conflict):  # already gone, or replaced (the uid precondition failed)
            pass
