"""The kubelet's prober: probe primitives, the prober's events, and the ProbeManager's timing.

These are unit tests of the prober. The network probes talk to real servers on 127.0.0.1 (aiohttp
for HTTP/HTTPS, a TCP listener, grpcio's own health service). Exec probes go through
``LocalRuntime``, a stand-in for the CRI runtime that only implements ``exec_sync`` by running
local processes: the prober never calls anything else, and the runtimes have their own tests.
Timing tests use periods of tens of milliseconds and wait on conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from k8py.api.gofmt import go_quote
from k8py.bootstrap.pki import create_ca, issue_serving_cert, save_pair
from k8py.kubelet.prober import ProbeManager, Prober, ProbeType, Result
from k8py.kubelet.prober import probe as probepkg
from k8py.kubelet.prober.execprobe import exec_probe
from k8py.kubelet.prober.grpcprobe import (
    decode_health_check_response,
    encode_health_check_request,
    grpc_probe,
)
from k8py.kubelet.prober.httpprobe import HTTPProber, new_request_for_http_get_action
from k8py.kubelet.prober.probe import ProbeError, go_duration, resolve_container_port
from k8py.kubelet.prober.tcpprobe import tcp_probe
from k8py.kubelet.runtime.interface import NotFound, RuntimeService

LOCAL = "127.0.0.1"
Obj = dict[str, Any]


# -- helpers (kept here: no shared conftest) ------------------------------------------------


class LocalRuntime:
    """Only CRI's ExecSync, as local processes of the known container ids (see the module doc)."""

    name = "local"

    def __init__(self, *container_ids: str) -> None:
        self.containers = set(container_ids)

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[bytes, bytes, int]:
        if container_id not in self.containers:
            raise NotFound(f"container {container_id} not found")
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(timeout or None):
                stdout, stderr = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return stdout, stderr, proc.returncode


def as_runtime(runtime: LocalRuntime) -> RuntimeService:
    return cast(RuntimeService, runtime)


class ProbeServer:
    """HTTP(S) on 127.0.0.1: each path answers ``codes[path]`` (200 by default) and is counted.

    Special paths: /big (1 MiB), /redir (to /ok), /away (to another host name), /loop (to
    itself), /hang (until ``release`` is set). ``fail_first[path] = n`` answers 500 n times.
    """

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.fail_first: dict[str, int] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.by_code: collections.Counter[tuple[str, int]] = collections.Counter()
        self.log: list[tuple[str, float, dict[str, str]]] = []  # path, wall time, headers
        self.release = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> ProbeServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOCAL, 0, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        self.log.append((path, time.time(), dict(request.headers)))
        if path == "/hang":
            await self.release.wait()
        if path == "/big":
            return web.Response(body=b"x" * (1 << 20))
        redirects = {"/redir": "/ok", "/away": f"http://localhost:{self.port}/ok", "/loop": "/loop"}
        if path in redirects:
            return web.Response(status=302, headers={"Location": redirects[path]}, text="moved")
        code = self.codes.get(path, 200)
        if self.fail_first.get(path, 0) > 0:
            self.fail_first[path] -= 1
            code = 500
        self.by_code[(path, code)] += 1
        return web.Response(status=code, text=f"{path} says {code}")


@pytest.fixture
async def server() -> AsyncIterator[ProbeServer]:
    s = await ProbeServer().start()
    yield s
    await s.stop()


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def http_probe(port: int | str, path: str, **timing: Any) -> Obj:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 0.05, **timing}


def make_pod(
    containers: list[Obj],
    *,
    uid: str = "uid-1",
    init: list[Obj] | None = None,
    restart_policy: str = "Always",
) -> Obj:
    spec: Obj = {"containers": containers, "restartPolicy": restart_policy}
    if init:
        spec["initContainers"] = init
    return {"metadata": {"name": "web", "namespace": "default", "uid": uid}, "spec": spec}


class Results:
    """on_result: every change, with the server's counters at that moment."""

    def __init__(self, server: ProbeServer | None = None) -> None:
        self.server = server
        self.calls: list[tuple[str, ProbeType, Result, str, collections.Counter[Any]]] = []

    def __call__(self, pod_uid: str, name: str, probe_type: ProbeType, result: Result, message: str) -> None:
        hits: collections.Counter[Any] = collections.Counter()
        if self.server:  # paths, and (path, status) pairs
            hits.update(self.server.hits)
            hits.update(self.server.by_code)
        self.calls.append((name, probe_type, result, message, hits))

    def of(
        self, probe_type: ProbeType, name: str = "app"
    ) -> list[tuple[Result, str, collections.Counter[Any]]]:
        return [(r, m, h) for n, t, r, m, h in self.calls if t == probe_type and n == name]


class Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def __call__(self, pod: Obj, container_name: str, event_type: str, reason: str, message: str) -> None:
        self.events.append((container_name, event_type, reason, message))


@pytest.fixture
async def managers() -> AsyncIterator[list[ProbeManager]]:
    """Managers a test creates; all stopped at the end."""
    made: list[ProbeManager] = []
    yield made
    for m in made:
        await m.stop()


def new_manager(
    made: list[ProbeManager],
    runtime: LocalRuntime | None = None,
    results: Results | None = None,
    events: Events | None = None,
) -> ProbeManager:
    m = ProbeManager(as_runtime(runtime or LocalRuntime()), on_result=results, recorder=events)
    made.append(m)
    return m


# -- Go-shaped helpers ----------------------------------------------------------------------


def test_go_renderings() -> None:
    assert go_duration(1) == "1s"
    assert go_duration(0.3) == "300ms"
    assert go_duration(90) == "1m30s"
    assert go_duration(1.5) == "1.5s"
    assert go_quote('a "b"\n\x01é') == '"a \\"b\\"\\n\\x01é"'
    assert go_quote(b"\xff") == '"\\xff"'
    c = {"env": [{"name": "GREETING", "value": "hello"}, {"name": "FROM", "valueFrom": {}}]}
    expanded = probepkg.expand_container_command_only_static(
        ["$(GREETING)", "$$(GREETING)", "$(NOPE)", "$(FROM)x", "a$"], c
    )
    assert expanded == ["hello", "$(GREETING)", "$(NOPE)", "x", "a$"]


def test_resolve_container_port() -> None:
    c = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_container_port(81, c) == 81
    assert resolve_container_port("http", c) == 8080
    assert resolve_container_port("9090", c) == 9090
    with pytest.raises(ProbeError, match='strconv.Atoi: parsing "metrics": invalid syntax'):
        resolve_container_port("metrics", c)
    with pytest.raises(ProbeError, match="invalid port number: 0"):
        resolve_container_port(0, c)


# -- HTTP -----------------------------------------------------------------------------------


async def http(
    server: ProbeServer,
    path: str,
    *,
    headers: list[Obj] | None = None,
    timeout: float = 1.0,
    scheme: str = "HTTP",
) -> tuple[probepkg.Result, str]:
    action: Obj = {"path": path, "port": "web", "scheme": scheme, "httpHeaders": headers or []}
    req = new_request_for_http_get_action(
        action, {"ports": [{"name": "web", "containerPort": server.port}]}, LOCAL, "probe"
    )
    prober = HTTPProber()
    try:
        return await prober.probe(req, timeout)
    finally:
        await prober.close()


async def test_http_probe_success_sends_kube_headers(server: ProbeServer) -> None:
    result, body = await http(
        server,
        "/healthz?full=1",
        headers=[
            {"name": "X-Custom", "value": "1"},
            {"name": "Host", "value": "example.test"},
        ],
    )
    assert (result, body) == (probepkg.Result.SUCCESS, "/healthz says 200")
    _, _, headers = server.log[-1]
    assert headers["User-Agent"] == "kube-probe/1.32"
    assert headers["Accept"] == "*/*"
    assert headers["X-Custom"] == "1"
    assert headers["Host"] == "example.test"


async def test_http_probe_failure_status_and_empty_accept(server: ProbeServer) -> None:
    server.codes["/bad"] = 500
    assert await http(server, "/bad") == (probepkg.Result.FAILURE, "HTTP probe failed with statuscode: 500")
    server.codes["/gone"] = 404
    result, _ = await http(server, "/gone", headers=[{"name": "Accept", "value": ""}])
    assert result == probepkg.Result.FAILURE
    assert "Accept" not in server.log[-1][2]


async def test_http_probe_redirects(server: ProbeServer) -> None:
    assert await http(server, "/redir") == (probepkg.Result.SUCCESS, "/ok says 200")
    # Another host name: not followed, the 3xx is a warning (counted as success).
    assert await http(server, "/away") == (
        probepkg.Result.WARNING,
        "Probe terminated redirects, Response body: moved",
    )
    assert server.hits["/ok"] == 1
    result, message = await http(server, "/loop")
    assert (result, message) == (
        probepkg.Result.FAILURE,
        f'Get "http://{LOCAL}:{server.port}/loop": stopped after 10 redirects',
    )
    assert server.hits["/loop"] == 10


async def test_http_probe_body_is_limited(server: ProbeServer) -> None:
    result, body = await http(server, "/big")
    assert result == probepkg.Result.SUCCESS and len(body) == probepkg.MAX_READ_LENGTH


async def test_http_probe_refused_and_timeout(server: ProbeServer) -> None:
    port = closed_port()
    req = new_request_for_http_get_action({"path": "/healthz", "port": port}, {}, LOCAL, "probe")
    prober = HTTPProber()
    try:
        assert await prober.probe(req, 1) == (
            probepkg.Result.FAILURE,
            f'Get "http://{LOCAL}:{port}/healthz": dial tcp {LOCAL}:{port}: connect: connection refused',
        )
    finally:
        await prober.close()
    start = time.monotonic()
    assert await http(server, "/hang", timeout=0.2) == (
        probepkg.Result.FAILURE,
        f'Get "http://{LOCAL}:{server.port}/hang": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)",
    )
    assert time.monotonic() - start < 1.0


async def test_https_probe_does_not_verify(tmp_path: Path) -> None:
    pair = issue_serving_cert(create_ca(), "probe", [], [LOCAL])
    save_pair(pair, tmp_path / "tls.crt", tmp_path / "tls.key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    s = await ProbeServer().start(ctx)
    try:
        assert await http(s, "/secure", scheme="HTTPS") == (probepkg.Result.SUCCESS, "/secure says 200")
    finally:
        await s.stop()


# -- TCP ------------------------------------------------------------------------------------


async def test_tcp_probe() -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), LOCAL, 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        assert await tcp_probe(LOCAL, port, 1) == (probepkg.Result.SUCCESS, "")
    finally:
        listener.close()
        await listener.wait_closed()
    port = closed_port()
    assert await tcp_probe(LOCAL, port, 1) == (
        probepkg.Result.FAILURE,
        f"dial tcp {LOCAL}:{port}: connect: connection refused",
    )


# -- gRPC -----------------------------------------------------------------------------------


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[int, health.aio.HealthServicer]]:
    """grpcio's own grpc.health.v1 service on 127.0.0.1."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{LOCAL}:0")
    await server.start()
    await servicer.set("svc", health_pb2.HealthCheckResponse.NOT_SERVING)
    yield port, servicer
    await server.stop(None)


def test_health_messages_match_protobuf() -> None:
    for service in ("", "svc", "x" * 300):
        assert (
            encode_health_check_request(service)
            == health_pb2.HealthCheckRequest(service=service).SerializeToString()
        )
    for status in (0, 1, 2, 3):
        wire = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        assert decode_health_check_response(wire) == status
    assert decode_health_check_response(b"\x12\x02hi\x08\x01") == 1  # unknown fields skipped


async def test_grpc_probe(health_server: tuple[int, Any]) -> None:
    port, _ = health_server
    assert await grpc_probe(LOCAL, "", port, 1) == (probepkg.Result.SUCCESS, "service healthy")
    assert await grpc_probe(LOCAL, "svc", port, 1) == (
        probepkg.Result.FAILURE,
        'service unhealthy (responded with "NOT_SERVING")',
    )
    result, message = await grpc_probe(LOCAL, "other", port, 1)
    assert result == probepkg.Result.FAILURE
    assert message.startswith("error: health rpc probe failed: rpc error: code = NotFound desc = ")


async def test_grpc_probe_unimplemented_and_unreachable() -> None:
    bare = grpc.aio.server()
    port = bare.add_insecure_port(f"{LOCAL}:0")
    await bare.start()
    try:
        result, message = await grpc_probe(LOCAL, "", port, 1)
    finally:
        await bare.stop(None)
    assert result == probepkg.Result.FAILURE
    assert message.startswith(
        "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
    )
    port = closed_port()
    assert await grpc_probe(LOCAL, "", port, 0.3) == (
        probepkg.Result.FAILURE,
        f'timeout: failed to connect service "{LOCAL}:{port}" within 300ms: context deadline exceeded',
    )


# -- exec -----------------------------------------------------------------------------------


async def test_exec_probe() -> None:
    rt = as_runtime(LocalRuntime("c1"))
    assert await exec_probe(rt, "c1", ["sh", "-c", "echo fine"], 1) == (probepkg.Result.SUCCESS, "fine\n")
    assert await exec_probe(rt, "c1", ["sh", "-c", "echo out; echo err >&2; exit 2"], 1) == (
        probepkg.Result.FAILURE,
        "out\nerr\n",
    )
    start = time.monotonic()
    assert await exec_probe(rt, "c1", ["sleep", "5"], 0.3) == (
        probepkg.Result.FAILURE,
        'command "sleep 5" timed out',
    )
    assert time.monotonic() - start < 2
    with pytest.raises(ProbeError, match="container c2 not found"):
        await exec_probe(rt, "c2", ["true"], 1)


# -- the prober: events and errors ------------------------------------------------------------


async def test_prober_events(server: ProbeServer) -> None:
    events = Events()
    prober = Prober(as_runtime(LocalRuntime("c1")), events)
    pod = make_pod([])
    try:
        server.codes["/live"] = 500
        container: Obj = {"name": "app", "livenessProbe": http_probe(server.port, "/live")}
        assert await prober.probe(ProbeType.LIVENESS, pod, container, "c1", LOCAL) == (
            Result.FAILURE,
            "Liveness probe failed: HTTP probe failed with statuscode: 500",
        )
        container = {"name": "app", "readinessProbe": http_probe(server.port, "/away")}
        assert await prober.probe(ProbeType.READINESS, pod, container, "c1", LOCAL) == (
            Result.SUCCESS,
            "Readiness probe warning: Probe terminated redirects, Response body: moved",
        )
        container = {"name": "app", "startupProbe": http_probe("web", "/start")}
        assert await prober.probe(ProbeType.STARTUP, pod, container, "c1", LOCAL) is None
        container = {
            "name": "app",
            "env": [{"name": "WORD", "value": "hi"}],
            "readinessProbe": {"exec": {"command": ["echo", "$(WORD)"]}},
        }
        assert await prober.probe(ProbeType.READINESS, pod, container, "c1", LOCAL) == (Result.SUCCESS, "")
    finally:
        await prober.close()
    assert events.events == [
        ("app", "Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500"),
        (
            "app",
            "Warning",
            "ProbeWarning",
            "Readiness probe warning: Probe terminated redirects, Response body: moved",
        ),
        (
            "app",
            "Warning",
            "Unhealthy",
            'Startup probe errored and resulted in unknown state: strconv.Atoi: parsing "web": invalid syntax',
        ),
    ]


# -- the manager: state and timing ------------------------------------------------------------


async def test_readiness_thresholds(server: ProbeServer, managers: list[ProbeManager]) -> None:
    results = Results(server)
    m = new_manager(managers, results=results)
    probe = http_probe(server.port, "/ready", successThreshold=2, failureThreshold=3)
    m.add_pod(make_pod([{"name": "app", "readinessProbe": probe}]))
    assert not m.is_ready("uid-1", "app")  # readiness starts false
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    await wait_until(lambda: m.is_ready("uid-1", "app"), what="ready")
    ready = results.of(ProbeType.READINESS)
    assert [r for r, _, _ in ready] == [Result.FAILURE, Result.SUCCESS]
    assert ready[1][2]["/ready"] == 2  # successThreshold: two successes in a row

    server.codes["/ready"] = 500
    await wait_until(lambda: not m.is_ready("uid-1", "app"), what="not ready")
    result, message, hits = results.of(ProbeType.READINESS)[-1]
    assert (result, message) == (
        Result.FAILURE,
        "Readiness probe failed: HTTP probe failed with statuscode: 500",
    )
    assert hits[("/ready", 500)] == 3  # failureThreshold: the third failure in a row flips it
    assert m.is_started("uid-1", "app")


async def test_liveness_failure_holds_until_new_container(
    server: ProbeServer, managers: list[ProbeManager]
) -> None:
    results, events = Results(server), Events()
    m = new_manager(managers, results=results, events=events)
    server.codes["/live"] = 500
    m.add_pod(
        make_pod(
            [
                {
                    "name": "app",
                    "livenessProbe": http_probe(server.port, "/live", failureThreshold=2),
                    "readinessProbe": http_probe(server.port, "/ready"),
                }
            ]
        )
    )
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    await wait_until(lambda: m.liveness_failed("uid-1", "app", "c1"), what="liveness failure")
    assert server.hits["/live"] == 2
    failed = results.of(ProbeType.LIVENESS)[-1]
    assert failed[:2] == (Result.FAILURE, "Liveness probe failed: HTTP probe failed with statuscode: 500")
    assert (
        events.events.count(
            ("app", "Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500")
        )
        == 2
    )  # one event per failed probe, the threshold notwithstanding

    # On hold: the readiness probe keeps ticking, the liveness probe does not run.
    ticks = server.hits["/ready"]
    await wait_until(lambda: server.hits["/ready"] >= ticks + 5, what="readiness ticks")
    assert server.hits["/live"] == 2

    # The kubelet restarted the container: a new instance starts alive and is probed again.
    m.update_container("uid-1", "app", "c2", time.time_ns(), LOCAL)
    assert not m.liveness_failed("uid-1", "app", "c2")
    await wait_until(lambda: m.liveness_failed("uid-1", "app", "c2"), what="second liveness failure")
    assert server.hits["/live"] == 4
    assert [r for r, _, _ in results.of(ProbeType.LIVENESS)] == [
        Result.SUCCESS,
        Result.FAILURE,
        Result.SUCCESS,
        Result.FAILURE,
    ]


async def test_startup_probe_gates_liveness_and_readiness(
    server: ProbeServer, managers: list[ProbeManager]
) -> None:
    results = Results(server)
    m = new_manager(managers, results=results)
    server.fail_first["/start"] = 3
    m.add_pod(
        make_pod(
            [
                {
                    "name": "app",
                    "startupProbe": http_probe(server.port, "/start", failureThreshold=10),
                    "livenessProbe": http_probe(server.port, "/live"),
                    "readinessProbe": http_probe(server.port, "/ready"),
                }
            ]
        )
    )
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    assert not m.is_started("uid-1", "app")
    await wait_until(lambda: m.is_started("uid-1", "app"), what="started")
    result, _, hits = results.of(ProbeType.STARTUP)[-1]
    assert result == Result.SUCCESS
    assert (hits["/start"], hits["/live"], hits["/ready"]) == (4, 0, 0)
    await wait_until(lambda: m.is_ready("uid-1", "app"), what="ready")
    # Once started, the startup probe is no longer run.
    ticks = server.hits["/ready"]
    await wait_until(lambda: server.hits["/ready"] >= ticks + 5 and server.hits["/live"] >= 3, what="ticks")
    assert server.hits["/start"] == 4


async def test_startup_failure(server: ProbeServer, managers: list[ProbeManager]) -> None:
    results = Results(server)
    m = new_manager(managers, results=results)
    server.codes["/start"] = 503
    m.add_pod(
        make_pod([{"name": "app", "startupProbe": http_probe(server.port, "/start", failureThreshold=2)}])
    )
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    await wait_until(lambda: m.startup_failed("uid-1", "app", "c1"), what="startup failure")
    assert [r for r, _, _ in results.of(ProbeType.STARTUP)] == [Result.UNKNOWN, Result.FAILURE]
    assert (
        results.of(ProbeType.STARTUP)[-1][1] == "Startup probe failed: HTTP probe failed with statuscode: 503"
    )
    assert not m.is_ready("uid-1", "app")


async def test_initial_delay(server: ProbeServer, managers: list[ProbeManager]) -> None:
    m = new_manager(managers)
    m.add_pod(
        make_pod(
            [{"name": "app", "readinessProbe": http_probe(server.port, "/ready", initialDelaySeconds=0.4)}]
        )
    )
    started = time.time_ns()
    m.update_container("uid-1", "app", "c1", started, LOCAL)
    await wait_until(lambda: m.is_ready("uid-1", "app"), what="ready")
    first = next(t for path, t, _ in server.log if path == "/ready")
    assert first - started / 1e9 >= 0.4


async def test_no_probes_and_stopped_containers(managers: list[ProbeManager]) -> None:
    results = Results()
    m = new_manager(managers, runtime=LocalRuntime("c1", "s1"), results=results)
    probe = {"exec": {"command": ["true"]}, "periodSeconds": 0.05}
    m.add_pod(make_pod([{"name": "plain"}, {"name": "app", "readinessProbe": probe}], restart_policy="Never"))
    assert m.is_ready("uid-1", "plain") and m.is_started("uid-1", "plain")
    assert m.is_ready("unknown-pod", "x")
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    await wait_until(lambda: m.is_ready("uid-1", "app"), what="ready")
    m.update_container("uid-1", "plain", "s1", time.time_ns(), LOCAL, running=False)
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL, running=False)
    assert not m.is_ready("uid-1", "plain") and not m.is_ready("uid-1", "app")
    # restartPolicy Never: the container will not run again, so its worker ends.
    await wait_until(lambda: not m._tasks, what="worker exit")
    assert [r for r, _, _ in results.of(ProbeType.READINESS)] == [
        Result.FAILURE,
        Result.SUCCESS,
        Result.FAILURE,
    ]


async def test_sidecar_probes(server: ProbeServer, managers: list[ProbeManager]) -> None:
    m = new_manager(managers)
    init = [
        {"name": "side", "restartPolicy": "Always", "readinessProbe": http_probe(server.port, "/side")},
        {"name": "setup", "readinessProbe": http_probe(server.port, "/setup")},
    ]
    m.add_pod(make_pod([{"name": "app"}], init=init))
    m.update_container("uid-1", "setup", "i1", time.time_ns(), LOCAL)
    m.update_container("uid-1", "side", "s1", time.time_ns(), LOCAL)
    await wait_until(lambda: m.is_ready("uid-1", "side"), what="sidecar ready")
    await wait_until(lambda: server.hits["/side"] >= 5, what="sidecar ticks")
    assert server.hits["/setup"] == 0  # only restartable init containers are probed


async def test_exec_liveness_through_the_runtime(tmp_path: Path, managers: list[ProbeManager]) -> None:
    results, events = Results(), Events()
    m = new_manager(managers, runtime=LocalRuntime("c1"), results=results, events=events)
    alive = tmp_path / "alive"
    alive.touch()
    probe = {"exec": {"command": ["test", "-f", str(alive)]}, "periodSeconds": 0.05, "failureThreshold": 1}
    m.add_pod(make_pod([{"name": "app", "livenessProbe": probe}]))
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    await wait_until(lambda: results.of(ProbeType.LIVENESS), what="initial liveness")
    alive.unlink()
    await wait_until(lambda: m.liveness_failed("uid-1", "app", "c1"), what="liveness failure")
    assert events.events == [("app", "Warning", "Unhealthy", "Liveness probe failed: ")]


async def test_grpc_and_tcp_probes_through_the_manager(
    health_server: tuple[int, Any], managers: list[ProbeManager]
) -> None:
    grpc_port, servicer = health_server
    listener = await asyncio.start_server(lambda r, w: w.close(), LOCAL, 0)
    tcp_port = listener.sockets[0].getsockname()[1]
    results = Results()
    m = new_manager(managers, results=results)
    m.add_pod(
        make_pod(
            [
                {
                    "name": "app",
                    "ports": [{"name": "admin", "containerPort": tcp_port}],
                    "readinessProbe": {
                        "grpc": {"port": grpc_port},
                        "periodSeconds": 0.05,
                        "failureThreshold": 1,
                    },
                    "livenessProbe": {
                        "tcpSocket": {"port": "admin"},
                        "periodSeconds": 0.05,
                        "failureThreshold": 1,
                    },
                }
            ]
        )
    )
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    await wait_until(lambda: m.is_ready("uid-1", "app"), what="grpc ready")
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await wait_until(lambda: not m.is_ready("uid-1", "app"), what="grpc not ready")
    assert results.of(ProbeType.READINESS)[-1][1] == (
        'Readiness probe failed: service unhealthy (responded with "NOT_SERVING")'
    )
    listener.close()
    await listener.wait_closed()
    await wait_until(lambda: m.liveness_failed("uid-1", "app", "c1"), what="tcp liveness failure")
    assert results.of(ProbeType.LIVENESS)[-1][1] == (
        f"Liveness probe failed: dial tcp {LOCAL}:{tcp_port}: connect: connection refused"
    )


async def test_errored_probe_result_is_thrown_away(server: ProbeServer, managers: list[ProbeManager]) -> None:
    results, events = Results(), Events()
    m = new_manager(managers, results=results, events=events)
    m.add_pod(make_pod([{"name": "app", "readinessProbe": http_probe("nope", "/ready")}]))
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    await wait_until(lambda: len(events.events) >= 2, what="errored probes")
    assert events.events[0] == (
        "app",
        "Warning",
        "Unhealthy",
        'Readiness probe errored and resulted in unknown state: strconv.Atoi: parsing "nope": invalid syntax',
    )
    assert [r for r, _, _ in results.of(ProbeType.READINESS)] == [Result.FAILURE]  # only the initial value
    assert not m.is_ready("uid-1", "app")


async def test_stop_liveness_and_startup_and_remove_pod(
    server: ProbeServer, managers: list[ProbeManager]
) -> None:
    results = Results(server)
    m = new_manager(managers, results=results)
    server.codes["/live"] = 500
    m.add_pod(
        make_pod(
            [
                {
                    "name": "app",
                    "livenessProbe": http_probe(server.port, "/live", initialDelaySeconds=0.3),
                    "readinessProbe": http_probe(server.port, "/ready"),
                }
            ]
        )
    )
    m.update_container("uid-1", "app", "c1", time.time_ns(), LOCAL)
    m.stop_liveness_and_startup("uid-1")  # the pod is terminating
    await wait_until(lambda: server.hits["/ready"] >= 15, what="readiness ticks past the initial delay")
    assert server.hits["/live"] == 0 and not m.liveness_failed("uid-1", "app", "c1")
    assert m.is_ready("uid-1", "app")

    m.remove_pod("uid-1")
    await wait_until(lambda: not m._tasks, what="workers gone")
    assert m.is_ready("uid-1", "app")  # a pod the manager does not know has no probes holding it back
