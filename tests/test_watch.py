"""Watch over raw HTTPS: initial state, resume from a resourceVersion, selectors, bookmarks, 410."""

from __future__ import annotations

import http.client as httpclient
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import Cluster, _ssl_context, http, start_cluster, wait_for


class WatchStream:
    def __init__(self, cluster: Cluster, path: str, timeout: float = 15) -> None:
        self.conn = httpclient.HTTPSConnection("127.0.0.1", cluster.port, context=_ssl_context(cluster, True), timeout=timeout)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()

    def events(self) -> Iterator[dict[str, Any]]:
        """The events, but those of the ConfigMap every namespace has (kube-root-ca.crt)."""
        while True:
            line = self.resp.readline()
            if not line:
                return
            event = json.loads(line)
            if event["object"]["metadata"].get("name") != "kube-root-ca.crt":
                yield event

    def take(self, n: int) -> list[dict[str, Any]]:
        out = []
        it = self.events()
        for _ in range(n):
            out.append(next(it))
        return out

    def close(self) -> None:
        self.conn.close()


def _cm(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"v": "1"}}


def test_watch_initial_then_live(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http(cluster, "POST", base, _cm("a"))
    w = WatchStream(cluster, f"{base}?watch=true")
    try:
        first = w.take(1)[0]
        assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "a"
        http(cluster, "POST", base, _cm("b"))
        http(cluster, "PATCH", f"{base}/b", {"data": {"v": "2"}}, {"Content-Type": "application/merge-patch+json"})
        http(cluster, "DELETE", f"{base}/a")
        evs = w.take(3)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
        assert evs[1]["object"]["data"]["v"] == "2"
        revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        assert revs == sorted(revs)
    finally:
        w.close()


def test_watch_resume_from_resource_version(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = http(cluster, "POST", base, _cm("r1")).json()["metadata"]["resourceVersion"]
    http(cluster, "POST", base, _cm("r2"))
    http(cluster, "DELETE", f"{base}/r1")
    w = WatchStream(cluster, f"{base}?watch=1&resourceVersion={rv}")
    try:
        evs = w.take(2)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "r2"), ("DELETED", "r1")]
    finally:
        w.close()


def test_watch_label_selector_transitions(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = http(cluster, "GET", base).json()["metadata"]["resourceVersion"]
    w = WatchStream(cluster, f"{base}?watch=1&resourceVersion={rv}&labelSelector=team%3Dblue")
    try:
        http(cluster, "POST", base, _cm("x", team="red"))
        patch = {"Content-Type": "application/merge-patch+json"}
        http(cluster, "PATCH", f"{base}/x", {"metadata": {"labels": {"team": "blue"}}}, patch)
        http(cluster, "PATCH", f"{base}/x", {"data": {"v": "9"}}, patch)
        http(cluster, "PATCH", f"{base}/x", {"metadata": {"labels": {"team": "green"}}}, patch)
        evs = w.take(3)
        assert [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"]
    finally:
        w.close()


def test_watch_timeout_and_bookmarks(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http(cluster, "POST", base, _cm("s1"))
    w = WatchStream(
        cluster, f"{base}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=2"
    )
    try:
        evs = list(w.events())  # the server ends the stream after timeoutSeconds
        assert evs[0]["type"] == "ADDED"
        bookmark = evs[1]
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"
    finally:
        w.close()


def test_watch_table_events(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http(cluster, "POST", base, _cm("t1"))
    conn = httpclient.HTTPSConnection("127.0.0.1", cluster.port, context=_ssl_context(cluster, True), timeout=10)
    conn.request("GET", f"{base}?watch=1", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    resp = conn.getresponse()
    try:
        ev = json.loads(resp.readline())
        if ev["object"]["rows"][0]["cells"][0] == "kube-root-ca.crt":
            ev = json.loads(resp.readline())
        assert ev["object"]["kind"] == "Table"
        assert ev["object"]["rows"][0]["cells"][0] == "t1"
        assert ev["object"]["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    finally:
        conn.close()


def test_watch_too_old_is_410_and_continue_expires(tmp_path: Path) -> None:
    c = start_cluster(tmp_path / "compacting", extra=("--etcd-compaction-interval", "0.3", "--compaction-retain", "0"))
    try:
        base = "/api/v1/namespaces/default/configmaps"
        for i in range(3):
            http(c, "POST", base, _cm(f"old{i}"))
        page = http(c, "GET", f"{base}?limit=1").json()
        old_rv = page["metadata"]["resourceVersion"]
        http(c, "POST", base, _cm("newer"))

        def compacted() -> bool:
            http(c, "POST", base, {"metadata": {"generateName": "tick-"}})
            w = WatchStream(c, f"{base}?watch=1&resourceVersion={old_rv}")
            try:
                first = w.take(1)[0]
            finally:
                w.close()
            return first["type"] == "ERROR"

        wait_for(compacted, timeout=20, what="compaction")
        w = WatchStream(c, f"{base}?watch=1&resourceVersion=2")
        try:
            err = w.take(1)[0]
        finally:
            w.close()
        assert err["object"]["kind"] == "Status" and err["object"]["code"] == 410
        assert err["object"]["reason"] == "Expired" and "too old resource version" in err["object"]["message"]
        resp = http(c, "GET", f"{base}?limit=1&continue={page['metadata']['continue']}")
        assert resp.status == 410 and resp.json()["reason"] == "Expired"
        assert int(old_rv) > 0
    finally:
        c.stop()
