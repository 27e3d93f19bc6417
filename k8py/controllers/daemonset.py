"""The DaemonSet controller (``pkg/controller/daemon``): one daemon pod on every eligible node.

Informers on DaemonSets, ControllerRevisions, pods and nodes feed one queue of DaemonSet keys.
``sync(key)``, as ``syncDaemonSet``:

1. **History** (``constructHistory``): the ControllerRevisions the DaemonSet controls (adopting
   matching orphans) are split into the *current* one (its data is the DaemonSet's template) and
   the old ones; a missing current revision is created as ``<ds>-<hash>`` (``hash`` is
   ``ComputeHash(template, collisionCount)``; a name taken by other data bumps
   ``status.collisionCount``), duplicates are merged, and the current revision is renumbered
   past the old ones. New pods carry its hash as ``controller-revision-hash``.
2. **manage**: which nodes should run a daemon pod is the scheduler's own logic, run on the
   template with the daemon tolerations added (``NodeShouldRunDaemonPod``): the template's
   ``nodeName``, its nodeSelector and required node affinity
   (:func:`~k8py.scheduler.plugins.nodeaffinity.pod_matches_node_selector_and_affinity`), and
   the node's NoSchedule/NoExecute taints. A node that should run one and has none gets a pod
   (slow-start batches, at most ``burstReplicas`` per sync); extra pods, failed pods (with a
   per-node backoff) and pods on nodes that should not run them are deleted. The pods are not
   placed here: each gets the required node affinity ``matchFields metadata.name In [node]``
   (``ReplaceDaemonSetPodNodeNameNodeAffinity``) and the scheduler binds it, as in kube since 1.12.
   Expectations keep a sync from acting on a cache that has not seen its last writes.
3. **rollingUpdate** (strategy RollingUpdate, expectations satisfied): old pods are replaced
   within ``maxUnavailable`` (delete, then the next manage creates the new one) or, with
   ``maxSurge``, a new pod is started next to the old one, which goes once the new one is
   available. ``OnDelete`` replaces pods only as they are deleted by someone else.
4. **cleanupHistory** keeps ``revisionHistoryLimit`` old revisions no live pod uses.
5. **status**: desired/current/misscheduled/ready/updated/available/unavailable counts and
   ``observedGeneration``, written only when they changed; ``kubectl rollout status`` reads them.

Nodes matter only when something that decides eligibility changes (labels, taints, the
spec), so node heartbeats do not wake the controller.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

from k8py.api import meta
from k8py.api.selectors import LabelSelector
from k8py.client import WARNING, ClientError, PatchType, is_already_exists, is_conflict, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import CONTROLLER_REVISIONS, DAEMON_SETS, NODES, PODS
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.controller_utils import (
    ControllerRefManager,
    PodControl,
    compute_hash,
    controller_ref,
    generate_name_prefix,
    is_pod_available,
    is_pod_ready,
    owner_reference,
    pod_from_template,
)
from k8py.controllers.expectations import ControllerExpectations
from k8py.controllers.history import (
    CONTROLLER_REVISION_HASH_LABEL,
    History,
    max_revision,
    revision_number,
    sort_controller_revisions,
    template_patch,
)
from k8py.controllers.manager import ControllerContext
from k8py.scheduler.plugins.helper import NO_EXECUTE, NO_SCHEDULE, find_untolerated_taint
from k8py.scheduler.plugins.nodeaffinity import OBJECT_NAME_FIELD, pod_matches_node_selector_and_affinity

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SELECTING_ALL_REASON = "SelectingAll"
FAILED_DAEMON_POD_REASON = "FailedDaemonPod"
BURST_REPLICAS = 250
SLOW_START_INITIAL_BATCH_SIZE = 1
STATUS_UPDATE_RETRIES = 1
TEMPLATE_GENERATION_LABEL = "pod-template-generation"  # extensions.DaemonSetTemplateGenerationKey
DEPRECATED_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
FAILED_PODS_BACKOFF = (1.0, 15 * 60.0)

# the taints every daemon pod tolerates (util.AddOrUpdateDaemonPodTolerations)
_DAEMON_TOLERATIONS: tuple[tuple[str, str], ...] = (
    ("node.kubernetes.io/not-ready", NO_EXECUTE),
    ("node.kubernetes.io/unreachable", NO_EXECUTE),
    ("node.kubernetes.io/disk-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/pid-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/unschedulable", NO_SCHEDULE),
)
_NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", NO_SCHEDULE)


# -- daemon pod templates ---------------------------------------------------------------------


def _match_toleration(a: Obj, b: Obj) -> bool:
    """Toleration.MatchToleration: same key, operator, value and effect."""
    return all((a.get(f) or "") == (b.get(f) or "") for f in ("key", "operator", "value", "effect"))


def add_or_update_toleration(spec: Obj, toleration: Obj) -> bool:
    """v1helper.AddOrUpdateTolerationInPodSpec: add `toleration`, or replace the one it matches."""
    tolerations = list(spec.get("tolerations") or ())
    for i, old in enumerate(tolerations):
        if _match_toleration(old, toleration):
            if old == toleration:
                return False
            tolerations[i] = dict(toleration)
            spec["tolerations"] = tolerations
            return True
    tolerations.append(dict(toleration))
    spec["tolerations"] = tolerations
    return True


def add_daemon_pod_tolerations(spec: Obj) -> None:
    """util.AddOrUpdateDaemonPodTolerations: daemon pods survive node problems and cordons."""
    wanted = list(_DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append(_NETWORK_UNAVAILABLE)
    for key, effect in wanted:
        add_or_update_toleration(spec, {"key": key, "operator": "Exists", "effect": effect})


def template_generation(ds: Obj) -> int | None:
    """util.GetTemplateGeneration: the deprecated annotation extensions/v1beta1 DaemonSets carried."""
    raw = (ds["metadata"].get("annotations") or {}).get(DEPRECATED_TEMPLATE_GENERATION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def create_pod_template(template: Obj, generation: int | None, hash_: str) -> Obj:
    """util.CreatePodTemplate: the template with the daemon tolerations and the revision hash label."""
    out = meta.clone(template)
    add_daemon_pod_tolerations(out.setdefault("spec", {}))
    labels = out.setdefault("metadata", {}).setdefault("labels", {})
    if generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = str(generation)
    if hash_:
        labels[CONTROLLER_REVISION_HASH_LABEL] = hash_
    return out


def replace_node_name_node_affinity(affinity: Obj | None, node_name: str) -> Obj:
    """util.ReplaceDaemonSetPodNodeNameNodeAffinity: the required node affinity becomes exactly
    ``matchFields metadata.name In [node]`` (the controller checked the rest already)."""
    selector = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": OBJECT_NAME_FIELD, "operator": "In", "values": [node_name]}]}
        ]
    }
    out = dict(affinity or {})
    node_affinity = dict(out.get("nodeAffinity") or {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = selector
    out["nodeAffinity"] = node_affinity
    return out


def target_node_name(pod: Obj) -> str | None:
    """util.GetTargetNodeName: spec.nodeName, or the node the daemon affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or ():
        for expr in term.get("matchFields") or ():
            if expr.get("key") == OBJECT_NAME_FIELD and expr.get("operator") == "In":
                values = expr.get("values") or []
                return values[0] if len(values) == 1 else None
    return None


def is_pod_updated(pod: Obj, hash_: str, generation: int | None) -> bool:
    """util.IsPodUpdated: the pod is of the current revision."""
    labels = pod["metadata"].get("labels") or {}
    template_matches = generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == str(generation)
    return template_matches or (bool(hash_) and labels.get(CONTROLLER_REVISION_HASH_LABEL) == hash_)


class DaemonPodPredicates:
    """NodeShouldRunDaemonPod for one DaemonSet: the template (with the daemon tolerations) as
    the pod the scheduler would see, checked against each node."""

    def __init__(self, ds: Obj) -> None:
        template = (ds.get("spec") or {}).get("template") or {}
        spec = meta.clone(template.get("spec") or {})
        add_daemon_pod_tolerations(spec)
        self.node_name = spec.get("nodeName") or ""
        self.tolerations: list[Obj] = spec.get("tolerations") or []
        self.pod = {"metadata": {"namespace": ds["metadata"].get("namespace")}, "spec": spec}

    def should_run(self, node: Obj) -> tuple[bool, bool]:
        """(shouldRun, shouldContinueRunning) on `node`."""
        name = node["metadata"]["name"]
        if self.node_name and self.node_name != name:
            return False, False
        if not pod_matches_node_selector_and_affinity(self.pod, node):
            return False, False
        taints = (node.get("spec") or {}).get("taints") or []
        if find_untolerated_taint(
            taints, self.tolerations, lambda t: t.get("effect") in (NO_SCHEDULE, NO_EXECUTE)
        ):
            # scheduled daemon pods keep running while they tolerate the NoExecute taints
            untolerated = find_untolerated_taint(
                taints, self.tolerations, lambda t: t.get("effect") == NO_EXECUTE
            )
            return False, untolerated is None
        return True, True


def node_should_run_daemon_pod(node: Obj, ds: Obj) -> tuple[bool, bool]:
    return DaemonPodPredicates(ds).should_run(node)


# -- counts and ordering ------------------------------------------------------------------------


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(
            f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}"
        )
    pct = int(value[:-1])
    return math.ceil(pct * total / 100) if round_up else (pct * total) // 100


def _rolling(ds: Obj) -> Obj | None:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate")


def surge_count(ds: Obj, number_to_schedule: int) -> int:
    rolling = _rolling(ds)
    return scaled_value((rolling or {}).get("maxSurge"), number_to_schedule, round_up=True) if rolling else 0


def unavailable_count(ds: Obj, number_to_schedule: int) -> int:
    rolling = _rolling(ds)
    return (
        scaled_value((rolling or {}).get("maxUnavailable"), number_to_schedule, round_up=True)
        if rolling
        else 0
    )


def allows_surge(ds: Obj) -> bool:
    try:
        return surge_count(ds, 1) > 0
    except ValueError:
        return False


def _by_creation_timestamp_and_phase(pod: Obj) -> tuple[int, str, str]:
    """podByCreationTimestampAndPhase: scheduled pods first, then the oldest, then by name."""
    return (
        0 if (pod.get("spec") or {}).get("nodeName") else 1,
        pod["metadata"].get("creationTimestamp") or "",
        pod["metadata"].get("name") or "",
    )


def _is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class FailedPodsBackoff:
    """flowcontrol.Backoff keyed by DaemonSet UID and node: how long a failed daemon pod waits
    before it is killed (and recreated) again."""

    def __init__(self, initial: float, maximum: float, clock: Any = time.monotonic) -> None:
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (backoff, last update)

    def _expired(self, now: float, last: float) -> bool:
        return now - last > 2 * self.maximum

    def in_backoff_since_update(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        if entry is None or self._expired(now, entry[1]):
            return False
        return now - entry[1] < entry[0]

    def next(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        backoff = (
            self.initial if entry is None or self._expired(now, entry[1]) else min(entry[0] * 2, self.maximum)
        )
        self._entries[key] = (backoff, now)

    def get(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def gc(self) -> None:
        now = self.clock()
        for key in [k for k, (_, last) in self._entries.items() if self._expired(now, last)]:
            del self._entries[key]


def _selector_is_empty(selector: Obj | None) -> bool:
    return not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def _node_in_same_condition(old: list[Obj], new: list[Obj]) -> bool:
    """nodeInSameCondition: the same condition types with the same statuses."""
    return {c.get("type"): c.get("status") for c in old} == {c.get("type"): c.get("status") for c in new}


def should_ignore_node_update(old: Obj, new: Obj) -> bool:
    """shouldIgnoreNodeUpdate: nothing but the resourceVersion and condition timestamps changed."""
    if not _node_in_same_condition(
        (old.get("status") or {}).get("conditions") or [], (new.get("status") or {}).get("conditions") or []
    ):
        return False

    def strip(node: Obj) -> Obj:
        out = dict(node)
        out["metadata"] = {
            k: v for k, v in node["metadata"].items() if k not in ("resourceVersion", "managedFields")
        }
        out["status"] = {k: v for k, v in (node.get("status") or {}).items() if k != "conditions"}
        return out

    return strip(old) == strip(new)


# -- the controller -------------------------------------------------------------------------------


class DaemonSetsController(QueueController):
    name = "daemonset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers("daemonset", 2))
        self.client = ctx.client
        self.recorder = ctx.recorder("daemonset-controller")
        self.pod_control = PodControl(self.client, self.recorder)
        self.expectations = ControllerExpectations()
        self.failed_pods_backoff = FailedPodsBackoff(*FAILED_PODS_BACKOFF)
        self.burst_replicas = BURST_REPLICAS

        informers = ctx.informers
        self.ds_informer = informers.informer_for(DAEMON_SETS)
        self.history_informer = informers.informer_for(CONTROLLER_REVISIONS)
        self.pod_informer = informers.informer_for(PODS)
        self.node_informer = informers.informer_for(NODES)
        self.history = History(self.client, self.history_informer)

        self.ds_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda ds, _i: self.enqueue(ds),
                update_func=self._update_daemon_set,
                delete_func=self._delete_daemon_set,
            )
        )
        self.history_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda h, _i: self._add_history(h),
                update_func=self._update_history,
                delete_func=self._delete_history,
            )
        )
        self.pod_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda p, _i: self._add_pod(p),
                update_func=self._update_pod,
                delete_func=self._delete_pod,
            )
        )
        self.node_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda n, _i: self._add_node(n),
                update_func=self._update_node,
                delete_func=lambda _n: self._enqueue_all(),
            )
        )
        self.synced = [self.ds_informer, self.history_informer, self.pod_informer, self.node_informer]

    # -- event handlers ---------------------------------------------------------------------------

    def _update_daemon_set(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("uid") != new["metadata"].get("uid"):
            self._delete_daemon_set(old)
        self.enqueue(new)

    def _delete_daemon_set(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        key = key_of(obj)
        # a DaemonSet recreated with this name starts with clean expectations
        self.expectations.delete(key)
        self.queue.add(key)

    def _resolve_controller_ref(self, namespace: str, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != "DaemonSet":
            return None
        ds = self.ds_informer.indexer.get_by_key(f"{namespace}/{ref.get('name')}")
        if ds is None or ds["metadata"].get("uid") != ref.get("uid"):
            return None
        return ds

    def _daemon_sets_selecting(self, obj: Obj) -> list[Obj]:
        """getDaemonSetsForPod / getDaemonSetsForHistory: the DaemonSets whose selector matches."""
        labels = obj["metadata"].get("labels") or {}
        if not labels:
            return []
        ns = obj["metadata"].get("namespace") or ""
        out = []
        for ds in self.ds_informer.indexer.by_index("namespace", ns):
            selector = (ds.get("spec") or {}).get("selector")
            if _selector_is_empty(selector):
                continue
            try:
                if LabelSelector.from_label_selector(selector).matches(labels):
                    out.append(ds)
            except Exception:
                continue
        return out

    def _add_history(self, history: Obj) -> None:
        if history["metadata"].get("deletionTimestamp"):
            self._delete_history(history)
            return
        ref = controller_ref(history)
        if ref is not None:
            ds = self._resolve_controller_ref(history["metadata"].get("namespace") or "", ref)
            if ds is not None:
                self.enqueue(ds)
            return
        for ds in self._daemon_sets_selecting(history):
            self.enqueue(ds)

    def _update_history(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        ns = new["metadata"].get("namespace") or ""
        cur_ref, old_ref = controller_ref(new), controller_ref(old)
        if cur_ref != old_ref and old_ref is not None:
            ds = self._resolve_controller_ref(ns, old_ref)
            if ds is not None:
                self.enqueue(ds)
        if cur_ref is not None:
            ds = self._resolve_controller_ref(ns, cur_ref)
            if ds is not None:
                self.enqueue(ds)
            return
        if (old["metadata"].get("labels") or {}) != (
            new["metadata"].get("labels") or {}
        ) or cur_ref != old_ref:
            for ds in self._daemon_sets_selecting(new):
                self.enqueue(ds)

    def _delete_history(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        history = unwrap(obj)
        ds = self._resolve_controller_ref(history["metadata"].get("namespace") or "", controller_ref(history))
        if ds is not None:
            self.enqueue(ds)

    def _add_pod(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            # a restarted controller may first see a pod already being deleted: not a creation
            self._delete_pod(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            ds = self._resolve_controller_ref(pod["metadata"].get("namespace") or "", ref)
            if ds is not None:
                key = key_of(ds)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        # an orphan: the DaemonSets that might adopt it (no creation is observed for orphans)
        for ds in self._daemon_sets_selecting(pod):
            self.enqueue(ds)

    def _update_pod(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        if new["metadata"].get("deletionTimestamp"):
            # a graceful delete: act now rather than when the kubelet finally removes the pod
            self._delete_pod(new)
            return
        ns = new["metadata"].get("namespace") or ""
        cur_ref, old_ref = controller_ref(new), controller_ref(old)
        if cur_ref != old_ref and old_ref is not None:
            ds = self._resolve_controller_ref(ns, old_ref)
            if ds is not None:
                self.enqueue(ds)
        if cur_ref is not None:
            ds = self._resolve_controller_ref(ns, cur_ref)
            if ds is None:
                return
            self.enqueue(ds)
            min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
            if not is_pod_ready(old) and is_pod_ready(new) and min_ready > 0:
                # a second more, against clock skew (upstream's comment on AddAfter)
                self.enqueue_after(ds, min_ready + 1)
            return
        if (old["metadata"].get("labels") or {}) != (
            new["metadata"].get("labels") or {}
        ) or cur_ref != old_ref:
            for ds in self._daemon_sets_selecting(new):
                self.enqueue(ds)

    def _delete_pod(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        pod = unwrap(obj)
        ref = controller_ref(pod)
        if ref is None:
            return  # nobody waits for an orphan to go
        ds = self._resolve_controller_ref(pod["metadata"].get("namespace") or "", ref)
        if ds is None:
            return
        key = key_of(ds)
        self.expectations.deletion_observed(key)
        self.queue.add(key)

    def _add_node(self, node: Obj) -> None:
        for ds in self.ds_informer.indexer.list():
            if DaemonPodPredicates(ds).should_run(node)[0]:
                self.enqueue(ds)

    def _update_node(self, old: Obj, new: Obj) -> None:
        if should_ignore_node_update(old, new):
            return
        for ds in self.ds_informer.indexer.list():
            predicates = DaemonPodPredicates(ds)
            if predicates.should_run(old) != predicates.should_run(new):
                self.enqueue(ds)

    def _enqueue_all(self) -> None:
        for ds in self.ds_informer.indexer.list():
            self.enqueue(ds)

    # -- sync ---------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ds = self.ds_informer.indexer.get_by_key(key)
        if ds is None:
            self.expectations.delete(key)
            return
        nodes = self.node_informer.indexer.list()
        if _selector_is_empty((ds.get("spec") or {}).get("selector")):
            self.recorder.event(
                ds,
                WARNING,
                SELECTING_ALL_REASON,
                "This daemon set is selecting all pods. A non-empty selector is required.",
            )
            return
        if ds["metadata"].get("deletionTimestamp"):
            return  # the garbage collector takes the pods
        self.failed_pods_backoff.gc()
        cur, old = await self.construct_history(ds)
        hash_ = (cur["metadata"].get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL, "")
        if not self.expectations.satisfied(key):
            # creations or deletions still in flight: only the status, from what is known
            await self.update_daemon_set_status(ds, nodes, hash_, update_observed_gen=False)
            return
        err: Exception | None = None
        try:
            await self.update_daemon_set(ds, nodes, hash_, key, old)
        except Exception as e:
            err = e
        try:
            await self.update_daemon_set_status(ds, nodes, hash_, update_observed_gen=True)
        except Exception as e:
            if err is None:
                raise
            log.warning("daemonset %s: failed to update status: %s", key, e)
        if err is not None:
            raise err

    async def update_daemon_set(
        self, ds: Obj, nodes: list[Obj], hash_: str, key: str, old: list[Obj]
    ) -> None:
        await self.manage(ds, nodes, hash_)
        if self.expectations.satisfied(key):
            if ((ds.get("spec") or {}).get("updateStrategy") or {}).get(
                "type", "RollingUpdate"
            ) == "RollingUpdate":
                await self.rolling_update(ds, nodes, hash_)
        await self.cleanup_history(ds, old)

    # -- pods per node ------------------------------------------------------------------------------

    async def get_daemon_pods(self, ds: Obj) -> list[Obj]:
        """The pods `ds` controls, adopting matching orphans and releasing the ones it no longer selects."""
        ns = ds["metadata"].get("namespace") or ""
        selector = LabelSelector.from_label_selector((ds.get("spec") or {}).get("selector"))
        pods = self.pod_informer.indexer.by_index("namespace", ns)
        manager = ControllerRefManager(self.client, PODS, ds, selector)
        return await manager.claim(pods)

    async def get_nodes_to_daemon_pods(self, ds: Obj, include_deleted_terminal: bool) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for pod in await self.get_daemon_pods(ds):
            if (
                not include_deleted_terminal
                and _is_terminal(pod)
                and pod["metadata"].get("deletionTimestamp")
            ):
                continue  # a terminal, deleted daemon pod is not scheduled any more
            node = target_node_name(pod)
            if node is None:
                continue
            out.setdefault(node, []).append(pod)
        return out

    def pods_should_be_on_node(
        self,
        ds: Obj,
        node: Obj,
        node_to_daemon_pods: dict[str, list[Obj]],
        hash_: str,
        predicates: DaemonPodPredicates,
    ) -> tuple[list[str], list[Obj], int]:
        """(nodes needing a daemon pod, pods to delete, failed pods seen) for one node."""
        should_run, should_continue_running = predicates.should_run(node)
        node_name = node["metadata"]["name"]
        daemon_pods = node_to_daemon_pods.get(node_name)
        needing: list[str] = []
        to_delete: list[Obj] = []
        failed = 0
        if should_run and not daemon_pods:
            needing.append(node_name)
        elif should_continue_running and daemon_pods:
            running: list[Obj] = []
            for pod in daemon_pods:
                if pod["metadata"].get("deletionTimestamp"):
                    continue
                if (pod.get("status") or {}).get("phase") == "Failed":
                    failed += 1
                    # kubelets that reject pods fight the controller here: back off per node
                    backoff_key = f"{ds['metadata'].get('uid')}/{node_name}"
                    now = self.failed_pods_backoff.clock()
                    if self.failed_pods_backoff.in_backoff_since_update(backoff_key, now):
                        delay = self.failed_pods_backoff.get(backoff_key)
                        self.enqueue_after(ds, delay)
                        continue
                    self.failed_pods_backoff.next(backoff_key, now)
                    md = pod["metadata"]
                    self.recorder.event(
                        ds,
                        WARNING,
                        FAILED_DAEMON_POD_REASON,
                        f"Found failed daemon pod {md['namespace']}/{md['name']} on node {node_name}, "
                        "will try to kill it",
                    )
                    to_delete.append(pod)
                else:
                    running.append(pod)
            if len(running) > 1:
                running.sort(key=_by_creation_timestamp_and_phase)
                if not allows_surge(ds):
                    # one pod per node: keep the oldest
                    to_delete.extend(running[1:])
                else:
                    # surging: keep the oldest new pod and the oldest old pod while the new one
                    # is not yet available and the old one is ready; delete the rest
                    oldest_new = oldest_old = None
                    for pod in running:
                        if (pod["metadata"].get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL) == hash_:
                            if oldest_new is None:
                                oldest_new = pod
                                continue
                        elif oldest_old is None:
                            oldest_old = pod
                            continue
                        to_delete.append(pod)
                    if oldest_new is not None and oldest_old is not None:
                        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
                        if not is_pod_ready(oldest_old) or is_pod_available(oldest_new, min_ready):
                            to_delete.append(oldest_old)
            elif not running and should_run and allows_surge(ds):
                needing.append(node_name)  # surging: at least one pod not being deleted
        elif not should_continue_running and daemon_pods:
            to_delete.extend(p for p in daemon_pods if not p["metadata"].get("deletionTimestamp"))
        return needing, to_delete, failed

    async def manage(self, ds: Obj, nodes: list[Obj], hash_: str) -> None:
        node_to_daemon_pods = await self.get_nodes_to_daemon_pods(ds, include_deleted_terminal=True)
        predicates = DaemonPodPredicates(ds)
        needing: list[str] = []
        to_delete: list[Obj] = []
        failed = 0
        for node in nodes:
            n, d, f = self.pods_should_be_on_node(ds, node, node_to_daemon_pods, hash_, predicates)
            needing += n
            to_delete += d
            failed += f
        # pods waiting to be scheduled onto nodes that no longer exist: nobody else removes them
        names = {n["metadata"]["name"] for n in nodes}
        for node_name, pods in node_to_daemon_pods.items():
            if node_name not in names:
                to_delete.extend(
                    p
                    for p in pods
                    if not (p.get("spec") or {}).get("nodeName")
                    and not p["metadata"].get("deletionTimestamp")
                )
        await self.sync_nodes(ds, to_delete, needing, hash_)
        if failed:
            # an error, so that the rate limiter spaces out kill-and-recreate loops
            md = ds["metadata"]
            raise RuntimeError(f"deleted {failed} failed pods of DaemonSet {md['namespace']}/{md['name']}")

    async def sync_nodes(self, ds: Obj, to_delete: list[Obj], needing: list[str], hash_: str) -> None:
        """Delete `to_delete` and create a daemon pod for each node in `needing` (slow start)."""
        key = key_of(ds)
        create_diff = min(len(needing), self.burst_replicas)
        delete_diff = min(len(to_delete), self.burst_replicas)
        self.expectations.expect(key, add=create_diff, delete=delete_diff)
        errors: list[BaseException] = []

        template = create_pod_template(
            (ds.get("spec") or {}).get("template") or {}, template_generation(ds), hash_
        )
        prefix = generate_name_prefix(ds["metadata"]["name"])

        async def create(node_name: str) -> None:
            pod = pod_from_template(template, ds, generate_name=prefix)
            pod["spec"]["affinity"] = replace_node_name_node_affinity(pod["spec"].get("affinity"), node_name)
            try:
                created = await self.pod_control.create_pod(pod, ds)
            except Exception:
                self.expectations.creation_observed(key)
                raise
            if created is None:  # the namespace is going away
                self.expectations.creation_observed(key)

        pos, batch = 0, min(create_diff, SLOW_START_INITIAL_BATCH_SIZE)
        while pos < create_diff:
            results = await asyncio.gather(
                *(create(n) for n in needing[pos : pos + batch]), return_exceptions=True
            )
            batch_errors = [r for r in results if isinstance(r, BaseException)]
            errors += batch_errors
            pos += batch
            if batch_errors:
                skipped = create_diff - pos
                if skipped > 0:
                    # the ones never attempted are not expected; a later sync retries them
                    self.expectations.lower(key, add=skipped)
                break
            batch = min(2 * batch, create_diff - pos)

        async def delete(pod: Obj) -> None:
            try:
                await self.pod_control.delete_pod(pod, ds)
            except Exception:
                self.expectations.deletion_observed(key)
                raise

        results = await asyncio.gather(*(delete(p) for p in to_delete[:delete_diff]), return_exceptions=True)
        errors += [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0] if len(errors) == 1 else RuntimeError("; ".join(str(e) for e in errors))

    # -- rolling update -----------------------------------------------------------------------------

    def _find_updated_pods_on_node(
        self, ds: Obj, pods: list[Obj], hash_: str
    ) -> tuple[Obj | None, Obj | None, bool]:
        """findUpdatedPodsOnNode: (new pod, old pod, ok); not ok when there are several of either."""
        generation = template_generation(ds)
        new_pod = old_pod = None
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            if is_pod_updated(pod, hash_, generation):
                if new_pod is not None:
                    return None, None, False
                new_pod = pod
            else:
                if old_pod is not None:
                    return None, None, False
                old_pod = pod
        return new_pod, old_pod, True

    async def rolling_update(self, ds: Obj, nodes: list[Obj], hash_: str) -> None:
        node_to_daemon_pods = await self.get_nodes_to_daemon_pods(ds, include_deleted_terminal=False)
        predicates = DaemonPodPredicates(ds)
        nodes_by_name = {n["metadata"]["name"]: n for n in nodes}
        desired = 0
        for node in nodes:
            if predicates.should_run(node)[0]:
                desired += 1
                node_to_daemon_pods.setdefault(node["metadata"]["name"], [])
        max_unavailable = unavailable_count(ds, desired)
        max_surge = surge_count(ds, desired)
        if desired > 0 and max_unavailable == 0 and max_surge == 0:
            # an impossible configuration: accept one unavailable pod rather than stall
            max_unavailable = 1
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)

        def available(pod: Obj) -> bool:
            return is_pod_available(pod, min_ready)

        if max_surge == 0:
            # delete old pods within maxUnavailable; manage creates their replacements
            num_unavailable = 0
            allowed_replacements: list[Obj] = []
            candidates: list[Obj] = []
            for pods in node_to_daemon_pods.values():
                new_pod, old_pod, ok = self._find_updated_pods_on_node(ds, pods, hash_)
                if not ok:
                    num_unavailable += 1  # manage cleans this node up
                    continue
                if (old_pod is None) == (new_pod is None):
                    num_unavailable += 1  # manage creates or deletes here
                elif new_pod is not None:
                    if not available(new_pod):
                        num_unavailable += 1
                elif old_pod is not None:
                    if not available(old_pod):
                        allowed_replacements.append(old_pod)
                        num_unavailable += 1
                    elif num_unavailable < max_unavailable:
                        candidates.append(old_pod)
            remaining = min(max(0, max_unavailable - num_unavailable), len(candidates))
            await self.sync_nodes(ds, allowed_replacements + candidates[:remaining], [], hash_)
            return

        # surging: start a new pod next to an old one (at most maxSurge at a time); the old one
        # goes once the new one is available
        old_to_delete: list[Obj] = []
        should_not_run_to_delete: list[Obj] = []
        candidate_nodes: list[str] = []
        allowed_nodes: list[str] = []
        num_surge = num_available = 0
        for node_name, pods in node_to_daemon_pods.items():
            new_pod, old_pod, ok = self._find_updated_pods_on_node(ds, pods, hash_)
            if not ok:
                num_surge += 1
                continue
            if old_pod is not None:
                num_available += available(old_pod)
            elif new_pod is not None:
                num_available += available(new_pod)
            if old_pod is None:
                continue  # manage handles this node
            target = nodes_by_name.get(node_name)
            if new_pod is None:
                should_run = target is not None and predicates.should_run(target)[0]
                if not available(old_pod):
                    if not should_run:
                        old_to_delete.append(old_pod)
                        continue
                    allowed_nodes.append(node_name)
                else:
                    if not should_run:
                        should_not_run_to_delete.append(old_pod)
                        continue
                    if num_surge >= max_surge:
                        continue
                    candidate_nodes.append(node_name)
            else:
                if not available(new_pod):
                    num_surge += 1
                    continue
                old_to_delete.append(old_pod)
        remaining = max(0, max_surge - num_surge)
        # with maxSurge the owner expects full availability: a pod on a node the DaemonSet left
        # goes only once enough pods elsewhere are available
        deletable = min(num_available - desired, len(should_not_run_to_delete))
        if deletable > 0:
            old_to_delete += should_not_run_to_delete[:deletable]
        remaining = min(remaining, len(candidate_nodes))
        await self.sync_nodes(ds, old_to_delete, allowed_nodes + candidate_nodes[:remaining], hash_)

    # -- history ------------------------------------------------------------------------------------

    async def controlled_histories(self, ds: Obj) -> list[Obj]:
        ns = ds["metadata"].get("namespace") or ""
        selector = LabelSelector.from_label_selector((ds.get("spec") or {}).get("selector"))
        histories = self.history_informer.indexer.by_index("namespace", ns)
        manager = ControllerRefManager(self.client, CONTROLLER_REVISIONS, ds, selector)
        return await manager.claim(histories)

    async def construct_history(self, ds: Obj) -> tuple[Obj, list[Obj]]:
        """(the current revision, the old ones), creating or renumbering the current one."""
        wanted = template_patch(ds)
        current: list[Obj] = []
        old: list[Obj] = []
        for history in await self.controlled_histories(ds):
            labels = history["metadata"].get("labels") or {}
            if CONTROLLER_REVISION_HASH_LABEL not in labels:
                # label it with its name rather than a hash (no collision to worry about)
                clone = meta.clone(history)
                clone["metadata"].setdefault("labels", {})[CONTROLLER_REVISION_HASH_LABEL] = history[
                    "metadata"
                ]["name"]
                history = await self.client.update(CONTROLLER_REVISIONS, clone)
            if (history.get("data") or None) == wanted:
                current.append(history)
            else:
                old.append(history)
        next_number = max_revision(old) + 1
        if not current:
            cur = await self.snapshot(ds, next_number)
        else:
            cur = await self.dedup_cur_histories(ds, current)
            if revision_number(cur) < next_number:
                clone = meta.clone(cur)
                clone["revision"] = next_number
                cur = await self.client.update(CONTROLLER_REVISIONS, clone)
        return cur, old

    async def snapshot(self, ds: Obj, revision: int) -> Obj:
        """A new revision of the current template, named by ComputeHash(template, collisionCount)."""
        md = ds["metadata"]
        collision_count = (ds.get("status") or {}).get("collisionCount")
        hash_ = compute_hash((ds.get("spec") or {}).get("template") or {}, collision_count)
        name = f"{md['name']}-{hash_}"
        labels = dict(
            (((ds.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
        )
        labels[CONTROLLER_REVISION_HASH_LABEL] = hash_
        history_md: Obj = {
            "name": name,
            "namespace": md["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(ds)],
        }
        if md.get("annotations"):
            history_md["annotations"] = dict(md["annotations"])
        history = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": history_md,
            "data": template_patch(ds),
            "revision": revision,
        }
        try:
            return await self.client.create(CONTROLLER_REVISIONS, history, namespace=md["namespace"])
        except ClientError as e:
            if not is_already_exists(e):
                raise
            existing = await self.client.get(CONTROLLER_REVISIONS, name, namespace=md["namespace"])
            if (existing.get("data") or None) == history["data"]:
                return existing  # created by an earlier sync
            # a hash collision: bump collisionCount (unless ours is stale) and retry
            current = await self.client.get(DAEMON_SETS, md["name"], namespace=md["namespace"])
            current_count = (current.get("status") or {}).get("collisionCount")
            if current_count != collision_count:
                raise RuntimeError(
                    f"found a stale collision count ({collision_count}, expected {current_count}) of "
                    f"DaemonSet {md['name']!r} while processing; will retry until it is updated"
                ) from e
            current.setdefault("status", {})["collisionCount"] = (current_count or 0) + 1
            await self.client.update_status(DAEMON_SETS, current)
            raise

    async def dedup_cur_histories(self, ds: Obj, current: list[Obj]) -> Obj:
        """Keep the highest-numbered of several revisions with the current template; the pods
        labelled with the others' hashes are relabelled to it, the others deleted."""
        if len(current) == 1:
            return current[0]
        keep = max(current, key=revision_number)
        keep_hash = (keep["metadata"].get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL)
        for dup in current:
            if dup["metadata"]["name"] == keep["metadata"]["name"]:
                continue
            dup_hash = (dup["metadata"].get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL)
            for pod in await self.get_daemon_pods(ds):
                if (pod["metadata"].get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL) != dup_hash:
                    continue
                try:
                    await self.client.patch(
                        PODS,
                        pod["metadata"]["name"],
                        {"metadata": {"labels": {CONTROLLER_REVISION_HASH_LABEL: keep_hash}}},
                        namespace=pod["metadata"]["namespace"],
                        patch_type=PatchType.STRATEGIC,
                    )
                except ClientError as e:
                    if not is_not_found(e):
                        raise
            await self.history.delete_controller_revision(dup)
        return keep

    async def cleanup_history(self, ds: Obj, old: list[Obj]) -> None:
        """Delete the oldest revisions beyond revisionHistoryLimit that no live pod uses."""
        limit = (ds.get("spec") or {}).get("revisionHistoryLimit")
        to_kill = len(old) - (10 if limit is None else int(limit))
        if to_kill <= 0:
            return
        node_to_daemon_pods = await self.get_nodes_to_daemon_pods(ds, include_deleted_terminal=False)
        live = {
            h
            for pods in node_to_daemon_pods.values()
            for p in pods
            if (h := (p["metadata"].get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL))
        }
        for history in sort_controller_revisions(old):
            if to_kill <= 0:
                break
            if (history["metadata"].get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL) in live:
                continue
            await self.history.delete_controller_revision(history)
            to_kill -= 1

    # -- status ---------------------------------------------------------------------------------------

    async def update_daemon_set_status(
        self, ds: Obj, nodes: Iterable[Obj], hash_: str, *, update_observed_gen: bool
    ) -> None:
        node_to_daemon_pods = await self.get_nodes_to_daemon_pods(ds, include_deleted_terminal=False)
        predicates = DaemonPodPredicates(ds)
        generation = template_generation(ds)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        desired = current = misscheduled = ready = updated = available = 0
        for node in nodes:
            should_run = predicates.should_run(node)[0]
            pods = node_to_daemon_pods.get(node["metadata"]["name"]) or []
            if should_run:
                desired += 1
                if not pods:
                    continue
                current += 1
                pod = min(pods, key=_by_creation_timestamp_and_phase)  # the oldest counts
                if is_pod_ready(pod):
                    ready += 1
                    if is_pod_available(pod, min_ready):
                        available += 1
                if is_pod_updated(pod, hash_, generation):
                    updated += 1
            elif pods:
                misscheduled += 1
        counts = {
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
        }
        await self.store_daemon_set_status(ds, counts, update_observed_gen)
        if min_ready > 0 and ready != available:
            # a last line of defence against clock skew
            self.enqueue_after(ds, min_ready)

    async def store_daemon_set_status(
        self, ds: Obj, counts: dict[str, int], update_observed_gen: bool
    ) -> None:
        status = ds.get("status") or {}
        generation = ds["metadata"].get("generation") or 0
        if (
            all(int(status.get(k) or 0) == v for k, v in counts.items())
            and int(status.get("observedGeneration") or 0) >= generation
        ):
            return
        to_update = meta.clone(ds)
        for attempt in range(STATUS_UPDATE_RETRIES + 1):
            new_status = to_update.setdefault("status", {})
            if update_observed_gen:
                new_status["observedGeneration"] = generation
            new_status.update(counts)
            try:
                await self.client.update_status(DAEMON_SETS, to_update)
                return
            except ClientError as e:
                if not is_conflict(e) or attempt == STATUS_UPDATE_RETRIES:
                    raise
            md = ds["metadata"]
            to_update = await self.client.get(DAEMON_SETS, md["name"], namespace=md["namespace"])
