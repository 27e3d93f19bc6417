"""certificates.k8s.io/v1 CertificateSigningRequests: API semantics, approval and signing per signer."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8py.api.errors import StatusError
from k8py.api.registry import Registry
from k8py.apiserver.admission import Attributes, UserInfo
from k8py.apiserver.admission_plugins.certificates import CertificateAdmission
from k8py.apiserver.authorization import Attributes as AuthzAttributes
from k8py.apiserver.authorization import Decision
from k8py.controllers.certificates.cleaner import should_delete
from tests.conftest import Cluster, http, start_cluster, wait_for

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CLIENT, KUBELET_CLIENT, SERVING = (
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("csr"), extra=("--disable-scheduler", "--controllers", "csrapproving,csrsigning,csrcleaner")
    )
    yield c
    c.stop()


def request_pem(cn: str, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return base64.b64encode(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)).decode()


def csr_body(signer: str, request: str, usages: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": f"csr-{uuid.uuid4().hex[:8]}"},
        "spec": {"signerName": signer, "request": request, "usages": usages, **spec},
    }


def create(cluster: Cluster, body: dict[str, Any]) -> dict[str, Any]:
    resp = http(cluster, "POST", CSRS, body)
    assert resp.status == 201, resp.body
    return resp.json()


def get(cluster: Cluster, name: str) -> dict[str, Any]:
    return http(cluster, "GET", f"{CSRS}/{name}").json()


def issued(cluster: Cluster, name: str) -> x509.Certificate:
    pem = wait_for(lambda: (get(cluster, name).get("status") or {}).get("certificate"), what=f"certificate of {name}")
    return x509.load_pem_x509_certificate(base64.b64decode(pem))


def condition_types(csr: dict[str, Any]) -> list[str]:
    return [c["type"] for c in (csr.get("status") or {}).get("conditions") or []]


def test_create_records_the_requesting_user_and_no_status(cluster: Cluster) -> None:
    body = csr_body(CLIENT, request_pem("jane"), ["client auth"], username="mallory", groups=["mallory-group"], uid="x")
    body["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    created = create(cluster, body)
    spec = created["spec"]
    assert spec["username"] == "kubernetes-admin"
    assert "system:authenticated" in spec["groups"] and "mallory-group" not in spec["groups"]
    assert "uid" not in spec
    assert not (created.get("status") or {}).get("conditions")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"request": base64.b64encode(b"nope").decode()}, "PEM block type must be CERTIFICATE REQUEST"),
        ({"usages": []}, "spec.usages: Required value: usages must be provided"),
        ({"usages": ["client auth", "flying"]}, 'spec.usages[1]: Unsupported value: "flying"'),
        ({"signerName": "kubernetes.io/legacy-unknown"}, "the legacy signerName is not allowed via this API version"),
        ({"signerName": "nodomain"}, "must be a fully qualified domain and path of the form"),
        ({"expirationSeconds": 300}, "may not specify a duration less than 600 seconds (10 minutes)"),
    ],
)
def test_create_validation(cluster: Cluster, spec: dict[str, Any], message: str) -> None:
    body = csr_body(CLIENT, request_pem("jane"), ["client auth"])
    body["spec"].update(spec)
    resp = http(cluster, "POST", CSRS, body)
    assert resp.status == 422, resp.body
    assert message in resp.json()["message"]


def test_system_masters_client_certificates_are_refused(cluster: Cluster) -> None:
    resp = http(cluster, "POST", CSRS, csr_body(CLIENT, request_pem("root", ("system:masters",)), ["client auth"]))
    assert resp.status == 403, resp.body
    assert "with system:masters group is not allowed" in resp.json()["message"]


def test_spec_and_status_do_not_change_with_the_main_resource(cluster: Cluster) -> None:
    created = create(cluster, csr_body(CLIENT, request_pem("jane"), ["client auth"]))
    changed = {**created, "metadata": {**created["metadata"], "labels": {"a": "b"}}}
    changed["spec"] = {**created["spec"], "usages": ["client auth", "digital signature"], "signerName": "example.com/x"}
    changed["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Sneaky"}]}
    resp = http(cluster, "PUT", f"{CSRS}/{created['metadata']['name']}", changed)
    assert resp.status == 200, resp.body
    updated = resp.json()
    assert updated["metadata"]["labels"] == {"a": "b"}
    assert updated["spec"] == created["spec"]
    assert not (updated.get("status") or {}).get("conditions")


def test_kubectl_approve_signs_a_client_certificate(cluster: Cluster) -> None:
    body = csr_body(CLIENT, request_pem("jane", ("dev",)), ["client auth", "digital signature"], expirationSeconds=3600)
    name = create(cluster, body)["metadata"]["name"]
    cluster.kubectl("certificate", "approve", name)
    cert = issued(cluster, name)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "jane"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "dev"
    ca = x509.load_pem_x509_certificate((cluster.data_dir / "pki" / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(seconds=3600)
    approved = get(cluster, name)["status"]["conditions"][0]
    assert approved["type"] == "Approved" and approved["reason"] == "KubectlApprove"
    assert approved["lastUpdateTime"] and approved["lastTransitionTime"]
    out = cluster.kubectl("get", "csr", name).stdout.splitlines()
    assert out[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert out[1].split()[2:] == [CLIENT, "kubernetes-admin", "60m", "Approved,Issued"]


def test_kubectl_deny(cluster: Cluster) -> None:
    name = create(cluster, csr_body(CLIENT, request_pem("jane"), ["client auth"]))["metadata"]["name"]
    cluster.kubectl("certificate", "deny", name)
    csr = get(cluster, name)
    assert condition_types(csr) == ["Denied"]
    assert cluster.kubectl("get", "csr", name, "--no-headers").stdout.split()[-1] == "Denied"


def test_kubelet_client_csrs_are_auto_approved_and_signed(cluster: Cluster) -> None:
    body = csr_body(KUBELET_CLIENT, request_pem("system:node:n1", ("system:nodes",)), ["digital signature", "client auth"])
    name = create(cluster, body)["metadata"]["name"]
    cert = issued(cluster, name)
    approved = get(cluster, name)["status"]["conditions"][0]
    assert (approved["type"], approved["reason"]) == ("Approved", "AutoApproved")
    assert approved["message"] == "Auto approving kubelet client certificate after SubjectAccessReview."
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"


def test_kubelet_serving_csrs_wait_for_manual_approval(cluster: Cluster) -> None:
    serving = csr_body(
        SERVING, request_pem("system:node:n1", ("system:nodes",), ("n1",), ("10.0.0.1",)),
        ["digital signature", "server auth"],
    )
    name = create(cluster, serving)["metadata"]["name"]
    # a kubelet client CSR created after it is approved: the approver has looked at both by then
    later = create(cluster, csr_body(KUBELET_CLIENT, request_pem("system:node:n2", ("system:nodes",)),
                                     ["digital signature", "client auth"]))["metadata"]["name"]
    issued(cluster, later)
    assert condition_types(get(cluster, name)) == []
    csr = get(cluster, name)
    csr["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Admin", "message": "ok"}]}
    resp = http(cluster, "PUT", f"{CSRS}/{name}/approval", csr)
    assert resp.status == 200, resp.body
    cert = issued(cluster, name)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["n1"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_signer_refuses_an_invalid_kubelet_client_csr(cluster: Cluster) -> None:
    body = csr_body(KUBELET_CLIENT, request_pem("system:node:n1", ("evil",)), ["digital signature", "client auth"])
    name = create(cluster, body)["metadata"]["name"]
    cluster.kubectl("certificate", "approve", name)
    csr = wait_for(lambda: "Failed" in condition_types(get(cluster, name)) and get(cluster, name), what="Failed")
    failed = csr["status"]["conditions"][-1]
    assert (failed["reason"], failed["message"]) == ("SignerValidationFailure", "subject organization is not system:nodes")
    assert not csr["status"].get("certificate")
    assert cluster.kubectl("get", "csr", name, "--no-headers").stdout.split()[-1] == "Approved,Failed"


def test_approval_and_status_subresources_guard_each_other(cluster: Cluster) -> None:
    name = create(cluster, csr_body(CLIENT, request_pem("jane"), ["client auth"]))["metadata"]["name"]
    csr = get(cluster, name)
    csr["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "ViaStatus"}]}
    resp = http(cluster, "PUT", f"{CSRS}/{name}/status", csr)
    assert resp.status == 422 and 'updates may not add a condition of type \\"Approved\\"' in resp.body.decode(), resp.body
    cluster.kubectl("certificate", "approve", name)
    issued(cluster, name)
    csr = get(cluster, name)
    csr["status"]["conditions"] = []
    resp = http(cluster, "PUT", f"{CSRS}/{name}/approval", csr)
    assert resp.status == 422 and "may not remove a condition" in resp.body.decode(), resp.body
    csr = get(cluster, name)
    csr["status"]["certificate"] = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").decode()
    resp = http(cluster, "PUT", f"{CSRS}/{name}/status", csr)
    assert resp.status == 422 and "updates may not modify existing certificate content" in resp.body.decode(), resp.body
    csr = get(cluster, name)
    csr["status"]["conditions"].append({"type": "Failed", "status": "True"})
    resp = http(cluster, "PUT", f"{CSRS}/{name}/approval", csr)
    assert resp.status == 422 and 'updates may not add a condition of type \\"Failed\\"' in resp.body.decode(), resp.body
    csr = get(cluster, name)
    csr["status"]["conditions"].append({"type": "Denied", "status": "True"})
    resp = http(cluster, "PUT", f"{CSRS}/{name}/approval", csr)
    assert resp.status == 422 and "Approved and Denied conditions are mutually exclusive" in resp.body.decode()


def test_cleaner_rules() -> None:
    now = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    old, recent = "2030-01-01T00:00:00Z", "2030-01-01T23:30:00Z"

    def csr(created: str, *conds: tuple[str, str]) -> dict[str, Any]:
        return {"metadata": {"creationTimestamp": created},
                "status": {"conditions": [{"type": t, "status": "True", "lastUpdateTime": u} for t, u in conds]}}

    assert should_delete(csr("2029-12-31T00:00:00Z"), now) == "it has been pending for more than a day"
    assert should_delete(csr(recent), now) == ""
    assert should_delete(csr(old, ("Denied", old)), now) == "it was denied more than an hour ago"
    assert should_delete(csr(old, ("Denied", recent)), now) == ""
    assert should_delete(csr(old, ("Approved", recent), ("Failed", old)), now) == "it failed more than an hour ago"
    assert should_delete(csr(old, ("Approved", old)), now) == ""  # approved, not issued yet


class _SignerAuthorizer:
    """Allows only `verb` on the signers named in `names`."""

    def __init__(self, verb: str, *names: str) -> None:
        self.verb, self.names = verb, names

    def authorize(self, user: UserInfo, attributes: AuthzAttributes) -> tuple[Decision, str]:
        ok = (attributes.verb, attributes.resource, attributes.api_group) == (self.verb, "signers", "certificates.k8s.io")
        return (Decision.ALLOW if ok and attributes.name in self.names else Decision.NO_OPINION), ""


def _attrs(subresource: str, obj: dict[str, Any], old: dict[str, Any]) -> Attributes:
    info = Registry().get("certificates.k8s.io", "v1", "certificatesigningrequests")
    assert info is not None
    return Attributes("UPDATE", info, "", "csr-1", obj, old, subresource, UserInfo("jane"), False)


def test_approving_and_signing_need_the_signer_verbs() -> None:
    csr = csr_body(CLIENT, request_pem("jane"), ["client auth"])
    approved = {**csr, "status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    signed = {**csr, "status": {**approved["status"], "certificate": "Y2VydA=="}}
    for allowed in (CLIENT, "kubernetes.io/*"):  # the signer's name, or its domain's wildcard
        CertificateAdmission(_SignerAuthorizer("approve", allowed)).validate(_attrs("approval", approved, csr))
        CertificateAdmission(_SignerAuthorizer("sign", allowed)).validate(_attrs("status", signed, approved))
    with pytest.raises(StatusError, match=f'user not permitted to approve requests with signerName "{CLIENT}"'):
        CertificateAdmission(_SignerAuthorizer("approve", SERVING)).validate(_attrs("approval", approved, csr))
    with pytest.raises(StatusError, match=f'user not permitted to sign requests with signerName "{CLIENT}"'):
        CertificateAdmission(_SignerAuthorizer("approve", CLIENT)).validate(_attrs("status", signed, approved))
    # a status update that neither issues nor fails needs no signer permission
    CertificateAdmission(_SignerAuthorizer("none")).validate(_attrs("status", signed, signed))


RBAC_OBJECTS = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: csr-approval-only}
rules:
- {apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests], verbs: [get, list, watch, create]}
- {apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests/approval], verbs: [update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: jane-csr-approval-only}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-approval-only}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}, {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-nodeclient}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
"""
SIGNER_APPROVER = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: client-signer-approver}
rules:
- {apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [kubernetes.io/kube-apiserver-client], verbs: [approve]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: jane-client-signer-approver}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: client-signer-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}]
"""


@pytest.fixture(scope="module")
def rbac_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("csr-rbac"),
        extra=("--disable-scheduler", "--authorization-mode", "Node,RBAC", "--controllers", "csrapproving,csrsigning"),
    )
    c.kubectl("create", "-f", "-", input=RBAC_OBJECTS)
    yield c
    c.stop()


def _create_as(cluster: Cluster, user: str, body: dict[str, Any]) -> str:
    cluster.kubectl("--as", user, "create", "-f", "-", input=json.dumps(body))
    return body["metadata"]["name"]


def test_rbac_approval_needs_approve_on_the_signer(rbac_cluster: Cluster) -> None:
    name = _create_as(rbac_cluster, "jane", csr_body(CLIENT, request_pem("jane"), ["client auth"]))
    res = rbac_cluster.kubectl("--as", "jane", "certificate", "approve", name, check=False)
    assert res.returncode != 0
    assert f'user not permitted to approve requests with signerName "{CLIENT}"' in res.stderr, res.stderr
    rbac_cluster.kubectl("create", "-f", "-", input=SIGNER_APPROVER)
    wait_for(lambda: rbac_cluster.kubectl("--as", "jane", "certificate", "approve", name, check=False).returncode == 0,
             what="approval once jane may approve for the signer")
    issued(rbac_cluster, name)


def test_rbac_auto_approval_needs_nodeclient(rbac_cluster: Cluster) -> None:
    usages = ["digital signature", "client auth"]
    denied = _create_as(rbac_cluster, "jane", csr_body(KUBELET_CLIENT, request_pem("system:node:n8", ("system:nodes",)), usages))
    allowed = _create_as(rbac_cluster, "bob", csr_body(KUBELET_CLIENT, request_pem("system:node:n9", ("system:nodes",)), usages))
    issued(rbac_cluster, allowed)  # the approver has seen both by then
    assert condition_types(get(rbac_cluster, denied)) == []
    assert get(rbac_cluster, denied)["spec"]["username"] == "jane"
