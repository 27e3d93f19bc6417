"""The ReplicaSet and Deployment controllers end to end: a `k8py controller-manager` subprocess,
the scheduler in `k8py up`, hollow nodes reporting pods Running, and the real kubectl.

Pod counts are taken from a watch started at a known resourceVersion (PodWatcher), so pods that
came and went between two polls are counted too.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.controllers.conftest import ControllerCluster, start_controller_manager

CONTROLLERS = "replicaset,deployment"
HOLLOW_NODES = 3


# ---- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(cm_cluster: ControllerCluster) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(str(cm_cluster.cluster.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="module", autouse=True)
def _stop_restarted_controller_manager(cm_cluster: ControllerCluster) -> Iterator[None]:
    """The restart test replaces cm_cluster.cm; the fixture only knows the first one."""
    first = cm_cluster.cm
    yield
    if cm_cluster.cm is not first:
        cm_cluster.cm.stop()


_ns_counter = iter(range(1000))


@pytest.fixture
def ns(cm_cluster: ControllerCluster, request: pytest.FixtureRequest) -> str:
    name = f"d{next(_ns_counter)}-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].strip("-")
    cm_cluster.kubectl("create", "namespace", name)
    return name


class PodWatcher:
    """Every pod event in a namespace from now on (a list, then a watch from its resourceVersion)."""

    def __init__(self, api: Any, namespace: str, label_selector: str = "") -> None:
        from kubernetes import client, watch

        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.selector = label_selector
        self.lock = threading.Lock()
        self.pods: dict[str, Any] = {}  # name -> latest state, while it exists
        self.added: dict[str, Any] = {}  # name -> the pod as first seen, for every pod ever seen
        self.max_active = 0
        self.violations: list[str] = []
        self.check: Any = None  # optional callable(pods) -> error message or None, run after each event
        listed = self.core.list_namespaced_pod(namespace, label_selector=label_selector)
        for pod in listed.items:
            self._apply("ADDED", pod)
        self._watch = watch.Watch()
        self._rv = listed.metadata.resource_version
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(
                self.core.list_namespaced_pod,
                self.namespace,
                label_selector=self.selector,
                resource_version=self._rv,
                timeout_seconds=300,
            ):
                self._apply(event["type"], event["object"])
        except Exception as e:  # reported through the counts the test asserts on
            self.violations.append(f"watch failed: {e}")

    def _apply(self, type_: str, pod: Any) -> None:
        name = pod.metadata.name
        with self.lock:
            if type_ == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = pod
                self.added.setdefault(name, pod)
            active = sum(1 for p in self.pods.values() if _active(p))
            self.max_active = max(self.max_active, active)
            if self.check is not None:
                problem = self.check(list(self.pods.values()))
                if problem:
                    self.violations.append(problem)

    def active(self) -> list[Any]:
        with self.lock:
            return [p for p in self.pods.values() if _active(p)]

    def stop(self) -> None:
        self._watch.stop()


def _active(pod: Any) -> bool:
    return pod.metadata.deletion_timestamp is None and pod.status.phase not in ("Succeeded", "Failed")


def _running(pods: list[Any]) -> int:
    return sum(1 for p in pods if p.status.phase == "Running")


def get(cm: ControllerCluster, *args: str) -> Any:
    return json.loads(cm.kubectl("get", *args, "-o", "json").stdout)


def rollout_status(cm: ControllerCluster, ns: str, name: str, timeout: int = 60) -> str:
    res = cm.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, f"--timeout={timeout}s", timeout=timeout + 10)
    assert "successfully rolled out" in res.stdout
    return res.stdout


def wait_event(cm: ControllerCluster, ns: str, selector: str, *texts: str) -> None:
    """Events are written asynchronously: poll until every text is in `kubectl get events`."""

    def seen() -> bool:
        out = cm.kubectl("get", "events", "-n", ns, "--field-selector", selector).stdout
        return all(t in out for t in texts)

    wait_for(seen, timeout=15, interval=0.2, what=f"events {texts}")


def replica_sets(cm: ControllerCluster, ns: str) -> list[Any]:
    items = get(cm, "replicasets", "-n", ns)["items"]
    return sorted(items, key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, "0")))


def condition(obj: Any, type_: str) -> Any:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


REVISION = "deployment.kubernetes.io/revision"


def apply(cm: ControllerCluster, ns: str, manifest: dict[str, Any]) -> None:
    cm.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def deployment(name: str, replicas: int, *, image: str = "nginx", **spec: Any) -> dict[str, Any]:
    template_spec = spec.pop("template_spec", {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}], **template_spec},
            },
            **spec,
        },
    }


# ---- Deployments -----------------------------------------------------------------------------------


def test_create_scale(cm_cluster: ControllerCluster, ns: str, api: Any) -> None:
    cm = cm_cluster
    cm.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", ns)
    rollout_status(cm, ns, "web")
    watcher = PodWatcher(api, ns, "app=web")
    try:
        assert _running(watcher.active()) == 3
        assert all(p.spec.node_name.startswith(cm.node_prefix) for p in watcher.active())
        (rs,) = replica_sets(cm, ns)
        hash_ = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"web-{hash_}"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": hash_}
        assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == hash_
        ann = rs["metadata"]["annotations"]
        assert ann[REVISION] == "1"
        assert ann["deployment.kubernetes.io/desired-replicas"] == "3"
        assert ann["deployment.kubernetes.io/max-replicas"] == "4"  # 3 + ceil(25% of 3)
        assert rs["status"]["replicas"] == rs["status"]["readyReplicas"] == rs["status"]["availableReplicas"] == 3
        assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
        d = get(cm, "deployment", "web", "-n", ns)
        assert d["metadata"]["annotations"][REVISION] == "1"
        st = d["status"]
        assert st["observedGeneration"] == d["metadata"]["generation"]
        assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (3, 3, 3, 3)
        assert condition(d, "Available")["reason"] == "MinimumReplicasAvailable"
        assert condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
        wait_event(cm, ns, "involvedObject.kind=Deployment", f"Scaled up replica set web-{hash_} from 0 to 3")

        cm.kubectl("scale", "deployment/web", "--replicas=5", "-n", ns)
        rollout_status(cm, ns, "web")
        wait_for(lambda: _running(watcher.active()) == 5, timeout=30, what="5 pods running")
        cm.kubectl("scale", "deployment/web", "--replicas=2", "-n", ns)
        rollout_status(cm, ns, "web")
        wait_for(lambda: len(watcher.active()) == 2, timeout=30, what="2 pods left")
        assert len(watcher.added) == 5  # scaling never replaced a pod
        (rs,) = replica_sets(cm, ns)
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "2"
        wait_event(cm, ns, "involvedObject.kind=Deployment", f"Scaled down replica set web-{hash_} from 5 to 2")
    finally:
        watcher.stop()


def test_set_image_history_undo(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    cm.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", ns)
    rollout_status(cm, ns, "web")
    cm.kubectl("set", "image", "deployment/web", "nginx=nginx:1.27", "-n", ns)
    rollout_status(cm, ns, "web")
    first, second = replica_sets(cm, ns)
    assert first["spec"]["replicas"] == 0 and first["status"]["replicas"] == 0
    assert second["spec"]["replicas"] == 3 and second["status"]["availableReplicas"] == 3
    assert second["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert second["metadata"]["annotations"][REVISION] == "2"
    history = cm.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    wait_event(cm, ns, "involvedObject.kind=Deployment", f"Scaled down replica set {first['metadata']['name']} from")

    assert "rolled back" in cm.kubectl("rollout", "undo", "deployment/web", "-n", ns).stdout
    rollout_status(cm, ns, "web")
    d = get(cm, "deployment", "web", "-n", ns)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"
    assert d["metadata"]["annotations"][REVISION] == "3"
    rss = {rs["metadata"]["name"]: rs for rs in replica_sets(cm, ns)}
    back = rss[first["metadata"]["name"]]  # the first ReplicaSet is the new one again
    assert back["metadata"]["annotations"][REVISION] == "3"
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert back["spec"]["replicas"] == 3 and rss[second["metadata"]["name"]]["spec"]["replicas"] == 0
    history = cm.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]


def test_pause_resume_restart(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    cm.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", ns)
    rollout_status(cm, ns, "web")
    cm.kubectl("rollout", "pause", "deployment/web", "-n", ns)
    cm.kubectl("set", "image", "deployment/web", "nginx=nginx:1.27", "-n", ns)

    def paused_seen() -> Any:
        d = get(cm, "deployment", "web", "-n", ns)
        cond = condition(d, "Progressing")
        return d["status"].get("observedGeneration") == d["metadata"]["generation"] and cond["reason"] == "DeploymentPaused" and d

    d = wait_for(paused_seen, timeout=20, what="the paused deployment observed")
    assert condition(d, "Progressing")["status"] == "Unknown"
    assert len(replica_sets(cm, ns)) == 1  # no rollout while paused
    cm.kubectl("rollout", "resume", "deployment/web", "-n", ns)
    rollout_status(cm, ns, "web")
    assert [rs["spec"]["replicas"] for rs in replica_sets(cm, ns)] == [0, 2]

    cm.kubectl("rollout", "restart", "deployment/web", "-n", ns)
    rollout_status(cm, ns, "web")
    rss = replica_sets(cm, ns)
    assert [rs["spec"]["replicas"] for rs in rss] == [0, 0, 2]
    assert "kubectl.kubernetes.io/restartedAt" in rss[-1]["spec"]["template"]["metadata"]["annotations"]
    assert rss[-1]["metadata"]["annotations"][REVISION] == "3"


def test_recreate(cm_cluster: ControllerCluster, ns: str, api: Any) -> None:
    cm = cm_cluster
    apply(cm, ns, deployment("re", 3, strategy={"type": "Recreate"}))
    rollout_status(cm, ns, "re")
    watcher = PodWatcher(api, ns, "app=re")

    def mixed(pods: list[Any]) -> str | None:
        images = {p.spec.containers[0].image for p in pods}
        return f"old and new pods at once: {sorted(images)}" if len(images) > 1 else None

    watcher.check = mixed
    try:
        cm.kubectl("set", "image", "deployment/re", "c=nginx:1.27", "-n", ns)
        rollout_status(cm, ns, "re")
        wait_for(lambda: len(watcher.active()) == 3, timeout=20, what="3 new pods")
        assert {p.spec.containers[0].image for p in watcher.active()} == {"nginx:1.27"}
        assert not watcher.violations
        assert len(watcher.added) == 6
    finally:
        watcher.stop()


def test_progress_deadline_exceeded(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    apply(
        cm,
        ns,
        deployment(
            "stuck", 2, progressDeadlineSeconds=2, template_spec={"nodeSelector": {"k8py.test/nowhere": "true"}}
        ),
    )

    def timed_out() -> Any:
        cond = condition(get(cm, "deployment", "stuck", "-n", ns), "Progressing")
        return cond is not None and cond["reason"] == "ProgressDeadlineExceeded" and cond

    cond = wait_for(timed_out, timeout=30, what="ProgressDeadlineExceeded")
    assert cond["status"] == "False"
    assert cond["message"].endswith("has timed out progressing.")
    d = get(cm, "deployment", "stuck", "-n", ns)
    assert condition(d, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert d["status"]["unavailableReplicas"] == 2
    res = cm.kubectl("rollout", "status", "deployment/stuck", "-n", ns, "--timeout=20s", check=False)
    assert res.returncode != 0
    assert 'deployment "stuck" exceeded its progress deadline' in res.stderr


def test_proportional_scaling_mid_rollout(cm_cluster: ControllerCluster, ns: str) -> None:
    """A Deployment scaled while a rollout is stuck spreads the new replicas over both ReplicaSets
    in proportion to their sizes (upstream's e2e "proportional scaling" case)."""
    cm = cm_cluster
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}
    apply(cm, ns, deployment("prop", 10, strategy=strategy))
    rollout_status(cm, ns, "prop")
    # the new pods can never be scheduled: the rollout stops at old 8 + new 5 (13 = 10 + maxSurge)
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"k8py.test/nowhere": "true"}}}}}
    cm.kubectl("patch", "deployment/prop", "-n", ns, "-p", json.dumps(patch))

    def sizes(want: list[int]) -> Any:
        rss = replica_sets(cm, ns)
        return [rs["spec"]["replicas"] for rs in rss] == want and rss

    wait_for(lambda: sizes([8, 5]), timeout=30, what="the stuck rollout at 8 + 5")
    cm.kubectl("scale", "deployment/prop", "--replicas=20", "-n", ns)
    # 23 allowed, 13 there: old round(8 * 23 / 13) = 14, new round(5 * 23 / 13) = 9
    old, new = wait_for(lambda: sizes([14, 9]), timeout=30, what="proportional scaling to 14 + 9")
    for rs in (old, new):
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "20"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "23"
    wait_event(
        cm,
        ns,
        "involvedObject.kind=Deployment",
        f"Scaled up replica set {old['metadata']['name']} from 8 to 14",
        f"Scaled up replica set {new['metadata']['name']} from 5 to 9",
    )


def test_replica_failure(cm_cluster: ControllerCluster, ns: str) -> None:
    """Pods the API server refuses: ReplicaFailure on the ReplicaSet and the Deployment, FailedCreate
    events; gone once the pods can be created."""
    cm = cm_cluster
    limits = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "small"},
              "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}}
    apply(cm, ns, limits)
    big = {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}}]}
    manifest = deployment("big", 2)
    manifest["spec"]["template"]["spec"] = big
    apply(cm, ns, manifest)

    def failing() -> Any:
        d = get(cm, "deployment", "big", "-n", ns)
        return condition(d, "ReplicaFailure") and d

    d = wait_for(failing, timeout=20, what="ReplicaFailure on the deployment")
    (rs,) = replica_sets(cm, ns)
    cond = condition(rs, "ReplicaFailure")
    assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
    assert "forbidden" in cond["message"] and not cond["message"].startswith("403")
    assert condition(d, "ReplicaFailure")["reason"] == "FailedCreate"
    wait_event(cm, ns, "reason=FailedCreate", "Error creating: pods ")

    cm.kubectl("delete", "limitrange", "small", "-n", ns)
    cm.kubectl("scale", "deployment/big", "--replicas=3", "-n", ns)  # a change: no waiting for the backoff
    rollout_status(cm, ns, "big")
    assert condition(get(cm, "deployment", "big", "-n", ns), "ReplicaFailure") is None
    assert condition(replica_sets(cm, ns)[0], "ReplicaFailure") is None


def test_status_update_takes_annotations(cm_cluster: ControllerCluster, ns: str, api: Any) -> None:
    """API server: a Deployment's status update writes annotations (how the controller records the
    revision), never labels or the spec, as kube's deployment status strategy."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    apply(cm_cluster, ns, deployment("st", 0))
    wait_for(lambda: get(cm_cluster, "deployment", "st", "-n", ns)["metadata"].get("annotations", {}).get(REVISION),
             timeout=20, what="the revision annotation")

    def update() -> Any:
        d = apps.read_namespaced_deployment("st", ns)
        d.metadata.annotations["k8py.test/note"] = "x"
        d.metadata.labels = {"k8py.test/label": "y"}
        d.spec.replicas = 5
        try:
            return apps.replace_namespaced_deployment_status("st", ns, d)
        except client.ApiException as e:
            if e.status == 409:  # the controller wrote in between
                return None
            raise

    out = wait_for(update, timeout=10, what="a status update")
    assert out.metadata.annotations["k8py.test/note"] == "x"
    assert out.metadata.annotations[REVISION] == "1"
    assert out.metadata.labels is None
    assert out.spec.replicas == 0


# ---- ReplicaSets -----------------------------------------------------------------------------------


def test_replicaset_adopts_and_releases(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    cm.kubectl("run", "orphan", "--image=nginx", "--labels=app=adopt", "-n", ns)
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "adopter"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "adopt"}},
            "template": {"metadata": {"labels": {"app": "adopt"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }
    apply(cm, ns, rs)

    def owner_of(pod: Any) -> str | None:
        refs = [r for r in pod["metadata"].get("ownerReferences", []) if r.get("controller")]
        return refs[0]["name"] if refs else None

    def settled() -> Any:
        pods = get(cm, "pods", "-n", ns, "-l", "app=adopt")["items"]
        st = get(cm, "replicaset", "adopter", "-n", ns).get("status", {})
        return len(pods) == 2 and st.get("readyReplicas") == 2 and pods

    pods = wait_for(settled, timeout=30, what="the orphan adopted")
    assert {owner_of(p) for p in pods} == {"adopter"}
    assert "orphan" in {p["metadata"]["name"] for p in pods}  # adopted, so only one pod was created
    st = get(cm, "replicaset", "adopter", "-n", ns)["status"]
    assert st["fullyLabeledReplicas"] == 2 and st["availableReplicas"] == 2

    cm.kubectl("label", "pod", "orphan", "app=released", "--overwrite", "-n", ns)
    wait_for(lambda: owner_of(get(cm, "pod", "orphan", "-n", ns)) is None, timeout=20, what="the pod released")
    wait_for(lambda: len(get(cm, "pods", "-n", ns, "-l", "app=adopt")["items"]) == 2, timeout=20, what="a replacement")
    assert get(cm, "pod", "orphan", "-n", ns)["metadata"].get("ownerReferences") in (None, [])


def test_expectations_never_overshoot(cm_cluster: ControllerCluster, ns: str, api: Any) -> None:
    cm = cm_cluster
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "burst"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "burst"}},
            "template": {"metadata": {"labels": {"app": "burst"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }
    apply(cm, ns, rs)
    watcher = PodWatcher(api, ns, "app=burst")
    try:
        cm.kubectl("scale", "replicaset/burst", "--replicas=60", "-n", ns)
        wait_for(lambda: _running(watcher.active()) == 60, timeout=40, what="60 pods running")
        st = wait_for(lambda: (s := get(cm, "rs", "burst", "-n", ns)["status"]).get("readyReplicas") == 60 and s,
                      timeout=20, what="status")
        assert st["replicas"] == 60 and st["observedGeneration"] == 2
        assert watcher.max_active == 60
        assert len(watcher.added) == 60
        cm.kubectl("scale", "replicaset/burst", "--replicas=20", "-n", ns)
        wait_for(lambda: len(watcher.pods) == 20, timeout=30, what="scaled down to 20")
        wait_for(lambda: get(cm, "rs", "burst", "-n", ns)["status"]["replicas"] == 20, timeout=20, what="status")
        assert len(watcher.added) == 60  # no pod re-created behind the deletions
        assert not watcher.violations
        # (SuccessfulDelete may be cut by the recorder's spam filter after 60 creations, as kube's)
        wait_event(cm, ns, "involvedObject.name=burst", "SuccessfulCreate")
    finally:
        watcher.stop()


# ---- restart ---------------------------------------------------------------------------------------


def test_controller_manager_killed_mid_rollout(cm_cluster: ControllerCluster, ns: str, api: Any) -> None:
    """kill -9 mid-rollout; the next controller manager finishes it without a pod too many."""
    cm = cm_cluster
    replicas = 6
    manifest = deployment(
        "rs", replicas, minReadySeconds=1, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    apply(cm, ns, manifest)
    rollout_status(cm, ns, "rs")
    watcher = PodWatcher(api, ns, "app=rs")
    try:
        assert len(watcher.added) == replicas
        cm.kubectl("set", "image", "deployment/rs", "c=nginx:1.27", "-n", ns)

        def new_pods() -> int:
            with watcher.lock:
                return sum(1 for p in watcher.added.values() if p.spec.containers[0].image == "nginx:1.27")

        wait_for(lambda: new_pods() >= 2, timeout=30, what="the rollout under way")
        os.kill(cm.cm.proc.pid, signal.SIGKILL)
        cm.cm.proc.wait(timeout=10)
        assert new_pods() < replicas, "the rollout finished before the kill"
        cm.cm = start_controller_manager(cm.cluster, CONTROLLERS, "--no-leader-elect")
        rollout_status(cm, ns, "rs")
        wait_for(lambda: len(watcher.pods) == replicas, timeout=20, what="old pods gone")
        assert len(watcher.added) == 2 * replicas, sorted(watcher.added)
        # maxSurge counts ReplicaSet sizes, not pods: an old pod may linger a moment after its
        # ReplicaSet shrank and the new one grew (as in kube)
        assert watcher.max_active <= replicas + 2
        assert not watcher.violations
    finally:
        watcher.stop()
