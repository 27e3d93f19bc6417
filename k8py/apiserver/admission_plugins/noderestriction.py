"""NodeRestriction: a kubelet may only change what belongs to its own node.

kube's plugin/pkg/admission/noderestriction, for requests of `system:node:<name>`
users (group `system:nodes`; everyone else passes untouched):
- Nodes: only its own Node (create, update, delete, status); on create no
  configSource and no labels outside the kubelet's set; on update no new
  configSource, no taint changes, no label changes outside the kubelet's set.
  The kubelet's set: the well-known hostname/zone/region/instance-type/os/arch
  labels and the kubelet.kubernetes.io / node.kubernetes.io prefixes; never
  node-restriction.kubernetes.io, never another kubernetes.io or k8s.io label.
- Pods: only mirror pods bound to itself, controlled by its Node (uid checked),
  referencing no service account, secret, configmap, persistentvolumeclaim or
  clustertrustbundle; delete only pods bound to itself; status only of its pods
  (labels and resource claim statuses unchanged); evictions only of its pods.
- PersistentVolumeClaims: status only, and there only capacity, conditions and
  the resize recovery fields.
- ServiceAccount tokens: bound to an existing pod on the node (uid checked).
- Leases in kube-node-lease and CSINodes: only its own.
Which objects a node may read is the Node authorizer's business
(`k8py.apiserver.nodeauthorizer`).
"""

from __future__ import annotations

from typing import Any

from k8py.api import errors
from k8py.api.registry import ResourceInfo
from k8py.apiserver.admission import Attributes, forbidden
from k8py.apiserver.nodeauthorizer import (
    MIRROR_POD_ANNOTATION,
    NODE_LEASE_NAMESPACE,
    node_identity,
    pod_configmap_names,
    pod_secret_names,
)
from k8py.apiserver.watchcache import WatchCache

Obj = dict[str, Any]

# k8s.io/kubelet/pkg/apis: labels a kubelet may set on its own Node
KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    }
)
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
NODE_RESTRICTION_NAMESPACE = "node-restriction.kubernetes.io"


def _label_namespace(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def _in_namespace(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def is_kubelet_label(key: str) -> bool:
    ns = _label_namespace(key)
    return key in KUBELET_LABELS or any(_in_namespace(ns, allowed) for allowed in KUBELET_LABEL_NAMESPACES)


def forbidden_labels(new: dict[str, str], old: dict[str, str]) -> list[str]:
    """The added, removed or changed label keys a node may not touch, sorted."""
    modified = {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}
    out = []
    for key in modified:
        ns = _label_namespace(key)
        kubernetes = _in_namespace(ns, "kubernetes.io") or _in_namespace(ns, "k8s.io")
        if _in_namespace(ns, NODE_RESTRICTION_NAMESPACE) or (kubernetes and not is_kubelet_label(key)):
            out.append(key)
    return sorted(out)


def _claim_statuses(pod: Obj) -> list[tuple[Any, Any]]:
    return [(s.get("name"), s.get("resourceClaimName")) for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []]


class NodeRestriction:
    name = "NodeRestriction"

    def __init__(self, cache: WatchCache, pods: ResourceInfo, nodes: ResourceInfo) -> None:
        self._cache = cache
        self._pods = pods
        self._nodes = nodes

    def admit(self, attrs: Attributes) -> None:
        node, is_node = node_identity(attrs.user)
        if not is_node or attrs.operation not in ("CREATE", "UPDATE", "DELETE"):
            return
        if not node:
            raise forbidden(attrs, f'could not determine node from user "{attrs.user.name}"')
        group, resource = attrs.info.group, attrs.info.resource
        if (group, resource) == ("", "pods"):
            if attrs.subresource == "":
                self._pod(node, attrs)
            elif attrs.subresource == "status":
                self._pod_status(node, attrs)
            elif attrs.subresource == "eviction":
                self._eviction(node, attrs)
            else:
                raise forbidden(attrs, f"unexpected pod subresource \"{attrs.subresource}\", only 'status' and 'eviction' are allowed")
        elif (group, resource) == ("", "nodes"):
            self._node(node, attrs)
        elif (group, resource) == ("", "persistentvolumeclaims"):
            if attrs.subresource != "status":
                raise forbidden(attrs, "may only update PVC status")
            self._pvc_status(node, attrs)
        elif (group, resource) == ("", "serviceaccounts"):
            self._token(node, attrs)
        elif (group, resource) == ("coordination.k8s.io", "leases"):
            if attrs.namespace != NODE_LEASE_NAMESPACE:
                raise forbidden(attrs, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
            self._own_name(node, attrs, "node lease")
        elif (group, resource) == ("storage.k8s.io", "csinodes"):
            self._own_name(node, attrs, "CSINode")

    @staticmethod
    def _own_name(node: str, attrs: Attributes, what: str) -> None:
        name = (attrs.obj or {}).get("metadata", {}).get("name") if attrs.operation == "CREATE" else attrs.name
        if name != node:
            raise forbidden(attrs, f"can only access {what} with the same name as the requesting node")

    def _pod(self, node: str, attrs: Attributes) -> None:
        if attrs.operation == "CREATE":
            self._mirror_pod(node, attrs, attrs.obj or {})
        elif attrs.operation == "DELETE":
            if ((attrs.old or {}).get("spec") or {}).get("nodeName") != node:
                raise forbidden(attrs, f'node "{node}" can only delete pods with spec.nodeName set to itself')
        else:
            raise forbidden(attrs, f'unexpected operation "{attrs.operation}", node "{node}" can only create and delete mirror pods')

    def _mirror_pod(self, node: str, attrs: Attributes, pod: Obj) -> None:
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if MIRROR_POD_ANNOTATION not in (md.get("annotations") or {}):
            raise forbidden(attrs, f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" can only create mirror pods')
        if spec.get("nodeName") != node:
            raise forbidden(attrs, f'node "{node}" can only create pods with spec.nodeName set to itself')
        owners = md.get("ownerReferences") or []
        if len(owners) > 1:
            raise forbidden(attrs, f'node "{node}" can only create pods with a single owner reference set to itself')
        if not owners or (owners[0].get("apiVersion"), owners[0].get("kind"), owners[0].get("name")) != ("v1", "Node", node):
            raise forbidden(attrs, f'node "{node}" can only create pods with an owner reference set to itself')
        owner = owners[0]
        if not owner.get("controller"):
            raise forbidden(attrs, f'node "{node}" can only create pods with a controller owner reference set to itself')
        if owner.get("blockOwnerDeletion"):
            raise forbidden(attrs, f'node "{node}" must not set blockOwnerDeletion on an owner reference')
        current = self._cache.get(self._nodes.key("", node))
        if current is None:
            raise errors.not_found("", "nodes", node)
        if owner.get("uid") != current["metadata"].get("uid"):
            raise forbidden(attrs, f"node {node} UID mismatch: expected {owner.get('uid')} got {current['metadata'].get('uid')}")
        if spec.get("serviceAccountName"):
            raise forbidden(attrs, f'node "{node}" can not create pods that reference a service account')
        if pod_secret_names(pod):
            raise forbidden(attrs, f'node "{node}" can not create pods that reference secrets')
        if pod_configmap_names(pod):
            raise forbidden(attrs, f'node "{node}" can not create pods that reference configmaps')
        volumes = spec.get("volumes") or []
        for v in volumes:
            if any("clusterTrustBundle" in s for s in (v.get("projected") or {}).get("sources") or []):
                raise forbidden(attrs, f'node "{node}" can not create pods that reference clustertrustbundles')
        if any(v.get("persistentVolumeClaim") for v in volumes):
            raise forbidden(attrs, f'node "{node}" can not create pods that reference persistentvolumeclaims')

    @staticmethod
    def _pod_status(node: str, attrs: Attributes) -> None:
        if attrs.operation != "UPDATE":
            raise forbidden(attrs, f'unexpected operation "{attrs.operation}"')
        old, new = attrs.old or {}, attrs.obj or {}
        if (old.get("spec") or {}).get("nodeName") != node:
            raise forbidden(attrs, f'node "{node}" can only update pod status for pods with spec.nodeName set to itself')
        if (old["metadata"].get("labels") or {}) != (new.get("metadata", {}).get("labels") or {}):
            raise forbidden(attrs, f'node "{node}" cannot update labels through pod status')
        if _claim_statuses(old) != _claim_statuses(new):
            raise forbidden(attrs, f'node "{node}" cannot update resource claim statues')

    def _eviction(self, node: str, attrs: Attributes) -> None:
        if attrs.operation != "CREATE":
            raise forbidden(attrs, f"unexpected operation {attrs.operation}")
        name = attrs.name or (attrs.obj or {}).get("metadata", {}).get("name")
        if not name:
            raise forbidden(attrs, "could not determine pod from request data")
        pod = self._cache.get(self._pods.key(attrs.namespace, name))
        if pod is None:
            raise errors.not_found("", "pods", name)
        if (pod.get("spec") or {}).get("nodeName") != node:
            raise forbidden(attrs, f"node {node} can only evict pods with spec.nodeName set to itself")

    @staticmethod
    def _pvc_status(node: str, attrs: Attributes) -> None:
        if attrs.operation != "UPDATE":
            raise forbidden(attrs, f'unexpected operation "{attrs.operation}"')

        def comparable(pvc: Obj) -> Obj:
            md = {k: v for k, v in (pvc.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
            ignored = ("capacity", "conditions", "allocatedResourceStatuses", "allocatedResources")
            status = {k: v for k, v in (pvc.get("status") or {}).items() if k not in ignored}
            return {**pvc, "metadata": md, "status": status}

        if comparable(attrs.old or {}) != comparable(attrs.obj or {}):
            raise forbidden(attrs, f'node "{node}" is not allowed to update fields other than status.capacity and status.conditions')

    def _node(self, node: str, attrs: Attributes) -> None:
        if attrs.name != node:
            raise forbidden(attrs, f'node "{node}" is not allowed to modify node "{attrs.name}"')
        new_spec = (attrs.obj or {}).get("spec") or {}
        new_labels = (attrs.obj or {}).get("metadata", {}).get("labels") or {}
        if attrs.operation == "CREATE":
            if new_spec.get("configSource") is not None:
                raise forbidden(attrs, f'node "{node}" is not allowed to create pods with a non-nil configSource')
            if bad := forbidden_labels(new_labels, {}):
                raise forbidden(attrs, f'node "{node}" is not allowed to set the following labels: {", ".join(bad)}')
        elif attrs.operation == "UPDATE":
            old = attrs.old or {}
            old_spec = old.get("spec") or {}
            if new_spec.get("configSource") is not None and new_spec["configSource"] != old_spec.get("configSource"):
                raise forbidden(attrs, f'node "{node}" is not allowed to update configSource to a new non-nil configSource')
            if (new_spec.get("taints") or []) != (old_spec.get("taints") or []):
                raise forbidden(attrs, f'node "{node}" is not allowed to modify taints')
            if bad := forbidden_labels(new_labels, old["metadata"].get("labels") or {}):
                raise forbidden(attrs, f"is not allowed to modify labels: {', '.join(bad)}")

    def _token(self, node: str, attrs: Attributes) -> None:
        """TokenRequests of a node must be bound to a pod on that node."""
        if attrs.operation != "CREATE" or attrs.subresource != "token":
            return
        ref = ((attrs.obj or {}).get("spec") or {}).get("boundObjectRef") or {}
        if (ref.get("apiVersion"), ref.get("kind")) != ("v1", "Pod") or not ref.get("name"):
            raise forbidden(attrs, "node requested token not bound to a pod")
        if not ref.get("uid"):
            raise forbidden(attrs, "node requested token with a pod binding without a uid")
        pod = self._cache.get(self._pods.key(attrs.namespace, ref["name"]))
        if pod is None:
            raise errors.not_found("", "pods", ref["name"])
        if ref["uid"] != pod["metadata"].get("uid"):
            raise forbidden(
                attrs,
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated",
            )
        if (pod.get("spec") or {}).get("nodeName") != node:
            raise forbidden(attrs, "node requested token bound to a pod scheduled on a different node")
