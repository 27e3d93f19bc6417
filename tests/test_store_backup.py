"""Backup, restore and migration of the API server's store, on real `k8py up` clusters: an etcd snapshot
saved, etcd wiped and restored (same objects, same resourceVersions), an online backup of the SQLite
store taken under writes (a consistent copy), and `k8py migrate-store` from SQLite to etcd."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.conftest import Cluster, http, start_cluster
from tests.etcdcluster import EtcdCluster, needs_etcd

pytestmark = needs_etcd

QUIET = ("--disable-scheduler", "--disable-controller-manager")


def k8py(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "k8py.cli", *args], capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"k8py {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def etcd_flags(etcd: EtcdCluster) -> tuple[str, ...]:
    tls = etcd.client_tls
    return ("--etcd-servers", ",".join(etcd.endpoints), "--etcd-cafile", str(tls.ca_file),
            "--etcd-certfile", str(tls.cert_file), "--etcd-keyfile", str(tls.key_file))


def create_objects(c: Cluster) -> None:
    c.kubectl("create", "namespace", "keep")
    for i in range(3):
        c.kubectl("create", "configmap", f"cm{i}", "-n", "keep", f"--from-literal=i={i}")
    c.kubectl("create", "secret", "generic", "s", "-n", "keep", "--from-literal=password=p")


def objects(c: Cluster) -> dict[str, tuple[str, str, Any]]:
    """name -> (uid, resourceVersion, data) of the objects create_objects made."""
    items = c.kubectl_json("get", "configmaps,secrets", "-n", "keep", "--field-selector=metadata.name!=kube-root-ca.crt")
    return {f"{o['kind']}/{o['metadata']['name']}": (o["metadata"]["uid"], o["metadata"]["resourceVersion"], o["data"])
            for o in items["items"]}


def test_etcd_snapshot_save_wipe_restore(tmp_path: Path) -> None:
    etcd = EtcdCluster(tmp_path / "etcd", 1).start()
    c: Cluster | None = None
    try:
        c = start_cluster(tmp_path / "up", extra=(*etcd_flags(etcd), *QUIET))
        create_objects(c)
        before = objects(c)
        old_rv = before["ConfigMap/cm0"][1]
        tls = etcd.client_tls
        snap = tmp_path / "etcd.db"
        out = k8py("etcd", "snapshot", "save", str(snap), "--endpoints", etcd.endpoints[0],
                   "--cacert", str(tls.ca_file), "--cert", str(tls.cert_file), "--key", str(tls.key_file)).stdout
        assert f"Snapshot saved at {snap}" in out and "bytes" in out, out
        assert not snap.with_name("etcd.db.part").exists()
        assert "REVISION" in k8py("etcd", "snapshot", "status", str(snap)).stdout
        # Everything goes: the API server, etcd and etcd's data.
        assert c.stop() == 0
        etcd.stop()
        m = etcd.members[0]
        shutil.rmtree(m.data_dir)
        restored = tmp_path / "restored"
        restore = ("etcd", "snapshot", "restore", str(snap), "--data-dir", str(restored), "--name", m.name,
                   "--initial-cluster", f"{m.name}={m.peer_url}", "--initial-advertise-peer-urls", m.peer_url)
        assert "Restored" in k8py(*restore).stdout
        again = k8py(*restore, check=False)
        assert again.returncode == 1 and "exists" in again.stderr, again.stderr
        m.data_dir = restored  # etcd takes the membership from the restored data, not from the flags
        etcd.start()
        c = start_cluster(tmp_path / "up", port=c.port, extra=(*etcd_flags(etcd), *QUIET))
        assert objects(c) == before
        # A watch from a resourceVersion of before the restore resumes, or is 410 Gone and a relist works.
        watch = http(c, "GET", f"/api/v1/namespaces/keep/configmaps?watch=1&resourceVersion={old_rv}&timeoutSeconds=1")
        if watch.status == 200:
            names = {json.loads(line)["object"]["metadata"]["name"] for line in watch.body.splitlines()}
            assert {"cm1", "cm2"} <= names, watch.body
        else:
            assert watch.status == 410, watch.body
            listed = http(c, "GET", "/api/v1/namespaces/keep/configmaps").json()
            assert {"cm0", "cm1", "cm2"} <= {i["metadata"]["name"] for i in listed["items"]}
        c.kubectl("create", "configmap", "after", "-n", "keep")
    finally:
        if c is not None:
            c.stop()
        etcd.stop()


def test_sqlite_online_backup_and_restore(tmp_path: Path) -> None:
    c = start_cluster(tmp_path / "a", extra=QUIET)
    stop = threading.Event()
    acked: list[int] = []

    def write() -> None:  # one writer, in order: a consistent copy holds a prefix of its writes
        i = 0
        while not stop.is_set() and i < 2000:
            r = http(c, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"w{i}"}})
            assert r.status == 201, r.body
            acked.append(i)
            i += 1

    writer = threading.Thread(target=write)
    try:
        create_objects(c)
        before = objects(c)
        writer.start()
        while len(acked) < 20 and writer.is_alive():
            writer.join(0.05)
        acked_before = len(acked)
        backup = tmp_path / "state.backup"
        out = k8py("store", "backup", str(backup), "--data-dir", str(tmp_path / "a")).stdout
        assert "Backed up" in out, out
        busy = k8py("store", "restore", str(backup), "--data-dir", str(tmp_path / "a"), "--force", check=False)
        assert busy.returncode == 1 and "in use" in busy.stderr, busy.stderr
    finally:
        stop.set()
        writer.join(30)
        c.stop()
    assert len(acked) > acked_before  # the writes went on during the backup
    assert "Restored" in k8py("store", "restore", str(backup), "--data-dir", str(tmp_path / "b")).stdout
    refused = k8py("store", "restore", str(backup), "--data-dir", str(tmp_path / "b"), check=False)
    assert refused.returncode == 1 and "exists" in refused.stderr, refused.stderr
    c = start_cluster(tmp_path / "b", extra=QUIET)
    try:
        assert objects(c) == before
        items = http(c, "GET", "/api/v1/namespaces/default/configmaps").json()["items"]
        written = sorted(int(i["metadata"]["name"][1:]) for i in items if i["metadata"]["name"].startswith("w"))
        assert written == list(range(len(written))) and len(written) >= acked_before
    finally:
        c.stop()


def test_migrate_store_from_sqlite_to_etcd(tmp_path: Path) -> None:
    data = tmp_path / "up"
    c = start_cluster(data, extra=QUIET)
    etcd = EtcdCluster(tmp_path / "etcd", 1).start()
    tls = etcd.client_tls
    migrate = ("migrate-store", "--data-dir", str(data), "--etcd-servers", etcd.endpoints[0],
               "--etcd-cafile", str(tls.ca_file), "--etcd-certfile", str(tls.cert_file),
               "--etcd-keyfile", str(tls.key_file))
    try:
        create_objects(c)
        before = objects(c)
        busy = k8py(*migrate, check=False)
        assert busy.returncode == 1 and "in use" in busy.stderr, busy.stderr
        assert c.stop() == 0
        out = k8py(*migrate).stdout
        assert "Migrated" in out and "relist" in out and "copied" in out, out
        refused = k8py(*migrate, check=False)
        assert refused.returncode == 1 and "already has" in refused.stderr, refused.stderr
        c = start_cluster(data, port=c.port, extra=(*etcd_flags(etcd), *QUIET))
        after = objects(c)
        assert {k: (uid, data) for k, (uid, _, data) in after.items()} == {
            k: (uid, data) for k, (uid, _, data) in before.items()}
        assert "/registry/configmaps/keep/cm0" in etcd.etcdctl("get", "--prefix", "--keys-only", "/registry/configmaps/")
        c.kubectl("create", "configmap", "after", "-n", "keep")
    finally:
        c.stop()
        etcd.stop()
