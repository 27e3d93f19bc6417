"""The kubelet-managed /etc/hosts (k8py/kubelet/hosts.py): upstream's exact text (kubelet_pods_test.go's
TestManagedHostsFileContent and TestNodeHostsFileContent cases), when it is mounted, and the mounts
RuntimeManager gives every container of a pod on the cri runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from k8py.kubelet.hosts import (
    ETC_HOSTS,
    HOSTS_FILE,
    make_hosts_mount,
    managed_hosts_content,
    node_hosts_content,
    pod_hostname_and_domain,
)
from k8py.kubelet.kuberuntime import PodStatus, RuntimeManager
from k8py.kubelet.runtime.interface import (
    ContainerConfig,
    Image,
    Mount,
    PodSandboxConfig,
    PodSandboxStatus,
    Runtime,
    SandboxState,
)

Obj = dict[str, Any]

BOILERPLATE = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)
ALIASES = [
    {"ip": "123.45.67.89", "hostnames": ["foo", "bar", "baz"]},
    {"ip": "456.78.90.123", "hostnames": ["park", "doo", "boo"]},
]
NODE_HOSTS = (
    "# hosts file for testing.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "123.45.67.89\tsome.domain\n"
)


@pytest.mark.parametrize(
    ("ips", "domain", "aliases", "expected"),
    [
        (["123.45.67.89"], "", [], BOILERPLATE + "123.45.67.89\tpodFoo\n"),
        (["203.0.113.1"], "domainFoo", [], BOILERPLATE + "203.0.113.1\tpodFoo.domainFoo\tpodFoo\n"),
        (
            ["203.0.113.1"], "domainFoo", ALIASES[:1],
            BOILERPLATE + "203.0.113.1\tpodFoo.domainFoo\tpodFoo\n"
            "\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\tbaz\n",
        ),
        (
            ["203.0.113.1"], "domainFoo", ALIASES,
            BOILERPLATE + "203.0.113.1\tpodFoo.domainFoo\tpodFoo\n"
            "\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\tbaz\n456.78.90.123\tpark\tdoo\tboo\n",
        ),
        (
            ["203.0.113.1", "fd00::6"], "domainFoo", [],
            BOILERPLATE + "203.0.113.1\tpodFoo.domainFoo\tpodFoo\nfd00::6\tpodFoo.domainFoo\tpodFoo\n",
        ),
        ([], "", [], BOILERPLATE),
    ],
)
def test_managed_hosts_content(ips: list[str], domain: str, aliases: list[Obj], expected: str) -> None:
    assert managed_hosts_content(ips, "podFoo", domain, aliases) == expected


@pytest.mark.parametrize(
    ("aliases", "expected"),
    [
        ([], "# Kubernetes-managed hosts file (host network).\n" + NODE_HOSTS),
        (
            ALIASES,
            "# Kubernetes-managed hosts file (host network).\n" + NODE_HOSTS
            + "\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\tbaz\n456.78.90.123\tpark\tdoo\tboo\n",
        ),
    ],
)
def test_node_hosts_content(aliases: list[Obj], expected: str) -> None:
    assert node_hosts_content(NODE_HOSTS, aliases) == expected


def _pod(name: str = "web", *, uid: str = "uid-1", containers: list[Obj] | None = None, **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "team", "uid": uid},
        "spec": {"containers": containers or [{"name": "main", "image": "busybox:1.36"}], **spec},
    }


def test_hostname_and_domain() -> None:
    assert pod_hostname_and_domain(_pod(), "cluster.local") == ("web", "")
    assert pod_hostname_and_domain(_pod(hostname="db-0", subdomain="db"), "example.org") == (
        "db-0", "db.team.svc.example.org"
    )
    # at most 63 characters, never ending in '-' or '.'
    assert pod_hostname_and_domain(_pod("a" * 62 + "-b"), "cluster.local") == ("a" * 62, "")


def test_pod_network_mount_written_in_place(tmp_path: Path) -> None:
    pod = _pod(hostname="db-0", subdomain="db", hostAliases=ALIASES[:1])
    container = pod["spec"]["containers"][0]
    assert make_hosts_mount(tmp_path, pod, container, [], "cluster.local") == []  # no IPs yet: no file
    assert not (tmp_path / HOSTS_FILE).exists()
    mounts = make_hosts_mount(tmp_path, pod, container, ["10.244.0.5"], "cluster.local")
    path = tmp_path / HOSTS_FILE
    assert mounts == [Mount(container_path=ETC_HOSTS, host_path=str(path), readonly=False)]
    assert path.read_text() == (
        BOILERPLATE + "10.244.0.5\tdb-0.db.team.svc.cluster.local\tdb-0\n"
        "\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\tbaz\n"
    )
    assert path.stat().st_mode & 0o777 == 0o644
    inode = path.stat().st_ino
    path.write_text("edited by a container\n")
    make_hosts_mount(tmp_path, pod, container, ["10.244.0.5"], "cluster.local")
    # rewritten, in the same file: running containers' bind mounts see it
    assert path.stat().st_ino == inode and path.read_text().startswith(BOILERPLATE)


def test_host_network_pod_gets_the_node_file(tmp_path: Path) -> None:
    node_hosts = tmp_path / "node-hosts"
    node_hosts.write_text(NODE_HOSTS)
    pod = _pod(hostNetwork=True, hostAliases=ALIASES)
    mounts = make_hosts_mount(tmp_path / "pod", pod, pod["spec"]["containers"][0], [], "cluster.local", str(node_hosts))
    assert [m.container_path for m in mounts] == [ETC_HOSTS]
    assert Path(mounts[0].host_path).read_text() == node_hosts_content(NODE_HOSTS, ALIASES)


def test_container_mounting_etc_hosts_keeps_its_own(tmp_path: Path) -> None:
    container = {"name": "main", "volumeMounts": [{"name": "h", "mountPath": "/etc/hosts"}]}
    assert make_hosts_mount(tmp_path, _pod(), container, ["10.244.0.5"], "cluster.local") == []


class FakeRuntime:
    """Just what RuntimeManager.sync_pod calls to start a new pod; records the configs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sandbox: PodSandboxConfig | None = None
        self.created: list[ContainerConfig] = []

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        self.sandbox = config
        return "sb"

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        return PodSandboxStatus(id=sandbox_id, name="web", namespace="team", uid="uid-1", attempt=0,
                                state=SandboxState.READY, created_at=1, ip="10.244.0.7", additional_ips=["fd00::7"])

    async def image_status(self, image: str) -> Image | None:
        return Image(id="sha256:1")

    async def create_container(self, sandbox_id: str, config: ContainerConfig, sandbox_config: PodSandboxConfig) -> str:
        self.created.append(config)
        return config.name

    async def start_container(self, container_id: str) -> None:
        pass


async def _no_env(pod: Obj, container: Obj, pod_ip: str) -> tuple[list[tuple[str, str]], list[Mount]]:
    return [], []


def _manager(runtime: FakeRuntime, tmp_path: Path) -> RuntimeManager:
    return RuntimeManager(cast(Runtime, runtime), pods_dir=tmp_path / "pods", logs_dir=tmp_path / "logs",
                          environment=_no_env, node_memory=1 << 30, cluster_domain="example.org")


async def test_every_container_of_a_cri_pod_mounts_the_file(tmp_path: Path) -> None:
    runtime = FakeRuntime("cri")
    pod = _pod(
        hostname="db-0", subdomain="db",
        initContainers=[{"name": "init", "image": "busybox:1.36"}],
        containers=[
            {"name": "main", "image": "busybox:1.36"},
            {"name": "own", "image": "busybox:1.36", "volumeMounts": [{"name": "h", "mountPath": "/etc/hosts"}]},
        ],
    )
    manager = _manager(runtime, tmp_path)
    await manager.sync_pod(pod, PodStatus(uid="uid-1"))  # sandbox + the init container
    pod["spec"]["initContainers"] = []
    await manager.sync_pod(pod, PodStatus(uid="uid-1", sandboxes=[await runtime.pod_sandbox_status("sb")]))
    hosts = tmp_path / "pods" / "uid-1" / HOSTS_FILE
    mounted = {c.name: [m for m in c.mounts if m.container_path == ETC_HOSTS] for c in runtime.created}
    assert mounted == {"init": [Mount(ETC_HOSTS, str(hosts))], "main": [Mount(ETC_HOSTS, str(hosts))], "own": []}
    assert runtime.sandbox is not None and runtime.sandbox.hostname == "db-0"
    assert hosts.read_text().endswith(
        "10.244.0.7\tdb-0.db.team.svc.example.org\tdb-0\nfd00::7\tdb-0.db.team.svc.example.org\tdb-0\n"
    )


async def test_process_runtime_has_no_hosts_mount(tmp_path: Path) -> None:
    """Host processes share the node's file system: nothing can be mounted at /etc/hosts."""
    runtime = FakeRuntime("process")
    await _manager(runtime, tmp_path).sync_pod(_pod(), PodStatus(uid="uid-1"))
    assert [c.mounts for c in runtime.created] == [[]]
    assert not (tmp_path / "pods" / "uid-1" / HOSTS_FILE).exists()
