"""Service account issuer discovery (OIDC documents, JWKS) and --token-auth-file, on an RBAC cluster."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from k8py.apiserver.oidc import IssuerDiscovery, load_public_keys
from k8py.apiserver.tokenfile import parse_csv
from k8py.apiserver.tokens import ISSUER, key_id
from tests.conftest import KUBECTL, Cluster, free_port, http, start_cluster, wait_for

TOKEN_FILE = 'alice-token,alice,1001,"team-a,team-b"\n\nbob-token,bob,1002\n'


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def rbac_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("k8py-oidc")
    tokens = data_dir / "tokens.csv"
    tokens.write_text(TOKEN_FILE)
    c = start_cluster(data_dir, extra=("--authorization-mode", "RBAC", "--token-auth-file", str(tokens),
                                       "--disable-scheduler", "--controllers", "serviceaccount"))
    yield c
    c.stop()


def as_token(cluster: Cluster, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with only a bearer token (no client certificate from the admin's kubeconfig)."""
    empty = cluster.data_dir / "empty-kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\n")
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(empty), "--server", cluster.url,
         "--certificate-authority", str(cluster.data_dir / "pki" / "ca.crt"), "--token", token, *args],
        capture_output=True, text=True, timeout=30,
    )


def service_account_token(cluster: Cluster) -> str:
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", check=False).returncode == 0, what="default SA")
    return cluster.kubectl("create", "token", "default").stdout.strip()


def test_discovery_documents(rbac_cluster: Cluster) -> None:
    config = http(rbac_cluster, "GET", "/.well-known/openid-configuration")
    assert config.status == 200
    assert config.headers["Content-Type"] == "application/json"
    assert config.headers["Cache-Control"] == "public, max-age=3600"
    doc = config.json()
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"].startswith("https://") and doc["jwks_uri"].endswith(f":{rbac_cluster.port}/openid/v1/jwks")
    assert doc["response_types_supported"] == ["id_token"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]

    jwks = http(rbac_cluster, "GET", "/openid/v1/jwks")
    assert jwks.status == 200
    assert jwks.headers["Content-Type"] == "application/jwk-set+json"
    assert jwks.headers["Cache-Control"] == "public, max-age=3600"
    [key] = jwks.json()["keys"]
    public = serialization.load_pem_public_key((rbac_cluster.data_dir / "pki" / "sa.pub").read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert {k: key[k] for k in ("kty", "crv", "alg", "use", "kid")} == {
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": key_id(public),
    }
    numbers = public.public_numbers()
    assert (_unb64(key["x"]), _unb64(key["y"])) == (numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big"))


def test_service_account_token_verifies_against_jwks(rbac_cluster: Cluster) -> None:
    token = service_account_token(rbac_cluster)
    header_b64, claims_b64, signature_b64 = token.split(".")
    header, claims = json.loads(_unb64(header_b64)), json.loads(_unb64(claims_b64))
    [key] = http(rbac_cluster, "GET", "/openid/v1/jwks").json()["keys"]
    assert header == {"alg": "ES256", "kid": key["kid"]}
    issuer = http(rbac_cluster, "GET", "/.well-known/openid-configuration").json()["issuer"]
    assert claims["iss"] == issuer and claims["sub"] == "system:serviceaccount:default:default"
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_unb64(key["x"]), "big"), int.from_bytes(_unb64(key["y"]), "big"), ec.SECP256R1()
    ).public_key()
    signature = _unb64(signature_b64)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))  # raises when invalid


def test_discovery_authorization(rbac_cluster: Cluster) -> None:
    """system:service-account-issuer-discovery is bound to system:serviceaccounts: not to anonymous."""
    token = service_account_token(rbac_cluster)
    for path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):
        assert http(rbac_cluster, "GET", path, client_cert=False, headers={"Authorization": f"Bearer {token}"}).status == 200
        assert http(rbac_cluster, "GET", path, client_cert=False).status == 403
        assert http(rbac_cluster, "GET", path, client_cert=False, headers={"Authorization": "Bearer alice-token"}).status == 403


def test_token_file_users(rbac_cluster: Cluster) -> None:
    whoami: dict[str, Any] = json.loads(as_token(rbac_cluster, "alice-token", "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"] == {
        "username": "alice", "uid": "1001", "groups": ["team-a", "team-b", "system:authenticated"],
    }
    bob = json.loads(as_token(rbac_cluster, "bob-token", "auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert bob == {"username": "bob", "uid": "1002", "groups": ["system:authenticated"]}
    wrong = as_token(rbac_cluster, "nobody-token", "auth", "whoami")
    assert wrong.returncode != 0 and "Unauthorized" in wrong.stderr

    # RBAC applies to them: nothing until team-a is bound to a role in default
    denied = as_token(rbac_cluster, "alice-token", "get", "configmaps", "-n", "default")
    assert denied.returncode != 0 and 'User "alice" cannot list resource "configmaps"' in denied.stderr
    rbac_cluster.kubectl("create", "role", "configmap-reader", "--verb", "get,list", "--resource", "configmaps", "-n", "default")
    rbac_cluster.kubectl("create", "rolebinding", "team-a-reader", "--role", "configmap-reader", "--group", "team-a", "-n", "default")
    wait_for(lambda: as_token(rbac_cluster, "alice-token", "get", "configmaps", "-n", "default").returncode == 0,
             what="alice may list configmaps")
    assert as_token(rbac_cluster, "bob-token", "get", "configmaps", "-n", "default").returncode != 0
    assert as_token(rbac_cluster, "alice-token", "get", "configmaps", "-n", "kube-system").returncode != 0


def test_token_file_parsing() -> None:
    """encoding/csv as upstream reads it: quotes, "" escapes, multi-line fields, blank lines."""
    assert parse_csv('a,b,c\r\n\n"t,1","u""x","line\nbreak",g\n') == [(1, ["a", "b", "c"]), (3, ["t,1", 'u"x', "line\nbreak", "g"])]
    for text, line in (('a,b,c\nd,e"f,g\n', 2), ('a,b,c\n\n"d"e,f,g\n', 3), ('a,b,c\n"d,e,f\n', 2)):
        with pytest.raises(ValueError, match=f"line {line}"):
            parse_csv(text)


@pytest.mark.parametrize("content, line", [("t1,u1,1\nt2,u2\n", 2), ('t1,u1,1\n\nt2,u"2,2\n', 3)])
def test_malformed_token_file(tmp_path: Path, content: str, line: int) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(content)
    res = subprocess.run(
        [sys.executable, "-m", "k8py.cli", "apiserver", "--data-dir", str(tmp_path), "--port", str(free_port()),
         "--token-auth-file", str(tokens)],
        capture_output=True, text=True, timeout=30,
    )
    assert res.returncode == 2
    assert "--token-auth-file" in res.stderr and f"line {line}" in res.stderr


def test_custom_issuer_and_jwks_uri(tmp_path: Path) -> None:
    issuer, jwks_uri = "https://issuer.example.com/cluster-1", "https://keys.example.com/jwks.json"
    c = start_cluster(tmp_path, extra=("--service-account-issuer", issuer, "--service-account-jwks-uri", jwks_uri,
                                       "--disable-scheduler", "--controllers", "serviceaccount"))
    try:
        doc = http(c, "GET", "/.well-known/openid-configuration").json()
        assert (doc["issuer"], doc["jwks_uri"]) == (issuer, jwks_uri)
        token = service_account_token(c)
        assert json.loads(_unb64(token.split(".")[1]))["iss"] == issuer
        whoami = json.loads(as_token(c, token, "auth", "whoami", "-o", "json").stdout)
        assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:default:default"
    finally:
        c.stop()


def test_jwks_uri_must_be_https(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "k8py.cli", "apiserver", "--data-dir", str(tmp_path), "--port", str(free_port()),
         "--service-account-jwks-uri", "http://keys.example.com/jwks"],
        capture_output=True, text=True, timeout=30,
    )
    assert res.returncode == 2 and "requires https scheme" in res.stderr


def test_keyset_of_several_keys(tmp_path: Path) -> None:
    """Every key of --service-account-key-file is published, each with its algorithm; issuers must be https."""
    keys = [rsa.generate_private_key(65537, 2048).public_key(), ec.generate_private_key(ec.SECP384R1()).public_key()]
    pem = tmp_path / "sa.pub"
    pem.write_bytes(b"".join(k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                             for k in keys))
    discovery = IssuerDiscovery(ISSUER, "", "[fd00::1]:6443", load_public_keys(pem))
    config = json.loads(discovery.config)
    assert config["jwks_uri"] == "https://[fd00::1]:6443/openid/v1/jwks"
    assert config["id_token_signing_alg_values_supported"] == ["ES384", "RS256"]
    rsa_jwk, ec_jwk = json.loads(discovery.keyset)["keys"]
    assert (rsa_jwk["kty"], rsa_jwk["e"], rsa_jwk["kid"]) == ("RSA", "AQAB", key_id(keys[0]))
    assert (ec_jwk["crv"], len(_unb64(ec_jwk["x"])), ec_jwk["kid"]) == ("P-384", 48, key_id(keys[1]))
    with pytest.raises(ValueError, match="https"):
        IssuerDiscovery("http://issuer.example", "", "127.0.0.1:6443", keys)
