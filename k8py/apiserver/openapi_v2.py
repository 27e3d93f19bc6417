"""OpenAPI v2 (Swagger 2.0), served at `/openapi/v2` as kube-apiserver 1.32 serves it.

kubectl validates on the client when it cannot hand validation to the server: a
`kind: List` (`apply -f list.yaml`, `create -f`), kinds whose OpenAPI v3 has no PATCH
operation carrying `fieldValidation` (SelfSubjectAccessReview, TokenReview, ...), and
any group kubectl's v3 lookup fails for. Then client-go's `OpenAPISchema()` fetches
this document with `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`,
unmarshals it as gnostic's `openapi.v2.Document` (gnostic-models
`openapiv2/OpenAPIv2.proto`), parses every definition with kube-openapi's
`util/proto` (a definition it cannot parse fails the whole validation) and finds a
kind's schema by the definitions' `x-kubernetes-group-version-kind`. Without
this endpoint those commands fail with "the server could not find the requested
resource" unless the user passes `--validate=false`.

One document, the aggregate of everything served, derived from the OpenAPI v3
documents of `k8py.apiserver.openapi`, whose cache it reuses:

- paths: every v3 document's paths, operations rewritten the v2 way: the request
  body becomes a `body` parameter (listed first) and `consumes`, response content
  becomes `produces` and a response `schema`, query and path parameters carry
  their `type` inline, each operation says `schemes: [https]`;
- definitions: the union of the documents' component schemas, named as kube names
  them (`io.k8s.api.core.v1.ConfigMap`, `com.example.stable.v1.CronTab`) with
  their `x-kubernetes-group-version-kind`, patch merge keys and strategies and
  list types. What v2 lacks is converted as kube-openapi and the apiextensions
  builder (`ToStructuralOpenAPIV2`) convert it: `$ref`s point into
  `#/definitions/`, a reference wrapped in `allOf` for v3 is a plain `$ref` again
  (description and extensions beside it), IntOrString and Quantity are `type:
  string`, `oneOf`/`anyOf`/`allOf`/`not` are dropped, a `nullable` schema loses its
  type, items and properties (and leaves its parent's `required`),
  `x-kubernetes-preserve-unknown-fields` drops items and properties, and an
  array left without items loses its type (kubectl's parser rejects it).

Served as JSON (`application/json`, also for `*/*`) or as the protobuf (both
media type spellings kube accepts; the answer's Content-Type is
`application/com.github.proto-openapi.spec.v2.v1.0+protobuf`), content negotiated
in Accept's order like kube-openapi's handler, 406 for anything else. Both share
one ETag, the upper-case hex SHA-512 of the JSON, and `Last-Modified` (the build's
time); `If-None-Match` / `If-Modified-Since` answer 304.

The protobuf is written here by a small schema-driven encoder of just the
messages the document uses (`_MESSAGES`, field numbers from OpenAPIv2.proto);
vendor extensions, `enum`, `default` and `example` are `NamedAny`/`Any` whose
`yaml` holds the value as YAML text, which is what kube-openapi's parser
unmarshals. Proto3 rules as Go's marshaller applies them: zero scalars are
omitted, a oneof member is written even when zero (`additionalProperties: false`).

Cost: nothing at startup. The first request builds the document (reusing, or
building, every v3 document) and encodes it, in a worker thread; later requests are
served from the cache until the v3 documents' generation changes (CRDs: the CRD
controller invalidates v3, which bumps it), then the next request rebuilds.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from aiohttp import web

if TYPE_CHECKING:
    from k8py.apiserver.openapi import OpenAPIV3

Schema = dict[str, Any]

V3_REF = "#/components/schemas/"
V2_REF = "#/definitions/"
JSON = "application/json"
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
PROTOBUF_DEPRECATED = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_SECURITY_DEFINITIONS = {
    "BearerToken": {
        "description": "Bearer Token authentication",
        "in": "header",
        "name": "authorization",
        "type": "apiKey",
    }
}
_PRIMITIVES = {"string", "integer", "number", "boolean"}


# --- v3 -> v2 ---


def _schema(node: Schema) -> Schema:
    """One v3 schema as kube serves it in v2 (see the module docstring)."""
    out: Schema = {}
    ref = None
    for key, value in node.items():
        if key == "$ref":
            ref = value
        elif key == "allOf":
            if len(value) == 1 and isinstance(value[0], dict) and set(value[0]) == {"$ref"}:
                ref = value[0]["$ref"]
            # any other allOf is value validation: dropped, as ToStructuralOpenAPIV2 drops it
        elif key in ("oneOf", "anyOf", "not", "nullable"):
            continue
        elif key == "properties":
            out[key] = {name: _schema(sub) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _schema(value)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _schema(value)
        else:
            out[key] = value
    if ref is not None:
        out["$ref"] = V2_REF + ref.removeprefix(V3_REF)
        out.pop("type", None)
        return out
    if "type" not in out and any(
        isinstance(alt, dict) and alt.get("type") in _PRIMITIVES for alt in node.get("oneOf", ())
    ):
        # IntOrString and Quantity: kube's OpenAPIV3OneOfTypes in v3, OpenAPISchemaType (string) in v2
        out["type"] = "string"
    if node.get("nullable"):
        for key in ("type", "items", "properties"):
            out.pop(key, None)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("items", None)
        out.pop("properties", None)
    if out.get("type") == "array" and "items" not in out:
        del out["type"]
    props = node.get("properties")
    if props and out.get("required"):
        required = [f for f in out["required"] if not (isinstance(props.get(f), dict) and props[f].get("nullable"))]
        if required:
            out["required"] = required
        else:
            del out["required"]
    return out


def _parameter(p: Schema) -> Schema:
    out = {k: v for k, v in p.items() if k != "schema"}
    out.update(p.get("schema") or {})
    return out


def _operation(op: Schema) -> Schema:
    out: Schema = {}
    params = [_parameter(p) for p in op.get("parameters", ())]
    body = op.get("requestBody")
    if body is not None:
        content = body.get("content") or {}
        out["consumes"] = list(content)
        media = next(iter(content.values()), {})
        param: Schema = {"in": "body", "name": "body", "schema": _schema(media.get("schema") or {})}
        if body.get("required"):
            param["required"] = True
        params.insert(0, param)
    if "description" in op:
        out["description"] = op["description"]
    out["operationId"] = op["operationId"]
    if params:
        out["parameters"] = params
    produces: list[str] = []
    responses: Schema = {}
    for code, response in op.get("responses", {}).items():
        converted: Schema = {"description": response.get("description", "")}
        content = response.get("content") or {}
        for media, body_schema in content.items():
            if media not in produces:
                produces.append(media)
            if "schema" not in converted and "schema" in body_schema:
                converted["schema"] = _schema(body_schema["schema"])
        responses[code] = converted
    if produces:
        out["produces"] = produces
    out["responses"] = responses
    out["schemes"] = ["https"]
    for key, value in op.items():
        if key == "tags" or key.startswith("x-"):
            out[key] = value
    return out


def _path_item(item: Schema) -> Schema:
    out: Schema = {}
    for key, value in item.items():
        if key in _METHODS:
            out[key] = _operation(value)
        elif key == "parameters":
            out[key] = [_parameter(p) for p in value]
        elif key.startswith("x-"):
            out[key] = value
    return out


def build_document(v3: OpenAPIV3) -> Schema:
    """The aggregated v2 document of everything `v3` serves."""
    paths: Schema = {}
    components: dict[str, Schema] = {}
    info: Schema = {"title": "Kubernetes", "version": ""}
    for name in v3.paths():
        served = v3.document(name)
        if served is None:
            continue
        doc = orjson.loads(served[0])
        info = doc.get("info") or info
        for path, item in doc.get("paths", {}).items():
            paths[path] = _path_item(item)
        for def_name, node in doc.get("components", {}).get("schemas", {}).items():
            components.setdefault(def_name, node)
    return {
        "definitions": {name: _schema(components[name]) for name in sorted(components)},
        "info": {"title": info.get("title", "Kubernetes"), "version": info.get("version", "")},
        "paths": dict(sorted(paths.items())),
        "security": [{"BearerToken": []}],
        "securityDefinitions": _SECURITY_DEFINITIONS,
        "swagger": "2.0",
    }


# --- protobuf: gnostic's openapi.v2 messages ---

_VARINT, _I64, _LEN = 0, 1, 2
_DOUBLE = struct.Struct("<d")
_U64 = (1 << 64) - 1


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return bytes((n,))
    n &= _U64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _len(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_yaml_cache: dict[bytes, bytes] = {}  # the same few values (merge, atomic, GVKs) recur thousands of times


def _yaml(value: Any) -> bytes:
    """A value as the YAML text of gnostic's `Any.yaml` (block style, like yaml.v3's Marshal)."""
    key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    cached = _yaml_cache.get(key)
    if cached is None:
        text = yaml.dump(value, Dumper=_Dumper, default_flow_style=False, allow_unicode=True, sort_keys=False, width=1 << 30)
        cached = text.removesuffix("...\n").encode()  # PyYAML ends a lone scalar with a document end marker
        if len(_yaml_cache) > 50_000:  # CRDs' defaults and enums come and go
            _yaml_cache.clear()
        _yaml_cache[key] = cached
    return cached


# An encoder writes one JSON value as the whole field (tag included); b"" writes nothing.
Encoder = Callable[[Any], bytes]


def _string(number: int) -> Encoder:
    tag = _tag(number, _LEN)

    def enc(value: Any) -> bytes:
        if not value:
            return b""
        data = str(value).encode()
        return tag + _varint(len(data)) + data

    return enc


def _strings(number: int) -> Encoder:
    one = _string(number)

    def enc(value: Any) -> bytes:
        items = value if isinstance(value, list) else [value]
        return b"".join(one(v) or _tag(number, _LEN) + b"\x00" for v in items)

    return enc


def _bool(number: int) -> Encoder:
    field = _tag(number, _VARINT) + b"\x01"
    return lambda value: field if value else b""


def _int(number: int) -> Encoder:
    tag = _tag(number, _VARINT)
    return lambda value: tag + _varint(int(value)) if value else b""


def _double(number: int) -> Encoder:
    tag = _tag(number, _I64)
    return lambda value: tag + _DOUBLE.pack(float(value)) if value else b""


def _any_payload(value: Any) -> bytes:
    return _len(2, _yaml(value))  # Any{yaml = 2}


def _any(number: int) -> Encoder:
    return lambda value: _len(number, _any_payload(value))


def _anys(number: int) -> Encoder:
    return lambda value: b"".join(_len(number, _any_payload(v)) for v in value)


def _message(number: int, name: str) -> Encoder:
    return lambda value: _len(number, encode(name, value))


def _messages(number: int, name: str) -> Encoder:
    return lambda value: b"".join(_len(number, encode(name, v)) for v in value)


_name = _string(1)  # Named<X>.name


def _extension(number: int, key: str, value: Any) -> bytes:
    return _len(number, _name(key) + _len(2, _any_payload(value)))


def _named(number: int, value_message: str | Callable[[Any], bytes]) -> Encoder:
    """A JSON object as a message of `repeated Named<X> additional_properties = 1` (name 1, value 2)."""
    payload = value_message if callable(value_message) else (lambda v: encode(value_message, v))

    def enc(value: Any) -> bytes:
        return _len(number, b"".join(_len(1, _name(k) + _len(2, payload(v))) for k, v in value.items()))

    return enc


def _keyed(number: int, named_at: int, ext_at: int, payload: Callable[[Any], bytes]) -> Encoder:
    """Paths and Responses: JSON objects keyed by path or code (`repeated Named<X>` at `named_at`),
    beside their `x-` extensions."""

    def enc(value: Any) -> bytes:
        named = [_len(named_at, _name(k) + _len(2, payload(v))) for k, v in value.items() if not k.startswith("x-")]
        ext = [_extension(ext_at, k, v) for k, v in value.items() if k.startswith("x-")]
        return _len(number, b"".join(named) + b"".join(ext))

    return enc


def _type_item(value: Any) -> bytes:
    return _len(22, _strings(1)(value))  # Schema.type: TypeItem{repeated string value = 1}


def _items_item(value: Any) -> bytes:
    items = value if isinstance(value, list) else [value]
    return _len(23, b"".join(_len(1, encode("Schema", s)) for s in items))  # ItemsItem{repeated Schema schema = 1}


def _additional_properties(value: Any) -> bytes:
    if isinstance(value, bool):  # AdditionalPropertiesItem{oneof: Schema schema = 1; bool boolean = 2}
        return _len(21, _tag(2, _VARINT) + (b"\x01" if value else b"\x00"))
    return _len(21, _len(1, encode("Schema", value)))


_NON_BODY = {
    "header": (1, "HeaderParameterSubSchema"),
    "formData": (2, "FormDataParameterSubSchema"),
    "query": (3, "QueryParameterSubSchema"),
    "path": (4, "PathParameterSubSchema"),
}


def _parameters(number: int) -> Encoder:
    """repeated ParametersItem{parameter = 1: Parameter{body_parameter = 1 | non_body_parameter = 2:
    NonBodyParameter{header = 1 | form_data = 2 | query = 3 | path = 4}}}."""

    def one(p: Schema) -> bytes:
        if p.get("in") == "body":
            parameter = _len(1, encode("BodyParameter", p))
        else:
            which, message = _NON_BODY.get(p.get("in", ""), _NON_BODY["query"])
            parameter = _len(2, _len(which, encode(message, p)))
        return _len(number, _len(1, parameter))

    return lambda value: b"".join(one(p) for p in value)


def _security_definitions(value: Any) -> bytes:
    """SecurityDefinitions{repeated NamedSecurityDefinitionsItem}: SecurityDefinitionsItem is a oneof by type."""

    def item(v: Schema) -> bytes:
        if v.get("type") == "basic":
            return _len(1, encode("BasicAuthenticationSecurity", v))
        return _len(2, encode("ApiKeySecurity", v))

    return _named(13, item)(value)


def _security(value: Any) -> bytes:
    """repeated SecurityRequirement{repeated NamedStringArray{name, StringArray{repeated string value = 1}}}."""
    return b"".join(
        _len(12, b"".join(_len(1, _name(k) + _len(2, _strings(1)(scopes))) for k, scopes in req.items()))
        for req in value
    )


def _sub_schema(n: int, extension_at: int, *, allow_empty: bool) -> dict[str, Any]:
    """Header/FormData/Query/PathParameterSubSchema: the same fields from `type = n` on
    (form data and query have allow_empty_value = 5 before it)."""
    spec: dict[str, Any] = {
        "required": _bool(1),
        "in": _string(2),
        "description": _string(3),
        "name": _string(4),
        "type": _string(n),
        "format": _string(n + 1),
        "collectionFormat": _string(n + 3),
        "default": _any(n + 4),
        "maximum": _double(n + 5),
        "exclusiveMaximum": _bool(n + 6),
        "minimum": _double(n + 7),
        "exclusiveMinimum": _bool(n + 8),
        "maxLength": _int(n + 9),
        "minLength": _int(n + 10),
        "pattern": _string(n + 11),
        "maxItems": _int(n + 12),
        "minItems": _int(n + 13),
        "uniqueItems": _bool(n + 14),
        "enum": _anys(n + 15),
        "multipleOf": _double(n + 16),
        "x-": extension_at,
    }
    if allow_empty:
        spec["allowEmptyValue"] = _bool(5)
    return spec


# message name -> JSON key -> encoder; "x-": the field number of its `repeated NamedAny vendor_extension`.
_MESSAGES: dict[str, dict[str, Any]] = {
    "Document": {
        "swagger": _string(1),
        "info": _message(2, "Info"),
        "host": _string(3),
        "basePath": _string(4),
        "schemes": _strings(5),
        "consumes": _strings(6),
        "produces": _strings(7),
        "paths": _keyed(8, 2, 1, lambda v: encode("PathItem", v)),  # Paths{vendor_extension = 1, path = 2}
        "definitions": _named(9, "Schema"),
        "security": _security,
        "securityDefinitions": _security_definitions,
        "x-": 16,
    },
    "Info": {"title": _string(1), "version": _string(2), "description": _string(3), "termsOfService": _string(4), "x-": 7},
    "PathItem": {
        "$ref": _string(1),
        **{method: _message(i, "Operation") for i, method in enumerate(_METHODS, start=2)},
        "parameters": _parameters(9),
        "x-": 10,
    },
    "Operation": {
        "tags": _strings(1),
        "summary": _string(2),
        "description": _string(3),
        "operationId": _string(5),
        "produces": _strings(6),
        "consumes": _strings(7),
        "parameters": _parameters(8),
        # Responses{response_code = 1: NamedResponseValue{name, ResponseValue{response = 1}}, vendor_extension = 2}
        "responses": _keyed(9, 1, 2, lambda v: _len(1, encode("Response", v))),
        "schemes": _strings(10),
        "deprecated": _bool(11),
        "x-": 13,
    },
    "Response": {"description": _string(1), "schema": lambda v: _len(2, _len(1, encode("Schema", v))), "x-": 5},
    "BodyParameter": {
        "description": _string(1),
        "name": _string(2),
        "in": _string(3),
        "required": _bool(4),
        "schema": _message(5, "Schema"),
        "x-": 6,
    },
    "HeaderParameterSubSchema": _sub_schema(5, 22, allow_empty=False),
    "FormDataParameterSubSchema": _sub_schema(6, 23, allow_empty=True),
    "QueryParameterSubSchema": _sub_schema(6, 23, allow_empty=True),
    "PathParameterSubSchema": _sub_schema(5, 22, allow_empty=False),
    "ApiKeySecurity": {"type": _string(1), "name": _string(2), "in": _string(3), "description": _string(4), "x-": 5},
    "BasicAuthenticationSecurity": {"type": _string(1), "description": _string(2), "x-": 3},
    "ExternalDocs": {"description": _string(1), "url": _string(2), "x-": 3},
    "Schema": {
        "$ref": _string(1),
        "format": _string(2),
        "title": _string(3),
        "description": _string(4),
        "default": _any(5),
        "multipleOf": _double(6),
        "maximum": _double(7),
        "exclusiveMaximum": _bool(8),
        "minimum": _double(9),
        "exclusiveMinimum": _bool(10),
        "maxLength": _int(11),
        "minLength": _int(12),
        "pattern": _string(13),
        "maxItems": _int(14),
        "minItems": _int(15),
        "uniqueItems": _bool(16),
        "maxProperties": _int(17),
        "minProperties": _int(18),
        "required": _strings(19),
        "enum": _anys(20),
        "additionalProperties": _additional_properties,
        "type": _type_item,
        "items": _items_item,
        "allOf": _messages(24, "Schema"),
        "properties": _named(25, "Schema"),
        "discriminator": _string(26),
        "readOnly": _bool(27),
        "externalDocs": _message(29, "ExternalDocs"),
        "example": _any(30),
        "x-": 31,
    },
}


def encode(message: str, value: Schema) -> bytes:
    """The protobuf encoding of one JSON object as the gnostic message `message`.

    Keys the message does not have are skipped; `x-` keys become its vendor extensions
    (`NamedAny{name, Any{yaml}}`), in the object's order, after the other fields."""
    spec = _MESSAGES[message]
    parts: list[bytes] = []
    extensions: list[bytes] = []
    ext_number = spec.get("x-")
    for key, field_value in value.items():
        if key.startswith("x-"):
            if ext_number is not None:
                extensions.append(_extension(ext_number, key, field_value))
            continue
        enc = spec.get(key)
        if enc is not None and field_value is not None:
            parts.append(enc(field_value))
    return b"".join(parts) + b"".join(extensions)


# --- the cached document and the handler ---


@dataclass(frozen=True)
class Served:
    generation: int
    json: bytes
    protobuf: bytes
    etag: str  # upper-case hex SHA-512 of the JSON, unquoted
    last_modified: float


class OpenAPIV2:
    """The `/openapi/v2` document of the API server, built on first use and cached until the v3 documents change."""

    def __init__(self, v3: OpenAPIV3) -> None:
        self._v3 = v3
        self._lock = threading.Lock()  # one build at a time; concurrent first requests wait for it
        self._served: Served | None = None

    def cached(self) -> Served | None:
        """The current document if it is built and fresh, without building it."""
        cached = self._served
        return cached if cached is not None and cached.generation == self._v3.generation else None

    def served(self) -> Served:
        """The current document, built (blocking; call it from a worker thread) if it is not cached."""
        cached = self.cached()
        if cached is not None:
            return cached
        with self._lock:
            cached = self._served
            generation = self._v3.generation
            if cached is not None and cached.generation == generation:
                return cached
            doc = build_document(self._v3)
            data = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
            # recorded with the generation read before building: a change meanwhile rebuilds next time
            cached = Served(generation, data, encode("Document", doc), hashlib.sha512(data).hexdigest().upper(), time.time())
            self._served = cached
            return cached


def _accept_clauses(accept: str) -> list[tuple[str, str]]:
    """(type, subtype) of each Accept clause, by preference as goautoneg sorts them."""
    clauses: list[tuple[float, bool, bool, int, str, str]] = []
    for i, clause in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in clause.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, raw = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(raw)
                except ValueError:
                    q = 0.0
        type_, _, subtype = media.lower().partition("/")
        if not subtype:
            type_, subtype = (type_, "*") if type_ == "*" else (type_, "")
        clauses.append((-q, type_ == "*", subtype == "*", i, type_, subtype))
    clauses.sort()
    return [(c[4], c[5]) for c in clauses]


_ACCEPTED = (("application", "json", JSON), ("application", PROTOBUF_DEPRECATED.split("/")[1], PROTOBUF), ("application", PROTOBUF.split("/")[1], PROTOBUF))


def negotiate(accept: str) -> str | None:
    """The media type to answer (JSON or PROTOBUF) for an Accept header, None for 406."""
    for type_, subtype in _accept_clauses(accept or "*/*"):
        for want_type, want_subtype, answer in _ACCEPTED:
            if type_ in (want_type, "*") and subtype in (want_subtype, "*"):
                return answer
    return None


def _not_modified(request: web.Request, etag: str, last_modified: float) -> bool:
    """net/http's ServeContent conditions: If-None-Match wins; else If-Modified-Since (whole seconds)."""
    header = request.headers.get("If-None-Match")
    if header is not None:
        tags = {t.strip().removeprefix("W/") for t in header.split(",")}
        return "*" in tags or f'"{etag}"' in tags
    since = request.headers.get("If-Modified-Since")
    if since:
        try:
            parsed = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        return int(last_modified) <= parsed.timestamp()
    return False


def add_routes(app: web.Application, v2: OpenAPIV2) -> None:
    """Serve `/openapi/v2`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        media = negotiate(request.headers.get("Accept", ""))
        if media is None:
            return web.Response(status=406, headers={"Vary": "Accept"})
        served = v2.cached() or await asyncio.to_thread(v2.served)
        headers = {
            "Vary": "Accept",
            "Content-Type": media,
            "ETag": f'"{served.etag}"',
            "Last-Modified": email.utils.formatdate(served.last_modified, usegmt=True),
        }
        if _not_modified(request, served.etag, served.last_modified):
            # as net/http's writeNotModified: no Content-Type, no Last-Modified beside an ETag
            del headers["Content-Type"], headers["Last-Modified"]
            return web.Response(status=304, headers=headers)
        return web.Response(body=served.protobuf if media == PROTOBUF else served.json, headers=headers)

    app.router.add_get("/openapi/v2", handler)
