"""Developer tool: regenerate `messages.py`, the protobuf descriptions of the built-in kinds.

    python -m k8py.api.protobuf.generate --kubectl /path/to/kubectl-1.32 > k8py/api/protobuf/messages.py

Where the facts come from: every Go program built with k8s.io/api embeds, for
each `generated.proto`, the compiled FileDescriptorProto (gzipped, registered
with gogo-protobuf), so a kubectl 1.32 binary carries exactly the 1.32
`generated.proto` files of k8s.io/api and k8s.io/apimachinery, with the gogo
options go-to-protobuf used (`nullable=false` on non-pointer Go fields). This
script finds those descriptors, reads them with our own wire decoder, and
writes the compact tables `k8py.api.protobuf.schema` parses; nothing of
upstream's text is copied. apiextensions.k8s.io is not linked into kubectl:
its messages are described by hand in `apiextensions.py`.

What a table needs beyond field numbers is taken from the same descriptors and
from the 1.32 OpenAPI definitions (kubernetes-validate):
- which scalars keep their zero value: Go pointers (no `nullable=false`) and
  fields the definition lists as `required` (no `omitempty`: a JSON client
  sends them even when zero); other zero scalars are dropped, as `omitempty`
  drops them;
- the JSON name where it differs from the proto name in case only (`uID`);
- which fields are `json:",inline"` (the proto field has a name the parent's
  definition lacks: `Probe.handler`, `Volume.volumeSource`): written with no name;
- which messages only wrap a list (`repeated ... items = 1`, e.g. ExtraValue):
  their single field is written with no name, so the message decodes to the list.

Only the messages reachable from the kinds the registry serves (and the few
request bodies that are not resources: DeleteOptions, Scale, TokenRequest,
Eviction, reviews) are written.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from k8py.api import schema
from k8py.api.protobuf import wire
from k8py.api.protobuf.decode import SPECIAL
from k8py.api.protobuf.schema import ANY_VERSION, alias
from k8py.api.registry import Registry

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
_GOGO_NULLABLE = 65001
_SCALARS = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32"}
_MESSAGE, _REPEATED = 11, 3


@dataclass
class Field:
    name: str
    number: int
    repeated: bool
    type: int
    type_name: str  # fully qualified, without the leading dot, for messages
    nullable: bool  # a Go pointer (gogo's default) rather than a value


@dataclass
class Message:
    name: str  # fully qualified
    fields: list[Field]
    map_entry: bool


def _parse(buf: bytes) -> dict[int, list[int | bytes]]:
    out: dict[int, list[int | bytes]] = {}
    for number, _, value in wire.fields(buf):
        out.setdefault(number, []).append(value)
    return out


def _submessage(d: dict[int, list[int | bytes]], number: int) -> dict[int, list[int | bytes]]:
    """The parsed message in field `number` of `d` (empty when absent)."""
    value = d.get(number, [b""])[0]
    assert isinstance(value, bytes)
    return _parse(value)


def _int(values: list[int | bytes]) -> int:
    value = values[0]
    assert isinstance(value, int)
    return value


def _text(values: list[int | bytes] | None) -> str:
    if not values:
        return ""
    value = values[0]
    assert isinstance(value, bytes)
    return value.decode()


def embedded_descriptors(binary: bytes) -> Iterator[bytes]:
    """The gzipped FileDescriptorProtos of `*.proto` files in a Go binary."""
    pos = 0
    while (pos := binary.find(_GZIP_HEADER, pos)) >= 0:
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(binary[pos : pos + (4 << 20)])
        except zlib.error:
            data = b""
        # FileDescriptorProto starts with field 1 (name): 0x0a, length, "....proto"
        if data[:1] == b"\n" and data[2 : 2 + data[1]].endswith(b".proto"):
            yield data
        pos += 1


def messages_of(file_descriptor: bytes) -> Iterator[Message]:
    fd = _parse(file_descriptor)
    package = _text(fd.get(2))

    def walk(raw: bytes, scope: str) -> Iterator[Message]:
        d = _parse(raw)
        name = f"{scope}.{_text(d.get(1))}"
        options = _submessage(d, 7)  # MessageOptions; map_entry = 7
        fields = []
        for f in d.get(2, []):
            assert isinstance(f, bytes)
            fdd = _parse(f)
            opts = _submessage(fdd, 8)  # FieldOptions, with gogo's extensions
            fields.append(
                Field(
                    name=_text(fdd.get(1)),
                    number=_int(fdd[3]),
                    repeated=_int(fdd[4]) == _REPEATED,
                    type=_int(fdd[5]),
                    type_name=_text(fdd.get(6)).lstrip("."),
                    nullable=opts.get(_GOGO_NULLABLE, [1])[0] != 0,
                )
            )
        yield Message(name, fields, bool(options.get(7, [0])[0]))
        for nested in d.get(3, []):
            assert isinstance(nested, bytes)
            yield from walk(nested, name)

    for raw in fd.get(4, []):
        assert isinstance(raw, bytes)
        yield from walk(raw, package)


def definition_of(message: str) -> schema.Schema | None:
    """The OpenAPI definition of a proto message (`k8s.io.api.core.v1.Pod` -> `io.k8s.api.core.v1.Pod`)."""
    return schema.definitions().get("io.k8s." + message.removeprefix("k8s.io."))


def roots(registry: Registry) -> list[str]:
    """Proto messages of every kind a request body may carry."""
    gvks = set()
    for r in registry.resources():
        gvks.add((r.group, r.version, r.kind))
        for s in r.subresources:
            if s.kind and s.kind[0].isupper():
                gvks.add((s.group or r.group, s.version or r.version, s.kind))
    out = ["k8s.io.apimachinery.pkg.apis." + name for name in ANY_VERSION.values()]
    for gvk in sorted(gvks):
        name = schema.definition_name(*gvk)
        if name and name.startswith("io.k8s.api."):
            out.append("k8s.io." + name.removeprefix("io.k8s."))
    return out


class Writer:
    def __init__(self, messages: dict[str, Message]) -> None:
        self.messages = messages
        self.problems: list[str] = []

    def type_ref(self, f: Field, package: str) -> str:
        if f.type != _MESSAGE:
            if f.type not in _SCALARS:
                self.problems.append(f"{f.name}: unsupported scalar type {f.type}")
            return _SCALARS.get(f.type, "?")
        target = self.messages[f.type_name]
        if target.map_entry:
            key, value = sorted(target.fields, key=lambda x: x.number)
            return "{" + self.type_ref(key, package) + ":" + self.type_ref(value, package) + "}"
        short = alias(f.type_name)
        pkg, _, name = short.rpartition(".")
        return name if pkg == alias(package + ".")[:-1] else short

    def is_inline(self, message: Message, f: Field) -> bool:
        parent = definition_of(message.name)
        if parent is None or f.type != _MESSAGE or f.repeated:
            return False
        props = parent.get("properties") or {}
        if f.name in props:
            return False
        child = self.messages[f.type_name]
        missing = [c.name for c in child.fields if c.name not in props]
        if missing:
            self.problems.append(f"{message.name}.{f.name}: not a property, nor inline ({missing})")
        return True

    def json_name(self, message: Message, f: Field) -> str:
        """The field's JSON name: its proto name, but for the few whose case differs (`uID` is `uid`)."""
        props = (definition_of(message.name) or {}).get("properties")
        if props is None or f.name in props:
            return f.name
        same = [p for p in props if p.lower() == f.name.lower()]
        if len(same) != 1:
            self.problems.append(f"{message.name}.{f.name}: not in the OpenAPI definition")
            return f.name
        return same[0]

    @staticmethod
    def is_list_wrapper(message: Message) -> bool:
        return (
            len(message.fields) == 1
            and message.fields[0].name == "items"
            and message.fields[0].number == 1
            and message.fields[0].repeated
            and definition_of(message.name) is None
        )

    def describe(self, message: Message) -> str:
        package = message.name.rpartition(".")[0]
        parent = definition_of(message.name)
        tokens = []
        for f in message.fields:
            t = self.type_ref(f, package)
            if f.repeated and not t.startswith("{"):
                t = f"[{t}]"
            elif f.type != _MESSAGE and (f.nullable or f.name in (parent or {}).get("required", ())):
                t = "*" + t
            inline = self.is_inline(message, f) or self.is_list_wrapper(message)
            tokens.append(f"{'' if inline else self.json_name(message, f)}={f.number}:{t}")
        return " ".join(tokens)

    def closure(self, names: list[str]) -> list[str]:
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen or alias(name) in SPECIAL:
                continue
            seen.add(name)
            for f in self.messages[name].fields:
                if f.type != _MESSAGE:
                    continue
                target = self.messages[f.type_name]
                if target.map_entry:  # its value type, if a message
                    todo.extend(x.type_name for x in target.fields if x.type == _MESSAGE)
                else:
                    todo.append(f.type_name)
        return sorted(seen, key=alias)


def generate(binary: Path) -> str:
    messages: dict[str, Message] = {}
    for fd in embedded_descriptors(binary.read_bytes()):
        for m in messages_of(fd):
            messages[m.name] = m
    registry = Registry()
    writer = Writer(messages)
    root_names = [r for r in roots(registry) if r in messages]
    lines = [
        '"""Protobuf descriptions of the Kubernetes 1.32 built-in kinds: generated by',
        "`python -m k8py.api.protobuf.generate`; do not edit. Format: `k8py.api.protobuf.schema`.",
        '"""',
        "",
        "MESSAGES: dict[str, str] = {",
    ]
    for name in writer.closure(root_names):
        lines.append(f'    "{alias(name)}": "{writer.describe(messages[name])}",')
    lines.append("}")
    lines.append("")
    lines.append("# (apiVersion, kind) of a request body -> its message")
    lines.append("KINDS: dict[tuple[str, str], str] = {")
    for name in sorted(root_names, key=alias):
        if alias(name) in ANY_VERSION.values():
            continue
        for gvk in (definition_of(name) or {}).get("x-kubernetes-group-version-kind", ()):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            lines.append(f'    ("{api_version}", "{gvk["kind"]}"): "{alias(name)}",')
    lines.append("}")
    if writer.problems:
        sys.exit("\n".join(writer.problems))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", type=Path, required=True, help="a kubectl 1.32 binary")
    args = parser.parse_args()
    sys.stdout.write(generate(args.kubectl))


if __name__ == "__main__":
    main()
