"""`k8py up` as a user gets it: API server, scheduler and every controller in one process,
with hollow nodes standing in for kubelets."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import Cluster, start_cluster, wait_for
from tests.controllers.conftest import Component, start_hollow_nodes


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Component]]:
    cluster = start_cluster(tmp_path_factory.mktemp("k8py-full"))
    hollow = None
    try:
        hollow = start_hollow_nodes(cluster, 2, "up-node-")
        yield cluster, hollow
    finally:
        if hollow is not None:
            hollow.stop()
        cluster.stop()


def test_deployment_service_and_namespace_lifecycle(full: tuple[Cluster, Component]) -> None:
    c, _ = full
    log = c.log_path.read_text()
    assert "scheduler started" in log and "controller manager started" in log
    c.kubectl("create", "namespace", "shop")
    wait_for(lambda: c.kubectl("get", "sa", "default", "-n", "shop", check=False).returncode == 0, what="default SA")
    c.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80", "-n", "shop")
    c.kubectl("rollout", "status", "deployment/web", "-n", "shop", "--timeout=60s", timeout=70)
    pods = json.loads(c.kubectl("get", "pods", "-n", "shop", "-o", "json").stdout)["items"]
    assert len(pods) == 3 and all(p["status"]["phase"] == "Running" for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} <= {"up-node-0", "up-node-1"}
    c.kubectl("expose", "deployment", "web", "--port=80", "-n", "shop")

    def endpoints() -> set[str]:
        ep = json.loads(c.kubectl("get", "endpoints", "web", "-n", "shop", "-o", "json").stdout)
        return {a["ip"] for s in ep.get("subsets") or () for a in s.get("addresses") or ()}

    assert wait_for(lambda: endpoints() == {p["status"]["podIP"] for p in pods}, timeout=20, what="endpoints")
    nodes = json.loads(c.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert all(n["spec"].get("podCIDR") for n in nodes if n["metadata"]["name"].startswith("up-node-"))
    # deleting the namespace: the namespace controller empties it (the GC and hollow nodes finish
    # the pods), then it goes; kubectl waits for that
    c.kubectl("delete", "namespace", "shop", "--timeout=90s", timeout=100)
    assert c.kubectl("get", "namespace", "shop", check=False).returncode != 0
