"""k8py.streaming.logs: CRI log parsing, tail, since, limits, following, and PodLogOptions."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

from k8py.streaming.logs import (
    LogOptions,
    PodLogOptions,
    parse_cri_line,
    parse_timestamp,
    read_logs,
    tail_start,
)


def test_timestamps_are_rendered_with_nine_digits_and_their_zone() -> None:
    assert parse_timestamp(b"2026-11-25T10:00:00.5Z") == (1795600800_500_000_000, b"2026-11-25T10:00:00.500000000Z")
    ns, text = parse_timestamp(b"2026-11-25T12:00:00.123456789+02:00") or (0, b"")
    assert ns == 1795600800_123_456_789 and text == b"2026-11-25T12:00:00.123456789+02:00"
    assert parse_timestamp(b"2026-11-25T10:00:00+00:00") == (1795600800_000_000_000, b"2026-11-25T10:00:00.000000000Z")
    assert parse_timestamp(b"yesterday") is None


def test_cri_lines() -> None:
    full = parse_cri_line(b"2026-11-25T10:00:00Z stderr F text with  spaces\n")
    assert full is not None and (full.stream, full.text) == (b"stderr", b"text with  spaces\n")
    partial = parse_cri_line(b"2026-11-25T10:00:00Z stdout P part\n")
    assert partial is not None and partial.text == b"part"
    assert parse_cri_line(b"2026-11-25T10:00:00Z stdin F x\n") is None
    assert parse_cri_line(b'{"log":"docker json"}\n') is None


@pytest.mark.parametrize(("n", "expected"), [(-1, 0), (0, 12), (1, 8), (2, 4), (3, 0), (10, 0)])
def test_tail_start(n: int, expected: int) -> None:
    assert tail_start(io.BytesIO(b"one\ntwo\nsix\n"), n) == expected


def test_tail_start_over_blocks() -> None:
    data = b"".join(b"%06d\n" % i for i in range(50_000))  # 350 KB: several blocks
    assert tail_start(io.BytesIO(data), 2) == len(data) - 14


def test_pod_log_options() -> None:
    opts = PodLogOptions.from_query({"follow": "true", "tailLines": "5", "timestamps": "1", "container": "c"})
    assert (opts.follow, opts.tail_lines, opts.timestamps, opts.container) == (True, 5, True, "c")
    assert opts.kubelet_query() == {"follow": "true", "timestamps": "true", "tailLines": "5"}
    with pytest.raises(ValueError, match="invalid syntax"):
        PodLogOptions.from_query({"tailLines": "many"})
    causes = PodLogOptions(tail_lines=-1, limit_bytes=0, since_seconds=5, since_time="2026-11-25T10:00:00Z").validate()
    assert [c["field"] for c in causes] == ["tailLines", "limitBytes", ""]
    assert PodLogOptions(since_seconds=0).validate()[0]["message"] == "Invalid value: 0: must be greater than 0"
    now = 1795600800_000_000_000 + 120_000_000_000  # two minutes after sinceTime: sinceSeconds=60 is later
    assert PodLogOptions(since_seconds=60).log_options(now).since_ns == now - 60_000_000_000
    assert PodLogOptions(since_time="2026-11-25T10:00:00Z").log_options(0).since_ns == 1795600800_000_000_000


async def _read(path: Path, opts: LogOptions, running: bool = False) -> bytes:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    async def is_running() -> bool:
        return running

    await read_logs(str(path), opts, write, is_running)
    return bytes(out)


async def test_read_logs(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(
        b"2026-11-25T10:00:00Z stdout F a\n"
        b"garbage line\n"
        b"2026-11-25T10:00:01Z stdout P b\n"
        b"2026-11-25T10:00:01Z stdout F c\n"
        b"2026-11-25T10:00:02Z stderr F d"  # no newline yet
    )
    assert await _read(log, LogOptions()) == b"a\nbc\nd"
    assert await _read(log, LogOptions(since_ns=1795600801_000_000_000)) == b"bc\nd"
    assert await _read(log, LogOptions(limit_bytes=3)) == b"a\nb"
    stamped = await _read(log, LogOptions(timestamps=True, since_ns=1795600802_000_000_000))
    assert stamped == b"2026-11-25T10:00:02.000000000Z d"
    with log.open("ab") as f:
        f.write(b"\n")
    assert await _read(log, LogOptions(tail=2)) == b"c\nd\n"  # tail counts the file's lines, P entries too
    (tmp_path / "link.log").symlink_to(log)
    assert await _read(tmp_path / "link.log", LogOptions(tail=1)) == b"d\n"
    with pytest.raises(OSError):
        await _read(tmp_path / "missing.log", LogOptions())


async def test_follow_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"2026-11-25T10:00:00Z stdout F first\n")
    out: asyncio.Queue[bytes] = asyncio.Queue()
    running = True

    async def write(data: bytes) -> None:
        await out.put(data)

    async def is_running() -> bool:
        return running

    follower = asyncio.create_task(read_logs(str(log), LogOptions(follow=True), write, is_running))
    assert await asyncio.wait_for(out.get(), 5) == b"first\n"
    rotated = tmp_path / "c.log.new"
    rotated.write_bytes(b"2026-11-25T10:00:01Z stdout F second\n")
    os.replace(rotated, log)  # the runtime rotated the file by renaming a new one into place
    assert await asyncio.wait_for(out.get(), 5) == b"second\n"
    running = False
    await asyncio.wait_for(follower, 5)
