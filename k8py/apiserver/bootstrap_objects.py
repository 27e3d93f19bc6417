"""Objects kube-apiserver keeps in existence by itself.

The system namespaces, the `kubernetes` Service in `default` with its
Endpoints and EndpointSlice pointing at this API server (kube-apiserver's
bootstrap controller and endpoint reconciler), and the two system
PriorityClasses. Idempotent: run on every start, it repairs what is missing or
stale and leaves the rest alone.

While the server runs, `KubernetesServiceReconciler` keeps the `kubernetes`
Service and its endpoints so, as the bootstrap controller's loop and endpoint
reconciler do (every EndpointInterval, 10 s): the Service is created again when
deleted, the Endpoints and EndpointSlice are put back to this server's advertise
address and port when deleted or changed. Beyond upstream's period, a
watch-cache hook wakes it as soon as one of the three is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from k8py.api import errors
from k8py.api.registry import Registry
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.genericstore import Context, GenericStore

if TYPE_CHECKING:
    from k8py.apiserver.server import APIServerConfig
    from k8py.apiserver.watchcache import WatchEvent

log = logging.getLogger(__name__)
ENDPOINT_INTERVAL = 10.0  # kube-apiserver's EndpointInterval

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SYSTEM_USER = UserInfo("system:apiserver", ["system:masters", "system:authenticated"])
PRIORITY_CLASSES = (
    ("system-node-critical", 2000001000, "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2000000000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
)


def _rinfo(registry: Registry, group: str, version: str, resource: str) -> Any:
    info = registry.get(group, version, resource)
    assert info is not None, resource
    return info


async def _ensure(gstore: GenericStore, info: Any, namespace: str, obj: dict[str, Any], *, repair: bool = False) -> None:
    ctx = Context(user=SYSTEM_USER)
    name = obj["metadata"]["name"]
    current = gstore.cache.get(info.key(namespace, name))
    if current is None:
        try:
            await gstore.create(ctx, info, namespace, obj)
        except errors.StatusError as e:
            if e.code != 409:
                raise
        return
    if repair:
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
    namespaces = _rinfo(registry, "", "v1", "namespaces")
    for ns in SYSTEM_NAMESPACES:
        await _ensure(gstore, namespaces, "", {"metadata": {"name": ns}})
    pcs = _rinfo(registry, "scheduling.k8s.io", "v1", "priorityclasses")
    for name, value, description in PRIORITY_CLASSES:
        await _ensure(gstore, pcs, "", {"metadata": {"name": name}, "value": value, "description": description})
    await gstore.cache.sync()
    await ensure_kubernetes_service(gstore, registry, config)


async def ensure_kubernetes_service(
    gstore: GenericStore, registry: Registry, config: APIServerConfig
) -> None:
    """The `kubernetes` Service (created if missing), its Endpoints and EndpointSlice (repaired)."""
    service_ip = str(ipaddress.ip_network(config.service_cidr).network_address + 1)
    await _ensure(
        gstore,
        _rinfo(registry, "", "v1", "services"),
        "default",
        {
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": service_ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": config.port}],
                "sessionAffinity": "None",
            },
        },
    )
    if ipaddress.ip_address(config.advertise_address).is_loopback:
        return  # endpoints may not point at loopback (no network here): the Service has none, as upstream
    port = {"name": "https", "port": config.port, "protocol": "TCP"}
    await _ensure(
        gstore,
        _rinfo(registry, "", "v1", "endpoints"),
        "default",
        {
            "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": config.advertise_address}], "ports": [port]}],
        },
        repair=True,
    )
    await _ensure(
        gstore,
        _rinfo(registry, "discovery.k8s.io", "v1", "endpointslices"),
        "default",
        {
            "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [config.advertise_address], "conditions": {"ready": True}}],
            "ports": [port],
        },
        repair=True,
    )


class KubernetesServiceReconciler:
    """Keeps the `kubernetes` Service and its endpoints in place while the server runs."""

    def __init__(self, gstore: GenericStore, registry: Registry, config: APIServerConfig) -> None:
        self._gstore = gstore
        self._registry = registry
        self._config = config
        self._keys = {
            _rinfo(registry, "", "v1", "services").key("default", "kubernetes"),
            _rinfo(registry, "", "v1", "endpoints").key("default", "kubernetes"),
            _rinfo(registry, "discovery.k8s.io", "v1", "endpointslices").key("default", "kubernetes"),
        }
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._gstore.cache.on_events.append(self._on_events)
        self._task = asyncio.create_task(self._run(), name="kubernetes-service-reconciler")

    async def stop(self) -> None:
        if self._on_events in self._gstore.cache.on_events:
            self._gstore.cache.on_events.remove(self._on_events)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_events(self, events: list[WatchEvent]) -> None:
        if any(ev.key in self._keys and ev.type != "ADDED" for ev in events):
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), ENDPOINT_INTERVAL)
            self._wake.clear()
            try:
                await ensure_kubernetes_service(self._gstore, self._registry, self._config)
            except errors.StatusError as e:
                log.warning("cannot reconcile the kubernetes service: %s", e.message)
            except Exception:
                log.exception("reconciling the kubernetes service failed")
