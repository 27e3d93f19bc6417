"""Lifecycle hooks (postStart / preStop handlers): exec, httpGet, sleep, and the unsupported tcpSocket.

Unit tests of the handler runner: HTTP hooks hit a real aiohttp server on 127.0.0.1; exec hooks
run through ``LocalRuntime`` (test_prober's stand-in runtime, whose ``exec_sync`` runs local
processes), since ExecSync is all the runner asks of a runtime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from k8py.kubelet.lifecycle import LIFECYCLE_HTTP_FALLBACK, HandlerRunner
from tests.kubelet.test_prober import LOCAL, Events, LocalRuntime, ProbeServer, as_runtime, closed_port

POD = {"metadata": {"name": "web", "namespace": "default", "uid": "uid-1"}, "spec": {}}
WHERE = 'for Container "app" in Pod "web_default(uid-1)"'


@pytest.fixture
async def server() -> AsyncIterator[ProbeServer]:
    s = await ProbeServer().start()
    yield s
    await s.stop()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def runner(events: Events) -> AsyncIterator[HandlerRunner]:
    r = HandlerRunner(as_runtime(LocalRuntime("c1")), events)
    yield r
    await r.close()


def container(port: int = 0) -> dict:
    return {"name": "app", "ports": [{"name": "hooks", "containerPort": port}]}


async def test_exec_hook(runner: HandlerRunner) -> None:
    ok = await runner.run("c1", POD, container(), {"exec": {"command": ["true"]}}, LOCAL)
    assert ok == (True, "")
    command = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert await runner.run("c1", POD, container(), {"exec": {"command": command}}, LOCAL) == (
        False,
        f"Exec lifecycle hook ([sh -c echo out; echo err >&2; exit 3]) {WHERE} failed - error: "
        "command 'sh -c echo out; echo err >&2; exit 3' exited with 3: err\n, "
        'message: "out\\nerr\\n"',
    )


async def test_exec_hook_runtime_error(runner: HandlerRunner) -> None:
    assert await runner.run("gone", POD, container(), {"exec": {"command": ["true"]}}, LOCAL) == (
        False,
        f'Exec lifecycle hook ([true]) {WHERE} failed - error: container gone not found, message: ""',
    )


async def test_http_hook(runner: HandlerRunner, server: ProbeServer) -> None:
    handler = {
        "httpGet": {"path": "/hook", "port": "hooks", "httpHeaders": [{"name": "X-Hook", "value": "1"}]}
    }
    assert await runner.run("c1", POD, container(server.port), handler, LOCAL) == (True, "")
    path, _, headers = server.log[-1]
    assert (path, headers["User-Agent"], headers["X-Hook"]) == ("/hook", "kube-lifecycle/1.32", "1")
    # As upstream, only a failed request fails the hook; the status code is not checked.
    server.codes["/hook"] = 500
    assert await runner.run("c1", POD, container(server.port), handler, LOCAL) == (True, "")
    assert server.hits["/hook"] == 2


async def test_http_hook_failures(runner: HandlerRunner) -> None:
    port = closed_port()
    handler = {"httpGet": {"path": "/hook", "port": port}}
    assert await runner.run("c1", POD, container(), handler, LOCAL) == (
        False,
        f"HTTP lifecycle hook (/hook) {WHERE} failed - error: "
        f'Get "http://{LOCAL}:{port}/hook": dial tcp {LOCAL}:{port}: connect: connection refused',
    )
    ok, message = await runner.run("c1", POD, container(), handler, "")
    assert not ok and "failed to find networking container" in message
    ok, message = await runner.run("c1", POD, container(), {"httpGet": {"path": "/", "port": "admin"}}, LOCAL)
    assert (ok, message) == (
        False,
        f'HTTP lifecycle hook (/) {WHERE} failed - error: strconv.Atoi: parsing "admin": invalid syntax',
    )


async def test_https_hook_falls_back_to_http(
    runner: HandlerRunner, server: ProbeServer, events: Events
) -> None:
    handler = {"httpGet": {"path": "/hook", "port": server.port, "scheme": "HTTPS"}}
    assert await runner.run("c1", POD, container(), handler, LOCAL) == (True, "")
    assert server.hits["/hook"] == 1
    assert events.events == [
        (
            "app",
            "Warning",
            LIFECYCLE_HTTP_FALLBACK,
            f"request to HTTPS lifecycle hook {LOCAL}:{server.port} got HTTP response, retry with HTTP succeeded",
        )
    ]


async def test_sleep_hook(runner: HandlerRunner) -> None:
    start = time.monotonic()
    assert await runner.run("c1", POD, container(), {"sleep": {"seconds": 0.2}}, LOCAL) == (True, "")
    assert time.monotonic() - start >= 0.2
    # The kubelet bounds a preStop hook by the grace period: cancelling ends the sleep.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(runner.run("c1", POD, container(), {"sleep": {"seconds": 30}}, LOCAL), 0.1)


async def test_tcp_socket_hook_is_not_supported(runner: HandlerRunner) -> None:
    assert await runner.run("c1", POD, container(), {"tcpSocket": {"port": 8080}}, LOCAL) == (
        False,
        'Cannot run handler: invalid handler: {"tcpSocket":{"port":8080}}',
    )
