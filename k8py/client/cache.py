"""The informers' local cache: client-go's ``tools/cache`` Indexer (a thread-safe store with indices).

An :class:`Indexer` maps keys (``"namespace/name"``, or ``"name"`` for cluster-scoped objects)
to the objects a reflector last saw, and keeps any number of *indices* on them: an
:data:`IndexFunc` maps an object to the values it is filed under (``meta_namespace_index_func``
files it under its namespace; a scheduler files pods under ``spec.nodeName``), and
``by_index("namespace", "kube-system")`` answers in time proportional to the answer, not the
cache.  Indices are maintained incrementally on every add/update/delete: the old object's
values are compared with the new one's and only the difference is touched.

Everything runs on one event loop, so unlike client-go's ``threadSafeMap`` there is no lock;
a caller never sees a half-applied update because no method awaits.  Answers are in insertion
order (index buckets are dicts used as ordered sets), which keeps tests and logs deterministic
without sorting on every call.

The objects are the decoded JSON dicts the API server sent, shared with every consumer of the
cache and every event handler: **never mutate them**; copy (``copy.deepcopy``) before changing
anything, as client-go's users must ``DeepCopy`` what a lister returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

Obj = dict[str, Any]
KeyFunc = Callable[[Obj], str]
IndexFunc = Callable[[Obj], list[str]]

NAMESPACE_INDEX = "namespace"


class DeletedFinalStateUnknown(NamedTuple):
    """Handed to ``on_delete`` when a relist finds an object gone whose deletion the watch missed.

    ``obj`` is the last state the cache held, which may be stale.
    """

    key: str
    obj: Obj


def meta_namespace_key(obj: Obj | DeletedFinalStateUnknown) -> str:
    """``"namespace/name"``, or ``"name"`` for a cluster-scoped object.

    A :class:`DeletedFinalStateUnknown` gives its key, so this also serves as client-go's
    ``DeletionHandlingMetaNamespaceKeyFunc`` in ``on_delete`` handlers.
    """
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    md = obj.get("metadata") or {}
    name = md.get("name") or ""
    namespace = md.get("namespace")
    return f"{namespace}/{name}" if namespace else name


deletion_handling_meta_namespace_key = meta_namespace_key


def split_meta_namespace_key(key: str) -> tuple[str | None, str]:
    """The (namespace, name) of a key; namespace None for a cluster-scoped one."""
    parts = key.split("/")
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"unexpected key format: {key!r}")


def meta_namespace_index_func(obj: Obj) -> list[str]:
    """Files an object under its namespace ("" for cluster-scoped objects)."""
    return [(obj.get("metadata") or {}).get("namespace") or ""]


class Indexer:
    """Objects by key, with incrementally maintained indices; see the module docstring."""

    def __init__(
        self, indexers: Mapping[str, IndexFunc] | None = None, key_func: KeyFunc = meta_namespace_key
    ) -> None:
        self.key_func = key_func
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {}
        # index name -> indexed value -> keys (a dict used as an ordered set)
        self._indices: dict[str, dict[str, dict[str, None]]] = {}
        if indexers:
            self.add_indexers(indexers)

    # ---- writes ---------------------------------------------------------------------------------

    def add(self, obj: Obj) -> None:
        """Insert or replace the object under its key."""
        key = self.key_func(obj)
        old = self._items.get(key)
        self._items[key] = obj
        self._update_indices(key, old, obj)

    update = add

    def delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        """Remove the object's key (nothing happens if it is not there)."""
        key = obj.key if isinstance(obj, DeletedFinalStateUnknown) else self.key_func(obj)
        self.delete_by_key(key)

    def delete_by_key(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._update_indices(key, old, None)

    def replace(self, objs: Iterable[Obj]) -> None:
        """Make the cache hold exactly ``objs``; the indices are rebuilt."""
        self._items = {self.key_func(obj): obj for obj in objs}
        self._indices = {name: {} for name in self._indexers}
        for key, obj in self._items.items():
            self._update_indices(key, None, obj)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Add indices (also once items exist: they are indexed now); a taken name is an error."""
        taken = set(indexers) & set(self._indexers)
        if taken:
            raise ValueError(f"indexer conflict: {sorted(taken)}")
        for name, func in indexers.items():
            self._indexers[name] = func
            index: dict[str, dict[str, None]] = {}
            self._indices[name] = index
            for key, obj in self._items.items():
                for value in func(obj):
                    index.setdefault(value, {})[key] = None

    # ---- reads ----------------------------------------------------------------------------------

    def get(self, obj: Obj) -> Obj | None:
        """The cached object with ``obj``'s key."""
        return self._items.get(self.key_func(obj))

    def get_by_key(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list_keys(self) -> list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get_indexers(self) -> dict[str, IndexFunc]:
        return dict(self._indexers)

    def index_keys(self, index_name: str, value: str) -> list[str]:
        """The keys of the objects filed under ``value`` in the index."""
        return list(self._index(index_name).get(value, ()))

    def by_index(self, index_name: str, value: str) -> list[Obj]:
        """The objects filed under ``value`` in the index."""
        items = self._items
        return [items[key] for key in self._index(index_name).get(value, ())]

    def index(self, index_name: str, obj: Obj) -> list[Obj]:
        """The objects sharing at least one of ``obj``'s values in the index (client-go's Index)."""
        index = self._index(index_name)
        keys: dict[str, None] = {}
        for value in self._indexers[index_name](obj):
            keys.update(index.get(value, {}))
        return [self._items[key] for key in keys]

    def list_index_func_values(self, index_name: str) -> list[str]:
        """The values the index currently holds objects under."""
        return list(self._index(index_name))

    # ---- internals ------------------------------------------------------------------------------

    def _index(self, index_name: str) -> dict[str, dict[str, None]]:
        try:
            return self._indices[index_name]
        except KeyError:
            raise KeyError(f"index {index_name!r} does not exist") from None

    def _update_indices(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, func in self._indexers.items():
            old_values = func(old) if old is not None else []
            new_values = func(new) if new is not None else []
            if old_values == new_values:  # the common case: an update that moves nothing
                continue
            index = self._indices[name]
            for value in old_values:
                if value in new_values:
                    continue
                bucket = index.get(value)
                if bucket is not None:
                    bucket.pop(key, None)
                    if not bucket:
                        del index[value]
            for value in new_values:
                index.setdefault(value, {})[key] = None

    # Last in the class: below this line ``list`` in an annotation would name this method.
    def list(self) -> list[Obj]:
        """Every cached object."""
        return list(self._items.values())
