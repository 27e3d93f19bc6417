"""Unit tests of the cron schedule parser (robfig/cron's semantics: fields, names, steps,
descriptors, time zones, DST) and of the CronJob controller's sync logic against a fake API and a
controllable clock: missed schedules, startingDeadlineSeconds, concurrencyPolicy Forbid and
Replace, history limits, jobs gone missing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from k8py.api import meta
from k8py.client import SharedInformerFactory
from k8py.client.errors import AlreadyExists, NotFound
from k8py.client.resources import CRON_JOBS, JOBS, Resource
from k8py.controllers.cron import parse_duration, parse_standard
from k8py.controllers.cronjob import (
    CronJobController,
    format_schedule,
    get_job_name,
    job_from_template,
    most_recent_schedule_time,
    next_schedule_time_duration,
)
from k8py.controllers.manager import ControllerContext

UTC = dt.UTC


def at(*args: int, tz: Any = UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


def times(spec: str, start: dt.datetime, n: int) -> list[str]:
    sched = parse_standard(spec)
    out = []
    t: dt.datetime | None = start
    for _ in range(n):
        assert t is not None
        t = sched.next(t)
        assert t is not None
        out.append(t.astimezone(UTC).strftime("%m-%d %H:%M"))
    return out


# -- parsing --------------------------------------------------------------------------------------


def test_fields_lists_ranges_steps_and_names() -> None:
    start = at(2024, 1, 1, 10, 7, 30)  # a Monday
    assert times("*/15 * * * *", start, 3) == ["01-01 10:15", "01-01 10:30", "01-01 10:45"]
    assert times("5,10-12 * * * *", start, 4) == ["01-01 10:10", "01-01 10:11", "01-01 10:12", "01-01 11:05"]
    assert times("0 9 * * MON-fri", at(2024, 1, 5, 12), 2) == ["01-08 09:00", "01-09 09:00"]
    assert times("0 0 1 jan,Jul *", start, 2) == ["07-01 00:00", "01-01 00:00"]
    assert times("30 2 10/10 * *", start, 3) == ["01-10 02:30", "01-20 02:30", "01-30 02:30"]
    assert times("0 0 ? * 0", start, 1) == ["01-07 00:00"]  # "?" is "*"


def test_day_of_month_or_day_of_week() -> None:
    # both restricted: either matches (the 13th, and every Friday)
    assert times("0 0 13 * 5", at(2024, 1, 1), 4) == [
        "01-05 00:00",
        "01-12 00:00",
        "01-13 00:00",
        "01-19 00:00",
    ]
    # one of them "*": both must match
    assert times("0 0 * * 5", at(2024, 1, 1), 1) == ["01-05 00:00"]
    # a stepped "*" is a restriction
    assert times("0 0 */10 * 1", at(2024, 1, 2), 3) == ["01-08 00:00", "01-11 00:00", "01-15 00:00"]


def test_descriptors() -> None:
    start = at(2024, 5, 15, 10, 30)
    assert times("@hourly", start, 1) == ["05-15 11:00"]
    assert times("@daily", start, 1) == times("@midnight", start, 1) == ["05-16 00:00"]
    assert times("@weekly", start, 1) == ["05-19 00:00"]  # Sunday
    assert times("@monthly", start, 1) == ["06-01 00:00"]
    assert times("@yearly", start, 1) == times("@annually", start, 1) == ["01-01 00:00"]
    assert times("@every 1h30m", start, 2) == ["05-15 12:00", "05-15 13:30"]
    assert parse_duration("1.5h") == 5400 and parse_duration("90s") == 90 and parse_duration("500ms") == 0.5


def test_never_and_leap_days() -> None:
    assert parse_standard("0 0 30 2 *").next(at(2024, 1, 1)) is None  # no February 30th within 5 years
    assert times("0 0 29 2 *", at(2024, 3, 1), 1) == ["02-29 00:00"]
    assert parse_standard("0 0 29 2 *").next(at(2024, 3, 1)).year == 2028  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("TZ=Mars/Olympus * * * * *", "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"),
    ],
)
def test_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_standard(spec)
    assert str(e.value) == message


def test_time_zones() -> None:
    # 09:00 in Tokyo is 00:00 UTC
    assert times("TZ=Asia/Tokyo 0 9 * * *", at(2024, 1, 1, 1), 1) == ["01-02 00:00"]
    assert times("CRON_TZ=America/New_York 0 9 * * *", at(2024, 1, 1), 1) == ["01-01 14:00"]
    # the result is in the zone of the time asked about
    t = parse_standard("TZ=Asia/Tokyo 0 9 * * *").next(at(2024, 1, 1))
    assert t is not None and t.tzinfo is UTC


def test_daylight_saving_time() -> None:
    # New York springs forward on 2024-03-10 at 02:00: 02:30 does not exist that day and is skipped
    assert times("TZ=America/New_York 30 2 * * *", at(2024, 3, 9, 12), 2) == ["03-11 06:30", "03-12 06:30"]
    # ... and the day's 03:30 is 07:30 UTC instead of 08:30
    assert times("TZ=America/New_York 30 3 * * *", at(2024, 3, 9, 12), 2) == ["03-10 07:30", "03-11 07:30"]
    # it falls back on 2024-11-03 at 02:00: 01:30 happens twice, and so does the job (robfig's behaviour)
    assert times("TZ=America/New_York 30 1 * * *", at(2024, 11, 2, 12), 3) == [
        "11-03 05:30",
        "11-03 06:30",
        "11-04 06:30",
    ]
    # hourly across the fall-back: every real hour, once
    assert times("TZ=America/New_York 0 * * * *", at(2024, 11, 3, 4, 30), 3) == [
        "11-03 05:00",
        "11-03 06:00",
        "11-03 07:00",
    ]
    # Europe/Paris skips 02:00-03:00 on 2024-03-31
    assert times("TZ=Europe/Paris 15 2 * * *", at(2024, 3, 30, 12), 1) == ["04-01 00:15"]


# -- schedule math ---------------------------------------------------------------------------


def cronjob(
    schedule: str = "*/5 * * * *", *, created: str = "2024-01-01T00:00:00Z", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "cj", "namespace": "ns", "uid": "cj-uid", "creationTimestamp": created},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Allow",
            "suspend": False,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"app": "x"}}, "spec": {"template": {"spec": {}}}},
            **spec,
        },
        "status": {},
    }


def test_most_recent_schedule_time() -> None:
    cj = cronjob("*/5 * * * *")
    sched = parse_standard(cj["spec"]["schedule"])
    # before the first time
    _, recent, _, _ = most_recent_schedule_time(
        cj, at(2024, 1, 1, 0, 3), sched, include_starting_deadline=True
    )
    assert recent is None
    # exactly one due
    _, recent, missed, _ = most_recent_schedule_time(
        cj, at(2024, 1, 1, 0, 7), sched, include_starting_deadline=True
    )
    assert recent == at(2024, 1, 1, 0, 5) and missed == 0
    # many due: the most recent one
    _, recent, missed, _ = most_recent_schedule_time(
        cj, at(2024, 1, 1, 10, 2), sched, include_starting_deadline=True
    )
    assert recent == at(2024, 1, 1, 10, 0) and missed == 2  # over 100 missed
    # an irregular schedule: weekdays at 9 and 17
    cj = cronjob("0 9,17 * * 1-5", created="2024-01-05T18:00:00Z")
    sched = parse_standard(cj["spec"]["schedule"])
    _, recent, _, _ = most_recent_schedule_time(cj, at(2024, 1, 22, 8), sched, include_starting_deadline=True)
    assert recent == at(2024, 1, 19, 17)
    # startingDeadlineSeconds: nothing older than the deadline counts
    cj = cronjob("0 * * * *", startingDeadlineSeconds=600)
    _, recent, _, _ = most_recent_schedule_time(
        cj, at(2024, 1, 1, 5, 20), parse_standard("0 * * * *"), include_starting_deadline=True
    )
    assert recent is None
    # a schedule that parses but never comes twice a second apart... or at all
    cj = cronjob("59 23 31 2 *")
    _, recent, _, err = most_recent_schedule_time(
        cj, at(2024, 6, 1), parse_standard("59 23 31 2 *"), include_starting_deadline=True
    )
    assert recent is None and err is None
    # the requeue aims at the next time after the most recent, plus 100 ms
    cj = cronjob("*/5 * * * *")
    cj["status"]["lastScheduleTime"] = "2024-01-01T00:05:00Z"
    d = next_schedule_time_duration(cj, at(2024, 1, 1, 0, 7), parse_standard("*/5 * * * *"))
    assert d == pytest.approx(180.1)


def test_job_from_template() -> None:
    cj = cronjob("0 9 * * *", timeZone="Asia/Tokyo")
    scheduled = at(2024, 1, 2, 0, 0)
    job = job_from_template(cj, scheduled)
    assert job["metadata"]["name"] == get_job_name(cj, scheduled) == f"cj-{int(scheduled.timestamp()) // 60}"
    assert (
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        == "2024-01-02T09:00:00+09:00"
    )
    assert job["metadata"]["labels"] == {"app": "x"}
    ref = job["metadata"]["ownerReferences"][0]
    assert ref == {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": "cj",
        "uid": "cj-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    utc = job_from_template(cronjob(), scheduled)
    assert (
        utc["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        == "2024-01-02T00:00:00Z"
    )
    assert format_schedule(cj, None) == "TZ=Asia/Tokyo 0 9 * * *"


# -- the sync, against a fake API -----------------------------------------------------------


class FakeAPI:
    """The few verbs the CronJob controller uses, over a dict of objects."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.deletes: list[dict[str, Any]] = []

    def put(self, res: Resource, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        self.objects[(res.plural, md.get("namespace", ""), md["name"])] = meta.clone(obj)

    async def get(
        self, res: Resource, name: str, *, namespace: str | None = None, **_: Any
    ) -> dict[str, Any]:
        self.calls.append(("get", res.plural, name))
        try:
            return meta.clone(self.objects[(res.plural, namespace or "", name)])
        except KeyError:
            raise NotFound(
                {"code": 404, "reason": "NotFound", "message": f'{res.plural} "{name}" not found'}
            ) from None

    async def create(
        self, res: Resource, obj: dict[str, Any], *, namespace: str | None = None, **_: Any
    ) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        self.calls.append(("create", res.plural, name))
        if (res.plural, namespace or "", name) in self.objects:
            raise AlreadyExists({"code": 409, "reason": "AlreadyExists", "message": "exists"})
        obj = meta.clone(obj)
        obj["metadata"].update(namespace=namespace, uid=f"uid-{name}", resourceVersion="1")
        self.put(res, obj)
        return obj

    async def delete(
        self, res: Resource, name: str, *, namespace: str | None = None, **options: Any
    ) -> dict[str, Any]:
        self.calls.append(("delete", res.plural, name))
        self.deletes.append(options)
        return self.objects.pop((res.plural, namespace or "", name))

    async def update_status(self, res: Resource, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append(("update_status", res.plural, obj["metadata"]["name"]))
        self.put(res, obj)
        return obj


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str, **_: Any) -> None:
        self.events.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]


class Options:
    extra: dict[str, Any] = {}

    def workers(self, name: str, default: int = 5) -> int:
        return 1


def controller(api: FakeAPI, now: dt.datetime) -> tuple[CronJobController, Recorder]:
    ctx = ControllerContext(api, SharedInformerFactory(api), Options())  # type: ignore[arg-type]
    c = CronJobController(ctx)
    rec = Recorder()
    c.recorder = rec  # type: ignore[assignment]
    c.now = lambda: now
    return c, rec


def child(name: str, *, finished: str | None = None, start: str = "2024-01-01T00:00:00Z") -> dict[str, Any]:
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": "cj",
                    "uid": "cj-uid",
                    "controller": True,
                }
            ],
        },
        "spec": {},
        "status": {"startTime": start},
    }
    if finished:
        job["status"]["conditions"] = [{"type": finished, "status": "True", "lastTransitionTime": start}]
        if finished == "Complete":
            job["status"]["completionTime"] = start
    return job


def ref(name: str) -> dict[str, Any]:
    return {"kind": "Job", "namespace": "ns", "name": name, "uid": f"uid-{name}", "apiVersion": "batch/v1"}


async def run_sync(
    c: CronJobController, api: FakeAPI, cj: dict[str, Any], jobs: list[dict[str, Any]]
) -> dict[str, Any]:
    api.put(CRON_JOBS, cj)
    c.cronjobs.indexer.add(cj)
    for j in jobs:
        api.put(JOBS, j)
        c.jobs.indexer.add(j)
    await c.sync("ns/cj")
    return api.objects[("cronjobs", "ns", "cj")]


async def test_sync_creates_the_due_job_and_requeues() -> None:
    api = FakeAPI()
    now = at(2024, 1, 1, 0, 12, 30)
    c, rec = controller(api, now)
    cj = await run_sync(c, api, cronjob(), [])
    name = f"cj-{int(at(2024, 1, 1, 0, 10).timestamp()) // 60}"
    assert ("create", "jobs", name) in api.calls
    assert cj["status"]["lastScheduleTime"] == "2024-01-01T00:10:00Z"
    assert [a["name"] for a in cj["status"]["active"]] == [name]
    assert rec.events == [("Normal", "SuccessfulCreate", f"Created job {name}")]
    # the next sync is at 00:15 (+100 ms)
    assert c.queue.waiting() == 1
    # syncing again at once does nothing new
    api.calls.clear()
    c.jobs.indexer.add(api.objects[("jobs", "ns", name)])
    c.cronjobs.indexer.add(cj)
    await c.sync("ns/cj")
    assert not [x for x in api.calls if x[0] == "create"]


async def test_forbid_skips_while_a_job_runs() -> None:
    api = FakeAPI()
    c, rec = controller(api, at(2024, 1, 1, 0, 10, 5))
    cj = cronjob(concurrencyPolicy="Forbid")
    cj["status"] = {"lastScheduleTime": "2024-01-01T00:05:00Z", "active": [ref("running")]}
    after = await run_sync(c, api, cj, [child("running")])
    assert not [x for x in api.calls if x[0] in ("create", "delete")]
    assert rec.reasons() == ["JobAlreadyActive"]
    assert (
        rec.events[0][2]
        == "Not starting job because prior execution is running and concurrency policy is Forbid"
    )
    assert after["status"]["lastScheduleTime"] == "2024-01-01T00:05:00Z"
    # once it finished, the next due time runs
    api2 = FakeAPI()
    c2, rec2 = controller(api2, at(2024, 1, 1, 0, 10, 5))
    after = await run_sync(c2, api2, cj, [child("running", finished="Complete")])
    assert rec2.reasons() == ["SawCompletedJob", "SuccessfulCreate"]
    assert [a["name"] for a in after["status"]["active"]] == [
        f"cj-{int(at(2024, 1, 1, 0, 10).timestamp()) // 60}"
    ]


async def test_replace_deletes_the_running_job() -> None:
    api = FakeAPI()
    c, rec = controller(api, at(2024, 1, 1, 0, 10, 5))
    cj = cronjob(concurrencyPolicy="Replace")
    cj["status"] = {"lastScheduleTime": "2024-01-01T00:05:00Z", "active": [ref("running")]}
    after = await run_sync(c, api, cj, [child("running")])
    new = f"cj-{int(at(2024, 1, 1, 0, 10).timestamp()) // 60}"
    assert ("delete", "jobs", "running") in api.calls and api.deletes == [
        {"propagation_policy": "Background"}
    ]
    assert ("create", "jobs", new) in api.calls
    assert rec.reasons() == ["SuccessfulDelete", "SuccessfulCreate"]
    assert [a["name"] for a in after["status"]["active"]] == [new]


async def test_allow_runs_concurrently() -> None:
    api = FakeAPI()
    c, _ = controller(api, at(2024, 1, 1, 0, 10, 5))
    cj = cronjob()
    cj["status"] = {"lastScheduleTime": "2024-01-01T00:05:00Z", "active": [ref("running")]}
    after = await run_sync(c, api, cj, [child("running")])
    assert len(after["status"]["active"]) == 2


async def test_starting_deadline_and_too_many_missed() -> None:
    api = FakeAPI()
    # due at 00:10, but 00:10 + 60 s is past: missed
    c, rec = controller(api, at(2024, 1, 1, 0, 11, 30))
    await run_sync(c, api, cronjob(startingDeadlineSeconds=200, schedule="*/10 * * * *"), [])
    assert rec.reasons() == ["SuccessfulCreate"]
    assert ("create", "jobs", f"cj-{int(at(2024, 1, 1, 0, 10).timestamp()) // 60}") in api.calls
    api = FakeAPI()
    c, rec = controller(api, at(2024, 1, 1, 0, 11, 30))
    await run_sync(c, api, cronjob(startingDeadlineSeconds=60, schedule="*/10 * * * *"), [])
    assert rec.reasons() == [] and not [
        x for x in api.calls if x[0] == "create"
    ]  # nothing within the deadline
    # a controller down for days: one warning, and only the latest time runs
    api = FakeAPI()
    c, rec = controller(api, at(2024, 1, 3, 0, 1))
    await run_sync(c, api, cronjob("*/5 * * * *"), [])
    assert rec.reasons() == ["TooManyMissedTimes", "SuccessfulCreate"]
    assert [x for x in api.calls if x[0] == "create"] == [
        ("create", "jobs", f"cj-{int(at(2024, 1, 3).timestamp()) // 60}")
    ]


async def test_history_limits_and_missing_jobs() -> None:
    api = FakeAPI()
    c, rec = controller(api, at(2024, 1, 1, 0, 3))
    done = [child(f"ok-{i}", finished="Complete", start=f"2024-01-01T00:0{i}:00Z") for i in range(5)]
    failed = [child(f"bad-{i}", finished="Failed", start=f"2024-01-01T00:0{i}:00Z") for i in range(3)]
    cj = cronjob(successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1)
    cj["status"] = {"active": [ref("vanished")]}
    after = await run_sync(c, api, cj, done + failed)
    deleted = sorted(name for verb, _, name in api.calls if verb == "delete")
    assert deleted == ["bad-0", "bad-1", "ok-0", "ok-1", "ok-2"]
    assert "MissingJob" in rec.reasons() and "active" not in after["status"]
    assert after["status"]["lastSuccessfulTime"] == "2024-01-01T00:04:00Z"


async def test_unexpected_job_suspend_and_bad_schedule() -> None:
    api = FakeAPI()
    c, rec = controller(api, at(2024, 1, 1, 0, 3))
    await run_sync(c, api, cronjob(suspend=True), [child("stray")])
    assert rec.reasons() == ["UnexpectedJob"] and not [x for x in api.calls if x[0] == "create"]
    api = FakeAPI()
    c, rec = controller(api, at(2024, 1, 1, 0, 7))
    await run_sync(c, api, cronjob("TZ=UTC */5 * * * *"), [])
    assert rec.reasons() == ["UnsupportedSchedule", "SuccessfulCreate"]
    api = FakeAPI()
    c, rec = controller(api, at(2024, 1, 1, 0, 7))
    await run_sync(c, api, cronjob("61 * * * *"), [])
    assert rec.reasons() == ["UnparseableSchedule"]
    assert rec.events[0][2] == 'unparseable schedule: "61 * * * *" : end of range (61) above maximum (59): 61'
