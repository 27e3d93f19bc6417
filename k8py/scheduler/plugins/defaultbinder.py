"""DefaultBinder: bind through the pods/binding subresource, as kube-scheduler does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k8py.client import APIError
from k8py.client.resources import PODS
from k8py.scheduler.framework.interface import Code, CycleState, Handle, Status
from k8py.scheduler.framework.types import PodInfo


class DefaultBinder:
    name = "DefaultBinder"

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle = handle

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "target": {"kind": "Node", "name": node_name},
        }
        try:
            await self.handle.client.create_subresource(
                PODS, pod.name, "binding", binding, namespace=pod.namespace
            )
        except APIError as e:
            return Status(Code.ERROR, str(e), error=e)
        return None
