"""A pod's resolv.conf, per its dnsPolicy and dnsConfig (upstream pkg/kubelet/network/dns).

ClusterFirst: the cluster DNS servers, searches ``<ns>.svc.<domain> svc.<domain> <domain>`` then
the host's, ``ndots:5``; falls back to Default when the kubelet has no cluster DNS (kube reports
MissingClusterDNS). Default: the host's resolv.conf. ClusterFirstWithHostNet: ClusterFirst for
host-network pods (plain ClusterFirst means Default for them). None: only ``dnsConfig``, which is
merged into every other policy (servers and searches appended, options overridden by name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k8py.kubelet.runtime.interface import DNSConfig

Obj = dict[str, Any]
MAX_SEARCHES = 32
NDOTS = "ndots:5"


def parse_resolv_conf(text: str) -> DNSConfig:
    config = DNSConfig()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            config.servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            config.searches = [s.rstrip(".") for s in fields[1:]]
        elif fields[0] == "options":
            config.options.extend(fields[1:])
    return config


def host_dns(resolv_conf: str) -> DNSConfig:
    try:
        return parse_resolv_conf(Path(resolv_conf).read_text())
    except OSError:
        return DNSConfig()


def _merge(base: DNSConfig, extra: Obj | None) -> DNSConfig:
    if not extra:
        return base
    servers = base.servers + [s for s in extra.get("nameservers") or [] if s not in base.servers]
    searches = base.searches + [s for s in extra.get("searches") or [] if s not in base.searches]
    options: dict[str, str] = {}
    for opt in base.options:
        name, _, value = opt.partition(":")
        options[name] = opt
    for opt in extra.get("options") or []:
        name = opt.get("name", "")
        options[name] = f"{name}:{opt['value']}" if opt.get("value") is not None else name
    return DNSConfig(servers=servers, searches=searches[:MAX_SEARCHES], options=list(options.values()))


def pod_dns(pod: Obj, *, cluster_dns: list[str], cluster_domain: str, resolv_conf: str) -> tuple[DNSConfig, str]:
    """(the pod's DNS config, a warning to report or "")."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    warning = ""
    if policy == "ClusterFirst" and not cluster_dns:
        warning = (
            "pod: \"" + pod["metadata"]["name"] + "\". kubelet does not have ClusterDNS IP configured and "
            "cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy."
        )
        policy = "Default"
    if policy == "None":
        return _merge(DNSConfig(), spec.get("dnsConfig")), warning
    host = host_dns(resolv_conf)
    if policy == "Default":
        return _merge(host, spec.get("dnsConfig")), warning
    ns = pod["metadata"].get("namespace", "default")
    searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
    searches += [s for s in host.searches if s not in searches]
    base = DNSConfig(servers=list(cluster_dns), searches=searches[:MAX_SEARCHES], options=[NDOTS])
    return _merge(base, spec.get("dnsConfig")), warning
