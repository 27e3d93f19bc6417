"""Endpoint servers and clients for the proxy's network-namespace tests, run inside a netns
with `ip netns exec NS python netprobe.py ...`.

``serve PORT``: answer every TCP connection with "<local ip> <peer ip>" and close; prints
"ready" once listening. ``connect HOST PORT COUNT [--bind IP] [--timeout S]``: COUNT
connections, one JSON list on stdout of the answers or "refused" / "timeout" / "error: ...".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


async def serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        local = writer.get_extra_info("sockname")[0]
        peer = writer.get_extra_info("peername")[0]
        writer.write(f"{local} {peer}\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def connect_once(host: str, port: int, bind: str | None, timeout: float) -> str:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(bind, 0) if bind else None), timeout
        )
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as e:
        return f"error: {e}"
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.decode().strip()
    except TimeoutError:
        return "timeout"
    finally:
        writer.close()


async def connect(host: str, port: int, count: int, bind: str | None, timeout: float) -> None:
    results = [await connect_once(host, port, bind, timeout) for _ in range(count)]
    json.dump(results, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    c = sub.add_parser("connect")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("count", type=int)
    c.add_argument("--bind")
    c.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    if args.cmd == "serve":
        asyncio.run(serve(args.port))
    else:
        asyncio.run(connect(args.host, args.port, args.count, args.bind, args.timeout))


if __name__ == "__main__":
    main()
