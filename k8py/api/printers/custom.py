"""Tables of custom resources: kube-apiserver's CRD table convertor (apiextensions `tableconvertor`).

A CRD version's `additionalPrinterColumns` become the Table's columns after NAME;
a version without any gets a single AGE column from `.metadata.creationTimestamp`
(upstream's `serveDefaultColumnsIfEmpty`). Each cell is the first value the column's
JSONPath finds: for `string` columns its JSONPath text (objects and lists as JSON),
otherwise the value converted to the column's type (`integer`, `number`, `boolean`;
`date` as the age since that time, `<invalid>` when it does not parse), and null when
the path finds nothing or the value has another type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from k8py.api.jsonpath import JSONPath, JSONPathError, text
from k8py.api.printers._common import META, NAME, Column, Obj, Printer, name, since

_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def _cell(column_type: str, value: Any, now: datetime) -> Any:
    """cellForJSONValue."""
    if value is None:
        return None
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        try:
            return since(value, now)
        except ValueError:
            return "<invalid>"
    return None


def _evaluator(column: Obj) -> Callable[[Obj, datetime], Any]:
    column_type = column.get("type", "")
    try:
        path: JSONPath | None = JSONPath(column.get("jsonPath", ""))
    except JSONPathError:
        path = None

    def evaluate(obj: Obj, now: datetime) -> Any:
        found = path.find(obj) if path is not None else []
        if not found:
            return None
        if column_type == "string":
            return text(found[0])
        return _cell(column_type, found[0], now)

    return evaluate


def custom_printer(columns: Sequence[Obj]) -> Printer:
    """The Printer of a CRD version with these `additionalPrinterColumns`."""
    definitions: list[Column] = [NAME]
    evaluators = []
    for column in columns or [_AGE]:
        if column is _AGE:
            definitions.append(Column("Age", "date", doc=(META, "creationTimestamp")))
        else:
            description = column.get("description") or (
                f"Custom resource definition column (in JSONPath format): {column.get('jsonPath', '')}"
            )
            definitions.append(
                Column(
                    column.get("name", ""),
                    column.get("type", ""),
                    text=description,
                    priority=int(column.get("priority") or 0),
                    format=column.get("format", ""),
                )
            )
        evaluators.append(_evaluator(column))

    def cells(obj: Obj, now: datetime) -> list[Any]:
        return [name(obj), *(evaluate(obj, now) for evaluate in evaluators)]

    return Printer(tuple(definitions), cells)
