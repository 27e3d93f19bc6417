"""A node's client-side load balancer for the API servers (k3s' pkg/agent/loadbalancer).

Kubelets and kube-proxies talk to ``127.0.0.1:6444``; :class:`LoadBalancer` relays each
connection, bytes as they are (L4: TLS passes through), to one API server of its list:

* health: every ``health_interval`` each server gets ``GET /readyz`` over HTTPS verified against
  ``ca_file`` (anonymous: /readyz is public), or a TCP connect when there is no CA.  A server that
  turns unhealthy has its open connections closed (its clients reconnect through the balancer to a
  healthy one), as k3s does;
* choice: the active server while it is not failed (sticky), then the healthy or not yet checked
  servers in list order, then the failed ones as a last resort (health is up to an interval old).
  A dial that fails marks the server failed and moves on to the next at once, so a client sees no
  error while one server answers; with none answering the client's connection is closed;
* discovery: given a client, the ``default/kubernetes`` Endpoints (watched by an informer) give
  the API servers' advertise addresses, tried before the configured servers, which stay as the
  fallback; servers no longer listed are dropped and their connections closed.  Given a
  kubeconfig instead, discovery starts once the file exists (a node's kubelet.conf, written by
  TLS bootstrapping after the balancer it connects through has started).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from k8py.client import ConfigError, RESTClient
from k8py.client.informer import ResourceEventHandlerFuncs, SharedIndexInformer
from k8py.client.resources import ENDPOINTS
from k8py.netutil import join_host_port, split_host_port
from k8py.tasks import cancel

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 1.0  # seconds between two checks of a server (k3s: 1 s)
HEALTH_TIMEOUT = 2.0  # a check that takes longer fails
DIAL_TIMEOUT = 5.0  # a connect to a server that takes longer fails (the next server is tried)
BUFFER = 64 * 1024

Writers = tuple[asyncio.StreamWriter, asyncio.StreamWriter]  # (client side, server side) of a relayed connection


def endpoints_addresses(endpoints: dict[str, Any]) -> list[str]:
    """The ``host:port`` addresses of the `kubernetes` Endpoints (its port named https, or its only port)."""
    addresses: list[str] = []
    for subset in endpoints.get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p["port"] for p in ports if p.get("name") == "https"), ports[0]["port"] if len(ports) == 1 else None)
        if port is not None:
            addresses += [join_host_port(a["ip"], port) for a in subset.get("addresses") or []]
    return list(dict.fromkeys(addresses))


@dataclass(eq=False)
class Server:
    """One API server: its health (None: not checked yet) and the connections relayed to it."""

    address: str
    host: str
    port: int
    healthy: bool | None = None
    connections: set[Writers] = field(default_factory=set)
    checker: asyncio.Task[None] | None = None

    def close_connections(self) -> None:
        for client, upstream in self.connections:
            client.close()
            upstream.close()
        self.connections.clear()


class LoadBalancer:
    """An L4 proxy from ``listen`` to the healthiest of ``servers``; see the module docstring.

    ``listen`` is ``host:port`` (port 0: any free port, :attr:`port` tells which).  ``client`` (not
    closed here) enables discovery; so does ``kubeconfig`` (a client made from it when the file
    exists, closed on stop).  ``notify`` receives a line per change worth telling: the active
    server, health transitions, discovered server lists (default: logged at INFO)."""

    def __init__(
        self,
        servers: Sequence[str],
        listen: str = "127.0.0.1:6444",
        *,
        ca_file: str | Path | None = None,
        client: RESTClient | None = None,
        kubeconfig: str | Path | None = None,
        health_interval: float = HEALTH_INTERVAL,
        dial_timeout: float = DIAL_TIMEOUT,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        if not servers:
            raise ValueError("no server to balance")
        self.configured = [join_host_port(*split_host_port(s)) for s in servers]
        self.listen_host, self.port = split_host_port(listen)
        self.ca_file = ca_file
        self.client = client
        self.kubeconfig = Path(kubeconfig) if kubeconfig else None
        self.health_interval = health_interval
        self.dial_timeout = dial_timeout
        self.notify = notify or log.info
        self.active: str | None = None  # the address of the server new connections go to first
        self._servers: dict[str, Server] = {}
        self._discovered: list[str] = []
        self._listener: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._informer: SharedIndexInformer | None = None
        self._waiting: asyncio.Task[None] | None = None  # for the kubeconfig file
        self._owned_client: RESTClient | None = None  # made from it
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def servers(self) -> dict[str, bool | None]:
        """Each server's health (None: not checked yet), discovered ones first, in the order tried."""
        return {a: s.healthy for a, s in self._servers.items()}

    async def start(self) -> None:
        if self.ca_file:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx, force_close=True),
                timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT),
            )
        self._set_servers(self.configured)
        self._listener = await asyncio.start_server(self._handle, self.listen_host or None, self.port)
        self.port = self._listener.sockets[0].getsockname()[1]
        if self.client is not None:
            self._start_discovery(self.client)
        elif self.kubeconfig is not None:
            self._waiting = asyncio.create_task(self._discover_from_kubeconfig(self.kubeconfig))

    def _start_discovery(self, client: RESTClient) -> None:
        self._informer = SharedIndexInformer(
            client, ENDPOINTS, namespace="default", field_selector="metadata.name=kubernetes"
        )
        self._informer.add_event_handler(ResourceEventHandlerFuncs(
            add_func=lambda obj, _: self._discover(endpoints_addresses(obj)),
            update_func=lambda _, obj: self._discover(endpoints_addresses(obj)),
            delete_func=lambda _: self._discover([]),
        ))
        self._informer.start()

    async def _discover_from_kubeconfig(self, path: Path) -> None:
        while True:
            if path.exists():
                try:
                    self._owned_client = RESTClient.from_kubeconfig(path, component="k8py-loadbalancer")
                    break
                except ConfigError as e:  # being written: try again
                    log.debug("kubeconfig %s: %s", path, e)
            await asyncio.sleep(1.0)
        self.notify(f"discovering API servers with {path}")
        self._start_discovery(self._owned_client)

    async def stop(self) -> None:
        """Stop listening, checking and discovering; close every relayed connection."""
        self._stopping = True
        await cancel(self._waiting)
        if self._informer is not None:
            await self._informer.stop()
        if self._owned_client is not None:
            await self._owned_client.close()
        if self._listener is not None:
            self._listener.close()
        for server in self._servers.values():
            if server.checker is not None:
                server.checker.cancel()
            server.close_connections()
        for task in list(self._handlers):
            task.cancel()
        checkers = [s.checker for s in self._servers.values() if s.checker is not None]
        await asyncio.gather(*self._handlers, *checkers, return_exceptions=True)
        if self._listener is not None:
            await self._listener.wait_closed()
        if self._session is not None:
            await self._session.close()

    # ---- the server list ------------------------------------------------------------------------

    def _discover(self, addresses: list[str]) -> None:
        if addresses != self._discovered:
            self._discovered = addresses
            self.notify(f"discovered API servers: {', '.join(addresses) or 'none'}")
            self._set_servers([*addresses, *self.configured])

    def _set_servers(self, addresses: Iterable[str]) -> None:
        old, self._servers = self._servers, {}
        for address in dict.fromkeys(addresses):
            if (server := old.pop(address, None)) is None:
                server = Server(address, *split_host_port(address))
                server.checker = asyncio.create_task(self._check_loop(server), name=f"health check {address}")
            self._servers[address] = server
        for server in old.values():  # no longer an API server: k3s closes its connections too
            if server.checker is not None:
                server.checker.cancel()
            server.close_connections()
            if server.address == self.active:
                self._choose_active(f"{server.address} removed")

    def _choose_active(self, reason: str) -> None:
        """After the active server failed or left: the first healthy one, if any."""
        self.active = next((a for a, s in self._servers.items() if s.healthy), None)
        self.notify(f"{reason}; active server now {self.active or 'none (no healthy server)'}")

    def _set_health(self, server: Server, healthy: bool, why: str = "") -> None:
        if server.healthy == healthy or self._servers.get(server.address) is not server:
            return  # no change, or a server no longer listed
        server.healthy = healthy
        if healthy:
            self.notify(f"server {server.address} healthy")
            if self.active is None:
                self._choose_active(f"server {server.address} healthy")
            return
        self.notify(f"server {server.address} failed: {why}")
        server.close_connections()
        if server.address == self.active:
            self._choose_active(f"failover from {server.address}")

    # ---- health -----------------------------------------------------------------------------------

    async def _check_loop(self, server: Server) -> None:
        while True:
            why = await self._check(server)
            self._set_health(server, why is None, why or "")
            await asyncio.sleep(self.health_interval)

    async def _check(self, server: Server) -> str | None:
        """None when healthy, else why not."""
        try:
            if self._session is not None:
                async with self._session.get(f"https://{server.address}/readyz") as resp:
                    return None if resp.status == 200 else f"/readyz answered {resp.status}"
            _, writer = await asyncio.wait_for(asyncio.open_connection(server.host, server.port), HEALTH_TIMEOUT)
            writer.close()
            return None
        except (OSError, TimeoutError, aiohttp.ClientError) as e:
            return str(e) or type(e).__name__

    # ---- relaying -------------------------------------------------------------------------------

    def _candidates(self) -> list[Server]:
        """The servers to dial in turn: not failed before failed, the active one first; else in list order."""
        return sorted(self._servers.values(), key=lambda s: (s.healthy is False, s.address != self.active))

    async def _dial(self) -> tuple[Server, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for server in self._candidates():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(server.host, server.port), self.dial_timeout
                )
            except (OSError, TimeoutError) as e:
                self._set_health(server, False, f"dial: {str(e) or type(e).__name__}")
                continue
            if self._servers.get(server.address) is not server:  # dropped while dialing
                writer.close()
                continue
            if server.address != self.active:
                self.active = server.address
                self.notify(f"active server now {server.address}")
            return server, reader, writer
        return None

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self._stopping or (dialed := await self._dial()) is None:
                return
            server, reader, writer = dialed
            pair = (client_writer, writer)
            server.connections.add(pair)
            try:
                await asyncio.gather(_pipe(client_reader, writer, client_writer), _pipe(reader, client_writer, writer))
            finally:
                server.connections.discard(pair)
                writer.close()
        finally:
            client_writer.close()
            self._handlers.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, source: asyncio.StreamWriter) -> None:
    """Copy one direction; EOF is passed on (half-close); an error closes both sockets (``source``
    writes to the socket ``reader`` reads), which ends the other direction too."""
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    except (OSError, RuntimeError):  # reset, or a write after the other side closed
        writer.close()
        source.close()
