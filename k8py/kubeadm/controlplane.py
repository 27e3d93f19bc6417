"""kubeadm's `control-plane` phase for k8py: static pod manifests in ``/etc/kubernetes/manifests``
for kube-apiserver, kube-controller-manager and kube-scheduler, each a k8py component on the
process runtime (host network, RuntimeClass ``process``) that the kubelet runs and mirrors into
kube-system, with kubeadm's labels (``component``, ``tier: control-plane``) and probes.

The API server uses the PKI as `init phase certs` laid it out (kube-apiserver's file flags) and
etcd as its store: the node's own stacked member (https://127.0.0.1:2379, see etcd.py) or the
external cluster of the configuration, with kube-apiserver's --etcd-* flags.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from k8py.bootstrap.addons import process_pod_spec, write_manifests
from k8py.kubeadm.config import InitConfig
from k8py.kubeadm.etcd import LOCAL_CLIENT_URL
from k8py.kubeadm.layout import Layout

Obj = dict[str, Any]
SCHEDULER_PORT = 10259
# kubeadm enables these two on top of the default set
CONTROLLERS = "*,bootstrapsigner,tokencleaner"


# where joining control-plane nodes and `kubeadm upgrade` find the API servers (kubeadm's constant)
ADVERTISE_ADDRESS_ANNOTATION = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"


def _static_pod(component: str, argv: list[str], probe: Obj | None, annotations: dict[str, str] | None = None) -> Obj:
    """``probe``: the liveness probe's handler, with kubeadm's timings (None: no probe)."""
    container: Obj = {}
    if probe is not None:
        container["livenessProbe"] = {**probe, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15,
                                      "failureThreshold": 8}
    spec = process_pod_spec(component, argv, **container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": component, "namespace": "kube-system",
                     "labels": {"component": component, "tier": "control-plane"},
                     **({"annotations": annotations} if annotations else {})},
        "spec": spec,
    }


def etcd_flags(config: InitConfig) -> list[str]:
    """kube-apiserver's --etcd-* flags: the external cluster's, else the local member's (kubeadm's)."""
    if (ext := config.external_etcd) is not None:
        files = [(flag, path) for flag, path in (("--etcd-cafile", ext.ca_file), ("--etcd-certfile", ext.cert_file),
                                                 ("--etcd-keyfile", ext.key_file)) if path]
        return ["--etcd-servers", ",".join(ext.endpoints), *(arg for pair in files for arg in pair)]
    pki = config.cert_dir
    return ["--etcd-servers", LOCAL_CLIENT_URL, "--etcd-cafile", str(pki / "etcd" / "ca.crt"),
            "--etcd-certfile", str(pki / "apiserver-etcd-client.crt"),
            "--etcd-keyfile", str(pki / "apiserver-etcd-client.key")]


def control_plane_manifests(config: InitConfig, layout: Layout) -> dict[str, Obj]:
    """File name -> static pod, for the three control-plane components."""
    pki, kube = config.cert_dir, config.kubernetes_dir
    apiserver = [
        "apiserver",
        "--data-dir", str(layout.apiserver_dir),
        *etcd_flags(config),
        "--bind-address", "0.0.0.0",
        "--secure-port", str(config.bind_port),
        "--advertise-address", config.advertise_address,
        "--service-cluster-ip-range", config.service_subnet,
        "--authorization-mode", "Node,RBAC",
        "--tls-cert-file", str(pki / "apiserver.crt"),
        "--tls-private-key-file", str(pki / "apiserver.key"),
        "--client-ca-file", str(pki / "ca.crt"),
        "--service-account-key-file", str(pki / "sa.pub"),
        "--service-account-signing-key-file", str(pki / "sa.key"),
        "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
        "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
    ]
    controller_manager = [
        "controller-manager",
        "--kubeconfig", str(kube / "controller-manager.conf"),
        "--controllers", CONTROLLERS,
        "--cluster-cidr", config.pod_subnet,
        "--service-cluster-ip-range", config.service_subnet,
        "--root-ca-file", str(pki / "ca.crt"),
        "--cluster-signing-cert-file", str(pki / "ca.crt"),
        "--cluster-signing-key-file", str(pki / "ca.key"),
        "--service-account-private-key-file", str(pki / "sa.key"),
        "--leader-elect",
        "--use-service-account-credentials",
    ]
    scheduler = [
        "scheduler",
        "--kubeconfig", str(kube / "scheduler.conf"),
        "--bind-address", "127.0.0.1",
        "--port", str(SCHEDULER_PORT),
        "--leader-elect",
    ]
    https_livez = {"httpGet": {"host": config.advertise_address, "path": "/livez", "port": config.bind_port,
                               "scheme": "HTTPS"}}
    return {
        "kube-apiserver.yaml": _static_pod("kube-apiserver", apiserver, https_livez, {
            ADVERTISE_ADDRESS_ANNOTATION: f"{config.advertise_address}:{config.bind_port}"}),
        # (k8py's controller manager serves no /healthz yet: no probe)
        "kube-controller-manager.yaml": _static_pod("kube-controller-manager", controller_manager, None),
        "kube-scheduler.yaml": _static_pod("kube-scheduler", scheduler, {
            "httpGet": {"host": "127.0.0.1", "path": "/healthz", "port": SCHEDULER_PORT, "scheme": "HTTP"}}),
    }


def write_control_plane(config: InitConfig, layout: Layout, progress: Callable[[str], None]) -> None:
    """kubeadm's `init phase control-plane all`."""
    progress(f"[control-plane] Using manifest folder \"{layout.manifests_dir}\"")
    manifests = control_plane_manifests(config, layout)
    write_manifests(layout.manifests_dir, manifests)
    for name in manifests:
        component = name.removesuffix(".yaml")
        progress(f"[control-plane] Creating static Pod manifest for \"{component}\"")
