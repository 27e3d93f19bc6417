"""`k8py join`: a worker node joins the cluster as with kubeadm (cmd/kubeadm/app/cmd/join.go).

preflight -> discovery (cluster-info signed with the bootstrap token, CA pinned by its hash) ->
the cluster's configuration (kubeadm-config, read with the token) -> /etc/kubernetes/pki/ca.crt
and bootstrap-kubelet.conf -> the kubelet as a service, which gets its client certificate by TLS
bootstrapping (a CSR the controller manager approves and signs) and writes kubelet.conf ->
the Node registered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from k8py.bootstrap.kubeconfig import kubeconfig_dict
from k8py.bootstrap.pki import atomic_write
from k8py.client import ClientError, RESTClient
from k8py.client.config import ClientConfig
from k8py.client.resources import CONFIGMAPS, NODES
from k8py.kubeadm import kubeletservice
from k8py.kubeadm.config import DEFAULT_DNS_DOMAIN, DEFAULT_SERVICE_SUBNET, InitConfig
from k8py.kubeadm.init import kubelet_flags
from k8py.kubeadm.layout import Layout
from k8py.kubeadm.preflight import join_checks, report


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


async def _cluster_configuration(server: str, ca_pem: bytes, token: str) -> dict[str, Any]:
    """kubeadm-config's ClusterConfiguration, read as the bootstrap token's user."""
    async with RESTClient(ClientConfig(server=server, ca_pem=ca_pem, token=token), component="k8py-join") as client:
        cm = await client.get(CONFIGMAPS, "kubeadm-config", namespace="kube-system")
    return yaml.safe_load(cm["data"]["ClusterConfiguration"]) or {}


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
    cluster = asyncio.run(_cluster_configuration(server, ca_pem, options.token))
    networking = cluster.get("networking") or {}
    config = InitConfig(node_name=options.node_name, advertise_address=options.node_ip,
                        service_subnet=networking.get("serviceSubnet") or DEFAULT_SERVICE_SUBNET,
                        dns_domain=networking.get("dnsDomain") or DEFAULT_DNS_DOMAIN,
                        cert_dir=layout.cert_dir, kubernetes_dir=layout.kubernetes_dir)
    layout.cert_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(layout.cert_dir / "ca.crt", ca_pem, mode=0o644)
    bootstrap = layout.kubernetes_dir / "bootstrap-kubelet.conf"
    doc = kubeconfig_dict(server, ca_pem, b"", b"", cluster_name="kubernetes", user="tls-bootstrap-token-user",
                          context="tls-bootstrap-token-user@kubernetes")
    doc["users"][0]["user"] = {"token": options.token}
    atomic_write(bootstrap, yaml.safe_dump(doc, sort_keys=False).encode(), mode=0o600)
    flags = kubelet_flags(config, layout, options.runtime, str(layout.kubernetes_dir / "kubelet.conf"))
    kubeletservice.write_flags(layout, [*flags, "--bootstrap-kubeconfig", str(bootstrap), "--rotate-certificates"])
    progress(f"[kubelet-start] Writing kubelet environment file with flags to file \"{layout.kubelet_flags_file}\"")
    kubeletservice.start(layout, progress)
    progress("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap")
    asyncio.run(_wait_registered(layout, options.node_name, options.timeout))


JOINED = """
This node has joined the cluster:
* Certificate signing request was sent to apiserver and a response was received.
* The Kubelet was informed of the new secure connection details.

Run 'kubectl get nodes' on the control-plane to see this node join the cluster.
"""
