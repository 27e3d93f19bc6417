"""The DaemonSet and StatefulSet controllers against a real API server, the scheduler (in
`k8py up`) and hollow nodes, through kubectl.

Storage: no PV controller or provisioner runs here, so a claim stays unbound unless someone
binds it, and the scheduler's VolumeBinding plugin keeps a pod with an unbound claim Pending.
The ordered-start test plays the PV controller itself: it pre-creates one PV per ordinal and,
when the StatefulSet controller has created claim ``data-web-<i>``, binds it (``volumeName``,
``pv.kubernetes.io/bind-completed``, phase Bound). Until then pod ``web-<i>`` is Pending, which
is exactly the window in which an OrderedReady set must not create ``web-<i+1>``. The Parallel
test leaves its claims unbound: all its pods are created at once and stay Pending.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from k8py.api.meta import parse_time
from tests.conftest import wait_for
from tests.controllers.conftest import ControllerCluster, start_hollow_nodes

CONTROLLERS = "daemonset,statefulset"
HOLLOW_NODES = 3

DEFAULT_DAEMON_TOLERATIONS = {
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
}


# -- helpers ---------------------------------------------------------------------------------------


def make_namespace(c: ControllerCluster, name: str) -> str:
    c.kubectl("create", "namespace", name)
    wait_for(
        lambda: c.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        what=f"default service account in {name}",
    )
    return name


def get_json(c: ControllerCluster, *args: str) -> Any:
    return json.loads(c.kubectl(*args, "-o", "json").stdout)


def pods(c: ControllerCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    return get_json(c, "get", "pods", "-n", ns, "-l", selector)["items"]


def running(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(x["type"] == "Ready" and x["status"] == "True" for x in status.get("conditions") or ())
    return status.get("phase") == "Running" and ready and not pod["metadata"].get("deletionTimestamp")


def node_names(c: ControllerCluster) -> list[str]:
    return [f"{c.node_prefix}{i}" for i in range(HOLLOW_NODES)]


def daemonset(name: str, *, image: str = "nginx:1", spec: dict[str, Any] | None = None, **extra: Any) -> str:
    pod_spec = {"containers": [{"name": "c", "image": image}], **(spec or {})}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
                **extra,
            },
        }
    )


def daemon_pods_by_node(c: ControllerCluster, ns: str, name: str) -> dict[str, str]:
    """node -> pod name of the running daemon pods (every one bound; one per node)."""
    out: dict[str, str] = {}
    for pod in pods(c, ns, f"app={name}"):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        node = pod["spec"].get("nodeName")
        if not node or not running(pod) or node in out:
            return {}
        out[node] = pod["metadata"]["name"]
    return out


def wait_daemon_pods_on(
    c: ControllerCluster, ns: str, name: str, nodes: set[str], timeout: float = 20
) -> None:
    wait_for(
        lambda: (
            set(daemon_pods_by_node(c, ns, name)) == nodes and len(pods(c, ns, f"app={name}")) == len(nodes)
        ),
        timeout=timeout,
        what=f"daemon set {name} running on exactly {sorted(nodes)}",
    )


class PodWatch:
    """Every pod event of a label selector, in the API server's order (the official client's watch)."""

    def __init__(self, c: ControllerCluster, ns: str, selector: str) -> None:
        from kubernetes import client, config, watch

        self.events: list[tuple[str, str, bool, bool]] = []  # (type, name, ready, terminating)
        self._api = config.new_client_from_config(str(c.cluster.kubeconfig))
        self._core = client.CoreV1Api(self._api)
        self._watch = watch.Watch()
        self._ns, self._selector = ns, selector
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self._stopping = False
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        self._started.set()
        try:
            for ev in self._watch.stream(
                self._core.list_namespaced_pod, self._ns, label_selector=self._selector, timeout_seconds=120
            ):
                pod = ev["object"]
                conditions = (pod.status and pod.status.conditions) or ()
                ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
                terminating = pod.metadata.deletion_timestamp is not None
                self.events.append((ev["type"], pod.metadata.name, ready, terminating))
        except Exception:
            if not self._stopping:
                raise

    def stop(self) -> None:
        self._stopping = True
        self._watch.stop()
        self._api.close()

    def first(self, pred: Any) -> int:
        return next(i for i, e in enumerate(self.events) if pred(e))


@pytest.fixture
def ns(cm_cluster: ControllerCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.node.name.removeprefix("test_").replace("_", "-")[:50]
    yield make_namespace(cm_cluster, name)


# -- DaemonSets --------------------------------------------------------------------------------------


def test_daemonset_one_pod_per_node(cm_cluster: ControllerCluster, ns: str) -> None:
    c = cm_cluster
    c.kubectl("apply", "-n", ns, "-f", "-", input=daemonset("agent", spec={"hostNetwork": True}))
    wait_daemon_pods_on(c, ns, "agent", set(node_names(c)))

    for pod in pods(c, ns, "app=agent"):
        # placed by the scheduler through the node affinity the controller gave it
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"] == [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [pod["spec"]["nodeName"]]}]}
        ]
        tolerations = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
        assert (
            DEFAULT_DAEMON_TOLERATIONS | {("node.kubernetes.io/network-unavailable", "NoSchedule")}
            <= tolerations
        )
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
        assert pod["metadata"]["generateName"] == "agent-"

    def settled() -> dict[str, Any] | None:
        ds = get_json(c, "get", "ds", "agent", "-n", ns)
        s = ds.get("status") or {}
        ok = s.get("observedGeneration") == ds["metadata"]["generation"] and all(
            s.get(k) == 3
            for k in (
                "desiredNumberScheduled",
                "currentNumberScheduled",
                "numberReady",
                "updatedNumberScheduled",
                "numberAvailable",
            )
        )
        return ds if ok and s.get("numberMisscheduled") == 0 and not s.get("numberUnavailable") else None

    wait_for(settled, timeout=15, what="daemon set status")
    revisions = get_json(c, "get", "controllerrevisions", "-n", ns, "-l", "app=agent")["items"]
    assert len(revisions) == 1 and revisions[0]["revision"] == 1
    hash_ = revisions[0]["metadata"]["labels"]["controller-revision-hash"]
    assert revisions[0]["metadata"]["name"] == f"agent-{hash_}"
    assert revisions[0]["data"]["spec"]["template"]["$patch"] == "replace"
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods(c, ns, "app=agent")} == {hash_}
    # the controller keeps one pod per node: a deleted pod is replaced on the same node
    victim_node, victim = sorted(daemon_pods_by_node(c, ns, "agent").items())[0]
    c.kubectl("delete", "pod", victim, "-n", ns, "--wait=false")
    wait_for(
        lambda: (
            (p := daemon_pods_by_node(c, ns, "agent")).get(victim_node) not in (None, victim) and len(p) == 3
        ),
        timeout=20,
        what="replacement daemon pod",
    )
    out = c.kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=30s").stdout
    assert 'daemon set "agent" successfully rolled out' in out


def test_daemonset_taints_and_node_selector(cm_cluster: ControllerCluster, ns: str) -> None:
    c = cm_cluster
    n0, n1, n2 = node_names(c)
    c.kubectl("taint", "node", n0, "dedicated=infra:NoSchedule")
    try:
        c.kubectl("apply", "-n", ns, "-f", "-", input=daemonset("plain"))
        tolerant = daemonset("tolerant", spec={"tolerations": [{"key": "dedicated", "operator": "Exists"}]})
        c.kubectl("apply", "-n", ns, "-f", "-", input=tolerant)
        c.kubectl(
            "apply", "-n", ns, "-f", "-", input=daemonset("picky", spec={"nodeSelector": {"role": "special"}})
        )
        wait_daemon_pods_on(c, ns, "plain", {n1, n2})
        wait_daemon_pods_on(c, ns, "tolerant", {n0, n1, n2})
        wait_for(
            lambda: (
                get_json(c, "get", "ds", "picky", "-n", ns).get("status", {}).get("observedGeneration") == 1
            ),
            what="picky observed",
        )
        assert pods(c, ns, "app=picky") == []
        plain = get_json(c, "get", "ds", "plain", "-n", ns)["status"]
        assert plain["desiredNumberScheduled"] == 2

        # nodes gaining and losing the label
        c.kubectl("label", "node", n1, "role=special")
        wait_daemon_pods_on(c, ns, "picky", {n1})
        c.kubectl("label", "node", n2, "role=special")
        wait_daemon_pods_on(c, ns, "picky", {n1, n2})
        c.kubectl("label", "node", n1, "role-")
        wait_daemon_pods_on(c, ns, "picky", {n2})

        # the taint goes: the untolerating set comes to the node
        c.kubectl("taint", "node", n0, "dedicated=infra:NoSchedule-")
        wait_daemon_pods_on(c, ns, "plain", {n0, n1, n2})
        # a NoExecute taint it does not tolerate evicts the daemon pod from the node
        c.kubectl("taint", "node", n2, "evict=now:NoExecute")
        wait_daemon_pods_on(c, ns, "plain", {n0, n1})
        wait_daemon_pods_on(c, ns, "picky", set())
    finally:
        c.kubectl("taint", "node", n0, "dedicated-", check=False)
        c.kubectl("taint", "node", n2, "evict-", check=False)
        for n in (n1, n2):
            c.kubectl("label", "node", n, "role-", check=False)
        c.kubectl("delete", "ds", "--all", "-n", ns, "--wait=false")


def test_daemonset_rolling_update(cm_cluster: ControllerCluster, ns: str) -> None:
    c = cm_cluster
    c.kubectl("apply", "-n", ns, "-f", "-", input=daemonset("roll"))
    wait_daemon_pods_on(c, ns, "roll", set(node_names(c)))
    c.kubectl("rollout", "status", "daemonset/roll", "-n", ns, "--timeout=30s")
    before = {p["metadata"]["name"] for p in pods(c, ns, "app=roll")}

    c.kubectl("set", "image", "daemonset/roll", "c=nginx:2", "-n", ns)
    out = c.kubectl("rollout", "status", "daemonset/roll", "-n", ns, "--timeout=60s", timeout=70).stdout
    assert 'daemon set "roll" successfully rolled out' in out
    wait_daemon_pods_on(c, ns, "roll", set(node_names(c)))
    now = pods(c, ns, "app=roll")
    assert {p["spec"]["containers"][0]["image"] for p in now} == {"nginx:2"}
    assert not before & {p["metadata"]["name"] for p in now}
    revisions = get_json(c, "get", "controllerrevisions", "-n", ns, "-l", "app=roll")["items"]
    assert sorted(r["revision"] for r in revisions) == [1, 2]
    current = next(r for r in revisions if r["revision"] == 2)["metadata"]["labels"][
        "controller-revision-hash"
    ]
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in now} == {current}

    # surge instead: the new pod starts next to the old one, which goes once it is available
    c.kubectl(
        "patch",
        "daemonset/roll",
        "-n",
        ns,
        "-p",
        json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}),
    )
    c.kubectl("set", "image", "daemonset/roll", "c=nginx:3", "-n", ns)
    c.kubectl("rollout", "status", "daemonset/roll", "-n", ns, "--timeout=60s", timeout=70)
    wait_daemon_pods_on(c, ns, "roll", set(node_names(c)))
    assert {p["spec"]["containers"][0]["image"] for p in pods(c, ns, "app=roll")} == {"nginx:3"}

    # kubectl rollout undo applies the previous revision's patch; the revision is renumbered
    c.kubectl("rollout", "undo", "daemonset/roll", "-n", ns)
    c.kubectl("rollout", "status", "daemonset/roll", "-n", ns, "--timeout=60s", timeout=70)
    wait_for(
        lambda: (
            {p["spec"]["containers"][0]["image"] for p in pods(c, ns, "app=roll") if running(p)}
            == {"nginx:2"}
            and len(pods(c, ns, "app=roll")) == 3
        ),
        timeout=20,
        what="rolled back to nginx:2",
    )
    revisions = get_json(c, "get", "controllerrevisions", "-n", ns, "-l", "app=roll")["items"]
    by_image = {
        r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]: r["revision"] for r in revisions
    }
    assert by_image == {"nginx:1": 1, "nginx:3": 3, "nginx:2": 4}
    history = c.kubectl("rollout", "history", "daemonset/roll", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "3", "4"], history


# -- StatefulSets -------------------------------------------------------------------------------------


def statefulset(name: str, replicas: int, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "serviceName": name,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}], **spec.pop("pod_spec", {})},
                },
                **spec,
            },
        }
    )


def claim_template(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def bind_claim(c: ControllerCluster, ns: str, claim: str) -> None:
    """What the PV controller would do: a PV for the claim, bound both ways."""
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{ns}-{claim}"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "hostPath": {"path": f"/tmp/{ns}/{claim}"},
            "claimRef": {"namespace": ns, "name": claim},
        },
    }
    c.kubectl("apply", "-f", "-", input=json.dumps(pv))
    patch = {
        "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
        "spec": {"volumeName": f"{ns}-{claim}"},
    }
    c.kubectl("patch", "pvc", claim, "-n", ns, "-p", json.dumps(patch))
    c.kubectl("patch", "pvc", claim, "-n", ns, "--subresource=status", "-p", '{"status":{"phase":"Bound"}}')


def sts_status(c: ControllerCluster, ns: str, name: str) -> dict[str, Any]:
    sts = get_json(c, "get", "sts", name, "-n", ns)
    return {**(sts.get("status") or {}), "generation": sts["metadata"]["generation"]}


def test_statefulset_ordered_start_scale_down_and_partitioned_update(
    cm_cluster: ControllerCluster, ns: str
) -> None:
    c = cm_cluster
    watch = PodWatch(c, ns, "app=web")
    try:
        c.kubectl(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=statefulset("web", 3, volumeClaimTemplates=[claim_template("data")]),
        )
        for i in range(3):
            # the claim comes before the pod; the pod waits Pending until the claim is bound
            wait_for(
                lambda i=i: c.kubectl("get", "pvc", f"data-web-{i}", "-n", ns, check=False).returncode == 0,
                timeout=20,
                what=f"claim data-web-{i}",
            )
            pod = wait_for(
                lambda i=i: next(
                    (
                        p
                        for p in pods(c, ns, "app=web")
                        if p["metadata"]["name"] == f"web-{i}"
                        and any(x["type"] == "PodScheduled" for x in p["status"].get("conditions") or ())
                    ),
                    None,
                ),
                timeout=20,
                what=f"web-{i} tried by the scheduler",
            )
            assert not pod["spec"].get("nodeName")
            assert {p["metadata"]["name"] for p in pods(c, ns, "app=web")} == {
                f"web-{j}" for j in range(i + 1)
            }
            bind_claim(c, ns, f"data-web-{i}")
            wait_for(
                lambda i=i: any(
                    p["metadata"]["name"] == f"web-{i}" and running(p) for p in pods(c, ns, "app=web")
                ),
                timeout=20,
                what=f"web-{i} running",
            )
        wait_for(lambda: sts_status(c, ns, "web").get("readyReplicas") == 3, timeout=20, what="3 ready")
        out = c.kubectl("rollout", "status", "statefulset/web", "-n", ns, "--timeout=30s").stdout
        assert "partitioned roll out complete: 3 new pods have been updated" in out

        # each pod was created only after its predecessor was Ready
        for i in range(1, 3):
            created = watch.first(lambda e, i=i: e[0] == "ADDED" and e[1] == f"web-{i}")
            ready = watch.first(lambda e, i=i: e[1] == f"web-{i - 1}" and e[2])
            assert ready < created, watch.events

        web = {p["metadata"]["name"]: p for p in pods(c, ns, "app=web")}
        for i in range(3):
            p = web[f"web-{i}"]
            assert p["spec"]["hostname"] == f"web-{i}" and p["spec"]["subdomain"] == "web"
            assert p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == f"web-{i}"
            assert p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == str(i)
            assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-web-{i}"}} in p["spec"][
                "volumes"
            ]
        pvc = get_json(c, "get", "pvc", "data-web-0", "-n", ns)
        assert pvc["metadata"]["labels"] == {"app": "web"}
        assert not pvc["metadata"].get("ownerReferences")  # Retain/Retain: nobody owns the claims
        status = sts_status(c, ns, "web")
        assert status["currentRevision"] == status["updateRevision"]
        assert status["currentReplicas"] == status["updatedReplicas"] == status["availableReplicas"] == 3
        assert status["observedGeneration"] == status["generation"]
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in web.values()} == {
            status["updateRevision"]
        }

        # scale down: the highest ordinal goes first, the next only once it is gone
        mark = len(watch.events)
        c.kubectl("scale", "statefulset/web", "--replicas=1", "-n", ns)
        wait_for(
            lambda: [p["metadata"]["name"] for p in pods(c, ns, "app=web")] == ["web-0"],
            timeout=20,
            what="scaled to 1",
        )
        wait_for(
            lambda: any(e[0] == "DELETED" and e[1] == "web-1" for e in watch.events),
            what="web-1 deleted event",
        )
        after = watch.events[mark:]
        deleting = [e[1] for e in after if e[3]]
        assert deleting and deleting[0] == "web-2", after
        gone_2 = next(i for i, e in enumerate(after) if e[0] == "DELETED" and e[1] == "web-2")
        terminating_1 = next(i for i, e in enumerate(after) if e[1] == "web-1" and e[3])
        assert gone_2 < terminating_1, after
        # the claims stay (whenScaled: Retain)
        assert len(get_json(c, "get", "pvc", "-n", ns)["items"]) == 3

        # back to 3 (the kept, bound claims are reused), then a partitioned rolling update
        c.kubectl("scale", "statefulset/web", "--replicas=3", "-n", ns)
        wait_for(lambda: sts_status(c, ns, "web").get("readyReplicas") == 3, timeout=20, what="3 ready again")
        old_revision = sts_status(c, ns, "web")["currentRevision"]
        c.kubectl(
            "patch",
            "statefulset/web",
            "-n",
            ns,
            "-p",
            json.dumps(
                {
                    "spec": {
                        "updateStrategy": {"rollingUpdate": {"partition": 2}},
                        "template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}},
                    }
                }
            ),
        )
        out = c.kubectl("rollout", "status", "statefulset/web", "-n", ns, "--timeout=40s", timeout=50).stdout
        assert "partitioned roll out complete: 1 new pods have been updated" in out

        def images() -> dict[str, str]:
            return {
                p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
                for p in pods(c, ns, "app=web")
                if running(p)
            }

        wait_for(
            lambda: images() == {"web-0": "nginx:1", "web-1": "nginx:1", "web-2": "nginx:2"},
            timeout=20,
            what="only web-2 updated",
        )
        status = sts_status(c, ns, "web")
        assert status["currentRevision"] == old_revision != status["updateRevision"]
        assert status["updatedReplicas"] == 1 and status["currentReplicas"] == 2

        mark = len(watch.events)
        c.kubectl(
            "patch",
            "statefulset/web",
            "-n",
            ns,
            "-p",
            '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}',
        )
        c.kubectl("rollout", "status", "statefulset/web", "-n", ns, "--timeout=40s", timeout=50)
        wait_for(
            lambda: set(images().values()) == {"nginx:2"} and len(images()) == 3,
            timeout=20,
            what="all updated",
        )
        wait_for(
            lambda: (
                (s := sts_status(c, ns, "web"))["currentRevision"] == s["updateRevision"]
                and s.get("currentReplicas") == 3
            ),
            timeout=20,
            what="update revision became current",
        )
        after = watch.events[mark:]
        order = [e[1] for e in after if e[3] and e[0] != "DELETED"]
        assert order and order[0] == "web-1" and "web-0" in order, after
        # web-0 is taken down only once the new web-1 is ready
        ready_1 = next(
            i for i, e in enumerate(after) if e[1] == "web-1" and e[0] == "MODIFIED" and e[2] and not e[3]
        )
        assert ready_1 < next(i for i, e in enumerate(after) if e[1] == "web-0" and e[3]), after
        revisions = get_json(c, "get", "controllerrevisions", "-n", ns, "-l", "app=web")["items"]
        assert sorted(r["revision"] for r in revisions) == [1, 2]
        history = c.kubectl("rollout", "history", "statefulset/web", "-n", ns, "--revision=2").stdout
        assert "nginx:2" in history, history
    finally:
        watch.stop()


def test_statefulset_parallel_with_claims(cm_cluster: ControllerCluster, ns: str) -> None:
    c = cm_cluster
    manifest = statefulset(
        "par",
        3,
        podManagementPolicy="Parallel",
        volumeClaimTemplates=[claim_template("data"), claim_template("logs")],
        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Retain"},
    )
    c.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    # the claims stay unbound, so no pod can be scheduled: Parallel creates them all anyway
    wait_for(lambda: len(pods(c, ns, "app=par")) == 3, timeout=20, what="3 pods at once")
    claims = wait_for(
        lambda: (items := get_json(c, "get", "pvc", "-n", ns)["items"]) and len(items) == 6 and items,
        timeout=20,
        what="6 claims",
    )
    sts = get_json(c, "get", "sts", "par", "-n", ns)
    assert {p["metadata"]["name"] for p in claims} == {
        f"{t}-par-{i}" for t in ("data", "logs") for i in range(3)
    }

    def owned_by_set() -> bool:
        refs = [
            (p["metadata"].get("ownerReferences") or [None])[0]
            for p in get_json(c, "get", "pvc", "-n", ns)["items"]
        ]
        return all(r and r["uid"] == sts["metadata"]["uid"] and r["controller"] for r in refs)

    # whenDeleted: Delete makes the set the claims' controller (the garbage collector's cue)
    wait_for(owned_by_set, timeout=20, what="claims owned by the set")
    for pod in pods(c, ns, "app=par"):
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    wait_for(lambda: sts_status(c, ns, "par").get("replicas") == 3, what="status replicas 3")
    status = sts_status(c, ns, "par")
    assert not status.get("readyReplicas") and status["availableReplicas"] == 0

    # scaled down in parallel: both extra pods go at once, without waiting for readiness
    c.kubectl("scale", "statefulset/par", "--replicas=1", "-n", ns)
    wait_for(
        lambda: [p["metadata"]["name"] for p in pods(c, ns, "app=par")] == ["par-0"],
        timeout=20,
        what="scaled to 1",
    )


def test_statefulset_min_ready_seconds_and_on_delete(cm_cluster: ControllerCluster, ns: str) -> None:
    c = cm_cluster
    manifest = statefulset("slow", 2, minReadySeconds=1, updateStrategy={"type": "OnDelete"})
    c.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    wait_for(lambda: sts_status(c, ns, "slow").get("availableReplicas") == 2, timeout=20, what="2 available")
    by_name = {p["metadata"]["name"]: p for p in pods(c, ns, "app=slow")}
    ready_0 = next(x for x in by_name["slow-0"]["status"]["conditions"] if x["type"] == "Ready")
    # slow-1 waited for slow-0 to be available: Ready for minReadySeconds
    gap = parse_time(by_name["slow-1"]["metadata"]["creationTimestamp"]) - parse_time(
        ready_0["lastTransitionTime"]
    )
    assert gap.total_seconds() >= 1, gap

    # OnDelete: a new template waits until a pod is deleted by someone else
    c.kubectl("set", "image", "statefulset/slow", "c=nginx:2", "-n", ns)
    wait_for(
        lambda: (
            (s := sts_status(c, ns, "slow")).get("observedGeneration") == s["generation"]
            and s["updateRevision"] != s["currentRevision"]
        ),
        what="new update revision",
    )
    assert {p["spec"]["containers"][0]["image"] for p in pods(c, ns, "app=slow")} == {"nginx:1"}
    c.kubectl("delete", "pod", "slow-1", "-n", ns, "--wait=false")
    wait_for(
        lambda: (
            {
                p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
                for p in pods(c, ns, "app=slow")
                if running(p)
            }
            == {"slow-0": "nginx:1", "slow-1": "nginx:2"}
        ),
        timeout=20,
        what="slow-1 recreated at the update revision",
    )
    wait_for(lambda: sts_status(c, ns, "slow").get("updatedReplicas") == 1, what="1 updated")


# -- a node joining (last: it adds a node the other tests do not expect) ---------------------------------


def test_daemonset_new_node_gets_a_pod(cm_cluster: ControllerCluster, ns: str) -> None:
    c = cm_cluster
    c.kubectl("apply", "-n", ns, "-f", "-", input=daemonset("everywhere"))
    wait_daemon_pods_on(c, ns, "everywhere", set(node_names(c)))
    extra = start_hollow_nodes(c.cluster, 1, "ds-extra-node-")
    try:
        wait_daemon_pods_on(c, ns, "everywhere", {*node_names(c), "ds-extra-node-0"})
        status = get_json(c, "get", "ds", "everywhere", "-n", ns)["status"]
        assert status["desiredNumberScheduled"] == 4
    finally:
        extra.stop()
        c.kubectl("delete", "node", "ds-extra-node-0", "--wait=false", check=False)


# -- pure logic ---------------------------------------------------------------------------------------


def _node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None) -> Any:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def _ds(pod_spec: dict[str, Any]) -> Any:
    return {"metadata": {"name": "d", "namespace": "n"}, "spec": {"template": {"spec": pod_spec}}}


def test_daemon_pod_predicates() -> None:
    from k8py.controllers.daemonset import DaemonPodPredicates, target_node_name

    plain = DaemonPodPredicates(_ds({"containers": []}))
    assert plain.should_run(_node("a")) == (True, True)
    assert plain.should_run(_node("a", taints=[{"key": "k", "effect": "NoSchedule"}])) == (False, True)
    assert plain.should_run(_node("a", taints=[{"key": "k", "effect": "NoExecute"}])) == (False, False)
    # the daemon tolerations: cordoned and not-ready nodes keep their daemon pods
    assert plain.should_run(
        _node("a", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    )[0]
    assert plain.should_run(
        _node("a", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}])
    )[0]
    picky = DaemonPodPredicates(_ds({"nodeSelector": {"role": "x"}}))
    assert picky.should_run(_node("a")) == (False, False)
    assert picky.should_run(_node("a", {"role": "x"})) == (True, True)
    named = DaemonPodPredicates(_ds({"nodeName": "b"}))
    assert named.should_run(_node("a")) == (False, False) and named.should_run(_node("b")) == (True, True)
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}
                ]
            }
        }
    }
    zoned = DaemonPodPredicates(_ds({"affinity": affinity}))
    assert (
        not zoned.should_run(_node("a", {"zone": "z2"}))[0]
        and zoned.should_run(_node("a", {"zone": "z1"}))[0]
    )
    assert target_node_name({"spec": {"nodeName": "x"}}) == "x"
    assert target_node_name({"spec": {}}) is None


def test_daemon_pod_template() -> None:
    from k8py.controllers.daemonset import create_pod_template, replace_node_name_node_affinity

    spec = {
        "hostNetwork": True,
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 5,
            },
            {"key": "mine", "operator": "Exists"},
        ],
    }
    template = create_pod_template({"metadata": {"labels": {"app": "d"}}, "spec": spec}, None, "abc")
    tolerations = template["spec"]["tolerations"]
    assert {"key": "mine", "operator": "Exists"} in tolerations
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"} in tolerations
    assert not any(t.get("tolerationSeconds") for t in tolerations)  # daemon pods tolerate forever
    assert {
        "key": "node.kubernetes.io/network-unavailable",
        "operator": "Exists",
        "effect": "NoSchedule",
    } in tolerations
    assert len(tolerations) == 8
    assert template["metadata"]["labels"] == {"app": "d", "controller-revision-hash": "abc"}
    assert spec["tolerations"][0].get("tolerationSeconds") == 5  # the input is not changed

    preferred = [{"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": []}]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        },
        "podAntiAffinity": {"x": 1},
    }
    out = replace_node_name_node_affinity(affinity, "n1")
    assert out["podAntiAffinity"] == {"x": 1}
    assert out["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert out["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    }
    required = out["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert replace_node_name_node_affinity(None, "n1") == {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}
    }


def test_rolling_update_counts() -> None:
    from k8py.controllers.daemonset import scaled_value, surge_count, unavailable_count

    assert scaled_value("25%", 3, round_up=True) == 1 and scaled_value("25%", 3, round_up=False) == 0
    assert scaled_value(2, 3, round_up=True) == 2
    with pytest.raises(ValueError):
        scaled_value("2", 3, round_up=True)
    ds = {
        "spec": {
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "50%", "maxSurge": 0},
            }
        }
    }
    assert unavailable_count(ds, 3) == 2 and surge_count(ds, 3) == 0
    assert unavailable_count({"spec": {"updateStrategy": {"type": "OnDelete"}}}, 3) == 0


def test_controller_revisions() -> None:
    from k8py.controllers.history import (
        apply_revision,
        equal_revision,
        hash_controller_revision,
        new_controller_revision,
        sort_controller_revisions,
        template_patch,
    )

    parent = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "n", "uid": "u1"},
        "spec": {
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
        },
    }
    data = template_patch(parent)
    assert data["spec"]["template"]["$patch"] == "replace"
    assert hash_controller_revision(data) == hash_controller_revision(json.loads(json.dumps(data)))
    assert (
        hash_controller_revision(data, 1)
        != hash_controller_revision(data, 0)
        != hash_controller_revision(data)
    )
    rev = new_controller_revision(parent, {"app": "web"}, data, 3, None)
    assert rev["metadata"]["name"] == f"web-{rev['metadata']['labels']['controller-revision-hash']}"
    assert rev["metadata"]["ownerReferences"][0]["controller"] and rev["revision"] == 3
    other = new_controller_revision(parent, {"app": "web"}, {"spec": {"template": {"x": 1}}}, 4, None)
    assert equal_revision(rev, json.loads(json.dumps(rev))) and not equal_revision(rev, other)
    changed = apply_revision({**parent, "spec": {"template": {"spec": {}}, "replicas": 2}}, rev)
    assert changed["spec"] == {"template": parent["spec"]["template"], "replicas": 2}
    assert [r["revision"] for r in sort_controller_revisions([other, rev])] == [3, 4]


def _sts(policy: dict[str, str], replicas: int = 2) -> Any:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "n", "uid": "set-uid"},
        "spec": {"replicas": replicas, "persistentVolumeClaimRetentionPolicy": policy},
    }


@pytest.mark.parametrize(
    ("when_scaled", "when_deleted", "ordinal", "owners"),
    [
        ("Retain", "Retain", 0, []),
        ("Retain", "Delete", 0, ["set-uid"]),
        ("Delete", "Retain", 0, []),
        ("Delete", "Retain", 5, ["pod-uid"]),
        ("Delete", "Delete", 0, ["set-uid"]),
        ("Delete", "Delete", 5, ["pod-uid"]),
    ],
)
def test_claim_retention_owner_refs(
    when_scaled: str, when_deleted: str, ordinal: int, owners: list[str]
) -> None:
    from k8py.controllers.statefulset_utils import (
        is_claim_owner_up_to_date,
        update_claim_owner_ref_for_set_and_pod,
    )

    sts = _sts({"whenScaled": when_scaled, "whenDeleted": when_deleted})
    pod = {"metadata": {"name": f"web-{ordinal}", "namespace": "n", "uid": "pod-uid"}}
    claim = {
        "metadata": {
            "name": f"data-web-{ordinal}",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": "web",
                    "uid": "set-uid",
                }  # not a controller ref
            ],
        }
    }
    assert not is_claim_owner_up_to_date(claim, sts, pod)
    update_claim_owner_ref_for_set_and_pod(claim, sts, pod)
    refs = claim["metadata"].get("ownerReferences") or []
    assert [r["uid"] for r in refs] == owners and all(r["controller"] for r in refs)
    assert is_claim_owner_up_to_date(claim, sts, pod)
    # a claim another controller owns is left alone
    foreign = {
        "metadata": {"name": "x", "ownerReferences": [{"kind": "Other", "uid": "o", "controller": True}]}
    }
    assert is_claim_owner_up_to_date(foreign, sts, pod)


def test_versioned_stateful_set_pods() -> None:
    from k8py.controllers.statefulset_utils import new_versioned_stateful_set_pod, storage_matches

    sts = _sts({}, replicas=3)
    sts["spec"].update(
        serviceName="svc",
        selector={"matchLabels": {"app": "web"}},
        template={
            "metadata": {"labels": {"app": "web"}},
            "spec": {"volumes": [{"name": "data", "emptyDir": {}}]},
        },
        volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {}}],
        updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
    )
    below = new_versioned_stateful_set_pod(sts, sts, "cur", "upd", 1)
    above = new_versioned_stateful_set_pod(sts, sts, "cur", "upd", 2)
    assert below["metadata"]["labels"]["controller-revision-hash"] == "cur"
    assert above["metadata"]["labels"]["controller-revision-hash"] == "upd"
    assert above["metadata"]["name"] == "web-2" and above["spec"]["hostname"] == "web-2"
    assert above["spec"]["subdomain"] == "svc"
    # the claim's volume replaces the template's volume of the same name
    assert above["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}}
    ]
    assert storage_matches(sts, above)
