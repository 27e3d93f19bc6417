"""Small helpers on object metadata shared by the API server and its clients."""

from __future__ import annotations

import datetime as dt
import random
import time
from typing import Any

import orjson

Obj = dict[str, Any]

# kube's rand.String alphabet: no vowels (no words), no easily confused characters.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATE_NAME_SUFFIX = 5


def now() -> str:
    """RFC 3339 at second precision, as metav1.Time serialises (formatted once a second: every write
    stamps one or two)."""
    global _now
    second = int(time.time())
    if second != _now[0]:
        _now = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _now[1]


_now = (0, "")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    """A random (version 4) UUID; from `random`, not os.urandom: uids must be unique, not secret.

    `str(uuid.UUID(int=..., version=4))` spelled out: every create takes one."""
    n = random.getrandbits(128) & _UUID_CLEAR | _UUID_V4
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)  # the variant and version bits
_UUID_V4 = (0x8000 << 48) | (4 << 76)  # RFC 4122 variant, version 4


def generate_name(prefix: str) -> str:
    """generateName + 5 random characters, as kube's SimpleNameGenerator (prefix cut to fit 63).

    From `random` like kube's utilrand (math/rand): names must be unlikely to collide, not secret,
    and every pod's token volume takes one (`secrets` costs a system call per character)."""
    prefix = prefix[: 63 - GENERATE_NAME_SUFFIX]
    return prefix + "".join(random.choices(_NAME_ALPHABET, k=GENERATE_NAME_SUFFIX))


def clone(obj: Any) -> Any:
    """A deep copy of a JSON value (orjson round trip: faster than copy.deepcopy)."""
    return orjson.loads(orjson.dumps(obj))


def metadata(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta
