"""The resource registry: every REST resource the API server serves.

Mirrors what kube-apiserver 1.32 reports in discovery (`kubectl api-resources`):
group, version, plural resource name, kind, scope, verbs, short names,
categories and subresources, plus where the objects live in the store
(kube-apiserver's etcd key prefixes, e.g. services under
`/registry/services/specs`). Several group-versions may share one storage
(events in core/v1 and events.k8s.io/v1; HPAs in autoscaling/v1 and v2): they
name the same `storage_prefix` and the same `storage_version`, and
`k8py.api.conversion` converts between them.

Custom resources join at run time (`k8py.apiextensions`): their ResourceInfos
carry the CRD version's behaviour in `custom`. The registry is read by worker
threads (OpenAPI documents are built off the event loop), so changes replace
its dicts and lists instead of mutating them: a reader keeps a consistent view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k8py.apiextensions.customresource import CustomResource

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Subresource:
    name: str  # "status", "scale", "binding", ...
    kind: str  # kind of the subresource body ("Scale" for scale)
    group: str = ""  # group of that kind, when it differs ("autoscaling" for Scale)
    version: str = ""
    verbs: tuple[str, ...] = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    resource: str  # plural, lower case
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    storage_prefix: str = ""  # defaults to /registry/<resource>
    storage_version: str = ""  # apiVersion objects are stored in ("v1", "autoscaling/v2"); defaults to own
    preferred: bool = True  # is `version` the group's preferred version
    singular: str = field(default="")
    custom: CustomResource | None = field(default=None, compare=False, repr=False)  # a CRD's served version

    def __post_init__(self) -> None:
        if not self.storage_prefix:
            object.__setattr__(self, "storage_prefix", f"/registry/{self.resource}")
        if not self.storage_version:
            object.__setattr__(self, "storage_version", self.group_version)
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def stored(self) -> bool:
        """False for create-only resources (bindings, access and token reviews): answered, never stored."""
        return self.verbs != ("create",)

    @property
    def list_kind(self) -> str:
        return self.custom.list_kind if self.custom is not None else f"{self.kind}List"

    def subresource(self, name: str) -> Subresource | None:
        for s in self.subresources:
            if s.name == name:
                return s
        return None

    def key(self, namespace: str, name: str) -> str:
        """The store key of one object."""
        if self.namespaced:
            return f"{self.storage_prefix}/{namespace}/{name}"
        return f"{self.storage_prefix}/{name}"

    def prefix(self, namespace: str = "") -> str:
        """The store prefix of a collection (all namespaces when `namespace` is empty)."""
        if self.namespaced and namespace:
            return f"{self.storage_prefix}/{namespace}/"
        return f"{self.storage_prefix}/"


STATUS = Subresource("status", "")  # kind "" means: the resource's own kind
SCALE = Subresource("scale", "Scale", "autoscaling", "v1")


def _r(
    group: str,
    version: str,
    resource: str,
    kind: str,
    namespaced: bool = True,
    **kw: object,
) -> ResourceInfo:
    return ResourceInfo(group, version, resource, kind, namespaced, **kw)  # type: ignore[arg-type]


RESOURCES: tuple[ResourceInfo, ...] = (
    # core/v1
    _r("", "v1", "bindings", "Binding", verbs=("create",)),
    _r("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _r("", "v1", "endpoints", "Endpoints", short_names=("ep",), storage_prefix="/registry/services/endpoints"),
    _r("", "v1", "events", "Event", short_names=("ev",)),
    _r("", "v1", "limitranges", "LimitRange", short_names=("limits",)),
    _r(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        short_names=("ns",),
        verbs=NO_COLLECTION_DELETE,
        subresources=(STATUS, Subresource("finalize", "", verbs=("update",))),
    ),
    _r(
        "",
        "v1",
        "nodes",
        "Node",
        False,
        short_names=("no",),
        subresources=(STATUS, Subresource("proxy", "NodeProxyOptions", verbs=("create", "delete", "get", "patch", "update"))),
        storage_prefix="/registry/minions",
    ),
    _r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",), subresources=(STATUS,)),
    _r("", "v1", "persistentvolumes", "PersistentVolume", False, short_names=("pv",), subresources=(STATUS,)),
    _r(
        "",
        "v1",
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        subresources=(
            Subresource("attach", "PodAttachOptions", verbs=("create", "get")),
            Subresource("binding", "Binding", verbs=("create",)),
            Subresource("ephemeralcontainers", "", verbs=("get", "patch", "update")),
            Subresource("eviction", "Eviction", "policy", "v1", verbs=("create",)),
            Subresource("exec", "PodExecOptions", verbs=("create", "get")),
            Subresource("log", "Pod", verbs=("get",)),
            Subresource("portforward", "PodPortForwardOptions", verbs=("create", "get")),
            Subresource("proxy", "PodProxyOptions", verbs=("create", "delete", "get", "patch", "update")),
            Subresource("resize", "", verbs=("get", "patch", "update")),
            STATUS,
        ),
    ),
    _r("", "v1", "podtemplates", "PodTemplate"),
    _r(
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        short_names=("rc",),
        categories=("all",),
        subresources=(SCALE, STATUS),
        storage_prefix="/registry/controllers",
    ),
    _r("", "v1", "resourcequotas", "ResourceQuota", short_names=("quota",), subresources=(STATUS,)),
    _r("", "v1", "secrets", "Secret"),
    _r(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        short_names=("sa",),
        subresources=(Subresource("token", "TokenRequest", "authentication.k8s.io", "v1", verbs=("create",)),),
    ),
    _r(
        "",
        "v1",
        "services",
        "Service",
        short_names=("svc",),
        categories=("all",),
        verbs=NO_COLLECTION_DELETE,
        subresources=(Subresource("proxy", "ServiceProxyOptions", verbs=("create", "delete", "get", "patch", "update")), STATUS),
        storage_prefix="/registry/services/specs",
    ),
    # apiextensions.k8s.io/v1
    _r(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=(STATUS,),
        storage_prefix="/registry/apiextensions.k8s.io/customresourcedefinitions",
    ),
    # admissionregistration.k8s.io/v1 (stored and served; webhooks are not called yet)
    _r("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
    _r("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
    # apps/v1
    _r("apps", "v1", "controllerrevisions", "ControllerRevision"),
    _r("apps", "v1", "daemonsets", "DaemonSet", short_names=("ds",), categories=("all",), subresources=(STATUS,)),
    _r(
        "apps", "v1", "deployments", "Deployment", short_names=("deploy",), categories=("all",), subresources=(SCALE, STATUS)
    ),
    _r("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), categories=("all",), subresources=(SCALE, STATUS)),
    _r(
        "apps", "v1", "statefulsets", "StatefulSet", short_names=("sts",), categories=("all",), subresources=(SCALE, STATUS)
    ),
    # authentication.k8s.io/v1 and authorization.k8s.io/v1: reviews (k8py.apiserver.authreviews)
    _r("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, verbs=("create",)),
    _r("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",)),
    _r("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", verbs=("create",)),
    _r("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, verbs=("create",)),
    _r("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False, verbs=("create",)),
    _r("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False, verbs=("create",)),
    # autoscaling: v2 preferred, v1 served from the same storage
    _r(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short_names=("hpa",),
        categories=("all",),
        subresources=(STATUS,),
    ),
    _r(
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short_names=("hpa",),
        categories=("all",),
        subresources=(STATUS,),
        storage_version="autoscaling/v2",
        preferred=False,
    ),
    # batch/v1
    _r("batch", "v1", "cronjobs", "CronJob", short_names=("cj",), categories=("all",), subresources=(STATUS,)),
    _r("batch", "v1", "jobs", "Job", categories=("all",), subresources=(STATUS,)),
    # certificates.k8s.io/v1
    _r(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        False,
        short_names=("csr",),
        subresources=(Subresource("approval", ""), STATUS),
    ),
    # coordination.k8s.io/v1
    _r("coordination.k8s.io", "v1", "leases", "Lease"),
    # discovery.k8s.io/v1
    _r("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    # events.k8s.io/v1 shares core/v1 events' storage
    _r("events.k8s.io", "v1", "events", "Event", short_names=("ev",), storage_version="v1"),
    # networking.k8s.io/v1
    _r("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _r("networking.k8s.io", "v1", "ingresses", "Ingress", short_names=("ing",), subresources=(STATUS,), storage_prefix="/registry/ingress"),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",)),
    # node.k8s.io/v1
    _r("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False),
    # policy/v1
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",), subresources=(STATUS,)),
    # rbac.authorization.k8s.io/v1
    _r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    # scheduling.k8s.io/v1
    _r("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, short_names=("pc",)),
    # storage.k8s.io/v1
    _r("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False),
    _r("storage.k8s.io", "v1", "csinodes", "CSINode", False),
    _r("storage.k8s.io", "v1", "csistoragecapacities", "CSIStorageCapacity"),
    _r("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, short_names=("sc",)),
    _r("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", False, subresources=(STATUS,)),
)


class Registry:
    """Lookup over a set of ResourceInfo; the API server keeps one."""

    def __init__(self, resources: Iterable[ResourceInfo] = RESOURCES) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceInfo] = {}
        self._by_gvk: dict[tuple[str, str, str], ResourceInfo] = {}
        self._groups: dict[str, list[str]] = {}  # group -> versions, preferred first
        for r in resources:
            self.add(r)

    def add(self, r: ResourceInfo) -> None:
        self._by_gvr = {**self._by_gvr, (r.group, r.version, r.resource): r}
        if (r.group, r.version, r.kind) not in self._by_gvk:
            self._by_gvk = {**self._by_gvk, (r.group, r.version, r.kind): r}
        versions = self._groups.get(r.group, [])
        if r.version not in versions:
            versions = [r.version, *versions] if r.preferred else [*versions, r.version]
            self._groups = {**self._groups, r.group: versions}

    def remove_group_version(self, group: str, version: str) -> None:
        self._by_gvr = {k: r for k, r in self._by_gvr.items() if k[:2] != (group, version)}
        self._by_gvk = {k: r for k, r in self._by_gvk.items() if k[:2] != (group, version)}
        groups = {g: [v for v in vs if g != group or v != version] for g, vs in self._groups.items()}
        self._groups = {g: vs for g, vs in groups.items() if vs}

    def get(self, group: str, version: str, resource: str) -> ResourceInfo | None:
        return self._by_gvr.get((group, version, resource))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceInfo | None:
        return self._by_gvk.get((group, version, kind))

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, the preferred one first; "" is the core group."""
        return self._groups

    def resources(self, group: str | None = None, version: str | None = None) -> list[ResourceInfo]:
        return [
            r
            for r in self._by_gvr.values()
            if (group is None or r.group == group) and (version is None or r.version == version)
        ]

    def for_storage(self, storage_prefix: str) -> list[ResourceInfo]:
        """Every served version of the resource stored under `storage_prefix`."""
        return [r for r in self._by_gvr.values() if r.storage_prefix == storage_prefix]
