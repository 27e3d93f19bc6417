"""A container's environment, as the kubelet's ``makeEnvironmentVariables`` builds it.

The order of resolution is upstream's: service variables of the pod's namespace (docker-link style,
``enableServiceLinks``; the ``kubernetes`` Service of ``default`` always), then ``envFrom``
(ConfigMaps and Secrets, with their prefix), then ``env`` in declaration order, where a ``value``
expands ``$(VAR)`` references against the variables declared so far and the service variables
(third_party/forked/golang/expansion), and a ``valueFrom`` reads a ConfigMap or Secret key, a pod
field or a container resource.  Declared variables come first, in the order first set; service
variables not overridden follow.  Go's map order is random, so upstream promises no order;
k8py's is stable.

Since 1.30 (RelaxedEnvironmentVariableValidation) the kubelet passes every ``envFrom`` key on
as it is: ConfigMap and Secret keys can never contain ``=``, and names like ``1key`` are valid.

ConfigMaps and Secrets come from an :class:`ObjectLookup`; :class:`APIObjectLookup` reads them
through the API server with a per-instance cache (one instance per container start, as a pod
sync would use the kubelet's managers).  Failures raise :class:`ContainerConfigError` with kube's messages
(``configmap "x" not found``, ``couldn't find key y in ConfigMap ns/x``); the kubelet reports them
as CreateContainerConfigError.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from k8py.client import APIError, ClientError, NotFound, RESTClient
from k8py.client.resources import CONFIGMAPS, SECRETS, Resource
from k8py.kubelet.volumes.fieldpath import (
    FieldPathError,
    extract_container_resource_value,
    extract_field_path_as_string,
    extract_resource_value_by_container_name,
    merge_container_resource_limits,
)
from k8py.netutil import join_host_port

Obj = dict[str, Any]
MASTER_SERVICES = frozenset({"kubernetes"})
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"


class ContainerConfigError(Exception):
    """A container's configuration (environment, mounts) cannot be built; the kubelet reports
    ``reason`` with this message."""

    reason = CREATE_CONTAINER_CONFIG_ERROR


class ObjectNotFound(Exception):
    """A ConfigMap or Secret that does not exist: ``configmap "x" not found`` (the kubelet's managers'
    wording, with the singular resource)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f'{kind} "{name}" not found')
        self.kind = kind
        self.name = name


def client_error_message(err: ClientError) -> str:
    """What the kubelet reports for a failed API read: the Status message, else the transport error."""
    return err.message if isinstance(err, APIError) and err.message else str(err)


class ObjectLookup(Protocol):
    """Where the kubelet gets ConfigMaps and Secrets (upstream's configMapManager/secretManager)."""

    async def get_config_map(self, namespace: str, name: str) -> Obj:
        """The ConfigMap; raises ObjectNotFound (or a ClientError when the API cannot answer)."""
        ...

    async def get_secret(self, namespace: str, name: str) -> Obj: ...


class APIObjectLookup:
    """An ObjectLookup reading through the API server, each object once per instance."""

    def __init__(self, client: RESTClient) -> None:
        self._client = client
        self._cache: dict[tuple[str, str, str], Obj | ObjectNotFound] = {}

    async def get_config_map(self, namespace: str, name: str) -> Obj:
        return await self._get(CONFIGMAPS, "configmap", namespace, name)

    async def get_secret(self, namespace: str, name: str) -> Obj:
        return await self._get(SECRETS, "secret", namespace, name)

    async def _get(self, res: Resource, kind: str, namespace: str, name: str) -> Obj:
        key = (kind, namespace, name)
        if key not in self._cache:
            try:
                self._cache[key] = await self._client.get(res, name, namespace=namespace)
            except NotFound:
                self._cache[key] = ObjectNotFound(kind, name)
        found = self._cache[key]
        if isinstance(found, ObjectNotFound):
            raise found
        return found


def secret_data(secret: Obj) -> dict[str, bytes]:
    """A Secret's ``data``, base64-decoded."""
    return {key: base64.b64decode(value or "") for key, value in (secret.get("data") or {}).items()}


# ---- $(VAR) expansion (third_party/forked/golang/expansion) ------------------------------------------


def mapping_func_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """Look a name up in each context in turn; an unknown reference stays as written."""

    def mapping(name: str) -> str:
        for context in contexts:
            if name in context:
                return context[name]
        return f"$({name})"

    return mapping


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Replace ``$(VAR)`` with ``mapping(VAR)``; ``$$`` is a literal ``$``; anything else is kept."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            advance = 1
            if nxt == "$":
                out.append("$")
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                else:
                    out.append(mapping(text[cursor + 2 : close]))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


# ---- service links (pkg/kubelet/envvars) --------------------------------------------------------


def _is_service_ip_set(service: Obj) -> bool:
    return (service.get("spec") or {}).get("clusterIP", "") not in ("", "None")


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def from_services(services: Iterable[Obj]) -> list[tuple[str, str]]:
    """envvars.FromServices: ``<SVC>_SERVICE_HOST``/``_SERVICE_PORT[_<NAME>]`` and docker links."""
    result: list[tuple[str, str]] = []
    for service in services:
        if not _is_service_ip_set(service):
            continue
        spec = service["spec"]
        ports = spec.get("ports") or []
        if not ports:
            continue
        prefix = _env_name(service["metadata"]["name"])
        ip = spec["clusterIP"]
        result.append((f"{prefix}_SERVICE_HOST", ip))
        result.append((f"{prefix}_SERVICE_PORT", str(ports[0]["port"])))
        for port in ports:
            if port.get("name"):
                result.append((f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}", str(port["port"])))
        for i, port in enumerate(ports):
            protocol = port.get("protocol") or "TCP"
            url = f"{protocol.lower()}://{join_host_port(ip, port['port'])}"
            if i == 0:
                result.append((f"{prefix}_PORT", url))
            port_prefix = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            result += [
                (port_prefix, url),
                (f"{port_prefix}_PROTO", protocol.lower()),
                (f"{port_prefix}_PORT", str(port["port"])),
                (f"{port_prefix}_ADDR", ip),
            ]
    return result


def service_env_var_map(services: Iterable[Obj], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """getServiceEnvVarMap: the namespace's Services (with service links) and ``default/kubernetes``."""
    chosen: dict[str, Obj] = {}
    for service in services:
        if not _is_service_ip_set(service):
            continue
        md = service["metadata"]
        name = md["name"]
        if md.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif md.get("namespace") == namespace and enable_service_links:
            chosen[name] = service
    return dict(from_services(chosen[name] for name in sorted(chosen)))


# ---- pod fields -------------------------------------------------------------------------------------


def pod_field_runtime_value(
    field_ref: Obj,
    pod: Obj,
    *,
    pod_ips: Sequence[str],
    host_ips: Sequence[str],
    node_name: str,
) -> str:
    """podFieldSelectorRuntimeValue: the status/spec fields only the kubelet knows, else metadata."""
    path = field_ref.get("fieldPath", "")
    spec = pod.get("spec") or {}
    match path:
        case "spec.nodeName":
            return spec.get("nodeName") or node_name
        case "spec.serviceAccountName":
            return spec.get("serviceAccountName", "")
        case "status.hostIP":
            return host_ips[0] if host_ips else ""
        case "status.hostIPs":
            return ",".join(host_ips)
        case "status.podIP":
            return pod_ips[0] if pod_ips else ""
        case "status.podIPs":
            return ",".join(pod_ips)
    return extract_field_path_as_string(pod, path)


def container_resource_runtime_value(
    selector: Obj, pod: Obj, container: Obj, allocatable: Mapping[str, Any]
) -> str:
    """containerResourceRuntimeValue over limits defaulted to the node's allocatable."""
    if selector.get("containerName"):
        return extract_resource_value_by_container_name(selector, pod, selector["containerName"], allocatable)
    return extract_container_resource_value(selector, merge_container_resource_limits(container, allocatable))


# ---- the environment -------------------------------------------------------------------------------


async def make_environment(
    pod: Obj,
    container: Obj,
    *,
    lookup: ObjectLookup,
    services: Iterable[Obj],
    pod_ip: str,
    host_ip: str,
    node_name: str,
    pod_ips: Sequence[str] = (),
    host_ips: Sequence[str] = (),
    node_allocatable: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """The container's environment; see the module docstring.  ``services`` may span all namespaces."""
    md = pod.get("metadata") or {}
    namespace = md.get("namespace", "default")
    spec = pod.get("spec") or {}
    service_env = service_env_var_map(services, namespace, spec.get("enableServiceLinks", True) is not False)
    pod_ips = list(pod_ips) or ([pod_ip] if pod_ip else [])
    host_ips = list(host_ips) or ([host_ip] if host_ip else [])
    allocatable = node_allocatable or {}
    config_maps: dict[str, Obj | None] = {}  # None: missing and optional
    secrets: dict[str, dict[str, bytes] | None] = {}

    async def config_map(name: str, optional: bool) -> Obj | None:
        if name not in config_maps:
            try:
                config_maps[name] = await lookup.get_config_map(namespace, name)
            except ObjectNotFound as e:
                if not optional:
                    raise ContainerConfigError(str(e)) from None
                return None
            except ClientError as e:
                raise ContainerConfigError(client_error_message(e)) from e
        return config_maps[name]

    async def secret(name: str, optional: bool) -> dict[str, bytes] | None:
        if name not in secrets:
            try:
                secrets[name] = secret_data(await lookup.get_secret(namespace, name))
            except ObjectNotFound as e:
                if not optional:
                    raise ContainerConfigError(str(e)) from None
                return None
            except ClientError as e:
                raise ContainerConfigError(client_error_message(e)) from e
        return secrets[name]

    tmp_env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if (ref := source.get("configMapRef")) is not None:
            cm = await config_map(ref.get("name", ""), bool(ref.get("optional")))
            for key, value in ((cm or {}).get("data") or {}).items():
                tmp_env[prefix + key] = value
        elif (ref := source.get("secretRef")) is not None:
            data = await secret(ref.get("name", ""), bool(ref.get("optional")))
            for key, raw in (data or {}).items():
                tmp_env[prefix + key] = raw.decode("utf-8", errors="replace")

    mapping = mapping_func_for(tmp_env, service_env)
    for var in container.get("env") or []:
        value = var.get("value") or ""
        source = var.get("valueFrom") or {}
        if value:
            value = expand(value, mapping)
        elif (ref := source.get("fieldRef")) is not None:
            try:
                value = pod_field_runtime_value(ref, pod, pod_ips=pod_ips, host_ips=host_ips, node_name=node_name)
            except FieldPathError as e:
                raise ContainerConfigError(str(e)) from None
        elif (ref := source.get("resourceFieldRef")) is not None:
            try:
                value = container_resource_runtime_value(ref, pod, container, allocatable)
            except FieldPathError as e:
                raise ContainerConfigError(str(e)) from None
        elif (ref := source.get("configMapKeyRef")) is not None:
            name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
            cm = await config_map(name, optional)
            if cm is None:
                continue
            if key not in (cm.get("data") or {}):
                if optional:
                    continue
                raise ContainerConfigError(f"couldn't find key {key} in ConfigMap {namespace}/{name}")
            value = cm["data"][key]
        elif (ref := source.get("secretKeyRef")) is not None:
            name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
            data = await secret(name, optional)
            if data is None:
                continue
            if key not in data:
                if optional:
                    continue
                raise ContainerConfigError(f"couldn't find key {key} in Secret {namespace}/{name}")
            value = data[key].decode("utf-8", errors="replace")
        tmp_env[var["name"]] = value

    return list(tmp_env.items()) + [(k, v) for k, v in service_env.items() if k not in tmp_env]
