"""kubectl logs / exec / attach / port-forward through the real API server to k8py's kubelet server.

A protocol test: the kubelet core is not involved. The kubelet server runs in this process with a
small ``KubeletHost`` whose "runtime" runs exec'd commands as local subprocesses, dials 127.0.0.1
for port-forward and keeps CRI-format log files in a temp dir. The Node (pointing at that
server) and the pods (bound with ``spec.nodeName``, status Running) are real objects in the
shared ``cluster`` fixture's API server, and every command is the real kubectl.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import pty
import signal
import ssl
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from k8py.bootstrap.pki import issue_serving_cert, load_ca, save_pair
from k8py.kubelet.runtime.interface import (
    ContainerState,
    ContainerStatus,
    ExecSession,
    NotFound,
    PodSandboxStatus,
    SandboxState,
)
from k8py.kubelet.server import KubeletServer, KubeletServerConfig
from tests.conftest import KUBECTL, Cluster, free_port, http

Obj = dict[str, Any]


# ---- a tiny runtime and host: just enough for the protocols --------------------------------------


class LocalRuntime:
    """Containers that are only bookkeeping; exec runs the command as a local subprocess."""

    name = "test"

    def __init__(self) -> None:
        self.containers: dict[str, ContainerStatus] = {}
        self.sandboxes: dict[str, PodSandboxStatus] = {}
        self.execs: list[tuple[list[str], asyncio.subprocess.Process]] = []

    async def container_status(self, container_id: str) -> ContainerStatus:
        if container_id not in self.containers:
            raise NotFound(f"container {container_id} not found")
        return self.containers[container_id]

    async def list_pod_sandboxes(self) -> list[PodSandboxStatus]:
        return list(self.sandboxes.values())

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        await self.container_status(container_id)
        if tty:
            return await self._exec_tty(cmd)
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.execs.append((cmd, proc))
        assert proc.stdout is not None and proc.stderr is not None

        async def resize(width: int, height: int) -> None:
            return None

        async def close() -> None:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

        return ExecSession(stdout=proc.stdout, stderr=proc.stderr, stdin=proc.stdin, wait=proc.wait, resize=resize, close=close)

    async def _exec_tty(self, cmd: list[str]) -> ExecSession:
        """The command on a pseudo-terminal: stdout and stderr merged, resizable."""
        master, slave = pty.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(*cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        finally:
            os.close(slave)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        rfile = os.fdopen(os.dup(master), "rb", buffering=0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), rfile)
        wfile = os.fdopen(master, "wb", buffering=0)

        class Stdin:
            def write(self, data: bytes) -> None:
                wfile.write(data)

            def write_eof(self) -> None:
                wfile.write(b"\x04")

            async def drain(self) -> None:
                return None

        async def resize(width: int, height: int) -> None:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

        async def close() -> None:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            rfile.close()
            wfile.close()

        return ExecSession(stdout=reader, stderr=None, stdin=Stdin(), wait=proc.wait, resize=resize, close=close)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> ExecSession:
        """The container's "output from now on": one line, then the container ends."""
        await self.container_status(container_id)
        out, err = asyncio.StreamReader(), asyncio.StreamReader()
        out.feed_data(b"attached to " + container_id.encode() + b"\n")
        out.feed_eof()
        err.feed_eof()

        async def wait() -> int:
            return 0

        async def nothing(*args: Any) -> None:
            return None

        return ExecSession(stdout=out, stderr=None if tty else err, stdin=None, wait=wait, resize=nothing, close=nothing)

    async def port_forward(self, sandbox_id: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if sandbox_id not in self.sandboxes:
            raise NotFound(f"pod sandbox {sandbox_id} not found")
        return await asyncio.open_connection("127.0.0.1", port)

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[bytes, bytes, int]:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return out, err, proc.returncode or 0


@dataclass
class LocalHost:
    runtime: LocalRuntime = field(default_factory=LocalRuntime)
    pods: dict[tuple[str, str], Obj] = field(default_factory=dict)

    def get_pods(self) -> list[Obj]:
        return list(self.pods.values())

    def runtime_for(self, pod: Obj) -> Any:
        return self.runtime

    async def summary(self) -> Obj:
        now = "2026-11-25T10:00:00Z"
        return {
            "node": {"nodeName": "n", "cpu": {"time": now, "usageCoreNanoSeconds": 5_000_000_000},
                     "memory": {"time": now, "workingSetBytes": 1 << 30}},
            "pods": [
                {
                    "podRef": {"name": p["metadata"]["name"], "namespace": p["metadata"]["namespace"], "uid": p["metadata"]["uid"]},
                    "cpu": {"time": now, "usageCoreNanoSeconds": 1_000_000},
                    "memory": {"time": now, "workingSetBytes": 4096},
                    "containers": [
                        {"name": c["name"], "startTime": now, "cpu": {"time": now, "usageCoreNanoSeconds": 1_000_000},
                         "memory": {"time": now, "workingSetBytes": 4096}}
                        for c in p["spec"]["containers"]
                    ],
                }
                for p in self.pods.values()
            ],
        }


@dataclass
class Kubelet:
    host: LocalHost
    server: KubeletServer
    node: str
    dir: Path

    def add_pod(self, cluster: Cluster, namespace: str, name: str, containers: tuple[str, ...] = ("app",),
                *, node: bool = True, log: bytes = b"") -> Obj:
        """A pod bound to this node, reported Running, each container with a CRI log file."""
        spec: Obj = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
        if node:
            spec["nodeName"] = self.node
        created = http(cluster, "POST", f"/api/v1/namespaces/{namespace}/pods",
                       {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
        assert created.status == 201, created.body
        pod = created.json()
        if not node:
            return pod
        uid = pod["metadata"]["uid"]
        sandbox = uuid.uuid4().hex
        self.host.runtime.sandboxes[sandbox] = PodSandboxStatus(
            id=sandbox, name=name, namespace=namespace, uid=uid, attempt=0, state=SandboxState.READY,
            created_at=time.time_ns(),
        )
        statuses = []
        for c in containers:
            cid = uuid.uuid4().hex
            path = self.dir / f"{namespace}_{name}_{c}.log"
            path.write_bytes(log)
            self.host.runtime.containers[cid] = ContainerStatus(
                id=cid, sandbox_id=sandbox, name=c, attempt=0, state=ContainerState.RUNNING,
                created_at=time.time_ns(), image="busybox", log_path=str(path),
            )
            statuses.append({
                "name": c, "containerID": f"test://{cid}", "image": "busybox", "imageID": "", "ready": True,
                "restartCount": 0, "started": True, "state": {"running": {"startedAt": "2026-11-25T10:00:00Z"}},
            })
        status = {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "containerStatuses": statuses}
        patched = http(cluster, "PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                       {"status": status}, headers={"Content-Type": "application/merge-patch+json"})
        assert patched.status == 200, patched.body
        pod = patched.json()
        self.host.pods[namespace, name] = pod
        return pod

    def container(self, namespace: str, name: str, container: str = "app") -> ContainerStatus:
        pod = self.host.pods[namespace, name]
        cs = next(s for s in pod["status"]["containerStatuses"] if s["name"] == container)
        return self.host.runtime.containers[cs["containerID"].split("://")[1]]


@pytest.fixture(scope="module")
async def kubelet(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Kubelet]:
    d = tmp_path_factory.mktemp("kubelet")
    pki = cluster.data_dir / "pki"
    ca = load_ca(pki / "ca.crt", pki / "ca.key")
    save_pair(issue_serving_cert(ca, "kubelet", ["localhost"], ["127.0.0.1"]), d / "kubelet.crt", d / "kubelet.key")
    host = LocalHost()
    server = KubeletServer(host, KubeletServerConfig(
        tls_cert_file=str(d / "kubelet.crt"), tls_private_key_file=str(d / "kubelet.key"),
        client_ca_file=str(pki / "ca.crt"), address="127.0.0.1", port=0,
    ))
    await server.start()
    node = f"streaming-{uuid.uuid4().hex[:8]}"
    created = http(cluster, "POST", "/api/v1/nodes", {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
    })
    assert created.status == 201, created.body
    status = {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": server.port}},
    }
    patched = http(cluster, "PATCH", f"/api/v1/nodes/{node}/status", {"status": status},
                   headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status == 200, patched.body
    yield Kubelet(host, server, node, d)
    http(cluster, "DELETE", f"/api/v1/nodes/{node}")
    await server.stop()


async def kubectl(cluster: Cluster, *args: str, input: str | None = None, timeout: float = 30) -> Any:
    """The real kubectl, off the event loop (the kubelet server runs on it)."""
    return await asyncio.to_thread(cluster.kubectl, *args, input=input, check=False, timeout=timeout)


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


CRI_LOG = (
    b"2026-11-25T10:00:00.000000001Z stdout F line one\n"
    b"2026-11-25T10:00:01.5Z stderr F line two\n"
    b"2026-11-25T10:00:02Z stdout P part-\n"
    b"2026-11-25T10:00:02.1Z stdout F ial three\n"
    b"2026-11-25T10:00:03+00:00 stdout F line four\n"
)


# ---- exec and attach ----------------------------------------------------------------------------


async def test_exec_exit_code_stdout_stderr(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "sh")
    res = await kubectl(cluster, "-n", namespace, "exec", "sh", "--", "sh", "-c", "exit 3")
    assert res.returncode == 3, res.stderr
    assert "command terminated with exit code 3" in res.stderr
    res = await kubectl(cluster, "-n", namespace, "exec", "sh", "--", "sh", "-c", "echo out; echo err >&2")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "out\n"
    assert res.stderr == "err\n"


async def test_exec_stdin(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "cat")
    res = await kubectl(cluster, "-n", namespace, "exec", "-i", "cat", "--", "cat", input="hi\n")
    assert (res.returncode, res.stdout) == (0, "hi\n"), res.stderr
    big = "".join(f"line {i}\n" for i in range(20000))  # ~200 KB: several stdin messages
    res = await kubectl(cluster, "-n", namespace, "exec", "-i", "cat", "--", "wc", "-l", input=big)
    assert (res.returncode, res.stdout.strip()) == (0, "20000"), res.stderr


async def test_exec_tty_and_resize(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    """kubectl exec -it on a terminal (script(1) provides one): the resize channel sets its size."""
    kubelet.add_pod(cluster, namespace, "tty")
    wait_size = 'i=0; while [ "$(stty size)" = "0 0" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; stty size'
    inner = f"stty cols 123 rows 45; {KUBECTL} -n {namespace} exec -it tty -- sh -c '{wait_size}'"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(cluster.data_dir)}
    res = await asyncio.to_thread(
        subprocess.run, ["script", "-qec", inner, "/dev/null"], capture_output=True, text=True, env=env, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "45 123" in res.stdout


async def test_exec_ends_when_the_client_leaves(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "leave")
    marker = f"sleep {300 + len(kubelet.host.runtime.execs)}"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(cluster.data_dir)}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "-n", namespace, "exec", "leave", "--", *marker.split(), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        exec_proc = await eventually(
            lambda: next((p for cmd, p in kubelet.host.runtime.execs if " ".join(cmd) == marker), None), what="exec"
        )
        assert exec_proc.returncode is None
    finally:
        proc.kill()
        await proc.wait()
    await eventually(lambda: exec_proc.returncode is not None, what="the exec'd process to be killed")


@pytest.mark.parametrize("protocol", ["v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io",
                                      "channel.k8s.io", "base64.channel.k8s.io"])
async def test_exec_channel_protocols(cluster: Cluster, kubelet: Kubelet, namespace: str, protocol: str) -> None:
    """Every channel protocol, spoken directly to the API server (which relays to the kubelet)."""
    name = "proto-" + protocol.replace(".", "-")[:20]
    kubelet.add_pod(cluster, namespace, name)
    pki = cluster.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    query = "command=sh&command=-c&command=echo+hi%3B+exit+2&stdout=true&stderr=true"
    url = f"{cluster.url}/api/v1/namespaces/{namespace}/pods/{name}/exec?{query}"
    base64_codec = "base64" in protocol
    messages: list[tuple[int, bytes]] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(url, protocols=[protocol], ssl=ctx) as ws:
        assert ws.protocol == protocol
        async for msg in ws:
            if base64_codec:
                assert msg.type == aiohttp.WSMsgType.TEXT
                messages.append((int(msg.data[0]), base64.b64decode(msg.data[1:])))
            else:
                assert msg.type == aiohttp.WSMsgType.BINARY
                messages.append((msg.data[0], bytes(msg.data[1:])))
        assert ws.close_code == 1000
    assert messages[0] == (1, b"")  # the "streams are ready" message
    assert (1, b"hi\n") in messages
    channel, status = messages[-1]
    assert channel == 3
    if protocol.startswith(("v5", "v4")):
        assert json.loads(status) == {
            "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: error executing command [sh -c echo hi; exit 2], exit code 2",
            "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
        }
    else:
        assert status.startswith(b"command terminated with non-zero exit code")


async def test_exec_picks_the_container(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "two", ("main", "side"))
    res = await kubectl(cluster, "-n", namespace, "exec", "two", "-c", "side", "--", "echo", "ok")
    assert (res.returncode, res.stdout) == (0, "ok\n"), res.stderr
    res = await kubectl(cluster, "-n", namespace, "exec", "two", "-c", "nope", "--", "true")
    assert res.returncode != 0
    # without -c kubectl picks the first container itself; the API server's own choice shows on the raw API
    raw = await asyncio.to_thread(http, cluster, "GET", f"/api/v1/namespaces/{namespace}/pods/two/exec?command=true")
    assert raw.status == 400
    assert raw.json()["message"] == "a container name must be specified for pod two, choose one of: [main side]"


async def test_exec_errors(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "unbound", node=False)
    res = await kubectl(cluster, "-n", namespace, "exec", "unbound", "--", "true")
    assert res.returncode == 1
    assert "pod unbound does not have a host assigned" in res.stderr
    res = await kubectl(cluster, "-n", namespace, "exec", "ghost", "--", "true")
    assert 'pods "ghost" not found' in res.stderr
    # a pod the API knows but the kubelet does not run (yet): the kubelet's words reach kubectl
    kubelet.add_pod(cluster, namespace, "forgotten")
    del kubelet.host.pods[namespace, "forgotten"]
    res = await kubectl(cluster, "-n", namespace, "exec", "forgotten", "--", "true")
    assert res.returncode == 1 and "pod does not exist" in res.stderr, res.stderr


async def test_attach(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "att")
    cid = kubelet.container(namespace, "att").id
    res = await kubectl(cluster, "-n", namespace, "attach", "att")
    assert res.returncode == 0, res.stderr
    assert f"attached to {cid}" in res.stdout


# ---- port-forward -------------------------------------------------------------------------------


@pytest.fixture
async def web_port() -> AsyncIterator[int]:
    """The "pod's" HTTP server, on loopback."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello from the pod: {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def test_port_forward(cluster: Cluster, kubelet: Kubelet, namespace: str, web_port: int) -> None:
    kubelet.add_pod(cluster, namespace, "web")
    local = free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(cluster.data_dir)}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "-n", namespace, "port-forward", "pod/web", f"{local}:{web_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.decode().startswith(f"Forwarding from 127.0.0.1:{local} -> {web_port}"), line
        for i in range(3):  # each GET is a new connection: a new error+data stream pair
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                async with s.get(f"http://127.0.0.1:{local}/req{i}", timeout=aiohttp.ClientTimeout(total=10)) as r:
                    assert r.status == 200
                    assert await r.text() == f"hello from the pod: /req{i}"
        assert proc.returncode is None  # still forwarding
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    err = (await proc.stderr.read()).decode()
    assert "error" not in err.lower(), err


async def test_port_forward_to_a_closed_port(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "closed")
    remote, local = free_port(), free_port()  # nothing listens on `remote`
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(cluster.data_dir)}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "-n", namespace, "port-forward", "pod/closed", f"{local}:{remote}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        await asyncio.wait_for(proc.stdout.readline(), 20)
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        # kubectl reports the kubelet's error and, as 1.32 does, gives up on the connection
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = (await proc.stderr.read()).decode()
    assert f"error forwarding port {remote} to pod closed" in err, err


# ---- logs ---------------------------------------------------------------------------------------


async def test_logs(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "logger", log=CRI_LOG)
    ns = ("-n", namespace)
    res = await kubectl(cluster, *ns, "logs", "logger")
    assert res.stdout == "line one\nline two\npart-ial three\nline four\n", res.stderr
    assert (await kubectl(cluster, *ns, "logs", "logger", "--tail=1")).stdout == "line four\n"
    assert (await kubectl(cluster, *ns, "logs", "logger", "--tail=3")).stdout == "part-ial three\nline four\n"
    assert (await kubectl(cluster, *ns, "logs", "logger", "--tail=0")).stdout == ""
    assert (await kubectl(cluster, *ns, "logs", "logger", "--limit-bytes=7")).stdout == "line on"
    since = await kubectl(cluster, *ns, "logs", "logger", "--since-time=2026-11-25T10:00:02Z")
    assert since.stdout == "part-ial three\nline four\n", since.stderr
    stamped = (await kubectl(cluster, *ns, "logs", "logger", "--timestamps")).stdout.splitlines()
    assert stamped[0] == "2026-11-25T10:00:00.000000001Z line one"
    assert stamped[1] == "2026-11-25T10:00:01.500000000Z line two"
    assert stamped[3] == "2026-11-25T10:00:03.000000000Z line four"
    assert (await kubectl(cluster, *ns, "logs", "pod/logger", "-c", "app", "--tail=1")).stdout == "line four\n"


async def test_logs_errors(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "quiet", log=CRI_LOG)
    ns = ("-n", namespace)
    res = await kubectl(cluster, *ns, "logs", "quiet", "--previous")
    assert res.returncode == 1
    assert 'previous terminated container "app" in pod "quiet" not found' in res.stderr
    res = await kubectl(cluster, *ns, "logs", "quiet", "-c", "nope")
    assert "container nope is not valid for pod quiet" in res.stderr
    raw = await asyncio.to_thread(http, cluster, "GET", f"/api/v1/namespaces/{namespace}/pods/quiet/log?tailLines=-1")
    assert raw.status == 422
    assert raw.json()["message"] == 'PodLogOptions "quiet" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0'
    kubelet.add_pod(cluster, namespace, "pending", node=False)
    res = await kubectl(cluster, *ns, "logs", "pending")
    assert (res.returncode, res.stdout) == (0, "")
    # the kubelet's own refusals, as the API server passes them on
    kubelet.host.pods[namespace, "quiet"]["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ContainerCreating"}
    }
    res = await kubectl(cluster, *ns, "logs", "quiet")
    assert 'Error from server (BadRequest): container "app" in pod "quiet" is waiting to start: ContainerCreating' in res.stderr
    del kubelet.host.pods[namespace, "quiet"]
    res = await kubectl(cluster, *ns, "logs", "quiet")
    assert "Error from server (NotFound): the server could not find the requested resource ( pods/log quiet)" in res.stderr


async def test_logs_follow(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "tail", log=CRI_LOG)
    container = kubelet.container(namespace, "tail")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(cluster.data_dir)}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "-n", namespace, "logs", "-f", "--tail=1", "tail",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"line four\n"
        with open(container.log_path, "ab") as f:
            f.write(b"2026-11-25T10:00:04Z stdout P new \n")
            f.flush()
            f.write(b"2026-11-25T10:00:04Z stdout F line\n")
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"new line\n"
        container.state = ContainerState.EXITED  # the kubelet stops following a container that ended
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---- nodes/proxy and the kubelet's own endpoints --------------------------------------------------


async def test_node_proxy(cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
    kubelet.add_pod(cluster, namespace, "listed")
    base = f"/api/v1/nodes/{kubelet.node}/proxy"
    assert (await kubectl(cluster, "get", "--raw", f"{base}/healthz")).stdout == "ok"
    pods = (await kubectl(cluster, "get", "--raw", f"{base}/pods")).stdout
    assert '"kind":"PodList"' in pods and '"name":"listed"' in pods
    metrics = (await kubectl(cluster, "get", "--raw", f"{base}/metrics/resource")).stdout
    assert f'container_cpu_usage_seconds_total{{container="app",namespace="{namespace}",pod="listed"}} 0.001' in metrics
    assert "resource_scrape_error 0" in metrics
    summary = (await kubectl(cluster, "get", "--raw", f"{base}/stats/summary?only_cpu_and_memory=true")).stdout
    assert '"usageCoreNanoSeconds":5000000000' in summary
    res = await kubectl(cluster, "get", "--raw", "/api/v1/nodes/no-such-node/proxy/healthz")
    assert 'nodes "no-such-node" not found' in res.stderr


async def test_kubelet_requires_a_client_certificate(cluster: Cluster, kubelet: Kubelet) -> None:
    pki = cluster.data_dir / "pki"
    url = f"https://127.0.0.1:{kubelet.server.port}/healthz"
    anonymous = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    admin = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    admin.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    for ctx, expected in ((anonymous, (401, "Unauthorized")), (admin, (200, "ok"))):
        async with aiohttp.ClientSession() as s, s.get(url, ssl=ctx) as r:
            assert (r.status, await r.text()) == expected
