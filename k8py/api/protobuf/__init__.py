"""Protobuf request bodies (`application/vnd.kubernetes.protobuf`) as the JSON objects they stand for.

kubectl's typed clients (the `create deployment|secret|...` generators, `auth
can-i`, `create token`) send protobuf: the magic `k8s\\0`, then a
`runtime.Unknown` whose typeMeta names the kind and whose `raw` is the
object's own message. The API server works on JSON-shaped dicts end to end,
so a body is turned, once, into the dict a JSON client would have sent (the
answer stays JSON, which kubectl accepts); everything after decoding is the
JSON path.

Nothing here uses generated code or a protobuf library: `wire` reads the wire
format, `schema` parses compact descriptions of the 1.32 messages (field
number, JSON name, type; `messages.py` generated from kubectl's embedded
descriptors by `generate.py`, `apiextensions.py` by hand) and `decode` walks a
message by its description. Only decoding exists: answers are never protobuf.
"""

from __future__ import annotations

from typing import Any

from k8py.api.protobuf import wire
from k8py.api.protobuf.decode import decode_message
from k8py.api.protobuf.schema import ANY_VERSION, KINDS
from k8py.api.protobuf.wire import DecodeError

MAGIC = b"k8s\x00"


class UnknownKind(Exception):
    """A well-formed envelope naming a kind this server has no description of."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(f'no kind "{kind}" is registered for version "{api_version}"')
        self.api_version = api_version
        self.kind = kind


def _bytes(wire_type: int, value: int | bytes, what: str) -> bytes:
    if wire_type != wire.LEN:
        raise DecodeError(f"{what} sent with wire type {wire_type}")
    assert isinstance(value, bytes)
    return value


def _string(wire_type: int, value: int | bytes, what: str) -> str:
    return _bytes(wire_type, value, what).decode("utf-8", "replace")


def decode_object(body: bytes) -> dict[str, Any]:
    """The object in a protobuf request body; DecodeError when malformed, UnknownKind for kinds not described."""
    if not body.startswith(MAGIC):
        raise DecodeError(f"provided data does not appear to be a protobuf message, expected prefix {list(MAGIC)}")
    api_version = kind = content_encoding = content_type = ""
    raw = b""
    for number, wire_type, value in wire.fields(body[len(MAGIC) :]):
        if number == 1:  # typeMeta
            for n, wt, v in wire.fields(_bytes(wire_type, value, "typeMeta")):
                if n == 1:
                    api_version = _string(wt, v, "typeMeta.apiVersion")
                elif n == 2:
                    kind = _string(wt, v, "typeMeta.kind")
        elif number == 2:
            raw = _bytes(wire_type, value, "raw")
        elif number == 3:
            content_encoding = _string(wire_type, value, "contentEncoding")
        elif number == 4:
            content_type = _string(wire_type, value, "contentType")
    if not kind:
        raise DecodeError("Object 'Kind' is missing from the protobuf envelope")
    if content_encoding or content_type not in ("", "application/vnd.kubernetes.protobuf"):
        raise DecodeError(f"unsupported content encoding {content_encoding!r} or type {content_type!r} in the envelope")
    message = KINDS.get((api_version, kind)) or ANY_VERSION.get(kind)
    if message is None:
        raise UnknownKind(api_version, kind)
    obj = decode_message(raw, message)
    return {"apiVersion": api_version, "kind": kind, **obj}


__all__ = ["MAGIC", "DecodeError", "UnknownKind", "decode_object"]
