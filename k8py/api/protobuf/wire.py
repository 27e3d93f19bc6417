"""The protocol buffers wire format, read-only: the part of protobuf that needs no schema.

A message is a sequence of fields, each a key varint `(number << 3) | wire type`
followed by a value whose length the wire type tells: a varint (0), 8 bytes (1),
a length-prefixed run of bytes (2: strings, bytes, nested messages and packed
repeated scalars) or 4 bytes (5). Groups (3, 4) are a proto2 relic nothing in
Kubernetes uses; they are refused like any other malformation. Everything
here raises `DecodeError` on input that does not follow the format, so callers
turn one exception into a 400 instead of tripping over IndexErrors.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT, I64, LEN, I32 = 0, 1, 2, 5

_U64 = 1 << 64
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")


class DecodeError(ValueError):
    """Input that is not a well-formed protobuf message (or not the one expected)."""


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it (at most 10 bytes, as protobuf allows)."""
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result >= _U64:
                raise DecodeError("varint overflows 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of the message `buf`.

    Varints and fixed-width values come as unsigned ints (see `int64`,
    `int32`, `double`, `float32`), length-delimited values as bytes.
    """
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0 or number >= 1 << 29:
            raise DecodeError(f"invalid field number {number}")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire_type == LEN:
            size, pos = read_varint(buf, pos)
            if pos + size > end:
                raise DecodeError(f"field {number}: length {size} runs past the end of the message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire_type in (I64, I32):
            width = 8 if wire_type == I64 else 4
            if pos + width > end:
                raise DecodeError(f"field {number}: truncated fixed-width value")
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        else:
            raise DecodeError(f"field {number}: unsupported wire type {wire_type}")
        yield number, wire_type, value


def packed_varints(buf: bytes) -> list[int]:
    """The values of a packed repeated varint field."""
    out, pos = [], 0
    while pos < len(buf):
        value, pos = read_varint(buf, pos)
        out.append(value)
    return out


def packed_fixed(buf: bytes, width: int) -> list[int]:
    """The values of a packed repeated fixed32 (`width` 4) or fixed64 (8) field, as unsigned ints."""
    if len(buf) % width:
        raise DecodeError(f"packed field of {len(buf)} bytes is not a multiple of {width}")
    return [int.from_bytes(buf[i : i + width], "little") for i in range(0, len(buf), width)]


def int64(value: int) -> int:
    """A varint or fixed64 read as a two's complement int64 (negative int32s are sign-extended too)."""
    return value - _U64 if value >= 1 << 63 else value


def int32(value: int) -> int:
    value = int64(value)
    if not -(1 << 31) <= value < 1 << 31:
        raise DecodeError(f"value {value} overflows int32")
    return value


def uint32(value: int) -> int:
    if value >= 1 << 32:
        raise DecodeError(f"value {value} overflows uint32")
    return value


def double(value: int) -> float:
    return _DOUBLE.unpack(value.to_bytes(8, "little"))[0]


def float32(value: int) -> float:
    return _FLOAT.unpack(value.to_bytes(4, "little"))[0]
