"""The configuration of `k8py init` / `k8py join`: kubeadm's InitConfiguration and
ClusterConfiguration (kubeadm.k8s.io/v1beta4, also v1beta3), from ``--config`` and the flags.

Only the fields k8py acts on are read; a file with another kind or apiVersion, or a field of the
wrong type, is an error naming it. Flags given on the command line win over the file, as in
kubeadm where both are allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from k8py.kubeadm.layout import Layout
from k8py.netutil import primary_ip

API_VERSIONS = ("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3")
KUBERNETES_DIR = Layout().kubernetes_dir
DEFAULT_CERT_DIR = Layout().cert_dir
DEFAULT_SERVICE_SUBNET = "10.96.0.0/12"
DEFAULT_POD_SUBNET = "10.244.0.0/16"
DEFAULT_DNS_DOMAIN = "cluster.local"
DEFAULT_BIND_PORT = 6443


class ConfigError(ValueError):
    """A configuration file or flag k8py cannot use."""


@dataclass
class ExternalEtcd:
    """ClusterConfiguration's etcd.external: an etcd cluster k8py does not run."""

    endpoints: list[str]
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass
class InitConfig:
    """What `k8py init` sets up; defaults as kubeadm's."""

    node_name: str = field(default_factory=lambda: socket.gethostname().lower())
    advertise_address: str = field(default_factory=primary_ip)
    bind_port: int = DEFAULT_BIND_PORT
    control_plane_endpoint: str = ""  # host[:port]; empty: the advertise address and bind port
    pod_subnet: str = DEFAULT_POD_SUBNET
    service_subnet: str = DEFAULT_SERVICE_SUBNET
    dns_domain: str = DEFAULT_DNS_DOMAIN
    cert_dir: Path = DEFAULT_CERT_DIR
    kubernetes_dir: Path = KUBERNETES_DIR
    apiserver_cert_sans: list[str] = field(default_factory=list)
    cluster_name: str = "kubernetes"
    external_etcd: ExternalEtcd | None = None  # None: a local (stacked) etcd member on each control-plane node

    @property
    def endpoint(self) -> tuple[str, int]:
        """(host, port) clients use: the control-plane endpoint, else the advertise address."""
        if not self.control_plane_endpoint:
            return self.advertise_address, self.bind_port
        parts = urlsplit(f"//{self.control_plane_endpoint}")
        return parts.hostname or self.advertise_address, parts.port or self.bind_port

    @property
    def endpoint_url(self) -> str:
        return https_url(*self.endpoint)

    @property
    def local_url(self) -> str:
        """This control-plane node's own API server (what its controller manager and scheduler use)."""
        return https_url(self.advertise_address, self.bind_port)

    @property
    def first_service_ip(self) -> str:
        """The kubernetes Service's ClusterIP (the first address of the Service range)."""
        return str(ipaddress.ip_network(self.service_subnet, strict=False)[1])

    def validate(self) -> None:
        for name, value in (("--pod-network-cidr", self.pod_subnet), ("--service-cidr", self.service_subnet)):
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ConfigError(f"{name}: {value!r} is not a CIDR") from None
        try:
            ipaddress.ip_address(self.advertise_address)
        except ValueError:
            raise ConfigError(f"--apiserver-advertise-address: {self.advertise_address!r} is not an IP address") from None
        if not 0 < self.bind_port < 65536:
            raise ConfigError(f"--apiserver-bind-port: {self.bind_port} is not a port")
        if not self.node_name:
            raise ConfigError("--node-name: empty")


def https_url(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"https://[{host}]:{port}" if is_v6 else f"https://{host}:{port}"


def _get(doc: dict[str, Any], path: str, kind: type, where: str) -> Any:
    value: Any = doc
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}: {path} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def load_config(path: Path, config: InitConfig) -> InitConfig:
    """Apply a kubeadm config file (one or more YAML documents) to ``config``."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from None
    for doc in docs:
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a document is not a mapping")
        version, kind = doc.get("apiVersion"), doc.get("kind")
        where = f"{path} ({kind})"
        if version not in API_VERSIONS:
            if kind in ("KubeletConfiguration", "KubeProxyConfiguration"):
                continue  # component configs: taken as they are by the components
            raise ConfigError(f"{path}: apiVersion {version!r} is not one of {', '.join(API_VERSIONS)}")
        if kind == "InitConfiguration":
            if (name := _get(doc, "nodeRegistration.name", str, where)) is not None:
                config.node_name = name
            if (addr := _get(doc, "localAPIEndpoint.advertiseAddress", str, where)) is not None:
                config.advertise_address = addr
            if (port := _get(doc, "localAPIEndpoint.bindPort", int, where)) is not None:
                config.bind_port = port
        elif kind == "ClusterConfiguration":
            apply_cluster_configuration(doc, config, where)
        elif kind not in ("JoinConfiguration", "ResetConfiguration", "UpgradeConfiguration"):
            raise ConfigError(f"{path}: kind {kind!r} is not a kubeadm configuration")
    return config


def apply_cluster_configuration(doc: dict[str, Any], config: InitConfig, where: str) -> InitConfig:
    """Apply a ClusterConfiguration document (from ``--config``, or kubeadm-config on join) to ``config``."""
    for attr, key in (
        ("control_plane_endpoint", "controlPlaneEndpoint"),
        ("pod_subnet", "networking.podSubnet"),
        ("service_subnet", "networking.serviceSubnet"),
        ("dns_domain", "networking.dnsDomain"),
        ("cluster_name", "clusterName"),
    ):
        if (value := _get(doc, key, str, where)) is not None:
            setattr(config, attr, value)
    if (cert_dir := _get(doc, "certificatesDir", str, where)) is not None:
        config.cert_dir = Path(cert_dir)
    if (sans := _get(doc, "apiServer.certSANs", list, where)) is not None:
        config.apiserver_cert_sans = [str(s) for s in sans]
    if _get(doc, "etcd.external", dict, where) is not None:
        endpoints = _get(doc, "etcd.external.endpoints", list, where)
        if not endpoints:
            raise ConfigError(f"{where}: etcd.external.endpoints must list at least one endpoint")
        files = [_get(doc, f"etcd.external.{key}", str, where) or "" for key in ("caFile", "certFile", "keyFile")]
        config.external_etcd = ExternalEtcd([str(e) for e in endpoints], *files)
    return config


def cluster_configuration(config: InitConfig, etcd_data_dir: Path) -> dict[str, Any]:
    """The ClusterConfiguration `k8py init` stores in kubeadm-config (what joining nodes read)."""
    etcd: dict[str, Any]
    if config.external_etcd is None:
        etcd = {"local": {"dataDir": str(etcd_data_dir)}}
    else:
        ext = config.external_etcd
        etcd = {"external": {"endpoints": ext.endpoints, "caFile": ext.ca_file, "certFile": ext.cert_file,
                             "keyFile": ext.key_file}}
    return {
        "apiVersion": API_VERSIONS[0], "kind": "ClusterConfiguration", "clusterName": config.cluster_name,
        "controlPlaneEndpoint": config.control_plane_endpoint, "certificatesDir": str(config.cert_dir),
        "kubernetesVersion": "v1.32.0", "etcd": etcd,
        "networking": {"dnsDomain": config.dns_domain, "podSubnet": config.pod_subnet,
                       "serviceSubnet": config.service_subnet},
        "apiServer": {"certSANs": config.apiserver_cert_sans},
    }
