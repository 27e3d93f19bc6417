"""Per-kind policy for the generic store, as kube-apiserver's `strategy.go` files.

The generic store (`k8py.apiserver.genericstore`) knows nothing of any kind;
it asks the kind's `Strategy` what to reset on create and update, whether the
kind tracks `metadata.generation`, which fields a field selector may name,
whether a PUT may create, and how long a graceful delete waits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8py.api import certificates
from k8py.api.certificates import Requester
from k8py.api.defaults import prepare_job, prepare_namespace
from k8py.api.defaults.apiextensions import prepare_crd_create, prepare_crd_update
from k8py.api.meta import now
from k8py.api.registry import ResourceInfo

Obj = dict[str, Any]


def _get(obj: Obj, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _field_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pod_create_status(obj: Obj) -> None:
    spec = obj.get("spec") or {}
    obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    if spec.get("schedulingGates"):  # applySchedulingGatedCondition
        obj["status"]["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": None,
                "lastTransitionTime": now(),
            }
        ]


def _namespace_update(new: Obj, old: Obj) -> None:
    """spec.finalizers change only through the finalize subresource."""
    finalizers = (old.get("spec") or {}).get("finalizers")
    spec = new.setdefault("spec", {})
    if finalizers is None:
        spec.pop("finalizers", None)
    else:
        spec["finalizers"] = finalizers


def _clear_status(obj: Obj) -> None:
    obj.pop("status", None)


def _job_create(obj: Obj) -> None:
    _clear_status(obj)
    prepare_job(obj)


def _empty_status(obj: Obj) -> None:
    obj["status"] = {}


def _pod_grace(obj: Obj, requested: int | None) -> int:
    """Pods not yet on a node or already finished are deleted at once (pod strategy CheckGracefulDelete)."""
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Failed", "Succeeded"):
        return 0
    if requested is not None:
        return max(requested, 0)
    return int(spec.get("terminationGracePeriodSeconds", 30))


@dataclass(frozen=True)
class Strategy:
    # Fields a field selector may name, besides metadata.name and metadata.namespace.
    selectable_fields: tuple[str, ...] = ()
    # Does metadata.generation count spec changes?
    tracks_generation: bool = False
    # Resets what a client may not set on create (usually the status).
    prepare_for_create: Callable[[Obj], None] | None = None
    # (new, old): keeps what an update of the main resource may not change.
    prepare_for_update: Callable[[Obj, Obj], None] | None = None
    # (obj, user): records the requesting user on create (CSRs: spec.username, groups, ...).
    prepare_for_create_by: Callable[[Obj, Requester], None] | None = None
    # (new, old, subresource): what a status-like subresource (status, approval) may change.
    prepare_for_subresource_update: Callable[[Obj, Obj, str], None] | None = None
    # May PUT create a missing object?
    allow_create_on_update: bool = False
    # Returns the grace period of a delete; None: the kind has no graceful deletion.
    graceful_delete: Callable[[Obj, int | None], int] | None = None
    # Does DELETE answer with the deleted object (else a Success Status)?
    return_deleted_object: bool = False
    # Finalizers the first DELETE adds, so that a controller cleans up first (CRDs: their objects).
    delete_finalizers: tuple[str, ...] = ()
    # What a DELETE without a propagation policy does to dependents (DefaultGarbageCollectionPolicy):
    # "DeleteDependents" (background) or "OrphanDependents" (core/v1 RCs, batch/v1 Jobs, for compatibility).
    default_gc_policy: str = "DeleteDependents"
    # Namespaces: the first DELETE only marks the object Terminating; it goes once spec.finalizers is
    # empty too (the namespace controller finalizes it): namespace REST Delete, ShouldDeleteNamespaceDuringUpdate.
    spec_finalizers: bool = False
    # May a status update change metadata.annotations? (Deployments and ReplicaSets: their status
    # strategies reset only the spec (and labels), so the deployment controller writes the revision
    # annotation with the status.)
    status_updates_annotations: bool = False

    def field_set(self, obj: Obj) -> dict[str, str]:
        meta = obj.get("metadata") or {}
        fields = {"metadata.name": meta.get("name", "")}
        if "namespace" in meta:
            fields["metadata.namespace"] = meta["namespace"]
        for path in self.selectable_fields:
            fields[path] = _field_str(_get(obj, path))
        return fields

    def supported_fields(self, info: ResourceInfo) -> set[str]:
        fields = {"metadata.name", *self.selectable_fields}
        if info.namespaced:
            fields.add("metadata.namespace")
        return fields


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
_WORKLOAD = Strategy(tracks_generation=True, prepare_for_create=_clear_status)
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"

STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("", "Pod"): Strategy(
        selectable_fields=_POD_FIELDS,
        prepare_for_create=_pod_create_status,
        graceful_delete=_pod_grace,
        return_deleted_object=True,
    ),
    ("", "Namespace"): Strategy(
        selectable_fields=("status.phase",),
        prepare_for_create=prepare_namespace,
        prepare_for_update=_namespace_update,
        return_deleted_object=True,
        spec_finalizers=True,
    ),
    ("", "Node"): Strategy(selectable_fields=("spec.unschedulable",)),
    ("", "Service"): Strategy(
        selectable_fields=("spec.clusterIP", "spec.type"), prepare_for_create=_empty_status, return_deleted_object=True
    ),
    ("", "Secret"): Strategy(selectable_fields=("type",)),
    ("", "Event"): Strategy(selectable_fields=_EVENT_FIELDS, allow_create_on_update=True),
    ("", "Endpoints"): Strategy(allow_create_on_update=True),
    ("", "ReplicationController"): Strategy(
        selectable_fields=("status.replicas",),
        tracks_generation=True,
        prepare_for_create=_clear_status,
        default_gc_policy="OrphanDependents",
    ),
    ("", "PersistentVolumeClaim"): Strategy(prepare_for_create=_clear_status, return_deleted_object=True),
    ("", "PersistentVolume"): Strategy(prepare_for_create=_clear_status, return_deleted_object=True),
    ("", "ResourceQuota"): Strategy(prepare_for_create=_clear_status),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): Strategy(
        tracks_generation=True,
        prepare_for_create=prepare_crd_create,
        prepare_for_update=prepare_crd_update,
        delete_finalizers=(CRD_CLEANUP_FINALIZER,),
    ),
    ("apps", "Deployment"): Strategy(
        tracks_generation=True, prepare_for_create=_clear_status, status_updates_annotations=True
    ),
    ("apps", "ReplicaSet"): Strategy(
        selectable_fields=("status.replicas",),
        tracks_generation=True,
        prepare_for_create=_clear_status,
        status_updates_annotations=True,
    ),
    ("apps", "StatefulSet"): _WORKLOAD,
    ("apps", "DaemonSet"): _WORKLOAD,
    ("batch", "Job"): Strategy(
        selectable_fields=("status.successful",),
        tracks_generation=True,
        prepare_for_create=_job_create,
        default_gc_policy="OrphanDependents",
    ),
    ("batch", "CronJob"): _WORKLOAD,
    ("autoscaling", "HorizontalPodAutoscaler"): _WORKLOAD,
    ("policy", "PodDisruptionBudget"): _WORKLOAD,
    ("networking.k8s.io", "Ingress"): _WORKLOAD,
    ("networking.k8s.io", "NetworkPolicy"): Strategy(tracks_generation=True),
    # generation counts changes of addressType/endpoints/ports: the EndpointSlice controller's
    # tracker compares it with the generations it wrote itself
    ("discovery.k8s.io", "EndpointSlice"): Strategy(tracks_generation=True),
    ("certificates.k8s.io", "CertificateSigningRequest"): Strategy(
        selectable_fields=("spec.signerName",),
        prepare_for_create_by=certificates.prepare_for_create,
        prepare_for_update=certificates.prepare_for_update,
        prepare_for_subresource_update=certificates.prepare_for_subresource_update,
    ),
    ("coordination.k8s.io", "Lease"): Strategy(allow_create_on_update=True),
    ("events.k8s.io", "Event"): Strategy(allow_create_on_update=True),
    ("storage.k8s.io", "VolumeAttachment"): Strategy(prepare_for_create=_clear_status),
}
DEFAULT_STRATEGY = Strategy()


def strategy_for(info: ResourceInfo) -> Strategy:
    if info.custom is not None:
        return info.custom.strategy
    return STRATEGIES.get((info.group, info.kind), DEFAULT_STRATEGY)


def _requests(container: Obj) -> tuple[dict[str, Any], dict[str, Any]]:
    res = container.get("resources") or {}
    return res.get("requests") or {}, res.get("limits") or {}


def qos_class(spec: Obj) -> str:
    """The pod's QoS class, as pkg/apis/core/helper/qos GetPodQOS computes it (cpu and memory only)."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    for c in containers:
        req, lim = _requests(c)
        for name in ("cpu", "memory"):
            if name in req and str(req[name]) not in ("0", ""):
                requests[name] = req[name]
            if name in lim and str(lim[name]) not in ("0", ""):
                limits[name] = lim[name]
        if not all(n in lim for n in ("cpu", "memory")):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        for c in containers:
            req, lim = _requests(c)
            for n in ("cpu", "memory"):
                if n in req and str(req[n]) != str(lim.get(n)):
                    guaranteed = False
    return "Guaranteed" if guaranteed else "Burstable"
