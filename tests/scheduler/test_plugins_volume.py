"""The volume plugins: VolumeRestrictions, NodeVolumeLimits, VolumeBinding, VolumeZone.

Unit tests build the plugins through a real ``Framework`` (so they are held to the extension
point protocols) over plain ``Indexer``s of PVCs, PVs, StorageClasses and CSINodes. Two
integration tests run VolumeBinding's Reserve and PreBind against a real API server, with real
informers: there is no PV controller yet, so the tests check what PreBind writes, that it times
out cleanly when nothing binds, and (playing the provisioner and PV controller themselves)
that it returns once the claim is bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from k8py.client import RESTClient
from k8py.client.cache import Indexer, meta_namespace_index_func
from k8py.client.errors import Conflict
from k8py.client.informer import SharedIndexInformer
from k8py.client.resources import PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, STORAGE_CLASSES
from k8py.scheduler.framework.handle import SchedulerContext
from k8py.scheduler.framework.interface import SKIP as SKIP_STATUS
from k8py.scheduler.framework.interface import Code, CycleState, QueueingHint, Status
from k8py.scheduler.framework.runtime import Framework
from k8py.scheduler.framework.types import NodeInfo, PodInfo
from k8py.scheduler.plugins.defaultbinder import DefaultBinder
from k8py.scheduler.plugins.queuesort import PrioritySort
from k8py.scheduler.plugins.volumebinding import (
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_SELECTED_NODE,
    ERR_REASON_BIND_CONFLICT,
    ERR_REASON_NODE_CONFLICT,
    ERR_REASON_PV_NOT_EXIST,
    STATE_KEY,
    VolumeBinding,
    check_volume_node_affinity,
    match_topology_selector_terms,
)
from k8py.scheduler.plugins.volumelimits import (
    ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED,
    NodeVolumeLimits,
    csi_attach_limit_key,
)
from k8py.scheduler.plugins.volumerestrictions import (
    ERR_REASON_DISK_CONFLICT,
    ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT,
    VolumeRestrictions,
)
from k8py.scheduler.plugins.volumezone import ERR_REASON_CONFLICT, VolumeZone, label_zones_to_set
from k8py.scheduler.snapshot import Snapshot
from tests.conftest import Cluster

Obj = dict[str, Any]
ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"

_seq = itertools.count(1)


# -- object builders -----------------------------------------------------------------------------


def make_node(
    name: str, labels: dict[str, str] | None = None, allocatable: dict[str, str] | None = None
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", **(allocatable or {})}},
    }


def claim_vol(claim: str, name: str | None = None) -> Obj:
    return {"name": name or f"v-{claim}", "persistentVolumeClaim": {"claimName": claim}}


def make_pod(name: str, volumes: Iterable[Obj] = (), *, node: str = "", namespace: str = "default") -> Obj:
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}-{next(_seq)}"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "volumes": list(volumes)},
    }
    if node:
        pod["spec"]["nodeName"] = node
    return pod


def make_pvc(
    name: str,
    *,
    namespace: str = "default",
    sc: str | None = None,
    volume: str = "",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    storage: str = "1Gi",
    bound: bool = False,
    annotations: dict[str, str] | None = None,
    selector: Obj | None = None,
    owner: Obj | None = None,
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-pvc-{name}",
        "resourceVersion": "10",
        "annotations": dict(annotations or {}),
    }
    spec: Obj = {"accessModes": list(modes), "resources": {"requests": {"storage": storage}}}
    if sc is not None:
        spec["storageClassName"] = sc
    if volume:
        spec["volumeName"] = volume
    if selector is not None:
        spec["selector"] = selector
    if bound:
        meta["annotations"][ANN_BIND_COMPLETED] = "yes"
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Bound" if bound else "Pending"},
    }


def make_pv(
    name: str,
    *,
    sc: str = "",
    storage: str = "1Gi",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    claim: Obj | None = None,
    phase: str = "Available",
    labels: dict[str, str] | None = None,
    hostnames: tuple[str, ...] | None = None,
    csi: tuple[str, str] | None = None,
) -> Obj:
    spec: Obj = {"capacity": {"storage": storage}, "accessModes": list(modes), "storageClassName": sc}
    if csi is not None:
        spec["csi"] = {"driver": csi[0], "volumeHandle": csi[1]}
    else:
        spec["hostPath"] = {"path": f"/tmp/{name}"}
    if claim is not None:
        spec["claimRef"] = claim
    if hostnames is not None:
        spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": list(hostnames)}
                        ]
                    }
                ]
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": labels or {}, "resourceVersion": "20"},
        "spec": spec,
        "status": {"phase": phase},
    }


def make_sc(
    name: str,
    *,
    mode: str = "WaitForFirstConsumer",
    provisioner: str = "kubernetes.io/no-provisioner",
    allowed_topologies: list[Obj] | None = None,
) -> Obj:
    sc: Obj = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner,
        "volumeBindingMode": mode,
    }
    if allowed_topologies is not None:
        sc["allowedTopologies"] = allowed_topologies
    return sc


def make_csinode(name: str, drivers: dict[str, int | None], annotations: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "drivers": [
                {"name": d, "nodeID": name, **({"allocatable": {"count": c}} if c is not None else {})}
                for d, c in drivers.items()
            ]
        },
    }


def claim_ref(pvc: Obj) -> Obj:
    m = pvc["metadata"]
    return {"kind": "PersistentVolumeClaim", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"]}


# -- the harness ---------------------------------------------------------------------------------

REGISTRY = {
    cls.name: cls
    for cls in (PrioritySort, DefaultBinder, VolumeRestrictions, NodeVolumeLimits, VolumeBinding, VolumeZone)
}


class Env:
    """A framework with the volume plugins over indexers and a snapshot of nodes and pods."""

    def __init__(
        self,
        *,
        nodes: Iterable[Obj] = (),
        pods: Iterable[Obj] = (),
        pvcs: Iterable[Obj] = (),
        pvs: Iterable[Obj] = (),
        classes: Iterable[Obj] = (),
        csinodes: Iterable[Obj] = (),
        client: Any = None,
        args: dict[str, Any] | None = None,
    ) -> None:
        nodes, pods = list(nodes), list(pods)
        self.listers = {
            name: Indexer({"namespace": meta_namespace_index_func})
            for name in (
                "persistentvolumeclaims",
                "persistentvolumes",
                "storageclasses",
                "csinodes",
                "csidrivers",
                "csistoragecapacities",
                "pods",
                "nodes",
            )
        }
        for name, objs in (
            ("nodes", nodes),
            ("pods", pods),
            ("persistentvolumeclaims", pvcs),
            ("persistentvolumes", pvs),
            ("storageclasses", classes),
            ("csinodes", csinodes),
        ):
            for obj in objs:
                self.listers[name].add(obj)
        self.context = SchedulerContext(
            client=client, listers=self.listers, snapshot=Snapshot.from_objects(pods, nodes)
        )
        profile = {
            "plugins": {"multiPoint": {"enabled": [{"name": n} for n in REGISTRY]}},
            "pluginConfig": [{"name": "VolumeBinding", "args": args or {"bindTimeoutSeconds": 600}}],
        }
        self.fw = Framework(profile, REGISTRY, self.context)

    def plugin(self, name: str) -> Any:
        return self.fw.plugin(name)

    def node(self, name: str) -> NodeInfo:
        ni = self.context.snapshot.get(name)
        assert ni is not None
        return ni

    def add(self, resource: str, obj: Obj) -> None:
        self.listers[resource].add(obj)

    def pre_filter(
        self, name: str, pod: Obj, state: CycleState | None = None
    ) -> tuple[CycleState, Status | None]:
        state = state if state is not None else CycleState()
        result, status = self.plugin(name).pre_filter(state, PodInfo(pod), self.context.snapshot.node_infos())
        assert result is None
        return state, status

    def filter(self, name: str, pod: Obj, node: str, state: CycleState | None = None) -> Status | None:
        if state is None:
            state, status = self.pre_filter(name, pod)
            assert status is None, status
        return self.plugin(name).filter(state, PodInfo(pod), self.node(node))


def assert_status(status: Status | None, code: Code, *reasons: str) -> None:
    assert status is not None, "expected a status"
    assert status.code == code, status
    if reasons:
        assert status.reasons == reasons, status


# -- all four: the cheap path ------------------------------------------------------------------


def test_pod_without_volumes_skips_every_volume_plugin() -> None:
    env = Env(nodes=[make_node("n1")], pvcs=[make_pvc("data", sc="", volume="pv1", bound=True)])
    state = CycleState()
    plain = make_pod("plain", [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "tmp", "emptyDir": {}}])
    result, status = env.fw.run_pre_filter_plugins(state, PodInfo(plain), env.context.snapshot.node_infos())
    assert result is None and status is None
    assert state.skip_filter_plugins == {
        "VolumeRestrictions",
        "NodeVolumeLimits",
        "VolumeBinding",
        "VolumeZone",
    }
    assert [name for name, _ in env.fw.active_filters(state)] == []
    # VolumeBinding still takes part in Reserve and PreBind, where it has nothing to do
    assert env.fw.run_reserve_plugins_reserve(state, PodInfo(plain), "n1") is None
    assert state[STATE_KEY].all_bound


def test_events_to_register() -> None:
    env = Env()
    events = env.fw.enqueue_extensions()
    resources = {name: {e.event.resource for e in evs} for name, evs in events.items()}
    assert resources["VolumeRestrictions"] == {"Pod", "Node", "PersistentVolumeClaim"}
    assert resources["NodeVolumeLimits"] == {"CSINode", "Pod", "PersistentVolumeClaim"}
    assert resources["VolumeZone"] == {"StorageClass", "Node", "PersistentVolumeClaim", "PersistentVolume"}
    assert resources["VolumeBinding"] == {
        "StorageClass",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "Node",
        "CSINode",
        "CSIDriver",
        "CSIStorageCapacity",
    }


# -- VolumeRestrictions ----------------------------------------------------------------------------


def gce(pd: str, ro: bool = False) -> Obj:
    return {"name": f"gce-{pd}", "gcePersistentDisk": {"pdName": pd, "readOnly": ro}}


def ebs(vid: str, ro: bool = False) -> Obj:
    return {"name": f"ebs-{vid}", "awsElasticBlockStore": {"volumeID": vid, "readOnly": ro}}


def iscsi(iqn: str, ro: bool = False) -> Obj:
    return {
        "name": f"iscsi-{iqn}",
        "iscsi": {"targetPortal": "1.2.3.4:3260", "iqn": iqn, "lun": 0, "readOnly": ro},
    }


def rbd(monitors: list[str], image: str, pool: str = "rbd", ro: bool = False) -> Obj:
    return {
        "name": f"rbd-{image}",
        "rbd": {"monitors": monitors, "image": image, "pool": pool, "readOnly": ro},
    }


@pytest.mark.parametrize(
    ("existing", "new", "conflict"),
    [
        (gce("a"), gce("a"), True),
        (gce("a", ro=True), gce("a", ro=True), False),
        (gce("a", ro=True), gce("a"), True),
        (gce("a"), gce("b"), False),
        (ebs("vol-1", ro=True), ebs("vol-1", ro=True), True),
        (ebs("vol-1"), ebs("vol-2"), False),
        (iscsi("iqn.a"), iscsi("iqn.a"), True),
        (iscsi("iqn.a", ro=True), iscsi("iqn.a", ro=True), False),
        (iscsi("iqn.a"), iscsi("iqn.b"), False),
        (rbd(["m1", "m2"], "img"), rbd(["m2", "m3"], "img"), True),
        (rbd(["m1"], "img"), rbd(["m2"], "img"), False),
        (rbd(["m1"], "img", pool="p1"), rbd(["m1"], "img", pool="p2"), False),
        (rbd(["m1"], "img", ro=True), rbd(["m1"], "img", ro=True), False),
        (gce("a"), ebs("a"), False),
    ],
)
def test_volume_restrictions_inline_disk_conflicts(existing: Obj, new: Obj, conflict: bool) -> None:
    env = Env(nodes=[make_node("n1"), make_node("n2")], pods=[make_pod("old", [existing], node="n1")])
    pod = make_pod("new", [new])
    state, status = env.pre_filter("VolumeRestrictions", pod)
    assert status is None
    result = env.filter("VolumeRestrictions", pod, "n1", state)
    if conflict:
        assert_status(result, Code.UNSCHEDULABLE, ERR_REASON_DISK_CONFLICT)
    else:
        assert result is None
    assert env.filter("VolumeRestrictions", pod, "n2", state) is None


def test_volume_restrictions_prefilter_skips_and_missing_claim() -> None:
    env = Env(nodes=[make_node("n1")], pvcs=[make_pvc("rwo")])
    assert env.pre_filter("VolumeRestrictions", make_pod("p"))[1] is SKIP_STATUS
    # a ReadWriteOnce claim: nothing to restrict
    assert env.pre_filter("VolumeRestrictions", make_pod("p", [claim_vol("rwo")]))[1] is SKIP_STATUS
    _, status = env.pre_filter("VolumeRestrictions", make_pod("p", [claim_vol("missing")]))
    assert_status(status, Code.UNSCHEDULABLE_AND_UNRESOLVABLE, 'persistentvolumeclaim "missing" not found')


def test_volume_restrictions_read_write_once_pod() -> None:
    rwop = make_pvc("solo", modes=("ReadWriteOncePod",))
    holder = make_pod("holder", [claim_vol("solo")], node="n1")
    env = Env(nodes=[make_node("n1"), make_node("n2")], pods=[holder], pvcs=[rwop])
    pod = make_pod("second", [claim_vol("solo")])
    state, status = env.pre_filter("VolumeRestrictions", pod)
    assert status is None
    # every node: the claim is in use anywhere; Unschedulable so that preemption may help
    for node in ("n1", "n2"):
        assert_status(
            env.filter("VolumeRestrictions", pod, node, state),
            Code.UNSCHEDULABLE,
            ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT,
        )
    # preemption's what-if: without the holder the pod fits; the original state is untouched
    ext = env.plugin("VolumeRestrictions").pre_filter_extensions()
    what_if = state.clone()
    assert ext.remove_pod(what_if, PodInfo(pod), PodInfo(holder), env.node("n1")) is None
    assert env.filter("VolumeRestrictions", pod, "n1", what_if) is None
    assert env.filter("VolumeRestrictions", pod, "n1", state) is not None
    assert ext.add_pod(what_if, PodInfo(pod), PodInfo(holder), env.node("n1")) is None
    assert env.filter("VolumeRestrictions", pod, "n1", what_if) is not None
    # a pod of another namespace with a claim of the same name is not a holder
    other_ns = make_pod("other", [claim_vol("solo")], node="n1", namespace="elsewhere")
    ext.remove_pod(what_if, PodInfo(pod), PodInfo(holder), env.node("n1"))
    ext.add_pod(what_if, PodInfo(pod), PodInfo(other_ns), env.node("n1"))
    assert env.filter("VolumeRestrictions", pod, "n1", what_if) is None

    # unused: Skip
    env2 = Env(nodes=[make_node("n1")], pvcs=[rwop])
    assert env2.pre_filter("VolumeRestrictions", pod)[1] is SKIP_STATUS


def test_volume_restrictions_queueing_hints() -> None:
    pl = VolumeRestrictions({}, None)  # type: ignore[arg-type]
    pod = make_pod("p", [claim_vol("data"), gce("disk")])
    assert pl._after_pvc_added(pod, None, make_pvc("data")) == QueueingHint.QUEUE
    assert pl._after_pvc_added(pod, None, make_pvc("other")) == QueueingHint.SKIP
    assert pl._after_pvc_added(pod, None, make_pvc("data", namespace="x")) == QueueingHint.SKIP
    assert pl._after_pod_deleted(pod, make_pod("d", [gce("disk")], node="n1"), None) == QueueingHint.QUEUE
    assert (
        pl._after_pod_deleted(pod, make_pod("d", [claim_vol("data")], node="n1"), None) == QueueingHint.QUEUE
    )
    assert pl._after_pod_deleted(pod, make_pod("d", [claim_vol("zzz")], node="n1"), None) == QueueingHint.SKIP


# -- NodeVolumeLimits ------------------------------------------------------------------------------

DRIVER = "ebs.csi.example.com"


def csi_world(n_attached: int, limit: int | None, *, allocatable: dict[str, str] | None = None) -> Env:
    """A node with `n_attached` CSI volumes in use, each through its own claim and pod."""
    pvcs = [make_pvc(f"c{i}", volume=f"pv{i}", bound=True) for i in range(n_attached + 3)]
    pvs = [make_pv(f"pv{i}", csi=(DRIVER, f"vol-{i}")) for i in range(n_attached + 3)]
    pods = [make_pod(f"user{i}", [claim_vol(f"c{i}")], node="n1") for i in range(n_attached)]
    csinodes = [make_csinode("n1", {DRIVER: limit})] if limit is not None else []
    return Env(
        nodes=[make_node("n1", allocatable=allocatable)], pods=pods, pvcs=pvcs, pvs=pvs, csinodes=csinodes
    )


def test_node_volume_limits_csinode_count() -> None:
    new = make_pod("new", [claim_vol("c2")])
    at_limit = csi_world(2, 2)
    assert_status(
        at_limit.filter("NodeVolumeLimits", new, "n1"),
        Code.UNSCHEDULABLE,
        ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED,
    )
    assert csi_world(2, 3).filter("NodeVolumeLimits", new, "n1") is None
    # a volume the node already has costs nothing
    shared = make_pod("shared", [claim_vol("c1")])
    assert at_limit.filter("NodeVolumeLimits", shared, "n1") is None
    # two new volumes against one free slot
    two = make_pod("two", [claim_vol("c2"), claim_vol("c3")])
    assert csi_world(1, 2).filter("NodeVolumeLimits", two, "n1") is not None
    assert csi_world(1, 3).filter("NodeVolumeLimits", two, "n1") is None
    # no limit known: anything goes
    assert csi_world(5, None).filter("NodeVolumeLimits", two, "n1") is None


def test_node_volume_limits_node_allocatable() -> None:
    new = make_pod("new", [claim_vol("c2")])
    env = csi_world(2, None, allocatable={csi_attach_limit_key(DRIVER): "2"})
    assert_status(
        env.filter("NodeVolumeLimits", new, "n1"), Code.UNSCHEDULABLE, ERR_REASON_MAX_VOLUME_COUNT_EXCEEDED
    )
    # the CSINode's count wins over the node's allocatable
    env.add("csinodes", make_csinode("n1", {DRIVER: 10}))
    assert env.filter("NodeVolumeLimits", new, "n1") is None


def test_node_volume_limits_unbound_claims_count_by_provisioner() -> None:
    env = csi_world(1, 2)
    env.add("storageclasses", make_sc("fast", provisioner=DRIVER))
    env.add("persistentvolumeclaims", make_pvc("u1", sc="fast"))
    env.add("persistentvolumeclaims", make_pvc("u2", sc="fast"))
    assert env.filter("NodeVolumeLimits", make_pod("one", [claim_vol("u1")]), "n1") is None
    assert (
        env.filter("NodeVolumeLimits", make_pod("two", [claim_vol("u1"), claim_vol("u2")]), "n1") is not None
    )
    # a claim without a class is not counted (it must have been bound before scheduling)
    env.add("persistentvolumeclaims", make_pvc("noclass"))
    assert (
        env.filter("NodeVolumeLimits", make_pod("x", [claim_vol("u1"), claim_vol("noclass")]), "n1") is None
    )


def test_node_volume_limits_prefilter_and_errors() -> None:
    env = csi_world(0, 1)
    assert (
        env.pre_filter("NodeVolumeLimits", make_pod("p", [{"name": "e", "emptyDir": {}}]))[1] is SKIP_STATUS
    )
    missing = make_pod("p", [claim_vol("nope")])
    assert env.pre_filter("NodeVolumeLimits", missing)[1] is None
    assert_status(
        env.filter("NodeVolumeLimits", missing, "n1"),
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
        'looking up PVC default/nope: persistentvolumeclaim "nope" not found',
    )
    # a generic ephemeral volume's claim must belong to the pod
    pod = make_pod("eph", [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}])
    env.add("persistentvolumeclaims", make_pvc("eph-scratch"))
    assert_status(env.filter("NodeVolumeLimits", pod, "n1"), Code.ERROR)
    owned = make_pvc(
        "eph-scratch", owner={"kind": "Pod", "name": "eph", "uid": pod["metadata"]["uid"], "controller": True}
    )
    env.add("persistentvolumeclaims", owned)
    assert env.filter("NodeVolumeLimits", pod, "n1") is None


def test_node_volume_limits_migrated_inline_disks() -> None:
    pods = [make_pod("a", [ebs("aws://us-east-1a/vol-1")], node="n1")]
    csinode = make_csinode(
        "n1",
        {"ebs.csi.aws.com": 1},
        {"storage.alpha.kubernetes.io/migrated-plugins": "kubernetes.io/aws-ebs"},
    )
    env = Env(nodes=[make_node("n1")], pods=pods, csinodes=[csinode])
    assert env.pre_filter("NodeVolumeLimits", make_pod("b", [ebs("vol-2")]))[1] is None
    assert env.filter("NodeVolumeLimits", make_pod("b", [ebs("vol-2")]), "n1") is not None
    assert env.filter("NodeVolumeLimits", make_pod("c", [ebs("vol-1")]), "n1") is None  # the same disk
    # not migrated on this node: in-tree volumes are not counted here
    env.add("csinodes", make_csinode("n1", {"ebs.csi.aws.com": 1}))
    assert env.filter("NodeVolumeLimits", make_pod("b", [ebs("vol-2")]), "n1") is None


def test_csi_attach_limit_key() -> None:
    assert csi_attach_limit_key("ebs.csi.aws.com") == "attachable-volumes-csi-ebs.csi.aws.com"
    long = "a-very-long-csi-driver-name.storage.example.com"
    key = csi_attach_limit_key(long)
    assert key.startswith("attachable-volumes-csi-" + long[:23]) and len(key) == 23 + 23 + 16


# -- VolumeZone ----------------------------------------------------------------------------------


def zone_env(pv_labels: dict[str, str], *extra_nodes: Obj) -> Env:
    nodes = [
        make_node("a1", {ZONE: "a", REGION: "r1"}),
        make_node("b1", {ZONE: "b", REGION: "r1"}),
        make_node("bare"),
        *extra_nodes,
    ]
    return Env(
        nodes=nodes,
        pvcs=[make_pvc("data", volume="pv1", bound=True)],
        pvs=[make_pv("pv1", labels=pv_labels)],
    )


def test_volume_zone_filter() -> None:
    pod = make_pod("p", [claim_vol("data")])
    env = zone_env({ZONE: "a"})
    assert env.filter("VolumeZone", pod, "a1") is None
    assert_status(
        env.filter("VolumeZone", pod, "b1"), Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_CONFLICT
    )
    assert env.filter("VolumeZone", pod, "bare") is None  # no topology labels: fits anything
    multi = zone_env({ZONE: "a__b", REGION: "r1"})
    assert multi.filter("VolumeZone", pod, "a1") is None and multi.filter("VolumeZone", pod, "b1") is None
    other_region = zone_env({REGION: "r2"})
    assert other_region.filter("VolumeZone", pod, "a1") is not None
    # a PV's beta label matches the node's GA label
    beta = zone_env({BETA_ZONE: "b"})
    assert beta.filter("VolumeZone", pod, "b1") is None
    assert beta.filter("VolumeZone", pod, "a1") is not None
    # a node with only an unrelated topology label still must match
    odd = zone_env({ZONE: "a"}, make_node("region-only", {REGION: "r1"}))
    assert odd.filter("VolumeZone", pod, "region-only") is not None
    assert label_zones_to_set("a__ b") == frozenset({"a", "b"}) and label_zones_to_set("a____b") is None


def test_volume_zone_prefilter() -> None:
    env = zone_env({})
    # no claims, or a PV without topology labels: Skip
    assert env.pre_filter("VolumeZone", make_pod("p"))[1] is SKIP_STATUS
    assert env.pre_filter("VolumeZone", make_pod("p", [claim_vol("data")]))[1] is SKIP_STATUS
    env.add("storageclasses", make_sc("wffc"))
    env.add("storageclasses", make_sc("now", mode="Immediate"))
    env.add("persistentvolumeclaims", make_pvc("later", sc="wffc"))
    env.add("persistentvolumeclaims", make_pvc("unbound", sc="now"))
    env.add("persistentvolumeclaims", make_pvc("classless"))
    env.add("persistentvolumeclaims", make_pvc("lostpv", volume="gone", bound=True))
    env.add("persistentvolumeclaims", make_pvc("nosc", sc="nosuch"))
    assert env.pre_filter("VolumeZone", make_pod("p", [claim_vol("later")]))[1] is SKIP_STATUS
    for claim, reason in (
        ("missing", 'persistentvolumeclaim "missing" not found'),
        ("unbound", "PersistentVolume had no name"),
        ("classless", "PersistentVolumeClaim had no pv name and storageClass name"),
        ("lostpv", 'persistentvolume "gone" not found'),
        ("nosc", 'storageclass.storage.k8s.io "nosuch" not found'),
    ):
        _, status = env.pre_filter("VolumeZone", make_pod("p", [claim_vol(claim)]))
        assert_status(status, Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reason)


def test_volume_zone_queueing_hints() -> None:
    pl = VolumeZone({}, None)  # type: ignore[arg-type]
    pod = make_pod("p", [claim_vol("data")])
    assert pl._after_storage_class_added(pod, None, make_sc("x")) == QueueingHint.QUEUE
    assert pl._after_storage_class_added(pod, None, make_sc("x", mode="Immediate")) == QueueingHint.SKIP
    pv = make_pv("pv1", labels={ZONE: "a"})
    assert pl._after_pv_change(pod, None, pv) == QueueingHint.QUEUE
    assert pl._after_pv_change(pod, pv, make_pv("pv1", labels={ZONE: "a", "x": "y"})) == QueueingHint.SKIP
    assert pl._after_pv_change(pod, pv, make_pv("pv1", labels={ZONE: "b"})) == QueueingHint.QUEUE
    assert pl._after_pvc_change(pod, None, make_pvc("data")) == QueueingHint.QUEUE
    assert pl._after_pvc_change(pod, None, make_pvc("nope")) == QueueingHint.SKIP


# -- VolumeBinding -------------------------------------------------------------------------------


def binding_env(**kw: Any) -> Env:
    kw.setdefault("nodes", [make_node("n1", {ZONE: "a"}), make_node("n2", {ZONE: "b"})])
    return Env(**kw)


def test_volume_binding_prefilter_errors() -> None:
    deleting = make_pvc("deleting", sc="")
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    lost = make_pvc("lost", volume="gone")
    lost["status"]["phase"] = "Lost"
    env = binding_env(
        pvcs=[deleting, lost, make_pvc("immediate", sc="now"), make_pvc("classless")],
        classes=[make_sc("now", mode="Immediate")],
    )
    eph = {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
    for volumes, code, reason in (
        (
            [claim_vol("missing")],
            Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            'persistentvolumeclaim "missing" not found',
        ),
        (
            [claim_vol("deleting")],
            Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            'persistentvolumeclaim "deleting" is being deleted',
        ),
        (
            [claim_vol("lost")],
            Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            'persistentvolumeclaim "lost" bound to non-existent persistentvolume "gone"',
        ),
        (
            [eph],
            Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            'waiting for ephemeral volume controller to create the persistentvolumeclaim "p-scratch"',
        ),
        # immediate binding (or no class) is the PV controller's job: wait for it
        (
            [claim_vol("immediate")],
            Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            "pod has unbound immediate PersistentVolumeClaims",
        ),
        (
            [claim_vol("classless")],
            Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            "pod has unbound immediate PersistentVolumeClaims",
        ),
    ):
        _, status = env.pre_filter("VolumeBinding", make_pod("p", volumes))
        assert_status(status, code, reason)


def test_volume_binding_bound_claims_node_affinity() -> None:
    pvc = make_pvc("data", volume="pv1", bound=True)
    env = binding_env(
        pvcs=[pvc], pvs=[make_pv("pv1", claim=claim_ref(pvc), phase="Bound", hostnames=("n1",))]
    )
    pod = make_pod("p", [claim_vol("data")])
    state, status = env.pre_filter("VolumeBinding", pod)
    assert status is None
    assert env.filter("VolumeBinding", pod, "n1", state) is None
    assert_status(
        env.filter("VolumeBinding", pod, "n2", state),
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
        ERR_REASON_NODE_CONFLICT,
    )
    # everything bound: Reserve has nothing to assume, PreBind nothing to write
    assert env.plugin("VolumeBinding").reserve(state, PodInfo(pod), "n1") is None
    assert state[STATE_KEY].all_bound
    # bound to a PV the cache does not have
    env.add("persistentvolumeclaims", make_pvc("orphan", volume="nowhere", bound=True))
    orphan = make_pod("o", [claim_vol("orphan")])
    assert_status(
        env.filter("VolumeBinding", orphan, "n1"),
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
        ERR_REASON_PV_NOT_EXIST,
    )


def test_volume_binding_wffc_finds_the_smallest_matching_pv() -> None:
    pvc = make_pvc("data", sc="local", storage="5Gi", modes=("ReadWriteOnce",))
    pvs = [
        make_pv("too-small", sc="local", storage="1Gi", hostnames=("n1", "n2")),
        make_pv("big", sc="local", storage="100Gi", hostnames=("n1", "n2")),
        make_pv("right", sc="local", storage="10Gi", hostnames=("n1",)),
        make_pv("wrong-class", sc="other", storage="5Gi", hostnames=("n1", "n2")),
        make_pv("wrong-mode", sc="local", storage="5Gi", modes=("ReadOnlyMany",), hostnames=("n1", "n2")),
        make_pv("released", sc="local", storage="5Gi", phase="Released", hostnames=("n1", "n2")),
        make_pv("taken", sc="local", storage="5Gi", claim={"namespace": "x", "name": "y"}, hostnames=("n2",)),
    ]
    env = binding_env(pvcs=[pvc], pvs=pvs, classes=[make_sc("local")])
    pod = make_pod("p", [claim_vol("data")])
    state, status = env.pre_filter("VolumeBinding", pod)
    assert status is None
    assert env.filter("VolumeBinding", pod, "n1", state) is None
    assert env.filter("VolumeBinding", pod, "n2", state) is None
    s = state[STATE_KEY]
    assert [b.pv["metadata"]["name"] for b in s.pod_volumes_by_node["n1"].static_bindings] == ["right"]
    assert [b.pv["metadata"]["name"] for b in s.pod_volumes_by_node["n2"].static_bindings] == ["big"]
    assert s.has_static_bindings
    # a selector narrows the choice
    env.add(
        "persistentvolumeclaims", make_pvc("picky", sc="local", selector={"matchLabels": {"tier": "gold"}})
    )
    picky = make_pod("q", [claim_vol("picky")])
    assert_status(
        env.filter("VolumeBinding", picky, "n1"),
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
        ERR_REASON_BIND_CONFLICT,
    )
    env.add("persistentvolumes", make_pv("gold", sc="local", labels={"tier": "gold"}))
    assert env.filter("VolumeBinding", picky, "n1") is None


def test_volume_binding_two_claims_get_two_pvs() -> None:
    a, b = make_pvc("a", sc="local"), make_pvc("b", sc="local")
    env = binding_env(pvcs=[a, b], pvs=[make_pv("only", sc="local")], classes=[make_sc("local")])
    pod = make_pod("p", [claim_vol("a"), claim_vol("b")])
    assert_status(
        env.filter("VolumeBinding", pod, "n1"), Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_BIND_CONFLICT
    )
    env.add("persistentvolumes", make_pv("second", sc="local"))
    assert env.filter("VolumeBinding", pod, "n1") is None


def test_volume_binding_dynamic_provisioning_topology() -> None:
    topology = [{"matchLabelExpressions": [{"key": ZONE, "values": ["a"]}]}]
    env = binding_env(
        pvcs=[make_pvc("dyn", sc="fast"), make_pvc("static-only", sc="local")],
        classes=[
            make_sc("fast", provisioner="csi.example.com", allowed_topologies=topology),
            make_sc("local"),
        ],
    )
    pod = make_pod("p", [claim_vol("dyn")])
    state, status = env.pre_filter("VolumeBinding", pod)
    assert status is None
    assert env.filter("VolumeBinding", pod, "n1", state) is None
    assert [c["metadata"]["name"] for c in state[STATE_KEY].pod_volumes_by_node["n1"].dynamic_provisions] == [
        "dyn"
    ]
    assert_status(
        env.filter("VolumeBinding", pod, "n2", state),
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
        ERR_REASON_BIND_CONFLICT,
    )
    # kubernetes.io/no-provisioner and no matching PV: nowhere
    static_only = make_pod("q", [claim_vol("static-only")])
    assert env.filter("VolumeBinding", static_only, "n1") is not None
    # provisioning already started for another node
    env.add("persistentvolumeclaims", make_pvc("dyn", sc="fast", annotations={ANN_SELECTED_NODE: "n2"}))
    assert_status(
        env.filter("VolumeBinding", pod, "n1"), Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_BIND_CONFLICT
    )


def test_volume_binding_storage_capacity() -> None:
    env = binding_env(
        pvcs=[make_pvc("dyn", sc="fast", storage="10Gi")], classes=[make_sc("fast", provisioner="csi.x")]
    )
    pod = make_pod("p", [claim_vol("dyn")])
    env.add("csidrivers", {"metadata": {"name": "csi.x"}, "spec": {"storageCapacity": True}})
    env.add(
        "csistoragecapacities",
        {
            "metadata": {"name": "cap-a", "namespace": "kube-system"},
            "storageClassName": "fast",
            "capacity": "100Gi",
            "maximumVolumeSize": "20Gi",
            "nodeTopology": {"matchLabels": {ZONE: "a"}},
        },
    )
    assert env.filter("VolumeBinding", pod, "n1") is None
    assert_status(
        env.filter("VolumeBinding", pod, "n2"),
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
        "node(s) did not have enough free storage",
    )


def test_volume_binding_reserve_assumes_and_unreserve_reverts() -> None:
    a = make_pvc("a", sc="local")
    b = make_pvc("b", sc="local")
    env = binding_env(pvcs=[a, b], pvs=[make_pv("pv1", sc="local")], classes=[make_sc("local")])
    vb: VolumeBinding = env.plugin("VolumeBinding")
    first = make_pod("first", [claim_vol("a")])
    state, _ = env.pre_filter("VolumeBinding", first)
    assert env.filter("VolumeBinding", first, "n1", state) is None
    assert vb.reserve(state, PodInfo(first), "n1") is None
    assert not state[STATE_KEY].all_bound
    assumed = vb.pv_cache.get("pv1")
    assert assumed is not None and assumed["spec"]["claimRef"]["name"] == "a"
    assert assumed["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"
    # the informer's object is untouched
    assert "claimRef" not in env.listers["persistentvolumes"].get_by_key("pv1")["spec"]
    # the next pod cannot have the same PV
    second = make_pod("second", [claim_vol("b")])
    assert_status(
        env.filter("VolumeBinding", second, "n1"),
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
        ERR_REASON_BIND_CONFLICT,
    )
    # another pod sharing claim "a" finds the PV prebound to it
    sharer = make_pod("sharer", [claim_vol("a")])
    assert env.filter("VolumeBinding", sharer, "n1") is None
    vb.unreserve(state, PodInfo(first), "n1")
    assert "claimRef" not in vb.pv_cache.get("pv1")["spec"]
    assert env.filter("VolumeBinding", second, "n1") is None


def test_volume_binding_assumption_yields_to_newer_informer_object() -> None:
    pvc = make_pvc("dyn", sc="fast")
    env = binding_env(pvcs=[pvc], classes=[make_sc("fast", provisioner="csi.x")])
    vb: VolumeBinding = env.plugin("VolumeBinding")
    pod = make_pod("p", [claim_vol("dyn")])
    state, _ = env.pre_filter("VolumeBinding", pod)
    assert env.filter("VolumeBinding", pod, "n1", state) is None
    assert vb.reserve(state, PodInfo(pod), "n1") is None
    assert vb.pvc_cache.get("default/dyn")["metadata"]["annotations"][ANN_SELECTED_NODE] == "n1"
    assert vb.pvc_cache.is_assumed("default/dyn")
    # the informer delivers a newer version (without the annotation): the assumption is void
    newer = make_pvc("dyn", sc="fast")
    newer["metadata"]["resourceVersion"] = "11"
    env.add("persistentvolumeclaims", newer)
    assert ANN_SELECTED_NODE not in vb.pvc_cache.get("default/dyn")["metadata"]["annotations"]
    assert not vb.pvc_cache.is_assumed("default/dyn")


class FakeClient:
    """Answers PUTs as an API server would (bumping resourceVersion), or with an error."""

    def __init__(self, env: Env, error: Exception | None = None) -> None:
        self.env = env
        self.error = error
        self.updates: list[tuple[str, Obj]] = []

    async def update(self, res: Any, obj: Obj, **_: Any) -> Obj:
        if self.error is not None:
            raise self.error
        out = {
            **obj,
            "metadata": {
                **obj["metadata"],
                "resourceVersion": str(int(obj["metadata"]["resourceVersion"]) + 1),
            },
        }
        self.updates.append((res.plural, out))
        return out


async def test_volume_binding_prebind_with_fake_api() -> None:
    pvc = make_pvc("data", sc="local")
    pod = make_pod("p", [claim_vol("data")])
    env = binding_env(pvcs=[pvc], pvs=[make_pv("pv1", sc="local")], classes=[make_sc("local")], pods=[pod])
    client = FakeClient(env)
    env.context.client = client
    vb: VolumeBinding = env.plugin("VolumeBinding")
    vb.poll_interval = 0.01
    state, _ = env.pre_filter("VolumeBinding", pod)
    assert env.filter("VolumeBinding", pod, "n1", state) is None
    assert vb.reserve(state, PodInfo(pod), "n1") is None
    task = asyncio.create_task(vb.pre_bind(state, PodInfo(pod), "n1"))
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the PV controller
    [(plural, written)] = client.updates
    assert plural == "persistentvolumes" and written["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    # the informers see the write, then the PV controller's completion of the binding
    env.add("persistentvolumes", written)
    env.add("persistentvolumeclaims", make_pvc("data", sc="local", volume="pv1", bound=True))
    assert await asyncio.wait_for(task, 5) is None


async def test_volume_binding_prebind_errors() -> None:
    pvc = make_pvc("data", sc="local")
    pod = make_pod("p", [claim_vol("data")])
    env = binding_env(pvcs=[pvc], pvs=[make_pv("pv1", sc="local")], classes=[make_sc("local")], pods=[pod])
    conflict = Conflict(
        {
            "code": 409,
            "reason": "Conflict",
            "message": 'Operation cannot be fulfilled on persistentvolumes "pv1"',
        }
    )
    env.context.client = FakeClient(env, conflict)
    vb: VolumeBinding = env.plugin("VolumeBinding")
    state, _ = env.pre_filter("VolumeBinding", pod)
    env.filter("VolumeBinding", pod, "n1", state)
    vb.reserve(state, PodInfo(pod), "n1")
    assert vb.pv_cache.is_assumed("pv1")
    status = await vb.pre_bind(state, PodInfo(pod), "n1")
    assert_status(status, Code.ERROR, 'Operation cannot be fulfilled on persistentvolumes "pv1"')
    assert not vb.pv_cache.is_assumed("pv1")  # what was not written is no longer assumed
    # the pod went away while waiting: the binding is abandoned
    env.context.client = FakeClient(env)
    vb.poll_interval = 0.01
    state, _ = env.pre_filter("VolumeBinding", pod)
    env.filter("VolumeBinding", pod, "n1", state)
    vb.reserve(state, PodInfo(pod), "n1")
    env.listers["pods"].delete(pod)
    status = await vb.pre_bind(state, PodInfo(pod), "n1")
    assert_status(status, Code.ERROR, 'binding volumes: pod does not exist any more: pod "p" not found')


def test_volume_binding_queueing_hints() -> None:
    vb = VolumeBinding({}, None)  # type: ignore[arg-type]
    pod = make_pod("p", [claim_vol("data"), {"name": "s", "ephemeral": {"volumeClaimTemplate": {}}}])
    assert vb._after_pvc_change(pod, None, make_pvc("data")) == QueueingHint.QUEUE
    assert vb._after_pvc_change(pod, None, make_pvc("p-s")) == QueueingHint.QUEUE
    assert vb._after_pvc_change(pod, None, make_pvc("other")) == QueueingHint.SKIP
    sc = make_sc("x")
    assert vb._after_storage_class_change(pod, None, sc) == QueueingHint.QUEUE
    assert vb._after_storage_class_change(pod, sc, {**sc, "parameters": {"a": "b"}}) == QueueingHint.SKIP
    topo = {**sc, "allowedTopologies": [{"matchLabelExpressions": [{"key": ZONE, "values": ["a"]}]}]}
    assert vb._after_storage_class_change(pod, sc, topo) == QueueingHint.QUEUE
    cap = {"capacity": "1Gi"}
    assert vb._after_csi_storage_capacity_change(pod, cap, {"capacity": "2Gi"}) == QueueingHint.QUEUE
    assert vb._after_csi_storage_capacity_change(pod, cap, {"capacity": "1Gi"}) == QueueingHint.SKIP


def test_volume_binding_score_with_shape() -> None:
    pvc = make_pvc("data", sc="local", storage="5Gi")
    env = binding_env(
        pvcs=[pvc],
        pvs=[
            make_pv("half", sc="local", storage="10Gi", hostnames=("n1",)),
            make_pv("full", sc="local", storage="5Gi", hostnames=("n2",)),
        ],
        classes=[make_sc("local")],
        args={
            "bindTimeoutSeconds": 600,
            "shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}],
        },
    )
    vb: VolumeBinding = env.plugin("VolumeBinding")
    pod = make_pod("p", [claim_vol("data")])
    state, _ = env.pre_filter("VolumeBinding", pod)
    for n in ("n1", "n2"):
        assert env.filter("VolumeBinding", pod, n, state) is None
    assert vb.pre_score(state, PodInfo(pod), []) is None
    assert vb.score(state, PodInfo(pod), env.node("n1")) == (50, None)
    assert vb.score(state, PodInfo(pod), env.node("n2")) == (100, None)
    # without a shape (the default) the plugin does not score
    assert binding_env().plugin("VolumeBinding").pre_score(state, PodInfo(pod), []) is SKIP_STATUS


def test_node_selector_helpers() -> None:
    def pv(terms: list[Obj]) -> Obj:
        return {"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": terms}}}}

    labels = {"zone": "a", "gen": "5"}
    assert check_volume_node_affinity({"spec": {}}, labels)
    assert check_volume_node_affinity(
        pv([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]), labels
    )
    assert not check_volume_node_affinity(pv([]), labels)
    assert not check_volume_node_affinity(pv([{}]), labels)  # an empty term matches nothing
    assert check_volume_node_affinity(
        pv([{}, {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}]), labels
    )
    assert not check_volume_node_affinity(
        pv([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["x"]}]}]), labels
    )
    assert check_volume_node_affinity(
        pv([{"matchExpressions": [{"key": "rack", "operator": "DoesNotExist"}]}]), labels
    )
    # CheckNodeAffinity matches a node of labels only: field selectors on the name never match
    assert not check_volume_node_affinity(
        pv([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]), labels
    )
    assert match_topology_selector_terms(None, labels)
    assert match_topology_selector_terms(
        [{"matchLabelExpressions": [{"key": "zone", "values": ["b", "a"]}]}], labels
    )
    assert not match_topology_selector_terms(
        [{"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]}], labels
    )
    assert not match_topology_selector_terms([{"matchLabelExpressions": []}], labels)


# -- VolumeBinding against a real API server ------------------------------------------------------


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-volumebinding") as c:
        yield c


class Storage:
    """Real informers for PVs and PVCs, plus the cluster-scoped objects a test made (deleted after)."""

    def __init__(self, client: RESTClient) -> None:
        self.client = client
        self.informers = {
            "persistentvolumes": SharedIndexInformer(client, PERSISTENT_VOLUMES),
            "persistentvolumeclaims": SharedIndexInformer(client, PERSISTENT_VOLUME_CLAIMS),
            "storageclasses": SharedIndexInformer(client, STORAGE_CLASSES),
        }
        self.created: list[tuple[Any, str]] = []

    async def start(self) -> None:
        for inf in self.informers.values():
            inf.start()
        await asyncio.wait_for(asyncio.gather(*(inf.wait_for_sync() for inf in self.informers.values())), 10)

    async def create(self, res: Any, obj: Obj) -> Obj:
        out = await self.client.create(res, obj)
        if not res.namespaced:
            self.created.append((res, obj["metadata"]["name"]))
        return out

    async def wait_cached(self, resource: str, key: str, pred: Any = bool) -> Obj:
        async def poll() -> Obj:
            while True:
                obj = self.informers[resource].indexer.get_by_key(key)
                if obj is not None and pred(obj):
                    return obj
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(poll(), 10)

    async def close(self) -> None:
        for inf in self.informers.values():
            await inf.stop()
        for res, name in reversed(self.created):
            with contextlib.suppress(Exception):
                await self.client.delete(res, name)


@pytest.fixture
async def storage(client: RESTClient) -> AsyncIterator[Storage]:
    s = Storage(client)
    await s.start()
    yield s
    await s.close()


def api_env(storage: Storage, pod: Obj, node: Obj, timeout: float) -> tuple[SchedulerContext, VolumeBinding]:
    listers = {name: inf.indexer for name, inf in storage.informers.items()}
    listers["nodes"] = Indexer()
    listers["nodes"].add(node)
    listers["pods"] = Indexer()
    listers["pods"].add(pod)  # the scheduler's view: the pod exists (it is not created in the API)
    context = SchedulerContext(
        client=storage.client, listers=listers, snapshot=Snapshot.from_objects([], [node])
    )
    profile = {
        "plugins": {"multiPoint": {"enabled": [{"name": n} for n in REGISTRY]}},
        "pluginConfig": [{"name": "VolumeBinding", "args": {"bindTimeoutSeconds": timeout}}],
    }
    fw = Framework(profile, REGISTRY, context)
    vb = fw.plugin("VolumeBinding")
    assert isinstance(vb, VolumeBinding)
    vb.poll_interval = 0.1
    return context, vb


def schedule_volumes(context: SchedulerContext, vb: VolumeBinding, pod: Obj, node: str) -> CycleState:
    """VolumeBinding's part of one scheduling cycle: PreFilter, Filter on the node, Reserve."""
    state = CycleState()
    pi = PodInfo(pod)
    result, status = vb.pre_filter(state, pi, context.snapshot.node_infos())
    assert result is None and status is None, status
    ni = context.snapshot.get(node)
    assert ni is not None
    assert vb.filter(state, pi, ni) is None
    assert vb.reserve(state, pi, node) is None
    return state


async def test_prebind_static_pv_against_api_server(storage: Storage, namespace: str) -> None:
    c = storage.client
    suffix = namespace[-24:]
    sc_name, pv_name, node_name = f"local-{suffix}", f"pv-{suffix}", f"node-{suffix}"
    await storage.create(STORAGE_CLASSES, make_sc(sc_name))
    pv = make_pv(pv_name, sc=sc_name, storage="5Gi", hostnames=(node_name,))
    del pv["metadata"]["resourceVersion"], pv["status"]
    created = await storage.create(PERSISTENT_VOLUMES, pv)
    # the PV controller would make it Available
    await c.update_status(PERSISTENT_VOLUMES, {**created, "status": {"phase": "Available"}})
    pvc = make_pvc("data", namespace=namespace, sc=sc_name, storage="2Gi")
    for k in ("uid", "resourceVersion"):
        del pvc["metadata"][k]
    del pvc["status"]
    created_pvc = await c.create(PERSISTENT_VOLUME_CLAIMS, pvc)
    await storage.wait_cached(
        "persistentvolumes", pv_name, lambda o: (o.get("status") or {}).get("phase") == "Available"
    )
    await storage.wait_cached("persistentvolumeclaims", f"{namespace}/data")

    pod = make_pod("app", [claim_vol("data")], namespace=namespace)
    context, vb = api_env(storage, pod, make_node(node_name), timeout=1)
    state = schedule_volumes(context, vb, pod, node_name)
    [binding] = state[STATE_KEY].pod_volumes_by_node[node_name].static_bindings
    assert binding.pv["metadata"]["name"] == pv_name

    # nothing completes the binding: PreBind gives up after bindTimeoutSeconds, with an error
    loop = asyncio.get_running_loop()
    started = loop.time()
    status = await vb.pre_bind(state, PodInfo(pod), node_name)
    assert_status(status, Code.ERROR, "binding volumes: context deadline exceeded")
    assert 0.9 < loop.time() - started < 5
    vb.unreserve(state, PodInfo(pod), node_name)

    # ... but it did prebind the PV to the claim, as the PV controller expects
    written = await c.get(PERSISTENT_VOLUMES, pv_name)
    ref = written["spec"]["claimRef"]
    assert ref["kind"] == "PersistentVolumeClaim" and ref["apiVersion"] == "v1"
    assert (ref["namespace"], ref["name"], ref["uid"]) == (namespace, "data", created_pvc["metadata"]["uid"])
    assert written["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"
    claim = await c.get(PERSISTENT_VOLUME_CLAIMS, "data", namespace=namespace)
    assert ANN_SELECTED_NODE not in (claim["metadata"].get("annotations") or {})


async def test_prebind_dynamic_provisioning_against_api_server(storage: Storage, namespace: str) -> None:
    c = storage.client
    suffix = namespace[-24:]
    sc_name, node_name = f"fast-{suffix}", f"node-{suffix}"
    await storage.create(STORAGE_CLASSES, make_sc(sc_name, provisioner="csi.example.com"))
    pvc = make_pvc("data", namespace=namespace, sc=sc_name, storage="2Gi")
    for k in ("uid", "resourceVersion"):
        del pvc["metadata"][k]
    del pvc["status"]
    await c.create(PERSISTENT_VOLUME_CLAIMS, pvc)
    await storage.wait_cached("storageclasses", sc_name)
    await storage.wait_cached("persistentvolumeclaims", f"{namespace}/data")

    pod = make_pod("app", [claim_vol("data")], namespace=namespace)
    context, vb = api_env(storage, pod, make_node(node_name), timeout=20)
    state = schedule_volumes(context, vb, pod, node_name)
    assert state[STATE_KEY].pod_volumes_by_node[node_name].dynamic_provisions

    task = asyncio.create_task(vb.pre_bind(state, PodInfo(pod), node_name))
    try:
        # PreBind selects the node on the claim, for the provisioner
        async def selected() -> Obj:
            while True:
                claim = await c.get(PERSISTENT_VOLUME_CLAIMS, "data", namespace=namespace)
                if (claim["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE) == node_name:
                    return claim
                await asyncio.sleep(0.05)

        claim = await asyncio.wait_for(selected(), 10)
        await asyncio.sleep(0.3)
        assert not task.done()
        # play the provisioner (a PV in the node's topology) and the PV controller (bind both)
        pv = make_pv(f"pvc-{claim['metadata']['uid']}", sc=sc_name, storage="2Gi", hostnames=(node_name,))
        del pv["metadata"]["resourceVersion"], pv["status"]
        pv["spec"]["claimRef"] = {**claim_ref(claim), "apiVersion": "v1"}
        await storage.create(PERSISTENT_VOLUMES, pv)
        claim["spec"]["volumeName"] = pv["metadata"]["name"]
        claim["metadata"]["annotations"][ANN_BIND_COMPLETED] = "yes"
        claim = await c.update(PERSISTENT_VOLUME_CLAIMS, claim)
        await c.update_status(PERSISTENT_VOLUME_CLAIMS, {**claim, "status": {"phase": "Bound"}})
        assert await asyncio.wait_for(task, 10) is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
