"""Access and token reviews, service account tokens, and the authorizer chain.

End to end with the real kubectl (`auth can-i`, `auth can-i --list`, `auth whoami`,
`create token`) against `k8py up`, plus raw requests for the review kinds kubectl
has no command for, and unit tests of the pieces.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from k8py.apiserver.admission import UserInfo
from k8py.apiserver.authorization import (
    AlwaysAllow,
    Attributes,
    Chain,
    Decision,
    NonResourceRule,
    ResourceRule,
    Rules,
    forbidden,
)
from k8py.apiserver.authreviews import Reviews
from k8py.apiserver.tokens import InvalidToken, TokenSigner
from k8py.bootstrap.pki import ensure_pki, load_service_account_key
from tests.conftest import Cluster, http

AUTHZ = "/apis/authorization.k8s.io/v1"
AUTHN = "/apis/authentication.k8s.io/v1"


def post(cluster: Cluster, path: str, body: dict[str, Any]) -> Any:
    return http(cluster, "POST", path, body)


def token_kubectl(cluster: Cluster, token: str, *args: str) -> Any:
    """kubectl authenticated only by a bearer token (no client certificate)."""
    return cluster.kubectl(
        "--kubeconfig=/dev/null", f"--server={cluster.url}", f"--certificate-authority={cluster.data_dir / 'pki' / 'ca.crt'}",
        f"--token={token}", *args, check=False,
    )


# ---- kubectl -------------------------------------------------------------------------------------


def test_discovery_lists_the_reviews(cluster: Cluster) -> None:
    for gv, expected in (
        ("authorization.k8s.io/v1", {
            "localsubjectaccessreviews": ("LocalSubjectAccessReview", True),
            "selfsubjectaccessreviews": ("SelfSubjectAccessReview", False),
            "selfsubjectrulesreviews": ("SelfSubjectRulesReview", False),
            "subjectaccessreviews": ("SubjectAccessReview", False),
        }),
        ("authentication.k8s.io/v1", {
            "selfsubjectreviews": ("SelfSubjectReview", False),
            "tokenreviews": ("TokenReview", False),
        }),
    ):
        resources = {r["name"]: r for r in json.loads(cluster.kubectl("get", "--raw", f"/apis/{gv}").stdout)["resources"]}
        assert set(resources) == set(expected)
        for name, (kind, namespaced) in expected.items():
            r = resources[name]
            assert (r["kind"], r["namespaced"], r["verbs"]) == (kind, namespaced, ["create"])
            assert "storageVersionHash" not in r  # nothing is stored
    out = cluster.kubectl("api-resources", "--api-group=authorization.k8s.io").stdout
    assert "selfsubjectaccessreviews" in out and "SelfSubjectAccessReview" in out


def test_auth_can_i(cluster: Cluster, namespace: str) -> None:
    assert cluster.kubectl("auth", "can-i", "get", "pods").stdout.strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "delete", "deployments.apps", "-n", namespace).stdout.strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "get", "/healthz").stdout.strip() == "yes"
    out = cluster.kubectl("auth", "can-i", "--list", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert out[1].split() == ["*.*", "[]", "[]", "[*]"]
    assert out[2].split() == ["[*]", "[]", "[*]"]


def test_auth_whoami(cluster: Cluster) -> None:
    lines = [line.split(None, 1) for line in cluster.kubectl("auth", "whoami").stdout.splitlines()]
    assert lines == [["ATTRIBUTE", "VALUE"], ["Username", "kubernetes-admin"], ["Groups", "[system:masters system:authenticated]"]]
    review = json.loads(cluster.kubectl("auth", "whoami", "-o", "json").stdout)
    assert review["kind"] == "SelfSubjectReview" and review["apiVersion"] == "authentication.k8s.io/v1"
    assert review["status"]["userInfo"] == {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}


def test_service_account_token_authenticates(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    uid = cluster.kubectl_json("get", "serviceaccount", "robot", "-n", namespace)["metadata"]["uid"]
    token = cluster.kubectl("create", "token", "robot", "-n", namespace).stdout.strip()

    out = token_kubectl(cluster, token, "auth", "whoami", "-o", "json")
    assert out.returncode == 0, out.stderr
    user = json.loads(out.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:robot" and user["uid"] == uid
    assert user["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    assert user["extra"]["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
    denied = token_kubectl(cluster, token, "get", "configmaps", "-n", namespace)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr  # authenticated, but RBAC grants nothing yet
    cluster.kubectl("create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace)
    cluster.kubectl("create", "rolebinding", "robot-reads", "--role=cm-reader",
                    f"--serviceaccount={namespace}:robot", "-n", namespace)
    assert token_kubectl(cluster, token, "get", "configmaps", "-n", namespace).returncode == 0

    # A token for another audience, a forged one, and one whose service account is gone: all 401.
    other = cluster.kubectl("create", "token", "robot", "--audience=https://vault.example", "-n", namespace).stdout.strip()
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (other, forged, "not-a-jwt"):
        out = token_kubectl(cluster, bad, "get", "configmaps", "-n", namespace)
        assert out.returncode != 0 and "Unauthorized" in out.stderr
    cluster.kubectl("delete", "serviceaccount", "robot", "-n", namespace)
    out = token_kubectl(cluster, token, "get", "configmaps", "-n", namespace)
    assert out.returncode != 0 and "Unauthorized" in out.stderr


def test_pod_bound_token(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    cluster.kubectl("run", "holder", "--image=busybox", "--restart=Never", "-n", namespace)
    pod_uid = cluster.kubectl_json("get", "pod", "holder", "-n", namespace)["metadata"]["uid"]
    token = cluster.kubectl(
        "create", "token", "robot", "--bound-object-kind=Pod", "--bound-object-name=holder", "-n", namespace
    ).stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=" * (-len(token.split(".")[1]) % 4)))
    assert claims["kubernetes.io"]["pod"] == {"name": "holder", "uid": pod_uid}
    out = token_kubectl(cluster, token, "auth", "whoami", "-o", "json")
    extra = json.loads(out.stdout)["status"]["userInfo"]["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["holder"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod_uid]
    cluster.kubectl("delete", "pod", "holder", "--grace-period=0", "--force", "-n", namespace)
    out = token_kubectl(cluster, token, "auth", "whoami")
    assert out.returncode != 0 and "Unauthorized" in out.stderr


def test_token_review(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    cluster.kubectl("create", "secret", "generic", "anchor", "--from-literal=a=b", "-n", namespace)
    token = cluster.kubectl(
        "create", "token", "robot", "--bound-object-kind=Secret", "--bound-object-name=anchor", "-n", namespace
    ).stdout.strip()

    def review(token: str, audiences: list[str] | None = None) -> Any:
        spec: dict[str, Any] = {"token": token, **({"audiences": audiences} if audiences else {})}
        r = post(cluster, f"{AUTHN}/tokenreviews", {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
        assert r.status == 201, r.body
        return r.json()["status"]

    status = review(token)
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{namespace}:robot"
    assert status["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    status = review(token, ["https://vault.example"])
    assert status["authenticated"] is False and "invalid for the target audiences" in status["error"]
    assert review("garbage")["authenticated"] is False
    cluster.kubectl("delete", "secret", "anchor", "-n", namespace)
    status = review(token)
    assert status["authenticated"] is False and 'secret "anchor" not found' in status["error"]

    r = post(cluster, f"{AUTHN}/tokenreviews", {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}})
    assert r.status == 400 and r.json()["message"] == "token is required for TokenReview in authentication"


def test_token_request_errors(cluster: Cluster, namespace: str) -> None:
    out = cluster.kubectl("create", "token", "nobody", "-n", namespace, check=False)
    assert out.returncode != 0 and 'serviceaccounts "nobody" not found' in out.stderr
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    out = cluster.kubectl("create", "token", "robot", "--duration=5m", "-n", namespace, check=False)
    assert out.returncode != 0 and "may not specify a duration less than 10 minutes" in out.stderr
    out = cluster.kubectl("create", "token", "robot", "--bound-object-kind=Pod", "--bound-object-name=nope", "-n", namespace, check=False)
    assert out.returncode != 0 and 'pods "nope" not found' in out.stderr
    r = http(cluster, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/robot/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 900},
    })
    assert r.status == 201
    body = r.json()
    assert body["kind"] == "TokenRequest" and body["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    expires = time.mktime(time.strptime(body["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (time.time() + 900)) < 60
    assert body["status"]["token"].count(".") == 2


def test_access_reviews(cluster: Cluster, namespace: str) -> None:
    attrs = {"verb": "get", "resource": "pods", "namespace": namespace}
    review = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "groups": ["devs"], "resourceAttributes": attrs},
    }
    r = post(cluster, f"{AUTHZ}/subjectaccessreviews", review)
    assert r.status == 201 and r.json()["status"]["allowed"] is False
    cluster.kubectl("create", "role", "pod-reader", "--verb=get", "--resource=pods", "-n", namespace)
    cluster.kubectl("create", "rolebinding", "devs-read", "--role=pod-reader", "--group=devs", "-n", namespace)
    r = post(cluster, f"{AUTHZ}/subjectaccessreviews", review)
    assert r.status == 201 and r.json()["status"]["allowed"] is True, r.json()
    cluster.kubectl("create", "rolebinding", "alice-reads", "--role=pod-reader", "--user=alice", "-n", namespace)
    r = post(cluster, f"{AUTHZ}/namespaces/{namespace}/localsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "spec": {"user": "alice", "resourceAttributes": attrs},
    })
    assert r.status == 201 and r.json()["status"]["allowed"] is True
    assert r.json()["metadata"]["namespace"] == namespace
    r = post(cluster, f"{AUTHZ}/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": "/metrics", "verb": "get"}},
    })
    assert r.status == 201 and r.json()["status"]["allowed"] is True

    # kube's validation messages
    cases = [
        (f"{AUTHZ}/subjectaccessreviews", "SubjectAccessReview", {"resourceAttributes": attrs},
         "spec.user: Invalid value: \"\": at least one of user or group must be specified"),
        (f"{AUTHZ}/selfsubjectaccessreviews", "SelfSubjectAccessReview", {},
         "exactly one of nonResourceAttributes or resourceAttributes must be specified"),
        (f"{AUTHZ}/selfsubjectaccessreviews", "SelfSubjectAccessReview",
         {"resourceAttributes": attrs, "nonResourceAttributes": {"path": "/", "verb": "get"}},
         "cannot be specified in combination with resourceAttributes"),
        (f"{AUTHZ}/namespaces/{namespace}/localsubjectaccessreviews", "LocalSubjectAccessReview",
         {"user": "a", "resourceAttributes": {**attrs, "namespace": "elsewhere"}}, "must match metadata.namespace"),
    ]
    for path, kind, spec, message in cases:
        r = post(cluster, path, {"apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec})
        assert r.status == 422 and r.json()["reason"] == "Invalid", r.body
        assert message in r.json()["message"]
    r = post(cluster, f"{AUTHZ}/selfsubjectrulesreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {},
    })
    assert r.status == 400 and r.json()["message"] == "no namespace on request"
    # scope: the local review lives in a namespace, the others do not; reviews only answer create
    assert post(cluster, f"{AUTHZ}/localsubjectaccessreviews", {"kind": "LocalSubjectAccessReview"}).status == 404
    assert post(cluster, f"{AUTHZ}/namespaces/{namespace}/selfsubjectaccessreviews", {}).status == 404
    assert http(cluster, "GET", f"{AUTHZ}/subjectaccessreviews").status == 405


# ---- units ---------------------------------------------------------------------------------------

ALICE = UserInfo("alice", ["devs", "system:authenticated"])


class Fixed:
    def __init__(self, decision: Decision, reason: str = "") -> None:
        self.decision, self.reason = decision, reason

    def authorize(self, user: UserInfo, attributes: Attributes) -> tuple[Decision, str]:
        return self.decision, self.reason


def test_chain_first_opinion_wins() -> None:
    get_pods = Attributes(verb="get", namespace="ns", resource="pods")
    assert Chain([Fixed(Decision.NO_OPINION, "rbac: no"), Fixed(Decision.ALLOW)]).authorize(ALICE, get_pods) == (Decision.ALLOW, "")
    assert Chain([Fixed(Decision.DENY, "node says no"), AlwaysAllow()]).authorize(ALICE, get_pods) == (Decision.DENY, "node says no")
    assert Chain([Fixed(Decision.NO_OPINION, "a"), Fixed(Decision.NO_OPINION, "b")]).authorize(ALICE, get_pods) == (
        Decision.NO_OPINION, "a\nb",
    )
    rules = Chain([Fixed(Decision.NO_OPINION), AlwaysAllow()]).rules_for(ALICE, "ns")
    assert rules == Rules([ResourceRule(("*",), ("*",), ("*",))], [NonResourceRule(("*",), ("*",))], incomplete=True)
    assert rules.resource_rules[0].to_json() == {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}


def test_reviews_report_the_decision() -> None:
    spec = {"resourceAttributes": {"verb": "get", "resource": "secrets", "namespace": "ns"}}
    for authorizer, status in (
        (Fixed(Decision.DENY, "secrets are off limits"), {"allowed": False, "denied": True, "reason": "secrets are off limits"}),
        (Fixed(Decision.NO_OPINION), {"allowed": False}),
        (AlwaysAllow(), {"allowed": True}),
    ):
        response = Reviews(authorizer, AlwaysAllow(), None)._decide({"spec": spec}, ALICE)
        assert response.status == 201 and json.loads(response.body)["status"] == status  # type: ignore[arg-type]


def test_forbidden_messages() -> None:
    e = forbidden(ALICE, Attributes(verb="list", namespace="ns", resource="pods"), "")
    assert (e.code, e.reason) == (403, "Forbidden")
    assert e.message == 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "ns"'
    e = forbidden(ALICE, Attributes(verb="get", api_group="apps", resource="deployments", subresource="scale", name="web"), "no")
    assert e.message == (
        'deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments/scale" in API group "apps" '
        "at the cluster scope: no"
    )
    assert e.details == {"name": "web", "group": "apps", "kind": "deployments"}
    e = forbidden(ALICE, Attributes(verb="get", resource_request=False, path="/metrics"), "")
    assert e.message == 'forbidden: User "alice" cannot get path "/metrics"'


def test_service_account_key_pair(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    key = load_service_account_key(pki)
    assert key is not None and pki.sa_key.stat().st_mode & 0o777 == 0o600
    before = pki.sa_key.read_bytes()
    ensure_pki(tmp_path)
    assert pki.sa_key.read_bytes() == before  # kept: tokens outlive restarts
    pki.sa_pub.write_bytes(b"junk")
    assert load_service_account_key(pki) is None
    ensure_pki(tmp_path)
    assert load_service_account_key(pki) is not None and pki.sa_key.read_bytes() != before


def test_token_signer() -> None:
    signer = TokenSigner(ec.generate_private_key(ec.SECP256R1()))
    now = time.time()
    token = signer.sign({"iss": signer.issuer, "exp": now + 60, "nbf": now, "sub": "x"})
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "kid": signer.kid}
    assert signer.verify(token, now)["sub"] == "x"
    for when, why in ((now + 61, "expired"), (now - 10, "not valid yet")):
        with pytest.raises(InvalidToken, match=why):
            signer.verify(token, when)
    other = TokenSigner(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(InvalidToken, match="invalid signature"):
        other.verify(token, now)
    with pytest.raises(InvalidToken, match="not issued by this cluster"):
        signer.verify(signer.sign({"iss": "https://elsewhere", "exp": now + 60}), now)
