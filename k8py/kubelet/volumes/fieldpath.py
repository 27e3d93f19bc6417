"""Downward API values: pod fields and container resources as strings (upstream pkg/fieldpath and
pkg/api/v1/resource), shared by the downwardAPI/projected volumes and the container environment.

Labels and annotations as a whole render as ``FormatMap`` does: sorted ``key="value"`` lines with
Go's ``%q`` quoting.  Resource values are ceilings of the quantity over the divisor, in milli
units for CPU and whole units for memory, ephemeral storage and huge pages; unset limits take the
node's allocatable (``MergeContainerResourceLimits``), which is what a container may use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from k8py.api.gofmt import go_quote
from k8py.api.resources import milli
from k8py.api.validation.names import is_qualified_name
from k8py.api.validation.quantity import Quantity, parse_quantity

Obj = dict[str, Any]

LIMIT_DEFAULTED = ("cpu", "memory", "ephemeral-storage")


class FieldPathError(ValueError):
    """A field or resource selector the kubelet cannot resolve (the message is kube's)."""



def format_map(values: Mapping[str, str] | None) -> str:
    """fieldpath.FormatMap: ``key="value"`` lines in key order, no trailing newline."""
    values = values or {}
    return "\n".join(f"{key}={go_quote(values[key])}" for key in sorted(values))


def split_maybe_subscripted_path(field_path: str) -> tuple[str, str, bool]:
    """``metadata.labels['app']`` -> (``metadata.labels``, ``app``, True)."""
    if not field_path.endswith("']"):
        return field_path, "", False
    path, sep, subscript = field_path[:-2].partition("['")
    if not sep or not path:
        return field_path, "", False
    return path, subscript, True


def extract_field_path_as_string(obj: Obj, field_path: str) -> str:
    """fieldpath.ExtractFieldPathAsString over an object's metadata."""
    md = obj.get("metadata") or {}
    path, subscript, subscripted = split_maybe_subscripted_path(field_path)
    if subscripted:
        if path == "metadata.annotations":
            if errs := is_qualified_name(subscript.lower()):
                raise FieldPathError(f"invalid key subscript in {field_path}: {';'.join(errs)}")
            return (md.get("annotations") or {}).get(subscript, "")
        if path == "metadata.labels":
            if errs := is_qualified_name(subscript):
                raise FieldPathError(f"invalid key subscript in {field_path}: {';'.join(errs)}")
            return (md.get("labels") or {}).get(subscript, "")
        raise FieldPathError(f'fieldPath "{field_path}" does not support subscript')
    if field_path == "metadata.annotations":
        return format_map(md.get("annotations"))
    if field_path == "metadata.labels":
        return format_map(md.get("labels"))
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(md.get(field_path.removeprefix("metadata.")) or "")
    raise FieldPathError(f"unsupported fieldPath: {field_path}")


def _value(q: Quantity) -> int:
    """Quantity.Value(): whole units, rounded up."""
    return int(q.value.to_integral_value(rounding=ROUND_CEILING))


def _resource_string(resource: str, q: Quantity | None, divisor: Quantity) -> str:
    amount = q if q is not None else Quantity(Decimal(0), "DecimalSI")
    if resource == "cpu":
        return str(math.ceil(milli(amount) / milli(divisor)))
    return str(math.ceil(_value(amount) / _value(divisor)))


def extract_container_resource_value(selector: Obj, container: Obj) -> str:
    """resource.ExtractContainerResourceValue: ``limits.cpu``, ``requests.memory``, ... over a divisor."""
    divisor = parse_quantity(selector.get("divisor") or "0")
    if divisor is None or divisor.value == 0:
        divisor = Quantity(Decimal(1), "DecimalSI")
    field = selector.get("resource", "")
    kind, _, name = field.partition(".")
    resources = container.get("resources") or {}
    if kind in ("limits", "requests") and (name in LIMIT_DEFAULTED or name.startswith("hugepages-")):
        return _resource_string(name, parse_quantity((resources.get(kind) or {}).get(name)), divisor)
    raise FieldPathError(f"unsupported container resource : {field}")


def merge_container_resource_limits(container: Obj, allocatable: Mapping[str, Any]) -> Obj:
    """A copy of ``container`` whose unset (or zero) cpu/memory/ephemeral-storage limits are the node's
    allocatable (resource.MergeContainerResourceLimits)."""
    resources = dict(container.get("resources") or {})
    limits = dict(resources.get("limits") or {})
    for name in LIMIT_DEFAULTED:
        q = parse_quantity(limits.get(name))
        if (q is None or q.value == 0) and name in allocatable:
            limits[name] = str(allocatable[name])
    resources["limits"] = limits
    return {**container, "resources": resources}


def find_container(pod: Obj, name: str) -> Obj:
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if container.get("name") == name:
            return container
    raise FieldPathError(f"container {name} not found")


def extract_resource_value_by_container_name(
    selector: Obj, pod: Obj, container_name: str, allocatable: Mapping[str, Any]
) -> str:
    """resource.ExtractResourceValueByContainerNameAndNodeAllocatable."""
    container = merge_container_resource_limits(find_container(pod, container_name), allocatable)
    return extract_container_resource_value(selector, container)
