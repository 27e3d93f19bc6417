"""The kubeadm-like commands: `k8py init phase ...` and `k8py certs ...` (flags named as kubeadm's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from k8py.clioptions import options as apply_options
from k8py.kubeadm.config import (
    DEFAULT_BIND_PORT,
    DEFAULT_CERT_DIR,
    KUBERNETES_DIR,
    ConfigError,
    InitConfig,
    load_config,
)


def _echo(message: str) -> None:
    click.echo(message)


def _init_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     default=None, help="A kubeadm configuration file (InitConfiguration, ClusterConfiguration)."),
        click.option("--apiserver-advertise-address", default=None,
                     help="The IP address the API server advertises (default: the default route's interface's)."),
        click.option("--apiserver-bind-port", type=int, default=None, help="Port of the API server (6443)."),
        click.option("--control-plane-endpoint", default=None, help="A stable host[:port] for the control plane."),
        click.option("--pod-network-cidr", default=None, help="The pod network (default 10.244.0.0/16)."),
        click.option("--service-cidr", default=None, help="The Service network (default 10.96.0.0/12)."),
        click.option("--service-dns-domain", default=None, help="The cluster domain (default cluster.local)."),
        click.option("--node-name", default=None, help="The node's name (default: the host name)."),
        click.option("--cert-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help=f"Where certificates are kept (default {DEFAULT_CERT_DIR})."),
        click.option("--kubeconfig-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help=f"Where kubeconfig files are written (default {KUBERNETES_DIR})."),
        click.option("--apiserver-cert-extra-sans", default="", help="Extra SANs of the API server certificate."),
    ]
    return apply_options(*options)(f)


def _config(config_file: Path | None, apiserver_advertise_address: str | None, apiserver_bind_port: int | None,
            control_plane_endpoint: str | None, pod_network_cidr: str | None, service_cidr: str | None,
            service_dns_domain: str | None, node_name: str | None, cert_dir: Path | None,
            kubeconfig_dir: Path | None, apiserver_cert_extra_sans: str) -> InitConfig:
    config = InitConfig()
    try:
        if config_file is not None:
            load_config(config_file, config)
        for attr, value in (
            ("advertise_address", apiserver_advertise_address),
            ("bind_port", apiserver_bind_port),
            ("control_plane_endpoint", control_plane_endpoint),
            ("pod_subnet", pod_network_cidr),
            ("service_subnet", service_cidr),
            ("dns_domain", service_dns_domain),
            ("node_name", node_name.lower() if node_name else None),
            ("cert_dir", cert_dir),
            ("kubernetes_dir", kubeconfig_dir),
        ):
            if value is not None:
                setattr(config, attr, value)
        if kubeconfig_dir is not None and cert_dir is None and config_file is None:
            config.cert_dir = kubeconfig_dir / "pki"
        config.apiserver_cert_sans += [s for s in apiserver_cert_extra_sans.split(",") if s]
        config.validate()
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    return config


_rootfs_option = click.option(
    "--rootfs", type=click.Path(file_okay=False, path_type=Path), default=Path("/"), show_default=True,
    help="The node's root file system (where /etc/kubernetes and /var/lib are).")


def _node_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a command that sets up this node (init, its phases, join)."""
    options = [
        click.option("--ignore-preflight-errors", default="",
                     help="Checks to report as warnings (comma-separated, or all)."),
        click.option("--runtime", type=click.Choice(["cri", "process", "simulated"]), default=None,
                     help="The kubelet's container runtime (default: its own choice)."),
        _rootfs_option,
    ]
    return apply_options(*options)(f)


_certificate_key_option = click.option(
    "--certificate-key", default="", help="The key (64 hex digits) that encrypts the certificates in kubeadm-certs.")


def _run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `k8py init` and its phases."""
    f = click.option("--token", default="", help="The bootstrap token to create (default: a new one).")(f)
    f = click.option("--upload-certs", is_flag=True,
                     help="Store the control-plane certificates in the kubeadm-certs Secret (for join --control-plane).")(f)
    f = _certificate_key_option(f)
    return _init_options(_node_options(f))


def _init_run(options: dict[str, Any], skip: set[str]) -> tuple[Any, str]:
    """Run `k8py init`'s phases but ``skip``: (the InitOptions, the bootstrap token made)."""
    from k8py.bootstrap.token import TokenError
    from k8py.kubeadm.copycerts import CertificateKeyError, create_certificate_key, decode_key
    from k8py.kubeadm.init import PHASES, InitOptions, run_init
    from k8py.kubeadm.layout import Layout
    from k8py.kubeadm.preflight import PreflightError

    layout = Layout(options.pop("rootfs").absolute())
    if options["cert_dir"] is None and options["kubeconfig_dir"] is None:
        options["kubeconfig_dir"], options["cert_dir"] = layout.kubernetes_dir, layout.cert_dir
    if unknown := skip - set(PHASES):
        raise click.BadParameter(f"unknown phase(s) {', '.join(sorted(unknown))}", param_hint="--skip-phases")
    ignore = set(filter(None, options.pop("ignore_preflight_errors").split(",")))
    token, runtime = options.pop("token"), options.pop("runtime")
    upload_certs, key = options.pop("upload_certs"), options.pop("certificate_key")
    try:
        decode_key(key := key or create_certificate_key())
    except CertificateKeyError as e:
        raise click.BadParameter(str(e), param_hint="--certificate-key") from None
    init_options = InitOptions(_config(**options), layout, ignore, skip, token, runtime, upload_certs, key)
    try:
        return init_options, run_init(init_options, _echo)
    except PreflightError as e:
        raise click.ClickException(f"error execution phase preflight: {e}") from None
    except (TokenError, TimeoutError, FileExistsError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or ''}: {e.strerror or e} (run the phases before this one)") from None


@click.group("init", invoke_without_command=True)
@click.option("--skip-phases", default="", help="Phases to skip (comma-separated), e.g. addon.")
@_run_options
@click.pass_context
def init(ctx: click.Context, skip_phases: str, **options: Any) -> None:
    """Set up a control-plane node like `kubeadm init` (or one phase: `k8py init phase ...`)."""
    if ctx.invoked_subcommand is not None:
        return
    from k8py.kubeadm.init import success_message

    init_options, token = _init_run(options, set(filter(None, skip_phases.split(","))))
    click.echo(success_message(init_options, token))


@init.group("phase")
def phase() -> None:
    """Run one phase of `k8py init` (preflight, certs, kubeconfig, control-plane, kubelet-start, ...)."""


def _phase_command(name: str) -> click.Command:
    from k8py.kubeadm.init import PHASES

    def run(**options: Any) -> None:
        _init_run(options, {p for p in PHASES if p != name})

    return click.command(name, help=f"Run the {name} phase of `k8py init` alone.")(_run_options(run))


def _add_phases() -> None:
    from k8py.kubeadm.init import PHASES

    for name in PHASES:
        if name == "etcd":  # kubeadm's `init phase etcd local` (external etcd has nothing to run)
            group = click.Group("etcd", help="Generate the static Pod manifest file for a local etcd member.")
            local = _phase_command("etcd")
            local.name = "local"
            group.add_command(local)
            phase.add_command(group)
        else:
            phase.add_command(_phase_command(name))


_add_phases()


def _dirs(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--kubeconfig-dir", type=click.Path(file_okay=False, path_type=Path), default=KUBERNETES_DIR,
                     show_default=True, help="Where the kubeconfig files are.")(f)
    return click.option("--cert-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Where the certificates are (default: <kubeconfig-dir>/pki).")(f)


@click.group("certs")
def certs() -> None:
    """The control plane's certificates (like `kubeadm certs`)."""


@certs.command("check-expiration")
@_dirs
def certs_check_expiration(cert_dir: Path | None, kubeconfig_dir: Path) -> None:
    """When each certificate and CA expires."""
    from k8py.kubeadm.renewal import check_expiration

    cert_dir = cert_dir or kubeconfig_dir / "pki"
    if not (cert_dir / "ca.crt").exists():
        raise click.ClickException(f"no cluster CA in {cert_dir}: is this a control-plane node (`k8py init`)?")
    click.echo(check_expiration(cert_dir, kubeconfig_dir), nl=False)


@certs.command("renew")
@click.argument("names", nargs=-1, required=True)
@_dirs
def certs_renew(names: tuple[str, ...], cert_dir: Path | None, kubeconfig_dir: Path) -> None:
    """Renew certificates: `all`, or names from `k8py certs check-expiration` (apiserver, admin.conf...)."""
    from k8py.kubeadm.renewal import renew

    cert_dir = cert_dir or kubeconfig_dir / "pki"
    try:
        lines = renew(list(names), cert_dir, kubeconfig_dir)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="NAMES") from None
    except OSError as e:
        raise click.ClickException(f"{e.filename}: {e.strerror}") from None
    for line in lines:
        click.echo(line)
    click.echo("\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager, "
               "kube-scheduler and etcd, so that they can use the new certificates.")


@certs.command("certificate-key")
def certs_certificate_key() -> None:
    """Print a new certificate key (for `k8py init --upload-certs --certificate-key`)."""
    from k8py.kubeadm.copycerts import create_certificate_key

    click.echo(create_certificate_key())


@click.command("reset")
@click.option("-f", "--force", is_flag=True, help="Reset the node without asking.")
@_rootfs_option
def reset(force: bool, rootfs: Path) -> None:
    """Undo what `k8py init` or `k8py join` did on this node."""
    from k8py.kubeadm.layout import Layout
    from k8py.kubeadm.reset import reset as reset_node

    click.echo("[reset] WARNING: Changes made to this host by 'k8py init' or 'k8py join' will be reverted.")
    if not force and not click.confirm("[reset] Are you sure you want to proceed?", default=False):
        raise click.ClickException("aborted reset operation")
    reset_node(Layout(rootfs.absolute()), _echo)


@click.command("join")
@click.argument("endpoint")
@click.option("--token", required=True, help="The bootstrap token (from `k8py init` or `k8py token create`).")
@click.option("--discovery-token-ca-cert-hash", "ca_cert_hashes", multiple=True,
              help="sha256:<hex> of the cluster CA's public key (the pin); repeatable.")
@click.option("--discovery-token-unsafe-skip-ca-verification", is_flag=True,
              help="Trust the discovered CA without a pin (not recommended).")
@click.option("--discovery-timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for the cluster to vouch for the token (kubeadm's discovery.timeout).")
@click.option("--node-name", default=None, help="The node's name (default: the host name).")
@click.option("--control-plane", is_flag=True, help="Create a new control plane instance on this node.")
@_certificate_key_option
@click.option("--apiserver-advertise-address", default=None,
              help="With --control-plane: the IP its API server and etcd member advertise (default: the node IP).")
@click.option("--apiserver-bind-port", type=int, default=DEFAULT_BIND_PORT, show_default=True,
              help="With --control-plane: the port of its API server.")
@_node_options
def join(endpoint: str, token: str, ca_cert_hashes: tuple[str, ...], discovery_token_unsafe_skip_ca_verification: bool,
         discovery_timeout: float, node_name: str | None, control_plane: bool, certificate_key: str,
         apiserver_advertise_address: str | None, apiserver_bind_port: int, ignore_preflight_errors: str,
         runtime: str | None, rootfs: Path) -> None:
    """Join this machine to a cluster as a worker node, or a control-plane node, like `kubeadm join`."""
    import socket

    from k8py.bootstrap.token import DiscoveryError
    from k8py.kubeadm.copycerts import CertificateKeyError
    from k8py.kubeadm.join import JOINED, JOINED_CONTROL_PLANE, JoinOptions, run_join
    from k8py.kubeadm.layout import Layout
    from k8py.kubeadm.preflight import PreflightError
    from k8py.netutil import primary_ip

    options = JoinOptions(
        endpoint=endpoint, token=token, ca_cert_hashes=list(ca_cert_hashes), layout=Layout(rootfs.absolute()),
        node_name=(node_name or socket.gethostname()).lower(), node_ip=apiserver_advertise_address or primary_ip(),
        unsafe_skip_ca_verification=discovery_token_unsafe_skip_ca_verification,
        ignore_preflight_errors=set(filter(None, ignore_preflight_errors.split(","))), runtime=runtime,
        discovery_timeout=discovery_timeout, control_plane=control_plane, certificate_key=certificate_key,
        bind_port=apiserver_bind_port,
    )
    if control_plane and not certificate_key:
        raise click.UsageError("--control-plane needs --certificate-key (certificates copied by hand are not supported)")
    try:
        run_join(options, _echo)
    except PreflightError as e:
        raise click.ClickException(f"error execution phase preflight: {e}") from None
    except (DiscoveryError, TimeoutError, ConfigError, CertificateKeyError) as e:
        raise click.ClickException(str(e)) from None
    admin = options.layout.kubernetes_dir / "admin.conf"
    click.echo(JOINED_CONTROL_PLANE.format(admin=admin) if control_plane else JOINED)
