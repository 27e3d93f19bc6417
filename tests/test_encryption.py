"""Encryption at rest: the providers' stored format (checked with independent decryption), the
EncryptionConfiguration, the encrypting Store, and a cluster: plaintext -> aescbc -> key rotation
-> wrong key, reading the SQLite files' raw bytes."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import nacl.bindings
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from k8py.api import errors
from k8py.storage.encryption import ConfigError, EncryptedStore, TransformError, parse_config
from k8py.storage.interface import EventType
from k8py.storage.sqlite import SQLiteStore
from tests.conftest import start_cluster, wait_for

KEY = "/registry/secrets/default/s1"
K32 = bytes(range(32))
K16 = bytes(range(16))


def config(*providers: dict, resources: tuple[str, ...] = ("secrets",)) -> dict:
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": list(providers)}],
    }


def keyed(provider: str, *keys: tuple[str, bytes]) -> dict:
    return {provider: {"keys": [{"name": n, "secret": base64.b64encode(k).decode()} for n, k in keys]}}


def providers(*ps: dict, resources: tuple[str, ...] = ("secrets",)):
    found = parse_config(config(*ps, resources=resources)).for_resource("", "secrets")
    assert found is not None
    return found


# ---- the stored format, decrypted independently --------------------------------------------------


def test_aescbc_format() -> None:
    stored = providers(keyed("aescbc", ("key1", K32))).encrypt(b"hello world", KEY)
    prefix = b"k8s:enc:aescbc:v1:key1:"
    assert stored.startswith(prefix)
    body = stored[len(prefix) :]
    assert len(body) == 16 + 16  # IV + one padded block
    d = Cipher(algorithms.AES(K32), modes.CBC(body[:16])).decryptor()
    plain = d.update(body[16:]) + d.finalize()
    assert plain == b"hello world" + bytes([5]) * 5  # PKCS#7
    # a value of a whole number of blocks gets a whole block of padding
    assert len(providers(keyed("aescbc", ("k", K16))).encrypt(b"x" * 16, KEY)) == len(b"k8s:enc:aescbc:v1:k:") + 48


def test_aescbc_vector_decrypts() -> None:
    """A value encrypted by hand exactly as upstream's cbc transformer does is read back."""
    iv = bytes(16)
    e = Cipher(algorithms.AES(K32), modes.CBC(iv)).encryptor()
    data = b'{"kind":"Secret"}'
    pad = 16 - len(data) % 16
    stored = b"k8s:enc:aescbc:v1:key1:" + iv + e.update(data + bytes([pad]) * pad) + e.finalize()
    assert providers(keyed("aescbc", ("key1", K32))).decrypt(stored, KEY) == (data, False)


def test_aesgcm_format_authenticates_the_key() -> None:
    stored = providers(keyed("aesgcm", ("g", K32))).encrypt(b"hello", KEY)
    body = stored[len(b"k8s:enc:aesgcm:v1:g:") :]
    assert AESGCM(K32).decrypt(body[:12], body[12:], KEY.encode()) == b"hello"  # nonce + sealed, AAD = etcd key
    with pytest.raises(TransformError, match="message authentication failed"):
        providers(keyed("aesgcm", ("g", K32))).decrypt(stored, "/registry/secrets/default/other")


def test_secretbox_format() -> None:
    stored = providers(keyed("secretbox", ("b", K32))).encrypt(b"hello", KEY)
    body = stored[len(b"k8s:enc:secretbox:v1:b:") :]
    assert len(body) == 24 + 16 + 5
    assert nacl.bindings.crypto_secretbox_open(body[24:], body[:24], K32) == b"hello"  # nonce + tag + ciphertext


def test_identity_first_reads_encrypted_values_and_writes_plaintext() -> None:
    enc = providers(keyed("aescbc", ("key1", K32))).encrypt(b"old", KEY)
    both = providers({"identity": {}}, keyed("aescbc", ("key1", K32)))
    assert both.encrypt(b"new", KEY) == b"new"
    assert both.decrypt(enc, KEY) == (b"old", True)
    assert both.decrypt(b"plain", KEY) == (b"plain", False)


def test_decrypt_errors() -> None:
    enc = providers(keyed("aescbc", ("key1", K32))).encrypt(b"x" * 40, KEY)
    with pytest.raises(TransformError, match="no matching prefix found"):
        providers(keyed("aescbc", ("key2", K32))).decrypt(enc, KEY)
    with pytest.raises(TransformError, match="identity provider"):
        providers(keyed("aescbc", ("key1", K32))).decrypt(b'{"plain":1}', KEY)
    with pytest.raises(TransformError, match="padding|PKCS7"):
        providers(keyed("aescbc", ("key1", bytes(32)))).decrypt(enc, KEY)


def test_config_validation_and_matching() -> None:
    cfg = parse_config({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {"resources": ["secrets", "deployments.apps"], "providers": [keyed("aesgcm", ("a", K16))]},
            {"resources": ["*.apps", "*."], "providers": [keyed("secretbox", ("b", K32))]},
            {"resources": ["*.*"], "providers": [{"identity": {}}]},
        ],
    })
    first, second, third = (r.providers for r in cfg.rules)
    assert cfg.for_resource("", "secrets") is first
    assert cfg.for_resource("apps", "deployments") is first
    assert cfg.for_resource("apps", "statefulsets") is second
    assert cfg.for_resource("", "configmaps") is second
    assert cfg.for_resource("example.com", "widgets") is third
    bad = [
        ([keyed("aescbc", ("k", b"short"))], "must be 16 or 24 or 32 bytes"),
        ([keyed("secretbox", ("k", K16))], "must be 32 bytes"),
        ([keyed("aescbc", ("k", K16), ("k", K32))], "Duplicate"),
        ([{"kms": {}}], "kms"),
        ([{"aescbc": {"keys": [{"name": "k", "secret": "!!"}]}}], "base64"),
        ([], "at least one provider"),
    ]
    for ps, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config(config(*ps))
    with pytest.raises(ConfigError, match="wildcards"):
        parse_config(config({"identity": {}}, resources=("se*rets",)))
    with pytest.raises(ConfigError, match="Duplicate value: 'secrets'"):
        parse_config(config({"identity": {}}, resources=("secrets", "configmaps", "secrets")))


# ---- the encrypting Store ------------------------------------------------------------------------


async def test_encrypted_store(tmp_path: Path) -> None:
    inner = SQLiteStore(str(tmp_path / "s.db"))
    store = EncryptedStore(
        inner,
        parse_config(config(keyed("aesgcm", ("g", K32)), {"identity": {}})),
        lambda prefix: ("", prefix.rsplit("/", 1)[1]) if prefix in ("/registry/secrets", "/registry/configmaps") else None,
    )
    await store.start()
    try:
        watch = store.watch("/registry/", start_revision=await store.current_revision() + 1)
        await store.create(KEY, b'{"data":1}')
        await store.create("/registry/configmaps/default/c", b'{"cm":1}')
        raw = await inner.get(KEY)
        assert raw is not None and raw.value.startswith(b"k8s:enc:aesgcm:v1:g:")
        assert (await inner.get("/registry/configmaps/default/c")).value == b'{"cm":1}'  # type: ignore[union-attr]
        assert (await store.get(KEY)).value == b'{"data":1}'  # type: ignore[union-attr]
        assert [kv.value for kv in (await store.list("/registry/")).items] == [b'{"cm":1}', b'{"data":1}']
        batch = await anext(aiter(watch))
        assert batch[0].kv.value == b'{"data":1}'
        # a value no provider reads: left out of lists, a DELETE in watches, a clear error on reads
        rev = (await inner.get(KEY)).mod_revision  # type: ignore[union-attr]
        await inner.update(KEY, b"k8s:enc:aesgcm:v1:other:garbage", expected_revision=rev)
        events = []
        while not any(e.kv.key == KEY and e.type is EventType.DELETE for e in events):
            events += await anext(aiter(watch))
        assert [kv.key for kv in (await store.list("/registry/", limit=1)).items] == ["/registry/configmaps/default/c"]
        assert [kv.key for kv in (await store.list("/registry/secrets/", limit=1)).items] == []
        with pytest.raises(errors.StatusError, match=r'unable to transform key "/registry/secrets/default/s1": no matching prefix'):
            await store.get(KEY)
        with pytest.raises(errors.StatusError):
            store.unreadable("/registry/secrets/")
        store.unreadable("/registry/configmaps/")
    finally:
        await store.close()


# ---- a cluster ---------------------------------------------------------------------------------------


SECRET_VALUE = "s3cr3t-" + os.urandom(6).hex()


def _write_config(path: Path, *ps: dict) -> str:
    path.write_text(json.dumps(config(*ps)))
    return str(path)


def _raw_store_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("state.db*") if p.is_file())


def _up(data_dir: Path, cfg: str | None):
    extra = ("--disable-scheduler", "--controllers", "serviceaccount", "--etcd-compaction-interval", "0")
    if cfg:
        extra += ("--encryption-provider-config", cfg)
    return start_cluster(data_dir, extra=extra)


def test_cluster_encryption_rotation_and_wrong_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key1, key2 = ("key1", os.urandom(32)), ("key2", os.urandom(32))
    b64 = base64.b64encode(SECRET_VALUE.encode())
    # plaintext first
    c = _up(data, None)
    try:
        c.kubectl("create", "secret", "generic", "old", f"--from-literal=v={SECRET_VALUE}")
    finally:
        c.stop()
    assert b64 in _raw_store_bytes(data)
    # aescbc first, identity reads what was stored before
    c = _up(data, _write_config(tmp_path / "enc1.json", keyed("aescbc", key1), {"identity": {}}))
    try:
        assert c.kubectl_json("get", "secret", "old")["data"]["v"] == b64.decode()
        c.kubectl("create", "secret", "generic", "new", f"--from-literal=v={SECRET_VALUE}x")
        assert c.kubectl_json("get", "secret", "new")["data"]["v"] == base64.b64encode(f"{SECRET_VALUE}x".encode()).decode()
        names = [s["metadata"]["name"] for s in c.kubectl_json("get", "secrets")["items"]]
        assert {"old", "new"} <= set(names)
        raw = _raw_store_bytes(data)
        assert base64.b64encode(f"{SECRET_VALUE}x".encode()) not in raw and f"{SECRET_VALUE}x".encode() not in raw
        assert b"k8s:enc:aescbc:v1:key1:" in raw
    finally:
        c.stop()
    # rotation: the new key first, every secret rewritten, then the old key and identity can go
    c = _up(data, _write_config(tmp_path / "enc2.json", {"aescbc": keyed("aescbc", key2, key1)["aescbc"]}, {"identity": {}}))
    try:
        secrets = c.kubectl("get", "secrets", "-A", "-o", "json").stdout
        c.kubectl("replace", "-f", "-", input=secrets)
    finally:
        c.stop()
    c = _up(data, _write_config(tmp_path / "enc3.json", keyed("aescbc", key2)))
    try:
        assert c.kubectl_json("get", "secret", "old")["data"]["v"] == b64.decode()
        assert c.kubectl_json("get", "secret", "new")["metadata"]["name"] == "new"
    finally:
        c.stop()
    # a wrong key: a clear error, not a traceback
    c = _up(data, _write_config(tmp_path / "enc4.json", keyed("aescbc", ("key2", os.urandom(32)))))
    try:
        res = c.kubectl("get", "secret", "old", check=False)
        assert res.returncode != 0
        assert re.search(r'unable to transform key "/registry/secrets/default/old": (invalid padding|invalid PKCS7)', res.stderr)
        res = c.kubectl("get", "secrets", check=False)
        assert res.returncode != 0 and "unable to transform key" in res.stderr
        assert c.kubectl("get", "configmaps").returncode == 0
        wait_for(lambda: c.kubectl("get", "ns", "default").returncode == 0, what="other resources served")
    finally:
        c.stop()
    assert "Traceback" not in c.log_path.read_text()


def test_invalid_config_is_a_clean_cli_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from k8py.cli import main

    bad = _write_config(tmp_path / "bad.json", keyed("aescbc", ("k", b"short")))
    for command in ("up", "apiserver"):
        res = CliRunner().invoke(main, [command, "--data-dir", str(tmp_path / "d"), "--encryption-provider-config", bad])
        assert res.exit_code == 2 and "aescbc key must be 16 or 24 or 32 bytes long, got 5" in res.output, res.output
        assert not (tmp_path / "d").exists()
