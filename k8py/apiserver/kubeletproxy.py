"""The API server's way to the kubelets: pods/log, pods/exec, pods/attach, pods/portforward, nodes/proxy.

As kube-apiserver (``pkg/registry/core/pod/strategy.go`` LogLocation/streamLocation and
``pkg/registry/core/node``): look the pod up, pick its container (the only one, or the one named,
else a 400 listing them), find its node's kubelet (the first of the node's addresses of the
preferred types, ``status.daemonEndpoints.kubeletEndpoint.Port``), and forward the request to the
kubelet's ``/containerLogs``, ``/exec``, ``/attach``, ``/portForward`` (or any path for
nodes/proxy) with the API server's kubelet client certificate.

* Logs stream through as they come (``follow``), ``text/plain``; a kubelet error becomes a Status
  the way the generic response checker words it (400 -> BadRequest with the kubelet's text).
* Upgrades (exec, attach, port-forward; a WebSocket through nodes/proxy) open a WebSocket to the
  kubelet with the client's subprotocols, accept the client's with the one the kubelet chose, and
  relay messages both ways, close codes included. kube-apiserver splices the upgraded bytes
  instead; the difference does not show: pings are answered at each hop. When the kubelet refuses
  the upgrade, the same request is repeated without the upgrade to obtain the kubelet's answer
  (aiohttp drops the body of a failed handshake) and that answer is passed on as kube-apiserver's
  upgrade-aware proxy passes it, so kubectl prints the kubelet's words.
* Requests that are no WebSocket upgrade (kubectl's SPDY fallback) go to the kubelet as plain
  requests and its answer comes back unchanged.

Kubelet serving certificates are verified only when ``kubelet_certificate_authority`` is set
(kube-apiserver's default, which kubeadm keeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import WSMsgType, web

from k8py.api import errors
from k8py.api.registry import Registry
from k8py.api.validation.field import go_quote
from k8py.apiserver.genericstore import GenericStore
from k8py.apiserver.requestinfo import RequestInfo
from k8py.streaming.logs import PodLogOptions
from k8py.streaming.remotecommand import is_websocket_request, requested_protocols

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_KUBELET_PORT = 10250
SUBRESOURCES = {("pods", "log"), ("pods", "exec"), ("pods", "attach"), ("pods", "portforward"), ("nodes", "proxy")}
# headers that belong to one hop (RFC 9110 section 7.6.1), never forwarded; nor are the client's
# credentials (kube-apiserver drops Authorization once it has authenticated the request)
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
    "upgrade", "host", "content-length", "authorization",
}
READ_SIZE = 32 * 1024


def _bool(value: str | None) -> bool:
    return (value or "").lower() not in ("", "false", "f", "0")


def validate_container(container: str, pod: Obj) -> str:
    """The container a request is for (kube's validateContainer)."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    if not container:
        containers = spec.get("containers") or []
        if len(containers) == 1:
            return containers[0]["name"]
        if not containers:
            raise errors.bad_request(f"a container name must be specified for pod {name}")
        names = [c["name"] for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or []]
        raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")
    if not any(c.get("name") == container for key in ("initContainers", "containers", "ephemeralContainers")
               for c in spec.get(key) or []):
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


def kubelet_endpoint(node: Obj, preferred_address_types: tuple[str, ...]) -> tuple[str, int]:
    """(host, port) of a node's kubelet (NodeConnectionInfoGetter)."""
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    host = next(
        (a["address"] for t in preferred_address_types for a in addresses if a.get("type") == t and a.get("address")),
        None,
    )
    if host is None:
        known = " ".join(f"{{{a.get('type', '')} {a.get('address', '')}}}" for a in addresses)
        raise errors.StatusError(500, "", f"no preferred addresses found; known addresses: [{known}]")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or DEFAULT_KUBELET_PORT
    return host, int(port)


def _host_port(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


class KubeletProxy:
    def __init__(
        self,
        store: GenericStore,
        registry: Registry,
        *,
        client_certificate: str = "",
        client_key: str = "",
        certificate_authority: str = "",
        preferred_address_types: tuple[str, ...] = ("InternalIP", "ExternalIP", "Hostname"),
    ) -> None:
        self.store = store
        self.pods = registry.get("", "v1", "pods")
        self.nodes = registry.get("", "v1", "nodes")
        self.preferred_address_types = preferred_address_types
        self._ssl = self._context(client_certificate, client_key, certificate_authority)
        self._ssl_insecure = self._context(client_certificate, client_key, "")
        self._session: aiohttp.ClientSession | None = None

    @staticmethod
    def _context(cert: str, key: str, ca: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=ca or None)
        if not ca:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(cert, key)
        return ctx

    @staticmethod
    def handles(ri: RequestInfo) -> bool:
        return not ri.group and ri.version == "v1" and bool(ri.name) and (ri.resource, ri.subresource) in SUBRESOURCES

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, request: web.Request, ri: RequestInfo) -> web.StreamResponse:
        if ri.resource == "nodes":
            return await self._node_proxy(request, ri)
        if ri.subresource == "log":
            if request.method not in ("GET", "HEAD"):
                raise errors.method_not_allowed()
            return await self._log(request, ri)
        if request.method not in ("GET", "POST"):
            raise errors.method_not_allowed()
        return await self._stream(request, ri)

    # ---- locations ----------------------------------------------------------------------------

    async def _pod(self, ri: RequestInfo) -> Obj:
        assert self.pods is not None
        return await self.store.get(self.pods, ri.namespace, ri.name)

    async def _kubelet(self, node_name: str) -> tuple[str, int]:
        assert self.nodes is not None
        return kubelet_endpoint(await self.store.get(self.nodes, "", node_name), self.preferred_address_types)

    async def read(self, node: Obj, path: str) -> bytes:
        """GET ``path`` of a node's kubelet (the metrics server's scrapes); an answer other than 200
        raises ``aiohttp.ClientResponseError``."""
        host, port = kubelet_endpoint(node, self.preferred_address_types)
        async with self.session.get(f"https://{_host_port(host, port)}{path}", ssl=self._ssl) as resp:
            resp.raise_for_status()
            return await resp.read()

    async def _pod_location(self, ri: RequestInfo, path: str, container: str | None) -> str:
        """``https://{kubelet}/{path}/{ns}/{pod}[/{container}]`` (400 when the pod has no node)."""
        pod = await self._pod(ri)
        if container is not None:
            container = validate_container(container, pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {ri.name} does not have a host assigned")
        host, port = await self._kubelet(node_name)
        tail = f"/{container}" if container is not None else ""
        return f"https://{_host_port(host, port)}/{path}/{ri.namespace}/{ri.name}{tail}"

    # ---- pods/log -----------------------------------------------------------------------------

    async def _log(self, request: web.Request, ri: RequestInfo) -> web.StreamResponse:
        try:
            opts = PodLogOptions.from_query(request.query)
        except ValueError as e:
            raise errors.bad_request(str(e)) from None
        if causes := opts.validate():
            raise errors.invalid("", "PodLogOptions", ri.name, causes)
        pod = await self._pod(ri)
        container = validate_container(opts.container, pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:  # no host: an empty log, as kube's LogREST answers
            return web.Response(body=b"", content_type="text/plain")
        host, port = await self._kubelet(node_name)
        url = f"https://{_host_port(host, port)}/containerLogs/{ri.namespace}/{ri.name}/{container}"
        tls = self._ssl_insecure if opts.insecure_skip_tls_verify_backend else self._ssl
        try:
            backend = await self.session.get(url, params=opts.kubelet_query(), ssl=tls)
        except (aiohttp.ClientError, OSError) as e:
            raise errors.StatusError(500, "", f'Get "{url}": {e}') from None
        async with backend:
            if not 200 <= backend.status <= 206:
                raise self._kubelet_error(backend.status, await backend.content.read(50000), "pods/log", ri.name)
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                async for chunk in backend.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
        return resp

    @staticmethod
    def _kubelet_error(status: int, body: bytes, resource: str, name: str) -> errors.StatusError:
        """GenericHttpResponseChecker: a kubelet's error answer as an API error."""
        text = body.decode(errors="replace")
        if status == 500:
            return errors.internal(text)
        if status == 400:
            return errors.bad_request(text)
        reason, message = {
            401: ("Unauthorized", "the server has asked for the client to provide credentials"),
            403: ("Forbidden", "the server does not allow access to the requested resource"),
            404: ("NotFound", "the server could not find the requested resource"),
            409: ("Conflict", "the server reported a conflict"),
            429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
        }.get(status, ("", f"the server responded with the status code {status} but did not return more information"))
        if not reason and status >= 500:
            reason = "InternalError"
            message = f"an error on the server ({go_quote(text)}) has prevented the request from succeeding"
        return errors.StatusError(
            status,
            reason,
            f"{message} ( {resource} {name})",
            details={"name": name, "kind": resource, "causes": [{"reason": "UnexpectedServerResponse", "message": text}]},
        )

    # ---- exec, attach, port-forward -------------------------------------------------------------

    async def _stream(self, request: web.Request, ri: RequestInfo) -> web.StreamResponse:
        q = request.query
        params: list[tuple[str, str]] = []
        if ri.subresource == "portforward":
            url = await self._pod_location(ri, "portForward", None)
            if ports := q.getall("ports", []):
                params.append(("port", ",".join(ports)))
        else:
            path = "exec" if ri.subresource == "exec" else "attach"
            url = await self._pod_location(ri, path, q.get("container", ""))
            # PodExecOptions / PodAttachOptions: stdout and stderr default to true
            for name, kubelet_name, default in (
                ("stdin", "input", False), ("stdout", "output", True), ("stderr", "error", True), ("tty", "tty", False),
            ):
                if _bool(q.get(name)) if name in q else default:
                    params.append((kubelet_name, "1"))
            if ri.subresource == "exec":
                params += [("command", c) for c in q.getall("command", [])]
        if params:
            url += "?" + urlencode(params)
        return await self._forward(request, url, self._ssl)

    # ---- nodes/proxy ----------------------------------------------------------------------------

    async def _node_proxy(self, request: web.Request, ri: RequestInfo) -> web.StreamResponse:
        """``/api/v1/nodes/{name}[:port]/proxy/{path}``; a port other than the kubelet's gets plain requests."""
        scheme, name, port_req = "", ri.name, ""
        parts = ri.name.split(":")
        if len(parts) == 2:
            name, port_req = parts
        elif len(parts) == 3:
            scheme, name, port_req = parts
        host, port = await self._kubelet(name)
        prefix = f"/api/v1/nodes/{ri.name}/proxy"
        raw = request.rel_url.raw_path
        path = raw[len(prefix):] if raw.startswith(prefix) else "/"
        tls: ssl.SSLContext | None = self._ssl
        if port_req and port_req != str(port):
            scheme = scheme or "http"
            port, tls = int(port_req), (self._ssl_insecure if scheme == "https" else None)
        url = f"{scheme or 'https'}://{_host_port(host, port)}{path or '/'}"
        if request.query_string:
            url += "?" + request.query_string
        return await self._forward(request, url, tls)

    # ---- forwarding -------------------------------------------------------------------------------

    async def _forward(self, request: web.Request, url: str, tls: ssl.SSLContext | None) -> web.StreamResponse:
        if is_websocket_request(request):
            try:
                backend = await self.session.ws_connect(
                    url, method=request.method, protocols=requested_protocols(request), ssl=tls or False,
                    autoping=True, max_msg_size=16 << 20,
                )
            except aiohttp.WSServerHandshakeError:
                return await self._plain(request, url, tls)  # the kubelet's refusal, in its own words
            except (aiohttp.ClientError, OSError) as e:
                raise errors.StatusError(500, "", f"error dialing backend: {e}") from None
            return await self._relay(request, backend)
        return await self._plain(request, url, tls)

    async def _plain(self, request: web.Request, url: str, tls: ssl.SSLContext | None) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read() if request.can_read_body else None
        try:
            backend = await self.session.request(
                request.method, url, headers=headers, data=body, ssl=tls or False, allow_redirects=False
            )
        except (aiohttp.ClientError, OSError) as e:
            raise errors.StatusError(500, "", f"error trying to reach service: {e}") from None
        async with backend:
            resp = web.StreamResponse(status=backend.status, reason=backend.reason)
            for k, v in backend.headers.items():
                if k.lower() not in HOP_BY_HOP:
                    resp.headers.add(k, v)
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                async for chunk in backend.content.iter_chunked(READ_SIZE):
                    await resp.write(chunk)
                await resp.write_eof()
        return resp

    async def _relay(self, request: web.Request, backend: aiohttp.ClientWebSocketResponse) -> web.StreamResponse:
        client = web.WebSocketResponse(
            protocols=(backend.protocol,) if backend.protocol else (), autoping=True, max_msg_size=16 << 20
        )
        try:
            await client.prepare(request)
        except BaseException:
            await backend.close()
            raise

        async def pump(src: Any, dst: Any) -> int:
            """Copy messages until ``src`` closes; the close code to pass on."""
            async for msg in src:
                if msg.type == WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await dst.send_str(msg.data)
            code = src.close_code or 1000
            return {1005: 1000, 1006: 1011, 1015: 1011}.get(code, code)  # codes that may not be sent

        to_kubelet = asyncio.create_task(pump(client, backend))
        to_client = asyncio.create_task(pump(backend, client))
        try:
            done, pending = await asyncio.wait([to_kubelet, to_client], return_when=asyncio.FIRST_COMPLETED)
            # stop reading the other side before closing it: aiohttp closes a WebSocket that another
            # task is reading without waiting for the peer's close reply
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            first = done.pop()
            code = first.result() if not first.cancelled() and first.exception() is None else 1011
            with contextlib.suppress(ConnectionError, RuntimeError):
                await (client if first is to_client else backend).close(code=code)
        finally:
            for task in (to_kubelet, to_client):
                task.cancel()
            await asyncio.gather(to_kubelet, to_client, return_exceptions=True)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await backend.close()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await client.close()
        return client
