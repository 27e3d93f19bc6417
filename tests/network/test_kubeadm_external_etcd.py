"""`k8py init --config` with an external etcd (kubeadm's ClusterConfiguration etcd.external), on one
machine: network namespaces as hosts etcd0 (a one-member etcd with its own CA and client-cert-auth,
tests/etcdcluster.py run through `nsenter --net`) and master0 (its own ``--rootfs``), the etcd
client files where kubeadm's external-etcd guide puts them (pki/etcd/ca.crt,
pki/apiserver-etcd-client.{crt,key}).

Asserted: no etcd static pod or process on master0, the API server's mirror pod carrying the
external --etcd-* flags, the admin kubeconfig working, its objects under /registry in the external
etcd, and `k8py reset` wiping the node while leaving the external etcd's member and data alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.etcdcluster import EtcdCluster, needs_etcd
from tests.network.netns import NetnsLab, requires_netns

pytestmark = [requires_netns, needs_etcd]

# the files the API server uses, at kubeadm's paths under master0's root file system
CLIENT_FILES = {"ca.crt": "etc/kubernetes/pki/etcd/ca.crt", "client.crt": "etc/kubernetes/pki/apiserver-etcd-client.crt",
                "client.key": "etc/kubernetes/pki/apiserver-etcd-client.key"}


@dataclass
class ExternalEtcdNode:
    lab: NetnsLab
    etcd: EtcdCluster
    rootfs: Path  # master0's
    init_seconds: float

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.lab.hosts['master0'].netns}"

    def kubectl(self, *args: str) -> str:
        res = self.lab.run(self.netns, "kubectl", "--kubeconfig", str(self.rootfs / "etc/kubernetes/admin.conf"),
                           *args, check=False, timeout=30)
        assert res.returncode == 0, f"kubectl {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
        return res.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def k8py(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.netns, sys.executable, "-m", "k8py.cli", *args, "--rootfs", str(self.rootfs),
                            check=False, timeout=120)

    def registry_keys(self) -> list[str]:
        """The keys under /registry, read by etcdctl in etcd0's namespace with the etcd's own client certificate."""
        return self.etcd.etcdctl("get", "/registry/", "--prefix", "--keys-only").split()


def _processes(netns: str) -> list[list[str]]:
    """The command lines of the processes in the network namespace ``netns`` (a path)."""
    want = os.stat(netns)
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ns = os.stat(entry / "ns/net")
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and (ns.st_dev, ns.st_ino) == (want.st_dev, want.st_ino):
            found.append(argv)
    return found


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalEtcdNode]:
    base = tmp_path_factory.mktemp("external-etcd")
    rootfs = base / "master0"
    with NetnsLab() as lab:
        etcd0, master0 = lab.add_host("etcd0"), lab.add_host("master0")
        etcd = EtcdCluster(base / "etcd", ip=etcd0.ip, netns=f"/run/netns/{etcd0.netns}")
        try:
            etcd.start()
            for name, path in CLIENT_FILES.items():
                (rootfs / path).parent.mkdir(parents=True, exist_ok=True)
                (rootfs / path).write_bytes((etcd.pki / name).read_bytes())
            config = base / "cfg.yaml"
            config.write_text(yaml.safe_dump_all([
                {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration",
                 "nodeRegistration": {"name": "master0"}, "localAPIEndpoint": {"advertiseAddress": master0.ip}},
                {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
                 "etcd": {"external": {"endpoints": etcd.endpoints, "caFile": str(rootfs / CLIENT_FILES["ca.crt"]),
                                       "certFile": str(rootfs / CLIENT_FILES["client.crt"]),
                                       "keyFile": str(rootfs / CLIENT_FILES["client.key"])}}},
            ]))
            started = time.monotonic()
            init = lab.run(f"/run/netns/{master0.netns}", sys.executable, "-m", "k8py.cli", "init", "--config",
                           str(config), "--runtime", "process", "--ignore-preflight-errors", "all",
                           "--rootfs", str(rootfs), check=False, timeout=120)
            assert init.returncode == 0, init.stdout + init.stderr
            assert "Your Kubernetes control-plane has initialized successfully!" in init.stdout
            yield ExternalEtcdNode(lab, etcd, rootfs, time.monotonic() - started)
        finally:  # what init started goes with reset (asserted by the last test)
            lab.run(f"/run/netns/{master0.netns}", sys.executable, "-m", "k8py.cli", "reset", "--force",
                    "--rootfs", str(rootfs), check=False, timeout=120)
            etcd.stop()


def test_no_local_etcd_and_the_api_server_on_the_external_one(node: ExternalEtcdNode) -> None:
    assert node.init_seconds < 30, node.init_seconds
    manifests = node.rootfs / "etc/kubernetes/manifests"
    assert sorted(p.name for p in manifests.iterdir()) == [
        "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
    assert not any(argv[0] == "/usr/bin/etcd" for argv in _processes(node.netns))
    assert not (node.rootfs / "etc/kubernetes/pki/etcd/ca.key").exists()  # no etcd CA of the node's own
    for name, path in CLIENT_FILES.items():  # the external etcd's files, as they were given
        assert (node.rootfs / path).read_bytes() == (node.etcd.pki / name).read_bytes(), path
    pods = {p["metadata"]["name"]: p for p in node.get("pods", "-n", "kube-system", "-l", "tier=control-plane")["items"]}
    assert sorted(pods) == ["kube-apiserver-master0", "kube-controller-manager-master0", "kube-scheduler-master0"]
    apiserver = pods["kube-apiserver-master0"]
    assert apiserver["metadata"]["annotations"]["kubernetes.io/config.mirror"]
    command = apiserver["spec"]["containers"][0]["command"]
    flags = {arg: command[i + 1] for i, arg in enumerate(command[:-1]) if arg.startswith("--etcd-")}
    assert flags["--etcd-servers"] == node.etcd.endpoints[0]
    assert flags["--etcd-cafile"] == str(node.rootfs / CLIENT_FILES["ca.crt"])
    assert flags["--etcd-certfile"] == str(node.rootfs / CLIENT_FILES["client.crt"])
    assert flags["--etcd-keyfile"] == str(node.rootfs / CLIENT_FILES["client.key"])
    stored = yaml.safe_load(node.get("configmap", "-n", "kube-system", "kubeadm-config")["data"]["ClusterConfiguration"])
    assert stored["etcd"] == {"external": {"endpoints": node.etcd.endpoints,
                                           "caFile": flags["--etcd-cafile"], "certFile": flags["--etcd-certfile"],
                                           "keyFile": flags["--etcd-keyfile"]}}


def test_objects_land_in_the_external_etcd(node: ExternalEtcdNode) -> None:
    node.kubectl("create", "configmap", "in-external-etcd", "--from-literal=k=v")
    assert node.get("configmap", "in-external-etcd")["data"] == {"k": "v"}
    keys = node.registry_keys()
    assert "/registry/configmaps/default/in-external-etcd" in keys
    assert "/registry/minions/master0" in keys or "/registry/nodes/master0" in keys, keys


def test_reset_wipes_the_node_and_leaves_the_external_etcd_alone(node: ExternalEtcdNode) -> None:
    """Changes the node: keep this test last."""
    keys = node.registry_keys()
    reset = node.k8py("reset", "--force")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "etcd member" not in reset.stdout, reset.stdout
    # the external etcd: its one member, healthy, with every key the cluster wrote
    assert node.etcd.healthy()
    members = json.loads(node.etcd.etcdctl("member", "list", "-w", "json"))["members"]
    assert [m["name"] for m in members] == ["m0"]
    # (the control plane wrote on until reset stopped it; only the API server's TTL'd lease may have gone since)
    missing = set(keys) - set(node.registry_keys())
    assert not {k for k in missing if not k.startswith("/registry/masterleases/")}, missing
    assert "/registry/configmaps/default/in-external-etcd" in keys
    # the node: no static pods, PKI, kubelet state or kubeconfigs, and nothing of it running
    for directory in ("etc/kubernetes/manifests", "etc/kubernetes/pki", "var/lib/kubelet"):
        assert not any((node.rootfs / directory).iterdir()), directory
    assert not any((node.rootfs / "etc/kubernetes" / name).exists() for name in ("admin.conf", "kubelet.conf"))
    assert not [argv for argv in _processes(node.netns) if str(node.rootfs) in " ".join(argv)]
