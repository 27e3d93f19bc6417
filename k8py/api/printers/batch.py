"""Printers of the batch group."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from k8py.api.duration import human_duration
from k8py.api.printers._common import (
    AGE,
    CONTAINERS,
    IMAGES,
    NAME,
    NONE,
    UNSET,
    Column,
    Obj,
    Printer,
    Printers,
    age,
    condition_true,
    container_cells,
    format_label_selector,
    get,
    items,
    mapping,
    name,
    parse_time,
    since,
)


def _job_status(obj: Obj) -> str:
    conditions = items(obj, "status", "conditions")
    if condition_true(conditions, "Complete"):
        return "Complete"
    if condition_true(conditions, "Failed"):
        return "Failed"
    if get(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    if condition_true(conditions, "Suspended"):
        return "Suspended"
    if condition_true(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_completions(spec: Obj, succeeded: int) -> str:
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = spec.get("parallelism") or 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(status: Obj, now: datetime) -> str:
    start = parse_time(status.get("startTime"))
    if start is None:
        return ""
    end = parse_time(status.get("completionTime")) or now
    return human_duration((end - start).total_seconds())


def _job_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = mapping(obj, "spec"), mapping(obj, "status")
    return [
        name(obj),
        _job_status(obj),
        _job_completions(spec, status.get("succeeded", 0)),
        _job_duration(status, now),
        age(obj, now),
        *container_cells(get(spec, "template", "spec")),
        format_label_selector(spec.get("selector")),
    ]


JOB = Printer(
    (
        NAME,
        Column("Status", text="Status of the job."),
        Column("Completions", doc=("batch.v1.JobStatus", "succeeded")),
        Column("Duration", text="Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", doc=("batch.v1.JobSpec", "selector"), priority=1),
    ),
    _job_cells,
)


def _cron_job_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = mapping(obj, "spec")
    last_schedule = get(obj, "status", "lastScheduleTime")
    job_spec = get(spec, "jobTemplate", "spec")
    return [
        name(obj),
        spec.get("schedule", ""),
        NONE if spec.get("timeZone") is None else spec["timeZone"],
        UNSET if spec.get("suspend") is None else str(spec["suspend"]),  # printBoolPtr
        len(items(obj, "status", "active")),
        NONE if last_schedule is None else since(last_schedule, now),
        age(obj, now),
        *container_cells(get(job_spec, "template", "spec")),
        format_label_selector(get(job_spec, "selector")),
    ]


CRON_JOB = Printer(
    (
        NAME,
        Column("Schedule", doc=("batch.v1.CronJobSpec", "schedule")),
        Column("Timezone", doc=("batch.v1.CronJobSpec", "timeZone")),
        Column("Suspend", "boolean", ("batch.v1.CronJobSpec", "suspend")),
        Column("Active", "integer", ("batch.v1.CronJobStatus", "active")),
        Column("Last Schedule", doc=("batch.v1.CronJobStatus", "lastScheduleTime")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", doc=("batch.v1.JobSpec", "selector"), priority=1),
    ),
    _cron_job_cells,
)

PRINTERS: Printers = {
    ("batch", "CronJob"): CRON_JOB,
    ("batch", "Job"): JOB,
}
