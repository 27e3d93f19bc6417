"""Real etcd members for tests: `/usr/bin/etcd` on loopback ports (or on an address of a network
namespace, run through `nsenter --net`), with TLS from a throwaway etcd CA (client and peer
certificates, client-cert-auth on), each member stopped by its own PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from k8py.bootstrap.pki import create_ca, issue_cert, save_pair
from k8py.storage.etcd import TLSFiles
from tests.conftest import free_port, wait_for

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"

needs_etcd = pytest.mark.skipif(not os.path.exists(ETCD), reason="etcd is not installed (scripts/install-node-deps.sh)")


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    ip: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"https://{self.ip}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.ip}:{self.peer_port}"


class EtcdCluster:
    """`size` members on ``ip`` (in the network namespace at path ``netns``, default this process's);
    `client_tls` are the files a client (the API server) uses."""

    def __init__(self, base: Path, size: int = 1, ip: str = "127.0.0.1", netns: str | None = None) -> None:
        self.base = base
        pki = base / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca = create_ca("etcd-ca")
        save_pair(ca, pki / "ca.crt", pki / "ca.key")
        server = issue_cert(ca, "etcd", server=True, client=True, dns_names=["localhost"],
                            ip_addresses=sorted({"127.0.0.1", ip}))
        save_pair(server, pki / "server.crt", pki / "server.key")
        client = issue_cert(ca, "kube-apiserver-etcd-client", client=True)
        save_pair(client, pki / "client.crt", pki / "client.key")
        self.pki = pki
        self.client_tls = TLSFiles(pki / "ca.crt", pki / "client.crt", pki / "client.key")
        self.nsenter = ["nsenter", f"--net={netns}"] if netns else []
        self.members = [Member(f"m{i}", free_port(), free_port(), base / f"m{i}", ip) for i in range(size)]

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self) -> EtcdCluster:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            self.start_member(m, initial, "new")
        wait_for(self.healthy, timeout=30, what="etcd healthy")
        return self

    def start_member(self, m: Member, initial_cluster: str, state: str) -> None:
        p = self.pki
        argv = [
            *self.nsenter, ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
            "--cert-file", str(p / "server.crt"), "--key-file", str(p / "server.key"),
            "--trusted-ca-file", str(p / "ca.crt"), "--client-cert-auth",
            "--peer-cert-file", str(p / "server.crt"), "--peer-key-file", str(p / "server.key"),
            "--peer-trusted-ca-file", str(p / "ca.crt"), "--peer-client-cert-auth",
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--listen-metrics-urls", "http://127.0.0.1:0", "--log-level", "error",
        ]
        log = open(self.base / f"{m.name}.log", "ab")  # noqa: SIM115 - the child keeps it
        m.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def etcdctl(self, *args: str, endpoints: list[str] | None = None) -> str:
        p = self.pki
        out = subprocess.run(
            [*self.nsenter, ETCDCTL, "--endpoints", ",".join(endpoints or self.live_endpoints()), "--cacert", str(p / "ca.crt"),
             "--cert", str(p / "client.crt"), "--key", str(p / "client.key"), *args],
            capture_output=True, text=True, timeout=20, env={**os.environ, "ETCDCTL_API": "3"},
        )
        if out.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def live_endpoints(self) -> list[str]:
        return [m.client_url for m in self.members if m.proc is not None and m.proc.poll() is None]

    def healthy(self) -> bool:
        try:
            self.etcdctl("endpoint", "health")
            return True
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def leader(self) -> Member | None:
        """The member etcd says is the leader (by its client URL in `endpoint status`), None when none is."""
        try:
            status = self.etcdctl("endpoint", "status")
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        for line in status.splitlines():
            cols = [c.strip() for c in line.split(",")]
            if len(cols) > 4 and cols[4] == "true":
                return next(m for m in self.members if m.client_url == cols[0])
        return None

    def wait_leader(self, timeout: float = 20.0) -> Member:
        return wait_for(self.leader, timeout=timeout, what="an etcd leader")

    def kill(self, m: Member) -> None:
        """kill -9 of one member."""
        assert m.proc is not None
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(10)

    def restart(self, m: Member) -> None:
        """Start a member that was stopped again, on its data dir."""
        self.start_member(m, ",".join(f"{o.name}={o.peer_url}" for o in self.members), "existing")

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.terminate()
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait(10)

