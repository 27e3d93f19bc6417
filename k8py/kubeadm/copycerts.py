"""kubeadm's upload-certs / download-certs (cmd/kubeadm/app/phases/copycerts): the certificates
and keys every control-plane node shares (the three CAs, the service-account key pair; an
external etcd's client files) travel from `k8py init --upload-certs` to `k8py join --control-plane
--certificate-key KEY` in the Secret ``kube-system/kubeadm-certs``.

Each value is the file encrypted with AES-256-GCM under the certificate key (32 random bytes,
64 hex digits on the command line), the 12-byte nonce prepended (kubeadm's EncryptBytes). The
Secret is owned by a bootstrap token with a two-hour TTL and no usages: when the token expires,
the token cleaner deletes it and the garbage collector the Secret. Joining nodes read it with
their bootstrap token (Role ``kubeadm:kubeadm-certs``).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from k8py.bootstrap.pki import atomic_write
from k8py.bootstrap.token import KUBEADM_DEFAULT_GROUP, NAMESPACE, create_token, secret_name
from k8py.client import ClientError, RESTClient, is_not_found
from k8py.client.ensure import ensure_objects
from k8py.client.resources import SECRETS
from k8py.kubeadm.config import InitConfig

SECRET = "kubeadm-certs"
ROLE = "kubeadm:kubeadm-certs"
CERTIFICATE_KEY_SIZE = 32
NONCE_SIZE = 12
TOKEN_TTL = 2 * 3600.0  # kubeadm's DefaultCertTokenDuration
TOKEN_DESCRIPTION = "Proxy for managing TTL for the kubeadm-certs secret"


class CertificateKeyError(ValueError):
    """A certificate key that is not 64 hex digits, or that does not decrypt the Secret."""


def create_certificate_key() -> str:
    return secrets.token_hex(CERTIFICATE_KEY_SIZE)


def decode_key(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != CERTIFICATE_KEY_SIZE:
        raise CertificateKeyError(f"the certificate key must be {2 * CERTIFICATE_KEY_SIZE} hex digits")
    return raw


def encrypt_bytes(data: bytes, key: bytes) -> bytes:
    """AES-GCM with a random nonce prepended (kubeadm's cryptoutil.EncryptBytes)."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, data, None)


def decrypt_bytes(data: bytes, key: bytes) -> bytes:
    if len(data) < NONCE_SIZE:
        raise CertificateKeyError("size of data is less than the nonce size")
    try:
        return AESGCM(key).decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], None)
    except InvalidTag as e:
        raise CertificateKeyError("the certificate key does not decrypt the uploaded certificates") from e


def certs_to_transfer(config: InitConfig) -> dict[str, Path]:
    """Secret data key -> file (kubeadm's names: the path under the cert dir with / as -)."""
    files = ["ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.pub", "sa.key"]
    if config.external_etcd is None:
        return {name.replace("/", "-"): config.cert_dir / name for name in [*files, "etcd/ca.crt", "etcd/ca.key"]}
    ext = config.external_etcd
    return {**{name: config.cert_dir / name for name in files},
            "external-etcd-ca.crt": Path(ext.ca_file), "external-etcd.crt": Path(ext.cert_file),
            "external-etcd.key": Path(ext.key_file)}


async def upload_certs(client: RESTClient, config: InitConfig, key: str, progress: Callable[[str], None]) -> None:
    """kubeadm's `init phase upload-certs --upload-certs`."""
    progress(f"[upload-certs] Storing the certificates in Secret \"{SECRET}\" in the \"{NAMESPACE}\" Namespace")
    raw = decode_key(key)
    data = {}
    for name, path in certs_to_transfer(config).items():
        try:
            data[name] = base64.b64encode(encrypt_bytes(path.read_bytes(), raw)).decode()
        except FileNotFoundError:
            data[name] = ""  # (kubeadm uploads an empty value for a missing file)
    token = await create_token(client, ttl=TOKEN_TTL, usages=(), groups=(), description=TOKEN_DESCRIPTION)
    owner = await client.get(SECRETS, secret_name(token.partition(".")[0]), namespace=NAMESPACE)
    await ensure_objects(client, [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
         "metadata": {"name": SECRET, "namespace": NAMESPACE, "ownerReferences": [{
             "apiVersion": "v1", "kind": "Secret", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}]}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": ROLE, "namespace": NAMESPACE},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": ROLE, "namespace": NAMESPACE},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": KUBEADM_DEFAULT_GROUP}]},
    ])


async def download_certs(client: RESTClient, config: InitConfig, key: str, progress: Callable[[str], None]) -> None:
    """kubeadm join's control-plane-prepare download-certs: decrypt kubeadm-certs into the cert dir."""
    progress(f"[download-certs] Downloading the certificates in Secret \"{SECRET}\" in the \"{NAMESPACE}\" Namespace")
    raw = decode_key(key)
    try:
        secret = await client.get(SECRETS, SECRET, namespace=NAMESPACE)
    except ClientError as e:
        if is_not_found(e):
            raise CertificateKeyError(f"Secret \"{SECRET}\" was not found in the \"{NAMESPACE}\" Namespace: it has "
                                      "expired (two hours); run `k8py init phase upload-certs --upload-certs` on a "
                                      "control-plane node") from None
        raise
    data = secret.get("data") or {}
    progress(f"[download-certs] Saving the certificates to the folder: \"{config.cert_dir}\"")
    for name, path in certs_to_transfer(config).items():
        if not data.get(name):
            continue
        content = decrypt_bytes(base64.b64decode(data[name]), raw)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, content, mode=0o600 if path.suffix == ".key" else 0o644)
