"""The node-local load balancer for the API servers (k3s' agent load balancer, :mod:`k8py.loadbalancer`)
as a host service next to the kubelet: ``k8py-apiserver-lb.service`` (or supervised), flags in
``/var/lib/k8py/apiserver-lb.env``.

`k8py init` and `k8py join` start it on every node, listening on ``127.0.0.1:6444`` (k3s' port)
with the control-plane endpoint as its configured server, and discovering the others from the
``default/kubernetes`` Endpoints (the lease reconciler lists every live API server) with the
kubelet's credentials once TLS bootstrapping has written kubelet.conf. The node's kubelet.conf and
the add-ons' kubeconfigs (kube-proxy, the network agent, DNS) point at it, so a node keeps its
API connection when any one API server, the control-plane endpoint's included, goes away. This is
kubeadm's HA topology with k3s' answer to the stable endpoint (kubeadm's own: an external load
balancer at ``--control-plane-endpoint``, which this does not preclude). `k8py reset` stops it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from k8py.kubeadm.config import InitConfig, https_url
from k8py.kubeadm.hostservice import HostService
from k8py.kubeadm.layout import Layout
from k8py.netutil import join_host_port

LISTEN_HOST, LISTEN_PORT = "127.0.0.1", 6444
LOCAL_URL = https_url(LISTEN_HOST, LISTEN_PORT)  # the server of kubelet.conf and of the add-ons' kubeconfigs
DISCOVERY_ROLE = "k8py:apiserver-lb-discovery"  # lets nodes watch default/kubernetes (Endpoints)

APISERVER_LB = HostService("apiserver-lb", "k8py API server load balancer: the node's stable API endpoint",
                           "loadbalancer", "K8PY_APISERVER_LB_ARGS",
                           lambda layout: layout.rootfs / "var/lib/k8py/apiserver-lb.env")


def server_address(url: str) -> str:
    """``host:port`` of an https URL (the control-plane endpoint's)."""
    parts = urlsplit(url)
    return join_host_port(parts.hostname or "", parts.port or 443)


def start(config: InitConfig, layout: Layout, endpoint_url: str, progress: Callable[[str], None]) -> None:
    """Write the flags and start (or restart) the service with ``endpoint_url`` as its configured server."""
    APISERVER_LB.write_flags(layout, [
        "--listen", join_host_port(LISTEN_HOST, LISTEN_PORT), "--server", server_address(endpoint_url),
        "--ca-file", str(config.cert_dir / "ca.crt"), "--kubeconfig", str(config.kubernetes_dir / "kubelet.conf"),
    ])
    how = APISERVER_LB.start(layout)
    progress(f"[apiserver-lb] Starting the API server load balancer on {LOCAL_URL} for {endpoint_url} ({how})")


def discovery_rbac() -> list[dict[str, object]]:
    """A Role and binding letting every node (the balancer runs as the kubelet) list and watch the
    Endpoints of the default namespace (system:node may only get them; list and watch cannot be
    narrowed to one name)."""
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": DISCOVERY_ROLE, "namespace": "default"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": DISCOVERY_ROLE, "namespace": "default"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DISCOVERY_ROLE},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]},
    ]
