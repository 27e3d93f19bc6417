"""`k8py init phase certs|kubeconfig|preflight` and `k8py certs check-expiration|renew`:
kubeadm's PKI layout, subjects, SANs and usages, kubeconfig files, and the CLI's output."""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8py.api.duration import short_human_duration
from k8py.bootstrap.pki import load_ca
from k8py.kubeadm.certs import LEAVES, create_certs, paths
from k8py.kubeadm.config import ConfigError, InitConfig, load_config
from k8py.kubeadm.kubeconfigs import (
    create_kubeconfigs,
    embedded_ca_and_server,
    embedded_client_cert,
    read_kubeconfig,
)
from k8py.kubeadm.preflight import Finding, PreflightError, report
from k8py.kubeadm.renewal import check_expiration, renew

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


def _config(tmp_path: Path, **overrides: object) -> InitConfig:
    config = InitConfig(node_name="master0", advertise_address="10.197.0.1", cert_dir=tmp_path / "pki",
                        kubernetes_dir=tmp_path)
    for k, v in overrides.items():
        setattr(config, k, v)
    return config


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _subject(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return str(cn), [str(o.value) for o in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_certs_phase_lays_out_kubeadms_pki(tmp_path: Path) -> None:
    config = _config(tmp_path, control_plane_endpoint="cp.example:6443", apiserver_cert_sans=["10.0.0.9", "api.x"])
    lines: list[str] = []
    create_certs(config, lines.append)
    pki = tmp_path / "pki"
    for ca, cn in (("ca", "kubernetes"), ("front-proxy-ca", "front-proxy-ca"), ("etcd/ca", "etcd-ca")):
        cert = _cert(pki / f"{ca}.crt")
        assert _subject(cert) == (cn, []) and cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    apiserver = _cert(pki / "apiserver.crt")
    assert _subject(apiserver) == ("kube-apiserver", []) and _usages(apiserver) == {SERVER}
    assert _sans(apiserver) == (
        ["master0", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
         "kubernetes.default.svc.cluster.local", "cp.example", "api.x"],
        ["10.96.0.1", "10.197.0.1", "127.0.0.1", "10.0.0.9"],  # 127.0.0.1: the node-local load balancer
    )
    assert _subject(_cert(pki / "apiserver-kubelet-client.crt")) == ("kube-apiserver-kubelet-client",
                                                                      ["kubeadm:cluster-admins"])
    for name in ("server", "peer"):
        etcd = _cert(pki / "etcd" / f"{name}.crt")
        assert _subject(etcd) == ("master0", []) and _usages(etcd) == {SERVER, CLIENT}
        assert _sans(etcd) == (["localhost", "master0"], ["127.0.0.1", "::1", "10.197.0.1"])
    assert _subject(_cert(pki / "etcd" / "healthcheck-client.crt")) == ("kube-etcd-healthcheck-client", [])
    assert _usages(_cert(pki / "apiserver-etcd-client.crt")) == {CLIENT}
    front = _cert(pki / "front-proxy-client.crt")
    assert front.issuer == _cert(pki / "front-proxy-ca.crt").subject and _subject(front)[0] == "front-proxy-client"
    assert (pki / "sa.key").stat().st_mode & 0o777 == 0o600 and (pki / "sa.pub").exists()
    assert all((pki / f"{leaf.base}.key").stat().st_mode & 0o777 == 0o600 for leaf in LEAVES)
    assert '[certs] Generating "apiserver" certificate and key' in lines
    # a second run keeps everything; a changed advertise address re-issues only the serving certificates
    before = {leaf.name: _cert(paths(pki, leaf.base)[0]).serial_number for leaf in LEAVES}
    create_certs(config, lines.append)
    assert {leaf.name: _cert(paths(pki, leaf.base)[0]).serial_number for leaf in LEAVES} == before
    config.advertise_address = "10.197.0.5"
    create_certs(config, lines.append)
    changed = {leaf.name for leaf in LEAVES if _cert(paths(pki, leaf.base)[0]).serial_number != before[leaf.name]}
    assert changed == {"apiserver", "etcd-server", "etcd-peer"}


def test_kubeconfig_phase_writes_usable_client_credentials(tmp_path: Path) -> None:
    config = _config(tmp_path)
    create_certs(config, lambda _m: None)
    ca = load_ca(*paths(config.cert_dir, "ca"))
    create_kubeconfigs(config, ca, lambda _m: None)
    expected = {
        "admin.conf": (("kubernetes-admin", ["kubeadm:cluster-admins"]), "https://10.197.0.1:6443"),
        "super-admin.conf": (("kubernetes-super-admin", ["system:masters"]), "https://10.197.0.1:6443"),
        "controller-manager.conf": (("system:kube-controller-manager", []), "https://10.197.0.1:6443"),
        "scheduler.conf": (("system:kube-scheduler", []), "https://10.197.0.1:6443"),
        "kubelet.conf": (("system:node:master0", ["system:nodes"]), "https://127.0.0.1:6444"),  # the local LB
    }
    for name, (subject, server) in expected.items():
        doc = read_kubeconfig(tmp_path / name)
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
        assert embedded_ca_and_server(doc) == (ca.cert_pem(), server)
        cert = embedded_client_cert(doc)
        assert _subject(cert) == subject and cert.issuer == ca.cert.subject and _usages(cert) == {CLIENT}
        assert doc["current-context"] == f"{subject[0]}@kubernetes"
    # an existing file for another CA is refused, not overwritten
    other = _config(tmp_path / "other")
    create_certs(other, lambda _m: None)
    with pytest.raises(FileExistsError, match="wrong CA or server"):
        create_kubeconfigs(config, load_ca(*paths(other.cert_dir, "ca")), lambda _m: None)
    # with a control-plane endpoint, clients other than the local components use it
    config2 = _config(tmp_path / "ep", control_plane_endpoint="10.197.0.100")
    create_certs(config2, lambda _m: None)
    create_kubeconfigs(config2, load_ca(*paths(config2.cert_dir, "ca")), lambda _m: None)
    assert embedded_ca_and_server(read_kubeconfig(tmp_path / "ep" / "admin.conf"))[1] == "https://10.197.0.100:6443"
    assert embedded_ca_and_server(read_kubeconfig(tmp_path / "ep" / "scheduler.conf"))[1] == "https://10.197.0.1:6443"


def test_check_expiration_and_renew(tmp_path: Path) -> None:
    config = _config(tmp_path)
    create_certs(config, lambda _m: None)
    create_kubeconfigs(config, load_ca(*paths(config.cert_dir, "ca")), lambda _m: None)
    expires = _cert(tmp_path / "pki" / "apiserver.crt").not_valid_after_utc
    table = check_expiration(tmp_path / "pki", tmp_path, now=expires - dt.timedelta(days=30, hours=1))
    lines = table.splitlines()
    assert lines[0].split("   ")[0] == "CERTIFICATE" and "CERTIFICATE AUTHORITY" in lines[0]
    names = [line.split()[0] for line in lines[1:12]]
    assert names == ["admin.conf", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client",
                     "controller-manager.conf", "etcd-healthcheck-client", "etcd-peer", "etcd-server",
                     "front-proxy-client", "scheduler.conf", "super-admin.conf"]
    apiserver_row = lines[2]
    assert expires.strftime("%b %d, %Y %H:%M UTC") in apiserver_row and " 30d " in apiserver_row
    assert "etcd-ca" in lines[3] and lines[12] == ""
    assert [line.split()[0] for line in lines[14:]] == ["ca", "etcd-ca", "front-proxy-ca"]
    old_api, old_admin = _cert(tmp_path / "pki" / "apiserver.crt"), embedded_client_cert(
        read_kubeconfig(tmp_path / "admin.conf"))
    assert renew(["apiserver", "admin.conf"], tmp_path / "pki", tmp_path) == [
        "certificate for serving the Kubernetes API renewed",
        "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed",
    ]
    new_api, new_admin = _cert(tmp_path / "pki" / "apiserver.crt"), embedded_client_cert(
        read_kubeconfig(tmp_path / "admin.conf"))
    assert new_api.serial_number != old_api.serial_number and _sans(new_api) == _sans(old_api)
    assert new_api.public_key() != old_api.public_key()
    assert _subject(new_admin) == _subject(old_admin) and new_admin.serial_number != old_admin.serial_number
    ctx = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.crt"))  # the renewed pair still matches
    ctx.load_cert_chain(tmp_path / "pki" / "apiserver.crt", tmp_path / "pki" / "apiserver.key")
    assert len(renew(["all"], tmp_path / "pki", tmp_path)) == 11
    with pytest.raises(ValueError, match="unknown certificate"):
        renew(["kubelet.conf"], tmp_path / "pki", tmp_path)


def test_an_external_etcds_certificates_are_externally_managed(tmp_path: Path) -> None:
    """With an external etcd, pki/etcd/ca.crt and apiserver-etcd-client come from its admins (no CA key) and
    there is no local etcd's certificates: listed as externally managed or not at all, never renewed."""
    config = _config(tmp_path)
    create_certs(config, lambda _m: None)
    create_kubeconfigs(config, load_ca(*paths(config.cert_dir, "ca")), lambda _m: None)
    pki = tmp_path / "pki"
    for name in ("etcd/ca.key", "etcd/server.crt", "etcd/server.key", "etcd/peer.crt", "etcd/peer.key",
                 "etcd/healthcheck-client.crt", "etcd/healthcheck-client.key"):
        (pki / name).unlink()
    rows = {line.split()[0]: line.split() for line in check_expiration(pki, tmp_path).splitlines()[1:] if line}
    assert not {"etcd-server", "etcd-peer", "etcd-healthcheck-client"} & set(rows)
    assert rows["apiserver-etcd-client"][-2:] == ["etcd-ca", "yes"] and rows["apiserver"][-1] == "no"
    assert rows["etcd-ca"][-1] == "yes" and rows["ca"][-1] == "no"
    assert len(renew(["all"], pki, tmp_path)) == 7
    with pytest.raises(ValueError, match="apiserver-etcd-client: externally managed"):
        renew(["apiserver-etcd-client"], pki, tmp_path)


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-1, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86399, "23h"),
    (86400, "1d"), (364 * 86400, "364d"), (365 * 86400, "1y"), (3650 * 86400, "10y"),
])
def test_short_human_duration(seconds: int, text: str) -> None:
    assert short_human_duration(float(seconds)) == text


def test_config_file_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "kubeadm.yaml"
    path.write_text(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  name: master0\n"
        "localAPIEndpoint:\n  advertiseAddress: 10.197.0.1\n  bindPort: 7443\n---\n"
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: lb.example:8443\n"
        "networking:\n  podSubnet: 192.168.0.0/16\n  serviceSubnet: 10.100.0.0/16\n  dnsDomain: k8s.local\n"
        "apiServer:\n  certSANs: [extra.example]\n---\n"
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
    )
    config = load_config(path, InitConfig())
    assert (config.node_name, config.advertise_address, config.bind_port) == ("master0", "10.197.0.1", 7443)
    assert config.endpoint == ("lb.example", 8443) and config.endpoint_url == "https://lb.example:8443"
    assert (config.pod_subnet, config.first_service_ip, config.dns_domain) == ("192.168.0.0/16", "10.100.0.1",
                                                                             "k8s.local")
    assert config.local_url == "https://10.197.0.1:7443" and config.apiserver_cert_sans == ["extra.example"]
    path.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  bindPort: x\n")
    with pytest.raises(ConfigError, match="localAPIEndpoint.bindPort must be a int"):
        load_config(path, InitConfig())
    path.write_text("apiVersion: kubeadm.k8s.io/v1alpha1\nkind: InitConfiguration\n")
    with pytest.raises(ConfigError, match="apiVersion"):
        load_config(path, InitConfig())
    with pytest.raises(ConfigError, match="--service-cidr"):
        InitConfig(service_subnet="10.96.0.0/99", advertise_address="10.0.0.1").validate()


def test_preflight_report() -> None:
    findings = [Finding("Port-6443", "Port 6443 is in use", True), Finding("Swap", "swap on", False)]
    with pytest.raises(PreflightError) as e:
        report(findings, set())
    assert "\t[ERROR Port-6443]: Port 6443 is in use" in str(e.value) and "--ignore-preflight-errors" in str(e.value)
    assert report(findings, {"port-6443"}) == ["\t[WARNING Port-6443]: Port 6443 is in use", "\t[WARNING Swap]: swap on"]
    assert len(report(findings, {"all"})) == 2


def _k8py(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k8py.cli", *args], capture_output=True, text=True, timeout=60)


def test_cli(tmp_path: Path) -> None:
    flags = ("--kubeconfig-dir", str(tmp_path), "--node-name", "Master0", "--apiserver-advertise-address", "10.197.0.1")
    certs = _k8py("init", "phase", "certs", *flags)
    assert certs.returncode == 0, certs.stderr
    assert f'[certs] Using certificateDir folder "{tmp_path / "pki"}"' in certs.stdout
    assert "apiserver serving cert is signed for DNS names [master0 kubernetes" in certs.stdout
    kubeconfig = _k8py("init", "phase", "kubeconfig", *flags)
    assert kubeconfig.returncode == 0 and '[kubeconfig] Writing "admin.conf" kubeconfig file' in kubeconfig.stdout
    check = _k8py("certs", "check-expiration", "--kubeconfig-dir", str(tmp_path))
    assert check.returncode == 0 and check.stdout.startswith("CERTIFICATE ")
    renewed = _k8py("certs", "renew", "all", "--kubeconfig-dir", str(tmp_path))
    assert renewed.returncode == 0 and "Done renewing certificates." in renewed.stdout
    bad = _k8py("certs", "renew", "nope", "--kubeconfig-dir", str(tmp_path))
    assert bad.returncode == 2 and "unknown certificate(s) nope" in bad.stderr
    missing = _k8py("certs", "check-expiration", "--kubeconfig-dir", str(tmp_path / "none"))
    assert missing.returncode == 1 and "no cluster CA" in missing.stderr
    bad_cidr = _k8py("init", "phase", "certs", *flags, "--service-cidr", "nope")
    assert bad_cidr.returncode == 2 and "--service-cidr: 'nope' is not a CIDR" in bad_cidr.stderr
    preflight = _k8py("init", "phase", "preflight", "--kubeconfig-dir", str(tmp_path), "--node-name", "master0",
                      "--apiserver-advertise-address", "10.197.0.1")
    assert preflight.returncode == 1
    assert f"[ERROR FileAvailable--{str(tmp_path / 'kubelet.conf').lstrip('/').replace('/', '-')}]" in \
        preflight.stderr


def test_apiserver_serves_with_kubeadms_pki(tmp_path: Path) -> None:
    """`k8py apiserver` with kube-apiserver's file flags uses the PKI as it is (no certificate of its own)."""
    import os
    import signal

    from tests.conftest import KUBECTL, free_port, wait_for

    port = free_port()
    config = _config(tmp_path, advertise_address="127.0.0.1", bind_port=port)
    create_certs(config, lambda _m: None)
    create_kubeconfigs(config, load_ca(*paths(config.cert_dir, "ca")), lambda _m: None)
    pki = tmp_path / "pki"
    before = sorted(p.name for p in pki.iterdir())
    serial = _cert(pki / "apiserver.crt").serial_number
    files = ["--tls-cert-file", pki / "apiserver.crt", "--tls-private-key-file", pki / "apiserver.key",
             "--client-ca-file", pki / "ca.crt", "--service-account-key-file", pki / "sa.pub",
             "--service-account-signing-key-file", pki / "sa.key",
             "--kubelet-client-certificate", pki / "apiserver-kubelet-client.crt",
             "--kubelet-client-key", pki / "apiserver-kubelet-client.key"]
    partial = _k8py("apiserver", "--data-dir", str(tmp_path / "data"), *map(str, files[:2]))
    assert partial.returncode == 2 and "--tls-cert-file given without --tls-private-key-file" in partial.stderr
    log = open(tmp_path / "apiserver.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "k8py.cli", "apiserver", "--data-dir", str(tmp_path / "data"),
                             "--port", str(port), "--advertise-address", "127.0.0.1", *map(str, files)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        env = {**os.environ, "KUBECONFIG": str(tmp_path / "super-admin.conf")}

        def namespaces() -> str:
            res = subprocess.run([KUBECTL, "get", "ns", "-o", "name"], capture_output=True, text=True, env=env,
                                 timeout=20)
            return res.stdout if res.returncode == 0 else ""

        assert "namespace/default" in wait_for(namespaces, timeout=30, what="the API server on kubeadm's PKI")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    assert sorted(p.name for p in pki.iterdir()) == before
    assert _cert(pki / "apiserver.crt").serial_number == serial
