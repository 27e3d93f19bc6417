"""The store's maintenance commands: `k8py etcd snapshot save|restore|status` (etcdctl's flags),
`k8py store backup|restore` (the embedded SQLite store) and `k8py migrate-store` (SQLite to etcd)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import click

from k8py.apiserver.server import data_dir_default
from k8py.storage.backend import STORE_FILE, StorageBackend

_existing = click.Path(dir_okay=False, exists=True, path_type=Path)
_data_dir = click.Path(file_okay=False, path_type=Path)


def _progress(what: str, interval: float = 1.0) -> Callable[[int, int], None]:
    """A progress callback that prints `what` (formatted with done and total) at most every `interval`
    seconds, and once done."""
    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done >= total or now - last >= interval:
            last = now
            click.echo(what.format(done=done, total=total))

    return report


@click.group()
def etcd() -> None:
    """etcd's own tools, as etcdctl has them."""


@etcd.group()
def snapshot() -> None:
    """etcd snapshots: save one from a member, restore one into a new member's data dir."""


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--endpoints", default="127.0.0.1:2379", show_default=True,
              help="The client URL of the one member to take the snapshot from.")
@click.option("--cacert", type=_existing, default=None, help="The CA of etcd's serving certificates.")
@click.option("--cert", type=_existing, default=None, help="The client certificate.")
@click.option("--key", type=_existing, default=None, help="Its key.")
def snapshot_save(file: Path, endpoints: str, cacert: Path | None, cert: Path | None, key: Path | None) -> None:
    """Stream a snapshot of etcd's database into FILE (Maintenance.Snapshot, as `etcdctl snapshot save`)."""
    from k8py.storage import snapshot as snap
    from k8py.storage.etcd import TLSFiles

    urls = [u.strip() for u in endpoints.split(",") if u.strip()]
    if len(urls) != 1:
        raise click.UsageError(f"snapshot must be requested to one selected node, not multiple {urls}")
    tls = TLSFiles(cacert, cert, key) if cacert or cert or key else None
    try:
        size = asyncio.run(snap.save(urls[0], tls, file, _progress("received {done} of {total} bytes")))
        status = snap.status(file)
    except (snap.SnapshotError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Snapshot saved at {file}: {size} bytes, revision {status.revision}, {status.total_keys} keys")


@snapshot.command("restore")
@click.argument("file", type=_existing)
@click.option("--data-dir", type=_data_dir, required=True, help="The new member's data dir (must not exist).")
@click.option("--name", default="default", show_default=True, help="The member's name.")
@click.option("--initial-cluster", default="default=http://localhost:2380", show_default=True,
              help="The restored cluster's members, name=peer-url, comma-separated.")
@click.option("--initial-advertise-peer-urls", default="http://localhost:2380", show_default=True,
              help="This member's peer URLs.")
@click.option("--initial-cluster-token", default="etcd-cluster", show_default=True,
              help="The restored cluster's token.")
def snapshot_restore(file: Path, data_dir: Path, name: str, initial_cluster: str, initial_advertise_peer_urls: str,
                     initial_cluster_token: str) -> None:
    """Make a member's data dir from FILE (etcdctl snapshot restore): the keys keep their revisions, so
    the objects keep their resourceVersions. Start etcd on DIR with the same name and URLs."""
    from k8py.storage import snapshot as snap

    try:
        status = snap.restore(file, data_dir, name=name, initial_cluster=initial_cluster,
                              initial_advertise_peer_urls=initial_advertise_peer_urls,
                              initial_cluster_token=initial_cluster_token)
    except snap.SnapshotError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Restored {file} into {data_dir} as member {name}: revision {status.revision}, "
               f"{status.total_keys} keys")


@snapshot.command("status")
@click.argument("file", type=_existing)
def snapshot_status(file: Path) -> None:
    """A snapshot's hash, revision, keys and size (etcdctl snapshot status)."""
    from k8py.storage import snapshot as snap

    try:
        status = snap.status(file)
    except snap.SnapshotError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{'HASH':>10}  {'REVISION':>10}  {'TOTAL KEYS':>10}  {'TOTAL SIZE':>10}")
    click.echo(f"{status.hash:>10x}  {status.revision:>10}  {status.total_keys:>10}  {status.total_size:>10}")


@click.group()
def store() -> None:
    """The embedded SQLite store: online backup and restore."""


@store.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data-dir", type=_data_dir, default=None, help="The store's data dir (default: k8py up's).")
def store_backup(file: Path, data_dir: Path | None) -> None:
    """Copy the store into FILE, consistently, while the API server keeps serving (SQLite's backup API)."""
    from k8py.storage import backup

    db = (data_dir or data_dir_default()) / STORE_FILE
    try:
        summary = asyncio.run(backup.backup(db, file))
    except backup.BackupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Backed up {db} to {file}: {summary.size} bytes, revision {summary.revision}, {summary.keys} keys")


@store.command("restore")
@click.argument("file", type=_existing)
@click.option("--data-dir", type=_data_dir, required=True, help="The data dir to restore the store into.")
@click.option("--force", is_flag=True, help="Replace a store the data dir already has.")
def store_restore(file: Path, data_dir: Path, force: bool) -> None:
    """Make FILE (a backup) the data dir's store; refused while a k8py process has the store open. Objects
    keep their resourceVersions."""
    from k8py.storage import backup

    db = data_dir / STORE_FILE
    try:
        summary = asyncio.run(backup.restore(file, db, force=force))
    except backup.BackupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Restored {file} into {db}: revision {summary.revision}, {summary.keys} keys")


@click.command("migrate-store")
@click.option("--data-dir", type=_data_dir, default=None, help="The SQLite store's data dir (default: k8py up's).")
@click.option("--etcd-servers", required=True, help="etcd's client URLs, comma-separated.")
@click.option("--etcd-prefix", default="/registry", show_default=True, help="The prefix of every key in etcd.")
@click.option("--etcd-cafile", type=_existing, default=None, help="The CA of etcd's serving certificates.")
@click.option("--etcd-certfile", type=_existing, default=None, help="The client certificate for etcd.")
@click.option("--etcd-keyfile", type=_existing, default=None, help="Its key.")
@click.option("--force", is_flag=True, help="Migrate although the prefix has keys (the copied keys replace them).")
def migrate_store(data_dir: Path | None, etcd_servers: str, etcd_prefix: str, etcd_cafile: Path | None,
                  etcd_certfile: Path | None, etcd_keyfile: Path | None, force: bool) -> None:
    """Copy every object of a stopped k8py's SQLite store into etcd, for `k8py up --etcd-servers ...`."""
    from k8py.storage.interface import StoreError
    from k8py.storage.migrate import MigrationError, migrate
    from k8py.storage.sqlite import SQLiteStore

    db = (data_dir or data_dir_default()) / STORE_FILE
    if not db.is_file():
        raise click.ClickException(f"no store at {db}")
    servers = [u.strip() for u in etcd_servers.split(",") if u.strip()]
    backend = StorageBackend(servers, etcd_prefix, etcd_cafile, etcd_certfile, etcd_keyfile)

    async def run() -> None:
        source = SQLiteStore(str(db))
        try:
            await source.start()
        except StoreError as e:
            raise click.ClickException(f"{e}: stop the k8py process serving it first") from None
        try:
            target = backend.create(db.parent)
            await target.start()
            try:
                done = await migrate(source, target, force=force, progress=_progress("copied {done} of {total} keys"))
            finally:
                await target.close()
        finally:
            await source.close()
        click.echo(f"Migrated {done.keys} keys from {db} (revision {done.source_revision}) to "
                   f"{backend.describe(db.parent)} (revision {done.target_revision}).")
        click.echo("resourceVersions are etcd's revisions now: clients must relist (the old resourceVersions mean "
                   f"nothing on etcd; watches from them up to {done.target_revision} are answered 410 Gone).")

    try:
        asyncio.run(run())
    except (StoreError, MigrationError) as e:
        raise click.ClickException(str(e)) from None
