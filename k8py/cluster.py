"""A whole cluster in one process: what `k8py up` runs (like k3s' `server`).

Every component still talks to the others only through the API; running them
in one event loop only saves memory and start-up time. Components are added
here as they come into being (scheduler, controller manager, kubelet, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from k8py.apiserver.server import APIServer, APIServerConfig, hostnames
from k8py.bootstrap.kubeconfig import component_kubeconfig, write_kubeconfig
from k8py.bootstrap.pki import (
    PKIPaths,
    ensure_client_cert,
    ensure_pki,
    issue_serving_cert,
    load_ca,
    save_pair,
)
from k8py.client import RESTClient
from k8py.netutil import primary_ip
from k8py.storage.backend import StorageBackend

if TYPE_CHECKING:
    from k8py.controllers.manager import ControllerManager
    from k8py.kubelet.app import KubeletApp
    from k8py.kubelet.kubelet import KubeletConfig
    from k8py.scheduler.app import SchedulerApp

async def start_apiserver(
    data_dir: Path, pki_dir: Path | PKIPaths, config: APIServerConfig, progress: Callable[[str], None],
    storage: StorageBackend | None = None,
) -> APIServer:
    """The API server on `storage` (default: the SQLite store in ``data_dir``). ``pki_dir``: a directory
    where it makes and keeps its own certificates, or the PKIPaths of given files (--tls-cert-file...)."""
    storage = storage or StorageBackend()
    data_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(pki_dir, PKIPaths):
        pki = pki_dir
        progress(f"certificates from {pki.apiserver_cert}, clients of {pki.ca_cert}")
    else:
        ips = [config.bind_address] if config.bind_address not in ("0.0.0.0", "::") else []
        if config.serve_advertise_address:
            config.advertise_address = config.advertise_address or primary_ip()
            ips.append(config.advertise_address)
        pki = ensure_pki(pki_dir, hostnames(), ips)
        progress(f"certificates ready in {pki_dir}")
        if not config.kubelet_client_certificate:  # kubeadm's apiserver-kubelet-client
            ensure_client_cert(pki_dir, "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                               ["kubeadm:cluster-admins"])
            config.kubelet_client_certificate = str(pki_dir / "apiserver-kubelet-client.crt")
            config.kubelet_client_key = str(pki_dir / "apiserver-kubelet-client.key")
    server = APIServer(storage.create(data_dir), pki, config)
    await server.start()
    progress(f"API server listening on {server.url} ({storage.describe(data_dir)}, revision {server.cache.revision})")
    return server


class Cluster:
    def __init__(
        self,
        data_dir: Path,
        config: APIServerConfig,
        progress: Callable[[str], None],
        *,
        scheduler: bool = True,
        controller_manager: bool = True,
        controllers: str = "*",
        kubelet: bool = True,
        runtime: str | None = None,
        node_name: str | None = None,
        kubelet_port: int = 10250,
        network: bool = True,
        cluster_cidr: str = "10.244.0.0/16",
        resolv_conf: Path = Path("/etc/resolv.conf"),
        storage: StorageBackend | None = None,
    ) -> None:
        self.storage = storage
        self.cluster_cidr = cluster_cidr
        self.resolv_conf = resolv_conf
        self.controllers = controllers
        self.run_kubelet = kubelet
        self.runtime = runtime
        self.node_name = node_name
        self.kubelet_port = kubelet_port
        self.network = network
        self.runtime_choice: tuple[str, str] | None = None
        self.run_scheduler = scheduler
        self.run_controller_manager = controller_manager
        self.data_dir = data_dir
        self.config = config
        self.progress = progress
        self.kubeconfig = data_dir / "kubeconfig.yaml"
        self.apiserver: APIServer | None = None
        self.clients: list[RESTClient] = []
        self.scheduler: SchedulerApp | None = None
        self.controller_manager: ControllerManager | None = None
        self.kubelet: KubeletApp | None = None

    async def start(self) -> None:
        if self.run_kubelet:
            from k8py.kubelet.app import choose_runtime

            self.runtime_choice = choose_runtime(self.runtime)
            # pods with a network of their own reach the API through the kubernetes Service
            self.config.serve_advertise_address = self.runtime_choice[0] == "cri"
        self.apiserver = await start_apiserver(self.data_dir, self.data_dir / "pki", self.config, self.progress,
                                               self.storage)
        pki = self.apiserver.pki
        assert pki is not None
        write_kubeconfig(
            self.kubeconfig,
            f"https://127.0.0.1:{self.config.port}",
            pki.ca_cert.read_bytes(),
            pki.admin_cert.read_bytes(),
            pki.admin_key.read_bytes(),
        )
        self.progress(f"admin kubeconfig written to {self.kubeconfig}")
        if self.run_scheduler:
            from k8py.scheduler.app import SchedulerApp

            self.scheduler = SchedulerApp(self._client("scheduler", "system:kube-scheduler"))
            await self.scheduler.start()
            self.progress("scheduler started")
        if self.run_controller_manager:
            from k8py.controllers.manager import ControllerManager, Options

            options = Options(
                service_cidr=self.config.service_cidr, cluster_cidr=self.cluster_cidr, root_ca_file=str(pki.ca_cert),
                cluster_signing_cert_file=str(pki.ca_cert), cluster_signing_key_file=str(pki.ca_key),
                service_account_private_key_file=str(pki.sa_key),
            )
            self.controller_manager = ControllerManager(
                self._client("controller-manager", "system:kube-controller-manager"),
                controllers=self.controllers,
                options=options,
                use_service_account_credentials="RBAC" in self.config.authorization_modes,
            )
            await self.controller_manager.start()
            self.progress(f"controller manager started ({len(self.controller_manager.names)} controllers)")
        if self.run_kubelet:
            await self._start_kubelet()

    async def _start_kubelet(self) -> None:
        import socket

        from k8py.kubelet.app import KubeletApp, choose_runtime
        from k8py.kubelet.kubelet import KubeletConfig

        runtime, why = self.runtime_choice or choose_runtime(self.runtime)
        self.progress(f"container runtime: {runtime} ({why})")
        name = (self.node_name or socket.gethostname()).lower()
        config = KubeletConfig(
            node_name=name,
            host_ip=primary_ip(),
            root_dir=self.data_dir / "kubelet",
            port=self.kubelet_port,
            pod_manifest_path=self.data_dir / "manifests",
            resolv_conf=str(self.resolv_conf),
        )
        # A burst of pods would open a TLS connection per concurrent request; a few, kept alive, do.
        client = self._client("kubelet", f"system:node:{name}", organizations=("system:nodes",), max_connections=16)
        pki = self.apiserver.pki if self.apiserver is not None else None
        assert pki is not None
        serving = pki.directory / "kubelet-serving.crt"
        if not serving.exists():
            pair = issue_serving_cert(load_ca(pki.ca_cert, pki.ca_key), name, [name, "localhost"],
                                      [config.host_ip, "127.0.0.1"])
            save_pair(pair, serving, pki.directory / "kubelet-serving.key")
        config.tls_cert_file = str(serving)
        config.tls_private_key_file = str(pki.directory / "kubelet-serving.key")
        config.client_ca_file = str(pki.ca_cert)
        if runtime == "cri" and self.network:
            await self._node_addons(config)
        self.kubelet = KubeletApp(client, config, runtime, progress=self.progress)
        await self.kubelet.start()

    async def _node_addons(self, config: KubeletConfig) -> None:
        """kube-proxy, the network agent and cluster DNS as static pods on the process runtime."""
        from k8py.bootstrap.addons import (
            addon_manifests,
            addon_user_rbac,
            dns_service_ip,
            ensure_dns_service,
            write_manifests,
        )
        from k8py.client.ensure import ensure_objects

        assert config.pod_manifest_path is not None
        kubeconfigs = {
            "kube-proxy": self._kubeconfig("kube-proxy", "system:kube-proxy"),
            "network": self._kubeconfig("network-agent", "system:k8py-network-agent"),
            "dns": self._kubeconfig("dns", "system:k8py-dns"),
        }
        manifests = addon_manifests(
            node_name=config.node_name, node_ip=config.host_ip, cluster_cidr=self.cluster_cidr,
            service_cidr=self.config.service_cidr, cluster_domain=config.cluster_domain, kubeconfigs=kubeconfigs,
            resolv_conf=config.resolv_conf,
        )
        write_manifests(config.pod_manifest_path, manifests)
        async with RESTClient.from_kubeconfig(self.kubeconfig, component="k8py-up") as admin:
            await ensure_dns_service(admin, self.config.service_cidr)
            await ensure_objects(admin, addon_user_rbac("system:k8py-network-agent", "system:k8py-dns"))
        config.cluster_dns = [dns_service_ip(self.config.service_cidr)]
        self.progress(f"node add-ons: {', '.join(p['metadata']['name'] for p in manifests.values())} "
                      f"(static pods); cluster DNS at {config.cluster_dns[0]}")

    def _client(
        self, stem: str, user: str, organizations: tuple[str, ...] = (), *, max_connections: int = 256
    ) -> RESTClient:
        """A client for a component, with its own certificate and kubeconfig (as kubeadm writes them)."""
        path = self._kubeconfig(stem, user, organizations)
        client = RESTClient.from_kubeconfig(path, component=user, max_connections=max_connections)
        self.clients.append(client)
        return client

    def _kubeconfig(self, stem: str, user: str, organizations: tuple[str, ...] = ()) -> Path:
        """``<data-dir>/<stem>.conf`` for a component, with its own client certificate."""
        pki = self.apiserver.pki if self.apiserver is not None else None
        assert pki is not None
        return component_kubeconfig(
            pki.directory, self.data_dir / f"{stem}.conf", f"https://127.0.0.1:{self.config.port}", stem, user,
            organizations,
        )

    async def stop(self) -> None:
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self.controller_manager is not None:
            await self.controller_manager.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        for client in self.clients:
            await client.close()
        if self.apiserver is not None:
            await self.apiserver.stop()
