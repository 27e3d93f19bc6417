"""A pod's managed /etc/hosts (upstream pkg/kubelet/kubelet_pods.go: makeHostsMount and helpers).

A pod on the pod network gets localhost and IPv6 boilerplate, then one line per pod IP naming the
pod's hostname (``<ip>\\t<hostname>.<subdomain>.<ns>.svc.<domain>\\t<hostname>`` with a subdomain);
a host-network pod gets the node's /etc/hosts under its own header. Both end with spec.hostAliases.
The file lives in the pod's directory (``<pods>/<uid>/etc-hosts``), is rewritten in place before
each container starts (a running container's bind mount keeps seeing it) and is mounted
read-write at /etc/hosts, unless the container mounts a volume there itself.

Only runtimes with mount namespaces can use it: the process runtime runs containers as host
processes sharing the node's file system, so its pods keep the node's /etc/hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from k8py.kubelet.runtime.interface import Mount

Obj = dict[str, Any]

ETC_HOSTS = "/etc/hosts"
HOSTS_FILE = "etc-hosts"
MANAGED_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
BOILERPLATE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)
HOSTNAME_MAX = 63


def pod_hostname_and_domain(pod: Obj, cluster_domain: str) -> tuple[str, str]:
    """GeneratePodHostNameAndDomain: spec.hostname or the pod's name (at most 63 characters, no
    trailing '-' or '.'), and ``<subdomain>.<ns>.svc.<cluster domain>`` when spec.subdomain is set."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    hostname = spec.get("hostname") or md["name"]
    if len(hostname) > HOSTNAME_MAX:
        hostname = hostname[:HOSTNAME_MAX].rstrip("-.")
    subdomain = spec.get("subdomain")
    domain = f"{subdomain}.{md.get('namespace', 'default')}.svc.{cluster_domain}" if subdomain else ""
    return hostname, domain


def host_alias_entries(host_aliases: Sequence[Obj] | None) -> str:
    """hostsEntriesFromHostAliases: a blank line, a comment, then one line per alias IP."""
    if not host_aliases:
        return ""
    lines = [f"{a.get('ip', '')}\t" + "\t".join(a.get("hostnames") or []) + "\n" for a in host_aliases]
    return "\n# Entries added by HostAliases.\n" + "".join(lines)


def managed_hosts_content(
    pod_ips: Sequence[str], hostname: str, domain: str, host_aliases: Sequence[Obj] | None
) -> str:
    """managedHostsFileContent: the file of a pod on the pod network."""
    if domain:
        entries = "".join(f"{ip}\t{hostname}.{domain}\t{hostname}\n" for ip in pod_ips)
    else:
        entries = "".join(f"{ip}\t{hostname}\n" for ip in pod_ips)
    return MANAGED_HEADER + BOILERPLATE + entries + host_alias_entries(host_aliases)


def node_hosts_content(node_hosts: str, host_aliases: Sequence[Obj] | None) -> str:
    """nodeHostsFileContent: a host-network pod's file, the node's hosts file (``node_hosts``'s text)."""
    return MANAGED_HEADER_HOST_NETWORK + node_hosts + host_alias_entries(host_aliases)


def should_mount_hosts_file(pod: Obj, container: Obj, pod_ips: Sequence[str]) -> bool:
    """shouldMountHostsFile and makeMounts' rule: once the pod has IPs (host-network pods at once),
    unless the container mounts a volume at /etc/hosts."""
    spec = pod.get("spec") or {}
    if not pod_ips and not spec.get("hostNetwork"):
        return False
    return all(m.get("mountPath") != ETC_HOSTS for m in container.get("volumeMounts") or [])


def ensure_hosts_file(
    path: Path, pod: Obj, pod_ips: Sequence[str], cluster_domain: str, node_hosts_file: str = ETC_HOSTS
) -> None:
    """ensureHostsFile: write the pod's hosts file in place, mode 0644."""
    spec = pod.get("spec") or {}
    aliases = spec.get("hostAliases")
    if spec.get("hostNetwork"):
        content = node_hosts_content(Path(node_hosts_file).read_text(), aliases)
    else:
        hostname, domain = pod_hostname_and_domain(pod, cluster_domain)
        content = managed_hosts_content(pod_ips, hostname, domain, aliases)
    path.write_text(content)
    path.chmod(0o644)


def make_hosts_mount(
    pod_dir: Path,
    pod: Obj,
    container: Obj,
    pod_ips: Sequence[str],
    cluster_domain: str,
    node_hosts_file: str = ETC_HOSTS,
) -> list[Mount]:
    """makeHostsMount: the container's /etc/hosts mount (read-write), or none per should_mount_hosts_file."""
    if not should_mount_hosts_file(pod, container, pod_ips):
        return []
    pod_dir.mkdir(parents=True, exist_ok=True)
    path = pod_dir / HOSTS_FILE
    ensure_hosts_file(path, pod, pod_ips, cluster_domain, node_hosts_file)
    return [Mount(container_path=ETC_HOSTS, host_path=str(path), readonly=False)]
