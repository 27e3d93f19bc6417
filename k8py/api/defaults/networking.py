"""Defaulting of networking.k8s.io/v1 (pkg/apis/networking/v1/defaults.go)."""

from __future__ import annotations

from k8py.api.defaults.core import Obj, set_if_unset


def default_network_policy(policy: Obj) -> None:
    spec = policy.setdefault("spec", {})
    for rules in (spec.get("ingress"), spec.get("egress")):
        for rule in rules or []:
            for port in rule.get("ports") or []:
                set_if_unset(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        # A policy that names no types is an Ingress policy, and an Egress one too if it has egress rules.
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def default_ingress_class(ingress_class: Obj) -> None:
    parameters = (ingress_class.get("spec") or {}).get("parameters")
    if parameters is not None:
        set_if_unset(parameters, "scope", "Cluster")


DEFAULTERS = {
    ("v1", "NetworkPolicy"): default_network_policy,
    ("v1", "IngressClass"): default_ingress_class,
}
