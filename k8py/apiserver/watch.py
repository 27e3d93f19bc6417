"""Watch streaming: newline-delimited `{"type","object"}` events over a chunked response.

A watch starts either from "now" with the current objects as synthetic ADDED
events (resourceVersion "" or "0", or sendInitialEvents), or after a given
resourceVersion. Recent history comes from the watch cache's event window;
older history straight from the store while it is retained; older than
compaction gets an ERROR event carrying a 410 Expired Status, as kube does.
Selectors filter with kube's transitions: an object that stops matching is
reported DELETED, one that starts matching ADDED.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web

from k8py.api import errors, printers
from k8py.api.conversion import from_storage
from k8py.api.registry import ResourceInfo
from k8py.api.selectors import FieldSelector, LabelSelector
from k8py.api.strategy import strategy_for
from k8py.apiserver.genericstore import GenericStore, parse_resource_version
from k8py.apiserver.negotiation import Output
from k8py.apiserver.watchcache import WatchEvent, decode
from k8py.storage.interface import CompactedError, Event, EventType

Obj = dict[str, Any]
BOOKMARK_INTERVAL = 30.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _from_store_events(batch: list[Event]) -> list[WatchEvent]:
    out = []
    for ev in batch:
        prev = decode(ev.prev) if ev.prev else None
        if ev.type is EventType.DELETE:
            out.append(WatchEvent("DELETED", ev.kv.key, decode(ev.kv, ev.kv.mod_revision), prev, ev.kv.mod_revision))
        else:
            kind = "ADDED" if ev.created or prev is None else "MODIFIED"
            out.append(WatchEvent(kind, ev.kv.key, decode(ev.kv), prev, ev.kv.mod_revision))
    return out


def _filter(ev: WatchEvent, match: Callable[[Obj], bool]) -> tuple[str, Obj] | None:
    if ev.type == "ADDED":
        return ("ADDED", ev.obj) if match(ev.obj) else None
    if ev.type == "DELETED":
        return ("DELETED", ev.obj) if match(ev.obj) else None
    now, before = match(ev.obj), ev.prev is not None and match(ev.prev)
    if now and before:
        return ("MODIFIED", ev.obj)
    if now:
        return ("ADDED", ev.obj)
    if before:
        return ("DELETED", ev.obj)
    return None


class _Encoder:
    def __init__(self, request: web.Request, info: ResourceInfo, output: Output) -> None:
        self.info = info
        self.as_kind = output.as_kind
        self.include_object = request.query.get("includeObject", "Metadata")
        self.sent_headers = False  # kube sends a Table's columnDefinitions with the first event only

    def event(self, type_: str, obj: Obj) -> bytes:
        obj = from_storage(self.info, obj)
        if self.as_kind == "Table":
            body: Obj = printers.table(
                self.info.group,
                self.info.kind,
                [obj],
                dt.datetime.now(dt.UTC),
                include_object=self.include_object,
                list_metadata={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                no_headers=self.sent_headers,
                custom=self.info.custom.printer if self.info.custom is not None else None,
            )
            self.sent_headers = True
        elif self.as_kind.startswith("PartialObjectMetadata"):
            body = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}
        else:
            body = obj
        return orjson.dumps({"type": type_, "object": body}) + b"\n"

    def bookmark(self, revision: int, initial_end: bool = False) -> bytes:
        md: Obj = {"resourceVersion": str(revision), "creationTimestamp": None}
        if initial_end:
            md["annotations"] = {INITIAL_EVENTS_END: "true"}
        if self.as_kind == "Table":
            obj: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md, "columnDefinitions": None, "rows": None}
        else:
            obj = {"kind": self.info.kind, "apiVersion": self.info.api_version, "metadata": md}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


def _error_event(err: errors.StatusError) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n"


async def serve_watch(
    request: web.Request, info: ResourceInfo, namespace: str, gstore: GenericStore, output: Output
) -> web.StreamResponse:
    q = request.query
    labels = LabelSelector.parse(q.get("labelSelector", ""))
    fields = FieldSelector.parse(q.get("fieldSelector", ""))
    strategy = strategy_for(info)
    fields.validate_fields(strategy.supported_fields(info))

    def match(obj: Obj) -> bool:
        if not labels.matches((obj.get("metadata") or {}).get("labels") or {}):
            return False
        return fields.empty or fields.matches(strategy.field_set(obj))

    try:
        seconds = int(q.get("timeoutSeconds", "0"))
        if not -(1 << 63) <= seconds < 1 << 63:  # an int64, as kube parses it
            raise ValueError
    except ValueError:
        raise errors.bad_request("timeoutSeconds must be an integer") from None
    timeout = float(seconds) if "timeoutSeconds" in q else 1800.0 * (1 + random.random())
    bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
    send_initial = q.get("sendInitialEvents") == "true"
    rv = q.get("resourceVersion", "")
    if send_initial and (not bookmarks or q.get("resourceVersionMatch") != "NotOlderThan"):
        raise errors.invalid(
            "meta.k8s.io", "ListOptions", "",
            [errors.cause("sendInitialEvents", "Forbidden: sendInitialEvents is forbidden for watch unless "
                          "the WatchList feature gate is enabled and allowWatchBookmarks=true and "
                          "resourceVersionMatch=NotOlderThan", "FieldValueForbidden")],
        )
    prefix = info.prefix(namespace)
    cache = gstore.cache
    initial: list[Obj] = []
    history: list[WatchEvent] | None = []
    store_events: AsyncIterator[list[Event]] | None = None
    too_old: errors.StatusError | None = None
    start_revision = 0
    if rv in ("", "0") or send_initial:
        if rv == "":
            await cache.sync()
        elif rv != "0" and not await cache.wait_for(parse_resource_version(rv)):
            raise errors.timeout(f"Too large resource version: {rv}, current: {cache.revision}")
        initial = [o for o in cache.list(prefix) if match(o)]
        start_revision = cache.revision
        sub = cache.subscribe(prefix)
    else:
        start_revision = parse_resource_version(rv)
        if not await cache.wait_for(start_revision):
            raise errors.timeout(f"Too large resource version: {start_revision}, current: {cache.revision}")
        history = cache.events_since(start_revision, prefix)
        sub = cache.subscribe(prefix)
        if history is None:
            sub.close()
            try:
                store_events = await cache.store_history(prefix, start_revision)
            except CompactedError as e:
                too_old = errors.gone(f"too old resource version: {e.requested} ({e.compacted})")

    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    enc = _Encoder(request, info, output)
    deadline = asyncio.get_running_loop().time() + timeout
    last = start_revision
    if too_old is not None:
        await response.write(_error_event(too_old))
        await response.write_eof()
        return response
    try:
        if initial:
            await response.write(b"".join(enc.event("ADDED", o) for o in initial))
        if send_initial:
            await response.write(enc.bookmark(start_revision, initial_end=True))
        if history:
            await _write_events(response, enc, history, match)
            last = history[-1].revision
        if store_events is not None:
            last = await _stream_store(response, enc, store_events, match, deadline)
            return response
        last_bookmark = asyncio.get_running_loop().time()
        while True:
            now = asyncio.get_running_loop().time()
            remaining = deadline - now
            if remaining <= 0:
                break
            wait = min(remaining, BOOKMARK_INTERVAL) if bookmarks else remaining
            try:
                async with asyncio.timeout(wait):
                    batch = await sub.next()
            except TimeoutError:
                if bookmarks and asyncio.get_running_loop().time() - last_bookmark >= BOOKMARK_INTERVAL - 0.01:
                    await response.write(enc.bookmark(max(last, cache.revision)))
                    last_bookmark = asyncio.get_running_loop().time()
                continue
            if batch is None:
                break  # closed: the server stops or the watcher fell too far behind
            batch = [e for e in batch if e.revision > last]
            if batch:
                await _write_events(response, enc, batch, match)
                last = batch[-1].revision
    except ConnectionResetError:
        # The client went away (the usual way to stop a watch): the watch ends, no server error. aiohttp
        # finishes the response quietly (its write_eof's ConnectionError is handled, the access logged).
        return response
    finally:
        sub.close()
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def _write_events(
    response: web.StreamResponse, enc: _Encoder, events: list[WatchEvent], match: Callable[[Obj], bool]
) -> None:
    chunks = []
    for ev in events:
        out = _filter(ev, match)
        if out is not None:
            chunks.append(enc.event(*out))
    if chunks:
        await response.write(b"".join(chunks))


async def _stream_store(
    response: web.StreamResponse,
    enc: _Encoder,
    source: AsyncIterator[list[Event]],
    match: Callable[[Obj], bool],
    deadline: float,
) -> int:
    """A watch older than the cache's window, served straight from the store's history."""
    last = 0
    try:
        remaining = deadline - asyncio.get_running_loop().time()
        async with asyncio.timeout(max(remaining, 0)):
            async for batch in source:
                events = _from_store_events(batch)
                await _write_events(response, enc, events, match)
                if events:
                    last = events[-1].revision
    except CompactedError as e:  # compacted while we read
        await response.write(_error_event(errors.gone(f"too old resource version: {e.requested} ({e.compacted})")))
    except TimeoutError:
        pass
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
    return last
