"""Resource quota (``pkg/controller/resourcequota``): ``status.hard`` and ``status.used`` of every
ResourceQuota.

``sync`` copies ``spec.hard`` to ``status.hard`` and recomputes, for every name the quota limits,
what the objects of its namespace use: each resource has an *evaluator* (``count/<resource>``
and the legacy ``configmaps``/``secrets``/... object counts for any resource; pods add
``pods``, ``requests.*``/``limits.*`` cpu, memory, ephemeral-storage, hugepages and extended
resources; services ``services.nodeports``/``services.loadbalancers``; claims
``persistentvolumeclaims`` and ``requests.storage``, per storage class too), and a quota's
scopes (Terminating, NotTerminating, BestEffort, NotBestEffort, PriorityClass,
CrossNamespacePodAffinity; only pods fall in any) filter the objects counted. The evaluators are
the ResourceQuota admission plugin's (``k8py.apiserver.admission_plugins.resourcequota``),
so the usage the plugin sums when it admits a request and the ``status.used`` written here are
the same numbers. The status is written only when it changed.

Replenishment (upstream's QuotaMonitor): an informer per evaluated resource (pods, services and
claims from the start, the object-count ones as soon as a quota names them); a deletion, or an
update that changes an object's usage (a pod finishing, a Service changing type, a claim
growing), requeues the quotas of its namespace that limit one of its names. Unlike upstream,
creations requeue them too: the k8py admission plugin does not increment ``status.used`` itself
(see its docstring), so the controller brings it up to date. Every resync period (5 minutes,
upstream's ``--resource-quota-sync-period``; ``--controller-option resource-quota-sync-period=S``
here) all quotas are recalculated, which also catches
usage that changes with time alone (a terminating pod past its grace period stops using compute).

Not done: the missing-usage priority queue (quotas with no status yet simply go first in a
fresh queue) and discovery of every resource in the cluster (only named ones are watched).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from k8py.api import resources
from k8py.api.resources import ResourceList
from k8py.apiserver.admission_plugins.resourcequota import (
    LEGACY_COUNT_NAMES,
    Evaluator,
    evaluator_for_resource,
    scope_selectors,
)
from k8py.client import ClientError, ResourceEventHandlerFuncs
from k8py.client.cache import NAMESPACE_INDEX, DeletedFinalStateUnknown
from k8py.client.informer import SharedIndexInformer
from k8py.client.resources import PERSISTENT_VOLUME_CLAIMS, PODS, RESOURCE_QUOTAS, SERVICES, Resource, builtin
from k8py.controllers.base import QueueController, unwrap
from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]
GroupResource = tuple[str, str]
DEFAULT_SYNC_PERIOD = 300.0
CORE: dict[GroupResource, Resource] = {
    ("", "pods"): PODS,
    ("", "services"): SERVICES,
    ("", "persistentvolumeclaims"): PERSISTENT_VOLUME_CLAIMS,
}


def hard_of(quota: Obj) -> ResourceList:
    return resources.parse_list((quota.get("spec") or {}).get("hard"))


def to_wire(rl: ResourceList) -> dict[str, str]:
    return {name: str(q) for name, q in sorted(rl.items())}


def named_resources(names: list[str]) -> set[GroupResource]:
    """The resources whose object counts `names` limit (count/<resource>[.<group>], legacy names)."""
    out: set[GroupResource] = set()
    for name in names:
        if name.startswith("count/"):
            resource, _, group = name.removeprefix("count/").partition(".")
            out.add((group, resource))
        elif name in LEGACY_COUNT_NAMES:
            out.add(("", name))
    return out


class ResourceQuotaController(QueueController):
    name = "resourcequota"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers(self.name, 5))
        self.ctx = ctx
        self.client = ctx.client
        self.resync_period = float(ctx.options.extra.get("resource-quota-sync-period", DEFAULT_SYNC_PERIOD))
        self.quotas = ctx.informers.informer_for(RESOURCE_QUOTAS)
        self.quotas.add_event_handler(
            ResourceEventHandlerFuncs(add_func=lambda q, _i: self.enqueue(q), update_func=self._quota_updated)
        )
        self.monitors: dict[GroupResource, SharedIndexInformer] = {}
        self.evaluators: dict[GroupResource, Evaluator] = {}
        for gr, res in CORE.items():
            self._monitor(gr, res)
        self.synced = [self.quotas, *self.monitors.values()]

    # -- events -------------------------------------------------------------------------------------

    def _quota_updated(self, old: Obj, new: Obj) -> None:
        status = new.get("status") or {}
        if (
            (old.get("spec") or {}) != (new.get("spec") or {})
            or status.get("hard") is None
            or status.get("used") is None
        ):
            self.enqueue(new)

    def _monitor(self, gr: GroupResource, res: Resource) -> SharedIndexInformer:
        informer = self.ctx.informers.informer_for(res)
        evaluator = evaluator_for_resource(*gr)
        assert evaluator is not None
        self.evaluators[gr] = evaluator

        def changed(old: Obj, new: Obj) -> None:
            if evaluator.usage(old) != evaluator.usage(new) or _scope_fields(old) != _scope_fields(new):
                self._replenish(gr, new)

        informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda o, initial: None if initial else self._replenish(gr, o),
                update_func=changed,
                delete_func=lambda o: self._replenish(gr, unwrap(o)),
            )
        )
        self.monitors[gr] = informer
        return informer

    def _replenish(self, gr: GroupResource, obj: Obj | DeletedFinalStateUnknown) -> None:
        """replenishQuota: requeue the namespace's quotas that limit something `gr` uses."""
        namespace = unwrap(obj).get("metadata", {}).get("namespace")
        if not namespace:
            return
        evaluator = self.evaluators[gr]
        for quota in self.quotas.indexer.by_index(NAMESPACE_INDEX, namespace):
            names = set(hard_of(quota)) | set(((quota.get("status") or {}).get("hard") or {}).keys())
            if evaluator.matching_resources(sorted(names)):
                self.enqueue(quota)

    # -- running ------------------------------------------------------------------------------------

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync(), name="resourcequota-resync")
        try:
            await super().run()
        finally:
            resync.cancel()
            await asyncio.gather(resync, return_exceptions=True)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            for quota in self.quotas.indexer.list():
                self.enqueue(quota)

    async def _informer_for(self, gr: GroupResource) -> SharedIndexInformer | None:
        """The monitor of `gr`, started (and synced) on first use; None for what cannot be counted."""
        informer = self.monitors.get(gr)
        if informer is None:
            res = await self._resolve(gr)
            if res is None or not res.namespaced or evaluator_for_resource(*gr) is None:
                return None
            informer = self._monitor(gr, res)
            self.ctx.informers.start()
        await asyncio.wait_for(informer.wait_for_sync(), timeout=60)
        return informer

    async def _resolve(self, gr: GroupResource) -> Resource | None:
        group, resource = gr
        try:
            return builtin(resource, group)
        except KeyError:
            pass
        if not group:
            return None
        try:  # a custom resource: its group's preferred version, from discovery
            info = orjson.loads(await self.client.raw("GET", f"/apis/{group}"))
            version = str((info.get("preferredVersion") or {}).get("version") or "")
            listing = orjson.loads(await self.client.raw("GET", f"/apis/{group}/{version}"))
        except (ClientError, orjson.JSONDecodeError) as e:
            log.info("resourcequota: cannot find %s.%s: %s", resource, group, e)
            return None
        for r in listing.get("resources") or ():
            if r.get("name") == resource:
                return Resource(group, version, resource, r.get("kind", ""), bool(r.get("namespaced")))
        return None

    # -- sync ---------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        quota = self.quotas.indexer.get_by_key(key)
        if quota is None:
            return
        namespace = quota["metadata"]["namespace"]
        hard = hard_of(quota)
        names = sorted(hard)
        status = quota.get("status") or {}
        used = resources.parse_list(status.get("used"))
        selectors = scope_selectors(quota)
        errors: list[Exception] = []
        for gr in sorted(set(CORE) | named_resources(names)):
            evaluator = evaluator_for_resource(*gr)
            matching = evaluator.matching_resources(names) if evaluator is not None else []
            if evaluator is None or not matching:
                continue
            try:
                informer = await self._informer_for(gr)
            except (ClientError, TimeoutError) as e:
                errors.append(e)
                continue
            if informer is None:
                continue
            used.update(usage_stats(evaluator, informer.indexer.by_index(NAMESPACE_INDEX, namespace), matching, selectors))
        new_status = {"hard": to_wire(hard), "used": to_wire(resources.mask(used, names))}
        if new_status != {"hard": status.get("hard"), "used": status.get("used")}:
            await self.client.update_status(RESOURCE_QUOTAS, {**quota, "status": new_status})
            log.debug("resourcequota: %s used %s", key, new_status["used"])
        if errors:
            raise errors[0]


def usage_stats(evaluator: Evaluator, objects: list[Obj], names: list[str], selectors: list[Obj]) -> ResourceList:
    """Evaluator.UsageStats: `names` summed over the objects in the quota's scopes (zero when none)."""
    used: ResourceList = dict.fromkeys(names, resources.ZERO)
    for obj in objects:
        if all(evaluator.matches_scope(s, obj) for s in selectors):
            used = resources.add(used, resources.mask(evaluator.usage(obj), names))
    return used


def _scope_fields(obj: Obj) -> tuple[Any, ...]:
    """What a pod's quota scopes depend on besides its usage."""
    spec = obj.get("spec") or {}
    return spec.get("activeDeadlineSeconds"), spec.get("priorityClassName"), orjson.dumps(spec.get("affinity"))

