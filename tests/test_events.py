"""k8py.client.events: the correlator's rules on a fake clock, the recorder against `k8py up`, kubectl."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from k8py.client import (
    NORMAL,
    WARNING,
    ClientConfig,
    EventCorrelator,
    EventRecorder,
    RESTClient,
    object_reference,
)
from k8py.client.events import COMBINED_PREFIX
from k8py.client.resources import CONFIGMAPS, EVENTS, NODES, PODS
from tests.conftest import Cluster, free_port

Obj = dict[str, Any]


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-events") as c:
        yield c


async def _events_about(client: RESTClient, namespace: str, name: str) -> list[Obj]:
    found = await client.list(EVENTS, namespace=namespace, field_selector=f"involvedObject.name={name}")
    return sorted(found["items"], key=lambda e: e["metadata"]["name"])


async def _configmap(client: RESTClient, namespace: str, name: str) -> Obj:
    return await client.create(CONFIGMAPS, {"metadata": {"name": name, "namespace": namespace}})


# ---- the correlator, on a fake clock --------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _event(message: str = "m", reason: str = "R", name: str = "ev.1") -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "ns", "uid": "u1"},
        "reason": reason,
        "message": message,
        "type": NORMAL,
        "source": {"component": "c"},
        "reportingComponent": "c",
        "reportingInstance": "",
        "firstTimestamp": "2023-11-14T22:13:20Z",
        "lastTimestamp": "2023-11-14T22:13:20Z",
        "count": 1,
    }


def test_correlator_counts_repeats() -> None:
    correlator = EventCorrelator(clock=FakeClock())
    first = correlator.correlate(_event())
    assert first is not None and first.patch is None
    correlator.update_state(first.event)
    again = _event(name="ev.2")
    again["lastTimestamp"] = "2023-11-14T22:20:00Z"
    second = correlator.correlate(again)
    assert second is not None and second.event["metadata"]["name"] == "ev.1" and second.event["count"] == 2
    assert second.patch == {"count": 2, "lastTimestamp": "2023-11-14T22:20:00Z", "message": "m"}
    third = correlator.correlate(_event(name="ev.3"))
    assert third is not None and third.patch is not None and third.patch["count"] == 3
    other = correlator.correlate(_event(message="different"))
    assert other is not None and other.patch is None


def test_correlator_aggregates_similar_messages() -> None:
    clock = FakeClock()
    correlator = EventCorrelator(clock=clock)
    for i in range(9):
        c = correlator.correlate(_event(message=f"m{i}"))
        assert c is not None and c.patch is None and c.event["message"] == f"m{i}"
    combined = correlator.correlate(_event(message="m9"))
    assert combined is not None and combined.patch is None
    assert combined.event["message"] == COMBINED_PREFIX + "m9" and combined.event["count"] == 1
    assert combined.event["metadata"]["name"].startswith("p.")
    clock.now += 10
    counted = correlator.correlate(_event(message="m10"))
    assert counted is not None and counted.event["metadata"]["name"] == combined.event["metadata"]["name"]
    assert (
        counted.patch is not None
        and counted.patch["count"] == 2
        and counted.patch["message"] == COMBINED_PREFIX + "m10"
    )
    clock.now += 601  # quiet for longer than the interval: a new similarity window
    fresh = correlator.correlate(_event(message="m11"))
    assert fresh is not None and fresh.event["message"] == "m11"


def test_correlator_spam_filter() -> None:
    clock = FakeClock()
    correlator = EventCorrelator(clock=clock)
    allowed = [correlator.correlate(_event(reason=f"R{i}")) is not None for i in range(30)]
    assert allowed == [True] * 25 + [False] * 5
    clock.now += 300  # one token back
    assert correlator.correlate(_event(reason="late1")) is not None
    assert correlator.correlate(_event(reason="late2")) is None
    other_object = _event()
    other_object["involvedObject"] = {**other_object["involvedObject"], "name": "q", "uid": "u2"}
    assert correlator.correlate(other_object) is not None


# ---- the recorder, end to end ---------------------------------------------------------------


async def test_recorder_creates_then_counts(client: RESTClient, namespace: str) -> None:
    cm = await _configmap(client, namespace, "counted")
    recorder = EventRecorder(client, component="test-controller", host="node-1")
    for _ in range(3):
        recorder.event(cm, NORMAL, "Synced", "all good")
    await recorder.stop()
    (event,) = await _events_about(client, namespace, "counted")
    assert event["metadata"]["name"].startswith("counted.") and event["count"] == 3
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "counted",
        "namespace": namespace,
        "uid": cm["metadata"]["uid"],
        "resourceVersion": cm["metadata"]["resourceVersion"],
    }
    assert (event["type"], event["reason"], event["message"]) == ("Normal", "Synced", "all good")
    assert event["source"] == {"component": "test-controller", "host": "node-1"}
    assert (event["reportingComponent"], event["reportingInstance"]) == ("test-controller", "node-1")
    assert event["firstTimestamp"] <= event["lastTimestamp"]


async def test_recorder_combines_similar_events(client: RESTClient, namespace: str) -> None:
    cm = await _configmap(client, namespace, "similar")
    recorder = EventRecorder(client, component="test-controller")
    for i in range(12):
        recorder.eventf(cm, WARNING, "FailedSync", "attempt %d failed", i)
    await recorder.stop()
    events = await _events_about(client, namespace, "similar")
    messages = sorted((e["message"], e["count"]) for e in events)
    assert messages == sorted(
        [(f"attempt {i} failed", 1) for i in range(9)] + [(COMBINED_PREFIX + "attempt 11 failed", 3)]
    )


async def test_recorder_spam_filter(client: RESTClient, namespace: str) -> None:
    cm = await _configmap(client, namespace, "spammed")
    recorder = EventRecorder(client, component="test-controller")
    for i in range(30):
        recorder.event(cm, NORMAL, f"Reason{i}", "distinct reasons: no counting, no combining")
    await recorder.stop()
    assert len(await _events_about(client, namespace, "spammed")) == 25


async def test_recorder_cluster_scoped_object_and_reference(client: RESTClient, namespace: str) -> None:
    node = await client.create(NODES, {"metadata": {"name": "events-test-node"}})
    pod = await client.create(
        PODS,
        {
            "metadata": {"name": "ref", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    recorder = EventRecorder(client, component="kubelet", host="events-test-node")
    recorder.event(node, NORMAL, "NodeReady", "node is ready")
    recorder.event(object_reference(pod, field_path="spec.containers{c}"), NORMAL, "Pulled", "image pulled")
    await recorder.stop()
    (node_event,) = await _events_about(client, "default", "events-test-node")
    assert (
        node_event["metadata"]["namespace"] == "default" and "namespace" not in node_event["involvedObject"]
    )
    # (the scheduler of `k8py up` may add its own FailedScheduling about the pod)
    (pod_event,) = [e for e in await _events_about(client, namespace, "ref") if e["reason"] == "Pulled"]
    assert pod_event["involvedObject"]["fieldPath"] == "spec.containers{c}"
    await client.delete(NODES, "events-test-node")


async def test_kubectl_get_and_describe_show_events(
    cluster: Cluster, client: RESTClient, namespace: str
) -> None:
    pod = await client.create(
        PODS,
        {
            "metadata": {"name": "described", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    recorder = EventRecorder(client, component="default-scheduler")
    recorder.event(pod, WARNING, "FailedScheduling", "0/0 nodes are available")
    recorder.event(pod, WARNING, "FailedScheduling", "0/0 nodes are available")
    recorder.event(pod, NORMAL, "Nominated", "looking for a node")
    await recorder.stop()

    listed = cluster.kubectl("get", "events", "-n", namespace).stdout
    assert "FailedScheduling" in listed and "pod/described" in listed and "0/0 nodes are available" in listed
    described = cluster.kubectl("describe", "pod", "described", "-n", namespace).stdout
    section = described[described.index("Events:") :]
    failed = next(line for line in section.splitlines() if "FailedScheduling" in line)
    assert failed.split()[0] == "Warning" and "(x2 over" in failed and "default-scheduler" in failed
    assert "0/0 nodes are available" in failed
    assert "Nominated" in section and "looking for a node" in section


async def test_recorder_never_raises(
    client: RESTClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    cm = await _configmap(client, namespace, "misused")
    recorder = EventRecorder(client, component="test-controller", queue_size=2)
    with caplog.at_level(logging.ERROR, logger="k8py.client.events"):
        recorder.event(cm, "Fatal", "Bad", "not a type")
        recorder.event({"metadata": {"name": "no-kind"}}, NORMAL, "Bad", "no kind")
        recorder.eventf(cm, NORMAL, "Bad", "%d items", "not a number")
        for i in range(4):  # the worker cannot run before we yield: the queue holds 2
            recorder.event(cm, NORMAL, f"Queued{i}", "x")
    assert "neither Normal nor Warning" in caplog.text and "without apiVersion, kind and name" in caplog.text
    assert "does not format" in caplog.text and caplog.text.count("events already queued") == 2
    await recorder.stop()
    recorder.event(cm, NORMAL, "Late", "after stop")  # logged and dropped
    assert [e["reason"] for e in await _events_about(client, namespace, "misused")] == ["Queued0", "Queued1"]


async def test_recorder_retries_when_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}}
    async with RESTClient(ClientConfig(server=f"http://127.0.0.1:{free_port()}")) as unreachable:
        recorder = EventRecorder(unreachable, component="c", max_tries=3, retry_interval=0.01)
        with caplog.at_level(logging.WARNING, logger="k8py.client.events"):
            recorder.event(obj, NORMAL, "Lost", "nobody listens")
            for _ in range(100):
                if "tried 3 times" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            await recorder.stop(timeout=5)
        assert caplog.text.count("will retry") == 3 and "tried 3 times" in caplog.text

        # Stopping cuts a long retry delay short: one last try, then the event is given up.
        patient = EventRecorder(unreachable, component="c", retry_interval=60)
        patient.event(obj, NORMAL, "Lost", "nobody listens")
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await patient.stop(timeout=5)
        assert loop.time() - started < 2
