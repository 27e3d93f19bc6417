"""k8py.kubelet.volumes: the volume manager against the real API server of the shared ``cluster``.

Pods are plain dicts with made-up uids (no scheduler, no kubelet), except where a token must be
bound to a real pod.  Mount tests run as root; every test's pods are torn down by the fixture,
which then checks that no mount is left under the test's directory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from k8py.client import PatchType, RESTClient
from k8py.client.resources import (
    CONFIGMAPS,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from k8py.kubelet.envvars import ContainerConfigError
from k8py.kubelet.runtime.interface import Mount
from k8py.kubelet.volumes.atomic_writer import AtomicWriter, FileProjection
from k8py.kubelet.volumes.manager import VolumeManager, VolumeMountError
from k8py.kubelet.volumes.mount import mount_info, mount_points_under
from k8py.kubelet.volumes.token import Token, TokenManager, requires_refresh
from tests.conftest import Cluster

Obj = dict[str, Any]
ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"}
TS_DIR = re.compile(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts (tmpfs, bind) need root")


@pytest.fixture
async def volumes_client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-volumes") as c:
        yield c


@pytest.fixture
async def volume_manager(volumes_client: RESTClient, tmp_path: Path) -> AsyncIterator[VolumeManager]:
    pods_dir = tmp_path / "pods"
    manager = VolumeManager(volumes_client, str(pods_dir), node_name="volumes-node", node_allocatable=ALLOCATABLE)
    try:
        yield manager
    finally:
        for uid in os.listdir(pods_dir) if pods_dir.exists() else []:
            await manager.unmount_volumes(uid)
        assert not mount_points_under(str(tmp_path)), "the volume manager left mounts behind"
        assert not pods_dir.exists() or not os.listdir(pods_dir)


def _pod(namespace: str, volumes: list[Obj], *containers: Obj, **spec: Any) -> Obj:
    return {
        "metadata": {"name": "volpod", "namespace": namespace, "uid": str(uuid.uuid4()),
                     "labels": {"app": "web"}, "annotations": {}},
        "spec": {"volumes": volumes, "containers": list(containers) or [{"name": "app", "image": "busybox"}], **spec},
    }


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _visible(path: str | Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if not name.startswith(".."))


def _jwt_claims(token: str) -> Obj:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- the AtomicWriter on its own ------------------------------------------------------------------


def test_atomic_writer_layout_and_updates(tmp_path: Path) -> None:
    writer = AtomicWriter(str(tmp_path), "test")
    assert writer.write({"a": FileProjection(b"1", 0o644), "dir/sub/b": FileProjection(b"2", 0o600)})
    first = os.readlink(tmp_path / "..data")
    assert TS_DIR.match(first) and _mode(tmp_path / first) == 0o755
    assert os.readlink(tmp_path / "a") == "..data/a" and os.readlink(tmp_path / "dir") == "..data/dir"
    assert (tmp_path / "dir/sub/b").read_bytes() == b"2" and _mode(tmp_path / "dir/sub/b") == 0o600
    assert not writer.write({"a": FileProjection(b"1", 0o644), "dir/sub/b": FileProjection(b"2", 0o600)})
    assert os.readlink(tmp_path / "..data") == first

    assert writer.write({"a": FileProjection(b"changed", 0o644)})  # dir/ went away
    second = os.readlink(tmp_path / "..data")
    assert second != first and not (tmp_path / first).exists()
    assert sorted(os.listdir(tmp_path)) == sorted(["..data", second, "a"])
    assert (tmp_path / "a").read_bytes() == b"changed"

    for bad, message in [
        ("/abs", "must be relative path"),
        ("x/../y", "must not contain '..'"),
        ("..hidden", "must not start with '..'"),
        ("", "must not be empty"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            writer.write({bad: FileProjection(b"", 0o644)})


def test_token_refresh_policy() -> None:
    token = Token("t", expiration=10_000.0, expiration_seconds=3600)  # issued at 6400
    assert not requires_refresh(token, 6400 + 2879)
    assert requires_refresh(token, 6400 + 2881)  # 80% of the lifetime has passed
    long_lived = Token("t", expiration=1_000_000.0, expiration_seconds=48 * 3600)
    issued = 1_000_000.0 - 48 * 3600
    assert not requires_refresh(long_lived, issued + 23 * 3600)
    assert requires_refresh(long_lived, issued + 24 * 3600 + 1)  # never older than 24 h


# ---- configMap, secret ---------------------------------------------------------------------------


async def test_config_map_volume_layout_and_refresh(
    volumes_client: RESTClient, volume_manager: VolumeManager, namespace: str
) -> None:
    await volumes_client.create(CONFIGMAPS, {
        "metadata": {"name": "web-config", "namespace": namespace},
        "data": {"index.html": "hello", "app.conf": "a=1"},
        "binaryData": {"logo.bin": _b64(b"\x00\x01\xff")},
    })
    pod = _pod(namespace, [
        {"name": "cfg", "configMap": {"name": "web-config"}},
        {"name": "items", "configMap": {"name": "web-config", "defaultMode": 0o400, "items": [
            {"key": "app.conf", "path": "etc/app.conf", "mode": 0o600},
            {"key": "index.html", "path": "index"},
        ]}},
    ])
    paths = await volume_manager.mount_volumes(pod)
    uid = pod["metadata"]["uid"]
    cfg, items = Path(paths["cfg"]), Path(paths["items"])
    assert cfg == Path(volume_manager.pods_dir) / uid / "volumes/kubernetes.io~configmap/cfg"
    assert _mode(cfg) == 0o777  # the wrapped emptyDir
    data_dir = os.readlink(cfg / "..data")
    assert TS_DIR.match(data_dir)
    assert _visible(cfg) == ["app.conf", "index.html", "logo.bin"]
    assert os.readlink(cfg / "index.html") == "..data/index.html"
    assert (cfg / "index.html").read_text() == "hello" and (cfg / "logo.bin").read_bytes() == b"\x00\x01\xff"
    assert _mode(cfg / "index.html") == 0o644
    assert _visible(items) == ["etc", "index"]
    assert os.readlink(items / "etc") == "..data/etc"
    assert (items / "etc/app.conf").read_text() == "a=1" and _mode(items / "etc/app.conf") == 0o600
    assert _mode(items / "index") == 0o400

    assert await volume_manager.mount_volumes(pod) == paths  # idempotent: nothing rewritten
    assert os.readlink(cfg / "..data") == data_dir

    await volumes_client.patch(CONFIGMAPS, "web-config", {"data": {"index.html": "v2", "app.conf": None, "new": "n"}},
                               namespace=namespace)
    with pytest.raises(VolumeMountError) as err:
        await volume_manager.refresh(pod)
    assert err.value.messages == [
        'MountVolume.SetUp failed for volume "items" : configmap references non-existent config key: app.conf'
    ]
    assert err.value.reason == "FailedMount"
    new_data_dir = os.readlink(cfg / "..data")
    assert new_data_dir != data_dir and not (cfg / data_dir).exists()
    assert _visible(cfg) == ["index.html", "logo.bin", "new"]
    assert (cfg / "index.html").read_text() == "v2"
    assert (items / "etc/app.conf").read_text() == "a=1"  # a failed refresh leaves the old files


async def test_missing_and_optional_sources(
    volumes_client: RESTClient, volume_manager: VolumeManager, namespace: str
) -> None:
    await volumes_client.create(CONFIGMAPS, {"metadata": {"name": "partial", "namespace": namespace}, "data": {"a": "1"}})
    pod = _pod(namespace, [
        {"name": "gone", "configMap": {"name": "nope"}},
        {"name": "maybe", "configMap": {"name": "nope", "optional": True}},
        {"name": "sec", "secret": {"secretName": "nope-secret"}},
        {"name": "some", "configMap": {"name": "partial", "optional": True,
                                       "items": [{"key": "a", "path": "a"}, {"key": "b", "path": "b"}]}},
        {"name": "key", "secret": {"secretName": "nope-secret", "optional": True, "items": [{"key": "k", "path": "k"}]}},
    ])
    with pytest.raises(VolumeMountError) as err:
        await volume_manager.mount_volumes(pod)
    assert err.value.messages == [
        'MountVolume.SetUp failed for volume "gone" : configmap "nope" not found',
        'MountVolume.SetUp failed for volume "sec" : secret "nope-secret" not found',
    ]
    pod["spec"]["volumes"] = [v for v in pod["spec"]["volumes"] if v["name"] not in ("gone", "sec")]
    paths = await volume_manager.mount_volumes(pod)
    assert _visible(paths["maybe"]) == [] and (Path(paths["maybe"]) / "..data").is_symlink()
    assert _visible(paths["some"]) == ["a"]
    assert _visible(paths["key"]) == []


@needs_root
async def test_secret_volume_is_on_tmpfs(volumes_client: RESTClient, volume_manager: VolumeManager, namespace: str) -> None:
    await volumes_client.create(SECRETS, {"metadata": {"name": "creds", "namespace": namespace},
                                          "data": {"user": _b64(b"admin"), "pass": _b64(b"p\x00ss")}})
    pod = _pod(namespace, [{"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440}}])
    path = Path((await volume_manager.mount_volumes(pod))["creds"])
    assert path.name == "creds" and path.parent.name == "kubernetes.io~secret"
    info = mount_info(str(path))
    assert info is not None and info.fstype == "tmpfs"
    assert (path / "user").read_bytes() == b"admin" and (path / "pass").read_bytes() == b"p\x00ss"
    assert _mode(path / "user") == 0o440

    await volume_manager.unmount_volumes(pod["metadata"]["uid"])
    assert mount_info(str(path)) is None and not path.exists()
    assert not (Path(volume_manager.pods_dir) / pod["metadata"]["uid"]).exists()


# ---- downwardAPI, projected ----------------------------------------------------------------------


async def test_downward_api_volume(volume_manager: VolumeManager, namespace: str) -> None:
    container = {"name": "app", "resources": {"limits": {"cpu": "250m"}, "requests": {"memory": "64Mi"}}}
    pod = _pod(namespace, [{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "meta/namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "meta/uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o600},
        {"path": "team", "fieldRef": {"fieldPath": "metadata.annotations['team']"}},
        {"path": "cpu_millis", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
        {"path": "mem_mi", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "req_mem", "resourceFieldRef": {"containerName": "app", "resource": "requests.memory"}},
    ]}}], container)
    pod["metadata"]["labels"] = {"app": "web", "z": 'q"uote'}
    pod["metadata"]["annotations"] = {"team": "infra"}
    path = Path((await volume_manager.mount_volumes(pod))["info"])
    assert path.parent.name == "kubernetes.io~downward-api"
    assert (path / "labels").read_text() == 'app="web"\nz="q\\"uote"'
    assert (path / "annotations").read_text() == 'team="infra"'
    assert (path / "meta/name").read_text() == "volpod"
    assert (path / "meta/namespace").read_text() == namespace
    assert (path / "meta/uid").read_text() == pod["metadata"]["uid"] and _mode(path / "meta/uid") == 0o600
    assert (path / "team").read_text() == "infra"
    assert (path / "cpu_millis").read_text() == "250"
    assert (path / "mem_mi").read_text() == "8192"  # no limit: the node's allocatable 8Gi
    assert (path / "req_mem").read_text() == str(64 * 2**20)

    pod["metadata"]["labels"]["app"] = "api"
    await volume_manager.refresh(pod)
    assert (path / "labels").read_text() == 'app="api"\nz="q\\"uote"'

    bad = _pod(namespace, [{"name": "bad", "downwardAPI": {"items": [
        {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}},
    ]}}])
    with pytest.raises(VolumeMountError) as err:
        await volume_manager.mount_volumes(bad)
    assert err.value.messages == [
        'MountVolume.SetUp failed for volume "bad" : [unsupported fieldPath: spec.nodeName, container nope not found]'
    ]


async def _create_pod(client: RESTClient, namespace: str, name: str, **spec: Any) -> Obj:
    return await client.create(PODS, {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec},
    })


async def test_projected_volume_and_service_account_token(
    volumes_client: RESTClient, volume_manager: VolumeManager, namespace: str
) -> None:
    client = volumes_client
    await client.create(SERVICE_ACCOUNTS, {"metadata": {"name": "robot", "namespace": namespace}})
    await client.create(CONFIGMAPS, {"metadata": {"name": "app-cm", "namespace": namespace}, "data": {"conf": "c"}})
    await client.create(SECRETS, {"metadata": {"name": "app-secret", "namespace": namespace}, "data": {"key": _b64(b"k")}})
    pod = await _create_pod(client, namespace, "projected", serviceAccountName="robot", volumes=[
        {"name": "all", "projected": {"sources": [
            {"configMap": {"name": "app-cm", "items": [{"key": "conf", "path": "config/app.conf"}]}},
            {"secret": {"name": "app-secret"}},
            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "vault-token"}},
        ]}},
    ])
    api_access = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    paths = await volume_manager.mount_volumes(pod)
    all_ = Path(paths["all"])
    assert all_.parent.name == "kubernetes.io~projected"
    assert _visible(all_) == ["config", "key", "labels", "vault-token"]
    assert (all_ / "config/app.conf").read_text() == "c" and (all_ / "key").read_text() == "k"
    assert (all_ / "labels").read_text() == 'app="projected"'
    token = (all_ / "vault-token").read_text()
    claims = _jwt_claims(token)
    assert claims["aud"] == ["vault"]
    assert claims["sub"] == f"system:serviceaccount:{namespace}:robot"
    assert claims["kubernetes.io"]["pod"] == {"name": "projected", "uid": pod["metadata"]["uid"]}
    assert claims["exp"] - claims["iat"] == 3600
    assert _mode(all_ / "vault-token") == 0o644  # no runAsUser, no fsGroup: defaultMode

    # the kubernetes.io/serviceaccount volume the ServiceAccount admission plugin added
    access = Path(paths[api_access])
    assert _visible(access) == ["ca.crt", "namespace", "token"]
    root_ca = await client.get(CONFIGMAPS, "kube-root-ca.crt", namespace=namespace)
    assert (access / "ca.crt").read_text() == root_ca["data"]["ca.crt"]
    assert (access / "namespace").read_text() == namespace
    assert _jwt_claims((access / "token").read_text())["kubernetes.io"]["serviceaccount"]["name"] == "robot"

    await volume_manager.refresh(pod)  # a fresh token is kept
    assert (all_ / "vault-token").read_text() == token

    clock = [time.time() + 3000]  # 83% of the hour later
    volume_manager.tokens = TokenManager(client, clock=lambda: clock[0])
    await volume_manager.refresh(pod)  # first use of this manager: a new token
    renewed = (all_ / "vault-token").read_text()
    assert renewed != token
    await volume_manager.refresh(pod)
    assert (all_ / "vault-token").read_text() != renewed  # still past 80%: renewed again

    ghost = dict(pod, metadata={**pod["metadata"], "uid": str(uuid.uuid4())})
    with pytest.raises(VolumeMountError, match='MountVolume.SetUp failed for volume "all" : failed to fetch token: '):
        await volume_manager.mount_volumes(ghost)


@needs_root
async def test_run_as_user_and_fs_group_ownership(
    volumes_client: RESTClient, volume_manager: VolumeManager, namespace: str
) -> None:
    await volumes_client.create(CONFIGMAPS, {"metadata": {"name": "cm", "namespace": namespace}, "data": {"f": "x"}})
    pod = await _create_pod(volumes_client, namespace, "owned",
                            securityContext={"runAsUser": 1000, "fsGroup": 2000},
                            volumes=[{"name": "cm", "configMap": {"name": "cm"}}, {"name": "scratch", "emptyDir": {}}])
    api_access = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    paths = await volume_manager.mount_volumes(pod)
    token = Path(paths[api_access]) / "token"
    st = os.stat(token)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o640)  # 0600, then g+r
    cm_file = os.stat(Path(paths["cm"]) / "f")
    assert (cm_file.st_gid, stat.S_IMODE(cm_file.st_mode)) == (2000, 0o644)
    scratch = os.stat(paths["scratch"])
    assert scratch.st_gid == 2000 and scratch.st_mode & stat.S_ISGID and stat.S_IMODE(scratch.st_mode) & 0o777 == 0o777


# ---- emptyDir, hostPath, PVCs --------------------------------------------------------------------


@needs_root
async def test_empty_dir_disk_and_memory(volume_manager: VolumeManager, namespace: str) -> None:
    limited = {"name": "app", "resources": {"limits": {"memory": "32Mi"}}}
    pod = _pod(namespace, [
        {"name": "scratch", "emptyDir": {}},
        {"name": "sized", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "pod-limit", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ], limited)
    paths = await volume_manager.mount_volumes(pod)
    scratch = paths["scratch"]
    assert scratch.endswith("/volumes/kubernetes.io~empty-dir/scratch")
    assert _mode(scratch) == 0o777 and mount_info(scratch) is None
    sized, pod_limit = mount_info(paths["sized"]), mount_info(paths["pod-limit"])
    assert sized is not None and sized.fstype == "tmpfs" and "size=16384k" in sized.super_options.split(",")
    assert pod_limit is not None and "size=32768k" in pod_limit.super_options.split(",")  # the smaller: pod limit
    assert await volume_manager.mount_volumes(pod) == paths
    assert len(mount_points_under(paths["sized"])) == 1  # not mounted twice

    unbounded = _pod(namespace, [{"name": "mem", "emptyDir": {"medium": "Memory"}}])
    info = mount_info((await volume_manager.mount_volumes(unbounded))["mem"])
    assert info is not None and "size=8388608k" in info.super_options.split(",")  # node allocatable 8Gi

    uid = pod["metadata"]["uid"]
    await volume_manager.unmount_volumes(uid)
    assert not mount_points_under(os.path.join(volume_manager.pods_dir, uid))
    assert not os.path.exists(os.path.join(volume_manager.pods_dir, uid))


async def test_without_mount_rights(volume_manager: VolumeManager, namespace: str) -> None:
    volume_manager.mounter.can_mount = False  # what a kubelet without root gets
    pod = _pod(namespace, [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                           {"name": "scratch", "emptyDir": {}}])
    paths = await volume_manager.mount_volumes(pod)
    assert mount_info(paths["mem"]) is None and _mode(paths["mem"]) == 0o777
    os.makedirs(os.path.join(paths["scratch"], "logs"))
    mounts = volume_manager.make_mounts(
        pod, {"name": "app", "volumeMounts": [{"name": "scratch", "mountPath": "/logs", "subPath": "logs"}]}, paths
    )
    assert mounts == [Mount("/logs", os.path.join(os.path.realpath(paths["scratch"]), "logs"), False)]


async def test_host_path_types(volume_manager: VolumeManager, namespace: str, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "file").write_text("f")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(host / "app.sock"))
    try:
        good = {
            "made": (str(host / "a/b"), "DirectoryOrCreate"),
            "dir": (str(host), "Directory"),
            "newfile": (str(host / "new"), "FileOrCreate"),
            "file": (str(host / "file"), "File"),
            "sock": (str(host / "app.sock"), "Socket"),
            "null": ("/dev/null", "CharDevice"),
            "anything": (str(host / "does-not-exist"), ""),
        }
        pod = _pod(namespace, [{"name": n, "hostPath": {"path": p, "type": t}} for n, (p, t) in good.items()])
        paths = await volume_manager.mount_volumes(pod)
        assert paths == {name: path for name, (path, _) in good.items()}
        assert (host / "a/b").is_dir() and _mode(host / "a/b") == 0o755
        assert (host / "new").read_text() == "" and _mode(host / "new") == 0o644

        bad = {
            "not-dir": (str(host / "file"), "Directory", "hostPath type check failed: {} is not a directory"),
            "not-file": (str(host), "File", "hostPath type check failed: {} is not a file"),
            "not-sock": (str(host / "file"), "Socket", "hostPath type check failed: {} is not a socket file"),
            "not-char": (str(host), "CharDevice", "hostPath type check failed: {} is not a character device"),
            "not-block": ("/dev/null", "BlockDevice", "hostPath type check failed: {} is not a block device"),
            "no-parent": (str(host / "missing/f"), "FileOrCreate", "open {}: no such file or directory"),
            "bogus": (str(host), "Bogus", "Bogus is an invalid volume type"),
        }
        pod = _pod(namespace, [{"name": n, "hostPath": {"path": p, "type": t}} for n, (p, t, _) in bad.items()])
        with pytest.raises(VolumeMountError) as err:
            await volume_manager.mount_volumes(pod)
        assert err.value.messages == [
            f'MountVolume.SetUp failed for volume "{n}" : {m.format(p)}' for n, (p, _, m) in bad.items()
        ]
    finally:
        sock.close()


async def _bound_claim(client: RESTClient, namespace: str, claim: str, pv_name: str, source: Obj) -> None:
    """A claim bound to a new PV, as the PV controller would leave them."""
    pvc = await client.create(PERSISTENT_VOLUME_CLAIMS, {
        "metadata": {"name": claim, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": pv_name},
    })
    await client.create(PERSISTENT_VOLUMES, {
        "metadata": {"name": pv_name},
        "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, **source,
                 "claimRef": {"namespace": namespace, "name": claim, "uid": pvc["metadata"]["uid"]}},
    })
    await client.patch(PERSISTENT_VOLUME_CLAIMS, claim, {"status": {"phase": "Bound"}}, namespace=namespace,
                       subresource="status", patch_type=PatchType.MERGE)


async def test_persistent_volume_claims(
    volumes_client: RESTClient, volume_manager: VolumeManager, namespace: str, tmp_path: Path
) -> None:
    client = volumes_client
    (tmp_path / "local").mkdir()
    (tmp_path / "local/data.txt").write_text("local data")
    host_pv, local_pv = f"{namespace}-host", f"{namespace}-local"
    pod = _pod(namespace, [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "fast", "persistentVolumeClaim": {"claimName": "fast", "readOnly": True}},
    ], {"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "fast", "mountPath": "/fast"}]})
    try:
        await _bound_claim(client, namespace, "data", host_pv,
                           {"hostPath": {"path": str(tmp_path / "pvdata"), "type": "DirectoryOrCreate"}})
        await _bound_claim(client, namespace, "fast", local_pv, {
            "local": {"path": str(tmp_path / "local")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["volumes-node"]}]}]}},
        })
        await client.create(PERSISTENT_VOLUME_CLAIMS, {
            "metadata": {"name": "pending", "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        })
        paths = await volume_manager.mount_volumes(pod)
        assert paths["data"] == str(tmp_path / "pvdata") and (tmp_path / "pvdata").is_dir()
        if volume_manager.mounter.can_mount:
            assert paths["fast"].endswith(f"/volumes/kubernetes.io~local-volume/{local_pv}")
            assert mount_info(paths["fast"]) is not None and "ro" in _mount_options(paths["fast"])
        assert (Path(paths["fast"]) / "data.txt").read_text() == "local data"
        mounts = volume_manager.make_mounts(pod, pod["spec"]["containers"][0], paths)
        assert [(m.container_path, m.readonly) for m in mounts] == [("/data", False), ("/fast", True)]

        bad = _pod(namespace, [
            {"name": "p", "persistentVolumeClaim": {"claimName": "pending"}},
            {"name": "g", "persistentVolumeClaim": {"claimName": "ghost"}},
        ])
        with pytest.raises(VolumeMountError) as err:
            await volume_manager.mount_volumes(bad)
        assert err.value.messages == [
            f"error processing PVC {namespace}/pending: PVC is not bound",
            f'error processing PVC {namespace}/ghost: failed to fetch PVC from API server: '
            f'persistentvolumeclaims "ghost" not found',
        ]
    finally:
        await volume_manager.unmount_volumes(pod["metadata"]["uid"])
        for pv in (host_pv, local_pv):
            await client.delete(PERSISTENT_VOLUMES, pv)
    assert (tmp_path / "local/data.txt").read_text() == "local data"  # tear-down unmounted, never deleted


def _mount_options(path: str) -> list[str]:
    """The per-mount options (field 6 of mountinfo), where a bind's ``ro`` shows."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        options = [line.split()[5].split(",") for line in f if line.split()[4] == real]
    return options[-1] if options else []


# ---- container mounts ----------------------------------------------------------------------------


async def test_make_mounts_and_subpaths(
    volumes_client: RESTClient, volume_manager: VolumeManager, namespace: str, tmp_path: Path
) -> None:
    await volumes_client.create(CONFIGMAPS, {"metadata": {"name": "app", "namespace": namespace},
                                             "data": {"app.conf": "conf v1"}})
    volumes = [
        {"name": "cfg", "configMap": {"name": "app"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": str(tmp_path / "hostdir"), "type": "DirectoryOrCreate"}},
    ]
    container = {"name": "app", "volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
        {"name": "scratch", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/logs"},
        {"name": "host", "mountPath": "/host", "readOnly": True},
        {"name": "cfg", "mountPath": "/cfg"},
        {"name": "scratch", "mountPath": "/scratch"},
    ]}
    pod = _pod(namespace, volumes, container)
    uid = pod["metadata"]["uid"]
    paths = await volume_manager.mount_volumes(pod)
    mounts = volume_manager.make_mounts(pod, container, paths, env=[("POD_NAME", "volpod")])
    pins = Path(volume_manager.pods_dir) / uid / "volume-subpaths"
    root = volume_manager.mounter.can_mount
    assert [(m.container_path, m.readonly) for m in mounts] == [
        ("/etc/app.conf", True), ("/logs", False), ("/host", True), ("/cfg", True), ("/scratch", False)
    ]
    assert mounts[0].host_path == (str(pins / "cfg/app/0") if root else os.path.realpath(Path(paths["cfg"]) / "app.conf"))
    assert Path(mounts[0].host_path).read_text() == "conf v1"
    logs = Path(paths["scratch"]) / "volpod/logs"
    assert logs.is_dir() and _mode(logs) == 0o777  # created with the volume's mode
    assert mounts[1].host_path == (str(pins / "scratch/app/1") if root else str(logs))
    assert mounts[2].host_path == str(tmp_path / "hostdir") and mounts[3].host_path == paths["cfg"]
    if root:
        (logs / "x.log").write_text("through the pin")
        assert (pins / "scratch/app/1/x.log").read_text() == "through the pin"
        assert volume_manager.make_mounts(pod, container, paths, env=[("POD_NAME", "volpod")]) == mounts  # reused
        assert len(mount_points_under(str(pins / "scratch"))) == 1

    os.symlink("/etc", Path(paths["scratch"]) / "evil")
    for mount, message in [
        ({"subPath": "../etc"}, "unable to provision SubPath `../etc`: must not contain '..'"),
        ({"subPath": "/etc"}, "error SubPath `/etc` must not be an absolute path"),
        ({"subPathExpr": "$(POD_NAME)/$(MISSING)/$(EMPTY)"}, "missing value for EMPTY, MISSING"),
        ({"subPath": "evil"}, 'failed to prepare subPath for volumeMount "scratch" of container "app"'),
        ({"subPath": "evil/new-dir"}, 'failed to prepare subPath for volumeMount "scratch" of container "app"'),
    ]:
        bad = {"name": "app", "volumeMounts": [{"name": "scratch", "mountPath": "/x", **mount}]}
        with pytest.raises(ContainerConfigError, match=f"^{re.escape(message)}$"):
            volume_manager.make_mounts(pod, bad, paths, env=[("POD_NAME", "p"), ("EMPTY", "")])
    assert not os.path.exists("/etc/new-dir")
    with pytest.raises(ContainerConfigError, match='^cannot find volume "nope" to mount into container "app"$'):
        volume_manager.make_mounts(pod, {"name": "app", "volumeMounts": [{"name": "nope", "mountPath": "/n"}]}, paths)

    await volume_manager.unmount_volumes(uid)
    assert not mount_points_under(str(Path(volume_manager.pods_dir) / uid))
    assert not (Path(volume_manager.pods_dir) / uid).exists()
    assert (tmp_path / "hostdir").is_dir()  # hostPath volumes are the node's, never removed
