"""apps/v1 workloads: pkg/apis/apps/validation and the apps strategies' selector immutability."""

from __future__ import annotations

from typing import Any

from k8py.api.validation.field import (
    Cause,
    forbidden,
    immutable,
    invalid,
    invalid_each,
    non_negative,
    not_supported,
    required,
)
from k8py.api.validation.meta import (
    Obj,
    as_selector,
    validate_annotations,
    validate_label_selector,
    validate_labels,
    validate_meta,
)
from k8py.api.validation.names import (
    is_valid_percent,
    name_is_dns_label,
    name_is_dns_subdomain,
)
from k8py.api.validation.pods import validate_pod_template_spec


def _percent_value(value: Any) -> int | None:
    if isinstance(value, str) and not is_valid_percent(value):
        return int(value[:-1])
    return None


def _int_or_percent_value(value: Any) -> int:
    """getIntOrPercentValue: a percent's number, an int, or (like IntValue of a bad string) 0."""
    percent = _percent_value(value)
    if percent is not None:
        return percent
    return value if isinstance(value, int) else 0


def validate_positive_int_or_percent(value: Any, path: str) -> list[Cause]:
    if isinstance(value, str):
        return invalid_each(path, value, is_valid_percent(value))
    if isinstance(value, int):
        return non_negative(path, value)
    return [invalid(path, value, "must be an integer or percentage (e.g '5%%')")]


def not_more_than_100_percent(value: Any, path: str) -> list[Cause]:
    percent = _percent_value(value)
    if percent is None or percent <= 100:
        return []
    return [invalid(path, value, "must not be greater than 100%")]


def _selector_and_template(spec: Obj, path: str, kind: str) -> tuple[list[Cause], Obj]:
    """The selector checks every apps workload shares; returns the template too."""
    causes: list[Cause] = []
    selector = spec.get("selector")
    if selector is None:
        causes.append(required(f"{path}.selector"))
    else:
        causes += validate_label_selector(selector, f"{path}.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            causes.append(invalid(f"{path}.selector", selector, f"empty selector is invalid for {kind}"))
    template = spec.get("template") or {}
    parsed = as_selector(selector)
    if parsed is None:
        causes.append(invalid(f"{path}.selector", selector, "invalid label selector"))
    elif not parsed.empty and not parsed.matches((template.get("metadata") or {}).get("labels")):
        labels = (template.get("metadata") or {}).get("labels") or {}
        causes.append(
            invalid(f"{path}.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    return causes, template


def _always_restart(template: Obj, path: str, kind: str) -> list[Cause]:
    spec = template.get("spec") or {}
    causes: list[Cause] = []
    if spec.get("restartPolicy", "") != "Always":
        causes.append(not_supported(f"{path}.spec.restartPolicy", spec.get("restartPolicy", ""), ("Always",)))
    if spec.get("activeDeadlineSeconds") is not None:
        causes.append(
            forbidden(
                f"{path}.spec.activeDeadlineSeconds", f"activeDeadlineSeconds in {kind} is not Supported"
            )
        )
    return causes


def _replica_set_spec(spec: Obj) -> list[Cause]:
    """What ValidateReplicaSetSpec and ValidateDeploymentSpec share (upstream's empty-selector message
    says "deployment" for both)."""
    causes = non_negative("spec.replicas", spec.get("replicas", 0))
    errs, template = _selector_and_template(spec, "spec", "deployment")
    causes += errs
    causes += validate_pod_template_spec(template, "spec.template")
    return causes + _always_restart(template, "spec.template", "ReplicaSet")


def _selector_immutable(obj: Obj, old: Obj | None) -> list[Cause]:
    if old is None:
        return []
    return immutable(
        "spec.selector", (obj.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
    )


def _validate_rolling_update_deployment(rolling: Obj, path: str) -> list[Cause]:
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    causes = validate_positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    causes += validate_positive_int_or_percent(surge, f"{path}.maxSurge")
    if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
        causes.append(invalid(f"{path}.maxUnavailable", unavailable, "may not be 0 when `maxSurge` is 0"))
    return causes + not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")


def validate_deployment(deployment: Obj, old: Obj | None) -> list[Cause]:
    spec = deployment.get("spec") or {}
    causes = validate_meta(deployment, old, True, name_is_dns_subdomain)
    causes += _replica_set_spec(spec)
    strategy = spec.get("strategy") or {}
    strategy_type = strategy.get("type", "")
    if strategy_type == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            causes.append(
                forbidden(
                    "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"
                )
            )
    elif strategy_type == "RollingUpdate":
        if strategy.get("rollingUpdate") is None:
            causes.append(
                required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")
            )
        else:
            causes += _validate_rolling_update_deployment(
                strategy["rollingUpdate"], "spec.strategy.rollingUpdate"
            )
    else:
        causes.append(not_supported("spec.strategy", strategy, ("Recreate", "RollingUpdate")))
    min_ready = spec.get("minReadySeconds", 0)
    causes += non_negative("spec.minReadySeconds", min_ready)
    causes += non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        causes += non_negative("spec.progressDeadlineSeconds", deadline)
        if deadline <= min_ready:
            causes.append(
                invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")
            )
    return causes + _selector_immutable(deployment, old)


def validate_replica_set(replica_set: Obj, old: Obj | None) -> list[Cause]:
    spec = replica_set.get("spec") or {}
    causes = validate_meta(replica_set, old, True, name_is_dns_subdomain)
    causes += _replica_set_spec(spec)
    causes += non_negative("spec.minReadySeconds", spec.get("minReadySeconds", 0))
    return causes + _selector_immutable(replica_set, old)


def _validate_rolling_update_daemon_set(rolling: Obj, path: str) -> list[Cause]:
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    causes = validate_positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    causes += validate_positive_int_or_percent(surge, f"{path}.maxSurge")
    causes += not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
    causes += not_more_than_100_percent(surge, f"{path}.maxSurge")
    has_unavailable, has_surge = _int_or_percent_value(unavailable) != 0, _int_or_percent_value(surge) != 0
    if has_unavailable and has_surge:
        causes.append(invalid(f"{path}.maxSurge", surge, "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        causes.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return causes


def validate_daemon_set(daemon_set: Obj, old: Obj | None) -> list[Cause]:
    spec = daemon_set.get("spec") or {}
    causes = validate_meta(daemon_set, old, True, name_is_dns_subdomain)
    selector = spec.get("selector")
    causes += validate_label_selector(selector, "spec.selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    parsed = as_selector(selector)
    if parsed is not None and not parsed.matches(labels):
        causes.append(
            invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    if selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions"):
        causes.append(invalid("spec.selector", selector, "empty selector is invalid for daemonset"))
    causes += validate_pod_template_spec(template, "spec.template")
    causes += _always_restart(template, "spec.template", "DaemonSet")
    causes += non_negative("spec.minReadySeconds", spec.get("minReadySeconds", 0))
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "RollingUpdate":
        if strategy.get("rollingUpdate") is None:
            causes.append(required("spec.updateStrategy.rollingUpdate"))
        else:
            causes += _validate_rolling_update_daemon_set(
                strategy["rollingUpdate"], "spec.updateStrategy.rollingUpdate"
            )
    elif strategy.get("type") != "OnDelete":
        causes.append(not_supported("spec.updateStrategy", strategy, ("RollingUpdate", "OnDelete")))
    causes += non_negative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    return causes + _selector_immutable(daemon_set, old)


def validate_stateful_set(stateful_set: Obj, old: Obj | None) -> list[Cause]:
    spec = stateful_set.get("spec") or {}
    causes = validate_meta(stateful_set, old, True, name_is_dns_label)
    policy = spec.get("podManagementPolicy", "")
    if not policy:
        causes.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        causes.append(invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate")
    if not strategy.get("type"):
        causes.append(required("spec.updateStrategy"))
    elif strategy["type"] == "OnDelete":
        if rolling is not None:
            causes.append(
                invalid(
                    "spec.updateStrategy.rollingUpdate",
                    rolling,
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    elif strategy["type"] == "RollingUpdate":
        if rolling is not None:
            causes += non_negative("spec.updateStrategy.rollingUpdate.partition", rolling.get("partition", 0))
            unavailable = rolling.get("maxUnavailable")
            if unavailable is not None:
                path = "spec.updateStrategy.rollingUpdate.maxUnavailable"
                causes += validate_positive_int_or_percent(unavailable, path)
                if _int_or_percent_value(unavailable) == 0:
                    causes.append(invalid(path, unavailable, "cannot be 0"))
                causes += not_more_than_100_percent(unavailable, path)
    else:
        causes.append(invalid("spec.updateStrategy", strategy, "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        for key in ("whenDeleted", "whenScaled"):
            if retention.get(key, "") not in ("Retain", "Delete"):
                causes.append(
                    not_supported(
                        f"spec.persistentVolumeClaimRetentionPolicy.{key}",
                        retention.get(key, ""),
                        ("Retain", "Delete"),
                    )
                )
    causes += non_negative("spec.replicas", spec.get("replicas", 0))
    causes += non_negative("spec.minReadySeconds", spec.get("minReadySeconds", 0))
    if spec.get("ordinals") is not None:
        causes += non_negative("spec.ordinals.start", spec["ordinals"].get("start", 0))
    selector = spec.get("selector")
    if selector is None:
        causes.append(required("spec.selector"))
    else:
        causes += validate_label_selector(selector, "spec.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            causes.append(invalid("spec.selector", selector, "empty selector is invalid for statefulset"))
    template = spec.get("template") or {}
    template_meta = template.get("metadata") or {}
    parsed = as_selector(selector)
    if parsed is None:
        causes.append(invalid("spec.selector", selector, ""))
    else:
        if not parsed.empty and not parsed.matches(template_meta.get("labels")):
            labels = template_meta.get("labels") or {}
            causes.append(
                invalid(
                    "spec.template.metadata.labels", labels, "`selector` does not match template `labels`"
                )
            )
        # Upstream checks only the template's metadata here, not its pod spec.
        causes += validate_labels(template_meta.get("labels"), "spec.template.labels")
        causes += validate_annotations(template_meta.get("annotations"), "spec.template.annotations")
    causes += _always_restart(template, "spec.template", "StatefulSet")
    if old is not None:
        new_spec, old_spec = dict(spec), dict(old.get("spec") or {})
        for key in (
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ):
            new_spec.pop(key, None)
            old_spec.pop(key, None)
        if new_spec != old_spec:
            causes.append(
                forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                    "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                )
            )
    return causes


def validate_controller_revision(revision: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(revision, old, True, name_is_dns_subdomain)
    if revision.get("data") is None:
        causes.append(required("data", "data is mandatory"))
    causes += non_negative("revision", revision.get("revision", 0))
    if old is not None:
        causes += immutable("data", revision.get("data"), old.get("data"))
    return causes


VALIDATORS = {
    "Deployment": validate_deployment,
    "ReplicaSet": validate_replica_set,
    "DaemonSet": validate_daemon_set,
    "StatefulSet": validate_stateful_set,
    "ControllerRevision": validate_controller_revision,
}
