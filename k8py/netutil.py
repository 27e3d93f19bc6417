"""Small facts about this host's network."""

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
