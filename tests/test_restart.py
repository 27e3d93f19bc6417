"""`k8py up` is a database, not a demo: a restart on the same data dir keeps every object."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.conftest import http, start_cluster, wait_for


def test_restart_keeps_objects_and_revisions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = start_cluster(data)
    try:
        c.kubectl("create", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata: {name: keep}\n")
        cm = http(c, "POST", "/api/v1/namespaces/keep/configmaps", {"metadata": {"name": "k"}, "data": {"x": "1"}}).json()
        svc = http(c, "POST", "/api/v1/namespaces/keep/services", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}).json()
    finally:
        assert c.stop() == 0  # SIGTERM: a clean stop
    assert "stopped" in c.log_path.read_text()
    c2 = start_cluster(data, port=c.port)
    try:
        got = http(c2, "GET", "/api/v1/namespaces/keep/configmaps/k").json()
        assert got["metadata"]["uid"] == cm["metadata"]["uid"]
        assert got["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
        assert http(c2, "GET", "/api/v1/namespaces/keep/services/s").json()["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
        rv = int(http(c2, "GET", "/api/v1/namespaces/keep/configmaps").json()["metadata"]["resourceVersion"])
        assert rv >= int(cm["metadata"]["resourceVersion"])
        assert c2.kubectl("get", "cm", "k", "-n", "keep", "-o", "name").stdout.strip() == "configmap/k"
    finally:
        c2.stop()


def test_kill_9_keeps_acknowledged_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = start_cluster(data)
    try:
        names = []
        for i in range(50):
            r = http(c, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"ack-{i}"}})
            assert r.status == 201
            names.append(f"ack-{i}")
    finally:
        os.kill(c.proc.pid, signal.SIGKILL)
        c.proc.wait()
    c2 = start_cluster(data)
    try:
        items = http(c2, "GET", "/api/v1/namespaces/default/configmaps").json()["items"]
        assert {i["metadata"]["name"] for i in items} >= set(names)
    finally:
        c2.stop()


def test_sigterm_stops_cleanly_and_fast(tmp_path: Path) -> None:
    c = start_cluster(tmp_path / "data")
    c.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: c.proc.poll() is not None, timeout=10, what="k8py up to exit")
    assert c.proc.returncode == 0
