"""Cluster DNS (CoreDNS's role in a kubeadm cluster): ``k8py dns``.

``records`` is the cluster zone (the Kubernetes DNS schema over an index fed by informers),
``forward`` the upstream forwarder and its cache, ``server`` the UDP/TCP server tying them together.
"""

from k8py.dns.forward import DNSCache, Forwarder, Upstream, parse_upstream, resolv_conf_upstreams
from k8py.dns.records import DEFAULT_TTL, ClusterZone
from k8py.dns.server import DNSServer

__all__ = [
    "DEFAULT_TTL",
    "ClusterZone",
    "DNSCache",
    "DNSServer",
    "Forwarder",
    "Upstream",
    "parse_upstream",
    "resolv_conf_upstreams",
]
