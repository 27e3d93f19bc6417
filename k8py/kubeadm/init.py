"""`k8py init`: kubeadm's init workflow, phase by phase (cmd/kubeadm/app/cmd/phases/init).

preflight -> certs -> kubeconfig -> etcd -> control-plane -> kubelet-start -> wait-control-plane ->
upload-config -> upload-certs -> mark-control-plane -> bootstrap-token -> addon, then the join
commands (for control-plane nodes too when the certificates were uploaded). kubelet-start starts
the node-local API server load balancer (apiserverlb.py) before the kubelet, whose kubelet.conf
points at it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

from k8py.bootstrap.addons import dns_service_ip
from k8py.bootstrap.pki import load_ca
from k8py.bootstrap.token import KUBEADM_DEFAULT_GROUP
from k8py.client import ClientError, RESTClient
from k8py.client.ensure import ensure_objects
from k8py.client.resources import NODES
from k8py.kubeadm import apiserverlb, kubeletservice
from k8py.kubeadm.addons import addon_objects
from k8py.kubeadm.certs import CLUSTER_ADMINS_GROUP, create_certs, paths
from k8py.kubeadm.config import InitConfig, cluster_configuration
from k8py.kubeadm.controlplane import write_control_plane
from k8py.kubeadm.copycerts import upload_certs
from k8py.kubeadm.etcd import write_local_etcd
from k8py.kubeadm.kubeconfigs import create_kubeconfigs
from k8py.kubeadm.layout import Layout
from k8py.kubeadm.preflight import init_checks, report

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node.kubernetes.io/exclude-from-external-load-balancers")
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
PHASES = ("preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start", "wait-control-plane",
          "upload-config", "upload-certs", "mark-control-plane", "bootstrap-token", "addon")


@dataclass
class InitOptions:
    config: InitConfig
    layout: Layout
    ignore_preflight_errors: set[str] = field(default_factory=set)
    skip_phases: set[str] = field(default_factory=set)
    token: str = ""  # the bootstrap token (generated when empty)
    runtime: str | None = None  # the kubelet's --runtime (default: its own choice)
    upload_certs: bool = False  # the upload-certs phase stores the shared certificates in kubeadm-certs
    certificate_key: str = ""  # that Secret's key (generated when empty)
    wait_timeout: float = 240.0


def kubelet_flags(config: InitConfig, layout: Layout, runtime: str | None, kubeconfig: str) -> list[str]:
    """The kubelet's flags on a node set up by init or join (kubeadm-flags.env)."""
    flags = ["--kubeconfig", kubeconfig, "--root-dir", str(layout.kubelet_dir),
             "--pod-manifest-path", str(layout.manifests_dir), "--node-name", config.node_name,
             "--node-ip", config.advertise_address, "--cluster-dns", dns_service_ip(config.service_subnet),
             "--cluster-domain", config.dns_domain]
    return [*flags, "--runtime", runtime] if runtime else flags


def _admin(layout: Layout, name: str = "admin.conf") -> RESTClient:
    return RESTClient.from_kubeconfig(layout.kubernetes_dir / name, component="k8py-init")


async def wait_for_api(layout: Layout, timeout: float, progress: Callable[[str], None]) -> float:
    """Seconds until the API server answers /readyz as the super admin."""
    progress(f"[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from "
             f"directory \"{layout.manifests_dir}\"")
    started = time.monotonic()
    async with _admin(layout, "super-admin.conf") as client:
        while True:
            try:
                if (await client.raw("GET", "/readyz")).strip() == b"ok":
                    return time.monotonic() - started
            except (ClientError, OSError):
                pass
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the control plane did not come up within {timeout:.0f}s: see the kubelet's "
                                   f"log in {layout.log_dir} and the pods' logs in {layout.kubelet_dir}/logs")
            await asyncio.sleep(0.5)


async def _upload_config(client: RESTClient, config: InitConfig, layout: Layout,
                         progress: Callable[[str], None]) -> None:
    progress("[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the "
             "\"kube-system\" Namespace")
    await ensure_objects(client, [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
         "data": {"ClusterConfiguration": yaml.safe_dump(cluster_configuration(config, layout.etcd_dir),
                                                         sort_keys=False)}},
        # joining nodes read kubeadm-config with their bootstrap token (kubeadm:nodes-kubeadm-config)
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "kubeadm:nodes-kubeadm-config", "namespace": "kube-system"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kubeadm-config"],
                    "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "kubeadm:nodes-kubeadm-config", "namespace": "kube-system"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeadm:nodes-kubeadm-config"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                      for group in (KUBEADM_DEFAULT_GROUP, "system:nodes")]},
        *apiserverlb.discovery_rbac(),
        # admin.conf's group is bound to cluster-admin (super-admin.conf's system:masters bypasses RBAC)
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": CLUSTER_ADMINS_GROUP},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": CLUSTER_ADMINS_GROUP}]},
    ])


async def mark_control_plane(client: RESTClient, config: InitConfig, timeout: float,
                             progress: Callable[[str], None]) -> None:
    progress(f"[mark-control-plane] Marking the node {config.node_name} as control-plane by adding the labels: "
             f"[{' '.join(CONTROL_PLANE_LABELS)}]")
    progress(f"[mark-control-plane] Marking the node {config.node_name} as control-plane by adding the taints "
             f"[{CONTROL_PLANE_TAINT['key']}:{CONTROL_PLANE_TAINT['effect']}]")
    deadline = time.monotonic() + timeout
    while True:
        try:
            node = await client.get(NODES, config.node_name)
            break
        except ClientError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {config.node_name} did not register within {timeout:.0f}s") from None
            await asyncio.sleep(0.5)
    taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != CONTROL_PLANE_TAINT["key"]]
    patch = {"metadata": {"labels": dict.fromkeys(CONTROL_PLANE_LABELS, "")},
             "spec": {"taints": [*taints, CONTROL_PLANE_TAINT]}}
    await client.patch(NODES, config.node_name, patch)


async def _bootstrap_token(client: RESTClient, config: InitConfig, token: str, progress: Callable[[str], None]) -> str:
    from k8py.bootstrap.token import create_token, ensure_bootstrap_token_objects

    token = await create_token(client, token or None)
    progress(f"[bootstrap-token] Using token: {token}")
    progress("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles")
    ca = load_ca(*paths(config.cert_dir, "ca"))
    await ensure_bootstrap_token_objects(client, config.endpoint_url, ca.cert_pem())
    return token


async def _addons(client: RESTClient, config: InitConfig, progress: Callable[[str], None]) -> None:
    await ensure_objects(client, addon_objects(server=apiserverlb.LOCAL_URL, cluster_cidr=config.pod_subnet,
                                               service_cidr=config.service_subnet, cluster_domain=config.dns_domain))
    progress("[addons] Applied essential addon: k8py-dns")
    progress("[addons] Applied essential addon: kube-proxy")
    progress("[addons] Applied essential addon: k8py-network")


ONLINE_PHASES = frozenset(PHASES[PHASES.index("wait-control-plane"):])  # those that talk to the API server


def run_init(options: InitOptions, progress: Callable[[str], None]) -> str:
    """Run the phases not skipped; the bootstrap token made (empty without the bootstrap-token phase)."""
    config, layout, skip = options.config, options.layout, options.skip_phases
    if "preflight" not in skip:
        progress("[init] Using Kubernetes version: v1.32.0")
    if "preflight" not in skip:
        progress("[preflight] Running pre-flight checks")
        for line in report(init_checks(config, layout.etcd_dir), options.ignore_preflight_errors):
            progress(line)
    if "certs" not in skip:
        create_certs(config, progress)
    if "kubeconfig" not in skip:
        create_kubeconfigs(config, load_ca(*paths(config.cert_dir, "ca")), progress)
    if "etcd" not in skip and config.external_etcd is None:
        write_local_etcd(config, layout, progress)
    if "control-plane" not in skip:
        write_control_plane(config, layout, progress)
    if "kubelet-start" not in skip:
        kubeletservice.KUBELET.write_flags(layout, kubelet_flags(config, layout, options.runtime,
                                                          str(config.kubernetes_dir / "kubelet.conf")))
        progress(f"[kubelet-start] Writing kubelet environment file with flags to file \"{layout.kubelet_flags_file}\"")
        apiserverlb.start(config, layout, config.endpoint_url, progress)
        kubeletservice.start(layout, progress)
    if ONLINE_PHASES <= skip:
        return ""
    return asyncio.run(_online_phases(options, progress))


async def _online_phases(options: InitOptions, progress: Callable[[str], None]) -> str:
    config, layout, skip = options.config, options.layout, options.skip_phases
    if "wait-control-plane" not in skip:
        took = await wait_for_api(layout, options.wait_timeout, progress)
        progress(f"[apiclient] All control plane components are healthy after {took:.6f} seconds")
    token = ""
    async with _admin(layout, "super-admin.conf") as client:
        if "upload-config" not in skip:
            await _upload_config(client, config, layout, progress)
        if "upload-certs" not in skip:
            if options.upload_certs:
                await upload_certs(client, config, options.certificate_key, progress)
                progress(f"[upload-certs] Using certificate key:\n{options.certificate_key}")
            else:
                progress("[upload-certs] Skipping phase. Please see --upload-certs")
        if "mark-control-plane" not in skip:
            await mark_control_plane(client, config, options.wait_timeout, progress)
        if "bootstrap-token" not in skip:
            token = await _bootstrap_token(client, config, options.token, progress)
        if "addon" not in skip:
            await _addons(client, config, progress)
    return token


def success_message(options: InitOptions, token: str) -> str:
    """kubeadm's closing words, with the join command for workers."""
    from k8py.bootstrap.token import ca_cert_hashes

    admin = options.config.kubernetes_dir / "admin.conf"
    text = (
        "\nYour Kubernetes control-plane has initialized successfully!\n\n"
        "To start using your cluster, you need to run the following as a regular user:\n\n"
        "  mkdir -p $HOME/.kube\n"
        f"  sudo cp -i {admin} $HOME/.kube/config\n"
        "  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n\n"
        "Alternatively, if you are the root user, you can run:\n\n"
        f"  export KUBECONFIG={admin}\n\n"
        "The pod network (k8py's network agent with NetworkPolicy), kube-proxy and cluster DNS are running "
        "already.\n"
    )
    if token:
        host, port = options.config.endpoint
        pins = " ".join(f"--discovery-token-ca-cert-hash {pin}" for pin in ca_cert_hashes(
            load_ca(*paths(options.config.cert_dir, "ca")).cert_pem()))
        join = f"k8py join {host}:{port} --token {token} \\\n\t{pins}"
        if options.config.control_plane_endpoint and options.upload_certs:
            text += ("\nYou can now join any number of control-plane nodes running the following command on each as "
                     f"root:\n\n  {join} \\\n\t--control-plane --certificate-key {options.certificate_key}\n\n"
                     "Please note that the certificate-key gives access to cluster sensitive data, keep it secret!\n"
                     "As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use\n"
                     "\"k8py init phase upload-certs --upload-certs\" to reload certs afterward.\n")
        text += ("\nThen you can join any number of worker nodes by running the following on each as root:\n\n"
                 f"{join}\n")
    return text
