"""`k8py migrate-store`: every key of a stopped embedded SQLite store, copied into etcd.

Keys and values are copied as they are (values encrypted at rest stay encrypted: the encryption
transformers' authenticated data is the API key, not the etcd key), a page at a time from one
revision of the source, with a bounded number of writes in flight. Revisions cannot be copied: etcd
numbers the writes itself, so every resourceVersion changes and clients must relist. The target is
compacted at its revision after the copy, so a watch from an old resourceVersion up to that revision
gets 410 Gone (and the client relists) instead of resuming from an unrelated revision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from k8py.storage.interface import KeyExistsError, KeyValue, Store

REGISTRY = "/registry/"
PAGE = 500
IN_FLIGHT = 64


class MigrationError(Exception):
    """The migration was refused or did not verify."""


@dataclass(frozen=True, slots=True)
class Migration:
    keys: int
    source_revision: int
    target_revision: int


async def migrate(source: Store, target: Store, *, force: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> Migration:
    """Copy every key of `source` into `target` (refused when the target has keys, unless `force`:
    then the keys copied replace theirs), then compact `target`."""
    total = await source.count("")
    if await source.count(REGISTRY) != total:
        raise MigrationError(f"the source has keys outside {REGISTRY}")
    existing = await target.count(REGISTRY)
    if existing and not force:
        raise MigrationError(f"the target already has {existing} keys: migrate into an empty prefix (or --force)")
    revision = await source.current_revision()
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def put(kv: KeyValue) -> None:
        async with slots:
            try:
                await target.create(kv.key, kv.value)
            except KeyExistsError:
                if not force:
                    raise MigrationError(f"{kv.key} appeared in the target during the migration") from None
                current = await target.get(kv.key)
                if current is None:
                    await target.create(kv.key, kv.value)
                else:
                    await target.update(kv.key, kv.value, expected_revision=current.mod_revision)

    copied, start = 0, ""
    while True:
        page = await source.list(REGISTRY, start_key=start, limit=PAGE, revision=revision)
        await asyncio.gather(*(put(kv) for kv in page.items))
        copied += len(page.items)
        if progress is not None:
            progress(copied, total)
        if not page.more:
            break
        start = page.items[-1].key + "\x00"
    count = await target.count(REGISTRY)
    if copied != total or count < copied or (count != copied and not force):
        raise MigrationError(f"verification failed: {total} keys in the source, {copied} copied, {count} in the target")
    target_revision = await target.current_revision()
    await target.compact(target_revision)
    return Migration(copied, revision, target_revision)
