"""ControllerExpectations: what a controller has asked for and not yet seen in its caches.

A controller that creates 500 pods must not create them again on its next sync just
because the informer has not delivered them yet. Before writing, it records how many
creations/deletions it expects for the owner's key; the pod informer's handlers lower the
counts as the pods arrive (or go); ``satisfied`` tells whether the caches are to be
trusted again. Expectations expire after five minutes, so a lost event cannot wedge a
controller (upstream's ExpectationsTimeout).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

EXPECTATIONS_TIMEOUT = 5 * 60.0


@dataclass
class _Expectation:
    add: int = 0
    delete: int = 0
    timestamp: float = field(default_factory=time.monotonic)

    def fulfilled(self) -> bool:
        return self.add <= 0 and self.delete <= 0


class ControllerExpectations:
    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self._clock = clock
        self._items: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        e = self._items.get(key)
        if e is None:
            return True
        return e.fulfilled() or self._clock() - e.timestamp > EXPECTATIONS_TIMEOUT

    def expect(self, key: str, *, add: int = 0, delete: int = 0) -> None:
        """Set (replace) the expectations of `key`."""
        self._items[key] = _Expectation(add, delete, self._clock())

    def raise_by(self, key: str, *, add: int = 0, delete: int = 0) -> None:
        e = self._items.setdefault(key, _Expectation(timestamp=self._clock()))
        e.add += add
        e.delete += delete

    def creation_observed(self, key: str) -> None:
        self.lower(key, add=1)

    def deletion_observed(self, key: str) -> None:
        self.lower(key, delete=1)

    def lower(self, key: str, *, add: int = 0, delete: int = 0) -> None:
        e = self._items.get(key)
        if e is not None:
            e.add -= add
            e.delete -= delete

    def delete(self, key: str) -> None:
        self._items.pop(key, None)

    def get(self, key: str) -> tuple[int, int] | None:
        e = self._items.get(key)
        return None if e is None else (e.add, e.delete)


class UIDTrackingExpectations(ControllerExpectations):
    """Expectations of deletions tracked by pod UID, so a deletion is counted once however
    many times its event arrives (the ReplicaSet and Job controllers' deletions)."""

    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        super().__init__(clock)
        self._uids: dict[str, set[str]] = {}

    def expect_deletions(self, key: str, uids: list[str]) -> None:
        self._uids[key] = set(uids)
        self.expect(key, delete=len(uids))

    def deletion_observed_uid(self, key: str, uid: str) -> None:
        uids = self._uids.get(key)
        if uids is not None and uid in uids:
            uids.discard(uid)
            self.deletion_observed(key)

    def delete(self, key: str) -> None:
        super().delete(key)
        self._uids.pop(key, None)
