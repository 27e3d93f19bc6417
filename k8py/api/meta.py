"""Small helpers on object metadata shared by the API server and its clients."""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
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
    """A random (version 4) UUID; from `random`, not os.urandom: uids must be unique, not secret."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


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
