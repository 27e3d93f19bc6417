"""The ReplicationManager (the ReplicaSet controller's logic on ReplicationControllers)."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import wait_for
from tests.controllers.conftest import ControllerCluster

CONTROLLERS = "replicationcontroller"
HOLLOW_NODES = 2


def _get(cm: ControllerCluster, *args: str) -> Any:
    return json.loads(cm.kubectl("get", *args, "-o", "json").stdout)


def test_replication_controller(cm_cluster: ControllerCluster) -> None:
    cm = cm_cluster
    cm.kubectl("create", "namespace", "rc")
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }
    cm.kubectl("apply", "-n", "rc", "-f", "-", input=json.dumps(rc))

    def status(ready: int) -> Any:
        st = _get(cm, "rc", "web", "-n", "rc").get("status", {})
        return st.get("readyReplicas") == ready and st.get("availableReplicas") == ready and st

    st = wait_for(lambda: status(3), timeout=30, what="3 ready replicas")
    assert st["replicas"] == 3 and st["fullyLabeledReplicas"] == 3 and st["observedGeneration"] == 1
    pods = _get(cm, "pods", "-n", "rc", "-l", "app=web")["items"]
    assert len(pods) == 3
    assert all(p["metadata"]["generateName"] == "web-" for p in pods)
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert (ref["apiVersion"], ref["kind"], ref["name"], ref["controller"]) == ("v1", "ReplicationController", "web", True)

    cm.kubectl("delete", "pod", pods[0]["metadata"]["name"], "-n", "rc", "--wait=false")
    wait_for(
        lambda: len([p for p in _get(cm, "pods", "-n", "rc", "-l", "app=web")["items"]
                     if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]) == 3,
        timeout=30,
        what="a replacement pod",
    )
    cm.kubectl("scale", "rc/web", "--replicas=1", "-n", "rc")
    wait_for(lambda: len(_get(cm, "pods", "-n", "rc", "-l", "app=web")["items"]) == 1, timeout=30, what="scaled down")
    wait_for(lambda: status(1), timeout=20, what="status of 1")

    def events() -> bool:
        out = cm.kubectl("get", "events", "-n", "rc", "--field-selector", "involvedObject.kind=ReplicationController").stdout
        return "SuccessfulCreate" in out and "SuccessfulDelete" in out

    wait_for(events, timeout=15, interval=0.2, what="SuccessfulCreate and SuccessfulDelete events")
