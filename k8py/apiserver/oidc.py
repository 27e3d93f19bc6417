"""Service account issuer discovery: the OIDC documents kube-apiserver serves for its tokens.

`GET /.well-known/openid-configuration` (the issuer, where its keys are, what it signs with) and
`GET /openid/v1/jwks` (the public keys of `--service-account-key-file` as a JSON Web Key Set), so
that relying parties outside the cluster verify service account tokens without calling the API
server (upstream pkg/serviceaccount/openidmetadata.go and pkg/routes/openidmetadata.go). Both are
rendered once at start; both are ordinary non-resource URLs to authorization (RBAC's bootstrap
policy lets `system:serviceaccounts` get them through `system:service-account-issuer-discovery`).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from k8py.apiserver.tokens import _b64, key_id

CONFIG_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
CACHE_CONTROL = "public, max-age=3600"  # overrides kube's `private, no-cache`
JWKS_CONTENT_TYPE = "application/jwk-set+json"  # RFC 7517 section 8.5.1
CURVE_ALGORITHMS = {"secp256r1": ("P-256", "ES256"), "secp384r1": ("P-384", "ES384"), "secp521r1": ("P-521", "ES512")}
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def load_public_keys(path: Path) -> list[PublicKey]:
    """Every key of a PEM file of public keys and certificates (keyutil.PublicKeysFromFile); ValueError if none."""
    keys: list[PublicKey] = []
    for block in PEM_BLOCK.finditer(path.read_bytes()):
        if block[1] == b"CERTIFICATE":
            key = x509.load_pem_x509_certificate(block[0]).public_key()
        elif block[1] in (b"PUBLIC KEY", b"RSA PUBLIC KEY"):
            key = serialization.load_pem_public_key(block[0])
        else:
            continue
        if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            keys.append(key)
    if not keys:
        raise ValueError(f"no public keys in {path}")
    return keys


def jwk(key: PublicKey) -> dict[str, str]:
    """A public signing key as a JWK, its `kid` the one kube puts in the tokens it signs."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"use": "sig", "kty": "RSA", "kid": key_id(key), "alg": "RS256",
                "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))}
    if key.curve.name not in CURVE_ALGORITHMS:
        raise ValueError(f"unknown public key curve {key.curve.name}, must be 256, 384, or 521")
    crv, alg = CURVE_ALGORITHMS[key.curve.name]
    size = (key.curve.key_size + 7) // 8
    point = key.public_numbers()
    return {"use": "sig", "kty": "EC", "kid": key_id(key), "crv": crv, "alg": alg,
            "x": _b64(point.x.to_bytes(size, "big")), "y": _b64(point.y.to_bytes(size, "big"))}


def external_address(host: str, port: int) -> str:
    """net.JoinHostPort: the API server's external address (brackets around an IPv6 host)."""
    try:
        return f"[{host}]:{port}" if ipaddress.ip_address(host).version == 6 else f"{host}:{port}"
    except ValueError:
        return f"{host}:{port}"


def check_jwks_uri(uri: str) -> None:
    """--service-account-jwks-uri must be an https URL."""
    if urlsplit(uri).scheme != "https":
        raise ValueError(f"service-account-jwks-uri requires https scheme, parsed as: {uri}")


class IssuerDiscovery:
    """The two pre-rendered documents and their handlers (NewOpenIDMetadataProvider's checks: ValueError)."""

    def __init__(self, issuer: str, jwks_uri: str, default_external_address: str, keys: list[PublicKey]) -> None:
        iss = urlsplit(issuer)
        if iss.scheme != "https":
            raise ValueError(f"issuer URL must use https scheme, got: {issuer}")
        if iss.query or iss.fragment:
            raise ValueError(f"issuer URL may not include a query or fragment, got: {issuer}")
        if not jwks_uri:
            jwks_uri = f"https://{default_external_address}{JWKS_PATH}"
        else:
            check_jwks_uri(jwks_uri)
        keyset = [jwk(k) for k in keys]
        self.config = orjson.dumps({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],  # kube only produces ID tokens
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({k["alg"] for k in keyset}),
        })
        self.keyset = orjson.dumps({"keys": keyset})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(CONFIG_PATH, self._config)
        app.router.add_get(JWKS_PATH, self._keys)

    async def _config(self, request: web.Request) -> web.Response:
        return web.Response(body=self.config, content_type="application/json", headers={"Cache-Control": CACHE_CONTROL})

    async def _keys(self, request: web.Request) -> web.Response:
        return web.Response(body=self.keyset, content_type=JWKS_CONTENT_TYPE, headers={"Cache-Control": CACHE_CONTROL})
