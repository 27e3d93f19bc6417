"""The kubelet's HTTPS server (port 10250): pods, logs, exec, attach, port-forward, stats, metrics.

Routes as upstream's ``pkg/kubelet/server``: ``/healthz``, ``/pods``, ``/stats/summary``,
``/metrics``, ``/metrics/resource``, ``/containerLogs/{ns}/{pod}/{container}``,
``/exec|attach/{ns}/{pod}[/{uid}]/{container}``, ``/portForward/{ns}/{pod}[/{uid}]`` and
``/run/{ns}/{pod}[/{uid}]/{container}``. Errors are plain text, worded as the kubelet words them
(the API server passes them on to kubectl).

Streaming is served here directly instead of through a runtime's streaming server: exec and
attach speak the WebSocket channel protocols (``v5.channel.k8s.io`` and older), port-forward the
SPDY/3.1 tunnel in a WebSocket (``SPDY/3.1+portforward.k8s.io``); upstream's kubelet accepts both
since 1.31 (ExtendWebSocketsToKubelet). Plain SPDY upgrades are not served.

Authentication: TLS with a client certificate signed by ``client_ca_file`` (the API server's
``apiserver-kubelet-client``); a request without one is answered 401. There is no authorization
step (upstream asks the API server with a SubjectAccessReview): a certificate of the cluster CA
is trusted.

The server knows the kubelet only through :class:`KubeletHost`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from k8py.bootstrap.pki import peer_identity
from k8py.kubelet.runtime.interface import ContainerState, CRIError, NotFound, Runtime, SandboxState
from k8py.streaming import portforward, remotecommand
from k8py.streaming.logs import PodLogOptions, parse_timestamp, read_logs

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_PORT = 10250


class KubeletHost(Protocol):
    """What the server needs from the kubelet.

    Pods are API objects; their ``status`` must be the kubelet's latest view (container statuses
    with ``containerID`` as ``<runtime>://<id>``, ``state`` and ``lastState``): logs are found
    through it as upstream finds them (``validateContainerLogStatus``), exec and attach through
    the container's ``containerID``, port-forward through the pod's ready sandbox (by uid).
    """

    def get_pods(self) -> list[Obj]:
        """The pods this kubelet runs, static pods included."""
        ...

    def runtime_for(self, pod: Obj) -> Runtime:
        """The runtime that runs ``pod``."""
        ...

    async def summary(self) -> Obj:
        """The node's stats/v1alpha1 Summary (``/stats/summary``; ``/metrics/resource`` is derived from it)."""
        ...


@dataclass
class KubeletServerConfig:
    tls_cert_file: str
    tls_private_key_file: str
    client_ca_file: str  # kubelet's --client-ca-file: who may call (the API server's client certificate)
    address: str = "0.0.0.0"
    port: int = DEFAULT_PORT  # 0: any free port (see KubeletServer.port)
    stream_creation_timeout: float = portforward.DEFAULT_STREAM_CREATION_TIMEOUT


def server_ssl_context(config: KubeletServerConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.tls_cert_file, config.tls_private_key_file)
    ctx.load_verify_locations(cafile=config.client_ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL  # no certificate: a 401; an untrusted one fails the handshake
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message)


def container_id(pod: Obj, name: str) -> str:
    """The runtime's id of the container ``name`` from the pod's status ("" when it has none)."""
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == name:
                return _strip_runtime(cs.get("containerID") or "")
    return ""


def _strip_runtime(cid: str) -> str:
    return cid.split("://", 1)[1] if "://" in cid else cid


def _has_container(pod: Obj, name: str) -> bool:
    spec = pod.get("spec") or {}
    return any(
        c.get("name") == name
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(key) or []
    )


def log_container_id(pod: Obj, container: str, previous: bool) -> str:
    """The container whose log to read, as the kubelet's ``validateContainerLogStatus`` picks it.

    Raises ValueError with the kubelet's message (the API server answers it as a 400).
    """
    pod_name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    cs = next(
        (
            s
            for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
            for s in status.get(key) or []
            if s.get("name") == container
        ),
        None,
    )
    if cs is None:
        raise ValueError(f'container "{container}" in pod "{pod_name}" is not available')
    state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated")
    if previous:
        if not last or not last.get("containerID"):
            raise ValueError(f'previous terminated container "{container}" in pod "{pod_name}" not found')
        return _strip_runtime(last["containerID"])
    if "running" in state:
        return _strip_runtime(cs.get("containerID") or "")
    if (terminated := state.get("terminated")) is not None:
        if terminated.get("containerID"):
            return _strip_runtime(terminated["containerID"])
        if last and last.get("containerID"):
            return _strip_runtime(last["containerID"])
        raise ValueError(f'container "{container}" in pod "{pod_name}" is terminated')
    if last is not None:
        if not last.get("containerID"):
            raise ValueError(f'container "{container}" in pod "{pod_name}" is terminated')
        return _strip_runtime(last["containerID"])
    if (waiting := state.get("waiting")) is not None:
        reason = waiting.get("reason") or ""
        why = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }.get(reason, reason)
        raise ValueError(f'container "{container}" in pod "{pod_name}" is waiting to start: {why}')
    raise ValueError(f'container "{container}" in pod "{pod_name}" is waiting to start - no logs yet')


class KubeletServer:
    def __init__(
        self,
        host: KubeletHost,
        config: KubeletServerConfig,
        *,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        self.host = host
        self.config = config
        self.metrics_registry = metrics_registry or REGISTRY
        self._runner: web.AppRunner | None = None
        self.port = config.port
        self.ssl_context: ssl.SSLContext | None = None  # kept so that a rotated certificate can be loaded into it

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        r = app.router
        r.add_get("/healthz", self._healthz)
        r.add_get("/healthz/{check}", self._healthz)
        r.add_get("/pods", self._pods)
        r.add_get("/pods/", self._pods)
        r.add_get("/stats/summary", self._summary)
        r.add_get("/metrics", self._metrics)
        r.add_get("/metrics/resource", self._resource_metrics)
        r.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        for verb in ("exec", "attach"):
            for path in (f"/{verb}/{{namespace}}/{{pod}}/{{container}}", f"/{verb}/{{namespace}}/{{pod}}/{{uid}}/{{container}}"):
                r.add_route("GET", path, self._exec)
                r.add_route("POST", path, self._exec)
        for path in ("/portForward/{namespace}/{pod}", "/portForward/{namespace}/{pod}/{uid}"):
            r.add_route("GET", path, self._port_forward)
            r.add_route("POST", path, self._port_forward)
        r.add_post("/run/{namespace}/{pod}/{container}", self._run)
        r.add_post("/run/{namespace}/{pod}/{uid}/{container}", self._run)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        self.ssl_context = server_ssl_context(self.config)
        site = web.TCPSite(
            self._runner, self.config.address, self.config.port, ssl_context=self.ssl_context, reuse_address=True
        )
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("kubelet server listening on https://%s:%d", self.config.address, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- plumbing -----------------------------------------------------------------------------

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        transport = request.transport
        ident = peer_identity(transport.get_extra_info("peercert")) if transport is not None else None
        if ident is None:
            return _text(401, "Unauthorized")
        return await handler(request)

    def _pod(self, namespace: str, name: str) -> Obj | None:
        for pod in self.host.get_pods():
            md = pod.get("metadata") or {}
            if md.get("name") == name and md.get("namespace", "default") == namespace:
                return pod
        return None

    # ---- simple endpoints ---------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        check = request.match_info.get("check")
        if check is not None and check not in ("ping", "log", "syncloop"):
            return _text(404, "404 page not found\n")
        return _text(200, "ok")

    async def _pods(self, request: web.Request) -> web.Response:
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.host.get_pods()}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _summary(self, request: web.Request) -> web.Response:
        summary = await self.host.summary()
        if request.query.get("only_cpu_and_memory") == "true":
            summary = cpu_and_memory(summary)
        return web.Response(body=orjson.dumps(summary), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics_registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _resource_metrics(self, request: web.Request) -> web.Response:
        try:
            text, failed = resource_metrics(await self.host.summary()), False
        except Exception:
            log.exception("collecting resource metrics")
            text, failed = "", True
        text += _metric("resource_scrape_error", "gauge", "1 if there was an error while getting container metrics, 0 otherwise",
                        [("", 1 if failed else 0, None)])
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # ---- logs ---------------------------------------------------------------------------------

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        query = dict(request.query)
        if (tail := query.pop("tail", "")) and tail != "all":  # the pre-tailLines parameter
            query["tailLines"] = tail
        try:
            opts = PodLogOptions.from_query(query)
        except ValueError:
            return _text(400, '{"message": "Unable to decode query."}')
        if opts.validate():
            return _text(422, '{"message": "Invalid request."}')
        pod = self._pod(ns, name)
        if pod is None:
            return _text(404, f'pod "{name}" does not exist')
        if not _has_container(pod, container):
            return _text(404, f'container "{container}" not found in pod "{name}"')
        runtime = self.host.runtime_for(pod)
        try:
            cid = log_container_id(pod, container, opts.previous)
            path = (await runtime.container_status(cid)).log_path
        except ValueError as e:
            return _text(400, str(e))
        except CRIError as e:
            return _text(400, f'failed to get container status "{cid}": {e}')

        async def running() -> bool:
            try:
                return (await runtime.container_status(cid)).state == ContainerState.RUNNING
            except CRIError:
                return False

        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            return _text(400, f'failed to open log file "{path}": {e.strerror or e}')
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await read_logs(path, opts.log_options(time.time_ns()), resp.write, running)
            await resp.write_eof()
        except (ConnectionError, OSError) as e:
            log.debug("log stream of %s/%s/%s ended: %s", ns, name, container, e)
        return resp

    # ---- exec, attach, run ----------------------------------------------------------------------

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        attach = request.path.startswith("/attach/")
        ns, name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            opts = remotecommand.Options.from_query(request.query)
        except ValueError as e:
            return _text(400, str(e))
        pod = self._pod(ns, name)
        uid = request.match_info.get("uid")
        if pod is None or (uid and uid != pod["metadata"].get("uid")):
            return _text(404, "pod does not exist")
        cid = container_id(pod, container)
        if not cid:
            return _text(500, f'container not found ("{container}")')
        if not remotecommand.is_websocket_request(request):
            return _text(500, "Upgrade request required")
        runtime = self.host.runtime_for(pod)
        command = request.query.getall("command", [])
        try:
            if attach:
                session = await runtime.attach(cid, stdin=opts.stdin, tty=opts.tty)
            else:
                session = await runtime.exec(cid, command, stdin=opts.stdin, tty=opts.tty)
        except NotFound as e:
            return _text(404, str(e))
        except (CRIError, OSError) as e:
            return _text(500, str(e))
        return await remotecommand.serve(request, session, opts, command=command, report_exit_code=not attach)

    async def _run(self, request: web.Request) -> web.Response:
        ns, name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        pod = self._pod(ns, name)
        if pod is None:
            return _text(404, "pod does not exist")
        cid = container_id(pod, container)
        if not cid:
            return _text(500, f'container not found ("{container}")')
        try:
            out, err, _ = await self.host.runtime_for(pod).exec_sync(cid, request.query.get("cmd", "").split(" "), 0)
        except (CRIError, OSError) as e:
            return _text(500, str(e))
        return web.Response(body=out + err, content_type="application/json")

    # ---- port-forward ---------------------------------------------------------------------------

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        pod = self._pod(ns, name)
        if pod is None:
            return _text(404, "pod does not exist")
        uid = pod["metadata"].get("uid", "")
        if request.match_info.get("uid") not in (None, uid):
            return _text(404, "pod not found")
        if not portforward.is_tunnel_request(request):
            return _text(400, f"port-forward needs a WebSocket upgrade with subprotocol {portforward.WEBSOCKET_TUNNEL_PROTOCOL}")
        runtime = self.host.runtime_for(pod)
        sandboxes = [
            s for s in await runtime.list_pod_sandboxes() if s.uid == uid and s.state == SandboxState.READY
        ]
        if not sandboxes:
            return _text(500, f'pod not found ("{name}_{ns}")')
        sandbox_id = max(sandboxes, key=lambda s: s.created_at).id

        async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await runtime.port_forward(sandbox_id, port)

        return await portforward.serve_websocket(
            request, dial, pod=name, uid=uid, stream_creation_timeout=self.config.stream_creation_timeout
        )


# ---- stats --------------------------------------------------------------------------------------


def cpu_and_memory(summary: Obj) -> Obj:
    """The summary reduced to CPU and memory (``only_cpu_and_memory=true``, metrics-server's query)."""
    node = summary.get("node") or {}
    keep = ("nodeName", "startTime", "cpu", "memory", "systemContainers")
    return {
        "node": {k: v for k, v in node.items() if k in keep},
        "pods": [
            {
                **{k: v for k, v in p.items() if k in ("podRef", "startTime", "cpu", "memory")},
                "containers": [
                    {k: v for k, v in c.items() if k in ("name", "startTime", "cpu", "memory")}
                    for c in p.get("containers") or []
                ],
            }
            for p in summary.get("pods") or []
        ],
    }


def _ms(rfc3339: str | None) -> int | None:
    if not rfc3339:
        return None
    parsed = parse_timestamp(rfc3339.encode())
    return parsed[0] // 1_000_000 if parsed else None


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def _metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float, int | None]]) -> str:
    if not samples:
        return ""
    lines = [f"# HELP {name} [STABLE] {help_text}", f"# TYPE {name} {kind}"]
    for labels, value, ts in samples:
        sample = f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"
        lines.append(f"{sample} {ts}" if ts is not None else sample)
    return "\n".join(lines) + "\n"


def resource_metrics(summary: Obj) -> str:
    """``/metrics/resource`` (the kubelet's ResourceMetricsCollector) from a Summary."""
    cpu: dict[str, list[tuple[str, float, int | None]]] = {"node": [], "pod": [], "container": []}
    mem: dict[str, list[tuple[str, float, int | None]]] = {"node": [], "pod": [], "container": []}
    starts: list[tuple[str, float, int | None]] = []

    def add(level: str, labels: str, stats: Obj) -> None:
        if (c := stats.get("cpu")) and c.get("usageCoreNanoSeconds") is not None:
            cpu[level].append((labels, c["usageCoreNanoSeconds"] / 1e9, _ms(c.get("time"))))
        if (m := stats.get("memory")) and m.get("workingSetBytes") is not None:
            mem[level].append((labels, m["workingSetBytes"], _ms(m.get("time"))))

    add("node", "", summary.get("node") or {})
    for pod in summary.get("pods") or []:
        ref = pod.get("podRef") or {}
        add("pod", _labels(namespace=ref.get("namespace", ""), pod=ref.get("name", "")), pod)
        for c in pod.get("containers") or []:
            labels = _labels(container=c.get("name", ""), namespace=ref.get("namespace", ""), pod=ref.get("name", ""))
            add("container", labels, c)
            if (start := _ms(c.get("startTime"))) is not None:
                starts.append((labels, start / 1000, None))
    return "".join(
        [
            _metric("container_cpu_usage_seconds_total", "counter",
                    "Cumulative cpu time consumed by the container in core-seconds", cpu["container"]),
            _metric("container_memory_working_set_bytes", "gauge",
                    "Current working set of the container in bytes", mem["container"]),
            _metric("container_start_time_seconds", "gauge",
                    "Start time of the container since unix epoch in seconds", starts),
            _metric("node_cpu_usage_seconds_total", "counter",
                    "Cumulative cpu time consumed by the node in core-seconds", cpu["node"]),
            _metric("node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes", mem["node"]),
            _metric("pod_cpu_usage_seconds_total", "counter",
                    "Cumulative cpu time consumed by the pod in core-seconds", cpu["pod"]),
            _metric("pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes", mem["pod"]),
        ]
    )
