"""Node IPAM, node lifecycle + taint eviction, the disruption controller with the eviction
subresource and `kubectl drain`, and the resource quota controller, against a real API server,
the scheduler (in `k8py up`) and hollow nodes.

The controller manager runs with a short node monitor grace period (15 s: hollow nodes renew
their Lease every 10 s) and a 1 s monitor period, so that a killed hollow node turns Unknown
within ~16 s.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
from typing import Any

import pytest

from tests.conftest import KUBECTL, wait_for
from tests.controllers.conftest import ControllerCluster, start_hollow_nodes

CONTROLLERS = "nodeipam,nodelifecycle,taint-eviction-controller,disruption,resourcequota,replicaset"
HOLLOW_NODES = 2
GRACE = 15
CONTROLLER_MANAGER_ARGS = ("--node-monitor-grace-period", str(GRACE), "--node-monitor-period", "1", "-v")


# -- helpers ---------------------------------------------------------------------------------------


def get_json(c: ControllerCluster, *args: str) -> Any:
    return json.loads(c.kubectl(*args, "-o", "json").stdout)


def make_namespace(c: ControllerCluster, name: str) -> str:
    """A namespace with its default ServiceAccount and kube-root-ca.crt (their controllers always run)."""
    c.kubectl("create", "namespace", name)
    for what in ("serviceaccount/default", "configmap/kube-root-ca.crt"):
        wait_for(lambda w=what: c.kubectl("get", w, "-n", name, check=False).returncode == 0,
                 what=f"{what} in {name}")  # fmt: skip
    return name


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == type_), None)


def is_ready(pod: dict[str, Any]) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c["status"] == "True" and not pod["metadata"].get("deletionTimestamp")


def pods(c: ControllerCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    return get_json(c, "get", "pods", "-n", ns, "-l", selector)["items"]


def replica_set(name: str, labels: dict[str, str], replicas: int, **pod_spec: Any) -> str:
    return json.dumps({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "nginx"}], **pod_spec},
            },
        },
    })  # fmt: skip


def official_client(c: ControllerCluster) -> Any:
    from kubernetes import config

    return config.new_client_from_config(str(c.cluster.kubeconfig))


# -- node IPAM -------------------------------------------------------------------------------------------


def test_node_ipam(cm_cluster: ControllerCluster) -> None:
    c = cm_cluster
    names = [f"{c.node_prefix}{i}" for i in range(HOLLOW_NODES)]

    def cidrs() -> Any:
        nodes = [get_json(c, "get", "node", n) for n in names]
        specs = [n["spec"] for n in nodes]
        return all(s.get("podCIDR") for s in specs) and specs

    specs = wait_for(cidrs, timeout=20, what="pod CIDRs")
    got = [s["podCIDR"] for s in specs]
    assert len(set(got)) == len(got)
    cluster = ipaddress.ip_network("10.244.0.0/16")
    for s in specs:
        net = ipaddress.ip_network(s["podCIDR"])
        assert net.prefixlen == 24 and net.subnet_of(cluster)
        assert s["podCIDRs"] == [s["podCIDR"]]
    # spec.podCIDR(s) is immutable once set
    res = c.kubectl(
        "patch", "node", names[0], "--type", "merge",
        "-p", '{"spec":{"podCIDR":"10.244.250.0/24","podCIDRs":["10.244.250.0/24"]}}', check=False,
    )  # fmt: skip
    assert res.returncode != 0
    assert 'node updates may not change podCIDR except from "" to valid' in res.stderr
    # podCIDR alone follows podCIDRs (one field inside, as kube converts it)
    c.kubectl("patch", "node", names[0], "--type", "merge", "-p", '{"spec":{"podCIDR":"10.244.251.0/24"}}')
    assert get_json(c, "get", "node", names[0])["spec"]["podCIDR"] == got[0]


# -- node lifecycle and taint eviction ---------------------------------------------------------------------


def test_node_failure_evicts_and_replaces(cm_cluster: ControllerCluster) -> None:
    c = cm_cluster
    ns = make_namespace(c, "failure")
    doomed = start_hollow_nodes(c.cluster, 1, "doomed-", "-l", "role=doomed")
    try:
        node = wait_for(lambda: (n := get_json(c, "get", "node", "doomed-0"))["spec"].get("podCIDR") and n,
                        timeout=20, what="doomed-0 with a pod CIDR")
        others = {get_json(c, "get", "node", f"{c.node_prefix}{i}")["spec"]["podCIDR"] for i in range(HOLLOW_NODES)}
        assert node["spec"]["podCIDR"] not in others
        tolerations = [
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
            for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
        ]
        c.kubectl("apply", "-n", ns, "-f", "-", input=replica_set(
            "web", {"app": "web"}, 1, nodeSelector={"role": "doomed"}, tolerations=tolerations,
        ))  # fmt: skip
        first = wait_for(lambda: [p for p in pods(c, ns, "app=web") if is_ready(p)], timeout=30, what="a running pod")[0]
        assert first["spec"]["nodeName"] == "doomed-0"
        # replacements may go anywhere
        c.kubectl("patch", "rs", "web", "-n", ns, "--type", "json",
                  "-p", '[{"op": "remove", "path": "/spec/template/spec/nodeSelector"}]')
        doomed.proc.send_signal(signal.SIGKILL)  # heartbeats stop
        doomed.proc.wait()

        def unknown() -> Any:
            n = get_json(c, "get", "node", "doomed-0")
            ready = condition(n, "Ready")
            return ready and ready["status"] == "Unknown" and n

        n = wait_for(unknown, timeout=GRACE + 15, what="doomed-0 Unknown")
        ready = condition(n, "Ready")
        assert ready is not None
        assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")

        def taints() -> Any:
            got = {(t["key"], t["effect"]) for t in get_json(c, "get", "node", "doomed-0")["spec"].get("taints") or ()}
            return {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")} <= got

        wait_for(taints, timeout=10, what="unreachable taints")
        # the pod: Ready=False at once, deleted 5 s after the taint (its toleration), replaced elsewhere
        name = first["metadata"]["name"]

        def evicted() -> Any:
            p = get_json(c, "get", "pod", name, "-n", ns)
            return p["metadata"].get("deletionTimestamp") and p

        p = wait_for(evicted, timeout=20, what="the pod evicted")
        target = condition(p, "DisruptionTarget")
        assert target is not None and (target["status"], target["reason"]) == ("True", "DeletionByTaintManager")
        assert condition(p, "Ready")["status"] == "False"  # type: ignore[index]

        def replaced() -> Any:
            return [q for q in pods(c, ns, "app=web") if q["metadata"]["name"] != name and is_ready(q)]

        new = wait_for(replaced, timeout=20, what="a replacement pod")[0]
        assert new["spec"]["nodeName"].startswith(c.node_prefix)
        events = c.kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}").stdout
        assert "TaintManagerEviction" in events and f"Marking for deletion Pod {ns}/{name}" in events
        assert "NodeNotReady" in events
        node_events = c.kubectl("get", "events", "-n", "default", "--field-selector", "involvedObject.name=doomed-0").stdout
        assert "NodeNotReady" in node_events and "RegisteredNode" in node_events
        # the live hollow nodes renew their Leases: still Ready well past the grace period
        for i in range(HOLLOW_NODES):
            live = get_json(c, "get", "node", f"{c.node_prefix}{i}")
            assert condition(live, "Ready")["status"] == "True"  # type: ignore[index]
            assert not live["spec"].get("taints")
    finally:
        doomed.stop(signal.SIGKILL)
        c.kubectl("delete", "node", "doomed-0", "--wait=false", check=False)
        c.kubectl("delete", "pods", "--all", "-n", ns, "--force", "--grace-period=0", check=False)
        c.kubectl("delete", "rs", "web", "-n", ns, check=False)


# -- PodDisruptionBudgets, the eviction subresource, kubectl drain --------------------------------------------


def pdb_status(c: ControllerCluster, ns: str, name: str) -> dict[str, Any]:
    return get_json(c, "get", "pdb", name, "-n", ns).get("status") or {}


def eviction(name: str, **delete_options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


def evict(core: Any, ns: str, name: str, **kw: Any) -> dict[str, Any]:
    """POST pods/<name>/eviction with the official client; the Status answered."""
    body = eviction(name, **kw.pop("delete_options", {}))
    resp = core.create_namespaced_pod_eviction(name, ns, body, _preload_content=False, **kw)
    assert resp.status == 201
    return json.loads(resp.data)


def test_pdb_eviction_and_drain(cm_cluster: ControllerCluster) -> None:
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    c = cm_cluster
    ns = make_namespace(c, "drain")
    core = k8s.CoreV1Api(official_client(c))
    c.kubectl("apply", "-n", ns, "-f", "-", input=replica_set("app", {"app": "guarded"}, 2))
    wait_for(lambda: len([p for p in pods(c, ns, "app=guarded") if is_ready(p)]) == 2, timeout=30, what="2 ready pods")
    out = c.kubectl("create", "pdb", "guard", "-n", ns, "--selector=app=guarded", "--min-available=2").stdout
    assert out.strip() == "poddisruptionbudget.policy/guard created"

    def settled(allowed: int, generation: int) -> Any:
        st = pdb_status(c, ns, "guard")
        return st.get("observedGeneration") == generation and st.get("disruptionsAllowed") == allowed and st

    st = wait_for(lambda: settled(0, 1), timeout=15, what="PDB status")
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"]) == (2, 2, 2)
    cond = condition({"status": st}, "DisruptionAllowed")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "InsufficientPods")
    table = c.kubectl("get", "pdb", "guard", "-n", ns).stdout
    assert re.search(r"guard\s+2\s+N/A\s+0\s+", table), table

    # the eviction API: 429 while the budget allows no disruption
    victim = pods(c, ns, "app=guarded")[0]["metadata"]["name"]
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(victim, ns, eviction(victim))
    assert refused.value.status == 429
    body = json.loads(refused.value.body)
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [
        {"reason": "DisruptionBudget", "message": "The disruption budget guard needs 2 healthy pods and has 2 currently"}
    ]
    res = c.kubectl("create", "--raw", f"/api/v1/namespaces/{ns}/pods/{victim}/eviction", "-f", "-",
                    input=json.dumps(eviction(victim)), check=False)  # fmt: skip
    assert res.returncode != 0 and "Cannot evict pod as it would violate the pod's disruption budget" in res.stderr

    # kubectl drain: blocked by the PDB, retrying, then allowed once the PDB is relaxed
    node = get_json(c, "get", "pod", victim, "-n", ns)["spec"]["nodeName"]
    env = {**os.environ, "KUBECONFIG": str(c.cluster.kubeconfig), "HOME": str(c.cluster.data_dir)}
    errors = c.cluster.data_dir / "drain.stderr"
    with open(errors, "w") as err:
        drain = subprocess.Popen(
            [KUBECTL, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )  # fmt: skip
    try:
        # blocked: kubectl cordoned the node, was refused (429) and waits to retry
        wait_for(lambda: "will retry after 5s" in errors.read_text() or drain.poll() is not None, timeout=20,
                 what="drain refused")  # fmt: skip
        assert drain.poll() is None, errors.read_text()
        assert get_json(c, "get", "node", node)["spec"].get("unschedulable") is True
        c.kubectl("patch", "pdb", "guard", "-n", ns, "--type", "merge", "-p", '{"spec":{"minAvailable":1}}')
        stdout, _ = drain.communicate(timeout=60)
    finally:
        if drain.poll() is None:
            drain.kill()
            drain.communicate()
    stderr = errors.read_text()
    assert drain.returncode == 0, stderr
    assert "Cannot evict pod as it would violate the pod's disruption budget." in stderr
    assert re.search(r"pod/\S+ evicted", stdout) and f"node/{node} drained" in stdout
    n = get_json(c, "get", "node", node)
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in {(t["key"], t["effect"]) for t in n["spec"]["taints"]}
    c.kubectl("uncordon", node)

    # back to 2 healthy pods (the drained ones were replaced on the other node): one disruption allowed
    st = wait_for(lambda: (st := settled(1, 2)) and st["currentHealthy"] == 2 and st, timeout=30,
                  what="PDB status after drain")  # fmt: skip
    assert (st["expectedPods"], st["desiredHealthy"]) == (2, 1)
    cond = condition({"status": st}, "DisruptionAllowed")
    assert cond is not None and (cond["status"], cond["reason"]) == ("True", "SufficientPods")

    # dry run: every check, no write
    victim = pods(c, ns, "app=guarded")[0]["metadata"]["name"]
    assert evict(core, ns, victim, dry_run="All")["status"] == "Success"
    assert not get_json(c, "get", "pod", victim, "-n", ns)["metadata"].get("deletionTimestamp")
    assert pdb_status(c, ns, "guard")["disruptionsAllowed"] == 1

    # success: the PDB is decremented and the pod recorded in disruptedPods (one status write), the pod
    # gets DisruptionTarget and is deleted. A finalizer keeps it around to look at.
    c.kubectl("patch", "pod", victim, "-n", ns, "--type", "merge", "-p", '{"metadata":{"finalizers":["k8py.test/hold"]}}')
    policy = k8s.PolicyV1Api(official_client(c))
    rv = policy.read_namespaced_pod_disruption_budget("guard", ns).metadata.resource_version
    assert evict(core, ns, victim, delete_options={"gracePeriodSeconds": 0})["status"] == "Success"
    p = get_json(c, "get", "pod", victim, "-n", ns)
    assert p["metadata"].get("deletionTimestamp")
    target = condition(p, "DisruptionTarget")
    assert target is not None and (target["reason"], target["message"]) == ("EvictionByEvictionAPI", "Eviction API: evicting")
    from kubernetes import watch

    seen: dict[str, Any] = {}
    for ev in watch.Watch().stream(policy.list_namespaced_pod_disruption_budget, ns, resource_version=rv,
                                   timeout_seconds=10):  # fmt: skip
        obj = ev["raw_object"]
        if victim in ((obj.get("status") or {}).get("disruptedPods") or {}):
            seen = obj["status"]
            break
    assert seen and seen["disruptionsAllowed"] == 0
    c.kubectl("patch", "pod", victim, "-n", ns, "--type", "json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    wait_for(lambda: c.kubectl("get", "pod", victim, "-n", ns, check=False).returncode != 0, timeout=15, what="pod gone")

    # a pod the PDB does not protect yet (Pending) is evicted regardless of the budget
    c.kubectl("create", "pdb", "lonely", "-n", ns, "--selector=role=lonely", "--min-available=1")
    pending = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pending", "labels": {"role": "lonely"}},
        "spec": {"nodeSelector": {"nowhere": "true"}, "containers": [{"name": "c", "image": "nginx"}]},
    }  # fmt: skip
    c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pending))
    wait_for(lambda: pdb_status(c, ns, "lonely").get("expectedPods") == 1, timeout=15, what="lonely PDB status")
    assert pdb_status(c, ns, "lonely")["disruptionsAllowed"] == 0
    assert evict(core, ns, "pending")["status"] == "Success"
    wait_for(lambda: c.kubectl("get", "pod", "pending", "-n", ns, check=False).returncode != 0, timeout=10,
             what="pending pod evicted")  # fmt: skip

    # two PDBs for one pod: the eviction subresource gives up
    c.kubectl("create", "pdb", "second", "-n", ns, "--selector=app=guarded", "--max-unavailable=1")
    victim = pods(c, ns, "app=guarded")[0]["metadata"]["name"]
    with pytest.raises(ApiException) as two:
        core.create_namespaced_pod_eviction(victim, ns, eviction(victim))
    assert two.value.status == 500
    assert "more than one PodDisruptionBudget" in json.loads(two.value.body)["message"]
    c.kubectl("delete", "rs", "app", "-n", ns)
    c.kubectl("delete", "pods", "--all", "-n", ns, "--wait=false")


# -- resource quota ------------------------------------------------------------------------------------------


def test_resource_quota(cm_cluster: ControllerCluster) -> None:
    c = cm_cluster
    ns = make_namespace(c, "quota")
    existing = len(get_json(c, "get", "configmaps", "-n", ns)["items"])
    quota = {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1", "count/configmaps": str(existing + 2)}},
    }  # fmt: skip
    c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(quota))

    def used(expect: dict[str, str]) -> Any:
        st = get_json(c, "get", "quota", "compute", "-n", ns).get("status") or {}
        return st.get("used") == expect and st

    st = wait_for(lambda: used({"pods": "0", "requests.cpu": "0", "count/configmaps": str(existing)}),
                  timeout=15, what="initial usage")  # fmt: skip
    assert st["hard"] == {"pods": "2", "requests.cpu": "1", "count/configmaps": str(existing + 2)}

    def pod(name: str) -> str:
        return json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "500m"}}}]},
        })  # fmt: skip

    c.kubectl("apply", "-n", ns, "-f", "-", input=pod("p1"))
    c.kubectl("create", "configmap", "one", "-n", ns)
    wait_for(lambda: used({"pods": "1", "requests.cpu": "500m", "count/configmaps": str(existing + 1)}),
             timeout=15, what="usage of a pod and a configmap")  # fmt: skip
    c.kubectl("apply", "-n", ns, "-f", "-", input=pod("p2"))
    c.kubectl("create", "configmap", "two", "-n", ns)
    wait_for(lambda: used({"pods": "2", "requests.cpu": "1", "count/configmaps": str(existing + 2)}),
             timeout=15, what="usage at the limit")  # fmt: skip

    # admission refuses what would go over
    res = c.kubectl("apply", "-n", ns, "-f", "-", input=pod("p3"), check=False)
    assert res.returncode != 0
    assert ('exceeded quota: compute, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=1, '
            'limited: pods=2,requests.cpu=1') in res.stderr  # fmt: skip
    res = c.kubectl("create", "configmap", "three", "-n", ns, check=False)
    assert res.returncode != 0
    n = existing + 2
    assert (f"exceeded quota: compute, requested: count/configmaps=1, used: count/configmaps={n}, "
            f"limited: count/configmaps={n}") in res.stderr  # fmt: skip

    described = c.kubectl("describe", "quota", "compute", "-n", ns).stdout
    assert re.search(r"Name:\s+compute\n", described) and re.search(rf"Namespace:\s+{ns}\n", described)
    assert re.search(r"Resource\s+Used\s+Hard\n-+\s+-+\s+-+\n", described), described
    assert re.search(rf"count/configmaps\s+{n}\s+{n}\n", described), described
    assert re.search(r"pods\s+2\s+2\n", described) and re.search(r"requests\.cpu\s+1\s+1\n", described), described

    # replenishment: deleting frees the quota
    c.kubectl("delete", "pod", "p1", "-n", ns)
    c.kubectl("delete", "configmap", "one", "-n", ns)
    wait_for(lambda: used({"pods": "1", "requests.cpu": "500m", "count/configmaps": str(existing + 1)}),
             timeout=15, what="usage after deletes")  # fmt: skip
    c.kubectl("apply", "-n", ns, "-f", "-", input=pod("p3"))

    # raising the limit is seen at once
    c.kubectl("patch", "quota", "compute", "-n", ns, "--type", "merge", "-p", '{"spec":{"hard":{"pods":"5"}}}')
    wait_for(lambda: (st := get_json(c, "get", "quota", "compute", "-n", ns)["status"])["hard"]["pods"] == "5"
             and st["used"]["pods"] == "2", timeout=15, what="new hard limit")  # fmt: skip
    c.kubectl("delete", "pods", "--all", "-n", ns, "--wait=false")


def test_eviction_of_unhealthy_pods(cm_cluster: ControllerCluster) -> None:
    """An unready pod spends no disruption: evicted when the PDB says AlwaysAllow (or when the
    application is healthy anyway), refused under the default IfHealthyBudget while it is not."""
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    c = cm_cluster
    ns = make_namespace(c, "unhealthy")
    core = k8s.CoreV1Api(official_client(c))
    for name, ready in (("a", "True"), ("b", "False")):
        pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "u"}},
            "spec": {"nodeName": "no-such-node", "containers": [{"name": "c", "image": "nginx"}]},
        }  # fmt: skip
        c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
        status = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]}}
        c.kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type", "merge", "-p", json.dumps(status))
    c.kubectl("create", "pdb", "u", "-n", ns, "--selector=app=u", "--min-available=2")
    st = wait_for(lambda: (s := pdb_status(c, ns, "u")).get("observedGeneration") == 1 and s.get("expectedPods") == 2
                  and s, timeout=15, what="PDB status")  # fmt: skip
    assert (st["currentHealthy"], st["desiredHealthy"], st["disruptionsAllowed"]) == (1, 2, 0)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction("b", ns, eviction("b"))
    assert refused.value.status == 429
    c.kubectl("patch", "pdb", "u", "-n", ns, "--type", "merge", "-p", '{"spec":{"unhealthyPodEvictionPolicy":"AlwaysAllow"}}')
    wait_for(lambda: pdb_status(c, ns, "u").get("observedGeneration") == 2, timeout=15, what="PDB generation 2")
    assert evict(core, ns, "b")["status"] == "Success"
    b = get_json(c, "get", "pod", "b", "-n", ns)
    assert b["metadata"].get("deletionTimestamp")  # graceful: no kubelet finishes it
    assert condition(b, "DisruptionTarget")["reason"] == "EvictionByEvictionAPI"  # type: ignore[index]
    assert "b" not in (pdb_status(c, ns, "u").get("disruptedPods") or {})  # no disruption spent
    with pytest.raises(ApiException) as still:
        core.create_namespaced_pod_eviction("a", ns, eviction("a"))
    assert still.value.status == 429
    c.kubectl("delete", "pods", "--all", "-n", ns, "--force", "--grace-period=0")
