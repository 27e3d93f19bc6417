"""TCP probes (upstream pkg/probe/tcp): success when a connection opens, closed at once."""

from __future__ import annotations

import asyncio
import socket

from k8py.kubelet.prober.probe import Result, dial_error
from k8py.netutil import join_host_port


async def tcp_probe(host: str, port: int, timeout: float) -> tuple[Result, str]:
    """DoTCPProbe: any error (refused, unreachable, timeout) is a failure with Go's dial message."""
    addr = join_host_port(host, port)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, kind, proto, _, sockaddr = infos[0]
            with socket.socket(family, kind, proto) as sock:
                sock.setblocking(False)
                await loop.sock_connect(sock, sockaddr)
    except (OSError, TimeoutError) as e:
        return Result.FAILURE, dial_error(addr, e)
    return Result.SUCCESS, ""
