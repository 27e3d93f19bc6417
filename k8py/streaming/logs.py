"""Container logs as ``kubectl logs`` shows them, read from CRI log files (kubelet's kuberuntime/logs).

A CRI log file holds one entry per line: ``<RFC3339Nano timestamp> <stdout|stderr> <tag> <text>``,
where the tag is ``F`` (the text ends a line) or ``P`` (a partial line: the runtime split a long
line, the next entries continue it). Entries are written as upstream's ``ReadLogs`` writes them:
the text of an ``F`` entry with its newline, of a ``P`` entry without one (so the pieces join),
each prefixed with the entry's timestamp (nanoseconds always nine digits) when asked.

Options (``PodLogOptions``): ``tailLines`` counts the file's last lines, ``sinceSeconds`` /
``sinceTime`` skip older entries (the later bound wins), ``limitBytes`` cuts the output, and
``follow`` keeps reading until the container is no longer running. Following polls the file
(upstream waits on inotify with a one-second fallback) and reopens it when the runtime replaced
it (rotation by rename); lines it cannot parse are skipped, as upstream logs and skips them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from k8py.api.validation import field

FOLLOW_POLL = 0.1  # seconds between looks at a followed file
RUNNING_CHECK = 1.0  # seconds between asking whether the followed container still runs
BLOCK = 64 * 1024

_TIMESTAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True, slots=True)
class LogOptions:
    """The CRI reader's options (``NewLogOptions``): -1 means all; ``since_ns`` 0 means no bound."""

    tail: int = -1
    limit_bytes: int = -1
    since_ns: int = 0
    follow: bool = False
    timestamps: bool = False


@dataclass(frozen=True, slots=True)
class LogEntry:
    timestamp: bytes  # as RFC3339NanoFixed renders it
    time_ns: int
    stream: bytes
    text: bytes  # with the newline of an F entry


def parse_timestamp(raw: bytes) -> tuple[int, bytes] | None:
    """(ns since the epoch, RFC3339NanoFixed text) of an RFC3339Nano timestamp, or None."""
    m = _TIMESTAMP.fullmatch(raw)
    if m is None:
        return None
    base, frac, zone = m.group(1).decode(), (m.group(2) or b"").decode(), m.group(3).decode()
    try:
        when = dt.datetime.strptime(base + zone, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
    nanos = int(frac.ljust(9, "0")) if frac else 0
    if zone in ("+00:00", "-00:00"):
        zone = "Z"
    fixed = f"{base}.{nanos:09d}{zone}".encode()
    return int(when.timestamp()) * 1_000_000_000 + nanos, fixed


def parse_cri_line(line: bytes) -> LogEntry | None:
    """One CRI log line (with its newline, if any); None when it is not in the CRI format."""
    parts = line.split(b" ", 3)
    if len(parts) < 4 or parts[1] not in (b"stdout", b"stderr"):
        return None
    ts = parse_timestamp(parts[0])
    if ts is None:
        return None
    text = parts[3]
    if parts[2].split(b":", 1)[0] == b"P" and text.endswith(b"\n"):
        text = text[:-1]
    return LogEntry(ts[1], ts[0], parts[1], text)


def tail_start(f: BinaryIO, lines: int) -> int:
    """The offset of the last ``lines`` lines of ``f`` (util/tail.FindTailLineStartIndex)."""
    if lines < 0:
        return 0
    right = f.seek(0, os.SEEK_END)
    count = 0
    left = right
    buf = b""
    while right > 0 and count <= lines:
        left = max(0, right - BLOCK)
        f.seek(left)
        buf = f.read(right - left)
        count += buf.count(b"\n")
        right = left
    while count > lines:
        idx = buf.index(b"\n") + 1
        buf = buf[idx:]
        left += idx
        count -= 1
    return left


class _Writer:
    def __init__(self, write: Callable[[bytes], Awaitable[None]], opts: LogOptions) -> None:
        self.write = write
        self.opts = opts
        self.remain = opts.limit_bytes if opts.limit_bytes >= 0 else -1

    async def entry(self, e: LogEntry) -> bool:
        """Write one entry; False once the byte limit is reached."""
        if e.time_ns < self.opts.since_ns:
            return True
        data = e.timestamp + b" " + e.text if self.opts.timestamps else e.text
        if self.remain >= 0:
            data = data[: self.remain]
            self.remain -= len(data)
        if data:
            await self.write(data)
        return self.remain != 0


async def read_logs(
    path: str,
    opts: LogOptions,
    write: Callable[[bytes], Awaitable[None]],
    is_running: Callable[[], Awaitable[bool]],
) -> None:
    """Write the log at ``path`` through ``write``; raises OSError when the file cannot be opened."""
    path = os.path.realpath(path)
    f = open(path, "rb")  # closed below, also after reopening on rotation
    try:
        f.seek(await asyncio.to_thread(tail_start, f, opts.tail))
        writer = _Writer(write, opts)
        limited = opts.tail if opts.tail >= 0 and not opts.follow else -1
        pending = b""
        running = True
        last_check = 0.0
        while True:
            chunk = await asyncio.to_thread(f.read, BLOCK)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    entry = parse_cri_line(raw + b"\n")
                    if entry is None:
                        continue
                    if not await writer.entry(entry):
                        return
                    if limited > 0:
                        limited -= 1
                        if limited == 0:
                            return
                continue
            # at the end of the file
            if not opts.follow or not running:
                if pending and (entry := parse_cri_line(pending)) is not None:  # an incomplete last line
                    await writer.entry(entry)
                return
            now = time.monotonic()
            if now - last_check >= RUNNING_CHECK:
                last_check = now
                running = await is_running()
                if not running:
                    continue  # read what was written before it stopped, then end
            await asyncio.sleep(FOLLOW_POLL)
            try:
                replaced = os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                continue
            if replaced:
                f.close()
                f = open(path, "rb")
                pending = b""
    finally:
        f.close()


# ---- PodLogOptions: the query of pods/log and of the kubelet's /containerLogs -----------------------


def _bool(value: str) -> bool:
    """A query boolean as apimachinery converts it: "false", "f", "0" (and empty) are false."""
    return value.lower() not in ("", "false", "f", "0")


def _int(name: str, value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None


@dataclass(frozen=True, slots=True)
class PodLogOptions:
    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since_seconds: int | None = None
    since_time: str | None = None  # RFC3339
    tail_lines: int | None = None
    limit_bytes: int | None = None
    insecure_skip_tls_verify_backend: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PodLogOptions:
        """Decode the query parameters; ValueError when one does not convert."""
        since_time = query.get("sinceTime") or None
        if since_time is not None and parse_timestamp(since_time.encode()) is None:
            raise ValueError(f'parsing time "{since_time}" as "2006-01-02T15:04:05Z07:00": cannot parse')
        ints = {k: _int(k, query[k]) if query.get(k) else None for k in ("sinceSeconds", "tailLines", "limitBytes")}
        return cls(
            container=query.get("container", ""),
            follow=_bool(query.get("follow", "")),
            previous=_bool(query.get("previous", "")),
            timestamps=_bool(query.get("timestamps", "")),
            since_seconds=ints["sinceSeconds"],
            since_time=since_time,
            tail_lines=ints["tailLines"],
            limit_bytes=ints["limitBytes"],
            insecure_skip_tls_verify_backend=_bool(query.get("insecureSkipTLSVerifyBackend", "")),
        )

    def validate(self) -> list[dict[str, str]]:
        """ValidatePodLogOptions, as StatusCauses."""
        causes = []
        if self.tail_lines is not None and self.tail_lines < 0:
            causes.append(field.invalid("tailLines", self.tail_lines, "must be greater than or equal to 0"))
        if self.limit_bytes is not None and self.limit_bytes < 1:
            causes.append(field.invalid("limitBytes", self.limit_bytes, "must be greater than 0"))
        if self.since_seconds is not None and self.since_time is not None:
            causes.append(field.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
        elif self.since_seconds is not None and self.since_seconds < 1:
            causes.append(field.invalid("sinceSeconds", self.since_seconds, "must be greater than 0"))
        return causes

    def kubelet_query(self) -> dict[str, str]:
        """The kubelet's ``/containerLogs`` parameters (the API server's LogLocation)."""
        q: dict[str, str] = {}
        for key, on in (("follow", self.follow), ("previous", self.previous), ("timestamps", self.timestamps)):
            if on:
                q[key] = "true"
        if self.since_seconds is not None:
            q["sinceSeconds"] = str(self.since_seconds)
        if self.since_time is not None:
            q["sinceTime"] = self.since_time
        if self.tail_lines is not None:
            q["tailLines"] = str(self.tail_lines)
        if self.limit_bytes is not None:
            q["limitBytes"] = str(self.limit_bytes)
        return q

    def log_options(self, now_ns: int) -> LogOptions:
        """NewLogOptions: the later of sinceSeconds and sinceTime bounds the entries."""
        since = 0
        if self.since_seconds is not None:
            since = now_ns - self.since_seconds * 1_000_000_000
        if self.since_time is not None and (parsed := parse_timestamp(self.since_time.encode())) is not None:
            since = max(since, parsed[0])
        return LogOptions(
            tail=self.tail_lines if self.tail_lines is not None else -1,
            limit_bytes=self.limit_bytes if self.limit_bytes is not None else -1,
            since_ns=since,
            follow=self.follow,
            timestamps=self.timestamps,
        )
