"""The kubelet as a host service without systemd: k8py's supervisor (restart on exit, clean stop)
and the kubeadm-flags.env / systemd unit files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from k8py.kubeadm import kubeletservice
from k8py.kubeadm.hostservice import uses_systemd
from k8py.kubeadm.layout import Layout
from tests.conftest import wait_for


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_supervisor_restarts_its_command_and_stops_it(tmp_path: Path) -> None:
    pidfile, log, starts = tmp_path / "s.pid", tmp_path / "s.log", tmp_path / "starts"
    script = f"echo start >> {starts}; echo out; sleep 0.2; exit 3"
    sup = subprocess.Popen([sys.executable, "-m", "k8py.kubeadm.supervise", "--pidfile", str(pidfile),
                            "--log", str(log), "--", "sh", "-c", script])
    try:
        wait_for(lambda: starts.exists() and starts.read_text().count("start") >= 2, timeout=10, what="a restart")
        assert int(pidfile.read_text()) == sup.pid
        text = log.read_text()
        assert "out\n" in text and "exited (3); restarting in 1s" in text
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=10) == 0
        assert not pidfile.exists()
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()


def test_supervisor_stop_ends_the_child(tmp_path: Path) -> None:
    """SIGTERM to the supervisor reaches its running child, which is gone when the supervisor exits."""
    pidfile, child_pid = tmp_path / "s.pid", tmp_path / "child"
    sup = subprocess.Popen([sys.executable, "-m", "k8py.kubeadm.supervise", "--pidfile", str(pidfile),
                            "--log", str(tmp_path / "log"), "--", "sh", "-c", f"echo $$ > {child_pid}; exec sleep 600"])
    try:
        wait_for(lambda: child_pid.exists() and child_pid.read_text().strip(), timeout=10, what="child started")
        pid = int(child_pid.read_text())
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=10) == 0
        wait_for(lambda: not _alive(pid), timeout=5, what="the child gone")
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()


def test_kubelet_service_without_systemd(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert not uses_systemd(layout)  # only the host's own root uses systemd
    flags = ["--kubeconfig", str(tmp_path / "missing.conf"), "--node-name", "n 1", "--runtime", "simulated"]
    kubeletservice.KUBELET.write_flags(layout, flags)
    assert kubeletservice.KUBELET.read_flags(layout) == flags
    lines: list[str] = []
    kubeletservice.start(layout, lines.append)
    try:
        pid = kubeletservice.KUBELET.supervisor_pid(layout)
        assert pid is not None and "supervised, no systemd" in lines[0]
        log = layout.log_dir / "kubelet.log"
        # the kubelet fails at once without its kubeconfig: the supervisor records it and restarts it
        wait_for(lambda: log.exists() and "restarting in" in log.read_text(), timeout=20, what="a kubelet restart")
        assert "missing.conf" in log.read_text()
    finally:
        assert kubeletservice.KUBELET.stop(layout)
    assert kubeletservice.KUBELET.supervisor_pid(layout) is None
    wait_for(lambda: not _alive(pid), timeout=5, what="the supervisor gone")
    assert not kubeletservice.KUBELET.stop(layout)


def test_systemd_unit_and_flags_file(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    unit = kubeletservice.KUBELET.unit_text(layout)
    assert f"EnvironmentFile=-{tmp_path}/var/lib/kubelet/kubeadm-flags.env" in unit
    assert f"ExecStart={sys.executable} -m k8py.cli kubelet $KUBELET_KUBEADM_ARGS" in unit
    assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit
    kubeletservice.KUBELET.write_flags(layout, ["--node-labels", "a=b,c=d", "--x", "it's"])
    text = layout.kubelet_flags_file.read_text()
    assert text.startswith("KUBELET_KUBEADM_ARGS=")
    # the file is what systemd's EnvironmentFile and a shell both read back to the same arguments
    out = subprocess.run(["sh", "-c", f". {layout.kubelet_flags_file}; printf '%s' \"$KUBELET_KUBEADM_ARGS\""],
                         capture_output=True, text=True, check=True).stdout
    assert out == "--node-labels a=b,c=d --x 'it'\"'\"'s'"


def _k8py(*args: str, input: str | None = None, netns: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = ["unshare", "--net"] if netns else []  # reset's node-network cleanup must not touch ours
    return subprocess.run([*prefix, sys.executable, "-m", "k8py.cli", *args], capture_output=True, text=True,
                          input=input, timeout=120)


@pytest.mark.skipif(os.geteuid() != 0, reason="reset cleans the node's network: run in a namespace of its own (root)")
def test_reset_removes_what_init_set_up_and_nothing_else(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    flags = ("--cert-dir", str(layout.cert_dir), "--kubeconfig-dir", str(layout.kubernetes_dir),
             "--node-name", "worker0", "--apiserver-advertise-address", "10.197.0.2")
    assert _k8py("init", "phase", "certs", *flags).returncode == 0
    assert _k8py("init", "phase", "kubeconfig", *flags).returncode == 0
    layout.manifests_dir.mkdir(parents=True)
    (layout.manifests_dir / "kube-apiserver.yaml").write_text("kind: Pod\n")
    for data in (layout.etcd_dir / "member", layout.apiserver_dir, layout.kubelet_dir / "pods" / "uid"):
        data.mkdir(parents=True)
        (data / "f").write_text("x")
    unrelated = layout.kubernetes_dir / "keep-me.conf"
    unrelated.write_text("not ours")
    kubeletservice.KUBELET.write_flags(layout, ["--kubeconfig", str(tmp_path / "missing.conf"), "--runtime", "simulated"])
    kubeletservice.start(layout, lambda _m: None)
    pid = kubeletservice.KUBELET.supervisor_pid(layout)
    assert pid is not None
    try:
        refused = _k8py("reset", "--rootfs", str(tmp_path), input="n\n")
        assert refused.returncode == 1 and "aborted reset operation" in refused.stderr
        assert (layout.kubernetes_dir / "admin.conf").exists()
        done = _k8py("reset", "--force", "--rootfs", str(tmp_path), netns=True)
        assert done.returncode == 0, done.stderr
    finally:
        kubeletservice.KUBELET.stop(layout)
    assert f"[reset] Deleted contents of the etcd data directory: {layout.etcd_dir}" in done.stdout
    assert "[reset] Stopping the kubelet service" in done.stdout
    wait_for(lambda: not _alive(pid), timeout=5, what="the kubelet supervisor gone")
    for directory in (layout.manifests_dir, layout.kubelet_dir, layout.cert_dir, layout.etcd_dir,
                      layout.apiserver_dir):
        assert directory.is_dir() and not any(directory.iterdir()), directory
    assert sorted(p.name for p in layout.kubernetes_dir.iterdir()) == ["keep-me.conf", "manifests", "pki"]
    assert not layout.run_dir.exists() and not layout.log_dir.exists()
