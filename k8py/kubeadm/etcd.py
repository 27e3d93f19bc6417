"""kubeadm's stacked etcd (cmd/kubeadm/app/phases/etcd, app/util/etcd): one etcd member per
control-plane node, a static pod (``/etc/kubernetes/manifests/etcd.yaml``) that the kubelet runs
on the process runtime from the host's ``/usr/bin/etcd``, with TLS for clients and peers from the
etcd CA (``pki/etcd``) and its data in ``/var/lib/etcd``.

`k8py init` starts a one-member cluster (``--initial-cluster-state new``). `k8py join
--control-plane` finds the members' client URLs in the etcd Pods' annotation (as kubeadm does,
with the apiserver-etcd-client certificate), adds itself as a learner (a learner does not count
for quorum, so adding it never stalls the cluster), starts its member with ``--initial-cluster-state
existing`` and the full ``--initial-cluster``, and promotes it once it has caught up with the
leader. `k8py reset` removes the node's member before wiping its data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from etcd3aio import Etcd3Client
from etcd3aio.errors import EtcdError
from grpc.aio import AioRpcError

from k8py.bootstrap.addons import write_manifests
from k8py.client import RESTClient
from k8py.client.resources import PODS
from k8py.kubeadm.config import InitConfig, https_url
from k8py.kubeadm.layout import Layout

Obj = dict[str, Any]
CLIENT_PORT = 2379
PEER_PORT = 2380
METRICS_PORT = 2381
ETCD = "/usr/bin/etcd"
MANIFEST = "etcd.yaml"
# where joining control-plane nodes find the members (kubeadm's constants.EtcdAdvertiseClientUrlsAnnotationKey)
ADVERTISE_CLIENT_URLS_ANNOTATION = "kubeadm.kubernetes.io/etcd.advertise-client-urls"
LOCAL_CLIENT_URL = f"https://127.0.0.1:{CLIENT_PORT}"
RETRY_INTERVAL = 0.5


def client_url(ip: str) -> str:
    return https_url(ip, CLIENT_PORT)


def peer_url(ip: str) -> str:
    return https_url(ip, PEER_PORT)


def etcd_static_pod(config: InitConfig, layout: Layout, initial_cluster: list[tuple[str, str]], state: str) -> Obj:
    """The etcd static pod of this node; ``initial_cluster``: (name, peer URL) of every member, this one included;
    ``state``: ``new`` (init) or ``existing`` (join)."""
    etcd_pki, ip = config.cert_dir / "etcd", config.advertise_address
    flags = {
        "name": config.node_name,
        "data-dir": str(layout.etcd_dir),
        "listen-client-urls": f"{LOCAL_CLIENT_URL},{client_url(ip)}",
        "advertise-client-urls": client_url(ip),
        "listen-peer-urls": peer_url(ip),
        "initial-advertise-peer-urls": peer_url(ip),
        "initial-cluster": ",".join(f"{name}={url}" for name, url in initial_cluster),
        "initial-cluster-state": state,
        "cert-file": str(etcd_pki / "server.crt"),
        "key-file": str(etcd_pki / "server.key"),
        "trusted-ca-file": str(etcd_pki / "ca.crt"),
        "client-cert-auth": "true",
        "peer-cert-file": str(etcd_pki / "peer.crt"),
        "peer-key-file": str(etcd_pki / "peer.key"),
        "peer-trusted-ca-file": str(etcd_pki / "ca.crt"),
        "peer-client-cert-auth": "true",
        "listen-metrics-urls": f"http://127.0.0.1:{METRICS_PORT}",
        "snapshot-count": "10000",
        "experimental-initial-corrupt-check": "true",
        "experimental-watch-progress-notify-interval": "5s",
    }
    probe = {"httpGet": {"host": "127.0.0.1", "path": "/health", "port": METRICS_PORT, "scheme": "HTTP"},
             "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15, "failureThreshold": 8}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "etcd", "namespace": "kube-system",
                     "labels": {"component": "etcd", "tier": "control-plane"},
                     "annotations": {ADVERTISE_CLIENT_URLS_ANNOTATION: client_url(ip)}},
        "spec": {
            # the process runtime runs the host's etcd; the image name is bookkeeping
            "runtimeClassName": "process",
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "containers": [{"name": "etcd", "image": "etcd", "livenessProbe": probe,
                            "command": [ETCD, *(f"--{k}={v}" for k, v in flags.items())]}],
        },
    }


def _write(config: InitConfig, layout: Layout, initial_cluster: list[tuple[str, str]], state: str,
           progress: Callable[[str], None]) -> None:
    layout.etcd_dir.mkdir(parents=True, exist_ok=True)
    layout.etcd_dir.chmod(0o700)
    write_manifests(layout.manifests_dir, {MANIFEST: etcd_static_pod(config, layout, initial_cluster, state)})
    progress(f"[etcd] Creating static Pod manifest for local etcd in \"{layout.manifests_dir}\"")


def write_local_etcd(config: InitConfig, layout: Layout, progress: Callable[[str], None]) -> None:
    """kubeadm's `init phase etcd local`: a one-member cluster."""
    _write(config, layout, [(config.node_name, peer_url(config.advertise_address))], "new", progress)


def etcd_client(cert_dir: Path, endpoints: list[str]) -> Etcd3Client:
    """A client of ``endpoints`` (https URLs) with the apiserver-etcd-client certificate, as kubeadm's."""
    hosts = [url.removeprefix("https://") for url in endpoints]
    return Etcd3Client(hosts, tls_server_name="localhost",  # in every member's serving certificate
                       ca_cert=(cert_dir / "etcd" / "ca.crt").read_bytes(),
                       cert_chain=(cert_dir / "apiserver-etcd-client.crt").read_bytes(),
                       cert_key=(cert_dir / "apiserver-etcd-client.key").read_bytes())


async def member_client_urls(client: RESTClient) -> list[str]:
    """The client URLs the etcd Pods of kube-system advertise (kubeadm's getEtcdEndpoints)."""
    pods = await client.list(PODS, namespace="kube-system", label_selector="component=etcd,tier=control-plane")
    urls = [pod["metadata"].get("annotations", {}).get(ADVERTISE_CLIENT_URLS_ANNOTATION, "")
            for pod in pods["items"]]
    return sorted({url for url in urls if url})


async def _retry(what: str, call: Callable[[], Any], timeout: float) -> Any:
    """``call()`` until it does not raise an etcd error (a busy cluster refuses membership changes for a while)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except (EtcdError, AioRpcError) as e:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {e}") from None
        await asyncio.sleep(RETRY_INTERVAL)


async def join_member(config: InitConfig, layout: Layout, endpoints: list[str], progress: Callable[[str], None],
                      timeout: float = 120.0) -> None:
    """Add this node's member to the cluster at ``endpoints`` (learner, then voting member) and write its pod."""
    url = peer_url(config.advertise_address)
    async with etcd_client(config.cert_dir, endpoints) as etcd:
        assert etcd.cluster is not None
        cluster = etcd.cluster
        members = (await cluster.member_list()).members
        mine = next((m for m in members if url in m.peerURLs), None)
        if mine is None:  # (present already: a join re-run after adding it)
            progress(f"[etcd] Adding etcd member as learner: {url}")
            added = await _retry("adding the etcd member", lambda: cluster.member_add([url], is_learner=True), timeout)
            mine, members = added.member, added.members
        initial = [(config.node_name if m.ID == mine.ID else m.name, m.peerURLs[0]) for m in members]
        _write(config, layout, initial, "existing", progress)
        if mine.isLearner:
            progress(f"[etcd] Waiting for the new etcd member to catch up, then promoting it (ID {mine.ID:x})")
            await _retry("promoting the etcd learner", lambda: cluster.member_promote(mine.ID), timeout)
    progress("[etcd] The new etcd member is a voting member of the cluster")


async def remove_local_member(layout: Layout, cert_dir: Path, progress: Callable[[str], None],
                              timeout: float = 30.0) -> None:
    """kubeadm reset's remove-etcd-member: this node's member leaves the cluster (unless it is the last one),
    removed through any member it was started with.
    Retried for ``timeout``: etcd refuses to remove a member while the rest could not keep quorum (a member
    counts as up after 5 s connected)."""
    manifest = layout.manifests_dir / MANIFEST
    if not manifest.exists():
        return
    command = yaml.safe_load(manifest.read_text())["spec"]["containers"][0]["command"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in command[1:])
    url = flags["initial-advertise-peer-urls"]
    # the local member, and the others it was started with (any member may remove this one, as kubeadm
    # asks the cluster rather than the node: the local member may be down)
    peers = [member.split("=", 1)[1] for member in flags["initial-cluster"].split(",")]
    endpoints = [LOCAL_CLIENT_URL, *(client_url(urlsplit(p).hostname or "") for p in peers if p != url)]
    try:
        async with etcd_client(cert_dir, endpoints) as etcd:
            assert etcd.cluster is not None
            cluster = etcd.cluster
            members = (await _retry("listing the etcd members", lambda: cluster.member_list(timeout=5), timeout)).members
            mine = next((m for m in members if url in m.peerURLs), None)
            if mine is None or len(members) == 1:
                progress("[reset] This is the only remaining etcd member in the etcd cluster, skip removing it")
                return
            await _retry("removing the etcd member", lambda: cluster.member_remove(mine.ID, timeout=5), timeout)
    except OSError as e:  # (the TimeoutError of _retry; a missing certificate)
        progress(f"[reset] WARNING: failed to remove etcd member {url}: {e}; remove it by hand (etcdctl member remove)")
        return
    progress(f"[reset] Removed etcd member {flags['name']} ({url}) from the cluster")
