"""The kubelet as a component: choosing the runtime, owning containerd, and running the agent.

``--runtime cri`` runs k8py's own containerd (under ``<root-dir>/containerd``, like k3s), imports
the offline pause image and any tarball in ``<root-dir>/images`` (k3s' air-gap convention), and
talks CRI to it; ``process`` and ``simulated`` need nothing. Without ``--runtime`` the choice is
``cri`` when running as root with containerd, runc and the CNI plugins installed, ``process``
otherwise, and the reason is reported. Every kubelet also has the ``process`` runtime under the
RuntimeClass handler ``process``, for static pods of k8py's own control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from k8py.bootstrap.pki import atomic_write, create_ca, issue_serving_cert, save_pair
from k8py.client import RESTClient, load_kubeconfig
from k8py.kubelet.certificate import (
    SERVER_PAIR,
    CertificateOptions,
    FileStore,
    client_manager,
    load_client_cert,
    rotating_client_config,
    serving_manager,
    serving_template,
    still_valid,
)
from k8py.kubelet.kubelet import Kubelet, KubeletConfig
from k8py.kubelet.runtime.interface import Runtime
from k8py.kubelet.runtime.process import ProcessRuntime
from k8py.kubelet.runtime.simulated import SimulatedRuntime
from k8py.kubelet.server import KubeletServer, KubeletServerConfig

if TYPE_CHECKING:
    from k8py.kubelet.runtime.cri.containerd import Containerd

log = logging.getLogger(__name__)

RUNTIMES = ("cri", "process", "simulated")
PROCESS_HANDLER = "process"


def choose_runtime(requested: str | None) -> tuple[str, str]:
    """(runtime, why) for ``--runtime`` (None: automatic)."""
    from k8py.kubelet.runtime.cri.containerd import Containerd

    if requested:
        return requested, "as requested"
    if Containerd.available():
        return "cri", "running as root with containerd, runc and the CNI plugins installed"
    import os

    if os.geteuid() != 0:
        return "process", "not running as root"
    return "process", "containerd, runc or the CNI plugins are not installed"


def bridge_name(root: Path) -> str:
    """The node's CNI bridge, distinct per kubelet root (interface names have at most 15 bytes)."""
    return "k8py-" + hashlib.sha256(str(root).encode()).hexdigest()[:8]


class KubeletApp:
    """One kubelet and the runtimes (and containerd) it owns."""

    def __init__(
        self,
        client: RESTClient | None,
        config: KubeletConfig,
        runtime: str,
        *,
        progress: Callable[[str], None] = lambda _m: None,
        simulated_job_seconds: float = 5.0,
        certificates: CertificateOptions | None = None,
    ) -> None:
        """`client` None: made at start from `certificates` (bootstrapping first when asked to)."""
        self.client = client
        self.config = config
        self.runtime = runtime
        self.progress = progress
        self.simulated_job_seconds = simulated_job_seconds
        self.certificates = certificates or CertificateOptions()
        self.containerd: Containerd | None = None
        self.kubelet: Kubelet | None = None
        self.server: KubeletServer | None = None
        self._rotations: list[asyncio.Task[None]] = []

    async def _make_client(self) -> RESTClient:
        """LoadClientCert (with --bootstrap-kubeconfig), then a client whose certificate may rotate."""
        opts, pki = self.certificates, self.config.root_dir / "pki"
        if opts.kubeconfig is None:
            raise ValueError("the kubelet needs a kubeconfig (or a bootstrap kubeconfig)")
        if opts.bootstrap_kubeconfig is not None and await load_client_cert(
            opts.kubeconfig, opts.bootstrap_kubeconfig, pki, self.config.node_name
        ):
            self.progress(f"kubelet: client certificate bootstrapped with {opts.bootstrap_kubeconfig}, "
                          f"{opts.kubeconfig} written")
        config = load_kubeconfig(opts.kubeconfig)
        if opts.rotate_certificates:
            config = rotating_client_config(config, pki)
        return RESTClient(config, component="kubelet")

    async def start(self) -> None:
        root = self.config.root_dir
        root.mkdir(parents=True, exist_ok=True)
        client = self.client = self.client or await self._make_client()
        process = ProcessRuntime(root / "process", host_ip=self.config.host_ip)
        default: Runtime
        if self.runtime == "cri":
            default = await self._start_containerd(root)
        elif self.runtime == "simulated":
            default = SimulatedRuntime(job_seconds=self.simulated_job_seconds)
        else:
            default = process
        runtimes: dict[str, Runtime] = {"": default, PROCESS_HANDLER: process}
        self.kubelet = Kubelet(client, self.config, runtimes)
        if self.config.port:
            self.server = KubeletServer(self.kubelet, self._server_config(client))
            await self.server.start()
        await self.kubelet.start()
        state = "registered" if self.kubelet.registered.is_set() else "not registered yet (the API server does not answer)"
        self.progress(f"kubelet: node {self.config.node_name} {state} ({self.runtime} runtime)")
        self._start_rotations(client)

    def _start_rotations(self, client: RESTClient) -> None:
        """--rotate-certificates and --rotate-server-certificates: the certificate managers."""
        pki, name = self.config.root_dir / "pki", self.config.node_name
        managers = []
        if self.certificates.rotate_certificates:
            managers.append(client_manager(client, pki, name))
        if self.certificates.rotate_server_certificates and self.server is not None:
            context = self.server.ssl_context
            assert context is not None
            template = serving_template(name, [name], [self.config.host_ip])
            managers.append(serving_manager(client, pki, lambda: template, context.load_cert_chain))
        self._rotations = [asyncio.create_task(m.run(), name=f"kubelet-{m.store.pair}-rotation") for m in managers]

    def _server_config(self, client: RESTClient) -> KubeletServerConfig:
        """TLS of the kubelet server: the given files, else (as the kubelet does) a self-signed
        certificate in <root>/pki; clients must present a certificate of the kubeconfig's CA."""
        pki = self.config.root_dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        cert, key = self.config.tls_cert_file, self.config.tls_private_key_file
        serving = FileStore(pki, SERVER_PAIR)
        if self.certificates.rotate_server_certificates and (current := serving.current()) and still_valid(current):
            cert = key = str(serving.current_path)
        if not cert:
            cert, key = str(pki / "kubelet.crt"), str(pki / "kubelet.key")
            if not Path(cert).exists():
                ca = create_ca(f"{self.config.node_name}-ca@{int(time.time())}")
                pair = issue_serving_cert(
                    ca, self.config.node_name, [self.config.node_name, "localhost"], [self.config.host_ip, "127.0.0.1"]
                )
                save_pair(pair, Path(cert), Path(key))
        client_ca = self.config.client_ca_file
        if not client_ca:
            if client.config.ca_pem is None:
                raise RuntimeError("the kubelet server needs --client-ca-file (the kubeconfig has no CA)")
            client_ca = str(pki / "client-ca.crt")
            atomic_write(Path(client_ca), client.config.ca_pem, mode=0o644)
        return KubeletServerConfig(
            tls_cert_file=cert, tls_private_key_file=key, client_ca_file=client_ca, port=self.config.port
        )

    async def _start_containerd(self, root: Path) -> Runtime:
        from k8py.kubelet.runtime.cri.containerd import Containerd, write_cni_config
        from k8py.kubelet.runtime.cri.runtime import CRIRuntime

        containerd = Containerd(root)
        await containerd.start()
        self.containerd = containerd
        self.progress(f"containerd running (pid {containerd.pid}, socket {containerd.address})")
        images = root / "images"
        images.mkdir(exist_ok=True)
        for tar in sorted(images.glob("*.tar")):
            refs = await containerd.import_image(tar)
            self.progress(f"imported {tar.name}: {', '.join(refs)}")
        bridge = bridge_name(root)

        async def on_pod_cidr(cidr: str) -> None:
            write_cni_config(containerd.cni_conf_dir, cidr, bridge=bridge)

        self.config.on_pod_cidr = on_pod_cidr
        runtime = CRIRuntime(containerd.address)
        return runtime

    async def stop(self, *, stop_containerd: bool = True) -> None:
        for task in self._rotations:
            task.cancel()
        await asyncio.gather(*self._rotations, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self.containerd is not None and stop_containerd:
            await self.containerd.stop()


async def killall(root: Path, progress: Callable[[str], None] = lambda _m: None) -> None:
    """Stop and remove every pod a kubelet with this root dir runs, stop its containerd and remove
    its CNI bridge (k3s' killall): what stopping a node leaves running, by design, goes."""
    import subprocess

    from k8py.kubelet.runtime.interface import CRIError
    from k8py.kubelet.volumes.manager import tear_down_pod_dir

    state = root / "process"
    if state.is_dir():
        process = ProcessRuntime(state)
        await process.start()
        for sb in await process.list_pod_sandboxes():
            await process.remove_pod_sandbox(sb.id)
        await process.stop()
        progress("process runtime: every container stopped")
    from k8py.kubelet.runtime.cri.containerd import Containerd

    containerd = Containerd(root)
    if containerd.config_path.exists() and Containerd.available():
        from k8py.kubelet.runtime.cri.runtime import CRIRuntime

        await containerd.start()
        runtime = CRIRuntime(containerd.address)
        await runtime.start()
        sandboxes = await runtime.list_pod_sandboxes()
        for sb in sandboxes:
            with contextlib.suppress(CRIError):
                await runtime.stop_pod_sandbox(sb.id)
                await runtime.remove_pod_sandbox(sb.id)
        await runtime.stop()
        await containerd.stop()
        progress(f"containerd: {len(sandboxes)} pod sandbox(es) removed, containerd stopped")
    pods = root / "pods"
    for pod_dir in sorted(pods.iterdir()) if pods.is_dir() else []:
        tear_down_pod_dir(str(pod_dir))
    if Containerd.available():  # the node add-ons' kernel state: kube-proxy, network agent, policies
        await _clean_node_network()
        progress("kube-proxy, NAT and NetworkPolicy tables and the agent's routes removed")
    bridge = bridge_name(root)
    if Path(f"/sys/class/net/{bridge}").exists():
        subprocess.run(["ip", "link", "delete", bridge], check=False)
        progress(f"bridge {bridge} removed")


async def _clean_node_network() -> None:
    from k8py.network.policy.nftables import NFTables
    from k8py.network.routes import SERVICE_LINK, RouteTable, delete_nat
    from k8py.proxy.proxier import cleanup_leftovers

    await cleanup_leftovers()
    await NFTables(("nft",)).delete_table()
    with contextlib.suppress(RuntimeError):
        await delete_nat()
    table = RouteTable()
    await table.open()
    try:
        await table.flush()
        await table.delete_link(SERVICE_LINK)
    finally:
        await table.close()
