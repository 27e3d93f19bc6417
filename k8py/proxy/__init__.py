"""kube-proxy in nftables mode (``k8py proxy``).

``serviceport`` and ``endpoints`` turn Services and EndpointSlices into what the rules need and
track their changes between syncs; ``proxier`` writes the ``ip kube-proxy`` table (full and
partial syncs, one ``nft -f -`` transaction each); ``nftables`` runs nft; ``conntrack`` deletes
stale UDP/SCTP conntrack entries after a sync; ``server`` wires the informers to the proxier.
"""

from k8py.proxy.proxier import KUBE_PROXY_TABLE, Proxier, ProxierConfig, SyncResult, cleanup_leftovers
from k8py.proxy.server import ProxyServer

__all__ = ["KUBE_PROXY_TABLE", "ProxyServer", "Proxier", "ProxierConfig", "SyncResult", "cleanup_leftovers"]
