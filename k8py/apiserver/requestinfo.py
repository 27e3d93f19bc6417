"""RequestInfo: what a URL asks for, parsed as kube-apiserver's RequestInfoFactory does."""

from __future__ import annotations

from dataclasses import dataclass

# Subresources of a namespace itself, not resources inside it.
NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass
class RequestInfo:
    is_resource: bool
    verb: str = ""
    api_prefix: str = ""  # "api" or "apis"
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    parts: tuple[str, ...] = ()


def parse(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    """Split `/api/v1/namespaces/ns/pods/name/status` and friends; anything else is not a resource request."""
    parts = [p for p in path.strip("/").split("/")]
    if not parts or parts[0] not in ("api", "apis"):
        return RequestInfo(False, verb=method.lower(), parts=tuple(parts))
    info = RequestInfo(True, api_prefix=parts[0])
    rest = parts[1:]
    if info.api_prefix == "apis":
        if len(rest) < 2:
            return RequestInfo(False, verb=method.lower(), parts=tuple(parts))
        info.group, info.version, rest = rest[0], rest[1], rest[2:]
    else:
        if len(rest) < 1:
            return RequestInfo(False, verb=method.lower(), parts=tuple(parts))
        info.version, rest = rest[0], rest[1:]
    if not rest:
        return RequestInfo(False, verb=method.lower(), parts=tuple(parts))
    watch_path = False
    if rest[0] == "watch":
        watch_path, rest = True, rest[1:]
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        if not rest[1]:  # `namespaces//pods`: no namespace is not all namespaces
            return RequestInfo(False, verb=method.lower(), parts=tuple(parts))
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest or any(p == "" for p in rest):
        return RequestInfo(False, verb=method.lower(), parts=tuple(parts))
    info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]
    if info.resource == "namespaces" and info.namespace and not info.name:
        # /api/v1/namespaces/{name}[/status]: the namespace is the object.
        info.name, info.namespace = info.namespace, ""
    elif info.resource == "namespaces" and info.namespace:
        info.namespace = ""
    info.parts = tuple(rest[3:])
    watching = watch_path or query.get("watch") in ("1", "true", "True")
    m = method.upper()
    if m in ("GET", "HEAD"):
        if watching:
            info.verb = "watch"
        elif info.name:
            info.verb = "get"
        else:
            info.verb = "list"
    elif m == "POST":
        info.verb = "create"
    elif m == "PUT":
        info.verb = "update"
    elif m == "PATCH":
        info.verb = "patch"
    elif m == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    else:
        info.verb = m.lower()
    return info
