"""`k8py join`: a node joins the cluster as with kubeadm (cmd/kubeadm/app/cmd/join.go).

preflight -> discovery (cluster-info signed with the bootstrap token, CA pinned by its hash) ->
the cluster's configuration (kubeadm-config, read with the token) -> /etc/kubernetes/pki/ca.crt
and bootstrap-kubelet.conf -> the node-local API server load balancer (apiserverlb.py, toward the
discovered endpoint) and the kubelet as services; the kubelet reaches the API servers through the
balancer, gets its client certificate by TLS bootstrapping (a CSR the controller manager approves
and signs) and writes kubelet.conf -> the Node registered.

With ``--control-plane`` (kubeadm's control-plane-prepare and control-plane-join phases): the
shared certificates from kubeadm-certs (``--certificate-key``), this node's own certificates,
admin/controller-manager/scheduler kubeconfigs and control-plane static pods before the kubelet
starts; then a new member of the stacked etcd cluster (unless etcd is external), and the Node
marked control-plane.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from k8py.bootstrap.kubeconfig import kubeconfig_dict
from k8py.bootstrap.pki import atomic_write, load_ca
from k8py.client import ClientError, RESTClient
from k8py.client.config import ClientConfig
from k8py.client.resources import CONFIGMAPS, NODES
from k8py.kubeadm import apiserverlb, kubeletservice
from k8py.kubeadm.certs import create_certs, paths
from k8py.kubeadm.config import DEFAULT_BIND_PORT, ConfigError, InitConfig, apply_cluster_configuration
from k8py.kubeadm.controlplane import write_control_plane
from k8py.kubeadm.copycerts import download_certs
from k8py.kubeadm.etcd import client_url, join_member, member_client_urls
from k8py.kubeadm.init import kubelet_flags, mark_control_plane
from k8py.kubeadm.kubeconfigs import create_kubeconfigs
from k8py.kubeadm.layout import Layout
from k8py.kubeadm.preflight import control_plane_checks, join_checks, report


@dataclass
class JoinOptions:
    endpoint: str  # host:port of the API server
    token: str
    ca_cert_hashes: list[str]
    layout: Layout
    node_name: str
    node_ip: str
    unsafe_skip_ca_verification: bool = False
    ignore_preflight_errors: set[str] = field(default_factory=set)
    runtime: str | None = None
    discovery_timeout: float = 300.0
    timeout: float = 240.0  # for the kubelet to bootstrap and register
    control_plane: bool = False
    certificate_key: str = ""  # decrypts kubeadm-certs (with control_plane)
    bind_port: int = DEFAULT_BIND_PORT  # this control-plane node's API server


async def _wait_registered(layout: Layout, node: str, timeout: float) -> float:
    """Seconds until kubelet.conf exists (TLS bootstrap done) and the Node is registered."""
    started = time.monotonic()
    kubeconfig = layout.kubernetes_dir / "kubelet.conf"
    while True:
        if kubeconfig.exists():
            try:
                async with RESTClient.from_kubeconfig(kubeconfig, component="k8py-join") as client:
                    await client.get(NODES, node)
                return time.monotonic() - started
            except (ClientError, OSError):
                pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the kubelet did not join within {timeout:.0f}s: see its log in {layout.log_dir}")
        await asyncio.sleep(0.5)


def _bootstrap_client(server: str, ca_pem: bytes, token: str) -> RESTClient:
    """A client with the bootstrap token's identity (what a node may read before it has credentials)."""
    return RESTClient(ClientConfig(server=server, ca_pem=ca_pem, token=token), component="k8py-join")


async def _cluster_configuration(server: str, ca_pem: bytes, token: str) -> dict[str, Any]:
    """kubeadm-config's ClusterConfiguration, read as the bootstrap token's user."""
    async with _bootstrap_client(server, ca_pem, token) as client:
        cm = await client.get(CONFIGMAPS, "kubeadm-config", namespace="kube-system")
    return yaml.safe_load(cm["data"]["ClusterConfiguration"]) or {}


def _prepare_control_plane(options: JoinOptions, config: InitConfig, server: str, ca_pem: bytes,
                           progress: Callable[[str], None]) -> None:
    """kubeadm's control-plane-prepare: download-certs, certs, kubeconfig, control-plane."""
    progress("[preflight] Running pre-flight checks before initializing the new control plane instance")
    for line in report(control_plane_checks(config, options.layout.etcd_dir), options.ignore_preflight_errors):
        progress(line)

    async def download() -> None:
        async with _bootstrap_client(server, ca_pem, options.token) as client:
            await download_certs(client, config, options.certificate_key, progress)

    asyncio.run(download())
    create_certs(config, progress)
    create_kubeconfigs(config, load_ca(*paths(config.cert_dir, "ca")), progress,
                       files=("admin.conf", "controller-manager.conf", "scheduler.conf"))
    write_control_plane(config, options.layout, progress)


async def _join_control_plane(options: JoinOptions, config: InitConfig, server: str,
                              progress: Callable[[str], None]) -> None:
    """kubeadm's control-plane-join: the etcd member (stacked etcd), then mark-control-plane."""
    async with RESTClient.from_kubeconfig(config.kubernetes_dir / "admin.conf", component="k8py-join") as client:
        if config.external_etcd is None:
            # the members the etcd Pods advertise; before any is mirrored, the first control plane's
            endpoints = await member_client_urls(client) or [client_url(urlsplit(server).hostname or "")]
            await join_member(config, options.layout, endpoints, progress, timeout=options.timeout)
        await _wait_registered(options.layout, options.node_name, options.timeout)
        await mark_control_plane(client, config, options.timeout, progress)


def run_join(options: JoinOptions, progress: Callable[[str], None]) -> None:
    from k8py.bootstrap.token import discover

    layout = options.layout
    progress("[preflight] Running pre-flight checks")
    for line in report(join_checks(layout.kubernetes_dir, options.node_name), options.ignore_preflight_errors):
        progress(line)
    progress(f"[discovery] Trying to connect to API Server \"{options.endpoint}\"")
    ca_pem, server = asyncio.run(discover(options.endpoint, options.token, options.ca_cert_hashes,
                                          unsafe_skip_ca_verification=options.unsafe_skip_ca_verification,
                                          timeout=options.discovery_timeout))
    progress(f"[discovery] Cluster info signature and contents are valid and the CA is pinned; will use API "
             f"Server \"{server}\"")
    progress("[preflight] Reading configuration from the cluster...")
    config = apply_cluster_configuration(asyncio.run(_cluster_configuration(server, ca_pem, options.token)),
                                         InitConfig(node_name=options.node_name, advertise_address=options.node_ip,
                                                    bind_port=options.bind_port), "kubeadm-config")
    # this node's own paths (the cluster's certificatesDir is the first control plane's)
    config.cert_dir, config.kubernetes_dir = layout.cert_dir, layout.kubernetes_dir
    if options.control_plane:
        if not config.control_plane_endpoint:
            raise ConfigError("unable to add a new control plane instance to a cluster that doesn't have a stable "
                              "controlPlaneEndpoint address (k8py init --control-plane-endpoint)")
        _prepare_control_plane(options, config, server, ca_pem, progress)
    layout.cert_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(layout.cert_dir / "ca.crt", ca_pem, mode=0o644)
    bootstrap = layout.kubernetes_dir / "bootstrap-kubelet.conf"
    doc = kubeconfig_dict(apiserverlb.LOCAL_URL, ca_pem, b"", b"", cluster_name="kubernetes", user="tls-bootstrap-token-user",
                          context="tls-bootstrap-token-user@kubernetes")
    doc["users"][0]["user"] = {"token": options.token}
    atomic_write(bootstrap, yaml.safe_dump(doc, sort_keys=False).encode(), mode=0o600)
    flags = kubelet_flags(config, layout, options.runtime, str(layout.kubernetes_dir / "kubelet.conf"))
    kubeletservice.KUBELET.write_flags(layout, [*flags, "--bootstrap-kubeconfig", str(bootstrap), "--rotate-certificates"])
    progress(f"[kubelet-start] Writing kubelet environment file with flags to file \"{layout.kubelet_flags_file}\"")
    apiserverlb.start(config, layout, server, progress)
    kubeletservice.start(layout, progress)
    progress("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
    if options.control_plane:
        asyncio.run(_join_control_plane(options, config, server, progress))
    else:
        asyncio.run(_wait_registered(layout, options.node_name, options.timeout))


JOINED = """
This node has joined the cluster:
* Certificate signing request was sent to apiserver and a response was received.
* The Kubelet was informed of the new secure connection details.

Run 'kubectl get nodes' on the control-plane to see this node join the cluster.
"""

JOINED_CONTROL_PLANE = """
This node has joined the cluster and a new control plane instance was created:

* Certificate signing request was sent to apiserver and approval was received.
* The Kubelet was informed of the new secure connection details.
* Control plane label and taint were applied to the new node.
* The Kubernetes control plane instances scaled up.
* A new etcd member was added to the local/stacked etcd cluster.

To start administering your cluster from this node, you need to run the following as a regular user:

\tmkdir -p $HOME/.kube
\tsudo cp -i {admin} $HOME/.kube/config
\tsudo chown $(id -u):$(id -g) $HOME/.kube/config

Run 'kubectl get nodes' to see this node join the cluster.
"""
