"""Fixtures for controller tests: a cluster without the in-process controller manager, a
`k8py controller-manager` subprocess running the controllers a test module names, and
hollow nodes (kubemark) reporting pods running.

A module sets ``CONTROLLERS = "replicaset,deployment"`` (the `--controllers` value) and
``HOLLOW_NODES = 3`` (how many hollow nodes, named ``<module>-node-<i>``), optionally
``CONTROLLER_MANAGER_ARGS = ("--controller-option", "key=value")`` (more controller-manager
flags) and ``UP_ARGS`` (more `k8py up` flags), and uses the ``cm_cluster`` fixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cluster, start_cluster, wait_for


@dataclass
class Component:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_component(cluster: Cluster, name: str, *args: str) -> Component:
    """`k8py <args>` against `cluster`, its output in the cluster's data dir."""
    n = len(list(cluster.data_dir.glob(f"{name}*.log")))
    log_path = cluster.data_dir / f"{name}{n}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "k8py.cli", *args, "--kubeconfig", str(cluster.kubeconfig)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        )
    return Component(proc, log_path)


def start_controller_manager(cluster: Cluster, controllers: str, *extra: str) -> Component:
    cm = run_component(cluster, "controller-manager", "controller-manager", "--controllers", controllers, *extra)
    wait_for(lambda: "controller manager started" in cm.log() or cm.proc.poll() is not None, timeout=30,
             what="controller manager")
    if cm.proc.poll() is not None:
        raise RuntimeError(f"controller-manager exited:\n{cm.log()}")
    return cm


def start_hollow_nodes(cluster: Cluster, count: int, prefix: str, *extra: str) -> Component:
    hn = run_component(cluster, "hollow", "hollow-nodes", "--count", str(count), "--prefix", prefix, *extra)
    wait_for(lambda: "registered" in hn.log() or hn.proc.poll() is not None, timeout=30, what="hollow nodes")
    if hn.proc.poll() is not None:
        raise RuntimeError(f"hollow-nodes exited:\n{hn.log()}")
    return hn


@dataclass
class ControllerCluster:
    cluster: Cluster
    cm: Component
    hollow: Component | None
    node_prefix: str

    def kubectl(self, *args: str, **kw):  # type: ignore[no-untyped-def]
        return self.cluster.kubectl(*args, **kw)


@pytest.fixture(scope="module")
def cm_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerCluster]:
    controllers = getattr(request.module, "CONTROLLERS", "*")
    hollow = getattr(request.module, "HOLLOW_NODES", 0)
    short = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    up_args = tuple(getattr(request.module, "UP_ARGS", ()))
    cluster = start_cluster(tmp_path_factory.mktemp(f"k8py-{short}"), extra=("--disable-controller-manager", *up_args))
    components: list[Component] = []
    try:
        cm_args = tuple(getattr(request.module, "CONTROLLER_MANAGER_ARGS", ()))
        # without the default ServiceAccount, admission refuses every pod: always run those two
        controllers = ",".join(dict.fromkeys([*controllers.split(","), "serviceaccount", "root-ca-cert-publisher"]))
        cm = start_controller_manager(cluster, controllers, "--no-leader-elect", *cm_args)
        components.append(cm)
        hn = start_hollow_nodes(cluster, hollow, f"{short}-node-") if hollow else None
        if hn is not None:
            components.append(hn)
        yield ControllerCluster(cluster, cm, hn, f"{short}-node-")
    finally:
        for c in reversed(components):
            c.stop()
        cluster.stop()
