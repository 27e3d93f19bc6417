"""The `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap in every namespace.

Upstream these belong to kube-controller-manager: the serviceaccount
controller creates `default` in every active namespace (again when it is
deleted), and the root-ca-cert-publisher keeps `kube-root-ca.crt`, holding the
cluster CA as `ca.crt`, in every namespace (recreated when deleted, restored
when changed). Pods depend on both: the ServiceAccount admission plugin
refuses a pod whose account is missing, and the token volume it mounts
projects that ConfigMap.

Until k8py has a controller manager (issue 5 should turn this module into
those two controllers), the API server keeps them itself, level-triggered
like a controller: every namespace at start, then the namespaces that watch
cache events touch (a namespace added or changed, the account deleted, the
ConfigMap deleted or changed) go into a set that one worker task drains,
writing through the generic store so that admission and validation apply as
for any client. Terminating namespaces are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from k8py.api import errors
from k8py.api.registry import Registry, ResourceInfo
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.genericstore import Context, GenericStore
from k8py.apiserver.watchcache import WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]

DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)
# Who writes them: the controllers' identities upstream.
SERVICE_ACCOUNT_WRITER = UserInfo("system:serviceaccount:kube-system:service-account-controller", ["system:serviceaccounts", "system:authenticated"])
ROOT_CA_WRITER = UserInfo("system:serviceaccount:kube-system:root-ca-cert-publisher", ["system:serviceaccounts", "system:authenticated"])


def _info(registry: Registry, resource: str) -> ResourceInfo:
    info = registry.get("", "v1", resource)
    assert info is not None, resource
    return info


class NamespaceDefaults:
    def __init__(self, gstore: GenericStore, registry: Registry, ca_pem: str | None) -> None:
        """`ca_pem`: the cluster CA to publish; None (no PKI) publishes no ConfigMap."""
        self._gstore = gstore
        self._cache = gstore.cache
        self._namespaces = _info(registry, "namespaces")
        self._accounts = _info(registry, "serviceaccounts")
        self._configmaps = _info(registry, "configmaps")
        self._ca_pem = ca_pem
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        prefix = self._namespaces.prefix()
        self._pending.update(key[len(prefix) :] for key in self._cache.keys(prefix))
        self._cache.on_events.append(self._on_events)
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="namespace-defaults")

    async def stop(self) -> None:
        if self._on_events in self._cache.on_events:
            self._cache.on_events.remove(self._on_events)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_events(self, events: list[WatchEvent]) -> None:
        ns_prefix, sa_prefix, cm_prefix = self._namespaces.prefix(), self._accounts.prefix(), self._configmaps.prefix()
        for ev in events:
            if ev.key.startswith(ns_prefix):
                if ev.type != "DELETED":
                    self._pending.add(ev.key[len(ns_prefix) :])
            elif ev.key.startswith(sa_prefix) and ev.type == "DELETED":
                namespace, _, name = ev.key[len(sa_prefix) :].partition("/")
                if name == DEFAULT_SERVICE_ACCOUNT:
                    self._pending.add(namespace)
            elif ev.key.startswith(cm_prefix) and ev.type != "ADDED":
                namespace, _, name = ev.key[len(cm_prefix) :].partition("/")
                if name == ROOT_CA_CONFIGMAP:
                    self._pending.add(namespace)
        if self._pending:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                namespace = self._pending.pop()
                try:
                    await self._ensure(namespace)
                except errors.StatusError as e:  # e.g. refused by a quota: the next event retries
                    log.info("cannot complete namespace %s: %s", namespace, e.message)
                except Exception:
                    log.exception("completing namespace %s failed", namespace)

    async def _ensure(self, namespace: str) -> None:
        ns = self._cache.get(self._namespaces.key("", namespace))
        if ns is None or ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self._cache.get(self._accounts.key(namespace, DEFAULT_SERVICE_ACCOUNT)) is None:
            await self._create(SERVICE_ACCOUNT_WRITER, self._accounts, namespace, {"metadata": {"name": DEFAULT_SERVICE_ACCOUNT}})
        if self._ca_pem is None:
            return
        data = {"ca.crt": self._ca_pem}
        current = self._cache.get(self._configmaps.key(namespace, ROOT_CA_CONFIGMAP))
        if current is None:
            configmap = {
                "metadata": {"name": ROOT_CA_CONFIGMAP, "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                "data": data,
            }
            await self._create(ROOT_CA_WRITER, self._configmaps, namespace, configmap)
        elif current.get("data") != data:

            def restore(cur: Obj | None) -> Obj:
                assert cur is not None
                cur["data"] = data
                cur.pop("binaryData", None)
                return cur

            await self._gstore.guaranteed_update(
                Context(user=ROOT_CA_WRITER), self._configmaps, namespace, ROOT_CA_CONFIGMAP, restore
            )

    async def _create(self, user: UserInfo, info: ResourceInfo, namespace: str, obj: Obj) -> None:
        try:
            await self._gstore.create(Context(user=user), info, namespace, obj)
        except errors.StatusError as e:
            if e.code != 409:
                raise
