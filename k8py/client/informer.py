"""Informers: client-go's Reflector, SharedIndexInformer and SharedInformerFactory, on asyncio.

A :class:`Reflector` keeps a store in step with one collection on the API server: it lists
(in pages of ``page_size``, one consistent snapshot) and watches from the list's
resourceVersion with bookmarks, so that a quiet collection's resourceVersion still moves.  When
the server ends the watch (its ``timeoutSeconds``, 5-10 minutes, randomised so that a restarted
API server is not hit by every client at once) or the connection breaks mid-stream, it watches
again from the last resourceVersion it saw: nothing is listed twice, nothing is missed.  When
that resourceVersion has been compacted (410 Gone, as an HTTP status or an ERROR event), it
relists, and the store turns the new list into the difference with what it held (``replace``).
When the API server is unreachable (a transport error), or a watch closes at once without a
single event, it backs off (0.8 s doubling to 30 s, with full jitter, reset after two quiet
minutes: client-go's backoff manager) and watches again from the same resourceVersion; a
failed list, or any other error answer, backs off and relists.  (client-go relists after such
a "very short watch" too; here the resourceVersion is kept, since the server answers 410 if it
is no good, and an API server restart costs no relist.)

A :class:`SharedIndexInformer` is a reflector feeding an :class:`~k8py.client.cache.Indexer`
and a list of event handlers.  client-go puts a DeltaFIFO between the two and a goroutine with
an unbounded buffer per handler, because its reflector, its processor and each handler run on
different threads.  Here everything runs on one event loop, so the informer applies each
event to the indexer and then calls every handler, synchronously, from the informer's task:
handlers see events in order, the cache is already up to date when they run, and a handler
that blocks the loop blocks everything (handlers should do what client-go's do: compute a key
and put it on a :class:`~k8py.client.workqueue.WorkQueue`).  An exception in a handler is
logged and does not stop the informer or the other handlers.

What handlers are told, as in client-go:

* the initial list: ``on_add(obj, True)``; later additions ``on_add(obj, False)``;
* a watch event for a cached object: ``on_update(old, new)``; a deletion: ``on_delete(obj)``
  with the object's final state;
* a relist: ``on_update(old, new)`` for every object still there, even unchanged (a relist is
  also a resync; equal resourceVersions tell a handler nothing changed), ``on_add`` for new
  ones, and ``on_delete(DeletedFinalStateUnknown(key, last_known))`` for the ones that vanished
  while the informer was not watching;
* a resync (``resync_period``): ``on_update(obj, obj)`` for every cached object.

The objects handed to handlers and kept in the indexer are the JSON dicts decoded from the
server's responses, shared by every handler and every reader of the cache: consumers must
never mutate them (copy first).

A :class:`SharedInformerFactory` hands out one informer per (resource, namespace, selectors),
so that the scheduler and every controller in a process share one watch per collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from k8py.client.cache import (
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    IndexFunc,
    Obj,
    meta_namespace_index_func,
    meta_namespace_key,
)
from k8py.client.errors import APIError, Gone, TransportError
from k8py.client.resources import Resource
from k8py.client.rest import PAGE_SIZE, RESTClient
from k8py.tasks import cancel

log = logging.getLogger(__name__)

MIN_WATCH_TIMEOUT = 300.0  # seconds; a watch asks for a timeout in [min, 2 * min) (client-go: 5 min)
INITIAL_BACKOFF = 0.8  # client-go's reflector backoff manager: 800 ms doubling to 30 s,
MAX_BACKOFF = 30.0  # with full jitter,
BACKOFF_RESET = 120.0  # reset after two minutes without a failure
MIN_RESYNC_PERIOD = 1.0  # a handler's resync period is at least this (client-go's minimumResyncPeriod)
SHORT_WATCH = 1.0  # a watch that ends sooner, without events, is retried after a backoff


# ---- event handlers ------------------------------------------------------------------------------


class ResourceEventHandler(Protocol):
    """What an informer tells a consumer (client-go's ResourceEventHandler); see the module docstring."""

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None: ...

    def on_update(self, old: Obj, new: Obj) -> None: ...

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None: ...


@dataclass
class ResourceEventHandlerFuncs:
    """A handler from optional functions; a missing one ignores its notifications.

    ``add_func`` takes ``(obj, is_in_initial_list)``.
    """

    add_func: Callable[[Obj, bool], None] | None = None
    update_func: Callable[[Obj, Obj], None] | None = None
    delete_func: Callable[[Obj | DeletedFinalStateUnknown], None] | None = None

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        if self.add_func is not None:
            self.add_func(obj, is_in_initial_list)

    def on_update(self, old: Obj, new: Obj) -> None:
        if self.update_func is not None:
            self.update_func(old, new)

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if self.delete_func is not None:
            self.delete_func(obj)


class FilteringResourceEventHandler:
    """Passes on only the objects ``filter_func`` accepts, as client-go's does.

    An update turns into an add when the object starts passing the filter, into a delete when
    it stops.  ``filter_func`` gets the object of a DeletedFinalStateUnknown.
    """

    def __init__(self, filter_func: Callable[[Obj], bool], handler: ResourceEventHandler) -> None:
        self.filter_func = filter_func
        self.handler = handler

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        if self.filter_func(obj):
            self.handler.on_add(obj, is_in_initial_list)

    def on_update(self, old: Obj, new: Obj) -> None:
        was, now = self.filter_func(old), self.filter_func(new)
        if was and now:
            self.handler.on_update(old, new)
        elif now:
            self.handler.on_add(new, False)
        elif was:
            self.handler.on_delete(old)

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if self.filter_func(obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj):
            self.handler.on_delete(obj)


# ---- the reflector -------------------------------------------------------------------------------


class ReflectorStore(Protocol):
    """Where a reflector puts what it sees; an :class:`Indexer` is one."""

    def add(self, obj: Obj) -> None: ...

    def update(self, obj: Obj) -> None: ...

    def delete(self, obj: Obj) -> None: ...

    def replace(self, objs: list[Obj]) -> None: ...


class Backoff:
    """client-go's exponential backoff manager: ``next()`` is the next delay.

    Delays double from ``initial`` up to ``cap``, each plus up to 100% random jitter, and start
    over once ``reset_after`` seconds pass without a call.
    """

    def __init__(
        self, initial: float = INITIAL_BACKOFF, cap: float = MAX_BACKOFF, reset_after: float = BACKOFF_RESET
    ) -> None:
        self.initial, self.cap, self.reset_after = initial, cap, reset_after
        self._delay = 0.0
        self._last = -float("inf")

    def next(self) -> float:
        now = time.monotonic()
        if now - self._last > self.reset_after:
            self._delay = self.initial
        else:
            self._delay = min(self._delay * 2, self.cap)
        self._last = now
        return self._delay * (1 + random.random())


class _Relist(Exception):
    """The watch cannot go on from the last resourceVersion: list again (after ``backoff``)."""

    def __init__(self, reason: str, *, backoff: bool) -> None:
        super().__init__(reason)
        self.backoff = backoff


class Reflector:
    """Keeps ``store`` in step with one collection; see the module docstring.

    ``page_size`` is the list's page size, ``min_watch_timeout`` the lower bound of each
    watch's randomised ``timeoutSeconds``; ``initial_backoff``/``max_backoff`` shape the retry
    delays.  Counters: ``lists`` (completed lists), ``watches`` (watch requests made),
    ``expired`` (watches that got 410 Gone).
    """

    def __init__(
        self,
        client: RESTClient,
        resource: Resource,
        store: ReflectorStore,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = PAGE_SIZE,
        min_watch_timeout: float = MIN_WATCH_TIMEOUT,
        initial_backoff: float = INITIAL_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        name: str = "",
    ) -> None:
        self.client = client
        self.resource = resource
        self.store = store
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.min_watch_timeout = min_watch_timeout
        self.name = name or _describe(resource, namespace, label_selector, field_selector)
        self._backoff = Backoff(initial_backoff, max_backoff)
        self._last_rv = ""
        self.lists = 0
        self.watches = 0
        self.expired = 0

    def last_sync_resource_version(self) -> str:
        """The resourceVersion of the last list, event or bookmark applied to the store."""
        return self._last_rv

    async def run(self) -> None:
        """List and watch until cancelled."""
        while True:
            try:
                await self.list_and_watch()
            except _Relist as e:
                log.info("%s: relisting: %s", self.name, e)
                if not e.backoff:
                    continue
            except TransportError as e:
                log.warning("%s: %s", self.name, e)
            except APIError as e:  # Gone from a list is handled by list_all; anything else is odd
                log.warning("%s: %s", self.name, e)
            except Exception:
                log.exception("%s: list and watch failed", self.name)
            await asyncio.sleep(self._backoff.next())

    async def list_and_watch(self) -> None:
        """One list, then watches until one of them needs a relist (raises ``_Relist``) or fails."""
        await self._list()
        await self._watch()

    async def _list(self) -> None:
        result = await self.client.list_all(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            page_size=self.page_size,
        )
        items: list[Obj] = result.get("items") or []
        # List items may omit kind and apiVersion (kube's do); watch events carry them: fill them
        # in so the cache holds one shape (client-go's UnstructuredList does the same).
        kind, api_version = self.resource.kind, self.resource.api_version
        for item in items:
            if "kind" not in item:
                item["kind"] = kind
            if "apiVersion" not in item:
                item["apiVersion"] = api_version
        self.store.replace(items)
        self._last_rv = (result.get("metadata") or {}).get("resourceVersion") or ""
        self.lists += 1
        log.debug("%s: listed %d objects at resourceVersion %s", self.name, len(items), self._last_rv)

    async def _watch(self) -> None:
        """Watches from the last resourceVersion, again and again; returns only by raising."""
        first = True  # the first watch after the list
        while True:
            timeout = max(1, int(self.min_watch_timeout * (1 + random.random())))
            watch = self.client.watch(
                self.resource,
                namespace=self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                resource_version=self._last_rv,
                timeout_seconds=timeout,
                allow_bookmarks=True,
            )
            self.watches += 1
            start = time.monotonic()
            events = 0
            try:
                async with watch:
                    async for event in watch:
                        events += 1
                        self._apply(event.type, event.object)
            except Gone as e:
                self.expired += 1
                # The resourceVersion was compacted: relist, at once unless this watch started
                # right after a list and had nothing to show (then something is looping).
                raise _Relist(str(e), backoff=first and events == 0) from e
            except TransportError as e:
                first = False
                # A refused connection or a stream that broke: the API server is away or
                # restarting.  Our resourceVersion is still good: watch again from it, at once
                # if this watch was working, after a backoff if it never got going.
                if events == 0:
                    log.info("%s: watch failed (%s); retrying", self.name, e)
                    await asyncio.sleep(self._backoff.next())
                else:
                    log.debug("%s: watch broke after %d events (%s)", self.name, events, e)
                continue
            first = False
            if events == 0 and time.monotonic() - start < SHORT_WATCH:
                # Closed at once without a word (an API server shutting down, a misbehaving
                # proxy): back off so as not to spin.  client-go relists here; the
                # resourceVersion is as good as before, and if it is not, the server says 410.
                log.info("%s: very short watch (closed within %gs, no events); retrying", self.name, SHORT_WATCH)
                await asyncio.sleep(self._backoff.next())
                continue
            log.debug("%s: watch ended after %d events; resuming at %s", self.name, events, self._last_rv)

    def _apply(self, type_: str, obj: Obj) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if type_ == "ADDED":
            self.store.add(obj)
        elif type_ == "MODIFIED":
            self.store.update(obj)
        elif type_ == "DELETED":
            self.store.delete(obj)
        elif type_ != "BOOKMARK":
            log.warning("%s: unknown watch event type %r", self.name, type_)
            return
        if rv:
            self._last_rv = rv


def _describe(
    resource: Resource, namespace: str | None, label_selector: str | None, field_selector: str | None
) -> str:
    name = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    if namespace:
        name = f"{namespace}/{name}"
    selectors = ",".join(s for s in (label_selector, field_selector) if s)
    return f"{name}[{selectors}]" if selectors else name


# ---- the shared informer -------------------------------------------------------------------------


class ResourceEventHandlerRegistration:
    """What ``add_event_handler`` returns: ``has_synced()`` once the handler has seen the initial list."""

    def __init__(self, informer: SharedIndexInformer, handler: ResourceEventHandler, resync: float) -> None:
        self.informer = informer
        self.handler = handler
        self.resync_period = resync
        self.next_resync = time.monotonic() + resync if resync else float("inf")

    def has_synced(self) -> bool:
        return self.informer.has_synced()


class SharedIndexInformer:
    """A reflector, an indexed cache and event handlers; see the module docstring.

    The indexer always has the ``namespace`` index (as client-go's generated informers), plus
    ``indexers``.  An informer runs once: after :meth:`stop` make a new one.  Beyond client-go's
    arguments: ``page_size``, ``min_watch_timeout``, ``initial_backoff`` and
    ``max_backoff`` go to the :class:`Reflector` (tests make them small).
    """

    def __init__(
        self,
        client: RESTClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float = 0,
        indexers: Mapping[str, IndexFunc] | None = None,
        page_size: int = PAGE_SIZE,
        min_watch_timeout: float = MIN_WATCH_TIMEOUT,
        initial_backoff: float = INITIAL_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        # client-go's generated informers always index by namespace; so do these.
        self.indexer = Indexer(
            {NAMESPACE_INDEX: meta_namespace_index_func, **(indexers or {})}, key_func=meta_namespace_key
        )
        self.reflector = Reflector(
            client,
            resource,
            _InformerStore(self),
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            page_size=page_size,
            min_watch_timeout=min_watch_timeout,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
        )
        self.name = self.reflector.name
        self._handlers: list[ResourceEventHandlerRegistration] = []
        self._synced = asyncio.Event()
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._handlers_changed = asyncio.Event()

    # ---- handlers -------------------------------------------------------------------------------

    def add_event_handler(
        self, handler: ResourceEventHandler, resync_period: float | None = None
    ) -> ResourceEventHandlerRegistration:
        """Register a handler; ``resync_period`` defaults to the informer's (0: no resync).

        A handler added to a running informer is first told ``on_add(obj, True)`` of every
        cached object, synchronously, before this returns, as client-go replays the cache.
        """
        period = self.resync_period if resync_period is None else resync_period
        if 0 < period < MIN_RESYNC_PERIOD:
            log.warning("%s: resync period %.3gs raised to %.3gs", self.name, period, MIN_RESYNC_PERIOD)
            period = MIN_RESYNC_PERIOD
        reg = ResourceEventHandlerRegistration(self, handler, period)
        self._handlers.append(reg)
        if self._running:
            for obj in self.indexer.list():
                self._call(handler.on_add, obj, True)
        self._handlers_changed.set()
        return reg

    def remove_event_handler(self, registration: ResourceEventHandlerRegistration) -> None:
        with contextlib.suppress(ValueError):
            self._handlers.remove(registration)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self.indexer.add_indexers(indexers)

    # ---- state ----------------------------------------------------------------------------------

    def has_synced(self) -> bool:
        """True once the first list is in the cache and every handler has been told of it."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version()

    def is_started(self) -> bool:
        """True once :meth:`start` or :meth:`run` was called."""
        return self._running or self._task is not None

    # ---- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the reflector (and resyncs) until cancelled."""
        if self._running:
            raise RuntimeError(f"informer {self.name} is already running")
        self._running = True
        resync = asyncio.create_task(self._resync_loop(), name=f"resync {self.name}")
        try:
            await self.reflector.run()
        finally:
            await cancel(resync)

    def start(self) -> asyncio.Task[None]:
        """Run in a task of its own (the same task on a second call)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer {self.name}")
        return self._task

    async def stop(self) -> None:
        """Cancel the task :meth:`start` made and wait for it to end."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            await cancel(task)

    # ---- what the reflector calls (through _InformerStore) -------------------------------------

    def _on_replace(self, objs: list[Obj]) -> None:
        indexer = self.indexer
        if not self._synced.is_set():  # the first list: everything is an initial add
            indexer.replace(objs)
            for obj in objs:
                self._distribute_add(obj, True)
            self._synced.set()
            return
        seen: set[str] = set()
        changes: list[tuple[Obj | None, Obj]] = []
        for obj in objs:
            key = indexer.key_func(obj)
            seen.add(key)
            changes.append((indexer.get_by_key(key), obj))
            indexer.update(obj)
        gone = [DeletedFinalStateUnknown(key, indexer.get_by_key(key) or {}) for key in indexer.list_keys()
                if key not in seen]
        for dfsu in gone:
            indexer.delete_by_key(dfsu.key)
        for old, new in changes:
            if old is None:
                self._distribute_add(new, False)
            else:
                self._distribute_update(old, new)
        for dfsu in gone:
            self._distribute_delete(dfsu)

    def _on_add(self, obj: Obj) -> None:
        old = self.indexer.get(obj)
        self.indexer.add(obj)
        if old is None:
            self._distribute_add(obj, False)
        else:
            self._distribute_update(old, obj)

    def _on_delete(self, obj: Obj) -> None:
        if self.indexer.get(obj) is None:
            return  # already gone (a relist found it so): do not report it twice
        self.indexer.delete(obj)
        self._distribute_delete(obj)

    # ---- notifying handlers ---------------------------------------------------------------------

    def _distribute_add(self, obj: Obj, initial: bool) -> None:
        for reg in list(self._handlers):
            self._call(reg.handler.on_add, obj, initial)

    def _distribute_update(self, old: Obj, new: Obj) -> None:
        for reg in list(self._handlers):
            self._call(reg.handler.on_update, old, new)

    def _distribute_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        for reg in list(self._handlers):
            self._call(reg.handler.on_delete, obj)

    def _call(self, func: Callable[..., None], *args: Any) -> None:
        try:
            func(*args)
        except Exception:
            log.exception("%s: event handler %s failed", self.name, getattr(func, "__qualname__", func))

    async def _resync_loop(self) -> None:
        """``on_update(obj, obj)`` for every cached object, per handler, every resync period."""
        await self._synced.wait()
        while True:
            self._handlers_changed.clear()
            now = time.monotonic()
            due = [reg for reg in self._handlers if reg.next_resync <= now]
            for reg in due:
                reg.next_resync = now + reg.resync_period
                for obj in self.indexer.list():
                    self._call(reg.handler.on_update, obj, obj)
            wake = min((reg.next_resync for reg in self._handlers), default=float("inf"))
            timeout = None if wake == float("inf") else max(0.0, wake - time.monotonic())
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # arrives as the wait completes, and stop() would then hang
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._handlers_changed.wait()


class _InformerStore:
    """The store a SharedIndexInformer's reflector writes to: the indexer, then the handlers."""

    def __init__(self, informer: SharedIndexInformer) -> None:
        self._informer = informer

    def add(self, obj: Obj) -> None:
        self._informer._on_add(obj)

    update = add

    def delete(self, obj: Obj) -> None:
        self._informer._on_delete(obj)

    def replace(self, objs: list[Obj]) -> None:
        self._informer._on_replace(objs)


async def wait_for_cache_sync(*informers: SharedIndexInformer, timeout: float | None = None) -> bool:
    """Wait until every informer has synced; False if ``timeout`` passes first."""
    try:
        async with asyncio.timeout(timeout):
            for informer in informers:
                await informer.wait_for_sync()
    except TimeoutError:
        return False
    return True


# ---- the factory ---------------------------------------------------------------------------------

InformerKey = tuple[Resource, str | None, str | None, str | None]


class SharedInformerFactory:
    """One shared informer per (resource, namespace, label selector, field selector)."""

    def __init__(
        self, client: RESTClient, *, namespace: str | None = None, resync_period: float = 0, **options: Any
    ) -> None:
        """``options`` (``page_size``, ``min_watch_timeout``, ...) go to every informer."""
        self.client = client
        self.namespace = namespace
        self.resync_period = resync_period
        self._options = options
        self._informers: dict[InformerKey, SharedIndexInformer] = {}

    def informer_for(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
    ) -> SharedIndexInformer:
        """The shared informer of this collection, made on first request.

        ``namespace`` defaults to the factory's (ignored for cluster-scoped resources).
        ``indexers`` not yet on an existing informer are added to it.
        """
        ns = (namespace or self.namespace) if resource.namespaced else None
        key = (resource, ns, label_selector or None, field_selector or None)
        informer = self._informers.get(key)
        if informer is None:
            informer = SharedIndexInformer(
                self.client,
                resource,
                namespace=ns,
                label_selector=label_selector or None,
                field_selector=field_selector or None,
                resync_period=self.resync_period,
                indexers=indexers,
                **self._options,
            )
            self._informers[key] = informer
        elif indexers:
            have = informer.indexer.get_indexers()
            new = {name: func for name, func in indexers.items() if name not in have}
            if new:
                informer.add_indexers(new)
        return informer

    def informers(self) -> list[SharedIndexInformer]:
        return list(self._informers.values())

    def start(self) -> None:
        """Start every informer not started yet (call again after asking for more)."""
        for informer in self._informers.values():
            if not informer.is_started():
                informer.start()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        """Wait until every started informer has synced; False if ``timeout`` passes first."""
        started = [i for i in self._informers.values() if i.is_started()]
        return await wait_for_cache_sync(*started, timeout=timeout)

    async def shutdown(self) -> None:
        """Stop every informer and wait for them to end."""
        await asyncio.gather(*(informer.stop() for informer in self._informers.values()))
