"""The Job, CronJob, TTL-after-finished and PodGC controllers against a real API server, with
hollow nodes ending pods as their HOLLOW_EXIT_CODE env says, and kubectl where users would use it.
Pure pieces (intervals, pod failure policy matching, backoff) are unit-tested at the bottom.

Timing: the Job controller keeps upstream's 10 s pod-failure backoff (the retry test waits it out
once); the CronJob firing test makes a schedule time already due by moving the CronJob's
lastScheduleTime back (the controller's catch-up of missed times), so it needs no wait for a
minute boundary; PodGC runs with knobs (1 s period, 2 s quarantine, threshold 12).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from k8py.controllers import jobutil
from k8py.controllers.jobutil import (
    BackoffStore,
    intervals_has,
    intervals_str,
    match_pod_failure_policy,
    parse_indexes,
    remaining_backoff,
    with_ordered_indexes,
)
from tests.conftest import wait_for
from tests.controllers.conftest import ControllerCluster, start_controller_manager

CONTROLLERS = "job,cronjob,ttl-after-finished,podgc"
HOLLOW_NODES = 2
GC_THRESHOLD = 12
CONTROLLER_MANAGER_ARGS = (
    "--terminated-pod-gc-threshold",
    str(GC_THRESHOLD),
    "--controller-option",
    "podgc-check-period=1",
    "--controller-option",
    "podgc-quarantine=2",
)


@pytest.fixture(scope="module")
def jc(cm_cluster: ControllerCluster) -> Iterator[ControllerCluster]:
    """The module's cluster (with the PodGC knobs); stops the controller manager a test restarted."""
    try:
        yield cm_cluster
    finally:
        cm_cluster.cm.stop()


@pytest.fixture
def ns(jc: ControllerCluster, request: pytest.FixtureRequest) -> str:
    name = "jobs-" + request.node.name.lower().replace("_", "-").removeprefix("test-")[:40].strip("-")
    jc.kubectl("create", "namespace", name)
    # pods need the namespace's default ServiceAccount (made by the API server or its controller)
    if not _exists(jc, "serviceaccount", "default", name, wait=3):
        jc.kubectl("create", "serviceaccount", "default", "-n", name, check=False)
    return name


# -- helpers -----------------------------------------------------------------------------------


def _exists(jc: ControllerCluster, kind: str, name: str, ns: str, wait: float = 0) -> bool:
    try:
        wait_for(lambda: jc.kubectl("get", kind, name, "-n", ns, check=False).returncode == 0, timeout=wait)
        return True
    except TimeoutError:
        return False


def get(jc: ControllerCluster, kind: str, name: str, ns: str) -> Any:
    return json.loads(jc.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)


def get_or_none(jc: ControllerCluster, kind: str, name: str, ns: str) -> Any:
    res = jc.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def items(jc: ControllerCluster, kind: str, ns: str, *selector: str) -> list[Any]:
    args = ["get", kind, "-n", ns, "-o", "json", *(["-l", selector[0]] if selector else [])]
    return json.loads(jc.kubectl(*args).stdout)["items"]


def create(jc: ControllerCluster, obj: dict[str, Any], ns: str) -> None:
    jc.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj))


def container(exit_code: int | None = None, run_seconds: float = 0) -> dict[str, Any]:
    env = []
    if exit_code is not None:
        env = [
            {"name": "HOLLOW_EXIT_CODE", "value": str(exit_code)},
            {"name": "HOLLOW_RUN_SECONDS", "value": str(run_seconds)},
        ]
    return {"name": "work", "image": "busybox", "env": env}


def job(name: str, *, exit_code: int | None = 0, run_seconds: float = 0, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [container(exit_code, run_seconds)]}
            },
            **spec,
        },
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), None)


def events(jc: ControllerCluster, ns: str, name: str) -> list[tuple[str, str, str]]:
    evs = items(jc, "events", ns)
    return [
        (e["type"], e["reason"], e.get("message", "")) for e in evs if e["involvedObject"]["name"] == name
    ]


def wait_condition(
    jc: ControllerCluster, kind: str, name: str, ns: str, type_: str, timeout: float
) -> dict[str, Any]:
    def done() -> Any:
        obj = get(jc, kind, name, ns)
        c = condition(obj, type_)
        return obj if c is not None and c["status"] == "True" else None

    return wait_for(done, timeout=timeout, interval=0.2, what=f"{kind}/{name} {type_}")


# -- Jobs ---------------------------------------------------------------------------------------


def test_job_completions_and_parallelism(jc: ControllerCluster, ns: str) -> None:
    create(jc, job("count", completions=3, parallelism=2, run_seconds=0.5), ns)
    jc.kubectl("wait", "--for=condition=complete", "job/count", "-n", ns, "--timeout=40s", timeout=50)
    j = get(jc, "job", "count", ns)
    st = j["status"]
    assert st["succeeded"] == 3 and "failed" not in st and "active" not in st
    assert st["ready"] == 0 and st["terminating"] == 0
    assert st["startTime"] <= st["completionTime"]
    assert not st.get("uncountedTerminatedPods", {}).get("succeeded")
    complete = condition(j, "Complete")
    assert complete["reason"] == "CompletionsReached"
    assert condition(j, "SuccessCriteriaMet")["status"] == "True"  # 1.32's interim condition
    pods = items(jc, "pods", ns, "batch.kubernetes.io/job-name=count")
    assert len(pods) == 3
    for p in pods:
        assert p["status"]["phase"] == "Succeeded"
        assert p["metadata"]["name"].startswith("count-")
        assert p["metadata"]["ownerReferences"][0]["uid"] == j["metadata"]["uid"]
        assert "batch.kubernetes.io/job-tracking" not in (p["metadata"].get("finalizers") or ())
    # parallelism 2: the third pod was only created once one of the first two had finished
    starts = sorted(p["metadata"]["creationTimestamp"] for p in pods)
    ends = sorted(p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] for p in pods)
    assert starts[2] >= ends[0]
    wait_for(
        lambda: ("Normal", "Completed", "Job completed") in events(jc, ns, "count"), what="Completed event"
    )
    assert sum(1 for e in events(jc, ns, "count") if e[1] == "SuccessfulCreate") == 3


def test_kubectl_create_job_and_delete(jc: ControllerCluster, ns: str) -> None:
    jc.kubectl("create", "job", "hello", "--image=busybox", "-n", ns, "--", "sleep", "3600")

    def running() -> Any:
        st = get(jc, "job", "hello", ns).get("status") or {}
        return st if st.get("active") == 1 and st.get("ready") == 1 and st.get("startTime") else None

    wait_for(running, timeout=20, interval=0.2, what="job running")
    pod = items(jc, "pods", ns, "job-name=hello")[0]
    assert pod["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert (
        pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"]
        == get(jc, "job", "hello", ns)["metadata"]["uid"]
    )
    # the Job goes (no garbage collector here to take the pod): the pod loses its tracking finalizer
    jc.kubectl("delete", "job", "hello", "-n", ns)
    wait_for(
        lambda: not get(jc, "pod", pod["metadata"]["name"], ns)["metadata"].get("finalizers"),
        timeout=15,
        what="tracking finalizer removed",
    )


def test_job_retries_until_backoff_limit(jc: ControllerCluster, ns: str) -> None:
    create(jc, job("flaky", exit_code=1, backoffLimit=1), ns)
    j = wait_condition(jc, "job", "flaky", ns, "Failed", timeout=45)
    failed = condition(j, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert condition(j, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert j["status"]["failed"] == 2 and "completionTime" not in j["status"]
    pods = sorted(items(jc, "pods", ns, "job-name=flaky"), key=lambda p: p["metadata"]["creationTimestamp"])
    assert [p["status"]["phase"] for p in pods] == ["Failed", "Failed"]
    # the replacement waited out the 10 s backoff after the first failure
    first_end = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    gap = _ts(pods[1]["metadata"]["creationTimestamp"]) - _ts(first_end)
    assert gap >= 9, gap
    wait_for(
        lambda: (
            ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            in events(jc, ns, "flaky")
        ),
        what="BackoffLimitExceeded event",
    )


def test_indexed_job(jc: ControllerCluster, ns: str) -> None:
    create(jc, job("idx", completions=3, parallelism=3, completionMode="Indexed"), ns)
    jc.kubectl("wait", "--for=condition=complete", "job/idx", "-n", ns, "--timeout=30s", timeout=40)
    j = get(jc, "job", "idx", ns)
    assert j["status"]["completedIndexes"] == "0-2"
    assert j["status"]["succeeded"] == 3
    pods = items(jc, "pods", ns, "job-name=idx")
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods}
    assert sorted(by_index) == ["0", "1", "2"]
    for ix, p in by_index.items():
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == ix
        assert p["metadata"]["name"].startswith(f"idx-{ix}-")
        assert p["spec"]["hostname"] == f"idx-{ix}"
        env = {e["name"]: e for e in p["spec"]["containers"][0]["env"]}
        ref = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert ref == "metadata.labels['batch.kubernetes.io/job-completion-index']"


def test_backoff_limit_per_index(jc: ControllerCluster, ns: str) -> None:
    create(
        jc,
        job(
            "per-index",
            exit_code=1,
            completions=2,
            parallelism=2,
            completionMode="Indexed",
            backoffLimitPerIndex=0,
        ),
        ns,
    )
    j = wait_condition(jc, "job", "per-index", ns, "Failed", timeout=30)
    assert condition(j, "Failed")["reason"] == "FailedIndexes"
    assert condition(j, "Failed")["message"] == "Job has failed indexes"
    assert j["status"]["failedIndexes"] == "0,1" and j["status"]["failed"] == 2
    for p in items(jc, "pods", ns, "job-name=per-index"):
        assert p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "0"


def test_job_survives_controller_restart(jc: ControllerCluster, ns: str) -> None:
    create(jc, job("steady", completions=4, parallelism=2, run_seconds=1.5), ns)
    wait_for(lambda: len(items(jc, "pods", ns, "job-name=steady")) == 2, timeout=15, what="two pods")
    jc.cm.stop(signal.SIGKILL)
    jc.cm = start_controller_manager(jc.cluster, CONTROLLERS, "--no-leader-elect", *CONTROLLER_MANAGER_ARGS)
    jc.kubectl("wait", "--for=condition=complete", "job/steady", "-n", ns, "--timeout=40s", timeout=50)
    j = get(jc, "job", "steady", ns)
    assert j["status"]["succeeded"] == 4
    assert len(items(jc, "pods", ns, "job-name=steady")) == 4  # none created twice


def test_pod_failure_policy_fail_job(jc: ControllerCluster, ns: str) -> None:
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "work", "operator": "In", "values": [42]}},
        ]
    }
    create(jc, job("fatal", exit_code=42, backoffLimit=6, podFailurePolicy=policy), ns)
    j = wait_condition(jc, "job", "fatal", ns, "Failed", timeout=30)
    failed = condition(j, "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    pod = items(jc, "pods", ns, "job-name=fatal")[0]
    assert failed["message"] == (
        f"Container work for pod {ns}/{pod['metadata']['name']} failed with exit code 42 matching FailJob rule at index 1"
    )
    assert j["status"]["failed"] == 1
    assert len(items(jc, "pods", ns, "job-name=fatal")) == 1  # no retry despite backoffLimit 6


def test_active_deadline(jc: ControllerCluster, ns: str) -> None:
    create(jc, job("slow", exit_code=None, activeDeadlineSeconds=2, parallelism=2, completions=2), ns)
    j = wait_condition(jc, "job", "slow", ns, "Failed", timeout=30)
    failed = condition(j, "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert failed["message"] == "Job was active longer than specified deadline"
    assert _ts(failed["lastTransitionTime"]) - _ts(j["status"]["startTime"]) >= 2
    assert j["status"]["failed"] == 2 and "active" not in j["status"]
    # the running pods were deleted (and, their finalizers removed, are gone)
    wait_for(lambda: not items(jc, "pods", ns, "job-name=slow"), timeout=15, what="pods deleted")


def test_suspend_and_resume(jc: ControllerCluster, ns: str) -> None:
    create(jc, job("paused", suspend=True, run_seconds=0), ns)
    j = wait_condition(jc, "job", "paused", ns, "Suspended", timeout=15)
    assert condition(j, "Suspended")["reason"] == "JobSuspended"
    assert not items(jc, "pods", ns, "job-name=paused") and "startTime" not in j["status"]
    jc.kubectl("patch", "job", "paused", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    jc.kubectl("wait", "--for=condition=complete", "job/paused", "-n", ns, "--timeout=30s", timeout=40)
    j = get(jc, "job", "paused", ns)
    assert (
        condition(j, "Suspended")["status"] == "False" and condition(j, "Suspended")["reason"] == "JobResumed"
    )


# -- CronJobs ------------------------------------------------------------------------------------


def _cronjob(name: str, schedule: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "template": {"spec": {"restartPolicy": "Never", "containers": [container(0, 0)]}},
                },
            },
            **spec,
        },
    }


def test_cronjob_fires(jc: ControllerCluster, ns: str) -> None:
    create(jc, _cronjob("tick", "* * * * *", timeZone="Europe/Paris"), ns)
    # three minutes ago: the current minute is now due, as after a controller outage
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    back = (now - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    jc.kubectl(
        "patch",
        "cronjob",
        "tick",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"lastScheduleTime": back}}),
    )

    def fired() -> Any:
        jobs = [j for j in items(jc, "jobs", ns) if j["metadata"]["name"].startswith("tick-")]
        return jobs or None

    jobs = wait_for(fired, timeout=20, interval=0.2, what="a Job of the CronJob")
    j = jobs[0]
    minutes = int(j["metadata"]["name"].removeprefix("tick-"))
    scheduled = dt.datetime.fromtimestamp(minutes * 60, dt.UTC)
    assert scheduled >= now
    stamp = j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert dt.datetime.fromisoformat(stamp) == scheduled and not stamp.endswith("Z")  # in Europe/Paris
    assert j["metadata"]["labels"]["app"] == "tick"
    ref = j["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "CronJob" and ref["name"] == "tick" and ref["controller"] is True
    cj = get(jc, "cronjob", "tick", ns)
    assert cj["status"]["lastScheduleTime"] >= scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")
    wait_for(
        lambda: (
            ("Normal", "SuccessfulCreate", f"Created job {j['metadata']['name']}") in events(jc, ns, "tick")
        ),
        what="SuccessfulCreate event",
    )
    # the Job completes: the CronJob notices, forgets it as active and records the success
    jc.kubectl(
        "wait",
        "--for=condition=complete",
        f"job/{j['metadata']['name']}",
        "-n",
        ns,
        "--timeout=30s",
        timeout=40,
    )

    def recorded() -> Any:
        st = get(jc, "cronjob", "tick", ns)["status"]
        return st.get("lastSuccessfulTime") and not any(
            a["name"] == j["metadata"]["name"] for a in st.get("active") or ()
        )

    wait_for(recorded, timeout=20, interval=0.2, what="lastSuccessfulTime")
    # a Job by hand from the CronJob's template (client side, as kubectl does it)
    jc.kubectl("create", "job", "by-hand", "--from=cronjob/tick", "-n", ns)
    manual = get(jc, "job", "by-hand", ns)
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    jc.kubectl("wait", "--for=condition=complete", "job/by-hand", "-n", ns, "--timeout=30s", timeout=40)
    jc.kubectl("delete", "cronjob", "tick", "-n", ns)


# -- TTL after finished -------------------------------------------------------------------------


def test_ttl_after_finished(jc: ControllerCluster, ns: str) -> None:
    create(jc, job("short-lived", ttlSecondsAfterFinished=1), ns)
    jc.kubectl("wait", "--for=condition=complete", "job/short-lived", "-n", ns, "--timeout=30s", timeout=40)

    def deleted() -> bool:
        j = get_or_none(jc, "job", "short-lived", ns)
        # foreground deletion: gone once the garbage collector (not running here) took the pods
        return j is None or (
            bool(j["metadata"].get("deletionTimestamp"))
            and "foregroundDeletion" in j["metadata"]["finalizers"]
        )

    wait_for(deleted, timeout=15, interval=0.2, what="the Job deleted")


# -- PodGC ----------------------------------------------------------------------------------------


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container(0, 0)], **spec},
    }


def test_podgc_orphaned_and_unscheduled_terminating(jc: ControllerCluster, ns: str) -> None:
    hold = ["k8py.test/hold"]  # keeps the pods around after PodGC's delete, to look at them
    orphan = _pod("orphan", nodeName=f"gone-{uuid.uuid4().hex[:6]}")
    orphan["metadata"]["finalizers"] = hold
    create(jc, orphan, ns)
    lost = _pod("lost", schedulerName="no-such-scheduler")
    lost["metadata"]["finalizers"] = hold
    create(jc, lost, ns)
    jc.kubectl("delete", "pod", "lost", "-n", ns, "--wait=false")
    try:

        def collected(name: str) -> Any:
            p = get(jc, "pod", name, ns)
            return p if p["metadata"].get("deletionTimestamp") and p["status"]["phase"] == "Failed" else None

        p = wait_for(lambda: collected("orphan"), timeout=20, interval=0.2, what="orphan collected")
        assert p["metadata"]["deletionGracePeriodSeconds"] == 0
        target = condition(p, "DisruptionTarget")
        assert target["status"] == "True" and target["reason"] == "DeletionByPodGC"
        assert target["message"] == "PodGC: node no longer exists"
        p = wait_for(lambda: collected("lost"), timeout=20, interval=0.2, what="unscheduled pod collected")
        assert condition(p, "DisruptionTarget") is None
    finally:
        for name in ("orphan", "lost"):
            jc.kubectl(
                "patch",
                "pod",
                name,
                "-n",
                ns,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
    wait_for(lambda: not items(jc, "pods", ns), timeout=10, what="pods gone")


def test_podgc_terminated_threshold(jc: ControllerCluster, ns: str) -> None:
    node = f"{jc.node_prefix}0"
    pods = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [_pod(f"done-{i:02}", nodeName=node) for i in range(14)],
    }
    create(jc, pods, ns)

    def terminated() -> list[Any]:
        everything = json.loads(jc.kubectl("get", "pods", "--all-namespaces", "-o", "json").stdout)["items"]
        return [p for p in everything if p["status"].get("phase") in ("Succeeded", "Failed")]

    # the 14 finish; PodGC keeps the newest 12 terminated pods of the cluster (all of them ours)
    def collected() -> Any:
        names = sorted(p["metadata"]["name"] for p in items(jc, "pods", ns))
        return names == [f"done-{i:02}" for i in range(2, 14)] and len(terminated()) == GC_THRESHOLD

    wait_for(collected, timeout=30, interval=0.3, what="oldest terminated pods collected")


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# -- unit tests of the pure pieces ------------------------------------------------------------


def test_completed_indexes_intervals() -> None:
    iv = with_ordered_indexes([], [0, 1, 2, 4, 6, 7, 9])
    assert intervals_str(iv) == "0-2,4,6,7,9"
    assert parse_indexes("0-2,4,6,7,9", 10) == [(0, 2), (4, 4), (6, 7), (9, 9)]
    assert parse_indexes("0-2,4,6,7,9", 7) == [(0, 2), (4, 4), (6, 6)]
    assert intervals_str(with_ordered_indexes(parse_indexes("0-2,6", 10), [3, 5])) == "0-3,5,6"
    assert intervals_has(iv, 7) and not intervals_has(iv, 5) and not intervals_has(iv, 10)


def _failed_pod(exit_code: int, conditions: list[Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "status": {
            "phase": "Failed",
            "conditions": conditions or [],
            "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": exit_code}}}],
        },
    }


def test_pod_failure_policy_matching() -> None:
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "Count", "onExitCodes": {"containerName": "other", "operator": "In", "values": [4]}},
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1, 2, 3]}},
        ]
    }
    assert match_pod_failure_policy(policy, _failed_pod(1)) == (None, True, None)
    assert match_pod_failure_policy(policy, _failed_pod(3)) == (None, True, "FailIndex")
    msg, count, action = match_pod_failure_policy(policy, _failed_pod(4))  # "other" is not the container
    assert (count, action) == (True, "FailJob")
    assert msg == "Container main for pod ns/p failed with exit code 4 matching FailJob rule at index 3"
    disrupted = _failed_pod(4, [{"type": "DisruptionTarget", "status": "True"}])
    assert match_pod_failure_policy(policy, disrupted) == (None, False, "Ignore")
    assert match_pod_failure_policy(None, _failed_pod(9)) == (None, True, None)


def test_pod_failure_backoff() -> None:
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert remaining_backoff(t0, 0, None) == 0
    assert remaining_backoff(t0 + dt.timedelta(seconds=4), 1, t0) == 6
    assert remaining_backoff(t0, 3, t0) == 40
    assert remaining_backoff(t0, 30, t0) == jobutil.MAX_POD_FAILURE_BACKOFF

    def pod(phase: str, finished: dt.datetime) -> dict[str, Any]:
        term = {
            "exitCode": 0 if phase == "Succeeded" else 1,
            "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return {
            "metadata": {},
            "status": {"phase": phase, "containerStatuses": [{"state": {"terminated": term}}]},
        }

    store = BackoffStore()
    rec = store.new_record("ns/j", [], [pod("Failed", t0), pod("Failed", t0 + dt.timedelta(seconds=5))])
    assert rec.failures_after_last_success == 2 and rec.last_failure_time == t0 + dt.timedelta(seconds=5)
    store.update(rec)
    # a success resets the count; failures after it count again
    rec = store.new_record(
        "ns/j",
        [pod("Succeeded", t0 + dt.timedelta(seconds=10))],
        [pod("Failed", t0 + dt.timedelta(seconds=12))],
    )
    assert rec.failures_after_last_success == 1 and rec.last_failure_time == t0 + dt.timedelta(seconds=12)
