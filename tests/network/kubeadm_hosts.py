"""What the kubeadm e2e tests do on their hosts (network namespaces with a --rootfs each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
