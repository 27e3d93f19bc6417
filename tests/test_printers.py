"""Server-side table printing: columns and cells as kube-apiserver 1.32's printers.go makes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from k8py.api import printers
from k8py.api.duration import human_duration, short_human_duration
from k8py.api.errors import StatusError
from k8py.api.registry import RESOURCES

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
Obj = dict[str, Any]


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str = "x", created: float = 3600, **extra: Any) -> Obj:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(created), **extra}


def cells(group: str, kind: str, obj: Obj) -> list[Any]:
    return printers.cells(group, kind, obj, NOW)


def by_name(group: str, kind: str, obj: Obj) -> dict[str, Any]:
    """The row's cells keyed by column name."""
    names = [c["name"] for c in printers.columns(group, kind)]
    row = cells(group, kind, obj)
    assert len(row) == len(names)
    return dict(zip(names, row, strict=True))


# --- duration ----------------------------------------------------------------------------------------

H, D, Y = 3600, 86400, 365 * 86400


@pytest.mark.parametrize(
    ("seconds", "human", "short"),
    [
        (-3, "<invalid>", "<invalid>"),
        (-1.5, "0s", "0s"),
        (0, "0s", "0s"),
        (1, "1s", "1s"),
        (59.9, "59s", "59s"),
        (70, "70s", "1m"),
        (119, "119s", "1m"),
        (120, "2m", "2m"),
        (190, "3m10s", "3m"),
        (599, "9m59s", "9m"),
        (600, "10m", "10m"),
        (70 * 60, "70m", "1h"),
        (179 * 60 + 59, "179m", "2h"),
        (3 * H, "3h", "3h"),
        (3 * H + 5 * 60 + 9, "3h5m", "3h"),
        (8 * H, "8h", "8h"),
        (47 * H, "47h", "1d"),
        (49 * H, "2d1h", "2d"),
        (3 * D, "3d", "3d"),
        (8 * D + 2 * H, "8d", "8d"),
        (367 * D, "367d", "1y"),
        (2 * Y + 25 * H, "2y1d", "2y"),
        (3 * Y, "3y", "3y"),
        (8 * Y + 2 * H, "8y", "8y"),
    ],
)
def test_durations(seconds: float, human: str, short: str) -> None:
    assert human_duration(seconds) == human
    assert short_human_duration(seconds) == short


def test_age() -> None:
    assert printers.age({"metadata": meta(created=190)}, NOW) == "3m10s"
    assert printers.age({"metadata": {"name": "x"}}, NOW) == "<unknown>"


# --- column definitions ------------------------------------------------------------------------------

COLUMNS = {
    ("", "Pod"): "Name|Ready|Status|Restarts|Age|IP*|Node*|Nominated Node*|Readiness Gates*",
    ("", "Service"): "Name Type Cluster-IP External-IP Port(s) Age Selector*",
    (
        "",
        "Node",
    ): "Name Status Roles Age Version Internal-IP* External-IP* OS-Image* Kernel-Version* Container-Runtime*",
    ("", "Event"): "Last Seen|Type|Reason|Object|Subobject*|Source*|Message|First Seen*|Count*|Name*",
    (
        "events.k8s.io",
        "Event",
    ): "Last Seen|Type|Reason|Object|Subobject*|Source*|Message|First Seen*|Count*|Name*",
    ("", "Namespace"): "Name Status Age",
    ("", "ConfigMap"): "Name Data Age",
    ("", "Secret"): "Name Type Data Age",
    ("", "ServiceAccount"): "Name Secrets Age",
    ("", "Endpoints"): "Name Endpoints Age",
    ("", "PodTemplate"): "Name|Containers|Images|Pod Labels",
    ("", "ReplicationController"): "Name Desired Current Ready Age Containers* Images* Selector*",
    ("", "ResourceQuota"): "Name Request Limit Age",
    ("", "PersistentVolume"): "Name|Capacity|Access Modes|Reclaim Policy|Status|Claim|StorageClass|"
    "VolumeAttributesClass|Reason|Age|VolumeMode*",
    (
        "",
        "PersistentVolumeClaim",
    ): "Name|Status|Volume|Capacity|Access Modes|StorageClass|VolumeAttributesClass|Age|VolumeMode*",
    ("", "LimitRange"): "Name|Created At",
    ("", "Binding"): "Name|Created At",
    # create-only reviews: kube's default table convertor
    ("authentication.k8s.io", "SelfSubjectReview"): "Name|Created At",
    ("authentication.k8s.io", "TokenReview"): "Name|Created At",
    ("authorization.k8s.io", "LocalSubjectAccessReview"): "Name|Created At",
    ("authorization.k8s.io", "SelfSubjectAccessReview"): "Name|Created At",
    ("authorization.k8s.io", "SelfSubjectRulesReview"): "Name|Created At",
    ("authorization.k8s.io", "SubjectAccessReview"): "Name|Created At",
    ("apps", "Deployment"): "Name Ready Up-to-date Available Age Containers* Images* Selector*",
    ("apps", "ReplicaSet"): "Name Desired Current Ready Age Containers* Images* Selector*",
    ("apps", "StatefulSet"): "Name Ready Age Containers* Images*",
    (
        "apps",
        "DaemonSet",
    ): "Name|Desired|Current|Ready|Up-to-date|Available|Node Selector|Age|Containers*|Images*|Selector*",
    ("apps", "ControllerRevision"): "Name Controller Revision Age",
    ("batch", "Job"): "Name Status Completions Duration Age Containers* Images* Selector*",
    (
        "batch",
        "CronJob",
    ): "Name|Schedule|Timezone|Suspend|Active|Last Schedule|Age|Containers*|Images*|Selector*",
    ("autoscaling", "HorizontalPodAutoscaler"): "Name Reference Targets MinPods MaxPods Replicas Age",
    ("networking.k8s.io", "Ingress"): "Name Class Hosts Address Ports Age",
    ("networking.k8s.io", "IngressClass"): "Name Controller Parameters Age",
    ("networking.k8s.io", "NetworkPolicy"): "Name Pod-Selector Age",
    ("discovery.k8s.io", "EndpointSlice"): "Name AddressType Ports Endpoints Age",
    (
        "storage.k8s.io",
        "StorageClass",
    ): "Name Provisioner ReclaimPolicy VolumeBindingMode AllowVolumeExpansion Age",
    ("storage.k8s.io", "VolumeAttachment"): "Name Attacher PV Node Attached Age",
    ("storage.k8s.io", "CSIDriver"): "Name AttachRequired PodInfoOnMount StorageCapacity TokenRequests "
    "RequiresRepublish Modes Age",
    ("storage.k8s.io", "CSINode"): "Name Drivers Age",
    ("storage.k8s.io", "CSIStorageCapacity"): "Name StorageClassName Capacity",
    ("rbac.authorization.k8s.io", "Role"): "Name|Created At",
    ("rbac.authorization.k8s.io", "ClusterRole"): "Name|Created At",
    ("apiextensions.k8s.io", "CustomResourceDefinition"): "Name|Created At",
    ("rbac.authorization.k8s.io", "RoleBinding"): "Name Role Age Users* Groups* ServiceAccounts*",
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): "Name Role Age Users* Groups* ServiceAccounts*",
    ("coordination.k8s.io", "Lease"): "Name Holder Age",
    ("scheduling.k8s.io", "PriorityClass"): "Name Value Global-Default Age PreemptionPolicy",
    ("policy", "PodDisruptionBudget"): "Name|Min Available|Max Unavailable|Allowed Disruptions|Age",
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
    ): "Name Age SignerName Requestor RequestedDuration Condition",
    ("node.k8s.io", "RuntimeClass"): "Name Handler Age",
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): "Name Webhooks Age",
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): "Name Webhooks Age",
    ("autoscaling", "Scale"): "Name Desired Available Age",
}


def _expected(spec: str) -> list[tuple[str, int]]:
    """ "A B* C" (or "A|B*|C" for names with spaces) -> [(name, priority)]; * marks wide-only."""
    names = spec.split("|") if "|" in spec else spec.split(" ")
    return [(n.rstrip("*"), int(n.endswith("*"))) for n in names]


def test_every_registered_kind_has_its_kube_columns() -> None:
    assert {(r.group, r.kind) for r in RESOURCES} <= set(COLUMNS)


@pytest.mark.parametrize(("group", "kind"), sorted(COLUMNS))
def test_columns(group: str, kind: str) -> None:
    cols = printers.columns(group, kind)
    assert [(c["name"], c["priority"]) for c in cols] == _expected(COLUMNS[(group, kind)])
    for c in cols:
        assert set(c) == {"name", "type", "format", "description", "priority"}
        assert c["type"] in ("string", "integer", "boolean", "date")
        assert c["description"] or (kind, c["name"]) == ("RuntimeClass", "Handler")
    name = next(c for c in cols if c["name"] == "Name")
    assert name["format"] == ("" if kind == "Scale" else "name")
    assert name["description"].startswith("Name must be unique within a namespace.")


@pytest.mark.parametrize(("group", "kind"), sorted(COLUMNS))
def test_a_bare_object_prints_one_cell_per_column(group: str, kind: str) -> None:
    row = cells(group, kind, {"metadata": {"name": "bare"}})
    assert len(row) == len(printers.columns(group, kind))


def test_column_types() -> None:
    def types(group: str, kind: str) -> list[str]:
        return [c["type"] for c in printers.columns(group, kind)]

    assert types("", "Pod")[:4] == ["string", "string", "string", "string"]
    assert types("apps", "ReplicaSet")[1:4] == ["integer"] * 3
    assert types("batch", "CronJob")[3:5] == ["boolean", "integer"]
    assert types("rbac.authorization.k8s.io", "Role") == ["string", "date"]
    assert printers.columns("storage.k8s.io", "VolumeAttachment")[1]["format"] == "name"
    assert printers.columns("", "Event")[-1]["format"] == "name"


def test_default_convertor() -> None:
    role = {"metadata": {"name": "reader", "creationTimestamp": "2024-05-01T10:00:00+02:00"}}
    assert cells("rbac.authorization.k8s.io", "Role", role) == ["reader", "2024-05-01T08:00:00Z"]
    assert cells("example.com", "Widget", {"metadata": {"name": "w"}}) == ["w", "0001-01-01T00:00:00Z"]


# --- Pod ---------------------------------------------------------------------------------------------


def running(name: str, *, ready: bool = True, restarts: int = 0, finished: float | None = None) -> Obj:
    status: Obj = {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": ago(60)}},
    }
    if finished is not None:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(finished)}}
    return status


def waiting(name: str, reason: str, restarts: int = 0) -> Obj:
    return {"name": name, "ready": False, "restartCount": restarts, "state": {"waiting": {"reason": reason}}}


def terminated(name: str, exit_code: int = 0, reason: str = "", signal: int = 0, restarts: int = 0) -> Obj:
    state: Obj = {"exitCode": exit_code}
    if reason:
        state["reason"] = reason
    if signal:
        state["signal"] = signal
    return {"name": name, "ready": False, "restartCount": restarts, "state": {"terminated": state}}


def pod(
    statuses: list[Obj],
    *,
    phase: str = "Running",
    init: list[Obj] | None = None,
    init_statuses: list[Obj] | None = None,
    conditions: list[Obj] | None = None,
    **status: Any,
) -> Obj:
    spec: Obj = {"containers": [{"name": s["name"], "image": "img"} for s in statuses] or [{"name": "c"}]}
    if init is not None:
        spec["initContainers"] = init
    st: Obj = {"phase": phase, "containerStatuses": statuses, "conditions": conditions or [], **status}
    if init_statuses is not None:
        st["initContainerStatuses"] = init_statuses
    return {"metadata": meta("web"), "spec": spec, "status": st}


def crashed(name: str, *, restarts: int, finished: float) -> Obj:
    return {
        **waiting(name, "CrashLoopBackOff", restarts),
        "lastState": running(name, finished=finished)["lastState"],
    }


def initializing(*init_statuses: Obj) -> Obj:
    """A pod of two init containers and one container, still initializing."""
    init = [{"name": "i1"}, {"name": "i2"}]
    return pod([], phase="Pending", init=init, init_statuses=list(init_statuses))


INITIALIZED = [{"type": "Initialized", "status": "True"}]


@pytest.mark.parametrize(
    ("obj", "ready", "status", "restarts"),
    [
        (pod([running("a"), running("b", ready=False)]), "1/2", "Running", "0"),
        (pod([waiting("a", "ContainerCreating")], phase="Pending"), "0/1", "ContainerCreating", "0"),
        (pod([], phase="Pending"), "0/1", "Pending", "0"),
        (pod([crashed("a", restarts=5, finished=185)]), "0/1", "CrashLoopBackOff", "5 (3m5s ago)"),
        (pod([terminated("a", reason="Completed")], phase="Succeeded"), "0/1", "Completed", "0"),
        (pod([terminated("a", 137, reason="OOMKilled")], phase="Failed"), "0/1", "OOMKilled", "0"),
        (pod([terminated("a", 2)], phase="Failed"), "0/1", "ExitCode:2", "0"),
        (pod([terminated("a", 143, signal=15)], phase="Failed"), "0/1", "Signal:15", "0"),
        (pod([], phase="Failed", reason="Evicted"), "0/1", "Evicted", "0"),
        (
            initializing(waiting("i1", "PodInitializing"), waiting("i2", "PodInitializing")),
            "0/1",
            "Init:0/2",
            "0",
        ),
        (initializing(terminated("i1"), {"name": "i2", "state": {"running": {}}}), "0/1", "Init:1/2", "0"),
        (initializing(crashed("i1", restarts=3, finished=90)), "0/1", "Init:CrashLoopBackOff", "3 (90s ago)"),
        (initializing(terminated("i1", 1, reason="Error")), "0/1", "Init:Error", "0"),
        (initializing(terminated("i1", 3)), "0/1", "Init:ExitCode:3", "0"),
        (initializing(terminated("i1", 137, signal=9)), "0/1", "Init:Signal:9", "0"),
        (
            pod(
                [],
                phase="Pending",
                conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
            ),
            "0/1",
            "SchedulingGated",
            "0",
        ),
        # a completed container next to a running one: Running when the pod is Ready, else NotReady
        (
            pod(
                [running("a"), terminated("b", reason="Completed")],
                conditions=[{"type": "Ready", "status": "True"}],
            ),
            "1/2",
            "Running",
            "0",
        ),
        (pod([running("a"), terminated("b", reason="Completed")]), "1/2", "NotReady", "0"),
    ],
)
def test_pod_status(obj: Obj, ready: str, status: str, restarts: str) -> None:
    row = by_name("", "Pod", obj)
    assert (row["Ready"], row["Status"], row["Restarts"]) == (ready, status, restarts)


def test_pod_sidecars_count_in_ready_and_restarts() -> None:
    sidecar = {"name": "proxy", "restartPolicy": "Always"}
    obj = pod(
        [running("app", restarts=1, finished=30)],
        init=[{"name": "setup"}, sidecar],
        init_statuses=[
            {**terminated("setup"), "restartCount": 4},  # restarts of plain init containers stop counting
            {**running("proxy", restarts=2, finished=600), "started": True},
        ],
        conditions=INITIALIZED,
    )
    row = by_name("", "Pod", obj)
    assert (row["Ready"], row["Status"], row["Restarts"]) == ("2/2", "Running", "3 (30s ago)")


def test_pod_terminating_and_node_lost() -> None:
    obj = pod([running("a")])
    obj["metadata"]["deletionTimestamp"] = ago(5)
    assert by_name("", "Pod", obj)["Status"] == "Terminating"
    obj["status"]["reason"] = "NodeLost"
    assert by_name("", "Pod", obj)["Status"] == "Unknown"
    done = pod([terminated("a", reason="Completed")], phase="Succeeded")
    done["metadata"]["deletionTimestamp"] = ago(5)
    assert by_name("", "Pod", done)["Status"] == "Completed"


def test_pod_wide_cells() -> None:
    obj = pod([running("a")], podIPs=[{"ip": "10.1.0.5"}, {"ip": "fd00::5"}], nominatedNodeName="n2")
    obj["spec"]["nodeName"] = "n1"
    obj["spec"]["readinessGates"] = [
        {"conditionType": "example.com/lb"},
        {"conditionType": "example.com/dns"},
    ]
    obj["status"]["conditions"] = [{"type": "example.com/lb", "status": "True"}]
    assert cells("", "Pod", obj) == ["web", "1/1", "Running", "0", "60m", "10.1.0.5", "n1", "n2", "1/2"]
    bare = pod([running("a")])
    assert cells("", "Pod", bare)[5:] == ["<none>", "<none>", "<none>", "<none>"]
    bare["status"]["podIP"] = "10.1.0.6"
    assert cells("", "Pod", bare)[5] == "10.1.0.6"


# --- Workloads ---------------------------------------------------------------------------------------

TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]},
}
SELECTOR = {
    "matchLabels": {"app": "web"},
    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}],
}


def test_deployment() -> None:
    obj = {
        "metadata": meta("web", created=2 * D + 3 * H),
        "spec": {"replicas": 3, "selector": SELECTOR, "template": TEMPLATE},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("apps", "Deployment", obj) == [
        "web",
        "2/3",
        3,
        2,
        "2d3h",
        "nginx,log",
        "nginx:1.27,busybox",
        "app=web,tier in (back,front)",
    ]
    obj["spec"]["selector"] = {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}
    assert cells("apps", "Deployment", obj)[-1] == "<invalid>"
    assert cells("apps", "Deployment", {"metadata": meta(), "spec": {}})[1:4] == ["0/1", 0, 0]


def test_replica_set_daemon_set_stateful_set_rc() -> None:
    rs = {"metadata": meta("web-abc"), "spec": {"replicas": 2, "selector": SELECTOR, "template": TEMPLATE}}
    assert cells("apps", "ReplicaSet", rs)[1:5] == [2, 0, 0, "60m"]
    assert cells("apps", "ReplicaSet", {**rs, "spec": {"replicas": 0}})[1] == 0
    assert cells("apps", "ReplicaSet", {**rs, "spec": {}})[-1] == "<none>"
    ds = {
        "metadata": meta("agent"),
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"spec": {"nodeSelector": {"os": "linux"}}},
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
        },
    }
    assert cells("apps", "DaemonSet", ds) == ["agent", 3, 3, 2, 3, 0, "os=linux", "60m", "", "", "app=agent"]
    sts = {
        "metadata": meta("db"),
        "spec": {"replicas": 3, "template": TEMPLATE},
        "status": {"readyReplicas": 1},
    }
    assert cells("apps", "StatefulSet", sts) == ["db", "1/3", "60m", "nginx,log", "nginx:1.27,busybox"]
    rc = {
        "metadata": meta("old"),
        "spec": {"replicas": 2, "selector": {"b": "2", "a": "1"}},
        "status": {"replicas": 2},
    }
    assert cells("", "ReplicationController", rc) == ["old", 2, 2, 0, "60m", "", "", "a=1,b=2"]


def test_controller_revision_and_pod_template() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": True}
    rev = {"metadata": meta("db-7d4", ownerReferences=[owner]), "revision": 3}
    assert cells("apps", "ControllerRevision", rev) == ["db-7d4", "statefulset.apps/db", 3, "60m"]
    assert cells("apps", "ControllerRevision", {"metadata": meta("r")})[1] == "<none>"
    tmpl = {"metadata": meta("t"), "template": TEMPLATE}
    assert cells("", "PodTemplate", tmpl) == ["t", "nginx,log", "nginx:1.27,busybox", "app=web"]


# --- Jobs --------------------------------------------------------------------------------------------


def job(conditions: list[Obj] | None = None, *, spec: Obj | None = None, **status: Any) -> Obj:
    return {
        "metadata": meta("pi", created=600),
        "spec": {"completions": 1, "parallelism": 1, "template": TEMPLATE, **(spec or {})},
        "status": {"conditions": conditions or [], **status},
    }


def cond(kind: str, status: str = "True") -> Obj:
    return {"type": kind, "status": status}


@pytest.mark.parametrize(
    ("obj", "status", "completions", "duration"),
    [
        (job(startTime=ago(45)), "Running", "0/1", "45s"),
        (
            job([cond("Complete")], succeeded=1, startTime=ago(300), completionTime=ago(100)),
            "Complete",
            "1/1",
            "3m20s",
        ),
        (job([cond("Failed")], failed=6, startTime=ago(600), completionTime=ago(0)), "Failed", "0/1", "10m"),
        (job([cond("Suspended")], spec={"suspend": True}), "Suspended", "0/1", ""),
        (job([cond("FailureTarget")], startTime=ago(5)), "FailureTarget", "0/1", "5s"),
        (job([cond("Complete", "False")], startTime=ago(5)), "Running", "0/1", "5s"),
        (job(spec={"completions": None, "parallelism": 4}, succeeded=2), "Running", "2/1 of 4", ""),
        (job(spec={"completions": None}), "Running", "0/1", ""),
        (job(spec={"completions": 5, "parallelism": 2}, succeeded=3), "Running", "3/5", ""),
    ],
)
def test_job(obj: Obj, status: str, completions: str, duration: str) -> None:
    row = by_name("batch", "Job", obj)
    assert (row["Status"], row["Completions"], row["Duration"]) == (status, completions, duration)
    assert row["Age"] == "10m" and row["Selector"] == "<none>"


def test_job_terminating() -> None:
    obj = job([cond("Suspended")])
    obj["metadata"]["deletionTimestamp"] = ago(1)
    assert by_name("batch", "Job", obj)["Status"] == "Terminating"
    obj["status"]["conditions"] = [cond("Complete")]
    assert by_name("batch", "Job", obj)["Status"] == "Complete"


def test_cron_job() -> None:
    obj = {
        "metadata": meta("backup"),
        "spec": {
            "schedule": "*/5 * * * *",
            "suspend": False,
            "jobTemplate": {"spec": {"template": TEMPLATE}},
        },
        "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(125)},
    }
    assert cells("batch", "CronJob", obj) == [
        "backup",
        "*/5 * * * *",
        "<none>",
        "False",
        1,
        "2m5s",
        "60m",
        "nginx,log",
        "nginx:1.27,busybox",
        "<none>",
    ]
    obj["spec"] |= {"timeZone": "Europe/Paris", "suspend": True}
    del obj["status"]["lastScheduleTime"]
    assert cells("batch", "CronJob", obj)[2:6] == ["Europe/Paris", "True", 1, "<none>"]
    assert cells("batch", "CronJob", {"metadata": meta(), "spec": {}})[3] == "<unset>"


# --- Services and endpoints --------------------------------------------------------------------------


def service(kind: str, ports: list[Obj] | None = None, status: Obj | None = None, **spec: Any) -> Obj:
    return {
        "metadata": meta("svc"),
        "spec": {"type": kind, "ports": ports or [], "selector": {"app": "web"}, **spec},
        "status": status or {},
    }


HTTP = {"port": 80, "protocol": "TCP"}


@pytest.mark.parametrize(
    ("obj", "cluster_ip", "external_ip", "ports"),
    [
        (
            service("ClusterIP", [HTTP, {"port": 53, "protocol": "UDP"}], clusterIP="10.96.0.10"),
            "10.96.0.10",
            "<none>",
            "80/TCP,53/UDP",
        ),
        (service("ClusterIP", [HTTP], clusterIP="None"), "None", "<none>", "80/TCP"),
        (service("ClusterIP", [], clusterIPs=["10.96.0.11", "fd00::11"]), "10.96.0.11", "<none>", "<none>"),
        (
            service("ClusterIP", [HTTP], clusterIP="10.96.0.12", externalIPs=["1.2.3.4", "5.6.7.8"]),
            "10.96.0.12",
            "1.2.3.4,5.6.7.8",
            "80/TCP",
        ),
        (
            service(
                "NodePort",
                [{**HTTP, "nodePort": 30080}, {"port": 443, "nodePort": 30001, "protocol": "TCP"}],
                clusterIP="10.96.0.13",
            ),
            "10.96.0.13",
            "<none>",
            "80:30080/TCP,443:30001/TCP",
        ),
        (
            service("LoadBalancer", [{**HTTP, "nodePort": 31000}], clusterIP="10.96.0.14"),
            "10.96.0.14",
            "<pending>",
            "80:31000/TCP",
        ),
        (
            service(
                "LoadBalancer",
                [HTTP],
                {
                    "loadBalancer": {
                        "ingress": [
                            {"ip": "203.0.113.9"},
                            {"hostname": "lb.example.com"},
                            {"ip": "203.0.113.9"},
                        ]
                    }
                },
                clusterIP="10.96.0.15",
                externalIPs=["198.51.100.1"],
            ),
            "10.96.0.15",
            "203.0.113.9,lb.example.com,198.51.100.1",
            "80/TCP",
        ),
        (service("ExternalName", externalName="db.example.com"), "<none>", "db.example.com", "<none>"),
        (service("Weird", [HTTP], clusterIP="10.96.0.16"), "10.96.0.16", "<unknown>", "80/TCP"),
    ],
)
def test_service(obj: Obj, cluster_ip: str, external_ip: str, ports: str) -> None:
    kind = obj["spec"]["type"]
    assert cells("", "Service", obj) == ["svc", kind, cluster_ip, external_ip, ports, "60m", "app=web"]


def test_endpoints() -> None:
    obj = {
        "metadata": meta("web"),
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]},
        ],
    }
    assert cells("", "Endpoints", obj)[1] == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."
    obj["subsets"] = [
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]},
        {"addresses": [{"ip": "10.0.0.9"}]},
    ]
    assert cells("", "Endpoints", obj)[1] == "[fd00::1]:8080,10.0.0.9"
    assert (
        cells(
            "", "Endpoints", {"metadata": meta("e"), "subsets": [{"notReadyAddresses": [{"ip": "1.1.1.1"}]}]}
        )[1]
        == ""
    )
    assert cells("", "Endpoints", {"metadata": meta("e")})[1] == "<none>"


def test_endpoint_slice() -> None:
    obj = {
        "metadata": meta("web-x7"),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80}, {"name": "metrics"}, {}, {"port": 9000}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}],
    }
    assert cells("discovery.k8s.io", "EndpointSlice", obj) == [
        "web-x7",
        "IPv4",
        "80,metrics,* + 1 more...",
        "10.0.0.1,10.0.0.2,10.0.0.3",
        "60m",
    ]
    assert cells("discovery.k8s.io", "EndpointSlice", {"metadata": meta("e")})[2:4] == ["<unset>", "<unset>"]


def test_ingress_and_class() -> None:
    rules = [
        {"host": "a.example.com"},
        {},
        {"host": "b.example.com"},
        {"host": "c.example.com"},
        {"host": "d.example.com"},
    ]
    obj = {
        "metadata": meta("web"),
        "spec": {"ingressClassName": "nginx", "rules": rules, "tls": [{"hosts": ["a.example.com"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}, {"ip": "192.0.2.1"}]}},
    }
    assert cells("networking.k8s.io", "Ingress", obj) == [
        "web",
        "nginx",
        "a.example.com,b.example.com,c.example.com + 2 more...",
        "192.0.2.1,192.0.2.2",
        "80, 443",
        "60m",
    ]
    bare = {"metadata": meta("w"), "spec": {"rules": [{}]}}
    assert cells("networking.k8s.io", "Ingress", bare)[1:5] == ["<none>", "*", "", "80"]
    cls = {
        "metadata": meta("nginx"),
        "spec": {
            "controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "P", "name": "p"},
        },
    }
    assert cells("networking.k8s.io", "IngressClass", cls) == [
        "nginx",
        "k8s.io/ingress-nginx",
        "P.k8s.example.com/p",
        "60m",
    ]
    assert cells("networking.k8s.io", "IngressClass", {"metadata": meta("c"), "spec": {}})[2] == "<none>"


def test_network_policy() -> None:
    obj = {"metadata": meta("deny"), "spec": {"podSelector": {}}}
    assert cells("networking.k8s.io", "NetworkPolicy", obj) == ["deny", "<none>", "60m"]
    obj["spec"]["podSelector"] = {"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]}
    assert cells("networking.k8s.io", "NetworkPolicy", obj)[1] == "!role"


# --- Nodes -------------------------------------------------------------------------------------------


def node(
    ready: str | None = "True",
    *,
    labels: Obj | None = None,
    unschedulable: bool = False,
    info: Obj | None = None,
) -> Obj:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {
        "metadata": meta("n1", created=5 * D, labels=labels or {}),
        "spec": {"unschedulable": unschedulable},
        "status": {
            "conditions": conditions,
            "addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "192.168.1.10"},
            ],
            "nodeInfo": info or {},
        },
    }


def test_node() -> None:
    info = {
        "kubeletVersion": "v1.32.0",
        "osImage": "Debian GNU/Linux 12",
        "kernelVersion": "6.1.0",
        "containerRuntimeVersion": "containerd://1.7",
    }
    labels = {
        "node-role.kubernetes.io/control-plane": "",
        "node-role.kubernetes.io/": "x",
        "kubernetes.io/role": "master",
    }
    assert cells("", "Node", node(labels=labels, info=info)) == [
        "n1",
        "Ready",
        "control-plane,master",
        "5d",
        "v1.32.0",
        "192.168.1.10",
        "<none>",
        "Debian GNU/Linux 12",
        "6.1.0",
        "containerd://1.7",
    ]
    bare = node("False", unschedulable=True)
    assert cells("", "Node", bare)[1:3] == ["NotReady,SchedulingDisabled", "<none>"]
    assert cells("", "Node", bare)[4:] == [
        "",
        "192.168.1.10",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]
    assert cells("", "Node", node("Unknown"))[1] == "NotReady"
    assert cells("", "Node", node(None, unschedulable=True))[1] == "Unknown,SchedulingDisabled"


# --- Events ------------------------------------------------------------------------------------------


def test_core_event() -> None:
    obj = {
        "metadata": meta("web.17a", created=700),
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{nginx}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": ago(600),
        "lastTimestamp": ago(30),
        "count": 7,
        "type": "Warning",
    }
    assert cells("", "Event", obj) == [
        "30s",
        "Warning",
        "BackOff",
        "pod/web",
        "spec.containers{nginx}",
        "kubelet, n1",
        "Back-off restarting failed container",
        "10m",
        7,
        "web.17a",
    ]


def test_event_times_and_sources() -> None:
    obj = {
        "metadata": meta("e"),
        "involvedObject": {"kind": "Node"},
        "eventTime": "2024-06-01T11:58:59.876543Z",
        "reportingComponent": "scheduler",
        "reportingInstance": "",
        "type": "Normal",
    }
    row = by_name("", "Event", obj)
    assert (row["Last Seen"], row["First Seen"], row["Count"], row["Object"], row["Source"]) == (
        "60s",
        "60s",
        1,
        "node",
        "scheduler",
    )
    assert by_name("", "Event", {"metadata": meta("e")})["Last Seen"] == "<unknown>"


def test_events_k8s_io_event() -> None:
    obj = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": meta("web.17b"),
        "eventTime": "2024-06-01T11:50:00.000000Z",
        "series": {"count": 4, "lastObservedTime": "2024-06-01T11:59:50.000000Z"},
        "reportingController": "kubelet",
        "reportingInstance": "n1",
        "action": "Pulling",
        "reason": "Pulling",
        "regarding": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "note": "Pulling image",
        "type": "Normal",
    }
    assert cells("events.k8s.io", "Event", obj) == [
        "10s",
        "Normal",
        "Pulling",
        "pod/web",
        "spec.containers{app}",
        "kubelet, n1",
        "Pulling image",
        "10m",
        4,
        "web.17b",
    ]


# --- Configuration, storage, access ------------------------------------------------------------------


def test_small_core_kinds() -> None:
    assert cells("", "Namespace", {"metadata": meta("kube-system"), "status": {"phase": "Active"}}) == [
        "kube-system",
        "Active",
        "60m",
    ]
    cm = {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert cells("", "ConfigMap", cm) == ["cfg", 3, "60m"]
    secret = {"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}
    assert cells("", "Secret", secret) == ["tls", "kubernetes.io/tls", 2, "60m"]
    sa = {"metadata": meta("default"), "secrets": [{"name": "t"}]}
    assert cells("", "ServiceAccount", sa) == ["default", 1, "60m"]
    quota = {
        "metadata": meta("q"),
        "status": {
            "hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "limits.cpu": "8"},
            "used": {"pods": "3", "requests.cpu": "500m", "limits.cpu": "1"},
        },
    }
    assert cells("", "ResourceQuota", quota) == [
        "q",
        "pods: 3/10, requests.cpu: 500m/4",
        "limits.cpu: 1/8, limits.memory: 0/8Gi",
        "60m",
    ]


def test_persistent_volumes() -> None:
    pv = {
        "metadata": meta("pv1", annotations={"volume.beta.kubernetes.io/storage-class": "old"}),
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"},
            "storageClassName": "fast",
            "volumeMode": "Filesystem",
        },
        "status": {"phase": "Bound"},
    }
    assert cells("", "PersistentVolume", pv) == [
        "pv1", "10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "old", "<unset>", "", "60m", "Filesystem",
    ]  # fmt: skip
    pv["metadata"]["deletionTimestamp"] = ago(1)
    assert cells("", "PersistentVolume", pv)[4] == "Terminating"
    pvc = {
        "metadata": meta("data"),
        "spec": {"resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast"},
        "status": {"phase": "Pending"},
    }
    assert cells("", "PersistentVolumeClaim", pvc) == [
        "data",
        "Pending",
        "",
        "",
        "",
        "fast",
        "<unset>",
        "60m",
        "<unset>",
    ]
    pvc["spec"]["volumeName"] = "pv1"
    pvc["status"] = {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"]}
    assert cells("", "PersistentVolumeClaim", pvc)[1:5] == ["Bound", "pv1", "10Gi", "RWOP"]


def test_storage_kinds() -> None:
    sc = {
        "metadata": meta("standard", annotations={"storageclass.kubernetes.io/is-default-class": "true"}),
        "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    assert cells("storage.k8s.io", "StorageClass", sc) == [
        "standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False, "60m",
    ]  # fmt: skip
    va = {"metadata": meta("csi-1"), "spec": {"attacher": "csi.example.com", "nodeName": "n1", "source": {}}}
    assert cells("storage.k8s.io", "VolumeAttachment", va) == [
        "csi-1",
        "csi.example.com",
        "",
        "n1",
        False,
        "60m",
    ]
    driver = {
        "metadata": meta("csi.example.com"),
        "spec": {
            "tokenRequests": [{"audience": "a"}, {"audience": "b"}],
            "volumeLifecycleModes": ["Persistent", "Ephemeral"],
        },
    }
    assert cells("storage.k8s.io", "CSIDriver", driver) == [
        "csi.example.com", True, False, False, "a,b", False, "Persistent,Ephemeral", "60m",
    ]  # fmt: skip
    assert cells("storage.k8s.io", "CSIDriver", {"metadata": meta("d"), "spec": {"attachRequired": False}})[1:7] == [
        False, False, False, "<unset>", False, "<none>",
    ]  # fmt: skip
    assert cells("storage.k8s.io", "CSINode", {"metadata": meta("n1"), "spec": {"drivers": [{}, {}]}}) == [
        "n1",
        2,
        "60m",
    ]
    cap = {"metadata": meta("cap"), "storageClassName": "fast", "capacity": "100Gi"}
    assert cells("storage.k8s.io", "CSIStorageCapacity", cap) == ["cap", "fast", "100Gi"]
    assert cells("storage.k8s.io", "CSIStorageCapacity", {"metadata": meta("c")})[2] == "<unset>"


def test_rbac_bindings() -> None:
    obj = {
        "metadata": meta("admins"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "Group", "name": "ops"},
            {"kind": "User", "name": "bob"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "build"},
        ],
    }
    assert cells("rbac.authorization.k8s.io", "RoleBinding", obj) == [
        "admins",
        "ClusterRole/admin",
        "60m",
        "alice, bob",
        "ops",
        "build/ci",
    ]
    crb = printers.columns("rbac.authorization.k8s.io", "ClusterRoleBinding")
    assert crb[3]["description"] == "Users in the clusterRoleBinding"


def test_cluster_kinds() -> None:
    lease = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp1_abc"}}
    assert cells("coordination.k8s.io", "Lease", lease) == ["kube-scheduler", "cp1_abc", "60m"]
    pc = {
        "metadata": meta("system-node-critical"),
        "value": 2000001000,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    assert cells("scheduling.k8s.io", "PriorityClass", pc) == [
        "system-node-critical",
        2000001000,
        False,
        "60m",
        "PreemptLowerPriority",
    ]
    pdb = {"metadata": meta("web"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}
    assert cells("policy", "PodDisruptionBudget", pdb) == ["web", "50%", "N/A", 1, "60m"]
    pdb["spec"] = {"maxUnavailable": 1}
    assert cells("policy", "PodDisruptionBudget", pdb)[1:3] == ["N/A", "1"]
    rc = {"metadata": meta("runc"), "handler": "runc"}
    assert cells("node.k8s.io", "RuntimeClass", rc) == ["runc", "runc", "60m"]
    hook = {"metadata": meta("h"), "webhooks": [{"name": "a"}, {"name": "b"}]}
    assert cells("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", hook) == ["h", 2, "60m"]


@pytest.mark.parametrize(
    ("status", "condition"),
    [
        ({}, "Pending"),
        ({"conditions": [{"type": "Approved"}]}, "Approved"),
        ({"conditions": [{"type": "Approved"}], "certificate": "LS0t"}, "Approved,Issued"),
        ({"conditions": [{"type": "Approved"}, {"type": "Denied"}, {"type": "Failed"}]}, "Denied,Failed"),
    ],
)
def test_csr(status: Obj, condition: str) -> None:
    obj = {
        "metadata": meta("csr-1"),
        "spec": {
            "signerName": "kubernetes.io/kube-apiserver-client",
            "username": "system:admin",
            "expirationSeconds": 86400,
        },
        "status": status,
    }
    assert cells("certificates.k8s.io", "CertificateSigningRequest", obj) == [
        "csr-1", "60m", "kubernetes.io/kube-apiserver-client", "system:admin", "24h", condition,
    ]  # fmt: skip


# --- HorizontalPodAutoscaler -------------------------------------------------------------------------


def test_hpa_v2() -> None:
    metrics = [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        },
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}},
        },
        {
            "type": "Pods",
            "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}},
        },
    ]
    current = [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": 42, "averageValue": "210m"}},
        },
        {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "600Mi"}}},
    ]
    obj = {
        "apiVersion": "autoscaling/v2",
        "metadata": meta("web"),
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": metrics,
        },
        "status": {"currentReplicas": 3, "currentMetrics": current},
    }
    assert cells("autoscaling", "HorizontalPodAutoscaler", obj) == [
        "web", "Deployment/web", "cpu: 42%/80%, memory: 600Mi/1Gi + 1 more...", "2", 10, 3, "60m",
    ]  # fmt: skip
    obj["spec"]["metrics"] = metrics[2:]
    obj["status"]["currentMetrics"] = []
    assert by_name("autoscaling", "HorizontalPodAutoscaler", obj)["Targets"] == "<unknown>/10"


@pytest.mark.parametrize(
    ("metric", "status", "shown"),
    [
        (
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}},
            None,
            "cpu: <unknown>/<auto>",
        ),
        (
            {"type": "External", "external": {"target": {"type": "Value", "value": "5"}}},
            {"external": {"current": {"value": "3"}}},
            "3/5",
        ),
        ({"type": "External", "external": {"target": {"averageValue": "5"}}}, None, "<unknown>/5 (avg)"),
        (
            {"type": "Object", "object": {"target": {"averageValue": "2"}}},
            {"object": {"current": {"averageValue": "1"}}},
            "1/2 (avg)",
        ),
        (
            {"type": "Object", "object": {"target": {"type": "Value"}}},
            {"object": {"current": {}}},
            "<nil>/<nil>",
        ),
        (
            {
                "type": "ContainerResource",
                "containerResource": {
                    "name": "memory",
                    "container": "app",
                    "target": {"averageUtilization": 60},
                },
            },
            {"containerResource": {"current": {"averageUtilization": 30}}},
            "memory: 30%/60%",
        ),
        ({"type": "Custom"}, None, "<unknown type>"),
    ],
)
def test_hpa_metric_kinds(metric: Obj, status: Obj | None, shown: str) -> None:
    obj = {
        "metadata": meta("h"),
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "d"},
            "maxReplicas": 3,
            "metrics": [metric],
        },
        "status": {"currentMetrics": [status] if status else []},
    }
    assert by_name("autoscaling", "HorizontalPodAutoscaler", obj)["Targets"] == shown


def test_hpa_v1() -> None:
    obj = {
        "apiVersion": "autoscaling/v1",
        "metadata": meta("web"),
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 50,
        },
        "status": {"currentReplicas": 1, "currentCPUUtilizationPercentage": 12},
    }
    assert cells("autoscaling", "HorizontalPodAutoscaler", obj) == [
        "web",
        "Deployment/web",
        "cpu: 12%/50%",
        "<unset>",
        5,
        1,
        "60m",
    ]
    del obj["spec"]["targetCPUUtilizationPercentage"]
    assert cells("autoscaling", "HorizontalPodAutoscaler", obj)[2] == "<none>"


def test_scale() -> None:
    scale = {
        "metadata": meta("web"),
        "spec": {"replicas": 3},
        "status": {"replicas": 2, "selector": "app=web"},
    }
    assert cells("autoscaling", "Scale", scale) == ["web", 3, 2, "60m"]


# --- Table -------------------------------------------------------------------------------------------


def test_table_metadata_objects_and_conditions() -> None:
    done = pod([terminated("a", reason="Completed")], phase="Succeeded")
    failed = pod([terminated("a", 1, reason="Error")], phase="Failed")
    live = pod([running("a")])
    body = printers.table(
        "", "Pod", [done, failed, live], NOW, list_metadata={"resourceVersion": "42", "continue": "c"}
    )
    assert (body["kind"], body["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert body["metadata"] == {"resourceVersion": "42", "continue": "c"}
    assert body["columnDefinitions"] == printers.columns("", "Pod")
    rows = body["rows"]
    assert [r["cells"][2] for r in rows] == ["Completed", "Error", "Running"]
    assert rows[0]["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    assert rows[1]["conditions"][0]["reason"] == "Failed" and "conditions" not in rows[2]
    assert rows[2]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": live["metadata"],
    }


def test_table_include_object() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cfg"), "data": {}}
    assert printers.table("", "ConfigMap", [cm], NOW, include_object="Object")["rows"][0]["object"] is cm
    assert "object" not in printers.table("", "ConfigMap", [cm], NOW, include_object="None")["rows"][0]
    assert (
        printers.table("", "ConfigMap", [cm], NOW, include_object="")["rows"][0]["object"]["kind"]
        == "PartialObjectMetadata"
    )
    assert printers.table("", "ConfigMap", [], NOW) == {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": printers.columns("", "ConfigMap"),
        "rows": [],
    }
    assert printers.table("", "ConfigMap", [cm], NOW, no_headers=True)["columnDefinitions"] is None
    with pytest.raises(StatusError) as info:
        printers.table("", "ConfigMap", [cm], NOW, include_object="Everything")
    assert info.value.code == 400
    assert info.value.message == 'unrecognized includeObject value: "Everything"'


def test_columns_are_fresh_copies() -> None:
    printers.columns("", "Pod")[0]["name"] = "changed"
    assert printers.columns("", "Pod")[0]["name"] == "Name"
