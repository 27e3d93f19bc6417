"""Bootstrap tokens: authentication, the bootstrap signer and token cleaner, token discovery,
and `k8py token` (kubeadm token's commands and output).

One `k8py up` (API server + the bootstrapsigner and tokencleaner controllers); tokens are
written as kubeadm writes them, users checked with `kubectl auth whoami` and SelfSubjectReviews.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from k8py.bootstrap import token as bt
from k8py.client import RESTClient
from k8py.client.resources import CONFIGMAPS, SECRETS
from k8py.controllers.manager import select
from tests.conftest import Cluster, http, start_cluster, wait_for

WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


@pytest.fixture(scope="module")
def tcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("k8py-tokens"),
        extra=("--disable-scheduler", "--controllers", "bootstrapsigner,tokencleaner"),
    )
    yield c
    c.stop()


@pytest.fixture
async def client(tcluster: Cluster) -> Any:
    async with RESTClient.from_kubeconfig(tcluster.kubeconfig) as c:
        yield c


def whoami(cluster: Cluster, token: str) -> tuple[int, Any]:
    resp = http(cluster, "POST", WHOAMI, REVIEW, {"Authorization": f"Bearer {token}"}, client_cert=False)
    return resp.status, resp.json()


def ca_pem(cluster: Cluster) -> bytes:
    return (cluster.data_dir / "pki" / "ca.crt").read_bytes()


def k8py(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "k8py.cli", *args], capture_output=True, text=True, env=env, timeout=60)


async def make_token(client: RESTClient, **options: Any) -> str:
    token = bt.generate_token()
    await client.create(SECRETS, bt.token_secret(token, **options))
    return token


# ---- units ------------------------------------------------------------------------------------


def test_detached_signature_matches_upstream_vectors() -> None:
    content = "Hello from the other side. I must have called a thousand times."
    header = "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9"
    assert bt.detached_signature(content, "joshua", "my voice is my passcode") == (
        f"{header}..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
    )
    assert bt.detached_signature("", "joshua", "my voice is my passcode") == f"{header}..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"
    assert bt.detached_signature(content, "joshua", "") == f"{header}..UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8"


def test_token_format_and_secret() -> None:
    token = bt.generate_token()
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)
    assert bt.parse_token("abcdef.0123456789abcdef") == ("abcdef", "0123456789abcdef")
    for bad in ("ABCDEF.0123456789abcdef", "abcdef.0123456789abcde", "abcdef0123456789abcdef", "abcdef.0123456789abcdef\n"):
        assert bt.parse_token(bad) is None
    assert bt.token_id_of("abcdef") == bt.token_id_of("abcdef.0123456789abcdef") == "abcdef"
    with pytest.raises(bt.TokenError, match="didn't match pattern"):
        bt.token_id_of("nope")
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    secret = bt.token_secret("abcdef.0123456789abcdef", ttl=3600, description="for node-1", now=now)
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert bt.secret_data(secret) == {
        "token-id": "abcdef",
        "token-secret": "0123456789abcdef",
        "description": "for node-1",
        "expiration": "2026-01-02T04:04:05Z",
        "usage-bootstrap-signing": "true",
        "usage-bootstrap-authentication": "true",
        "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
    }
    assert "expiration" not in bt.secret_data(bt.token_secret("abcdef.0123456789abcdef", ttl=0))
    with pytest.raises(bt.TokenError, match="invalid bootstrap token usage string: bogus, valid usage options: signing,authentication"):
        bt.token_secret("abcdef.0123456789abcdef", usages=["bogus"])
    with pytest.raises(bt.TokenError, match='unless --usages includes "authentication"'):
        bt.token_secret("abcdef.0123456789abcdef", usages=["signing"])
    with pytest.raises(bt.TokenError, match="bootstrap group 'system:nodes' is invalid"):
        bt.token_secret("abcdef.0123456789abcdef", groups=["system:nodes"])


def test_expiry_and_groups() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert not bt.has_expired({}, now)
    assert not bt.has_expired({"expiration": "2026-01-01T00:00:01Z"}, now)
    assert bt.has_expired({"expiration": "2026-01-01T00:00:00Z"}, now)
    assert bt.has_expired({"expiration": "2026-01-01T02:00:00+03:00"}, now)
    assert bt.has_expired({"expiration": "tomorrow"}, now)  # unparseable counts as expired
    assert bt.auth_groups({}) == ["system:bootstrappers"]
    assert bt.auth_groups({"auth-extra-groups": "system:bootstrappers:b,system:bootstrappers:a,system:bootstrappers:b"}) == [
        "system:bootstrappers", "system:bootstrappers:a", "system:bootstrappers:b",
    ]
    with pytest.raises(bt.TokenError):
        bt.auth_groups({"auth-extra-groups": "system:masters"})


def test_ca_cert_hash_is_kubeadms(tmp_path: Path) -> None:
    from k8py.bootstrap.pki import create_ca

    ca = create_ca()
    pem = ca.cert_pem()
    (tmp_path / "ca.crt").write_bytes(pem)
    # the command kubeadm's documentation gives for the hash (for an EC key: pkey -pubin -outform der)
    der = subprocess.run(
        f"openssl x509 -pubkey -in {tmp_path / 'ca.crt'} | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex",
        shell=True, capture_output=True, text=True, check=True,
    ).stdout.split()[-1]
    assert bt.ca_cert_hash(x509.load_pem_x509_certificate(pem)) == f"sha256:{der}"
    assert bt.ca_cert_hashes(pem) == [f"sha256:{der}"]


def test_token_list_rows_and_table() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    a = bt.token_secret("abcdef.0123456789abcdef", ttl=23 * 3600 + 1800, description="first", now=now)
    b = bt.token_secret("zyxwvu.0123456789abcdef", ttl=0, usages=["signing"], groups=[], now=now)
    rows = [["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"], bt.token_row(a, now), bt.token_row(b, now)]
    assert rows[1] == [
        "abcdef.0123456789abcdef", "23h", "2026-01-01T23:30:00Z", "authentication,signing", "first",
        "system:bootstrappers:kubeadm:default-node-token",
    ]
    assert rows[2] == ["zyxwvu.0123456789abcdef", "<forever>", "<never>", "signing", "<none>", "<none>"]
    assert bt.tabulate(rows).splitlines() == [
        "TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION   EXTRA GROUPS",
        "abcdef.0123456789abcdef   23h         2026-01-01T23:30:00Z   authentication,signing   first         "
        "system:bootstrappers:kubeadm:default-node-token",
        "zyxwvu.0123456789abcdef   <forever>   <never>                signing                  <none>        <none>",
    ]
    broken = bt.token_secret("abcdef.0123456789abcdef")
    broken["metadata"]["name"] = "bootstrap-token-other"
    with pytest.raises(bt.TokenError, match="bootstrap token name is not of the form"):
        bt.token_row(broken, now)


def test_controllers_are_off_by_default_as_upstream() -> None:
    assert "bootstrapsigner" not in select("*") and "tokencleaner" not in select("*")
    assert {"bootstrapsigner", "tokencleaner"} <= set(select("*,bootstrapsigner,tokencleaner"))


# ---- authentication ------------------------------------------------------------------------------


async def test_token_authenticates_as_bootstrap_user(tcluster: Cluster, client: RESTClient) -> None:
    token = await make_token(client, groups=["system:bootstrappers:kubeadm:default-node-token", "system:bootstrappers:x"])
    status, review = whoami(tcluster, token)
    assert status == 201, review
    assert review["status"]["userInfo"] == {
        "username": f"system:bootstrap:{token[:6]}",
        "groups": [
            "system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:bootstrappers:x",
            "system:authenticated",
        ],
    }
    # the real kubectl, authenticated by the token alone
    res = tcluster.kubectl(
        "--kubeconfig=/dev/null", f"--server={tcluster.url}",
        f"--certificate-authority={tcluster.data_dir / 'pki' / 'ca.crt'}", f"--token={token}", "auth", "whoami", "-o", "json",
    )
    assert json.loads(res.stdout)["status"]["userInfo"]["username"] == f"system:bootstrap:{token[:6]}"


def assert_unauthorized(cluster: Cluster, token: str) -> None:
    status, body = whoami(cluster, token)
    assert status == 401, body
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401


async def test_wrong_secret_expired_and_unusable_tokens_are_refused(tcluster: Cluster, client: RESTClient) -> None:
    token = await make_token(client)
    assert_unauthorized(tcluster, token[:7] + "0123456789abcdef")
    assert_unauthorized(tcluster, "zzzzzz.0123456789abcdef")  # no such Secret
    assert_unauthorized(tcluster, await make_token(client, usages=["signing"], groups=[]))
    # expired: written directly (kubeadm refuses a negative ttl); the cleaner may delete it any moment
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert_unauthorized(tcluster, await make_token(client, ttl=60, now=past))
    # an extra group outside system:bootstrappers: invalid
    bad = bt.generate_token()
    secret = bt.token_secret(bad)
    secret["data"]["auth-extra-groups"] = base64.b64encode(b"system:masters").decode()
    await client.create(SECRETS, secret)
    assert_unauthorized(tcluster, bad)
    # the wrong type
    other = bt.generate_token()
    secret = bt.token_secret(other)
    secret["type"] = "Opaque"
    await client.create(SECRETS, secret)
    assert_unauthorized(tcluster, other)


async def test_deleted_token_is_refused(tcluster: Cluster, client: RESTClient) -> None:
    token = await make_token(client)
    assert whoami(tcluster, token)[0] == 201
    await client.delete(SECRETS, bt.secret_name(token[:6]), namespace="kube-system")
    assert_unauthorized(tcluster, token)


async def test_anonymous_may_read_only_cluster_info(tcluster: Cluster, client: RESTClient) -> None:
    pki = tcluster.data_dir / "pki"
    await bt.ensure_bootstrap_token_objects(client, tcluster.url, (pki / "ca.crt").read_bytes())  # kubeadm's RBAC
    resp = http(tcluster, "GET", "/api/v1/namespaces/kube-public/configmaps", client_cert=False)
    assert resp.status == 403 and resp.json()["reason"] == "Forbidden"
    resp = http(tcluster, "DELETE", bt.CLUSTER_INFO_PATH, client_cert=False)
    assert resp.status == 403
    resp = http(tcluster, "GET", bt.CLUSTER_INFO_PATH, client_cert=False)
    assert resp.status == 200 and resp.json()["metadata"]["name"] == "cluster-info"


# ---- signer, discovery, cleaner ------------------------------------------------------------------


async def signatures(client: RESTClient) -> dict[str, str]:
    cm = await client.get(CONFIGMAPS, bt.CLUSTER_INFO, namespace=bt.PUBLIC_NAMESPACE)
    return {k: v for k, v in (cm.get("data") or {}).items() if k.startswith(bt.JWS_PREFIX)}


async def wait_async(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await predicate():
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


async def test_signer_discovery_and_revocation(tcluster: Cluster, client: RESTClient) -> None:
    ca = ca_pem(tcluster)
    pin = bt.ca_cert_hashes(ca)[0]
    await bt.ensure_bootstrap_token_objects(client, tcluster.url, ca)
    await bt.ensure_bootstrap_token_objects(client, tcluster.url, ca)  # idempotent
    token = await make_token(client)
    auth_only = await make_token(client, usages=["authentication"])
    sigs = await wait_async(lambda: _signature_for(client, token[:6]), what="the signature")
    cm = await client.get(CONFIGMAPS, bt.CLUSTER_INFO, namespace=bt.PUBLIC_NAMESPACE)
    kubeconfig = cm["data"]["kubeconfig"]
    assert sigs == bt.detached_signature(kubeconfig, token[:6], token[7:])
    assert bt.JWS_PREFIX + auth_only[:6] not in cm["data"]
    endpoint = f"127.0.0.1:{tcluster.port}"
    assert await bt.discover(endpoint, token, [pin], timeout=5) == (ca, tcluster.url)
    with pytest.raises(bt.DiscoveryError, match="none of the public keys .* are pinned"):
        await bt.discover(endpoint, token, ["sha256:" + "0" * 64], timeout=5)
    assert await bt.discover(endpoint, token, [pin.upper().replace("SHA256", "sha256")], timeout=5) == (ca, tcluster.url)
    with pytest.raises(bt.DiscoveryError, match="expected a 32 byte SHA-256 hash, found 2 bytes"):
        await bt.discover(endpoint, token, ["sha256:abcd"], timeout=5)
    with pytest.raises(bt.DiscoveryError, match='unknown hash format "md5"'):
        await bt.discover(endpoint, token, ["md5:abcd"], timeout=5)
    with pytest.raises(bt.DiscoveryError, match="failed to verify JWS signature"):
        await bt.discover(endpoint, token[:7] + "0123456789abcdef", [pin], timeout=5)
    with pytest.raises(bt.DiscoveryError, match="is invalid for this cluster or it has expired"):
        await bt.discover(endpoint, auth_only, [pin], timeout=0.5, interval=0.1)
    # revoked: the signature goes, and discovery with the token fails
    await client.delete(SECRETS, bt.secret_name(token[:6]), namespace="kube-system")
    await wait_async(lambda: _no_signature_for(client, token[:6]), what="the signature removed")
    with pytest.raises(bt.DiscoveryError, match="is invalid for this cluster"):
        await bt.discover(endpoint, token, [pin], timeout=0.3, interval=0.1)
    # a changed kubeconfig is signed again
    other = await make_token(client)
    await wait_async(lambda: _signature_for(client, other[:6]), what="the second signature")
    await bt.ensure_bootstrap_token_objects(client, "https://10.0.0.1:6443", ca)

    async def resigned() -> bool:
        cm = await client.get(CONFIGMAPS, bt.CLUSTER_INFO, namespace=bt.PUBLIC_NAMESPACE)
        return cm["data"].get(bt.JWS_PREFIX + other[:6]) == bt.detached_signature(cm["data"]["kubeconfig"], other[:6], other[7:])

    await wait_async(resigned, what="the new kubeconfig signed")
    assert (await bt.discover(endpoint, other, [pin], timeout=5))[1] == "https://10.0.0.1:6443"


async def _signature_for(client: RESTClient, token_id: str) -> str | None:
    try:
        return (await signatures(client)).get(bt.JWS_PREFIX + token_id)
    except Exception:
        return None


async def _no_signature_for(client: RESTClient, token_id: str) -> bool:
    return bt.JWS_PREFIX + token_id not in await signatures(client)


async def test_bootstrap_token_phase_rbac_objects(tcluster: Cluster, client: RESTClient) -> None:
    await bt.ensure_bootstrap_token_objects(client, tcluster.url, ca_pem(tcluster))
    role = await client.get(bt.ROLES, bt.CLUSTER_INFO_ROLE, namespace="kube-public")
    assert role["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"]}]
    binding = await client.get(bt.ROLE_BINDINGS, bt.CLUSTER_INFO_ROLE, namespace="kube-public")
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": bt.CLUSTER_INFO_ROLE}
    bindings = {}
    for name in ("kubeadm:get-nodes", "kubeadm:kubelet-bootstrap", "kubeadm:node-autoapprove-bootstrap",
                 "kubeadm:node-autoapprove-certificate-rotation"):
        crb = await client.get(bt.CLUSTER_ROLE_BINDINGS, name)
        bindings[name] = (crb["roleRef"]["name"], crb["subjects"][0]["name"])
    node_token = "system:bootstrappers:kubeadm:default-node-token"
    assert bindings == {
        "kubeadm:get-nodes": ("kubeadm:get-nodes", node_token),
        "kubeadm:kubelet-bootstrap": ("system:node-bootstrapper", node_token),
        "kubeadm:node-autoapprove-bootstrap": ("system:certificates.k8s.io:certificatesigningrequests:nodeclient", node_token),
        "kubeadm:node-autoapprove-certificate-rotation": (
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes",
        ),
    }


async def test_token_cleaner_deletes_expired_tokens(tcluster: Cluster, client: RESTClient) -> None:
    expired = await make_token(client, ttl=60, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    soon = await make_token(client, ttl=2)  # expires in 1 to 2 s (the expiration has whole seconds)
    forever = await make_token(client, ttl=0)

    async def gone(token: str) -> bool:
        listed = await client.list(SECRETS, namespace="kube-system")
        return bt.secret_name(token[:6]) not in {s["metadata"]["name"] for s in listed["items"]}

    await wait_async(lambda: gone(expired), what="the expired token deleted")
    assert not await gone(soon)
    await wait_async(lambda: gone(soon), timeout=10, what="the token deleted once expired")
    assert not await gone(forever)
    assert whoami(tcluster, forever)[0] == 201


# ---- k8py token ----------------------------------------------------------------------------------


def test_cli_create_list_delete(tcluster: Cluster) -> None:
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}\n", k8py(tcluster, "token", "generate").stdout)
    res = k8py(tcluster, "token", "create", "abcdef.0123456789abcdef", "--ttl", "2h", "--description", "cli test")
    assert res.returncode == 0 and res.stdout == "abcdef.0123456789abcdef\n", res.stderr
    res = k8py(tcluster, "token", "create", "abcdef.0123456789abcdef")
    assert res.returncode == 1 and "a token with id 'abcdef' already exists" in res.stderr
    res = k8py(tcluster, "token", "create", "--usages", "signing,bogus")
    assert res.returncode == 1 and "invalid bootstrap token usage string: bogus" in res.stderr
    res = k8py(tcluster, "token", "create", "--ttl", "0", "--usages", "signing", "--groups", "", "--print-join-command",
               "--kubeconfig", str(tcluster.kubeconfig))
    assert res.returncode == 0, res.stderr
    pin = bt.ca_cert_hashes(ca_pem(tcluster))[0]
    m = re.fullmatch(rf"k8py join 127\.0\.0\.1:{tcluster.port} --token ([a-z0-9.]{{23}}) --discovery-token-ca-cert-hash {pin} \n",
                     res.stdout)
    assert m, res.stdout
    joined = m.group(1)
    listing = k8py(tcluster, "token", "list").stdout.splitlines()
    header = "TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION"
    assert listing[0].startswith(header) and listing[0].endswith("EXTRA GROUPS")
    rows = {line.split()[0]: line.split() for line in listing[1:]}
    assert rows["abcdef.0123456789abcdef"][1] in ("1h", "2h")
    assert rows["abcdef.0123456789abcdef"][3:] == [
        "authentication,signing", "cli", "test", "system:bootstrappers:kubeadm:default-node-token",
    ]
    assert rows[joined][1:] == ["<forever>", "<never>", "signing", "<none>", "<none>"]
    res = k8py(tcluster, "token", "delete", "abcdef", joined)
    assert res.stdout == f'bootstrap token "abcdef" deleted\nbootstrap token "{joined[:6]}" deleted\n', res.stderr
    after = k8py(tcluster, "token", "list").stdout
    assert "abcdef." not in after and joined not in after
    res = k8py(tcluster, "token", "delete", "abcdef")
    assert res.returncode == 1 and "failed to delete bootstrap token 'abcdef'" in res.stderr


# ---- under RBAC ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rbac_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("k8py-tokens-rbac"),
        extra=("--disable-scheduler", "--controllers", "tokencleaner", "--authorization-mode", "RBAC"),
    )
    yield c
    c.stop()


async def test_rbac_anonymous_cluster_info_and_node_token_permissions(rbac_cluster: Cluster) -> None:
    """kubeadm's bootstrap-token phase objects under RBAC: anonymous may get cluster-info (only),
    the default node token may get Nodes and create CSRs, nothing else."""
    async with RESTClient.from_kubeconfig(rbac_cluster.kubeconfig) as admin:
        assert http(rbac_cluster, "GET", bt.CLUSTER_INFO_PATH, client_cert=False).status == 403
        await bt.ensure_bootstrap_token_objects(admin, rbac_cluster.url, ca_pem(rbac_cluster))
        token = await make_token(admin)

    resp = wait_for(
        lambda: (r := http(rbac_cluster, "GET", bt.CLUSTER_INFO_PATH, client_cert=False)).status == 200 and r,
        what="anonymous access to cluster-info",
    )
    assert "kubeconfig" in resp.json()["data"]
    assert http(rbac_cluster, "GET", "/api/v1/namespaces/kube-public/configmaps", client_cert=False).status == 403

    def can_i(*args: str) -> str:
        return rbac_cluster.kubectl(
            "--kubeconfig=/dev/null", f"--server={rbac_cluster.url}",
            f"--certificate-authority={rbac_cluster.data_dir / 'pki' / 'ca.crt'}", f"--token={token}",
            "auth", "can-i", *args, check=False,
        ).stdout.strip()

    assert can_i("get", "nodes/node-1") == "yes"
    assert can_i("create", "certificatesigningrequests") == "yes"
    assert can_i("list", "secrets", "-n", "kube-system") == "no"
    assert can_i("get", "configmaps/cluster-info", "-n", "kube-public") == "no"  # a token user is not anonymous
