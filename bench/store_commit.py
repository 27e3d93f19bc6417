"""Commit rates of the embedded store.

1. The raw sqlite single-row commit rate: one 2 KB row per transaction,
   sequential, with the store's pragmas (WAL, synchronous=FULL) and schema.
   This is the ceiling of a store without group commit; the API benchmark
   imports `measure_single_row_commit_rate` to compare itself with it.
2. SQLiteStore creates with 32 concurrent asyncio writers (group commit).
3. SQLiteStore creates from one sequential writer (no batching possible).

    python bench/store_commit.py [--n 5000] [--writers 32] [--value-size 2048] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from k8py.storage.sqlite import INSERT_ROW, SCHEMA, SQLiteStore, connect  # noqa: E402


def _remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def _single_row_commits(path: str, n: int, value_size: int) -> float:
    conn = connect(path)
    try:
        for stmt in SCHEMA:
            conn.execute(stmt)
        value = b"x" * value_size
        start = time.perf_counter()
        for i in range(n):
            rev = i + 2
            conn.execute("BEGIN")
            conn.execute(INSERT_ROW, (rev, f"/bench/{i:08d}", 1, 0, rev, 0, value))
            conn.execute("COMMIT")
        return n / (time.perf_counter() - start)
    finally:
        conn.close()


async def measure_single_row_commit_rate(path: str, n: int, *, value_size: int = 2048) -> float:
    """Rows/s committed one per transaction, sequentially, with the store's
    pragmas and schema. `path` is a scratch database file: it must not exist,
    and it is removed afterwards. Runs in a thread (the loop stays free)."""
    if os.path.exists(path):
        raise FileExistsError(path)
    try:
        return await asyncio.to_thread(_single_row_commits, path, n, value_size)
    finally:
        _remove_db(path)


async def measure_store_create_rate(path: str, n: int, *, writers: int = 32, value_size: int = 2048) -> float:
    """Creates/s through SQLiteStore from `writers` concurrent tasks (n keys in
    all). `path` is a scratch database file: it must not exist, and it is removed."""
    if os.path.exists(path):
        raise FileExistsError(path)
    store = SQLiteStore(path)
    await store.start()
    value = b"x" * value_size
    try:

        async def writer(w: int) -> None:
            for i in range(w, n, writers):
                await store.create(f"/registry/configmaps/bench/{i:08d}", value)

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        return n / (time.perf_counter() - start)
    finally:
        await store.close()
        _remove_db(path)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="rows / keys per measurement")
    ap.add_argument("--writers", type=int, default=32)
    ap.add_argument("--value-size", type=int, default=2048)
    ap.add_argument("--dir", default=None, help="where the scratch databases go (default: a temp dir)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        raw = await measure_single_row_commit_rate(os.path.join(d, "raw.db"), args.n, value_size=args.value_size)
        conc = await measure_store_create_rate(
            os.path.join(d, "conc.db"), args.n, writers=args.writers, value_size=args.value_size
        )
        seq = await measure_store_create_rate(
            os.path.join(d, "seq.db"), args.n, writers=1, value_size=args.value_size
        )
    print(f"sqlite single-row commits (sequential, WAL/FULL): {raw:10,.0f} rows/s")
    print(f"SQLiteStore creates, {args.writers} concurrent writers:        {conc:10,.0f} creates/s  ({conc / raw:.1f}x raw)")
    print(f"SQLiteStore creates, 1 sequential writer:          {seq:10,.0f} creates/s  ({seq / raw:.1f}x raw)")
    print(f"({args.n} keys, {args.value_size} B values)")


if __name__ == "__main__":
    asyncio.run(main())
