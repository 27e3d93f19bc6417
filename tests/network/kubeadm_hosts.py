"""What the kubeadm e2e tests do on their hosts (network namespaces with a --rootfs each)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.network.netns import NetnsLab


def join(lab: NetnsLab, root: Path, host: str, endpoint: str, token: str, ca_hash: str, *args: str,
         runtime: str = "process", discovery_timeout: float = 60) -> subprocess.Popen[str]:
    """`k8py join` on ``host`` (in its namespace, its root under ``root``), running in the background."""
    return subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{lab.hosts[host].netns}", sys.executable, "-m", "k8py.cli", "join",
         endpoint, "--token", token, "--discovery-token-ca-cert-hash", ca_hash, *args, "--node-name", host,
         "--runtime", runtime, "--ignore-preflight-errors", "all", "--rootfs", str(root / host),
         "--discovery-timeout", str(discovery_timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@dataclass
class KubeadmHosts:
    """A cluster the test set up with init and joins; `admin_host` holds the admin.conf kubectl uses."""

    lab: NetnsLab
    root: Path
    endpoint: str
    token: str
    ca_hash: str
    init_seconds: float
    join_seconds: float

    admin_host = "master0"

    def netns(self, host: str) -> str:
        return f"/run/netns/{self.lab.hosts[host].netns}"

    def ip(self, host: str) -> str:
        return self.lab.hosts[host].ip

    def k8py(self, host: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.netns(host), sys.executable, "-m", "k8py.cli", *args,
                            "--rootfs", str(self.root / host), check=False, timeout=timeout)

    def kubectl(self, *args: str, kubeconfig: str = "", server: str | None = None, input: str | None = None,
                check: bool = True) -> str:
        """kubectl in the admin host's namespace, as ``kubeconfig`` (a path under root; default its
        admin.conf), against ``server`` (a control-plane host; default the kubeconfig's)."""
        kubeconfig = kubeconfig or f"{self.admin_host}/etc/kubernetes/admin.conf"
        flags = ["--server", f"https://{self.ip(server)}:6443"] if server else []
        res = self.lab.run(self.netns(self.admin_host), "kubectl", "--kubeconfig", str(self.root / kubeconfig),
                           *flags, *args, check=False, timeout=60, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res.stdout if res.returncode == 0 else res.stderr

    def get(self, *args: str, server: str | None = None) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json", server=server))
