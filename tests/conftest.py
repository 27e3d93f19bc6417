"""Shared fixtures: a real `k8py up` cluster in a subprocess, kubectl, the official client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KUBECTL = "/usr/bin/kubectl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # keep polling; report the last error on timeout
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}" + (f": {last_exc}" if last_exc else ""))


async def wait_for_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """`wait_for` for coroutine predicates."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {predicate.__name__}")
        await asyncio.sleep(0.1)


@dataclass
class Cluster:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.data_dir)}
        res = subprocess.run(
            [KUBECTL, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_cluster(
    data_dir: Path, port: int | None = None, extra: tuple[str, ...] = (), *, kubelet: bool = False
) -> Cluster:
    """`k8py up` in a subprocess; without its kubelet unless ``kubelet`` (then on a free port)."""
    port = port or free_port()
    extra = (*extra, "--kubelet-port", str(free_port())) if kubelet else (*extra, "--disable-kubelet")
    data_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(data_dir.glob("k8py-up*.log")))
    log_path = data_dir / f"k8py-up{n}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "k8py.cli", "up", "--data-dir", str(data_dir), "--port", str(port), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    cluster = Cluster(data_dir, port, proc, log_path)
    try:
        wait_for(lambda: b"export KUBECONFIG=" in log_path.read_bytes() or proc.poll() is not None, timeout=30, what="k8py up")
    except TimeoutError:
        cluster.stop()
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"k8py up exited {proc.returncode}:\n{log_path.read_text()}")
    return cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster of the API tests: the API server with only the controllers every namespace
    needs (its `default` ServiceAccount and kube-root-ca.crt). The scheduler and the other
    controllers would act on the objects these tests create (a FailedScheduling status patch
    on every pod, ReplicaSets for Deployments, deletions of objects with made-up owners),
    racing the tests' own writes; they have their own clusters in tests/scheduler and
    tests/controllers."""
    c = start_cluster(
        tmp_path_factory.mktemp("k8py"),
        extra=("--disable-scheduler", "--controllers", "serviceaccount,root-ca-cert-publisher"),
    )
    yield c
    c.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (left behind: deleting namespaces needs the namespace controller).

    Yielded once its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap exist, as in any kube
    namespace, so that they never appear in the middle of a test's watch."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid() % 1000}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")[:60].strip("-")
    cluster.kubectl("create", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
    for path in ("serviceaccounts/default", "configmaps/kube-root-ca.crt"):
        wait_for(lambda p=path: http(cluster, "GET", f"/api/v1/namespaces/{name}/{p}").status == 200, what=path)
    yield name


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> Any:
    from kubernetes import config

    return config.new_client_from_config(str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def core_v1(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps_v1(api_client: Any) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api_client)


@dataclass
class Response:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _ssl_context(cluster: Cluster, client_cert: bool) -> Any:
    import ssl

    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
    if client_cert:
        ctx.load_cert_chain(cluster.data_dir / "pki" / "admin.crt", cluster.data_dir / "pki" / "admin.key")
    return ctx


def http(
    cluster: Cluster,
    method: str,
    path: str,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    client_cert: bool = True,
    timeout: float = 30,
) -> Response:
    """One raw HTTPS request to the API server, authenticated as the admin unless told otherwise."""
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", cluster.port, context=_ssl_context(cluster, client_cert), timeout=timeout)
    hdrs = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()
