"""kube-proxy the component (upstream cmd/kube-proxy/app/server.go): informers on Services
and EndpointSlices feeding a :class:`~k8py.proxy.proxier.Proxier`, and the sync loop.

The node's IPs (where NodePorts answer unless ``--nodeport-addresses`` says otherwise) are
the Node object's InternalIPs, read once at start as upstream does, else the address of the
default route's interface. Stopping leaves the rules in place, as kube-proxy does: Services
keep working while the proxy restarts. ``cleanup_leftovers`` (``k8py proxy --cleanup``)
deletes them.

``/metrics`` (Prometheus) and ``/healthz`` are served over plain HTTP on one address
(upstream has two: metrics on 127.0.0.1:10249, healthz on :10256). ``/healthz`` is 200 once a
sync has succeeded, unless changes have waited for one for over twice the sync period.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from k8py.client import DeletedFinalStateUnknown, ResourceEventHandlerFuncs, RESTClient, SharedInformerFactory
from k8py.client.errors import APIError, TransportError
from k8py.client.resources import ENDPOINT_SLICES, NODES, SERVICES
from k8py.proxy.metrics import CONTENT_TYPE
from k8py.proxy.proxier import Proxier, ProxierConfig
from k8py.proxy.serviceport import Obj
from k8py.tasks import cancel

log = logging.getLogger(__name__)

# as upstream: Services another proxy implements, and headless ones, are none of kube-proxy's business
LABEL_SELECTOR = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"


def _final(obj: Obj | DeletedFinalStateUnknown) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


async def node_ips(client: RESTClient, node_name: str, *, attempts: int = 5) -> list[str]:
    """The Node's InternalIPs (then ExternalIPs), IPv4 only; [] if the Node is not found."""
    for i in range(attempts):
        try:
            node = await client.get(NODES, node_name)
        except (APIError, TransportError) as e:
            log.info("cannot read Node %s yet: %s", node_name, e)
            await asyncio.sleep(min(2.0, 0.25 * 2**i))
            continue
        addresses = (node.get("status") or {}).get("addresses") or []
        for kind in ("InternalIP", "ExternalIP"):
            ips = [a["address"] for a in addresses if a.get("type") == kind and ":" not in a.get("address", ":")]
            if ips:
                return ips
        return []
    return []


class ProxyServer:
    """Informers -> Proxier; ``start()`` returns once the first (full) sync is done."""

    def __init__(self, client: RESTClient, config: ProxierConfig, *, netns: str | None = None,
                 metrics_address: tuple[str, int] | None = None) -> None:
        """``metrics_address`` (host, port): where /metrics and /healthz are served (None: nowhere;
        port 0: any free port, then in ``metrics_port``)."""
        self.client = client
        self.proxier = Proxier(config, netns=netns)
        self.factory = SharedInformerFactory(client)
        self.metrics_address = metrics_address
        self.metrics_port: int | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self.metrics_address is not None:
            await self._serve(*self.metrics_address)
        config = self.proxier.config
        if not config.node_ips:
            from k8py.netutil import primary_ip

            config.node_ips = await node_ips(self.client, config.hostname) or [primary_ip()]
            log.info("node IPs: %s", ", ".join(config.node_ips))
        proxier = self.proxier
        services = self.factory.informer_for(SERVICES, label_selector=LABEL_SELECTOR)
        services.add_event_handler(ResourceEventHandlerFuncs(
            add_func=lambda obj, _initial: proxier.on_service_add(obj),
            update_func=proxier.on_service_update,
            delete_func=lambda obj: proxier.on_service_delete(_final(obj)),
        ))
        slices = self.factory.informer_for(ENDPOINT_SLICES, label_selector=LABEL_SELECTOR)
        slices.add_event_handler(ResourceEventHandlerFuncs(
            add_func=lambda obj, _initial: proxier.on_endpoint_slice_update(obj),
            update_func=lambda _old, new: proxier.on_endpoint_slice_update(new),
            delete_func=lambda obj: proxier.on_endpoint_slice_update(_final(obj), remove=True),
        ))
        self.factory.start()
        await self.factory.wait_for_cache_sync()
        await proxier.on_services_synced()
        await proxier.on_endpoint_slices_synced()
        self._loop_task = asyncio.create_task(proxier.loop(), name="kube-proxy sync loop")

    async def stop(self) -> None:
        """Stop watching and syncing; the rules stay."""
        await cancel(self._loop_task)
        await self.factory.shutdown()
        await self.proxier.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/livez", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.metrics_port = self._runner.addresses[0][1]

    def healthy(self) -> bool:
        p = self.proxier
        if p.last_sync_ok is None:
            return False
        return p.idle or time.monotonic() - p.last_sync_ok < 2 * p.config.sync_period

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.healthy():
            return web.Response(text="ok")
        return web.Response(status=503, text="nftables rules not synced")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.proxier.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
