"""The horizontal pod autoscaler against a real API server, the Deployment/ReplicaSet controllers,
the scheduler and hollow nodes, with `kubectl autoscale` and `kubectl get hpa`.

Hollow nodes run no containers to measure: the cluster runs without its metrics server
(``--disable-metrics-server``), the test serves the resource metrics API with a CRD
``pods.metrics.k8s.io`` (PodMetrics, schemaless) and writes the pods' usage itself. The
controller just GETs ``/apis/metrics.k8s.io/v1beta1/namespaces/<ns>/pods``.
The controller manager syncs HPAs every second and stabilizes scale-downs over 4 s.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tests.conftest import wait_for
from tests.controllers.conftest import ControllerCluster

CONTROLLERS = "replicaset,deployment,horizontalpodautoscaling"
HOLLOW_NODES = 2
UP_ARGS = ("--disable-metrics-server",)
CONTROLLER_MANAGER_ARGS = (
    "--controller-option", "horizontal-pod-autoscaler-sync-period=1",
    "--controller-option", "horizontal-pod-autoscaler-downscale-stabilization=4",
)  # fmt: skip

METRICS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "pods.metrics.k8s.io",
        # *.k8s.io is a protected group
        "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes/enhancements/pull/1111"},
    },
    "spec": {
        "group": "metrics.k8s.io",
        "scope": "Namespaced",
        "names": {"plural": "pods", "singular": "podmetrics", "kind": "PodMetrics", "listKind": "PodMetricsList"},
        "versions": [{
            "name": "v1beta1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}  # fmt: skip


def get_json(c: ControllerCluster, *args: str) -> Any:
    return json.loads(c.kubectl(*args, "-o", "json").stdout)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((x for x in (obj.get("status") or {}).get("conditions") or () if x.get("type") == type_), {})


def ready_pods(c: ControllerCluster, ns: str) -> list[dict[str, Any]]:
    return [
        p for p in get_json(c, "get", "pods", "-n", ns, "-l", "app=web")["items"]
        if condition(p, "Ready").get("status") == "True" and not p["metadata"].get("deletionTimestamp")
    ]  # fmt: skip


def set_usage(c: ControllerCluster, ns: str, cpu: str) -> int:
    """PodMetrics for every ready pod (labels copied), `cpu` each; returns how many."""
    pods = ready_pods(c, ns)
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    items = [{
        "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
        "metadata": {"name": p["metadata"]["name"], "labels": p["metadata"].get("labels") or {}},
        "timestamp": now, "window": "0s",
        "containers": [{"name": "c", "usage": {"cpu": cpu, "memory": "10Mi"}}],
    } for p in pods]  # fmt: skip
    # kubectl knows PodMetrics as a built-in type (for `kubectl top`) and would apply a strategic merge
    # patch, which custom resources refuse: replace them instead
    c.kubectl("delete", "podmetrics", "--all", "-n", ns)
    c.kubectl(
        "create", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    return len(items)


def events(c: ControllerCluster, ns: str, reason: str) -> list[str]:
    evs = get_json(c, "get", "events", "-n", ns, "--field-selector", f"reason={reason}")["items"]
    return [e["message"] for e in evs if e["source"].get("component") == "horizontal-pod-autoscaler"]


def test_hpa_scales_a_deployment(cm_cluster: ControllerCluster) -> None:
    c = cm_cluster
    c.kubectl("apply", "-f", "-", input=json.dumps(METRICS_CRD))
    wait_for(
        lambda: c.kubectl("get", "podmetrics", "-A", check=False).returncode == 0, what="the metrics CRD"
    )
    ns = "hpa"
    c.kubectl("create", "namespace", ns)
    wait_for(lambda: c.kubectl("get", "sa/default", "-n", ns, check=False).returncode == 0, what="default SA")
    c.kubectl("create", "deployment", "web", "-n", ns, "--image=nginx")
    c.kubectl("set", "resources", "deployment/web", "-n", ns, "-c", "nginx", "--requests=cpu=100m")
    wait_for(lambda: len(ready_pods(c, ns)) == 1 and ready_pods(c, ns)[0]["spec"]["containers"][0].get("resources"),
             timeout=30, what="one ready pod with requests")  # fmt: skip
    c.kubectl("autoscale", "deployment", "web", "-n", ns, "--cpu-percent=50", "--min=1", "--max=5")

    # no metrics yet
    hpa = wait_for(lambda: (h := get_json(c, "get", "hpa.v2.autoscaling", "web", "-n", ns))
                   and condition(h, "ScalingActive").get("reason") == "FailedGetResourceMetric" and h,
                   timeout=15, what="ScalingActive False")  # fmt: skip
    active = condition(hpa, "ScalingActive")
    assert active["status"] == "False"
    assert "no metrics returned from resource metrics API" in active["message"]
    assert condition(hpa, "AbleToScale")["reason"] == "SucceededGetScale"
    assert wait_for(
        lambda: events(c, ns, "FailedGetResourceMetric"), timeout=10, what="FailedGetResourceMetric"
    )

    # 200 % of the request: 1 -> 4 (the unlimited proposal, within max(2x, 4))
    assert set_usage(c, ns, "200m") == 1
    wait_for(lambda: get_json(c, "get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 4,
             timeout=15, what="scale up to 4")  # fmt: skip
    assert "New size: 4; reason: cpu resource utilization (percentage of request) above target" in wait_for(
        lambda: events(c, ns, "SuccessfulRescale"), timeout=10, what="SuccessfulRescale")  # fmt: skip
    hpa = wait_for(lambda: (h := get_json(c, "get", "hpa.v2.autoscaling", "web", "-n", ns))
                   and h["status"].get("desiredReplicas") == 4 and h, timeout=10, what="hpa status")  # fmt: skip
    st = hpa["status"]
    assert st["lastScaleTime"] and st["observedGeneration"] == hpa["metadata"]["generation"]
    assert st["currentMetrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": 200, "averageValue": "200m"}},
        }
    ]
    assert condition(hpa, "AbleToScale")["reason"] == "SucceededRescale"
    assert condition(hpa, "ScalingActive")["status"] == "True"
    assert condition(hpa, "ScalingActive")["reason"] == "ValidMetricFound"
    out = c.kubectl("get", "hpa", "-n", ns).stdout
    assert "web" in out and "Deployment/web" in out and "cpu: 200%/50%" in out, out

    # all pods busy at 200 %: capped at maxReplicas
    wait_for(lambda: len(ready_pods(c, ns)) == 4, timeout=30, what="4 ready pods")
    set_usage(c, ns, "200m")
    hpa = wait_for(lambda: (h := get_json(c, "get", "hpa.v2.autoscaling", "web", "-n", ns))
                   and condition(h, "ScalingLimited").get("reason") == "TooManyReplicas" and h,
                   timeout=15, what="TooManyReplicas")  # fmt: skip
    assert condition(hpa, "ScalingLimited")["status"] == "True"
    wait_for(
        lambda: get_json(c, "get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 5, what="5 replicas"
    )

    # idle: down to minReplicas once the stabilization window has passed
    wait_for(lambda: len(ready_pods(c, ns)) == 5, timeout=30, what="5 ready pods")
    set_usage(c, ns, "5m")
    hpa = wait_for(lambda: (h := get_json(c, "get", "hpa.v2.autoscaling", "web", "-n", ns))
                   and condition(h, "AbleToScale").get("reason") == "ScaleDownStabilized" and h,
                   timeout=10, what="ScaleDownStabilized")  # fmt: skip
    assert get_json(c, "get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 5
    wait_for(lambda: get_json(c, "get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 1,
             timeout=20, what="scale down to 1")  # fmt: skip
    assert "New size: 1; reason: All metrics below target" in wait_for(
        lambda: [m for m in events(c, ns, "SuccessfulRescale") if "New size: 1" in m],
        timeout=10,
        what="event",
    )
    hpa = wait_for(lambda: (h := get_json(c, "get", "hpa.v2.autoscaling", "web", "-n", ns))
                   and h["status"].get("currentReplicas") == 1 and h, timeout=10, what="currentReplicas 1")  # fmt: skip
    assert condition(hpa, "ScalingLimited")["reason"] in ("TooFewReplicas", "DesiredWithinRange")

    # behavior: at most one pod a minute up
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}
    c.kubectl("patch", "hpa.v2.autoscaling", "web", "-n", ns, "--type", "merge",
              "-p", json.dumps({"spec": {"behavior": behavior}}))  # fmt: skip
    wait_for(lambda: len(ready_pods(c, ns)) == 1, timeout=30, what="1 ready pod")
    set_usage(c, ns, "500m")
    hpa = wait_for(lambda: (h := get_json(c, "get", "hpa.v2.autoscaling", "web", "-n", ns))
                   and condition(h, "ScalingLimited").get("reason") == "ScaleUpLimit" and h,
                   timeout=15, what="ScaleUpLimit")  # fmt: skip
    assert get_json(c, "get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 2
    assert hpa["status"]["desiredReplicas"] == 2
