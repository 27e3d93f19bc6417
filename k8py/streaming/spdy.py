"""SPDY/3.1: framing, header compression, and an asyncio session usable as server and client.

Kubernetes still multiplexes port-forward (and, between a kubelet and its runtime's streaming
server, exec/attach) over SPDY/3.1 as implemented by moby/spdystream on top of Go's old
``spdy`` framer. This module speaks exactly that dialect:

* Frames: control frames SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS and
  WINDOW_UPDATE, and DATA frames with the FIN flag. Unknown control frames are skipped.
* Header blocks: ``uint32 count`` then ``uint32 len, name, uint32 len, value`` pairs (names
  lowercase, several values joined by NUL), deflated with zlib primed with the SPDY/3
  dictionary; one compression context per direction for the whole connection, each block ending
  with a sync flush, so the contexts must see the blocks in wire order (encoding happens under
  the write lock).
* Flow control: spdystream neither sends nor honours WINDOW_UPDATE, so neither does this session
  (a peer that waited for window updates would stall after 64 KiB). Back-pressure comes from the
  transport instead: a stream's receive buffer is bounded and a full buffer stops the read loop,
  as spdystream's unbuffered data channel does.

``SpdySession`` runs over any ``ByteTransport``: a WebSocket tunnel (kubectl port-forward) or an
upgraded TCP/TLS connection (:func:`dial`, for a runtime's streaming server). As a server it hands
each new stream to ``on_stream`` (run as a task, which replies or refuses); as a client it opens
streams with :meth:`SpdySession.open_stream` and waits for their replies. Stream ids are odd for
the client and even for the server, and so are PING ids; a PING of the peer's parity is echoed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import ssl as ssl_module
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from k8py.streaming.transport import ByteTransport, StreamTransport

log = logging.getLogger(__name__)

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_DATA_LENGTH = (1 << 24) - 1
WRITE_CHUNK = 64 * 1024  # DATA frames we send carry at most this much
STREAM_BUFFER = 256 * 1024  # received bytes a stream holds before the read loop waits for its reader


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


def _dictionary() -> bytes:
    """The zlib dictionary of SPDY/3 header blocks (draft 3, section 2.6.10.1): 1423 bytes."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status"
    ).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    tail = (
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        b"401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        b"503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        b"Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
        b"application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail


HEADER_DICTIONARY = _dictionary()

Headers = dict[str, list[str]]


def header(headers: Mapping[str, list[str]], name: str) -> str:
    """The first value of ``name`` (lowercase), or ""."""
    values = headers.get(name)
    return values[0] if values else ""


class SpdyProtocolError(Exception):
    pass


class StreamReset(ConnectionError):
    """The peer reset the stream (RST_STREAM), e.g. refused it."""

    def __init__(self, stream_id: int, status: int) -> None:
        name = RstStatus(status).name if status in RstStatus._value2member_map_ else str(status)
        super().__init__(f"stream {stream_id} reset by peer: {name}")
        self.stream_id = stream_id
        self.status = status


# ---- frames ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class SynStream:
    stream_id: int
    headers: Headers
    flags: int = 0
    associated_to: int = 0
    priority: int = 0
    slot: int = 0


@dataclass(slots=True)
class SynReply:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(slots=True)
class Settings:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)
    flags: int = 0


@dataclass(slots=True)
class Ping:
    id: int


@dataclass(slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(slots=True)
class Data:
    stream_id: int
    data: bytes
    flags: int = 0


Frame = SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data


def encode_header_block(headers: Mapping[str, Iterable[str]]) -> bytes:
    """The uncompressed name/value block."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = "\x00".join(values).encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def _string(block: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">I", block, pos)
    end = pos + 4 + n
    if end > len(block):
        raise SpdyProtocolError("header block truncated")
    return block[pos + 4 : end].decode(), end


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block; SpdyProtocolError when it is malformed."""
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos = 4
        headers: Headers = {}
        for _ in range(count):
            name, pos = _string(block, pos)
            value, pos = _string(block, pos)
            headers.setdefault(name.lower(), []).extend(value.split("\x00"))
    except (struct.error, UnicodeDecodeError) as e:
        raise SpdyProtocolError(f"invalid header block: {e}") from None
    return headers


class Framer:
    """Encodes and decodes the frames of one connection, with its two header compression contexts."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         zdict=HEADER_DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=HEADER_DICTIONARY)
        self._buffer = bytearray()

    # -- writing

    def _compress(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, payload: bytes) -> bytes:
        if len(payload) > MAX_DATA_LENGTH:
            raise SpdyProtocolError("control frame too large")
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Data):
            if not 0 < frame.stream_id < 1 << 31 or len(frame.data) > MAX_DATA_LENGTH:
                raise SpdyProtocolError("invalid data frame")
            return struct.pack(">II", frame.stream_id, (frame.flags << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            payload = struct.pack(">IIBB", frame.stream_id, frame.associated_to, (frame.priority & 7) << 5, frame.slot)
            return self._control(SYN_STREAM, frame.flags, payload + self._compress(frame.headers))
        if isinstance(frame, SynReply):
            return self._control(SYN_REPLY, frame.flags, struct.pack(">I", frame.stream_id) + self._compress(frame.headers))
        if isinstance(frame, HeadersFrame):
            return self._control(HEADERS, frame.flags, struct.pack(">I", frame.stream_id) + self._compress(frame.headers))
        if isinstance(frame, RstStream):
            return self._control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = [struct.pack(">I", len(frame.entries))]
            body += [struct.pack(">II", (flags << 24) | (sid & 0xFFFFFF), value) for flags, sid, value in frame.entries]
            return self._control(SETTINGS, frame.flags, b"".join(body))
        if isinstance(frame, Ping):
            return self._control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return self._control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        if isinstance(frame, WindowUpdate):
            return self._control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")

    # -- reading

    def _decompress(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as e:
            raise SpdyProtocolError(f"header block decompression failed: {e}") from None
        return decode_header_block(raw)

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data`` (bytes arrive split anywhere)."""
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= 8:
            word0, word1 = struct.unpack_from(">II", buf, pos)
            length = word1 & 0xFFFFFF
            if len(buf) - pos < 8 + length:
                break
            payload = bytes(buf[pos + 8 : pos + 8 + length])
            pos += 8 + length
            flags = word1 >> 24
            if not word0 & 0x80000000:
                if word0 == 0:
                    raise SpdyProtocolError("data frame on stream 0")
                frames.append(Data(word0, payload, flags))
                continue
            version, kind = (word0 >> 16) & 0x7FFF, word0 & 0xFFFF
            if version != VERSION:
                raise SpdyProtocolError(f"unsupported SPDY version {version}")
            frame = self._control_frame(kind, flags, payload)
            if frame is not None:
                frames.append(frame)
        del buf[:pos]
        return frames

    def _control_frame(self, kind: int, flags: int, p: bytes) -> Frame | None:
        try:
            if kind == SYN_STREAM:
                sid, assoc, prio, slot = struct.unpack_from(">IIBB", p)
                return SynStream(sid & 0x7FFFFFFF, self._decompress(p[10:]), flags, assoc & 0x7FFFFFFF, prio >> 5, slot)
            if kind == SYN_REPLY:
                return SynReply(struct.unpack_from(">I", p)[0] & 0x7FFFFFFF, self._decompress(p[4:]), flags)
            if kind == HEADERS:
                return HeadersFrame(struct.unpack_from(">I", p)[0] & 0x7FFFFFFF, self._decompress(p[4:]), flags)
            if kind == RST_STREAM:
                sid, status = struct.unpack_from(">II", p)
                return RstStream(sid & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (n,) = struct.unpack_from(">I", p)
                entries = []
                for i in range(n):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return Settings(entries, flags)
            if kind == PING:
                return Ping(struct.unpack_from(">I", p)[0])
            if kind == GOAWAY:
                sid, status = struct.unpack_from(">II", p)
                return GoAway(sid & 0x7FFFFFFF, status)
            if kind == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", p)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error:
            raise SpdyProtocolError(f"truncated control frame of type {kind}") from None
        return None  # a control frame type SPDY/3.1 does not define (CREDENTIAL, NOOP): skipped


# ---- streams and sessions -------------------------------------------------------------------------


class SpdyStream:
    """One stream of a session: its headers, a receive buffer, and the write half."""

    def __init__(self, session: SpdySession, stream_id: int, headers: Headers, *, local: bool) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers  # SYN_STREAM's headers, ours or the peer's
        self.reply_headers: Headers = {}  # SYN_REPLY's (and later HEADERS frames')
        self.reset_status: int | None = None  # set when reset, by either side
        self._reply: asyncio.Future[Headers] | None = (
            asyncio.get_running_loop().create_future() if local else None
        )
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._readable = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._remote_fin = False
        self._local_fin = False

    def __repr__(self) -> str:
        return f"<SpdyStream {self.id} {self.headers}>"

    @property
    def closed(self) -> bool:
        return self.reset_status is not None or (self._remote_fin and self._local_fin)

    # -- reading

    async def read(self) -> bytes:
        """The next received bytes; b"" once the peer finished the stream (FIN), reset it, or left."""
        while not self._chunks:
            if self._remote_fin or self.reset_status is not None:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered < STREAM_BUFFER:
            self._space.set()
        return chunk

    async def read_all(self, limit: int = 1 << 20) -> bytes:
        out = bytearray()
        while chunk := await self.read():
            out += chunk[: max(0, limit - len(out))]
        return bytes(out)

    # -- writing

    async def write(self, data: bytes) -> None:
        if self._local_fin or self.reset_status is not None:
            raise ConnectionResetError(f"write on closed stream {self.id}")
        for i in range(0, len(data), WRITE_CHUNK):
            await self.session.send(Data(self.id, data[i : i + WRITE_CHUNK]))

    async def close(self) -> None:
        """Half-close: an empty DATA frame with FIN. The peer may go on sending."""
        if self._local_fin or self.reset_status is not None:
            return
        self._local_fin = True
        try:
            await self.session.send(Data(self.id, b"", FLAG_FIN))
        finally:
            self.session.forget(self)

    async def reset(self, status: int = RstStatus.CANCEL) -> None:
        """Abort the stream in both directions (RST_STREAM)."""
        if self.reset_status is not None:
            return
        self._on_reset(status)
        with contextlib.suppress(ConnectionError):
            await self.session.send(RstStream(self.id, status))

    async def reply(self, headers: Headers | None = None, *, fin: bool = False) -> None:
        """Accept a stream the peer opened (SYN_REPLY)."""
        if fin:
            self._local_fin = True
        await self.session.send(SynReply(self.id, headers or {}, FLAG_FIN if fin else 0))
        if fin:
            self.session.forget(self)

    async def refuse(self) -> None:
        await self.reset(RstStatus.REFUSED_STREAM)

    async def wait_reply(self, timeout: float | None = None) -> Headers:
        """For a stream we opened: the peer's SYN_REPLY headers; StreamReset if it refused."""
        assert self._reply is not None, "only a stream opened locally waits for a reply"
        return await asyncio.wait_for(asyncio.shield(self._reply), timeout)

    # -- the session's side

    async def _feed(self, data: bytes) -> None:
        while self._buffered >= STREAM_BUFFER and self.reset_status is None:
            self._space.clear()
            await self._space.wait()
        if self.reset_status is None and not self._remote_fin:
            self._chunks.append(data)
            self._buffered += len(data)
            self._readable.set()

    def _on_remote_fin(self) -> None:
        self._remote_fin = True
        self._readable.set()

    def _on_reply(self, headers: Headers) -> None:
        self.reply_headers = headers
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(headers)

    def _on_reset(self, status: int, *, keep_received: bool = False) -> None:
        """``keep_received``: the peer reset it; what it sent before stays readable (then EOF), as
        spdystream delivers a stream's queued data before its RST_STREAM (a CRI streaming server
        writes the exit status, then resets every stream and closes the connection)."""
        self.reset_status = status
        if not keep_received:
            self._chunks.clear()
            self._buffered = 0
        self._readable.set()
        self._space.set()
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(StreamReset(self.id, status))
            self._reply.exception()  # retrieved: nobody may be waiting for it
        self.session.forget(self)

    def _on_session_end(self) -> None:
        self._remote_fin = True
        self._local_fin = True
        self._readable.set()
        self._space.set()
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(ConnectionResetError("SPDY connection closed"))
            self._reply.exception()


StreamHandler = Callable[[SpdyStream], Awaitable[None]]


class SpdySession:
    """A SPDY/3.1 connection over a byte transport; ``start()`` runs its read loop as a task.

    ``on_stream`` (servers) is run as a task for every stream the peer opens and must ``reply()``
    or ``refuse()`` it; without it, new streams are refused. When the transport ends, every
    stream reads EOF, writes fail, and the handler tasks still running are cancelled.
    """

    def __init__(self, transport: ByteTransport, *, server: bool, on_stream: StreamHandler | None = None) -> None:
        self.transport = transport
        self.server = server
        self.on_stream = on_stream
        self.streams: dict[int, SpdyStream] = {}
        self.go_away = False  # the peer sent GOAWAY: no new streams
        self.closed = asyncio.Event()
        self._framer = Framer()
        self._write_lock = asyncio.Lock()
        self._next_stream_id = 2 if server else 1
        self._next_ping_id = 2 if server else 1
        self._last_remote_id = 0
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._reader = asyncio.create_task(self.run(), name="spdy-read-loop")
        return self._reader

    async def wait_closed(self) -> None:
        await self.closed.wait()

    # -- writing

    async def send(self, frame: Frame) -> None:
        async with self._write_lock:
            await self._write(frame)

    async def _write(self, frame: Frame) -> None:
        if self.closed.is_set():
            raise ConnectionResetError("SPDY connection closed")
        data = self._framer.encode(frame)  # under the lock: compression contexts follow wire order
        try:
            await self.transport.write(data)
        except (ConnectionError, RuntimeError, OSError) as e:
            raise ConnectionResetError(f"SPDY connection lost: {e}") from e

    async def open_stream(self, headers: Headers, *, fin: bool = False, priority: int = 0) -> SpdyStream:
        """Open a stream (SYN_STREAM); ``await stream.wait_reply()`` for the peer's answer."""
        if self.go_away:
            raise ConnectionResetError("SPDY connection going away")
        async with self._write_lock:
            sid = self._next_stream_id
            self._next_stream_id += 2
            stream = SpdyStream(self, sid, headers, local=True)
            stream._local_fin = fin
            self.streams[sid] = stream
            try:
                await self._write(SynStream(sid, headers, FLAG_FIN if fin else 0, priority=priority))
            except ConnectionError:
                self.streams.pop(sid, None)
                raise
        return stream

    async def ping(self, timeout: float = 30.0) -> float:
        """Round-trip time of a PING, in seconds."""
        loop = asyncio.get_running_loop()
        pid = self._next_ping_id
        self._next_ping_id = pid + 2 if pid < 0x7FFFFFFD else (2 if self.server else 1)
        fut = self._pings[pid] = loop.create_future()
        start = loop.time()
        try:
            await self.send(Ping(pid))
            await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(pid, None)
        return loop.time() - start

    async def close(self) -> None:
        """GOAWAY, then close the transport; the read loop then ends the streams."""
        if self.closed.is_set():
            return
        with contextlib.suppress(ConnectionError):
            await self.send(GoAway(self._last_remote_id))
        await self.transport.close()

    def forget(self, stream: SpdyStream) -> None:
        if stream.closed and self.streams.get(stream.id) is stream:
            del self.streams[stream.id]

    # -- reading

    async def run(self) -> None:
        try:
            while data := await self.transport.read():
                for frame in self._framer.feed(data):
                    await self._handle(frame)
        except SpdyProtocolError as e:
            log.info("SPDY protocol error, closing the connection: %s", e)
            with contextlib.suppress(ConnectionError):
                await self.send(GoAway(self._last_remote_id, GoAwayStatus.PROTOCOL_ERROR))
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self.closed.set()
        for stream in list(self.streams.values()):
            stream._on_session_end()
        self.streams.clear()
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError("SPDY connection closed"))
        with contextlib.suppress(ConnectionError, OSError):
            await self.transport.close()
        current = asyncio.current_task()
        handlers = [t for t in self._handlers if t is not current]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return  # a stream already gone (reset, or fully closed): spdystream drops these too
            if frame.data:
                await stream._feed(frame.data)
            if frame.flags & FLAG_FIN:
                stream._on_remote_fin()
                self.forget(stream)
        elif isinstance(frame, SynStream):
            await self._on_syn_stream(frame)
        elif isinstance(frame, SynReply):
            if (stream := self.streams.get(frame.stream_id)) is not None:
                stream._on_reply(frame.headers)
                if frame.flags & FLAG_FIN:
                    stream._on_remote_fin()
                    self.forget(stream)
        elif isinstance(frame, HeadersFrame):
            if (stream := self.streams.get(frame.stream_id)) is not None:
                for name, values in frame.headers.items():
                    stream.reply_headers.setdefault(name, []).extend(values)
                if frame.flags & FLAG_FIN:
                    stream._on_remote_fin()
                    self.forget(stream)
        elif isinstance(frame, RstStream):
            if (stream := self.streams.get(frame.stream_id)) is not None:
                stream._on_reset(frame.status, keep_received=True)
        elif isinstance(frame, Ping):
            if frame.id % 2 != self._next_ping_id % 2:
                await self.send(frame)  # the peer's ping: echo it
            elif (fut := self._pings.get(frame.id)) is not None and not fut.done():
                fut.set_result(None)
        elif isinstance(frame, GoAway):
            self.go_away = True
        # SETTINGS and WINDOW_UPDATE: nothing to do (no flow control, as spdystream)

    async def _on_syn_stream(self, frame: SynStream) -> None:
        sid = frame.stream_id
        remote_parity = 1 if self.server else 0
        if sid % 2 != remote_parity or sid <= self._last_remote_id or sid in self.streams:
            await self.send(RstStream(sid, RstStatus.PROTOCOL_ERROR))
            return
        self._last_remote_id = sid
        stream = SpdyStream(self, sid, frame.headers, local=False)
        if frame.flags & FLAG_FIN:
            stream._remote_fin = True
        if frame.flags & FLAG_UNIDIRECTIONAL:
            stream._local_fin = True
        self.streams[sid] = stream
        if self.on_stream is None or self.go_away:
            await stream.refuse()
            return
        task = asyncio.create_task(self._run_handler(stream), name=f"spdy-stream-{sid}")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run_handler(self, stream: SpdyStream) -> None:
        assert self.on_stream is not None
        try:
            await self.on_stream(stream)
        except ConnectionError:
            pass  # the connection or the stream went away under the handler
        except Exception:
            log.exception("SPDY stream handler failed for %s", stream)
            with contextlib.suppress(ConnectionError):
                await stream.reset(RstStatus.INTERNAL_ERROR)


# ---- a client connection: HTTP/1.1 upgrade to SPDY/3.1 -------------------------------------------


class UpgradeFailure(ConnectionError):
    """The server did not switch protocols; carries its status and body (often the reason)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"unable to upgrade connection: {body.decode(errors='replace').strip() or status}")
        self.status = status
        self.body = body


async def dial(
    url: str,
    *,
    protocols: Iterable[str] = (),
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    ssl: ssl_module.SSLContext | None = None,
    timeout: float = 30.0,
) -> tuple[SpdySession, str]:
    """Upgrade an HTTP/1.1 request to SPDY/3.1, as client-go's SPDY round tripper does.

    ``protocols`` go out as ``X-Stream-Protocol-Version`` headers (e.g. ``v4.channel.k8s.io`` for
    remotecommand, ``portforward.k8s.io``); returns the started client session and the protocol
    the server chose. A runtime's streaming server (containerd's) is reached this way.
    """
    u = urlsplit(url)
    secure = u.scheme == "https"
    port = u.port or (443 if secure else 80)
    host = u.hostname or "localhost"
    if secure and ssl is None:
        ssl = ssl_module.create_default_context()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ssl if secure else None, limit=1 << 20), timeout
    )
    try:
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {u.netloc}", "Connection: Upgrade", "Upgrade: SPDY/3.1",
                 "Content-Length: 0"]
        lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        resp_headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                resp_headers.setdefault(k.strip().lower(), v.strip())
        if status != 101:
            length = int(resp_headers.get("content-length", "-1"))
            body = await asyncio.wait_for(reader.readexactly(length) if length >= 0 else reader.read(65536), timeout)
            raise UpgradeFailure(status, body)
    except BaseException:
        writer.close()
        raise
    session = SpdySession(StreamTransport(reader, writer), server=False)
    session.start()
    return session, resp_headers.get("x-stream-protocol-version", "")
