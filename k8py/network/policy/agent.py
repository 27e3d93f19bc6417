"""The NetworkPolicy agent: one node's packet filter kept in step with the policies (Calico's Felix).

It watches Pods (cluster-wide: peers may be anywhere), Namespaces (their labels) and
NetworkPolicies, and runs one level-triggered sync loop, as kube-proxy does: any event marks
the state dirty; the loop recomputes the whole desired :class:`~k8py.network.policy.ruleset.Ruleset`
from the caches (a pure function, cheap next to the kernel round trip), diffs it with what it
last applied and sends the difference as one ``nft`` transaction.  Bursts of events coalesce
into one sync.  When ``nft`` fails the transaction changed nothing; the next attempt (after a
backoff) rebuilds the whole table atomically, as does the periodic resync, which also repairs
rules someone else removed.

Only events that can change the result wake the loop: Pod status heartbeats that leave a pod's
IPs, labels, node, phase and named ports alone do not.

:meth:`PolicyAgent.stop` leaves the rules in place, as Felix and kube-proxy do: an agent
restart must not open every pod for its duration.  :meth:`PolicyAgent.cleanup` removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from k8py.client.cache import DeletedFinalStateUnknown, Obj
from k8py.client.informer import (
    ResourceEventHandlerFuncs,
    ResourceEventHandlerRegistration,
    SharedIndexInformer,
    SharedInformerFactory,
)
from k8py.client.resources import NAMESPACES, NETWORK_POLICIES, PODS
from k8py.client.rest import RESTClient
from k8py.network.policy.nftables import Applied, NFTables, render, sync_script
from k8py.network.policy.ruleset import compute_ruleset, pod_info
from k8py.tasks import cancel

log = logging.getLogger(__name__)

RESYNC_PERIOD = 60.0  # full rebuild, restoring anything removed behind the agent's back
MIN_RETRY = 0.5
MAX_RETRY = 30.0


class PolicyAgent:
    """Enforces NetworkPolicies on node ``node_name``; see the module docstring.

    ``nft`` is the command that runs nft (tests: ``("ip", "netns", "exec", NS, "nft")``);
    ``informers`` a factory to share watches with other components of the process.
    """

    def __init__(
        self,
        client: RESTClient,
        node_name: str,
        *,
        nft: Iterable[str] = ("nft",),
        informers: SharedInformerFactory | None = None,
        resync_period: float = RESYNC_PERIOD,
    ) -> None:
        self.node_name = node_name
        self.nft = NFTables(nft)
        self.informers = informers or SharedInformerFactory(client)
        self._own_informers = informers is None
        self.resync_period = resync_period
        self.pods: SharedIndexInformer = self.informers.informer_for(PODS)
        self.namespaces: SharedIndexInformer = self.informers.informer_for(NAMESPACES)
        self.policies: SharedIndexInformer = self.informers.informer_for(NETWORK_POLICIES)
        self.applied: Applied | None = None  # what the table holds; None: unknown, rebuild it
        self.syncs = 0  # completed syncs (tests and metrics)
        self.last_sync_duration = 0.0
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._registrations: list[ResourceEventHandlerRegistration] = []

    async def start(self) -> None:
        """Start the informers, wait for their first lists, sync once, then keep syncing in a task."""
        handlers = {
            self.pods: ResourceEventHandlerFuncs(self._on_add, self._on_pod_update, self._on_delete),
            self.namespaces: ResourceEventHandlerFuncs(self._on_add, self._on_update, self._on_delete),
            self.policies: ResourceEventHandlerFuncs(self._on_add, self._on_update, self._on_delete),
        }
        self._registrations = [informer.add_event_handler(h) for informer, h in handlers.items()]
        self.informers.start()
        await self.informers.wait_for_cache_sync()
        await self.sync()
        self._task = asyncio.create_task(self._run(), name=f"networkpolicy agent {self.node_name}")

    async def stop(self) -> None:
        """Stop syncing and watching; the rules stay."""
        task, self._task = self._task, None
        await cancel(task)
        for registration in self._registrations:
            registration.informer.remove_event_handler(registration)
        self._registrations = []
        if self._own_informers:
            await self.informers.shutdown()

    async def cleanup(self) -> None:
        """Remove the table (after :meth:`stop`, when the node stops enforcing policies)."""
        await self.nft.delete_table()
        self.applied = None

    async def sync(self) -> None:
        """Compute the desired state from the caches and apply the difference; raises NFTError."""
        started = time.monotonic()
        desired = render(
            compute_ruleset(
                self.pods.indexer.list(),
                self.namespaces.indexer.list(),
                self.policies.indexer.list(),
                self.node_name,
            )
        )
        script = sync_script(self.applied, desired)
        if script:
            self.applied = None  # unknown until nft answers
            await self.nft.run(script)
            self.applied = desired
        self.syncs += 1
        self.last_sync_duration = time.monotonic() - started

    async def _run(self) -> None:
        retry = MIN_RETRY
        next_resync = time.monotonic() + self.resync_period
        while True:
            timeout = retry if self.applied is None else next_resync - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), max(timeout, 0))
            self._dirty.clear()
            if time.monotonic() >= next_resync:
                self.applied = None
                next_resync = time.monotonic() + self.resync_period
            try:
                await self.sync()
                retry = MIN_RETRY
            except Exception:
                log.exception("networkpolicy sync failed; retrying in %.1fs", retry)
                retry = min(retry * 2, MAX_RETRY)

    # ---- informer handlers: mark dirty ---------------------------------------------------------

    def _on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        self._dirty.set()

    def _on_update(self, old: Obj, new: Obj) -> None:
        if old.get("metadata", {}).get("resourceVersion") != new.get("metadata", {}).get("resourceVersion"):
            self._dirty.set()

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if _pod_view(old) != _pod_view(new):
            self._dirty.set()

    def _on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        self._dirty.set()


def _pod_view(pod: Obj) -> Any:
    """What of a pod the ruleset depends on."""
    info = pod_info(pod)
    return None if info is None else (info.node, dict(info.labels), info.ips, info.ports)
