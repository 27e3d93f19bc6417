"""The resource metrics API, ``metrics.k8s.io/v1beta1`` NodeMetrics and PodMetrics, built into the API server.

What kubernetes-sigs/metrics-server does, in-process instead of behind the aggregation layer (its
group is served and listed in discovery as kube-aggregator lists metrics-server's APIService):

* **Scraper** (``pkg/scraper``): every ``metric_resolution`` (15 s) a tick lists the Nodes (here
  from the watch cache, as metrics-server from its informer) and GETs every kubelet's
  ``/metrics/resource`` concurrently, through the API server's own way to the kubelets
  (``KubeletProxy``: node address, port and the apiserver-kubelet-client certificate). Each
  request has the tick's timeout (90% of the resolution, less a small random stagger); a node
  that fails is only missing from that tick. Nodes that report no kubelet port (hollow and
  simulated nodes run no kubelet server) are not scraped.
* **Decoding** (``pkg/scraper/client/resource/decode.go``): the Prometheus text of
  ``node_cpu_usage_seconds_total``, ``node_memory_working_set_bytes``,
  ``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes`` and
  ``container_start_time_seconds`` (samples carry millisecond timestamps; the scrape time
  stands in where one lacks it).
* **Storage** (``pkg/storage``): the last two points of every node and container. CPU is a
  counter: usage is the rate between the two points, so a node or pod shows up only from its
  second sample (``kubectl top`` meanwhile says "metrics not available yet"); a container that
  started between 10 s and one resolution before its first point gets a synthetic zero point at
  its start time instead. A restart (start time after the stored point) starts over.
* **REST** (``pkg/api``): get and list of ``nodes`` (cluster-scoped) and ``pods`` (namespaced and
  across namespaces) for the objects the watch cache holds, with labelSelector and fieldSelector
  (metadata.name, metadata.namespace); items sorted by name; 404 as metrics-server words it
  (``node "x" not found`` / ``pods "x" not found`` for an object that does not exist,
  ``nodemetrics.metrics.k8s.io "x" not found`` / ``podmetrics.metrics.k8s.io "ns/x" not found``
  for one without metrics yet); Tables with metrics-server's columns (Name, cpu, memory, Window).

One deviation: metrics-server drops a pod whose container reads exactly zero CPU seconds (cgroup
counters never do); the ``process`` runtime counts CPU in clock ticks, where an idle container
does, so here a container needs only both of its series.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from k8py.api import errors, printers
from k8py.api.meta import format_time
from k8py.api.printers._common import Column, Printer
from k8py.api.protobuf.decode import go_duration
from k8py.api.registry import Registry
from k8py.api.selectors import FieldSelector, LabelSelector
from k8py.api.validation.quantity import Quantity, parse_quantity
from k8py.apiserver.handlers import json_response
from k8py.apiserver.kubeletproxy import KubeletProxy
from k8py.apiserver.negotiation import choose_output
from k8py.apiserver.requestinfo import RequestInfo
from k8py.apiserver.watchcache import WatchCache
from k8py.tasks import cancel

log = logging.getLogger(__name__)

Obj = dict[str, Any]
GROUP, VERSION = "metrics.k8s.io", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
# the APIResourceList metrics-server serves (its GetSingularName: "node" and "")
RESOURCES: list[Obj] = [
    {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
]
FRESH_CONTAINER_MIN_RESOLUTION = 10 * 10**9  # ns: a younger container's first point gives no rate yet
MAX_DELAY, DELAY_PER_NODE = 4.0, 0.008  # the scrape stagger: 8 ms a node, at most 4 s

NODE_CPU, NODE_MEMORY = "node_cpu_usage_seconds_total", "node_memory_working_set_bytes"
CONTAINER_CPU, CONTAINER_MEMORY = "container_cpu_usage_seconds_total", "container_memory_working_set_bytes"
CONTAINER_START = "container_start_time_seconds"


@dataclass
class MetricsPoint:
    """One sample: times in ns since the epoch, CPU in core-nanoseconds since ``start_time``, memory in bytes."""

    timestamp: int = 0
    start_time: int = 0
    cpu: int | None = None
    memory: int | None = None


@dataclass
class MetricsBatch:
    nodes: dict[str, MetricsPoint] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, MetricsPoint]] = field(default_factory=dict)  # (ns, name) -> containers


def decode_batch(text: str, default_time: int, node_name: str) -> MetricsBatch:
    """A kubelet's ``/metrics/resource`` as a batch; incomplete node or container points are left out."""
    node = MetricsPoint()
    pods: dict[tuple[str, str], dict[str, MetricsPoint]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            ts = default_time if s.timestamp is None else round(float(s.timestamp) * 1000) * 1_000_000
            if s.name == NODE_CPU:
                node.cpu, node.timestamp = int(s.value * 1e9), ts
            elif s.name == NODE_MEMORY:
                node.memory, node.timestamp = int(s.value), ts
            elif s.name in (CONTAINER_CPU, CONTAINER_MEMORY, CONTAINER_START):
                key = (s.labels.get("namespace", ""), s.labels.get("pod", ""))
                point = pods.setdefault(key, {}).setdefault(s.labels.get("container", ""), MetricsPoint())
                if s.name == CONTAINER_CPU:
                    point.cpu, point.timestamp = int(s.value * 1e9), ts
                elif s.name == CONTAINER_MEMORY:
                    point.memory, point.timestamp = int(s.value), ts
                else:
                    point.start_time = int(s.value * 1e9)
    batch = MetricsBatch()
    if node.timestamp and node.cpu and node.memory:
        batch.nodes[node_name] = node
    else:
        log.debug("incomplete node metrics of %s: %s", node_name, node)
    for key, containers in pods.items():
        if all(p.timestamp and p.cpu is not None and p.memory is not None for p in containers.values()):
            batch.pods[key] = containers
        else:
            log.debug("incomplete pod metrics of %s/%s", *key)
    return batch


@dataclass
class Usage:
    cpu: int  # nanocores
    memory: int  # bytes
    timestamp: int  # ns
    window: int  # ns

    def quantities(self) -> Obj:
        return {
            "cpu": str(Quantity(Decimal(self.cpu).scaleb(-9), "DecimalSI")),
            "memory": str(Quantity(Decimal(self.memory), "BinarySI")),
        }


def resource_usage(last: MetricsPoint, prev: MetricsPoint) -> Usage | None:
    """The CPU rate between two points and the last memory; None when the counter went down."""
    assert last.cpu is not None and prev.cpu is not None and last.memory is not None
    if last.cpu < prev.cpu:
        return None
    window = last.timestamp - prev.timestamp
    return Usage(int((last.cpu - prev.cpu) / (window / 1e9)), last.memory, last.timestamp, window)


def _keep_previous(new: MetricsPoint, last: MetricsPoint | None, prev: MetricsPoint | None) -> MetricsPoint | None:
    """The point before ``new``: the stored last one when ``new`` is newer, else the stored previous one
    while older than ``new``; none after a restart (``new`` started after the stored point)."""
    if last is None or new.start_time >= last.timestamp:
        return None
    if new.timestamp > last.timestamp:
        return last
    if prev is not None and prev.timestamp < new.timestamp:
        return prev
    return None


class Storage:
    """The last two points of every node and container (metrics-server's nodeStorage and podStorage)."""

    def __init__(self, resolution: float) -> None:
        self.resolution = int(resolution * 1e9)
        self.last = MetricsBatch()
        self.prev = MetricsBatch()

    def store(self, batch: MetricsBatch) -> None:
        prev = MetricsBatch()
        for name, point in batch.nodes.items():
            if (p := _keep_previous(point, self.last.nodes.get(name), self.prev.nodes.get(name))) is not None:
                prev.nodes[name] = p
        for key, containers in batch.pods.items():
            last_pod, prev_pod = self.last.pods.get(key, {}), self.prev.pods.get(key, {})
            prev_containers: dict[str, MetricsPoint] = {}
            for name, point in containers.items():
                age = point.timestamp - point.start_time
                if point.start_time and FRESH_CONTAINER_MIN_RESOLUTION <= age < self.resolution:
                    prev_containers[name] = replace(point, timestamp=point.start_time, cpu=0)
                elif (p := _keep_previous(point, last_pod.get(name), prev_pod.get(name))) is not None:
                    prev_containers[name] = p
            if prev_containers:
                prev.pods[key] = prev_containers
        self.last, self.prev = batch, prev

    def node(self, name: str) -> Usage | None:
        last, prev = self.last.nodes.get(name), self.prev.nodes.get(name)
        return resource_usage(last, prev) if last is not None and prev is not None else None

    def pod(self, namespace: str, name: str) -> tuple[list[Obj], Usage] | None:
        """Container metrics and the earliest container's time info; None unless every container has two
        points (and one of them a usage)."""
        last, prev = self.last.pods.get((namespace, name)), self.prev.pods.get((namespace, name))
        if last is None or prev is None or any(c not in prev for c in last):
            return None
        containers: list[Obj] = []
        earliest: Usage | None = None
        for container, point in last.items():
            usage = resource_usage(point, prev[container])
            if usage is None:
                log.warning("unexpected decrease in cumulative CPU usage of %s/%s container %s", namespace, name, container)
                continue
            containers.append({"name": container, "usage": usage.quantities()})
            if earliest is None or usage.timestamp < earliest.timestamp:
                earliest = usage
        return (containers, earliest) if earliest is not None else None


def _sum_usage(obj: Obj) -> Obj:
    total: dict[str, Quantity] = {}
    for c in obj.get("containers") or []:
        for k, v in (c.get("usage") or {}).items():
            q = parse_quantity(v)
            if q is not None:
                total[k] = Quantity(total[k].value + q.value, q.format) if k in total else q
    return {k: str(v) for k, v in total.items()}


def _cells(obj: Obj, _now: dt.datetime) -> list[Any]:
    usage = obj["usage"] if "usage" in obj else _sum_usage(obj)
    return [obj["metadata"]["name"], usage.get("cpu", "0"), usage.get("memory", "0"), obj["window"]]


# metrics-server's table.go: the name, every resource's usage (summed over a pod's containers), the window
PRINTER = Printer(
    (
        Column("Name", text="Name of the resource", format="name"),
        Column("cpu", format="quantity"),
        Column("memory", format="quantity"),
        Column("Window", format="duration"),
    ),
    _cells,
)


class MetricsServer:
    def __init__(self, cache: WatchCache, registry: Registry, kubelets: KubeletProxy, *, resolution: float = 15.0) -> None:
        self.cache = cache
        nodes, pods = registry.get("", "v1", "nodes"), registry.get("", "v1", "pods")
        assert nodes is not None and pods is not None
        self.nodes, self.pods = nodes, pods
        self.kubelets = kubelets
        self.resolution = resolution
        self.storage = Storage(resolution)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-server")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel(self._task)
            self._task = None

    # ---- scraping -------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.tick()
            except Exception:
                log.exception("metrics scrape failed")
            await asyncio.sleep(max(0.0, self.resolution - (loop.time() - started)))

    async def tick(self) -> None:
        """Scrape every node once and store what came back."""
        nodes = [n for n in self.cache.list(self.nodes.prefix()) if _kubelet_port(n)]
        timeout = self.resolution * 0.9
        delay = min(DELAY_PER_NODE * len(nodes), MAX_DELAY, timeout / 2)
        batches = await asyncio.gather(*(self._scrape(n, delay, timeout) for n in nodes))
        batch = MetricsBatch()
        for b in batches:
            if b is not None:
                batch.nodes.update(b.nodes)
                batch.pods.update(b.pods)
        self.storage.store(batch)

    async def _scrape(self, node: Obj, max_delay: float, timeout: float) -> MetricsBatch | None:
        name = node["metadata"]["name"]
        sleep = random.uniform(0, max_delay)  # spread the requests (metrics-server's stagger)
        await asyncio.sleep(sleep)
        started = time.time_ns()
        try:
            async with asyncio.timeout(timeout - sleep):
                body = await self.kubelets.read(node, "/metrics/resource")
            return decode_batch(body.decode(), started, name)
        except Exception as e:  # no address, unreachable, timed out, an error answer, unparsable text
            log.warning("failed to scrape node %s: %s", name, str(e) or type(e).__name__)
        return None

    # ---- REST -----------------------------------------------------------------------------------

    @staticmethod
    def handles(ri: RequestInfo) -> bool:
        return ri.group == GROUP and ri.version == VERSION

    async def handle(self, request: web.Request, ri: RequestInfo) -> web.Response:
        if ri.resource not in ("nodes", "pods") or ri.subresource or (ri.resource == "nodes" and ri.namespace) \
                or (ri.resource == "pods" and ri.name and not ri.namespace):
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        if ri.verb == "watch":
            raise errors.StatusError(
                405, "MethodNotAllowed", f'watch is not supported on resources of kind "{ri.resource}.{GROUP}"',
                details={"group": GROUP, "kind": ri.resource},
            )
        if ri.verb not in ("get", "list"):
            raise errors.method_not_allowed()
        kind = "NodeMetrics" if ri.resource == "nodes" else "PodMetrics"
        output = choose_output(request.headers.get("Accept", ""))
        include = request.query.get("includeObject", "Metadata")
        now = dt.datetime.now(dt.UTC)
        if ri.verb == "get":
            obj = self._get_node(ri.name) if ri.resource == "nodes" else self._get_pod(ri.namespace, ri.name)
            if output.as_kind == "Table":
                return json_response(printers.table(GROUP, kind, [obj], now, include_object=include, custom=PRINTER), 200, output)
            return json_response({"kind": kind, "apiVersion": API_VERSION, **obj}, 200, output)
        labels = LabelSelector.parse(request.query.get("labelSelector", ""))
        fields = FieldSelector.parse(request.query.get("fieldSelector", ""))
        fields.validate_fields()
        items = self._list_nodes(labels, fields) if ri.resource == "nodes" else self._list_pods(ri.namespace, labels, fields)
        if output.as_kind == "Table":
            return json_response(printers.table(GROUP, kind, items, now, include_object=include, custom=PRINTER), 200, output)
        return json_response({"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items}, 200, output)

    def _node_metrics(self, node: Obj) -> Obj | None:
        md = node["metadata"]
        usage = self.storage.node(md["name"])
        if usage is None:
            return None
        meta: Obj = {"name": md["name"], "creationTimestamp": format_time(dt.datetime.now(dt.UTC))}
        if md.get("labels"):
            meta["labels"] = md["labels"]
        return {"metadata": meta, "timestamp": _time(usage.timestamp), "window": go_duration(usage.window),
                "usage": usage.quantities()}

    def _pod_metrics(self, pod: Obj) -> Obj | None:
        md = pod["metadata"]
        found = self.storage.pod(md["namespace"], md["name"])
        if found is None:
            return None
        containers, info = found
        meta: Obj = {"name": md["name"], "namespace": md["namespace"],
                     "creationTimestamp": format_time(dt.datetime.now(dt.UTC))}
        if md.get("labels"):
            meta["labels"] = md["labels"]
        return {"metadata": meta, "timestamp": _time(info.timestamp), "window": go_duration(info.window),
                "containers": containers}

    def _get_node(self, name: str) -> Obj:
        node = self.cache.get(self.nodes.key("", name))
        if node is None:  # the node lister's words
            raise errors.not_found("", "node", name)
        metrics = self._node_metrics(node)
        if metrics is None:
            raise errors.not_found(GROUP, "nodemetrics", name)
        return metrics

    def _get_pod(self, namespace: str, name: str) -> Obj:
        pod = self.cache.get(self.pods.key(namespace, name))
        if pod is None:
            raise errors.not_found("", "pods", name)
        metrics = self._pod_metrics(pod)
        if metrics is None:
            raise errors.not_found(GROUP, "podmetrics", f"{namespace}/{name}")
        return metrics

    def _list_nodes(self, labels: LabelSelector, fields: FieldSelector) -> list[Obj]:
        out = []
        for node in self.cache.list(self.nodes.prefix()):
            md = node["metadata"]
            if labels.matches(md.get("labels")) and fields.matches({"metadata.name": md["name"]}):
                if (m := self._node_metrics(node)) is not None:
                    out.append(m)
        return sorted(out, key=lambda m: m["metadata"]["name"])

    def _list_pods(self, namespace: str, labels: LabelSelector, fields: FieldSelector) -> list[Obj]:
        out = []
        for pod in self.cache.list(self.pods.prefix(namespace)):
            md = pod["metadata"]
            if labels.matches(md.get("labels")) and fields.matches(
                {"metadata.name": md["name"], "metadata.namespace": md["namespace"]}
            ):
                if (m := self._pod_metrics(pod)) is not None:
                    out.append(m)
        return sorted(out, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"]))


def _kubelet_port(node: Obj) -> int:
    return int((((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0)


def _time(ns: int) -> str:
    return format_time(dt.datetime.fromtimestamp(ns / 1e9, dt.UTC))
