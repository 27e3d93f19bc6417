"""The ReplicaSet controller and the ReplicationManager (``pkg/controller/replicaset``,
``pkg/controller/replication``): keep ``spec.replicas`` pods matching the selector alive.

One implementation serves both kinds, as upstream's ReplicationManager wraps the ReplicaSet
controller: a :class:`ReplicaSetController` is parameterised by its resource, its kind's
selector shape (a LabelSelector for ReplicaSets, a plain map for ReplicationControllers) and its
event source.

``sync(key)``:

1. reads the ReplicaSet and the pods it may own from the caches. The pod informer carries the
   ``controllerUID`` index, so the candidates are the pods it controls plus the orphans of its
   namespace, never a scan of the namespace;
2. claims them (ControllerRefManager: owned pods that stopped matching are released, matching
   orphans adopted);
3. if its expectations are satisfied (every create and delete it asked for has been seen by
   the informer), creates or deletes the difference. Creations go in slow-start batches
   (1, 2, 4, ...: a quota or admission error costs one failed request, not 500), at most
   ``burst_replicas`` per sync; deletions pick pods in upstream's ActivePodsWithRanks order
   (unassigned, pending, not ready, low deletion cost, doubled up on a node, recently ready,
   restarted, young first);
4. writes the status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
   observedGeneration, the ReplicaFailure condition while creates/deletes fail) when it
   changed, and comes back after minReadySeconds while ready pods are not yet available.

The expectations are what keeps a controller that runs ahead of its informer from creating
twice: they are raised before the writes and lowered by the pod handlers as the pods arrive.
They live in memory only; a restarted controller starts from a fresh list of every pod, which
already holds whatever its predecessor created.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from k8py.api import meta
from k8py.api.selectors import LabelSelector
from k8py.client import ClientError, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import PODS, REPLICA_SETS, REPLICATION_CONTROLLERS, Resource
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.controller_utils import (
    CONTROLLER_UID_INDEX,
    ControllerRefManager,
    PodControl,
    controller_ref,
    controller_uid_index_func,
    error_message,
    generate_name_prefix,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    orphan_index_key,
    pod_condition,
    pod_from_template,
    pod_phase,
)
from k8py.controllers.expectations import UIDTrackingExpectations
from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]

BURST_REPLICAS = 500  # upstream's BurstReplicas: creations or deletions per sync
SLOW_START_INITIAL_BATCH_SIZE = 1
STATUS_UPDATE_RETRIES = 1
REPLICA_FAILURE = "ReplicaFailure"
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


# ---- helpers shared with other controllers --------------------------------------------------------


async def slow_start_batch(count: int, initial_batch_size: int, fn: Callable[[], Awaitable[bool]]) -> tuple[int, BaseException | None]:
    """Call ``fn`` ``count`` times in batches of doubling size (upstream's slowStartBatch).

    Each batch runs concurrently; a batch with a failure ends the run. ``fn`` returns True when
    it made what it was asked for. Returns the number of successes and the first error."""
    remaining = count
    successes = 0
    batch = min(remaining, initial_batch_size)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        error: BaseException | None = None
        for r in results:
            if isinstance(r, BaseException):
                if isinstance(r, asyncio.CancelledError):
                    raise r
                error = error or r
            elif r:
                successes += 1
        if error is not None:
            return successes, error
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_cost(pod: Obj) -> int:
    """controller.kubernetes.io/pod-deletion-cost; 0 when absent or invalid."""
    value = ((pod["metadata"].get("annotations") or {}).get(POD_DELETION_COST)) or ""
    if not value or not (value[0] == "-" or value == "0" or "1" <= value[0] <= "9"):
        return 0
    try:
        cost = int(value, 10)
    except ValueError:
        return 0
    return cost if -(2**31) <= cost < 2**31 else 0


def _ready_time(pod: Obj) -> float:
    """When the pod became ready (0: not ready or unknown)."""
    c = pod_condition(pod, "Ready")
    if c is None or c.get("status") != "True" or not c.get("lastTransitionTime"):
        return 0.0
    return meta.parse_time(c["lastTransitionTime"]).timestamp()


def _created(pod: Obj) -> float:
    ts = pod["metadata"].get("creationTimestamp")
    return meta.parse_time(ts).timestamp() if ts else 0.0


def _max_restarts(pod: Obj) -> int:
    return max((c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or ()), default=0)


def _log_rank(t: float, now: float) -> int:
    d = (now - t) * 1e9  # Go's durations are nanoseconds
    return int(math.log2(d)) if d > 0 else -1


class _Ranked:
    """A pod with the facts ActivePodsWithRanks compares, computed once."""

    __slots__ = ("cost", "created", "node", "phase", "pod", "rank", "ready", "ready_time", "restarts", "uid")

    def __init__(self, pod: Obj, rank: int) -> None:
        self.pod = pod
        self.rank = rank
        self.node = (pod.get("spec") or {}).get("nodeName") or ""
        self.phase = _PHASE_ORDINAL.get(pod_phase(pod), 0)
        self.ready = is_pod_ready(pod)
        self.cost = _deletion_cost(pod)
        self.ready_time = _ready_time(pod) if self.ready else 0.0
        self.restarts = _max_restarts(pod)
        self.created = _created(pod)
        self.uid = pod["metadata"].get("uid", "")


def _after_or_zero(t1: float, t2: float) -> bool:
    """t1 after t2, a zero time being after any other."""
    if not t1 or not t2:
        return not t1
    return t1 > t2


def _less(a: _Ranked, b: _Ranked, now: float) -> bool:
    """ActivePodsWithRanks.Less: should `a` be deleted before `b`? (LogarithmicScaleDown and
    PodDeletionCost on, as in 1.32.)"""
    if a.node != b.node and (not a.node or not b.node):  # 1. unassigned < assigned
        return not a.node
    if a.phase != b.phase:  # 2. Pending < Unknown < Running
        return a.phase < b.phase
    if a.ready != b.ready:  # 3. not ready < ready
        return not a.ready
    if a.cost != b.cost:  # 4. lower pod-deletion-cost < higher
        return a.cost < b.cost
    if a.rank != b.rank:  # 5. doubled up < not doubled up
        return a.rank > b.rank
    if a.ready and b.ready and a.ready_time != b.ready_time:  # 6. ready for less time < more time
        if not a.ready_time or not b.ready_time:
            return _after_or_zero(a.ready_time, b.ready_time)
        diff = _log_rank(a.ready_time, now) - _log_rank(b.ready_time, now)
        return a.uid < b.uid if diff == 0 else diff < 0
    if a.restarts != b.restarts:  # 7. more restarts < fewer
        return a.restarts > b.restarts
    if a.created != b.created:  # 8. newer < older
        if not a.created or not b.created:
            return _after_or_zero(a.created, b.created)
        diff = _log_rank(a.created, now) - _log_rank(b.created, now)
        return a.uid < b.uid if diff == 0 else diff < 0
    return False


def rank_pods_for_deletion(pods: list[Obj], related: list[Obj], now: float | None = None) -> list[Obj]:
    """``pods`` in deletion order: upstream's getPodsRankedByRelatedPodsOnSameNode + sort.

    A pod's rank is the number of active `related` pods (its ReplicaSet's and its siblings',
    under the same controller) on its node."""
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = (p.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    ranked = [_Ranked(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0)) for p in pods]
    t = dt.datetime.now(dt.UTC).timestamp() if now is None else now

    def cmp(a: _Ranked, b: _Ranked) -> int:
        if _less(a, b, t):
            return -1
        if _less(b, a, t):
            return 1
        return 0

    ranked.sort(key=functools.cmp_to_key(cmp))
    return [r.pod for r in ranked]


def label_matcher(selector: LabelSelector) -> Callable[[dict[str, str]], bool]:
    """``selector.matches``, or for a selector of equalities only (every matchLabels selector) a
    dict-items subset test: the claim loop runs it for every pod of every sync."""
    eq = selector.simple_equalities()
    if not selector.matches_nothing and len(eq) == len(selector.requirements):
        items = eq.items()
        return lambda labels: items <= labels.items()
    return selector.matches


def replica_set_condition(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or () if c.get("type") == type_), None)


# ---- the controller -------------------------------------------------------------------------------


class ReplicaSetController(QueueController):
    """``pkg/controller/replicaset``; see the module docstring."""

    name = "replicaset"
    resource: Resource = REPLICA_SETS
    kind = "ReplicaSet"
    event_source = "replicaset-controller"

    def __init__(self, ctx: ControllerContext, *, burst_replicas: int = BURST_REPLICAS) -> None:
        super().__init__(workers=ctx.options.workers(self.name, 5))
        self.client = ctx.client
        self.burst_replicas = burst_replicas
        self.recorder = ctx.recorder(self.event_source)
        self.pod_control = PodControl(self.client, self.recorder)
        self.expectations = UIDTrackingExpectations()
        self.rs_informer = ctx.informers.informer_for(
            self.resource, indexers={CONTROLLER_UID_INDEX: controller_uid_index_func}
        )
        self.pod_informer = ctx.informers.informer_for(
            PODS, indexers={CONTROLLER_UID_INDEX: controller_uid_index_func}
        )
        self.rs_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda obj, _initial: self.enqueue(obj),
                update_func=self._update_rs,
                delete_func=self._delete_rs,
            )
        )
        self.pod_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=self._add_pod, update_func=self._update_pod, delete_func=self._delete_pod
            )
        )
        self.synced = [self.rs_informer, self.pod_informer]
        self._selectors: dict[str, tuple[Any, LabelSelector]] = {}  # uid -> (raw selector, parsed)

    # ---- kind specifics (ReplicationManager overrides) -----------------------------------------

    def selector_of(self, rs: Obj) -> LabelSelector:
        """The parsed selector, cached per object while its raw selector stays the same."""
        raw = (rs.get("spec") or {}).get("selector")
        uid = rs["metadata"].get("uid", "")
        cached = self._selectors.get(uid)
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            selector = self._parse_selector(raw)
        except Exception:
            selector = LabelSelector.nothing()
        self._selectors[uid] = (raw, selector)
        return selector

    def _parse_selector(self, raw: Any) -> LabelSelector:
        return LabelSelector.from_label_selector(raw)

    # ---- event handlers --------------------------------------------------------------------------

    def _update_rs(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("uid") != cur["metadata"].get("uid"):
            # deleted and recreated under the same name while we were not looking
            self._delete_rs(DeletedFinalStateUnknown(key_of(old), old))
        old_replicas = (old.get("spec") or {}).get("replicas")
        cur_replicas = (cur.get("spec") or {}).get("replicas")
        if old_replicas != cur_replicas:
            log.debug("%s %s: replicas %s -> %s", self.kind, key_of(cur), old_replicas, cur_replicas)
        self.enqueue(cur)

    def _delete_rs(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        key = key_of(obj)
        self.expectations.delete(key)
        self._selectors.pop(unwrap(obj)["metadata"].get("uid", ""), None)
        self.queue.add(key)

    def _resolve(self, namespace: str, ref: Obj) -> Obj | None:
        """The cached owner a controllerRef names, if it is one of ours."""
        if ref.get("kind") != self.kind:
            return None
        rs = self.rs_informer.indexer.get_by_key(f"{namespace}/{ref.get('name', '')}")
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return None
        return rs

    def _matching_replica_sets(self, pod: Obj) -> list[Obj]:
        """getPodReplicaSets: the owners whose selectors match an orphan pod."""
        labels = pod["metadata"].get("labels") or {}
        out = []
        for rs in self.rs_informer.indexer.by_index("namespace", pod["metadata"].get("namespace", "")):
            selector = self.selector_of(rs)
            if not selector.empty and selector.matches(labels):
                out.append(rs)
        return out

    def _add_pod(self, pod: Obj, _initial: bool) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            # a pod already being deleted (seen after a restart): not a creation to observe
            self._delete_pod(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            rs = self._resolve(pod["metadata"].get("namespace", ""), ref)
            if rs is None:
                return
            key = key_of(rs)
            self.expectations.creation_observed(key)
            self.queue.add(key)
            return
        # an orphan: let every matching owner consider adopting it (no creation observed)
        for rs in self._matching_replica_sets(pod):
            self.enqueue(rs)

    def _update_pod(self, old: Obj, cur: Obj) -> None:
        old_md, cur_md = old["metadata"], cur["metadata"]
        if old_md.get("resourceVersion") == cur_md.get("resourceVersion"):
            return  # a relist's resync
        label_changed = old_md.get("labels") != cur_md.get("labels")
        if cur_md.get("deletionTimestamp"):
            # graceful deletion: count the deletion now, not when the kubelet is done with it
            self._delete_pod(cur)
            if label_changed:
                self._delete_pod(old)
            return
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            rs = self._resolve(old_md.get("namespace", ""), old_ref)
            if rs is not None:
                self.enqueue(rs)
        if cur_ref is not None:
            rs = self._resolve(cur_md.get("namespace", ""), cur_ref)
            if rs is None:
                return
            self.enqueue(rs)
            min_ready = (rs.get("spec") or {}).get("minReadySeconds") or 0
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(cur):
                # check availability once minReadySeconds passed (+1 s against clock skew)
                self.enqueue_after(rs, min_ready + 1)
            return
        if label_changed or ref_changed:
            for rs in self._matching_replica_sets(cur):
                self.enqueue(rs)

    def _delete_pod(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        pod = unwrap(obj)
        ref = controller_ref(pod)
        if ref is None:
            return
        rs = self._resolve(pod["metadata"].get("namespace", ""), ref)
        if rs is None:
            return
        key = key_of(rs)
        self.expectations.deletion_observed_uid(key, pod["metadata"].get("uid", ""))
        self.queue.add(key)

    # ---- sync ------------------------------------------------------------------------------------

    def candidate_pods(self, rs: Obj) -> list[Obj]:
        """The pods the ReplicaSet controls plus its namespace's orphans."""
        idx = self.pod_informer.indexer
        ns = rs["metadata"].get("namespace", "")
        return idx.by_index(CONTROLLER_UID_INDEX, rs["metadata"]["uid"]) + idx.by_index(
            CONTROLLER_UID_INDEX, orphan_index_key(ns)
        )

    async def claim_pods(self, rs: Obj, selector: LabelSelector, pods: list[Obj]) -> list[Obj]:
        """ClaimPods; owned pods that match need no request, so they skip the manager."""
        uid = rs["metadata"]["uid"]
        matches = label_matcher(selector)
        claimed: list[Obj] = []
        others: list[Obj] = []
        for pod in pods:
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") == uid and matches(pod["metadata"].get("labels") or {}):
                claimed.append(pod)
            else:
                others.append(pod)
        if others:
            manager = ControllerRefManager(self.client, PODS, rs, selector)
            claimed.extend(await manager.claim(others))
        return claimed

    async def sync(self, key: str) -> None:
        rs = self.rs_informer.indexer.get_by_key(key)
        if rs is None:
            self.expectations.delete(key)
            return
        needs_sync = self.expectations.satisfied(key)
        selector = self.selector_of(rs)
        pods = [p for p in self.candidate_pods(rs) if is_pod_active(p)]
        pods = await self.claim_pods(rs, selector, pods)
        manage_error: BaseException | None = None
        diff = 0
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            diff = len(pods) - int((rs.get("spec") or {}).get("replicas", 1))
            try:
                await self.manage_replicas(key, pods, rs)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                manage_error = e
        status = self.calculate_status(rs, pods, manage_error, diff)
        updated = await self.update_status(rs, status)
        if manage_error is not None:
            raise manage_error
        spec = updated.get("spec") or {}
        ustatus = updated.get("status") or {}
        min_ready = spec.get("minReadySeconds") or 0
        replicas = spec.get("replicas", 1)
        if (
            min_ready > 0
            and ustatus.get("readyReplicas", 0) == replicas
            and ustatus.get("availableReplicas", 0) != replicas
        ):
            self.enqueue_after(key, min_ready)

    async def manage_replicas(self, key: str, pods: list[Obj], rs: Obj) -> None:
        """Create or delete the difference between the claimed pods and spec.replicas."""
        diff = len(pods) - int((rs.get("spec") or {}).get("replicas", 1))
        if diff < 0:
            count = min(-diff, self.burst_replicas)
            # Raise the expectations before any create: the pods' ADDED events may come back
            # before the create calls return, and must find them to lower.
            self.expectations.expect(key, add=count)
            log.debug("%s %s: too few replicas, creating %d", self.kind, key, count)
            template = (rs.get("spec") or {}).get("template") or {}
            prefix = generate_name_prefix(rs["metadata"]["name"])

            async def create() -> bool:
                pod = pod_from_template(template, rs, generate_name=prefix)
                return await self.pod_control.create_pod(pod, rs) is not None

            successes, error = await slow_start_batch(count, SLOW_START_INITIAL_BATCH_SIZE, create)
            skipped = count - successes
            if skipped > 0:
                # pods never created are never observed: stop expecting them (retried next sync)
                self.expectations.lower(key, add=skipped)
            if error is not None:
                raise error
        elif diff > 0:
            count = min(diff, self.burst_replicas)
            log.debug("%s %s: too many replicas, deleting %d", self.kind, key, count)
            related = self.indirectly_related_pods(rs)
            victims = pods if count >= len(pods) else rank_pods_for_deletion(pods, related)
            victims = victims[:count]
            self.expectations.expect_deletions(key, [p["metadata"]["uid"] for p in victims])

            async def delete(pod: Obj) -> None:
                try:
                    await self.pod_control.delete_pod(pod, rs)
                except ClientError as e:
                    # the pod will not go away: stop waiting for it
                    self.expectations.deletion_observed_uid(key, pod["metadata"]["uid"])
                    if not is_not_found(e):
                        raise

            results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    def indirectly_related_pods(self, rs: Obj) -> list[Obj]:
        """The pods of every ReplicaSet under the same controller as `rs` (its own included)."""
        ref = controller_ref(rs)
        if ref is None:
            return []
        ns = rs["metadata"].get("namespace", "")
        seen: set[str] = set()
        out: list[Obj] = []
        for sibling in self.rs_informer.indexer.by_index(CONTROLLER_UID_INDEX, ref.get("uid", "")):
            if sibling["metadata"].get("namespace", "") != ns:
                continue
            for pod in self.pod_informer.indexer.by_index(CONTROLLER_UID_INDEX, sibling["metadata"]["uid"]):
                uid = pod["metadata"].get("uid", "")
                if uid not in seen:
                    seen.add(uid)
                    out.append(pod)
        return out

    # ---- status ----------------------------------------------------------------------------------

    def calculate_status(self, rs: Obj, pods: list[Obj], manage_error: BaseException | None, diff: int) -> Obj:
        spec = rs.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        template_items = template_labels.items()
        min_ready = spec.get("minReadySeconds") or 0
        now = dt.datetime.now(dt.UTC)
        fully_labeled = ready = available = 0
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            if template_items <= labels.items():
                fully_labeled += 1
            cond = pod_condition(pod, "Ready")
            if cond is not None and cond.get("status") == "True":
                ready += 1
                if min_ready <= 0 or is_pod_available(pod, min_ready, now):
                    available += 1
        old = rs.get("status") or {}
        conditions = [dict(c) for c in old.get("conditions") or ()]
        failure = replica_set_condition(old, REPLICA_FAILURE)
        if manage_error is not None and failure is None:
            reason = "FailedCreate" if diff < 0 else "FailedDelete"
            conditions.append(
                {
                    "type": REPLICA_FAILURE,
                    "status": "True",
                    "lastTransitionTime": meta.now(),
                    "reason": reason,
                    "message": error_message(manage_error),
                }
            )
        elif manage_error is None and failure is not None:
            conditions = [c for c in conditions if c.get("type") != REPLICA_FAILURE]
        status: Obj = {"replicas": len(pods)}
        # Go's omitempty: zero counts are not written
        for name, value in (
            ("fullyLabeledReplicas", fully_labeled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ):
            if value:
                status[name] = value
        if old.get("observedGeneration"):
            status["observedGeneration"] = old["observedGeneration"]
        if conditions:
            status["conditions"] = conditions
        return status

    async def update_status(self, rs: Obj, status: Obj) -> Obj:
        """Write `status` (with observedGeneration) unless it is what the object already says."""
        old = rs.get("status") or {}
        generation = rs["metadata"].get("generation", 0)
        same = all(
            old.get(f, 0) == status.get(f, 0)
            for f in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas")
        )
        if same and old.get("observedGeneration", 0) == generation and (old.get("conditions") or []) == (
            status.get("conditions") or []
        ):
            return rs
        status = dict(status)
        if generation:
            status["observedGeneration"] = generation
        obj = {**rs, "status": status}
        for attempt in range(STATUS_UPDATE_RETRIES + 1):
            try:
                return await self.client.update_status(self.resource, obj)
            except ClientError:
                if attempt >= STATUS_UPDATE_RETRIES:
                    raise
                md = rs["metadata"]
                fresh = await self.client.get(self.resource, md["name"], namespace=md.get("namespace"))
                obj = {**fresh, "status": status}
        return rs  # not reached


class ReplicationManager(ReplicaSetController):
    """``pkg/controller/replication``: the same controller for ReplicationControllers, whose
    selector is a plain label map (and, defaulted from the template's labels, never empty)."""

    name = "replicationcontroller"
    resource = REPLICATION_CONTROLLERS
    kind = "ReplicationController"
    event_source = "replication-controller"

    def _parse_selector(self, raw: Any) -> LabelSelector:
        if not raw:
            return LabelSelector.nothing()
        return LabelSelector.from_set(raw)
