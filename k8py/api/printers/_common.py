"""The pieces every group's printers share: column and printer types, and the
formatting helpers printers.go uses over and over ("<none>" joins, label and
selector strings, container layout, timestamps, quantities)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from k8py.api import meta, schema
from k8py.api.duration import human_duration
from k8py.api.errors import StatusError
from k8py.api.selectors import LabelSelector

Obj = dict[str, Any]
Cells = Callable[[Obj, datetime], list[Any]]

NONE = "<none>"
UNSET = "<unset>"
UNKNOWN = "<unknown>"
META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@functools.cache
def _described(definition: str, prop: str) -> str:
    name = definition if definition.startswith("io.") else f"io.k8s.api.{definition}"
    return schema.definitions()[name]["properties"][prop].get("description", "")


@dataclass(frozen=True)
class Column:
    """One TableColumnDefinition.

    `doc` names the field whose description upstream quotes (its SwaggerDoc),
    as (definition, property), read from the 1.32 schemas; where upstream
    quotes a retired beta type, the GA type stands in. `text` is a literal
    description instead.
    """

    name: str
    type: str = "string"
    doc: tuple[str, str] | None = None
    text: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": _described(*self.doc) if self.doc else self.text,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    cells: Cells
    # TableRow.conditions of a row (only pods have them upstream)
    conditions: Callable[[Obj], list[dict[str, str]]] | None = None


Printers = dict[tuple[str, str], Printer]

NAME = Column("Name", doc=(META, "name"), format="name")
AGE = Column("Age", doc=(META, "creationTimestamp"))
CONTAINERS = Column("Containers", text="Names of each container in the template.", priority=1)
IMAGES = Column("Images", text="Images referenced by each container in the template.", priority=1)


def get(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., None where any step is missing or null."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def items(obj: Any, *path: str) -> list[Any]:
    """The list at `path`, [] when missing or null."""
    return get(obj, *path) or []


def mapping(obj: Any, *path: str) -> dict[str, Any]:
    """The map at `path`, {} when missing or null."""
    return get(obj, *path) or {}


def name(obj: Obj) -> str:
    return get(obj, "metadata", "name") or ""


def parse_time(value: str | None) -> datetime | None:
    """A metav1.Time or MicroTime; None for the zero (absent) time."""
    return meta.parse_time(value) if value else None


def since(value: str | datetime | None, now: datetime) -> str:
    """translateTimestampSince: the human duration from `value` to `now`."""
    when = parse_time(value) if isinstance(value, str | None) else value
    if when is None:
        return UNKNOWN
    return human_duration((now - when).total_seconds())


def age(obj: Obj, now: datetime) -> str:
    """The AGE cell: time since metadata.creationTimestamp."""
    return since(get(obj, "metadata", "creationTimestamp"), now)


def condition_true(conditions: list[Obj], kind: str) -> bool:
    """Is the first condition of type `kind` True?"""
    return next((c.get("status") == "True" for c in conditions if c.get("type") == kind), False)


def spec_replicas(obj: Obj) -> int:
    """spec.replicas, with the API's default of 1 when unset."""
    replicas = get(obj, "spec", "replicas")
    return 1 if replicas is None else replicas


def or_none(value: str | None) -> str:
    return value or NONE


def join_or_none(values: Iterable[str]) -> str:
    return ",".join(values) or NONE


def quantity(value: Any, missing: str = "0") -> str:
    """Quantity.String(); `missing` for an absent one ("0" for a zero value, "<nil>" for a nil pointer).

    The quantity is printed as the object holds it; kube prints the canonical form it decoded.
    """
    return missing if value is None else str(value)


def format_labels(labels: Mapping[str, str] | None) -> str:
    """labels.FormatLabels: sorted "k=v" pairs, "<none>" when empty."""
    return join_or_none(sorted(f"{k}={v}" for k, v in (labels or {}).items()))


def selector_string(selector: Obj | None) -> str | None:
    """metav1.LabelSelectorAsSelector(...).String(); None when the selector is invalid."""
    try:
        return str(LabelSelector.from_label_selector(selector))
    except StatusError:
        return None


def format_label_selector(selector: Obj | None) -> str:
    """metav1.FormatLabelSelector."""
    text = selector_string(selector)
    if text is None:
        return "<error>"
    return text or NONE


def container_cells(pod_spec: Obj | None) -> list[str]:
    """layoutContainerCells: the Containers and Images cells of a pod template."""
    containers = items(pod_spec, "containers")
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def list_with_more(values: list[str], limit: int, *, sep: str = ",", empty: str = UNSET) -> str:
    """The first `limit` values, then " + N more..." for the rest."""
    text = sep.join(values[:limit])
    if len(values) > limit:
        return f"{text} + {len(values) - limit} more..."
    return text or empty


def load_balancer_ingress(status: Obj | None) -> str:
    """loadBalancerStatusStringer (wide, as the server prints): the sorted, distinct IPs or hostnames."""
    found = {i.get("ip") or i.get("hostname") for i in items(status, "ingress")}
    return ",".join(sorted(found - {None, ""}))
