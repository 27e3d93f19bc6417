"""The `k8py` command: one subcommand per component, and `up` for a whole cluster."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from k8py.apiserver.authorization import AUTHORIZATION_MODES, parse_modes
from k8py.apiserver.server import APIServerConfig, data_dir_default
from k8py.bootstrap.pki import PKIPaths
from k8py.clioptions import options as apply_options
from k8py.storage.interface import StoreError

if TYPE_CHECKING:
    from k8py.client import RESTClient
    from k8py.storage.backend import StorageBackend


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


def _serve(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    errors: tuple[type[Exception], ...] = (OSError,),
) -> None:
    """Run a component until SIGINT/SIGTERM; ``errors`` (a port in use, ...) end it with a clean message."""
    try:
        run(_run_until_signalled(start, stop))
    except errors as e:
        raise click.ClickException(str(e)) from None


def _kubeconfig_client(kubeconfig: Path | None, component: str, **options: Any) -> RESTClient:
    from k8py.client import ConfigError, RESTClient

    try:
        return RESTClient.from_kubeconfig(kubeconfig, component=component, **options)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _authorization_modes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_modes(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


AUTHORIZATION_MODE_HELP = (
    f"Comma-separated authorizers, in order (kube-apiserver's flag): {', '.join(AUTHORIZATION_MODES)}."
)


def _checked_file(load: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, str], str]:
    """An option callback: the file must load (audit policy, encryption configuration)."""

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        if value:
            try:
                load(value)
            except ValueError as e:
                raise click.BadParameter(str(e)) from None
        return value

    return check


def _storage_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """kube-apiserver's --etcd-* flags, given to the command as `storage` (a StorageBackend) and
    `compaction_interval`."""
    from k8py.storage.backend import StorageBackend

    existing = click.Path(dir_okay=False, exists=True, path_type=Path)
    options = [
        click.option("--etcd-servers", default="",
                     help="etcd's client URLs, comma-separated (default: the embedded SQLite store in --data-dir)."),
        click.option("--etcd-prefix", default="/registry", show_default=True, help="The prefix of every key in etcd."),
        click.option("--etcd-cafile", type=existing, default=None, help="The CA of etcd's serving certificates."),
        click.option("--etcd-certfile", type=existing, default=None, help="The client certificate for etcd."),
        click.option("--etcd-keyfile", type=existing, default=None, help="Its key."),
        click.option("--etcd-compaction-interval", "compaction_interval", type=float, default=300.0, show_default=True,
                     help="Seconds between compactions of the store's history (0: never)."),
    ]

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        servers = [u.strip() for u in kwargs.pop("etcd_servers").split(",") if u.strip()]
        storage = StorageBackend(servers, kwargs.pop("etcd_prefix"), kwargs.pop("etcd_cafile"),
                                 kwargs.pop("etcd_certfile"), kwargs.pop("etcd_keyfile"))
        return f(*args, storage=storage, **kwargs)

    return apply_options(*options)(command)


def _audit_encryption_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """kube-apiserver's --audit-*, --encryption-provider-config, --service-account-issuer/-jwks-uri and
    --token-auth-file flags, given to the command as one `audit_encryption` argument: APIServerConfig fields."""
    from k8py.apiserver.audit import load_policy
    from k8py.apiserver.oidc import check_jwks_uri
    from k8py.apiserver.tokenfile import load as load_token_file
    from k8py.apiserver.tokens import ISSUER
    from k8py.storage.encryption import load_config

    options = [
        click.option("--audit-policy-file", default="", callback=_checked_file(load_policy),
                     help="An audit.k8s.io/v1 Policy: which requests are audited at which level."),
        click.option("--audit-log-path", default="", help="Where audit events go, as JSON lines ('-': stdout)."),
        click.option("--audit-log-maxsize", type=int, default=0, help="MB of audit log before rotation (0: 100)."),
        click.option("--audit-log-maxbackup", type=int, default=0, help="Rotated audit logs kept (0: all)."),
        click.option("--audit-log-maxage", type=int, default=0, help="Days rotated audit logs are kept (0: forever)."),
        click.option("--encryption-provider-config", default="", callback=_checked_file(load_config),
                     help="An apiserver.config.k8s.io/v1 EncryptionConfiguration: encryption at rest."),
        click.option("--service-account-issuer", default=ISSUER, show_default=True,
                     help="The `iss` of the service account tokens issued, as served by OIDC discovery."),
        click.option("--service-account-jwks-uri", default="", callback=_checked_file(check_jwks_uri),
                     help="OIDC discovery's jwks_uri (default: https://<advertise address>:<port>/openid/v1/jwks)."),
        click.option("--token-auth-file", default="", callback=_checked_file(load_token_file),
                     help='Static bearer tokens, a CSV of token,user,uid[,"group1,group2"].'),
    ]
    names = ("audit_policy_file", "audit_log_path", "audit_log_maxsize", "audit_log_maxbackup", "audit_log_maxage",
             "encryption_provider_config", "service_account_issuer", "service_account_jwks_uri", "token_auth_file")

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        return f(*args, audit_encryption={n: kwargs.pop(n) for n in names}, **kwargs)

    return apply_options(*options)(command)


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
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True,
              help="The pod network: each node's podCIDR is a /24 of it.")
@click.option("--resolv-conf", type=click.Path(dir_okay=False, path_type=Path), default=Path("/etc/resolv.conf"),
              show_default=True, help="The node's resolvers: for pods with dnsPolicy Default and the cluster DNS's upstreams.")
@_storage_options
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
@click.option("--disable-network", is_flag=True,
              help="With the cri runtime: run no kube-proxy, network agent or cluster DNS (static pods).")
@click.option("--disable-metrics-server", is_flag=True, help="Do not serve the resource metrics API (metrics.k8s.io).")
@click.option("--metric-resolution", type=float, default=15.0, show_default=True,
              help="Seconds between scrapes of the kubelets' resource metrics (metrics-server's flag).")
@click.option("--authorization-mode", "authorization_modes", default="Node,RBAC", show_default=True,
              callback=_authorization_modes, help=AUTHORIZATION_MODE_HELP)
@_audit_encryption_options
@click.option("-v", "--verbose", is_flag=True)
def up(data_dir: Path | None, port: int, service_cidr: str, cluster_cidr: str, resolv_conf: Path,
       storage: StorageBackend, compaction_interval: float, compaction_retain: int,
       disable_scheduler: bool, disable_controller_manager: bool, controllers: str, disable_kubelet: bool,
       runtime: str | None, node_name: str | None, kubelet_port: int, disable_network: bool,
       disable_metrics_server: bool,
       metric_resolution: float, authorization_modes: tuple[str, ...], audit_encryption: dict[str, Any],
       verbose: bool) -> None:
    """Run a whole single-node cluster in the foreground (Ctrl-C stops it)."""
    from k8py.cluster import Cluster

    _setup_logging(verbose)
    progress = Progress()
    config = APIServerConfig(
        port=port, service_cidr=service_cidr, compaction_interval=compaction_interval, compaction_retain=compaction_retain,
        metrics_server=not disable_metrics_server, metric_resolution=metric_resolution,
        authorization_modes=authorization_modes, **audit_encryption,
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
        network=not disable_network,
        cluster_cidr=cluster_cidr,
        resolv_conf=resolv_conf,
        storage=storage,
    )

    async def start() -> None:
        await cluster.start()
        click.echo(f"export KUBECONFIG={cluster.kubeconfig}")
        progress.step("cluster ready (Ctrl-C to stop)")

    async def stop() -> None:
        progress.step("stopping")
        await cluster.stop()
        progress.step("stopped")

    _serve(start, stop, (OSError, StoreError))  # (etcd unreachable)


TLS_FILES = {  # kube-apiserver's flags naming its certificates and keys
    "tls_cert_file": "--tls-cert-file",
    "tls_private_key_file": "--tls-private-key-file",
    "client_ca_file": "--client-ca-file",
    "service_account_key_file": "--service-account-key-file",
    "service_account_signing_key_file": "--service-account-signing-key-file",
    "kubelet_client_certificate": "--kubelet-client-certificate",
    "kubelet_client_key": "--kubelet-client-key",
}


def _tls_file_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The TLS_FILES options, handed to the command as one ``tls_files`` dict."""
    for name, flag in reversed(TLS_FILES.items()):
        f = click.option(flag, name, type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)(f)

    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        kwargs["tls_files"] = {name: kwargs.pop(name) for name in TLS_FILES}
        return f(**kwargs)

    return wrapper


def _pki_from_files(files: dict[str, Path | None], config: APIServerConfig) -> PKIPaths | None:
    """The PKI named by kube-apiserver's file flags (kubeadm's /etc/kubernetes/pki), None without them:
    then the API server makes and keeps its own under --pki-dir."""
    if files["kubelet_client_certificate"] and files["kubelet_client_key"]:
        config.kubelet_client_certificate = str(files["kubelet_client_certificate"])
        config.kubelet_client_key = str(files["kubelet_client_key"])
    serving = [name for name in TLS_FILES if not name.startswith("kubelet_")]
    given = [name for name in serving if files[name]]
    if not given:
        return None
    if len(given) != len(serving):
        missing = ", ".join(TLS_FILES[name] for name in serving if not files[name])
        raise click.UsageError(f"{', '.join(TLS_FILES[n] for n in given)} given without {missing}")
    cert, key = files["tls_cert_file"], files["tls_private_key_file"]
    ca, sa_pub, sa_key = files["client_ca_file"], files["service_account_key_file"], \
        files["service_account_signing_key_file"]
    assert cert and key and ca and sa_pub and sa_key
    return PKIPaths(directory=cert.parent, ca_cert=ca, ca_key=ca.with_suffix(".key"), apiserver_cert=cert,
                    apiserver_key=key, admin_cert=cert.parent / "admin.crt", admin_key=cert.parent / "admin.key",
                    sa_key=sa_key, sa_pub=sa_pub)


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
@click.option("--authorization-mode", "authorization_modes", default="AlwaysAllow", show_default=True,
              callback=_authorization_modes, help=AUTHORIZATION_MODE_HELP)
@_audit_encryption_options
@_storage_options
@click.option("--advertise-address", default="",
              help="The IP in the kubernetes Service's endpoints (default: the default route's interface's).")
@_tls_file_options
@click.option("-v", "--verbose", is_flag=True)
def apiserver(data_dir: Path | None, pki_dir: Path | None, bind_address: str, port: int, service_cidr: str,
              disable_metrics_server: bool, metric_resolution: float, authorization_modes: tuple[str, ...],
              audit_encryption: dict[str, Any], storage: StorageBackend, compaction_interval: float,
              advertise_address: str, tls_files: dict[str, Path | None], verbose: bool) -> None:
    """Run the API server alone (kube-apiserver)."""
    from k8py.cluster import start_apiserver

    _setup_logging(verbose)
    progress = Progress()
    base = data_dir or data_dir_default()
    config = APIServerConfig(bind_address=bind_address, port=port, service_cidr=service_cidr,
                             metrics_server=not disable_metrics_server, metric_resolution=metric_resolution,
                             authorization_modes=authorization_modes, advertise_address=advertise_address,
                             compaction_interval=compaction_interval, **audit_encryption)
    pki = _pki_from_files(tls_files, config) or pki_dir or base / "pki"
    holder: list = []

    async def start() -> None:
        holder.append(await start_apiserver(base, pki, config, progress.step, storage))

    async def stop() -> None:
        if holder:
            await holder[0].stop()

    _serve(start, stop, (OSError, StoreError))  # (etcd unreachable)


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

    _serve(start, stop)


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
@click.option("--cluster-signing-cert-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The CA certificate csrsigning issues certificates with (default: <data-dir>/pki/ca.crt if present).")
@click.option("--cluster-signing-key-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The key of --cluster-signing-cert-file (default: <data-dir>/pki/ca.key if present).")
@click.option("--cluster-signing-duration", default="8760h", show_default=True,
              help="The longest a signed certificate lasts (a Go duration).")
@click.option("--service-account-private-key-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The key legacy service account token Secrets are signed with (default: <data-dir>/pki/sa.key if present).")
@click.option("--controller-option", "controller_options", multiple=True, metavar="KEY=VALUE",
              help="A controller knob (Options.extra), e.g. podgc-quarantine=2; repeatable, for tests.")
@click.option("--leader-elect/--no-leader-elect", default=True, show_default=True)
@click.option("--use-service-account-credentials", is_flag=True,
              help="Each controller writes as its own kube-system ServiceAccount (what RBAC's bootstrap roles expect).")
@click.option("-v", "--verbose", is_flag=True)
def controller_manager(kubeconfig: Path | None, controllers: str, cluster_cidr: str, service_cidr: str,
                       allocate_node_cidrs: bool, node_cidr_mask_size: int, node_monitor_grace_period: float,
                       root_ca_file: str | None, leader_elect: bool, use_service_account_credentials: bool,
                       verbose: bool,
                       terminated_pod_gc_threshold: int = 12500, controller_options: tuple[str, ...] = (),
                       node_monitor_period: float = 5.0, node_startup_grace_period: float = 60.0,
                       cluster_signing_cert_file: str | None = None, cluster_signing_key_file: str | None = None,
                       cluster_signing_duration: str = "8760h",
                       service_account_private_key_file: str | None = None) -> None:
    """Run the controllers (kube-controller-manager)."""
    from k8py.client import ConfigError, RESTClient
    from k8py.controllers.cron import parse_duration
    from k8py.controllers.manager import ControllerManager, Options, UnknownController

    _setup_logging(verbose)
    try:
        signing_duration = parse_duration(cluster_signing_duration)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--cluster-signing-duration") from None
    pki = data_dir_default() / "pki"
    if cluster_signing_cert_file is None and (pki / "ca.crt").exists() and (pki / "ca.key").exists():
        cluster_signing_cert_file, cluster_signing_key_file = str(pki / "ca.crt"), str(pki / "ca.key")
    if service_account_private_key_file is None and (pki / "sa.key").exists():
        service_account_private_key_file = str(pki / "sa.key")
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
        cluster_signing_cert_file=cluster_signing_cert_file,
        cluster_signing_key_file=cluster_signing_key_file,
        cluster_signing_duration=signing_duration,
        service_account_private_key_file=service_account_private_key_file,
    )
    try:
        client = RESTClient.from_kubeconfig(kubeconfig, component="kube-controller-manager")
        manager = ControllerManager(client, controllers=controllers, options=options, leader_elect=leader_elect,
                                    use_service_account_credentials=use_service_account_credentials)
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

    _serve(start, stop)


@main.command("dns")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Kubeconfig to reach the API server (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--bind-address", default="0.0.0.0", show_default=True)
@click.option("--port", type=int, default=53, show_default=True, help="UDP and TCP port.")
@click.option("--upstream", "upstreams", multiple=True, metavar="IP[:PORT]",
              help="Resolver for names outside the cluster (repeatable; default: the nameservers of --resolv-conf).")
@click.option("--resolv-conf", type=click.Path(dir_okay=False, path_type=Path), default=Path("/etc/resolv.conf"),
              show_default=True, help="The resolver configuration whose nameservers are the upstreams.")
@click.option("--pods", type=click.Choice(["insecure", "verified", "disabled"]), default="insecure", show_default=True,
              help="<a-b-c-d>.<ns>.pod records: for any address, only pods' addresses (watches Pods), or none.")
@click.option("--ttl", type=int, default=5, show_default=True, help="TTL of the cluster zone's records.")
@click.option("--cache-max-ttl", type=int, default=30, show_default=True, help="Longest time a forwarded answer is cached.")
@click.option("-v", "--verbose", is_flag=True)
def dns_server(kubeconfig: Path | None, cluster_domain: str, bind_address: str, port: int, upstreams: tuple[str, ...],
               resolv_conf: Path, pods: str, ttl: int, cache_max_ttl: int, verbose: bool) -> None:
    """Run the cluster DNS server (CoreDNS's role)."""
    from typing import cast

    from k8py.client import ConfigError, RESTClient
    from k8py.dns import DNSServer, parse_upstream, resolv_conf_upstreams
    from k8py.dns.records import PodMode

    _setup_logging(verbose)
    progress = Progress()
    try:
        upstream_list = [parse_upstream(u) for u in upstreams] or resolv_conf_upstreams(resolv_conf)
        client = RESTClient.from_kubeconfig(kubeconfig, component="k8py-dns")
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--upstream") from None
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    server = DNSServer(client, cluster_domain=cluster_domain, bind_address=bind_address, port=port,
                       upstreams=upstream_list, pods=cast("PodMode", pods), ttl=ttl, cache_max_ttl=cache_max_ttl)

    async def start() -> None:
        await server.start()
        upstream_text = ", ".join(map(str, server.forwarder.upstreams)) or "none"
        progress.step(f"cluster DNS for {cluster_domain} serving on {bind_address}:{server.port} "
                      f"(udp, tcp; upstreams {upstream_text})")

    async def stop() -> None:
        await server.stop()
        await client.close()
        progress.step("stopped")

    _serve(start, stop)


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
    from k8py.kubemark.hollow import HollowNodes

    _setup_logging(verbose)
    progress = Progress()
    client = _kubeconfig_client(kubeconfig, component="kubemark")
    label_map = dict(item.split("=", 1) for item in labels)
    nodes = HollowNodes(client, [f"{prefix}{i}" for i in range(count)], cpu=cpu, memory=memory, pods=pods,
                        labels=label_map)

    async def start() -> None:
        await nodes.start()
        progress.step(f"{count} hollow node(s) registered ({prefix}0 ...)")

    async def stop() -> None:
        await nodes.stop()
        await client.close()

    _serve(start, stop)


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
@click.option("--resolv-conf", type=click.Path(dir_okay=False, path_type=Path), default=Path("/etc/resolv.conf"),
              show_default=True, help="The resolver configuration of pods with dnsPolicy Default.")
@click.option("--max-pods", type=int, default=110, show_default=True)
@click.option("--node-labels", default="", help="key=value[,key=value] labels to register the node with.")
@click.option("--system-reserved", default="", help="resource=quantity[,...] reserved for the system.")
@click.option("--simulated-job-seconds", type=float, default=5.0, show_default=True,
              help="With --runtime simulated: how long a Job's pod runs before it succeeds.")
@click.option("--eviction-hard", default="memory.available<100Mi,nodefs.available<10%", show_default=True,
              help="Hard eviction thresholds: signal<quantity|percent[,...].")
@click.option("--eviction-interval", type=float, default=10.0, hidden=True,
              help="Seconds between the eviction manager's looks at the signals.")
@click.option("--bootstrap-kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Credentials to request a client certificate with (by CSR) when --kubeconfig is missing or expired; "
                   "--kubeconfig (default <root-dir>/kubeconfig) is then written.")
@click.option("--rotate-certificates", is_flag=True, help="Renew the client certificate by CSR as it nears expiry.")
@click.option("--rotate-server-certificates", is_flag=True,
              help="Get the serving certificate by CSR (signer kubernetes.io/kubelet-serving) and renew it.")
@click.option("-v", "--verbose", is_flag=True)
def kubelet(kubeconfig: Path | None, node_name: str | None, root_dir: Path | None, runtime: str | None,
            pod_manifest_path: Path | None, node_ip: str | None, port: int, cluster_dns: str, cluster_domain: str,
            resolv_conf: Path, max_pods: int, node_labels: str, system_reserved: str, simulated_job_seconds: float,
            eviction_hard: str, eviction_interval: float, verbose: bool, bootstrap_kubeconfig: Path | None = None,
            rotate_certificates: bool = False, rotate_server_certificates: bool = False) -> None:
    """Run the node agent: register the Node and run the pods bound to it."""
    import socket

    from k8py.client import ConfigError
    from k8py.kubelet.app import KubeletApp, choose_runtime
    from k8py.kubelet.certificate import CertificateError, CertificateOptions
    from k8py.kubelet.eviction import parse_thresholds
    from k8py.kubelet.kubelet import KubeletConfig
    from k8py.netutil import primary_ip

    _setup_logging(verbose)
    progress = Progress()
    root = (root_dir or data_dir_default() / "kubelet").absolute()
    if bootstrap_kubeconfig is not None:
        kubeconfig = kubeconfig or root / "kubeconfig"
    elif rotate_certificates and kubeconfig is None:
        raise click.BadParameter("--rotate-certificates needs --kubeconfig", param_hint="--kubeconfig")
    certificates = CertificateOptions(kubeconfig, bootstrap_kubeconfig, rotate_certificates, rotate_server_certificates)
    # with a certificate to bootstrap or rotate, the kubelet makes its client itself
    client = None if bootstrap_kubeconfig or rotate_certificates else _kubeconfig_client(kubeconfig, component="kubelet")
    chosen, why = choose_runtime(runtime)
    progress.step(f"runtime: {chosen} ({why})")
    config = KubeletConfig(
        node_name=(node_name or socket.gethostname()).lower(),
        root_dir=root,
        host_ip=node_ip or primary_ip(),
        port=port,
        pod_manifest_path=pod_manifest_path.absolute() if pod_manifest_path else None,
        cluster_dns=[s for s in cluster_dns.split(",") if s],
        cluster_domain=cluster_domain,
        resolv_conf=str(resolv_conf),
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
    app = KubeletApp(client, config, chosen, progress=progress.step, simulated_job_seconds=simulated_job_seconds,
                     certificates=certificates)

    async def stop() -> None:
        await app.stop()
        if app.client is not None:
            await app.client.close()

    _serve(app.start, stop, (OSError, ConfigError, CertificateError))


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

    from k8py.kubelet.kubelet import Kubelet, KubeletConfig
    from k8py.kubelet.runtime.simulated import SimulatedRuntime

    _setup_logging(verbose)
    progress = Progress()
    # one watch per node stays open: room for them and for the requests
    client = _kubeconfig_client(kubeconfig, component="kubelet", max_connections=count + 256)
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

    _serve(start, stop)


@main.command("network-agent")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Kubeconfig to reach the API server (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--node-name", default=None, help="This node's name (default: the host name).")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True, help="The pod network.")
@click.option("--service-cluster-ip-range", "service_cidr", default="10.96.0.0/12", show_default=True)
@click.option("--resync-period", type=float, default=30.0, show_default=True,
              help="Seconds between full reconciliations of the routes and the NAT table.")
@click.option("--network-policy/--no-network-policy", default=True, show_default=True,
              help="Enforce NetworkPolicies for this node's pods (nftables table k8py-netpol).")
@click.option("-v", "--verbose", is_flag=True)
def network_agent(kubeconfig: Path | None, node_name: str | None, cluster_cidr: str, service_cidr: str,
                  resync_period: float, network_policy: bool, verbose: bool) -> None:
    """Run the pod network agent: host-gw routes to the other nodes' podCIDRs, SNAT out of the cluster,
    and NetworkPolicy enforcement for this node's pods (the parts Calico's Felix plays)."""
    import ipaddress
    import socket

    from k8py.network.agent import NetworkAgent
    from k8py.network.policy.agent import PolicyAgent

    _setup_logging(verbose)
    progress = Progress()
    for value, hint in ((cluster_cidr, "--cluster-cidr"), (service_cidr, "--service-cluster-ip-range")):
        try:
            ipaddress.IPv4Network(value, strict=False)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=hint) from None
    client = _kubeconfig_client(kubeconfig, component="network-agent")
    agent = NetworkAgent(client, (node_name or socket.gethostname()).lower(), cluster_cidr=cluster_cidr,
                         service_cidr=service_cidr, resync_period=resync_period)
    policy = PolicyAgent(client, agent.node_name) if network_policy else None

    async def start() -> None:
        await agent.start()
        if policy is not None:
            await policy.start()
        progress.step(f"network agent started for node {agent.node_name} (cluster {cluster_cidr}, "
                      f"services {service_cidr}; NetworkPolicy {'on' if policy else 'off'})")

    async def stop() -> None:
        if policy is not None:
            await policy.stop()
        await agent.stop()
        await client.close()
        progress.step("stopped (routes, NAT and policy rules left in place)")

    _serve(start, stop, (OSError, RuntimeError))


@main.command()
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Kubeconfig to reach the API server (default: $KUBECONFIG, ~/.kube/config).")
@click.option("--hostname-override", default=None, help="The Node's name (default: the host name).")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True,
              help="The pod network: traffic from outside it to a ClusterIP is masqueraded ('' : none).")
@click.option("--nodeport-addresses", default="",
              help="Comma-separated CIDRs of the local addresses NodePorts answer on (default: the node's IPs; "
                   "0.0.0.0/0: every local address).")
@click.option("--service-cluster-ip-range", "service_cidr", default="10.96.0.0/12", show_default=True,
              help="Traffic to an unallocated ClusterIP in this range is dropped ('' : no such rule).")
@click.option("--masquerade-all", is_flag=True, help="Masquerade all traffic to ClusterIPs.")
@click.option("--min-sync-period", type=float, default=0.1, show_default=True,
              help="Seconds between two syncs at least (after a burst of 2); upstream's default is 1 s.")
@click.option("--sync-period", type=float, default=30.0, show_default=True,
              help="Seconds between two syncs at most.")
@click.option("--metrics-bind-address", default="127.0.0.1:10249", show_default=True,
              help="host:port of /metrics and /healthz ('' : not served; port 0: any free port).")
@click.option("--netns", default=None, hidden=True,
              help="Program the named network namespace (nft through `ip netns exec NETNS`); for tests.")
@click.option("--cleanup", is_flag=True, help="Delete the kube-proxy nftables table and exit.")
@click.option("-v", "--verbose", is_flag=True)
def proxy(kubeconfig: Path | None, hostname_override: str | None, cluster_cidr: str, nodeport_addresses: str,
          service_cidr: str, masquerade_all: bool, min_sync_period: float, sync_period: float,
          metrics_bind_address: str, netns: str | None, cleanup: bool, verbose: bool) -> None:
    """Run kube-proxy (nftables mode): Services and EndpointSlices -> the node's packet filter."""
    import socket

    from k8py.proxy import ProxierConfig, ProxyServer, cleanup_leftovers

    _setup_logging(verbose)
    progress = Progress()
    if cleanup:
        if not asyncio.run(cleanup_leftovers(netns=netns)):
            raise click.ClickException("cleanup failed")
        progress.step("kube-proxy table deleted")
        return
    client = _kubeconfig_client(kubeconfig, component="kube-proxy")
    config = ProxierConfig(
        hostname=(hostname_override or socket.gethostname()).lower(),
        cluster_cidr=cluster_cidr or None,
        nodeport_addresses=[c.strip() for c in nodeport_addresses.split(",") if c.strip()],
        service_cidrs=[service_cidr] if service_cidr else [],
        masquerade_all=masquerade_all,
        min_sync_period=min_sync_period,
        sync_period=sync_period,
    )
    metrics_address = None
    if metrics_bind_address:
        host, _, port = metrics_bind_address.rpartition(":")
        if not port.isdigit():
            raise click.BadParameter(f"{metrics_bind_address!r} is not host:port", param_hint="--metrics-bind-address")
        metrics_address = (host.strip("[]") or "0.0.0.0", int(port))
    server = ProxyServer(client, config, netns=netns, metrics_address=metrics_address)

    async def start() -> None:
        await server.start()
        served = f"; /metrics on port {server.metrics_port}" if server.metrics_port else ""
        progress.step(f"proxy started (node {config.hostname}, node IPs {', '.join(config.node_ips)}; "
                      f"{len(server.proxier.svc_port_map)} service ports{served})")

    async def stop() -> None:
        await server.stop()
        await client.close()
        progress.step("stopped (rules left in place; `k8py proxy --cleanup` deletes them)")

    _serve(start, stop)


@main.command("loadbalancer")
@click.option("--listen", default="127.0.0.1:6444", show_default=True, help="host:port the node's components connect to.")
@click.option("--server", "servers", multiple=True, required=True, metavar="HOST:PORT",
              help="An API server (repeatable); with --kubeconfig, the fallback of the discovered ones.")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Cluster CA: health checks are GET /readyz verified against it (default: a TCP connect).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Discover the API servers from the default/kubernetes Endpoints (may point at --listen; "
              "used once the file exists).")
@click.option("-v", "--verbose", is_flag=True)
def loadbalancer(listen: str, servers: tuple[str, ...], ca_file: Path | None, kubeconfig: Path | None,
                 verbose: bool) -> None:
    """Run the client-side load balancer for the API servers (k3s' agent load balancer)."""
    from k8py.loadbalancer import LoadBalancer

    _setup_logging(verbose)
    progress = Progress()
    try:
        lb = LoadBalancer(servers, listen, ca_file=ca_file, kubeconfig=kubeconfig, notify=progress.step)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None

    async def start() -> None:
        await lb.start()
        check = f"GET /readyz verified by {ca_file}" if ca_file else "TCP connect"
        progress.step(f"load balancer listening on {lb.listen_host}:{lb.port} for {', '.join(lb.configured)} "
                      f"(health: {check}{'; discovery from default/kubernetes' if kubeconfig else ''})")

    async def stop() -> None:
        await lb.stop()
        progress.step("stopped")

    _serve(start, stop)


@main.group("token")
def token_group() -> None:
    """Manage bootstrap tokens (kubeadm token): Secrets in kube-system that nodes join with."""


_token_kubeconfig = click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
                                 help="An admin's kubeconfig (default: $KUBECONFIG, else ~/.kube/config).")


def _token_call(kubeconfig: Path | None, call: Callable[[RESTClient], Awaitable[Any]]) -> Any:
    from k8py.bootstrap.token import TokenError
    from k8py.client import ClientError

    client = _kubeconfig_client(kubeconfig, component="k8py-token")

    async def main() -> Any:
        async with client:
            return await call(client)

    try:
        return asyncio.run(main())
    except (TokenError, ClientError) as e:
        raise click.ClickException(str(e)) from None


@token_group.command("generate")
def token_generate() -> None:
    """Print a random token, without creating it on the server."""
    from k8py.bootstrap.token import generate_token

    click.echo(generate_token())


@token_group.command("create")
@click.argument("token", required=False, metavar="[TOKEN]")
@_token_kubeconfig
@click.option("--ttl", default="24h0m0s", show_default=True,
              help="The duration before the token is automatically deleted (e.g. 1s, 2m, 3h); 0: never expires.")
@click.option("--usages", default="signing,authentication", show_default=True,
              help="Comma-separated ways the token may be used: signing, authentication.")
@click.option("--groups", default="system:bootstrappers:kubeadm:default-node-token", show_default=True,
              help="Comma-separated extra groups the token authenticates as (system:bootstrappers:...).")
@click.option("--description", default="", help="A human friendly description of the token's use.")
@click.option("--print-join-command", is_flag=True, help="Print the whole `k8py join` command instead of the token.")
def token_create(token: str | None, kubeconfig: Path | None, ttl: str, usages: str, groups: str, description: str,
                 print_join_command: bool) -> None:
    """Create a bootstrap token (generated unless TOKEN is given) and print it."""
    from k8py.bootstrap import token as bt
    from k8py.controllers.cron import parse_duration

    try:
        seconds = parse_duration(ttl)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ttl") from None

    async def create(client: RESTClient) -> str:
        return await bt.create_token(client, token, ttl=seconds, description=description,
                                     usages=[u for u in usages.split(",") if u], groups=[g for g in groups.split(",") if g])

    created = _token_call(kubeconfig, create)
    if print_join_command:
        from k8py.client import ConfigError, load_kubeconfig

        try:
            created = bt.join_command(load_kubeconfig(kubeconfig), created)
        except (ConfigError, bt.TokenError) as e:
            raise click.ClickException(str(e)) from None
    click.echo(created)


@token_group.command("list")
@_token_kubeconfig
def token_list(kubeconfig: Path | None) -> None:
    """List the bootstrap tokens (kubeadm's columns)."""
    from k8py.bootstrap.token import list_tokens

    table, problems = _token_call(kubeconfig, list_tokens)
    for problem in problems:
        click.echo(problem, err=True)
    click.echo(table, nl=False)


@token_group.command("delete")
@click.argument("tokens", nargs=-1, required=True, metavar="TOKEN-OR-ID...")
@_token_kubeconfig
def token_delete(tokens: tuple[str, ...], kubeconfig: Path | None) -> None:
    """Delete bootstrap tokens, each given as the token or its id."""
    from k8py.bootstrap.token import delete_tokens

    async def delete(client: RESTClient) -> list[str]:
        return await delete_tokens(client, tokens)

    for line in _token_call(kubeconfig, delete):
        click.echo(line)


def _kubeadm_commands() -> None:
    from k8py.kubeadm.cmd import certs, init, join, reset

    for command in (init, join, certs, reset):
        main.add_command(command)


_kubeadm_commands()


def _storage_commands() -> None:
    from k8py.storage.cmd import etcd, migrate_store, store

    for command in (etcd, store, migrate_store):
        main.add_command(command)


_storage_commands()


if __name__ == "__main__":
    main()
