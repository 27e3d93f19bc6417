"""What a request is about: a :class:`Resource` names a REST collection (group, version, plural).

It plays client-go's ``schema.GroupVersionResource`` plus the two facts a client needs to build
URLs and object references without discovery: the kind and whether the resource is
namespaced.  The constants below cover the built-ins components use; they are looked up in
:mod:`k8py.api.registry` (the table the API server serves from) rather than written out again,
so the client cannot drift from the server.  Custom resources are plain ``Resource(...)`` values.
"""

from __future__ import annotations

from dataclasses import dataclass

from k8py.api.registry import RESOURCES


@dataclass(frozen=True, slots=True)
class Resource:
    group: str  # "" is the core group
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, *, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path of the collection, or of one object (and its subresource)."""
        parts = ["/apis", self.group, self.version] if self.group else ["/api", self.version]
        if namespace:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name:
            parts.append(name)
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


def builtin(plural: str, group: str = "") -> Resource:
    """A resource the API server serves, in its group's preferred version."""
    for r in RESOURCES:
        if r.group == group and r.resource == plural and r.preferred:
            return Resource(r.group, r.version, r.resource, r.kind, r.namespaced)
    raise KeyError(f"no built-in resource {plural!r} in group {group!r}")


def resource_of(obj: dict[str, object]) -> Resource:
    """The built-in resource an object belongs to, by its apiVersion and kind."""
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    for r in RESOURCES:
        if r.group == group and r.version == version and r.kind == obj.get("kind") and "/" not in r.resource:
            return Resource(r.group, r.version, r.resource, r.kind, r.namespaced)
    raise KeyError(f"no built-in resource of kind {obj.get('kind')!r} in {obj.get('apiVersion')!r}")


# core/v1
NAMESPACES = builtin("namespaces")
NODES = builtin("nodes")
PODS = builtin("pods")
SERVICES = builtin("services")
ENDPOINTS = builtin("endpoints")
CONFIGMAPS = builtin("configmaps")
SECRETS = builtin("secrets")
SERVICE_ACCOUNTS = builtin("serviceaccounts")
EVENTS = builtin("events")
PERSISTENT_VOLUMES = builtin("persistentvolumes")
PERSISTENT_VOLUME_CLAIMS = builtin("persistentvolumeclaims")
REPLICATION_CONTROLLERS = builtin("replicationcontrollers")
RESOURCE_QUOTAS = builtin("resourcequotas")
LIMIT_RANGES = builtin("limitranges")
# apps/v1
DEPLOYMENTS = builtin("deployments", "apps")
REPLICA_SETS = builtin("replicasets", "apps")
STATEFUL_SETS = builtin("statefulsets", "apps")
DAEMON_SETS = builtin("daemonsets", "apps")
CONTROLLER_REVISIONS = builtin("controllerrevisions", "apps")
# the rest, by group
HORIZONTAL_POD_AUTOSCALERS = builtin("horizontalpodautoscalers", "autoscaling")
JOBS = builtin("jobs", "batch")
CRON_JOBS = builtin("cronjobs", "batch")
CERTIFICATE_SIGNING_REQUESTS = builtin("certificatesigningrequests", "certificates.k8s.io")
LEASES = builtin("leases", "coordination.k8s.io")
ENDPOINT_SLICES = builtin("endpointslices", "discovery.k8s.io")
EVENTS_V1 = builtin("events", "events.k8s.io")
INGRESSES = builtin("ingresses", "networking.k8s.io")
NETWORK_POLICIES = builtin("networkpolicies", "networking.k8s.io")
POD_DISRUPTION_BUDGETS = builtin("poddisruptionbudgets", "policy")
PRIORITY_CLASSES = builtin("priorityclasses", "scheduling.k8s.io")
STORAGE_CLASSES = builtin("storageclasses", "storage.k8s.io")
CSI_NODES = builtin("csinodes", "storage.k8s.io")
VOLUME_ATTACHMENTS = builtin("volumeattachments", "storage.k8s.io")
