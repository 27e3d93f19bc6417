"""NetworkPolicy enforcement (networking.k8s.io/v1) with nftables: Calico Felix's part in k8py.

``ruleset`` computes the desired state from Pods, Namespaces and NetworkPolicies (pure),
``nftables`` renders it and writes the difference to the kernel, ``agent`` runs the informers
and the sync loop (:class:`PolicyAgent`).
"""

from k8py.network.policy.agent import PolicyAgent
from k8py.network.policy.nftables import TABLE, NFTables
from k8py.network.policy.ruleset import Ruleset, compute_ruleset

__all__ = ["TABLE", "NFTables", "PolicyAgent", "Ruleset", "compute_ruleset"]
