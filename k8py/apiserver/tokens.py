"""Service account tokens: the TokenRequest subresource and bearer-token authentication.

kube-apiserver issues *bound* service account tokens: JWTs signed with the
key of `--service-account-signing-key-file` (kubeadm's `pki/sa.key`; here an
ECDSA P-256 key, so ES256), valid for a set of audiences and a limited time,
optionally bound to a Pod, Secret or Node that must still exist when the token
is used. `kubectl create token` asks for one through
`POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token` (a TokenRequest).

The claims are kube's: `iss`, `sub` (`system:serviceaccount:<ns>:<name>`),
`aud`, `exp`, `iat`, `nbf`, `jti`, and a private `kubernetes.io` claim naming
the namespace, the service account (name, uid) and the bound object. Tokens
authenticate as that service account (groups `system:serviceaccounts`,
`system:serviceaccounts:<ns>`, `system:authenticated`) while the signature, the
time window, the audience and the objects they name (same uid) all check out.
The JWS is written and verified here with `cryptography`: one algorithm, one
key, no need for a JOSE library.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from k8py.api import errors, fieldvalidation, meta, schema
from k8py.api.registry import Registry, ResourceInfo
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.genericstore import Context, GenericStore
from k8py.apiserver.handlers import _field_validation, json_response, read_body
from k8py.apiserver.negotiation import decode_body
from k8py.apiserver.requestinfo import RequestInfo
from k8py.apiserver.watchcache import WatchCache

Obj = dict[str, Any]

ISSUER = "https://kubernetes.default.svc.cluster.local"  # --service-account-issuer's default (kubeadm's)
API_AUDIENCES = (ISSUER,)  # --api-audiences defaults to the issuer
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
# boundObjectRef kinds and the served resources they name
BOUND_KINDS = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}


async def decode_create_body(request: web.Request, group: str, version: str, kind: str) -> tuple[Obj, list[str]]:
    """The body of a create on a virtual resource (TokenRequest, the reviews), decoded as its kind; and warnings."""
    raw = await read_body(request)
    if not raw.strip():
        raise errors.bad_request("the body of the request was empty")
    obj = decode_body(raw, request.headers.get("Content-Type", ""))
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    api_version = f"{group}/{version}" if group else version
    if obj.get("kind", kind) != kind or obj.get("apiVersion", api_version) != api_version:
        raise errors.bad_request(f"the body of the request must be a {api_version} {kind}, not {obj.get('apiVersion')} {obj.get('kind')}")
    warnings = fieldvalidation.decode(obj, schema.for_kind(group, version, kind), _field_validation(request.query), raw)
    obj["apiVersion"], obj["kind"] = api_version, kind
    return obj, warnings


class InvalidToken(Exception):
    """A bearer token that does not authenticate anyone (the message says why)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise InvalidToken("malformed token") from None


def _go_list(values: Any) -> str:
    """A []string as Go's %q prints it: ["a" "b"]."""
    return "[" + " ".join(orjson.dumps(str(v)).decode() for v in values) + "]"


def key_id(public: PublicKeyTypes) -> str:
    """kube's `kid` (keyIDFromPublicKey): base64url(SHA-256(DER SubjectPublicKeyInfo)), also the JWKS's (oidc.py)."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64(hashlib.sha256(der).digest())


class TokenSigner:
    """Signs and verifies ES256 JWTs with the service account key pair."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str = ISSUER) -> None:
        self._key = key
        self.public = key.public_key()
        self.issuer = issuer
        self.kid = key_id(self.public)

    def sign(self, claims: Obj) -> str:
        header = _b64(orjson.dumps({"alg": "ES256", "kid": self.kid}))
        signing_input = f"{header}.{_b64(orjson.dumps(claims))}".encode()
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return f"{signing_input.decode()}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def decode(self, token: str, issuer: str) -> Obj:
        """The claims of a token signed with this key for `issuer` (times unchecked); InvalidToken otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("malformed token")
        try:
            header, claims = orjson.loads(_unb64(parts[0])), orjson.loads(_unb64(parts[1]))
        except orjson.JSONDecodeError:
            raise InvalidToken("malformed token") from None
        if not isinstance(header, dict) or not isinstance(claims, dict) or claims.get("iss") != issuer:
            raise InvalidToken("token was not issued by this cluster")
        if header.get("alg") != "ES256":
            raise InvalidToken(f"unexpected signing algorithm {header.get('alg')!r}")
        signature = _unb64(parts[2])
        if len(signature) != 64:
            raise InvalidToken("invalid signature")
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            self.public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise InvalidToken("invalid signature") from None
        return claims

    def verify(self, token: str, now: float) -> Obj:
        """The claims of a token this signer issued and that is valid at `now`; InvalidToken otherwise."""
        claims = self.decode(token, self.issuer)
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
            raise InvalidToken("token has no valid expiry")
        if now >= exp:
            raise InvalidToken("token has expired")
        if now < nbf:
            raise InvalidToken("token is not valid yet")
        return claims


@dataclass(frozen=True)
class Authenticated:
    user: UserInfo
    audiences: list[str]


class TokenAuthenticator:
    """Bearer service account tokens -> users, checked against the objects they name (watch cache)."""

    def __init__(self, signer: TokenSigner, cache: WatchCache, registry: Registry) -> None:
        self.signer = signer
        self.cache = cache
        self.registry = registry

    async def _current(self, resource: str, namespace: str, ref: Any, what: str) -> Obj:
        """The object a token names, which must exist with the uid the token recorded.

        Read from the watch cache; a miss is read again once the cache caught up with the
        store, so that a token for an object created a moment ago works at once."""
        info = self.registry.get("", "v1", resource)
        assert info is not None
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
            raise InvalidToken(f"token does not name its {what}")
        key = info.key(namespace, ref["name"])
        obj = self.cache.get(key)
        if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
            await self.cache.sync()
            obj = self.cache.get(key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            raise InvalidToken(f'{what} "{ref["name"]}" not found')
        if obj["metadata"].get("uid") != ref.get("uid"):
            raise InvalidToken(f'{what} "{ref["name"]}" has been deleted and recreated (uid mismatch)')
        return obj

    async def authenticate(self, token: str, audiences: list[str] | tuple[str, ...] = API_AUDIENCES) -> Authenticated:
        claims = self.signer.verify(token, time.time())
        token_audiences = claims.get("aud")
        if isinstance(token_audiences, str):
            token_audiences = [token_audiences]
        if not isinstance(token_audiences, list):
            raise InvalidToken("token has no audience")
        matching = [a for a in audiences if a in token_audiences]
        if not matching:
            raise InvalidToken(f"token audiences {_go_list(token_audiences)} is invalid for the target audiences {_go_list(audiences)}")
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict) or not isinstance(private.get("namespace"), str):
            raise InvalidToken("token has no kubernetes.io claim")
        namespace = private["namespace"]
        sa = await self._current("serviceaccounts", namespace, private.get("serviceaccount"), "service account")
        extra: dict[str, list[str]] = {}
        if isinstance(claims.get("jti"), str):
            extra[CREDENTIAL_ID] = [f"JTI={claims['jti']}"]
        for kind, resource in BOUND_KINDS.items():
            claim = kind.lower()
            if claim not in private:
                continue
            # The bound object must still exist; a pod-bound token's node is information only.
            if not (kind == "Node" and "pod" in private):
                await self._current(resource, "" if kind == "Node" else namespace, private[claim], claim)
            if kind != "Secret":
                extra[f"authentication.kubernetes.io/{claim}-name"] = [private[claim]["name"]]
                extra[f"authentication.kubernetes.io/{claim}-uid"] = [str(private[claim].get("uid", ""))]
        name = sa["metadata"]["name"]
        user = UserInfo(
            f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
            ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            sa["metadata"]["uid"],
            extra,
        )
        return Authenticated(user, matching)


def _invalid(name: str, cause: dict[str, str]) -> errors.StatusError:
    return errors.invalid("authentication.k8s.io", "TokenRequest", name, [cause])


class TokenRequestREST:
    """`create` on serviceaccounts/token: a TokenRequest in, the same TokenRequest with a signed token out."""

    def __init__(self, signer: TokenSigner, store: GenericStore, cache: WatchCache, registry: Registry) -> None:
        self.signer = signer
        self.store = store
        self.cache = cache
        self.registry = registry

    async def create(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.Response:
        req, warnings = await decode_create_body(request, "authentication.k8s.io", "v1", "TokenRequest")
        accounts = self._info("serviceaccounts")
        sa = await self.store.get(accounts, ri.namespace, ri.name)
        spec = req.setdefault("spec", {})
        if not isinstance(spec, dict):
            raise errors.bad_request("spec must be an object")
        spec.setdefault("expirationSeconds", DEFAULT_EXPIRATION)
        spec["audiences"] = spec.get("audiences") or list(API_AUDIENCES)
        self._validate(ri.name, spec)
        now = int(time.time())
        private: Obj = {
            "namespace": ri.namespace,
            "serviceaccount": {"name": ri.name, "uid": sa["metadata"]["uid"]},
        }
        ref = spec.get("boundObjectRef")
        if ref:
            bound = await self._bound_object(ri, ref)
            private[ref["kind"].lower()] = {"name": bound["metadata"]["name"], "uid": bound["metadata"]["uid"]}
            if ref["kind"] == "Pod" and (node_name := (bound.get("spec") or {}).get("nodeName")):
                node = self.cache.get(self._info("nodes").key("", node_name))
                if node is not None:  # where the pod runs, as information; no node is no error
                    private["node"] = {"name": node_name, "uid": node["metadata"]["uid"]}
        expires = now + spec["expirationSeconds"]
        claims = {
            "aud": spec["audiences"],
            "exp": expires,
            "iat": now,
            "iss": self.signer.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": now,
            "sub": f"{SERVICE_ACCOUNT_PREFIX}{ri.namespace}:{ri.name}",
        }
        md = meta.metadata(req)
        md.update({"name": ri.name, "namespace": ri.namespace, "creationTimestamp": meta.now()})
        req["status"] = {
            "token": self.signer.sign(claims),
            "expirationTimestamp": meta.format_time(dt.datetime.fromtimestamp(expires, dt.UTC)),
        }
        return json_response(req, 201, warnings=warnings)

    def _info(self, resource: str) -> ResourceInfo:
        info = self.registry.get("", "v1", resource)
        assert info is not None
        return info

    @staticmethod
    def _validate(name: str, spec: Obj) -> None:
        seconds = spec["expirationSeconds"]
        if not isinstance(seconds, int) or seconds < MIN_EXPIRATION:
            why = "may not specify a duration less than 10 minutes"
        elif seconds > MAX_EXPIRATION:
            why = "may not specify a duration larger than 2^32 seconds"
        else:
            return
        raise _invalid(name, errors.cause("spec.expirationSeconds", f"Invalid value: {seconds}: {why}"))

    async def _bound_object(self, ri: RequestInfo, ref: Obj) -> Obj:
        for field, value, supported in (("kind", ref.get("kind"), sorted(BOUND_KINDS)), ("apiVersion", ref.get("apiVersion", "v1"), ["v1"])):
            if value not in supported:
                allowed = ", ".join(f'"{s}"' for s in supported)
                raise _invalid(ri.name, errors.cause(
                    f"spec.boundObjectRef.{field}", f'Unsupported value: "{value}": supported values: {allowed}', "FieldValueNotSupported"
                ))
        info = self._info(BOUND_KINDS[ref["kind"]])
        obj = await self.store.get(info, ri.namespace if info.namespaced else "", ref.get("name", ""))
        if ref.get("uid") and ref["uid"] != obj["metadata"]["uid"]:
            raise errors.conflict(
                "", info.resource, ref.get("name", ""),
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated",
            )
        return obj
