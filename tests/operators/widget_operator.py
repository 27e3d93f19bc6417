"""A small kopf operator for `widgets.k8py.test`, run by tests/test_operator.py as a real subprocess:

    KUBECONFIG=... python -m kopf run --standalone --namespace NS tests/operators/widget_operator.py

On create/update it writes a child ConfigMap `<name>-config` (adopted: a controller ownerReference),
sets `status.phase` through kopf's status patch and returns a result (kopf stores it in
`status.<handler id>`). Its delete handler (whose presence makes kopf add its finalizer) deletes
the child and records the deletion in a marker ConfigMap `<name>-deleted`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
import kubernetes

GROUP, VERSION, PLURAL = "k8py.test", "v1", "widgets"
FINALIZER = "k8py.test/widget-operator"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    # Post k8s Events for handler outcomes: kopf >= 1.45 posts its log messages as Events only when asked.
    settings.posting.level = logging.INFO
    settings.posting.loggers = True
    # ?timeoutSeconds=2: the server ends each watch soon, kopf resumes from the last resourceVersion it saw.
    settings.watching.server_timeout = 2
    # WatchList (sendInitialEvents=true, resourceVersionMatch=NotOlderThan) instead of a list, then a watch.
    settings.watching.initial_streaming = os.environ.get("WIDGET_OPERATOR_INITIAL_STREAMING") == "1"
    settings.watching.client_timeout = 15
    settings.watching.connect_timeout = 5
    settings.networking.request_timeout = 10
    settings.queueing.idle_timeout = 1
    settings.execution.max_workers = 4
    kubernetes.config.load_kube_config()


def _core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api()


def _child(name: str, spec: dict[str, Any], generation: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config", "labels": {"app.kubernetes.io/managed-by": "widget-operator"}},
        "data": {"size": str(spec.get("size")), "color": str(spec.get("color")), "generation": str(generation)},
    }


def _reconcile(name: str, namespace: str, spec: Any, body: Any, patch: kopf.Patch) -> dict[str, Any]:
    child = _child(name, dict(spec), body["metadata"].get("generation", 0))
    kopf.adopt(child, owner=body)  # ownerReference (controller, blockOwnerDeletion) and the owner's namespace
    try:
        _core().create_namespaced_config_map(namespace, child)
        action = "created"
    except kubernetes.client.ApiException as e:
        if e.status != 409:
            raise
        _core().patch_namespaced_config_map(f"{name}-config", namespace, {"data": child["data"]})
        action = "updated"
    kopf.info(body, reason="ChildSynced", message=f"ConfigMap {child['metadata']['name']} {action}")
    patch.status["phase"] = "Ready"
    patch.status["observedGeneration"] = body["metadata"].get("generation")
    return {"child": child["metadata"]["name"], "action": action}


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_fn(name: str, namespace: str, spec: Any, body: Any, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
    return _reconcile(name, namespace, spec, body, patch)


@kopf.on.update(GROUP, VERSION, PLURAL)
def update_fn(name: str, namespace: str, spec: Any, body: Any, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
    return _reconcile(name, namespace, spec, body, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_fn(name: str, namespace: str, uid: str, spec: Any, **_: Any) -> None:
    # No garbage collector in k8py yet: the operator removes its child itself.
    try:
        _core().delete_namespaced_config_map(f"{name}-config", namespace)
    except kubernetes.client.ApiException as e:
        if e.status != 404:
            raise
    marker = {"metadata": {"name": f"{name}-deleted"}, "data": {"uid": uid, "size": str(spec.get("size"))}}
    _core().create_namespaced_config_map(namespace, marker)
