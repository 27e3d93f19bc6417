"""etcd snapshots: `etcdctl snapshot save|restore|status`, as `k8py etcd snapshot ...`.

Save streams etcd's backend database over the Maintenance.Snapshot gRPC API (the stubs the
EtcdStore uses) into `FILE.part`, fsyncs it and renames it, as etcdctl does. etcd sends the
database and then, as the stream's last 32 bytes, its sha256: the file keeps that trailer (etcdctl's
restore checks it) and save checks it first. Restore and status run etcd 3.4's own etcdctl: restore
rewrites the cluster membership and keeps every key with its revisions, so the API server's
resourceVersions survive a restore.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from etcd3aio._protobuf import rpc_pb2

from k8py.storage.etcd import Endpoint, TLSFiles

ETCDCTL = "/usr/bin/etcdctl"
_SHA256_SIZE = 32


class SnapshotError(Exception):
    """A snapshot could not be saved, checked or restored."""


@dataclass(frozen=True, slots=True)
class SnapshotStatus:
    """`etcdctl snapshot status`: the database's hash, revision, keys and size."""

    hash: int
    revision: int
    total_keys: int
    total_size: int


async def save(endpoint: str, tls: TLSFiles | None, path: Path,
               progress: Callable[[int, int], None] | None = None) -> int:
    """Stream a snapshot of the member at `endpoint` into `path`; returns the bytes written (the database
    and its sha256). `progress(received, total)` is told the database's bytes after every message."""
    part = path.with_name(path.name + ".part")
    ep = Endpoint(endpoint, tls)
    digest = hashlib.sha256()
    db_size = received = 0
    trailer = b""
    try:
        with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            async for resp in ep.maintenance.Snapshot(rpc_pb2.SnapshotRequest()):
                blob = resp.blob
                if not db_size:  # the first message: its bytes plus the remaining ones are the database
                    db_size = len(blob) + resp.remaining_bytes
                data = blob[:max(0, db_size - received)]
                digest.update(data)
                trailer += blob[len(data):]
                out.write(blob)
                received += len(data)
                if progress is not None and data:
                    progress(received, db_size)
            out.flush()
            os.fsync(out.fileno())
        if received != db_size or len(trailer) != _SHA256_SIZE:
            raise SnapshotError(f"snapshot from {endpoint}: {received} + {len(trailer)} bytes, expected {db_size} "
                                f"+ {_SHA256_SIZE} (a sha256)")
        if trailer != digest.digest():
            raise SnapshotError(f"snapshot from {endpoint}: sha256 mismatch (corrupt transfer)")
        os.rename(part, path)
    except grpc.aio.AioRpcError as e:
        raise SnapshotError(f"snapshot from {endpoint}: {e.details() or e.code().name}") from None
    except OSError as e:
        raise SnapshotError(f"snapshot to {path}: {e}") from None
    finally:
        part.unlink(missing_ok=True)
        await ep.channel.close()
    return received + len(trailer)


def status(path: Path) -> SnapshotStatus:
    """The snapshot file's hash, revision, key count and size, read by etcdctl."""
    out = _etcdctl("snapshot", "status", str(path), "--write-out", "json")
    try:
        doc = json.loads(out)
        return SnapshotStatus(doc["hash"], doc["revision"], doc["totalKey"], doc["totalSize"])
    except (ValueError, KeyError) as e:
        raise SnapshotError(f"etcdctl snapshot status: unexpected output {out!r}") from e


def restore(path: Path, data_dir: Path, *, name: str, initial_cluster: str, initial_advertise_peer_urls: str,
            initial_cluster_token: str) -> SnapshotStatus:
    """A new member data directory from the snapshot (etcdctl snapshot restore, which checks the sha256);
    returns the snapshot's status."""
    if not path.is_file():
        raise SnapshotError(f"snapshot {path} does not exist")
    if data_dir.exists():
        raise SnapshotError(f"data dir {data_dir} exists: restore into a new directory")
    snapshot = status(path)
    _etcdctl("snapshot", "restore", str(path), "--data-dir", str(data_dir), "--name", name,
             "--initial-cluster", initial_cluster, "--initial-advertise-peer-urls", initial_advertise_peer_urls,
             "--initial-cluster-token", initial_cluster_token)
    return snapshot


def _etcdctl(*args: str) -> str:
    if not os.access(ETCDCTL, os.X_OK):
        raise SnapshotError(f"{ETCDCTL} is not installed (Debian's etcd-client package)")
    res = subprocess.run([ETCDCTL, *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ETCDCTL_API": "3"})
    if res.returncode != 0:
        # etcdctl logs JSON lines before its error
        lines = [ln.removeprefix("Error: ") for ln in (res.stderr or res.stdout).splitlines() if not ln.startswith("{")]
        raise SnapshotError(f"etcdctl {args[0]} {args[1]} {args[2]}: {'; '.join(lines) or res.stderr.strip()}")
    return res.stdout
