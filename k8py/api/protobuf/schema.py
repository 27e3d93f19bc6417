"""The compact message descriptions and their parsed form.

A description is one line per message, `"<package>.<Message>": "<field> <field> ..."`,
each field `<jsonName>=<number>:<type>`:

    scalar       string bool int32 int64 uint32 uint64 double float bytes
    message      Name (same package) or package.Name (`meta.v1.ObjectMeta`)
    [T]          repeated T
    {K:V}        map: repeated entry messages, key = 1, value = 2
    *T           a scalar whose zero value is sent on purpose (a Go pointer, or a
                 field the type requires): kept; other zero scalars are dropped,
                 as a JSON client's `omitempty` drops them
    =N:T         no JSON name: the field is `json:",inline"` (its fields join the
                 parent's), or, as the only field, the message *is* that value
                 (list wrappers such as ExtraValue)

Packages are written short (`alias`): `core.v1` for k8s.io.api.core.v1,
`meta.v1`, `resource`, `intstr`, `runtime` for apimachinery's. The tables of
built-in kinds are generated (`messages.py`, see `generate.py`); CRDs' are
written by hand (`apiextensions.py`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from k8py.api.protobuf import apiextensions, messages

SCALARS = frozenset({"string", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "bytes"})

_ALIASES = (
    ("k8s.io.api.", ""),
    ("k8s.io.apimachinery.pkg.apis.meta.", "meta."),
    ("k8s.io.apimachinery.pkg.api.resource.", "resource."),
    ("k8s.io.apimachinery.pkg.util.intstr.", "intstr."),
    ("k8s.io.apimachinery.pkg.runtime.schema.", "schema."),
    ("k8s.io.apimachinery.pkg.runtime.", "runtime."),
    ("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.", "apiextensions."),
)

MESSAGES: dict[str, str] = {**messages.MESSAGES, **apiextensions.MESSAGES}
KINDS: dict[tuple[str, str], str] = {**messages.KINDS, **apiextensions.KINDS}
# Options kinds every group version registers (metav1.AddToGroupVersion): accepted under any apiVersion.
ANY_VERSION: dict[str, str] = {"DeleteOptions": "meta.v1.DeleteOptions"}


def alias(full_name: str) -> str:
    """The short name of a fully qualified proto message name."""
    for prefix, short in _ALIASES:
        if full_name.startswith(prefix):
            return short + full_name[len(prefix) :]
    return full_name


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # JSON name; "" for an inline field
    type: str  # a scalar, or a message's short name (a map's value type for maps)
    repeated: bool = False
    map_key: str = ""  # the key's scalar type, for maps
    keep_zero: bool = False


def _field(token: str, package: str) -> tuple[int, FieldSpec]:
    name, _, rest = token.partition("=")
    number, _, type_ = rest.partition(":")
    repeated = map_key = ""
    keep_zero = type_.startswith("*")
    type_ = type_.lstrip("*")
    if type_.startswith("["):
        repeated, type_ = "y", type_[1:-1]
    elif type_.startswith("{"):
        map_key, _, type_ = type_[1:-1].partition(":")
    if type_ not in SCALARS and "." not in type_:
        type_ = f"{package}.{type_}"
    return int(number), FieldSpec(name, type_, bool(repeated), map_key, keep_zero)


@functools.cache
def fields_of(message: str) -> dict[int, FieldSpec] | None:
    """Field number -> FieldSpec of a message by short name; None for a message not described."""
    line = MESSAGES.get(message)
    if line is None:
        return None
    package = message.rpartition(".")[0]
    return dict(_field(token, package) for token in line.split())
