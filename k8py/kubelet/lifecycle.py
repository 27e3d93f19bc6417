"""Container lifecycle hooks: running a postStart or preStop handler (upstream
pkg/kubelet/lifecycle/handlers.go).

``HandlerRunner.run`` runs one LifecycleHandler with the probes' primitives and returns
``(ok, message)``, the message being kube's text for a failure ("Exec lifecycle hook ([...]) for
Container "app" in Pod "web_default(uid)" failed - error: ..."). As upstream:

- ``exec`` runs through CRI ExecSync with no timeout (the kubelet bounds a preStop hook by the
  grace period); a non-zero exit fails the hook;
- ``httpGet`` goes to the pod IP unless ``host`` is set, with User-Agent ``kube-lifecycle/1.32``,
  TLS unverified and same-host redirects followed; only a failed request fails the hook, the
  status code is not looked at. An HTTPS hook answered in plain HTTP is retried over HTTP and
  reported as a ``LifecycleHTTPFallback`` event;
- ``sleep`` waits its seconds (cancelling the call ends it early);
- ``tcpSocket`` is kept in the API for compatibility only and, as in kube, cannot be run.

The events the kubelet records deliberately leave the handler's message out (it may hold
secrets): ``FailedPostStartHook`` / "PostStartHook failed" and ``FailedPreStopHook`` /
"PreStopHook failed".
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from k8py.api.gofmt import go_quote
from k8py.kubelet.prober.execprobe import ExecExitError, run_in_container
from k8py.kubelet.prober.httpprobe import HTTPProber, HTTPRequestError, new_request_for_http_get_action
from k8py.kubelet.prober.probe import Obj, ProbeError, format_pod
from k8py.kubelet.prober.prober import EventRecorder
from k8py.kubelet.runtime.interface import RuntimeService
from k8py.netutil import join_host_port

log = logging.getLogger(__name__)

# Event reasons and messages (pkg/kubelet/events; kuberuntime records these).
FAILED_POST_START_HOOK = "FailedPostStartHook"
POST_START_HOOK_FAILED = "PostStartHook failed"
FAILED_PRE_STOP_HOOK = "FailedPreStopHook"
PRE_STOP_HOOK_FAILED = "PreStopHook failed"
LIFECYCLE_HTTP_FALLBACK = "LifecycleHTTPFallback"


class HandlerRunner:
    """Runs lifecycle handlers; ``close()`` releases the HTTP client."""

    def __init__(self, runtime: RuntimeService, recorder: EventRecorder | None = None) -> None:
        self.runtime = runtime
        self.recorder = recorder
        self.http = HTTPProber()

    async def close(self) -> None:
        await self.http.close()

    async def run(
        self, container_id: str, pod: Obj, container: Obj, handler: Obj, pod_ip: str
    ) -> tuple[bool, str]:
        """Run ``handler`` for the container instance ``container_id``: (True, "") or (False, why)."""
        name, where = go_quote(container["name"]), go_quote(format_pod(pod))
        if (action := handler.get("exec")) is not None:
            command = list(action.get("command") or [])
            try:
                await run_in_container(self.runtime, container_id, command, 0)
            except ExecExitError as e:
                return False, self._exec_failed(command, name, where, e, e.output)
            except ProbeError as e:
                return False, self._exec_failed(command, name, where, e, b"")
            return True, ""
        if (action := handler.get("httpGet")) is not None:
            try:
                await self._run_http_handler(pod, container, action, pod_ip)
            except (ProbeError, HTTPRequestError) as e:
                path = action.get("path") or ""
                log.info("HTTP lifecycle hook (%s) for %s in %s failed: %s", path, name, where, e)
                return (
                    False,
                    f"HTTP lifecycle hook ({path}) for Container {name} in Pod {where} failed - error: {e}",
                )
            return True, ""
        if (action := handler.get("sleep")) is not None:
            await asyncio.sleep(float(action.get("seconds") or 0))
            return True, ""
        err = f"invalid handler: {orjson.dumps(handler).decode()}"
        log.error("Cannot run handler: %s", err)
        return False, f"Cannot run handler: {err}"

    @staticmethod
    def _exec_failed(command: list[str], name: str, where: str, err: Exception, output: bytes) -> str:
        log.info("Exec lifecycle hook %s for %s in %s failed: %s", command, name, where, err)
        return (
            f"Exec lifecycle hook ([{' '.join(command)}]) for Container {name} in Pod {where} failed - "
            f"error: {err}, message: {go_quote(output)}"
        )

    async def _run_http_handler(self, pod: Obj, container: Obj, http_get: Obj, pod_ip: str) -> None:
        if not http_get.get("host") and not pod_ip:
            raise ProbeError(f"failed to find networking container: pod {format_pod(pod)} has no IP")
        req = new_request_for_http_get_action(http_get, container, pod_ip, "lifecycle")
        try:
            await self.http.do(req, None)
        except HTTPRequestError as e:
            if not e.plain_http:
                raise
            # An HTTPS hook served in plain HTTP (older kubelets ignored the scheme): retry in HTTP.
            req.url = req.url.with_scheme("http")
            req.headers.popall("Authorization", None)
            try:
                await self.http.do(req, None)
            except HTTPRequestError:
                raise e from None
            if self.recorder is not None:
                self.recorder(
                    pod,
                    container["name"],
                    "Warning",
                    LIFECYCLE_HTTP_FALLBACK,
                    f"request to HTTPS lifecycle hook {join_host_port(req.url.host or '', req.url.port or 0)} "
                    "got HTTP response, retry with HTTP succeeded",
                )
