"""Content negotiation: decoding request bodies and choosing the response form.

Bodies come as JSON, YAML or protobuf (`k8py.api.protobuf`, decoded to the
same dicts). Responses are JSON, YAML when asked, or a meta.k8s.io Table /
PartialObjectMetadata(List) when the Accept header asks for one with
`;as=...;g=meta.k8s.io;v=v1` (as `kubectl get` and metadata-only informers do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from k8py.api import errors, nesting, protobuf, yamljson

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request body limit for resources

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"


@dataclass(frozen=True)
class MediaType:
    type: str  # "application/json"
    params: dict[str, str]

    @property
    def as_kind(self) -> str:
        return self.params.get("as", "")


def parse_media_types(header: str) -> list[MediaType]:
    out = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        params = {}
        for f in fields[1:]:
            if "=" in f:
                k, v = f.split("=", 1)
                params[k.strip()] = v.strip()
        out.append(MediaType(fields[0].lower(), params))
    return out


@dataclass(frozen=True)
class Output:
    """What the response should be: encoding and (optionally) a meta.k8s.io transformation."""

    encoding: str  # JSON or YAML
    as_kind: str = ""  # "", "Table", "PartialObjectMetadata", "PartialObjectMetadataList"


def choose_output(accept: str) -> Output:
    if not accept:
        return Output(JSON)
    for mt in parse_media_types(accept):
        if mt.as_kind:
            if mt.params.get("g") == "meta.k8s.io" and mt.params.get("v") in ("v1", "v1beta1") and mt.as_kind in (
                "Table",
                "PartialObjectMetadata",
                "PartialObjectMetadataList",
            ) and mt.type in (JSON, "*/*"):
                return Output(JSON, mt.as_kind)
            continue
        if mt.type in (JSON, "*/*", "application/*", PROTOBUF, "application/json-patch+json"):
            return Output(JSON)
        if mt.type == YAML:
            return Output(YAML)
    raise errors.not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, "
        "application/vnd.kubernetes.protobuf"
    )


def decode_body(body: bytes, content_type: str) -> Any:
    """A JSON, YAML or protobuf request body as Python data; 400 when malformed, 415 for unknown types."""
    media = (content_type or JSON).split(";")[0].strip().lower()
    if media in (JSON, "", "*/*"):
        nesting.check_json(body)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise errors.bad_request(f"error decoding JSON request body: {e}") from None
    if media in (YAML, "application/yml", "text/yaml"):
        try:
            return yamljson.load(body)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error decoding YAML request body: {e}") from None
    if media == PROTOBUF:
        return _decode_protobuf(body, content_type)
    raise errors.unsupported_media_type(content_type)


def _decode_protobuf(body: bytes, content_type: str) -> Any:
    try:
        obj = protobuf.decode_object(body)
    except protobuf.DecodeError as e:
        raise errors.bad_request(f"error decoding protobuf request body: {e}") from None
    except protobuf.UnknownKind as e:
        raise errors.StatusError(
            415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}: {e}"
        ) from None
    if nesting.depth(obj) > nesting.MAX_DEPTH:
        raise nesting.too_deep()
    return obj


def encode(obj: Any, encoding: str) -> bytes:
    if encoding == YAML:
        return yaml.safe_dump(obj, sort_keys=False).encode()
    return orjson.dumps(obj)
