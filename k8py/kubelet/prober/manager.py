"""The kubelet's probe manager (upstream pkg/kubelet/prober/prober_manager.go).

``add_pod`` starts a worker for every liveness, readiness and startup probe of the pod's
containers and sidecars (init containers with ``restartPolicy: Always``); ``remove_pod`` stops
them. The kubelet reports each container instance it runs with ``update_container`` (upstream's
workers read the same from the status manager) and reads the state back:

- ``is_started``: no startup probe, or it succeeded for the running instance;
- ``is_ready``: started, and no readiness probe or it succeeded (a new container is not ready
  until its readiness probe passes);
- ``liveness_failed`` / ``startup_failed``: the instance must be restarted ("Container X failed
  liveness probe, will be restarted" is the kubelet's message when it does).

``on_result`` is called whenever a probe's state changes (a new container's initial value
included, with an empty message; so is the Failure a container that stopped running reads), so
the kubelet can restart a container or update the Ready conditions without polling;
``recorder`` receives the per-probe events (``Unhealthy``, ``ProbeWarning``).

The manager knows nothing of the kubelet beyond these calls; it runs on the kubelet's event loop
and its callbacks are plain functions called there (schedule any I/O, do not block).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from k8py.kubelet.prober.probe import Obj
from k8py.kubelet.prober.prober import EventRecorder, Prober
from k8py.kubelet.prober.results import ProbeType, Result
from k8py.kubelet.prober.worker import Worker
from k8py.kubelet.runtime.interface import RuntimeService

log = logging.getLogger(__name__)


class ResultCallback(Protocol):
    def __call__(
        self, pod_uid: str, container_name: str, probe_type: ProbeType, result: Result, message: str, /
    ) -> None: ...


@dataclass(slots=True)
class ContainerInstance:
    container_id: str
    started_at: int  # ns since the epoch, as CRI reports it
    running: bool


@dataclass(slots=True)
class _PodProbes:
    pod: Obj
    pod_ip: str = ""
    containers: dict[str, ContainerInstance] = field(default_factory=dict)
    workers: dict[tuple[str, ProbeType], Worker] = field(default_factory=dict)


def is_restartable_init_container(container: Obj) -> bool:
    return container.get("restartPolicy") == "Always"


class ProbeManager:
    def __init__(
        self,
        runtime: RuntimeService,
        *,
        on_result: ResultCallback | None = None,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.prober = Prober(runtime, recorder)
        self.on_result = on_result
        self.started = time.monotonic()
        self._pods: dict[str, _PodProbes] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the kubelet's side ----------------------------------------------------------------

    def add_pod(self, pod: Obj) -> None:
        """Start the probe workers (tasks on the running loop) of a pod's containers and sidecars.

        Adding a pod again only starts the workers it lacks.
        """
        uid = pod["metadata"]["uid"]
        state = self._pods.setdefault(uid, _PodProbes(pod))
        spec = pod.get("spec") or {}
        probed = [(c, False) for c in spec.get("containers") or []]
        probed += [(c, True) for c in spec.get("initContainers") or [] if is_restartable_init_container(c)]
        for container, sidecar in probed:
            for probe_type in (ProbeType.STARTUP, ProbeType.READINESS, ProbeType.LIVENESS):
                key = (container["name"], probe_type)
                if container.get(probe_type.spec_field) is None or key in state.workers:
                    continue
                worker = Worker(self, probe_type, pod, container, sidecar=sidecar)
                state.workers[key] = worker
                worker.task = asyncio.get_running_loop().create_task(
                    worker.run(), name=f"probe {probe_type} {uid}/{container['name']}"
                )
                self._tasks.add(worker.task)
                worker.task.add_done_callback(self._tasks.discard)

    def remove_pod(self, uid: str) -> None:
        """Stop the pod's workers and forget its results."""
        state = self._pods.pop(uid, None)
        for worker in state.workers.values() if state else ():
            if worker.task is not None:
                worker.task.cancel()

    def stop_liveness_and_startup(self, uid: str) -> None:
        """The pod is terminating: stop liveness and startup probing, so nothing restarts it."""
        state = self._pods.get(uid)
        if state is None:
            return
        for (name, probe_type), worker in list(state.workers.items()):
            if probe_type != ProbeType.READINESS:
                del state.workers[(name, probe_type)]
                if worker.task is not None:
                    worker.task.cancel()

    def update_container(
        self,
        pod_uid: str,
        container_name: str,
        container_id: str,
        started_at: int,
        pod_ip: str,
        *,
        running: bool = True,
    ) -> None:
        """The kubelet's word on a container instance of an added pod: id, start time (ns since
        the epoch), whether it still runs; ``pod_ip`` is where network probes go.

        A change wakes the container's workers, so a new container is probed at once rather than
        at the next tick (upstream's status updates trigger the readiness worker the same way).
        """
        state = self._pods.get(pod_uid)
        if state is None:
            return
        if pod_ip:
            state.pod_ip = pod_ip
        instance = ContainerInstance(container_id, started_at, running)
        if state.containers.get(container_name) == instance:
            return
        state.containers[container_name] = instance
        for (name, _), worker in state.workers.items():
            if name == container_name:
                worker.trigger()

    def is_started(self, pod_uid: str, container_name: str) -> bool:
        state = self._pods.get(pod_uid)
        if state is None:
            return True
        instance = state.containers.get(container_name)
        if instance is not None and not instance.running:
            return False
        worker = state.workers.get((container_name, ProbeType.STARTUP))
        if worker is None:
            return True
        return instance is not None and worker.result_for(instance.container_id) == Result.SUCCESS

    def is_ready(self, pod_uid: str, container_name: str) -> bool:
        if not self.is_started(pod_uid, container_name):
            return False
        state = self._pods.get(pod_uid)
        worker = state.workers.get((container_name, ProbeType.READINESS)) if state else None
        if state is None or worker is None:
            return True
        instance = state.containers.get(container_name)
        return instance is not None and worker.result_for(instance.container_id) == Result.SUCCESS

    def liveness_failed(self, pod_uid: str, container_name: str, container_id: str) -> bool:
        return self._result(pod_uid, container_name, ProbeType.LIVENESS, container_id) == Result.FAILURE

    def startup_failed(self, pod_uid: str, container_name: str, container_id: str) -> bool:
        return self._result(pod_uid, container_name, ProbeType.STARTUP, container_id) == Result.FAILURE

    async def stop(self) -> None:
        """Stop every worker and release the probers' resources."""
        for uid in list(self._pods):
            self.remove_pod(uid)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.prober.close()

    # -- the workers' side -----------------------------------------------------------------

    def _result(self, uid: str, name: str, probe_type: ProbeType, container_id: str) -> Result | None:
        state = self._pods.get(uid)
        worker = state.workers.get((name, probe_type)) if state else None
        return worker.result_for(container_id) if worker else None

    def _instance(self, uid: str, name: str) -> ContainerInstance | None:
        state = self._pods.get(uid)
        return state.containers.get(name) if state else None

    def _pod_ip(self, uid: str) -> str:
        state = self._pods.get(uid)
        return state.pod_ip if state else ""

    def _worker_done(self, worker: Worker) -> None:
        state = self._pods.get(worker.uid)
        key = (worker.name, worker.probe_type)
        if state is not None and state.workers.get(key) is worker:
            del state.workers[key]

    def _result_changed(self, worker: Worker, result: Result, message: str) -> None:
        if worker.probe_type == ProbeType.STARTUP and result == Result.SUCCESS:
            state = self._pods.get(worker.uid)
            readiness = state.workers.get((worker.name, ProbeType.READINESS)) if state else None
            if readiness is not None:
                readiness.trigger()
        if self.on_result is None:
            return
        try:
            self.on_result(worker.uid, worker.name, worker.probe_type, result, message)
        except Exception:
            log.exception("probe result callback for %s/%s", worker.uid, worker.name)
