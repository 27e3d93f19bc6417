"""The shape every level-triggered controller shares: informers -> a work queue of keys ->
workers calling ``sync(key)``.

A controller registers its informers' event handlers in its constructor (each handler
only computes a key and enqueues it), and implements ``sync``: read the caches, compare
with the desired state, write through the API. ``sync`` must be idempotent: it may run
any number of times for the same key, and after a restart. An exception (or a write
conflict) requeues the key with the queue's per-item exponential backoff; success
``forget``s the key's failure count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from k8py.client.cache import DeletedFinalStateUnknown, meta_namespace_key
from k8py.client.informer import SharedIndexInformer, wait_for_cache_sync
from k8py.client.workqueue import RateLimitingQueue, ShutDown, default_controller_rate_limiter

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def key_of(obj: Obj | DeletedFinalStateUnknown) -> str:
    """The namespace/name key of an object (or of a tombstone)."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    return meta_namespace_key(obj)


def unwrap(obj: Obj | DeletedFinalStateUnknown) -> Obj:
    """The object itself, from an informer's on_delete argument."""
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


class QueueController:
    """A controller with one rate-limited queue of keys and `workers` concurrent sync loops."""

    name = "controller"

    def __init__(self, *, workers: int = 5) -> None:
        self.workers = workers
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            default_controller_rate_limiter(), name=self.name
        )
        self.synced: list[SharedIndexInformer] = []  # informers whose caches must be synced first

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    def enqueue(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        self.queue.add(key_of(obj))

    def enqueue_after(self, obj: Obj | str, delay: float) -> None:
        self.queue.add_after(obj if isinstance(obj, str) else key_of(obj), delay)

    async def run(self) -> None:
        """Wait for the caches, then run the workers until cancelled."""
        await wait_for_cache_sync(*self.synced)
        workers = [
            asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}") for i in range(self.workers)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shut_down()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info(
                    "%s: syncing %r failed (will retry): %s", self.name, key, e, exc_info=log.isEnabledFor(10)
                )
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)
