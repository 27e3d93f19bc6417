"""VolumeBinding: a pod's PersistentVolumeClaims must be bound, or bindable, on the chosen node.

Modelled on kube-scheduler 1.32's ``pkg/scheduler/framework/plugins/volumebinding`` (the plugin,
``binder.go``'s volumeBinder and the PV/PVC assume caches), with the helpers it borrows from
``component-helpers/storage/volume`` at the bottom of this module (the other volume plugins
import them from here).

How a pod's claims flow through the extension points:

- **PreFilter** checks every claim exists (``persistentvolumeclaim "x" not found``), is not being
  deleted or lost, and sorts them: *bound* (``spec.volumeName`` set and the PV controller's
  ``pv.kubernetes.io/bind-completed`` annotation present), *unbound with delayed binding*
  (their StorageClass says ``WaitForFirstConsumer``) and *unbound immediate* (anything else,
  prebound claims included), which the PV controller should have bound already: the pod is
  UnschedulableAndUnresolvable until it does. A pod without claims is skipped here, so the
  common case costs one pass over ``spec.volumes``.
- **Filter** (per node): bound claims' PVs must admit the node by their ``spec.nodeAffinity``;
  each delayed claim needs an available PV that fits (capacity, access modes, volume mode,
  class, selector, node affinity; the smallest wins) or else a StorageClass whose provisioner
  can create one in a topology (``allowedTopologies``, CSIStorageCapacity) the node is in.
- **Reserve** *assumes* the decisions in memory: the chosen PVs get a ``claimRef``, the claims
  to provision get ``volume.kubernetes.io/selected-node``, so the next scheduling cycles (which
  run while this pod's binding cycle is still writing) do not hand the same PV to another pod.
  **Unreserve** drops the assumptions.
- **PreBind** writes them through the API (PUT, so a concurrent change is a conflict, not a
  silent overwrite) and then waits, up to ``bindTimeoutSeconds``, for the PV controller (and a
  provisioner) to finish: the claim Bound with ``bind-completed``. The wait reads the
  informer caches, as upstream does, never the assumed objects.

The assume cache is upstream's: a layer over the informer's Indexer holding the objects this
scheduler wrote (or is about to write) until the informer delivers a newer version of them.
Upstream keeps it current from informer events; here the Indexer is only read, so an
assumption is dropped lazily, the first time it is read after the informer moved past it.

What upstream does that this does not: translating in-tree cloud-disk PVs (GCE PD, EBS, ...)
to their CSI drivers before checking node affinity (CSI migration), VolumeAttributesClass
matching (off by default in 1.32), and volume metrics.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any

from k8py.api.selectors import LabelSelector
from k8py.api.validation.quantity import parse_quantity
from k8py.client import APIError, ClientError
from k8py.client.cache import Indexer, meta_namespace_key
from k8py.client.resources import PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES
from k8py.scheduler.framework.interface import (
    SKIP,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    Code,
    CycleState,
    EventResource,
    Handle,
    PreFilterResult,
    QueueingHint,
    Status,
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, PodInfo
from k8py.scheduler.plugins.helper import build_broken_linear_function

Obj = dict[str, Any]

NAME = "VolumeBinding"
STATE_KEY = NAME

# conflict reasons (binder.go)
ERR_REASON_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
ERR_REASON_NODE_CONFLICT = "node(s) had volume node affinity conflict"
ERR_REASON_NOT_ENOUGH_SPACE = "node(s) did not have enough free storage"
ERR_REASON_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
ERR_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"

# annotations and names shared with the PV controller and provisioners (component-helpers/storage/volume)
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
BETA_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
NOT_SUPPORTED_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
PV_STORAGE_CLASS_INDEX = "storageclass"

DEFAULT_BIND_TIMEOUT_SECONDS = 600
MAX_UTILIZATION = 100
MAX_CUSTOM_PRIORITY_SCORE = 10
MAX_NODE_SCORE = 100


class BinderError(Exception):
    """Something went wrong (as opposed to a node that does not fit): the attempt errors."""


# -- the assume cache ---------------------------------------------------------------------------


class AssumeCache:
    """assumecache.AssumeCache: an informer's objects, overlaid with the ones this scheduler assumed.

    ``get``/``list`` answer the assumed version of an object until the informer holds a newer
    one (a higher resourceVersion, or none: deleted); ``get_api`` always answers the informer's.
    The Indexer is looked up on every call (``handle.lister``), so a cache built before the
    informers were registered still sees them.
    """

    def __init__(
        self,
        handle: Handle,
        resource: str,
        description: str,
        *,
        index_name: str | None = None,
        index_func: Any = None,
    ) -> None:
        self._handle = handle
        self._resource = resource
        self.description = description
        self._index_name = index_name
        self._index_func = index_func
        self._indexed: Indexer | None = None
        self._assumed: dict[str, Obj] = {}

    def _store(self) -> Indexer:
        return self._handle.lister(self._resource)

    def get(self, key: str) -> Obj | None:
        api = self._store().get_by_key(key)
        assumed = self._assumed.get(key)
        if assumed is None:
            return api
        if api is None or resource_version(api) > resource_version(assumed):
            # the informer moved past the assumption (or the object is gone): it is void
            del self._assumed[key]
            return api
        return assumed

    def get_api(self, key: str) -> Obj | None:
        return self._store().get_by_key(key)

    def list(self, index_value: str | None = None) -> list[Obj]:
        store = self._store()
        if index_value is None or self._index_name is None:
            objs = store.list()
        else:
            if store is not self._indexed:
                if self._index_name not in store.get_indexers():
                    store.add_indexers({self._index_name: self._index_func})
                self._indexed = store
            objs = store.by_index(self._index_name, index_value)
        if not self._assumed:
            return objs
        out = []
        for obj in objs:
            current = self.get(meta_namespace_key(obj))
            out.append(current if current is not None else obj)
        return out

    def assume(self, obj: Obj) -> None:
        """Replace the object in the cache until the informer has a newer version of it."""
        key = meta_namespace_key(obj)
        current = self.get(key)
        if current is None:
            raise BinderError(f'could not find {self.description} "{key}"')
        new_version, stored_version = resource_version(obj), resource_version(current)
        if new_version < stored_version:
            raise BinderError(
                f'{self.description} "{key}" is out of sync (stored: {stored_version}, assume: {new_version})'
            )
        self._assumed[key] = obj

    def restore(self, key: str) -> None:
        """Drop the assumption about the object: reads answer the informer's version again."""
        self._assumed.pop(key, None)

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed


# -- what the binder decides --------------------------------------------------------------------


class BindingInfo:
    """A PVC and the static PV chosen for it."""

    __slots__ = ("pvc", "pv")

    def __init__(self, pvc: Obj, pv: Obj) -> None:
        self.pvc = pvc
        self.pv = pv

    def storage_class_name(self) -> str:
        return (self.pv.get("spec") or {}).get("storageClassName") or ""

    def storage_resource(self) -> tuple[int, int]:
        """(requested, capacity) in bytes."""
        return _ceil(storage_request(self.pvc)), _ceil(storage_capacity(self.pv))


class PodVolumes:
    """The binding decisions for one node: static bindings and claims to provision."""

    __slots__ = ("static_bindings", "dynamic_provisions")

    def __init__(
        self, static_bindings: list[BindingInfo] | None = None, dynamic_provisions: list[Obj] | None = None
    ):
        self.static_bindings: list[BindingInfo] = static_bindings or []
        self.dynamic_provisions: list[Obj] = dynamic_provisions or []


class PodVolumeClaims:
    """A pod's claims sorted by binding state, with the PVs its delayed claims may bind to."""

    __slots__ = (
        "bound_claims",
        "unbound_claims_delay_binding",
        "unbound_claims_immediate",
        "unbound_volumes_delay_binding",
    )

    def __init__(self) -> None:
        self.bound_claims: list[Obj] = []
        self.unbound_claims_delay_binding: list[Obj] = []
        self.unbound_claims_immediate: list[Obj] = []
        self.unbound_volumes_delay_binding: dict[str, list[Obj]] = {}


class _State:
    """stateData: shared (not copied) by clones, as upstream's Clone returns itself."""

    __slots__ = ("all_bound", "pod_volumes_by_node", "pod_volume_claims", "has_static_bindings")

    def __init__(self, pod_volume_claims: PodVolumeClaims | None = None) -> None:
        self.all_bound = False
        self.pod_volumes_by_node: dict[str, PodVolumes] = {}
        self.pod_volume_claims = pod_volume_claims
        self.has_static_bindings = False

    def clone(self) -> _State:
        return self


# -- the plugin ---------------------------------------------------------------------------------


class VolumeBinding:
    name = NAME

    # PreBind's poll period (upstream: one second); tests may shorten it
    poll_interval = 1.0

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle = handle
        timeout = args.get("bindTimeoutSeconds", DEFAULT_BIND_TIMEOUT_SECONDS)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
            raise ValueError(
                f"bindTimeoutSeconds: Invalid value: {timeout!r}: invalid BindTimeoutSeconds, "
                "should not be a negative value"
            )
        self.bind_timeout = float(timeout)
        self.pv_cache = AssumeCache(
            handle,
            "persistentvolumes",
            "v1.PersistentVolume",
            index_name=PV_STORAGE_CLASS_INDEX,
            index_func=lambda pv: [pv_storage_class(pv)],
        )
        self.pvc_cache = AssumeCache(handle, "persistentvolumeclaims", "v1.PersistentVolumeClaim")
        shape = args.get("shape")
        self._scorer = _build_scorer(shape) if shape else None

    # -- EnqueueExtensions ---------------------------------------------------------------------

    def events_to_register(self) -> list[ClusterEventWithHint]:
        # 1.32 with scheduling queue hints on (the default): node Add and label updates only
        return [
            ClusterEventWithHint(
                ClusterEvent(EventResource.STORAGE_CLASS, ActionType.ADD | ActionType.UPDATE),
                self._after_storage_class_change,
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.PVC, ActionType.ADD | ActionType.UPDATE), self._after_pvc_change
            ),
            ClusterEventWithHint(ClusterEvent(EventResource.PV, ActionType.ADD | ActionType.UPDATE)),
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL)
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.CSI_NODE, ActionType.ADD | ActionType.UPDATE),
                self._after_csi_node_change,
            ),
            ClusterEventWithHint(ClusterEvent("CSIDriver", ActionType.UPDATE), self._after_csi_driver_change),
            ClusterEventWithHint(
                ClusterEvent("CSIStorageCapacity", ActionType.ADD | ActionType.UPDATE),
                self._after_csi_storage_capacity_change,
            ),
        ]

    @staticmethod
    def _after_csi_node_change(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if old is None or new is None:
            return QueueingHint.QUEUE
        key = "storage.alpha.kubernetes.io/migrated-plugins"
        if _annotations(old).get(key) != _annotations(new).get(key):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP

    @staticmethod
    def _after_pvc_change(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        pvc = new or old or {}
        meta = pod.get("metadata") or {}
        if (pvc.get("metadata") or {}).get("namespace") != meta.get("namespace"):
            return QueueingHint.SKIP
        name = (pvc.get("metadata") or {}).get("name")
        for vol in (pod.get("spec") or {}).get("volumes") or ():
            claim = volume_claim_name(pod, vol)
            if claim is not None and claim[0] == name:
                return QueueingHint.QUEUE
        return QueueingHint.SKIP

    @staticmethod
    def _after_storage_class_change(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if old is None or new is None:
            return QueueingHint.QUEUE
        if (old.get("allowedTopologies") or []) != (new.get("allowedTopologies") or []):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP

    @staticmethod
    def _after_csi_storage_capacity_change(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if old is None or new is None:
            return QueueingHint.QUEUE
        old_limit, new_limit = _volume_limit(old), _volume_limit(new)
        if new_limit is not None and (old_limit is None or new_limit > old_limit):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP

    @staticmethod
    def _after_csi_driver_change(pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if old is None or new is None:
            return QueueingHint.QUEUE
        name = (new.get("metadata") or {}).get("name")
        for vol in (pod.get("spec") or {}).get("volumes") or ():
            csi = vol.get("csi")
            if csi is None or csi.get("driver") != name:
                continue
            was, now = (
                (old.get("spec") or {}).get("storageCapacity"),
                (new.get("spec") or {}).get("storageCapacity"),
            )
            if was and not now:
                return QueueingHint.QUEUE
        return QueueingHint.SKIP

    # -- PreFilter ------------------------------------------------------------------------------

    def _pod_has_pvcs(self, pod: PodInfo) -> bool:
        """podHasPVCs: whether the pod uses claims; raises BinderError for an unusable one."""
        has_pvc = False
        pvcs = self.handle.lister("persistentvolumeclaims")
        for vol in pod.spec.get("volumes") or ():
            claim = volume_claim_name(pod.pod, vol)
            if claim is None:
                continue
            name, ephemeral = claim
            has_pvc = True
            pvc = pvcs.get_by_key(f"{pod.namespace}/{name}")
            if pvc is None:
                if ephemeral:
                    raise BinderError(
                        f'waiting for ephemeral volume controller to create the persistentvolumeclaim "{name}"'
                    )
                raise BinderError(not_found("persistentvolumeclaim", name))
            if (pvc.get("status") or {}).get("phase") == "Lost":
                raise BinderError(
                    f'persistentvolumeclaim "{name}" bound to non-existent persistentvolume '
                    f'"{(pvc.get("spec") or {}).get("volumeName") or ""}"'
                )
            if (pvc.get("metadata") or {}).get("deletionTimestamp"):
                raise BinderError(f'persistentvolumeclaim "{name}" is being deleted')
            if ephemeral and (err := volume_is_for_pod(pod.pod, pvc)):
                raise BinderError(err)
        return has_pvc

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        volumes = pod.spec.get("volumes")
        if not volumes or not any("persistentVolumeClaim" in v or "ephemeral" in v for v in volumes):
            state[STATE_KEY] = _State()
            return None, SKIP
        try:
            if not self._pod_has_pvcs(pod):
                state[STATE_KEY] = _State()
                return None, SKIP
        except BinderError as e:
            return None, unresolvable(str(e))
        try:
            claims = self.get_pod_volume_claims(pod)
        except BinderError as e:
            return None, Status(Code.ERROR, str(e), error=e)
        if claims.unbound_claims_immediate:
            # the PV controller binds these; the pod moves on once it has (a PVC event)
            return None, unresolvable(ERR_UNBOUND_IMMEDIATE)
        state[STATE_KEY] = _State(claims)
        return None, None

    def pre_filter_extensions(self) -> None:
        return None

    # -- Filter ---------------------------------------------------------------------------------

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s: _State | None = state.get(STATE_KEY)
        if s is None or s.pod_volume_claims is None:
            return Status(Code.ERROR, "not found")
        try:
            pod_volumes, reasons = self.find_pod_volumes(pod, s.pod_volume_claims, node)
        except BinderError as e:
            return Status(Code.ERROR, str(e), error=e)
        if reasons:
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, *reasons)
        s.pod_volumes_by_node[node.name] = pod_volumes
        s.has_static_bindings = s.has_static_bindings or bool(pod_volumes.static_bindings)
        return None

    # -- PreScore / Score (VolumeCapacityPriority: only with an explicit `shape` argument) --------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if self._scorer is None:
            return SKIP
        s: _State | None = state.get(STATE_KEY)
        if s is None:
            return Status(Code.ERROR, "not found")
        return None if s.has_static_bindings else SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> tuple[int, Status | None]:
        if self._scorer is None:
            return 0, None
        s: _State | None = state.get(STATE_KEY)
        if s is None:
            return 0, Status(Code.ERROR, "not found")
        pod_volumes = s.pod_volumes_by_node.get(node.name)
        if pod_volumes is None:
            return 0, None
        class_resources: dict[str, list[int]] = {}
        for binding in pod_volumes.static_bindings:
            requested, capacity = binding.storage_resource()
            acc = class_resources.setdefault(binding.storage_class_name(), [0, 0])
            acc[0] += requested
            acc[1] += capacity
        return self._scorer(class_resources), None

    def score_extensions(self) -> None:
        return None

    # -- Reserve / Unreserve --------------------------------------------------------------------

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        s: _State | None = state.get(STATE_KEY)
        if s is None:
            return Status(Code.ERROR, "not found")
        pod_volumes = s.pod_volumes_by_node.get(node_name)
        if pod_volumes is None:
            # the pod uses no claims
            s.all_bound = True
            return None
        try:
            s.all_bound = self.assume_pod_volumes(pod, node_name, pod_volumes)
        except BinderError as e:
            return Status(Code.ERROR, str(e), error=e)
        return None

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        s: _State | None = state.get(STATE_KEY)
        if s is None:
            return
        pod_volumes = s.pod_volumes_by_node.get(node_name)
        if pod_volumes is not None:
            self.revert_assumed_pod_volumes(pod_volumes)

    # -- PreBind --------------------------------------------------------------------------------

    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        s: _State | None = state.get(STATE_KEY)
        if s is None:
            return Status(Code.ERROR, "not found")
        if s.all_bound:
            return None
        pod_volumes = s.pod_volumes_by_node.get(node_name)
        if pod_volumes is None:
            return Status(Code.ERROR, f'no pod volumes found for node "{node_name}"')
        try:
            await self.bind_pod_volumes(pod, node_name, pod_volumes)
        except BinderError as e:
            return Status(Code.ERROR, str(e), error=e)
        return None

    # -- the binder -----------------------------------------------------------------------------

    def _is_volume_bound(self, pod: PodInfo, vol: Obj) -> tuple[bool, Obj | None]:
        """(fully bound, the claim); non-claim volumes count as bound. Raises BinderError."""
        claim = volume_claim_name(pod.pod, vol)
        if claim is None:
            return True, None
        name, ephemeral = claim
        key = f"{pod.namespace}/{name}"
        pvc = self.pvc_cache.get(key)
        if pvc is None:
            raise BinderError(f'error getting PVC "{key}": could not find v1.PersistentVolumeClaim "{key}"')
        if ephemeral and (err := volume_is_for_pod(pod.pod, pvc)):
            raise BinderError(err)
        return is_pvc_fully_bound(pvc), pvc

    def _are_pod_volumes_bound(self, pod: PodInfo) -> bool:
        for vol in pod.spec.get("volumes") or ():
            try:
                bound, _ = self._is_volume_bound(pod, vol)
            except BinderError:
                return False
            if not bound:
                return False
        return True

    def get_pod_volume_claims(self, pod: PodInfo) -> PodVolumeClaims:
        """GetPodVolumeClaims: bound, delayed and immediate claims, and the PVs by delayed class."""
        out = PodVolumeClaims()
        classes = self.handle.lister("storageclasses")
        for vol in pod.spec.get("volumes") or ():
            bound, pvc = self._is_volume_bound(pod, vol)
            if pvc is None:
                continue
            if bound:
                out.bound_claims.append(pvc)
                continue
            delay = is_delay_binding_mode(pvc, classes)
            if delay and not (pvc.get("spec") or {}).get("volumeName"):
                out.unbound_claims_delay_binding.append(pvc)
            else:
                # prebound claims count as immediate: the PV controller finishes them
                out.unbound_claims_immediate.append(pvc)
        for pvc in out.unbound_claims_delay_binding:
            cls = pvc_storage_class(pvc)
            if cls not in out.unbound_volumes_delay_binding:
                out.unbound_volumes_delay_binding[cls] = self.pv_cache.list(cls)
        return out

    def find_pod_volumes(
        self, pod: PodInfo, claims: PodVolumeClaims, node: NodeInfo
    ) -> tuple[PodVolumes, list[str]]:
        """FindPodVolumes: the binding decisions for `node`, or the reasons it cannot host the pod."""
        unbound_satisfied = bound_satisfied = sufficient_storage = bound_pvs_found = True
        static: list[BindingInfo] = []
        dynamic: list[Obj] = []
        if claims.bound_claims:
            bound_satisfied, bound_pvs_found = self._check_bound_claims(claims.bound_claims, node)
        if claims.unbound_claims_delay_binding:
            to_match: list[Obj] = []
            to_provision: list[Obj] = []
            skip = False
            for claim in claims.unbound_claims_delay_binding:
                selected = _annotations(claim).get(ANN_SELECTED_NODE)
                if selected is not None:
                    if selected != node.name:
                        # fast path: provisioning was already started for another node
                        unbound_satisfied = False
                        skip = True
                        break
                    to_provision.append(claim)
                else:
                    to_match.append(claim)
            if not skip:
                if to_match:
                    unbound_satisfied, static, unmatched = self._find_matching_volumes(
                        to_match, claims.unbound_volumes_delay_binding, node
                    )
                    to_provision.extend(unmatched)
                if to_provision:
                    unbound_satisfied, sufficient_storage, dynamic = self._check_volume_provisions(
                        to_provision, node
                    )
        reasons: list[str] = []
        if not bound_satisfied:
            reasons.append(ERR_REASON_NODE_CONFLICT)
        if not unbound_satisfied:
            reasons.append(ERR_REASON_BIND_CONFLICT)
        if not sufficient_storage:
            reasons.append(ERR_REASON_NOT_ENOUGH_SPACE)
        if not bound_pvs_found:
            reasons.append(ERR_REASON_PV_NOT_EXIST)
        return PodVolumes(static, dynamic), reasons

    def _check_bound_claims(self, claims: list[Obj], node: NodeInfo) -> tuple[bool, bool]:
        """(node affinity satisfied, all PVs found)."""
        for pvc in claims:
            pv = self.pv_cache.get((pvc.get("spec") or {}).get("volumeName") or "")
            if pv is None:
                return True, False
            if not check_volume_node_affinity(pv, node.labels):
                return False, True
        return True, True

    def _find_matching_volumes(
        self, claims: list[Obj], pvs_by_class: Mapping[str, list[Obj]], node: NodeInfo
    ) -> tuple[bool, list[BindingInfo], list[Obj]]:
        """(all matched, bindings, claims left to provision): the smallest fit for each claim,
        the claims taken in increasing order of requested size."""
        chosen: set[str] = set()
        bindings: list[BindingInfo] = []
        unbound: list[Obj] = []
        found = True
        for pvc in sorted(claims, key=storage_request):
            pv = find_matching_volume(pvc, pvs_by_class.get(pvc_storage_class(pvc), ()), node, chosen, True)
            if pv is None:
                unbound.append(pvc)
                found = False
                continue
            chosen.add(pv["metadata"]["name"])
            bindings.append(BindingInfo(pvc, pv))
        return found, bindings, unbound

    def _check_volume_provisions(self, claims: list[Obj], node: NodeInfo) -> tuple[bool, bool, list[Obj]]:
        """(provisioning possible, enough capacity, claims to provision)."""
        classes = self.handle.lister("storageclasses")
        dynamic: list[Obj] = []
        for claim in claims:
            class_name = pvc_storage_class(claim)
            if not class_name:
                raise BinderError(f'no class for claim "{meta_namespace_key(claim)}"')
            cls = classes.get_by_key(class_name)
            if cls is None:
                raise BinderError(f'failed to find storage class "{class_name}"')
            provisioner = cls.get("provisioner") or ""
            if not provisioner or provisioner == NOT_SUPPORTED_PROVISIONER:
                return False, True, []
            if not match_topology_selector_terms(cls.get("allowedTopologies"), node.labels):
                return False, True, []
            if not self._has_enough_capacity(provisioner, claim, cls, node):
                return True, False, []
            dynamic.append(claim)
        return True, True, dynamic

    def _has_enough_capacity(self, provisioner: str, claim: Obj, cls: Obj, node: NodeInfo) -> bool:
        """CSIStorageCapacity, for CSI drivers that opt into capacity tracking."""
        requests = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
        if "storage" not in requests:
            return True
        driver = self.handle.lister("csidrivers").get_by_key(provisioner)
        if driver is None or not (driver.get("spec") or {}).get("storageCapacity"):
            return True
        size = _ceil(storage_request(claim))
        class_name = (cls.get("metadata") or {}).get("name")
        for capacity in self.handle.lister("csistoragecapacities").list():
            if capacity.get("storageClassName") != class_name:
                continue
            limit = _volume_limit(capacity)
            if limit is None or limit < size:
                continue
            topology = capacity.get("nodeTopology")
            if topology is None:
                continue
            try:
                if LabelSelector.from_label_selector(topology).matches(node.labels):
                    return True
            except Exception:
                continue
        return False

    def assume_pod_volumes(self, pod: PodInfo, node_name: str, pod_volumes: PodVolumes) -> bool:
        """AssumePodVolumes: prebind the chosen PVs and mark the claims to provision, in memory.
        True when every claim is already fully bound (nothing to do at PreBind)."""
        if self._are_pod_volumes_bound(pod):
            return True
        new_bindings: list[BindingInfo] = []
        for binding in pod_volumes.static_bindings:
            new_pv, dirty = get_bind_volume_to_claim(binding.pv, binding.pvc)
            if dirty:
                try:
                    self.pv_cache.assume(new_pv)
                except BinderError:
                    self._revert_pvs(new_bindings)
                    raise
            new_bindings.append(BindingInfo(binding.pvc, new_pv))
        new_claims: list[Obj] = []
        for claim in pod_volumes.dynamic_provisions:
            clone = copy.deepcopy(claim)
            clone.setdefault("apiVersion", "v1")
            clone.setdefault("kind", "PersistentVolumeClaim")
            clone["metadata"].setdefault("annotations", {})[ANN_SELECTED_NODE] = node_name
            try:
                self.pvc_cache.assume(clone)
            except BinderError:
                self._revert_pvs(new_bindings)
                self._revert_pvcs(new_claims)
                raise
            new_claims.append(clone)
        pod_volumes.static_bindings = new_bindings
        pod_volumes.dynamic_provisions = new_claims
        return False

    def revert_assumed_pod_volumes(self, pod_volumes: PodVolumes) -> None:
        self._revert_pvs(pod_volumes.static_bindings)
        self._revert_pvcs(pod_volumes.dynamic_provisions)

    def _revert_pvs(self, bindings: Sequence[BindingInfo]) -> None:
        for binding in bindings:
            self.pv_cache.restore(binding.pv["metadata"]["name"])

    def _revert_pvcs(self, claims: Sequence[Obj]) -> None:
        for claim in claims:
            self.pvc_cache.restore(meta_namespace_key(claim))

    async def bind_pod_volumes(self, pod: PodInfo, node_name: str, pod_volumes: PodVolumes) -> None:
        """BindPodVolumes: write the assumed PVs and PVCs, then wait for the PV controller."""
        bindings = pod_volumes.static_bindings
        claims = pod_volumes.dynamic_provisions
        await self._bind_api_update(bindings, claims)
        try:
            async with asyncio.timeout(self.bind_timeout):
                while True:
                    await asyncio.sleep(self.poll_interval)
                    if self._check_bindings(pod, node_name, bindings, claims):
                        return
        except TimeoutError:
            raise BinderError("binding volumes: context deadline exceeded") from None
        except BinderError as e:
            raise BinderError(f"binding volumes: {e}") from e

    async def _bind_api_update(self, bindings: list[BindingInfo], claims: list[Obj]) -> None:
        client = self.handle.client
        done_bindings = done_claims = 0
        try:
            # prebind the PVs: the PV controller completes the binding (there is no API rollback)
            for binding in bindings:
                binding.pv = await client.update(PERSISTENT_VOLUMES, binding.pv)
                done_bindings += 1
            # select the node on the claims: the provisioner creates a volume there
            for i, claim in enumerate(claims):
                claims[i] = await client.update(PERSISTENT_VOLUME_CLAIMS, claim)
                done_claims += 1
        except APIError as e:
            raise BinderError(e.message or str(e)) from e
        except ClientError as e:
            raise BinderError(str(e)) from e
        finally:
            # only the objects not written stop being assumed
            self._revert_pvs(bindings[done_bindings:])
            self._revert_pvcs(claims[done_claims:])

    def _check_bindings(
        self, pod: PodInfo, node_name: str, bindings: list[BindingInfo], claims: list[Obj]
    ) -> bool:
        """checkBindings: True once every claim is fully bound; BinderError when binding failed
        for good (the pod is retried). Reads the informers' objects, never assumed ones."""
        node = self.handle.lister("nodes").get_by_key(node_name)
        if node is None:
            raise BinderError(f'failed to get node "{node_name}": {not_found("node", node_name)}')
        labels = (node.get("metadata") or {}).get("labels") or {}
        if self.handle.lister("pods").get_by_key(pod.key) is None:
            raise BinderError(f"pod does not exist any more: {not_found('pod', pod.name)}")
        for binding in bindings:
            pv_name = binding.pv["metadata"]["name"]
            pv = self.pv_cache.get_api(pv_name)
            if pv is None:
                raise BinderError(f'failed to check binding: could not find v1.PersistentVolume "{pv_name}"')
            pvc_key = meta_namespace_key(binding.pvc)
            pvc = self.pvc_cache.get_api(pvc_key)
            if pvc is None:
                raise BinderError(
                    f'failed to check binding: could not find v1.PersistentVolumeClaim "{pvc_key}"'
                )
            if resource_version(binding.pv) > resource_version(pv):
                return False  # the informer has not seen our write yet
            if not check_volume_node_affinity(pv, labels):
                raise BinderError(
                    f'pv "{pv_name}" node affinity doesn\'t match node "{node_name}": no matching NodeSelectorTerms'
                )
            ref = (pv.get("spec") or {}).get("claimRef")
            if not ref or not ref.get("uid"):
                raise BinderError(f'ClaimRef got reset for pv "{pv_name}"')
            if not is_pvc_fully_bound(pvc):
                return False
        for claim in claims:
            key = meta_namespace_key(claim)
            pvc = self.pvc_cache.get_api(key)
            if pvc is None:
                raise BinderError(
                    f'failed to check provisioning pvc: could not find v1.PersistentVolumeClaim "{key}"'
                )
            if resource_version(claim) > resource_version(pvc):
                return False
            annotations = (pvc.get("metadata") or {}).get("annotations")
            name = pvc["metadata"]["name"]
            if not annotations:
                raise BinderError(f'selectedNode annotation reset for PVC "{name}"')
            if annotations.get(ANN_SELECTED_NODE) != node_name:
                # a provisioner that failed removes the annotation to hand the claim back
                raise BinderError(f'provisioning failed for PVC "{name}"')
            volume_name = (pvc.get("spec") or {}).get("volumeName")
            if volume_name:
                pv = self.pv_cache.get_api(volume_name)
                if pv is None:
                    return False  # not seen yet, or deleted (the claim will be unbound then)
                if not check_volume_node_affinity(pv, labels):
                    raise BinderError(
                        f'pv "{volume_name}" node affinity doesn\'t match node "{node_name}": '
                        "no matching NodeSelectorTerms"
                    )
            if not is_pvc_fully_bound(pvc):
                return False
        return True


# -- scoring (VolumeCapacityPriority) -----------------------------------------------------------


def _build_scorer(shape: Sequence[Mapping[str, Any]]) -> Any:
    points = [(int(p.get("utilization", 0)), int(p.get("score", 0))) for p in shape]
    for i, (u, s) in enumerate(points):
        if not 0 <= u <= 100 or not 0 <= s <= MAX_CUSTOM_PRIORITY_SCORE:
            raise ValueError(f"shape[{i}]: Invalid value: utilization in [0, 100], score in [0, 10] required")
        if i and u <= points[i - 1][0]:
            raise ValueError(f"shape[{i}].utilization: Invalid value: {u}: utilization values must be sorted")
    broken_linear = build_broken_linear_function(
        [(u, s * (MAX_NODE_SCORE // MAX_CUSTOM_PRIORITY_SCORE)) for u, s in points]
    )

    def scorer(class_resources: Mapping[str, list[int]]) -> int:
        if not class_resources:
            return 0
        total = 0
        for requested, capacity in class_resources.values():
            if capacity == 0 or requested > capacity:
                total += broken_linear(MAX_UTILIZATION)
            else:
                total += broken_linear(requested * MAX_UTILIZATION // capacity)
        return math.floor(total / len(class_resources) + 0.5)

    return scorer


# -- volume helpers (component-helpers/storage/volume, ephemeral, corev1 node selectors) ---------


def not_found(resource: str, name: str) -> str:
    """A lister's NotFound message: `persistentvolumeclaim "data" not found`."""
    return f'{resource} "{name}" not found'


def resource_version(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _annotations(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def volume_claim_name(pod: Obj, vol: Obj) -> tuple[str, bool] | None:
    """The claim a pod volume uses, and whether it is a generic ephemeral volume's; None if none."""
    src = vol.get("persistentVolumeClaim")
    if src is not None:
        return src.get("claimName") or "", False
    if vol.get("ephemeral") is not None:
        return ephemeral_claim_name(pod, vol), True
    return None


def ephemeral_claim_name(pod: Obj, vol: Obj) -> str:
    """ephemeral.VolumeClaimName: <pod name>-<volume name>."""
    return f"{(pod.get('metadata') or {}).get('name', '')}-{vol.get('name', '')}"


def volume_is_for_pod(pod: Obj, pvc: Obj) -> str | None:
    """ephemeral.VolumeIsForPod: the error when the claim is not controlled by the pod."""
    pod_meta, pvc_meta = pod.get("metadata") or {}, pvc.get("metadata") or {}
    uid = pod_meta.get("uid")
    for ref in pvc_meta.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("uid") == uid:
            return None
    return (
        f"PVC {pvc_meta.get('namespace', '')}/{pvc_meta.get('name', '')} was not created for pod "
        f"{pod_meta.get('namespace', '')}/{pod_meta.get('name', '')} (pod is not owner)"
    )


def pvc_storage_class(pvc: Obj) -> str:
    """GetPersistentVolumeClaimClass: the beta annotation first, then spec.storageClassName."""
    annotations = _annotations(pvc)
    if BETA_STORAGE_CLASS_ANNOTATION in annotations:
        return annotations[BETA_STORAGE_CLASS_ANNOTATION]
    return (pvc.get("spec") or {}).get("storageClassName") or ""


def pv_storage_class(pv: Obj) -> str:
    annotations = _annotations(pv)
    if BETA_STORAGE_CLASS_ANNOTATION in annotations:
        return annotations[BETA_STORAGE_CLASS_ANNOTATION]
    return (pv.get("spec") or {}).get("storageClassName") or ""


def is_delay_binding_mode(pvc: Obj, classes: Indexer) -> bool:
    """IsDelayBindingMode: the claim's StorageClass binds WaitForFirstConsumer (no class,
    or a class that does not exist, is immediate)."""
    name = pvc_storage_class(pvc)
    if not name:
        return False
    cls = classes.get_by_key(name)
    if cls is None:
        return False
    mode = cls.get("volumeBindingMode")
    if mode is None:
        raise BinderError(f'VolumeBindingMode not set for StorageClass "{name}"')
    return mode == WAIT_FOR_FIRST_CONSUMER


def is_pvc_fully_bound(pvc: Obj) -> bool:
    return bool((pvc.get("spec") or {}).get("volumeName")) and ANN_BIND_COMPLETED in _annotations(pvc)


def _quantity(raw: Any) -> Decimal:
    q = parse_quantity(raw) if raw is not None else None
    return q.value if q is not None else Decimal(0)


def storage_request(pvc: Obj) -> Decimal:
    return _quantity((((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage"))


def storage_capacity(pv: Obj) -> Decimal:
    return _quantity(((pv.get("spec") or {}).get("capacity") or {}).get("storage"))


def _ceil(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_CEILING))


def _volume_limit(capacity: Obj) -> int | None:
    """A CSIStorageCapacity's limit: maximumVolumeSize if set (more precise), else capacity."""
    raw = capacity.get("maximumVolumeSize")
    if raw is None:
        raw = capacity.get("capacity")
    if raw is None:
        return None
    q = parse_quantity(raw)
    return _ceil(q.value) if q is not None else None


def is_volume_bound_to_claim(pv: Obj, pvc: Obj) -> bool:
    """IsVolumeBoundToClaim: the PV's claimRef names the claim (and its UID, if the ref has one)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if ref is None:
        return False
    meta = pvc.get("metadata") or {}
    if ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def claim_reference(pvc: Obj) -> Obj:
    """reference.GetReference of a claim."""
    meta = pvc.get("metadata") or {}
    ref = {
        "kind": "PersistentVolumeClaim",
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "apiVersion": "v1",
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    return {k: v for k, v in ref.items() if v}


def get_bind_volume_to_claim(pv: Obj, pvc: Obj) -> tuple[Obj, bool]:
    """GetBindVolumeToClaim: a copy of the PV bound to the claim, and whether anything changed."""
    should_set_bound_by_controller = not is_volume_bound_to_claim(pv, pvc)
    clone = copy.deepcopy(pv)
    clone.setdefault("apiVersion", "v1")
    clone.setdefault("kind", "PersistentVolume")
    dirty = False
    ref = (pv.get("spec") or {}).get("claimRef")
    meta = pvc.get("metadata") or {}
    if (
        ref is None
        or ref.get("name") != meta.get("name")
        or ref.get("namespace") != meta.get("namespace")
        or (ref.get("uid") or "") != (meta.get("uid") or "")
    ):
        clone.setdefault("spec", {})["claimRef"] = claim_reference(pvc)
        dirty = True
    annotations = clone.setdefault("metadata", {}).setdefault("annotations", {})
    if should_set_bound_by_controller and ANN_BOUND_BY_CONTROLLER not in annotations:
        annotations[ANN_BOUND_BY_CONTROLLER] = "yes"
        dirty = True
    return clone, dirty


def _access_modes_satisfied(pvc: Obj, pv: Obj) -> bool:
    """CheckAccessModes: the PV offers every mode the claim asks for."""
    offered = set((pv.get("spec") or {}).get("accessModes") or ())
    return all(mode in offered for mode in (pvc.get("spec") or {}).get("accessModes") or ())


def find_matching_volume(
    pvc: Obj,
    pvs: Sequence[Obj],
    node: NodeInfo | None,
    excluded: set[str],
    delay_binding: bool,
) -> Obj | None:
    """FindMatchingVolume: the PV prebound to the claim, else the smallest available PV that fits.

    `node` is set on the scheduler's path (the PV's node affinity must admit it, access modes
    must match); `excluded` holds PVs already chosen for the pod's other claims.
    """
    requested = storage_request(pvc)
    requested_class = pvc_storage_class(pvc)
    spec = pvc.get("spec") or {}
    raw_selector = spec.get("selector")
    try:
        selector = LabelSelector.from_label_selector(raw_selector) if raw_selector is not None else None
    except Exception as e:
        raise BinderError(
            f"error creating internal label selector for claim: {meta_namespace_key(pvc)}: {e}"
        ) from None
    requested_mode = spec.get("volumeMode") or "Filesystem"
    smallest: Obj | None = None
    smallest_qty = Decimal(0)
    for pv in pvs:
        pv_meta = pv.get("metadata") or {}
        if pv_meta.get("name") in excluded:
            continue
        pv_spec = pv.get("spec") or {}
        bound_to_claim = is_volume_bound_to_claim(pv, pvc)
        if pv_spec.get("claimRef") is not None and not bound_to_claim:
            continue
        qty = storage_capacity(pv)
        if qty < requested:
            continue
        if (pv_spec.get("volumeMode") or "Filesystem") != requested_mode:
            continue
        if pv_meta.get("deletionTimestamp"):
            continue
        if bound_to_claim:
            # a prebound PV that does not fit the node: the claim does not fit it either
            if node is not None and not check_volume_node_affinity(pv, node.labels):
                return None
            return pv
        if node is None and delay_binding:
            continue  # the PV controller leaves delayed claims to the scheduler
        if (pv.get("status") or {}).get("phase") != "Available":
            continue
        if selector is not None and not selector.matches(pv_meta.get("labels") or {}):
            continue
        if pv_storage_class(pv) != requested_class:
            continue
        if node is not None:
            if not check_volume_node_affinity(pv, node.labels):
                continue
            if not _access_modes_satisfied(pvc, pv):
                continue
        if smallest is None or smallest_qty > qty:
            smallest, smallest_qty = pv, qty
    return smallest


def check_volume_node_affinity(pv: Obj, labels: Mapping[str, str]) -> bool:
    """CheckNodeAffinity: the PV's required node affinity admits a node with these labels."""
    affinity = (pv.get("spec") or {}).get("nodeAffinity")
    if not affinity:
        return True
    required = affinity.get("required")
    if required is None:
        return True
    # CheckNodeAffinity matches a Node carrying only the labels: matchFields see no name
    return match_node_selector_terms(required.get("nodeSelectorTerms") or (), labels, "")


def match_node_selector_terms(terms: Sequence[Obj], labels: Mapping[str, str], node_name: str) -> bool:
    """corev1.MatchNodeSelectorTerms: any term matches; an empty or invalid term matches nothing."""
    for term in terms or ():
        exprs = term.get("matchExpressions") or ()
        fields = term.get("matchFields") or ()
        if not exprs and not fields:
            continue
        ok = True
        for expr in exprs:
            m = _match_node_selector_requirement(expr, labels)
            if not m:
                ok = False
                break
        if ok:
            for expr in fields:
                m = _match_field_requirement(expr, node_name)
                if not m:
                    ok = False
                    break
        if ok:
            return True
    return False


def _parse_int64(s: Any) -> int | None:
    try:
        v = int(str(s), 10)
    except ValueError:
        return None
    return v if -(1 << 63) <= v < (1 << 63) else None


def _match_node_selector_requirement(expr: Obj, labels: Mapping[str, str]) -> bool | None:
    """One label requirement; None when it is invalid (its term then matches nothing)."""
    op = expr.get("operator")
    key = expr.get("key", "")
    values: Sequence[str] = expr.get("values") or []
    if op == "In":
        return None if not values else (key in labels and labels[key] in values)
    if op == "NotIn":
        return None if not values else (key not in labels or labels[key] not in values)
    if op == "Exists":
        return None if values else key in labels
    if op == "DoesNotExist":
        return None if values else key not in labels
    if op in ("Gt", "Lt"):
        if len(values) != 1:
            return None
        want = _parse_int64(values[0])
        if want is None:
            return None
        have = _parse_int64(labels[key]) if key in labels else None
        if have is None:
            return False
        return have > want if op == "Gt" else have < want
    return None


def _match_field_requirement(expr: Obj, node_name: str) -> bool | None:
    """A matchFields requirement: only metadata.name, with In/NotIn of exactly one value."""
    op = expr.get("operator")
    values: Sequence[str] = expr.get("values") or []
    if op not in ("In", "NotIn") or len(values) != 1:
        return None
    value = node_name if expr.get("key") == "metadata.name" else ""
    return (value == values[0]) if op == "In" else (value != values[0])


def match_topology_selector_terms(terms: Sequence[Obj] | None, labels: Mapping[str, str]) -> bool:
    """v1helper.MatchTopologySelectorTerms (StorageClass allowedTopologies): no terms match all;
    a term matches when every expression's key has one of its values."""
    if not terms:
        return True
    for term in terms:
        exprs = term.get("matchLabelExpressions") or ()
        if not exprs:
            continue
        if all((values := e.get("values")) and labels.get(e.get("key", "")) in values for e in exprs):
            return True
    return False
