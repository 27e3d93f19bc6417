"""Issue 3's acceptance: a real kopf operator, kr8s and lightkube driving one CRD on `k8py up`.

The operator (tests/operators/widget_operator.py) runs as a `python -m kopf run --standalone
--namespace NS` subprocess against the session cluster; the tests assert on the cluster state
it produces. kr8s and lightkube work on the same CRD in namespaces the operator does not watch.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, free_port, http, wait_for

GROUP, VERSION, KIND, PLURAL = "k8py.test", "v1", "Widget", "widgets"
API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"  # also what kubectl is told: other tests' CRDs have Widget kinds too
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
FINALIZER = "k8py.test/widget-operator"  # settings.persistence.finalizer in the operator
OPERATOR = Path(__file__).parent / "operators" / "widget_operator.py"
REPO = Path(__file__).parent.parent

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": KIND, "listKind": "WidgetList", "shortNames": ["wdg"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "blue"},
                                },
                            },
                            "status": {
                                "type": "object",
                                # kopf keeps handler results (status.create_fn ...) and its progress here
                                "x-kubernetes-preserve-unknown-fields": True,
                                "properties": {
                                    "phase": {"type": "string"},
                                    "observedGeneration": {"type": "integer"},
                                },
                            },
                        },
                    }
                },
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }
        ],
    },
}


def widget_yaml(name: str, size: int, color: str, labels: dict[str, str] | None = None) -> str:
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "labels": labels or {}},
            "spec": {"size": size, "color": color}}
    return json.dumps(body)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def widget_crd(cluster: Cluster) -> dict[str, Any]:
    """The Widget CRD, created once (or found from an earlier module run) and Established."""
    created = http(cluster, "POST", CRDS, WIDGET_CRD)
    assert created.status in (201, 409), created.body

    def established() -> dict[str, Any] | None:
        got = http(cluster, "GET", f"{CRDS}/{CRD_NAME}").json()
        conds = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions", [])}
        return got if conds.get("Established") == "True" else None

    return wait_for(established, timeout=5, what=f"{CRD_NAME} Established")


class Operator:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, namespace: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.namespace = namespace  # the one namespace it serves

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> None:
        """Still running, and nothing went wrong on its side: kopf logs failed event posts, patches the
        server did not reflect ("inconsistencies"), handler errors and API errors as warnings or errors."""
        assert self.proc.poll() is None, f"kopf exited {self.proc.returncode}:\n{self.log()}"
        bad = [line for line in self.log().splitlines() if "[WARNING " in line or "[ERROR " in line]
        assert not bad, "\n".join(bad)


@pytest.fixture(scope="module", params=["list-then-watch", "watch-list"])
def operator(cluster: Cluster, widget_crd: dict[str, Any], tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[Operator]:
    """`python -m kopf run --standalone --namespace NS widget_operator.py`, ready when its liveness probe answers.

    Twice: kopf's default list-then-watch, and its WatchList mode (sendInitialEvents); each in a namespace of its own."""
    ns = f"t-widget-operator-{request.param}-{os.getpid() % 1000}"
    cluster.kubectl("create", "namespace", ns)
    wait_for(lambda: http(cluster, "GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default").status == 200,
             what="default ServiceAccount")
    # A Widget from before the operator: kopf finds it in its initial listing (or initial events).
    cluster.kubectl("create", "-n", ns, "-f", "-", input=widget_yaml("early", 8, "blue"))
    log_path = tmp_path_factory.mktemp("kopf") / "kopf.log"
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PYTHONUNBUFFERED": "1",
           "WIDGET_OPERATOR_INITIAL_STREAMING": "1" if request.param == "watch-list" else "0"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", ns,
             "--liveness", f"http://127.0.0.1:{port}/healthz", "--verbose", str(OPERATOR)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True,
        )
    op = Operator(proc, log_path, ns)

    def live() -> bool:
        assert proc.poll() is None, f"kopf exited {proc.returncode}:\n{op.log()}"
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200

    try:
        wait_for(live, timeout=20, what="kopf liveness")
        yield op
    finally:
        if proc.poll() is None:
            proc.terminate()  # kopf stops its watches and exits on SIGTERM
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def kubeconfig_env(cluster: Cluster) -> Iterator[Cluster]:
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    yield cluster
    if old is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = old


# --- the kopf operator ----------------------------------------------------------------------------


def _get(cluster: Cluster, path: str) -> dict[str, Any] | None:
    r = http(cluster, "GET", path)
    return r.json() if r.status == 200 else None


def test_kopf_operator_lifecycle(cluster: Cluster, operator: Operator) -> None:
    ns = operator.namespace
    wpath = f"/apis/{API_VERSION}/namespaces/{ns}/{PLURAL}/w1"
    cmpath = f"/api/v1/namespaces/{ns}/configmaps/w1-config"
    try:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=widget_yaml("w1", 3, "red"))

        # kopf adds its finalizer (there is a delete handler) ...
        wait_for(lambda: FINALIZER in ((_get(cluster, wpath) or {}).get("metadata", {}).get("finalizers") or []),
                 timeout=10, what="the operator's finalizer")

        # ... runs create_fn: the child ConfigMap, adopted ...
        w = _get(cluster, wpath)
        assert w is not None
        cm = wait_for(lambda: _get(cluster, cmpath), timeout=10, what="w1-config")
        assert cm["data"] == {"size": "3", "color": "red", "generation": "1"}
        assert cm["metadata"]["ownerReferences"] == [{
            "apiVersion": API_VERSION, "kind": KIND, "name": "w1", "uid": w["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True,
        }]
        assert cm["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "widget-operator"}

        # ... and writes status through the status subresource: its patch and the handler's result.
        def ready() -> dict[str, Any] | None:
            w = _get(cluster, wpath) or {}
            st = w.get("status", {})
            return w if st.get("phase") == "Ready" and "create_fn" in st else None

        w = wait_for(ready, timeout=10, what="status written")
        assert w["status"]["create_fn"] == {"child": "w1-config", "action": "created"}
        assert w["status"]["observedGeneration"] == 1
        assert w["metadata"]["generation"] == 1  # status writes do not bump the generation
        assert "kopf.zalando.org/last-handled-configuration" in w["metadata"]["annotations"]
        last = json.loads(w["metadata"]["annotations"]["kopf.zalando.org/last-handled-configuration"])
        assert last["spec"] == {"size": 3, "color": "red"}

        # Printer columns show what the operator did.
        out = cluster.kubectl("get", "wdg", "w1", "-n", ns).stdout.splitlines()
        assert out[0].split() == ["NAME", "SIZE", "COLOR", "PHASE", "AGE"]
        assert out[1].split()[:4] == ["w1", "3", "red", "Ready"]

        # An update: the spec changes, the generation bumps, update_fn patches the child.
        cluster.kubectl("patch", CRD_NAME, "w1", "-n", ns, "--type", "merge", "-p", '{"spec":{"size":5}}')
        wait_for(lambda: (_get(cluster, cmpath) or {}).get("data", {}).get("size") == "5", timeout=10,
                 what="w1-config updated")
        assert _get(cluster, cmpath)["data"] == {"size": "5", "color": "red", "generation": "2"}

        def updated() -> dict[str, Any] | None:
            w = _get(cluster, wpath) or {}
            return w if w.get("status", {}).get("observedGeneration") == 2 and "update_fn" in w["status"] else None

        w = wait_for(updated, timeout=10, what="status after the update")
        assert w["status"]["update_fn"] == {"child": "w1-config", "action": "updated"}
        assert w["status"]["phase"] == "Ready" and w["metadata"]["generation"] == 2

        # kopf posted Events for its handlers, visible to kubectl.
        def events() -> list[dict[str, Any]] | None:
            items = cluster.kubectl_json("get", "events", "-n", ns, "--field-selector",
                                         f"involvedObject.kind={KIND},involvedObject.name=w1")["items"]
            msgs = {e["message"] for e in items}
            want = {"Handler 'create_fn' succeeded.", "Handler 'update_fn' succeeded.", "ConfigMap w1-config updated"}
            return items if want <= msgs else None

        evs = wait_for(events, timeout=10, what="kopf's events")
        ev = next(e for e in evs if e["message"] == "Handler 'create_fn' succeeded.")
        assert ev["involvedObject"]["apiVersion"] == API_VERSION and ev["involvedObject"]["uid"] == w["metadata"]["uid"]
        assert ev["type"] == "Normal" and ev["source"]["component"] == "kopf"
        assert ev["metadata"]["name"].startswith("kopf-event-") and ev["reason"] == "Logging"
        # kopf.info() from the handler: an explicit Event with its own reason.
        synced = sorted(e["message"] for e in evs if e["reason"] == "ChildSynced")
        assert synced == ["ConfigMap w1-config created", "ConfigMap w1-config updated"]
        table = cluster.kubectl("get", "events", "-n", ns).stdout
        assert "widget/w1" in table and "Handler 'create_fn' succeeded." in table

        # Delete: the object stays (deletionTimestamp) until delete_fn ran and kopf took its finalizer off.
        cluster.kubectl("delete", CRD_NAME, "w1", "-n", ns, "--wait=false")
        marker = wait_for(lambda: _get(cluster, f"/api/v1/namespaces/{ns}/configmaps/w1-deleted"), timeout=10,
                          what="delete_fn's marker")
        assert marker["data"] == {"uid": w["metadata"]["uid"], "size": "5"}
        wait_for(lambda: http(cluster, "GET", wpath).status == 404, timeout=10, what="w1 gone")
        assert http(cluster, "GET", cmpath).status == 404  # delete_fn removed it (no garbage collector yet)
        operator.healthy()
    except BaseException:
        print(f"--- kopf log ---\n{operator.log()}")
        raise


def test_kopf_batch_and_scope(cluster: Cluster, operator: Operator, namespace: str) -> None:
    """The Widget created before kopf started, three at once, and one in a namespace kopf does not serve."""
    ns = operator.namespace
    try:
        early = wait_for(lambda: (_get(cluster, f"/apis/{API_VERSION}/namespaces/{ns}/{PLURAL}/early") or {})
                         .get("status", {}).get("create_fn"), timeout=10, what="the early widget handled")
        assert early == {"child": "early-config", "action": "created"}
        assert cluster.kubectl_json("get", "configmap", "early-config", "-n", ns)["data"]["size"] == "8"

        # Several at once; kopf's per-object workers handle them concurrently.
        for i in range(3):
            cluster.kubectl("create", "-n", ns, "-f", "-", input=widget_yaml(f"batch-{i}", i + 1, "green"))
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=widget_yaml("elsewhere", 1, "green"))

        def all_ready() -> bool:
            items = cluster.kubectl_json("get", CRD_NAME, "-n", ns)["items"]
            batch = [w for w in items if w["metadata"]["name"].startswith("batch-")]
            return len(batch) == 3 and all(w.get("status", {}).get("phase") == "Ready" for w in batch)

        wait_for(all_ready, timeout=15, what="three widgets Ready")
        for i in range(3):
            cm = cluster.kubectl_json("get", "configmap", f"batch-{i}-config", "-n", ns)
            assert cm["data"]["size"] == str(i + 1)
        # The operator watches only its namespace.
        other = cluster.kubectl_json("get", CRD_NAME, "elsewhere", "-n", namespace)
        assert "finalizers" not in other["metadata"] and "status" not in other
        assert http(cluster, "GET", f"/api/v1/namespaces/{namespace}/configmaps/elsewhere-config").status == 404

        cluster.kubectl("delete", CRD_NAME, "--all", "-n", ns, "--wait=false")
        wait_for(lambda: cluster.kubectl_json("get", CRD_NAME, "-n", ns)["items"] == [], timeout=15,
                 what="all widgets deleted")
        names = {c["metadata"]["name"] for c in cluster.kubectl_json("get", "configmaps", "-n", ns)["items"]}
        assert {"early-deleted"} | {f"batch-{i}-deleted" for i in range(3)} <= names
        assert not ({"early-config"} | {f"batch-{i}-config" for i in range(3)}) & names
        operator.healthy()
    except BaseException:
        print(f"--- kopf log ---\n{operator.log()}")
        raise


# --- kr8s -----------------------------------------------------------------------------------------


def test_kr8s_drives_the_widget_crd(kubeconfig_env: Cluster, widget_crd: dict[str, Any], namespace: str) -> None:
    import kr8s
    import kr8s.asyncio
    from kr8s.asyncio.objects import new_class

    Widget = new_class(kind=KIND, version=API_VERSION, namespaced=True, plural=PLURAL)

    async def main() -> dict[str, Any]:
        api = await kr8s.asyncio.api(kubeconfig=os.environ["KUBECONFIG"])
        out: dict[str, Any] = {}

        a = await Widget({"metadata": {"name": "kr-a", "namespace": namespace, "labels": {"tier": "gold"}},
                          "spec": {"size": 2}}, api=api)
        await a.create()
        out["defaulted"] = dict(a.raw["spec"])  # the schema default, in the create response
        b = await Widget({"metadata": {"name": "kr-b", "namespace": namespace, "labels": {"tier": "tin"}},
                          "spec": {"size": 4, "color": "red"}}, api=api)
        await b.create()

        got = await Widget.get("kr-a", namespace=namespace, api=api)
        out["got"] = (got.raw["apiVersion"], got.raw["kind"], got.raw["spec"])

        rv = got.metadata.resourceVersion
        await got.patch({"spec": {"size": 7}, "metadata": {"labels": {"patched": "yes"}}})
        out["patched"] = (got.raw["spec"], got.raw["metadata"]["labels"], got.raw["metadata"]["generation"])
        await got.patch({"status": {"phase": "Tested", "note": "kept"}}, subresource="status")
        await got.refresh()
        out["status"] = (got.raw["status"], got.raw["metadata"]["generation"])
        await got.patch([{"op": "replace", "path": "/spec/color", "value": "green"}], type="json")
        out["json_patch"] = got.raw["spec"]["color"]

        out["gold"] = [w.name async for w in api.get(CRD_NAME, namespace=namespace, label_selector={"tier": "gold"})]
        out["by_class"] = sorted([w.name async for w in Widget.list(namespace=namespace, api=api)])
        out["listed_kind"] = [type(w).__name__ async for w in api.get("wdg", namespace=namespace)]  # the short name

        # watch from the resourceVersion before the patches: the spec patch, the status patch, the JSON patch
        seen: list[tuple[str, str, Any]] = []
        async for ev, obj in api.watch(CRD_NAME, namespace=namespace, label_selector="tier=gold", since=rv):
            seen.append((ev, obj.name, obj.raw["spec"]["size"]))
            if len(seen) == 3:
                break
        out["watch"] = seen

        try:
            await Widget({"metadata": {"name": "kr-bad", "namespace": namespace}, "spec": {"size": 1, "color": "pink"}},
                         api=api).create()
        except kr8s.ServerError as e:
            assert e.response is not None
            out["invalid"] = (e.response.status_code, e.status["reason"], e.status["details"]["causes"])

        await a.delete()
        await b.delete()
        out["left"] = [w.name async for w in Widget.list(namespace=namespace, api=api)]
        return out

    out = asyncio.run(main())
    assert out["defaulted"] == {"size": 2, "color": "blue"}
    assert out["got"] == (API_VERSION, KIND, {"size": 2, "color": "blue"})
    assert out["patched"] == ({"size": 7, "color": "blue"}, {"tier": "gold", "patched": "yes"}, 2)
    assert out["status"] == ({"phase": "Tested", "note": "kept"}, 2)
    assert out["json_patch"] == "green"
    assert out["gold"] == ["kr-a"] and out["by_class"] == ["kr-a", "kr-b"]
    assert out["listed_kind"] == [KIND, KIND]
    assert out["watch"] == [("MODIFIED", "kr-a", 7)] * 3
    code, reason, causes = out["invalid"]
    assert (code, reason) == (422, "Invalid")
    assert causes == [{"reason": "FieldValueNotSupported", "field": "spec.color",
                       "message": 'Unsupported value: "pink": supported values: "red", "green", "blue"'}]
    assert out["left"] == []


# --- lightkube ------------------------------------------------------------------------------------


def test_lightkube_drives_the_widget_crd(kubeconfig_env: Cluster, widget_crd: dict[str, Any], namespace: str) -> None:
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.types import PatchType

    Widget = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
    c = Client(config=KubeConfig.from_file(os.environ["KUBECONFIG"]), field_manager="lightkube-test")

    created = c.create(Widget(metadata=ObjectMeta(name="lk-a", namespace=namespace, labels={"tier": "gold"}),
                              spec={"size": 1}))
    assert created.spec == {"size": 1, "color": "blue"} and created.metadata.generation == 1
    rv = created.metadata.resourceVersion
    c.create(Widget(metadata=ObjectMeta(name="lk-b", labels={"tier": "tin"}), spec={"size": 9, "color": "red"}),
             namespace=namespace)

    got = c.get(Widget, "lk-a", namespace=namespace)
    assert (got.apiVersion, got.kind, got.spec) == (API_VERSION, KIND, {"size": 1, "color": "blue"})

    # merge patch
    merged = c.patch(Widget, "lk-a", {"spec": {"size": 2}}, namespace=namespace, patch_type=PatchType.MERGE)
    assert merged.spec == {"size": 2, "color": "blue"} and merged.metadata.generation == 2

    # server-side apply: the creator (an Update manager) owns spec.size and spec.color, so applying them
    # conflicts until forced; then the applier owns them and another applier conflicts with it.
    mine = Widget(metadata=ObjectMeta(name="lk-a", namespace=namespace), spec={"size": 3, "color": "green"})
    with pytest.raises(ApiError) as conflict:
        c.apply(mine, field_manager="lk-applier")
    assert conflict.value.status.code == 409
    assert {cause.field for cause in conflict.value.status.details.causes} == {".spec.size", ".spec.color"}
    applied = c.apply(mine, field_manager="lk-applier", force=True)
    assert applied.spec == {"size": 3, "color": "green"} and applied.metadata.labels == {"tier": "gold"}
    managers = {m.manager: m.operation for m in applied.metadata.managedFields}
    assert managers == {"lk-applier": "Apply", "lightkube-test": "Update"}
    with pytest.raises(ApiError) as conflict:
        c.apply(Widget(metadata=ObjectMeta(name="lk-a", namespace=namespace), spec={"size": 4}), field_manager="other")
    assert conflict.value.status.code == 409 and conflict.value.status.reason == "Conflict"
    forced = c.patch(Widget, "lk-a", {"apiVersion": API_VERSION, "kind": KIND, "spec": {"size": 4}}, namespace=namespace,
                     patch_type=PatchType.APPLY, field_manager="other", force=True)
    assert forced.spec == {"size": 4, "color": "green"}

    # status subresource: a status patch leaves the spec (and the generation) alone; a spec patch leaves the status
    st = c.patch(Widget.Status, "lk-a", {"status": {"phase": "Ready"}, "spec": {"size": 99}}, namespace=namespace,
                 patch_type=PatchType.MERGE)
    assert st.status == {"phase": "Ready"} and st.spec["size"] == 4
    st = c.apply(Widget.Status(apiVersion=API_VERSION, kind=KIND, metadata=ObjectMeta(name="lk-a", namespace=namespace),
                               status={"phase": "Applied", "observedGeneration": 4}),
                 field_manager="lk-status", force=True)
    assert st.status == {"phase": "Applied", "observedGeneration": 4}
    assert c.get(Widget.Status, "lk-a", namespace=namespace).status["phase"] == "Applied"

    # strategic merge patch is not for custom resources: 415, as in kube
    with pytest.raises(ApiError) as smp:
        c.patch(Widget, "lk-a", {"spec": {"size": 5}}, namespace=namespace)
    assert smp.value.status.code == 415

    # list with label and field selectors
    assert [w.metadata.name for w in c.list(Widget, namespace=namespace)] == ["lk-a", "lk-b"]
    assert [w.metadata.name for w in c.list(Widget, namespace=namespace, labels={"tier": "gold"})] == ["lk-a"]
    assert [w.metadata.name for w in c.list(Widget, namespace=namespace, fields={"metadata.name": "lk-b"})] == ["lk-b"]

    # watch from the create's resourceVersion: lk-b ADDED, then lk-a's changes
    seen = []
    for op, obj in c.watch(Widget, namespace=namespace, resource_version=rv, server_timeout=5):
        seen.append((op, obj.metadata.name))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "lk-b"), ("MODIFIED", "lk-a"), ("MODIFIED", "lk-a")]

    # schema errors surface as ApiError 422 with kube's causes
    with pytest.raises(ApiError) as invalid:
        c.create(Widget(metadata=ObjectMeta(name="lk-bad", namespace=namespace), spec={"size": 0, "color": "pink"}))
    status = invalid.value.status
    assert (status.code, status.reason) == (422, "Invalid")
    assert sorted((cause.field, cause.reason) for cause in status.details.causes) == [
        ("spec.color", "FieldValueNotSupported"), ("spec.size", "FieldValueInvalid")]
    with pytest.raises(ApiError) as invalid_patch:
        c.patch(Widget, "lk-a", {"spec": {"size": "big"}}, namespace=namespace, patch_type=PatchType.MERGE)
    assert invalid_patch.value.status.code == 422
    assert [cause.field for cause in invalid_patch.value.status.details.causes] == ["spec.size"]

    c.delete(Widget, "lk-a", namespace=namespace)
    c.delete(Widget, "lk-b", namespace=namespace)
    with pytest.raises(ApiError) as gone:
        c.get(Widget, "lk-a", namespace=namespace)
    assert gone.value.status.code == 404
    assert list(c.list(Widget, namespace=namespace)) == []


# --- regressions found while writing these tests --------------------------------------------------


def test_a_watch_whose_client_went_away_ends_quietly(cluster: Cluster, namespace: str) -> None:
    """Clients stop watches by closing the connection (kr8s and lightkube when the loop breaks, kopf on
    exit). The server's next write then fails; that ends the watch, it is not a server error (aiohttp
    logged "Error handling request ... Cannot write to closing transport" with a traceback for each)."""
    import http.client as httpclient

    from tests.conftest import _ssl_context

    path = f"/api/v1/namespaces/{namespace}/configmaps?watch=true&timeoutSeconds=30&resourceVersion=0"

    def open_watch() -> tuple[httpclient.HTTPSConnection, Any]:
        conn = httpclient.HTTPSConnection("127.0.0.1", cluster.port, context=_ssl_context(cluster, True), timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.readline())["object"]["metadata"]["name"] == "kube-root-ca.crt"
        return conn, resp

    def errors_logged() -> int:
        log = cluster.log_path.read_text(errors="replace")
        return log.count("Error handling request") + log.count("Cannot write to closing transport")

    before = errors_logged()
    dead, _ = open_watch()
    dead.sock.close()  # the client goes away without a word
    dead.close()
    live, live_resp = open_watch()
    try:
        for i in range(3):  # each event is written to both watches
            assert http(cluster, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                        {"metadata": {"name": f"after-close-{i}"}}).status == 201
            assert json.loads(live_resp.readline())["object"]["metadata"]["name"] == f"after-close-{i}"
        # The live watch saw all three, so the server has long tried (and failed) to write to the dead one.
        assert http(cluster, "GET", "/healthz").status == 200
        assert errors_logged() == before, cluster.log_path.read_text(errors="replace")[-3000:]
    finally:
        live.close()
