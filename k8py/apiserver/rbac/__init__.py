"""RBAC (rbac.authorization.k8s.io/v1): the authorizer, its bootstrap policy and escalation checks.

rules.py       PolicyRule matching and covering
authorizer.py  RBACAuthorizer: Authorizer + RuleResolver over the watch cache, bindings indexed by subject
escalation.py  EscalationCheck: no granting or binding of permissions one does not hold (escalate/bind verbs)
policy.py      the bootstrap roles and bindings (bootstrappolicy)
reconcile.py   BootstrapPolicy: the `rbac/bootstrap-roles` post-start hook
"""

from k8py.apiserver.rbac.authorizer import RBACAuthorizer
from k8py.apiserver.rbac.escalation import EscalationCheck
from k8py.apiserver.rbac.reconcile import BootstrapPolicy

__all__ = ["BootstrapPolicy", "EscalationCheck", "RBACAuthorizer"]
