"""batch/v1 Jobs and CronJobs: pkg/apis/batch/validation, with robfig/cron's schedule parser.

`parse_schedule` accepts what kube-apiserver's `cron.ParseStandard` accepts
(five fields, names for months and weekdays, `*`, `?`, ranges, steps and the
`@hourly`-style descriptors) and fails with its error text, which kube puts
verbatim into the cause.
"""

from __future__ import annotations

import re
import zoneinfo

from k8py.api.defaults.batch import CONTROLLER_UID_LABELS, JOB_NAME_LABELS
from k8py.api.validation.field import (
    Cause,
    immutable,
    invalid,
    non_negative,
    not_supported,
    required,
)
from k8py.api.validation.meta import (
    Obj,
    as_selector,
    validate_has_label,
    validate_label_selector,
    validate_meta,
    validate_object_meta,
    validate_object_meta_update,
)
from k8py.api.validation.names import is_dns1123_label, name_is_dns_subdomain
from k8py.api.validation.pods import validate_pod_template_spec

MAX_PARALLELISM_INDEXED = 100_000
MAX_FAILED_INDEXES = 100_000
CRON_JOB_NAME_MAX_LENGTH = 52  # 63 minus the 11 characters of "-<timestamp>" in the Jobs it creates

# --- schedules --------------------------------------------------------------------------------------

_BOUNDS = (  # minute, hour, day of month, month, day of week: (min, max, names)
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}),
    (0, 6, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}),
)
_DESCRIPTORS = frozenset(("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"))
_DURATION = re.compile(r"[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+|[-+]?0")


def _go_atoi(text: str) -> int:
    if re.fullmatch(r"[+-]?[0-9]+", text) is None:
        raise ValueError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _parse_int(text: str) -> int:
    number = _go_atoi(text)
    if number < 0:
        raise ValueError(f"negative number ({number}) not allowed: {text}")
    return number


def _parse_int_or_name(text: str, names: dict[str, int]) -> int:
    return names[text.lower()] if text.lower() in names else _parse_int(text)


def _parse_range(expr: str, low: int, high: int, names: dict[str, int]) -> None:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    if low_and_high[0] in ("*", "?"):
        start, end = low, high
    else:
        start = _parse_int_or_name(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _parse_int_or_name(low_and_high[1], names)
        else:
            raise ValueError(f"too many hyphens: {expr}")
    step = 1
    if len(range_and_step) == 2:
        step = _parse_int(range_and_step[1])
        if len(low_and_high) == 1:
            end = high  # "N/step" means "N-max/step"
    elif len(range_and_step) > 2:
        raise ValueError(f"too many slashes: {expr}")
    if start < low:
        raise ValueError(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise ValueError(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {expr}")


def parse_schedule(schedule: str) -> None:
    """cron.ParseStandard; raises ValueError with robfig/cron's message."""
    if not schedule:
        raise ValueError("empty spec string")
    if schedule.startswith(("TZ=", "CRON_TZ=")):
        zone, _, schedule = schedule.partition(" ")
        location = zone.partition("=")[2]
        try:
            zoneinfo.ZoneInfo(location)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ValueError(f"provided bad location {location}: unknown time zone {location}") from None
        schedule = schedule.strip()
    if schedule.startswith("@"):
        if schedule in _DESCRIPTORS:
            return
        if schedule.startswith("@every "):
            duration = schedule[len("@every ") :]
            if not _DURATION.fullmatch(duration):
                raise ValueError(f'failed to parse duration {schedule}: time: invalid duration "{duration}"')
            return
        raise ValueError(f"unrecognized descriptor: {schedule}")
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    for field, (low, high, names) in zip(fields, _BOUNDS, strict=True):
        for expr in (part for part in field.split(",") if part):
            _parse_range(expr, low, high, names)


def _validate_schedule(schedule: str, path: str, *, allow_tz: bool, time_zone: str | None) -> list[Cause]:
    causes: list[Cause] = []
    try:
        parse_schedule(schedule)
    except ValueError as e:
        causes.append(invalid(path, schedule, str(e)))
    if allow_tz and "TZ" in schedule and time_zone is not None:
        causes.append(invalid(path, schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
    elif not allow_tz and "TZ" in schedule:
        causes.append(
            invalid(path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
        )
    return causes


_TIME_ZONE_PART = re.compile(r"[A-Za-z.\-_0-9+]{1,14}")


def _validate_time_zone(time_zone: str | None, path: str) -> list[Cause]:
    if time_zone is None:
        return []
    if not time_zone:
        return [invalid(path, time_zone, "timeZone must be nil or non-empty string")]
    for part in time_zone.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TIME_ZONE_PART.fullmatch(part):
            return [invalid(path, time_zone, f"unknown time zone {time_zone}")]
    if time_zone.lower() == "local":
        return [
            invalid(
                path,
                time_zone,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            )
        ]
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return [invalid(path, time_zone, f"unknown time zone {time_zone}")]
    return []


# --- Jobs ---------------------------------------------------------------------------------------------


def _validate_job_spec(spec: Obj, path: str) -> list[Cause]:
    """validateJobSpec: what a Job and a CronJob's job template share."""
    causes: list[Cause] = []
    for key in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ):
        causes += non_negative(f"{path}.{key}", spec.get(key))
    if spec.get("maxFailedIndexes") is not None:
        causes += non_negative(f"{path}.maxFailedIndexes", spec["maxFailedIndexes"])
        if spec.get("backoffLimitPerIndex") is None:
            causes.append(required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    mode = spec.get("completionMode")
    if mode is not None:
        if mode not in ("NonIndexed", "Indexed"):
            causes.append(not_supported(f"{path}.completionMode", mode, ("NonIndexed", "Indexed")))
        if mode == "Indexed":
            if spec.get("completions") is None:
                causes.append(required(f"{path}.completions", "when completion mode is Indexed"))
            parallelism = spec.get("parallelism")
            if parallelism is not None and parallelism > MAX_PARALLELISM_INDEXED:
                causes.append(
                    invalid(
                        f"{path}.parallelism",
                        parallelism,
                        f"must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed",
                    )
                )
    if mode in (None, "NonIndexed"):
        for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(key) is not None:
                causes.append(invalid(f"{path}.{key}", spec[key], "requires indexed completion mode"))
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        supported = (
            ("Failed",) if spec.get("podFailurePolicy") is not None else ("Failed", "TerminatingOrFailed")
        )
        if replacement not in supported:
            causes.append(not_supported(f"{path}.podReplacementPolicy", replacement, supported))
    template = spec.get("template") or {}
    causes += validate_pod_template_spec(template, f"{path}.template")
    restart = (template.get("spec") or {}).get("restartPolicy", "")
    restart_path = f"{path}.template.spec.restartPolicy"
    if restart in ("Always", ""):
        causes.append(required(restart_path, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        causes.append(not_supported(restart_path, restart, ("OnFailure", "Never")))
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        causes.append(
            invalid(restart_path, restart, 'only "Never" is supported when podFailurePolicy is specified')
        )
    return causes


def _validate_generated_selector(job: Obj, *, prefixed_labels: bool) -> list[Cause]:
    spec = job.get("spec") or {}
    if spec.get("manualSelector") or spec.get("selector") is None:
        return []
    meta = job.get("metadata") or {}
    uid, name = meta.get("uid", ""), meta.get("name", "")
    template_meta = (spec.get("template") or {}).get("metadata")
    causes: list[Cause] = [] if uid else [required("metadata.uid")]
    expected = {}
    label_pairs = [(CONTROLLER_UID_LABELS[0], uid), (JOB_NAME_LABELS[0], name)]
    if prefixed_labels:
        label_pairs += [(CONTROLLER_UID_LABELS[1], uid), (JOB_NAME_LABELS[1], name)]
    for key, value in label_pairs:
        causes += validate_has_label(template_meta, "spec.template.metadata", key, value)
        expected[key] = value
    selector = as_selector(spec["selector"])
    if selector is not None and not selector.matches(expected):
        causes.append(invalid("spec.selector", spec["selector"], "`selector` not auto-generated"))
    return causes


def validate_job(job: Obj, old: Obj | None) -> list[Cause]:
    spec = job.get("spec") or {}
    meta = job.get("metadata") or {}
    old_spec = (old or {}).get("spec") or {}
    if old is None:
        causes = validate_object_meta(meta, True, name_is_dns_subdomain)
        prefixed_labels = True
    else:
        causes = validate_object_meta_update(meta, old.get("metadata"))
        old_labels = ((old_spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        prefixed_labels = JOB_NAME_LABELS[1] in old_labels and CONTROLLER_UID_LABELS[1] in old_labels
    causes += _validate_generated_selector(job, prefixed_labels=prefixed_labels)
    causes += _validate_job_spec(spec, "spec")
    selector = spec.get("selector")
    if selector is None:
        causes.append(required("spec.selector"))
    else:
        causes += validate_label_selector(selector, "spec.selector")
    parsed = as_selector(selector)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if parsed is not None and not parsed.matches(labels):
        causes.append(
            invalid(
                "spec.template.metadata.labels", labels or {}, "`selector` does not match template `labels`"
            )
        )
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed" and completions:
        hostname = f"{meta.get('name', '')}-{completions - 1}"
        if is_dns1123_label(hostname):
            causes.append(
                invalid(
                    "metadata.name",
                    meta.get("name", ""),
                    f"will not able to create pod with invalid DNS label: {hostname}",
                )
            )
    if old is not None:
        causes += _validate_job_update(spec, old_spec, old)
    return causes


_SCHEDULING_DIRECTIVES = ("nodeSelector", "tolerations", "schedulingGates")


def _validate_job_update(spec: Obj, old_spec: Obj, old: Obj) -> list[Cause]:
    causes: list[Cause] = []
    if spec.get("completionMode") == "Indexed":
        if spec.get("completions") != old_spec.get("completions") and spec.get("completions") is not None:
            if spec["completions"] != spec.get("parallelism"):
                causes.append(
                    invalid(
                        "spec.completions",
                        spec["completions"],
                        "can only be modified in tandem with spec.parallelism",
                    )
                )
    else:
        causes += immutable("spec.completions", spec.get("completions"), old_spec.get("completions"))
    causes += immutable("spec.selector", spec.get("selector"), old_spec.get("selector"))
    template, old_template = spec.get("template") or {}, old_spec.get("template") or {}
    started = bool((old.get("status") or {}).get("startTime"))
    if old_spec.get("suspend") and not started:
        # A suspended Job that never ran may still change where its pods are scheduled.
        old_template = _with_scheduling_of(old_template, template)
    causes += immutable("spec.template", template, old_template)
    for key in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"):
        causes += immutable(f"spec.{key}", spec.get(key), old_spec.get(key))
    return causes


def _with_scheduling_of(old_template: Obj, template: Obj) -> Obj:
    """The old template with the new one's scheduling directives, labels and annotations."""
    merged = {
        **old_template,
        "metadata": template.get("metadata"),
        "spec": dict(old_template.get("spec") or {}),
    }
    new_spec = template.get("spec") or {}
    for key in _SCHEDULING_DIRECTIVES:
        merged["spec"].pop(key, None)
        if key in new_spec:
            merged["spec"][key] = new_spec[key]
    affinity = dict(merged["spec"].get("affinity") or {})
    affinity.pop("nodeAffinity", None)
    if (new_spec.get("affinity") or {}).get("nodeAffinity") is not None:
        affinity["nodeAffinity"] = new_spec["affinity"]["nodeAffinity"]
    merged["spec"].pop("affinity", None)
    if affinity or "affinity" in new_spec:
        merged["spec"]["affinity"] = affinity
    return merged


# --- CronJobs -------------------------------------------------------------------------------------------


def _validate_job_template_spec(template: Obj, path: str) -> list[Cause]:
    spec = template.get("spec") or {}
    causes = _validate_job_spec(spec, f"{path}.spec")
    if spec.get("selector") is not None:
        causes.append(invalid(f"{path}.spec.selector", spec["selector"], "`selector` will be auto-generated"))
    if spec.get("manualSelector"):
        causes.append(not_supported(f"{path}.spec.manualSelector", spec["manualSelector"], ("nil", "false")))
    return causes


def validate_cron_job(cron_job: Obj, old: Obj | None) -> list[Cause]:
    spec = cron_job.get("spec") or {}
    meta = cron_job.get("metadata") or {}
    old_spec: Obj = (old or {}).get("spec") or {}
    causes = validate_meta(cron_job, old, True, name_is_dns_subdomain)
    schedule = spec.get("schedule", "")
    if not schedule:
        causes.append(required("spec.schedule"))
    else:
        allow_tz = old is not None and "TZ" in old_spec.get("schedule", "")
        causes += _validate_schedule(
            schedule, "spec.schedule", allow_tz=allow_tz, time_zone=spec.get("timeZone")
        )
    causes += non_negative("spec.startingDeadlineSeconds", spec.get("startingDeadlineSeconds"))
    if old is None or spec.get("timeZone") != old_spec.get("timeZone"):
        causes += _validate_time_zone(spec.get("timeZone"), "spec.timeZone")
    policy = spec.get("concurrencyPolicy", "")
    if not policy:
        causes.append(required("spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        causes.append(not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace")))
    causes += _validate_job_template_spec(spec.get("jobTemplate") or {}, "spec.jobTemplate")
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        causes += non_negative(f"spec.{key}", spec.get(key))
    name = meta.get("name", "")
    if old is None and len(name) > CRON_JOB_NAME_MAX_LENGTH:
        causes.append(
            invalid("metadata.name", name, f"must be no more than {CRON_JOB_NAME_MAX_LENGTH} characters")
        )
    return causes


VALIDATORS = {
    "Job": validate_job,
    "CronJob": validate_cron_job,
}
