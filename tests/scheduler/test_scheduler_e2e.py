"""The scheduler of `k8py up` against a real API server, with nodes created through the API.

No kubelet: nodes are Node objects with capacity; the scheduler only binds. Each test
uses its own namespace and its own nodes, labelled with the test's name, and pins its
pods to those nodes by a node selector, so the tests of this module stay independent
on one dedicated cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster, free_port, start_cluster, wait_for


@pytest.fixture(scope="module")
def sched_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("k8py-sched"))
    yield c
    c.stop()


@pytest.fixture
def ns(sched_cluster: Cluster, request: pytest.FixtureRequest) -> str:
    name = "s-" + "".join(
        ch for ch in request.node.name.lower().replace("_", "-") if ch.isalnum() or ch == "-"
    )
    name = name[:50].strip("-")
    sched_cluster.kubectl("create", "namespace", name)
    return name


def apply(c: Cluster, *objs: dict[str, Any], namespace: str | None = None) -> None:
    """`kubectl apply` of the objects as one multi-document YAML stream."""
    args = ("-n", namespace) if namespace else ()
    c.kubectl("apply", *args, "-f", "-", input=yaml.safe_dump_all(objs))


def node(
    name: str,
    group: str,
    *,
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "test-group": group, **(labels or {})},
        },
        "spec": {"taints": taints or []},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}],
        },
    }


def pod(
    name: str, group: str, *, cpu: str = "100m", labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "nodeSelector": {"test-group": group},
            "containers": [
                {"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": cpu}}}
            ],
            **spec,
        },
    }


def get_pod(c: Cluster, ns: str, name: str) -> dict[str, Any]:
    return json.loads(c.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)


def node_of(c: Cluster, ns: str, name: str) -> str:
    return get_pod(c, ns, name)["spec"].get("nodeName", "")


def scheduled_condition(c: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    conds = get_pod(c, ns, name).get("status", {}).get("conditions", [])
    return next((x for x in conds if x["type"] == "PodScheduled"), None)


def test_pod_is_bound_to_a_node_that_fits(sched_cluster: Cluster, ns: str) -> None:
    c = sched_cluster
    apply(c, node("fit-small", "fit", cpu="1"), node("fit-big", "fit", cpu="8"))
    c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod("big", "fit", cpu="2")))
    assert wait_for(lambda: node_of(c, ns, "big"), what="binding") == "fit-big"
    cond = wait_for(lambda: scheduled_condition(c, ns, "big"), what="PodScheduled")
    assert cond["status"] == "True"
    wait_for(
        lambda: (
            f"Successfully assigned {ns}/big to fit-big"
            in c.kubectl("get", "events", "-n", ns, "--field-selector", "reason=Scheduled").stdout
        ),
        what="Scheduled event",
    )


def test_unschedulable_pod_reports_why_and_schedules_once_a_node_fits(
    sched_cluster: Cluster, ns: str
) -> None:
    c = sched_cluster
    taint = [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
    apply(c, node("unsch-a", "unsch", cpu="1"), node("unsch-b", "unsch", cpu="4", taints=taint))
    c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod("waiting", "unsch", cpu="2")))

    def failed() -> dict[str, Any] | None:
        cond = scheduled_condition(c, ns, "waiting")
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for(failed, what="PodScheduled=False")
    assert cond["reason"] == "Unschedulable"
    total = json.loads(c.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    n = len(total)
    assert cond["message"].startswith(f"0/{n} nodes are available: 1 Insufficient cpu, ")
    assert "1 node(s) had untolerated taint {dedicated: infra}" in cond["message"]
    assert f"{n - 2} node(s) didn't match Pod's node affinity/selector" in cond["message"]
    assert "preemption:" in cond["message"]
    wait_for(
        lambda: (
            "0/" in c.kubectl("describe", "pod", "waiting", "-n", ns).stdout
            and "FailedScheduling" in c.kubectl("describe", "pod", "waiting", "-n", ns).stdout
        ),
        what="FailedScheduling in describe",
    )
    apply(c, node("unsch-c", "unsch", cpu="4"))  # a node that fits: the pod leaves unschedulablePods
    assert wait_for(lambda: node_of(c, ns, "waiting"), timeout=15, what="binding after NodeAdd") == "unsch-c"


def test_taints_and_tolerations(sched_cluster: Cluster, ns: str) -> None:
    c = sched_cluster
    taint = [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]
    apply(c, node("taint-gpu", "taint", taints=taint), node("taint-plain", "taint", cpu="1"))
    tolerating = pod(
        "tolerating",
        "taint",
        cpu="1500m",
        tolerations=[{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    )
    plain = pod("plain", "taint", cpu="500m")
    apply(c, tolerating, plain, namespace=ns)
    assert wait_for(lambda: node_of(c, ns, "tolerating"), what="tolerating") == "taint-gpu"
    assert wait_for(lambda: node_of(c, ns, "plain"), what="plain") == "taint-plain"


def test_required_anti_affinity_spreads_pods_one_per_node(sched_cluster: Cluster, ns: str) -> None:
    c = sched_cluster
    apply(c, *[node(f"anti-{i}", "anti") for i in range(3)])
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    }
    pods = [pod(f"web-{i}", "anti", labels={"app": "web"}, affinity=anti) for i in range(4)]
    apply(c, *pods, namespace=ns)
    placed = wait_for(
        lambda: (
            (nodes := [node_of(c, ns, f"web-{i}") for i in range(4)]) and sum(map(bool, nodes)) == 3 and nodes
        ),
        what="three bound",
    )
    assert sorted(n for n in placed if n) == ["anti-0", "anti-1", "anti-2"]
    pending = next(f"web-{i}" for i in range(4) if not placed[i])
    cond = wait_for(lambda: scheduled_condition(c, ns, pending), what="condition")
    assert "3 node(s) didn't match pod anti-affinity rules" in cond["message"]


def test_topology_spread_keeps_the_skew(sched_cluster: Cluster, ns: str) -> None:
    c = sched_cluster
    apply(
        c,
        *[
            node(f"zone-{z}{i}", "zone", labels={"topology.kubernetes.io/zone": z}, cpu="8")
            for z in "ab"
            for i in range(2)
        ],
    )
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "spread"}},
        }
    ]
    for i in range(6):
        c.kubectl(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=json.dumps(
                pod(f"s-{i}", "zone", labels={"app": "spread"}, topologySpreadConstraints=spread)
            ),
        )
        wait_for(lambda i=i: node_of(c, ns, f"s-{i}"), what=f"s-{i} bound")
    zones = [node_of(c, ns, f"s-{i}")[5] for i in range(6)]
    assert zones.count("a") == 3 and zones.count("b") == 3


def test_preemption_evicts_a_lower_priority_pod(sched_cluster: Cluster, ns: str) -> None:
    c = sched_cluster
    prio = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": "sched-test-high"},
        "value": 1000,
    }
    c.kubectl("apply", "-f", "-", input=json.dumps(prio))
    apply(c, node("preempt-0", "preempt", cpu="1"))
    c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod("low", "preempt", cpu="800m")))
    assert wait_for(lambda: node_of(c, ns, "low"), what="low bound") == "preempt-0"
    c.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps(pod("high", "preempt", cpu="800m", priorityClassName="sched-test-high")),
    )
    wait_for(
        lambda: get_pod(c, ns, "high").get("status", {}).get("nominatedNodeName") == "preempt-0",
        timeout=15,
        what="nominatedNodeName",
    )
    victim = wait_for(
        lambda: (p := get_pod(c, ns, "low"))["metadata"].get("deletionTimestamp") and p,
        what="victim terminating",
    )
    conds = {x["type"]: x for x in victim["status"].get("conditions", [])}
    assert conds["DisruptionTarget"]["reason"] == "PreemptionByScheduler"
    # no kubelet here to finish the victim off: do its part, and the preemptor gets the room
    c.kubectl("delete", "pod", "low", "-n", ns, "--grace-period=0", "--force")
    assert wait_for(lambda: node_of(c, ns, "high"), timeout=15, what="high bound") == "preempt-0"


def test_scheduling_gates_hold_the_pod(sched_cluster: Cluster, ns: str) -> None:
    c = sched_cluster
    apply(c, node("gate-0", "gate"))
    c.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps(pod("gated", "gate", schedulingGates=[{"name": "example.com/hold"}])),
    )
    out = wait_for(
        lambda: "SchedulingGated" in (s := c.kubectl("get", "pod", "gated", "-n", ns).stdout) and s,
        what="SchedulingGated",
    )
    assert "SchedulingGated" in out
    assert not node_of(c, ns, "gated")
    c.kubectl(
        "patch",
        "pod",
        "gated",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/schedulingGates"}]',
    )
    assert wait_for(lambda: node_of(c, ns, "gated"), what="bound after ungating") == "gate-0"


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_second_profile_scheduler_process_with_metrics_and_leader_election(
    sched_cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    """`k8py scheduler` as its own process: a profile of its own (pods choose it by
    spec.schedulerName), /metrics, and a second default-profile scheduler that stays a
    follower while `k8py up`'s holds the lease."""
    c = sched_cluster
    config = tmp_path / "sched.yaml"
    config.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
        "leaderElection: {leaderElect: false}\nprofiles:\n- schedulerName: second-scheduler\n"
    )
    port, follower_port = free_port(), free_port()
    while follower_port == port:  # the kernel may hand out the same free port twice
        follower_port = free_port()
    procs = []
    try:
        for args, p in (
            (["--config", str(config)], port),
            (["--leader-elect"], follower_port),
        ):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "k8py.cli",
                        "scheduler",
                        "--kubeconfig",
                        str(c.kubeconfig),
                        "--port",
                        str(p),
                        *args,
                    ],
                    stdout=(tmp_path / f"scheduler-{p}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        apply(c, node("second-0", "second"))
        c.kubectl(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=json.dumps(pod("mine", "second", schedulerName="second-scheduler")),
        )
        assert wait_for(lambda: node_of(c, ns, "mine"), timeout=20, what="bound by the second scheduler")
        try:
            metrics = wait_for(lambda: _scrape(port), timeout=30, what="/metrics")
        except TimeoutError:
            logs = "\n".join(f.read_text(errors="replace")[-3000:] for f in tmp_path.glob("scheduler-*.log"))
            exits = [proc.poll() for proc in procs]
            raise AssertionError(f"no /metrics on port {port}; exit codes {exits}; logs:\n{logs}") from None
        line = next(
            x
            for x in metrics.splitlines()
            if x.startswith(
                'scheduler_schedule_attempts_total{profile="second-scheduler",result="scheduled"}'
            )
        )
        assert float(line.split()[-1]) >= 1
        assert "scheduler_pending_pods{" in metrics
        assert "scheduler_scheduling_attempt_duration_seconds_bucket" in metrics
        # the follower may still be starting (a Python process under load takes a few seconds)
        follower = wait_for(lambda: _scrape(follower_port), timeout=30, what="the follower's /metrics")
        assert 'result="scheduled"' not in follower  # never led, never scheduled
        lease = json.loads(
            c.kubectl("get", "lease", "kube-scheduler", "-n", "kube-system", "-o", "json").stdout
        )
        assert lease["spec"]["holderIdentity"]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
