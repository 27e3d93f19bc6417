"""Small facts about this host's network, and host:port addresses."""

from __future__ import annotations

import fcntl
import socket
import struct
from pathlib import Path


def primary_ip() -> str:
    """The IPv4 address of the default route's interface (a node's IP, the API server's advertise
    address), 127.0.0.1 when there is none. Read from /proc/net/route and SIOCGIFADDR: no packet is sent."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return "127.0.0.1"
    for line in lines:
        fields = line.split()
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", fields[0][:15].encode()))
                except OSError:
                    continue
                return socket.inet_ntoa(packed[20:24])
    return "127.0.0.1"


def join_host_port(host: str, port: int) -> str:
    """net.JoinHostPort: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError when malformed (port 0 is allowed)."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r} is not host:port")
    return host, int(port)

