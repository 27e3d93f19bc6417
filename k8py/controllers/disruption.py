"""PodDisruptionBudgets (``pkg/controller/disruption``): the status the eviction API decides on.

For each PDB, ``sync`` counts the pods its selector matches (``expectedPods``), the healthy ones
among them (Ready, not being deleted, not just approved for eviction: ``currentHealthy``), what
the budget requires (``desiredHealthy``), and writes ``disruptionsAllowed = currentHealthy -
desiredHealthy`` (0 when negative or when no pod is expected), ``observedGeneration`` and the
``DisruptionAllowed`` condition (True/SufficientPods, False/InsufficientPods).

* ``minAvailable: N``: desiredHealthy N, expectedPods the number of matching pods.
* ``minAvailable: P%`` and ``maxUnavailable`` (either form): expectedPods is the sum of the
  scales of the pods' controllers, found as upstream's finders do: ReplicationController,
  Deployment (through its ReplicaSet), ReplicaSet (not owned by a Deployment), StatefulSet from
  the informer caches, anything else through its ``scale`` subresource. Percentages round up.
  Pods without a controller are reported in an ``UnmanagedPods`` event and left out; a pod
  whose controller cannot be found fails the sync.

``status.disruptedPods`` is written by the eviction subresource (the API server) for each pod it
approved: such a pod does not count as healthy until it is deleted, or until two minutes pass
without its deletion (then a ``NotDeleted`` event, and it counts again); the PDB is rechecked
when the oldest entry expires. A sync that fails for any reason but a write conflict sets
``disruptionsAllowed`` to 0 with DisruptionAllowed=False, reason ``SyncFailed`` (failSafe), so
that the eviction API fails closed.

Pods carrying a ``DisruptionTarget=True`` condition for two minutes without being deleted (an
eviction that never completed) get the condition set to False again (the stale pod disruption
worker); their keys share the work queue as ``pod:<ns>/<name>``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

import orjson

from k8py.api import meta
from k8py.api.registry import RESOURCES
from k8py.api.selectors import LabelSelector
from k8py.client import (
    NORMAL,
    WARNING,
    ClientError,
    PatchType,
    ResourceEventHandlerFuncs,
    is_conflict,
    is_not_found,
)
from k8py.client.cache import NAMESPACE_INDEX, DeletedFinalStateUnknown
from k8py.client.resources import (
    DEPLOYMENTS,
    POD_DISRUPTION_BUDGETS,
    PODS,
    REPLICA_SETS,
    REPLICATION_CONTROLLERS,
    STATEFUL_SETS,
    Resource,
)
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.controller_utils import controller_ref, is_pod_ready, pod_condition, pod_phase
from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DELETION_TIMEOUT = 120.0  # seconds an approved eviction may take before the pod counts again
STALE_POD_DISRUPTION_TIMEOUT = 120.0
POD_KEY_PREFIX = "pod:"
CONDITION = "DisruptionAllowed"


class SyncError(Exception):
    pass


def pdb_selector(pdb: Obj) -> LabelSelector:
    """policy/v1: a null selector matches no pod, an empty one every pod of the namespace."""
    try:
        return LabelSelector.from_label_selector((pdb.get("spec") or {}).get("selector"))
    except Exception:
        return LabelSelector.nothing()


def scaled_value(value: int | str, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise SyncError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
    try:
        percent = int(value[:-1])
    except ValueError:
        raise SyncError(f"invalid value {value!r}: not a percentage") from None
    scaled = percent * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def set_condition(conditions: list[Obj], new: Obj) -> list[Obj]:
    """apimeta.SetStatusCondition: lastTransitionTime moves only when the status changes."""
    out = [dict(c) for c in conditions]
    for c in out:
        if c.get("type") == new["type"]:
            if c.get("status") != new["status"]:
                c["status"] = new["status"]
                c["lastTransitionTime"] = meta.now()
            c["reason"] = new.get("reason", "")
            c["message"] = new.get("message", "")
            c["observedGeneration"] = new.get("observedGeneration", 0)
            return out
    out.append({**new, "lastTransitionTime": meta.now()})
    return out


def disruption_allowed_condition(status: Obj) -> Obj:
    """pdbhelper.UpdateDisruptionAllowedCondition's condition for `status`."""
    if status.get("disruptionsAllowed", 0) > 0:
        return {"type": CONDITION, "status": "True", "reason": "SufficientPods", "message": "",
                "observedGeneration": status.get("observedGeneration", 0)}  # fmt: skip
    return {"type": CONDITION, "status": "False", "reason": "InsufficientPods", "message": "",
            "observedGeneration": status.get("observedGeneration", 0)}  # fmt: skip


def conditions_up_to_date(pdb: Obj) -> bool:
    """pdbhelper.ConditionsAreUpToDate."""
    status = pdb.get("status") or {}
    cond = next((c for c in status.get("conditions") or () if c.get("type") == CONDITION), None)
    if cond is None or status.get("observedGeneration") != pdb["metadata"].get("generation"):
        return False
    if status.get("disruptionsAllowed", 0) > 0:
        return cond.get("status") == "True" and cond.get("reason") == "SufficientPods"
    return cond.get("status") == "False" and cond.get("reason") == "InsufficientPods"


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


class DisruptionController(QueueController):
    name = "disruption"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers(self.name, 5))
        self.client = ctx.client
        self.recorder = ctx.recorder("controllermanager")
        inf = ctx.informers
        self.pods = inf.informer_for(PODS)
        self.pdbs = inf.informer_for(POD_DISRUPTION_BUDGETS)
        self.rcs = inf.informer_for(REPLICATION_CONTROLLERS)
        self.rss = inf.informer_for(REPLICA_SETS)
        self.deployments = inf.informer_for(DEPLOYMENTS)
        self.statefulsets = inf.informer_for(STATEFUL_SETS)
        self.pdbs.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda p, _i: self.enqueue(p),
                update_func=lambda _o, n: self.enqueue(n),
                delete_func=self.enqueue,
            )
        )
        self.pods.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda p, _i: self._pod_changed(p),
                update_func=lambda _o, n: self._pod_changed(n),
                delete_func=self._pod_deleted,
            )
        )
        self.synced = [self.pods, self.pdbs, self.rcs, self.rss, self.deployments, self.statefulsets]

    # -- events -------------------------------------------------------------------------------------

    def _pod_changed(self, pod: Obj) -> None:
        pdb = self._pdb_for_pod(pod)
        if pdb is not None:
            self.enqueue(pdb)
        wait = self._stale_disruption_wait(pod)
        if wait is not None:
            self.queue.add_after(POD_KEY_PREFIX + key_of(pod), wait)

    def _pod_deleted(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        pdb = self._pdb_for_pod(unwrap(obj))
        if pdb is not None:
            self.enqueue(pdb)

    def pdbs_for_pod(self, pod: Obj) -> list[Obj]:
        """The lister's GetPodPodDisruptionBudgets."""
        labels = pod["metadata"].get("labels") or {}
        return [
            pdb for pdb in self.pdbs.indexer.by_index(NAMESPACE_INDEX, pod["metadata"].get("namespace", ""))
            if pdb_selector(pdb).matches(labels)
        ]  # fmt: skip

    def _pdb_for_pod(self, pod: Obj) -> Obj | None:
        pdbs = self.pdbs_for_pod(pod)
        if not pdbs:
            return None
        if len(pdbs) > 1:
            md = pod["metadata"]
            msg = (f'Pod "{md.get("namespace")}"/"{md.get("name")}" matches multiple PodDisruptionBudgets.  '
                   f'Chose "{pdbs[0]["metadata"]["name"]}" arbitrarily.')  # fmt: skip
            self.recorder.event(pod, WARNING, "MultiplePodDisruptionBudgets", msg)
        return pdbs[0]

    # -- sync ---------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key.startswith(POD_KEY_PREFIX):
            await self._sync_stale_pod_disruption(key.removeprefix(POD_KEY_PREFIX))
            return
        pdb = self.pdbs.indexer.get_by_key(key)
        if pdb is None:
            return
        try:
            await self._try_sync(pdb)
        except Exception as e:
            if is_conflict(e):
                raise  # requeued, without failSafe
            log.info("disruption: failed to sync PDB %s: %s", key, e)
            await self._fail_safe(pdb, e)

    async def _try_sync(self, pdb: Obj) -> None:
        namespace = pdb["metadata"]["namespace"]
        selector = pdb_selector(pdb)
        pods = [
            p for p in self.pods.indexer.by_index(NAMESPACE_INDEX, namespace)
            if selector.matches(p["metadata"].get("labels") or {})
        ]  # fmt: skip
        if not pods:
            self.recorder.event(pdb, NORMAL, "NoPods", "No matching pods found")
        try:
            expected, desired, unmanaged = await self._expected_pod_count(pdb, pods)
        except Exception as e:
            self.recorder.event(
                pdb, WARNING, "CalculateExpectedPodCountFailed", f"Failed to calculate the number of expected pods: {e}"
            )
            raise
        if unmanaged:
            sel = (pdb.get("spec") or {}).get("selector")
            self.recorder.event(
                pdb, WARNING, "UnmanagedPods",
                f"Pods selected by this PodDisruptionBudget (selector: {_go_selector(sel)}) were found to be unmanaged. "
                "As a result, the status of the PDB cannot be calculated correctly, which may result in undefined "
                'behavior. To account for these pods please set ".spec.minAvailable" field of the PDB to an integer value.',
            )  # fmt: skip
        now = dt.datetime.now(dt.UTC)
        disrupted, recheck = self._build_disrupted_pod_map(pods, pdb, now)
        healthy = _count_healthy_pods(pods, disrupted, now)
        await self._update_status(pdb, healthy, desired, expected, disrupted)
        if recheck is not None:
            self.enqueue_after(pdb, max(0.0, (recheck - now).total_seconds()))

    async def _expected_pod_count(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int, list[str]]:
        """getExpectedPodCount: (expectedCount, desiredHealthy, unmanaged pod names)."""
        spec = pdb.get("spec") or {}
        max_unavailable, min_available = spec.get("maxUnavailable"), spec.get("minAvailable")
        if max_unavailable is not None:
            expected, unmanaged = await self._expected_scale(pods)
            desired = max(expected - scaled_value(max_unavailable, expected, round_up=True), 0)
            return expected, desired, unmanaged
        if min_available is not None:
            if isinstance(min_available, int):
                return len(pods), min_available, []
            expected, unmanaged = await self._expected_scale(pods)
            return expected, scaled_value(min_available, expected, round_up=True), unmanaged
        return 0, 0, []

    async def _expected_scale(self, pods: list[Obj]) -> tuple[int, list[str]]:
        """getExpectedScale: the sum of the scales of the pods' controllers."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                unmanaged.append(pod["metadata"]["name"])
                continue
            if ref.get("uid") in scales:
                continue
            found = await self._find_controller(ref, pod["metadata"]["namespace"])
            if found is None:
                raise SyncError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
            scales[found[0]] = found[1]
        return sum(scales.values()), unmanaged

    async def _find_controller(self, ref: Obj, namespace: str) -> tuple[str, int] | None:
        """The finders, in upstream's order: RC, Deployment, ReplicaSet, StatefulSet, the scale subresource."""
        kind, group = ref.get("kind"), _group_of(ref.get("apiVersion", ""))
        key = f"{namespace}/{ref.get('name')}"
        if kind == "ReplicationController" and group == "":
            rc = self.rcs.indexer.get_by_key(key)
            return _uid_scale(rc, ref)
        if kind == "ReplicaSet" and group in ("apps", "extensions"):
            rs = self.rss.indexer.get_by_key(key)
            if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
                return None
            owner = controller_ref(rs)
            if owner is not None and owner.get("kind") == "Deployment":
                if _group_of(owner.get("apiVersion", "")) not in ("apps", "extensions"):
                    return None
                d = self.deployments.indexer.get_by_key(f"{namespace}/{owner.get('name')}")
                return _uid_scale(d, owner)
            return _uid_scale(rs, ref)
        if kind == "StatefulSet" and group == "apps":
            return _uid_scale(self.statefulsets.indexer.get_by_key(key), ref)
        return await self._scale_of(ref, namespace)

    async def _scale_of(self, ref: Obj, namespace: str) -> tuple[str, int] | None:
        """getScaleController: any other kind through its scale subresource."""
        resource = await self._resource_for(ref.get("apiVersion", ""), ref.get("kind", ""))
        try:
            scale = await self.client.get_subresource(resource, ref["name"], "scale", namespace=namespace)
        except ClientError as e:
            if is_not_found(e):
                return None
            raise
        if scale["metadata"].get("uid") != ref.get("uid"):
            return None
        return scale["metadata"]["uid"], int((scale.get("spec") or {}).get("replicas") or 0)

    async def _resource_for(self, api_version: str, kind: str) -> Resource:
        group, _, version = api_version.rpartition("/")
        for r in RESOURCES:
            if r.group == group and r.version == version and r.kind == kind:
                if r.subresource("scale") is None:
                    raise SyncError(f"{r.resource}.{r.group} does not implement the scale subresource")
                return Resource(r.group, r.version, r.resource, r.kind, r.namespaced)
        # a custom resource: ask discovery
        path = f"/apis/{api_version}" if group else f"/api/{api_version}"
        listing = orjson.loads(await self.client.raw("GET", path))
        names = {r.get("name") for r in listing.get("resources") or ()}
        for r in listing.get("resources") or ():
            if r.get("kind") == kind and "/" not in r.get("name", ""):
                if f"{r['name']}/scale" not in names:
                    raise SyncError(f"{r['name']}.{group} does not implement the scale subresource")
                return Resource(group, version, r["name"], kind, bool(r.get("namespaced")))
        raise SyncError(f"no resource for kind {kind} in {api_version}")

    def _build_disrupted_pod_map(
        self, pods: list[Obj], pdb: Obj, now: dt.datetime
    ) -> tuple[dict[str, str], dt.datetime | None]:
        disrupted = (pdb.get("status") or {}).get("disruptedPods") or {}
        result: dict[str, str] = {}
        recheck: dt.datetime | None = None
        if not disrupted:
            return result, None
        for pod in pods:
            md = pod["metadata"]
            if md.get("deletionTimestamp") or md["name"] not in disrupted:
                continue
            stamp = disrupted[md["name"]]
            try:
                expected = meta.parse_time(stamp) + dt.timedelta(seconds=DELETION_TIMEOUT)
            except ValueError:
                continue
            if expected < now:
                ns = pdb["metadata"]["namespace"]
                # upstream's message names the namespace twice (a long-standing typo kept for parity)
                self.recorder.event(
                    pod, WARNING, "NotDeleted", f"Pod was expected by PDB {ns}/{ns} to be deleted but it wasn't"
                )
            else:
                if recheck is None or expected < recheck:
                    recheck = expected
                result[md["name"]] = stamp
        return result, recheck

    async def _update_status(
        self, pdb: Obj, healthy: int, desired: int, expected: int, disrupted: dict[str, str]
    ) -> None:
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        status = pdb.get("status") or {}
        generation = pdb["metadata"].get("generation", 0)
        if (
            status.get("currentHealthy", 0) == healthy
            and status.get("desiredHealthy", 0) == desired
            and status.get("expectedPods", 0) == expected
            and status.get("disruptionsAllowed", 0) == allowed
            and (status.get("disruptedPods") or {}) == disrupted
            and status.get("observedGeneration") == generation
            and conditions_up_to_date(pdb)
        ):
            return
        new_status: Obj = {
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "observedGeneration": generation,
        }
        if disrupted:
            new_status["disruptedPods"] = disrupted
        new_status["conditions"] = set_condition(status.get("conditions") or [], disruption_allowed_condition(new_status))
        await self._write_status(pdb, new_status)

    async def _write_status(self, pdb: Obj, status: Obj) -> None:
        new = {**pdb, "status": status}
        await self.client.update_status(POD_DISRUPTION_BUDGETS, new)

    async def _fail_safe(self, pdb: Obj, err: BaseException) -> None:
        """failSafe: at least make the eviction API refuse (disruptionsAllowed 0, SyncFailed)."""
        status = meta.clone(pdb.get("status") or {})
        status["disruptionsAllowed"] = 0
        status["conditions"] = set_condition(
            status.get("conditions") or [],
            {"type": CONDITION, "status": "False", "reason": "SyncFailed", "message": str(err),
             "observedGeneration": status.get("observedGeneration", 0)},
        )  # fmt: skip
        try:
            await self._write_status(pdb, status)
        except ClientError as e:
            log.info("disruption: failSafe for PDB %s failed: %s", key_of(pdb), e)
            raise

    # -- stale DisruptionTarget conditions ---------------------------------------------------------------

    @staticmethod
    def _stale_disruption_wait(pod: Obj) -> float | None:
        """nonTerminatingPodHasStaleDisruptionCondition: seconds until the condition is stale, None if never."""
        if pod["metadata"].get("deletionTimestamp"):
            return None
        cond = pod_condition(pod, "DisruptionTarget")
        if (
            cond is None
            or cond.get("status") != "True"
            or cond.get("reason") == "TerminationByKubelet"
            or pod_phase(pod) in ("Succeeded", "Failed")
        ):
            return None
        try:
            since = meta.parse_time(cond.get("lastTransitionTime") or "")
        except ValueError:
            return 0.0
        age = (dt.datetime.now(dt.UTC) - since).total_seconds()
        return max(0.0, STALE_POD_DISRUPTION_TIMEOUT - age)

    async def _sync_stale_pod_disruption(self, key: str) -> None:
        pod = self.pods.indexer.get_by_key(key)
        if pod is None:
            return
        wait = self._stale_disruption_wait(pod)
        if wait is None:
            return
        if wait > 0:
            self.queue.add_after(POD_KEY_PREFIX + key, wait)
            return
        md = pod["metadata"]
        patch = {
            "metadata": {"uid": md["uid"]},
            "status": {"conditions": [{"type": "DisruptionTarget", "status": "False", "lastTransitionTime": meta.now()}]},
        }
        try:
            await self.client.patch(
                PODS, md["name"], patch, namespace=md["namespace"], subresource="status", patch_type=PatchType.STRATEGIC
            )
        except ClientError as e:
            if not is_not_found(e):
                raise
            return
        log.info("disruption: reset the stale DisruptionTarget condition of pod %s to False", key)


def _uid_scale(obj: Obj | None, ref: Obj) -> tuple[str, int] | None:
    if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
        return None
    replicas = (obj.get("spec") or {}).get("replicas")
    return obj["metadata"]["uid"], 1 if replicas is None else int(replicas)


def _count_healthy_pods(pods: list[Obj], disrupted: dict[str, str], now: dt.datetime) -> int:
    healthy = 0
    for pod in pods:
        md = pod["metadata"]
        if md.get("deletionTimestamp"):
            continue
        stamp = disrupted.get(md["name"])
        if stamp is not None:
            try:
                if meta.parse_time(stamp) + dt.timedelta(seconds=DELETION_TIMEOUT) > now:
                    continue
            except ValueError:
                pass
        if is_pod_ready(pod):
            healthy += 1
    return healthy


def _go_selector(sel: Obj | None) -> str:
    """%v of a *metav1.LabelSelector, as the generated String() prints it."""
    if sel is None:
        return "nil"
    labels = "".join(f"{k}: {v}," for k, v in sorted((sel.get("matchLabels") or {}).items()))
    exprs = "".join(
        f"LabelSelectorRequirement{{Key:{e.get('key', '')},Operator:{e.get('operator', '')},"
        f"Values:[{' '.join(e.get('values') or [])}],}},"
        for e in sel.get("matchExpressions") or ()
    )
    return (f"&LabelSelector{{MatchLabels:map[string]string{{{labels}}},"
            f"MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}")  # fmt: skip
