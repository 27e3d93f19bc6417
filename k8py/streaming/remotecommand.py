"""exec and attach over WebSocket channel protocols: the server side of kubectl exec/attach.

One WebSocket carries every stream of the command; each message starts with its channel:
0 stdin, 1 stdout, 2 stderr, 3 error (the final status), 4 resize (``{"Width":..,"Height":..}``).
The subprotocols (apimachinery's ``wsstream`` and ``remotecommand`` constants):

* ``v5.channel.k8s.io`` (kubectl 1.30+): v4 plus the CLOSE signal ``[255, channel]`` with which
  the client half-closes a stream (kubectl sends ``[255, 0]`` when its stdin ends);
* ``v4.channel.k8s.io`` / ``v4.base64.channel.k8s.io``: the status is a metav1.Status as JSON;
* ``channel.k8s.io`` / ``base64.channel.k8s.io`` (v1): only a failure is written, as text.

The base64 variants send text messages: the channel as an ASCII digit, then the data in base64.

As upstream (kubelet's ``createWebSocketStreams``), the server first sends an empty message on the
lowest writable channel, then copies the command's output, and when the output has ended and the
command exited writes the status on channel 3 and closes the WebSocket normally (1000); the
client reads its streams until that close. An exec reports a non-zero exit as ``NonZeroExitCode``
with an ``ExitCode`` cause (kubectl exits with it); an attach reports success when its streams end.
The client's WebSocket pings are answered by aiohttp.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from k8py.kubelet.runtime.interface import ExecSession
from k8py.tasks import cancel

log = logging.getLogger(__name__)

STREAM_PROTOCOL_V5 = "v5.channel.k8s.io"
STREAM_PROTOCOL_V4 = "v4.channel.k8s.io"
STREAM_PROTOCOL_V4_BASE64 = "v4.base64.channel.k8s.io"
CHANNEL_PROTOCOL = "channel.k8s.io"
BASE64_CHANNEL_PROTOCOL = "base64.channel.k8s.io"
WEBSOCKET_PROTOCOLS = (
    STREAM_PROTOCOL_V5,
    STREAM_PROTOCOL_V4,
    STREAM_PROTOCOL_V4_BASE64,
    CHANNEL_PROTOCOL,
    BASE64_CHANNEL_PROTOCOL,
)
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
STREAM_CLOSE = 255
READ_SIZE = 32 * 1024


@dataclass(frozen=True, slots=True)
class Options:
    """The streams a client asked for (the kubelet's ``input``/``output``/``error``/``tty`` parameters)."""

    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Options:
        """As remotecommand's NewOptions: "1" means yes; with a TTY there is no separate stderr."""
        tty = query.get("tty") == "1"
        opts = cls(
            stdin=query.get("input") == "1",
            stdout=query.get("output") == "1",
            stderr=query.get("error") == "1" and not tty,
            tty=tty,
        )
        if not (opts.stdin or opts.stdout or opts.stderr):
            raise ValueError("you must specify at least 1 of stdin, stdout, stderr")
        return opts


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(code: int, command: Sequence[str]) -> dict[str, Any]:
    """The Failure a non-zero exit is reported as; the message is the one CRI runtimes give."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: "
        f"error executing command [{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error_status(message: str) -> dict[str, Any]:
    """apierrors.NewInternalError as JSON (no kind/apiVersion: the kubelet marshals the bare Status)."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def requested_protocols(request: web.BaseRequest) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


def is_websocket_request(request: web.BaseRequest) -> bool:
    connection = [t.strip().lower() for t in request.headers.get("Connection", "").split(",")]
    return request.headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in connection


class _Channels:
    """Writes channel messages in the negotiated codec."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self.ws = ws
        self.base64 = protocol in (STREAM_PROTOCOL_V4_BASE64, BASE64_CHANNEL_PROTOCOL)

    async def send(self, channel: int, data: bytes) -> None:
        if self.base64:
            await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            await self.ws.send_bytes(bytes([channel]) + data)

    def decode(self, msg_type: WSMsgType, data: Any) -> tuple[int, bytes] | None:
        raw = data.encode() if msg_type == WSMsgType.TEXT else bytes(data)
        if not raw:
            return None
        if self.base64:
            return raw[0] - ord("0"), base64.b64decode(raw[1:])
        return raw[0], raw[1:]


async def serve(
    request: web.Request,
    session: ExecSession,
    options: Options,
    *,
    command: Sequence[str] = (),
    report_exit_code: bool = True,
) -> web.StreamResponse:
    """Upgrade ``request`` and run ``session`` over it until the command ends or the client leaves.

    ``session`` is closed (the process killed) if the client goes away first. ``command`` only
    words the exit status; attach passes ``report_exit_code=False``.
    """
    offered = requested_protocols(request)
    if offered and not set(offered) & set(WEBSOCKET_PROTOCOLS):
        await session.close()
        return web.Response(
            status=400,
            text=f"requested protocol(s) are not supported: [{' '.join(offered)}]; "
            f"supports [{' '.join(WEBSOCKET_PROTOCOLS)}]",
        )
    ws = web.WebSocketResponse(protocols=WEBSOCKET_PROTOCOLS, autoping=True, max_msg_size=16 << 20)
    try:
        await ws.prepare(request)
    except BaseException:
        await session.close()
        raise
    protocol = ws.ws_protocol or ""
    channels = _Channels(ws, protocol)
    try:
        await _run(ws, channels, protocol, session, options, command, report_exit_code)
    finally:
        await ws.close()
    return ws


async def _run(
    ws: web.WebSocketResponse,
    channels: _Channels,
    protocol: str,
    session: ExecSession,
    options: Options,
    command: Sequence[str],
    report_exit_code: bool,
) -> None:
    first = STDOUT if options.stdout else STDERR if options.stderr else ERROR
    await channels.send(first, b"")  # tells the client the streams are ready

    async def pump(reader: asyncio.StreamReader, channel: int, wanted: bool) -> None:
        while True:
            try:
                chunk = await reader.read(READ_SIZE)
            except OSError:  # a pty's master reads EIO once the terminal's last holder exits
                return
            if not chunk:
                return
            if wanted:
                await channels.send(channel, chunk)

    receiver = asyncio.create_task(_receive(ws, channels, protocol, session, options))
    pumps = [asyncio.create_task(pump(session.stdout, STDOUT, options.stdout))]
    if session.stderr is not None:
        pumps.append(asyncio.create_task(pump(session.stderr, STDERR, options.stderr)))
    output: asyncio.Future[Any] = asyncio.gather(*pumps)
    try:
        await asyncio.wait([output, receiver], return_when=asyncio.FIRST_COMPLETED)
        if not output.done():  # the client left (or broke the protocol) before the command ended
            await session.close()
            output.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await output
            return
        try:
            output.result()
            code = await session.wait()
        except ConnectionError:
            await session.close()
            return
        except Exception as e:  # the runtime failed the session
            status = internal_error_status(f"error executing command in container: {e}")
        else:
            if code < 0:  # killed by a signal: report it as a shell (and runc) would
                code = 128 - code
            status = exit_code_status(code, command) if code and report_exit_code else success_status()
        await _write_status(channels, protocol, status)
    finally:
        await cancel(receiver)
        for task in pumps:
            task.cancel()


async def _write_status(channels: _Channels, protocol: str, status: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError):
        if protocol in (STREAM_PROTOCOL_V5, STREAM_PROTOCOL_V4, STREAM_PROTOCOL_V4_BASE64):
            await channels.send(ERROR, orjson.dumps(status))
        elif status["status"] != "Success":  # v1: only an error, as its text
            await channels.send(ERROR, status["message"].encode())


async def _receive(
    ws: web.WebSocketResponse, channels: _Channels, protocol: str, session: ExecSession, options: Options
) -> None:
    """Client -> command: stdin, the stdin CLOSE signal (v5), terminal resizes. Ends when the client does."""
    stdin = session.stdin if options.stdin else None
    pending = ""
    decoder = json.JSONDecoder()
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            decoded = channels.decode(msg.type, msg.data)
            if decoded is None:
                continue
            channel, data = decoded
            if channel == STDIN and stdin is not None and data:
                try:
                    stdin.write(data)
                    await stdin.drain()
                except (ConnectionError, OSError):
                    stdin = None  # the command closed its stdin or exited: drop further input
            elif channel == STREAM_CLOSE and protocol == STREAM_PROTOCOL_V5:
                if data[:1] == bytes([STDIN]) and stdin is not None:
                    with contextlib.suppress(ConnectionError, OSError):
                        stdin.write_eof()
                    stdin = None
            elif channel == RESIZE:  # a stream of JSON objects, as a json.Decoder reads it
                pending += data.decode(errors="replace")
                while pending.strip():
                    pending = pending.lstrip()
                    try:
                        size, end = decoder.raw_decode(pending)
                    except json.JSONDecodeError:
                        break  # an incomplete object: wait for the rest
                    pending = pending[end:]
                    if isinstance(size, dict):
                        with contextlib.suppress(Exception):
                            await session.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
    finally:
        if stdin is not None:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                stdin.write_eof()
