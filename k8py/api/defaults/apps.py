"""Defaulting of apps/v1 workloads (pkg/apis/apps/v1/defaults.go)."""

from __future__ import annotations

from k8py.api.defaults.core import Obj, default_pod_template, default_pvc, set_if_unset, set_if_zero


def default_deployment(deployment: Obj) -> None:
    spec = deployment.setdefault("spec", {})
    set_if_unset(spec, "replicas", 1)
    strategy = spec.setdefault("strategy", {})
    set_if_zero(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        set_if_unset(rolling, "maxUnavailable", "25%")
        set_if_unset(rolling, "maxSurge", "25%")
        strategy["rollingUpdate"] = rolling
    set_if_unset(spec, "revisionHistoryLimit", 10)
    set_if_unset(spec, "progressDeadlineSeconds", 600)
    default_pod_template(spec.get("template"))


def default_daemon_set(daemon_set: Obj) -> None:
    spec = daemon_set.setdefault("spec", {})
    strategy = spec.setdefault("updateStrategy", {})
    set_if_zero(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        set_if_unset(rolling, "maxUnavailable", 1)
        set_if_unset(rolling, "maxSurge", 0)
        strategy["rollingUpdate"] = rolling
    set_if_unset(spec, "revisionHistoryLimit", 10)
    default_pod_template(spec.get("template"))


def default_stateful_set(stateful_set: Obj) -> None:
    spec = stateful_set.setdefault("spec", {})
    set_if_zero(spec, "podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        set_if_unset(strategy, "rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and strategy.get("rollingUpdate") is not None:
        set_if_unset(strategy["rollingUpdate"], "partition", 0)
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for key in ("whenDeleted", "whenScaled"):
        set_if_zero(retention, key, "Retain")
    spec["persistentVolumeClaimRetentionPolicy"] = retention
    set_if_unset(spec, "replicas", 1)
    set_if_unset(spec, "revisionHistoryLimit", 10)
    default_pod_template(spec.get("template"))
    for claim in spec.get("volumeClaimTemplates") or []:
        # apps/v1 conversion stamps the claim templates' TypeMeta; kubectl shows it.
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        default_pvc(claim)


def default_replica_set(replica_set: Obj) -> None:
    spec = replica_set.setdefault("spec", {})
    set_if_unset(spec, "replicas", 1)
    default_pod_template(spec.get("template"))


DEFAULTERS = {
    ("v1", "Deployment"): default_deployment,
    ("v1", "DaemonSet"): default_daemon_set,
    ("v1", "StatefulSet"): default_stateful_set,
    ("v1", "ReplicaSet"): default_replica_set,
}
