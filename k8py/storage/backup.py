"""Online backup and restore of the embedded SQLite store (`k8py store backup|restore`).

Backup copies the database with SQLite's online backup API in one step on a read connection of its
own: that step is one read transaction, so the copy is the snapshot of one commit while the API
server (WAL) keeps writing. The copy goes to `FILE.part`, is checked by opening it as a store, is
made a single file (journal_mode=DELETE) and is then renamed into place.

Restore copies a backup into `<data-dir>/state.db` the same way, holding the `flock` that every
SQLiteStore takes on its database, so it refuses while a store (a running `k8py up`) has it open. The
rows are the same rows, so every object keeps its resourceVersion and the history since the last
compaction: clients' lists and watches carry on as after a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from k8py.storage.interface import StoreError
from k8py.storage.sqlite import SQLiteStore


class BackupError(Exception):
    """A backup or restore that could not be made."""


@dataclass(frozen=True, slots=True)
class StoreSummary:
    revision: int
    keys: int
    size: int  # bytes of the database file


async def summarize(db: Path) -> StoreSummary:
    """The store's revision and live key count, read by opening it as a store (it must not be in use)."""
    store = SQLiteStore(str(db))
    try:
        await store.start()
    except StoreError as e:
        raise BackupError(str(e)) from None
    try:
        return StoreSummary(await store.current_revision(), await store.count(""), db.stat().st_size)
    finally:
        await store.close()


async def backup(db: Path, path: Path) -> StoreSummary:
    """A consistent copy of the store `db` (in use or not) at `path`."""
    if not db.is_file():
        raise BackupError(f"no store at {db}")
    part = path.with_name(path.name + ".part")
    try:
        part.unlink(missing_ok=True)
        os.close(os.open(part, os.O_WRONLY | os.O_CREAT, 0o600))  # it holds every Secret: private, like the store
        _copy(sqlite3.connect(db, timeout=30), part)
        summary = await summarize(part)
        with contextlib.closing(sqlite3.connect(part)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
        _fsync(part)
        os.rename(part, path)
        _fsync(path.parent)
        return summary
    except (sqlite3.Error, OSError) as e:
        raise BackupError(f"backup of {db} to {path}: {e}") from None
    finally:
        part.unlink(missing_ok=True)


async def restore(path: Path, db: Path, *, force: bool = False) -> StoreSummary:
    """Replace the store `db` (which must not be in use; it must not exist unless `force`) with a backup."""
    if not path.is_file():
        raise BackupError(f"backup {path} does not exist")
    _check_backup(path)
    if db.exists() and db.stat().st_size > 0 and not force:
        raise BackupError(f"{db} exists: restore into a new data dir, or --force to replace it")
    db.parent.mkdir(parents=True, exist_ok=True)
    with _store_lock(db):
        try:
            _copy(sqlite3.connect(f"file:{path}?mode=ro", uri=True), db)
        except sqlite3.Error as e:
            raise BackupError(f"restore into {db}: {e}") from None
    return await summarize(db)


def _copy(src: sqlite3.Connection, dest: Path) -> None:
    """Copy `src`'s database into `dest` in one backup step (one read transaction) and close both."""
    with contextlib.closing(src), contextlib.closing(sqlite3.connect(dest, timeout=30)) as out:
        src.backup(out)


def _check_backup(path: Path) -> None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise BackupError(f"{path} is corrupt (PRAGMA quick_check)")
            conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            conn.execute("SELECT count(*) FROM kv").fetchone()
    except sqlite3.Error as e:
        raise BackupError(f"{path} is not a k8py store backup: {e}") from None


@contextlib.contextmanager
def _store_lock(db: Path) -> Iterator[None]:
    """The flock SQLiteStore holds on its database while it is open."""
    fd = os.open(db, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"{db} is in use (stop the k8py process serving it first)") from None
        yield
    finally:
        os.close(fd)  # after sqlite's connections: closing an fd of the file drops this process' POSIX locks


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
