"""k8py.client: kubeconfig loading, the REST client end to end against `k8py up`, and its transport.

The transport tests (headers, retries, error bodies that are not a Status, watch framing) use a
few-line raw HTTP server, because a real API server cannot be made to drop a connection or
split a line across chunks on demand.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from k8py.client import (
    AlreadyExists,
    ClientConfig,
    ConfigError,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    PatchType,
    RESTClient,
    TransportError,
    is_already_exists,
    is_conflict,
    is_gone,
    is_not_found,
    load_kubeconfig,
)
from k8py.client.errors import BadRequest, Forbidden, MethodNotAllowed, ServerError
from k8py.client.resources import CONFIGMAPS, DEPLOYMENTS, NAMESPACES, NODES, PODS, Resource
from tests.conftest import Cluster, start_cluster, wait_for_async


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-client") as c:
        yield c


def _cm(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"v": "1"},
    }


def _pod(name: str, namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


# ---- configuration --------------------------------------------------------------------------


def test_load_kubeconfig_written_by_up(cluster: Cluster) -> None:
    config = load_kubeconfig(cluster.kubeconfig)
    pki = cluster.data_dir / "pki"
    assert config.server == cluster.url
    assert config.ca_pem == (pki / "ca.crt").read_bytes()
    assert config.client_cert_pem == (pki / "admin.crt").read_bytes()
    assert config.client_key_pem == (pki / "admin.key").read_bytes()
    assert config.token is None and not config.insecure_skip_tls_verify


def test_kubeconfig_files_contexts_and_merging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes(b"CA")
    (tmp_path / "token").write_text("from-file\n")
    first = {
        "current-context": "files",
        "clusters": [
            {"name": "c1", "cluster": {"server": "https://one:6443", "certificate-authority": "certs/ca.crt"}}
        ],
        "users": [{"name": "u1", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "files", "context": {"cluster": "c1", "user": "u1"}}],
    }
    second = {
        "current-context": "ignored: the first file to set it wins",
        "clusters": [
            {"name": "c1", "cluster": {"server": "https://shadowed:6443"}},
            {
                "name": "c2",
                "cluster": {
                    "server": "https://two:6443",
                    "insecure-skip-tls-verify": True,
                    "tls-server-name": "api",
                },
            },
        ],
        "users": [
            {
                "name": "u2",
                "user": {
                    "token": "t0k3n",
                    "client-certificate-data": base64.b64encode(b"CERT").decode(),
                    "client-key-data": base64.b64encode(b"KEY").decode(),
                },
            }
        ],
        "contexts": [{"name": "inline", "context": {"cluster": "c2", "user": "u2"}}],
    }
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(first))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "b.yaml").write_text(yaml.safe_dump(second))
    monkeypatch.setenv(
        "KUBECONFIG", f"{tmp_path / 'a.yaml'}:{tmp_path / 'missing.yaml'}:{tmp_path / 'b' / 'b.yaml'}"
    )

    files = load_kubeconfig()
    assert files.server == "https://one:6443" and files.ca_pem == b"CA"
    assert files.token_file == tmp_path / "token"
    inline = load_kubeconfig(context="inline")
    assert (inline.server, inline.token, inline.tls_server_name) == ("https://two:6443", "t0k3n", "api")
    assert (inline.client_cert_pem, inline.client_key_pem, inline.insecure_skip_tls_verify) == (
        b"CERT",
        b"KEY",
        True,
    )

    with pytest.raises(ConfigError, match="no context named 'nope'"):
        load_kubeconfig(context="nope")
    second["users"] = [{"name": "u2", "user": {"exec": {"command": "aws"}}}]
    (tmp_path / "b" / "b.yaml").write_text(yaml.safe_dump(second))
    with pytest.raises(ConfigError, match="'exec' is not supported"):
        load_kubeconfig(context="inline")
    with pytest.raises(ConfigError, match="cannot read"):
        ClientConfig.from_files("https://x", ca_file=tmp_path / "nope.crt")


async def test_from_files_and_tls(cluster: Cluster) -> None:
    pki = cluster.data_dir / "pki"
    admin = ClientConfig.from_files(
        cluster.url, ca_file=pki / "ca.crt", cert_file=pki / "admin.crt", key_file=pki / "admin.key"
    )
    async with RESTClient(admin) as c:
        assert (await c.get(NAMESPACES, "default"))["metadata"]["name"] == "default"
    # Without a client certificate the TLS handshake succeeds and the request is anonymous.
    async with RESTClient(ClientConfig.from_files(cluster.url, ca_file=pki / "ca.crt")) as c:
        with pytest.raises(Forbidden) as e:
            await c.list(CONFIGMAPS)
        assert e.value.code == 403 and 'User "system:anonymous"' in str(e.value)
        assert orjson.loads(await c.raw("GET", "/version"))["gitVersion"].startswith("v1.32")
    # Skipping verification needs no CA; verifying against the wrong CA fails at once, unretried.
    insecure = ClientConfig(
        server=cluster.url,
        client_cert_pem=admin.client_cert_pem,
        client_key_pem=admin.client_key_pem,
        insecure_skip_tls_verify=True,
    )
    async with RESTClient(insecure) as c:
        assert (await c.list(CONFIGMAPS, namespace="default"))["kind"] == "ConfigMapList"
    async with RESTClient(ClientConfig(server=cluster.url)) as c:  # the system trust store
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransportError, match="(?i)certificate"):
            await c.get(CONFIGMAPS, "x", namespace="default")
        assert loop.time() - started < 1.0


# ---- verbs end to end -----------------------------------------------------------------------


async def test_crud_and_patch_types(client: RESTClient, namespace: str) -> None:
    created = await client.create(CONFIGMAPS, _cm("crud", namespace, app="x"))
    assert created["metadata"]["uid"] and created["data"] == {"v": "1"}
    got = await client.get(CONFIGMAPS, "crud", namespace=namespace)
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    got["data"]["w"] = "2"
    updated = await client.update(CONFIGMAPS, got)
    assert updated["data"] == {"v": "1", "w": "2"}
    with pytest.raises(Conflict) as stale:  # got's resourceVersion is now stale
        await client.update(CONFIGMAPS, got)
    assert (
        is_conflict(stale.value) and not is_already_exists(stale.value) and stale.value.reason == "Conflict"
    )

    merged = await client.patch(CONFIGMAPS, "crud", {"data": {"w": None, "m": "3"}}, namespace=namespace)
    assert merged["data"] == {"v": "1", "m": "3"}
    ops = [
        {"op": "replace", "path": "/data/v", "value": "json"},
        {"op": "add", "path": "/metadata/labels/j", "value": "1"},
    ]
    jsoned = await client.patch(CONFIGMAPS, "crud", ops, namespace=namespace, patch_type=PatchType.JSON)
    assert jsoned["data"]["v"] == "json" and jsoned["metadata"]["labels"] == {"app": "x", "j": "1"}
    smp = await client.patch(
        CONFIGMAPS,
        "crud",
        {"metadata": {"labels": {"s": "1"}}},
        namespace=namespace,
        patch_type=PatchType.STRATEGIC,
    )
    assert smp["metadata"]["labels"] == {"app": "x", "j": "1", "s": "1"}

    dry = await client.patch(CONFIGMAPS, "crud", {"data": {"dry": "1"}}, namespace=namespace, dry_run=True)
    assert "dry" in dry["data"]
    assert "dry" not in (await client.get(CONFIGMAPS, "crud", namespace=namespace))["data"]

    with pytest.raises(AlreadyExists) as exists:
        await client.create(CONFIGMAPS, _cm("crud", namespace))
    assert is_already_exists(exists.value) and not is_conflict(exists.value) and exists.value.code == 409

    status = await client.delete(CONFIGMAPS, "crud", namespace=namespace)
    assert status["kind"] == "Status" and status["status"] == "Success"
    with pytest.raises(NotFound) as missing:
        await client.get(CONFIGMAPS, "crud", namespace=namespace)
    assert is_not_found(missing.value) and missing.value.details == {"name": "crud", "kind": "configmaps"}
    assert missing.value.message == 'configmaps "crud" not found'


async def test_error_mapping(client: RESTClient, namespace: str) -> None:
    with pytest.raises(Invalid) as invalid:
        await client.create(CONFIGMAPS, _cm("Not_A_Name", namespace))
    assert invalid.value.code == 422 and invalid.value.details["causes"][0]["field"] == "metadata.name"
    with pytest.raises(BadRequest):  # the object names another namespace than the URL
        await client.create(CONFIGMAPS, _cm("elsewhere", "default"), namespace=namespace)
    with pytest.raises(NotFound, match="could not find the requested resource"):
        await client.list(Resource("example.com", "v1", "widgets", "Widget", True), namespace=namespace)
    with pytest.raises(MethodNotAllowed):  # kube routes POST to collections only
        await client.raw("POST", f"/api/v1/namespaces/{namespace}/configmaps/p", body=b"{}",
                         content_type="application/json")
    # Misuse is caught before anything is sent.
    with pytest.raises(ValueError, match="namespace is required"):
        await client.get(CONFIGMAPS, "x")
    with pytest.raises(ValueError, match="cluster-scoped"):
        await client.get(NODES, "x", namespace=namespace)
    with pytest.raises(ValueError, match="may not"):
        await client.get(CONFIGMAPS, "../secrets/x", namespace=namespace)


async def test_delete_options(client: RESTClient, namespace: str) -> None:
    cm = await client.create(CONFIGMAPS, _cm("del", namespace))
    with pytest.raises(Conflict, match="Precondition failed"):
        await client.delete(CONFIGMAPS, "del", namespace=namespace, preconditions={"uid": "not-the-uid"})
    await client.delete(CONFIGMAPS, "del", namespace=namespace, dry_run=True)
    await client.get(CONFIGMAPS, "del", namespace=namespace)
    # Foreground deletion leaves the object to the garbage collector, behind its finalizer.
    terminating = await client.delete(
        CONFIGMAPS,
        "del",
        namespace=namespace,
        propagation_policy="Foreground",
        grace_period_seconds=0,
        preconditions={"uid": cm["metadata"]["uid"], "resourceVersion": cm["metadata"]["resourceVersion"]},
    )
    assert terminating["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert terminating["metadata"]["deletionTimestamp"]


async def test_cluster_scoped(client: RESTClient) -> None:
    node = await client.create(NODES, {"metadata": {"name": "client-test-node", "labels": {"t": "1"}}})
    assert "namespace" not in node["metadata"]
    labelled = await client.list(NODES, label_selector="t=1")
    assert [n["metadata"]["name"] for n in labelled["items"]] == ["client-test-node"]
    await client.delete(NODES, "client-test-node")


async def test_status_and_subresources(client: RESTClient, namespace: str) -> None:
    pod = await client.create(PODS, _pod("sub", namespace))
    pod["status"] = {"phase": "Running", "message": "via status"}
    pod["spec"]["activeDeadlineSeconds"] = 5  # ignored by the status subresource
    written = await client.update_status(PODS, pod)
    assert written["status"]["message"] == "via status" and "activeDeadlineSeconds" not in written["spec"]
    patched = await client.patch(
        PODS, "sub", {"status": {"message": "patched"}}, namespace=namespace, subresource="status"
    )
    assert patched["status"]["message"] == "patched"

    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "sub"},
        "target": {"kind": "Node", "name": "n1"},
    }
    result = await client.create_subresource(PODS, "sub", "binding", binding, namespace=namespace)
    assert result["status"] == "Success"
    assert (await client.get(PODS, "sub", namespace=namespace))["spec"]["nodeName"] == "n1"
    with pytest.raises(Conflict, match="already assigned"):
        await client.create_subresource(PODS, "sub", "binding", binding, namespace=namespace)

    deploy = {
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": _pod("x", namespace)["spec"]},
        },
    }
    await client.create(DEPLOYMENTS, deploy)
    scale = await client.get_subresource(DEPLOYMENTS, "web", "scale", namespace=namespace)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    scale["spec"]["replicas"] = 3
    assert (await client.update(DEPLOYMENTS, scale, subresource="scale"))["spec"]["replicas"] == 3


async def test_list_paging(client: RESTClient, namespace: str) -> None:
    for i in range(7):
        await client.create(CONFIGMAPS, _cm(f"page{i}", namespace, paged="yes"))
    await client.create(CONFIGMAPS, _cm("unlabelled", namespace))
    first = await client.list(CONFIGMAPS, namespace=namespace, label_selector="paged=yes", limit=3)
    assert len(first["items"]) == 3 and first["metadata"]["continue"]
    seen = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = await client.list(
            CONFIGMAPS, namespace=namespace, label_selector="paged=yes", limit=3, continue_=token
        )
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == [f"page{i}" for i in range(7)]

    everything = await client.list_all(
        CONFIGMAPS, namespace=namespace, label_selector="paged=yes", page_size=2
    )
    assert [i["metadata"]["name"] for i in everything["items"]] == seen
    assert everything["metadata"]["resourceVersion"] and "continue" not in everything["metadata"]
    by_field = await client.list(CONFIGMAPS, namespace=namespace, field_selector="metadata.name=page3")
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["page3"]


async def test_watch(client: RESTClient, namespace: str) -> None:
    await client.create(CONFIGMAPS, _cm("before", namespace))
    rv = (await client.list(CONFIGMAPS, namespace=namespace))["metadata"]["resourceVersion"]
    async with client.watch(
        CONFIGMAPS, namespace=namespace, resource_version=rv, timeout_seconds=30
    ) as watch:
        await client.create(CONFIGMAPS, _cm("w", namespace, team="blue"))
        await client.patch(CONFIGMAPS, "w", {"data": {"v": "2"}}, namespace=namespace)
        await client.delete(CONFIGMAPS, "w", namespace=namespace)
        events = [await anext(watch) for _ in range(3)]
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "w"),
        ("MODIFIED", "w"),
        ("DELETED", "w"),
    ]
    kind, obj = events[1]
    assert kind == "MODIFIED" and obj["data"]["v"] == "2"
    with pytest.raises(StopAsyncIteration):  # a closed watch stays closed
        await anext(watch)

    # Initial events, the bookmark that ends them, a selector, and the server's timeout ending iteration.
    watch = client.watch(
        CONFIGMAPS,
        namespace=namespace,
        label_selector="team!=red",
        timeout_seconds=1,
        allow_bookmarks=True,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
    )
    seen = [(e.type, e.object["metadata"].get("name")) async for e in watch]
    seen = [s for s in seen if s[1] != "kube-root-ca.crt"]
    assert seen[0] == ("ADDED", "before")
    assert seen[1][0] == "BOOKMARK"


async def test_watch_gone_after_compaction(tmp_path: Path) -> None:
    c = start_cluster(
        tmp_path / "compacting", extra=("--etcd-compaction-interval", "0.3", "--compaction-retain", "0")
    )
    try:
        async with RESTClient.from_kubeconfig(c.kubeconfig) as client:
            for i in range(3):
                await client.create(CONFIGMAPS, _cm(f"old{i}", "default"))
            page = await client.list(CONFIGMAPS, namespace="default", limit=1)
            old_rv = page["metadata"]["resourceVersion"]

            async def compacted() -> bool:
                await client.create(
                    CONFIGMAPS, {"metadata": {"generateName": "tick-", "namespace": "default"}}
                )
                try:
                    async with client.watch(CONFIGMAPS, namespace="default", resource_version=old_rv) as w:
                        await anext(w)
                except Gone as e:
                    assert is_gone(e) and e.code == 410 and e.reason == "Expired"
                    assert "too old resource version" in e.message
                    return True
                return False

            await wait_for_async(compacted, timeout=20)
            with pytest.raises(Gone):
                await client.list(
                    CONFIGMAPS, namespace="default", limit=1, continue_=page["metadata"]["continue"]
                )
    finally:
        c.stop()


# ---- transport, against a raw HTTP server ---------------------------------------------------


class RawServer:
    """Answers each connection with the next scripted reply (None: hang up without answering)."""

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = replies
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if reply is not None:
            for i in range(0, len(reply), 7):  # dribble, so framing is exercised
                writer.write(reply[i : i + 7])
                await writer.drain()
        writer.close()


def http_reply(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked_reply(chunks: list[bytes]) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


OK = http_reply("200 OK", b'{"kind": "ConfigMap"}', "Content-Type: application/json")


async def test_headers_and_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    warned = http_reply("200 OK", b"{}", 'Warning: 299 - "deprecated thing"')
    async with RawServer([OK, warned, OK, OK]) as srv:
        async with RESTClient(ClientConfig(server=srv.url, token="abc"), component="kube-scheduler") as c:
            await c.get(CONFIGMAPS, "x", namespace="ns")
            with caplog.at_level(logging.WARNING, logger="k8py.client.rest"):
                await c.patch(
                    CONFIGMAPS,
                    "x",
                    {"a": 1},
                    namespace="ns",
                    patch_type=PatchType.APPLY,
                    field_manager="me",
                    force=True,
                )
            assert "deprecated thing" in caplog.text
        token_file = tmp_path / "token"
        token_file.write_text("one\n")
        monkeypatch.setattr("k8py.client.rest.TOKEN_FILE_REFRESH", 0.0)
        async with RESTClient(ClientConfig(server=srv.url, token_file=token_file)) as c:
            await c.get(NODES, "n")
            token_file.write_text("two\n")
            await c.get(NODES, "n")
    get, apply, first, second = (r.decode().lower() for r in srv.requests)
    assert get.startswith("get /api/v1/namespaces/ns/configmaps/x http/1.1")
    assert "user-agent: k8py/0.1.0 (kube-scheduler)" in get and "accept: application/json" in get
    assert "authorization: bearer abc" in get
    assert apply.startswith("patch /api/v1/namespaces/ns/configmaps/x?fieldmanager=me&force=true ")
    assert "content-type: application/apply-patch+yaml" in apply
    assert "authorization: bearer one" in first and "authorization: bearer two" in second


async def test_reads_retried_on_connection_failure_writes_not() -> None:
    # (aiohttp itself resends an idempotent request once when the connection drops: hence the 4 below.)
    async with RawServer([None, None, None, OK]) as srv:
        async with RESTClient(ClientConfig(server=srv.url)) as c:
            assert (await c.get(CONFIGMAPS, "x", namespace="ns"))["kind"] == "ConfigMap"
        assert len(srv.requests) == 4
    async with RawServer([None, OK]) as srv:
        async with RESTClient(ClientConfig(server=srv.url)) as c:
            with pytest.raises(TransportError):
                await c.create(CONFIGMAPS, _cm("x", "ns"))
        assert len(srv.requests) == 1
    async with RawServer([None]) as srv:
        async with RESTClient(ClientConfig(server=srv.url), read_retries=1) as c:
            with pytest.raises(TransportError):
                await c.get(CONFIGMAPS, "x", namespace="ns")
        assert len(srv.requests) == 4


async def test_error_body_not_a_status() -> None:
    async with RawServer(
        [http_reply("502 Bad Gateway", b"<html>upstream down</html>", "Content-Type: text/html")]
    ) as srv:
        async with RESTClient(ClientConfig(server=srv.url)) as c:
            with pytest.raises(ServerError) as e:
                await c.raw("GET", "/healthz")
    assert (e.value.code, e.value.reason, e.value.message) == (
        502,
        "InternalError",
        "<html>upstream down</html>",
    )


async def test_watch_framing_and_error_event() -> None:
    big = {"metadata": {"name": "big"}, "data": {"blob": "x" * 200_000}}  # beyond aiohttp's line limit
    stream = b"".join(
        orjson.dumps(e) + b"\n"
        for e in (
            {"type": "ADDED", "object": {"metadata": {"name": "a"}}},
            {"type": "MODIFIED", "object": big},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
            {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "code": 410,
                    "reason": "Expired",
                    "message": "too old resource version: 1 (5)",
                },
            },
        )
    )
    chunks = [stream[i : i + 9973] for i in range(0, len(stream), 9973)]  # lines split across chunks
    async with RawServer([chunked_reply(chunks)]) as srv:
        async with RESTClient(ClientConfig(server=srv.url)) as c:
            seen = []
            with pytest.raises(Gone) as gone:
                async for event in c.watch(CONFIGMAPS, resource_version="1"):
                    seen.append(event)
    assert [e.type for e in seen] == ["ADDED", "MODIFIED", "BOOKMARK"]
    assert seen[1].object == big and gone.value.message == "too old resource version: 1 (5)"
    assert srv.requests[0].startswith(b"GET /api/v1/configmaps?watch=true&resourceVersion=1 ")


# ---- helpers --------------------------------------------------------------------------------
