"""A highly available control plane stood up like kubeadm's HA workflow, on one machine: four
network namespaces as hosts cp0, cp1, cp2 and worker0, each with its own root file system
(``--rootfs``). `k8py init --control-plane-endpoint <cp0>:6443 --upload-certs` on cp0, then the
printed `k8py join ... --control-plane --certificate-key KEY` on cp1 and cp2 and the worker join
on worker0, all at once (etcd takes one learner at a time; the joins retry).

Asserted: three healthy etcd members (etcdctl with the etcd CA's certificates, inside a host's
namespace), three API servers, etcds, schedulers and controller managers as mirror pods, every
API server serving the same cluster, every node's load balancer (127.0.0.1:6444, kubelet.conf's
server) discovering the three API servers, and `k8py reset` on a control-plane node removing its
etcd member first.

The failure test (issue 9): while a client writes 1,000 ConfigMaps (tests/network/ha_workload.py,
retrying across the three API servers as client-go does) and watches them, kill -9 the etcd
leader, the API server of the host whose controller manager leads, and the leading controller
manager and scheduler processes (found in /proc among the processes of that host's network
namespace only). Every acknowledged write is there afterwards, the watch saw each ConfigMap ADDED
once in resourceVersion order, both leases change holder within leaseDuration + retryPeriod, a
Deployment created meanwhile gets its pods Running on the worker, and the kubelets bring the killed
static pods back to a healthy cluster.

The ``ha`` fixture is module-scoped; the reset test changes the cluster and stays last.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8py.client.leaderelection import JITTER_FACTOR
from k8py.kubeadm.copycerts import create_certificate_key, decode_key, decrypt_bytes
from tests.conftest import wait_for
from tests.network.kubeadm_hosts import KubeadmHosts, join
from tests.network.netns import NetnsLab, requires_netns

pytestmark = [requires_netns]

CONTROL_PLANES = ("cp0", "cp1", "cp2")
WORKERS = ("worker0",)
HOSTS = (*CONTROL_PLANES, *WORKERS)
RETRY_PERIOD = 2.0  # the controller manager's and scheduler's leader election retryPeriod (kube's default)
CONTROL_PLANE_JOIN = re.compile(
    r"k8py join (\S+) --token (\S+) \\\n\t--discovery-token-ca-cert-hash (\S+) \\\n\t--control-plane "
    r"--certificate-key (\S+)")


@dataclass
class HACluster(KubeadmHosts):
    certificate_key: str = ""

    admin_host = "cp0"

    def etcdctl(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        """etcdctl against ``host``'s local member with the etcd healthcheck client's certificate."""
        pki = self.root / host / "etc/kubernetes/pki/etcd"
        return subprocess.run(
            ["nsenter", f"--net={self.netns(host)}", "etcdctl", "--endpoints", "https://127.0.0.1:2379",
             "--cacert", str(pki / "ca.crt"), "--cert", str(pki / "healthcheck-client.crt"),
             "--key", str(pki / "healthcheck-client.key"), *args],
            capture_output=True, text=True, timeout=30, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})

    def members(self, host: str = "cp0") -> list[dict[str, Any]]:
        res = self.etcdctl(host, "member", "list", "-w", "json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)["members"]


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HACluster]:
    root = tmp_path_factory.mktemp("ha")
    with NetnsLab() as lab:
        try:
            for host in HOSTS:
                lab.add_host(host)
            cp0 = lab.hosts["cp0"].ip
            started = time.monotonic()
            init = lab.run(f"/run/netns/{lab.hosts['cp0'].netns}", sys.executable, "-m", "k8py.cli", "init",
                           "--node-name", "cp0", "--apiserver-advertise-address", cp0,
                           "--control-plane-endpoint", f"{cp0}:6443", "--upload-certs",
                           "--runtime", "process", "--ignore-preflight-errors", "all",
                           "--rootfs", str(root / "cp0"), check=False, timeout=300)
            assert init.returncode == 0, init.stdout + init.stderr
            match = CONTROL_PLANE_JOIN.search(init.stdout)
            assert match, init.stdout
            endpoint, token, ca_hash, key = match.groups()
            init_seconds = time.monotonic() - started
            common = (endpoint, token, ca_hash)
            joins = {host: join(lab, root, host, *common, "--control-plane", "--certificate-key", key,
                                "--apiserver-advertise-address", lab.hosts[host].ip)
                     for host in CONTROL_PLANES[1:]}
            joins |= {host: join(lab, root, host, *common) for host in WORKERS}
            for host, proc in joins.items():
                out, _ = proc.communicate(timeout=300)
                assert proc.returncode == 0 and "This node has joined the cluster" in out, f"{host}:\n{out}"
            yield HACluster(lab, root, endpoint, token, ca_hash, init_seconds,
                            time.monotonic() - started - init_seconds, key)
        finally:
            for host in HOSTS:  # what init and join started goes with reset
                if host in lab.hosts:
                    lab.run(f"/run/netns/{lab.hosts[host].netns}", sys.executable, "-m", "k8py.cli", "reset",
                            "--force", "--rootfs", str(root / host), check=False, timeout=120)


def test_three_healthy_etcd_members(ha: HACluster) -> None:
    assert ha.init_seconds < 60 and ha.join_seconds < 60, (ha.init_seconds, ha.join_seconds)
    members = ha.members()
    assert sorted(m["name"] for m in members) == list(CONTROL_PLANES)
    assert not any(m.get("isLearner") for m in members)
    assert {m["peerURLs"][0] for m in members} == {f"https://{ha.ip(h)}:2380" for h in CONTROL_PLANES}
    for host in CONTROL_PLANES:
        health = ha.etcdctl(host, "endpoint", "health")
        assert health.returncode == 0 and "is healthy" in health.stdout + health.stderr, health.stderr


def test_the_control_plane_on_three_nodes_as_mirror_pods(ha: HACluster) -> None:
    wait_for(lambda: ha.kubectl("get", "nodes").count(" Ready ") == len(HOSTS), timeout=60, what="Ready nodes")
    nodes = {n["metadata"]["name"]: n for n in ha.get("nodes")["items"]}
    for host in CONTROL_PLANES:
        assert "node-role.kubernetes.io/control-plane" in nodes[host]["metadata"]["labels"]
        assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in nodes[host]["spec"]["taints"]
    assert "node-role.kubernetes.io/control-plane" not in nodes["worker0"]["metadata"]["labels"]
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        for host in CONTROL_PLANES:
            wait_for(lambda c=component, h=host: ha.get("pod", "-n", "kube-system", f"{c}-{h}")["status"].get(
                "phase") == "Running", timeout=60, what=f"{component}-{host} mirror pod Running")
    etcd = ha.get("pod", "-n", "kube-system", "etcd-cp1")
    assert etcd["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"] == \
        f"https://{ha.ip('cp1')}:2379"


def test_every_api_server_serves_the_same_cluster(ha: HACluster) -> None:
    ha.kubectl("create", "configmap", "written-through-cp1", "--from-literal=k=v", server="cp1")
    for host in CONTROL_PLANES:
        wait_for(lambda h=host: ha.get("configmap", "written-through-cp1", server=h)["data"] == {"k": "v"},
                 timeout=10, what=f"the ConfigMap through {host}'s API server")
        assert sorted(n["metadata"]["name"] for n in ha.get("nodes", server=host)["items"]) == sorted(HOSTS)
    # three controller managers and schedulers, one leader each (identities are <hostname>_<uuid>: the
    # namespaces share the machine's host name, so which node leads is not visible here)
    for lease in ("kube-controller-manager", "kube-scheduler"):
        wait_for(lambda name=lease: ha.get("lease", "-n", "kube-system", name)["spec"].get("holderIdentity"),
                 timeout=30, what=f"{lease} leader")


def test_the_uploaded_certificates_are_encrypted_and_expire_with_their_token(ha: HACluster) -> None:
    secret = ha.get("secret", "-n", "kube-system", "kubeadm-certs")
    assert set(secret["data"]) == {"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.pub",
                                   "sa.key", "etcd-ca.crt", "etcd-ca.key"}
    assert all(b"BEGIN" not in base64.b64decode(v) for v in secret["data"].values())
    owner = secret["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Secret" and owner["name"].startswith("bootstrap-token-") and owner["controller"]
    assert decrypt_bytes(base64.b64decode(secret["data"]["ca.crt"]), decode_key(ha.certificate_key)) == \
        (ha.root / "cp0/etc/kubernetes/pki/ca.crt").read_bytes()
    # uploaded again under a new key (kubeadm's way after the two hours)
    key = create_certificate_key()
    phase = ha.k8py("cp0", "init", "phase", "upload-certs", "--upload-certs", "--certificate-key", key)
    assert phase.returncode == 0 and f"[upload-certs] Using certificate key:\n{key}" in phase.stdout, phase.stderr
    secret = ha.get("secret", "-n", "kube-system", "kubeadm-certs")
    assert decrypt_bytes(base64.b64decode(secret["data"]["etcd-ca.key"]), decode_key(key)) == \
        (ha.root / "cp0/etc/kubernetes/pki/etcd/ca.key").read_bytes()


def test_every_node_reaches_the_api_servers_through_its_local_load_balancer(ha: HACluster) -> None:
    addresses = ", ".join(f"{ha.ip(h)}:6443" for h in CONTROL_PLANES)
    for host in HOSTS:
        kubelet_conf = yaml.safe_load((ha.root / host / "etc/kubernetes/kubelet.conf").read_text())
        assert kubelet_conf["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6444"
        log = ha.root / host / "var/log/k8py/apiserver-lb.log"
        wait_for(lambda p=log: f"discovered API servers: {addresses}\n" in p.read_text(), timeout=30,
                 what=f"{host}'s load balancer discovering the three API servers")
        # with the kubelet's credentials, once TLS bootstrapping (or init) wrote kubelet.conf
        assert f"discovering API servers with {ha.root / host}/etc/kubernetes/kubelet.conf" in log.read_text()
    proxy = ha.get("configmap", "-n", "kube-system", "kube-proxy")
    assert "server: https://127.0.0.1:6444" in proxy["data"]["kubeconfig.conf"]


# ---- the failure test ---------------------------------------------------------------------------------


def _processes(ha: HACluster, host: str, component: str) -> list[int]:
    """PIDs of ``component`` (etcd, or a `k8py` subcommand) run for ``host``: only processes in that host's
    network namespace whose command line names its root file system."""
    netns = os.stat(ha.netns(host))
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(entry / "ns/net")
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) != (netns.st_dev, netns.st_ino) or str(ha.root / host) not in " ".join(argv):
            continue
        if argv[0] == "/usr/bin/etcd" if component == "etcd" else argv[1:4] == ["-m", "k8py.cli", component]:
            pids.append(int(entry.name))
    return pids


def _sockets(pid: int) -> int:
    try:
        return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _leader(ha: HACluster, component: str) -> tuple[str, int]:
    """(host, pid) of the leading controller manager or scheduler. Identities are <hostname>_<uuid> and the
    namespaces share the host name: the leader is told by its informers' watch connections (the others
    only poll the Lease)."""
    found: list[tuple[int, str, int]] = []

    def clear() -> bool:
        found[:] = sorted(((_sockets(pid), host, pid) for host in CONTROL_PLANES
                           for pid in _processes(ha, host, component)), reverse=True)
        return len(found) == len(CONTROL_PLANES) and found[0][0] >= 10 and found[0][0] > 2 * found[1][0]

    wait_for(clear, timeout=30, what=f"one {component} with its informers' connections")
    return found[0][1], found[0][2]


def _etcd_leader(ha: HACluster) -> str:
    res = ha.etcdctl("cp0", "endpoint", "status", "--cluster", "-w", "json")
    assert res.returncode == 0, res.stderr
    statuses = json.loads(res.stdout)
    leader = next(s for s in statuses if s["Status"]["header"]["member_id"] == s["Status"]["leader"])
    ip = leader["Endpoint"].removeprefix("https://").rsplit(":", 1)[0]
    return next(h for h in CONTROL_PLANES if ha.ip(h) == ip)


def _micro_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")


def _new_holder(ha: HACluster, lease: str, before: dict[str, Any], server: str, since: float) -> tuple[float, float]:
    """Wait for another holder of ``lease``: (seconds since ``since``, its acquireTime - the old holder's
    last renewTime)."""
    last, new = dict(before), {}

    def moved() -> bool:
        spec = ha.get("lease", "-n", "kube-system", lease, server=server)["spec"]
        if spec.get("holderIdentity") in (None, last["holderIdentity"]):
            last.update(spec)
            return False
        new.update(spec)
        return True

    wait_for(moved, timeout=30, what=f"a new {lease} leader")
    gap = _micro_time(new["acquireTime"]) - _micro_time(last["renewTime"])
    return round(time.monotonic() - since, 1), round(gap.total_seconds(), 1)


def test_the_cluster_survives_losing_the_etcd_leader_an_api_server_and_the_leaders(
        ha: HACluster, tmp_path: Path) -> None:
    ha.kubectl("create", "namespace", "ha-load")
    cm_host, cm_pid = _leader(ha, "controller-manager")
    scheduler_host, scheduler_pid = _leader(ha, "scheduler")
    apiserver_host = cm_host  # the leaders' host loses its API server too
    etcd_host = _etcd_leader(ha)
    if etcd_host == apiserver_host:  # the harder case: the etcd leader elsewhere (its API server loses its store)
        target = CONTROL_PLANES[(CONTROL_PLANES.index(apiserver_host) + 1) % len(CONTROL_PLANES)]
        member = next(m for m in ha.members() if m["name"] == target)
        moved = ha.etcdctl(etcd_host, "move-leader", format(member["ID"], "x"))
        assert moved.returncode == 0, moved.stderr
        wait_for(lambda: _etcd_leader(ha) == target, timeout=10, what=f"etcd leadership on {target}")
        etcd_host = target
    survivor = next(h for h in CONTROL_PLANES if h not in (etcd_host, apiserver_host))
    (etcd_pid,), (apiserver_pid,) = _processes(ha, etcd_host, "etcd"), _processes(ha, apiserver_host, "apiserver")
    leases = {name: ha.get("lease", "-n", "kube-system", name, server=survivor)["spec"]
              for name in ("kube-controller-manager", "kube-scheduler")}

    progress = tmp_path / "acked"
    workload = subprocess.Popen(
        ["nsenter", f"--net={ha.netns('worker0')}", sys.executable, "-m", "tests.network.ha_workload",
         "--kubeconfig", str(ha.root / "cp0/etc/kubernetes/admin.conf"), "--namespace", "ha-load",
         "--count", "1000", "--progress", str(progress),
         *(arg for h in CONTROL_PLANES for arg in ("--server", f"https://{ha.ip(h)}:6443"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        wait_for(lambda: progress.exists() and int(progress.read_text() or 0) >= 200, timeout=30,
                 what="200 acknowledged writes")
        killed_at = time.monotonic()
        for pid in (etcd_pid, apiserver_pid, cm_pid, scheduler_pid):
            os.kill(pid, signal.SIGKILL)
        acked_at_kill = int(progress.read_text())
        # a Deployment created during the failure, through a surviving API server
        create = ("create", "deployment", "during-failure", "--image", "busybox", "--replicas", "2", "--",
                  "sleep", "3600")
        wait_for(lambda: any(w in ha.kubectl(*create, server=survivor, check=False) for w in ("created", "exists")),
                 timeout=30, what="the Deployment created")
        takeovers: dict[str, float] = {}  # seconds from the kill to the new holder seen
        expiries: dict[str, float] = {}  # the new holder's acquireTime - the old holder's last renewTime
        for name, before in leases.items():
            takeovers[name], expiries[name] = _new_holder(ha, name, before, survivor, killed_at)
        out, err = workload.communicate(timeout=150)
    finally:
        if workload.poll() is None:
            workload.kill()
            workload.communicate()
    assert workload.returncode == 0, err
    outcome = json.loads(out)
    print(f"\nkilled at {acked_at_kill} acked: etcd leader on {etcd_host}, API server + controller-manager leader on "
          f"{apiserver_host}, scheduler leader on {scheduler_host}; ({survivor} intact); writes took {outcome['write_seconds']:.1f}s "
          f"(retries {outcome['retries']}), watch {outcome['watch_seconds']:.1f}s with "
          f"{outcome['watch_restarts']} restarts; leases taken over {takeovers} s after the kill, "
          f"{expiries} s after the old holder's last renewal")

    # every acknowledged write is there
    assert len(outcome["acked"]) == 1000
    names = {cm["metadata"]["name"] for cm in ha.get("configmaps", "-n", "ha-load", server=survivor)["items"]}
    assert set(outcome["acked"]) <= names
    # the watch saw each ConfigMap ADDED exactly once, in resourceVersion order, with no gap it could not resume
    assert not any(e.startswith("410") for e in outcome["watch_errors"]), outcome["watch_errors"]
    events = [(t, n, rv) for t, n, rv in outcome["events"] if n.startswith("cm-")]
    added = [n for t, n, _ in events if t == "ADDED"]
    assert sorted(added) == sorted(outcome["acked"]), "ADDED events missing or repeated"
    rvs = [rv for _, _, rv in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    # the leases moved once client-go's election allows it: a candidate takes a lease leaseDuration after it
    # last saw the record change, and retries every retryPeriod (2 s) * [1, 1 + JITTER_FACTOR); a killed
    # leader does not release its lease (typically 16 s after the kill here)
    for name, before in leases.items():
        bound = before["leaseDurationSeconds"] + 2 * RETRY_PERIOD * (1 + JITTER_FACTOR)
        assert takeovers[name] <= bound, (name, takeovers[name], bound)

    # the Deployment converges on the worker
    def deployed() -> bool:
        pods = ha.get("pods", "-l", "app=during-failure", server=survivor)["items"]
        return len(pods) == 2 and all(p["spec"].get("nodeName") == "worker0" and p["status"].get("phase") == "Running"
                                      for p in pods)
    wait_for(deployed, timeout=60, what="the Deployment's pods Running on worker0")

    # the kubelets restarted the killed etcd member and API server: the cluster is healthy again
    wait_for(lambda: [p for p in _processes(ha, etcd_host, "etcd") if p != etcd_pid], timeout=60,
             what=f"etcd restarted on {etcd_host}")
    wait_for(lambda: [p for p in _processes(ha, apiserver_host, "apiserver") if p != apiserver_pid], timeout=60,
             what=f"the API server restarted on {apiserver_host}")
    for host in CONTROL_PLANES:
        wait_for(lambda h=host: ha.etcdctl(h, "endpoint", "health").returncode == 0, timeout=60,
                 what=f"etcd on {host} healthy")
        wait_for(lambda h=host: ha.kubectl("get", "--raw", "/readyz", server=h, check=False).strip() == "ok",
                 timeout=60, what=f"the API server on {host} ready")
    wait_for(lambda: ha.kubectl("get", "nodes", server=apiserver_host).count(" Ready ") == len(HOSTS), timeout=60,
             what="every node Ready")
    wait_for(lambda: sorted(a["ip"] for a in ha.get("endpoints", "kubernetes")["subsets"][0]["addresses"]) ==
             sorted(ha.ip(h) for h in CONTROL_PLANES), timeout=60, what="the three API servers in default/kubernetes")
    # every node's load balancer saw the killed API server fail (and moved off it if it was the active one)
    for host in HOSTS:
        assert f"server {ha.ip(apiserver_host)}:6443 failed" in (ha.root / host / "var/log/k8py/apiserver-lb.log"
                                                                  ).read_text(), host
    ha.kubectl("delete", "namespace", "ha-load", "--wait=false")
    ha.kubectl("delete", "deployment", "during-failure")


def test_reset_of_a_control_plane_node_removes_its_etcd_member(ha: HACluster) -> None:
    """Changes the cluster: keep this test last."""
    reset = ha.k8py("cp2", "reset", "--force")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "Removed etcd member cp2" in reset.stdout, reset.stdout
    assert "[reset] Stopped the API server load balancer service" in reset.stdout
    assert not _processes(ha, "cp2", "loadbalancer") and not _processes(ha, "cp2", "kubelet")
    assert sorted(m["name"] for m in ha.members()) == ["cp0", "cp1"]
    assert not any((ha.root / "cp2/var/lib/etcd").iterdir())
    ha.kubectl("create", "configmap", "after-reset", server="cp1")
