"""The ServiceAccounts controller (``pkg/controller/serviceaccount/serviceaccounts_controller.go``):
the ``default`` ServiceAccount in every active namespace.

Keys are namespace names. A namespace added or updated is queued, and so is the namespace of a
ServiceAccount that was deleted; ``sync`` creates each account of ``SERVICE_ACCOUNTS_TO_ENSURE``
the cache does not hold. Namespaces that are not Active (Terminating) are left alone, and a
create refused because the namespace is terminating, or one that finds the account already
there, is not an error. (Token Secrets are not made: tokens come from the TokenRequest API.)
"""

from __future__ import annotations

import logging
from typing import Any

from k8py.client import ClientError, is_already_exists
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import NAMESPACES, SERVICE_ACCOUNTS
from k8py.controllers.base import QueueController, unwrap
from k8py.controllers.endpointslice import NAMESPACE_TERMINATING_CAUSE, has_status_cause

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SERVICE_ACCOUNTS_TO_ENSURE: tuple[str, ...] = ("default",)


class ServiceAccountsController(QueueController):
    """Keys are namespace names; see the module docstring."""

    name = "serviceaccount"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("serviceaccount", 1))
        self.client = ctx.client
        self.accounts = ctx.informers.informer_for(SERVICE_ACCOUNTS)
        self.namespaces = ctx.informers.informer_for(NAMESPACES)
        self.synced = [self.accounts, self.namespaces]
        self.accounts.add_event_handler(ResourceEventHandlerFuncs(delete_func=self._account_deleted))
        self.namespaces.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda ns, _i: self.queue.add(ns["metadata"]["name"]),
                update_func=lambda _old, ns: self.queue.add(ns["metadata"]["name"]),
            )
        )

    def _account_deleted(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        sa = unwrap(obj)
        if sa["metadata"].get("namespace"):
            self.queue.add(sa["metadata"]["namespace"])

    async def sync(self, key: str) -> None:
        ns = self.namespaces.indexer.get_by_key(key)
        if ns is None or (ns.get("status") or {}).get("phase", "Active") != "Active":
            return
        failures: list[str] = []
        for name in SERVICE_ACCOUNTS_TO_ENSURE:
            if self.accounts.indexer.get_by_key(f"{key}/{name}") is not None:
                continue
            account = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": key},
            }
            try:
                await self.client.create(SERVICE_ACCOUNTS, account, namespace=key)
            except ClientError as e:
                if is_already_exists(e) or has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                    continue
                failures.append(str(e))
        if failures:
            raise RuntimeError("; ".join(failures))
