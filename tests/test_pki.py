"""PKI and kubeconfig: certificate shape, idempotent ensure_pki, and real TLS with kubectl and Python clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import shutil
import ssl
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8py.bootstrap.kubeconfig import kubeconfig_dict, write_kubeconfig
from k8py.bootstrap.pki import (
    CertificateAuthority,
    PKIPaths,
    create_ca,
    ensure_pki,
    issue_client_cert,
    issue_serving_cert,
    load_ca,
    load_pair,
    peer_identity,
    save_pair,
    server_ssl_context,
)

KUBECTL = shutil.which("kubectl")
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T00:00:00Z",
    "goVersion": "python",
    "compiler": "cpython",
    "platform": "linux/amd64",
}


def _ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- certificates ---------------------------------------------------------------------


def test_create_ca_extensions_and_validity() -> None:
    ca = create_ca("test-ca")
    cert, key = ca  # unpacks as (cert, key)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test-ca"
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3649) < life < dt.timedelta(days=3651)
    assert key.curve.name == "secp256r1"
    cert.verify_directly_issued_by(cert)


def test_issued_certificates() -> None:
    ca = create_ca()
    serving = issue_serving_cert(ca, "kube-apiserver", ["localhost", "a.example"], ["127.0.0.1", "::1"])
    serving.cert.verify_directly_issued_by(ca.cert)
    san = _ext(serving.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "a.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(_ext(serving.cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not _ext(serving.cert, x509.BasicConstraints).value.ca
    ca_ski = _ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert _ext(serving.cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    life = serving.cert.not_valid_after_utc - serving.cert.not_valid_before_utc
    assert dt.timedelta(days=364) < life < dt.timedelta(days=366)

    client = issue_client_cert(ca, "alice", ["dev", "ops"])
    client.cert.verify_directly_issued_by(ca.cert)
    subject = client.cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["alice"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["dev", "ops"]
    assert list(_ext(client.cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_save_and_load(tmp_path: Path) -> None:
    ca = create_ca()
    save_pair(ca, tmp_path / "ca.crt", tmp_path / "ca.key")
    assert _mode(tmp_path / "ca.key") == 0o600
    assert (tmp_path / "ca.key").read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    loaded = load_ca(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert isinstance(loaded, CertificateAuthority)
    assert loaded.cert == ca.cert and loaded.key_pem() == ca.key_pem()
    other = create_ca()
    save_pair(other, tmp_path / "other.crt", tmp_path / "other.key")
    with pytest.raises(ValueError, match="does not match"):
        load_pair(tmp_path / "ca.crt", tmp_path / "other.key")


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> dict | None:
    """Run a TLS handshake in memory; return the peer certificate the server saw."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    done = {"server": False, "client": False}
    for _ in range(10):
        for name, obj in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values())
    return server.getpeercert()


def test_strict_openssl_verification_both_ways(tmp_path: Path) -> None:
    """OpenSSL's VERIFY_X509_STRICT accepts the serving cert (client side) and the client cert."""
    pki = ensure_pki(tmp_path, ["node-1.example"], ["10.96.0.1"])
    server_ctx = server_ssl_context(pki)
    server_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    client_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    client_ctx.load_cert_chain(pki.admin_cert, pki.admin_key)
    for host in ("localhost", "kubernetes.default.svc", "node-1.example", "10.96.0.1", "127.0.0.1"):
        peer = _handshake(server_ctx, client_ctx, host)
        assert peer_identity(peer) == ("kubernetes-admin", ["system:masters"])


def test_peer_identity() -> None:
    assert peer_identity(None) is None
    assert peer_identity({}) is None
    subject = ((("organizationName", "a"),), (("organizationName", "b"),), (("commonName", "bob"),))
    assert peer_identity({"subject": subject}) == ("bob", ["a", "b"])
    assert peer_identity({"subject": ((("organizationName", "a"),),)}) is None


# --- ensure_pki -------------------------------------------------------------------------


def test_ensure_pki_is_idempotent_and_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    pki = ensure_pki(tmp_path / "pki", ["cp.example"], ["192.0.2.10"])
    assert time.monotonic() - start < 1.0
    assert pki == PKIPaths.in_dir(tmp_path / "pki")
    for key in (pki.ca_key, pki.apiserver_key, pki.admin_key):
        assert _mode(key) == 0o600
    san = _ext(load_pair(pki.apiserver_cert, pki.apiserver_key).cert, x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    assert {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "cp.example",
    } <= dns
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "192.0.2.10"}
    admin = load_pair(pki.admin_cert, pki.admin_key).cert
    assert admin.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"

    files = [pki.ca_cert, pki.ca_key, pki.apiserver_cert, pki.apiserver_key, pki.admin_cert, pki.admin_key]
    before = {p: p.read_bytes() for p in files}
    ensure_pki(tmp_path / "pki", ["cp.example"], ["192.0.2.10"])
    assert {p: p.read_bytes() for p in files} == before

    # A name already covered (in another order, or a default) keeps the certificate too.
    ensure_pki(tmp_path / "pki", ["kubernetes", "cp.example"], [])
    assert pki.apiserver_cert.read_bytes() == before[pki.apiserver_cert]

    # A new name reissues only the serving certificate.
    ensure_pki(tmp_path / "pki", ["new.example"], [])
    assert pki.apiserver_cert.read_bytes() != before[pki.apiserver_cert]
    assert pki.ca_cert.read_bytes() == before[pki.ca_cert]
    assert pki.admin_cert.read_bytes() == before[pki.admin_cert]

    # A missing leaf is recreated alone.
    pki.admin_key.unlink()
    ensure_pki(tmp_path / "pki")
    assert pki.admin_key.exists() and pki.ca_cert.read_bytes() == before[pki.ca_cert]

    # A new CA reissues every leaf, since the old ones no longer chain to it.
    pki.ca_cert.unlink()
    ensure_pki(tmp_path / "pki")
    ca = load_ca(pki.ca_cert, pki.ca_key)
    assert pki.ca_cert.read_bytes() != before[pki.ca_cert]
    for cert, key in ((pki.apiserver_cert, pki.apiserver_key), (pki.admin_cert, pki.admin_key)):
        load_pair(cert, key).cert.verify_directly_issued_by(ca.cert)


# --- kubeconfig -----------------------------------------------------------------------------


def test_kubeconfig_shape(tmp_path: Path) -> None:
    cfg = kubeconfig_dict("https://127.0.0.1:6443", b"CA", b"CERT", b"KEY")
    assert cfg["current-context"] == "kubernetes-admin@k8py"
    assert cfg["clusters"][0] == {
        "cluster": {"certificate-authority-data": "Q0E=", "server": "https://127.0.0.1:6443"},
        "name": "k8py",
    }
    assert cfg["contexts"][0] == {
        "context": {"cluster": "k8py", "user": "kubernetes-admin"},
        "name": "kubernetes-admin@k8py",
    }
    assert cfg["users"][0]["user"] == {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}
    path = write_kubeconfig(
        tmp_path / "sub" / "admin.conf",
        "https://h:6443",
        b"CA",
        b"CERT",
        b"KEY",
        cluster_name="c",
        user="u",
        context="u@c",
    )
    assert _mode(path) == 0o600
    assert yaml.safe_load(path.read_text()) == kubeconfig_dict(
        "https://h:6443", b"CA", b"CERT", b"KEY", cluster_name="c", user="u", context="u@c"
    )


# --- TLS end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKIPaths:
    return ensure_pki(tmp_path_factory.mktemp("pki"))


async def _version(request: web.Request) -> web.Response:
    return web.json_response(VERSION)


async def _whoami(request: web.Request) -> web.Response:
    assert request.transport is not None
    identity = peer_identity(request.transport.get_extra_info("peercert"))
    if identity is None:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
        return web.json_response(status, status=401)
    return web.json_response({"user": identity[0], "groups": identity[1]})


@pytest.fixture
async def server_url(pki: PKIPaths) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/version", _version)
    app.router.add_get("/version/", _version)  # the official client's path
    app.router.add_get("/whoami", _whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(pki)).start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def kubeconfig(pki: PKIPaths, server_url: str, tmp_path: Path) -> Path:
    return write_kubeconfig(
        tmp_path / "admin.conf",
        server_url,
        pki.ca_cert.read_bytes(),
        pki.admin_cert.read_bytes(),
        pki.admin_key.read_bytes(),
    )


async def _kubectl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    assert KUBECTL is not None
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(kubeconfig.parent / "kube-cache"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
async def test_kubectl_presents_verified_client_cert(kubeconfig: Path) -> None:
    rc, out, err = await _kubectl(kubeconfig, "get", "--raw", "/whoami")
    assert rc == 0, err
    assert yaml.safe_load(out) == {"user": "kubernetes-admin", "groups": ["system:masters"]}
    rc, out, err = await _kubectl(kubeconfig, "version", "-o", "json")
    assert rc == 0, err
    assert yaml.safe_load(out)["serverVersion"]["gitVersion"] == "v1.32.4"


async def test_python_clients(pki: PKIPaths, server_url: str, kubeconfig: Path) -> None:
    port = server_url.rsplit(":", 1)[1]
    authed = ssl.create_default_context(cafile=str(pki.ca_cert))
    authed.load_cert_chain(pki.admin_cert, pki.admin_key)
    anonymous = ssl.create_default_context(cafile=str(pki.ca_cert))
    async with aiohttp.ClientSession() as session:
        # Hostname verification against the SANs, by name and by address.
        for url in (server_url, f"https://localhost:{port}"):
            async with session.get(f"{url}/whoami", ssl=authed) as resp:
                assert resp.status == 200
                assert await resp.json() == {"user": "kubernetes-admin", "groups": ["system:masters"]}
        # No client certificate: the handshake completes; authentication fails later.
        async with session.get(f"{server_url}/version", ssl=anonymous) as resp:
            assert resp.status == 200
            assert (await resp.json())["gitVersion"] == "v1.32.4"
        async with session.get(f"{server_url}/whoami", ssl=anonymous) as resp:
            assert resp.status == 401
        # A certificate from another CA is refused during the handshake.
        stranger = issue_client_cert(create_ca("stranger"), "mallory", ["system:masters"])
        save_pair(stranger, kubeconfig.parent / "m.crt", kubeconfig.parent / "m.key")
        foreign = ssl.create_default_context(cafile=str(pki.ca_cert))
        foreign.load_cert_chain(kubeconfig.parent / "m.crt", kubeconfig.parent / "m.key")
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"{server_url}/whoami", ssl=foreign) as resp:
                await resp.read()

    # The official client (urllib3) from the kubeconfig file; it blocks, so off the loop.
    kubernetes = pytest.importorskip("kubernetes")

    def official() -> str:
        with kubernetes.config.new_client_from_config(config_file=str(kubeconfig)) as api:
            return kubernetes.client.VersionApi(api).get_code().git_version

    assert await asyncio.to_thread(official) == "v1.32.4"
