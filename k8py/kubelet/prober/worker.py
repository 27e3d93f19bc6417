"""The periodic probing of one container's probe (upstream pkg/kubelet/prober/worker.go).

A worker is an asyncio task per (pod, container, probe type). Each round (``do_probe``) it looks
at the container instance the kubelet last reported and follows upstream's rules:

- a new container id resets the state to the probe type's initial value (readiness Failure,
  liveness Success, startup Unknown) and ends any hold;
- a container that is not running reads Failure; the worker ends when it will not run again
  (restartPolicy Never, unless a sidecar);
- nothing is probed before ``initialDelaySeconds`` after the container started;
- liveness and readiness wait for the startup probe to succeed, which then stops probing;
- a result only counts once it repeated ``successThreshold``/``failureThreshold`` times in a row;
- after a liveness or startup failure the worker holds until the container is replaced, so a
  container being killed is not probed.

Rounds run on a ticker of ``periodSeconds`` (a slow probe does not push the next round out) and
can be brought forward by ``trigger()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING

from k8py.kubelet.prober.probe import Obj, format_pod
from k8py.kubelet.prober.results import ProbeType, Result

if TYPE_CHECKING:
    from k8py.kubelet.prober.manager import ProbeManager

log = logging.getLogger(__name__)

DEFAULT_PERIOD_SECONDS = 10
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3


class Worker:
    def __init__(
        self, manager: ProbeManager, probe_type: ProbeType, pod: Obj, container: Obj, *, sidecar: bool
    ) -> None:
        self.manager = manager
        self.probe_type = probe_type
        self.pod = pod
        self.container = container
        self.sidecar = sidecar
        self.spec: Obj = container[probe_type.spec_field]
        # Fractional seconds are honoured (the API only produces whole ones; tests use less).
        self.period = float(self.spec.get("periodSeconds") or DEFAULT_PERIOD_SECONDS)
        self.initial_delay = float(self.spec.get("initialDelaySeconds") or 0)
        self.success_threshold = int(self.spec.get("successThreshold") or DEFAULT_SUCCESS_THRESHOLD)
        self.failure_threshold = int(self.spec.get("failureThreshold") or DEFAULT_FAILURE_THRESHOLD)

        self.container_id: str | None = None  # the instance the result belongs to
        self.result: Result | None = None
        self.last_result: Result | None = None
        self.result_run = 0  # how many times in a row last_result came back
        self.on_hold = False
        self._trigger = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def uid(self) -> str:
        return self.pod["metadata"]["uid"]

    @property
    def name(self) -> str:
        return self.container["name"]

    def trigger(self) -> None:
        """Probe now rather than at the next tick (manualTriggerCh)."""
        self._trigger.set()

    def result_for(self, container_id: str | None) -> Result | None:
        return self.result if container_id is not None and container_id == self.container_id else None

    async def run(self) -> None:
        try:
            # Right after a kubelet (re)start, spread the first probes over a period.
            if self.period > time.monotonic() - self.manager.started:
                await asyncio.sleep(random.random() * self.period)
            next_tick = time.monotonic() + self.period
            while await self._do_probe_safely():
                now = time.monotonic()
                if now < next_tick:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(next_tick - now):
                            await self._trigger.wait()
                    now = time.monotonic()
                if now >= next_tick:  # skip the ticks a slow probe missed, like time.Ticker
                    next_tick += self.period * ((now - next_tick) // self.period + 1)
                self._trigger.clear()
        finally:
            self.manager._worker_done(self)

    async def _do_probe_safely(self) -> bool:
        try:
            return await self.do_probe()
        except Exception:  # upstream eats panics in doProbe and keeps probing
            log.exception("%s probe worker for %s:%s", self.probe_type, format_pod(self.pod), self.name)
            return True

    async def do_probe(self) -> bool:
        """One round; False ends the worker."""
        instance = self.manager._instance(self.uid, self.name)
        if instance is None:
            return True  # not created yet: wait for the kubelet to report it
        if instance.container_id != self.container_id:
            self.container_id = instance.container_id
            self.result, self.last_result, self.result_run, self.on_hold = None, None, 0, False
            self._set(self.probe_type.initial_value, "")
        if self.on_hold:
            return True
        if not instance.running:
            self._set(Result.FAILURE, "")
            restart_policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
            return self.sidecar or restart_policy != "Never"
        if (time.time_ns() - instance.started_at) / 1e9 < self.initial_delay:
            return True
        started = self.manager.is_started(self.uid, self.name)
        if self.probe_type == ProbeType.STARTUP:
            if started:
                return True  # done; the worker stays for a restarted container
        elif not started:
            return True  # liveness and readiness wait for the startup probe

        pod_ip = self.manager._pod_ip(self.uid)
        outcome = await self.manager.prober.probe(
            self.probe_type, self.pod, self.container, instance.container_id, pod_ip
        )
        if outcome is None:
            return True  # the probe errored: its result is thrown away
        result, message = outcome
        if result == self.last_result:
            self.result_run += 1
        else:
            self.last_result, self.result_run = result, 1
        if (result == Result.FAILURE and self.result_run < self.failure_threshold) or (
            result == Result.SUCCESS and self.result_run < self.success_threshold
        ):
            return True  # below the threshold: the state stays
        self._set(result, message)
        if self.probe_type != ProbeType.READINESS and result == Result.FAILURE:
            # The container will be restarted: hold until a new container id shows up.
            self.on_hold = True
            self.result_run = 0
        return True

    def _set(self, result: Result, message: str) -> None:
        if result == self.result:
            return
        self.result = result
        self.manager._result_changed(self, result, message)
