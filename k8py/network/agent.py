"""The per-node network agent (``k8py network-agent``): host-gw routes and SNAT from the Nodes.

It watches Nodes and keeps the node's kernel in step (see :mod:`k8py.network.routes`): a route
to every peer's podCIDR via the peer's InternalIP, an ``unreachable`` guard for the cluster CIDR,
the Service CIDR routed to the dummy link ``k8py-svc`` (made if missing), and the NAT table.  The
work is level-triggered with a single key, the node itself: an informer event that changes what
routing depends on (a Node added or deleted, its podCIDRs or InternalIP changed) marks the state
dirty, and one task recomputes every route from the cache and reconciles the kernel.  Heartbeat updates of Node status do not trigger a sync.
The task also resyncs every ``resync_period`` (restoring routes or rules someone removed) and
retries sooner, with backoff, after a failure.

:meth:`NetworkAgent.stop` leaves routes, link and rules in place, as flannel and Calico do: an
agent restart must not cut the node's pod traffic.  :meth:`NetworkAgent.cleanup` removes them
(the node is leaving, or a test is done).
"""

from __future__ import annotations

import asyncio
import logging

from k8py.client.cache import Obj
from k8py.client.informer import ResourceEventHandlerFuncs, SharedIndexInformer
from k8py.client.resources import NODES
from k8py.client.rest import RESTClient
from k8py.network.routes import (
    SERVICE_LINK,
    RouteTable,
    apply_nat,
    delete_nat,
    desired_routes,
    enable_ip_forward,
    node_internal_ip,
    node_pod_cidrs,
)
from k8py.tasks import cancel

log = logging.getLogger(__name__)

RESYNC_PERIOD = 30.0
RETRY_PERIOD = 1.0


def _routing_view(node: Obj) -> tuple[list[str], str | None]:
    """What of a Node the routes depend on (besides its name)."""
    return node_pod_cidrs(node), node_internal_ip(node)


class NetworkAgent:
    """Keeps one node's routes and NAT table in step with the Nodes; see the module docstring.

    ``netns`` names the network namespace to program (``ip netns``; default: the agent's own).
    """

    def __init__(
        self,
        client: RESTClient,
        node_name: str,
        *,
        cluster_cidr: str,
        service_cidr: str,
        netns: str | None = None,
        resync_period: float = RESYNC_PERIOD,
        retry_period: float = RETRY_PERIOD,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.cluster_cidr = cluster_cidr
        self.service_cidr = service_cidr
        self.netns = netns
        self.resync_period = resync_period
        self.retry_period = retry_period
        self.routes = RouteTable(netns=netns)
        self.informer = SharedIndexInformer(client, NODES)
        self.informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda obj, _initial: self._dirty.set(),
                update_func=self._on_update,
                delete_func=lambda _obj: self._dirty.set(),
            )
        )
        self._dirty = asyncio.Event()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _on_update(self, old: Obj, new: Obj) -> None:
        if _routing_view(old) != _routing_view(new):
            self._dirty.set()

    def has_synced(self) -> bool:
        """True once the kernel has been reconciled with a full list of Nodes."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    async def start(self) -> None:
        """Enable forwarding, open netlink, and start watching and reconciling."""
        await enable_ip_forward(self.netns)
        await self.routes.open()
        self.informer.start()
        self._task = asyncio.create_task(self._run(), name=f"network-agent {self.node_name}")

    async def stop(self) -> None:
        """Stop watching and reconciling; routes and rules stay."""
        task, self._task = self._task, None
        await cancel(task)
        await self.informer.stop()
        await self.routes.close()

    async def cleanup(self) -> None:
        """Remove every route of the agent, its link and its NAT table (call after :meth:`stop`)."""
        table = RouteTable(netns=self.netns)
        await table.open()
        try:
            await table.flush()
            await table.delete_link(SERVICE_LINK)
        finally:
            await table.close()
        await delete_nat(self.netns)

    async def sync(self, *, nat: bool) -> bool:
        """Reconcile the Service link, the routes (and the NAT table if ``nat``) once; False if the
        link could not be made or a route could not be added."""
        linked = await self.routes.ensure_link(SERVICE_LINK)
        desired = desired_routes(
            self.informer.indexer.list(),
            self.node_name,
            cluster_cidr=self.cluster_cidr,
            service_cidr=self.service_cidr,
        )
        failed = await self.routes.reconcile(desired)
        if nat:
            await apply_nat(self.cluster_cidr, self.netns)
        return linked and not failed

    async def _run(self) -> None:
        await self.informer.wait_for_sync()
        nat = True  # the first sync and every resync restore the NAT table; node events do not
        failures = 0
        while True:
            self._dirty.clear()
            try:
                ok = await self.sync(nat=nat)
                nat = False
                self._synced.set()
            except Exception:
                log.exception("network agent %s: sync failed", self.node_name)
                ok = False
            if ok:
                failures = 0
                delay = self.resync_period
            else:
                failures += 1
                delay = min(self.resync_period, self.retry_period * 2 ** (failures - 1))
            try:
                async with asyncio.timeout(delay):  # not wait_for: on 3.11 it can lose a cancellation
                    await self._dirty.wait()
            except TimeoutError:
                nat = True
