"""The kube-scheduler component (``cmd/kube-scheduler/app``): leader election, health and
metrics endpoints, and the scheduler itself.

The endpoints (``/healthz``, ``/livez``, ``/readyz``, ``/metrics``) are served over plain
HTTP on the address given (kube-scheduler's old insecure port, 10251), or not at all with
port 0. With leader election on, only the holder of the ``kube-system/kube-scheduler``
Lease schedules; losing the lease stops scheduling (a restart re-joins the election).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from k8py.client import RESTClient
from k8py.client.leaderelection import LeaderElector
from k8py.scheduler.metrics import CONTENT_TYPE
from k8py.scheduler.scheduler import Scheduler

log = logging.getLogger(__name__)


def _seconds(value: Any) -> float:
    """A metav1.Duration ("15s", "1m30s", "500ms") or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    total, num = 0.0, ""
    text = str(value)
    i = 0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    return total + (float(num) if num else 0.0)


class SchedulerApp:
    """The scheduler as a component. Losing the lease ends the Scheduler (its informers,
    queue and cache with it); where kube-scheduler exits for its supervisor to restart it,
    the app builds a fresh Scheduler and goes back to the election."""

    def __init__(
        self,
        client: RESTClient,
        config: Mapping[str, Any] | None = None,
        *,
        bind_address: str = "127.0.0.1",
        port: int = 0,
        leader_elect: bool | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.scheduler = Scheduler(client, config)
        election = self.scheduler.config["leaderElection"]
        self.leader_elect = election["leaderElect"] if leader_elect is None else leader_elect
        self.bind_address = bind_address
        self.port = port
        self.identity = f"{socket.gethostname()}_{uuid.uuid4()}"
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self.leading = asyncio.Event()
        self._stopping = False

    def _elector(self) -> LeaderElector:
        election = self.scheduler.config["leaderElection"]
        return LeaderElector(
            self.client,
            namespace=election["resourceNamespace"],
            name=election["resourceName"],
            identity=self.identity,
            lease_duration=_seconds(election["leaseDuration"]),
            renew_deadline=_seconds(election["renewDeadline"]),
            retry_period=_seconds(election["retryPeriod"]),
            on_started_leading=self._lead,
            on_stopped_leading=self._stopped_leading,
        )

    async def _lead(self) -> None:
        self.leading.set()
        await self.scheduler.run()

    def _stopped_leading(self) -> None:
        self.leading.clear()
        if not self._stopping:
            log.error("leaderelection lost: the scheduler stops scheduling and rejoins the election")

    async def _run(self) -> None:
        if not self.leader_elect:
            await self._lead()
            return
        while not self._stopping:
            await self._elector().run()
            if not self._stopping:
                self.scheduler = Scheduler(self.client, self.config)

    async def start(self) -> None:
        if self.port:
            app = web.Application()
            for path in ("/healthz", "/livez", "/readyz"):
                app.router.add_get(path, self._ok)
            app.router.add_get("/metrics", self._metrics)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.bind_address, self.port).start()
        self._task = asyncio.create_task(self._run(), name="kube-scheduler")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _metrics(self, request: web.Request) -> web.Response:
        s = self.scheduler
        s.metrics.observe_queue(s.queue.pending(), s.queue.incoming)
        return web.Response(body=s.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
