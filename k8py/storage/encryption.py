"""Encryption at rest: kube-apiserver's `--encryption-provider-config`.

An apiserver.config.k8s.io/v1 EncryptionConfiguration names, per resource, an ordered list of
providers: the first one encrypts every write, all of them decrypt. Values are stored exactly as
upstream's value transformers store them in etcd:

    k8s:enc:aescbc:v1:<key name>:    16-byte IV + AES-CBC(PKCS#7 padded value)
    k8s:enc:aesgcm:v1:<key name>:    12-byte nonce + AES-GCM(value, additional data = the key)
    k8s:enc:secretbox:v1:<key name>: 24-byte nonce + XSalsa20-Poly1305 box (tag first)
    identity:                        the value itself

`EncryptedStore` wraps the Store: values are transformed on the way in and out, so the watch
cache, lists and watches only ever see plaintext. A value no provider can read is left out of
lists and watches and remembered: reads of it answer a clear InternalError (`unreadable`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import nacl.exceptions
import nacl.secret
import orjson
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as GCMCipher

from k8py.api import errors
from k8py.storage.interface import ConflictError, Event, EventType, KeyValue, ListResult, Store

log = logging.getLogger(__name__)

ENCRYPTED = b"k8s:enc:"
BLOCK = 16


class ConfigError(ValueError):
    """An EncryptionConfiguration file that cannot be used."""


class TransformError(Exception):
    """A stored value that cannot be decrypted."""


class Transformer(Protocol):
    def encrypt(self, data: bytes, key: str) -> bytes: ...

    def decrypt(self, data: bytes, key: str) -> bytes: ...


class AESCBC:
    """aescbc: random IV, PKCS#7 padding; no authenticated data (as upstream)."""

    def __init__(self, secret: bytes) -> None:
        self._algorithm = algorithms.AES(secret)

    def encrypt(self, data: bytes, key: str) -> bytes:
        iv = os.urandom(BLOCK)
        pad = BLOCK - len(data) % BLOCK
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return iv + encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()

    def decrypt(self, data: bytes, key: str) -> bytes:
        if len(data) < BLOCK:
            raise TransformError("the stored data was shorter than the required size")
        if len(data) % BLOCK:
            raise TransformError("the stored data is not a multiple of the block size")
        decryptor = Cipher(self._algorithm, modes.CBC(data[:BLOCK])).decryptor()
        plain = decryptor.update(data[BLOCK:]) + decryptor.finalize()
        pad = plain[-1] if plain else 0
        if not plain or not 0 < pad <= BLOCK:
            raise TransformError("invalid PKCS7 data (empty or not padded)")
        if plain[-pad:] != bytes([pad]) * pad:
            raise TransformError("invalid padding on input")
        return plain[:-pad]


class AESGCM:
    """aesgcm: random 12-byte nonce; the etcd key is the authenticated data."""

    NONCE = 12

    def __init__(self, secret: bytes) -> None:
        self._aead = GCMCipher(secret)

    def encrypt(self, data: bytes, key: str) -> bytes:
        nonce = os.urandom(self.NONCE)
        return nonce + self._aead.encrypt(nonce, data, key.encode())

    def decrypt(self, data: bytes, key: str) -> bytes:
        if len(data) < self.NONCE:
            raise TransformError("the stored data was shorter than the required size")
        try:
            return self._aead.decrypt(data[: self.NONCE], data[self.NONCE :], key.encode())
        except InvalidTag:
            raise TransformError("cipher: message authentication failed") from None


class SecretBox:
    """secretbox: random 24-byte nonce + NaCl secretbox (XSalsa20-Poly1305); no authenticated data."""

    NONCE = 24

    def __init__(self, secret: bytes) -> None:
        self._box = nacl.secret.SecretBox(secret)

    def encrypt(self, data: bytes, key: str) -> bytes:
        return bytes(self._box.encrypt(data, os.urandom(self.NONCE)))

    def decrypt(self, data: bytes, key: str) -> bytes:
        if len(data) < self.NONCE + 16:
            raise TransformError("the stored data was shorter than the required size")
        try:
            return self._box.decrypt(data)
        except nacl.exceptions.CryptoError:
            raise TransformError("failed to decrypt message") from None


CIPHERS: dict[str, tuple[Callable[[bytes], Transformer], tuple[int, ...]]] = {
    "aescbc": (AESCBC, (16, 24, 32)),
    "aesgcm": (AESGCM, (16, 24, 32)),
    "secretbox": (SecretBox, (32,)),
}


@dataclass(frozen=True)
class Prefixed:
    """One key of one provider: its stored prefix and cipher (identity: empty prefix, no cipher)."""

    prefix: bytes
    cipher: Transformer | None


@dataclass
class ProviderList:
    """One resource rule's providers in order: the first encrypts, any whose prefix matches decrypts."""

    transformers: list[Prefixed]

    def encrypt(self, data: bytes, key: str) -> bytes:
        first = self.transformers[0]
        if first.cipher is None:
            return data
        return first.prefix + first.cipher.encrypt(data, key)

    def decrypt(self, data: bytes, key: str) -> tuple[bytes, bool]:
        """(plaintext, stale): upstream's prefix transformers, where identity refuses encrypted data and
        the next one is tried; stale when not the first provider read it (a write would change it)."""
        failures: list[str] = []
        for i, t in enumerate(self.transformers):
            if t.cipher is None:
                if not data.startswith(ENCRYPTED):
                    return data, i != 0
                continue
            if data.startswith(t.prefix):
                try:
                    return t.cipher.decrypt(data[len(t.prefix) :], key), i != 0
                except TransformError as e:
                    failures.append(str(e))
        if failures:
            raise TransformError(failures[0] if len(failures) == 1 else "[" + ", ".join(failures) + "]")
        if not data.startswith(ENCRYPTED):
            raise TransformError("no matching prefix found (the value is not encrypted: add the identity provider)")
        raise TransformError("no matching prefix found")


@dataclass
class Rule:
    resources: list[str]
    providers: ProviderList

    def matches(self, group: str, resource: str) -> bool:
        for name in self.resources:
            res, _, grp = name.partition(".")
            if name == "*.*" or (res == "*" and grp == group) or (res == resource and grp == group):
                return True
        return False


@dataclass
class EncryptionConfig:
    rules: list[Rule] = field(default_factory=list)

    def for_resource(self, group: str, resource: str) -> ProviderList | None:
        """The first rule naming the resource (as upstream, the order of the file decides)."""
        for rule in self.rules:
            if rule.matches(group, resource):
                return rule.providers
        return None

    def all_providers(self) -> ProviderList:
        """Every provider of every rule, plus identity: to read values of resources not yet known."""
        seen: dict[bytes, Prefixed] = {}
        for rule in self.rules:
            for t in rule.providers.transformers:
                seen.setdefault(t.prefix, t)
        seen.setdefault(b"", Prefixed(b"", None))
        return ProviderList(list(seen.values()))


def load_config(path: str | Path) -> EncryptionConfig:
    """Parse and validate an EncryptionConfiguration file (ConfigError says what is wrong)."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"error reading encryption provider configuration file {str(path)!r}: {e}") from None
    return parse_config(doc)


def parse_config(doc: Any) -> EncryptionConfig:
    if not isinstance(doc, dict):
        raise ConfigError("encryption provider configuration is not an object")
    if doc.get("kind") != "EncryptionConfiguration" or doc.get("apiVersion") != "apiserver.config.k8s.io/v1":
        raise ConfigError(
            "encryption provider configuration must be kind EncryptionConfiguration, apiVersion apiserver.config.k8s.io/v1"
        )
    resources = doc.get("resources")
    if not isinstance(resources, list) or not resources:
        raise ConfigError("resources: Required value: resources is a required field")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, entry in enumerate(resources):
        where = f"resources[{i}]"
        names = entry.get("resources") if isinstance(entry, dict) else None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{where}.resources: Required value: at least one resource must be specified")
        for n in names:
            if not _valid_resource(n):
                raise ConfigError(f"{where}.resources: Invalid value: {n!r}: only '*.<group>' and '*.*' wildcards are allowed")
            if n in seen:
                raise ConfigError(f"{where}.resources: Duplicate value: {n!r}")
            seen.add(n)
        providers = entry.get("providers")
        if not isinstance(providers, list) or not providers:
            raise ConfigError(f"{where}.providers: Required value: at least one provider must be specified")
        transformers: list[Prefixed] = []
        for j, provider in enumerate(providers):
            transformers.extend(_provider(provider, f"{where}.providers[{j}]"))
        rules.append(Rule(names, ProviderList(transformers)))
    return EncryptionConfig(rules)


def _valid_resource(name: str) -> bool:
    """`resource`, `resource.group`, `*.group`, `*.` (the core group) or `*.*`."""
    resource, dot, group = name.partition(".")
    return name == "*.*" or ("*" not in group and (resource == "*" and bool(dot) or "*" not in resource))


def _provider(provider: Any, where: str) -> list[Prefixed]:
    if not isinstance(provider, dict) or len(provider) != 1:
        raise ConfigError(f"{where}: Invalid value: exactly one provider must be configured (aescbc, aesgcm, secretbox, identity)")
    (name, body), = provider.items()
    if name == "identity":
        return [Prefixed(b"", None)]
    if name == "kms":
        raise ConfigError(f"{where}.kms: Unsupported value: kms providers are not supported by k8py")
    if name not in CIPHERS:
        raise ConfigError(f"{where}: Unsupported value: {name!r}: supported values: aescbc, aesgcm, secretbox, identity")
    make, sizes = CIPHERS[name]
    keys = (body or {}).get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ConfigError(f"{where}.{name}.keys: Required value: keys (list) should have at least 1 element")
    out: list[Prefixed] = []
    names: set[str] = set()
    for k, key in enumerate(keys):
        kwhere = f"{where}.{name}.keys[{k}]"
        key_name = key.get("name") if isinstance(key, dict) else None
        if not isinstance(key_name, str) or not key_name:
            raise ConfigError(f"{kwhere}.name: Required value: key name is required")
        if ":" in key_name:
            raise ConfigError(f"{kwhere}.name: Invalid value: {key_name!r}: should not contain ':'")
        if key_name in names:
            raise ConfigError(f"{kwhere}.name: Duplicate value: {key_name!r}")
        names.add(key_name)
        try:
            secret = base64.b64decode(str(key.get("secret") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{kwhere}.secret: Invalid value: secrets must be base64 encoded") from None
        if len(secret) not in sizes:
            want = " or ".join(str(s) for s in sizes)
            raise ConfigError(f"{kwhere}.secret: Invalid value: {name} key must be {want} bytes long, got {len(secret)}")
        out.append(Prefixed(f"k8s:enc:{name}:v1:{key_name}:".encode(), make(secret)))
    return out


class EncryptedStore:
    """A Store whose values are encrypted per the EncryptionConfiguration; `resource_of(storage prefix)`
    names the (group, resource) stored under a prefix, or None."""

    def __init__(self, store: Store, config: EncryptionConfig, resource_of: Callable[[str], tuple[str, str] | None]) -> None:
        self._store = store
        self._config = config
        self._resource_of = resource_of
        self._by_prefix: dict[str, ProviderList | None] = {}
        self._fallback = config.all_providers()
        self.corrupt: dict[str, str] = {}  # key -> why its value cannot be read
        self._stale: set[str] = set()  # keys whose value is not in the first provider's form

    def _providers(self, key: str) -> ProviderList | None:
        """The providers of the resource stored at `key` (namespaced: prefix/ns/name; else prefix/name)."""
        head = key.rpartition("/")[0]
        candidates = (head.rpartition("/")[0], head)
        for prefix in candidates:
            if prefix in self._by_prefix:
                return self._by_prefix[prefix]
        for prefix in candidates:
            gr = self._resource_of(prefix)
            if gr is not None:
                providers = self._by_prefix[prefix] = self._config.for_resource(*gr)
                return providers
        return self._fallback

    def _encrypt(self, key: str, value: bytes) -> bytes:
        providers = self._providers(key)
        return providers.encrypt(value, key) if providers else value

    def _read(self, kv: KeyValue, current: bool = True) -> KeyValue | None:
        """`kv` decrypted, or None when it cannot be; of a key's `current` value, remember which cannot be
        read (`corrupt`) and which are stale."""
        providers = self._providers(kv.key)
        if providers is None:
            return kv
        try:
            value, stale = providers.decrypt(kv.value, kv.key)
        except TransformError as e:
            if current:
                if kv.key not in self.corrupt:
                    log.error("unable to transform key %r: %s", kv.key, e)
                self.corrupt[kv.key] = str(e)
            return None
        if current:
            self.corrupt.pop(kv.key, None)
            if stale:
                self._stale.add(kv.key)
            else:
                self._stale.discard(kv.key)
        return KeyValue(kv.key, value, kv.create_revision, kv.mod_revision)

    def stale(self, key: str) -> bool:
        """Whether the key's value was read by another provider than the first: an unchanged update still
        writes it (as upstream, so that re-writing every secret rotates keys)."""
        return key in self._stale

    def unreadable(self, key_or_prefix: str) -> None:
        """Raise the InternalError upstream answers when a value under `key_or_prefix` cannot be decrypted."""
        for key, why in self.corrupt.items():
            if key == key_or_prefix or (key_or_prefix.endswith("/") and key.startswith(key_or_prefix)):
                raise errors.internal(f'unable to transform key "{key}": {why}')

    # ---- the Store protocol ---------------------------------------------------------------

    async def start(self) -> None:
        await self._store.start()

    async def close(self) -> None:
        await self._store.close()

    async def current_revision(self) -> int:
        return await self._store.current_revision()

    async def compacted_revision(self) -> int:
        return await self._store.compacted_revision()

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        kv = await self._store.get(key, revision=revision)
        if kv is None:
            return None
        plain = self._read(kv)
        if plain is None:
            self.unreadable(key)
        return plain

    async def list(self, prefix: str, *, start_key: str = "", limit: int = 0, revision: int = 0) -> ListResult:
        """Unreadable values are left out; a page they shortened is filled from the next ones."""
        items: list[KeyValue] = []
        while True:
            result = await self._store.list(prefix, start_key=start_key, limit=limit and limit - len(items), revision=revision)
            items.extend(plain for kv in result.items if (plain := self._read(kv)) is not None)
            if not result.more or not result.items or len(items) >= limit:
                return ListResult(items, result.revision, result.more)
            start_key, revision = result.items[-1].key + "\x00", result.revision

    async def count(self, prefix: str) -> int:
        return await self._store.count(prefix)

    async def create(self, key: str, value: bytes) -> int:
        revision = await self._store.create(key, self._encrypt(key, value))
        self._stale.discard(key)
        return revision

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        try:
            revision = await self._store.update(key, self._encrypt(key, value), expected_revision=expected_revision)
        except ConflictError as e:
            current = e.current and self._read(e.current)
            raise ConflictError(key, current) from None
        self.corrupt.pop(key, None)
        self._stale.discard(key)
        return revision

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[int, KeyValue]:
        try:
            revision, kv = await self._store.delete(key, expected_revision=expected_revision)
        except ConflictError as e:
            current = e.current and self._read(e.current)
            raise ConflictError(key, current) from None
        self._stale.discard(key)
        return revision, self._read(kv, current=False) or kv

    async def watch(self, prefix: str, *, start_revision: int,
                    progress: Callable[[int], None] | None = None) -> AsyncIterator[list[Event]]:
        """Every event, decrypted; one whose value cannot be read becomes the key's deletion, so that the
        watch cache drops the object and still advances to the event's revision."""
        async for batch in self._store.watch(prefix, start_revision=start_revision, progress=progress):
            out: list[Event] = []
            for ev in batch:
                prev = ev.prev and self._read(ev.prev, current=False)
                kv = self._read(ev.kv, current=ev.type is EventType.PUT)
                if ev.type is EventType.DELETE:
                    self.corrupt.pop(ev.kv.key, None)
                    self._stale.discard(ev.kv.key)
                    out.append(Event(ev.type, kv or _stub(ev.kv), prev, ev.created))
                elif kv is None:
                    out.append(Event(EventType.DELETE, _stub(ev.kv), prev))
                else:
                    out.append(Event(ev.type, kv, prev, ev.created))
            yield out

    async def compact(self, revision: int) -> None:
        await self._store.compact(revision)


def _stub(kv: KeyValue) -> KeyValue:
    """The value of a key that cannot be read: an object with only the key's name."""
    md = {"name": kv.key.rpartition("/")[2]}
    return KeyValue(kv.key, orjson.dumps({"metadata": md}), kv.create_revision, kv.mod_revision)
