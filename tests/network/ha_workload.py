"""The client side of the HA failure test (test_kubeadm_ha.py), run in a host's network namespace.

A watch on the namespace's ConfigMaps starts first (from a LIST's resourceVersion); then ``--count``
ConfigMaps are created at ``--rate`` per second by a few workers, retrying as client-go does: a
connection error, a timeout, a 5xx or a 429 is retried on the next API server of ``--server``; a 409
AlreadyExists after a retry means an earlier attempt was applied. The watch resumes from its last
resourceVersion on the next server when its stream breaks, errs or stalls. The number of writes
acknowledged so far is kept in ``--progress``; the outcome is printed as JSON.

    python -m tests.network.ha_workload --kubeconfig admin.conf --server https://IP:6443 ... \\
        --namespace NS --count 1000 --progress FILE
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import orjson

from k8py.client import RESTClient
from k8py.client.config import load_kubeconfig
from k8py.client.errors import AlreadyExists, APIError, ClientError, Gone, ServerError, TooManyRequests
from k8py.client.resources import CONFIGMAPS

WORKERS = 10
STALL = 5.0  # seconds without an event while writes are missing: the watch moves on


@dataclasses.dataclass
class Outcome:
    acked: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> "created" | "existed"
    retries: dict[str, int] = dataclasses.field(default_factory=dict)  # error kind -> count
    events: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)  # (type, name, rv)
    watch_restarts: int = 0
    watch_errors: list[str] = dataclasses.field(default_factory=list)
    write_seconds: float = 0.0
    watch_seconds: float = 0.0


async def _write(clients: list[RESTClient], ns: str, name: str, first: int, out: Outcome) -> None:
    attempt = 0
    while True:
        client = clients[(first + attempt) % len(clients)]
        try:
            await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": name}, "data": {"i": name}}, namespace=ns)
            out.acked[name] = "created"
            return
        except AlreadyExists:
            if attempt == 0:
                raise
            out.acked[name] = "existed"
            return
        except ClientError as e:  # a TransportError (connection, timeout) or an APIError
            if isinstance(e, APIError) and not isinstance(e, ServerError | TooManyRequests):
                raise
            kind = f"{type(e).__name__} {e.code}" if isinstance(e, APIError) else type(e).__name__
            out.retries[kind] = out.retries.get(kind, 0) + 1
        attempt += 1
        await asyncio.sleep(min(0.05 * 2 ** attempt, 1.0))


async def _writes(clients: list[RESTClient], ns: str, count: int, rate: float, progress: Path,
                  out: Outcome) -> None:
    started = time.monotonic()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            await _write(clients, ns, f"cm-{i:04d}", i, out)

    async def report() -> None:
        while True:
            progress.write_text(str(len(out.acked)))
            await asyncio.sleep(0.1)

    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
    finally:
        reporter.cancel()
        progress.write_text(str(len(out.acked)))
    out.write_seconds = time.monotonic() - started


async def _watch(clients: list[RESTClient], ns: str, rv: str, count: int, deadline: float, out: Outcome) -> None:
    started = time.monotonic()
    added: set[str] = set()
    server = 0
    while len(added) < count and time.monotonic() < deadline:
        watch = clients[server % len(clients)].watch(CONFIGMAPS, namespace=ns, resource_version=rv,
                                                     timeout_seconds=30, allow_bookmarks=True)
        try:
            async with watch:
                iterator = aiter(watch)
                while len(added) < count:
                    event = await asyncio.wait_for(anext(iterator), STALL)
                    rv = event.object["metadata"]["resourceVersion"]
                    if event.type == "BOOKMARK":
                        continue
                    name = event.object["metadata"]["name"]
                    out.events.append((event.type, name, int(rv)))
                    if event.type == "ADDED":
                        added.add(name)
        except Gone as e:  # a gap that cannot be resumed: the test fails on it
            out.watch_errors.append(f"410 Gone: {e}")
            break
        except (ClientError, TimeoutError, StopAsyncIteration) as e:
            out.watch_errors.append(f"{clients[server % len(clients)].config.server}: {type(e).__name__} {e}"[:300])
            server += 1
            out.watch_restarts += 1
            await asyncio.sleep(0.1)
    out.watch_seconds = time.monotonic() - started


async def run(args: argparse.Namespace) -> Outcome:
    config = load_kubeconfig(args.kubeconfig)
    clients = [RESTClient(dataclasses.replace(config, server=s), component="ha-workload", timeout=5.0,
                          connect_timeout=2.0) for s in args.server]
    out = Outcome()
    try:
        listed = await clients[0].list(CONFIGMAPS, namespace=args.namespace)
        rv = listed["metadata"]["resourceVersion"]
        watcher = asyncio.create_task(_watch(clients, args.namespace, rv, args.count,
                                             time.monotonic() + args.timeout, out))
        await _writes(clients, args.namespace, args.count, args.rate, args.progress, out)
        await watcher
    finally:
        for client in clients:
            await client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--server", action="append", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="writes started per second")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the watch may take")
    parser.add_argument("--progress", type=Path, required=True)
    out = asyncio.run(run(parser.parse_args()))
    sys.stdout.buffer.write(orjson.dumps(dataclasses.asdict(out)))


if __name__ == "__main__":
    main()
