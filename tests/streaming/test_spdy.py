"""k8py.streaming.spdy and portforward: SPDY/3.1 framing, header compression, sessions, port-forward pairs.

Sessions run over an in-memory byte pipe or a real loopback TCP connection; port-forward reaches a
real local TCP echo server. kubectl itself drives the same code in test_kubectl_streaming.py.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib
from collections.abc import AsyncIterator

import pytest

from k8py.streaming import spdy
from k8py.streaming.portforward import PortForwardHandler
from k8py.streaming.spdy import (
    FLAG_FIN,
    HEADER_DICTIONARY,
    Data,
    Framer,
    GoAway,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    Settings,
    SpdySession,
    SpdyStream,
    StreamReset,
    SynReply,
    SynStream,
    UpgradeFailure,
    WindowUpdate,
    decode_header_block,
    encode_header_block,
)
from k8py.streaming.transport import StreamTransport


class Pipe:
    """One end of an in-memory byte pipe (a ByteTransport)."""

    def __init__(self, inbox: asyncio.Queue[bytes], outbox: asyncio.Queue[bytes]) -> None:
        self.inbox, self.outbox = inbox, outbox
        self.closed = False

    async def read(self) -> bytes:
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("closed")
        for i in range(0, len(data), 7):  # split anywhere, as a WebSocket tunnel may
            await self.outbox.put(data[i : i + 7])

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.outbox.put(b"")
            await self.inbox.put(b"")


def pipe() -> tuple[Pipe, Pipe]:
    a: asyncio.Queue[bytes] = asyncio.Queue()
    b: asyncio.Queue[bytes] = asyncio.Queue()
    return Pipe(a, b), Pipe(b, a)


# ---- framing ------------------------------------------------------------------------------------


def test_dictionary_is_spdy3s() -> None:
    assert len(HEADER_DICTIONARY) == 1423
    assert HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert HEADER_DICTIONARY.endswith(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    # the dictionary id a zlib stream primed with it announces (FDICT)
    assert zlib.adler32(HEADER_DICTIONARY) == 0xE3C6A7C2


def test_header_block_encoding() -> None:
    block = encode_header_block({"Port": ["8080"], "streamtype": ["data"], "multi": ["a", "b"]})
    assert block[:4] == struct.pack(">I", 3)
    assert block[4:12] == struct.pack(">I", 4) + b"port"
    assert decode_header_block(block) == {"port": ["8080"], "streamtype": ["data"], "multi": ["a", "b"]}
    with pytest.raises(spdy.SpdyProtocolError):
        decode_header_block(block[:-2])


def test_header_compression_round_trip_shares_one_context_per_direction() -> None:
    sender, receiver = Framer(), Framer()
    frames: list[spdy.Frame] = [
        SynStream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}),
        SynStream(3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]}),
        SynReply(1, {}),
        HeadersFrame(1, {"x": ["y"]}, FLAG_FIN),
    ]
    wire = b"".join(sender.encode(f) for f in frames)
    # the first block carries the dictionary id; later ones reuse the context and come out smaller
    first = sender.encode(SynStream(5, {"streamtype": ["data"], "port": ["80"], "requestid": ["1"]}))
    wire += first
    got = []
    for i in range(len(wire)):  # fed one byte at a time
        got += receiver.feed(wire[i : i + 1])
    assert got[:4] == frames
    assert got[4] == SynStream(5, {"streamtype": ["data"], "port": ["80"], "requestid": ["1"]})
    assert len(first) < len(wire) // 4


def test_first_header_block_is_a_zlib_stream_with_the_spdy_dictionary() -> None:
    frame = Framer().encode(SynStream(1, {"port": ["80"]}))
    block = frame[18:]
    assert block[0] & 0x0F == 8 and block[1] & 0x20  # deflate, FDICT
    assert struct.unpack(">I", block[2:6])[0] == zlib.adler32(HEADER_DICTIONARY)
    d = zlib.decompressobj(zdict=HEADER_DICTIONARY)
    assert decode_header_block(d.decompress(block)) == {"port": ["80"]}


def test_every_frame_type_round_trips() -> None:
    frames: list[spdy.Frame] = [
        SynStream(7, {"a": ["b"]}, FLAG_FIN, associated_to=3, priority=5, slot=1),
        SynReply(7, {"c": ["d"]}, FLAG_FIN),
        RstStream(7, RstStatus.CANCEL),
        Settings([(0, 4, 1000), (1, 7, 65536)]),
        Ping(2),
        GoAway(9, 1),
        HeadersFrame(7, {"e": ["f"]}),
        WindowUpdate(7, 4096),
        Data(7, b"payload", FLAG_FIN),
        Data(9, b""),
    ]
    a, b = Framer(), Framer()
    assert b.feed(b"".join(a.encode(f) for f in frames)) == frames


def test_control_frame_layout_and_unknown_types() -> None:
    f = Framer()
    wire = f.encode(Ping(5))
    assert wire == struct.pack(">HHII", 0x8003, 6, 4, 5)
    assert f.encode(Data(1, b"x", FLAG_FIN)) == struct.pack(">II", 1, 0x01000001) + b"x"
    noop = struct.pack(">HHI", 0x8003, 5, 0)  # SPDY/2's NOOP: skipped
    assert Framer().feed(noop + wire) == [Ping(5)]
    with pytest.raises(spdy.SpdyProtocolError):
        Framer().feed(struct.pack(">HHII", 0x8002, 6, 4, 5))  # SPDY/2
    with pytest.raises(spdy.SpdyProtocolError):
        Framer().feed(struct.pack(">II", 0, 0))  # data on stream 0


# ---- sessions -----------------------------------------------------------------------------------


@pytest.fixture
async def sessions() -> AsyncIterator[tuple[SpdySession, SpdySession, list[SpdyStream]]]:
    """A server that echoes every stream whose headers ask for it, and refuses the others."""
    accepted: list[SpdyStream] = []

    async def on_stream(stream: SpdyStream) -> None:
        if spdy.header(stream.headers, "mode") != "echo":
            await stream.refuse()
            return
        accepted.append(stream)
        await stream.reply({"accepted": ["yes"]})
        while chunk := await stream.read():
            await stream.write(chunk.upper())
        await stream.close()

    a, b = pipe()
    server = SpdySession(a, server=True, on_stream=on_stream)
    client = SpdySession(b, server=False)
    server.start()
    client.start()
    yield server, client, accepted
    await client.close()
    await asyncio.wait_for(server.wait_closed(), 5)
    await asyncio.wait_for(client.wait_closed(), 5)


async def test_streams_reply_echo_and_half_close(sessions: tuple[SpdySession, SpdySession, list[SpdyStream]]) -> None:
    server, client, accepted = sessions
    s1 = await client.open_stream({"mode": ["echo"], "n": ["1"]})
    s2 = await client.open_stream({"mode": ["echo"], "n": ["2"]})
    assert (s1.id, s2.id) == (1, 3)
    assert await s1.wait_reply(5) == {"accepted": ["yes"]}
    await s2.wait_reply(5)
    await s1.write(b"hello ")
    await s2.write(b"other")
    await s1.write(b"x" * 200_000)  # several DATA frames
    await s1.close()
    await s2.close()
    assert await asyncio.wait_for(s1.read_all(), 5) == b"HELLO " + b"X" * 200_000
    assert await asyncio.wait_for(s2.read_all(), 5) == b"OTHER"
    assert [s.headers["n"] for s in accepted] == [["1"], ["2"]]
    assert not client.streams and not server.streams  # fully closed streams are forgotten


async def test_refused_stream_and_reset(sessions: tuple[SpdySession, SpdySession, list[SpdyStream]]) -> None:
    server, client, _ = sessions
    refused = await client.open_stream({"mode": ["nope"]})
    with pytest.raises(StreamReset) as e:
        await refused.wait_reply(5)
    assert e.value.status == RstStatus.REFUSED_STREAM
    s = await client.open_stream({"mode": ["echo"]})
    await s.wait_reply(5)
    await s.reset()
    assert await s.read() == b""
    with pytest.raises(ConnectionResetError):
        await s.write(b"late")


async def test_ping_both_ways(sessions: tuple[SpdySession, SpdySession, list[SpdyStream]]) -> None:
    server, client, _ = sessions
    assert await client.ping(5) >= 0
    assert await server.ping(5) >= 0


async def test_session_end_ends_streams() -> None:
    a, b = pipe()
    release = asyncio.Event()

    async def on_stream(stream: SpdyStream) -> None:
        await stream.reply()
        await release.wait()  # cancelled when the connection goes

    server = SpdySession(a, server=True, on_stream=on_stream)
    client = SpdySession(b, server=False)
    server.start()
    client.start()
    s = await client.open_stream({})
    await s.wait_reply(5)
    await b.close()
    assert await asyncio.wait_for(s.read(), 5) == b""
    await asyncio.wait_for(server.wait_closed(), 5)
    assert not server._handlers


async def test_dial_upgrades_a_tcp_connection() -> None:
    """The client side a runtime's streaming server needs: HTTP/1.1 upgrade, then SPDY over TCP."""
    seen: list[bytes] = []

    async def on_stream(stream: SpdyStream) -> None:
        await stream.reply({"echo": stream.headers.get("x", [])})
        while chunk := await stream.read():
            await stream.write(chunk)
        await stream.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        if b"/refuse" in head:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\n\r\npod does not exist")
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n")
        await writer.drain()
        await SpdySession(StreamTransport(reader, writer), server=True, on_stream=on_stream).run()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        session, protocol = await spdy.dial(
            f"http://127.0.0.1:{port}/exec/x?command=sh", protocols=["v4.channel.k8s.io", "v3.channel.k8s.io"]
        )
        assert protocol == "v4.channel.k8s.io"
        assert b"POST /exec/x?command=sh HTTP/1.1" in seen[0] and b"Upgrade: SPDY/3.1" in seen[0]
        assert seen[0].count(b"X-Stream-Protocol-Version") == 2
        stream = await session.open_stream({"x": ["1"]})
        assert await stream.wait_reply(5) == {"echo": ["1"]}
        await stream.write(b"ping")
        await stream.close()
        assert await asyncio.wait_for(stream.read_all(), 5) == b"ping"
        await session.close()
        with pytest.raises(UpgradeFailure) as e:
            await spdy.dial(f"http://127.0.0.1:{port}/refuse")
        assert e.value.status == 404 and "pod does not exist"[:10] in str(e.value)
    finally:
        srv.close()
        await srv.wait_closed()


# ---- port-forward ---------------------------------------------------------------------------------


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(b"echo:" + data)
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()


async def _forwarder(timeout: float = 30.0) -> tuple[SpdySession, asyncio.Task[None]]:
    async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    a, b = pipe()
    handler = PortForwardHandler(dial, pod="web", uid="u-1", stream_creation_timeout=timeout)
    served = asyncio.create_task(handler.serve(a))
    client = SpdySession(b, server=False)
    client.start()
    return client, served


async def _pair(client: SpdySession, port: int, request_id: str) -> tuple[SpdyStream, SpdyStream]:
    """What kubectl does per connection: error stream (half-closed at once), then data stream."""
    headers = {"streamtype": ["error"], "port": [str(port)], "requestid": [request_id]}
    error = await client.open_stream(headers)
    await error.wait_reply(5)
    await error.close()
    data = await client.open_stream({**headers, "streamtype": ["data"]})
    await data.wait_reply(5)
    return error, data


async def test_port_forward_pairs(echo_port: int) -> None:
    client, served = await _forwarder()
    try:
        e1, d1 = await _pair(client, echo_port, "0")
        e2, d2 = await _pair(client, echo_port, "1")
        await d1.write(b"one")
        await d2.write(b"two")
        assert await asyncio.wait_for(d1.read(), 5) == b"echo:one"
        assert await asyncio.wait_for(d2.read(), 5) == b"echo:two"
        await d1.close()  # the local client is done: the pod's side sees EOF and closes
        assert await asyncio.wait_for(d1.read_all(), 5) == b""
        assert await asyncio.wait_for(e1.read_all(), 5) == b""  # no error
        await d2.reset()
        assert await asyncio.wait_for(e2.read_all(), 5) == b""
    finally:
        await client.close()
        await asyncio.wait_for(served, 5)


async def test_port_forward_errors(echo_port: int) -> None:
    client, served = await _forwarder(timeout=0.3)
    try:
        for bad in ({"streamtype": ["data"]}, {"port": ["0"], "streamtype": ["data"]}, {"port": ["80"]},
                    {"port": ["80"], "streamtype": ["bogus"]}, {"port": ["http"], "streamtype": ["data"]}):
            s = await client.open_stream(bad)
            with pytest.raises(StreamReset):
                await s.wait_reply(5)
        # nothing listens there: the error stream says so
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed_port = sock.getsockname()[1]
        error, data = await _pair(client, closed_port, "7")
        message = (await asyncio.wait_for(error.read_all(), 5)).decode()
        assert message.startswith(f"error forwarding port {closed_port} to pod web, uid u-1: ")
        assert await asyncio.wait_for(data.read_all(), 5) == b""
        # a pair whose data stream never comes
        lone = await client.open_stream({"streamtype": ["error"], "port": [str(echo_port)], "requestid": ["9"]})
        await lone.wait_reply(5)
        assert b"request=9) timed out waiting for streams" in await asyncio.wait_for(lone.read_all(), 5)
    finally:
        await client.close()
        await asyncio.wait_for(served, 5)
