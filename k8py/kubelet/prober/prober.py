"""One probe of one container (upstream pkg/kubelet/prober/prober.go).

``Prober.probe`` runs the container's probe of a type (exec, httpGet, tcpSocket or grpc), tries
again up to three times when it could not be run at all, records kube's events
(``Unhealthy``: "Liveness probe failed: HTTP probe failed with statuscode: 500"; ``ProbeWarning``)
and maps the outcome to a ``results.Result``. A probe that errored (bad port, runtime error)
returns None: the worker throws such a result away, as upstream does.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

from k8py.kubelet.prober.execprobe import exec_probe
from k8py.kubelet.prober.grpcprobe import grpc_probe
from k8py.kubelet.prober.httpprobe import HTTPProber, new_request_for_http_get_action
from k8py.kubelet.prober.probe import (
    Obj,
    ProbeError,
    expand_container_command_only_static,
    format_pod,
    resolve_container_port,
)
from k8py.kubelet.prober.probe import Result as ProbeResult
from k8py.kubelet.prober.results import ProbeType, Result
from k8py.kubelet.prober.tcpprobe import tcp_probe
from k8py.kubelet.runtime.interface import RuntimeService

log = logging.getLogger(__name__)

MAX_PROBE_RETRIES = 3
DEFAULT_TIMEOUT_SECONDS = 1

# Event reasons (pkg/kubelet/events).
CONTAINER_UNHEALTHY = "Unhealthy"
CONTAINER_PROBE_WARNING = "ProbeWarning"


class EventRecorder(Protocol):
    """Records an event about a container of ``pod`` (its involvedObject: the container's fieldPath)."""

    def __call__(
        self, pod: Obj, container_name: str, event_type: str, reason: str, message: str, /
    ) -> None: ...


class Prober:
    """The probe runners of one kubelet; ``close()`` releases the HTTP client."""

    def __init__(self, runtime: RuntimeService, recorder: EventRecorder | None = None) -> None:
        self.runtime = runtime
        self.recorder = recorder
        self.http = HTTPProber()

    async def close(self) -> None:
        await self.http.close()

    async def probe(
        self, probe_type: ProbeType, pod: Obj, container: Obj, container_id: str, pod_ip: str
    ) -> tuple[Result, str] | None:
        """The result and the message to report with it ("" on a plain success); None on error."""
        spec = container.get(probe_type.spec_field)
        if spec is None:
            return Result.SUCCESS, ""
        try:
            result, output = await self.run_probe_with_retries(spec, pod, container, container_id, pod_ip)
        except ProbeError as e:
            log.debug("%s probe of %s:%s errored: %s", probe_type, format_pod(pod), container["name"], e)
            self._record(
                pod,
                container,
                CONTAINER_UNHEALTHY,
                f"{probe_type} probe errored and resulted in {ProbeResult.UNKNOWN} state: {e}",
            )
            return None
        if result == ProbeResult.SUCCESS:
            return Result.SUCCESS, ""
        if result == ProbeResult.WARNING:
            message = f"{probe_type} probe warning: {output}"
            self._record(pod, container, CONTAINER_PROBE_WARNING, message)
            return Result.SUCCESS, message
        if result == ProbeResult.FAILURE:
            message = f"{probe_type} probe failed: {output}"
            self._record(pod, container, CONTAINER_UNHEALTHY, message)
            return Result.FAILURE, message
        return Result.FAILURE, ""

    async def run_probe_with_retries(
        self, spec: Obj, pod: Obj, container: Obj, container_id: str, pod_ip: str
    ) -> tuple[ProbeResult, str]:
        """Up to MAX_PROBE_RETRIES attempts while the probe errors; the last error is raised."""
        for _ in range(MAX_PROBE_RETRIES - 1):
            with contextlib.suppress(ProbeError):
                return await self.run_probe(spec, pod, container, container_id, pod_ip)
        return await self.run_probe(spec, pod, container, container_id, pod_ip)

    async def run_probe(
        self, spec: Obj, pod: Obj, container: Obj, container_id: str, pod_ip: str
    ) -> tuple[ProbeResult, str]:
        timeout = float(spec.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
        if (action := spec.get("exec")) is not None:
            command = expand_container_command_only_static(list(action.get("command") or []), container)
            return await exec_probe(self.runtime, container_id, command, timeout)
        if (action := spec.get("httpGet")) is not None:
            req = new_request_for_http_get_action(action, container, pod_ip, "probe")
            return await self.http.probe(req, timeout)
        if (action := spec.get("tcpSocket")) is not None:
            port = resolve_container_port(action.get("port"), container)
            return await tcp_probe(action.get("host") or pod_ip, port, timeout)
        if (action := spec.get("grpc")) is not None:
            return await grpc_probe(pod_ip, action.get("service") or "", int(action["port"]), timeout)
        raise ProbeError(f"missing probe handler for {format_pod(pod)}:{container['name']}")

    def _record(self, pod: Obj, container: Obj, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder(pod, container["name"], "Warning", reason, message)
        except Exception:  # an event is best effort; it must not stop probing
            log.exception("recording probe event for %s:%s", format_pod(pod), container["name"])
