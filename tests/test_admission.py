"""The admission chain end to end: built-in plugins and admission webhooks against a real `k8py up`.

Webhooks are served by a small HTTPS aiohttp server this module runs on 127.0.0.1 (its own thread
and event loop) with a certificate from its own CA. Every webhook configuration is limited to the
test's namespace by its namespaceSelector and deleted afterwards, so a refusing webhook never leaks
into other tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from k8py.api import resources
from k8py.api.errors import StatusError
from k8py.api.registry import Registry
from k8py.apiserver.admission import Attributes, Priority, UserInfo
from k8py.apiserver.admission_plugins.limitranger import LimitRanger
from k8py.apiserver.admission_plugins.resourcequota import ResourceQuota
from k8py.apiserver.webhooks import rule_matches
from k8py.bootstrap import pki
from tests.conftest import Cluster, Response, free_port, http

Obj = dict[str, Any]
ARG = "/apis/admissionregistration.k8s.io/v1"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _create(cluster: Cluster, path: str, obj: Obj) -> Obj:
    """POST, then GET it back: a consistent read, so admission (reading the watch cache) sees it next."""
    resp = http(cluster, "POST", path, obj)
    assert resp.status == 201, resp.body
    name = resp.json()["metadata"]["name"]
    assert http(cluster, "GET", f"{path}/{name}").status == 200
    created: Obj = resp.json()
    return created


def _refused(resp: Response, code: int, message: str) -> Obj:
    assert resp.status == code, resp.body
    body: Obj = resp.json()
    assert body["kind"] == "Status" and body["code"] == code and body["message"] == message, body
    return body


def _pod(name: str, *containers: Obj, **spec: Any) -> Obj:
    containers = containers or ({"name": "app", "image": "nginx"},)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": list(containers), **spec}}


# ---- built-in plugins ------------------------------------------------------------------------


def test_limit_ranger_defaults_and_bounds(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    limits = {
        "metadata": {"name": "limits"},
        "spec": {
            "limits": [
                {"type": "Container", "max": {"cpu": "1", "memory": "1Gi"}, "defaultRequest": {"cpu": "100m"}, "default": {"cpu": "500m"}},
                {"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}},
            ]
        },
    }
    _create(cluster, f"{base}/limitranges", limits)
    pod = http(cluster, "POST", f"{base}/pods", _pod("defaulted")).json()
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    )
    big = {"name": "app", "image": "nginx", "resources": {"limits": {"cpu": "2", "memory": "2048Mi"}}}
    body = _refused(
        http(cluster, "POST", f"{base}/pods", _pod("big", big)),
        403,
        'pods "big" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, '
        "maximum memory usage per Container is 1Gi, but limit is 2Gi]",
    )
    assert body["reason"] == "Forbidden" and body["details"] == {"name": "big", "kind": "pods"}
    claim = {
        "metadata": {"name": "huge"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
    }
    _refused(
        http(cluster, "POST", f"{base}/persistentvolumeclaims", claim),
        403,
        'persistentvolumeclaims "huge" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi',
    )


def test_service_account_token_volume(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    root_ca = http(cluster, "GET", f"{base}/configmaps/kube-root-ca.crt").json()
    assert root_ca["data"]["ca.crt"] == (cluster.data_dir / "pki" / "ca.crt").read_text()
    init = {"name": "init", "image": "busybox"}
    own = {"name": "own", "image": "nginx", "volumeMounts": [{"name": "x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}
    pod = http(
        cluster, "POST", f"{base}/pods",
        _pod("web", {"name": "app", "image": "nginx"}, own, initContainers=[init], volumes=[{"name": "x", "emptyDir": {}}]),
    ).json()  # fmt: skip
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    volume = spec["volumes"][-1]
    assert volume["name"].startswith("kube-api-access-") and len(volume["name"]) == len("kube-api-access-") + 5
    assert volume["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    }
    mount = {"name": volume["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    assert spec["containers"][0]["volumeMounts"] == [mount] and spec["initContainers"][0]["volumeMounts"] == [mount]
    assert mount not in spec["containers"][1]["volumeMounts"]  # it mounts something of its own there

    opted_out = http(cluster, "POST", f"{base}/pods", _pod("quiet", automountServiceAccountToken=False)).json()
    assert "volumes" not in opted_out["spec"] and "volumeMounts" not in opted_out["spec"]["containers"][0]
    _create(cluster, f"{base}/serviceaccounts", {"metadata": {"name": "builder"}, "automountServiceAccountToken": False})
    as_builder = http(cluster, "POST", f"{base}/pods", _pod("built", serviceAccountName="builder")).json()
    assert as_builder["spec"]["serviceAccountName"] == "builder" and "volumes" not in as_builder["spec"]

    res = cluster.kubectl("run", "ghost", "--image=nginx", "-n", namespace, "--overrides", '{"spec": {"serviceAccountName": "ghost"}}', check=False)
    assert res.returncode != 0
    assert res.stderr.strip() == (
        'Error from server (Forbidden): pods "ghost" is forbidden: error looking up service account '
        f'{namespace}/ghost: serviceaccount "ghost" not found'
    )


def test_default_storage_class(cluster: Cluster, namespace: str) -> None:
    classes = "/apis/storage.k8s.io/v1/storageclasses"
    default = {"metadata": {"name": f"{namespace}-fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}
    _create(cluster, classes, {**default, "provisioner": "example.com/fast"})
    try:
        base = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
        claim = {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
        defaulted = http(cluster, "POST", base, {"metadata": {"name": "a"}, **claim}).json()
        assert defaulted["spec"]["storageClassName"] == f"{namespace}-fast"
        chosen = {"metadata": {"name": "b"}, "spec": {**claim["spec"], "storageClassName": ""}}
        assert http(cluster, "POST", base, chosen).json()["spec"]["storageClassName"] == ""
    finally:
        http(cluster, "DELETE", f"{classes}/{namespace}-fast")


def test_resource_quota(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    quota = {"metadata": {"name": "compute"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1", "count/secrets": "1"}}}
    _create(cluster, f"{base}/resourcequotas", quota)
    _refused(
        http(cluster, "POST", f"{base}/pods", _pod("bare")),
        403,
        'pods "bare" is forbidden: failed quota: compute: must specify requests.cpu for: app',
    )

    def cpu(name: str, amount: str) -> Obj:
        return _pod(name, {"name": "app", "image": "nginx", "resources": {"requests": {"cpu": amount}}})

    assert http(cluster, "POST", f"{base}/pods", cpu("one", "600m")).status == 201
    res = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(cpu("two", "600m")), check=False)
    assert res.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": pods "two" is forbidden: exceeded quota: compute, '
        "requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
    )
    assert http(cluster, "POST", f"{base}/pods", cpu("three", "400m")).status == 201
    _refused(
        http(cluster, "POST", f"{base}/pods", cpu("four", "0")),
        403,
        'pods "four" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2',
    )
    assert http(cluster, "POST", f"{base}/secrets", {"metadata": {"name": "s1"}}).status == 201
    _refused(
        http(cluster, "POST", f"{base}/secrets", {"metadata": {"name": "s2"}}),
        403,
        'secrets "s2" is forbidden: exceeded quota: compute, requested: count/secrets=1, used: count/secrets=1, limited: count/secrets=1',
    )


# ---- webhooks --------------------------------------------------------------------------------


@dataclass
class WebhookServer:
    """An HTTPS admission webhook server: /validate refuses objects labelled `deny`, /mutate/<label>
    labels them `<label>: "yes"`, /slow answers too late. Every AdmissionReview it receives is kept."""

    port: int
    ca_bundle: str
    reviews: list[tuple[str, Obj]] = field(default_factory=list)  # (path, AdmissionReview)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def requests(self, path: str) -> list[Obj]:
        return [review["request"] for p, review in self.reviews if p == path]


def _answer(review: Obj, **response: Any) -> web.Response:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": review["request"]["uid"], **response}}
    return web.json_response(body)


def _labels(review: Obj) -> dict[str, str]:
    request = review["request"]
    return ((request["object"] or request["oldObject"])["metadata"]).get("labels") or {}


def _webhook_app(server: WebhookServer) -> web.Application:
    async def validate(request: web.Request) -> web.Response:
        review = await request.json()
        server.reviews.append(("/validate", review))
        if "deny" in _labels(review):
            status = {"code": 403, "reason": "Forbidden", "message": "objects labelled deny are not welcome"}
            return _answer(review, allowed=False, status=status)
        return _answer(review, allowed=True, warnings=["checked by the test webhook"])

    async def mutate(request: web.Request) -> web.Response:
        review = await request.json()
        server.reviews.append((request.path, review))
        label = request.match_info["label"]
        has_labels = "labels" in review["request"]["object"]["metadata"]
        op = {"op": "add", "path": f"/metadata/labels/{label}", "value": "yes"} if has_labels else {
            "op": "add", "path": "/metadata/labels", "value": {label: "yes"},
        }  # fmt: skip
        patch = base64.b64encode(json.dumps([op]).encode()).decode()
        return _answer(review, allowed=True, patchType="JSONPatch", patch=patch)

    async def slow(request: web.Request) -> web.Response:
        review = await request.json()
        await asyncio.sleep(2)
        return _answer(review, allowed=True)

    app = web.Application()
    app.router.add_post("/validate", validate)
    app.router.add_post("/mutate/{label}", mutate)
    app.router.add_post("/slow", slow)
    return app


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[WebhookServer]:
    ca = pki.create_ca("webhook-test-ca")
    cert = pki.issue_serving_cert(ca, "webhook", [], ["127.0.0.1"])
    server = WebhookServer(free_port(), base64.b64encode(ca.cert_pem()).decode())
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_webhook_app(server), access_log=None, shutdown_timeout=1.0)

    async def start(ctx: ssl.SSLContext) -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", server.port, ssl_context=ctx).start()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        certfile, keyfile = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        pki.save_pair(cert, certfile, keyfile)
        ctx.load_cert_chain(certfile, keyfile)
    loop.run_until_complete(start(ctx))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@contextmanager
def webhook(
    cluster: Cluster, kind: str, namespace: str, url: str, ca_bundle: str, suffix: str = "", **options: Any
) -> Iterator[str]:
    """A (Validating|Mutating)WebhookConfiguration for configmaps in `namespace` only; deleted on exit."""
    name = f"{namespace}-{kind.lower()}"[:62] + suffix
    hook = {
        "name": f"{kind.lower()}.k8py.test",
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **options,
    }
    path = f"{ARG}/{kind.lower()}webhookconfigurations"
    _create(cluster, path, {"metadata": {"name": name}, "webhooks": [hook]})
    try:
        yield hook["name"]
    finally:
        http(cluster, "DELETE", f"{path}/{name}")


def _cm(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def test_validating_webhook(cluster: Cluster, namespace: str, webhook_server: WebhookServer) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    with webhook(cluster, "Validating", namespace, webhook_server.url("/validate"), webhook_server.ca_bundle) as name:
        allowed = http(cluster, "POST", base, _cm("fine"))
        assert allowed.status == 201 and allowed.headers["Warning"] == '299 - "checked by the test webhook"'
        body = _refused(
            http(cluster, "POST", base, _cm("bad", deny="1")),
            403,
            f'admission webhook "{name}" denied the request: objects labelled deny are not welcome',
        )
        assert body["reason"] == "Forbidden"
        res = cluster.kubectl("label", "configmap", "fine", "deny=1", "-n", namespace, check=False)
        assert res.stderr.strip() == (
            f'Error from server (Forbidden): admission webhook "{name}" denied the request: objects labelled deny are not welcome'
        )
        request = webhook_server.requests("/validate")[-1]
        assert request["operation"] == "UPDATE" and request["name"] == "fine" and request["namespace"] == namespace
        assert request["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
        assert request["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
        assert request["requestResource"] == request["resource"] and request["dryRun"] is False
        assert request["userInfo"]["username"] == "kubernetes-admin" and "system:masters" in request["userInfo"]["groups"]
        assert request["object"]["metadata"]["labels"] == {"deny": "1"} and request["oldObject"]["metadata"]["name"] == "fine"
        assert request["options"]["kind"] == "UpdateOptions" and request["uid"]
        # dry run: sideEffects None is called (and told), so it can refuse
        _refused(http(cluster, "POST", base + "?dryRun=All", _cm("dry", deny="1")), 403, body["message"])
        assert webhook_server.requests("/validate")[-1]["dryRun"] is True
        # outside its namespaceSelector nothing is asked
        outside = http(cluster, "POST", "/api/v1/namespaces/default/configmaps?dryRun=All", _cm("bad", deny="1"))
        assert outside.status == 201


def test_mutating_webhook(cluster: Cluster, namespace: str, webhook_server: WebhookServer) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    url = webhook_server.url("/mutate/mutated")
    selector = {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}
    with webhook(cluster, "Mutating", namespace, url, webhook_server.ca_bundle, objectSelector=selector):
        created = http(cluster, "POST", base, _cm("m1", team="a")).json()
        assert created["metadata"]["labels"] == {"team": "a", "mutated": "yes"}
        assert http(cluster, "GET", f"{base}/m1").json()["metadata"]["labels"] == created["metadata"]["labels"]
        unlabelled = http(cluster, "POST", base, {"metadata": {"name": "m2"}}).json()
        assert unlabelled["metadata"]["labels"] == {"mutated": "yes"}
        skipped = http(cluster, "POST", base, _cm("m3", skip="1")).json()  # the objectSelector excludes it
        assert skipped["metadata"]["labels"] == {"skip": "1"}
        with webhook(cluster, "Validating", namespace, webhook_server.url("/validate"), webhook_server.ca_bundle):
            # mutating before validating: the validating webhook sees the mutated object
            http(cluster, "POST", base, _cm("m4"))
            assert webhook_server.requests("/validate")[-1]["object"]["metadata"]["labels"]["mutated"] == "yes"


def test_webhook_failure_policy_and_timeout(cluster: Cluster, namespace: str, webhook_server: WebhookServer) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    dead = f"https://127.0.0.1:{free_port()}/validate"
    with webhook(cluster, "Validating", namespace, dead, webhook_server.ca_bundle) as name:
        body = _refused(
            http(cluster, "POST", base, _cm("down")),
            500,
            f'Internal error occurred: failed calling webhook "{name}": failed to call webhook: '
            f'Post "{dead}?timeout=10s": dial tcp 127.0.0.1:{dead.split(":")[2].split("/")[0]}: connect: connection refused',
        )
        assert body["reason"] == "InternalError"
    with webhook(cluster, "Validating", namespace, dead, webhook_server.ca_bundle, failurePolicy="Ignore"):
        assert http(cluster, "POST", base, _cm("ignored")).status == 201
    slow = webhook_server.url("/slow")
    with webhook(cluster, "Mutating", namespace, slow, webhook_server.ca_bundle, timeoutSeconds=1) as name:
        _refused(
            http(cluster, "POST", base, _cm("late")),
            500,
            f'Internal error occurred: failed calling webhook "{name}": failed to call webhook: '
            f'Post "{slow}?timeout=1s": context deadline exceeded',
        )
    wrong_ca = base64.b64encode(pki.create_ca("stranger").cert_pem()).decode()
    with webhook(cluster, "Validating", namespace, webhook_server.url("/validate"), wrong_ca):
        resp = http(cluster, "POST", base, _cm("untrusted"))
        assert resp.status == 500 and "tls: failed to verify certificate" in resp.json()["message"]


def test_webhook_side_effects_and_dry_run(cluster: Cluster, namespace: str, webhook_server: WebhookServer) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    url = webhook_server.url("/validate")
    with webhook(cluster, "Validating", namespace, url, webhook_server.ca_bundle, sideEffects="Some") as name:
        _refused(
            http(cluster, "POST", base + "?dryRun=All", _cm("dry")),
            400,
            f'admission webhook "{name}" does not support dry run',
        )
        assert http(cluster, "POST", base, _cm("wet")).status == 201


def test_mutating_webhook_reinvocation(cluster: Cluster, namespace: str, webhook_server: WebhookServer) -> None:
    """A webhook with reinvocationPolicy IfNeeded is asked again when a later webhook changed the object."""
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    first, second = webhook_server.url("/mutate/first"), webhook_server.url("/mutate/second")
    bundle = webhook_server.ca_bundle
    # configurations run in name order: "<ns>-mutating" (first) before "<ns>-mutating2" (second)
    with webhook(cluster, "Mutating", namespace, first, bundle, reinvocationPolicy="IfNeeded"):
        with webhook(cluster, "Mutating", namespace, second, bundle, suffix="2"):
            created = http(cluster, "POST", base, _cm("again")).json()
    assert created["metadata"]["labels"] == {"first": "yes", "second": "yes"}
    asked = [r["object"]["metadata"].get("labels") for r in webhook_server.requests("/mutate/first") if r["name"] == "again"]
    assert asked == [{}, {"first": "yes", "second": "yes"}]


# ---- pure logic --------------------------------------------------------------------------------


class FakeCache:
    """The watch cache as plugins use it: objects by store key."""

    def __init__(self, objects: dict[str, Obj]) -> None:
        self.objects = objects

    def get(self, key: str) -> Obj | None:
        return self.objects.get(key)

    def list(self, prefix: str) -> list[Obj]:
        return [v for k, v in sorted(self.objects.items()) if k.startswith(prefix)]

    async def sync(self) -> None:
        return None


def _attrs(operation: str, resource: str, obj: Obj | None, *, namespace: str = "ns", subresource: str = "") -> Attributes:
    info = Registry().get("", "v1", resource)
    assert info is not None
    name = (obj or {}).get("metadata", {}).get("name", "x")
    return Attributes(operation, info, namespace, name, obj, None, subresource, UserInfo("u"), False)


def test_pod_requests_count_sidecars_init_containers_and_overhead() -> None:
    pod = {
        "spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m"}}},
                {"resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}},
            ],
            "initContainers": [
                {"resources": {"requests": {"cpu": "1"}}},
                {"restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},  # a sidecar
                {"resources": {"requests": {"cpu": "500m", "memory": "2Gi"}}},  # runs beside the sidecar
            ],
            "overhead": {"cpu": "10m"},
        }
    }
    assert {k: str(v) for k, v in resources.pod_requests(pod).items()} == {"cpu": "1010m", "memory": "2Gi"}
    assert {k: str(v) for k, v in resources.pod_requests(pod, overhead=False).items()} == {"cpu": "1", "memory": "2Gi"}


def test_limit_ranger_ratio_and_pod_limits() -> None:
    lr = {
        "spec": {
            "limits": [
                {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}},
                {"type": "Pod", "max": {"memory": "1Gi"}},
            ]
        }
    }
    plugin = LimitRanger(FakeCache({"/registry/limitranges/ns/l": lr}), Registry().get("", "v1", "limitranges"))  # type: ignore[arg-type]
    container = {"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}}
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [container, {**container, "name": "d"}]}}
    with pytest.raises(StatusError) as e:
        plugin.validate(_attrs("CREATE", "pods", pod))
    assert e.value.message == (
        'pods "p" is forbidden: [cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000, '
        "maximum memory usage per Pod is 1Gi, but limit is 2Gi]"
    )


async def test_quota_scopes() -> None:
    quota = {"metadata": {"name": "be"}, "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}
    running = {"metadata": {"name": "old"}, "spec": {"containers": [{"name": "c"}]}}
    cache = FakeCache({"/registry/resourcequotas/ns/be": quota, "/registry/pods/ns/old": running})
    plugin = ResourceQuota(cache, Registry().get("", "v1", "resourcequotas"))  # type: ignore[arg-type]
    best_effort = {"metadata": {"name": "new"}, "spec": {"containers": [{"name": "c"}]}}
    with pytest.raises(StatusError) as e:
        await plugin.validate(_attrs("CREATE", "pods", best_effort))
    assert e.value.message == 'pods "new" is forbidden: exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1'
    burstable = {"metadata": {"name": "new"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}
    await plugin.validate(_attrs("CREATE", "pods", burstable))  # outside the quota's scope
    finished = {**running, "status": {"phase": "Succeeded"}}
    cache.objects["/registry/pods/ns/old"] = finished
    await plugin.validate(_attrs("CREATE", "pods", best_effort))  # terminal pods use no "pods" quota


@pytest.mark.parametrize(
    ("rule", "resource", "subresource", "matches"),
    [
        ({"resources": ["pods"]}, "pods", "", True),
        ({"resources": ["pods"]}, "pods", "status", False),
        ({"resources": ["pods/status"]}, "pods", "status", True),
        ({"resources": ["pods/*"]}, "pods", "status", True),
        ({"resources": ["*"]}, "pods", "status", False),
        ({"resources": ["*/*"]}, "pods", "status", True),
        ({"resources": ["*"], "scope": "Cluster"}, "pods", "", False),
        ({"resources": ["*"], "scope": "Cluster"}, "namespaces", "", True),
        ({"resources": ["*"], "scope": "Namespaced"}, "namespaces", "", False),
        ({"resources": ["*"], "scope": "Namespaced"}, "configmaps", "", True),
    ],
)
def test_webhook_rules(rule: Obj, resource: str, subresource: str, matches: bool) -> None:
    rule = {"operations": ["*"], "apiGroups": [""], "apiVersions": ["*"], **rule}
    namespace = "" if resource == "namespaces" else "ns"
    attrs = _attrs("UPDATE", resource, {"metadata": {"name": "x"}}, namespace=namespace, subresource=subresource)
    assert rule_matches(rule, attrs, attrs.info) is matches


def test_priority() -> None:
    classes = {
        "/registry/priorityclasses/low": {"metadata": {"name": "low"}, "value": 10, "globalDefault": True, "preemptionPolicy": "Never"},
    }
    plugin = Priority(FakeCache(classes), Registry().get("scheduling.k8s.io", "v1", "priorityclasses"))  # type: ignore[arg-type]
    pod: Obj = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    plugin.admit(_attrs("CREATE", "pods", pod))
    assert (pod["spec"]["priorityClassName"], pod["spec"]["priority"], pod["spec"]["preemptionPolicy"]) == ("low", 10, "Never")
    stated = {"metadata": {"name": "q"}, "spec": {"containers": [{"name": "c"}], "priority": 5}}
    with pytest.raises(StatusError) as e:
        plugin.admit(_attrs("CREATE", "pods", stated))
    assert e.value.message == (
        'pods "q" is forbidden: the integer value of priority (5) must not be provided in pod spec; '
        "priority admission controller computed 10 from the given PriorityClass name"
    )
    info = Registry().get("scheduling.k8s.io", "v1", "priorityclasses")
    assert info is not None
    second = {"metadata": {"name": "other"}, "value": 1, "globalDefault": True}
    with pytest.raises(StatusError) as e:
        plugin.validate(Attributes("CREATE", info, "", "other", second, None, "", UserInfo("u"), False))
    assert e.value.message == (
        'priorityclasses.scheduling.k8s.io "other" is forbidden: PriorityClass low is already marked as default. '
        "Only one default can exist"
    )
