"""Legacy Secret-based service account tokens, made only on request.

One `k8py up --authorization-mode RBAC` (so the controller manager writes with per-controller
service account credentials, except serviceaccount-token, which uses its own client as
upstream's does) running serviceaccount-token: an annotated token Secret is filled, its token
authenticates (`kubectl auth whoami --token`) until the Secret or the ServiceAccount goes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from k8py.apiserver.legacytokens import LAST_USED_LABEL, legacy_claims
from k8py.apiserver.tokens import TokenSigner
from k8py.controllers.manager import select
from k8py.controllers.serviceaccounttoken import load_private_key
from tests.conftest import Cluster, start_cluster, wait_for

NS = "default"


@pytest.fixture(scope="module")
def lcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("k8py-legacy-tokens"),
        extra=("--disable-scheduler", "--authorization-mode", "RBAC", "--controllers", "serviceaccount,serviceaccount-token"),
    )
    yield c
    c.stop()


def token_kubectl(cluster: Cluster, token: str, *args: str) -> Any:
    """kubectl authenticated only by a bearer token (no client certificate)."""
    return cluster.kubectl(
        "--kubeconfig=/dev/null", f"--server={cluster.url}", f"--certificate-authority={cluster.data_dir / 'pki' / 'ca.crt'}",
        f"--token={token}", *args, check=False,
    )


def make_token_secret(cluster: Cluster, sa: str, secret: str, uid: str = "") -> None:
    uid_line = f"\n    kubernetes.io/service-account.uid: {uid}" if uid else ""
    cluster.kubectl("create", "-n", NS, "-f", "-", input=(
        f"apiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\nmetadata:\n  name: {secret}\n"
        f"  annotations:\n    kubernetes.io/service-account.name: {sa}{uid_line}\n"
    ))


def filled(cluster: Cluster, secret: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := cluster.kubectl_json("get", "secret", "-n", NS, secret)).get("data", {}).get("token") and s,
        what=f"secret {secret}'s token",
    )


def gone(cluster: Cluster, *args: str) -> bool:
    return "NotFound" in cluster.kubectl("get", "-n", NS, *args, check=False).stderr


def test_controller_name_and_alias() -> None:
    assert select("serviceaccount-token-controller") == ["serviceaccount-token"]
    assert "serviceaccount-token" in select("*")


def test_token_secret_lifecycle(lcluster: Cluster) -> None:
    lcluster.kubectl("create", "serviceaccount", "-n", NS, "legacy")
    sa = lcluster.kubectl_json("get", "serviceaccount", "-n", NS, "legacy")
    make_token_secret(lcluster, "legacy", "legacy-token")
    secret = filled(lcluster, "legacy-token")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["namespace"] == NS
    assert data["ca.crt"] == (lcluster.data_dir / "pki" / "ca.crt").read_text()
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == sa["metadata"]["uid"]
    token = data["token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims == {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": NS,
        "kubernetes.io/serviceaccount/secret.name": "legacy-token",
        "kubernetes.io/serviceaccount/service-account.name": "legacy",
        "kubernetes.io/serviceaccount/service-account.uid": sa["metadata"]["uid"],
        "sub": f"system:serviceaccount:{NS}:legacy",
    }
    assert token in lcluster.kubectl("describe", "secret", "-n", NS, "legacy-token").stdout

    res = token_kubectl(lcluster, token, "auth", "whoami", "-o", "json")
    assert res.returncode == 0, res.stderr
    user = json.loads(res.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{NS}:legacy" and user["uid"] == sa["metadata"]["uid"]
    assert set(user["groups"]) == {"system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"}
    assert "Warning" not in res.stderr  # never auto-generated: no warning
    review = json.loads(lcluster.kubectl("create", "-f", "-", "-o", "json", input=json.dumps({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token},
    })).stdout)["status"]
    assert review["authenticated"] and review["user"]["username"] == user["username"]
    assert review["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    labels = lcluster.kubectl_json("get", "secret", "-n", NS, "legacy-token")["metadata"].get("labels", {})
    assert labels.get(LAST_USED_LABEL) == today

    # the right key, but not the Secret's copy
    key = load_private_key(str(lcluster.data_dir / "pki" / "sa.key"))
    other = TokenSigner(key).sign({**legacy_claims(sa, "legacy-token"), "extra": 1})
    assert "Unauthorized" in token_kubectl(lcluster, other, "auth", "whoami").stderr
    # the wrong key
    forged = TokenSigner(ec.generate_private_key(ec.SECP256R1())).sign(legacy_claims(sa, "legacy-token"))
    assert "Unauthorized" in token_kubectl(lcluster, forged, "auth", "whoami").stderr

    lcluster.kubectl("delete", "secret", "-n", NS, "legacy-token")
    assert "Unauthorized" in token_kubectl(lcluster, token, "auth", "whoami").stderr


def test_secret_of_a_missing_or_other_service_account_is_deleted(lcluster: Cluster) -> None:
    lcluster.kubectl("create", "serviceaccount", "-n", NS, "doomed")
    make_token_secret(lcluster, "doomed", "doomed-token")
    token = base64.b64decode(filled(lcluster, "doomed-token")["data"]["token"]).decode()
    lcluster.kubectl("delete", "serviceaccount", "-n", NS, "doomed")
    wait_for(lambda: gone(lcluster, "secret", "doomed-token"), what="the token secret's deletion")
    assert "Unauthorized" in token_kubectl(lcluster, token, "auth", "whoami").stderr

    lcluster.kubectl("create", "serviceaccount", "-n", NS, "recreated")
    make_token_secret(lcluster, "recreated", "stale-token", uid="00000000-0000-0000-0000-000000000000")
    wait_for(lambda: gone(lcluster, "secret", "stale-token"), what="the deletion of a token secret of another uid")
