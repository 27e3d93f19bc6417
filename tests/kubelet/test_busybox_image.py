"""Names resolve in k8py's busybox image, as ``kubectl exec pod -- wget -qO- http://web`` needs.

The image's layer is unpacked into a temp dir and its programs run there with ``chroot``, inside a
network namespace made for the module (``k8pytest-bb-<random>``, loopback only), where one helper
process serves HTTP on port 80 (answering with the address the client reached), keeps port 81 open
without ever answering, and plays the cluster DNS on 127.0.0.1:53. The rootfs's /etc/resolv.conf
names only 127.0.0.1, so no lookup leaves the namespace. Teardown kills the helper by PID and
deletes the namespace and the temp dir by name.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from k8py.kubelet.runtime.cri.imagebuild import BUSYBOX, DEFAULT_PATH, build_layer, busybox_entries

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("chroot") or not BUSYBOX.exists(),
    reason="needs root, iproute2 and chroot (a network namespace and a chroot) and busybox-static",
)

SEARCH = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
# The fake cluster DNS's A records; every other name is NXDOMAIN.
RECORDS = {"web.default.svc.cluster.local.": "127.0.0.3", "both.example.": "127.0.0.4"}
# The rootfs's /etc/hosts, consulted before DNS.
HOSTS = "127.0.0.1 localhost\n127.0.0.2 pinned.example both.example\n"

HELPER = """
import socket, sys, threading
import dns.message, dns.rcode, dns.rdatatype, dns.rrset
records = dict(arg.split("=") for arg in sys.argv[1:])

def http():
    srv = socket.create_server(("0.0.0.0", 80))
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.recv(4096)
            body = conn.getsockname()[0].encode() + b"\\n"
            conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))

silent = socket.create_server(("0.0.0.0", 81))  # accepts (the backlog) and never answers
threading.Thread(target=http, daemon=True).start()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    data, peer = udp.recvfrom(4096)
    query = dns.message.from_wire(data)
    reply = dns.message.make_response(query)
    name, rdtype = query.question[0].name.to_text().lower(), query.question[0].rdtype
    print(name, dns.rdatatype.to_text(rdtype), flush=True)
    if name not in records:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    elif rdtype == dns.rdatatype.A:
        reply.answer.append(dns.rrset.from_text(name, 30, "IN", "A", records[name]))
    udp.sendto(reply.to_wire(), peer)
"""


@dataclass
class Rootfs:
    path: Path
    netns: str
    helper: subprocess.Popen[str]

    def run(self, *argv: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``argv`` in the rootfs, found on the image's PATH as ``kubectl exec`` finds it."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, "chroot", str(self.path), *argv], input=input,
            capture_output=True, text=True, timeout=20, env=dict([DEFAULT_PATH.split("=", 1)]),
        )

    def queries(self) -> list[str]:
        """The A questions the fake DNS got since the last call (``name.``), up to a marker lookup."""
        self.run("/bin/busybox", "nslookup", "-type=a", "mark.", "127.0.0.1")
        assert self.helper.stdout is not None
        names = []
        while (line := self.helper.stdout.readline()) != "mark. A\n":
            assert line, "the fake DNS exited"
            name, rdtype = line.split()
            if rdtype == "A" and name != "mark.":
                names.append(name)
        return names


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Rootfs]:
    pytest.importorskip("dns.message", reason="needs dnspython (the fake DNS server)")
    path = Path(tempfile.mkdtemp(prefix="k8pytest-bb-"))
    netns = f"k8pytest-bb-{secrets.token_hex(4)}"
    helper: subprocess.Popen[str] | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(build_layer(busybox_entries()))) as tar:
            tar.extractall(path, filter="fully_trusted")
        (path / "etc/hosts").write_text(HOSTS)
        (path / "etc/resolv.conf").write_text(f"nameserver 127.0.0.1\nsearch {' '.join(SEARCH)}\noptions ndots:5\n")
        subprocess.run(["ip", "netns", "add", netns], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        helper = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", HELPER, *(f"{k}={v}" for k, v in RECORDS.items())],
            stdout=subprocess.PIPE, text=True,
        )
        assert helper.stdout is not None and helper.stdout.readline() == "ready\n"
        yield Rootfs(path, netns, helper)
    finally:
        if helper is not None:
            helper.kill()
            helper.wait()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(path)


def http_get(fs: Rootfs, tool: str, name: str) -> str:
    """GET http://name/ with busybox ``wget`` or ``nc``: the address the server was reached at."""
    if tool == "wget":
        r = fs.run("wget", "-qO-", f"http://{name}/")
    else:
        r = fs.run("nc", name, "80", input=f"GET / HTTP/1.0\r\nHost: {name}\r\n\r\n")
    assert r.returncode == 0, (tool, name, r.returncode, r.stderr)
    return r.stdout.rsplit("\n", 2)[-2]


@pytest.mark.parametrize("tool", ["wget", "nc"])
def test_names_from_etc_hosts(rootfs: Rootfs, tool: str) -> None:
    assert http_get(rootfs, tool, "localhost") == "127.0.0.1"
    assert http_get(rootfs, tool, "pinned.example") == "127.0.0.2"
    # /etc/hosts comes before DNS (which has both.example as 127.0.0.4), and DNS is not asked.
    assert http_get(rootfs, tool, "both.example") == "127.0.0.2"
    assert not [q for q in rootfs.queries() if "example" in q or "localhost" in q]


@pytest.mark.parametrize("tool", ["wget", "nc"])
def test_names_from_dns_with_the_search_list(rootfs: Rootfs, tool: str) -> None:
    rootfs.queries()
    assert http_get(rootfs, tool, "web") == "127.0.0.3"  # completed by the first search domain
    assert rootfs.queries() == ["web.default.svc.cluster.local."]
    assert http_get(rootfs, tool, "web.default.svc.cluster.local") == "127.0.0.3"
    # ndots:5: the search list is tried first, then the name as given
    assert rootfs.queries() == [f"web.default.svc.cluster.local.{d}." for d in SEARCH] + ["web.default.svc.cluster.local."]
    r = rootfs.run("wget", "-qO-", "http://nosuch/")
    assert r.returncode == 1 and "bad address" in r.stderr


def test_wget_timeout_options(rootfs: Rootfs) -> None:
    """busybox-static's wget applet segfaults on ``-T`` and refuses ``--timeout``; the ``wget``
    on the image's PATH takes both."""
    crash = rootfs.run("/bin/busybox", "wget", "-T", "2", "-qO-", "http://127.0.0.1/")
    if crash.returncode not in (-11, 139):
        pytest.skip(f"this busybox's wget takes -T itself (exit {crash.returncode})")
    for opts in (["-T", "5"], ["-T5"], ["--timeout=5"], ["--timeout", "5"]):
        r = rootfs.run("wget", *opts, "-qO-", "http://web/")
        assert (r.returncode, r.stdout) == (0, "127.0.0.3\n"), (opts, r.stderr)
    t0 = time.monotonic()
    r = rootfs.run("wget", "-T", "1", "-qO-", "http://localhost:81/")  # a server that never answers
    assert r.returncode == -signal.SIGTERM and time.monotonic() - t0 < 10, (r.returncode, r.stderr)
