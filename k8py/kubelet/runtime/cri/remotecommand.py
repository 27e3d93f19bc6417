"""exec and attach through a CRI streaming server: client-go's ``tools/remotecommand`` over SPDY, protocol v4.

CRI answers Exec and Attach with a one-time URL on the runtime's streaming server (containerd's
``pkg/cri/streaming``, a copy of the kubelet's old one). k8py's kubelet serves kubectl itself and
wants byte streams (``ExecSession``), so the ``cri`` runtime connects to that URL as client-go does:

* a POST upgraded to SPDY/3.1 (``k8py.streaming.spdy.dial``), offering ``v4.channel.k8s.io``
  in ``X-Stream-Protocol-Version``;
* one stream per channel, its header ``streamType`` = error, stdin, stdout, then stderr (without a
  TTY) or resize (with one), opened in that order; the server runs the command once it has them;
* stdin's end is the stdin stream's FIN. containerd then closes an exec's stdin, but with a TTY
  it stops the exec's output instead (a terminal's input does not end); an attach detaches
  unless the container has ``stdin_once``, whose stdin is then closed;
* a resize is a JSON ``{"Width":..,"Height":..}`` line on the resize stream;
* the end: the server finishes stdout/stderr when the output ends, writes a metav1.Status on the
  error stream (Success, or Failure with reason NonZeroExitCode and an ExitCode cause), resets
  every stream and closes the connection. An error stream that ends empty means success, as
  client-go reads it.

Closing a session closes the connection: an attach detaches, but an exec'd process keeps running
(containerd 1.6 does not tie it to the connection; upstream ``kubectl exec`` leaves it too).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from k8py.kubelet.runtime.interface import CRIError, ExecSession
from k8py.streaming import spdy

STREAM_PROTOCOL_V4 = "v4.channel.k8s.io"
STREAM_TYPE = "streamtype"  # client-go's "streamType", lowercased as SPDY header names are
NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"
READER_LIMIT = 64 * 1024  # a session's stdout/stderr readers pause their stream above twice this


class _Valve(asyncio.ReadTransport):
    """Flow control from a StreamReader back to the SPDY stream that feeds it.

    The reader calls ``pause_reading`` when its buffer is full and ``resume_reading`` once it has
    been read down; the copy waits meanwhile, so the stream's own bounded buffer fills and in
    turn stops the connection's read loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()

    def pause_reading(self) -> None:
        self.open.clear()

    def resume_reading(self) -> None:
        self.open.set()

    def is_reading(self) -> bool:
        return self.open.is_set()


def _reader(stream: spdy.SpdyStream, kind: str) -> tuple[asyncio.StreamReader, asyncio.Task[None]]:
    reader = asyncio.StreamReader(limit=READER_LIMIT)
    valve = _Valve()
    reader.set_transport(valve)

    async def copy() -> None:
        try:
            while chunk := await stream.read():
                reader.feed_data(chunk)
                await valve.open.wait()
        finally:
            reader.feed_eof()

    return reader, asyncio.create_task(copy(), name=f"cri-stream-{kind}")


class _Stdin:
    """The stdin stream as a StdinWriter: ``write`` buffers, ``drain`` sends, ``write_eof`` sends
    what is left and then FIN."""

    def __init__(self, stream: spdy.SpdyStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._lock = asyncio.Lock()
        self.closing: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        if self.closing is not None:
            raise ConnectionResetError("stdin already closed")
        self._buffer += data

    async def drain(self) -> None:
        async with self._lock:
            while self._buffer:
                data = bytes(self._buffer)
                self._buffer.clear()
                await self._stream.write(data)

    def write_eof(self) -> None:
        if self.closing is None:
            self.closing = asyncio.create_task(self._finish(), name="cri-stream-stdin-eof")

    async def _finish(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.drain()
            await self._stream.close()


def exit_code(message: bytes) -> int:
    """The exit code an error stream reports (client-go's ``errorDecoderV4``); CRIError for any
    other failure, worded by the runtime."""
    if not message:
        return 0
    try:
        status: Any = orjson.loads(message)
    except orjson.JSONDecodeError as e:
        raise CRIError(f"error stream protocol error: {e} in {message!r}") from None
    if not isinstance(status, dict):
        raise CRIError(f"error stream protocol error: not a Status: {message!r}")
    if status.get("status") == "Success":
        return 0
    if status.get("status") != "Failure":
        raise CRIError("error stream protocol error: unknown error")
    causes = (status.get("details") or {}).get("causes") or []
    if status.get("reason") == NON_ZERO_EXIT_CODE:
        for cause in causes:
            if cause.get("reason") == EXIT_CODE_CAUSE:
                value = str(cause.get("message", ""))
                if not value.isdigit() or int(value) > 255:
                    raise CRIError(f"error stream protocol error: invalid exit code value {value!r}")
                return int(value)
        raise CRIError(f"error stream protocol error: no {EXIT_CODE_CAUSE} cause given")
    # An InternalError's cause is the bare error ("error executing command in container: ...");
    # the kubelet server adds that prefix again when it reports the failure to its client.
    message_text = str(causes[0].get("message", "")) if causes else ""
    message_text = message_text or str(status.get("message", "")) or "unknown error"
    raise CRIError(message_text.removeprefix("error executing command in container: "))


async def connect(url: str, *, stdin: bool, tty: bool, timeout: float = 30.0) -> ExecSession:
    """Start the exec or attach waiting at ``url`` (a CRI Exec/Attach response) and return its streams.

    stdout is always asked for; stderr only without a TTY (CRI forbids both), as the request to
    the runtime must have said. Connection and protocol failures raise ConnectionError/OSError.
    """
    session, protocol = await spdy.dial(url, protocols=[STREAM_PROTOCOL_V4], timeout=timeout)
    try:
        if protocol != STREAM_PROTOCOL_V4:
            raise ConnectionError(f"streaming server chose protocol {protocol!r}, not {STREAM_PROTOCOL_V4}")
        kinds = ["error", *(["stdin"] if stdin else []), "stdout", "resize" if tty else "stderr"]
        streams = {kind: await session.open_stream({STREAM_TYPE: [kind]}) for kind in kinds}
        await asyncio.wait_for(asyncio.gather(*(s.wait_reply() for s in streams.values())), timeout)
    except BaseException:
        await session.close()
        raise

    stdout, stdout_copy = _reader(streams["stdout"], "stdout")
    tasks: list[asyncio.Task[Any]] = [stdout_copy]
    stderr: asyncio.StreamReader | None = None
    if "stderr" in streams:
        stderr, stderr_copy = _reader(streams["stderr"], "stderr")
        tasks.append(stderr_copy)
    status = asyncio.create_task(streams["error"].read_all(), name="cri-stream-error")
    tasks.append(status)
    stdin_writer = _Stdin(streams["stdin"]) if stdin else None
    resize_stream = streams.get("resize")

    async def wait() -> int:
        try:
            message = await asyncio.shield(status)
        except asyncio.CancelledError:
            if status.cancelled():  # the session was closed first
                raise ConnectionResetError("exec session closed") from None
            raise
        return exit_code(message)

    async def resize(width: int, height: int) -> None:
        if resize_stream is not None:
            await resize_stream.write(orjson.dumps({"Width": width, "Height": height}) + b"\n")

    async def close() -> None:
        await session.close()
        if stdin_writer is not None and stdin_writer.closing is not None:
            tasks.append(stdin_writer.closing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return ExecSession(stdout=stdout, stderr=stderr, stdin=stdin_writer, wait=wait, resize=resize, close=close)
