"""A multi-host test network in network namespaces: "hosts" on a test LAN, "pods" on the hosts.

Everything lives in namespaces named ``k8pytest-<run id>-...`` (the run id is random per
:class:`NetnsLab`); nothing is added to the caller's own namespace, and :meth:`NetnsLab.close`
deletes every namespace it made, by name (their links go with them), after killing by PID the
processes it started.  Topology (addresses for the default ``subnet`` 10.197.0.0/24)::

    lan   k8pytest-<id>-lan: bridge "lan" with 10.197.0.254/24 (``outside_ip``: a stand-in for
          the world beyond the node network; the lan namespace forwards nothing)
    host  k8pytest-<id>-<name>: "eth0" (its node IP, 10.197.0.1, .2, ...) whose veth peer
          <name> is a port of the lan bridge; loopback up; ip_forward=1; default route via
          10.197.0.254, as a real machine's default route goes out of its uplink
    pod   k8pytest-<id>-<host>-<pod>: "eth0" with an address of the host's podCIDR, default
          route via the podCIDR's first address, which sits on the host's bridge "cni0" (a
          stand-in for the CNI bridge plugin, for tests that do not need containerd)

Use it as a context manager, or through the ``netns_lab`` fixture (bring it into a test module
with ``netns_lab = netns.netns_lab``, or import it in a conftest.py).  Tests that need it carry
the ``requires_netns`` mark (skipped without root, ``ip``, ``nft``, ``sysctl`` or busybox).  A
run killed outright (SIGKILL, SIGTERM) cannot clean up: its namespaces are the ones named
``k8pytest-<id>-*``.  API:

* ``lab.add_host(name) -> Host`` (``.name``, ``.netns``, ``.ip``);
  ``lab.add_pod(host, pod_cidr, name, ip=None) -> Pod`` (``.name``, ``.netns``, ``.ip``,
  ``.host``), ``ip`` defaulting to the next free address of ``pod_cidr`` after the gateway;
* ``lab.run(netns, *argv, check=True, timeout=10, input=None)``: a command in a namespace
  (``ip netns exec``; or ``nsenter --net`` when ``netns`` is a path, e.g. a pod's namespace
  that containerd mounted), a ``CompletedProcess[str]``; the other calls taking ``netns`` too; ``lab.popen(netns, *argv)``: a tracked
  background process;
* ``lab.ping(netns, ip)``: one busybox ping, the ``CompletedProcess`` (returncode 0: answered);
* ``lab.serve_peer(netns, port, bind="0.0.0.0")``: a TCP server that answers each connection
  with the client address it sees; ``lab.peer_seen(netns, ip, port)``: connect to one and
  return that address (or raise ``subprocess.CalledProcessError``);
* ``lab.tcp_connect(netns, ip, port)``: the outcome of a TCP connect, ``"ok"``, ``"timeout"``
  (dropped) or an errno name (``"ECONNREFUSED"``, ``"EHOSTUNREACH"``: rejected);
* ``lab.count_lan(*cidrs) -> LanCounter``: an nftables counter in the lan namespace of the
  frames entering the LAN bridge (from any host) addressed to those CIDRs;
  ``counter.packets()`` reads it;
* ``lab.snmp(netns, "Icmp", "OutDestUnreachs")``: a counter of ``/proc/net/snmp`` there;
* ``lab.relay_loopback(netns, port)``: 127.0.0.1:port inside ``netns`` relayed (by threads of the
  test process) to 127.0.0.1:port of the test's own namespace, so that a component run in a
  host namespace reaches the test cluster's API server with its usual kubeconfig;
  ``lab.expose_loopback(netns, port)`` the other way round;
* ``lab.spawn(netns, *argv, log=path)``: a background process in the namespace's network only
  (``nsenter --net``, the machine's mounts), as a k8py node needs for containerd.

Every call blocks (they are short ``ip``/``nft`` runs): from an async test whose event loop runs
something that must keep going (an informer, an agent), call them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest
from pyroute2.netns import create_socket

PREFIX = "k8pytest"
BUSYBOX = "/bin/busybox"

requires_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(b) for b in ("ip", "nft", "sysctl")) or not os.path.exists(BUSYBOX),
    reason="needs root, iproute2, nftables, sysctl and /bin/busybox (network namespaces)",
)

# A TCP server answering every connection with the client's address, as this end sees it.
_PEER_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("listening", flush=True)
while True:
    c, addr = s.accept()
    with c:
        c.sendall(addr[0].encode() + b"\\n")
"""
_PEER_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
    print(s.makefile().readline().strip())
"""
# A TCP connect's outcome: "ok", "timeout", or the errno's name (ECONNREFUSED, EHOSTUNREACH...).
_CONNECT = """
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("ok")
except TimeoutError:
    print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
"""


@dataclass
class Host:
    name: str
    netns: str
    ip: str
    pods: list[Pod] = field(default_factory=list)


@dataclass
class Pod:
    name: str
    netns: str
    ip: str
    host: Host


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _socket(netns: str | None) -> socket.socket:
    """A TCP socket of ``netns`` (None: this process's own namespace)."""
    if netns is None:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    return create_socket(netns, socket.AF_INET, socket.SOCK_STREAM, flags=0)


class LoopbackRelay:
    """A listener on 127.0.0.1:``port`` in namespace ``listen`` whose connections go to
    127.0.0.1:``port`` in namespace ``connect`` (None: the test's own namespace)."""

    def __init__(self, listen: str | None, connect: str | None, port: int) -> None:
        self.port = port
        self.connect = connect
        self.listener = _socket(listen)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"relay {listen}->{connect}:{port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            up = _socket(self.connect)
            try:
                up.settimeout(5)
                up.connect(("127.0.0.1", self.port))
                up.settimeout(None)
            except OSError:
                up.close()
                conn.close()
                continue
            with self._lock:
                self._conns += [conn, up]
            for src, dst in ((conn, up), (up, conn)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()

    def close(self) -> None:
        for sock in (self.listener, *self._conns):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
            except OSError:
                pass
            sock.close()


@dataclass
class LanCounter:
    lab: NetnsLab
    table: str

    def packets(self) -> int:
        out = self.lab.run(self.lab.lan, "nft", "list", "table", "bridge", self.table).stdout
        return sum(int(line.split("packets")[1].split()[0]) for line in out.splitlines() if "counter packets" in line)


class NetnsLab:
    """Namespaces, links and processes of one test network; see the module docstring."""

    def __init__(self, subnet: str = "10.197.0.0/24") -> None:
        self.id = secrets.token_hex(3)
        self.subnet = ipaddress.IPv4Network(subnet)
        addresses = list(self.subnet.hosts())
        self.outside_ip = str(addresses[-1])
        self._free_ips = [str(a) for a in addresses[:-1]]
        self.lan = f"{PREFIX}-{self.id}-lan"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._relays: list[LoopbackRelay] = []
        self._counters = 0
        try:
            self._add_netns(self.lan)
            self._ip(self.lan, "link", "add", "lan", "type", "bridge")
            self._ip(self.lan, "addr", "add", f"{self.outside_ip}/{self.subnet.prefixlen}", "dev", "lan")
            self._ip(self.lan, "link", "set", "lan", "up")
        except BaseException:
            self.close()
            raise

    # ---- building --------------------------------------------------------------------------------

    def _ip(self, netns: str, *args: str) -> None:
        subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True, text=True, timeout=10)

    def _add_netns(self, name: str) -> None:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, text=True, timeout=10)
        self._namespaces.append(name)
        self._ip(name, "link", "set", "lo", "up")

    def add_host(self, name: str) -> Host:
        """A host namespace on the LAN with the next node IP of the subnet."""
        if name in self.hosts:
            raise ValueError(f"host {name} exists")
        host = Host(name, f"{PREFIX}-{self.id}-{name}", self._free_ips.pop(0))
        self._add_netns(host.netns)
        self._ip(self.lan, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        self._ip(self.lan, "link", "set", name, "master", "lan", "up")
        self._ip(host.netns, "addr", "add", f"{host.ip}/{self.subnet.prefixlen}", "dev", "eth0")
        self._ip(host.netns, "link", "set", "eth0", "up")
        self._ip(host.netns, "route", "add", "default", "via", self.outside_ip)
        self.run(host.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.hosts[name] = host
        return host

    def add_pod(self, host: Host, pod_cidr: str, name: str, ip: str | None = None) -> Pod:
        """A pod namespace on ``host``'s bridge ``cni0`` (made with the podCIDR's gateway on first use)."""
        net = ipaddress.IPv4Network(pod_cidr)
        gateway = str(net.network_address + 1)
        if not host.pods:
            self._ip(host.netns, "link", "add", "cni0", "type", "bridge")
            self._ip(host.netns, "addr", "add", f"{gateway}/{net.prefixlen}", "dev", "cni0")
            self._ip(host.netns, "link", "set", "cni0", "up")
        ip = ip or str(net.network_address + 2 + len(host.pods))
        pod = Pod(name, f"{host.netns}-{name}", ip, host)
        self._add_netns(pod.netns)
        self._ip(host.netns, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
        self._ip(host.netns, "link", "set", name, "master", "cni0", "up")
        self._ip(pod.netns, "addr", "add", f"{ip}/{net.prefixlen}", "dev", "eth0")
        self._ip(pod.netns, "link", "set", "eth0", "up")
        self._ip(pod.netns, "route", "add", "default", "via", gateway)
        host.pods.append(pod)
        return pod

    def count_lan(self, *cidrs: str) -> LanCounter:
        """Count the frames entering the LAN bridge addressed to ``cidrs`` (bridge family, prerouting)."""
        self._counters += 1
        table = f"k8pytest-count{self._counters}"
        rules = "".join(f"\t\tip daddr {ipaddress.IPv4Network(c)} counter\n" for c in cidrs)
        script = f"table bridge {table} {{\n\tchain prerouting {{\n\t\ttype filter hook prerouting priority 0;\n{rules}\t}}\n}}\n"
        self.run(self.lan, "nft", "-f", "-", input=script)
        return LanCounter(self, table)

    # ---- running things --------------------------------------------------------------------------

    def run(
        self, netns: str, *argv: str, check: bool = True, timeout: float = 10, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        enter = ["nsenter", f"--net={netns}", "--"] if netns.startswith("/") else ["ip", "netns", "exec", netns]
        return subprocess.run(
            [*enter, *argv], capture_output=True, text=True, check=check, timeout=timeout, input=input,
        )

    def popen(self, netns: str, *argv: str, log: Path | None = None) -> subprocess.Popen[str]:
        """A background process in ``netns`` (stdout piped; stderr to ``log``), killed at :meth:`close`."""
        with open(log or os.devnull, "w") as stderr:
            proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=subprocess.PIPE, stderr=stderr, text=True)
        self._procs.append(proc)
        return proc

    def spawn(self, netns: str, *argv: str, log: Path) -> subprocess.Popen[str]:
        """A background process (and its own session) in ``netns``'s network namespace only: unlike
        ``ip netns exec`` it keeps the machine's mounts (cgroupfs, /run/netns), as a node's
        containerd needs; output to ``log``; killed at :meth:`close` (its session's leftovers are
        the caller's to clean up, e.g. with ``k8py killall``)."""
        with open(log, "w") as out:
            proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
                stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def relay_loopback(self, netns: str, port: int) -> LoopbackRelay:
        """Relay 127.0.0.1:``port`` in ``netns`` to 127.0.0.1:``port`` here (until :meth:`close`)."""
        relay = LoopbackRelay(netns, None, port)
        self._relays.append(relay)
        return relay

    def expose_loopback(self, netns: str, port: int) -> LoopbackRelay:
        """Relay 127.0.0.1:``port`` here to 127.0.0.1:``port`` in ``netns`` (until :meth:`close`):
        the test reaches a server that listens on a host namespace's loopback."""
        relay = LoopbackRelay(None, netns, port)
        self._relays.append(relay)
        return relay

    def ping(self, netns: str, ip: str, timeout: int = 2) -> subprocess.CompletedProcess[str]:
        return self.run(netns, BUSYBOX, "ping", "-c", "1", "-W", str(timeout), ip, check=False, timeout=timeout + 5)

    def serve_peer(self, netns: str, port: int, bind: str = "0.0.0.0") -> subprocess.Popen[str]:
        """Start a server answering each TCP connection with the client address it sees; returns when it listens."""
        proc = self.popen(netns, sys.executable, "-c", _PEER_SERVER, bind, str(port))
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "listening":
            raise RuntimeError(f"peer server in {netns} did not start (exit {proc.poll()})")
        return proc

    def peer_seen(self, netns: str, ip: str, port: int, timeout: float = 3) -> str:
        """Connect from ``netns`` to a :meth:`serve_peer` server: the client address it saw."""
        return self.run(
            netns, sys.executable, "-c", _PEER_CLIENT, ip, str(port), str(timeout), timeout=timeout + 5
        ).stdout.strip()

    def tcp_connect(self, netns: str, ip: str, port: int, timeout: float = 2) -> str:
        """Try a TCP connection from ``netns``: ``"ok"``, ``"timeout"`` (dropped) or the errno's name
        (``"ECONNREFUSED"``: a reset or ICMP port unreachable; ``"EHOSTUNREACH"``, ``"ENETUNREACH"``...)."""
        return self.run(netns, sys.executable, "-c", _CONNECT, ip, str(port), str(timeout), timeout=timeout + 5).stdout.strip()

    def snmp(self, netns: str, group: str, counter: str) -> int:
        """One counter of ``/proc/net/snmp`` in ``netns`` (e.g. ``"Icmp", "OutDestUnreachs"``)."""
        lines = [line.split() for line in self.run(netns, "cat", "/proc/net/snmp").stdout.splitlines()]
        for names, values in zip(lines[::2], lines[1::2], strict=True):
            if names[0] == f"{group}:":
                return int(values[names.index(counter)])
        raise KeyError(f"{group}:{counter}")

    # ---- teardown --------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill the processes started here (by PID), then delete every namespace made here (by name)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
        for relay in self._relays:
            relay.close()
        self._relays.clear()
        errors = []
        for name in reversed(self._namespaces):
            res = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True, timeout=10)
            if res.returncode != 0 and os.path.exists(f"/run/netns/{name}"):
                errors.append(f"{name}: {res.stderr.strip()}")
        self._namespaces.clear()
        if errors:
            raise RuntimeError("could not delete network namespaces: " + "; ".join(errors))

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@pytest.fixture
def netns_lab() -> Iterator[NetnsLab]:
    """A fresh :class:`NetnsLab`, torn down after the test."""
    with NetnsLab() as lab:
        yield lab
