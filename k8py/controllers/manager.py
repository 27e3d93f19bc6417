"""The controller manager (``cmd/kube-controller-manager``): builds the chosen controllers
around one shared informer factory, starts the informers once every controller has
registered its handlers, and runs them all, as the holder of the
``kube-system/kube-controller-manager`` Lease when leader election is on.

Controllers are named as kube-controller-manager names them (``replicaset``, ``deployment``,
``garbagecollector``, ...; the ``<name>-controller`` spellings are accepted too).
``--controllers`` takes kube's syntax: ``*`` for all enabled by default, ``name`` to add one,
``-name`` to leave one out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from k8py.client import EventRecorder, RESTClient
from k8py.client.informer import SharedInformerFactory
from k8py.client.leaderelection import LeaderElector
from k8py.controllers.credentials import SERVICE_ACCOUNT_OF, ServiceAccountCredentials

log = logging.getLogger(__name__)


class Controller(Protocol):
    name: str

    async def run(self) -> None:
        """Run until cancelled (waiting for its informers' caches first)."""
        ...


@dataclass
class Options:
    """kube-controller-manager's flags that controllers read."""

    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    allocate_node_cidrs: bool = True
    node_cidr_mask_size: int = 24
    node_monitor_period: float = 5.0
    node_monitor_grace_period: float = 40.0
    node_startup_grace_period: float = 60.0
    terminated_pod_gc_threshold: int = 12500
    root_ca_file: str | None = None  # --root-ca-file: the CA bundle published as kube-root-ca.crt
    # --cluster-signing-cert-file/--cluster-signing-key-file: the CA csrsigning signs with (none: no signing)
    cluster_signing_cert_file: str | None = None
    cluster_signing_key_file: str | None = None
    cluster_signing_duration: float = 365 * 24 * 3600.0  # --cluster-signing-duration, seconds
    service_account_private_key_file: str | None = None  # signs legacy tokens (none: serviceaccount-token idles)
    concurrent_syncs: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def workers(self, controller: str, default: int = 5) -> int:
        return self.concurrent_syncs.get(controller, default)


@dataclass
class ControllerContext:
    """What every controller is built from (upstream's ControllerContext)."""

    client: RESTClient
    informers: SharedInformerFactory
    options: Options = field(default_factory=Options)
    recorders: dict[str, EventRecorder] = field(default_factory=dict)

    def recorder(self, component: str) -> EventRecorder:
        """The event recorder of a controller, `component` as upstream names its event source
        (``replicaset-controller``, ``deployment-controller``, ...)."""
        rec = self.recorders.get(component)
        if rec is None:
            rec = self.recorders[component] = EventRecorder(self.client, component=component)
        return rec


# name -> "module:factory"; factory(ctx) -> Controller. Imported only when chosen, so that one
# controller's import cost (or absence) never touches the others.
CONTROLLERS: dict[str, str] = {
    "replicaset": "k8py.controllers.replicaset:ReplicaSetController",
    "replicationcontroller": "k8py.controllers.replicaset:ReplicationManager",
    "deployment": "k8py.controllers.deployment:DeploymentController",
    "daemonset": "k8py.controllers.daemonset:DaemonSetsController",
    "statefulset": "k8py.controllers.statefulset:StatefulSetController",
    "job": "k8py.controllers.job:JobController",
    "cronjob": "k8py.controllers.cronjob:CronJobController",
    "ttl-after-finished": "k8py.controllers.ttlafterfinished:TTLAfterFinishedController",
    "podgc": "k8py.controllers.podgc:PodGCController",
    "endpoint": "k8py.controllers.endpoint:EndpointController",
    "endpointslice": "k8py.controllers.endpointslice:EndpointSliceController",
    "garbagecollector": "k8py.controllers.garbagecollector:GarbageCollector",
    "namespace": "k8py.controllers.namespace:NamespaceController",
    "serviceaccount": "k8py.controllers.serviceaccount:ServiceAccountsController",
    "serviceaccount-token": "k8py.controllers.serviceaccounttoken:TokensController",
    "root-ca-cert-publisher": "k8py.controllers.rootcacertpublisher:RootCACertPublisher",
    "nodeipam": "k8py.controllers.nodeipam:NodeIpamController",
    "nodelifecycle": "k8py.controllers.nodelifecycle:NodeLifecycleController",
    "taint-eviction-controller": "k8py.controllers.tainteviction:TaintEvictionController",
    "disruption": "k8py.controllers.disruption:DisruptionController",
    "resourcequota": "k8py.controllers.resourcequota:ResourceQuotaController",
    "horizontalpodautoscaling": "k8py.controllers.podautoscaler:HorizontalController",
    "clusterrole-aggregation": "k8py.controllers.clusterroleaggregation:ClusterRoleAggregationController",
    "bootstrapsigner": "k8py.controllers.bootstrapsigner:BootstrapSigner",
    "tokencleaner": "k8py.controllers.tokencleaner:TokenCleaner",
    "csrapproving": "k8py.controllers.certificates.approver:CSRApprovingController",
    "csrsigning": "k8py.controllers.certificates.signer:CSRSigningController",
    "csrcleaner": "k8py.controllers.certificates.cleaner:CSRCleanerController",
}
# upstream's list of controllers off unless asked for by name
DISABLED_BY_DEFAULT: frozenset[str] = frozenset({"bootstrapsigner", "tokencleaner"})  # kubeadm turns both on


class UnknownController(ValueError):
    pass


def select(spec: Sequence[str] | str = "*", available: Sequence[str] | None = None) -> list[str]:
    """The controllers `--controllers` chooses, in registry order."""
    names = list(available if available is not None else CONTROLLERS)
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    chosen: set[str] = set()
    star = "*" in items
    if star:
        chosen = {n for n in names if n not in DISABLED_BY_DEFAULT}
    for item in items:
        if item == "*":
            continue
        negate = item.startswith("-")
        name = item[1:] if negate else item
        name = name.removesuffix("-controller") if name.removesuffix("-controller") in names else name
        if name not in names:
            raise UnknownController(f'"{name}" is not in the list of known controllers')
        if negate:
            chosen.discard(name)
        else:
            chosen.add(name)
    return [n for n in names if n in chosen]


def build(name: str, ctx: ControllerContext) -> Controller:
    module, _, attr = CONTROLLERS[name].partition(":")
    factory: Callable[[ControllerContext], Controller] = getattr(importlib.import_module(module), attr)
    return factory(ctx)


class ControllerManager:
    def __init__(
        self,
        client: RESTClient,
        *,
        controllers: Sequence[str] | str = "*",
        options: Options | None = None,
        leader_elect: bool = True,
        use_service_account_credentials: bool = False,
    ) -> None:
        """``use_service_account_credentials``: each controller writes as its own ServiceAccount
        (see credentials.py); the informers read with ``client``."""
        self.client = client
        self.names = select(controllers)
        self.ctx = ControllerContext(client, SharedInformerFactory(client), options or Options())
        self.use_service_account_credentials = use_service_account_credentials
        self.leader_elect = leader_elect
        self.controllers: dict[str, Controller] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.elector: LeaderElector | None = None
        if leader_elect:
            self.elector = LeaderElector(
                client,
                namespace="kube-system",
                name="kube-controller-manager",
                identity=f"{socket.gethostname()}_{uuid.uuid4()}",
                on_started_leading=self._run_controllers,
                on_stopped_leading=self._lost,
            )

    async def _run_controllers(self) -> None:
        credentials = ServiceAccountCredentials(self.client) if self.use_service_account_credentials else None
        contexts = [self.ctx]
        try:
            for name in self.names:
                ctx = self.ctx
                if credentials is not None and name in SERVICE_ACCOUNT_OF:
                    ctx = dataclasses.replace(self.ctx, client=await credentials.client(name), recorders={})
                    contexts.append(ctx)
                self.controllers[name] = build(name, ctx)
            await self._run_built()
        finally:
            for ctx in contexts:
                for rec in ctx.recorders.values():
                    await rec.stop()
            if credentials is not None:
                await credentials.close()

    async def _run_built(self) -> None:
        self.ctx.informers.start()
        tasks = [
            asyncio.create_task(_logged(name, c.run()), name=f"controller:{name}")
            for name, c in self.controllers.items()
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.ctx.informers.shutdown()

    def _lost(self) -> None:
        if not self._stopping:
            log.error("leaderelection lost: the controller manager stops its controllers")

    async def start(self) -> None:
        run: Awaitable[None] = self.elector.run() if self.elector is not None else self._run_controllers()
        self._task = asyncio.create_task(run, name="kube-controller-manager")  # type: ignore[arg-type]

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _logged(name: str, run: Awaitable[None]) -> None:
    try:
        await run
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("controller %s failed", name)
        raise
