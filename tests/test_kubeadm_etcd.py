"""kubeadm's stacked and external etcd in `k8py init`'s manifests, and upload-certs: the etcd
static pod's flags, the API server's --etcd-* flags, the ClusterConfiguration joining nodes read,
the certificate key's AES-GCM format, and the kubeadm-certs Secret through a real API server.
(The HA cluster itself, etcd members and all: tests/network/test_kubeadm_ha.py.)"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8py.client import RESTClient
from k8py.client.resources import SECRETS
from k8py.kubeadm.certs import create_certs
from k8py.kubeadm.config import (
    ExternalEtcd,
    InitConfig,
    apply_cluster_configuration,
    cluster_configuration,
    load_config,
)
from k8py.kubeadm.controlplane import control_plane_manifests
from k8py.kubeadm.copycerts import (
    NONCE_SIZE,
    CertificateKeyError,
    certs_to_transfer,
    create_certificate_key,
    decode_key,
    decrypt_bytes,
    download_certs,
    encrypt_bytes,
    upload_certs,
)
from k8py.kubeadm.etcd import ADVERTISE_CLIENT_URLS_ANNOTATION, etcd_static_pod, write_local_etcd
from k8py.kubeadm.init import InitOptions, run_init, success_message
from k8py.kubeadm.layout import Layout
from k8py.kubeadm.preflight import external_etcd_checks
from tests.conftest import Cluster, free_port
from tests.etcdcluster import EtcdCluster, needs_etcd


def _config(tmp_path: Path, **overrides: Any) -> InitConfig:
    layout = Layout(tmp_path)
    config = InitConfig(node_name="cp0", advertise_address="10.197.0.1", cert_dir=layout.cert_dir,
                        kubernetes_dir=layout.kubernetes_dir)
    for k, v in overrides.items():
        setattr(config, k, v)
    return config


def _flags(command: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in command[1:])


def _argv_flags(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_init_writes_a_one_member_etcd_with_kubeadms_flags(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    config = _config(tmp_path)
    lines: list[str] = []
    write_local_etcd(config, layout, lines.append)
    pod = yaml.safe_load((layout.manifests_dir / "etcd.yaml").read_text())
    assert pod["metadata"]["labels"] == {"component": "etcd", "tier": "control-plane"}
    assert pod["metadata"]["annotations"] == {ADVERTISE_CLIENT_URLS_ANNOTATION: "https://10.197.0.1:2379"}
    container = pod["spec"]["containers"][0]
    assert container["command"][0] == "/usr/bin/etcd" and pod["spec"]["runtimeClassName"] == "process"
    pki = config.cert_dir / "etcd"
    assert _flags(container["command"]) == {
        "name": "cp0", "data-dir": str(tmp_path / "var/lib/etcd"),
        "listen-client-urls": "https://127.0.0.1:2379,https://10.197.0.1:2379",
        "advertise-client-urls": "https://10.197.0.1:2379",
        "listen-peer-urls": "https://10.197.0.1:2380", "initial-advertise-peer-urls": "https://10.197.0.1:2380",
        "initial-cluster": "cp0=https://10.197.0.1:2380", "initial-cluster-state": "new",
        "cert-file": str(pki / "server.crt"), "key-file": str(pki / "server.key"),
        "trusted-ca-file": str(pki / "ca.crt"), "client-cert-auth": "true",
        "peer-cert-file": str(pki / "peer.crt"), "peer-key-file": str(pki / "peer.key"),
        "peer-trusted-ca-file": str(pki / "ca.crt"), "peer-client-cert-auth": "true",
        "listen-metrics-urls": "http://127.0.0.1:2381", "snapshot-count": "10000",
        "experimental-initial-corrupt-check": "true", "experimental-watch-progress-notify-interval": "5s",
    }
    assert container["livenessProbe"]["httpGet"] == {"host": "127.0.0.1", "path": "/health", "port": 2381,
                                                     "scheme": "HTTP"}
    assert (tmp_path / "var/lib/etcd").stat().st_mode & 0o777 == 0o700
    assert lines == [f"[etcd] Creating static Pod manifest for local etcd in \"{layout.manifests_dir}\""]


def test_a_joining_member_names_the_whole_cluster(tmp_path: Path) -> None:
    config = _config(tmp_path, node_name="cp1", advertise_address="10.197.0.2")
    members = [("cp0", "https://10.197.0.1:2380"), ("cp1", "https://10.197.0.2:2380")]
    flags = _flags(etcd_static_pod(config, Layout(tmp_path), members, "existing")["spec"]["containers"][0]["command"])
    assert flags["initial-cluster"] == "cp0=https://10.197.0.1:2380,cp1=https://10.197.0.2:2380"
    assert flags["initial-cluster-state"] == "existing" and flags["name"] == "cp1"


def test_the_api_server_uses_the_local_member(tmp_path: Path) -> None:
    config = _config(tmp_path)
    argv = control_plane_manifests(config, Layout(tmp_path))["kube-apiserver.yaml"]["spec"]["containers"][0]["command"]
    assert _argv_flags(argv, "--etcd-servers") == "https://127.0.0.1:2379"
    assert _argv_flags(argv, "--etcd-cafile") == str(config.cert_dir / "etcd/ca.crt")
    assert _argv_flags(argv, "--etcd-certfile") == str(config.cert_dir / "apiserver-etcd-client.crt")
    assert _argv_flags(argv, "--etcd-keyfile") == str(config.cert_dir / "apiserver-etcd-client.key")


def test_external_etcd_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "kubeadm.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
        "etcd": {"external": {"endpoints": ["https://10.0.0.5:2379", "https://10.0.0.6:2379"],
                              "caFile": "/etc/etcd/ca.crt", "certFile": "/etc/etcd/c.crt", "keyFile": "/etc/etcd/c.key"}},
    }))
    config = load_config(path, _config(tmp_path))
    assert config.external_etcd == ExternalEtcd(["https://10.0.0.5:2379", "https://10.0.0.6:2379"], "/etc/etcd/ca.crt",
                                                "/etc/etcd/c.crt", "/etc/etcd/c.key")
    argv = control_plane_manifests(config, Layout(tmp_path))["kube-apiserver.yaml"]["spec"]["containers"][0]["command"]
    assert _argv_flags(argv, "--etcd-servers") == "https://10.0.0.5:2379,https://10.0.0.6:2379"
    assert [_argv_flags(argv, f) for f in ("--etcd-cafile", "--etcd-certfile", "--etcd-keyfile")] == [
        "/etc/etcd/ca.crt", "/etc/etcd/c.crt", "/etc/etcd/c.key"]
    # no local member: the etcd phase writes nothing
    layout = Layout(tmp_path)
    run_init(InitOptions(config, layout, skip_phases={"preflight", "certs", "kubeconfig", "control-plane",
                                                      "kubelet-start", "wait-control-plane", "upload-config",
                                                      "upload-certs", "mark-control-plane", "bootstrap-token",
                                                      "addon"}), lambda _line: None)
    assert not (layout.manifests_dir / "etcd.yaml").exists()
    # what joining nodes read back from kubeadm-config
    stored = cluster_configuration(config, layout.etcd_dir)
    assert apply_cluster_configuration(stored, InitConfig(), "kubeadm-config").external_etcd == config.external_etcd
    path.write_text(yaml.safe_dump({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
                                    "etcd": {"external": {"endpoints": []}}}))
    with pytest.raises(ValueError, match="etcd.external.endpoints"):
        load_config(path, InitConfig())


def test_the_stored_cluster_configuration_round_trips(tmp_path: Path) -> None:
    config = _config(tmp_path, control_plane_endpoint="10.197.0.1:6443", pod_subnet="10.42.0.0/16",
                     apiserver_cert_sans=["api.example"])
    doc = cluster_configuration(config, tmp_path / "var/lib/etcd")
    assert doc["etcd"] == {"local": {"dataDir": str(tmp_path / "var/lib/etcd")}}
    back = apply_cluster_configuration(yaml.safe_load(yaml.safe_dump(doc)), InitConfig(), "kubeadm-config")
    assert (back.control_plane_endpoint, back.pod_subnet, back.apiserver_cert_sans, back.external_etcd) == (
        "10.197.0.1:6443", "10.42.0.0/16", ["api.example"], None)


def test_certificate_key_encryption_is_kubeadms() -> None:
    key = create_certificate_key()
    assert len(key) == 64 and decode_key(key) == bytes.fromhex(key)
    raw = decode_key(key)
    data = b"-----BEGIN CERTIFICATE-----\n..."
    sealed = encrypt_bytes(data, raw)
    assert len(sealed) == NONCE_SIZE + len(data) + 16  # nonce | ciphertext | GCM tag
    assert sealed != encrypt_bytes(data, raw)  # a fresh nonce each time
    assert decrypt_bytes(sealed, raw) == data
    with pytest.raises(CertificateKeyError):
        decrypt_bytes(sealed, decode_key(create_certificate_key()))
    with pytest.raises(CertificateKeyError):
        decrypt_bytes(sealed[:-1] + bytes([sealed[-1] ^ 1]), raw)
    with pytest.raises(CertificateKeyError, match="nonce"):
        decrypt_bytes(b"short", raw)
    for bad in ("", "abc", "zz" * 32, key + "00"):
        with pytest.raises(CertificateKeyError, match="64 hex digits"):
            decode_key(bad)


def test_the_certificates_to_transfer_carry_kubeadms_names(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert {name: path.relative_to(config.cert_dir).as_posix() for name, path in certs_to_transfer(config).items()} == {
        "ca.crt": "ca.crt", "ca.key": "ca.key", "front-proxy-ca.crt": "front-proxy-ca.crt",
        "front-proxy-ca.key": "front-proxy-ca.key", "sa.pub": "sa.pub", "sa.key": "sa.key",
        "etcd-ca.crt": "etcd/ca.crt", "etcd-ca.key": "etcd/ca.key"}
    config.external_etcd = ExternalEtcd(["https://e:2379"], "/x/ca.crt", "/x/c.crt", "/x/c.key")
    external = certs_to_transfer(config)
    assert "etcd-ca.crt" not in external
    assert [str(external[n]) for n in ("external-etcd-ca.crt", "external-etcd.crt", "external-etcd.key")] == [
        "/x/ca.crt", "/x/c.crt", "/x/c.key"]


def test_the_success_message_has_the_control_plane_join_only_with_an_endpoint_and_uploaded_certs(
        tmp_path: Path) -> None:
    config = _config(tmp_path)
    create_certs(config, lambda _line: None)
    token, key = "abcdef.0123456789abcdef", create_certificate_key()
    plain = success_message(InitOptions(config, Layout(tmp_path), upload_certs=True, certificate_key=key), token)
    assert "--control-plane" not in plain and "k8py join 10.197.0.1:6443 --token abcdef" in plain
    config.control_plane_endpoint = "10.197.0.1:6443"
    text = success_message(InitOptions(config, Layout(tmp_path), upload_certs=True, certificate_key=key), token)
    assert f"\t--control-plane --certificate-key {key}\n" in text
    assert text.index("--control-plane") < text.index("join any number of worker nodes")


async def test_upload_and_download_certs_through_the_api_server(cluster: Cluster, tmp_path: Path) -> None:
    source = _config(tmp_path / "cp0")
    create_certs(source, lambda _line: None)
    target = _config(tmp_path / "cp1")
    key = create_certificate_key()
    lines: list[str] = []
    async with RESTClient.from_kubeconfig(cluster.kubeconfig) as client:
        await upload_certs(client, source, key, lines.append)
        secret = await client.get(SECRETS, "kubeadm-certs", namespace="kube-system")
        owner = secret["metadata"]["ownerReferences"][0]
        token_secret = await client.get(SECRETS, owner["name"], namespace="kube-system")
        assert owner["uid"] == token_secret["metadata"]["uid"] and owner["controller"]
        token_data = {k: base64.b64decode(v).decode() for k, v in token_secret["data"].items()}
        assert "expiration" in token_data and not any(k.startswith("usage-bootstrap-") for k in token_data)
        with pytest.raises(CertificateKeyError):
            await download_certs(client, target, create_certificate_key(), lines.append)
        await download_certs(client, target, key, lines.append)
    for name, path in certs_to_transfer(source).items():
        copied = certs_to_transfer(target)[name]
        assert copied.read_bytes() == path.read_bytes(), name
        assert copied.stat().st_mode & 0o777 == (0o600 if copied.suffix == ".key" else 0o644)
    assert lines[0] == "[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace"


@needs_etcd
def test_preflight_reaches_the_external_etcd(tmp_path: Path) -> None:
    """kubeadm's ExternalEtcdClientCertificates and ExternalEtcdVersion, against a real etcd with TLS."""
    etcd = EtcdCluster(tmp_path / "etcd").start()
    try:
        tls = etcd.client_tls
        files = (str(tls.ca_file), str(tls.cert_file), str(tls.key_file))
        assert external_etcd_checks(ExternalEtcd(etcd.endpoints, *files)) == []
        missing = external_etcd_checks(ExternalEtcd(etcd.endpoints, files[0], files[1], str(tmp_path / "nope.key")))
        assert [(f.name, f.error) for f in missing] == [("ExternalEtcdClientCertificates", True)]
        assert "nope.key doesn't exist" in missing[0].message
        dead = f"https://127.0.0.1:{free_port()}"
        (unreachable,) = external_etcd_checks(ExternalEtcd([etcd.endpoints[0], dead], *files), timeout=1)
        assert unreachable.name == "ExternalEtcdVersion" and dead in unreachable.message
    finally:
        etcd.stop()
