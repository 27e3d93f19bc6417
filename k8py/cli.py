"""The `k8py` command: one subcommand per component, and `up` for a whole cluster."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from k8py.apiserver.server import APIServerConfig, data_dir_default


class Progress:
    """Concise progress lines with the time since start, on stderr."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def step(self, message: str) -> None:
        click.echo(f"[{time.monotonic() - self.t0:6.3f}s] {message}", err=True)


async def _run_until_signalled(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await start()
        await stopping.wait()
    finally:
        await stop()


def run(main: Awaitable[None]) -> None:
    """Run a component's main coroutine on uvloop (when installed) with GC tuned for a server.

    A server keeps many long-lived objects (the watch cache): freezing what exists after
    start-up keeps them out of every collection, and collecting the young generations less
    often than Python's default costs less without letting garbage grow. Nearly every object
    a write leaves behind survives (it is cached), so a generation-1 collection walks about
    threshold0 x (threshold1 + 1) of them: 50,000 (~10 ms), not the 400,000 (~100 ms pauses
    in the create benchmark's tail) that (20_000, 20) lets pile up."""
    gc.set_threshold(10_000, 4, 100)
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group()
@click.version_option(package_name="k8py")
def main() -> None:
    """k8py: Kubernetes, written in Python."""


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where all state lives (default /var/lib/k8py as root, ~/.local/share/k8py otherwise).")
@click.option("--port", type=int, default=6443, show_default=True, help="HTTPS port of the API server.")
@click.option("--service-cidr", default="10.96.0.0/12", show_default=True)
@click.option("--etcd-compaction-interval", "compaction_interval", type=float, default=300.0, show_default=True,
              help="Seconds between compactions of the store's history (0: never).")
@click.option("--compaction-retain", type=int, default=1000, show_default=True, hidden=True)
@click.option("--disable-scheduler", is_flag=True, help="Do not run the scheduler (as k3s' flag of that name).")
@click.option("--disable-controller-manager", is_flag=True, help="Do not run the controller manager.")
@click.option("--controllers", default="*", show_default=True,
              help="The controller manager's controllers ('*', 'name', '-name'; comma-separated).")
@click.option("--disable-kubelet", is_flag=True, help="Run no node agent (a control plane only, like k3s' --disable-agent).")
@click.option("--runtime", type=click.Choice(["cri", "process", "simulated"]), default=None,
              help="The kubelet's container runtime (default: cri as root with containerd installed, else process).")
@click.option("--node-name", default=None, help="The node's name (default: the host name).")
@click.option("--kubelet-port", type=int, default=10250, show_default=True, help="HTTPS port of the kubelet server.")
@click.option("--disable-metrics-server", is_flag=True, help="Do not serve the resource metrics API (metrics.k8s.io).")
@click.option("--metric-resolution", type=float, default=15.0, show_default=True,
              help="Seconds between scrapes of the kubelets' resource metrics (metrics-server's flag).")
@click.option("-v", "--verbose", is_flag=True)
def up(data_dir: Path | None, port: int, service_cidr: str, compaction_interval: float, compaction_retain: int,
       disable_scheduler: bool, disable_controller_manager: bool, controllers: str, disable_kubelet: bool,
       runtime: str | None, node_name: str | None, kubelet_port: int, disable_metrics_server: bool,
       metric_resolution: float, verbose: bool) -> None:
    """Run a whole single-node cluster in the foreground (Ctrl-C stops it)."""
    from k8py.cluster import Cluster

    _setup_logging(verbose)
    progress = Progress()
    config = APIServerConfig(
        port=port, service_cidr=service_cidr, compaction_interval=compaction_interval, compaction_retain=compaction_retain,
        metrics_server=not disable_metrics_server, metric_resolution=metric_resolution,
    )
    cluster = Cluster(
        data_dir or data_dir_default(),
        config,
        progress.step,
        scheduler=not disable_scheduler,
        controller_manager=not disable_controller_manager,
        controllers=controllers,
        kubelet=not disable_kubelet,
        runtime=runtime,
        node_name=node_name,
        kubelet_port=kubelet_port,
    )

    async def start() -> None:
        await cluster.start()
        click.echo(f"export KUBECONFIG={cluster.kubeconfig}")
        progress.step("cluster ready (Ctrl-C to stop)")

    async def stop() -> None:
        progress.step("stopping")
        await cluster.stop()
        progress.step("stopped")

    try:
        run(_run_until_signalled(start, stop))
    except OSError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Holds the store (state.db) and, unless --pki-dir is given, the PKI.")
@click.option("--pki-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--bind-address", default="127.0.0.1", show_default=True)
@click.option("--port", "--secure-port", type=int, default=6443, show_default=True)
@click.option("--service-cluster-ip-range", "service_cidr", default="10.96.0.0/12", show_default=True)
@click.option("--disable-metrics-server", is_flag=True, help="Do not serve the resource metrics API (metrics.k8s.io).")
@click.option("--metric-resolution", type=float, default=15.0, show_default=True,
              help="Seconds between scrapes of the kubelets' resource metrics (metrics-server's flag).")
@click.option("-v", "--verbose", is_flag=True)
def apiserver(data_dir: Path | None, pki_dir: Path | None, bind_address: str, port: int, service_cidr: str,
              disable_metrics_server: bool, metric_resolution: float, verbose: bool) -> None:
    """Run the API server alone (kube-apiserver)."""
    from k8py.cluster import start_apiserver

    _setup_logging(verbose)
    progress = Progress()
    base = data_dir or data_dir_default()
    config = APIServerConfig(bind_address=bind_address, port=port, service_cidr=service_cidr,
                             metrics_server=not disable_metrics_server, metric_resolution=metric_resolution)
    holder: list = []

    async def start() -> None:
        holder.append(await start_apiserver(base, pki_dir or base / "pki", config, progress.step))

    async def stop() -> None:
        if holder:
            await holder[0].stop()

    try:
        run(_run_until_signalled(start, stop))
    except OSError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Kubeconfig to reach the API server (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A KubeSchedulerConfiguration file.")
@click.option("--bind-address", default="127.0.0.1", show_default=True, help="Address of /healthz and /metrics.")
@click.option("--port", type=int, default=10251, show_default=True, help="HTTP port of /healthz and /metrics (0: off).")
@click.option("--leader-elect/--no-leader-elect", default=None,
              help="Take part in leader election (default: the configuration's leaderElection.leaderElect).")
@click.option("-v", "--verbose", is_flag=True)
def scheduler(kubeconfig: Path | None, config_file: Path | None, bind_address: str, port: int,
              leader_elect: bool | None, verbose: bool) -> None:
    """Run the scheduler (kube-scheduler)."""
    from k8py.client import ConfigError, RESTClient
    from k8py.scheduler.app import SchedulerApp
    from k8py.scheduler.config import ConfigError as SchedulerConfigError
    from k8py.scheduler.config import load_configuration

    _setup_logging(verbose)
    progress = Progress()
    try:
        config = load_configuration(config_file)
        client = RESTClient.from_kubeconfig(kubeconfig, component="kube-scheduler")
    except (ConfigError, SchedulerConfigError) as e:
        raise click.ClickException(str(e)) from None
    holder: list[SchedulerApp] = []

    async def start() -> None:
        app = SchedulerApp(client, config, bind_address=bind_address, port=port, leader_elect=leader_elect)
        holder.append(app)
        await app.start()
        profiles = ", ".join(app.scheduler.profiles)
        progress.step(f"scheduler started (profiles: {profiles}; leader election {'on' if app.leader_elect else 'off'})")

    async def stop() -> None:
        if holder:
            await holder[0].stop()
        await client.close()
        progress.step("stopped")

    try:
        run(_run_until_signalled(start, stop))
    except OSError as e:
        raise click.ClickException(str(e)) from None


def _key_values(items: tuple[str, ...], option: str) -> dict[str, str]:
    """KEY=VALUE arguments as a dict."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        result[key] = value
    return result


@main.command("controller-manager")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Kubeconfig to reach the API server (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--controllers", default="*", show_default=True,
              help="Controllers to run: '*' for all, 'name' to add one, '-name' to leave one out (comma-separated).")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True, help="The pod network (node IPAM).")
@click.option("--service-cluster-ip-range", "service_cidr", default="10.96.0.0/12", show_default=True)
@click.option("--allocate-node-cidrs/--no-allocate-node-cidrs", default=True, show_default=True)
@click.option("--node-cidr-mask-size", type=int, default=24, show_default=True)
@click.option("--node-monitor-grace-period", type=float, default=40.0, show_default=True,
              help="Seconds without a node heartbeat before the node is marked unhealthy.")
@click.option("--node-monitor-period", type=float, default=5.0, show_default=True,
              help="Seconds between two checks of the nodes' heartbeats (node lifecycle).")
@click.option("--node-startup-grace-period", type=float, default=60.0, show_default=True,
              help="Seconds a new node may take to post its first status before it is marked unhealthy.")
@click.option("--root-ca-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="CA bundle published in every namespace as kube-root-ca.crt (default: the kubeconfig's CA).")
@click.option("--terminated-pod-gc-threshold", type=int, default=12500, show_default=True,
              help="Terminated pods kept before the pod garbage collector deletes the oldest (0: no limit).")
@click.option("--controller-option", "controller_options", multiple=True, metavar="KEY=VALUE",
              help="A controller knob (Options.extra), e.g. podgc-quarantine=2; repeatable, for tests.")
@click.option("--leader-elect/--no-leader-elect", default=True, show_default=True)
@click.option("-v", "--verbose", is_flag=True)
def controller_manager(kubeconfig: Path | None, controllers: str, cluster_cidr: str, service_cidr: str,
                       allocate_node_cidrs: bool, node_cidr_mask_size: int, node_monitor_grace_period: float,
                       root_ca_file: str | None, leader_elect: bool, verbose: bool,
                       terminated_pod_gc_threshold: int = 12500, controller_options: tuple[str, ...] = (),
                       node_monitor_period: float = 5.0, node_startup_grace_period: float = 60.0) -> None:
    """Run the controllers (kube-controller-manager)."""
    from k8py.client import ConfigError, RESTClient
    from k8py.controllers.manager import ControllerManager, Options, UnknownController

    _setup_logging(verbose)
    progress = Progress()
    options = Options(
        cluster_cidr=cluster_cidr,
        service_cidr=service_cidr,
        allocate_node_cidrs=allocate_node_cidrs,
        node_cidr_mask_size=node_cidr_mask_size,
        node_monitor_grace_period=node_monitor_grace_period,
        node_monitor_period=node_monitor_period,
        node_startup_grace_period=node_startup_grace_period,
        terminated_pod_gc_threshold=terminated_pod_gc_threshold,
        extra=_key_values(controller_options, "--controller-option"),
        root_ca_file=root_ca_file,
    )
    try:
        client = RESTClient.from_kubeconfig(kubeconfig, component="kube-controller-manager")
        manager = ControllerManager(client, controllers=controllers, options=options, leader_elect=leader_elect)
    except (ConfigError, UnknownController) as e:
        raise click.ClickException(str(e)) from None

    async def start() -> None:
        await manager.start()
        progress.step(f"controller manager started ({', '.join(manager.names)}; "
                      f"leader election {'on' if leader_elect else 'off'})")

    async def stop() -> None:
        await manager.stop()
        await client.close()
        progress.step("stopped")

    try:
        run(_run_until_signalled(start, stop))
    except OSError as e:
        raise click.ClickException(str(e)) from None


@main.command("hollow-nodes")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--count", type=int, default=1, show_default=True)
@click.option("--prefix", default="hollow-node-", show_default=True)
@click.option("--cpu", default="4", show_default=True)
@click.option("--memory", default="16Gi", show_default=True)
@click.option("--pods", default="110", show_default=True)
@click.option("-l", "--label", "labels", multiple=True, help="key=value label for every node (repeatable).")
@click.option("-v", "--verbose", is_flag=True)
def hollow_nodes(kubeconfig: Path | None, count: int, prefix: str, cpu: str, memory: str, pods: str,
                 labels: tuple[str, ...], verbose: bool) -> None:
    """Run hollow nodes (kubemark): Nodes whose pods are reported running, nothing run."""
    from k8py.client import ConfigError, RESTClient
    from k8py.kubemark.hollow import HollowNodes

    _setup_logging(verbose)
    progress = Progress()
    try:
        client = RESTClient.from_kubeconfig(kubeconfig, component="kubemark")
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    label_map = dict(item.split("=", 1) for item in labels)
    nodes = HollowNodes(client, [f"{prefix}{i}" for i in range(count)], cpu=cpu, memory=memory, pods=pods,
                        labels=label_map)

    async def start() -> None:
        await nodes.start()
        progress.step(f"{count} hollow node(s) registered ({prefix}0 ...)")

    async def stop() -> None:
        await nodes.stop()
        await client.close()

    try:
        run(_run_until_signalled(start, stop))
    except OSError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Kubeconfig of the node's credentials (default: $KUBECONFIG or ~/.kube/config).")
@click.option("--node-name", default=None, help="The Node's name (default: the host name).")
@click.option("--root-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the kubelet keeps pods, logs and its runtime (default: /var/lib/k8py/kubelet as root).")
@click.option("--runtime", type=click.Choice(["cri", "process", "simulated"]), default=None,
              help="Container runtime (default: cri as root with containerd installed, else process).")
@click.option("--pod-manifest-path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of static pod manifests.")
@click.option("--node-ip", default=None, help="The node's InternalIP (default: the default route's interface address).")
@click.option("--port", type=int, default=10250, show_default=True, help="HTTPS port of the kubelet server.")
@click.option("--cluster-dns", default="", help="Comma-separated DNS server IPs for pods.")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--max-pods", type=int, default=110, show_default=True)
@click.option("--node-labels", default="", help="key=value[,key=value] labels to register the node with.")
@click.option("--system-reserved", default="", help="resource=quantity[,...] reserved for the system.")
@click.option("--simulated-job-seconds", type=float, default=5.0, show_default=True,
              help="With --runtime simulated: how long a Job's pod runs before it succeeds.")
@click.option("--eviction-hard", default="memory.available<100Mi,nodefs.available<10%", show_default=True,
              help="Hard eviction thresholds: signal<quantity|percent[,...].")
@click.option("--eviction-interval", type=float, default=10.0, hidden=True,
              help="Seconds between the eviction manager's looks at the signals.")
@click.option("-v", "--verbose", is_flag=True)
def kubelet(kubeconfig: Path | None, node_name: str | None, root_dir: Path | None, runtime: str | None,
            pod_manifest_path: Path | None, node_ip: str | None, port: int, cluster_dns: str, cluster_domain: str,
            max_pods: int, node_labels: str, system_reserved: str, simulated_job_seconds: float,
            eviction_hard: str, eviction_interval: float, verbose: bool) -> None:
    """Run the node agent: register the Node and run the pods bound to it."""
    import socket

    from k8py.client import ConfigError, RESTClient
    from k8py.kubelet.app import KubeletApp, choose_runtime
    from k8py.kubelet.eviction import parse_thresholds
    from k8py.kubelet.kubelet import KubeletConfig
    from k8py.kubelet.nodestatus import default_host_ip

    _setup_logging(verbose)
    progress = Progress()
    try:
        client = RESTClient.from_kubeconfig(kubeconfig, component="kubelet")
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    chosen, why = choose_runtime(runtime)
    progress.step(f"runtime: {chosen} ({why})")
    config = KubeletConfig(
        node_name=(node_name or socket.gethostname()).lower(),
        root_dir=(root_dir or data_dir_default() / "kubelet").absolute(),
        host_ip=node_ip or default_host_ip(),
        port=port,
        pod_manifest_path=pod_manifest_path.absolute() if pod_manifest_path else None,
        cluster_dns=[s for s in cluster_dns.split(",") if s],
        cluster_domain=cluster_domain,
        max_pods=max_pods,
        node_labels=_key_values(tuple(s for s in node_labels.split(",") if s), "--node-labels"),
        reserved=_key_values(tuple(s for s in system_reserved.split(",") if s), "--system-reserved"),
        eviction_hard=eviction_hard,
        eviction_interval=eviction_interval,
    )
    try:
        parse_thresholds(eviction_hard)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--eviction-hard") from None
    app = KubeletApp(client, config, chosen, progress=progress.step, simulated_job_seconds=simulated_job_seconds)

    async def stop() -> None:
        await app.stop()
        await client.close()

    try:
        run(_run_until_signalled(app.start, stop))
    except OSError as e:
        raise click.ClickException(str(e)) from None


def _kubelet_root(data_dir: Path | None, root_dir: Path | None) -> Path:
    return (root_dir or (data_dir or data_dir_default()) / "kubelet").absolute()


@main.group()
def image() -> None:
    """Images of the node's container runtime (the cri runtime's containerd)."""


@image.command("import")
@click.argument("tarballs", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The `k8py up` data dir (its kubelet root is DIR/kubelet).")
@click.option("--root-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The kubelet's --root-dir (instead of --data-dir).")
def image_import(tarballs: tuple[Path, ...], data_dir: Path | None, root_dir: Path | None) -> None:
    """Import OCI or docker-archive tarballs into the node's runtime.

    With the node's containerd running they are imported now; otherwise they are copied to
    <root-dir>/images, which the kubelet imports when it starts (k3s' air-gap convention)."""
    import shutil

    from k8py.kubelet.runtime.cri.containerd import Containerd

    root = _kubelet_root(data_dir, root_dir)
    containerd = Containerd(root)
    if containerd.serving():
        for tar in tarballs:
            try:
                refs = asyncio.run(containerd.import_image(tar.absolute()))
            except RuntimeError as e:
                raise click.ClickException(str(e)) from None
            click.echo(f"{tar}: imported {', '.join(refs)}")
        return
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for tar in tarballs:
        shutil.copyfile(tar, images / tar.name)
        click.echo(f"{tar}: copied to {images}; imported when the kubelet starts")


@image.command("ls")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--root-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def image_ls(data_dir: Path | None, root_dir: Path | None) -> None:
    """List the images of the node's runtime."""
    from k8py.kubelet.runtime.cri.containerd import Containerd

    containerd = Containerd(_kubelet_root(data_dir, root_dir))
    if not containerd.serving():
        raise click.ClickException(f"no containerd is serving {containerd.address}: is the kubelet (cri) running?")
    for ref in asyncio.run(containerd.list_images()):
        if not ref.startswith("sha256:"):
            click.echo(ref)


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The `k8py up` data dir (its kubelet root is DIR/kubelet).")
@click.option("--root-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The kubelet's --root-dir (instead of --data-dir).")
def killall(data_dir: Path | None, root_dir: Path | None) -> None:
    """Stop every pod of a stopped node, its containerd and its bridge (like k3s-killall.sh).

    Stopping `k8py up` or `k8py kubelet` leaves pods running, so that a restart adopts them."""
    from k8py.kubelet.app import killall as kill_node

    progress = Progress()
    root = _kubelet_root(data_dir, root_dir)
    if not root.is_dir():
        raise click.ClickException(f"{root} does not exist")
    asyncio.run(kill_node(root, progress.step))


@main.command("simulated-nodes")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--count", type=int, default=1, show_default=True)
@click.option("--prefix", default="sim-", show_default=True, help="Node names are <prefix><000..>.")
@click.option("--root-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the kubelets keep their (few) files (default: a temporary directory).")
@click.option("--job-seconds", type=float, default=5.0, show_default=True,
              help="How long a Job's pod runs before it succeeds.")
@click.option("-v", "--verbose", is_flag=True)
def simulated_nodes(kubeconfig: Path | None, count: int, prefix: str, root_dir: Path | None, job_seconds: float,
                    verbose: bool) -> None:
    """Run N kubelets with the simulated runtime in one process (like kwok): pods live, nothing runs."""
    import tempfile

    from k8py.client import ConfigError, RESTClient
    from k8py.kubelet.kubelet import Kubelet, KubeletConfig
    from k8py.kubelet.runtime.simulated import SimulatedRuntime

    _setup_logging(verbose)
    progress = Progress()
    try:
        # one watch per node stays open: room for them and for the requests
        client = RESTClient.from_kubeconfig(kubeconfig, component="kubelet", max_connections=count + 256)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    root = (root_dir or Path(tempfile.mkdtemp(prefix="k8py-sim-"))).absolute()
    width = max(3, len(str(count - 1)))
    kubelets = [
        Kubelet(
            client,
            KubeletConfig(node_name=f"{prefix}{i:0{width}d}", root_dir=root / f"{prefix}{i:0{width}d}", port=0),
            {"": SimulatedRuntime(job_seconds=job_seconds)},
        )
        for i in range(count)
    ]

    async def start() -> None:
        await asyncio.gather(*(k.start() for k in kubelets))
        progress.step(f"{count} simulated node(s) registered ({kubelets[0].config.node_name} ...)")

    async def stop() -> None:
        await asyncio.gather(*(k.stop() for k in kubelets))
        await client.close()

    try:
        run(_run_until_signalled(start, stop))
    except OSError as e:
        raise click.ClickException(str(e)) from None


if __name__ == "__main__":
    main()
