"""Defaulting of batch/v1 (pkg/apis/batch/v1/defaults.go) and the Job strategy's selector generation."""

from __future__ import annotations

from k8py.api.defaults.core import Obj, default_pod_template, set_if_unset, set_if_zero

MAX_INT32 = 2**31 - 1

# batch.LegacyJobNameLabel / JobNameLabel and the controller-uid pair, in upstream's order.
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")


def _default_pod_failure_policy(spec: Obj) -> None:
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in rule.get("onPodConditions") or []:
            set_if_zero(pattern, "status", "True")


def default_job(job: Obj) -> None:
    spec = job.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    set_if_unset(spec, "parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    meta = job.setdefault("metadata", {})
    if labels is not None and not meta.get("labels"):
        meta["labels"] = dict(labels)
    set_if_unset(spec, "completionMode", "NonIndexed")
    set_if_unset(spec, "suspend", False)
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = (
            "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
        )
    set_if_unset(spec, "manualSelector", False)
    _default_pod_failure_policy(spec)
    default_pod_template(spec.get("template"))


def prepare_job(job: Obj) -> None:
    """The Job strategy's generateSelector, run on create unless spec.manualSelector.

    Labels the pod template with the job's name and metadata.uid (both the legacy and
    the batch.kubernetes.io/ keys) and selects on batch.kubernetes.io/controller-uid.
    Labels the user already set are left for validation to judge.
    """
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    meta = job.get("metadata") or {}
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.get("labels") or {}
    for key in JOB_NAME_LABELS:
        labels.setdefault(key, meta.get("name", ""))
    for key in CONTROLLER_UID_LABELS:
        labels.setdefault(key, meta.get("uid", ""))
    template_meta["labels"] = labels
    selector = spec.get("selector") or {}
    match_labels = selector.get("matchLabels") or {}
    match_labels.setdefault(CONTROLLER_UID_LABELS[1], meta.get("uid", ""))
    selector["matchLabels"] = match_labels
    spec["selector"] = selector


def default_cron_job(cron_job: Obj) -> None:
    spec = cron_job.setdefault("spec", {})
    set_if_zero(spec, "concurrencyPolicy", "Allow")
    set_if_unset(spec, "suspend", False)
    set_if_unset(spec, "successfulJobsHistoryLimit", 3)
    set_if_unset(spec, "failedJobsHistoryLimit", 1)
    job_spec = (spec.get("jobTemplate") or {}).get("spec")
    if job_spec is not None:
        _default_pod_failure_policy(job_spec)
        default_pod_template(job_spec.get("template"))


DEFAULTERS = {
    ("v1", "Job"): default_job,
    ("v1", "CronJob"): default_cron_job,
}
