"""The bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy) of a 1.32 cluster.

ClusterRoles and ClusterRoleBindings (policy.go), the controllers' roles and
bindings (controller_policy.go: `system:controller:<name>` bound to the
ServiceAccount `kube-system/<name>`), and the Roles and RoleBindings of
kube-system and kube-public (namespace_policy.go). Every object is labelled
`kubernetes.io/bootstrapping: rbac-defaults` and annotated
`rbac.authorization.kubernetes.io/autoupdate: "true"`.

Rules are written compactly: `r(verbs, groups, resources[, names])`, each a
space-separated list where the group `core` stands for the legacy group "";
`u(verbs, urls)` for non-resource URLs.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
API_VERSION = "rbac.authorization.k8s.io/v1"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"

READ = "get list watch"
READ_WRITE = "get list watch create update patch delete deletecollection"
WRITE = "create update patch delete deletecollection"
EVENTS_WRITE = "create update patch"


def r(verbs: str, groups: str, resources: str, names: str = "") -> Obj:
    rule: Obj = {
        "apiGroups": ["" if g == "core" else g for g in groups.split()],
        "resources": resources.split(),
        "verbs": verbs.split(),
    }
    if names:
        rule["resourceNames"] = names.split()
    return rule


def u(verbs: str, urls: str) -> Obj:
    return {"nonResourceURLs": urls.split(), "verbs": verbs.split()}


EVENTS = r(EVENTS_WRITE, "core events.k8s.io", "events")


def _meta(name: str, namespace: str = "", labels: dict[str, str] | None = None) -> Obj:
    md: Obj = {"name": name, "labels": {**BOOTSTRAP_LABELS, **(labels or {})}, "annotations": {AUTOUPDATE: "true"}}
    if namespace:
        md["namespace"] = namespace
    return md


def cluster_role(name: str, *rules: Obj, labels: dict[str, str] | None = None, aggregate: str = "") -> Obj:
    obj: Obj = {"apiVersion": API_VERSION, "kind": "ClusterRole", "metadata": _meta(name, labels=labels), "rules": list(rules)}
    if aggregate:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {AGGREGATE_TO + aggregate: "true"}}]}
    return obj


def role(namespace: str, name: str, *rules: Obj) -> Obj:
    return {"apiVersion": API_VERSION, "kind": "Role", "metadata": _meta(name, namespace), "rules": list(rules)}


def subject(spec: str) -> Obj:
    """`User:name`, `Group:name` or `ServiceAccount:namespace:name`."""
    kind, _, rest = spec.partition(":")
    if kind == "ServiceAccount":
        namespace, _, name = rest.partition(":")
        return {"kind": kind, "name": name, "namespace": namespace}
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": rest}


def binding(kind: str, name: str, role_kind: str, role_name: str, *subjects: str, namespace: str = "") -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": [subject(s) for s in subjects],
    }


def _agg(to: str) -> dict[str, str]:
    return {AGGREGATE_TO + to: "true"}


PERSISTENT_VOLUME_RULES = (r(READ, "core", "persistentvolumes persistentvolumeclaims"),)

CLUSTER_ROLES: list[Obj] = [
    cluster_role("cluster-admin", r("*", "*", "*"), u("*", "*")),
    cluster_role("system:discovery", u("get", "/livez /readyz /healthz /version /version/ /openapi /openapi/* /api /api/* /apis /apis/*")),
    cluster_role("system:monitoring", u("get", "/metrics /metrics/slis /livez /readyz /healthz /livez/* /readyz/* /healthz/*")),
    cluster_role(
        "system:basic-user",
        r("create", "authorization.k8s.io", "selfsubjectaccessreviews selfsubjectrulesreviews"),
        r("create", "authentication.k8s.io", "selfsubjectreviews"),
    ),
    cluster_role("system:public-info-viewer", u("get", "/livez /readyz /healthz /version /version/")),
    cluster_role("admin", aggregate="admin"),
    cluster_role("edit", aggregate="edit", labels=_agg("admin")),
    cluster_role("view", aggregate="view", labels=_agg("edit")),
    cluster_role(
        "system:aggregate-to-admin",
        r(READ_WRITE, "rbac.authorization.k8s.io", "roles rolebindings"),
        r("create", "authorization.k8s.io", "localsubjectaccessreviews"),
        labels=_agg("admin"),
    ),
    cluster_role(
        "system:aggregate-to-edit",
        r(READ, "core", "pods/attach pods/proxy pods/exec pods/portforward secrets services/proxy"),
        r("impersonate", "core", "serviceaccounts"),
        r(WRITE, "core", "pods pods/attach pods/proxy pods/exec pods/portforward"),
        r("create", "core", "pods/eviction"),
        r(WRITE, "core", "replicationcontrollers replicationcontrollers/scale serviceaccounts services services/proxy "
          "persistentvolumeclaims configmaps secrets events"),
        r("create", "core", "serviceaccounts/token"),
        r(WRITE, "apps", "statefulsets statefulsets/scale daemonsets deployments deployments/scale deployments/rollback "
          "replicasets replicasets/scale"),
        r(WRITE, "autoscaling", "horizontalpodautoscalers"),
        r(WRITE, "batch", "jobs cronjobs"),
        r(WRITE, "extensions", "daemonsets deployments deployments/scale deployments/rollback ingresses replicasets "
          "replicasets/scale replicationcontrollers/scale networkpolicies"),
        r(WRITE, "policy", "poddisruptionbudgets"),
        r(WRITE, "networking.k8s.io", "ingresses networkpolicies"),
        r(READ_WRITE, "coordination.k8s.io", "leases"),
        labels=_agg("edit"),
    ),
    cluster_role(
        "system:aggregate-to-view",
        r(READ, "core", "pods replicationcontrollers replicationcontrollers/scale serviceaccounts services services/status "
          "endpoints persistentvolumeclaims persistentvolumeclaims/status configmaps"),
        r(READ, "core", "limitranges resourcequotas bindings events pods/status resourcequotas/status namespaces/status "
          "replicationcontrollers/status pods/log"),
        r(READ, "core", "namespaces"),
        r(READ, "discovery.k8s.io", "endpointslices"),
        r(READ, "apps", "controllerrevisions statefulsets statefulsets/status statefulsets/scale daemonsets daemonsets/status "
          "deployments deployments/status deployments/scale replicasets replicasets/status replicasets/scale"),
        r(READ, "autoscaling", "horizontalpodautoscalers horizontalpodautoscalers/status"),
        r(READ, "batch", "jobs cronjobs cronjobs/status jobs/status"),
        r(READ, "extensions", "daemonsets daemonsets/status deployments deployments/scale deployments/status ingresses "
          "ingresses/status replicasets replicasets/scale replicasets/status replicationcontrollers/scale networkpolicies"),
        r(READ, "policy", "poddisruptionbudgets poddisruptionbudgets/status"),
        r(READ, "networking.k8s.io", "ingresses ingresses/status networkpolicies"),
        labels=_agg("view"),
    ),
    cluster_role("system:heapster", r(READ, "core", "events pods nodes namespaces"), r(READ, "extensions", "deployments")),
    cluster_role(
        "system:node",
        r("create", "authentication.k8s.io", "tokenreviews"),
        r("create", "authorization.k8s.io", "subjectaccessreviews localsubjectaccessreviews"),
        r(READ, "core", "services"),
        r("create get list watch", "core", "nodes"),
        r("update patch", "core", "nodes/status"),
        r("update patch", "core", "nodes"),
        r("create update patch", "core", "events"),
        r(READ, "core", "pods"),
        r("create delete", "core", "pods"),
        r("update patch", "core", "pods/status"),
        r("create", "core", "pods/eviction"),
        r(READ, "core", "secrets configmaps"),
        r("get", "core", "persistentvolumeclaims persistentvolumes"),
        r("get", "core", "endpoints"),
        r("create get list watch", "certificates.k8s.io", "certificatesigningrequests"),
        r("get create update patch delete", "coordination.k8s.io", "leases"),
        r("get", "storage.k8s.io", "volumeattachments"),
        r("create", "core", "serviceaccounts/token"),
        r("get update patch", "core", "persistentvolumeclaims/status"),
        r(READ, "storage.k8s.io", "csidrivers"),
        r("get create update patch delete", "storage.k8s.io", "csinodes"),
        r(READ, "node.k8s.io", "runtimeclasses"),
    ),
    cluster_role(
        "system:node-problem-detector",
        r("get", "core", "nodes"), r("patch", "core", "nodes/status"), EVENTS,
    ),
    cluster_role(
        "system:kubelet-api-admin",
        r(READ, "core", "nodes"), r("proxy", "core", "nodes"), r("*", "core", "nodes/proxy nodes/metrics nodes/stats nodes/log"),
    ),
    cluster_role("system:node-bootstrapper", r("create get list watch", "certificates.k8s.io", "certificatesigningrequests")),
    cluster_role(
        "system:auth-delegator",
        r("create", "authentication.k8s.io", "tokenreviews"), r("create", "authorization.k8s.io", "subjectaccessreviews"),
    ),
    cluster_role("system:kube-aggregator", r(READ, "core", "services endpoints")),
    cluster_role(
        "system:kube-controller-manager",
        EVENTS,
        r("create", "coordination.k8s.io", "leases"),
        r("get update", "coordination.k8s.io", "leases", "kube-controller-manager"),
        r("create", "core", "secrets serviceaccounts"),
        r("delete", "core", "secrets"),
        r("get", "core", "namespaces secrets serviceaccounts configmaps"),
        r("update", "core", "secrets serviceaccounts"),
        r("create", "authentication.k8s.io", "tokenreviews"),
        r("create", "authorization.k8s.io", "subjectaccessreviews"),
        r("list watch", "*", "*"),
        r("create", "core", "serviceaccounts/token"),
    ),
    cluster_role("system:kube-dns", r("list watch", "core", "endpoints services")),
    cluster_role(
        "system:persistent-volume-provisioner",
        r("get list watch create delete", "core", "persistentvolumes"),
        r("get list watch update", "core", "persistentvolumeclaims"),
        r(READ, "storage.k8s.io", "storageclasses"),
        r("watch", "core", "events"),
        EVENTS,
    ),
    cluster_role(
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        r("create", "certificates.k8s.io", "certificatesigningrequests/nodeclient"),
    ),
    cluster_role(
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        r("create", "certificates.k8s.io", "certificatesigningrequests/selfnodeclient"),
    ),
    cluster_role(
        "system:volume-scheduler",
        r("get list watch update patch", "core", "persistentvolumes"),
        r(READ, "storage.k8s.io", "storageclasses"),
        r("get list watch update patch", "core", "persistentvolumeclaims"),
    ),
    *(
        cluster_role(f"system:certificates.k8s.io:{name}", r("approve", "certificates.k8s.io", "signers", signer))
        for name, signer in (
            ("legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
            ("kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
            ("kube-apiserver-client-approver", "kubernetes.io/kube-apiserver-client"),
            ("kube-apiserver-client-kubelet-approver", "kubernetes.io/kube-apiserver-client-kubelet"),
        )
    ),
    cluster_role("system:service-account-issuer-discovery", u("get", "/.well-known/openid-configuration /openid/v1/jwks")),
    cluster_role(
        "system:node-proxier",
        r("list watch", "core", "services endpoints"),
        r(READ, "core", "nodes"),
        EVENTS,
        r("list watch", "discovery.k8s.io", "endpointslices"),
    ),
    cluster_role(
        "system:kube-scheduler",
        EVENTS,
        r("create", "coordination.k8s.io", "leases"),
        r("get update", "coordination.k8s.io", "leases", "kube-scheduler"),
        r(READ, "core", "nodes"),
        r("get list watch delete", "core", "pods"),
        r("create", "core", "pods/binding bindings"),
        r("patch update", "core", "pods/status"),
        r(READ, "core", "replicationcontrollers services"),
        r(READ, "apps extensions", "replicasets"),
        r(READ, "apps", "statefulsets"),
        r(READ, "policy", "poddisruptionbudgets"),
        r(READ, "core", "persistentvolumeclaims persistentvolumes"),
        r("create", "authentication.k8s.io", "tokenreviews"),
        r("create", "authorization.k8s.io", "subjectaccessreviews"),
        r(READ, "storage.k8s.io", "csinodes"),
        r(READ, "core", "namespaces"),
        r(READ, "storage.k8s.io", "csidrivers"),
        r(READ, "storage.k8s.io", "csistoragecapacities"),
    ),
]

CLUSTER_ROLE_BINDINGS: list[Obj] = [
    binding("ClusterRoleBinding", name, "ClusterRole", role_name, *subjects)
    for name, role_name, subjects in (
        ("cluster-admin", "cluster-admin", ("Group:system:masters",)),
        ("system:monitoring", "system:monitoring", ("Group:system:monitoring",)),
        ("system:discovery", "system:discovery", ("Group:system:authenticated",)),
        ("system:basic-user", "system:basic-user", ("Group:system:authenticated",)),
        ("system:public-info-viewer", "system:public-info-viewer", ("Group:system:authenticated", "Group:system:unauthenticated")),
        ("system:node-proxier", "system:node-proxier", ("User:system:kube-proxy",)),
        ("system:kube-controller-manager", "system:kube-controller-manager", ("User:system:kube-controller-manager",)),
        ("system:kube-dns", "system:kube-dns", ("ServiceAccount:kube-system:kube-dns",)),
        ("system:kube-scheduler", "system:kube-scheduler", ("User:system:kube-scheduler",)),
        ("system:volume-scheduler", "system:volume-scheduler", ("User:system:kube-scheduler",)),
        ("system:node", "system:node", ()),  # no subjects: the Node authorizer answers for nodes
        ("system:service-account-issuer-discovery", "system:service-account-issuer-discovery", ("Group:system:serviceaccounts",)),
    )
]

# controller_policy.go: name -> rules; the role is system:controller:<name>, bound to kube-system/<name>
CONTROLLER_RULES: dict[str, tuple[Obj, ...]] = {
    "attachdetach-controller": (
        r("list watch", "core", "persistentvolumes persistentvolumeclaims"),
        r(READ, "core", "nodes"),
        r("patch update", "core", "nodes/status"),
        r("list watch", "core", "pods"),
        EVENTS,
        r("get create delete list watch", "storage.k8s.io", "volumeattachments"),
        r(READ, "storage.k8s.io", "csidrivers"),
        r(READ, "storage.k8s.io", "csinodes"),
    ),
    "clusterrole-aggregation-controller": (
        r("escalate get list watch update patch", "rbac.authorization.k8s.io", "clusterroles"),
    ),
    "cronjob-controller": (
        r("get list watch update", "batch", "cronjobs"),
        r("get list watch create update delete patch", "batch", "jobs"),
        r("update", "batch", "cronjobs/status"),
        r("update", "batch", "cronjobs/finalizers"),
        r("list watch delete", "core", "pods"),
        EVENTS,
    ),
    "daemon-set-controller": (
        r(READ, "extensions apps", "daemonsets"),
        r("update", "extensions apps", "daemonsets/status"),
        r("update", "extensions apps", "daemonsets/finalizers"),
        r("list watch", "core", "nodes"),
        r("list watch create delete patch", "core", "pods"),
        r("create", "core", "pods/binding"),
        r("get list watch create update delete patch", "apps", "controllerrevisions"),
        EVENTS,
    ),
    "deployment-controller": (
        r("get list watch update", "extensions apps", "deployments"),
        r("update", "extensions apps", "deployments/status"),
        r("update", "extensions apps", "deployments/finalizers"),
        r("get list watch create update patch delete", "extensions apps", "replicasets"),
        r("get list watch update", "core", "pods"),
        EVENTS,
    ),
    "disruption-controller": (
        r(READ, "extensions apps", "deployments"),
        r(READ, "apps extensions", "replicasets"),
        r(READ, "core", "replicationcontrollers"),
        r(READ, "policy", "poddisruptionbudgets"),
        r(READ, "apps", "statefulsets"),
        r("update", "policy", "poddisruptionbudgets/status"),
        r("patch update", "core", "pods/status"),
        r("get", "*", "*/scale"),
        EVENTS,
    ),
    "endpoint-controller": (
        r(READ, "core", "services pods"),
        r("get list watch create update delete", "core", "endpoints"),
        r("create", "core", "endpoints/restricted"),
        EVENTS,
    ),
    "endpointslice-controller": (
        r(READ, "core", "services pods nodes"),
        r("update", "core", "services/finalizers"),
        r("get list watch create update delete", "discovery.k8s.io", "endpointslices"),
        EVENTS,
    ),
    "endpointslicemirroring-controller": (
        r(READ, "core", "services endpoints"),
        r("update", "core", "services/finalizers"),
        r("update", "core", "endpoints/finalizers"),
        r("get list watch create update delete", "discovery.k8s.io", "endpointslices"),
        EVENTS,
    ),
    "expand-controller": (
        r("get list watch update patch", "core", "persistentvolumes"),
        r("update patch", "core", "persistentvolumeclaims/status"),
        r(READ, "core", "persistentvolumeclaims"),
        EVENTS,
    ),
    "ephemeral-volume-controller": (
        r(READ, "core", "pods"),
        r("update", "core", "pods/finalizers"),
        r("get list watch create", "core", "persistentvolumeclaims"),
        EVENTS,
    ),
    "generic-garbage-collector": (r("get list watch patch update delete", "*", "*"), EVENTS),
    "horizontal-pod-autoscaler": (
        r(READ, "autoscaling", "horizontalpodautoscalers"),
        r("update", "autoscaling", "horizontalpodautoscalers/status"),
        r("get update", "*", "*/scale"),
        r("list watch", "core", "pods"),
        r("list watch", "metrics.k8s.io", "pods"),
        r(READ, "custom.metrics.k8s.io", "*"),
        r(READ, "external.metrics.k8s.io", "*"),
        EVENTS,
    ),
    "job-controller": (
        r("get list watch update patch", "batch", "jobs"),
        r("update", "batch", "jobs/status"),
        r("update", "batch", "jobs/finalizers"),
        r("list watch create delete patch", "core", "pods"),
        EVENTS,
    ),
    "legacy-service-account-token-cleaner": (
        r("get", "core", "configmaps", "kube-apiserver-legacy-service-account-token-tracking"),
        r("delete patch", "core", "secrets"),
    ),
    "namespace-controller": (
        r("get list watch delete", "core", "namespaces"),
        r("update", "core", "namespaces/finalize namespaces/status"),
        r("get list watch delete deletecollection", "*", "*"),
    ),
    "node-controller": (
        r("get list update delete patch watch", "core", "nodes"),
        r("patch update", "core", "nodes/status"),
        r("patch update", "core", "pods/status"),
        r("list watch delete get", "core", "pods"),
        EVENTS,
    ),
    "persistent-volume-binder": (
        r("get list watch update create delete", "core", "persistentvolumes"),
        r("update", "core", "persistentvolumes/status"),
        r("get list watch update", "core", "persistentvolumeclaims"),
        r("update", "core", "persistentvolumeclaims/status"),
        r("get list watch create delete", "core", "pods"),
        r(READ, "storage.k8s.io", "storageclasses"),
        r("list watch", "core", "nodes"),
        EVENTS,
        r("watch", "core", "events"),
    ),
    "pod-garbage-collector": (
        r("list watch delete", "core", "pods"),
        r(READ, "core", "nodes"),
        r("patch", "core", "pods/status"),
    ),
    "replicaset-controller": (
        r("get list watch update", "apps extensions", "replicasets"),
        r("update", "apps extensions", "replicasets/status"),
        r("update", "apps extensions", "replicasets/finalizers"),
        r("list watch patch create delete", "core", "pods"),
        EVENTS,
    ),
    "replication-controller": (
        r("get list watch update", "core", "replicationcontrollers"),
        r("update", "core", "replicationcontrollers/status"),
        r("update", "core", "replicationcontrollers/finalizers"),
        r("list watch patch create delete", "core", "pods"),
        EVENTS,
    ),
    "resourcequota-controller": (
        r("list watch", "*", "*"),
        r("update", "core", "resourcequotas/status"),
        EVENTS,
    ),
    "route-controller": (r("list watch", "core", "nodes"), r("patch", "core", "nodes/status"), EVENTS),
    "service-account-controller": (r("create", "core", "serviceaccounts"), EVENTS),
    "service-controller": (
        r(READ, "core", "services"),
        r("patch update", "core", "services/status"),
        r("list watch", "core", "nodes"),
        EVENTS,
    ),
    "statefulset-controller": (
        r("list watch", "core", "pods"),
        r(READ, "apps", "statefulsets"),
        r("update", "apps", "statefulsets/status"),
        r("update", "apps", "statefulsets/finalizers"),
        r("get create delete update patch", "core", "pods"),
        r("get list watch create delete update patch", "apps", "controllerrevisions"),
        r("get list watch create", "core", "persistentvolumeclaims"),
        r("update delete", "core", "persistentvolumeclaims"),
        r("update", "core", "pods/finalizers"),
        EVENTS,
    ),
    "ttl-controller": (r("update patch list watch", "core", "nodes"), EVENTS),
    "certificate-controller": (
        r("get list watch delete", "certificates.k8s.io", "certificatesigningrequests"),
        r("update", "certificates.k8s.io", "certificatesigningrequests/status certificatesigningrequests/approval"),
        r("approve", "certificates.k8s.io", "signers", "kubernetes.io/kube-apiserver-client-kubelet"),
        r("sign", "certificates.k8s.io", "signers", "kubernetes.io/kube-apiserver-client kubernetes.io/kube-apiserver-client-kubelet "
          "kubernetes.io/kubelet-serving kubernetes.io/legacy-unknown"),
        r("create", "authorization.k8s.io", "subjectaccessreviews"),
        EVENTS,
    ),
    "pvc-protection-controller": (
        r("get list watch update", "core", "persistentvolumeclaims"),
        r("update", "core", "persistentvolumeclaims/status"),
        r(READ, "core", "pods"),
        EVENTS,
    ),
    "pv-protection-controller": (r("get list watch update", "core", "persistentvolumes"), EVENTS),
    "ttl-after-finished-controller": (r("get list watch delete", "batch", "jobs"), EVENTS),
    "root-ca-cert-publisher": (r("create update", "core", "configmaps"), EVENTS),
    "validatingadmissionpolicy-status-controller": (
        r(READ, "admissionregistration.k8s.io", "validatingadmissionpolicies"),
        r("get patch update", "admissionregistration.k8s.io", "validatingadmissionpolicies/status"),
        EVENTS,
    ),
    "service-cidrs-controller": (
        r("get list watch patch update", "networking.k8s.io", "servicecidrs"),
        r("patch update", "networking.k8s.io", "servicecidrs/finalizers"),
        r("patch update", "networking.k8s.io", "servicecidrs/status"),
        r(READ, "networking.k8s.io", "ipaddresses"),
        EVENTS,
    ),
}

CONTROLLER_PREFIX = "system:controller:"
CONTROLLER_ROLES = [cluster_role(CONTROLLER_PREFIX + name, *rules) for name, rules in CONTROLLER_RULES.items()]
CONTROLLER_ROLE_BINDINGS = [
    binding("ClusterRoleBinding", CONTROLLER_PREFIX + name, "ClusterRole", CONTROLLER_PREFIX + name, f"ServiceAccount:kube-system:{name}")
    for name in CONTROLLER_RULES
]

LEADER_LOCKING = (
    r("watch get list create update", "coordination.k8s.io", "leases"),
    r("watch get list create update", "coordination.k8s.io", "leasecandidates"),
)
NAMESPACE_ROLES: list[Obj] = [
    role("kube-system", "extension-apiserver-authentication-reader",
         r(READ, "core", "configmaps", "extension-apiserver-authentication")),
    role("kube-system", "system::leader-locking-kube-controller-manager", *LEADER_LOCKING),
    role("kube-system", "system::leader-locking-kube-scheduler", *LEADER_LOCKING),
    role("kube-system", CONTROLLER_PREFIX + "bootstrap-signer", r(READ, "core", "secrets")),
    role("kube-system", CONTROLLER_PREFIX + "cloud-provider", r("create get list watch", "core", "configmaps")),
    role("kube-system", CONTROLLER_PREFIX + "token-cleaner", r("delete get list watch", "core", "secrets"), EVENTS),
    role("kube-public", CONTROLLER_PREFIX + "bootstrap-signer",
         r(READ, "core", "configmaps"), r("update", "core", "configmaps", "cluster-info"), EVENTS),
]
NAMESPACE_ROLE_BINDINGS: list[Obj] = [
    binding("RoleBinding", name, "Role", role_name, *subjects, namespace=ns)
    for ns, name, role_name, subjects in (
        ("kube-system", "system::extension-apiserver-authentication-reader", "extension-apiserver-authentication-reader",
         ("User:system:kube-controller-manager", "User:system:kube-scheduler")),
        ("kube-system", "system::leader-locking-kube-controller-manager", "system::leader-locking-kube-controller-manager",
         ("User:system:kube-controller-manager", "ServiceAccount:kube-system:kube-controller-manager",
          "ServiceAccount:kube-system:leader-election-controller")),
        ("kube-system", "system::leader-locking-kube-scheduler", "system::leader-locking-kube-scheduler",
         ("User:system:kube-scheduler", "ServiceAccount:kube-system:kube-scheduler")),
        ("kube-system", CONTROLLER_PREFIX + "bootstrap-signer", CONTROLLER_PREFIX + "bootstrap-signer",
         ("ServiceAccount:kube-system:bootstrap-signer",)),
        ("kube-system", CONTROLLER_PREFIX + "cloud-provider", CONTROLLER_PREFIX + "cloud-provider",
         ("ServiceAccount:kube-system:cloud-provider",)),
        ("kube-system", CONTROLLER_PREFIX + "token-cleaner", CONTROLLER_PREFIX + "token-cleaner",
         ("ServiceAccount:kube-system:token-cleaner",)),
        ("kube-public", CONTROLLER_PREFIX + "bootstrap-signer", CONTROLLER_PREFIX + "bootstrap-signer",
         ("ServiceAccount:kube-system:bootstrap-signer",)),
    )
]
