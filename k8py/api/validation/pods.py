"""Pods and pod templates: pkg/apis/core/validation's ValidatePodSpec and ValidatePodUpdate.

`validate_pod_spec` is shared by Pods and by every pod template (Deployments,
Jobs, ...); `is_pod` switches on the few rules upstream applies to Pods only.
Volumes, containers, probes, resources, tolerations, affinity and DNS config
are checked with upstream's field paths and messages; exotic volume plugins are
only counted (one source per volume), not inspected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k8py.api.validation.field import (
    Cause,
    duplicate,
    enum_value,
    forbidden,
    invalid,
    invalid_each,
    non_negative,
    not_found,
    not_supported,
    render,
    required,
    too_long,
)
from k8py.api.validation.meta import (
    Obj,
    validate_annotations,
    validate_label_name,
    validate_label_selector,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)
from k8py.api.validation.names import (
    inclusive_range_error,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_http_header_name,
    is_qualified_name,
    is_relaxed_env_var_name,
    is_valid_ip,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    is_valid_user_id,
    name_is_dns_label,
    name_is_dns_subdomain,
)
from k8py.api.validation.quantity import QUANTITY_FORMAT_ERROR, Quantity, parse_quantity

MAX_INT32 = 2**31 - 1
FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"
PROTOCOLS = ("SCTP", "TCP", "UDP")
UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)

# The VolumeSource fields, in the order upstream checks them; the second one found is the error.
_VOLUME_SOURCES = (
    "emptyDir hostPath gitRepo gcePersistentDisk awsElasticBlockStore secret nfs iscsi glusterfs flocker "
    "persistentVolumeClaim rbd cinder cephfs quobyte downwardAPI fc flexVolume configMap azureFile "
    "vsphereVolume photonPersistentDisk portworxVolume azureDisk storageos projected scaleIO csi ephemeral image"
).split()
# Upstream's error path for a second downwardAPI source carries a typo; kubectl users see it.
_SECOND_SOURCE_PATH = {"downwardAPI": "downwarAPI"}
_HOST_PATH_TYPES = (
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
)
_ENV_FIELD_PATHS = (
    "metadata.name metadata.namespace metadata.uid spec.nodeName spec.serviceAccountName "
    "status.hostIP status.hostIPs status.podIP status.podIPs"
).split()
_VOLUME_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)
_STANDARD_RESOURCES = frozenset(
    (
        "cpu memory ephemeral-storage requests.cpu requests.memory requests.ephemeral-storage limits.cpu "
        "limits.memory limits.ephemeral-storage pods count/pods services replicationcontrollers resourcequotas "
        "secrets configmaps persistentvolumeclaims storage requests.storage services.nodeports "
        "services.loadbalancers"
    ).split()
)
_CONTAINER_RESOURCES = frozenset(("cpu", "memory", "ephemeral-storage"))
_INTEGER_RESOURCES = frozenset(
    (
        "pods services replicationcontrollers resourcequotas secrets configmaps persistentvolumeclaims "
        "services.nodeports services.loadbalancers"
    ).split()
)


# --- resources ---------------------------------------------------------------------------------


def _is_native_resource(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_huge_pages(name: str) -> bool:
    return name.startswith("hugepages-")


def is_extended_resource_name(name: str) -> bool:
    if _is_native_resource(name) or name.startswith("requests."):
        return False
    return not is_qualified_name("requests." + name)


def _overcommit_allowed(name: str) -> bool:
    return _is_native_resource(name) and not _is_huge_pages(name)


def _validate_resource_name(name: str, path: str) -> list[Cause]:
    causes = invalid_each(path, name, is_qualified_name(name))
    if causes:
        return causes
    standard = name in _STANDARD_RESOURCES or _is_huge_pages(name) or name.startswith("requests.hugepages-")
    if "/" not in name and not standard:
        return [invalid(path, name, "must be a standard resource type or fully qualified")]
    return []


def _validate_container_resource_name(name: str, path: str) -> list[Cause]:
    causes = _validate_resource_name(name, path)
    if "/" not in name:
        if name not in _CONTAINER_RESOURCES and not _is_huge_pages(name):
            causes.append(invalid(path, name, "must be a standard resource for containers"))
    elif not _is_native_resource(name) and not is_extended_resource_name(name):
        causes.append(invalid(path, name, "doesn't follow extended resource name standard"))
    return causes


def validate_resource_quantity(name: str, raw: Any, path: str) -> tuple[Quantity | None, list[Cause]]:
    """ValidateResourceQuantityValue, after parsing (a malformed quantity is reported as kube's decoder words it)."""
    quantity = parse_quantity(raw)
    if quantity is None:
        return None, [invalid(path, raw, QUANTITY_FORMAT_ERROR)]
    causes = []
    if quantity.value < 0:
        causes.append(invalid(path, str(quantity), "must be greater than or equal to 0"))
    integer = name in _INTEGER_RESOURCES or is_extended_resource_name(name)
    if integer and quantity.value != quantity.value.to_integral_value():
        causes.append(invalid(path, str(quantity), "must be an integer"))
    return quantity, causes


def validate_resource_requirements(resources: Obj | None, path: str) -> list[Cause]:
    resources = resources or {}
    limits: Mapping[str, Any] = resources.get("limits") or {}
    requests: Mapping[str, Any] = resources.get("requests") or {}
    causes: list[Cause] = []
    parsed_limits: dict[str, Quantity] = {}
    for name, raw in limits.items():
        causes += _validate_container_resource_name(name, f"{path}.limits[{name}]")
        quantity, errs = validate_resource_quantity(name, raw, f"{path}.limits[{name}]")
        causes += errs
        if quantity is not None:
            parsed_limits[name] = quantity
    for name, raw in requests.items():
        causes += _validate_container_resource_name(name, f"{path}.requests[{name}]")
        quantity, errs = validate_resource_quantity(name, raw, f"{path}.requests[{name}]")
        causes += errs
        if quantity is None:
            continue
        limit = parsed_limits.get(name)
        if limit is not None:
            if quantity.value != limit.value and not _overcommit_allowed(name):
                causes.append(
                    invalid(f"{path}.requests", str(quantity), f"must be equal to {name} limit of {limit}")
                )
            elif quantity.value > limit.value:
                causes.append(
                    invalid(
                        f"{path}.requests",
                        str(quantity),
                        f"must be less than or equal to {name} limit of {limit}",
                    )
                )
        elif name not in limits and not _overcommit_allowed(name):
            causes.append(required(f"{path}.limits", "Limit must be set for non overcommitable resources"))
    names = set(limits) | set(requests)
    if any(_is_huge_pages(n) for n in names) and not names & {"cpu", "memory"}:
        causes.append(forbidden(path, "HugePages require cpu or memory"))
    return causes


# --- volumes -----------------------------------------------------------------------------------


def _validate_path_no_backsteps(target: str, path: str) -> list[Cause]:
    if ".." in target.replace("\\", "/").split("/"):
        return [invalid(path, target, "must not contain '..'")]
    return []


def _validate_local_descending_path(target: str, path: str) -> list[Cause]:
    causes = [invalid(path, target, "must be a relative path")] if target.startswith("/") else []
    return causes + _validate_path_no_backsteps(target, path)


def _validate_local_non_reserved_path(target: str, path: str) -> list[Cause]:
    causes = _validate_local_descending_path(target, path)
    if target.startswith("..") and not target.startswith("../"):
        causes.append(invalid(path, target, "must not start with '..'"))
    return causes


def _validate_mode(mode: int | None, path: str) -> list[Cause]:
    if mode is not None and not 0 <= mode <= 0o777:
        return [invalid(path, mode, FILE_MODE_ERROR)]
    return []


def _validate_key_to_paths(items: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, item in enumerate(items or []):
        item_path = f"{path}[{i}]"
        if not item.get("key"):
            causes.append(required(f"{item_path}.key"))
        if not item.get("path"):
            causes.append(required(f"{item_path}.path"))
        causes += _validate_local_non_reserved_path(item.get("path", ""), f"{item_path}.path")
        causes += _validate_mode(item.get("mode"), f"{item_path}.mode")
    return causes


def _validate_object_field_selector(
    selector: Obj, valid: tuple[str, ...] | list[str], path: str
) -> list[Cause]:
    if not selector.get("apiVersion"):
        return [required(f"{path}.apiVersion")]
    field_path = selector.get("fieldPath", "")
    if not field_path:
        return [required(f"{path}.fieldPath")]
    if field_path.endswith("']") and "['" in field_path:
        base, _, subscript = field_path[:-2].partition("['")
        if base == "metadata.annotations":
            return invalid_each(path, subscript.lower(), is_qualified_name(subscript.lower()))
        if base == "metadata.labels":
            return invalid_each(path, subscript, is_qualified_name(subscript))
        return [invalid(path, base, "does not support subscript")]
    if field_path not in valid:
        return [not_supported(f"{path}.fieldPath", field_path, sorted(valid))]
    return []


def _validate_volume_source(volume: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    found = 0
    for key in _VOLUME_SOURCES:
        source = volume.get(key)
        if source is None:
            continue
        if found:
            causes.append(
                forbidden(
                    f"{path}.{_SECOND_SOURCE_PATH.get(key, key)}", "may not specify more than 1 volume type"
                )
            )
            continue
        found += 1
        causes += validate_volume_source(key, source, f"{path}.{key}")
    if not found:
        causes.append(required(path, "must specify a volume type"))
    return causes


def validate_volume_source(key: str, source: Obj, path: str) -> list[Cause]:
    """The checks of one volume source (`key` names its kind); pod volumes and PersistentVolumes share them."""
    causes: list[Cause] = []
    if key == "hostPath":
        if not source.get("path"):
            return [required(f"{path}.path")]
        causes += _validate_path_no_backsteps(source["path"], f"{path}.path")
        if source.get("type") is not None and source["type"] not in _HOST_PATH_TYPES:
            causes.append(not_supported(f"{path}.type", source["type"], _HOST_PATH_TYPES))
    elif key in ("secret", "configMap"):
        name_key = "secretName" if key == "secret" else "name"
        if not source.get(name_key):
            causes.append(required(f"{path}.{name_key}"))
        causes += _validate_mode(source.get("defaultMode"), f"{path}.defaultMode")
        causes += _validate_key_to_paths(source.get("items"), f"{path}.items")
    elif key == "persistentVolumeClaim":
        if not source.get("claimName"):
            causes.append(required(f"{path}.claimName"))
    elif key == "nfs":
        for field in ("server", "path"):
            if not source.get(field):
                causes.append(required(f"{path}.{field}"))
        if not source.get("path", "").startswith("/"):
            causes.append(invalid(f"{path}.path", source.get("path", ""), "must be an absolute path"))
    elif key == "emptyDir":
        limit = parse_quantity(source["sizeLimit"]) if source.get("sizeLimit") is not None else None
        if limit is not None and limit.value < 0:
            causes.append(forbidden(f"{path}.sizeLimit", "SizeLimit field must be a valid resource quantity"))
    elif key == "downwardAPI":
        causes += _validate_mode(source.get("defaultMode"), f"{path}.defaultMode")
        for item in source.get("items") or []:
            causes += _validate_downward_api_file(item, path)
    elif key == "projected":
        causes += _validate_mode(source.get("defaultMode"), f"{path}.defaultMode")
        causes += _validate_projection_sources(source.get("sources") or [], path)
    elif key == "csi":
        if not source.get("driver"):
            causes.append(required(f"{path}.driver"))
        elif len(source["driver"]) > 63:
            causes.append(too_long(f"{path}.driver", 63))
        else:
            causes += invalid_each(
                f"{path}.driver", source["driver"], is_dns1123_subdomain(source["driver"].lower())
            )
    elif key == "ephemeral":
        if source.get("volumeClaimTemplate") is None:
            causes.append(required(f"{path}.volumeClaimTemplate"))
    return causes


def _validate_downward_api_file(item: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if not item.get("path"):
        causes.append(required(f"{path}.path"))
    causes += _validate_local_non_reserved_path(item.get("path", ""), f"{path}.path")
    if item.get("fieldRef") is not None:
        causes += _validate_object_field_selector(item["fieldRef"], _VOLUME_FIELD_PATHS, f"{path}.fieldRef")
        if item.get("resourceFieldRef") is not None:
            causes.append(
                invalid(path, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously")
            )
    elif item.get("resourceFieldRef") is None:
        causes.append(required(path, "one of fieldRef and resourceFieldRef is required"))
    return causes + _validate_mode(item.get("mode"), f"{path}.mode")


def _validate_projection_sources(sources: list[Obj], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, source in enumerate(sources):
        source_path = f"{path}.sources[{i}]"
        kinds = [
            k
            for k in ("secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle")
            if source.get(k) is not None
        ]
        for kind in ("secret", "configMap"):
            if source.get(kind) is not None:
                if not source[kind].get("name"):
                    causes.append(required(f"{source_path}.{kind}.name"))
                causes += _validate_key_to_paths(source[kind].get("items"), f"{source_path}.{kind}.items")
        for item in (source.get("downwardAPI") or {}).get("items") or []:
            causes += _validate_downward_api_file(item, f"{source_path}.downwardAPI")
        token = source.get("serviceAccountToken")
        if token is not None:
            seconds = token.get("expirationSeconds", 0)
            if seconds < 600:
                causes.append(
                    invalid(
                        f"{source_path}.serviceAccountToken.expirationSeconds",
                        seconds,
                        "may not specify a duration less than 10 minutes",
                    )
                )
            elif seconds > 1 << 32:
                causes.append(
                    invalid(
                        f"{source_path}.serviceAccountToken.expirationSeconds",
                        seconds,
                        "may not specify a duration larger than 2^32 seconds",
                    )
                )
            if not token.get("path"):
                causes.append(required(f"{path}.path"))
            else:
                causes += _validate_local_non_reserved_path(token["path"], f"{path}.path")
        if len(kinds) > 1:
            causes.append(forbidden(source_path, "may not specify more than 1 volume type per source"))
    return causes


def validate_volumes(volumes: list[Obj] | None, path: str) -> tuple[dict[str, Obj], list[Cause]]:
    """The valid volumes by name (only those may be mounted) and the causes against the rest."""
    valid: dict[str, Obj] = {}
    causes: list[Cause] = []
    for i, volume in enumerate(volumes or []):
        name = volume.get("name", "")
        name_path = f"{path}[{i}].name"
        errs = _validate_volume_source(volume, f"{path}[{i}]")
        if not name:
            errs.append(required(name_path))
        else:
            errs += invalid_each(name_path, name, is_dns1123_label(name))
        if name in valid:
            errs.append(duplicate(name_path, name))
        if errs:
            causes += errs
        else:
            valid[name] = volume
    return valid, causes


# --- containers --------------------------------------------------------------------------------


def _validate_ports(ports: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, port in enumerate(ports or []):
        idx = f"{path}[{i}]"
        name = port.get("name", "")
        if name:
            if errs := is_valid_port_name(name):
                causes += invalid_each(f"{idx}.name", name, errs)
            elif name in names:
                causes.append(duplicate(f"{idx}.name", name))
            else:
                names.add(name)
        container_port = port.get("containerPort", 0)
        if not container_port:
            causes.append(required(f"{idx}.containerPort"))
        else:
            causes += invalid_each(f"{idx}.containerPort", container_port, is_valid_port_num(container_port))
        if port.get("hostPort"):
            causes += invalid_each(f"{idx}.hostPort", port["hostPort"], is_valid_port_num(port["hostPort"]))
        causes += enum_value(f"{idx}.protocol", port.get("protocol", ""), PROTOCOLS)
    return causes


def _validate_env(env: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, var in enumerate(env or []):
        idx = f"{path}[{i}]"
        if not var.get("name"):
            causes.append(required(f"{idx}.name"))
        else:
            causes += invalid_each(f"{idx}.name", var["name"], is_relaxed_env_var_name(var["name"]))
        source = var.get("valueFrom")
        if source is None:
            continue
        from_path = f"{idx}.valueFrom"
        kinds = [
            k
            for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
            if source.get(k) is not None
        ]
        if source.get("fieldRef") is not None:
            causes += _validate_object_field_selector(
                source["fieldRef"], _ENV_FIELD_PATHS, f"{from_path}.fieldRef"
            )
        for kind in ("configMapKeyRef", "secretKeyRef"):
            if (ref := source.get(kind)) is not None:
                causes += invalid_each(
                    f"{from_path}.{kind}.name",
                    ref.get("name", ""),
                    name_is_dns_subdomain(ref.get("name", ""), False),
                )
                if not ref.get("key"):
                    causes.append(required(f"{from_path}.{kind}.key"))
                else:
                    causes += invalid_each(
                        f"{from_path}.{kind}.key", ref["key"], is_config_map_key(ref["key"])
                    )
        if not kinds:
            causes.append(
                invalid(
                    from_path,
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                )
            )
        elif var.get("value"):
            causes.append(invalid(from_path, "", "may not be specified when `value` is not empty"))
        elif len(kinds) > 1:
            causes.append(invalid(from_path, "", "may not have more than one field specified at a time"))
    return causes


def _validate_env_from(sources: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, source in enumerate(sources or []):
        idx = f"{path}[{i}]"
        if source.get("prefix"):
            causes += invalid_each(
                f"{idx}.prefix", source["prefix"], is_relaxed_env_var_name(source["prefix"])
            )
        kinds = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        for kind in kinds:
            name = source[kind].get("name", "")
            if not name:
                causes.append(required(f"{idx}.{kind}.name"))
            else:
                causes += invalid_each(f"{idx}.{kind}.name", name, name_is_dns_subdomain(name, True))
        if not kinds:
            causes.append(invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(kinds) > 1:
            causes.append(invalid(path, "", "may not have more than one field specified at a time"))
    return causes


def _validate_volume_mounts(
    mounts: list[Obj] | None, volumes: dict[str, Obj], container: Obj, path: str
) -> list[Cause]:
    causes: list[Cause] = []
    mount_paths: set[str] = set()
    device_names = {d.get("name") for d in container.get("volumeDevices") or []}
    device_paths = {d.get("devicePath") for d in container.get("volumeDevices") or []}
    privileged = bool((container.get("securityContext") or {}).get("privileged"))
    for i, mount in enumerate(mounts or []):
        idx = f"{path}[{i}]"
        name, mount_path = mount.get("name", ""), mount.get("mountPath", "")
        if not name:
            causes.append(required(f"{idx}.name"))
        if name not in volumes:
            causes.append(not_found(f"{idx}.name", name))
        if not mount_path:
            causes.append(required(f"{idx}.mountPath"))
        if mount_path in mount_paths:
            causes.append(invalid(f"{idx}.mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
        if name in device_names:
            causes.append(invalid(f"{idx}.name", name, "must not already exist in volumeDevices"))
        if mount_path in device_paths:
            causes.append(
                invalid(f"{idx}.mountPath", mount_path, "must not already exist as a path in volumeDevices")
            )
        if mount.get("subPath"):
            causes += _validate_local_descending_path(mount["subPath"], f"{path}.subPath")
        if mount.get("subPathExpr"):
            if mount.get("subPath"):
                causes.append(
                    invalid(
                        f"{idx}.subPathExpr",
                        mount["subPathExpr"],
                        "subPathExpr and subPath are mutually exclusive",
                    )
                )
            causes += _validate_local_descending_path(mount["subPathExpr"], f"{path}.subPathExpr")
        propagation = mount.get("mountPropagation")
        if propagation is not None:
            supported = ("Bidirectional", "HostToContainer", "None")
            if propagation not in supported:
                causes.append(not_supported(f"{path}.mountPropagation", propagation, supported))
            if propagation == "Bidirectional" and not privileged:
                causes.append(
                    forbidden(
                        f"{path}.mountPropagation",
                        "Bidirectional mount propagation is available only to privileged containers",
                    )
                )
    return causes


def validate_port_num_or_name(port: Any, path: str) -> list[Cause]:
    if isinstance(port, str):
        return invalid_each(path, port, is_valid_port_name(port))
    return invalid_each(path, port or 0, is_valid_port_num(port or 0))


def _validate_handler(
    handler: Obj, grace_period: int | None, path: str, kinds: tuple[str, ...]
) -> list[Cause]:
    causes: list[Cause] = []
    found = False
    for kind in kinds:
        action = handler.get(kind)
        if action is None:
            continue
        if found:
            causes.append(forbidden(f"{path}.{kind}", "may not specify more than 1 handler type"))
            continue
        found = True
        action_path = f"{path}.{kind}"
        if kind == "exec" and not action.get("command"):
            causes.append(required(f"{action_path}.command"))
        elif kind == "httpGet":
            if not action.get("path"):
                causes.append(required(f"{action_path}.path"))
            causes += validate_port_num_or_name(action.get("port"), f"{action_path}.port")
            if action.get("scheme", "") not in ("HTTP", "HTTPS"):
                causes.append(
                    not_supported(f"{action_path}.scheme", action.get("scheme", ""), ("HTTP", "HTTPS"))
                )
            for header in action.get("httpHeaders") or []:
                causes += invalid_each(
                    f"{action_path}.httpHeaders",
                    header.get("name", ""),
                    is_http_header_name(header.get("name", "")),
                )
        elif kind in ("tcpSocket", "grpc"):
            causes += validate_port_num_or_name(action.get("port"), f"{action_path}.port")
        elif kind == "sleep":
            seconds = action.get("seconds", 0)
            if grace_period is not None and not 0 < seconds <= grace_period:
                causes.append(
                    invalid(
                        action_path,
                        seconds,
                        f"must be greater than 0 and less than terminationGracePeriodSeconds ({grace_period}). "
                        "Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep.",
                    )
                )
    if not found:
        causes.append(required(path, "must specify a handler type"))
    return causes


def _validate_probe(probe: Obj | None, grace_period: int | None, path: str, kind: str) -> list[Cause]:
    if probe is None:
        return []
    causes = _validate_handler(probe, grace_period, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        causes += non_negative(f"{path}.{key}", probe.get(key, 0))
    probe_grace = probe.get("terminationGracePeriodSeconds")
    if probe_grace is not None and probe_grace <= 0:
        causes.append(invalid(f"{path}.terminationGracePeriodSeconds", probe_grace, "must be greater than 0"))
    if kind == "readinessProbe" and probe_grace is not None:
        causes.append(
            invalid(
                f"{path}.terminationGracePeriodSeconds", probe_grace, "must not be set for readinessProbes"
            )
        )
    if kind in ("livenessProbe", "startupProbe") and probe.get("successThreshold", 0) != 1:
        causes.append(invalid(f"{path}.successThreshold", probe.get("successThreshold", 0), "must be 1"))
    return causes


def _validate_probes_and_lifecycle(container: Obj, grace_period: int | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    lifecycle = container.get("lifecycle")
    if lifecycle is not None:
        for hook in ("postStart", "preStop"):
            if lifecycle.get(hook) is not None:
                causes += _validate_handler(
                    lifecycle[hook],
                    grace_period,
                    f"{path}.lifecycle.{hook}",
                    ("exec", "httpGet", "tcpSocket", "sleep"),
                )
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        causes += _validate_probe(container.get(kind), grace_period, f"{path}.{kind}", kind)
    return causes


def _validate_seccomp_profile(profile: Obj | None, path: str) -> list[Cause]:
    if profile is None:
        return []
    causes = []
    kind = profile.get("type", "")
    supported = ("Localhost", "RuntimeDefault", "Unconfined")
    if not kind:
        causes.append(required(f"{path}.type", "type is required when seccompProfile is set"))
    elif kind not in supported:
        causes.append(not_supported(f"{path}.type", kind, supported))
    if kind == "Localhost":
        if profile.get("localhostProfile") is None:
            causes.append(required(f"{path}.localhostProfile", "must be set when seccomp type is Localhost"))
        else:
            causes += _validate_local_descending_path(profile["localhostProfile"], f"{path}.localhostProfile")
    elif profile.get("localhostProfile") is not None:
        causes.append(
            invalid(f"{path}.localhostProfile", profile, "can only be set when seccomp type is Localhost")
        )
    return causes


def _validate_ids(context: Obj, path: str, keys: tuple[str, ...]) -> list[Cause]:
    causes: list[Cause] = []
    for key in keys:
        if context.get(key) is not None:
            causes += invalid_each(f"{path}.{key}", context[key], is_valid_user_id(context[key]))
    return causes


def _validate_security_context(context: Obj | None, path: str) -> list[Cause]:
    if context is None:
        return []
    causes = _validate_ids(context, path, ("runAsUser", "runAsGroup"))
    if context.get("procMount") is not None and context["procMount"] not in ("Default", "Unmasked"):
        causes.append(not_supported(f"{path}.procMount", context["procMount"], ("Default", "Unmasked")))
    causes += _validate_seccomp_profile(context.get("seccompProfile"), f"{path}.seccompProfile")
    if context.get("allowPrivilegeEscalation") is False and context.get("privileged"):
        causes.append(
            invalid(path, context, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true")
        )
    return causes


def _validate_container_common(container: Obj, volumes: dict[str, Obj], path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = container.get("name", "")
    if not name:
        causes.append(required(f"{path}.name"))
    else:
        causes += invalid_each(f"{path}.name", name, is_dns1123_label(name))
    if not container.get("image"):
        causes.append(required(f"{path}.image"))
    causes += enum_value(
        f"{path}.terminationMessagePolicy",
        container.get("terminationMessagePolicy", ""),
        ("File", "FallbackToLogsOnError"),
    )
    causes += _validate_ports(container.get("ports"), f"{path}.ports")
    causes += _validate_env(container.get("env"), f"{path}.env")
    causes += _validate_env_from(container.get("envFrom"), f"{path}.envFrom")
    causes += _validate_volume_mounts(
        container.get("volumeMounts"), volumes, container, f"{path}.volumeMounts"
    )
    causes += enum_value(
        f"{path}.imagePullPolicy", container.get("imagePullPolicy", ""), ("Always", "IfNotPresent", "Never")
    )
    causes += validate_resource_requirements(container.get("resources"), f"{path}.resources")
    causes += _validate_security_context(container.get("securityContext"), f"{path}.securityContext")
    return causes


def _host_port_conflicts(containers: list[Obj], path: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, container in enumerate(containers):
        for j, port in enumerate(container.get("ports") or []):
            if not port.get("hostPort"):
                continue
            key = f"{port.get('protocol', '')}/{port.get('hostIP', '')}/{port['hostPort']}"
            if key in seen:
                causes.append(duplicate(f"{path}[{i}].ports[{j}].hostPort", key))
            seen.add(key)
    return causes


def _validate_containers(
    spec: Obj, volumes: dict[str, Obj], grace_period: int | None, path: str
) -> list[Cause]:
    containers = spec.get("containers") or []
    if not containers:
        return [required(f"{path}.containers")]
    causes: list[Cause] = []
    names: set[str] = set()
    for i, container in enumerate(containers):
        idx = f"{path}.containers[{i}]"
        causes += _validate_container_common(container, volumes, idx)
        if container.get("name") in names:
            causes.append(duplicate(f"{idx}.name", container.get("name")))
        names.add(container.get("name", ""))
        causes += _validate_probes_and_lifecycle(container, grace_period, idx)
        if container.get("restartPolicy") is not None:
            causes.append(forbidden(f"{idx}.restartPolicy", "may not be set for non-init containers"))
    return causes + _host_port_conflicts(containers, f"{path}.containers")


def _validate_init_containers(
    spec: Obj, volumes: dict[str, Obj], grace_period: int | None, path: str
) -> list[Cause]:
    causes: list[Cause] = []
    names = {c.get("name", "") for c in spec.get("containers") or []}
    for i, container in enumerate(spec.get("initContainers") or []):
        idx = f"{path}.initContainers[{i}]"
        causes += _validate_container_common(container, volumes, idx)
        restart = container.get("restartPolicy")
        if restart is not None and restart != "Always":
            causes.append(not_supported(f"{idx}.restartPolicy", restart, ("Always",)))
        name = container.get("name", "")
        if name in names:
            causes.append(duplicate(f"{idx}.name", name))
        elif name:
            names.add(name)
        causes += _host_port_conflicts([container], f"{path}.initContainers")
        if restart == "Always":
            causes += _validate_probes_and_lifecycle(container, grace_period, idx)
        else:
            for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if container.get(key) is not None:
                    causes.append(
                        forbidden(
                            f"{idx}.{key}", "may not be set for init containers without restartPolicy=Always"
                        )
                    )
    return causes


# --- scheduling ----------------------------------------------------------------------------------


def validate_tolerations(tolerations: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, toleration in enumerate(tolerations or []):
        idx = f"{path}[{i}]"
        key, operator = toleration.get("key", ""), toleration.get("operator", "")
        value, effect = toleration.get("value", ""), toleration.get("effect", "")
        if key:
            causes += validate_label_name(key, f"{idx}.key")
        if not key and operator != "Exists":
            causes.append(
                invalid(
                    f"{idx}.operator",
                    operator,
                    'operator must be Exists when `key` is empty, which means "match all values and all keys"',
                )
            )
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            causes.append(
                invalid(f"{idx}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set")
            )
        if operator in ("Equal", ""):
            if errs := is_valid_label_value(value):
                causes.append(invalid(f"{idx}.operator", value, ";".join(errs)))
        elif operator == "Exists":
            if value:
                causes.append(
                    invalid(f"{idx}.operator", value, "value must be empty when `operator` is 'Exists'")
                )
        else:
            causes.append(not_supported(f"{idx}.operator", operator, ("Equal", "Exists")))
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            causes.append(
                not_supported(f"{idx}.effect", effect, ("NoSchedule", "PreferNoSchedule", "NoExecute"))
            )
    return causes


def _validate_node_selector_term(term: Obj, path: str, *, allow_invalid_values: bool) -> list[Cause]:
    causes: list[Cause] = []
    for j, req in enumerate(term.get("matchExpressions") or []):
        req_path = f"{path}.matchExpressions[{j}]"
        operator, values = req.get("operator", ""), req.get("values") or []
        if operator in ("In", "NotIn"):
            if not values:
                causes.append(
                    required(f"{req_path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                causes.append(
                    forbidden(
                        f"{req_path}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        elif operator in ("Gt", "Lt"):
            if len(values) != 1:
                causes.append(
                    required(
                        f"{req_path}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'"
                    )
                )
        else:
            causes.append(invalid(f"{req_path}.operator", operator, "not a valid selector operator"))
        causes += validate_label_name(req.get("key", ""), f"{req_path}.key")
        if not allow_invalid_values:
            for k, value in enumerate(values):
                causes += invalid_each(f"{req_path}.values[{k}]", value, is_valid_label_value(value))
    for j, req in enumerate(term.get("matchFields") or []):
        req_path = f"{path}.matchFields[{j}]"
        if req.get("operator") not in ("In", "NotIn"):
            causes.append(
                invalid(f"{req_path}.operator", req.get("operator", ""), "not a valid selector operator")
            )
        elif len(req.get("values") or []) != 1:
            causes.append(
                required(
                    f"{req_path}.values",
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                )
            )
        if req.get("key") != "metadata.name":
            causes.append(invalid(f"{req_path}.key", req.get("key", ""), "not a valid field selector key"))
    return causes


def _validate_pod_affinity_terms(terms: list[Obj] | None, path: str, *, weighted: bool) -> list[Cause]:
    causes: list[Cause] = []
    for i, entry in enumerate(terms or []):
        term_path = f"{path}[{i}]"
        term = entry
        if weighted:
            causes += _validate_weight(entry.get("weight", 0), f"{term_path}.weight")
            term, term_path = entry.get("podAffinityTerm") or {}, f"{term_path}.podAffinityTerm"
        causes += validate_label_selector(term.get("labelSelector"), f"{term_path}.labelSelector")
        causes += validate_label_selector(term.get("namespaceSelector"), f"{term_path}.namespaceSelector")
        for namespace in term.get("namespaces") or []:
            causes += invalid_each(f"{term_path}.namespace", namespace, name_is_dns_label(namespace, False))
        if not term.get("topologyKey"):
            causes.append(required(f"{term_path}.topologyKey", "can not be empty"))
        causes += validate_label_name(term.get("topologyKey", ""), f"{term_path}.topologyKey")
    return causes


def _validate_weight(weight: int, path: str) -> list[Cause]:
    return [] if 0 < weight <= 100 else [invalid(path, weight, "must be in the range 1-100")]


def _validate_affinity(affinity: Obj | None, path: str) -> list[Cause]:
    if affinity is None:
        return []
    causes: list[Cause] = []
    node = affinity.get("nodeAffinity")
    if node is not None:
        node_path = f"{path}.nodeAffinity"
        required_terms = node.get("requiredDuringSchedulingIgnoredDuringExecution")
        if required_terms is not None:
            terms_path = f"{node_path}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
            terms = required_terms.get("nodeSelectorTerms") or []
            if not terms:
                causes.append(required(terms_path, "must have at least one node selector term"))
            for i, term in enumerate(terms):
                causes += _validate_node_selector_term(term, f"{terms_path}[{i}]", allow_invalid_values=False)
        preferred_path = f"{node_path}.preferredDuringSchedulingIgnoredDuringExecution"
        for i, term in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            causes += _validate_weight(term.get("weight", 0), f"{preferred_path}[{i}].weight")
            causes += _validate_node_selector_term(
                term.get("preference") or {}, f"{preferred_path}[{i}].preference", allow_invalid_values=True
            )
    for kind in ("podAffinity", "podAntiAffinity"):
        pod = affinity.get(kind)
        if pod is None:
            continue
        kind_path = f"{path}.{kind}"
        causes += _validate_pod_affinity_terms(
            pod.get("requiredDuringSchedulingIgnoredDuringExecution"),
            f"{kind_path}.requiredDuringSchedulingIgnoredDuringExecution",
            weighted=False,
        )
        causes += _validate_pod_affinity_terms(
            pod.get("preferredDuringSchedulingIgnoredDuringExecution"),
            f"{kind_path}.preferredDuringSchedulingIgnoredDuringExecution",
            weighted=True,
        )
    return causes


def _validate_topology_spread(constraints: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, constraint in enumerate(constraints or []):
        idx = f"{path}[{i}]"
        if constraint.get("maxSkew", 0) <= 0:
            causes.append(
                invalid(f"{idx}.maxSkew", constraint.get("maxSkew", 0), "must be greater than zero")
            )
        if not constraint.get("topologyKey"):
            causes.append(required(f"{idx}.topologyKey", "can not be empty"))
        action = constraint.get("whenUnsatisfiable", "")
        if action not in ("DoNotSchedule", "ScheduleAnyway"):
            causes.append(
                not_supported(f"{idx}.whenUnsatisfiable", action, ("DoNotSchedule", "ScheduleAnyway"))
            )
        pair = (constraint.get("topologyKey", ""), action)
        if pair in seen:
            causes.append(duplicate(f"{idx}.{{topologyKey, whenUnsatisfiable}}", f"{{{pair[0]}, {pair[1]}}}"))
        seen.add(pair)
        causes += validate_label_selector(constraint.get("labelSelector"), f"{idx}.labelSelector")
    return causes


def _validate_dns_config(spec: Obj, path: str) -> list[Cause]:
    config = spec.get("dnsConfig")
    if spec.get("dnsPolicy") == "None":
        if config is None:
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not config.get("nameservers"):
            return [
                required(
                    f"{path}.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None"
                )
            ]
    if config is None:
        return []
    causes: list[Cause] = []
    nameservers = config.get("nameservers") or []
    if len(nameservers) > 3:
        causes.append(invalid(f"{path}.nameservers", nameservers, "must not have more than 3 nameservers"))
    for i, server in enumerate(nameservers):
        causes += invalid_each(f"{path}.nameservers[{i}]", server, is_valid_ip(server))
    searches = config.get("searches") or []
    if len(searches) > 32:
        causes.append(invalid(f"{path}.searches", searches, "must not have more than 32 search paths"))
    if len(" ".join(searches)) > 2048:
        causes.append(
            invalid(
                f"{path}.searches",
                searches,
                "must not have more than 2048 characters (including spaces) in the search list",
            )
        )
    for i, search in enumerate(searches):
        search = search.removesuffix(".")
        causes += invalid_each(f"{path}.searches[{i}]", search, is_dns1123_subdomain(search))
    for i, option in enumerate(config.get("options") or []):
        if not option.get("name"):
            causes.append(required(f"{path}.options[{i}]", "must not be empty"))
    return causes


def _validate_pod_security_context(context: Obj | None, path: str) -> list[Cause]:
    if context is None:
        return []
    causes = _validate_ids(context, path, ("fsGroup", "runAsUser", "runAsGroup"))
    for i, gid in enumerate(context.get("supplementalGroups") or []):
        causes += invalid_each(f"{path}.supplementalGroups[{i}]", gid, is_valid_user_id(gid))
    if context.get("fsGroupChangePolicy") is not None and context["fsGroupChangePolicy"] not in (
        "Always",
        "OnRootMismatch",
    ):
        causes.append(
            not_supported(
                f"{path}.fsGroupChangePolicy", context["fsGroupChangePolicy"], ("Always", "OnRootMismatch")
            )
        )
    return causes + _validate_seccomp_profile(context.get("seccompProfile"), f"{path}.seccompProfile")


# --- the pod spec ---------------------------------------------------------------------------------


def validate_pod_spec(spec: Obj | None, path: str, *, is_pod: bool = False) -> list[Cause]:
    """ValidatePodSpec, for Pods (`is_pod`) and pod templates alike."""
    spec = spec or {}
    causes: list[Cause] = []
    grace_period = spec.get("terminationGracePeriodSeconds")
    if grace_period is None:
        causes.append(required(f"{path}.terminationGracePeriodSeconds"))
    volumes, errs = validate_volumes(spec.get("volumes"), f"{path}.volumes")
    causes += errs
    causes += _validate_containers(spec, volumes, grace_period, path)
    causes += _validate_init_containers(spec, volumes, grace_period, path)
    if spec.get("hostNetwork"):
        for i, container in enumerate(spec.get("containers") or []):
            for j, port in enumerate(container.get("ports") or []):
                host, cont = port.get("hostPort", 0), port.get("containerPort", 0)
                if (is_pod or host) and host != cont:
                    causes.append(
                        invalid(
                            f"{path}.containers[{i}].ports[{j}].hostPort",
                            host,
                            "must match `containerPort` when `hostNetwork` is true",
                        )
                    )
    causes += enum_value(
        f"{path}.restartPolicy", spec.get("restartPolicy", ""), ("Always", "OnFailure", "Never")
    )
    causes += enum_value(
        f"{path}.dnsPolicy",
        spec.get("dnsPolicy", ""),
        ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"),
    )
    causes += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    causes += _validate_pod_security_context(spec.get("securityContext"), f"{path}.securityContext")
    for i, secret in enumerate(spec.get("imagePullSecrets") or []):
        if set(secret) - {"name"}:
            causes.append(invalid(f"{path}.imagePullSecrets[{i}]", secret, "only name may be set"))
    causes += _validate_affinity(spec.get("affinity"), f"{path}.affinity")
    causes += _validate_dns_config(spec, f"{path}.dnsConfig")
    for i, gate in enumerate(spec.get("readinessGates") or []):
        condition = gate.get("conditionType", "")
        causes += invalid_each(
            f"{path}.readinessGates[{i}].conditionType", condition, is_qualified_name(condition)
        )
    gates: set[str] = set()
    for i, gate in enumerate(spec.get("schedulingGates") or []):
        name = gate.get("name", "")
        causes += invalid_each(f"{path}.schedulingGates[{i}]", name, is_qualified_name(name))
        if name in gates:
            causes.append(duplicate(f"{path}.schedulingGates[{i}]", name))
        gates.add(name)
    causes += _validate_topology_spread(
        spec.get("topologySpreadConstraints"), f"{path}.topologySpreadConstraints"
    )
    for key in ("serviceAccountName", "nodeName", "priorityClassName"):
        if spec.get(key):
            causes += invalid_each(f"{path}.{key}", spec[key], name_is_dns_subdomain(spec[key], False))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= MAX_INT32:
        causes.append(invalid(f"{path}.activeDeadlineSeconds", deadline, inclusive_range_error(1, MAX_INT32)))
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            causes += invalid_each(f"{path}.{key}", spec[key], is_dns1123_label(spec[key]))
    causes += validate_tolerations(spec.get("tolerations"), f"{path}.tolerations")
    for i, alias in enumerate(spec.get("hostAliases") or []):
        causes += invalid_each(
            f"{path}.hostAliases[{i}].ip", alias.get("ip", ""), is_valid_ip(alias.get("ip", ""))
        )
        for j, hostname in enumerate(alias.get("hostnames") or []):
            causes += invalid_each(
                f"{path}.hostAliases[{i}].hostnames[{j}]", hostname, is_dns1123_subdomain(hostname)
            )
    if spec.get("runtimeClassName") is not None:
        runtime_class = spec["runtimeClassName"]
        causes += invalid_each(
            f"{path}.runtimeClassName", runtime_class, name_is_dns_subdomain(runtime_class, False)
        )
    if spec.get("preemptionPolicy") is not None:
        causes += enum_value(
            f"{path}.preemptionPolicy", spec["preemptionPolicy"], ("PreemptLowerPriority", "Never")
        )
    if spec.get("overhead") is not None:
        causes += validate_resource_requirements({"limits": spec["overhead"]}, f"{path}.overhead")
    if spec.get("os") is not None:
        os_name = spec["os"].get("name", "")
        if not os_name:
            causes.append(required(f"{path}.os.name", "cannot be empty"))
        elif os_name not in ("linux", "windows"):
            causes.append(not_supported(f"{path}.os", os_name, ("linux", "windows")))
    return causes


def validate_pod_template_spec(template: Obj | None, path: str) -> list[Cause]:
    """ValidatePodTemplateSpec: labels and annotations (at template.labels, as upstream words it) and the spec."""
    template = template or {}
    meta = template.get("metadata") or {}
    causes = validate_labels(meta.get("labels"), f"{path}.labels")
    causes += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    spec = template.get("spec") or {}
    causes += validate_pod_spec(spec, f"{path}.spec")
    if spec.get("ephemeralContainers"):
        causes.append(
            forbidden(f"{path}.spec.ephemeralContainers", "ephemeral containers not allowed in pod template")
        )
    return causes


def _validate_pod_metadata_and_spec(pod: Obj) -> list[Cause]:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    causes = validate_object_meta(meta, True, name_is_dns_subdomain)
    mirror = (meta.get("annotations") or {}).get("kubernetes.io/config.mirror")
    if mirror is not None and not spec.get("nodeName"):
        causes.append(
            invalid(
                "metadata.annotations[kubernetes.io/config.mirror]",
                mirror,
                "must set spec.nodeName if mirror pod annotation is set",
            )
        )
    causes += validate_pod_spec(spec, "spec", is_pod=True)
    if not spec.get("serviceAccountName"):
        for i, volume in enumerate(spec.get("volumes") or []):
            for j, source in enumerate((volume.get("projected") or {}).get("sources") or []):
                if source.get("serviceAccountToken") is not None:
                    causes.append(
                        forbidden(
                            f"spec.volumes[{i}].projected.sources[{j}].serviceAccountToken",
                            "must not be specified when serviceAccountName is not set",
                        )
                    )
    for key in ("containers", "initContainers"):
        for i, container in enumerate(spec.get(key) or []):
            image = container.get("image", "")
            if image != image.strip():
                causes.append(
                    invalid(f"spec.{key}[{i}].image", image, "must not have leading or trailing whitespace")
                )
    return causes


def validate_pod(pod: Obj, old: Obj | None) -> list[Cause]:
    if old is not None:
        return validate_pod_update(pod, old)
    spec = pod.get("spec") or {}
    causes = _validate_pod_metadata_and_spec(pod)
    if spec.get("ephemeralContainers"):
        causes.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    if spec.get("nodeName") and spec.get("schedulingGates"):
        causes.append(forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared"))
    return causes


def _validate_container_updates(new: list[Obj], old: list[Obj], path: str) -> tuple[list[Cause], bool]:
    if len(new) != len(old):
        return [forbidden(path, "pod updates may not add or remove containers")], True
    causes: list[Cause] = []
    for i, container in enumerate(new):
        image = container.get("image", "")
        if not image:
            causes.append(required(f"{path}[{i}].image"))
        if image != image.strip():
            causes.append(
                invalid(f"{path}[{i}].image", image, "must not have leading or trailing whitespace")
            )
    return causes, False


def _only_added_tolerations(new: list[Obj], old: list[Obj], path: str) -> list[Cause]:
    for toleration in old:
        without_seconds = {k: v for k, v in toleration.items() if k != "tolerationSeconds"}
        if not any({k: v for k, v in t.items() if k != "tolerationSeconds"} == without_seconds for t in new):
            return [forbidden(path, "existing toleration can not be modified except its tolerationSeconds")]
    return validate_tolerations(new, path)


def spec_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """The changed leaves of two JSON values, old and new, one line each (a stand-in for cmp.Diff)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            line
            for key in sorted(old.keys() | new.keys())
            for line in spec_diff(old.get(key), new.get(key), f"{path}.{key}".lstrip("."))
        ]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            line
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for line in spec_diff(a, b, f"{path}[{i}]")
        ]
    if old == new:
        return []
    return [
        line
        for line in (
            f"- {path}: {render(old)}" if old is not None else "",
            f"+ {path}: {render(new)}" if new is not None else "",
        )
        if line
    ]


def validate_pod_update(pod: Obj, old: Obj) -> list[Cause]:
    """ValidatePodUpdate: of the spec only images, activeDeadlineSeconds, added tolerations and
    removed scheduling gates may change."""
    causes = validate_object_meta_update(pod.get("metadata"), old.get("metadata"))
    causes += _validate_pod_metadata_and_spec(pod)
    new_spec, old_spec = pod.get("spec") or {}, old.get("spec") or {}
    for key in ("containers", "initContainers"):
        errs, stop = _validate_container_updates(
            new_spec.get(key) or [], old_spec.get(key) or [], f"spec.{key}"
        )
        causes += errs
        if stop:
            return causes
    new_deadline, old_deadline = new_spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if new_deadline is not None:
        if not 0 <= new_deadline <= MAX_INT32:
            return causes + [
                invalid("spec.activeDeadlineSeconds", new_deadline, inclusive_range_error(0, MAX_INT32))
            ]
        if old_deadline is not None and old_deadline < new_deadline:
            return causes + [
                invalid(
                    "spec.activeDeadlineSeconds", new_deadline, "must be less than or equal to previous value"
                )
            ]
    elif old_deadline is not None:
        causes.append(
            invalid(
                "spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"
            )
        )
    causes += _only_added_tolerations(
        new_spec.get("tolerations") or [], old_spec.get("tolerations") or [], "spec.tolerations"
    )
    old_gates = {g.get("name") for g in old_spec.get("schedulingGates") or []}
    for i, gate in enumerate(new_spec.get("schedulingGates") or []):
        if gate.get("name") not in old_gates:
            causes.append(
                forbidden(
                    f"spec.schedulingGates[{i}].name",
                    f"only deletion is allowed, but found new scheduling gate '{gate.get('name')}'",
                )
            )
    if new_spec == old_spec:
        return causes
    munged = dict(new_spec)
    for key in ("containers", "initContainers"):
        if key in munged:
            munged[key] = [
                {**c, "image": o.get("image")}
                for c, o in zip(new_spec[key], old_spec.get(key) or [], strict=True)
            ]
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged.pop(key, None)
        if key in old_spec:
            munged[key] = old_spec[key]
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if munged != old_spec:
        diff = "\n".join(spec_diff(old_spec, munged, "spec"))
        causes.append(
            forbidden(
                "spec",
                f"pod updates may not change fields other than {','.join(UPDATABLE_POD_SPEC_FIELDS)}\n{diff}",
            )
        )
    return causes
