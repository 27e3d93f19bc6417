"""Periodic compaction of a Store, as kube-apiserver's compactor does it for etcd.

Every `interval` the history up to the revision seen one interval earlier is
dropped, so a watcher always has at least one interval to resume from; the
last `min_retain` revisions are always kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from k8py.storage.interface import Store, StoreError

log = logging.getLogger(__name__)


async def run_compactor(
    store: Store,
    *,
    interval: float = 300.0,
    min_retain: int = 1000,
    on_compact: Callable[[int], None] | None = None,
) -> None:
    """Runs until cancelled; `on_compact(revision)` is told of every compaction."""
    last = await store.current_revision()
    while True:
        await asyncio.sleep(interval)
        current = await store.current_revision()
        target = min(last, current - min_retain)
        last = current
        if target > await store.compacted_revision():
            try:
                await store.compact(target)
                if on_compact is not None:
                    on_compact(target)
            except StoreError:
                log.exception("compaction to revision %d failed", target)
