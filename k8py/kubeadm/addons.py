"""kubeadm's `addon` phase for k8py: kube-proxy and the network agent as DaemonSets, cluster DNS as a
Deployment behind the `kube-dns` Service, each with its ServiceAccount and RBAC, all in kube-system.

They are k8py components run on the process runtime (host network, RuntimeClass ``process``)
and authenticate with their ServiceAccount token, as kube-proxy does under kubeadm: a ConfigMap
per component holds ``kubeconfig.conf`` pointing at ``server`` (`k8py init`: the node-local API
server load balancer, https://127.0.0.1:6444, which every node runs; not the kubernetes Service,
which kube-proxy itself makes reachable) with the token and CA files of the projected service
account volume.
"""

from __future__ import annotations

from typing import Any

import yaml

from k8py.bootstrap.addons import (
    DNS_ROLE,
    DNS_RULES,
    NETWORK_AGENT_ROLE,
    NETWORK_AGENT_RULES,
    cluster_role,
    cluster_role_binding,
    dns_args,
    dns_service,
    network_args,
    process_pod_spec,
    proxy_args,
)

Obj = dict[str, Any]
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBECONFIG_DIR = "/var/lib/k8py-addon"
KUBECONFIG = f"{KUBECONFIG_DIR}/kubeconfig.conf"
CONTROL_PLANE_TOLERATIONS = [
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
]
NODE_NAME = "$(NODE_NAME)"  # expanded by the kubelet from the container's env
POD_IP = "$(POD_IP)"


def in_cluster_kubeconfig(server: str) -> str:
    """kubeconfig.conf of an add-on: its ServiceAccount's token and the cluster CA, from the projected volume."""
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default", "cluster": {"server": server, "certificate-authority": f"{SA_DIR}/ca.crt"}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "namespace": "default", "user": "default"}}],
        "current-context": "default",
        "users": [{"name": "default", "user": {"tokenFile": f"{SA_DIR}/token"}}],
    }, sort_keys=False)


def _meta(name: str, **extra: Any) -> Obj:
    return {"name": name, "namespace": "kube-system", **extra}


def _rbac(name: str, role: str, rules: list[Obj] | None) -> list[Obj]:
    """The component's ServiceAccount, its ClusterRole (unless ``rules`` is None: an existing
    role) and the binding of one to the other."""
    objs: list[Obj] = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name)}]
    if rules is not None:
        objs.append(cluster_role(role, rules))
    subject = {"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}
    objs.append(cluster_role_binding(f"kubeadm:{name}" if rules is None else role, role, subject))
    return objs


def _pod_template(name: str, labels: dict[str, str], argv: list[str], **spec: Any) -> Obj:
    env = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    pod_spec = process_pod_spec(name, argv, env=env,
                                volumeMounts=[{"name": "kubeconfig", "mountPath": KUBECONFIG_DIR, "readOnly": True}])
    pod_spec.update(serviceAccountName=name, volumes=[{"name": "kubeconfig", "configMap": {"name": name}}], **spec)
    return {"metadata": {"labels": labels}, "spec": pod_spec}


def _config_map(name: str, server: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, labels={"app": name}),
            "data": {"kubeconfig.conf": in_cluster_kubeconfig(server)}}


def _daemon_set(name: str, app: str, argv: list[str]) -> Obj:
    labels = {"k8s-app": app}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta(name, labels=labels),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": _pod_template(name, labels, argv, tolerations=[{"operator": "Exists"}]),
        },
    }


def addon_objects(*, server: str, cluster_cidr: str, service_cidr: str, cluster_domain: str,
                  dns_replicas: int = 2) -> list[Obj]:
    """Everything the addon phase creates, in creation order."""
    dns_labels = {"k8s-app": "kube-dns"}
    dns = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("k8py-dns", labels=dns_labels),
        "spec": {
            "replicas": dns_replicas,
            "selector": {"matchLabels": dns_labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": _pod_template(
                "k8py-dns", dns_labels, dns_args(KUBECONFIG, cluster_domain, POD_IP, "/etc/resolv.conf"),
                tolerations=CONTROL_PLANE_TOLERATIONS,
            ),
        },
    }
    # one DNS pod per node: both bind <node IP>:53, which the scheduler sees as hostPorts
    dns["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "dns", "containerPort": 53, "hostPort": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "containerPort": 53, "hostPort": 53, "protocol": "TCP"},
    ]
    return [
        # the runtime the add-ons (and the control plane's static pods) run on
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "process"}, "handler": "process"},
        *_rbac("kube-proxy", "system:node-proxier", None),
        _config_map("kube-proxy", server),
        _daemon_set("kube-proxy", "kube-proxy", proxy_args(KUBECONFIG, NODE_NAME, cluster_cidr, service_cidr)),
        *_rbac("k8py-network", NETWORK_AGENT_ROLE, NETWORK_AGENT_RULES),
        _config_map("k8py-network", server),
        _daemon_set("k8py-network", "k8py-network", network_args(KUBECONFIG, NODE_NAME, cluster_cidr, service_cidr)),
        *_rbac("k8py-dns", DNS_ROLE, DNS_RULES),
        _config_map("k8py-dns", server),
        dns,
        dns_service(service_cidr),
    ]
