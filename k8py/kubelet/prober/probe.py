"""What every probe shares (upstream pkg/probe): the result, port resolution, Go-shaped messages.

Messages are kube's text, so ``kubectl describe pod`` reads as it does against a real kubelet; the
Go renderings they need (``net.JoinHostPort``, ``time.Duration.String``, ``%q``, ``dial tcp`` errors)
live here.
"""

from __future__ import annotations

import enum
import errno
import re
from typing import Any

Obj = dict[str, Any]

# The kubelet's version as the probes tell it: User-Agent kube-probe/1.32, kube-lifecycle/1.32.
KUBE_MAJOR_MINOR = "1.32"
# Output kept from an exec probe or an HTTP body (upstream's maxReadLength / maxRespBodyLength).
MAX_READ_LENGTH = 10 * 1024


class Result(enum.StrEnum):
    """probe.Result: one probe's outcome; WARNING counts as success but is reported as an event."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    UNKNOWN = "unknown"


class ProbeError(Exception):
    """The probe could not be run at all (bad port, runtime error): upstream's non-nil ``err``."""


def user_agent(purpose: str) -> str:
    return f"kube-{purpose}/{KUBE_MAJOR_MINOR}"


def resolve_container_port(port: int | str | None, container: Obj) -> int:
    """probe.ResolveContainerPort: a number, a named container port, or a number as a string."""
    if isinstance(port, bool) or port is None:
        raise ProbeError(f"intOrString had no kind: {port!r}")
    if isinstance(port, int):
        number = port
    else:
        named = [p.get("containerPort") for p in container.get("ports") or [] if p.get("name") == port]
        if named:
            number = int(named[0])
        else:
            try:
                number = int(port)
            except ValueError:
                raise ProbeError(f'strconv.Atoi: parsing "{port}": invalid syntax') from None
    if 0 < number < 65536:
        return number
    raise ProbeError(f"invalid port number: {number}")


def go_duration(seconds: float) -> str:
    """time.Duration.String for the durations probes print (``1s``, ``500ms``, ``1m30s``)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return _trim(ns / size) + unit
    minutes, rest = divmod(ns, 60 * 1_000_000_000)
    hours, minutes = divmod(minutes, 60)
    out = _trim(rest / 1e9) + "s"
    if hours:
        return f"{hours}h{minutes}m{out}"
    return f"{minutes}m{out}" if minutes else out


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")



def dial_error(addr: str, exc: BaseException) -> str:
    """A failed connect as Go's net.OpError prints it: ``dial tcp 10.1.0.5:80: connect: connection refused``."""
    if isinstance(exc, TimeoutError):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        reason = _GO_ERRNO.get(exc.errno) or (exc.strerror or str(exc)).lower()
        return f"dial tcp {addr}: connect: {reason}"
    if isinstance(exc, OSError) and exc.strerror:  # getaddrinfo
        return f"dial tcp: lookup {addr.rsplit(':', 1)[0].strip('[]')}: {exc.strerror.lower()}"
    return f"dial tcp {addr}: {exc}"


_GO_ERRNO = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network is unreachable",
    errno.ECONNRESET: "connection reset by peer",
    errno.ETIMEDOUT: "connection timed out",
}


_VAR_REF = re.compile(r"\$(\$|\(([^)]*)\)|\(|.)", re.DOTALL)


def expand(value: str, env: dict[str, str]) -> str:
    """expansion.Expand: ``$(VAR)`` from ``env`` (left as is when unknown), ``$$`` an escaped ``$``."""

    def one(m: re.Match[str]) -> str:
        token = m.group(1)
        if token == "$":
            return "$"
        if m.group(2) is not None:
            name = m.group(2)
            return env[name] if name in env else f"$({name})"
        return m.group(0)

    return _VAR_REF.sub(one, value)


def expand_container_command_only_static(command: list[str], container: Obj) -> list[str]:
    """kubecontainer.ExpandContainerCommandOnlyStatic: only the env's literal values are known here."""
    env = {e["name"]: e.get("value", "") for e in container.get("env") or [] if "name" in e}
    return [expand(arg, env) for arg in command]


def format_pod(pod: Obj) -> str:
    """format.Pod: ``name_namespace(uid)``."""
    md = pod.get("metadata") or {}
    return f"{md.get('name', '')}_{md.get('namespace', '')}({md.get('uid', '')})"
