"""The Store: etcd's MVCC contract, as small as kine's `Log`.

One global revision counts every write. A key's value carries the revision of
its last write (`mod_revision`) and of its creation (`create_revision`).
Writes are conditional on the revision the writer last saw, exactly like an
etcd transaction comparing `mod_revision`. History is kept until compaction,
so a watch can start from any revision newer than the compacted one; older
ones raise `CompactedError` (which the API server answers with 410 Gone).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """Base of every error a Store raises."""


class KeyExistsError(StoreError):
    """create() on a key that exists."""


class KeyNotFoundError(StoreError):
    """update()/delete() on a key that does not exist."""


class ConflictError(StoreError):
    """update()/delete() whose expected revision is not the key's mod_revision.

    `current` holds the key's latest value (None when it was deleted) so the
    caller can retry without another read, as etcd's txn `else` branch does.
    """

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(f"revision conflict on {key}")
        self.current = current


class CompactedError(StoreError):
    """A revision older than the last compaction was asked for."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"required revision {requested} has been compacted (compacted: {compacted})")
        self.requested = requested
        self.compacted = compacted


class StoreUnavailableError(StoreError):
    """The store cannot be reached (a write's outcome is then unknown); the API answers 503."""


class ValueTooLargeError(StoreError):
    """The store refuses a value this large (etcd: 1.5 MiB per request); the API answers 413."""


class FutureRevisionError(StoreError):
    """A revision newer than the store's current revision was asked for."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One write. For DELETE, `kv.value` is the value before deletion and
    `kv.mod_revision` the revision of the delete itself."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None
    # True when this PUT created the key (no live previous value).
    created: bool = False


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int  # the store revision the list was read at
    more: bool  # True when `limit` cut the result short


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def current_revision(self) -> int: ...

    async def compacted_revision(self) -> int: ...

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        """The key's value at `revision` (0: latest)."""
        ...

    async def list(
        self, prefix: str, *, start_key: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        """Live keys under `prefix`, in key order, from `start_key` (inclusive)."""
        ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes) -> int:
        """Returns the new revision. Raises KeyExistsError."""
        ...

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        """Returns the new revision. Raises KeyNotFoundError or ConflictError."""
        ...

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[int, KeyValue]:
        """Returns (revision of the delete, the value deleted). expected_revision 0: unconditional."""
        ...

    def watch(self, prefix: str, *, start_revision: int,
              progress: Callable[[int], None] | None = None) -> AsyncIterator[list[Event]]:
        """Batches of events for keys under `prefix` with revision >= start_revision,
        first the retained history, then live writes, in revision order.
        Raises CompactedError when start_revision is already compacted.
        `progress(revision)`: told when no event up to `revision` is still to come
        although the last batch was older (writes elsewhere moved the revision on)."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history before `revision` (the latest value of every live key stays)."""
        ...
