"""Auditing: a cluster with an audit policy and a rotated log; the unit parts (policy matching,
lumberjack rotation) without one."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8py.apiserver.admission import UserInfo
from k8py.apiserver.audit import Auditor, LogBackend, Policy, PolicyError, RotatingFile, parse_policy
from k8py.apiserver.authorization import Attributes
from tests.conftest import Cluster, http, start_cluster, wait_for

QUIET = "system:serviceaccount:default:quiet"
POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": [QUIET]},
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*"]},
        {"level": "RequestResponse", "resources": [{"group": "", "resources": ["configmaps"]}], "omitManagedFields": True},
        {"level": "Request", "resources": [{"group": "", "resources": ["secrets"]}], "verbs": ["create", "update", "patch"]},
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection", "watch"]},
        {"level": "Metadata", "userGroups": ["system:unauthenticated"]},
        {"level": "None"},
    ],
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
BACKUP = re.compile(r"^audit-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log$")


# ---- units ---------------------------------------------------------------------------------------------


def _attrs(verb: str, resource: str = "", **kw: Any) -> Attributes:
    return Attributes(verb, resource=resource, **kw) if resource else Attributes(verb, resource_request=False, **kw)


def test_policy_matching() -> None:
    policy = parse_policy({
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "None", "users": ["quiet"]},
            {"level": "Request", "resources": [{"group": "", "resources": ["pods/log", "*/status"]}]},
            {"level": "RequestResponse", "resources": [{"group": "apps", "resources": ["deployments/*"], "resourceNames": ["web"]}]},
            {"level": "Metadata", "namespaces": ["kube-system"], "omitStages": ["ResponseStarted"], "omitManagedFields": True},
            {"level": "Metadata", "nonResourceURLs": ["/api*", "/version"]},
        ],
    })
    u = UserInfo("alice", ["devs"])
    assert policy.evaluate(UserInfo("quiet"), _attrs("create", "pods", namespace="kube-system")).level == "None"
    assert policy.evaluate(u, _attrs("get", "pods", subresource="log")).level == "Request"
    assert policy.evaluate(u, _attrs("update", "nodes", subresource="status")).level == "Request"
    assert policy.evaluate(u, _attrs("get", "pods")).level == "None"
    web = _attrs("get", "deployments", api_group="apps", name="web", subresource="scale")
    assert policy.evaluate(u, web).level == "RequestResponse"
    other = _attrs("get", "deployments", api_group="apps", name="other", subresource="scale")
    assert policy.evaluate(u, other).level == "None"
    config = policy.evaluate(u, _attrs("delete", "configmaps", namespace="kube-system"))
    assert (config.level, config.omit_stages, config.omit_managed_fields) == (
        "Metadata", {"RequestReceived", "ResponseStarted"}, True
    )
    assert policy.evaluate(u, _attrs("get", path="/apis/apps")).level == "Metadata"
    assert policy.evaluate(u, _attrs("get", path="/version")).level == "Metadata"
    assert policy.evaluate(u, _attrs("get", path="/healthz")).level == "None"
    assert Policy().evaluate(u, _attrs("get", "pods")).level == "None"
    for bad, message in [
        ({"rules": [{"level": "Everything"}]}, "level: Unsupported value"),
        ({"rules": [{"level": "None", "resources": [{"resources": ["pods"]}], "nonResourceURLs": ["/x"]}]}, "both"),
        ({"omitStages": ["Sometimes"]}, "omitStages"),
        ({"rules": [{"level": "None", "resources": [{"resourceNames": ["a"]}]}]}, "requires at least one resource"),
    ]:
        with pytest.raises(PolicyError, match=message):
            parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", **bad})


def test_rotation_names_and_backups(tmp_path: Path) -> None:
    out = RotatingFile(tmp_path / "audit.log", max_size=100, max_backups=2, max_age=0)
    for _ in range(5):
        out.write([b"x" * 60 + b"\n"])
        time.sleep(0.002)  # distinct millisecond timestamps in the backups' names
    out.close()
    backups = sorted(p.name for p in tmp_path.iterdir() if p.name != "audit.log")
    assert len(backups) == 2 and all(BACKUP.match(b) for b in backups), backups
    assert (tmp_path / "audit.log").stat().st_size == 61
    # maxage: backups older than that many days go at the next rotation; other files stay
    aged = tmp_path / "aged"
    aged.mkdir()
    (aged / "audit-2020-01-01T00-00-00.000.log").write_text("old\n")
    (aged / "audit-notes.log").write_text("not a backup\n")
    out = RotatingFile(aged / "audit.log", max_size=10, max_backups=0, max_age=1)
    out.write([b"0123456789\n", b"next\n"])
    out.close()
    names = sorted(p.name for p in aged.iterdir())
    assert "audit-2020-01-01T00-00-00.000.log" not in names and "audit-notes.log" in names and len(names) == 3


@pytest.mark.filterwarnings("ignore:It is recommended to use web.RequestKey")  # the server's str request keys
async def test_panic_stage_and_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    policy = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Request"}]})
    auditor = Auditor(policy, LogBackend("-"))

    @web.middleware
    async def errors_(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except RuntimeError:
            return web.Response(status=500)

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        request["user"] = UserInfo("alice", ["devs"])
        return await handler(request)

    async def boom(request: web.Request) -> web.Response:
        await request.read()
        raise RuntimeError("boom")

    app = web.Application(middlewares=[errors_, *auditor.outer, authenticate, *auditor.inner])
    app.on_response_prepare.append(auditor.on_prepare)
    app.router.add_post("/api/v1/namespaces/default/configmaps", boom)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "x"}})
        assert resp.status == 500
        aid = resp.headers["Audit-Id"]
    await auditor.close()
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert [(e["stage"], e["auditID"]) for e in lines] == [("RequestReceived", aid), ("Panic", aid)]
    assert lines[1]["responseStatus"]["code"] == 500 and "boom" in lines[1]["responseStatus"]["message"]
    assert lines[0]["stageTimestamp"] == lines[0]["requestReceivedTimestamp"] and "annotations" not in lines[0]


# ---- a cluster ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    d = tmp_path_factory.mktemp("audit")
    (d / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    c = start_cluster(d / "data", extra=(
        "--disable-scheduler", "--controllers", "serviceaccount",
        "--authorization-mode", "AlwaysAllow",  # (users without roles act; anonymous requests are 401)
        "--audit-policy-file", str(d / "policy.yaml"), "--audit-log-path", str(d / "logs" / "audit.log"),
        "--audit-log-maxsize", "1", "--audit-log-maxbackup", "2",
    ))
    try:
        yield c
    finally:
        c.stop()


def _log_dir(c: Cluster) -> Path:
    return c.data_dir.parent / "logs"


def events(c: Cluster) -> list[dict[str, Any]]:
    """Every event in the log and its backups, oldest file first."""
    files = sorted(_log_dir(c).glob("audit-*.log")) + [_log_dir(c) / "audit.log"]
    return [json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines()]


def find(c: Cluster, **match: Any) -> list[dict[str, Any]]:
    def hit(ev: dict[str, Any]) -> bool:
        ref = ev.get("objectRef") or {}
        return all((ev.get(k) if k in ("verb", "stage", "level", "auditID") else ref.get(k)) == v for k, v in match.items())

    return [ev for ev in events(c) if hit(ev)]


def one(c: Cluster, **match: Any) -> dict[str, Any]:
    return wait_for(lambda: (found := find(c, stage="ResponseComplete", **match)) and found[-1], timeout=10, what=str(match))


def test_levels_of_mutating_requests(audited: Cluster) -> None:
    c = audited
    c.kubectl("create", "configmap", "cm1", "--from-literal=a=b")
    c.kubectl("patch", "configmap", "cm1", "-p", '{"data":{"a":"c"}}')
    c.kubectl("delete", "configmap", "cm1")
    c.kubectl("create", "secret", "generic", "s1", "--from-literal=k=v")
    c.kubectl("create", "namespace", "audit-ns")
    c.kubectl("label", "namespace", "audit-ns", "x=y")

    created = one(c, verb="create", resource="configmaps", name="cm1")
    assert created["level"] == "RequestResponse"
    assert created["requestObject"]["data"] == {"a": "b"}
    assert created["responseObject"]["data"] == {"a": "b"}
    assert "managedFields" not in created["responseObject"]["metadata"]  # omitManagedFields
    assert created["responseStatus"] == {"metadata": {}, "code": 201}
    assert created["objectRef"] == {"resource": "configmaps", "namespace": "default", "name": "cm1", "apiVersion": "v1"}
    assert created["user"]["username"] == "kubernetes-admin" and "system:masters" in created["user"]["groups"]
    assert created["sourceIPs"] == ["127.0.0.1"] and created["userAgent"].startswith("kubectl")
    assert created["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert TIMESTAMP.match(created["requestReceivedTimestamp"]) and TIMESTAMP.match(created["stageTimestamp"])
    assert list(created)[:6] == ["kind", "apiVersion", "level", "auditID", "stage", "requestURI"]
    assert created["kind"] == "Event" and created["apiVersion"] == "audit.k8s.io/v1"
    patched = one(c, verb="patch", resource="configmaps", name="cm1")
    assert patched["requestObject"] == {"data": {"a": "c"}} and patched["responseObject"]["data"] == {"a": "c"}
    assert one(c, verb="delete", resource="configmaps", name="cm1")["level"] == "RequestResponse"

    secret = one(c, verb="create", resource="secrets", name="s1")
    assert secret["level"] == "Request" and secret["requestObject"]["data"] == {"k": "dg=="}
    assert "responseObject" not in secret
    for verb in ("create", "patch"):
        ns = one(c, verb=verb, resource="namespaces", name="audit-ns")
        assert ns["level"] == "Metadata" and "requestObject" not in ns and "responseObject" not in ns
    assert not find(c, stage="RequestReceived")  # omitted by the policy
    c.kubectl("get", "secret", "s1")
    assert not find(c, verb="get", resource="secrets")  # level None


def test_policy_none_for_a_user(audited: Cluster) -> None:
    c = audited
    c.kubectl("create", "serviceaccount", "quiet")
    token = c.kubectl("create", "token", "quiet").stdout.strip()
    res = http(c, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "quiet-cm"}},
               {"Authorization": f"Bearer {token}"}, client_cert=False)
    assert res.status == 201, res.body
    c.kubectl("create", "configmap", "loud-cm")
    one(c, verb="create", resource="configmaps", name="loud-cm")  # written after quiet-cm's would be
    assert not find(c, name="quiet-cm")
    assert not [e for e in events(c) if e["user"].get("username") == QUIET]


def test_impersonated_user(audited: Cluster) -> None:
    audited.kubectl("--as", "bob", "--as-group", "devs", "create", "configmap", "as-bob")
    ev = one(audited, verb="create", resource="configmaps", name="as-bob")
    assert ev["user"]["username"] == "kubernetes-admin"
    assert ev["impersonatedUser"] == {"username": "bob", "groups": ["devs", "system:authenticated"]}


def test_audit_id_header_watch_stages_and_401(audited: Cluster) -> None:
    c = audited
    res = http(c, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "with-id"}}, {"Audit-ID": "my-audit-id"})
    assert res.status == 201 and res.headers["Audit-Id"] == "my-audit-id"
    assert one(c, auditID="my-audit-id")["objectRef"]["name"] == "with-id"
    res = http(c, "GET", "/api/v1/namespaces/default/configmaps/with-id")
    assert re.fullmatch(r"[0-9a-f-]{36}", res.headers["Audit-Id"])

    res = http(c, "GET", "/api/v1/namespaces/default/secrets?watch=1&timeoutSeconds=1")
    assert res.status == 200
    aid = res.headers["Audit-Id"]
    started = wait_for(lambda: find(c, auditID=aid, stage="ResponseStarted"), what="ResponseStarted")[0]
    done = one(c, auditID=aid)
    assert started["verb"] == done["verb"] == "watch" and done["responseStatus"]["code"] == 200
    assert started["stageTimestamp"] <= done["stageTimestamp"]

    res = http(c, "GET", "/api/v1/namespaces", client_cert=False)
    assert res.status == 401
    failed = wait_for(lambda: find(c, auditID=res.headers["Audit-Id"]), what="401 event")[0]
    assert failed["stage"] == "ResponseStarted" and failed["responseStatus"]["code"] == 401 and failed["user"] == {}

    res = http(c, "GET", "/api/v1/namespaces/default/secrets/missing")  # a read: level None
    assert res.status == 404 and not find(c, auditID=res.headers["Audit-Id"])
    res = http(c, "DELETE", "/api/v1/namespaces/default/secrets/missing")
    failed = one(c, auditID=res.headers["Audit-Id"])
    assert failed["responseStatus"]["code"] == 404 and failed["responseStatus"]["reason"] == "NotFound"


def test_rotation_and_no_event_lost_at_shutdown(audited: Cluster) -> None:
    c = audited
    big = {"metadata": {"name": ""}, "data": {"blob": "x" * 700_000}}
    for i in range(4):  # each create's event carries the 700 kB twice: > 1 MB
        big["metadata"]["name"] = f"big-{i}"
        assert http(c, "POST", "/api/v1/namespaces/default/configmaps", big).status == 201
    wait_for(lambda: len(list(_log_dir(c).glob("audit-*.log"))) == 2 and find(c, name="big-3"), what="rotation")
    assert all(BACKUP.match(p.name) for p in _log_dir(c).glob("audit-*.log"))
    for i in range(30):
        assert http(c, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"last-{i}"}}).status == 201
    assert c.stop() == 0
    names = {e["objectRef"].get("name") for e in events(c) if e["verb"] == "create" and e["stage"] == "ResponseComplete"}
    assert {f"last-{i}" for i in range(30)} <= names
