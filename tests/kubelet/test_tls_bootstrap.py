"""Kubelet TLS bootstrapping and certificate rotation: a `k8py kubelet` given only a bootstrap
kubeconfig (a bootstrap token: system:bootstrap:abcdef in system:bootstrappers; Node,RBAC authorization
with kubeadm's CSR bindings) gets its client certificate through an
auto-approved CSR, registers its Node, renews the certificate before it expires (the cluster signs
for 15 s here) and serves with a kubelet-serving certificate once an administrator approves it."""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from k8py.bootstrap.pki import create_ca, generate_key, issue_client_cert
from k8py.client import ClientConfig
from k8py.kubelet.certificate import (
    CLIENT_PAIR,
    FileStore,
    kubeconfig_still_valid,
    rotation_deadline,
    serving_template,
    write_kubelet_kubeconfig,
)
from tests.conftest import Cluster, free_port, start_cluster, wait_for
from tests.controllers.conftest import Component, start_controller_manager

NODE = "tls-node"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
SIGNING_SECONDS = 15
TOKEN_SECRET = """
apiVersion: v1
kind: Secret
metadata: {name: bootstrap-token-abcdef, namespace: kube-system}
type: bootstrap.kubernetes.io/token
stringData:
  token-id: abcdef
  token-secret: 0123456789abcdef
  usage-bootstrap-authentication: "true"
  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token
"""
# what kubeadm binds: bootstrappers may create CSRs, which are auto-approved; nodes renew their own
KUBEADM_CSR_BINDINGS = "".join(
    f"""---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "{role}"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "{group}"}}]
"""
    for name, role, group in (
        ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", "system:bootstrappers"),
        ("kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
         "system:bootstrappers"),
        ("kubeadm:node-autoapprove-certificate-rotation",
         "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"),
    )
)
POD = f"""
apiVersion: v1
kind: Pod
metadata: {{name: after-expiry, namespace: default}}
spec:
  nodeName: {NODE}
  automountServiceAccountToken: false
  containers: [{{name: c, image: busybox}}]
"""


@dataclass
class Setup:
    cluster: Cluster
    boot: Path
    root: Path
    port: int
    kubelet: Component | None = None

    def start_kubelet(self) -> Component:
        n = len(list(self.cluster.data_dir.glob("kubelet*.log")))
        log_path = self.cluster.data_dir / f"kubelet{n}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "k8py.cli", "kubelet", "--runtime", "simulated", "--node-name", NODE,
                 "--root-dir", str(self.root), "--node-ip", "127.0.0.1", "--port", str(self.port),
                 "--bootstrap-kubeconfig", str(self.boot), "--kubeconfig", str(self.root / "kubeconfig"),
                 "--rotate-certificates", "--rotate-server-certificates", "-v"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            )
        self.kubelet = Component(proc, log_path)
        return self.kubelet

    def csrs(self) -> list[dict[str, Any]]:
        return self.cluster.kubectl_json("get", "csr")["items"]

    def client_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.root / "pki" / "kubelet-client-current.pem").read_bytes())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    cluster = start_cluster(
        tmp_path_factory.mktemp("tls"),
        extra=("--disable-scheduler", "--disable-controller-manager", "--authorization-mode", "Node,RBAC"),
    )
    pki = cluster.data_dir / "pki"
    cm = start_controller_manager(
        cluster, "csrapproving,csrsigning", "--no-leader-elect",
        "--cluster-signing-cert-file", str(pki / "ca.crt"), "--cluster-signing-key-file", str(pki / "ca.key"),
        "--cluster-signing-duration", f"{SIGNING_SECONDS}s",
    )
    cluster.kubectl("create", "-f", "-", input=TOKEN_SECRET + KUBEADM_CSR_BINDINGS)
    boot = cluster.data_dir / "bootstrap.conf"
    boot.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "tls-bootstrap",
        "clusters": [{"name": "k8py", "cluster": {
            "server": cluster.url, "certificate-authority-data": base64.b64encode((pki / "ca.crt").read_bytes()).decode()}}],
        "users": [{"name": "tls-bootstrap", "user": {"token": "abcdef.0123456789abcdef"}}],
        "contexts": [{"name": "tls-bootstrap", "context": {"cluster": "k8py", "user": "tls-bootstrap"}}],
    }))
    setup = Setup(cluster, boot, cluster.data_dir / "kubelet", free_port())
    setup.start_kubelet()
    try:
        yield setup
    finally:
        if setup.kubelet is not None:
            setup.kubelet.stop(signal.SIGTERM)
        cm.stop()
        cluster.stop()


def _ready(cluster: Cluster) -> bool:
    node = cluster.kubectl_json("get", "node", NODE)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or [])


def test_bootstrap_rotation_and_serving_certificate(setup: Setup) -> None:
    cluster = setup.cluster
    wait_for(lambda: _ready(cluster), timeout=20, what=f"node {NODE} Ready")

    # bootstrapped: an auto-approved node-csr-... from the bootstrap identity, written as the kubeconfig
    (boot,) = [c for c in setup.csrs() if c["metadata"]["name"].startswith("node-csr-")]
    assert boot["spec"]["username"] == "system:bootstrap:abcdef"
    assert "system:bootstrappers" in boot["spec"]["groups"]
    assert boot["spec"]["usages"] == ["digital signature", "client auth"]
    approved = boot["status"]["conditions"][0]
    assert (approved["reason"], approved["message"]) == (
        "AutoApproved", "Auto approving kubelet client certificate after SubjectAccessReview.")
    first = setup.client_cert()
    assert first.subject.rfc4514_string() == f"CN=system:node:{NODE},O=system:nodes"
    assert first.not_valid_after_utc - first.not_valid_before_utc == dt.timedelta(seconds=SIGNING_SECONDS)
    assert "kubelet-client-current.pem" in (setup.root / "kubeconfig").read_text()
    assert (setup.root / "pki" / "kubelet-client-current.pem").is_symlink()
    assert setup.kubelet is not None and "client certificate bootstrapped" in setup.kubelet.log()

    # the serving certificate waits for an administrator
    def serving() -> dict[str, Any] | None:
        return next((c for c in setup.csrs() if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"), None)

    csr = wait_for(serving, what="kubelet-serving CSR")
    assert csr["spec"]["username"] == f"system:node:{NODE}"
    assert not (csr.get("status") or {}).get("conditions")
    cluster.kubectl("certificate", "approve", csr["metadata"]["name"])
    pem = wait_for(lambda: (serving() or {}).get("status", {}).get("certificate"), what="serving certificate")
    issued = x509.load_pem_x509_certificate(base64.b64decode(pem))

    def presented() -> x509.Certificate:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", setup.port), timeout=5) as sock, ctx.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    wait_for(lambda: presented().serial_number == issued.serial_number, what="the kubelet serving the issued certificate")
    sans = presented().extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [NODE]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    # rotation: before the first certificate expires, a CSR of the node itself, approved as such
    def renewed() -> list[dict[str, Any]]:
        return [c for c in setup.csrs() if c["spec"]["signerName"] == KUBELET_CLIENT
                and c["spec"]["username"] == f"system:node:{NODE}" and (c.get("status") or {}).get("certificate")]

    (renewal, *_) = wait_for(renewed, timeout=SIGNING_SECONDS, what="a renewed client certificate")
    assert renewal["status"]["conditions"][0]["message"] == (
        "Auto approving self kubelet client certificate after SubjectAccessReview.")
    second = wait_for(lambda: (c := setup.client_cert()).serial_number != first.serial_number and c, what="rotation")
    assert second.not_valid_after_utc > first.not_valid_after_utc
    assert time.time() < first.not_valid_after_utc.timestamp()  # renewed before it expired
    assert "rotated the kubelet-client certificate" in setup.kubelet.log()

    # still working once the first certificate has expired: a pod bound to the node runs
    wait_for(lambda: time.time() > first.not_valid_after_utc.timestamp() + 1, timeout=SIGNING_SECONDS, what="expiry")
    cluster.kubectl("create", "serviceaccount", "default", check=False)
    cluster.kubectl("create", "-f", "-", input=POD)
    wait_for(lambda: cluster.kubectl_json("get", "pod", "after-expiry")["status"].get("phase") == "Running",
             what="a pod running after the first certificate expired")
    assert setup.kubelet.proc.poll() is None

    # a restart keeps the (rotated) certificate: no new bootstrap CSR
    setup.kubelet.stop()
    kubelet = setup.start_kubelet()
    wait_for(lambda: "registered" in kubelet.log(), what="the restarted kubelet")
    assert "bootstrapped" not in kubelet.log()
    assert len([c for c in setup.csrs() if c["metadata"]["name"].startswith("node-csr-")]) == 1


def _self_signed(lifetime: dt.timedelta, *, start: dt.datetime | None = None) -> tuple[bytes, bytes]:
    pair = issue_client_cert(create_ca(), f"system:node:{NODE}", ["system:nodes"])
    start = start or dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(pair.cert.subject).issuer_name(pair.cert.subject)
            .public_key(pair.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + lifetime).sign(pair.key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), pair.key_pem()


def test_rotation_deadline_is_70_to_84_percent_of_the_lifetime() -> None:
    cert = x509.load_pem_x509_certificate(_self_signed(dt.timedelta(seconds=1000))[0])
    offsets = [(rotation_deadline(cert) - cert.not_valid_before_utc).total_seconds() for _ in range(200)]
    assert 700 <= min(offsets) and max(offsets) <= 840 and max(offsets) - min(offsets) > 50


def test_file_store_and_kubeconfig_validity(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "pki", CLIENT_PAIR)
    assert store.current() is None
    kubeconfig = tmp_path / "kubeconfig"
    assert not kubeconfig_still_valid(kubeconfig)
    for lifetime in (dt.timedelta(hours=1), dt.timedelta(hours=2)):
        cert_pem, _ = _self_signed(lifetime)
        key = generate_key()
        path = store.update(cert_pem, key)
        assert os.readlink(store.current_path) == path.name and path.stat().st_mode & 0o777 == 0o600
    current = store.current()
    assert current is not None and current.not_valid_after_utc - current.not_valid_before_utc == dt.timedelta(hours=2)
    assert len(list((tmp_path / "pki").glob("kubelet-client-2*.pem"))) == 2
    write_kubelet_kubeconfig(kubeconfig, ClientConfig(server="https://127.0.0.1:6443", ca_pem=cert_pem), store.current_path)
    assert kubeconfig_still_valid(kubeconfig)
    expired, key_pem = _self_signed(dt.timedelta(hours=1), start=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    (tmp_path / "expired.pem").write_bytes(expired + key_pem)
    write_kubelet_kubeconfig(kubeconfig, ClientConfig(server="https://127.0.0.1:6443"), tmp_path / "expired.pem")
    assert not kubeconfig_still_valid(kubeconfig)


def test_serving_template_matches_only_its_names() -> None:
    template = serving_template(NODE, [NODE], ["10.0.0.1"])
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.load_pem_x509_csr(template.csr_pem(key))
    sans = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [NODE]
    cert = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(req.subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime.now(dt.UTC)).not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
            .add_extension(sans, critical=False).sign(key, hashes.SHA256()))
    assert template.matches(cert)
    assert not serving_template(NODE, [NODE], ["10.0.0.2"]).matches(cert)
