"""Hollow nodes (kubemark's hollow kubelet): Nodes and their pods' status, nothing run.

``HollowNodes`` registers N Node objects (capacity, Ready condition, kubelet version),
renews one Lease per node in ``kube-node-lease`` (the kubelet's heartbeat), and watches the
pods bound to its nodes: a new pod is reported Running and Ready (a pod IP from the node's
podCIDR when it has one); a pod being deleted is finished off with a zero-grace delete, as the
kubelet does once its containers stopped. A node can be "killed" (heartbeats stop) to test
node lifecycle.

A test can make a hollow container finish instead of running forever through its env:
``HOLLOW_EXIT_CODE`` (the pod then ends Succeeded for 0, Failed otherwise, with restartPolicy
Never or OnFailure) after ``HOLLOW_RUN_SECONDS`` (default 0).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from k8py.api.meta import format_time
from k8py.client import ClientError, RESTClient, is_already_exists, is_not_found
from k8py.client.informer import ResourceEventHandlerFuncs, SharedIndexInformer
from k8py.client.resources import NODES, PODS
from k8py.kubelet.nodelease import renew_lease

log = logging.getLogger(__name__)

Obj = dict[str, Any]
KUBELET_VERSION = "v1.32.0-k8py-hollow"
HEARTBEAT = 10.0


def _now() -> str:
    return format_time(dt.datetime.now(dt.UTC))


def node_object(name: str, *, cpu: str, memory: str, pods: str, labels: dict[str, str] | None = None) -> Obj:
    res = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
    now = _now()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **(labels or {}),
            },
        },
        "spec": {},
        "status": {
            "capacity": res,
            "allocatable": res,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "hollow://1.0",
                "osImage": "kubemark",
                "kernelVersion": "hollow",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


class HollowNodes:
    def __init__(
        self,
        client: RESTClient,
        names: Iterable[str],
        *,
        cpu: str = "4",
        memory: str = "16Gi",
        pods: str = "110",
        labels: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.names = list(names)
        self.spec = {"cpu": cpu, "memory": memory, "pods": pods}
        self.labels = labels or {}
        self.dead: set[str] = set()
        self.pods = SharedIndexInformer(client, PODS)
        self.pods.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda p, _i: self._changed(p), update_func=lambda _o, n: self._changed(n)
            )
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy: set[str] = set()
        self._ips: dict[str, int] = {}
        self._main: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.gather(*(self._register(n) for n in self.names))
        self.pods.start()
        self._main = asyncio.create_task(self._heartbeats(), name="hollow-heartbeats")

    async def stop(self) -> None:
        if self._main is not None:
            self._main.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*([self._main] if self._main else []), *self._tasks, return_exceptions=True)
        await self.pods.stop()

    def kill(self, name: str) -> None:
        """The node stops heartbeating and stops reporting on its pods (a crashed kubelet)."""
        self.dead.add(name)

    async def _register(self, name: str) -> None:
        try:
            await self.client.create(NODES, node_object(name, labels=self.labels, **self.spec))
        except ClientError as e:
            if not is_already_exists(e):
                raise

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.gather(
                *(self._renew(n) for n in self.names if n not in self.dead), return_exceptions=True
            )
            await asyncio.sleep(HEARTBEAT)

    async def _renew(self, name: str) -> None:
        await renew_lease(self.client, name)

    # -- pods -------------------------------------------------------------------------------

    def _changed(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        uid = pod["metadata"].get("uid", "")
        if node not in self.names or node in self.dead or uid in self._busy:
            return
        phase = (pod.get("status") or {}).get("phase")
        if pod["metadata"].get("deletionTimestamp"):
            self._spawn(uid, self._finish(pod))
        elif phase not in ("Running", "Succeeded", "Failed"):
            self._spawn(uid, self._start_pod(pod))

    def _spawn(self, uid: str, coro: Any) -> None:
        self._busy.add(uid)
        task = asyncio.create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            self._busy.discard(uid)
            if not t.cancelled() and t.exception() is not None:
                log.warning("hollow pod %s: %s", uid, t.exception())

        task.add_done_callback(done)

    async def _finish(self, pod: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.client.delete(
                PODS,
                md["name"],
                namespace=md["namespace"],
                grace_period_seconds=0,
                preconditions={"uid": md["uid"]},
            )
        except ClientError as e:
            if not is_not_found(e):
                raise

    def _pod_ip(self, node: str) -> str:
        n = self._ips[node] = self._ips.get(node, 1) + 1
        base = ipaddress.ip_address("10.255.0.0") + (self.names.index(node) << 8)
        return str(base + (n % 250))

    async def _start_pod(self, pod: Obj) -> None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        now = _now()
        node = spec["nodeName"]
        containers = spec.get("containers") or []
        exit_code, run_for = _hollow_exit(containers)
        running = {"running": {"startedAt": now}}
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "containerID": f"hollow://{md['uid']}/{c['name']}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": running,
            }
            for c in containers
        ]
        status = {
            "phase": "Running",
            "hostIP": "10.255.255.1",
            "podIP": self._pod_ip(node),
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for t in (
                    "PodReadyToStartContainers",
                    "Initialized",
                    "Ready",
                    "ContainersReady",
                    "PodScheduled",
                )
            ],
            "containerStatuses": statuses,
        }
        status["podIPs"] = [{"ip": status["podIP"]}]
        await self._write_status(pod, status)
        if exit_code is None or spec.get("restartPolicy", "Always") == "Always":
            return
        await asyncio.sleep(run_for)
        end = _now()
        terminated = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": now,
                "finishedAt": end,
            }
        }
        for s in statuses:
            s.update(ready=False, started=False, state=terminated)
        status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
        for c in status["conditions"]:
            if c["type"] in ("Ready", "ContainersReady"):
                c.update(status="False", reason="PodCompleted", lastTransitionTime=end)
        await self._write_status(pod, status)

    async def _write_status(self, pod: Obj, status: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.client.patch(
                PODS, md["name"], {"status": status}, namespace=md["namespace"], subresource="status"
            )
        except ClientError as e:
            if not is_not_found(e):
                raise


def _hollow_exit(containers: list[Obj]) -> tuple[int | None, float]:
    for c in containers:
        env = {e.get("name"): e.get("value") for e in c.get("env") or ()}
        if "HOLLOW_EXIT_CODE" in env:
            return int(env["HOLLOW_EXIT_CODE"]), float(env.get("HOLLOW_RUN_SECONDS") or 0)
    return None, 0.0
