"""The ``cri`` runtime against a real, private containerd (runc, CNI bridge) started by the test.

The module starts k8py's own containerd in a temp data dir, imports the pause and busybox images
built offline, and runs pods through ``CRIRuntime`` exactly as the kubelet does. The pod network
is a bridge with a unique name and a /24 inside 10.244.0.0/16 that no route on the host uses; the
only traffic is between the host and pods on that bridge. The last test stops everything and checks
that no process, mount, network namespace, cgroup or bridge is left behind; the fixture's teardown
repeats the cleanup if a test failed before it.

The pure parts (OCI archive layout, CNI config, generated stubs) are tested without root.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import ipaddress
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from k8py.kubelet.runtime.cri import Containerd, CRIRuntime, write_cni_config
from k8py.kubelet.runtime.cri import api_pb2 as pb
from k8py.kubelet.runtime.cri.imagebuild import BUSYBOX_IMAGE, build_busybox_image, normalize_ref
from k8py.kubelet.runtime.cri.pause import PAUSE_IMAGE, build_pause_image
from k8py.kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    CRIError,
    ExecSession,
    LinuxResources,
    Mount,
    NotFound,
    PodSandboxConfig,
    SandboxState,
)

T = TypeVar("T")

needs_containerd = pytest.mark.skipif(
    not Containerd.available(),
    reason="needs root and containerd, runc, ctr and the CNI plugins (Debian: containerd runc "
    "containernetworking-plugins)",
)
needs_busybox = pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="needs busybox-static")


async def wait_until(fn: Callable[[], Awaitable[T]], timeout: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# ---- without root ----------------------------------------------------------------------------


def read_oci(tar_path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    with tarfile.open(tar_path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    return json.loads(files["index.json"]), files


def test_normalize_ref() -> None:
    assert normalize_ref("busybox") == "docker.io/library/busybox:latest"
    assert normalize_ref("busybox:1.36") == "docker.io/library/busybox:1.36"
    assert normalize_ref("me/app") == "docker.io/me/app:latest"
    assert normalize_ref("k8py.local/pause:3.10") == "k8py.local/pause:3.10"
    assert normalize_ref("localhost:5000/x") == "localhost:5000/x:latest"
    assert normalize_ref("busybox@sha256:ab") == "docker.io/library/busybox@sha256:ab"


@needs_busybox
def test_oci_archive_digests_and_sizes(tmp_path: Path) -> None:
    image_id = build_busybox_image(tmp_path / "busybox.tar")
    index, files = read_oci(tmp_path / "busybox.tar")
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():  # every blob is named by its digest
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    (desc,) = index["manifests"]
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["annotations"]["io.containerd.image.name"] == BUSYBOX_IMAGE

    def blob(d: dict[str, Any]) -> bytes:
        data = files["blobs/sha256/" + d["digest"].removeprefix("sha256:")]
        assert len(data) == d["size"]
        return data

    manifest = json.loads(blob(desc))
    assert manifest["config"]["digest"] == image_id
    config = json.loads(blob(manifest["config"]))
    assert config["config"]["Cmd"] == ["sh"]
    (layer_desc,) = manifest["layers"]
    layer = blob(layer_desc)
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile()
    for applet in ("bin/sh", "usr/sbin/httpd", "bin/sleep", "bin/cat", "bin/echo", "bin/ls", "usr/bin/wget", "usr/bin/env"):
        assert members[applet].issym() and members[applet].linkname == "/bin/busybox", applet
    # Deterministic: the same inputs give the same image.
    assert build_busybox_image(tmp_path / "again.tar") == image_id


def has_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF has a PT_INTERP program header (needs a dynamic loader)."""
    assert elf[:5] == b"\x7fELF\x02"
    phoff = int.from_bytes(elf[32:40], "little")
    phentsize, phnum = int.from_bytes(elf[54:56], "little"), int.from_bytes(elf[56:58], "little")
    return any(
        int.from_bytes(elf[phoff + i * phentsize : phoff + i * phentsize + 4], "little") == 3 for i in range(phnum)
    )


def test_pause_image(tmp_path: Path) -> None:
    tar_path = build_pause_image(tmp_path)
    index, files = read_oci(tar_path)
    (desc,) = index["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == PAUSE_IMAGE
    manifest = json.loads(files["blobs/sha256/" + desc["digest"].removeprefix("sha256:")])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")])
    if (tmp_path / "pause").exists():  # compiled: a static binary that exits 0 on SIGTERM
        assert config["config"]["Entrypoint"] == ["/pause"]
        assert not has_interpreter((tmp_path / "pause").read_bytes())  # static: runs in an empty rootfs
        proc = subprocess.Popen([str(tmp_path / "pause")])
        try:
            time.sleep(0.1)  # let it install its handlers; it must still be running
            assert proc.poll() is None
            proc.terminate()
            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    else:
        assert config["config"]["Entrypoint"][:2] == ["/bin/busybox", "sh"]


def test_cni_config(tmp_path: Path) -> None:
    path = write_cni_config(tmp_path / "net.d", "10.244.7.0/24", bridge="k8pyx0")
    assert path.name == "10-k8py.conflist"
    conf = json.loads(path.read_text())
    bridge, portmap = conf["plugins"]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"], bridge["ipMasq"]) == ("bridge", "k8pyx0", True, False)
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.7.0/24"}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}


def test_generated_stubs_match_proto(tmp_path: Path) -> None:
    """api_pb2.py was generated from the api.proto beside it (compared as descriptors, not text)."""
    protoc = pytest.importorskip("grpc_tools.protoc")
    from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "api.desc"
    assert protoc.main(["protoc", f"-I{root}", f"--descriptor_set_out={out}", "k8py/kubelet/runtime/cri/api.proto"]) == 0
    (fresh,) = FileDescriptorSet.FromString(out.read_bytes()).file
    for message in fresh.message_type:  # the Python generator leaves out json_name
        for f in message.field:
            f.ClearField("json_name")
        for nested in message.nested_type:  # map entries
            for f in nested.field:
                f.ClearField("json_name")
    assert FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb) == fresh, (
        "api_pb2.py is stale: run python -m k8py.kubelet.runtime.cri.generate"
    )


# ---- a real containerd -----------------------------------------------------------------------


def free_pod_cidr() -> ipaddress.IPv4Network:
    """A /24 in 10.244.0.0/16 that overlaps no route of the host (other nodes' bridges). A network
    agent's `unreachable` guard over the whole cluster CIDR does not count: a bridge's connected
    route is more specific."""
    routes = json.loads(subprocess.run(["ip", "-j", "route"], capture_output=True, text=True, check=True).stdout)
    used = [
        ipaddress.ip_network(r["dst"]) for r in routes
        if r["dst"] != "default" and "/" in r["dst"] and r.get("type") != "unreachable"
    ]
    for third in range(200, 255):
        net = ipaddress.IPv4Network(f"10.244.{third}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24 in 10.244.200.0-10.244.254.0")


@dataclass
class Node:
    data_dir: Path
    containerd: Containerd
    runtime: CRIRuntime
    bridge: str
    pod_cidr: ipaddress.IPv4Network
    cgroup_parent: str
    ip_forward_before: str
    timings: dict[str, list[float]] = field(default_factory=dict)
    pids: set[int] = field(default_factory=set)  # of every sandbox and container process seen
    cleaned: bool = False

    def sandbox_config(self, name: str, **kw: Any) -> PodSandboxConfig:
        return PodSandboxConfig(
            name=name,
            namespace="default",
            uid=f"uid-{name}",
            hostname=name,
            log_directory=str(self.data_dir / "pods" / name),
            cgroup_parent=self.cgroup_parent,
            **kw,
        )

    async def timed(self, what: str, coro: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        result = await coro
        self.timings.setdefault(what, []).append((time.perf_counter() - t0) * 1000)
        return result

    async def remember_pids(self, sandbox_id: str) -> None:
        resp = await self.runtime._sandbox_status(sandbox_id, True)
        self.pids.add(json.loads(resp.info["info"])["pid"])
        for c in await self.runtime.list_containers(sandbox_id):
            if c.state == ContainerState.RUNNING:
                status = await self.runtime.rs.ContainerStatus(pb.ContainerStatusRequest(container_id=c.id, verbose=True))
                self.pids.add(json.loads(status.info["info"])["pid"])

    async def cleanup(self) -> None:
        """Remove every pod, stop containerd, delete the bridge and the pod cgroups."""
        if self.cleaned:
            return
        self.cleaned = True
        try:
            for c in await self.runtime.list_containers():
                await self.runtime.stop_container(c.id, 0)
                await self.runtime.remove_container(c.id)
            for s in await self.runtime.list_pod_sandboxes():
                await self.runtime.stop_pod_sandbox(s.id)
                await self.runtime.remove_pod_sandbox(s.id)
        finally:
            await self.runtime.stop()
            await self.containerd.stop()
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            for hierarchy in Path("/sys/fs/cgroup").iterdir():
                cg = hierarchy / self.cgroup_parent.strip("/")
                if cg.is_dir():
                    cg.rmdir()
            # The bridge plugin (isGateway) turned forwarding on; turn it back off unless another
            # bridge (someone else's pod network) is there now.
            others = subprocess.run(["ip", "-br", "link", "show", "type", "bridge"], capture_output=True, text=True)
            if self.ip_forward_before == "0" and not others.stdout.strip():
                Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")


@pytest_asyncio.fixture(scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    if not Containerd.available():
        pytest.skip("needs root and containerd, runc, ctr and the CNI plugins")
    data_dir = tmp_path_factory.mktemp("cri")
    containerd = Containerd(data_dir)
    bridge = f"k8pytest{secrets.token_hex(3)}"
    pod_cidr = free_pod_cidr()
    write_cni_config(containerd.cni_conf_dir, str(pod_cidr), bridge=bridge, network="k8pytest")
    n = Node(
        data_dir=data_dir,
        containerd=containerd,
        runtime=CRIRuntime(containerd.address),
        bridge=bridge,
        pod_cidr=pod_cidr,
        cgroup_parent=f"/k8pytest-{secrets.token_hex(4)}",
        ip_forward_before=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    )
    try:
        await n.timed("containerd start (+ pause image)", containerd.start())
        tar_path = data_dir / "busybox.tar"
        await asyncio.to_thread(build_busybox_image, tar_path)
        assert await n.timed("import busybox", containerd.import_image(tar_path)) == [BUSYBOX_IMAGE]
        await n.runtime.start()
        yield n
    finally:
        await n.cleanup()


@dataclass
class Pod:
    sandbox_id: str
    config: PodSandboxConfig
    web_id: str
    www: Path


@pytest_asyncio.fixture(scope="module")
async def web(node: Node) -> Pod:
    """A pod running busybox ``httpd -f -p 8080`` that serves a host directory mounted at /www."""
    www = node.data_dir / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from k8py\n")
    config = node.sandbox_config("web")
    sandbox_id = await node.timed("RunPodSandbox", node.runtime.run_pod_sandbox(config))
    container = ContainerConfig(
        name="httpd",
        image="busybox:latest",
        command=["httpd", "-f", "-p", "8080", "-h", "/www"],
        mounts=[Mount(container_path="/www", host_path=str(www), readonly=True)],
        log_path="httpd/0.log",
        envs=[("GREETING", "hi")],
        labels={"io.kubernetes.container.name": "httpd"},
        annotations={"k8py.io/test": "yes"},
    )
    web_id = await node.timed("CreateContainer", node.runtime.create_container(sandbox_id, container, config))
    await node.timed("StartContainer", node.runtime.start_container(web_id))
    await node.remember_pids(sandbox_id)
    return Pod(sandbox_id, config, web_id, www)


async def run_to_exit(node: Node, pod: Pod, container: ContainerConfig, timeout: float = 20.0) -> Any:
    cid = await node.timed("CreateContainer", node.runtime.create_container(pod.sandbox_id, container, pod.config))
    await node.timed("StartContainer", node.runtime.start_container(cid))

    async def exited() -> Any:
        status = await node.runtime.container_status(cid)
        return status if status.state == ContainerState.EXITED else None

    return await wait_until(exited, timeout, f"container {container.name} to exit")


@needs_containerd
async def test_version_and_status(node: Node) -> None:
    name, version = await node.runtime.version()
    assert name == "containerd" and version
    conditions = await node.runtime.status()
    assert conditions["RuntimeReady"][0] and conditions["NetworkReady"][0], conditions
    await node.runtime.update_runtime_config(str(node.pod_cidr))


@needs_containerd
async def test_images(node: Node) -> None:
    names = await node.containerd.list_images()
    assert PAUSE_IMAGE in names and BUSYBOX_IMAGE in names
    busybox = await node.runtime.image_status("busybox")
    assert busybox is not None and BUSYBOX_IMAGE in busybox.repo_tags and busybox.size > 1_000_000
    assert busybox.id in {i.id for i in await node.runtime.list_images()}
    # Present: no registry is contacted.
    assert await node.runtime.pull_image("busybox:latest") == busybox.id
    assert await node.runtime.image_status("k8py.local/absent:1") is None
    # Absent: PullImage fails, as the kubelet reports it. The registry is a closed loopback port.
    with pytest.raises(CRIError) as err:
        await node.runtime.pull_image("127.0.0.1:1/k8py/absent:1")
    assert err.value.reason == "ErrImagePull"
    # Importing again changes nothing.
    assert await node.containerd.import_image(node.data_dir / "busybox.tar") == [BUSYBOX_IMAGE]


@needs_containerd
async def test_sandbox_and_container_running(node: Node, web: Pod) -> None:
    sandbox = await node.runtime.pod_sandbox_status(web.sandbox_id)
    assert sandbox.state == SandboxState.READY
    assert (sandbox.name, sandbox.namespace, sandbox.uid) == ("web", "default", "uid-web")
    assert ipaddress.ip_address(sandbox.ip) in node.pod_cidr
    assert web.sandbox_id in {s.id for s in await node.runtime.list_pod_sandboxes()}

    status = await node.runtime.container_status(web.web_id)
    assert status.state == ContainerState.RUNNING
    assert (status.name, status.sandbox_id, status.image) == ("httpd", web.sandbox_id, BUSYBOX_IMAGE)
    assert status.image_ref.startswith("sha256:") and status.started_at >= status.created_at > 0
    assert status.log_path == str(node.data_dir / "pods" / "web" / "httpd" / "0.log")
    assert status.labels == {"io.kubernetes.container.name": "httpd"}
    assert status.annotations == {"k8py.io/test": "yes"}
    assert [c.id for c in await node.runtime.list_containers(web.sandbox_id)] == [web.web_id]


@needs_containerd
async def test_exec_sync(node: Node, web: Pod) -> None:
    out, err, code = await node.timed(
        "ExecSync", node.runtime.exec_sync(web.web_id, ["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"], 10)
    )
    assert (out, err, code) == (b"hi\n", b"oops\n", 3)
    # Own PID namespace (namespace options given to the container): httpd is PID 1.
    out, _, code = await node.runtime.exec_sync(web.web_id, ["cat", "/proc/1/cmdline"], 10)
    assert code == 0 and out.split(b"\0")[0] == b"httpd"
    out, _, _ = await node.runtime.exec_sync(web.web_id, ["hostname"], 10)
    assert out == b"web\n"
    with pytest.raises(NotFound):
        await node.runtime.exec_sync("0" * 64, ["true"], 10)
    t0 = time.monotonic()
    with pytest.raises(CRIError) as exc:
        await node.runtime.exec_sync(web.web_id, ["sleep", "30"], 1)
    assert exc.value.reason == "DeadlineExceeded" and time.monotonic() - t0 < 10, exc.value


@needs_containerd
async def test_port_forward_http_get(node: Node, web: Pod) -> None:
    reader, writer = await node.timed("port_forward connect", node.runtime.port_forward(web.sandbox_id, 8080))
    try:
        writer.write(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 200 OK") or response.startswith(b"HTTP/1.0 200 OK"), response
    assert response.endswith(b"hello from k8py\n")
    # Several at once, each its own connection.
    pairs = await asyncio.gather(*(node.runtime.port_forward(web.sandbox_id, 8080) for _ in range(5)))
    for _, w in pairs:
        w.close()
    with pytest.raises(CRIError, match="refused"):
        await node.runtime.port_forward(web.sandbox_id, 8081)


@needs_containerd
async def test_logs_in_cri_format(node: Node, web: Pod) -> None:
    status = await run_to_exit(
        node, web, ContainerConfig(
            name="talker", image="busybox:latest", command=["sh", "-c", "echo out; echo err >&2; printf partial"],
            log_path="talker/0.log",
        ),
    )
    assert (status.exit_code, status.reason) == (0, "Completed")
    lines = Path(status.log_path).read_text().splitlines()
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) ([FP]) (.*)$")
    parsed = sorted((m[2], m[3], m[4]) for m in map(pattern.match, lines) if m)
    assert len(parsed) == len(lines) == 3, lines
    assert parsed == [("stderr", "F", "err"), ("stdout", "F", "out"), ("stdout", "P", "partial")]


@needs_containerd
async def test_oom_killed(node: Node, web: Pod) -> None:
    status = await run_to_exit(
        node, web, ContainerConfig(
            name="hog", image="busybox:latest",
            command=["sh", "-c", 'x=$(head -c 200m /dev/zero | tr "\\0" a); echo survived'],
            log_path="hog/0.log", resources=LinuxResources(memory_limit_in_bytes=32 * 1024 * 1024),
        ),
    )
    assert (status.reason, status.exit_code) == ("OOMKilled", 137), status
    assert "survived" not in Path(status.log_path).read_text()


@needs_containerd
async def test_failed_container_reports_error(node: Node, web: Pod) -> None:
    status = await run_to_exit(
        node, web, ContainerConfig(name="failing", image="busybox:latest", command=["sh", "-c", "exit 7"])
    )
    assert (status.exit_code, status.reason) == (7, "Error")
    with pytest.raises(CRIError) as err:
        await node.runtime.create_container(
            web.sandbox_id, ContainerConfig(name="noimage", image="k8py.local/absent:1"), web.config
        )
    assert err.value.reason == "CreateContainerError"


@needs_containerd
async def test_container_stats(node: Node, web: Pod) -> None:
    stats = {s.id: s for s in await node.runtime.list_container_stats()}
    s = stats[web.web_id]
    assert (s.name, s.sandbox_id) == ("httpd", web.sandbox_id)
    assert s.cpu_usage_core_nanoseconds > 0 and s.memory_working_set_bytes > 0 and s.timestamp > 0


async def finish(session: ExecSession, stdin: bytes | None = None, timeout: float = 20.0) -> tuple[bytes, bytes, int]:
    """Feed ``stdin`` (then EOF), read stdout and stderr to their ends, and return them with the exit code."""

    async def run() -> tuple[bytes, bytes, int]:
        if stdin is not None:
            assert session.stdin is not None
            session.stdin.write(stdin)
            await session.stdin.drain()
            session.stdin.write_eof()
        out, err = await asyncio.gather(
            session.stdout.read(), session.stderr.read() if session.stderr is not None else asyncio.sleep(0, b"")
        )
        return out, err, await session.wait()

    try:
        return await asyncio.wait_for(run(), timeout)
    finally:
        await session.close()


@needs_containerd
async def test_exec_exit_code_stdout_stderr(node: Node, web: Pod) -> None:
    session = await node.timed("Exec + connect", node.runtime.exec(
        web.web_id, ["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"], stdin=False, tty=False
    ))
    assert session.stdin is None and session.stderr is not None
    assert await finish(session) == (b"hi\n", b"oops\n", 3)
    session = await node.runtime.exec(web.web_id, ["hostname"], stdin=False, tty=False)
    assert await finish(session) == (b"web\n", b"", 0)
    # Much more output than the streams buffer: flow control end to end, nothing lost.
    session = await node.runtime.exec(web.web_id, ["head", "-c", "3000000", "/dev/zero"], stdin=False, tty=False)
    out, err, code = await finish(session)
    assert (len(out), out.count(0), err, code) == (3_000_000, 3_000_000, b"", 0)


@needs_containerd
async def test_exec_failures(node: Node, web: Pod) -> None:
    with pytest.raises(NotFound):
        await node.runtime.exec("0" * 64, ["true"], stdin=False, tty=False)
    session = await node.runtime.exec(web.web_id, ["no-such-command"], stdin=False, tty=False)
    with pytest.raises(CRIError, match="no-such-command"):
        await finish(session)


@needs_containerd
async def test_exec_stdin(node: Node, web: Pod) -> None:
    session = await node.runtime.exec(web.web_id, ["cat"], stdin=True, tty=False)
    assert await finish(session, b"hi\n") == (b"hi\n", b"", 0)
    big = b"".join(b"line %d\n" % i for i in range(100_000))  # ~1 MB: many DATA frames
    session = await node.runtime.exec(web.web_id, ["sh", "-c", "wc -l; exit 4"], stdin=True, tty=False)
    assert await finish(session, big) == (b"100000\n", b"", 4)


@needs_containerd
async def test_exec_tty_and_resize(node: Node, web: Pod) -> None:
    # busybox's stty prints an error (and exits 0) while the terminal is 0x0, until our resize arrives
    wait_size = "i=0; until stty size 2>&1 | grep -q '^[1-9]' || [ $i -ge 200 ]; do sleep 0.05; i=$((i+1)); done; stty size"
    session = await node.runtime.exec(web.web_id, ["sh", "-c", f"{wait_size}; echo term=$TERM"], stdin=True, tty=True)
    assert session.stderr is None  # merged by the terminal
    await session.resize(123, 45)
    out, _, code = await finish(session)
    assert code == 0 and out.replace(b"\r\n", b"\n") == b"45 123\nterm=xterm\n", out
    # Input goes through the terminal, whose line discipline echoes it. (Its end would not be
    # the command's: containerd then closes a TTY exec's output, so a terminal's input never ends.)
    session = await node.runtime.exec(web.web_id, ["sh", "-c", "read line; echo got $line; exit 6"], stdin=True, tty=True)
    assert session.stdin is not None
    session.stdin.write(b"typed\n")
    await session.stdin.drain()
    out, _, code = await finish(session)
    assert (out, code) == (b"typed\r\ngot typed\r\n", 6)


@needs_containerd
async def test_exec_close_ends_the_session(node: Node, web: Pod) -> None:
    session = await node.runtime.exec(web.web_id, ["sleep", "300"], stdin=True, tty=False)
    await asyncio.wait_for(session.close(), 5)
    assert await asyncio.wait_for(session.stdout.read(), 5) == b""
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(session.wait(), 5)


@needs_containerd
async def test_attach(node: Node, web: Pod) -> None:
    """A container created with stdin: attach reaches its stdin and follows its output."""
    config = ContainerConfig(
        name="reader", image="busybox:latest", command=["sh", "-c", "echo started; exec cat"],
        stdin=True, log_path="reader/0.log",
    )
    cid = await node.runtime.create_container(web.sandbox_id, config, web.config)
    await node.runtime.start_container(cid)
    log = node.data_dir / "pods" / "web" / "reader" / "0.log"

    async def started() -> bool:
        return log.exists() and b"started" in log.read_bytes()

    await wait_until(started, 10, "the container to start")

    session = await node.timed("Attach + connect", node.runtime.attach(cid, stdin=True, tty=False))
    assert session.stdin is not None and session.stderr is not None
    session.stdin.write(b"echo me\n")
    await session.stdin.drain()
    assert await asyncio.wait_for(session.stdout.readline(), 10) == b"echo me\n"
    # Without stdin_once, the end of our stdin detaches at once (output included); the container
    # keeps running.
    assert await finish(session, b"") == (b"", b"", 0)
    assert (await node.runtime.container_status(cid)).state == ContainerState.RUNNING
    assert log.read_bytes().count(b"stdout F ") == 2  # what cat echoed is logged as well

    # Output only: the session lasts as long as the container.
    session = await node.runtime.attach(cid, stdin=False, tty=False)
    assert session.stdin is None
    await node.runtime.stop_container(cid, 0)
    assert await finish(session) == (b"", b"", 0)
    with pytest.raises(CRIError, match="not running|EXITED|state"):
        await node.runtime.attach(cid, stdin=False, tty=False)


@needs_containerd
async def test_attach_stdin_once(node: Node, web: Pod) -> None:
    """stdin_once: the end of the attached stdin closes the container's stdin, so `cat` exits."""
    config = ContainerConfig(
        name="once", image="busybox:latest", command=["cat"], stdin=True, stdin_once=True, log_path="once/0.log"
    )
    cid = await node.runtime.create_container(web.sandbox_id, config, web.config)
    await node.runtime.start_container(cid)
    session = await node.runtime.attach(cid, stdin=True, tty=False)
    out, err, code = await finish(session, b"bye\n")
    assert (out, err, code) == (b"bye\n", b"", 0)

    async def exited() -> bool:
        return (await node.runtime.container_status(cid)).state == ContainerState.EXITED

    await wait_until(exited, 10, "cat to exit")
    assert (await node.runtime.container_status(cid)).exit_code == 0


@needs_containerd
async def test_host_network_sandbox(node: Node) -> None:
    config = node.sandbox_config("hostnet", host_network=True)
    sandbox_id = await node.timed("RunPodSandbox", node.runtime.run_pod_sandbox(config))
    try:
        status = await node.runtime.pod_sandbox_status(sandbox_id)
        assert status.state == SandboxState.READY and status.ip == ""
        assert os.path.samefile(await node.runtime.sandbox_netns(sandbox_id), "/proc/self/ns/net")
    finally:
        await node.runtime.stop_pod_sandbox(sandbox_id)
        await node.runtime.remove_pod_sandbox(sandbox_id)
    with pytest.raises(NotFound):
        await node.runtime.pod_sandbox_status(sandbox_id)


@needs_containerd
async def test_running_containerd_is_adopted(node: Node, web: Pod) -> None:
    """A restarted kubelet's supervisor finds the containerd of its data dir and keeps it."""
    again = Containerd(node.data_dir)
    await again.start()
    assert again.pid == node.containerd.pid
    runtime = CRIRuntime(again.address)
    await runtime.start()
    try:
        assert (await runtime.container_status(web.web_id)).state == ContainerState.RUNNING
    finally:
        await runtime.stop()


@needs_containerd
async def test_stop_remove_leaves_nothing(node: Node, web: Pod) -> None:
    await node.runtime.stop_container(web.web_id, 2)
    assert (await node.runtime.container_status(web.web_id)).state == ContainerState.EXITED
    await node.runtime.remove_container(web.web_id)
    await node.timed("StopPodSandbox", node.runtime.stop_pod_sandbox(web.sandbox_id))
    assert (await node.runtime.pod_sandbox_status(web.sandbox_id)).state == SandboxState.NOTREADY
    await node.runtime.remove_pod_sandbox(web.sandbox_id)
    assert await node.runtime.list_pod_sandboxes() == []
    containerd_pid = node.containerd.pid
    await node.cleanup()

    marker = str(node.data_dir).encode()
    leftovers = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    leftovers.append(int(proc.name))
            except OSError:
                pass
    assert leftovers == [], "processes of this containerd (shims) still running"
    assert containerd_pid is not None and not Path(f"/proc/{containerd_pid}").exists()
    assert node.pids and all(not Path(f"/proc/{pid}").exists() for pid in node.pids)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(node.data_dir) not in mounts
    netns_dir = node.data_dir / "containerd/state/io.containerd.grpc.v1.cri/netns"
    assert not netns_dir.exists() or list(netns_dir.iterdir()) == []
    assert not any((h / node.cgroup_parent.strip("/")).exists() for h in Path("/sys/fs/cgroup").iterdir())
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    assert node.bridge not in links
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    prefix = str(node.pod_cidr.network_address).rsplit(".", 1)[0] + "."
    assert prefix not in rules  # the ipMasq rules went with the pods

    print("\nCRI timings (ms): " + "; ".join(
        f"{what} " + "/".join(f"{t:.0f}" for t in ts) for what, ts in node.timings.items()
    ))
