"""Objects kube-apiserver keeps in existence by itself.

The system namespaces, the `kubernetes` Service in `default` with its
Endpoints and EndpointSlice (kube-apiserver's bootstrap controller and endpoint
reconciler), and the two system PriorityClasses. Idempotent: run on every start,
it creates what is missing and leaves the rest alone.

While the server runs, `KubernetesServiceReconciler` (upstream's kubernetesservice
controller) keeps the `kubernetes` Service and its endpoints: the Service is created
again when deleted; every 2/3 of MasterEndpointReconcileTTL (10 s) the server renews
its master lease and the lease endpoint reconciler (endpointreconciler.py) sets the
Endpoints and EndpointSlice to the addresses of every API server whose lease is
fresh. Beyond upstream's period, a watch-cache hook wakes it as soon as one of the
three is changed or deleted (a repair, without renewing the lease). On a clean stop
the server removes its lease and its address. An API server advertising a loopback
address publishes no endpoints (pods could not reach it), as upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Any

from k8py.api import errors
from k8py.api.registry import Registry, ResourceInfo
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.genericstore import Context, GenericStore
from k8py.tasks import cancel

if TYPE_CHECKING:
    from k8py.apiserver.endpointreconciler import LeaseEndpointReconciler
    from k8py.apiserver.server import APIServerConfig
    from k8py.apiserver.watchcache import WatchEvent

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SYSTEM_USER = UserInfo("system:apiserver", ["system:masters", "system:authenticated"])
PRIORITY_CLASSES = (
    ("system-node-critical", 2000001000, "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2000000000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
)


def resource_info(registry: Registry, group: str, version: str, resource: str) -> ResourceInfo:
    """A resource every API server serves."""
    info = registry.get(group, version, resource)
    assert info is not None, resource
    return info


async def ensure_object(
    gstore: GenericStore, info: ResourceInfo, namespace: str, obj: dict[str, Any], *, repair: bool = False
) -> None:
    """Create `obj` when missing; with `repair`, else set its fields (all but metadata) and labels on the
    stored one. Conflicts are retried; nothing is written when nothing changes."""
    ctx = Context(user=SYSTEM_USER)
    name = obj["metadata"]["name"]
    if gstore.cache.get(info.key(namespace, name)) is None:
        try:
            await gstore.create(ctx, info, namespace, obj)
            return
        except errors.StatusError as e:
            if e.code != 409:
                raise
        # someone (another API server) created it meanwhile: repair that one
    if not repair:
        return

    def transform(cur: dict[str, Any] | None) -> dict[str, Any]:
        assert cur is not None
        for k, v in obj.items():
            if k != "metadata":
                cur[k] = v
        labels = obj["metadata"].get("labels")
        if labels:
            cur["metadata"]["labels"] = {**(cur["metadata"].get("labels") or {}), **labels}
        return cur

    await gstore.guaranteed_update(ctx, info, namespace, name, transform)


async def ensure(gstore: GenericStore, registry: Registry, config: APIServerConfig) -> None:
    namespaces = resource_info(registry, "", "v1", "namespaces")
    for ns in SYSTEM_NAMESPACES:
        await ensure_object(gstore, namespaces, "", {"metadata": {"name": ns}})
    pcs = resource_info(registry, "scheduling.k8s.io", "v1", "priorityclasses")
    for name, value, description in PRIORITY_CLASSES:
        await ensure_object(gstore, pcs, "", {"metadata": {"name": name}, "value": value, "description": description})
    await gstore.cache.sync()
    await ensure_kubernetes_service(gstore, registry, config)


async def ensure_kubernetes_service(gstore: GenericStore, registry: Registry, config: APIServerConfig) -> None:
    """The `kubernetes` Service, created if missing (its endpoints are the endpoint reconciler's)."""
    await ensure_object(
        gstore,
        resource_info(registry, "", "v1", "services"),
        "default",
        {
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": kubernetes_service_ip(config),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": config.port}],
                "sessionAffinity": "None",
            },
        },
    )


def kubernetes_service_ip(config: APIServerConfig) -> str:
    """The first address of the Service range."""
    return str(ipaddress.ip_network(config.service_cidr).network_address + 1)


class KubernetesServiceReconciler:
    """Keeps the `kubernetes` Service and its endpoints in place while the server runs."""

    def __init__(
        self, gstore: GenericStore, registry: Registry, config: APIServerConfig, endpoints: LeaseEndpointReconciler
    ) -> None:
        self._gstore = gstore
        self._registry = registry
        self._config = config
        self._endpoints = endpoints
        # as upstream: no endpoints pointing at loopback (pods could not reach it), so no lease either
        self._publish = not ipaddress.ip_address(config.advertise_address).is_loopback
        self._interval = config.master_endpoint_reconcile_ttl * 2 / 3
        self._keys = {
            resource_info(registry, "", "v1", "services").key("default", "kubernetes"),
            resource_info(registry, "", "v1", "endpoints").key("default", "kubernetes"),
            resource_info(registry, "discovery.k8s.io", "v1", "endpointslices").key("default", "kubernetes"),
        }
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take this server's lease and publish its address, then keep both up to date."""
        await self._sync(renew=True)
        self._gstore.cache.on_events.append(self._on_events)
        self._task = asyncio.create_task(self._run(), name="kubernetes-service-reconciler")

    async def stop(self) -> None:
        """Stop reconciling; remove this server's lease and address (upstream's RemoveEndpoints)."""
        if self._on_events in self._gstore.cache.on_events:
            self._gstore.cache.on_events.remove(self._on_events)
        if self._task is not None:
            await cancel(self._task)
            self._task = None
            if self._publish:
                try:
                    await self._endpoints.remove_endpoints(self._config.advertise_address)
                except Exception:
                    log.exception("removing this API server from the kubernetes service's endpoints failed")

    def _on_events(self, events: list[WatchEvent]) -> None:
        if any(ev.key in self._keys and ev.type != "ADDED" for ev in events):
            self._wake.set()

    async def _sync(self, *, renew: bool) -> None:
        await ensure_kubernetes_service(self._gstore, self._registry, self._config)
        if self._publish:
            await self._endpoints.reconcile_endpoints(self._config.advertise_address, self._config.port, renew=renew)

    async def _run(self) -> None:
        renew_at = time.monotonic() + self._interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, renew_at - time.monotonic()))
            self._wake.clear()
            renew = time.monotonic() >= renew_at
            if renew:  # the period, whatever woke the loop meanwhile
                renew_at = time.monotonic() + self._interval
            try:
                await self._sync(renew=renew)
            except errors.StatusError as e:
                log.warning("cannot reconcile the kubernetes service: %s", e.message)
            except Exception:
                log.exception("reconciling the kubernetes service failed")
