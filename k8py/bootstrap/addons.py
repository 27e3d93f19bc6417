"""The node add-ons a cluster runs as pods (kubeadm's `addon` phase, and the pod network it leaves to a
CNI add-on): kube-proxy, the network agent (routes, SNAT, NetworkPolicy) and cluster DNS behind the
`kube-dns` Service.

k8py runs them as static pods on the `process` runtime (RuntimeClass handler ``process``) with the
host's network, so they need no image: each is a `k8py <component>` host process the kubelet
supervises and mirrors into kube-system, like the control plane kubeadm runs from
/etc/kubernetes/manifests. DNS is reached at the `kube-dns` ClusterIP (the 10th address of the
Service range), whose endpoints are the DNS pods' (host) addresses.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

import yaml

from k8py.client import ClientError, RESTClient, is_already_exists, is_not_found
from k8py.client.resources import SERVICES

Obj = dict[str, Any]
DNS_PORT = 53


def dns_service_ip(service_cidr: str) -> str:
    """The 10th address of the Service range (kubeadm's choice for kube-dns, e.g. 10.96.0.10)."""
    return str(ipaddress.ip_network(service_cidr, strict=False)[10])


K8PY = [sys.executable, "-m", "k8py.cli"]  # how a node runs a k8py component (the process runtime's "image")


def proxy_args(kubeconfig: str, node_name: str, cluster_cidr: str, service_cidr: str) -> list[str]:
    return ["proxy", "--kubeconfig", kubeconfig, "--hostname-override", node_name, "--cluster-cidr", cluster_cidr,
            "--service-cluster-ip-range", service_cidr, "--metrics-bind-address", ""]


def network_args(kubeconfig: str, node_name: str, cluster_cidr: str, service_cidr: str) -> list[str]:
    return ["network-agent", "--kubeconfig", kubeconfig, "--node-name", node_name, "--cluster-cidr", cluster_cidr,
            "--service-cluster-ip-range", service_cidr]


def dns_args(kubeconfig: str, cluster_domain: str, bind_address: str, resolv_conf: str) -> list[str]:
    return ["dns", "--kubeconfig", kubeconfig, "--cluster-domain", cluster_domain, "--bind-address", bind_address,
            "--port", str(DNS_PORT), "--resolv-conf", resolv_conf]


def process_pod_spec(name: str, argv: list[str], **container: Any) -> Obj:
    """The spec of a k8py component run as a host-network pod on the process runtime."""
    return {
        "runtimeClassName": "process",
        "hostNetwork": True,
        "dnsPolicy": "Default",
        "priorityClassName": "system-node-critical",
        "containers": [{"name": name, "image": "k8py", "command": [*K8PY, *argv], **container}],
    }


def _static_pod(name: str, app: str, argv: list[str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": app}},
        "spec": process_pod_spec(name, argv),
    }


def addon_manifests(
    *,
    node_name: str,
    node_ip: str,
    cluster_cidr: str,
    service_cidr: str,
    cluster_domain: str,
    kubeconfigs: dict[str, Path],
    resolv_conf: str = "/etc/resolv.conf",
) -> dict[str, Obj]:
    """File name -> static pod manifest; ``kubeconfigs`` by component: kube-proxy, network, dns;
    ``resolv_conf``: the node's resolvers, DNS's upstreams."""
    return {
        "kube-proxy.yaml": _static_pod("kube-proxy", "kube-proxy", proxy_args(
            str(kubeconfigs["kube-proxy"]), node_name, cluster_cidr, service_cidr)),
        "k8py-network.yaml": _static_pod("k8py-network", "k8py-network", network_args(
            str(kubeconfigs["network"]), node_name, cluster_cidr, service_cidr)),
        "k8py-dns.yaml": _static_pod("k8py-dns", "kube-dns", dns_args(
            str(kubeconfigs["dns"]), cluster_domain, node_ip, resolv_conf)),
    }


# what the add-ons read (kube-proxy has the bootstrap policy's system:node-proxier)
NETWORK_AGENT_RULES = [
    {"apiGroups": [""], "resources": ["nodes", "pods", "namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
]
DNS_RULES = [  # CoreDNS's system:coredns
    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
]
NETWORK_AGENT_ROLE, DNS_ROLE = "k8py:network-agent", "system:k8py-dns"


def cluster_role(name: str, rules: list[Obj]) -> Obj:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": rules}


def cluster_role_binding(name: str, role: str, subject: Obj) -> Obj:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [subject]}


def addon_user_rbac(network_user: str, dns_user: str) -> list[Obj]:
    """The add-ons' roles, bound to the users of their client certificates (`k8py up`)."""
    def user(name: str) -> Obj:
        return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}

    return [
        cluster_role(NETWORK_AGENT_ROLE, NETWORK_AGENT_RULES),
        cluster_role_binding(NETWORK_AGENT_ROLE, NETWORK_AGENT_ROLE, user(network_user)),
        cluster_role(DNS_ROLE, DNS_RULES),
        cluster_role_binding(DNS_ROLE, DNS_ROLE, user(dns_user)),
    ]


def write_manifests(directory: Path, manifests: dict[str, Obj]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, pod in manifests.items():
        text = yaml.safe_dump(pod, sort_keys=False)
        path = directory / name
        if not path.exists() or path.read_text() != text:  # an unchanged file keeps its pod
            path.write_text(text)


def dns_service(service_cidr: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "clusterIP": dns_service_ip(service_cidr),
            "selector": {"k8s-app": "kube-dns"},
            "ports": [
                {"name": "dns", "port": DNS_PORT, "protocol": "UDP", "targetPort": DNS_PORT},
                {"name": "dns-tcp", "port": DNS_PORT, "protocol": "TCP", "targetPort": DNS_PORT},
            ],
        },
    }


async def ensure_dns_service(client: RESTClient, service_cidr: str) -> None:
    """Create the kube-dns Service unless it exists (looked up first: creating it again would fail on
    its ClusterIP, already allocated, before the name is found taken, as in kube)."""
    try:
        await client.get(SERVICES, "kube-dns", namespace="kube-system")
        return
    except ClientError as e:
        if not is_not_found(e):
            raise
    try:
        await client.create(SERVICES, dns_service(service_cidr), namespace="kube-system")
    except ClientError as e:
        if not is_already_exists(e):
            raise
