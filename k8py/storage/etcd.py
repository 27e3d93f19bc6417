"""EtcdStore: the Store on etcd v3, over its gRPC API (kube-apiserver's storage/etcd3).

etcd is the model the Store interface was cut from, so the mapping is direct:
a create is a txn comparing the key's create_revision with 0, an update or a
conditional delete one comparing its mod_revision with the expected one (the
`else` branch reads the key, so a conflict carries the current value), a list
is a range at one revision, paged, and a watch is etcd's watch with prev_kv.

Keys: the API server's keys start with `/registry/`; in etcd that part is
replaced by `--etcd-prefix` (default `/registry`, so the layout is upstream's).
Values are the objects' JSON.

Endpoints: one gRPC channel per `--etcd-servers` entry, each verified against
its own host name. Calls go to the active endpoint; when it is unavailable the
store moves on to the next. Reads are retried there; a write is retried only
when it cannot have reached etcd (no connection), otherwise the caller gets a
`StoreUnavailableError` (the outcome is unknown, as with etcd's own client).
A watch whose stream breaks is reopened on the next endpoint from the revision
after the last event it delivered, so no event is lost or repeated.

Progress: a watch given a `progress` callback (the watch cache's) is told the
revisions of writes outside its prefix and etcd's progress notifications, in
order with its events, so the cache knows it has seen everything up to the
store's revision even when the newest writes were not its own.

The compacted revision is kept, as kube-apiserver keeps it, in the key
`compact_rev_key` (outside the prefix, shared by every API server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import grpc.aio
from etcd3aio import prefix_range_end
from etcd3aio._protobuf import kv_pb2, rpc_pb2, rpc_pb2_grpc

from k8py.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StoreError,
    StoreUnavailableError,
    ValueTooLargeError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
API_PREFIX = "/registry"
COMPACT_REV_KEY = b"compact_rev_key"
# Keys per range request when a list is not limited (etcd answers a range in one message).
PAGE = 500
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]
_CREATE, _MOD = rpc_pb2.Compare.CREATE, rpc_pb2.Compare.MOD
_EQUAL, _GREATER = rpc_pb2.Compare.EQUAL, rpc_pb2.Compare.GREATER
# Errors after which a request never reached etcd, so retrying a write elsewhere is safe.
_NOT_SENT = re.compile(r"failed to connect|connection refused|no connection|connections to all backends failing",
                       re.IGNORECASE)
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
# etcd's answers after it waited in vain for a quorum (code UNAVAILABLE, or UNKNOWN for its context's deadline).
_TIMED_OUT = re.compile(r"deadline exceeded|timed out", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """--etcd-cafile, --etcd-certfile and --etcd-keyfile."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(p: Path | None) -> bytes | None:
            return p.read_bytes() if p is not None else None

        return grpc.ssl_channel_credentials(read(self.ca_file), read(self.key_file), read(self.cert_file))


class Endpoint:
    """One etcd member's client URL: its channel (TLS when https or given files) and stubs."""

    def __init__(self, url: str, tls: TLSFiles | None) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if not parts.hostname or not parts.port:
            raise ValueError(f"etcd server {url!r}: want scheme://host:port")
        self.url = url
        target = f"{parts.hostname}:{parts.port}" if ":" not in parts.hostname else f"[{parts.hostname}]:{parts.port}"
        if parts.scheme == "https" or tls is not None:
            self.channel = grpc.aio.secure_channel(target, (tls or TLSFiles()).credentials(), options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(self.channel)


class EtcdStore:
    def __init__(
        self,
        servers: Sequence[str],
        *,
        prefix: str = API_PREFIX,
        tls: TLSFiles | None = None,
        request_timeout: float = 15.0,
        connect_timeout: float = 60.0,
        retry_interval: float = 0.2,
    ) -> None:
        if not servers:
            raise ValueError("no etcd servers given")
        self.servers = list(servers)
        self._tls = tls
        self._prefix = prefix.rstrip("/").encode()
        self._timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._retry_interval = retry_interval
        self._endpoints: list[Endpoint] = []
        self._active = 0
        self._compacted = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open a channel to every server and wait (up to connect_timeout) until one answers."""
        self._endpoints = [Endpoint(url, self._tls) for url in self.servers]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        while True:
            try:
                self._compacted = await self._read_compacted()
                return
            except StoreUnavailableError as e:
                if loop.time() >= deadline:
                    await self.close()
                    raise StoreUnavailableError(f"cannot reach etcd at {', '.join(self.servers)}: {e}") from None
                log.warning("waiting for etcd (%s)", e)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        for ep in self._endpoints:
            await ep.channel.close()
        self._endpoints = []

    # ------------------------------------------------------------------ keys

    def _key(self, key: str) -> bytes:
        if not key.startswith(API_PREFIX):
            raise StoreError(f"key {key!r} is outside {API_PREFIX}")
        return self._prefix + key[len(API_PREFIX):].encode()

    def _kv(self, kv: kv_pb2.KeyValue) -> KeyValue:
        return KeyValue(API_PREFIX + kv.key[len(self._prefix):].decode(), kv.value, kv.create_revision,
                        kv.mod_revision)

    # ------------------------------------------------------------------ calls

    async def _call(self, method: Callable[[Endpoint], Callable[..., Any]], request: Any, *,
                    idempotent: bool) -> Any:
        """One unary call on the active endpoint, moving on to the next one while unavailable (until the
        request timeout); a write that may have reached etcd is not repeated."""
        if not self._endpoints:
            raise StoreError("the etcd store is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        tried = 0
        while True:
            index = self._active
            ep = self._endpoints[index]
            remaining = deadline - loop.time()
            try:
                return await method(ep)(request, timeout=max(remaining, 0.01))
            except grpc.aio.AioRpcError as e:
                code, detail = e.code(), e.details() or ""
                # etcd already waited for a quorum (or we did): asking again only doubles the wait
                timed_out = code is grpc.StatusCode.DEADLINE_EXCEEDED or bool(_TIMED_OUT.search(detail))
                if code not in _RETRYABLE and not timed_out:
                    raise _store_error(e) from None
                if code in _RETRYABLE:
                    self._fail_over(index, detail)
                retry = not timed_out and (idempotent or bool(_NOT_SENT.search(detail)))
                tried += 1
                if not retry or loop.time() >= deadline:
                    raise StoreUnavailableError(f"etcd: {detail or code.name}") from None
                if tried % len(self._endpoints) == 0:  # every endpoint failed once: give them a moment
                    await asyncio.sleep(self._retry_interval)

    def _fail_over(self, index: int, why: str) -> None:
        if self._active == index and len(self._endpoints) > 1:
            self._active = (index + 1) % len(self._endpoints)
            log.warning("etcd %s unavailable (%s): using %s", self.servers[index], why,
                        self.servers[self._active])

    async def _range(self, request: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        try:
            return await self._call(lambda ep: ep.kv.Range, request, idempotent=True)
        except CompactedError:
            raise CompactedError(request.revision, await self.compacted_revision()) from None

    async def _txn(self, request: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        return await self._call(lambda ep: ep.kv.Txn, request, idempotent=False)

    # ------------------------------------------------------------------ reads

    async def current_revision(self) -> int:
        resp = await self._range(rpc_pb2.RangeRequest(key=COMPACT_REV_KEY, keys_only=True))
        return resp.header.revision

    async def compacted_revision(self) -> int:
        self._compacted = max(self._compacted, await self._read_compacted())
        return self._compacted

    async def _read_compacted(self) -> int:
        resp = await self._range(rpc_pb2.RangeRequest(key=COMPACT_REV_KEY))
        return int(resp.kvs[0].value) if resp.kvs else 0

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        resp = await self._range(rpc_pb2.RangeRequest(key=self._key(key), revision=revision))
        return self._kv(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str, *, start_key: str = "", limit: int = 0, revision: int = 0) -> ListResult:
        start = self._key(max(prefix, start_key))
        end = prefix_range_end(self._key(prefix))
        items: list[KeyValue] = []
        while True:
            want = PAGE if limit <= 0 else min(PAGE, limit - len(items))
            resp = await self._range(rpc_pb2.RangeRequest(key=start, range_end=end, limit=want, revision=revision))
            revision = revision or resp.header.revision
            items.extend(self._kv(kv) for kv in resp.kvs)
            if not resp.more or (limit > 0 and len(items) >= limit):
                return ListResult(items, revision, resp.more)
            start = resp.kvs[-1].key + b"\x00"

    async def count(self, prefix: str) -> int:
        key = self._key(prefix)
        resp = await self._range(rpc_pb2.RangeRequest(key=key, range_end=prefix_range_end(key), count_only=True))
        return resp.count

    # ------------------------------------------------------------------ writes

    async def create(self, key: str, value: bytes) -> int:
        k = self._key(key)
        resp = await self._txn(rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=k, target=_CREATE, result=_EQUAL, create_revision=0)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=bytes(value)))],
        ))
        if not resp.succeeded:
            raise KeyExistsError(key)
        return resp.header.revision

    def _guard(self, k: bytes, expected_revision: int) -> rpc_pb2.Compare:
        """The key's mod_revision is the expected one (0: the key exists)."""
        if expected_revision:
            return rpc_pb2.Compare(key=k, target=_MOD, result=_EQUAL, mod_revision=expected_revision)
        return rpc_pb2.Compare(key=k, target=_CREATE, result=_GREATER, create_revision=0)

    def _refused(self, key: str, resp: rpc_pb2.TxnResponse) -> StoreError:
        kvs = resp.responses[0].response_range.kvs
        return ConflictError(key, self._kv(kvs[0])) if kvs else KeyNotFoundError(key)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        k = self._key(key)
        resp = await self._txn(rpc_pb2.TxnRequest(
            compare=[self._guard(k, expected_revision)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=bytes(value)))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k))],
        ))
        if not resp.succeeded:
            raise self._refused(key, resp)
        return resp.header.revision

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[int, KeyValue]:
        k = self._key(key)
        resp = await self._txn(rpc_pb2.TxnRequest(
            compare=[self._guard(k, expected_revision)],
            success=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k, prev_kv=True))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k))],
        ))
        if not resp.succeeded:
            raise self._refused(key, resp)
        prev = resp.responses[0].response_delete_range.prev_kvs
        if not prev:  # deleted by someone else between the compare and the delete cannot happen in a txn
            raise KeyNotFoundError(key)
        return resp.header.revision, self._kv(prev[0])

    # ------------------------------------------------------------------ watch

    def watch(self, prefix: str, *, start_revision: int,
              progress: Callable[[int], None] | None = None) -> AsyncIterator[list[Event]]:
        """Batches of events under `prefix` from `start_revision` (0: from now on). Raises CompactedError
        (when iterated) once etcd says the revision is compacted. `progress(revision)`: told when no
        event under the prefix up to that revision is still to come."""
        if not self._endpoints:
            raise StoreError("the etcd store is closed")
        return self._watch(self._key(prefix), start_revision, progress)

    async def _watch(self, key: bytes, start_revision: int,
                     progress: Callable[[int], None] | None) -> AsyncIterator[list[Event]]:
        next_rev = start_revision or await self.current_revision() + 1
        # With `progress`, the whole key space is watched: the revisions of writes outside the prefix
        # arrive in order with the events, so they are progress that never overtakes an event.
        # (etcd 3.4's WatchProgressRequest is answered at once, ahead of events still queued; its
        # periodic progress notifications are ordered, and are passed on too.)
        low, end = (b"\x00", b"\x00") if progress is not None else (key, prefix_range_end(key))
        while True:
            index = self._active
            create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=low, range_end=end, start_revision=next_rev, prev_kv=True, progress_notify=True))
            call = self._endpoints[index].watch.Watch(iter([create]), metadata=(("hasleader", "true"),))
            try:
                async for resp in call:
                    if resp.compact_revision:
                        raise CompactedError(next_rev, resp.compact_revision)
                    if resp.canceled:
                        raise _WatchCanceled(resp.cancel_reason or "watch canceled by etcd")
                    if resp.events:
                        batch = [self._event(ev) for ev in resp.events if ev.kv.key.startswith(key)]
                        last = resp.events[-1].kv.mod_revision
                        next_rev = last + 1
                        if batch:
                            yield batch
                        if progress is not None and (not batch or batch[-1].kv.mod_revision < last):
                            progress(last)
                    elif not resp.created and progress is not None and resp.header.revision >= next_rev - 1:
                        progress(resp.header.revision)
                raise _WatchCanceled("watch stream ended")
            except (grpc.aio.AioRpcError, _WatchCanceled) as e:
                why = e.details() if isinstance(e, grpc.aio.AioRpcError) else str(e)
                if isinstance(e, grpc.aio.AioRpcError) and e.code() not in _RETRYABLE:
                    if e.code() is grpc.StatusCode.CANCELLED and not self._endpoints:
                        return  # closed
                    log.warning("etcd watch failed (%s): reopening", why)
                self._fail_over(index, why or "watch ended")
                await asyncio.sleep(self._retry_interval)
            finally:
                call.cancel()

    def _event(self, ev: kv_pb2.Event) -> Event:
        kv = self._kv(ev.kv)
        prev = self._kv(ev.prev_kv) if ev.HasField("prev_kv") else None
        if ev.type == kv_pb2.Event.DELETE:
            value, created = (prev.value, prev.create_revision) if prev is not None else (b"", 0)
            return Event(EventType.DELETE, KeyValue(kv.key, value, created, kv.mod_revision), prev)
        return Event(EventType.PUT, kv, prev, kv.create_revision == kv.mod_revision)

    # ------------------------------------------------------------------ compaction

    async def compact(self, revision: int) -> None:
        """Compact etcd's history up to `revision` and record it in compact_rev_key."""
        if revision <= self._compacted:
            return
        with contextlib.suppress(CompactedError):  # another API server got there first
            await self._call(lambda ep: ep.kv.Compact, rpc_pb2.CompactionRequest(revision=revision), idempotent=True)
        while True:
            resp = await self._range(rpc_pb2.RangeRequest(key=COMPACT_REV_KEY))
            current = resp.kvs[0] if resp.kvs else None
            if current is not None and int(current.value) >= revision:
                break
            txn = await self._txn(rpc_pb2.TxnRequest(
                compare=[rpc_pb2.Compare(key=COMPACT_REV_KEY, target=_MOD, result=_EQUAL,
                                         mod_revision=current.mod_revision if current else 0)],
                success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=COMPACT_REV_KEY,
                                                                           value=str(revision).encode()))],
            ))
            if txn.succeeded:
                break
        self._compacted = max(self._compacted, revision)


class _WatchCanceled(Exception):
    pass


def _store_error(e: grpc.aio.AioRpcError) -> StoreError:
    detail = e.details() or e.code().name
    if "required revision has been compacted" in detail:
        return CompactedError(0, 0)
    if "future revision" in detail:
        return FutureRevisionError(f"etcd: {detail}")
    if "request is too large" in detail or e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ValueTooLargeError(f"etcd: {detail}")
    if _TIMED_OUT.search(detail):
        return StoreUnavailableError(f"etcd: {detail}")
    return StoreError(f"etcd: {detail}")

