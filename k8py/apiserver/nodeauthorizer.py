"""The Node authorizer: a kubelet reads only what the pods bound to its node need.

kube's plugin/pkg/auth/authorizer/node. A request from `system:node:<name>` in
group `system:nodes` for a secret, configmap, persistentvolumeclaim (and its
status), persistentvolume, resourceclaim, volumeattachment or service account
token is allowed only when the object is related to that node in a graph kept
from the watch cache:

    node <- pod <- secret | configmap | pvc | serviceaccount | resourceclaim
    node <- pod <- pvc <- pv <- secret
    node <- volumeattachment

Mirror pods link only to their node (they may reference nothing: NodeRestriction).
Leases (kube-node-lease/<name>) and CSINodes are limited to the node's own name;
everything else is decided by the static node rules (bootstrappolicy.NodeRules,
the `system:node` ClusterRole), and what they do not allow gets no opinion.
Nodes and pods are among the rule-decided resources, as upstream without
AuthorizeNodeWithSelectors: the authorization attributes carry no field
selectors, which the selector-scoped variant of those checks needs. What nodes
write there is limited by the NodeRestriction admission plugin.

The graph is indexed by node: each node's count of references per object, each
pod's references, PVs by claim and by secret, so a decision is a few dict
lookups. It follows the watch cache's events (`WatchCache.on_events`) and
starts from the cache's contents the first time it is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from k8py.api.registry import Registry
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.authorization import Attributes, Decision, ResourceRule, Rules
from k8py.apiserver.watchcache import WatchCache, WatchEvent

Obj = dict[str, Any]
Ref = tuple[str, str, str]  # (kind of vertex, namespace, name)

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

_READ = ("get", "list", "watch")
OWN_OBJECT_VERBS = ("get", "create", "update", "patch", "delete")
# bootstrappolicy.NodeRules() of 1.32 (DynamicResourceAllocation and ClusterTrustBundle off)
NODE_RULES: tuple[ResourceRule, ...] = (
    ResourceRule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
    ResourceRule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews", "localsubjectaccessreviews")),
    ResourceRule(_READ, ("",), ("services",)),
    ResourceRule(("create", *_READ), ("",), ("nodes",)),
    ResourceRule(("update", "patch"), ("",), ("nodes/status",)),
    ResourceRule(("update", "patch"), ("",), ("nodes",)),
    ResourceRule(("create", "update", "patch"), ("",), ("events",)),
    ResourceRule(_READ, ("",), ("pods",)),
    ResourceRule(("create", "delete"), ("",), ("pods",)),
    ResourceRule(("update", "patch"), ("",), ("pods/status",)),
    ResourceRule(("create",), ("",), ("pods/eviction",)),
    ResourceRule(_READ, ("",), ("secrets", "configmaps")),
    ResourceRule(("get",), ("",), ("persistentvolumeclaims", "persistentvolumes")),
    ResourceRule(("get",), ("",), ("endpoints",)),
    ResourceRule(("create", *_READ), ("certificates.k8s.io",), ("certificatesigningrequests",)),
    ResourceRule(OWN_OBJECT_VERBS, ("coordination.k8s.io",), ("leases",)),
    ResourceRule(("get",), ("storage.k8s.io",), ("volumeattachments",)),
    ResourceRule(("create",), ("",), ("serviceaccounts/token",)),
    ResourceRule(("get", "update", "patch"), ("",), ("persistentvolumeclaims/status",)),
    ResourceRule(_READ, ("storage.k8s.io",), ("csidrivers",)),
    ResourceRule(OWN_OBJECT_VERBS, ("storage.k8s.io",), ("csinodes",)),
    ResourceRule(_READ, ("node.k8s.io",), ("runtimeclasses",)),
)


def node_identity(user: UserInfo) -> tuple[str, bool]:
    """nodeidentifier.NodeIdentity: (node name, is a node); a node user with an empty name is still a node."""
    if not user.name.startswith(NODE_USER_PREFIX) or NODES_GROUP not in user.groups:
        return "", False
    return user.name[len(NODE_USER_PREFIX) :], True


# ---- what objects reference (podutil.VisitPodSecretNames & co, pvutil.VisitPVSecretNames) ----------

# volume sources whose `secretRef` is a LocalObjectReference (pods) or SecretReference (PVs)
_SECRET_REF_SOURCES = ("cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi", "storageos")


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def pod_secret_names(pod: Obj) -> set[str]:
    spec = pod.get("spec") or {}
    names = {s.get("name", "") for s in spec.get("imagePullSecrets") or []}
    for c in _containers(spec):
        names.update((e.get("secretRef") or {}).get("name", "") for e in c.get("envFrom") or [])
        names.update(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name", "") for e in c.get("env") or [])
    for v in spec.get("volumes") or []:
        names.add((v.get("secret") or {}).get("secretName", ""))
        names.add((v.get("azureFile") or {}).get("secretName", ""))
        names.add(((v.get("csi") or {}).get("nodePublishSecretRef") or {}).get("name", ""))
        names.update(((v.get(src) or {}).get("secretRef") or {}).get("name", "") for src in _SECRET_REF_SOURCES)
        names.update((s.get("secret") or {}).get("name", "") for s in (v.get("projected") or {}).get("sources") or [])
    names.discard("")
    return names


def pod_configmap_names(pod: Obj) -> set[str]:
    spec = pod.get("spec") or {}
    names: set[str] = set()
    for c in _containers(spec):
        names.update((e.get("configMapRef") or {}).get("name", "") for e in c.get("envFrom") or [])
        names.update(((e.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name", "") for e in c.get("env") or [])
    for v in spec.get("volumes") or []:
        names.add((v.get("configMap") or {}).get("name", ""))
        names.update((s.get("configMap") or {}).get("name", "") for s in (v.get("projected") or {}).get("sources") or [])
    names.discard("")
    return names


def pod_pvc_names(pod: Obj) -> set[str]:
    """Claimed PVCs, generic ephemeral volumes' included (named `<pod>-<volume>`)."""
    pod_name = pod["metadata"]["name"]
    names: set[str] = set()
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("persistentVolumeClaim"):
            names.add(v["persistentVolumeClaim"].get("claimName", ""))
        elif v.get("ephemeral"):
            names.add(f"{pod_name}-{v.get('name', '')}")
    names.discard("")
    return names


def pod_resource_claim_names(pod: Obj) -> set[str]:
    """resourceclaim.Name for each pod claim: its own name, or the one generated from a template (from status)."""
    generated = {s.get("name"): s.get("resourceClaimName") for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []}
    names = set()
    for claim in (pod.get("spec") or {}).get("resourceClaims") or []:
        name = claim.get("resourceClaimName") or (generated.get(claim.get("name")) if claim.get("resourceClaimTemplateName") else None)
        if name:
            names.add(name)
    return names


def pod_references(pod: Obj) -> frozenset[Ref]:
    """Every object a (non-mirror) pod grants its node access to."""
    ns = pod["metadata"].get("namespace", "")
    refs = {("secret", ns, n) for n in pod_secret_names(pod)}
    refs.update(("configmap", ns, n) for n in pod_configmap_names(pod))
    refs.update(("pvc", ns, n) for n in pod_pvc_names(pod))
    refs.update(("resourceclaim", ns, n) for n in pod_resource_claim_names(pod))
    if sa := (pod.get("spec") or {}).get("serviceAccountName"):
        refs.add(("serviceaccount", ns, sa))
    return frozenset(refs)


def pv_secret_refs(pv: Obj) -> set[tuple[str, str]]:
    """The (namespace, name) of every secret a kubelet uses to mount `pv` (kubeletVisible in upstream's visitor)."""
    spec = pv.get("spec") or {}
    claim_ns = (spec.get("claimRef") or {}).get("namespace", "")
    refs: set[tuple[str, str]] = set()
    if name := (spec.get("azureFile") or {}).get("secretName"):
        refs.add((spec["azureFile"].get("secretNamespace") or claim_ns, name))
    for src in _SECRET_REF_SOURCES:
        ref = (spec.get(src) or {}).get("secretRef") or {}
        if ref.get("name"):
            # cephfs/cinder/flexVolume/rbd/scaleIO/iscsi/storageos: the ref's namespace, else the claim's
            refs.add((ref.get("namespace") or claim_ns, ref["name"]))
    for key in ("nodePublishSecretRef", "nodeStageSecretRef", "nodeExpandSecretRef"):
        ref = (spec.get("csi") or {}).get(key) or {}
        if ref.get("name"):
            refs.add((ref.get("namespace", ""), ref["name"]))
    return refs


# ---- the graph -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PodEntry:
    node: str
    refs: frozenset[Ref]


@dataclass(frozen=True, slots=True)
class _PVEntry:
    claim: Ref  # ("pvc", namespace, name)
    secrets: frozenset[tuple[str, str]]


class NodeGraph:
    """Which objects each node's pods (and attachments) relate it to, kept from the watch cache."""

    def __init__(self, cache: WatchCache, registry: Registry) -> None:
        self._cache = cache
        infos = {r: registry.get(g, "v1", r) for g, r in (("", "pods"), ("", "persistentvolumes"), ("storage.k8s.io", "volumeattachments"))}
        self._prefixes = {r: info.prefix() for r, info in infos.items() if info is not None}
        self._pods: dict[tuple[str, str], _PodEntry] = {}
        self._reach: dict[str, Counter[Ref]] = {}  # node -> references of its pods, counted
        self._pvs: dict[str, _PVEntry] = {}
        self._pvs_by_secret: dict[tuple[str, str], set[str]] = {}
        self._attachments: dict[str, str] = {}  # volumeattachment -> node
        self._synced = False
        cache.on_events.append(self._on_events)

    def _sync(self) -> bool:
        """Start from the cache's contents on first use; True when this call did."""
        if self._synced:
            return False
        self._synced = True
        for resource, prefix in self._prefixes.items():
            for obj in self._cache.list(prefix):
                self._set(resource, obj)
        return True

    def _on_events(self, events: list[WatchEvent]) -> None:
        if self._sync():
            return  # the cache already holds this batch
        for ev in events:
            for resource, prefix in self._prefixes.items():
                if ev.key.startswith(prefix):
                    if ev.type == "DELETED":
                        self._delete(resource, ev.obj)
                    else:
                        self._set(resource, ev.obj)
                    break

    def _set(self, resource: str, obj: Obj) -> None:
        md, spec = obj["metadata"], obj.get("spec") or {}
        if resource == "pods":
            if node := spec.get("nodeName"):
                mirror = MIRROR_POD_ANNOTATION in (md.get("annotations") or {})
                self._set_pod((md.get("namespace", ""), md["name"]), _PodEntry(node, frozenset() if mirror else pod_references(obj)))
        elif resource == "persistentvolumes":
            self._delete_pv(md["name"])
            if claim := spec.get("claimRef"):
                entry = _PVEntry(("pvc", claim.get("namespace", ""), claim.get("name", "")), frozenset(pv_secret_refs(obj)))
                self._pvs[md["name"]] = entry
                for secret in entry.secrets:
                    self._pvs_by_secret.setdefault(secret, set()).add(md["name"])
        elif node := spec.get("nodeName"):
            self._attachments[md["name"]] = node
        else:
            self._attachments.pop(md["name"], None)

    def _delete(self, resource: str, obj: Obj) -> None:
        md = obj["metadata"]
        if resource == "pods":
            self._set_pod((md.get("namespace", ""), md["name"]), None)
        elif resource == "persistentvolumes":
            self._delete_pv(md["name"])
        else:
            self._attachments.pop(md["name"], None)

    def _set_pod(self, key: tuple[str, str], entry: _PodEntry | None) -> None:
        old = self._pods.get(key)
        if old == entry:
            return
        if old is not None:
            del self._pods[key]
        if old is not None and old.refs:
            reach = self._reach[old.node]
            reach.subtract(old.refs)
            for ref in old.refs:
                if reach[ref] <= 0:
                    del reach[ref]
            if not reach:
                del self._reach[old.node]
        if entry is not None:
            self._pods[key] = entry
            if entry.refs:
                self._reach.setdefault(entry.node, Counter()).update(entry.refs)

    def _delete_pv(self, name: str) -> None:
        old = self._pvs.pop(name, None)
        for secret in old.secrets if old else ():
            names = self._pvs_by_secret[secret]
            names.discard(name)
            if not names:
                del self._pvs_by_secret[secret]

    def has_path(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """Is the object (`kind` one of secret, configmap, pvc, pv, serviceaccount, resourceclaim,
        volumeattachment) related to `node`?"""
        self._sync()
        if kind == "volumeattachment":
            return self._attachments.get(name) == node
        reach = self._reach.get(node)
        if reach is None:
            return False
        if kind == "pv":
            pv = self._pvs.get(name)
            return pv is not None and pv.claim in reach
        if (kind, namespace, name) in reach:
            return True
        if kind == "secret":
            return any(self._pvs[pv].claim in reach for pv in self._pvs_by_secret.get((namespace, name), ()))
        return False


# ---- the authorizer ------------------------------------------------------------------------------


def _rules_allow(attrs: Attributes) -> bool:
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    return attrs.resource_request and any(
        attrs.verb in r.verbs and attrs.api_group in r.api_groups and resource in r.resources for r in NODE_RULES
    )


class NodeAuthorizer:
    """`--authorization-mode=Node`: an Authorizer and RuleResolver (nodes' rules cannot be enumerated)."""

    # (group, resource) -> the graph's vertex kind, for the resources decided by relationship
    GRAPH_KINDS = {
        ("", "secrets"): "secret",
        ("", "configmaps"): "configmap",
        ("", "persistentvolumeclaims"): "pvc",
        ("", "persistentvolumes"): "pv",
        ("resource.k8s.io", "resourceclaims"): "resourceclaim",
        ("storage.k8s.io", "volumeattachments"): "volumeattachment",
        ("", "serviceaccounts"): "serviceaccount",
    }

    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph

    def rules_for(self, user: UserInfo, namespace: str) -> Rules:
        if node_identity(user)[1]:
            return Rules(incomplete=True, evaluation_error="node authorizer does not support user rule resolution")
        return Rules()

    def authorize(self, user: UserInfo, attributes: Attributes) -> tuple[Decision, str]:
        node, is_node = node_identity(user)
        if not is_node:
            return Decision.NO_OPINION, ""
        if not node:
            return Decision.NO_OPINION, f'unknown node for user "{user.name}"'
        a = attributes
        if a.resource_request:
            kind = self.GRAPH_KINDS.get((a.api_group, a.resource))
            if kind in ("secret", "configmap"):
                return self._read_namespaced(node, kind, a)
            if kind == "pvc" and a.subresource == "status":
                if a.verb not in ("update", "patch"):
                    return Decision.NO_OPINION, "can only get/update/patch this type"
                return self._related(node, kind, a)
            if kind in ("pvc", "pv", "resourceclaim", "volumeattachment"):
                return self._get(node, kind, a)
            if kind == "serviceaccount":
                return self._create_token(node, a)
            if (a.api_group, a.resource) == ("coordination.k8s.io", "leases"):
                return self._lease(node, a)
            if (a.api_group, a.resource) == ("storage.k8s.io", "csinodes"):
                return self._csinode(node, a)
        return (Decision.ALLOW, "") if _rules_allow(a) else (Decision.NO_OPINION, "")

    def _get(self, node: str, kind: str, a: Attributes) -> tuple[Decision, str]:
        if a.verb != "get":
            return Decision.NO_OPINION, "can only get individual resources of this type"
        if a.subresource:
            return Decision.NO_OPINION, "cannot get subresource"
        return self._related(node, kind, a)

    def _read_namespaced(self, node: str, kind: str, a: Attributes) -> tuple[Decision, str]:
        if a.verb not in _READ:
            return Decision.NO_OPINION, "can only read resources of this type"
        if a.subresource:
            return Decision.NO_OPINION, "cannot read subresource"
        if not a.namespace:
            return Decision.NO_OPINION, "can only read namespaced object of this type"
        return self._related(node, kind, a)

    def _create_token(self, node: str, a: Attributes) -> tuple[Decision, str]:
        if a.verb != "create" or not a.name:
            return Decision.NO_OPINION, "can only create tokens for individual service accounts"
        if a.subresource != "token":
            return Decision.NO_OPINION, "can only create token subresource of serviceaccount"
        return self._related(node, "serviceaccount", a)

    def _related(self, node: str, kind: str, a: Attributes) -> tuple[Decision, str]:
        if not a.name:
            return Decision.NO_OPINION, "No Object name found"
        if not self.graph.has_path(node, kind, a.namespace, a.name):
            return Decision.NO_OPINION, f"no relationship found between node '{node}' and this object"
        return Decision.ALLOW, ""

    @staticmethod
    def _lease(node: str, a: Attributes) -> tuple[Decision, str]:
        """Only the node's own Lease in kube-node-lease (NodeRestriction checks the name on create)."""
        if a.verb not in OWN_OBJECT_VERBS:
            return Decision.NO_OPINION, "can only get, create, update, patch, or delete a node lease"
        if a.namespace != NODE_LEASE_NAMESPACE:
            return Decision.NO_OPINION, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
        if a.verb != "create" and a.name != node:
            return Decision.NO_OPINION, "can only access node lease with the same name as the requesting node"
        return Decision.ALLOW, ""

    @staticmethod
    def _csinode(node: str, a: Attributes) -> tuple[Decision, str]:
        """Only the node's own CSINode (NodeRestriction checks the name on create)."""
        if a.verb not in OWN_OBJECT_VERBS:
            return Decision.NO_OPINION, "can only get, create, update, patch, or delete a CSINode"
        if a.subresource:
            return Decision.NO_OPINION, "cannot authorize CSINode subresources"
        if a.verb != "create" and a.name != node:
            return Decision.NO_OPINION, "can only access CSINode with the same name as the requesting node"
        return Decision.ALLOW, ""
