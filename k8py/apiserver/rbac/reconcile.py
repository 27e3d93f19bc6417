"""The `rbac/bootstrap-roles` post-start hook: the bootstrap policy reconciled into the store.

As upstream's reconciliation (pkg/registry/rbac/reconciliation): a missing
role or binding is created; an existing one is left alone when annotated
`rbac.authorization.kubernetes.io/autoupdate: "false"`, otherwise it gets
what it lacks: labels and annotations, the rules it does not cover yet (never
removing any), the aggregation rule's selectors, the subjects. A binding whose
roleRef differs is deleted and created again with the expected roleRef (a
roleRef cannot be updated). Runs as the API server (system:masters).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from k8py.api import errors
from k8py.api.registry import Registry, ResourceInfo
from k8py.apiserver.bootstrap_objects import SYSTEM_USER
from k8py.apiserver.genericstore import Context, GenericStore
from k8py.apiserver.rbac import policy
from k8py.apiserver.rbac.rules import covers, parse

log = logging.getLogger(__name__)
Obj = dict[str, Any]
HOOK = "poststarthook/rbac/bootstrap-roles"


def _merge_meta(current: Obj, expected: Obj) -> bool:
    """Add the expected labels and annotations `current` lacks; True when something changed."""
    changed = False
    md, emd = current.setdefault("metadata", {}), expected["metadata"]
    for field in ("labels", "annotations"):
        have = md.get(field) or {}
        missing = {k: v for k, v in (emd.get(field) or {}).items() if k not in have}
        if missing:
            md[field] = {**have, **missing}
            changed = True
    return changed


def reconcile_role(current: Obj, expected: Obj) -> bool:
    """Union `expected` into `current` (a copy); True when it changed."""
    changed = _merge_meta(current, expected)
    missing = covers(parse(current.get("rules")), parse(expected.get("rules")))
    if missing:
        current["rules"] = [*(current.get("rules") or []), *(m.to_json() for m in missing)]
        changed = True
    want = (expected.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
    if want:
        rule = current.setdefault("aggregationRule", {})
        have = rule.get("clusterRoleSelectors") or []
        extra = [s for s in want if s not in have]
        if extra:
            rule["clusterRoleSelectors"] = [*have, *extra]
            changed = True
    return changed


def reconcile_binding(current: Obj, expected: Obj) -> bool:
    changed = _merge_meta(current, expected)
    have = current.get("subjects") or []
    extra = [s for s in expected.get("subjects") or [] if s not in have]
    if extra:
        current["subjects"] = [*have, *extra]
        changed = True
    return changed


def protected(obj: Obj) -> bool:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(policy.AUTOUPDATE) == "false"


class BootstrapPolicy:
    """Ensures the bootstrap roles and bindings; `done` once they are (the hook's /readyz check)."""

    def __init__(self, gstore: GenericStore, registry: Registry) -> None:
        self.gstore = gstore
        self.info = {r: registry.get("rbac.authorization.k8s.io", "v1", r) for r in
                     ("clusterroles", "clusterrolebindings", "roles", "rolebindings")}
        self.done = False

    async def run(self) -> None:
        await self.gstore.cache.sync()
        for obj in (*policy.CLUSTER_ROLES, *policy.CONTROLLER_ROLES):
            await self._ensure(self.info["clusterroles"], obj)
        for obj in (*policy.CLUSTER_ROLE_BINDINGS, *policy.CONTROLLER_ROLE_BINDINGS):
            await self._ensure(self.info["clusterrolebindings"], obj)
        for obj in policy.NAMESPACE_ROLES:
            await self._ensure(self.info["roles"], obj)
        for obj in policy.NAMESPACE_ROLE_BINDINGS:
            await self._ensure(self.info["rolebindings"], obj)
        self.done = True

    async def _ensure(self, info: ResourceInfo | None, expected: Obj) -> None:
        assert info is not None
        ctx = Context(user=SYSTEM_USER)
        md = expected["metadata"]
        namespace, name = md.get("namespace", ""), md["name"]
        current = self.gstore.cache.get(info.key(namespace, name))
        if current is None:
            try:
                await self.gstore.create(ctx, info, namespace, copy.deepcopy(expected))
                log.info("created %s %s", info.kind, name)
            except errors.StatusError as e:
                if e.code != 409:
                    raise
            return
        if protected(current):
            return
        is_binding = "roleRef" in expected
        if is_binding and current.get("roleRef") != expected["roleRef"]:
            recreated = copy.deepcopy(current)
            reconcile_binding(recreated, expected)
            recreated["roleRef"] = expected["roleRef"]
            recreated["metadata"] = {k: v for k, v in recreated["metadata"].items() if k in ("name", "namespace", "labels", "annotations")}
            await self.gstore.delete(ctx, info, namespace, name, {})
            await self.gstore.create(ctx, info, namespace, recreated)
            log.info("recreated %s %s with roleRef %s", info.kind, name, expected["roleRef"]["name"])
            return
        probe = copy.deepcopy(current)
        if not (reconcile_binding if is_binding else reconcile_role)(probe, expected):
            return

        def transform(cur: Obj | None) -> Obj:
            assert cur is not None
            (reconcile_binding if is_binding else reconcile_role)(cur, expected)
            return cur

        await self.gstore.guaranteed_update(ctx, info, namespace, name, transform)
        log.info("reconciled %s %s", info.kind, name)
