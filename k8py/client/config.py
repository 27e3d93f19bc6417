"""Where a client connects and who it says it is: kubeconfig files, or explicit paths in-process.

:func:`load_kubeconfig` reads the file kubectl reads, with client-go's rules reduced to what
k8py's components and tests meet: the files named by ``$KUBECONFIG`` (colon-separated; the
first file to set a value wins, as client-go merges them) or ``~/.kube/config``; the current
context (or a named one); the cluster's ``server``, ``certificate-authority`` or
``certificate-authority-data``, ``insecure-skip-tls-verify`` and ``tls-server-name``; the user's
``client-certificate``/``client-key`` (file or ``-data``), ``token`` or ``tokenFile``.  Relative
paths are relative to the kubeconfig file that names them.  Credential plugins (``exec``,
``auth-provider``) and basic auth are refused with a :class:`ConfigError` rather than ignored,
so a misconfigured component fails at start-up instead of running unauthenticated.

:meth:`ClientConfig.from_files` is the in-process constructor: a component started by
``k8py up`` next to the API server is handed paths to the cluster CA and its own certificate.

Credentials are read once, when the config is built (client-go does the same for
certificates), except a token file, which the REST client re-reads periodically because
service-account tokens rotate.  Python's ``ssl`` loads a client certificate only from files,
so :meth:`ClientConfig.ssl_context` writes embedded PEM data to a private temporary directory
just long enough to load it.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A kubeconfig that cannot be used: missing, malformed, or needing an unsupported feature."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    """The resolved connection settings of one client (PEM data in memory, not paths)."""

    server: str
    ca_pem: bytes | None = None  # None: the system trust store
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    token_file: Path | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        server: str,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        token_file: str | Path | None = None,
    ) -> ClientConfig:
        """A config from explicit paths, for components started in-process with the API server."""
        if (cert_file is None) != (key_file is None):
            raise ConfigError("a client certificate needs its key, and a key its certificate")
        return cls(
            server=server,
            ca_pem=_read(ca_file),
            client_cert_pem=_read(cert_file),
            client_key_pem=_read(key_file),
            token_file=Path(token_file) if token_file is not None else None,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``https`` servers (None for plain ``http``)."""
        if not self.server.startswith("https://"):
            return None
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode("ascii") if self.ca_pem else None)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert_pem is not None and self.client_key_pem is not None:
            with tempfile.TemporaryDirectory(prefix="k8py-client-") as tmp:  # mode 0700
                cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
                cert.write_bytes(self.client_cert_pem)
                fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(self.client_key_pem)
                ctx.load_cert_chain(cert, key)
        return ctx


def default_kubeconfig_paths() -> list[Path]:
    """``$KUBECONFIG``'s entries, or ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def load_kubeconfig(path: str | Path | None = None, *, context: str | None = None) -> ClientConfig:
    """Resolve ``context`` (default: the current context) of a kubeconfig file into a ClientConfig."""
    files = [Path(path)] if path is not None else [p for p in default_kubeconfig_paths() if p.exists()]
    if not files:
        raise ConfigError(
            f"no kubeconfig found (looked for {', '.join(map(str, default_kubeconfig_paths()))})"
        )
    merged = _Merged()
    for f in files:
        try:
            doc = yaml.safe_load(f.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{f}: {e}") from e
        if not isinstance(doc, dict):
            raise ConfigError(f"{f}: not a kubeconfig (expected a mapping)")
        merged.add(doc, f.parent)

    context_name = context or merged.current_context
    if not context_name:
        raise ConfigError("no context given and no current-context set")
    ctx, _ = merged.entry("contexts", "context", context_name)
    cluster, cluster_dir = merged.entry("clusters", "cluster", ctx.get("cluster", ""))
    user, user_dir = (
        merged.entry("users", "user", ctx.get("user", "")) if ctx.get("user") else ({}, Path("."))
    )

    for unsupported in ("exec", "auth-provider", "username", "password"):
        if user.get(unsupported):
            raise ConfigError(
                f"kubeconfig user {ctx.get('user')!r}: {unsupported!r} is not supported by k8py's client"
            )
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cluster {ctx.get('cluster')!r} has no server")
    cert = _data_or_file(user, "client-certificate", user_dir)
    key = _data_or_file(user, "client-key", user_dir)
    if (cert is None) != (key is None):
        raise ConfigError(f"kubeconfig user {ctx.get('user')!r}: a client certificate needs its key")
    token_file = user.get("tokenFile")
    return ClientConfig(
        server=server,
        ca_pem=_data_or_file(cluster, "certificate-authority", cluster_dir),
        client_cert_pem=cert,
        client_key_pem=key,
        token=user.get("token") or None,
        token_file=user_dir / token_file if token_file else None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name") or None,
    )


class _Merged:
    """Named entries of several kubeconfig files; the first file to define a name wins."""

    def __init__(self) -> None:
        self.current_context = ""
        self._entries: dict[tuple[str, str], tuple[dict[str, Any], Path]] = {}

    def add(self, doc: dict[str, Any], directory: Path) -> None:
        self.current_context = self.current_context or doc.get("current-context") or ""
        for section in ("clusters", "users", "contexts"):
            for item in doc.get(section) or ():
                if isinstance(item, dict) and item.get("name"):
                    self._entries.setdefault((section, item["name"]), (item, directory))

    def entry(self, section: str, field: str, name: str) -> tuple[dict[str, Any], Path]:
        try:
            item, directory = self._entries[(section, name)]
        except KeyError:
            raise ConfigError(f"kubeconfig has no {section[:-1]} named {name!r}") from None
        value = item.get(field) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"kubeconfig {section[:-1]} {name!r}: {field!r} must be a mapping")
        return value, directory


def _data_or_file(section: dict[str, Any], key: str, directory: Path) -> bytes | None:
    """``<key>-data`` (base64) wins over ``<key>`` (a path, relative to the kubeconfig's directory)."""
    if data := section.get(f"{key}-data"):
        try:
            return base64.b64decode(data)
        except ValueError as e:  # binascii.Error
            raise ConfigError(f"{key}-data: not base64: {e}") from e
    return _read(directory / section[key]) if section.get(key) else None


def _read(path: str | Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
