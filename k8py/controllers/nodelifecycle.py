"""Node lifecycle (``pkg/controller/nodelifecycle``): notices nodes that stopped heartbeating and
taints them, so that the taint eviction controller moves their pods away.

Three loops, as upstream:

* **monitorNodeHealth**, every ``--node-monitor-period``: for each node, ``try_update_node_health``
  keeps a local *probe timestamp*, moved to "now" whenever this controller sees the node's Ready
  condition heartbeat change or its Lease (``kube-node-lease/<node>``) renewed. A node whose
  probe timestamp is older than ``--node-monitor-grace-period`` (``--node-startup-grace-period``
  while it never posted a Ready condition) gets its Ready, MemoryPressure, DiskPressure and
  PIDPressure conditions set to Unknown (reason ``NodeStatusUnknown``, "Kubelet stopped posting
  node status."), a ``NodeNotReady`` event, and its pods' Ready condition set to False
  (MarkPodsNotReady, a ``NodeNotReady`` event per pod). Local clocks only: the timestamps the
  kubelet writes are compared with what this process saw before, never with its own clock, so
  clock skew between machines does not matter, and a restarted controller gives every node a
  fresh grace period.
* **NoExecute tainting**: a node whose observed Ready condition is False or Unknown is queued in
  its zone's :class:`RateLimitedTimedQueue`; every 100 ms the queue hands out nodes as its token
  bucket allows (upstream's ``--node-eviction-rate``, 0.1 per second with a burst of 1) and each gets
  ``node.kubernetes.io/not-ready:NoExecute`` or ``node.kubernetes.io/unreachable:NoExecute`` (the
  two are kept mutually exclusive, swapped at once when the condition flips). A Ready node loses
  both. The taint eviction controller (``tainteviction.py``) does the evicting.
* **NoSchedule tainting**, per node event (the work queue): conditions map to NoSchedule taints
  (not-ready, unreachable, memory-pressure, disk-pressure, pid-pressure, network-unavailable) and
  ``spec.unschedulable`` to ``node.kubernetes.io/unschedulable:NoSchedule``.

Zone disruption, as upstream's handleDisruption: nodes are grouped by zone (the
topology.kubernetes.io region and zone labels); a zone with no Ready node is in FullDisruption,
one with more than 2 and at least ``--unhealthy-zone-threshold`` (55%) not-Ready nodes in
PartialDisruption (tainting slows to ``--secondary-node-eviction-rate`` in zones above
``--large-cluster-size-threshold`` nodes, else stops), Normal otherwise. When every zone is fully
disrupted (the control plane is more likely cut off than all nodes dead) tainting stops and the
taints come off; when some node comes back, every probe timestamp restarts. The rates and
thresholds are upstream's flags, given here as ``--controller-option node-eviction-rate=0.1``
(also ``secondary-node-eviction-rate``, ``unhealthy-zone-threshold``,
``large-cluster-size-threshold``).

Taints are written as upstream's PatchNodeTaints does: the whole ``spec.taints`` list with the
node's resourceVersion as precondition, retried on conflict with a fresh read.

Not done: the pre-taint-manager eviction mode (removed upstream too) and metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from k8py.api import meta
from k8py.client import (
    NORMAL,
    WARNING,
    ClientError,
    PatchType,
    ResourceEventHandlerFuncs,
    is_conflict,
    is_not_found,
)
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import wait_for_cache_sync
from k8py.client.resources import LEASES, NODES, PODS
from k8py.controllers.base import QueueController
from k8py.controllers.controller_utils import pod_condition
from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NODE_LEASE_NAMESPACE = "kube-node-lease"
NODE_NAME_INDEX = "spec.nodeName"
NO_EXECUTE, NO_SCHEDULE = "NoExecute", "NoSchedule"
NOT_READY_KEY = "node.kubernetes.io/not-ready"
UNREACHABLE_KEY = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_KEY = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT: Obj = {"key": NOT_READY_KEY, "effect": NO_EXECUTE}
UNREACHABLE_TAINT: Obj = {"key": UNREACHABLE_KEY, "effect": NO_EXECUTE}
# nodeConditionToTaintKeyStatusMap: the NoSchedule taint a condition in a status stands for
CONDITION_TAINTS: dict[str, dict[str, str]] = {
    "Ready": {"False": NOT_READY_KEY, "Unknown": UNREACHABLE_KEY},
    "MemoryPressure": {"True": "node.kubernetes.io/memory-pressure"},
    "DiskPressure": {"True": "node.kubernetes.io/disk-pressure"},
    "NetworkUnavailable": {"True": "node.kubernetes.io/network-unavailable"},
    "PIDPressure": {"True": "node.kubernetes.io/pid-pressure"},
}
CONDITION_TAINT_KEYS = frozenset(k for m in CONDITION_TAINTS.values() for k in m.values())
# the conditions a silent node gets Unknown (NetworkUnavailable is the network's, not the kubelet's)
UNKNOWN_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
EXCLUDE_DISRUPTION_LABEL = "node.kubernetes.io/exclude-disruption"
NODE_EVICTION_PERIOD = 0.1  # how often the zone tainting queues are tried
NODE_UPDATE_WORKERS = 8  # monitorNodeHealth's parallelism
NODE_HEALTH_UPDATE_RETRY = 5
TAINT_UPDATE_RETRY = 5

# zone states
STATE_INITIAL = "Initial"
STATE_NORMAL = "Normal"
STATE_FULL_DISRUPTION = "FullDisruption"
STATE_PARTIAL_DISRUPTION = "PartialDisruption"


def node_pods_index(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []


def get_condition(status: Obj | None, type_: str) -> Obj | None:
    return next((c for c in (status or {}).get("conditions") or () if c.get("type") == type_), None)


def zone_key(node: Obj) -> str:
    """nodetopology.GetZoneKey: region and zone, "" when the node has neither."""
    labels = node["metadata"].get("labels") or {}
    zone = labels.get("topology.kubernetes.io/zone", labels.get("failure-domain.beta.kubernetes.io/zone", ""))
    region = labels.get("topology.kubernetes.io/region", labels.get("failure-domain.beta.kubernetes.io/region", ""))
    if not region and not zone:
        return ""
    return f"{region}:\x00:{zone}"


def taint_matches(a: Obj, b: Obj) -> bool:
    """Taint.MatchTaint: same key and effect."""
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def has_taint(node: Obj, taint: Obj) -> bool:
    return any(taint_matches(t, taint) for t in (node.get("spec") or {}).get("taints") or ())


def _epoch(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        return meta.parse_time(timestamp).timestamp()
    except ValueError:
        return None


# -- rate-limited tainting ----------------------------------------------------------------------------


class TokenBucket:
    """flowcontrol's token bucket rate limiter; qps <= 0 never accepts (NewFakeNeverRateLimiter)."""

    def __init__(self, qps: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps, self.burst, self.clock = qps, burst, clock
        self.tokens = float(burst) if qps > 0 else 0.0
        self.last = clock()

    def try_accept(self) -> bool:
        if self.qps <= 0:
            return False
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.qps)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class TimedValue:
    value: str
    uid: str
    added_at: float
    process_at: float


class RateLimitedTimedQueue:
    """scheduler.RateLimitedTimedQueue: unique node names in order, handed out as a token bucket allows."""

    def __init__(self, qps: float, burst: int = 1) -> None:
        self.items: dict[str, TimedValue] = {}
        self.limiter = TokenBucket(qps, burst)

    def add(self, value: str, uid: str) -> bool:
        if value in self.items:
            return False
        now = time.monotonic()
        self.items[value] = TimedValue(value, uid, now, now)
        return True

    def remove(self, value: str) -> bool:
        return self.items.pop(value, None) is not None

    def swap_limiter(self, qps: float) -> None:
        if qps != self.limiter.qps:
            self.limiter = TokenBucket(qps, self.limiter.burst)

    async def try_(self, fn: Callable[[TimedValue], Awaitable[tuple[bool, float]]]) -> None:
        """Hand out due items while tokens last; `fn` says (done, retry after)."""
        now = time.monotonic()
        for item in sorted(self.items.values(), key=lambda v: v.process_at):
            if item.process_at > now:
                break
            if not self.limiter.try_accept():
                break
            done, wait = await fn(item)
            if self.items.get(item.value) is not item:
                continue  # removed or replaced meanwhile
            if done:
                del self.items[item.value]
            else:
                item.process_at = time.monotonic() + wait


# -- writes ----------------------------------------------------------------------------------------------


async def swap_node_controller_taint(client: Any, node: Obj, add: list[Obj], remove: list[Obj]) -> bool:
    """controllerutil.SwapNodeControllerTaint: add `add` (NoExecute ones stamped timeAdded) and drop
    `remove` in one write of spec.taints, preconditioned on the resourceVersion; False on failure."""
    stamp = meta.now()
    to_add = [{**t, "timeAdded": stamp} if t.get("effect") == NO_EXECUTE else dict(t) for t in add]
    current = node
    for attempt in range(TAINT_UPDATE_RETRY):
        if attempt:
            try:
                current = await client.get(NODES, node["metadata"]["name"])
            except ClientError as e:
                log.info("nodelifecycle: reading node %s for its taints: %s", node["metadata"]["name"], e)
                return False
        taints = list((current.get("spec") or {}).get("taints") or [])
        new = [t for t in taints if not any(taint_matches(t, r) for r in remove)]
        for t in to_add:
            same = next((i for i, old in enumerate(new) if taint_matches(old, t)), None)
            if same is None:
                new.append(t)
            elif (new[same].get("value") or "") != (t.get("value") or ""):
                new[same] = t
        if new == taints:
            return True
        patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": {"taints": new or None}}
        try:
            await client.patch(NODES, current["metadata"]["name"], patch, patch_type=PatchType.MERGE)
            return True
        except ClientError as e:
            if is_conflict(e):
                continue
            log.info("nodelifecycle: updating taints of node %s: %s", current["metadata"]["name"], e)
            return False
    return False


# -- the controller ----------------------------------------------------------------------------------------


@dataclass
class NodeHealth:
    """nodeHealthData: what this controller saw of a node, and when (local wall-clock seconds)."""

    probe_timestamp: float
    ready_transition_timestamp: float
    status: Obj
    lease_renew: float | None = None


class NodeLifecycleController(QueueController):
    name = "nodelifecycle"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers(self.name, NODE_UPDATE_WORKERS))
        opts = ctx.options
        self.client = ctx.client
        self.recorder = ctx.recorder("node-controller")
        self.monitor_period = opts.node_monitor_period
        self.grace_period = opts.node_monitor_grace_period
        self.startup_grace_period = opts.node_startup_grace_period
        self.eviction_qps = float(opts.extra.get("node-eviction-rate", 0.1))
        self.secondary_eviction_qps = float(opts.extra.get("secondary-node-eviction-rate", 0.01))
        self.large_cluster_threshold = int(opts.extra.get("large-cluster-size-threshold", 50))
        self.unhealthy_zone_threshold = float(opts.extra.get("unhealthy-zone-threshold", 0.55))

        self.nodes = ctx.informers.informer_for(NODES)
        self.leases = ctx.informers.informer_for(LEASES, namespace=NODE_LEASE_NAMESPACE)
        self.pods = ctx.informers.informer_for(PODS, indexers={NODE_NAME_INDEX: node_pods_index})
        self.nodes.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda n, _i: self.queue.add(f"node/{n['metadata']['name']}"),
                update_func=lambda _o, n: self.queue.add(f"node/{n['metadata']['name']}"),
            )
        )
        self.pods.add_event_handler(
            ResourceEventHandlerFuncs(add_func=lambda p, _i: self._pod_updated(None, p), update_func=self._pod_updated)
        )
        self.synced = [self.nodes, self.leases, self.pods]

        self.health: dict[str, NodeHealth] = {}
        self.known_nodes: dict[str, Obj] = {}
        self.zone_states: dict[str, str] = {}
        self.zone_tainter: dict[str, RateLimitedTimedQueue] = {}
        self.nodes_to_retry: set[str] = set()
        self._sem = asyncio.Semaphore(NODE_UPDATE_WORKERS)

    # -- events -------------------------------------------------------------------------------------

    def _pod_updated(self, old: Obj | None, new: Obj | DeletedFinalStateUnknown) -> None:
        if isinstance(new, DeletedFinalStateUnknown):
            return
        node = (new.get("spec") or {}).get("nodeName")
        if node and (old is None or (old.get("spec") or {}).get("nodeName") != node):
            self.queue.add(f"pod/{new['metadata']['namespace']}/{new['metadata']['name']}")

    # -- running ------------------------------------------------------------------------------------

    async def run(self) -> None:
        await wait_for_cache_sync(*self.synced)
        loops = [
            asyncio.create_task(self._every(self.monitor_period, self.monitor_node_health), name="node-monitor"),
            asyncio.create_task(self._every(NODE_EVICTION_PERIOD, self._no_execute_tainting_pass), name="node-taint"),
        ]
        try:
            await asyncio.gather(super().run(), *loops)
        finally:
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    @staticmethod
    async def _every(period: float, fn: Callable[[], Awaitable[None]]) -> None:
        """wait.Until: run `fn`, then wait `period`, forever; a failure is logged, not fatal."""
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("nodelifecycle: %s failed", getattr(fn, "__name__", fn))
            await asyncio.sleep(period)

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        if kind == "node":
            await self._no_schedule_tainting_pass(rest)
        elif kind == "pod":
            await self._process_pod(rest)

    # -- NoSchedule taints from conditions (doNoScheduleTaintingPass) ---------------------------------

    async def _no_schedule_tainting_pass(self, name: str) -> None:
        node = self.nodes.indexer.get_by_key(name)
        if node is None:
            return
        wanted: list[Obj] = []
        for c in (node.get("status") or {}).get("conditions") or ():
            key = CONDITION_TAINTS.get(c.get("type", ""), {}).get(c.get("status", ""))
            if key:
                wanted.append({"key": key, "effect": NO_SCHEDULE})
        if (node.get("spec") or {}).get("unschedulable"):
            wanted.append({"key": UNSCHEDULABLE_KEY, "effect": NO_SCHEDULE})
        have = [
            t for t in (node.get("spec") or {}).get("taints") or ()
            if t.get("effect") == NO_SCHEDULE and (t.get("key") == UNSCHEDULABLE_KEY or t.get("key") in CONDITION_TAINT_KEYS)
        ]  # fmt: skip
        to_add = [t for t in wanted if not any(taint_matches(t, h) for h in have)]  # taintutils.TaintSetDiff
        to_del = [h for h in have if not any(taint_matches(h, t) for t in wanted)]
        if not to_add and not to_del:
            return
        if not await swap_node_controller_taint(self.client, node, to_add, to_del):
            raise RuntimeError(f"failed to swap taints of node {name}")

    # -- pods bound to not-ready nodes (processPod) ----------------------------------------------------

    async def _process_pod(self, key: str) -> None:
        pod = self.pods.indexer.get_by_key(key)
        if pod is None:
            return
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        health = self.health.get(node_name)
        if health is None or self.nodes.indexer.get_by_key(node_name) is None:
            return
        ready = get_condition(health.status, "Ready")
        if ready is not None and ready.get("status") != "True":
            await self.mark_pods_not_ready([pod], node_name)

    async def mark_pods_not_ready(self, pods: list[Obj], node_name: str) -> None:
        """controllerutil.MarkPodsNotReady: Ready=False on each pod of the node, a NodeNotReady event each."""
        errors: list[Exception] = []
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") != node_name:
                continue
            ready = pod_condition(pod, "Ready")
            if ready is None or ready.get("status") == "False":
                continue
            md = pod["metadata"]
            patch = {
                "metadata": {"uid": md["uid"]},
                "status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": meta.now()}]},
            }
            try:
                await self.client.patch(
                    PODS, md["name"], patch, namespace=md["namespace"], subresource="status",
                    patch_type=PatchType.STRATEGIC,
                )
            except ClientError as e:
                if is_not_found(e) or is_conflict(e):  # gone, or replaced by a pod of the same name
                    continue
                log.info("nodelifecycle: marking pod %s/%s not ready: %s", md["namespace"], md["name"], e)
                errors.append(e)
                continue
            self.recorder.event(pod, WARNING, "NodeNotReady", "Node is not ready")
        if errors:
            raise errors[0]

    # -- monitorNodeHealth ----------------------------------------------------------------------------

    async def monitor_node_health(self) -> None:
        nodes = self.nodes.indexer.list()
        names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            name = node["metadata"]["name"]
            if name in self.known_nodes:
                continue
            self._node_event(node, "RegisteredNode", f"Registered Node {name} in Controller")
            self.known_nodes[name] = node
            self._add_zone(node)
            await self.mark_node_as_reachable(node)
        for name, node in list(self.known_nodes.items()):
            if name not in names:
                self._node_event(node, "RemovingNode", f"Removing Node {name} from Controller")
                del self.known_nodes[name]
                self.health.pop(name, None)
                self.nodes_to_retry.discard(name)

        zone_conditions: dict[str, list[Obj | None]] = {}

        async def one(node: Obj) -> None:
            async with self._sem:
                result = await self._monitor_one(node)
            if result is not None:
                zone_conditions.setdefault(result[0], []).append(result[1])

        await asyncio.gather(*(one(n) for n in nodes))
        await self._handle_disruption(zone_conditions, nodes)

    async def _monitor_one(self, cached: Obj) -> tuple[str, Obj | None] | None:
        """One node's health pass; (zone, current Ready condition) unless it is excluded or failed."""
        node = cached
        name = node["metadata"]["name"]
        for attempt in range(NODE_HEALTH_UPDATE_RETRY):
            try:
                observed, current, node = await self.try_update_node_health(node)
                break
            except ClientError as e:
                log.info("nodelifecycle: updating health of node %s (attempt %d): %s", name, attempt + 1, e)
                try:
                    node = await self.client.get(NODES, name)
                except ClientError as e2:
                    if is_not_found(e2):
                        return None
                    log.info("nodelifecycle: reading node %s: %s", name, e2)
        else:
            log.error("nodelifecycle: update health of node %s failed; skipping it (no pods evicted)", name)
            return None
        excluded = EXCLUDE_DISRUPTION_LABEL in (node["metadata"].get("labels") or {})
        if current is not None:
            await self.process_taint_based_eviction(node, observed)
            if current.get("status") != "True" and observed.get("status") == "True":
                self._status_event(node, "NodeNotReady")
                mark = True
            else:
                mark = name in self.nodes_to_retry and observed.get("status") != "True"
            if mark:
                pods = self.pods.indexer.by_index(NODE_NAME_INDEX, name)
                try:
                    await self.mark_pods_not_ready(pods, name)
                except ClientError as e:
                    log.info("nodelifecycle: marking pods of node %s not ready (will retry): %s", name, e)
                    self.nodes_to_retry.add(name)
                    return None if excluded else (zone_key(node), current)
        self.nodes_to_retry.discard(name)
        return None if excluded else (zone_key(node), current)

    async def try_update_node_health(self, node: Obj) -> tuple[Obj, Obj | None, Obj]:
        """tryUpdateNodeHealth: (the Ready condition observed, the Ready condition now, the node). A node
        whose grace period passed without a heartbeat gets Unknown conditions, written to the API (on a
        copy: `node` may be the informer's)."""
        name = node["metadata"]["name"]
        now = time.time()
        status = node.get("status") or {}
        current = get_condition(status, "Ready")
        health = self.health.get(name)
        created = _epoch(node["metadata"].get("creationTimestamp")) or now
        if current is None:
            # the kubelet never posted status: a fake Unknown condition from the node's creation
            observed: Obj = {
                "type": "Ready", "status": "Unknown",
                "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                "lastTransitionTime": node["metadata"].get("creationTimestamp"),
            }  # fmt: skip
            grace = self.startup_grace_period
            if health is not None:
                health.status = meta.clone(status)
            else:
                health = NodeHealth(created, created, meta.clone(status))
        else:
            observed = dict(current)
            grace = self.grace_period
        saved = get_condition(health.status, "Ready") if health is not None else None
        if health is None:
            health = NodeHealth(now, now, meta.clone(status))
        elif saved is None and current is not None:
            health = NodeHealth(now, now, meta.clone(status), health.lease_renew)
        elif saved is not None and current is None:
            log.error("nodelifecycle: the Ready condition was removed from the status of node %s", name)
            health = NodeHealth(now, now, meta.clone(status), health.lease_renew)
        elif saved is not None and current is not None and saved.get("lastHeartbeatTime") != current.get("lastHeartbeatTime"):
            transition = health.ready_transition_timestamp
            if saved.get("lastTransitionTime") != current.get("lastTransitionTime"):
                transition = now
            health = NodeHealth(now, transition, meta.clone(status), health.lease_renew)
        # a renewed Lease is a heartbeat too (kubelets post status rarely once they have a Lease)
        lease = self.leases.indexer.get_by_key(f"{NODE_LEASE_NAMESPACE}/{name}")
        renew = _epoch((lease or {}).get("spec", {}).get("renewTime")) if lease else None
        if renew is not None and (health.lease_renew is None or health.lease_renew < renew):
            health.lease_renew = renew
            health.probe_timestamp = now
        self.health[name] = health

        if now > health.probe_timestamp + grace:
            node = meta.clone(node)
            status = node.setdefault("status", {})
            stamp = meta.now()
            conditions = status.setdefault("conditions", [])
            for type_ in UNKNOWN_CONDITIONS:
                c = get_condition(status, type_)
                if c is None:
                    conditions.append({
                        "type": type_, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.",
                        "lastHeartbeatTime": node["metadata"].get("creationTimestamp"), "lastTransitionTime": stamp,
                    })  # fmt: skip
                elif c.get("status") != "Unknown":
                    c.update(status="Unknown", reason="NodeStatusUnknown",
                             message="Kubelet stopped posting node status.", lastTransitionTime=stamp)
            current = get_condition(status, "Ready")
            if current != observed:
                updated = await self.client.update_status(NODES, node)
                node["metadata"] = updated["metadata"]
                self.health[name] = NodeHealth(health.probe_timestamp, now, meta.clone(status), health.lease_renew)
                log.info("nodelifecycle: node %s: no heartbeat for %.0fs, conditions set to Unknown",
                         name, now - health.probe_timestamp)
        return observed, current, node

    # -- NoExecute taints ---------------------------------------------------------------------------------

    async def process_taint_based_eviction(self, node: Obj, observed: Obj) -> None:
        status = observed.get("status")
        if status == "False":
            if has_taint(node, UNREACHABLE_TAINT):
                if not await swap_node_controller_taint(self.client, node, [NOT_READY_TAINT], [UNREACHABLE_TAINT]):
                    log.error("nodelifecycle: failed to swap the unreachable taint of %s for not-ready", _name(node))
            else:
                self.mark_node_for_tainting(node, "False")
        elif status == "Unknown":
            if has_taint(node, NOT_READY_TAINT):
                if not await swap_node_controller_taint(self.client, node, [UNREACHABLE_TAINT], [NOT_READY_TAINT]):
                    log.error("nodelifecycle: failed to swap the not-ready taint of %s for unreachable", _name(node))
            else:
                self.mark_node_for_tainting(node, "Unknown")
        elif status == "True":
            await self.mark_node_as_reachable(node)

    def mark_node_for_tainting(self, node: Obj, status: str) -> bool:
        queue = self._zone_queue(node)
        name = _name(node)
        taint = NOT_READY_TAINT if status == "False" else UNREACHABLE_TAINT
        if not has_taint(node, taint):
            queue.remove(name)
        return queue.add(name, node["metadata"].get("uid", ""))

    async def mark_node_as_reachable(self, node: Obj) -> bool:
        """Both NoExecute taints off the node, and out of its zone's queue."""
        remove = [t for t in (UNREACHABLE_TAINT, NOT_READY_TAINT) if has_taint(node, t)]
        if remove and not await swap_node_controller_taint(self.client, node, [], remove):
            log.error("nodelifecycle: failed to remove the NoExecute taints of node %s", _name(node))
            return False
        return self._zone_queue(node).remove(_name(node))

    async def _no_execute_tainting_pass(self) -> None:
        for queue in list(self.zone_tainter.values()):
            await queue.try_(self._taint_one)

    async def _taint_one(self, item: TimedValue) -> tuple[bool, float]:
        node = self.nodes.indexer.get_by_key(item.value)
        if node is None:
            return True, 0.0
        ready = get_condition(node.get("status"), "Ready")
        if ready is None:
            return False, 0.05
        if ready.get("status") == "False":
            add, opposite = NOT_READY_TAINT, UNREACHABLE_TAINT
        elif ready.get("status") == "Unknown":
            add, opposite = UNREACHABLE_TAINT, NOT_READY_TAINT
        else:
            return True, 0.0  # ready again: nothing to taint
        done = await swap_node_controller_taint(self.client, node, [add], [opposite])
        if done:
            log.info("nodelifecycle: node %s tainted %s:NoExecute", item.value, add["key"])
        return done, 0.0

    # -- zones --------------------------------------------------------------------------------------------

    def _add_zone(self, node: Obj) -> None:
        zone = zone_key(node)
        if zone not in self.zone_states:
            self.zone_states[zone] = STATE_INITIAL
        if zone not in self.zone_tainter:
            self.zone_tainter[zone] = RateLimitedTimedQueue(self.eviction_qps)

    def _zone_queue(self, node: Obj) -> RateLimitedTimedQueue:
        self._add_zone(node)
        return self.zone_tainter[zone_key(node)]

    def compute_zone_state(self, conditions: list[Obj | None]) -> tuple[int, str]:
        ready = sum(1 for c in conditions if c is not None and c.get("status") == "True")
        not_ready = len(conditions) - ready
        if ready == 0 and not_ready > 0:
            return not_ready, STATE_FULL_DISRUPTION
        if not_ready > 2 and not_ready / (not_ready + ready) >= self.unhealthy_zone_threshold:
            return not_ready, STATE_PARTIAL_DISRUPTION
        return not_ready, STATE_NORMAL

    def _set_limiter(self, zone: str, size: int, state: str) -> None:
        queue = self.zone_tainter.setdefault(zone, RateLimitedTimedQueue(self.eviction_qps))
        if state == STATE_PARTIAL_DISRUPTION:  # ReducedQPSFunc
            queue.swap_limiter(self.secondary_eviction_qps if size > self.large_cluster_threshold else 0.0)
        else:  # Normal, and FullDisruption of one zone (HealthyQPSFunc)
            queue.swap_limiter(self.eviction_qps)

    async def _handle_disruption(self, zone_conditions: dict[str, list[Obj | None]], nodes: list[Obj]) -> None:
        new_states: dict[str, str] = {}
        all_fully_disrupted = True
        for zone, conditions in zone_conditions.items():
            _, state = self.compute_zone_state(conditions)
            if state != STATE_FULL_DISRUPTION:
                all_fully_disrupted = False
            new_states[zone] = state
            self.zone_states.setdefault(zone, STATE_INITIAL)
        all_were_fully_disrupted = True
        for zone in list(self.zone_states):
            if zone not in zone_conditions:
                del self.zone_states[zone]
                continue
            if self.zone_states[zone] != STATE_FULL_DISRUPTION:
                all_were_fully_disrupted = False
                break
        if all_fully_disrupted and all_were_fully_disrupted:
            return
        if all_fully_disrupted:
            log.info("nodelifecycle: all nodes are not-Ready: entering master disruption mode")
            for node in nodes:
                await self.mark_node_as_reachable(node)
            for zone in self.zone_states:
                self.zone_tainter.setdefault(zone, RateLimitedTimedQueue(0.0)).swap_limiter(0.0)
                self.zone_states[zone] = STATE_FULL_DISRUPTION
            return
        if all_were_fully_disrupted:
            log.info("nodelifecycle: some nodes are Ready: exiting master disruption mode")
            now = time.time()
            for node in nodes:
                health = self.health.get(_name(node))
                if health is not None:
                    health.probe_timestamp = health.ready_transition_timestamp = now
            for zone in self.zone_states:
                self._set_limiter(zone, len(zone_conditions.get(zone, [])), new_states.get(zone, STATE_NORMAL))
                self.zone_states[zone] = new_states.get(zone, STATE_NORMAL)
            return
        for zone, state in list(self.zone_states.items()):
            new = new_states.get(zone, state)
            if new != state:
                log.info("nodelifecycle: zone %r is now in state %s", zone, new)
                self._set_limiter(zone, len(zone_conditions.get(zone, [])), new)
                self.zone_states[zone] = new

    # -- events -------------------------------------------------------------------------------------------

    def _node_event(self, node: Obj, reason: str, message: str) -> None:
        """controllerutil.RecordNodeEvent."""
        ref = {"apiVersion": "v1", "kind": "Node", "name": _name(node), "uid": node["metadata"].get("uid", "")}
        self.recorder.event(ref, NORMAL, reason, message)

    def _status_event(self, node: Obj, status: str) -> None:
        """controllerutil.RecordNodeStatusChange."""
        self._node_event(node, status, f"Node {_name(node)} status is now: {status}")


def _name(node: Obj) -> str:
    return str(node["metadata"]["name"])
