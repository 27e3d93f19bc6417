"""Server-side printing: the meta.k8s.io/v1 Tables `kubectl get` asks for.

kubectl 1.32 has no printers of its own: it sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`
and prints the columns and cells the server returns, hiding those of priority > 0 unless `-o wide`.
This package is kube-apiserver's `pkg/printers/internalversion/printers.go` over plain JSON objects:
one `Printer` (column definitions + a cells function) per (group, kind), in a module per API group.
Like kube-apiserver, the server always prints wide (every column, every cell), and kinds without a
printer (Role, ClusterRole, LimitRange, ...) get the default convertor's NAME and "Created At".

Objects are read as the API serves them, with kube's defaults assumed where a field is absent.
Column descriptions come from the 1.32 schemas of the field upstream quotes; where upstream quotes a
retired beta type (extensions/v1beta1 and the like), the GA type's description stands in.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from k8py.api import errors, meta
from k8py.api.printers import apps, autoscaling, batch, cluster, core, networking, storage
from k8py.api.printers._common import META, NAME, Column, Obj, Printer, Printers, age, get, name, parse_time

__all__ = ["age", "cells", "columns", "printer", "table"]

PRINTERS: Printers = {
    **core.PRINTERS,
    **apps.PRINTERS,
    **autoscaling.PRINTERS,
    **batch.PRINTERS,
    **networking.PRINTERS,
    **storage.PRINTERS,
    **cluster.PRINTERS,
}


_ZERO_TIME = "0001-01-01T00:00:00Z"


def _created_at(obj: Obj, now: datetime) -> list[Any]:
    """The creation time in UTC RFC 3339, as Go formats a (possibly zero) metav1.Time."""
    created = parse_time(get(obj, "metadata", "creationTimestamp"))
    return [name(obj), _ZERO_TIME if created is None else meta.format_time(created)]


# rest.defaultTableConvertor
DEFAULT = Printer((NAME, Column("Created At", "date", (META, "creationTimestamp"))), _created_at)

_INCLUDE_OBJECT = ("Metadata", "Object", "None")


def printer(group: str, kind: str) -> Printer:
    return PRINTERS.get((group, kind), DEFAULT)


@functools.cache
def _column_definitions(group: str, kind: str) -> tuple[dict[str, Any], ...]:
    return tuple(c.definition() for c in printer(group, kind).columns)


def columns(group: str, kind: str) -> list[dict[str, Any]]:
    """The Table's columnDefinitions for a kind."""
    return [dict(c) for c in _column_definitions(group, kind)]


def cells(group: str, kind: str, obj: Obj, now: datetime) -> list[Any]:
    """One row's cells; `now` (timezone-aware) is what ages are measured to."""
    return printer(group, kind).cells(obj, now)


def _row_object(obj: Obj, include_object: str) -> Obj:
    if include_object == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    group: str,
    kind: str,
    objs: Iterable[Obj],
    now: datetime,
    *,
    include_object: str = "Metadata",
    list_metadata: Mapping[str, Any] | None = None,
    no_headers: bool = False,
    custom: Printer | None = None,
) -> dict[str, Any]:
    """A whole meta.k8s.io/v1 Table of `objs`.

    `custom` is a custom resource's printer (`k8py.api.printers.custom`), used instead of the kind's.

    Each row carries the object as `includeObject` asks: its PartialObjectMetadata ("Metadata", the
    default, which `-A` and `--show-labels` read), the object itself ("Object"), or nothing ("None").
    `list_metadata` (resourceVersion, continue, ...) becomes the Table's metadata. `no_headers` leaves
    the column definitions out (null), as kube-apiserver does for every watch event after the first.
    """
    include_object = include_object or "Metadata"
    if include_object not in _INCLUDE_OBJECT:
        raise errors.bad_request(f'unrecognized includeObject value: "{include_object}"')
    p = custom or printer(group, kind)
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": p.cells(obj, now)}
        if p.conditions is not None and (conditions := p.conditions(obj)):
            row["conditions"] = conditions
        if include_object != "None":
            row["object"] = _row_object(obj, include_object)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_metadata or {}),
        "columnDefinitions": None
        if no_headers
        else [c.definition() for c in custom.columns]
        if custom
        else columns(group, kind),
        "rows": rows,
    }
