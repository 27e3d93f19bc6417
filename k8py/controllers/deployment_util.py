"""Deployment helpers (``pkg/controller/deployment/util/deployment_util.go``): pure functions on
the JSON dicts of Deployments and ReplicaSets.

Revisions and the annotations that carry them, maxSurge/maxUnavailable with upstream's
rounding (surge rounds up, unavailable down; both zero means one unavailable), the new and old
ReplicaSets of a Deployment (the new one is the ReplicaSet whose template equals the
Deployment's but for the ``pod-template-hash`` label), proportional scaling, conditions, and
the orderings the controller sorts ReplicaSets by. Nothing here writes anything; functions named
``set_*`` change the dict they are given (a copy) and say whether they did.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from k8py.api import meta

Obj = dict[str, Any]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
DEPRECATED_ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED_CONFIG_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY = "pod-template-hash"
MAX_REV_HISTORY_LENGTH_IN_CHARS = 2000
MAX_INT32 = 2**31 - 1

# condition types and reasons
DEPLOYMENT_AVAILABLE = "Available"
DEPLOYMENT_PROGRESSING = "Progressing"
DEPLOYMENT_REPLICA_FAILURE = "ReplicaFailure"
REPLICA_SET_UPDATED_REASON = "ReplicaSetUpdated"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"
NEW_RS_NEW_REPLICAS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_DEPLOY_REASON = "DeploymentPaused"
RESUMED_DEPLOY_REASON = "DeploymentResumed"
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"

# annotations never copied from a Deployment to its ReplicaSets (or back on a rollback)
ANNOTATIONS_TO_SKIP = frozenset(
    {
        LAST_APPLIED_CONFIG_ANNOTATION,
        REVISION_ANNOTATION,
        REVISION_HISTORY_ANNOTATION,
        DESIRED_REPLICAS_ANNOTATION,
        MAX_REPLICAS_ANNOTATION,
        DEPRECATED_ROLLBACK_TO,
    }
)


# ---- plain accessors ------------------------------------------------------------------------------


def spec_replicas(obj: Obj | None) -> int:
    """*(obj.Spec.Replicas): defaulted to 1 by the API server."""
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_of(obj: Obj) -> Obj:
    return obj.get("status") or {}


def annotations_of(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def uid_of(obj: Obj) -> str:
    return obj["metadata"].get("uid", "")


def _int_annotation(obj: Obj, name: str) -> int | None:
    try:
        return int(annotations_of(obj)[name], 10)
    except (KeyError, ValueError):
        return None


def desired_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)


def max_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, MAX_REPLICAS_ANNOTATION)


# ---- revisions ------------------------------------------------------------------------------------


def revision(obj: Obj) -> int:
    """The revision annotation (0 when absent or not a number)."""
    return _int_annotation(obj, REVISION_ANNOTATION) or 0


def max_revision(rss: Iterable[Obj | None]) -> int:
    return max((revision(rs) for rs in rss if rs is not None), default=0)


def set_deployment_revision(d: Obj, rev: str) -> bool:
    annotations = d["metadata"].setdefault("annotations", {})
    if annotations.get(REVISION_ANNOTATION) != rev:
        annotations[REVISION_ANNOTATION] = rev
        return True
    return False


def copy_deployment_annotations_to_replica_set(d: Obj, rs: Obj) -> bool:
    changed = False
    rs_annotations = rs["metadata"].setdefault("annotations", {})
    for k, v in annotations_of(d).items():
        if k in ANNOTATIONS_TO_SKIP or rs_annotations.get(k) == v:
            continue
        rs_annotations[k] = v
        changed = True
    return changed


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for name, value in ((DESIRED_REPLICAS_ANNOTATION, str(desired)), (MAX_REPLICAS_ANNOTATION, str(max_replicas))):
        if annotations.get(name) != value:
            annotations[name] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    annotations = annotations_of(rs)
    return annotations.get(DESIRED_REPLICAS_ANNOTATION) != str(desired) or annotations.get(
        MAX_REPLICAS_ANNOTATION
    ) != str(max_replicas)


def set_new_replica_set_annotations(
    d: Obj, rs: Obj, new_revision: str, exists: bool, limit: int = MAX_REV_HISTORY_LENGTH_IN_CHARS
) -> bool:
    """SetNewReplicaSetAnnotations: the Deployment's annotations, the revision (raised, never
    lowered; the old one appended to revision-history when a ReplicaSet comes back into use),
    and for a ReplicaSet about to be created the desired/max replicas."""
    changed = copy_deployment_annotations_to_replica_set(d, rs)
    annotations = rs["metadata"].setdefault("annotations", {})
    old_revision = annotations.get(REVISION_ANNOTATION)
    try:
        old_int = int(old_revision, 10) if old_revision else 0
    except ValueError:
        return False
    try:
        new_int = int(new_revision, 10)
    except ValueError:
        return False
    if old_int < new_int:
        annotations[REVISION_ANNOTATION] = new_revision
        changed = True
    if old_revision is not None and old_int < new_int:
        history = annotations.get(REVISION_HISTORY_ANNOTATION, "")
        old_revisions = history.split(",")
        if not old_revisions[0]:
            annotations[REVISION_HISTORY_ANNOTATION] = old_revision
        else:
            total = len(history) + len(old_revision) + 1
            start = 0
            while total > limit and start < len(old_revisions):
                total -= len(old_revisions[start]) + 1
                start += 1
            if total <= limit:
                annotations[REVISION_HISTORY_ANNOTATION] = ",".join([*old_revisions[start:], old_revision])
    if not exists and set_replicas_annotations(rs, spec_replicas(d), spec_replicas(d) + max_surge(d)):
        changed = True
    return changed


# ---- strategy numbers -----------------------------------------------------------------------------


def is_rolling_update(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
    try:
        percent = int(value[:-1], 10)
    except ValueError:
        raise ValueError(f"invalid value for IntOrString: invalid value {value!r}") from None
    scaled = percent * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def resolve_fenceposts(surge: int | str | None, unavailable: int | str | None, desired: int) -> tuple[int, int]:
    """ResolveFenceposts: maxSurge rounded up, maxUnavailable down; never both zero."""
    s = scaled_value(surge if surge is not None else 0, desired, True)
    u = scaled_value(unavailable if unavailable is not None else 0, desired, False)
    if s == 0 and u == 0:
        u = 1
    return s, u


def _rolling(d: Obj) -> Obj:
    return ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    r = _rolling(d)
    return resolve_fenceposts(r.get("maxSurge"), r.get("maxUnavailable"), spec_replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    replicas = spec_replicas(d)
    if not is_rolling_update(d) or replicas == 0:
        return 0
    r = _rolling(d)
    unavailable = resolve_fenceposts(r.get("maxSurge"), r.get("maxUnavailable"), replicas)[1]
    return min(unavailable, replicas)


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """NewRSNewReplicas: what the new ReplicaSet may grow to now."""
    if is_rolling_update(d):
        surge = scaled_value(_rolling(d).get("maxSurge"), spec_replicas(d), True)
        current = replica_count(all_rss)
        max_total = spec_replicas(d) + surge
        if current >= max_total:
            return spec_replicas(new_rs)
        scale_up = min(max_total - current, spec_replicas(d) - spec_replicas(new_rs))
        return spec_replicas(new_rs) + scale_up
    return spec_replicas(d)  # Recreate


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The ReplicaSet runs all the Deployment's replicas, available."""
    if rs is None:
        return False
    desired = desired_replicas_annotation(rs)
    if desired is None:
        return False
    replicas = spec_replicas(d)
    return (
        spec_replicas(rs) == replicas
        and desired == replicas
        and status_of(rs).get("availableReplicas", 0) == replicas
    )


# ---- finding ReplicaSets --------------------------------------------------------------------------


def _template_without_hash(template: Obj | None) -> Obj:
    """The template with the hash label and empty/nil metadata fields dropped: Semantic.DeepEqual
    treats nil and empty maps alike."""
    template = template or {}
    md = dict(template.get("metadata") or {})
    labels = md.get("labels")
    if labels and DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY in labels:
        md["labels"] = {k: v for k, v in labels.items() if k != DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY}
    md = {k: v for k, v in md.items() if v not in (None, {}, [], "")}
    out = {k: v for k, v in template.items() if k != "metadata" and v is not None}
    if md:
        out["metadata"] = md
    return out


def equal_ignore_hash(t1: Obj | None, t2: Obj | None) -> bool:
    return _template_without_hash(t1) == _template_without_hash(t2)


def creation_key(obj: Obj) -> tuple[str, str]:
    """ReplicaSetsByCreationTimestamp: older first, names breaking ties (RFC 3339 UTC strings
    sort as times)."""
    md = obj["metadata"]
    return md.get("creationTimestamp") or "", md.get("name", "")


def by_creation(rss: Iterable[Obj]) -> list[Obj]:
    return sorted(rss, key=creation_key)


def by_size_older(rss: Iterable[Obj]) -> list[Obj]:
    """ReplicaSetsBySizeOlder: larger first, then older first."""
    return sorted(by_creation(rss), key=spec_replicas, reverse=True)


def by_size_newer(rss: Iterable[Obj]) -> list[Obj]:
    """ReplicaSetsBySizeNewer: larger first, then newer first."""
    return sorted(sorted(rss, key=creation_key, reverse=True), key=spec_replicas, reverse=True)


def by_revision(rss: Iterable[Obj]) -> list[Obj]:
    """ReplicaSetsByRevision: lower revision first, then older first."""
    return sorted(by_creation(rss), key=revision)


def find_new_replica_set(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's (hash label aside)."""
    template = (d.get("spec") or {}).get("template")
    for rs in by_creation(rss):
        if equal_ignore_hash((rs.get("spec") or {}).get("template"), template):
            return rs
    return None


def find_old_replica_sets(d: Obj, rss: list[Obj], new_rs: Obj | None = None) -> tuple[list[Obj], list[Obj]]:
    """(old ReplicaSets with pods wanted, all old ReplicaSets)."""
    if new_rs is None:
        new_rs = find_new_replica_set(d, rss)
    new_uid = uid_of(new_rs) if new_rs is not None else None
    all_old = [rs for rs in rss if uid_of(rs) != new_uid]
    return [rs for rs in all_old if spec_replicas(rs) != 0], all_old


def filter_active(rss: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and spec_replicas(rs) > 0]


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The one ReplicaSet with pods wanted; the newest one if none has; None if several have."""
    if new_rs is None and not old_rss:
        return None
    old_sorted = sorted(old_rss, key=creation_key, reverse=True)
    active = filter_active([*old_sorted, new_rs])
    if not active:
        return new_rs if new_rs is not None else old_sorted[0]
    if len(active) == 1:
        return active[0]
    return None


# ---- counts ---------------------------------------------------------------------------------------


def replica_count(rss: Iterable[Obj | None]) -> int:
    """GetReplicaCountForReplicaSets: the sum of spec.replicas."""
    return sum(spec_replicas(rs) for rs in rss if rs is not None)


def _status_sum(rss: Iterable[Obj | None], field: str) -> int:
    return sum(status_of(rs).get(field, 0) for rs in rss if rs is not None)


def actual_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "replicas")


def ready_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "readyReplicas")


def available_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "availableReplicas")


def go_round(x: float) -> int:
    """math.Round: halves away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def replica_set_fraction(rs: Obj, d: Obj) -> int:
    """How many replicas the ReplicaSet gains (or loses) in proportion to the Deployment's resize."""
    if spec_replicas(d) == 0:
        return -spec_replicas(rs)
    deployment_replicas = spec_replicas(d) + max_surge(d)
    annotated = max_replicas_annotation(rs)
    if annotated is None:
        annotated = status_of(d).get("replicas", 0)
    if not annotated:
        return 0
    new_size = spec_replicas(rs) * deployment_replicas / annotated
    return go_round(new_size) - spec_replicas(rs)


def proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    """GetProportion."""
    if rs is None or spec_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# ---- progress -------------------------------------------------------------------------------------


def has_progress_deadline(d: Obj) -> bool:
    pds = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return pds is not None and pds != MAX_INT32


def has_revision_history_limit(d: Obj) -> bool:
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    return limit is not None and limit != MAX_INT32


def deployment_complete(d: Obj, status: Obj) -> bool:
    replicas = spec_replicas(d)
    return (
        status.get("updatedReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
        and status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
    )


def deployment_progressing(d: Obj, new_status: Obj) -> bool:
    """More updated, fewer old, more ready or more available replicas than the last status said."""
    old = status_of(d)
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = new_status.get("replicas", 0) - new_status.get("updatedReplicas", 0)
    return (
        new_status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
        or new_old < old_old
        or new_status.get("readyReplicas", 0) > old.get("readyReplicas", 0)
        or new_status.get("availableReplicas", 0) > old.get("availableReplicas", 0)
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def deployment_timed_out(d: Obj, new_status: Obj, now: dt.datetime | None = None) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(new_status, DEPLOYMENT_PROGRESSING)
    if cond is None:
        return False
    if cond.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if cond.get("reason") == TIMED_OUT_REASON:
        return True
    since = cond.get("lastUpdateTime")
    if not since:
        return False
    deadline = meta.parse_time(since) + dt.timedelta(seconds=d["spec"]["progressDeadlineSeconds"])
    return deadline < (now or utcnow())


# ---- conditions -----------------------------------------------------------------------------------


def new_condition(type_: str, status: str, reason: str, message: str) -> Obj:
    now = meta.now()
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def get_condition(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or () if c.get("type") == type_), None)


def set_condition(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: nothing if status and reason are unchanged; the transition time
    kept while the status is."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    status["conditions"] = [c for c in status.get("conditions") or () if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, type_: str) -> None:
    if "conditions" in status:
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != type_]
        if not status["conditions"]:
            del status["conditions"]


def rs_condition_to_deployment_condition(c: Obj) -> Obj:
    return {
        "type": c.get("type"),
        "status": c.get("status"),
        "lastUpdateTime": c.get("lastTransitionTime"),
        "lastTransitionTime": c.get("lastTransitionTime"),
        "reason": c.get("reason"),
        "message": c.get("message"),
    }


# ---- template hash and selectors ------------------------------------------------------------------


def clone_and_add_label(labels: dict[str, str] | None, key: str, value: str) -> dict[str, str]:
    return {**(labels or {}), key: value}


def clone_selector_and_add_label(selector: Obj | None, key: str, value: str) -> Obj:
    out = meta.clone(selector or {})
    out["matchLabels"] = {**(out.get("matchLabels") or {}), key: value}
    return out
