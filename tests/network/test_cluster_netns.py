"""A two-node k8py cluster in network namespaces: the pod network, Services, DNS and NetworkPolicy
end to end, from pods' and users' seats.

Host ``cp`` runs `k8py up --runtime cri` (API server, scheduler, controller manager, kubelet with
its own containerd, and the node add-ons as static pods); host ``w1`` runs `k8py kubelet --runtime
cri` with the same add-ons written into its manifest directory, as a joined node would. Both are
namespaces of a :class:`NetnsLab` (node IPs 10.197.0.1 and .2 on the test LAN); the components run
there with ``nsenter --net`` (containerd needs the machine's mounts). The LAN's outside address
10.197.0.254 plays the world: the nodes' resolv.conf names a fake upstream DNS server there. The
test reaches the API server on cp's loopback through a relay and drives everything with kubectl.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from k8py.bootstrap.addons import addon_manifests, dns_service_ip, write_manifests
from k8py.bootstrap.kubeconfig import component_kubeconfig
from k8py.kubelet.runtime.cri.containerd import Containerd
from k8py.kubelet.runtime.cri.imagebuild import build_busybox_image
from tests.conftest import KUBECTL, free_port, wait_for
from tests.network.netns import Host, NetnsLab, requires_netns

pytestmark = [
    requires_netns,
    pytest.mark.skipif(not Containerd.available(), reason="needs containerd, runc and the CNI plugins"),
]

CLUSTER_CIDR = "10.199.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
HOST_PORT = 8081
EXTERNAL_NAME, EXTERNAL_IP = "external.example.", "203.0.113.7"  # answered by the fake upstream only

# The fake upstream resolver: EXTERNAL_NAME's A record, NXDOMAIN for any other name; prints each query.
_UPSTREAM = """
import socket, sys
import dns.message, dns.rcode, dns.rdatatype, dns.rrset
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("listening", flush=True)
while True:
    data, addr = s.recvfrom(4096)
    query = dns.message.from_wire(data)
    answer = dns.message.make_response(query)
    q = query.question[0]
    if q.name.to_text() != sys.argv[2]:
        answer.set_rcode(dns.rcode.NXDOMAIN)
    elif q.rdtype == dns.rdatatype.A:
        answer.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", sys.argv[3]))
    s.sendto(answer.to_wire(), addr)
"""

# A pod answering HTTP on 8080: / is "ok", /cgi-bin/ip the client address it sees.
_SERVE = (
    "mkdir -p /www/cgi-bin && echo ok > /www/index.html && "
    "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && "
    "chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www"
)


@dataclass
class NetCluster:
    lab: NetnsLab
    data: Path
    port: int
    cp: Host
    w1: Host
    nodes: dict[str, str]  # host name -> Node name
    pod_netns: dict[str, str] = field(default_factory=dict)  # pod IP -> its network namespace

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30) -> str:
        env = {"KUBECONFIG": str(self.data / "cp" / "kubeconfig.yaml"), "HOME": str(self.data), "PATH": "/usr/bin:/bin"}
        res = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def apply(self, *objs: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))

    def exec(self, namespace: str, pod: str, *argv: str, check: bool = True) -> str:
        return self.kubectl("exec", "-n", namespace, pod, "--", *argv, check=check)

    def pod_ip(self, namespace: str, pod: str) -> str:
        return str(self.get("pod", "-n", namespace, pod)["status"]["podIP"])

    def netns_of(self, ip: str) -> str:
        """The network namespace (its path) containerd made for the pod with this address."""
        if ip not in self.pod_netns:
            for path in self.data.glob("*/kubelet/containerd/state/io.containerd.grpc.v1.cri/netns/cni-*"):
                if f" {ip}/" in self.lab.run(str(path), "ip", "-4", "-o", "addr", check=False).stdout:
                    self.pod_netns[ip] = str(path)
                    break
            else:
                raise LookupError(f"no pod network namespace has {ip}")
        return self.pod_netns[ip]

    def connects(self, src_ip: str, dst_ip: str, port: int = 8080) -> bool:
        """A TCP connect from the pod with ``src_ip`` (from its own namespace) succeeds."""
        return self.lab.tcp_connect(self.netns_of(src_ip), dst_ip, port, timeout=0.3) == "ok"


def _busybox_pod(name: str, namespace: str, node: str, command: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command],
                "ports": [{"name": "http", "containerPort": 8080}],
            }],
        },
    }


def _host_port(pod: dict[str, Any], port: int) -> dict[str, Any]:
    pod["spec"]["containers"][0]["ports"][0]["hostPort"] = port
    return pod


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _service(name: str, namespace: str, selector: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec},
    }


def _start_worker(
    lab: NetnsLab, host: Host, name: str, data: Path, cp: Host, port: int, resolv_conf: Path
) -> subprocess.Popen[str]:
    """`k8py kubelet` on ``host`` with the node add-ons as static pods (what a join would set up)."""
    pki, server = data / "cp" / "pki", f"https://{cp.ip}:{port}"
    root = data / host.name
    (root / "kubelet" / "images").mkdir(parents=True)
    build_busybox_image(root / "kubelet" / "images" / "busybox.tar")

    def kubeconfig(stem: str, user: str, organizations: tuple[str, ...] = ()) -> Path:
        return component_kubeconfig(pki, root / f"{stem}.conf", server, f"{host.name}-{stem}", user, organizations)

    write_manifests(root / "manifests", addon_manifests(
        node_name=name, node_ip=host.ip, cluster_cidr=CLUSTER_CIDR, service_cidr=SERVICE_CIDR,
        cluster_domain="cluster.local", resolv_conf=str(resolv_conf), kubeconfigs={
            "kube-proxy": kubeconfig("kube-proxy", "system:kube-proxy"),
            "network": kubeconfig("network-agent", "system:k8py-network-agent"),
            "dns": kubeconfig("dns", "system:k8py-dns"),
        },
    ))
    return lab.spawn(
        host.netns, sys.executable, "-m", "k8py.cli", "kubelet", "--runtime", "cri", "--node-name", name,
        "--kubeconfig", str(kubeconfig("kubelet", f"system:node:{name}", ("system:nodes",))),
        "--root-dir", str(root / "kubelet"), "--pod-manifest-path", str(root / "manifests"),
        "--cluster-dns", dns_service_ip(SERVICE_CIDR), "--resolv-conf", str(resolv_conf),
        log=root / "kubelet.log",
    )


def _stop(lab: NetnsLab, procs: list[subprocess.Popen[str]], roots: dict[str, tuple[str, Path]]) -> None:
    """SIGTERM the nodes' processes, then kill what they leave running by design (pods, containerd)
    with `k8py killall` in each host's namespace (its tables and routes go with the namespace)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    failed = []
    for host, (flag, path) in roots.items():
        if path.is_dir():
            res = lab.run(f"/run/netns/{lab.hosts[host].netns}", sys.executable, "-m", "k8py.cli", "killall", flag, str(path),
                          check=False, timeout=120)
            if res.returncode != 0:
                failed.append(f"{host}: {res.stdout}{res.stderr}")
    assert not failed, "k8py killall failed: " + "\n".join(failed)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetCluster]:
    data = tmp_path_factory.mktemp("netcluster")
    procs: list[subprocess.Popen[str]] = []
    roots = {"cp": ("--data-dir", data / "cp"), "w1": ("--root-dir", data / "w1" / "kubelet")}  # by host
    with NetnsLab() as lab:
        try:
            cp, w1 = lab.add_host("cp"), lab.add_host("w1")
            nodes = {"cp": f"cp-{lab.id}", "w1": f"w1-{lab.id}"}
            upstream = lab.popen(lab.lan, sys.executable, "-c", _UPSTREAM, lab.outside_ip, EXTERNAL_NAME, EXTERNAL_IP)
            assert upstream.stdout is not None and upstream.stdout.readline().strip() == "listening"
            resolv_conf = data / "resolv.conf"
            resolv_conf.write_text(f"nameserver {lab.outside_ip}\n")
            port = free_port()
            (data / "cp" / "kubelet" / "images").mkdir(parents=True)
            build_busybox_image(data / "cp" / "kubelet" / "images" / "busybox.tar")
            up = lab.spawn(
                cp.netns, sys.executable, "-m", "k8py.cli", "up", "--runtime", "cri", "--data-dir", str(data / "cp"),
                "--port", str(port), "--node-name", nodes["cp"], "--cluster-cidr", CLUSTER_CIDR,
                "--service-cidr", SERVICE_CIDR, "--resolv-conf", str(resolv_conf), "--disable-metrics-server",
                log=data / "cp.log",
            )
            procs.append(up)
            wait_for(lambda: up.poll() is not None or "export KUBECONFIG" in (data / "cp.log").read_text(),
                     timeout=60, what="k8py up on cp")
            assert up.poll() is None, (data / "cp.log").read_text()
            lab.expose_loopback(cp.netns, port)
            procs.append(_start_worker(lab, w1, nodes["w1"], data, cp, port, resolv_conf))
            c = NetCluster(lab, data, port, cp, w1, nodes)
            wait_for(lambda: _nodes_ready(c), timeout=90, what="both nodes Ready with pod CIDRs")
            for node in nodes.values():
                for addon in ("kube-proxy", "k8py-network", "k8py-dns"):
                    wait_for(lambda a=addon, n=node: _running(c, "kube-system", f"{a}-{n}"), timeout=60,
                             what=f"{addon} on {node}")
            yield c
        finally:
            _stop(lab, procs, roots)


def _nodes_ready(c: NetCluster) -> bool:
    items = c.get("nodes")["items"]
    return len(items) == 2 and all(
        n["spec"].get("podCIDR") and any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"]["conditions"])
        for n in items
    )


def _running(c: NetCluster, namespace: str, pod: str) -> bool:
    res = c.kubectl("get", "pod", "-n", namespace, pod, "-o", "json", check=False)
    status = json.loads(res).get("status", {}) if res else {}
    return status.get("phase") == "Running" and all(cs.get("ready") for cs in status.get("containerStatuses") or [{}])


@pytest.fixture(scope="module")
def apps(net: NetCluster) -> NetCluster:
    """Namespace ``srv`` with an HTTP pod on each node (web-cp, web-w1), Services over them;
    client pods on cp in ``friends`` (labelled access=granted) and ``strangers``."""
    net.apply(
        _namespace("srv", {"team": "srv"}), _namespace("friends", {"access": "granted"}), _namespace("strangers", {}),
    )
    for ns in ("srv", "friends", "strangers"):  # pods need their namespace's default ServiceAccount
        wait_for(lambda n=ns: net.kubectl("get", "sa", "default", "-n", n, check=False), timeout=20, what=f"{ns} SA")
    net.apply(
        _busybox_pod("web-cp", "srv", net.nodes["cp"], _SERVE, {"app": "web"}),
        _busybox_pod("web-w1", "srv", net.nodes["w1"], _SERVE, {"app": "web", "only": "w1"}),
        _host_port(_busybox_pod("web-hp", "srv", net.nodes["w1"], _SERVE, {"app": "hp"}), HOST_PORT),
        _busybox_pod("client", "friends", net.nodes["cp"], "exec sleep 3600", {"role": "client"}),
        _busybox_pod("client", "strangers", net.nodes["cp"], "exec sleep 3600", {"role": "client"}),
        _service("web", "srv", {"only": "w1"}),
        _service("web-all", "srv", {"app": "web"}, clusterIP="None"),
        _service("web-np", "srv", {"only": "w1"}, type="NodePort"),
    )
    for ns, pod in (("srv", "web-cp"), ("srv", "web-w1"), ("srv", "web-hp"), ("friends", "client"),
                    ("strangers", "client")):
        wait_for(lambda n=ns, p=pod: _running(net, n, p), timeout=60, what=f"pod {ns}/{pod} running")
    wait_for(lambda: _http(net, "friends", "client", f"http://{net.pod_ip('srv', 'web-w1')}:8080/"), timeout=30,
             what="web-w1 answering")
    return net


def _http(c: NetCluster, namespace: str, pod: str, url: str) -> str:
    """busybox wget's body (what the server printed), stripped; IPv4-mapped addresses as IPv4."""
    body = c.exec(namespace, pod, "timeout", "3", "wget", "-q", "-O", "-", url, check=False).strip()
    return body.removeprefix("[::ffff:").removesuffix("]")


def test_nodes_route_each_others_pod_cidrs(net: NetCluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in net.get("nodes")["items"]}
    cidrs = {host: nodes[name]["spec"]["podCIDR"] for host, name in net.nodes.items()}
    assert all(ipaddress.ip_network(c).subnet_of(ipaddress.ip_network(CLUSTER_CIDR)) for c in cidrs.values())
    for host, peer in (("cp", "w1"), ("w1", "cp")):
        expected = (f"{cidrs[peer]} via {net.lab.hosts[peer].ip}", f"unreachable {CLUSTER_CIDR}")
        wait_for(lambda h=host, e=expected: all(
            r in net.lab.run(net.lab.hosts[h].netns, "ip", "route", "show", "proto", "199").stdout for r in e
        ), timeout=10, what=f"{host}'s routes {expected}")


def test_pod_to_pod_across_nodes_keeps_the_pod_address(apps: NetCluster) -> None:
    client_ip = apps.pod_ip("friends", "client")
    seen = _http(apps, "friends", "client", f"http://{apps.pod_ip('srv', 'web-w1')}:8080/cgi-bin/ip")
    assert seen == client_ip  # no NAT between pods, across nodes too


def test_service_by_dns_name_from_another_node_with_kubectl_exec(apps: NetCluster) -> None:
    """The user's seat: busybox nslookup and wget in a pod on cp, a Service whose only pod is on w1."""
    cluster_ip = apps.get("service", "-n", "srv", "web")["spec"]["clusterIP"]
    name = "web.srv.svc.cluster.local"  # (busybox nslookup does not apply the search list; wget does)
    looked_up = wait_for(lambda: cluster_ip in (out := apps.exec("friends", "client", "nslookup", name, check=False))
                         and out, timeout=20, what=f"{name} resolved")
    assert dns_service_ip(SERVICE_CIDR) in looked_up
    client_ip = apps.pod_ip("friends", "client")
    for url in (f"http://{cluster_ip}/cgi-bin/ip", "http://web.srv/cgi-bin/ip",
                "http://web.srv.svc.cluster.local/cgi-bin/ip"):
        assert wait_for(lambda u=url: _http(apps, "friends", "client", u), timeout=10, what=url) == client_ip


def test_nodeport_from_a_host_namespace(apps: NetCluster) -> None:
    node_port = apps.get("service", "-n", "srv", "web-np")["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767

    def fetch(ip: str) -> str:
        return _fetch_from_lan(apps, ip, node_port)

    # the endpoint is on w1: through cp the connection crosses to w1, masqueraded to cp's address
    assert wait_for(lambda: fetch(apps.cp.ip), timeout=10, what="NodePort on cp") == apps.cp.ip
    # on w1 itself it is masqueraded too (externalTrafficPolicy Cluster), to the pod bridge's address
    w1_cidr = ipaddress.ip_network(apps.get("node", apps.nodes["w1"])["spec"]["podCIDR"])
    assert wait_for(lambda: fetch(apps.w1.ip), timeout=10, what="NodePort on w1") == str(w1_cidr[1])


def _fetch_from_lan(c: NetCluster, ip: str, port: int) -> str:
    """GET /cgi-bin/ip from the LAN's outside address: the client address the pod saw ("" on failure)."""
    request = f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {ip} {port}"
    out = c.lab.run(c.lab.lan, "/bin/busybox", "sh", "-c", request, check=False).stdout
    return out.splitlines()[-1].removeprefix("[::ffff:").removesuffix("]") if "200 OK" in out else ""


def test_host_port_through_portmap(apps: NetCluster) -> None:
    seen = wait_for(lambda: _fetch_from_lan(apps, apps.w1.ip, HOST_PORT), timeout=10, what="the hostPort")
    assert seen == apps.lab.outside_ip  # DNAT only: the pod sees the real client
    assert not _fetch_from_lan(apps, apps.cp.ip, HOST_PORT)  # only on the pod's node


def test_headless_service_answers_the_ready_pod_ips(apps: NetCluster) -> None:
    expected = {apps.pod_ip("srv", "web-cp"), apps.pod_ip("srv", "web-w1")}

    def answered() -> set[str]:
        out = apps.exec("friends", "client", "nslookup", "web-all.srv.svc.cluster.local", check=False)
        return {line.split()[-1] for line in out.splitlines()[2:] if line.startswith("Address")}

    assert wait_for(lambda: answered() == expected, timeout=20, what=f"the headless answer {expected}")


def test_external_name_is_forwarded_to_the_upstream(apps: NetCluster) -> None:
    out = wait_for(lambda: EXTERNAL_IP in (r := apps.exec("friends", "client", "nslookup", EXTERNAL_NAME, check=False))
                   and r, timeout=20, what="the external name answered")
    assert dns_service_ip(SERVICE_CIDR) in out  # through the cluster DNS, which asked the fake upstream
    missing = apps.exec("friends", "client", "nslookup", "nowhere.example.", check=False)
    assert "NXDOMAIN" in missing


def _until(predicate: Callable[[], bool], what: str, limit: float = 1.0) -> float:
    """Seconds until ``predicate`` holds, asserted under ``limit`` (a policy update's effect)."""
    start = time.monotonic()
    wait_for(predicate, timeout=10, interval=0.02, what=what)
    took = time.monotonic() - start
    assert took < limit, f"{what} took {took:.2f}s"
    return took


def _policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_default_deny_then_allow_by_namespace_label(apps: NetCluster) -> None:
    web = apps.pod_ip("srv", "web-w1")
    friend, stranger = apps.pod_ip("friends", "client"), apps.pod_ip("strangers", "client")
    assert apps.connects(friend, web) and apps.connects(stranger, web)
    try:
        apps.apply(_policy("default-deny", "srv", {"podSelector": {}, "policyTypes": ["Ingress"]}))
        _until(lambda: not apps.connects(friend, web) and not apps.connects(stranger, web), "default deny")
        apps.apply(_policy("allow-friends", "srv", {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"access": "granted"}}}],
                         "ports": [{"port": "http"}]}],
        }))
        _until(lambda: apps.connects(friend, web), "allow by namespace label")
        assert not apps.connects(stranger, web)
        apps.kubectl("label", "namespace", "strangers", "access=granted")  # a label change is a policy update
        _until(lambda: apps.connects(stranger, web), "allow after the namespace is labelled")
    finally:
        apps.kubectl("label", "namespace", "strangers", "access-", check=False)
        apps.kubectl("delete", "networkpolicy", "-n", "srv", "--all")
    _until(lambda: apps.connects(stranger, web), "policies deleted")


def test_egress_deny(apps: NetCluster) -> None:
    web, friend = apps.pod_ip("srv", "web-w1"), apps.pod_ip("friends", "client")
    assert apps.connects(friend, web)
    try:
        apps.apply(_policy("no-egress", "friends", {"podSelector": {}, "policyTypes": ["Egress"]}))
        _until(lambda: not apps.connects(friend, web), "egress deny")
        assert apps.connects(apps.pod_ip("strangers", "client"), web)  # other namespaces unaffected
    finally:
        apps.kubectl("delete", "networkpolicy", "-n", "friends", "--all")
    _until(lambda: apps.connects(friend, web), "egress allowed again")
