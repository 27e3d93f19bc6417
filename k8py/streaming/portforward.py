"""port-forward over SPDY/3.1: the kubelet's ``httpStreamHandler``.

For every local connection the client opens two streams carrying the headers ``streamtype``
(``error`` or ``data``), ``port`` and ``requestid``; once both streams of a request id are there,
the data stream is spliced to a TCP connection to that port in the pod, and anything that goes
wrong is written as text to the error stream. Both streams are half-closed when the forwarding
ends; the client reads the error stream to its end. A stream with missing or invalid headers is
refused (RST_STREAM REFUSED_STREAM); a pair whose second stream does not come within the stream
creation timeout gets an error instead. Without a ``requestid`` (pre-1.6 clients) the id is
derived from the stream id, as upstream does.

kubectl 1.32 tunnels this SPDY connection through a WebSocket (subprotocol
``SPDY/3.1+portforward.k8s.io``): :func:`serve_websocket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from k8py.streaming.spdy import SpdySession, SpdyStream, header
from k8py.streaming.transport import ByteTransport, WebSocketTransport
from k8py.tasks import cancel

log = logging.getLogger(__name__)

PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
WEBSOCKET_TUNNEL_PROTOCOL = "SPDY/3.1+" + PORT_FORWARD_PROTOCOL
STREAM_TYPE_ERROR = "error"
STREAM_TYPE_DATA = "data"
DEFAULT_STREAM_CREATION_TIMEOUT = 30.0  # the CRI streaming server's default
READ_SIZE = 32 * 1024

Dial = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass(eq=False)
class _StreamPair:
    request_id: str
    error: SpdyStream | None = None
    data: SpdyStream | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, stream: SpdyStream) -> None:
        if header(stream.headers, "streamtype") == STREAM_TYPE_ERROR:
            if self.error is not None:
                raise ValueError("error stream already assigned")
            self.error = stream
        else:
            if self.data is not None:
                raise ValueError("data stream already assigned")
            self.data = stream
        if self.error is not None and self.data is not None:
            self.complete.set()

    async def print_error(self, message: str) -> None:
        if self.error is not None:
            with contextlib.suppress(ConnectionError):
                await self.error.write(message.encode())


class PortForwardHandler:
    """Serves the port-forward streams of one SPDY connection; ``dial(port)`` reaches the pod."""

    def __init__(
        self,
        dial: Dial,
        *,
        pod: str,
        uid: str = "",
        stream_creation_timeout: float = DEFAULT_STREAM_CREATION_TIMEOUT,
    ) -> None:
        self.dial = dial
        self.pod = pod
        self.uid = uid
        self.stream_creation_timeout = stream_creation_timeout
        self.pairs: dict[str, _StreamPair] = {}

    async def serve(self, transport: ByteTransport) -> None:
        """Run the SPDY connection until the client closes it."""
        await SpdySession(transport, server=True, on_stream=self.on_stream).run()

    async def on_stream(self, stream: SpdyStream) -> None:
        if (problem := _check_headers(stream)) is not None:
            log.debug("refusing port-forward stream %d: %s", stream.id, problem)
            await stream.refuse()
            return
        await stream.reply()
        request_id = header(stream.headers, "requestid") or self._legacy_request_id(stream)
        pair = self.pairs.get(request_id)
        created = pair is None
        if pair is None:
            pair = self.pairs[request_id] = _StreamPair(request_id)
        try:
            pair.add(stream)
        except ValueError as e:
            await pair.print_error(f"error processing stream for request {request_id}: {e}")
            return
        if created:  # the first stream of the pair waits for the second one
            try:
                await asyncio.wait_for(pair.complete.wait(), self.stream_creation_timeout)
            except TimeoutError:
                await pair.print_error(f"(conn={id(self):#x}, request={request_id}) timed out waiting for streams")
                with contextlib.suppress(ConnectionError):
                    await stream.close()
            finally:
                if self.pairs.get(request_id) is pair:
                    del self.pairs[request_id]
        elif pair.complete.is_set():
            await self._forward(pair)

    @staticmethod
    def _legacy_request_id(stream: SpdyStream) -> str:
        if header(stream.headers, "streamtype") == STREAM_TYPE_ERROR:
            return str(stream.id)
        return str(stream.id - 2)

    async def _forward(self, pair: _StreamPair) -> None:
        data, error = pair.data, pair.error
        assert data is not None and error is not None
        port = int(header(data.headers, "port"))
        try:
            try:
                reader, writer = await self.dial(port)
            except Exception as e:
                await pair.print_error(f"error forwarding port {port} to pod {self.pod}, uid {self.uid}: {e}")
                return
            upstream = asyncio.create_task(_copy_to_pod(data, writer))
            try:
                while chunk := await reader.read(READ_SIZE):
                    await data.write(chunk)
            except (ConnectionError, OSError):
                pass  # the pod's side or the client went away: the stream just ends
            finally:
                await cancel(upstream)
                writer.close()
        finally:
            for stream in (data, error):
                with contextlib.suppress(ConnectionError):
                    await stream.close()


async def _copy_to_pod(data: SpdyStream, writer: asyncio.StreamWriter) -> None:
    """Client -> pod; the client's FIN half-closes the pod connection."""
    try:
        while chunk := await data.read():
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


def _check_headers(stream: SpdyStream) -> str | None:
    """Why a new stream is refused (httpStreamReceived), or None."""
    port = header(stream.headers, "port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or int(port) > 65535:
        return f"unable to parse {port!r} as a port"
    if int(port) < 1:
        return f"port {port!r} must be > 0"
    kind = header(stream.headers, "streamtype")
    if not kind:
        return '"streamType" header is required'
    if kind not in (STREAM_TYPE_ERROR, STREAM_TYPE_DATA):
        return f"invalid stream type {kind!r}"
    return None


async def serve_websocket(
    request: web.Request,
    dial: Dial,
    *,
    pod: str,
    uid: str = "",
    stream_creation_timeout: float = DEFAULT_STREAM_CREATION_TIMEOUT,
) -> web.WebSocketResponse:
    """Accept kubectl's WebSocket tunnel and serve the SPDY connection inside it."""
    ws = web.WebSocketResponse(protocols=(WEBSOCKET_TUNNEL_PROTOCOL,), autoping=True, max_msg_size=16 << 20)
    await ws.prepare(request)
    handler = PortForwardHandler(dial, pod=pod, uid=uid, stream_creation_timeout=stream_creation_timeout)
    await handler.serve(WebSocketTransport(ws))
    return ws


def is_tunnel_request(request: web.BaseRequest) -> bool:
    """A WebSocket upgrade offering the SPDY tunnel subprotocol."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    return request.headers.get("Upgrade", "").lower() == "websocket" and WEBSOCKET_TUNNEL_PROTOCOL in offered
