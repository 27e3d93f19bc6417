"""The Job controller's pure pieces (upstream's ``pkg/controller/job``: ``indexed_job_utils.go``,
``pod_failure_policy.go``, ``backoff_utils.go``, ``success_policy.go``, ``utils.go``): the
batch/v1 names, Job conditions, completion-index intervals, matching a failed pod against a
podFailurePolicy, per-index failure counts, and the exponential backoff of pod recreation.

Nothing here talks to the API; ``job.py`` is the controller that uses them.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from k8py.api import meta
from k8py.controllers.controller_utils import is_pod_ready, pod_condition, pod_phase

Obj = dict[str, Any]

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
JOB_INDEX_IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_CONTROLLER_NAME = "kubernetes.io/job-controller"  # spec.managedBy of Jobs this controller syncs
UNKNOWN_INDEX = -1

# condition types
COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
FAILURE_TARGET = "FailureTarget"
SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"

# condition reasons
REASON_POD_FAILURE_POLICY = "PodFailurePolicy"
REASON_BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
REASON_DEADLINE_EXCEEDED = "DeadlineExceeded"
REASON_MAX_FAILED_INDEXES_EXCEEDED = "MaxFailedIndexesExceeded"
REASON_FAILED_INDEXES = "FailedIndexes"
REASON_SUCCESS_POLICY = "SuccessPolicy"
REASON_COMPLETIONS_REACHED = "CompletionsReached"

# pod recreation backoff (DefaultJobPodFailureBackOff, MaxJobPodFailureBackOff)
POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 600.0


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(value: str | None) -> dt.datetime | None:
    return meta.parse_time(value) if value else None


# -- jobs ------------------------------------------------------------------------------------------


def find_condition(job: Obj, type_: str) -> Obj | None:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") == type_:
            return c
    return None


def finished_condition_type(job: Obj) -> str | None:
    """Complete or Failed, whichever is True (getFinishedStatus), else None."""
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in (COMPLETE, FAILED) and c.get("status") == "True":
            return c["type"]
    return None


def is_job_finished(job: Obj) -> bool:
    return finished_condition_type(job) is not None


def is_job_succeeded(job: Obj) -> bool:
    return finished_condition_type(job) == COMPLETE


def job_finish_time(job: Obj) -> dt.datetime | None:
    """The lastTransitionTime of the Complete or Failed condition."""
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in (COMPLETE, FAILED) and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime"))
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: dt.datetime) -> Obj:
    t = meta.format_time(now)
    cond: Obj = {"type": type_, "status": status, "lastProbeTime": t, "lastTransitionTime": t}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def ensure_condition(job: Obj, type_: str, status: str, reason: str, message: str, now: dt.datetime) -> bool:
    """ensureJobConditionStatus: set or update a condition; a False one is never added. True if changed."""
    conditions = job.setdefault("status", {}).setdefault("conditions", [])
    for i, c in enumerate(conditions):
        if c.get("type") == type_:
            if c.get("status") != status or c.get("reason", "") != reason or c.get("message", "") != message:
                conditions[i] = new_condition(type_, status, reason, message, now)
                return True
            return False
    if status != "False":
        conditions.append(new_condition(type_, status, reason, message, now))
        return True
    if not conditions:
        job["status"].pop("conditions")
    return False


def is_indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def is_suspended(job: Obj) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def has_backoff_limit_per_index(job: Obj) -> bool:
    return (job.get("spec") or {}).get("backoffLimitPerIndex") is not None


def only_replace_failed_pods(job: Obj) -> bool:
    """Replacement pods wait for the old ones to be Failed (podReplacementPolicy Failed, or any
    podFailurePolicy), rather than only terminating."""
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


# -- pods ------------------------------------------------------------------------------------------


def has_tracking_finalizer(pod: Obj) -> bool:
    return JOB_TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or ())


def completion_index(pod: Obj) -> int:
    value = (pod["metadata"].get("annotations") or {}).get(JOB_COMPLETION_INDEX)
    if value is None:
        return UNKNOWN_INDEX
    try:
        i = int(value)
    except ValueError:
        return UNKNOWN_INDEX
    return i if i >= 0 else UNKNOWN_INDEX


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    """Failed, or (unless only failed pods are replaced) deleted before it succeeded: an orphan
    never gets the chance to reach the Failed phase."""
    phase = pod_phase(pod)
    if phase == "Failed":
        return True
    if only_replace_failed_pods(job):
        return False
    return bool(pod["metadata"].get("deletionTimestamp")) and phase != "Succeeded"


def _latest_finish(statuses: Iterable[Obj]) -> dt.datetime | None:
    latest: dt.datetime | None = None
    for s in statuses:
        term = (s.get("state") or {}).get("terminated") or {}
        at = parse_time(term.get("finishedAt"))
        if at is None:
            return None
        if latest is None or at > latest:
            latest = at
    return latest


def finished_time(pod: Obj) -> dt.datetime:
    """getFinishedTime: when the last container ended, else when Ready went False, else the
    deletion time less the grace period, else the creation time."""
    status = pod.get("status") or {}
    statuses = list(status.get("containerStatuses") or ())
    sidecars = {
        c.get("name")
        for c in (pod.get("spec") or {}).get("initContainers") or ()
        if c.get("restartPolicy") == "Always"
    }
    statuses += [s for s in status.get("initContainerStatuses") or () if s.get("name") in sidecars]
    if statuses and (at := _latest_finish(statuses)) is not None:
        return at
    ready = pod_condition(pod, "Ready")
    if ready is not None and ready.get("status") == "False" and ready.get("lastTransitionTime"):
        return meta.parse_time(ready["lastTransitionTime"])
    md = pod["metadata"]
    if md.get("deletionTimestamp"):
        grace = int(md.get("deletionGracePeriodSeconds") or 0)
        return meta.parse_time(md["deletionTimestamp"]) - dt.timedelta(seconds=grace)
    return parse_time(md.get("creationTimestamp")) or now_utc()


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _ready_since(pod: Obj) -> dt.datetime | None:
    c = pod_condition(pod, "Ready")
    return parse_time(c.get("lastTransitionTime")) if c else None


def _max_restarts(pod: Obj) -> int:
    return max(
        (s.get("restartCount") or 0 for s in (pod.get("status") or {}).get("containerStatuses") or ()),
        default=0,
    )


def active_pods_order(pod: Obj) -> tuple[Any, ...]:
    """controller.ActivePods as a sort key: the pods to delete first come first (unscheduled,
    pending, not ready, ready for the shortest time, most restarts, newest)."""
    ready = is_pod_ready(pod)
    since = _ready_since(pod) if ready else None
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    return (
        bool((pod.get("spec") or {}).get("nodeName")),
        _PHASE_ORDINAL.get(pod_phase(pod), 0),
        ready,
        (since is not None, -since.timestamp()) if since else (False, 0.0),
        -_max_restarts(pod),
        (created is not None, -created.timestamp()) if created else (False, 0.0),
    )


# -- completion-index intervals -----------------------------------------------------------------

Interval = tuple[int, int]


def with_ordered_indexes(intervals: list[Interval], new: Iterable[int]) -> list[Interval]:
    """The intervals with the (ascending) indexes `new` added, merged."""
    result: list[list[int]] = []

    def put(first: int, last: int) -> None:
        if not result or first > result[-1][1] + 1:
            result.append([first, last])
        elif result[-1][1] < last:
            result[-1][1] = last

    pending = [(i, i) for i in new]
    for first, last in sorted([*intervals, *pending]):
        put(first, last)
    return [(a, b) for a, b in result]


def merge_intervals(a: list[Interval], b: list[Interval]) -> list[Interval]:
    result: list[list[int]] = []
    for first, last in sorted([*a, *b]):
        if not result or first > result[-1][1] + 1:
            result.append([first, last])
        elif result[-1][1] < last:
            result[-1][1] = last
    return [(x, y) for x, y in result]


def intervals_total(intervals: list[Interval]) -> int:
    return sum(last - first + 1 for first, last in intervals)


def intervals_has(intervals: list[Interval], ix: int) -> bool:
    pos = bisect.bisect_left(intervals, ix, key=lambda iv: iv[1])
    return pos < len(intervals) and intervals[pos][0] <= ix


def intervals_str(intervals: list[Interval]) -> str:
    """ "0-2,4,6,7": ranges of three or more with a hyphen, pairs with a comma."""
    parts: list[str] = []
    for first, last in intervals:
        if last == first:
            parts.append(str(first))
        elif last == first + 1:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}-{last}")
    return ",".join(parts)


def parse_indexes(text: str | None, completions: int) -> list[Interval]:
    """parseIndexesFromString: indexes at or above `completions` are dropped, corrupt parts skipped."""
    if not text:
        return []
    result: list[list[int]] = []
    for part in text.split(","):
        limits = part.split("-")
        try:
            first = int(limits[0])
        except ValueError:
            continue
        if first >= completions:
            break
        last = first
        if len(limits) > 1:
            try:
                last = min(int(limits[1]), completions - 1)
            except ValueError:
                continue
        if result and result[-1][1] == first - 1:
            result[-1][1] = last
        else:
            result.append([first, last])
    return [(a, b) for a, b in result]


# -- pod failure policy ------------------------------------------------------------------------


def _exit_codes_match(code: int, requirement: Obj) -> bool:
    values = requirement.get("values") or ()
    op = requirement.get("operator")
    if op == "In":
        return code in values
    if op == "NotIn":
        return code not in values
    return False


def _matching_container(statuses: Iterable[Obj], requirement: Obj) -> Obj | None:
    for s in statuses:
        term = (s.get("state") or {}).get("terminated")
        if term is None:
            continue
        name = requirement.get("containerName")
        if name is None or name == s.get("name"):
            code = term.get("exitCode") or 0
            if code != 0 and _exit_codes_match(code, requirement):
                return s
    return None


def match_pod_failure_policy(policy: Obj | None, pod: Obj) -> tuple[str | None, bool, str | None]:
    """matchPodFailurePolicy: (the job failure message of a FailJob rule, whether the failure
    counts towards the backoff limit, the action of the matching rule)."""
    if policy is None:
        return None, True, None
    status = pod.get("status") or {}
    md = pod["metadata"]
    for index, rule in enumerate(policy.get("rules") or ()):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            req = rule["onExitCodes"]
            cs = _matching_container(status.get("containerStatuses") or (), req) or _matching_container(
                status.get("initContainerStatuses") or (), req
            )
            if cs is None:
                continue
            if action == "FailJob":
                code = cs["state"]["terminated"].get("exitCode", 0)
                return (
                    f"Container {cs.get('name')} for pod {md.get('namespace')}/{md.get('name')} failed with exit "
                    f"code {code} matching {action} rule at index {index}",
                    True,
                    action,
                )
        elif rule.get("onPodConditions") is not None:
            cond = _matching_condition(status.get("conditions") or (), rule["onPodConditions"])
            if cond is None:
                continue
            if action == "FailJob":
                return (
                    f"Pod {md.get('namespace')}/{md.get('name')} has condition {cond.get('type')} matching "
                    f"{action} rule at index {index}",
                    True,
                    action,
                )
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action in ("Count", "FailIndex"):
            return None, True, action
    return None, True, None


def _matching_condition(conditions: Iterable[Obj], patterns: list[Obj]) -> Obj | None:
    for c in conditions:
        for p in patterns:
            if c.get("type") == p.get("type") and c.get("status") == p.get("status", "True"):
                return c
    return None


# -- per-index failures -------------------------------------------------------------------------


def _annotation_int(pod: Obj, name: str) -> int:
    value = (pod["metadata"].get("annotations") or {}).get(name)
    try:
        n = int(value) if value is not None else 0
    except ValueError:
        return 0
    return max(n, 0)


def index_failure_count(pod: Obj) -> int:
    return _annotation_int(pod, JOB_INDEX_FAILURE_COUNT)


def index_absolute_failure_count(pod: Obj) -> int:
    return _annotation_int(pod, JOB_INDEX_FAILURE_COUNT) + _annotation_int(
        pod, JOB_INDEX_IGNORED_FAILURE_COUNT
    )


def is_index_failed(job: Obj, pod: Obj) -> bool:
    """The pod's failure fails its index: a FailIndex rule, or backoffLimitPerIndex reached."""
    counted = False
    if is_pod_failed(pod, job):
        policy = (job.get("spec") or {}).get("podFailurePolicy")
        if policy is not None:
            _, count_failed, action = match_pod_failure_policy(policy, pod)
            if action == "FailIndex":
                return True
            counted = count_failed
        else:
            counted = True
    return counted and index_failure_count(pod) >= int(job["spec"]["backoffLimitPerIndex"])


def new_index_failure_counts(job: Obj, replaced: Obj | None) -> tuple[int, int]:
    """getNewIndexFailureCounts: the failure counts a replacement of `replaced` starts with."""
    if replaced is None:
        return 0, 0
    failures = index_failure_count(replaced)
    ignored = _annotation_int(replaced, JOB_INDEX_IGNORED_FAILURE_COUNT)
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if policy is not None:
        _, count_failed, _ = match_pod_failure_policy(policy, replaced)
        if count_failed:
            failures += 1
        else:
            ignored += 1
    else:
        failures += 1
    return failures, ignored


# -- success policy ---------------------------------------------------------------------------


def _succeeded_indexes_rule_matches(
    rule: list[Interval], succeeded: list[Interval], count: int | None
) -> bool:
    contains = 0
    r = s = 0
    while r < len(rule) and s < len(succeeded):
        overlap = min(rule[r][1], succeeded[s][1]) - max(rule[r][0], succeeded[s][0]) + 1
        if overlap > 0:
            contains += overlap
        if succeeded[s][1] < rule[r][1]:
            s += 1
        elif succeeded[s][1] > rule[r][1]:
            r += 1
        else:
            s += 1
            r += 1
    return contains == intervals_total(rule) or (count is not None and contains >= count)


def match_success_policy(policy: Obj | None, completions: int, succeeded: list[Interval]) -> str | None:
    """matchSuccessPolicy: the message of the first rule the succeeded indexes meet, else None."""
    if policy is None or not succeeded:
        return None
    for index, rule in enumerate(policy.get("rules") or ()):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"], completions)
            if required and _succeeded_indexes_rule_matches(required, succeeded, count):
                return f"Matched rules at index {index}"
        elif count is not None and intervals_total(succeeded) >= count:
            return f"Matched rules at index {index}"
    return None


# -- backoff of pod recreation ------------------------------------------------------------------


@dataclass
class BackoffRecord:
    key: str
    failures_after_last_success: int = 0
    last_failure_time: dt.datetime | None = None

    def remaining(self, now: dt.datetime) -> float:
        return remaining_backoff(now, self.failures_after_last_success, self.last_failure_time)


def remaining_backoff(
    now: dt.datetime,
    failures: int,
    last_failure: dt.datetime | None,
    base: float = POD_FAILURE_BACKOFF,
    cap: float = MAX_POD_FAILURE_BACKOFF,
) -> float:
    """Seconds until a pod may be created again after `failures` consecutive failures: `base`
    doubling per failure up to `cap`, counted from the last failure."""
    if failures == 0 or last_failure is None:
        return 0.0
    backoff = base
    for _ in range(1, failures):
        backoff *= 2
        if backoff >= cap:
            backoff = cap
            break
    elapsed = (now - last_failure).total_seconds()
    return max(0.0, backoff - elapsed)


class BackoffStore:
    """Per Job key: consecutive pod failures since the last success, and when the last one was."""

    def __init__(self) -> None:
        self._records: dict[str, BackoffRecord] = {}

    def new_record(self, key: str, succeeded: list[Obj], failed: list[Obj]) -> BackoffRecord:
        old = self._records.get(key)
        rec = (
            BackoffRecord(key, old.failures_after_last_success, old.last_failure_time)
            if old
            else BackoffRecord(key)
        )
        failed = sorted(failed, key=finished_time)
        if not succeeded:
            if failed:
                rec.failures_after_last_success += len(failed)
                rec.last_failure_time = finished_time(failed[-1])
            return rec
        rec.failures_after_last_success, rec.last_failure_time = 0, None
        last_success = max(finished_time(p) for p in succeeded)
        for p in reversed(failed):
            at = finished_time(p)
            if at <= last_success:
                break
            if rec.last_failure_time is None:
                rec.last_failure_time = at
            rec.failures_after_last_success += 1
        return rec

    def update(self, record: BackoffRecord) -> None:
        self._records[record.key] = record

    def remove(self, key: str) -> None:
        self._records.pop(key, None)
