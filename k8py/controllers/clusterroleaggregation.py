"""The ClusterRole aggregation controller (``pkg/controller/clusterroleaggregation``).

A ClusterRole with an ``aggregationRule`` gets as rules the union of the rules
of every ClusterRole its ``clusterRoleSelectors`` match (roles sorted by name,
duplicate rules dropped), written with server-side apply as the field manager
``clusterrole-aggregation-controller`` (forcing). Any ClusterRole change queues
every aggregated ClusterRole, as upstream: selectors may match any role.
"""

from __future__ import annotations

import logging
from typing import Any

from k8py.api.selectors import LabelSelector
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import builtin
from k8py.client.rest import PatchType
from k8py.controllers.base import QueueController

log = logging.getLogger(__name__)

Obj = dict[str, Any]
CLUSTER_ROLES = builtin("clusterroles", "rbac.authorization.k8s.io")
FIELD_MANAGER = "clusterrole-aggregation-controller"


def aggregated_rules(role: Obj, roles: list[Obj]) -> list[Obj]:
    """The rules of the roles matching `role`'s selectors (by name, each rule once)."""
    chosen: dict[str, Obj] = {}
    for selector in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
        match = LabelSelector.from_label_selector(selector)
        for other in roles:
            md = other.get("metadata") or {}
            if md.get("name") not in chosen and match.matches(md.get("labels") or {}):
                chosen[md["name"]] = other
    rules: list[Obj] = []
    for name in sorted(chosen):
        for rule in chosen[name].get("rules") or []:
            if rule not in rules:
                rules.append(rule)
    return rules


class ClusterRoleAggregationController(QueueController):
    """Keys are the names of ClusterRoles with an aggregation rule."""

    name = "clusterrole-aggregation"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("clusterrole-aggregation", 5))
        self.client = ctx.client
        self.roles = ctx.informers.informer_for(CLUSTER_ROLES)
        self.synced = [self.roles]
        self.roles.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda _obj, _initial: self._enqueue_all(),
                update_func=lambda _old, _new: self._enqueue_all(),
                delete_func=lambda _obj: self._enqueue_all(),
            )
        )

    def _enqueue_all(self) -> None:
        for role in self.roles.indexer.list():
            if not isinstance(role, DeletedFinalStateUnknown) and role.get("aggregationRule"):
                self.queue.add(role["metadata"]["name"])

    async def sync(self, key: str) -> None:
        role = self.roles.indexer.get_by_key(key)
        if role is None or not role.get("aggregationRule"):
            return
        rules = aggregated_rules(role, self.roles.indexer.list())
        if rules == (role.get("rules") or []):
            return
        body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": key}, "rules": rules}
        await self.client.patch(CLUSTER_ROLES, key, body, patch_type=PatchType.APPLY, field_manager=FIELD_MANAGER, force=True)
        log.info("clusterrole-aggregation: %s now has %d rules", key, len(rules))
