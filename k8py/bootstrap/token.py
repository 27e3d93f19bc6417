"""Bootstrap tokens (k8s.io/cluster-bootstrap and kubeadm's token commands and token discovery).

A bootstrap token ``<id>.<secret>`` (``[a-z0-9]{6}.[a-z0-9]{16}``) lives in the Secret
``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token``: ``token-id``,
``token-secret``, an optional RFC 3339 ``expiration`` and ``description``, ``usage-bootstrap-<usage>:
"true"`` per usage (``authentication``: the API server accepts it as a bearer token for
``system:bootstrap:<id>``; ``signing``: the bootstrap signer signs the ``kube-public/cluster-info``
ConfigMap with it) and ``auth-extra-groups``. Here: those rules, the Secret kubeadm writes, the
detached JWS of cluster-info, the CA public key pin, the cluster-info objects of kubeadm's
"bootstrap-token" phase, ``k8py token`` (kubeadm token generate/create/list/delete), and the
discovery a joining node runs: cluster-info fetched without trusting the server, its signature
checked with the token, then the CA it names pinned by ``--discovery-token-ca-cert-hash``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from k8py.api.duration import short_human_duration
from k8py.client import AlreadyExists, ClientConfig, ClientError, RESTClient
from k8py.client.ensure import ensure_objects
from k8py.client.resources import CONFIGMAPS, SECRETS, Resource, builtin

Obj = dict[str, Any]

SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
NAMESPACE = "kube-system"
ID_KEY = "token-id"
SECRET_KEY = "token-secret"
EXPIRATION_KEY = "expiration"
DESCRIPTION_KEY = "description"
EXTRA_GROUPS_KEY = "auth-extra-groups"
USAGE_PREFIX = "usage-bootstrap-"
KNOWN_USAGES = ("signing", "authentication")
USER_PREFIX = "system:bootstrap:"
DEFAULT_GROUP = "system:bootstrappers"
KUBEADM_DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
PUBLIC_NAMESPACE = "kube-public"
CLUSTER_INFO = "cluster-info"
KUBECONFIG_KEY = "kubeconfig"
JWS_PREFIX = "jws-kubeconfig-"
CLUSTER_INFO_ROLE = "kubeadm:bootstrap-signer-clusterinfo"
CLUSTER_INFO_PATH = f"/api/v1/namespaces/{PUBLIC_NAMESPACE}/configmaps/{CLUSTER_INFO}"

# upstream's patterns as its messages print them (Go's \z is Python's \Z)
TOKEN_PATTERN = r"\A([a-z0-9]{6})\.([a-z0-9]{16})\z"
ID_PATTERN = r"\A([a-z0-9]{6})\z"
GROUP_PATTERN = r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z"
_TOKEN, _ID, _GROUP = (re.compile(p.replace(r"\z", r"\Z")) for p in (TOKEN_PATTERN, ID_PATTERN, GROUP_PATTERN))
_SECRET_NAME = re.compile(rf"\A{SECRET_PREFIX}([a-z0-9]{{6}})\Z")
_RFC3339 = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")
_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"

RBAC_GROUP = "rbac.authorization.k8s.io"
ROLES = builtin("roles", RBAC_GROUP)
ROLE_BINDINGS = builtin("rolebindings", RBAC_GROUP)
CLUSTER_ROLES = builtin("clusterroles", RBAC_GROUP)
CLUSTER_ROLE_BINDINGS = builtin("clusterrolebindings", RBAC_GROUP)


class TokenError(ValueError):
    """A token, usage, group or Secret that breaks the bootstrap token rules (kubeadm's messages)."""


class DiscoveryError(Exception):
    """Token discovery could not establish trust in the API server."""


# ---- the token and its Secret ------------------------------------------------------------------


def generate_token() -> str:
    """A random token (bootstraputil.GenerateBootstrapToken)."""
    return "".join(secrets.choice(_CHARS) for _ in range(6)) + "." + "".join(secrets.choice(_CHARS) for _ in range(16))


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    m = _TOKEN.match(token)
    return (m.group(1), m.group(2)) if m else None


def token_id_of(token_or_id: str) -> str:
    """The id in a token or a bare id (kubeadm token delete's argument)."""
    if _ID.match(token_or_id):
        return token_or_id
    parsed = parse_token(token_or_id)
    if parsed is None:
        raise TokenError(f"given token {token_or_id!r} didn't match pattern {ID_PATTERN!r} or {TOKEN_PATTERN!r}")
    return parsed[0]


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def id_from_secret_name(name: str) -> str | None:
    m = _SECRET_NAME.match(name)
    return m.group(1) if m else None


def secret_data(secret: Obj) -> dict[str, str]:
    """The Secret's data decoded (keys whose value is not base64 UTF-8 are left out)."""
    out = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
    return out


def parse_rfc3339(value: str) -> dt.datetime:
    """Go's time.Parse(time.RFC3339, value); ValueError when it is not RFC 3339."""
    if not _RFC3339.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 time")
    return dt.datetime.fromisoformat(value)


def format_rfc3339(when: dt.datetime) -> str:
    """Go's Time.Format(time.RFC3339): seconds, then Z or the offset."""
    text = when.replace(microsecond=0).isoformat()
    return text.removesuffix("+00:00") + "Z" if when.utcoffset() == dt.timedelta(0) else text


def expiration(data: Mapping[str, str]) -> dt.datetime | None:
    """The token's expiry; None when it never expires; ValueError when unparseable."""
    value = data.get(EXPIRATION_KEY, "")
    return parse_rfc3339(value) if value else None


def time_remaining(data: Mapping[str, str], now: dt.datetime) -> float | None:
    """Seconds until expiry (<= 0: expired; an unparseable expiration counts as expired, as upstream's
    GetExpiration); None when the token never expires."""
    try:
        expires = expiration(data)
    except ValueError:
        return 0.0
    return None if expires is None else (expires - now).total_seconds()


def has_expired(data: Mapping[str, str], now: dt.datetime) -> bool:
    remaining = time_remaining(data, now)
    return remaining is not None and remaining <= 0


def validate_group(group: str) -> None:
    if not _GROUP.match(group):
        raise TokenError(f"bootstrap group {group!r} is invalid (must match {GROUP_PATTERN})")


def auth_groups(data: Mapping[str, str]) -> list[str]:
    """system:bootstrappers and the valid auth-extra-groups, sorted and deduplicated (GetGroups)."""
    groups = {DEFAULT_GROUP}
    extra = data.get(EXTRA_GROUPS_KEY, "")
    if extra:
        for group in extra.split(","):
            validate_group(group)
            groups.add(group)
    return sorted(groups)


def signing_token(secret: Obj, now: dt.datetime) -> tuple[str, str] | None:
    """(id, secret) of a bootstrap token Secret that may sign cluster-info (validateSecretForSigning)."""
    if secret.get("type") != SECRET_TYPE:
        return None
    name_id = id_from_secret_name(secret["metadata"].get("name", ""))
    data = secret_data(secret)
    token_id, token_secret = data.get(ID_KEY, ""), data.get(SECRET_KEY, "")
    if not token_id or name_id != token_id or not token_secret or has_expired(data, now):
        return None
    return (token_id, token_secret) if data.get(USAGE_PREFIX + "signing") == "true" else None


def validate_usages(usages: Iterable[str]) -> None:
    invalid = sorted(set(usages) - set(KNOWN_USAGES))
    if invalid:
        raise TokenError(
            f"invalid bootstrap token usage string: {','.join(invalid)}, valid usage options: {','.join(KNOWN_USAGES)}"
        )


def token_secret(
    token: str,
    *,
    ttl: float | None = 24 * 3600.0,
    usages: Sequence[str] = KNOWN_USAGES,
    groups: Sequence[str] = (KUBEADM_DEFAULT_GROUP,),
    description: str = "",
    now: dt.datetime | None = None,
) -> Obj:
    """The Secret kubeadm writes for a token (BootstrapTokenToSecret); ``ttl`` None or 0: no expiry."""
    parsed = parse_token(token)
    if parsed is None:
        raise TokenError(f"the bootstrap token {token!r} was not of the form {TOKEN_PATTERN!r}")
    validate_usages(usages)
    if groups and "authentication" not in usages:
        raise TokenError('token groups cannot be specified unless --usages includes "authentication"')
    for group in groups:
        validate_group(group)
    data = {ID_KEY: parsed[0], SECRET_KEY: parsed[1]}
    if description:
        data[DESCRIPTION_KEY] = description
    if ttl:
        data[EXPIRATION_KEY] = format_rfc3339((now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=ttl))
    for usage in usages:
        data[USAGE_PREFIX + usage] = "true"
    if groups:
        data[EXTRA_GROUPS_KEY] = ",".join(groups)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(parsed[0]), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


# ---- signatures and pins -------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def detached_signature(content: str, token_id: str, token_secret: str) -> str:
    """The detached HS256 JWS of ``content`` (RFC 7515 appendix F) keyed by the token secret, as
    cluster-bootstrap's ComputeDetachedSignature: ``<protected header>..<signature>``. (go-jose's
    zero padding of short keys to 32 bytes changes nothing: HMAC pads keys to its block size.)"""
    header = _b64url(orjson.dumps({"alg": "HS256", "kid": token_id}))
    signing_input = f"{header}.{_b64url(content.encode())}".encode()
    return f"{header}..{_b64url(hmac.digest(token_secret.encode(), signing_input, hashlib.sha256))}"


def ca_cert_hash(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate's SubjectPublicKeyInfo (kubeadm's pubkeypin.Hash)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def ca_cert_hashes(ca_pem: bytes) -> list[str]:
    """The pins of every certificate in a PEM bundle."""
    return [ca_cert_hash(cert) for cert in x509.load_pem_x509_certificates(ca_pem)]


# ---- cluster-info --------------------------------------------------------------------------------


def cluster_info_kubeconfig(server: str, ca_pem: bytes) -> str:
    """The kubeconfig of cluster-info: one unnamed cluster (CA and server), as clientcmd.Write writes it."""
    config: Obj = {
        "apiVersion": "v1",
        "clusters": [
            {"cluster": {"certificate-authority-data": base64.b64encode(ca_pem).decode(), "server": server}, "name": ""}
        ],
        "contexts": None,
        "current-context": "",
        "kind": "Config",
        "preferences": {},
        "users": None,
    }
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _binding(kind: str, name: str, role_kind: str, role: str, subject_kind: str, subject: str, namespace: str = "") -> Obj:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": role},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": subject_kind, "name": subject}],
    }


def bootstrap_token_objects(server: str, ca_pem: bytes) -> list[tuple[Resource, Obj]]:
    """What kubeadm init's bootstrap-token phase writes besides the tokens: the cluster-info ConfigMap
    in kube-public with the Role + RoleBinding that let system:anonymous get it; and the RBAC rules
    that let the default node token get Nodes and post CSRs that the csrapproving controller
    approves (and nodes' certificate rotation CSRs)."""
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CLUSTER_INFO, "namespace": PUBLIC_NAMESPACE},
        "data": {KUBECONFIG_KEY: cluster_info_kubeconfig(server, ca_pem)},
    }
    role = {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": {"name": CLUSTER_INFO_ROLE, "namespace": PUBLIC_NAMESPACE},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CLUSTER_INFO]}],
    }
    get_nodes = {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "kubeadm:get-nodes"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}],
    }
    crb = "ClusterRoleBinding"
    return [
        (CONFIGMAPS, configmap),
        (ROLES, role),
        (ROLE_BINDINGS, _binding("RoleBinding", CLUSTER_INFO_ROLE, "Role", CLUSTER_INFO_ROLE, "User", "system:anonymous",
                                 PUBLIC_NAMESPACE)),
        (CLUSTER_ROLES, get_nodes),
        (CLUSTER_ROLE_BINDINGS, _binding(crb, "kubeadm:get-nodes", "ClusterRole", "kubeadm:get-nodes", "Group",
                                         KUBEADM_DEFAULT_GROUP)),
        (CLUSTER_ROLE_BINDINGS, _binding(crb, "kubeadm:kubelet-bootstrap", "ClusterRole", "system:node-bootstrapper",
                                         "Group", KUBEADM_DEFAULT_GROUP)),
        (CLUSTER_ROLE_BINDINGS, _binding(crb, "kubeadm:node-autoapprove-bootstrap", "ClusterRole",
                                         "system:certificates.k8s.io:certificatesigningrequests:nodeclient", "Group",
                                         KUBEADM_DEFAULT_GROUP)),
        (CLUSTER_ROLE_BINDINGS, _binding(crb, "kubeadm:node-autoapprove-certificate-rotation", "ClusterRole",
                                         "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "Group",
                                         "system:nodes")),
    ]


async def ensure_bootstrap_token_objects(client: RESTClient, server: str, ca_pem: bytes) -> None:
    """Create or update :func:`bootstrap_token_objects` (for `k8py init`). An existing cluster-info
    keeps its signatures (the bootstrap signer redoes them when the kubeconfig changed)."""

    def keep_signatures(current: Obj, desired: Obj) -> Obj:
        if desired["kind"] != "ConfigMap":
            return desired
        return {**desired, "data": {**(current.get("data") or {}), **desired["data"]}}

    await ensure_objects(client, [obj for _, obj in bootstrap_token_objects(server, ca_pem)], merge=keep_signatures)


# ---- kubeadm token create/list/delete ------------------------------------------------------------


async def create_token(
    client: RESTClient,
    token: str | None = None,
    *,
    ttl: float | None = 24 * 3600.0,
    usages: Sequence[str] = KNOWN_USAGES,
    groups: Sequence[str] = (KUBEADM_DEFAULT_GROUP,),
    description: str = "",
) -> str:
    """Store a new token (generated unless given) and return it; TokenError if its id is taken."""
    token = token or generate_token()
    secret = token_secret(token, ttl=ttl, usages=usages, groups=groups, description=description)
    try:
        await client.create(SECRETS, secret)
    except AlreadyExists:
        raise TokenError(f"a token with id {token.partition('.')[0]!r} already exists") from None
    return token


def token_row(secret: Obj, now: dt.datetime) -> list[str]:
    """One `kubeadm token list` row (BootstrapTokenFromSecret + humanReadableBootstrapToken)."""
    name = secret["metadata"].get("name", "")
    data = secret_data(secret)
    token_id, token_secret_ = data.get(ID_KEY, ""), data.get(SECRET_KEY, "")
    if not token_id:
        raise TokenError(f"bootstrap Token Secret has no token-id data: {name}")
    if name != secret_name(token_id):
        raise TokenError(
            f"bootstrap token name is not of the form '{SECRET_PREFIX}(token-id)'. "
            f"Actual: {name!r}. Expected: {secret_name(token_id)!r}"
        )
    if not token_secret_:
        raise TokenError(f"bootstrap Token Secret has no token-secret data: {name}")
    token = f"{token_id}.{token_secret_}"
    if parse_token(token) is None:
        raise TokenError("bootstrap Token Secret is invalid and couldn't be parsed")
    try:
        expires = expiration(data)
    except ValueError as e:
        raise TokenError(f"can't parse expiration time of bootstrap token {name!r}: {e}") from None
    ttl, expires_text = "<forever>", "<never>"
    if expires is not None:
        ttl, expires_text = short_human_duration((expires - now).total_seconds()), format_rfc3339(expires)
    usages = sorted(k.removeprefix(USAGE_PREFIX) for k, v in data.items() if k.startswith(USAGE_PREFIX) and v == "true")
    groups = data.get(EXTRA_GROUPS_KEY, "")
    return [token, ttl, expires_text, ",".join(usages) or "<none>", data.get(DESCRIPTION_KEY) or "<none>", groups or "<none>"]


def tabulate(rows: Sequence[Sequence[str]], *, minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter.NewWriter(out, minwidth, 4, padding, ' ', 0) over tab-separated cells."""
    widths = [max(minwidth, *(len(r[i]) + padding for r in rows)) for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1] + "\n" for r in rows)


async def list_tokens(client: RESTClient, now: dt.datetime | None = None) -> tuple[str, list[str]]:
    """(the table `kubeadm token list` prints, the errors of Secrets that are no valid tokens)."""
    now = now or dt.datetime.now(dt.UTC)
    listed = await client.list(SECRETS, namespace=NAMESPACE, field_selector=f"type={SECRET_TYPE}")
    rows, problems = [["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]], []
    for secret in listed.get("items") or ():
        try:
            rows.append(token_row(secret, now))
        except TokenError as e:
            problems.append(str(e))
    return tabulate(rows), problems


async def delete_tokens(client: RESTClient, tokens_or_ids: Iterable[str]) -> list[str]:
    """Delete tokens by id or full token; the lines `kubeadm token delete` prints."""
    out = []
    for item in tokens_or_ids:
        token_id = token_id_of(item)
        try:
            await client.delete(SECRETS, secret_name(token_id), namespace=NAMESPACE)
        except ClientError as e:
            raise TokenError(f"failed to delete bootstrap token {token_id!r}: {e}") from e
        out.append(f'bootstrap token "{token_id}" deleted')
    return out


def join_command(config: ClientConfig, token: str) -> str:
    """`k8py join` for a worker, as kubeadm's GetJoinWorkerCommand: the endpoint of the (admin)
    kubeconfig and the pins of its CA (each followed by a space, as kubeadm's template prints)."""
    if not config.ca_pem:
        raise TokenError("the kubeconfig names no certificate authority: no --discovery-token-ca-cert-hash to print")
    endpoint = config.server.replace("https://", "")
    pins = "".join(f"--discovery-token-ca-cert-hash {pin} " for pin in ca_cert_hashes(config.ca_pem))
    return f"k8py join {endpoint} --token {token} {pins}"


# ---- discovery (kubeadm join's token discovery) --------------------------------------------------


async def _cluster_info(config: ClientConfig) -> Obj:
    async with RESTClient(config, component="k8py-join") as client:
        return await client.get(CONFIGMAPS, CLUSTER_INFO, namespace=PUBLIC_NAMESPACE)


def _kubeconfig_cluster(kubeconfig: str) -> tuple[bytes, str]:
    """(CA PEM, server URL) of cluster-info's kubeconfig."""
    try:
        doc = yaml.safe_load(kubeconfig) or {}
        cluster = doc["clusters"][0]["cluster"]
        return base64.b64decode(cluster["certificate-authority-data"]), cluster["server"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError, binascii.Error) as e:
        raise DiscoveryError(f"couldn't parse the kubeconfig file in the {CLUSTER_INFO} ConfigMap: {e}") from None


def _pin_set(pins: Iterable[str]) -> set[str]:
    """Valid ``sha256:<hex>`` pins, normalized (kubeadm's pubkeypin.Set.Allow)."""
    out = set()
    for pin in pins:
        parts = pin.split(":")
        if len(parts) != 2:
            raise DiscoveryError('invalid hash, expected "format:hex-value". Known format(s) are: sha256')
        if parts[0].lower() != "sha256":
            raise DiscoveryError(f'unknown hash format "{parts[0]}". Known format(s) are: sha256')
        try:
            digest = bytes.fromhex(parts[1])
        except ValueError as e:
            raise DiscoveryError(f"invalid hash {pin!r}: {e}") from None
        if len(digest) != 32:
            raise DiscoveryError(f"expected a 32 byte SHA-256 hash, found {len(digest)} bytes")
        out.add("sha256:" + digest.hex())
    return out


async def discover(
    endpoint: str,
    token: str,
    pins: Sequence[str],
    *,
    unsafe_skip_ca_verification: bool = False,
    timeout: float = 300.0,
    interval: float = 1.0,
) -> tuple[bytes, str]:
    """(the cluster CA PEM, the API server URL) the token's signature on cluster-info vouches for.

    cluster-info is read anonymously over TLS without verifying the server, retried until the
    signature for the token's id is there or ``timeout`` passes; the signature must match the
    kubeconfig it holds; that kubeconfig's CA must match one of the ``pins`` (``sha256:<hex>``; unless
    ``unsafe_skip_ca_verification``); cluster-info read again trusting that CA must be the same."""
    parsed = parse_token(token)
    if parsed is None:
        raise DiscoveryError(f"the bootstrap token {token!r} was not of the form {TOKEN_PATTERN!r}")
    token_id, secret = parsed
    pinned = _pin_set(pins)
    if not pinned and not unsafe_skip_ca_verification:
        raise DiscoveryError("discovery-token-ca-cert-hash must be given unless unsafe_skip_ca_verification")
    server = endpoint if "://" in endpoint else f"https://{endpoint}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await _cluster_info(ClientConfig(server=server, insecure_skip_tls_verify=True))
        except ClientError as e:
            error = f"failed to request the {CLUSTER_INFO} ConfigMap: {e}"
        else:
            data = info.get("data") or {}
            if KUBECONFIG_KEY not in data:
                raise DiscoveryError(
                    f"there is no {KUBECONFIG_KEY} key in the {CLUSTER_INFO} ConfigMap. "
                    "This API Server isn't set up for token bootstrapping, can't connect"
                )
            if JWS_PREFIX + token_id in data:
                break
            error = (
                f"token id {token_id!r} is invalid for this cluster or it has expired. "
                'Use "k8py token create" on the control-plane node to create a new valid token'
            )
        if time.monotonic() + interval > deadline:
            raise DiscoveryError(error)
        await asyncio.sleep(interval)
    kubeconfig = data[KUBECONFIG_KEY]
    if not hmac.compare_digest(data[JWS_PREFIX + token_id], detached_signature(kubeconfig, token_id, secret)):
        raise DiscoveryError("failed to verify JWS signature of received cluster info object, can't trust this API Server")
    ca_pem, api_server = _kubeconfig_cluster(kubeconfig)
    if not unsafe_skip_ca_verification:
        try:
            found = ca_cert_hashes(ca_pem)
        except ValueError as e:
            raise DiscoveryError(f"cluster CA found in {CLUSTER_INFO} ConfigMap is invalid: {e}") from None
        if not set(found) & pinned:
            raise DiscoveryError(
                f"cluster CA found in {CLUSTER_INFO} ConfigMap is invalid: "
                f'none of the public keys "{",".join(found)}" are pinned'
            )
    try:
        secure = await _cluster_info(ClientConfig(server=server, ca_pem=ca_pem))
    except ClientError as e:
        raise DiscoveryError(f"failed to request the {CLUSTER_INFO} ConfigMap trusting its CA: {e}") from None
    if (secure.get("data") or {}).get(KUBECONFIG_KEY) != kubeconfig:
        raise DiscoveryError(f"the {CLUSTER_INFO} ConfigMap read trusting its CA differs from the one first read")
    return ca_pem, api_server
