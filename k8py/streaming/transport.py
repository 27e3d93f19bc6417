"""Byte transports a SPDY session runs over: an asyncio stream pair, or a WebSocket's binary messages.

kubectl 1.32 tunnels port-forward's SPDY byte stream through a WebSocket (subprotocol
``SPDY/3.1+portforward.k8s.io``, client-go's ``TunnelingConnection``): every binary message
carries the next bytes of the stream, split anywhere, with no framing of its own. A runtime's
streaming server (containerd's) speaks SPDY on the upgraded TCP/TLS connection itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from aiohttp import ClientWebSocketResponse, WSMsgType, web


class ByteTransport(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" once the peer has closed."""
        ...

    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class StreamTransport:
    """An asyncio (reader, writer) pair, e.g. an upgraded HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        try:
            return await self.reader.read(65536)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class WebSocketTransport:
    """The binary messages of an aiohttp WebSocket (server or client side) as one byte stream."""

    def __init__(self, ws: web.WebSocketResponse | ClientWebSocketResponse) -> None:
        self.ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                continue
            if msg.type in (WSMsgType.PING, WSMsgType.PONG):
                continue
            return b""  # close, error, or a text message (invalid in a tunnel): the stream ends

    async def write(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close()
