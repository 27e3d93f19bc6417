"""Endpoints, EndpointSlices, the default ServiceAccount and kube-root-ca.crt, through the real
kubectl against a cluster with the endpoint, endpointslice, serviceaccount and
root-ca-cert-publisher controllers (a `k8py controller-manager` subprocess) and two hollow
nodes that report the scheduled pods Running and Ready with a pod IP.

A terminating pod is held by a finalizer: the hollow node finishes it at once (a zero-grace
delete), the finalizer keeps it there, deletionTimestamp set, still Ready, until the test lets it go.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from k8py.netutil import primary_ip
from tests.conftest import wait_for
from tests.controllers.conftest import ControllerCluster, start_controller_manager

CONTROLLERS = "endpoint,endpointslice,serviceaccount,root-ca-cert-publisher"
HOLLOW_NODES = 2
# kube's --max-endpoints-per-slice (100) made small, so that a few pods fill several slices
CONTROLLER_MANAGER_ARGS = ("--controller-option", "max-endpoints-per-slice=3")
ZONES = ("zone-a", "zone-b")


def get(c: ControllerCluster, *args: str) -> Any:
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def pod_yaml(
    name: str, *, labels: str = "app: web", port: int = 8080, extra_spec: str = "", meta: str = ""
) -> str:
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{{labels}}}
{meta}spec:
{extra_spec}  containers:
  - name: c
    image: nginx
    ports: [{{name: http, containerPort: {port}}}]
"""


def service_yaml(name: str, *, selector: str = "app: web", extra: str = "") -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels: {{tier: front}}
spec:
  selector: {{{selector}}}
{extra}  ports:
  - {{name: http, port: 80, targetPort: http}}
"""


def running(c: ControllerCluster, ns: str, *names: str) -> dict[str, Any]:
    """Wait until the pods run with an IP; their objects by name."""

    def ready() -> dict[str, Any] | None:
        pods = {p["metadata"]["name"]: p for p in get(c, "pods", "-n", ns)["items"]}
        if all(pods.get(n, {}).get("status", {}).get("podIP") for n in names):
            return pods
        return None

    return wait_for(ready, timeout=20, what=f"pods {names} running")


def slices(c: ControllerCluster, ns: str, service: str) -> list[Any]:
    return get(c, "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}")["items"]


def endpoints_by_pod(items: list[Any]) -> dict[str, Any]:
    return {ep["targetRef"]["name"]: ep for s in items for ep in s.get("endpoints") or ()}


def subsets(c: ControllerCluster, ns: str, name: str) -> list[Any]:
    return get(c, "endpoints", name, "-n", ns).get("subsets") or []


def addresses(subs: list[Any], field: str = "addresses") -> set[tuple[str, int]]:
    return {(a["ip"], p["port"]) for s in subs for a in s.get(field) or () for p in s.get("ports") or ()}


@pytest.fixture(scope="module")
def zoned(cm_cluster: ControllerCluster) -> ControllerCluster:
    """The hollow nodes in two zones (before any pod: slices read the zone when they write)."""
    for i, zone in enumerate(ZONES):
        cm_cluster.kubectl(
            "label", "node", f"{cm_cluster.node_prefix}{i}", f"topology.kubernetes.io/zone={zone}"
        )
    return cm_cluster


@pytest.fixture
def ns(zoned: ControllerCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "ep-" + request.node.name.lower().replace("_", "-").removeprefix("test-")[:40].strip("-")
    zoned.kubectl("create", "namespace", name)
    wait_for(
        lambda: zoned.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=15,
        what="default service account",
    )
    yield name


def test_slices_and_endpoints_for_a_service(zoned: ControllerCluster, ns: str) -> None:
    c = zoned
    c.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=pod_yaml("web-a", extra_spec="  hostname: web-a\n  subdomain: web\n"),
    )
    c.kubectl("apply", "-n", ns, "-f", "-", input=service_yaml("web"))
    pods = running(c, ns, "web-a")
    svc = get(c, "service", "web", "-n", ns)
    ip_a = pods["web-a"]["status"]["podIP"]

    items = wait_for(
        lambda: (s := slices(c, ns, "web")) and s[0].get("endpoints") and s, timeout=15, what="slice"
    )
    assert len(items) == 1
    s = items[0]
    md = s["metadata"]
    assert md["name"].startswith("web-") and md["generateName"] == "web-"
    assert md["labels"] == {
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        "tier": "front",
    }
    assert md["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": svc["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert "endpoints.kubernetes.io/last-change-trigger-time" in md["annotations"]
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert s["endpoints"] == [
        {
            "addresses": [ip_a],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "hostname": "web-a",
            "nodeName": pods["web-a"]["spec"]["nodeName"],
            "zone": ZONES[int(pods["web-a"]["spec"]["nodeName"].rsplit("-", 1)[1])],
            "targetRef": {
                "kind": "Pod",
                "namespace": ns,
                "name": "web-a",
                "uid": pods["web-a"]["metadata"]["uid"],
            },
        }
    ]

    ep = wait_for(
        lambda: (e := get(c, "endpoints", "web", "-n", ns)).get("subsets") and e, timeout=15, what="endpoints"
    )
    assert ep["metadata"]["labels"] == {"tier": "front"}
    assert "endpoints.kubernetes.io/last-change-trigger-time" in ep["metadata"]["annotations"]
    assert ep["subsets"] == [
        {
            "addresses": [
                {
                    "ip": ip_a,
                    "hostname": "web-a",
                    "nodeName": pods["web-a"]["spec"]["nodeName"],
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": ns,
                        "name": "web-a",
                        "uid": pods["web-a"]["metadata"]["uid"],
                    },
                }
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }
    ]
    out = c.kubectl("get", "endpoints", "web", "-n", ns).stdout
    assert f"{ip_a}:8080" in out

    # another pod joins: the existing slice is updated in place (no new slice)
    first = s["metadata"]["name"]
    c.kubectl("apply", "-n", ns, "-f", "-", input=pod_yaml("web-b"))
    ip_b = running(c, ns, "web-b")["web-b"]["status"]["podIP"]
    items = wait_for(
        lambda: (s := slices(c, ns, "web")) and len(endpoints_by_pod(s)) == 2 and s,
        timeout=15,
        what="2 endpoints",
    )
    assert [x["metadata"]["name"] for x in items] == [first]
    assert "hostname" not in endpoints_by_pod(items)["web-b"]  # no subdomain matching the Service
    wait_for(
        lambda: addresses(subsets(c, ns, "web")) == {(ip_a, 8080), (ip_b, 8080)}, timeout=15, what="endpoints"
    )
    out = c.kubectl("get", "endpointslices", "-n", ns).stdout
    assert first in out and "8080" in out and ip_a in out and ip_b in out

    # the Service goes: its Endpoints go with it; the slices are the garbage collector's (owner reference)
    c.kubectl("delete", "service", "web", "-n", ns)
    wait_for(
        lambda: c.kubectl("get", "endpoints", "web", "-n", ns, check=False).returncode != 0,
        timeout=15,
        what="endpoints deleted",
    )
    for s in slices(c, ns, "web"):
        assert s["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]


def test_slices_are_filled_up_to_the_maximum(zoned: ControllerCluster, ns: str) -> None:
    c = zoned
    names = [f"m{i}" for i in range(7)]
    c.kubectl("apply", "-n", ns, "-f", "-", input="---\n".join(pod_yaml(n) for n in names))
    running(c, ns, *names)
    c.kubectl("apply", "-n", ns, "-f", "-", input=service_yaml("many"))

    def full() -> list[Any] | None:
        items = slices(c, ns, "many")
        return items if len(endpoints_by_pod(items)) == 7 else None

    items = wait_for(full, timeout=15, what="7 endpoints")
    assert sorted(len(s["endpoints"]) for s in items) == [1, 3, 3]
    # one pod goes: its slice shrinks, the others stay as they are
    versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in items}
    victim = next(s for s in items if len(s["endpoints"]) == 3)
    gone = victim["endpoints"][0]["targetRef"]["name"]
    c.kubectl("delete", "pod", gone, "-n", ns, "--wait=false")
    wait_for(lambda: gone not in endpoints_by_pod(slices(c, ns, "many")), timeout=15, what="endpoint removed")
    after = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in slices(c, ns, "many")}
    assert {n for n in versions if versions[n] != after.get(n)} == {victim["metadata"]["name"]}


def test_named_target_port_resolved_per_pod(zoned: ControllerCluster, ns: str) -> None:
    c = zoned
    c.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=pod_yaml("p8080", port=8080) + "---\n" + pod_yaml("p9090", port=9090),
    )
    pods = running(c, ns, "p8080", "p9090")
    c.kubectl("expose", "pod", "p8080", "-n", ns, "--name", "named", "--port", "80", "--target-port", "http")
    # `kubectl expose pod` selects on the pod's labels (app=web): both pods

    def two_slices() -> list[Any] | None:
        items = slices(c, ns, "named")
        return items if len(items) == 2 and all(s.get("endpoints") for s in items) else None

    items = wait_for(two_slices, timeout=15, what="a slice per port mapping")
    by_port = {s["ports"][0]["port"]: s for s in items}
    assert set(by_port) == {8080, 9090}
    assert by_port[8080]["endpoints"][0]["addresses"] == [pods["p8080"]["status"]["podIP"]]
    assert by_port[9090]["endpoints"][0]["addresses"] == [pods["p9090"]["status"]["podIP"]]
    assert all(s["ports"][0]["name"] == "" for s in items)  # the Service port is unnamed
    want = {(pods["p8080"]["status"]["podIP"], 8080), (pods["p9090"]["status"]["podIP"], 9090)}
    subs = wait_for(
        lambda: (x := subsets(c, ns, "named")) and addresses(x) == want and x, timeout=15, what="endpoints"
    )
    assert len(subs) == 2  # a subset per port number


def test_not_ready_and_terminating_pods(zoned: ControllerCluster, ns: str) -> None:
    c = zoned
    c.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=pod_yaml("ready")
        + "---\n"
        + pod_yaml("flaky")
        + "---\n"
        + pod_yaml("leaving", meta="  finalizers: [example.com/hold]\n"),
    )
    pods = running(c, ns, "ready", "flaky", "leaving")
    c.kubectl("apply", "-n", ns, "-f", "-", input=service_yaml("web"))
    ip = {n: p["status"]["podIP"] for n, p in pods.items()}
    wait_for(lambda: len(endpoints_by_pod(slices(c, ns, "web"))) == 3, timeout=15, what="3 endpoints")

    # a pod no longer Ready: ready=false in its slice, under notReadyAddresses
    status = pods["flaky"]["status"]
    conditions = [
        {**cond, "status": "False"} if cond["type"] == "Ready" else cond for cond in status["conditions"]
    ]
    c.kubectl(
        "patch",
        "pod",
        "flaky",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": conditions}}),
    )
    wait_for(
        lambda: (
            endpoints_by_pod(slices(c, ns, "web"))["flaky"]["conditions"]
            == {"ready": False, "serving": False, "terminating": False}
        ),
        timeout=15,
        what="flaky not ready",
    )
    wait_for(
        lambda: addresses(subsets(c, ns, "web"), "notReadyAddresses") == {(ip["flaky"], 8080)},
        timeout=15,
        what="notReadyAddresses",
    )

    # a terminating pod (still Ready): serving, terminating, not ready; out of the Endpoints
    c.kubectl("delete", "pod", "leaving", "-n", ns, "--grace-period=30", "--wait=false")
    wait_for(
        lambda: (
            endpoints_by_pod(slices(c, ns, "web"))["leaving"]["conditions"]
            == {"ready": False, "serving": True, "terminating": True}
        ),
        timeout=15,
        what="leaving terminating",
    )
    wait_for(
        lambda: addresses(subsets(c, ns, "web")) == {(ip["ready"], 8080)}, timeout=15, what="ready addresses"
    )
    assert addresses(subsets(c, ns, "web"), "notReadyAddresses") == {(ip["flaky"], 8080)}

    # once it is gone it leaves the slice too
    c.kubectl("patch", "pod", "leaving", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for(
        lambda: set(endpoints_by_pod(slices(c, ns, "web"))) == {"ready", "flaky"},
        timeout=15,
        what="leaving gone",
    )
    assert endpoints_by_pod(slices(c, ns, "web"))["ready"]["conditions"] == {
        "ready": True,
        "serving": True,
        "terminating": False,
    }


def test_publish_not_ready_addresses(zoned: ControllerCluster, ns: str) -> None:
    c = zoned
    c.kubectl("apply", "-n", ns, "-f", "-", input=pod_yaml("slow"))
    pod = running(c, ns, "slow")["slow"]
    conditions = [
        {**x, "status": "False"} if x["type"] == "Ready" else x for x in pod["status"]["conditions"]
    ]
    c.kubectl(
        "patch",
        "pod",
        "slow",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": conditions}}),
    )
    c.kubectl(
        "apply", "-n", ns, "-f", "-", input=service_yaml("peers", extra="  publishNotReadyAddresses: true\n")
    )
    wait_for(
        lambda: (
            endpoints_by_pod(slices(c, ns, "peers")).get("slow", {}).get("conditions")
            == {"ready": True, "serving": False, "terminating": False}
        ),
        timeout=15,
        what="published not ready",
    )
    wait_for(
        lambda: addresses(subsets(c, ns, "peers")) == {(pod["status"]["podIP"], 8080)},
        timeout=15,
        what="published in addresses",
    )


def test_service_without_pods_gets_a_placeholder_and_selectorless_is_left_alone(
    zoned: ControllerCluster, ns: str
) -> None:
    c = zoned
    c.kubectl("apply", "-n", ns, "-f", "-", input=service_yaml("empty", selector="app: nothing"))
    items = wait_for(lambda: slices(c, ns, "empty"), timeout=15, what="placeholder slice")
    assert len(items) == 1 and not items[0].get("endpoints") and not items[0].get("ports")
    wait_for(
        lambda: c.kubectl("get", "endpoints", "empty", "-n", ns, check=False).returncode == 0,
        timeout=15,
        what="empty endpoints",
    )
    assert subsets(c, ns, "empty") == []

    manual = """apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: manual}
subsets: [{addresses: [{ip: 10.9.9.9}], ports: [{port: 80}]}]
"""
    c.kubectl("apply", "-n", ns, "-f", "-", input=manual)
    c.kubectl("label", "service", "manual", "-n", ns, "poke=1")  # a sync of the Service
    # a barrier: once a Service queued after it has its endpoints, `manual` was synced too
    c.kubectl("apply", "-n", ns, "-f", "-", input=pod_yaml("bystander", labels="app: barrier"))
    c.kubectl("apply", "-n", ns, "-f", "-", input=service_yaml("barrier", selector="app: barrier"))
    running(c, ns, "bystander")
    wait_for(
        lambda: subsets(c, ns, "barrier") and endpoints_by_pod(slices(c, ns, "barrier")),
        timeout=15,
        what="barrier",
    )
    assert addresses(subsets(c, ns, "manual")) == {("10.9.9.9", 80)}
    assert slices(c, ns, "manual") == []  # mirroring is another controller's


def test_kubernetes_service_points_at_the_api_server(zoned: ControllerCluster) -> None:
    c = zoned
    advertise = primary_ip()
    if advertise.startswith("127."):
        pytest.skip("no non-loopback address: the kubernetes Service has no endpoints")
    port = c.cluster.port
    want = {(advertise, port)}
    assert addresses(subsets(c, "default", "kubernetes")) == want
    s = get(c, "endpointslice", "kubernetes", "-n", "default")
    assert s["endpoints"][0]["addresses"] == [advertise] and s["ports"][0]["port"] == port
    assert "endpointslice.kubernetes.io/managed-by" not in s["metadata"]["labels"]

    # the API server puts them back when they are deleted or changed
    c.kubectl("delete", "endpoints", "kubernetes", "-n", "default")
    c.kubectl("delete", "endpointslice", "kubernetes", "-n", "default")
    wait_for(
        lambda: addresses(subsets(c, "default", "kubernetes")) == want, timeout=15, what="endpoints back"
    )
    wait_for(
        lambda: c.kubectl("get", "endpointslice", "kubernetes", "-n", "default", check=False).returncode == 0,
        timeout=15,
        what="slice back",
    )
    c.kubectl(
        "patch",
        "endpoints",
        "kubernetes",
        "-n",
        "default",
        "--type=merge",
        "-p",
        '{"subsets":[{"addresses":[{"ip":"10.1.2.3"}],"ports":[{"name":"https","port":1}]}]}',
    )
    wait_for(
        lambda: addresses(subsets(c, "default", "kubernetes")) == want, timeout=15, what="endpoints repaired"
    )


def test_endpoint_slice_generation(zoned: ControllerCluster, ns: str) -> None:
    """EndpointSlices count generations (the controller's tracker relies on them), as kube-apiserver."""
    c = zoned
    s = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "mine"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}],
        "ports": [{"port": 80}],
    }
    c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(s))
    assert get(c, "endpointslice", "mine", "-n", ns)["metadata"]["generation"] == 1
    c.kubectl("label", "endpointslice", "mine", "-n", ns, "a=b")
    assert get(c, "endpointslice", "mine", "-n", ns)["metadata"]["generation"] == 1
    c.kubectl(
        "patch",
        "endpointslice",
        "mine",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"endpoints":[{"addresses":["10.0.0.2"]}]}',
    )
    assert get(c, "endpointslice", "mine", "-n", ns)["metadata"]["generation"] == 2


def test_default_service_account_recreated(zoned: ControllerCluster, ns: str) -> None:
    c = zoned
    uid = get(c, "serviceaccount", "default", "-n", ns)["metadata"]["uid"]
    c.kubectl("delete", "serviceaccount", "default", "-n", ns)
    back = wait_for(
        lambda: (
            (r := c.kubectl("get", "sa", "default", "-n", ns, "-o", "json", check=False)).returncode == 0
            and json.loads(r.stdout)
        ),
        timeout=15,
        what="default service account back",
    )
    assert back["metadata"]["uid"] != uid


def test_root_ca_configmap_published_and_restored(zoned: ControllerCluster, ns: str) -> None:
    c = zoned
    ca = (c.cluster.data_dir / "pki" / "ca.crt").read_text()
    cm = wait_for(
        lambda: (
            (r := c.kubectl("get", "cm", "kube-root-ca.crt", "-n", ns, "-o", "json", check=False)).returncode
            == 0
            and json.loads(r.stdout)
        ),
        timeout=15,
        what="kube-root-ca.crt",
    )
    assert cm["data"] == {"ca.crt": ca}
    assert cm["metadata"]["annotations"]["kubernetes.io/description"].startswith("Contains a CA bundle")

    c.kubectl("patch", "cm", "kube-root-ca.crt", "-n", ns, "--type=merge", "-p", '{"data":{"ca.crt":"junk"}}')
    wait_for(
        lambda: get(c, "cm", "kube-root-ca.crt", "-n", ns)["data"] == {"ca.crt": ca},
        timeout=15,
        what="restored",
    )
    c.kubectl("annotate", "cm", "kube-root-ca.crt", "-n", ns, "kubernetes.io/description-")
    wait_for(
        lambda: (
            get(c, "cm", "kube-root-ca.crt", "-n", ns)["metadata"]
            .get("annotations", {})
            .get("kubernetes.io/description")
        ),
        timeout=15,
        what="annotation restored",
    )
    c.kubectl("delete", "cm", "kube-root-ca.crt", "-n", ns)
    wait_for(
        lambda: c.kubectl("get", "cm", "kube-root-ca.crt", "-n", ns, check=False).returncode == 0,
        timeout=15,
        what="recreated",
    )


def test_restart_writes_nothing_new(zoned: ControllerCluster, ns: str) -> None:
    """A restarted controller manager finds everything in place: no slice or Endpoints is rewritten."""
    c = zoned
    c.kubectl("apply", "-n", ns, "-f", "-", input=pod_yaml("one") + "---\n" + pod_yaml("two", port=9090))
    running(c, ns, "one", "two")
    c.kubectl("apply", "-n", ns, "-f", "-", input=service_yaml("web"))
    wait_for(
        lambda: len(endpoints_by_pod(slices(c, ns, "web"))) == 2 and subsets(c, ns, "web"),
        timeout=15,
        what="endpoints",
    )

    def versions() -> dict[str, str]:
        objs = slices(c, ns, "web") + [get(c, "endpoints", "web", "-n", ns)]
        return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in objs}

    before = versions()
    c.cm.stop()
    cm = start_controller_manager(c.cluster, CONTROLLERS, "--no-leader-elect", *CONTROLLER_MANAGER_ARGS)
    try:
        # a change made after the restart is picked up...
        c.kubectl("apply", "-n", ns, "-f", "-", input=pod_yaml("three"))
        running(c, ns, "three")
        wait_for(
            lambda: (
                len(endpoints_by_pod(slices(c, ns, "web"))) == 3
                and len(addresses(subsets(c, ns, "web"))) == 3
            ),
            timeout=15,
            what="third endpoint",
        )
        # ...by updating the one slice whose ports match; the other is untouched
        after = versions()
        assert set(after) == set(before)
        changed = {n for n in before if before[n] != after[n]}
        assert changed == {
            "web",
            next(s["metadata"]["name"] for s in slices(c, ns, "web") if s["ports"][0]["port"] == 8080),
        }
    finally:
        cm.stop()
