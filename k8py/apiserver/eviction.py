"""The eviction subresource (``POST pods/<name>/eviction``, a policy/v1 Eviction): a pod delete
that respects PodDisruptionBudgets, as ``pkg/registry/core/pod/storage/eviction.go``.

1. A pod that is Pending, terminal (Succeeded/Failed) or already being deleted has nothing left
   to protect: it is deleted at once (a Pending pod with its resourceVersion as precondition, so
   that it cannot turn Running unnoticed).
2. Otherwise the PDBs of the pod's namespace whose selector matches it are looked up (a null or
   empty selector matches nothing here). More than one: 500, "This pod has more than one
   PodDisruptionBudget, which the eviction subresource does not support.".
3. With one PDB: a pod that is not Ready does not count towards the budget, so it may go without
   spending a disruption when the PDB says ``unhealthyPodEvictionPolicy: AlwaysAllow``, or when the
   application is healthy anyway (currentHealthy >= desiredHealthy > 0); then it is deleted with
   its resourceVersion as precondition (a conflict, i.e. the pod changed, answers 429).
   Otherwise ``checkAndDecrement``: 429 TooManyRequests while the disruption controller has not
   seen the PDB's latest generation or while ``disruptionsAllowed`` is 0 ("Cannot evict pod as it
   would violate the pod's disruption budget.", a ``DisruptionBudget`` cause), 403 when it is
   negative or ``disruptedPods`` holds more than 2000 entries; else ``disruptionsAllowed`` is
   decremented (the DisruptionAllowed condition turns False at 0) and the pod is recorded in
   ``disruptedPods`` — one status write of the PDB with its resourceVersion as precondition,
   retried on conflict with a fresh read. The disruption controller then stops counting the pod
   as healthy and recomputes the budget.
4. The pod gets the ``DisruptionTarget`` condition (reason ``EvictionByEvictionAPI``), then is
   deleted with the Eviction's ``deleteOptions`` (grace period, preconditions, propagation).

Dry run (``?dryRun=All`` or ``deleteOptions.dryRun``) goes through every check and writes nothing.
The Eviction itself passes admission (pods/eviction CREATE), as upstream's createValidation.
The answer is a Success Status, 201.
"""

from __future__ import annotations

import asyncio
from typing import Any

from k8py.api import errors, meta
from k8py.api.registry import Registry, ResourceInfo
from k8py.api.selectors import LabelSelector
from k8py.apiserver.admission import Attributes
from k8py.apiserver.genericstore import Context, GenericStore, ListOptions

Obj = dict[str, Any]
MAX_DISRUPTED_POD_SIZE = 2000
EVICTIONS_RETRY = 20  # attempts on conflicts (upstream's EvictionsRetry: 20 steps)
RETRY_INTERVAL = 0.1
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def too_many_requests(message: str, retry_after: int, cause: str) -> errors.StatusError:
    """errors.NewTooManyRequests with a DisruptionBudget cause."""
    details: Obj = {"causes": [{"reason": DISRUPTION_BUDGET_CAUSE, "message": cause}]}
    headers: dict[str, str] = {}
    if retry_after > 0:
        details["retryAfterSeconds"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return errors.StatusError(429, "TooManyRequests", message, details=details, headers=headers)


def still_processing(pdb_name: str) -> errors.StatusError:
    """createTooManyRequestsError."""
    return too_many_requests(VIOLATION, 10, f"The disruption budget {pdb_name} is still being processed by the server.")


def _pdb_forbidden(name: str, why: str) -> errors.StatusError:
    return errors.StatusError(
        403, "Forbidden", f'poddisruptionbudget.policy "{name}" is forbidden: {why}',
        details={"name": name, "group": "policy", "kind": "poddisruptionbudget"},
    )  # fmt: skip


def _is_pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or ()
    )


def _phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def can_ignore_pdb(pod: Obj) -> bool:
    return _phase(pod) in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def should_enforce_resource_version(pod: Obj) -> bool:
    return _phase(pod) not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _set_rv_precondition(options: Obj, rv: str) -> Obj:
    out = dict(options)
    out["preconditions"] = {**(options.get("preconditions") or {}), "resourceVersion": rv}
    return out


def _rv_unset(options: Obj) -> bool:
    return not (options.get("preconditions") or {}).get("resourceVersion")


class EvictionREST:
    def __init__(self, registry: Registry, store: GenericStore) -> None:
        self.store = store
        pods, pdbs = registry.get("", "v1", "pods"), registry.get("policy", "v1", "poddisruptionbudgets")
        assert pods is not None and pdbs is not None
        self.pods: ResourceInfo = pods
        self.pdbs: ResourceInfo = pdbs

    async def create(self, ctx: Context, namespace: str, name: str, eviction: Obj) -> tuple[Obj, int]:
        """Evict pod `name`; (the Status to answer, its HTTP code). Errors are raised as StatusErrors."""
        md = eviction.get("metadata") or {}
        if eviction.get("kind") not in (None, "Eviction"):
            raise errors.bad_request(f"not a Eviction object: {eviction.get('kind')}")
        if md.get("name") != name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        options = self._delete_options(ctx, eviction)
        attrs = Attributes("CREATE", self.pods, namespace, name, eviction, None, "eviction", ctx.user, ctx.dry_run, ctx.warnings)
        await self.store.admission.admit(attrs)
        await self.store.admission.validate(attrs)

        # 1. pods whose PDBs do not matter
        pod: Obj | None = None
        for _ in range(EVICTIONS_RETRY if _rv_unset(options) else 1):
            pod = await self.store.get(self.pods, namespace, name)
            if not can_ignore_pdb(pod):
                break
            delete_options = options
            if should_enforce_resource_version(pod) and _rv_unset(options):
                delete_options = _set_rv_precondition(options, pod["metadata"]["resourceVersion"])
            try:
                await self._add_condition_and_delete(ctx, namespace, name, delete_options)
            except errors.StatusError as e:
                if e.code == 409 and _rv_unset(options):
                    await asyncio.sleep(RETRY_INTERVAL)
                    continue
                raise
            return _success(), 201
        assert pod is not None
        if can_ignore_pdb(pod):
            raise errors.conflict("", "pods", name, "the pod kept changing while being evicted, please retry")

        # 2. the PDB
        pdbs = await self._pdbs_for(pod)
        if len(pdbs) > 1:
            status = {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                "code": 500,
            }  # fmt: skip
            return status, 500
        pdb_name = ""
        skip_budget = False
        if pdbs:
            pdb = pdbs[0]
            pdb_name = pdb["metadata"]["name"]
            pdb_status: Obj = pdb.get("status") or {}
            if not _is_pod_ready(pod):
                # an unready pod does not count towards currentHealthy: it may go without spending a disruption
                if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
                    skip_budget = True
                elif pdb_status.get("currentHealthy", 0) >= pdb_status.get("desiredHealthy", 0) > 0:
                    skip_budget = True
            if not skip_budget:
                await self._check_and_decrement_with_retry(ctx, pod, pdb)

        # 3. the delete
        delete_options = options
        if skip_budget:
            delete_options = _set_rv_precondition(options, pod["metadata"]["resourceVersion"])
        try:
            await self._add_condition_and_delete(ctx, namespace, name, delete_options)
        except errors.StatusError as e:
            if e.code == 409 and skip_budget and _rv_unset(options):
                raise still_processing(pdb_name) from None
            raise
        return _success(), 201

    # -- helpers ------------------------------------------------------------------------------------------

    @staticmethod
    def _delete_options(ctx: Context, eviction: Obj) -> Obj:
        """propagateDryRun: the Eviction's deleteOptions, with the request's dryRun when they agree."""
        options = dict(eviction.get("deleteOptions") or {})
        body_dry = options.get("dryRun") or []
        request_dry = ["All"] if ctx.dry_run else []
        for v in body_dry:
            if v != "All":
                raise errors.bad_request(f'Unsupported value: "{v}": supported values: "All"')
        if body_dry and request_dry and body_dry != request_dry:
            raise errors.bad_request(
                f"Non-matching dry-run options in request and content: {request_dry} and {body_dry}"
            )
        ctx.dry_run = bool(body_dry or request_dry)
        if ctx.dry_run:
            options["dryRun"] = ["All"]
        return options

    async def _pdbs_for(self, pod: Obj) -> list[Obj]:
        items, _ = await self.store.list(self.pdbs, pod["metadata"]["namespace"], ListOptions())
        labels = pod["metadata"].get("labels") or {}
        out = []
        for pdb in items:
            try:
                selector = LabelSelector.from_label_selector((pdb.get("spec") or {}).get("selector"))
            except errors.StatusError:
                continue  # an invalid selector matches no pod
            # a nil or empty selector matches nothing here (unlike the PDB lister)
            if selector.empty or selector.matches_nothing or not selector.matches(labels):
                continue
            out.append(pdb)
        return out

    async def _check_and_decrement_with_retry(self, ctx: Context, pod: Obj, pdb: Obj) -> None:
        name = pdb["metadata"]["name"]
        for attempt in range(EVICTIONS_RETRY):
            if attempt:
                await asyncio.sleep(RETRY_INTERVAL)
                pdb = await self.store.get(self.pdbs, pod["metadata"]["namespace"], name)
            try:
                await self._check_and_decrement(ctx, pod["metadata"]["name"], pdb)
                return
            except errors.StatusError as e:
                if e.code != 409:
                    raise
        raise errors.StatusError(
            504, "Timeout", f'Timeout: couldn\'t update PodDisruptionBudget "{name}" due to conflicts',
            details={"retryAfterSeconds": 10},
        )  # fmt: skip

    async def _check_and_decrement(self, ctx: Context, pod_name: str, pdb: Obj) -> None:
        md = pdb["metadata"]
        status = meta.clone(pdb.get("status") or {})
        if status.get("observedGeneration", 0) < md.get("generation", 0):
            raise still_processing(md["name"])
        allowed = status.get("disruptionsAllowed", 0)
        if allowed < 0:
            raise _pdb_forbidden(md["name"], "pdb disruptions allowed is negative")
        if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_POD_SIZE:
            raise _pdb_forbidden(
                md["name"], "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
            )
        if allowed == 0:
            raise too_many_requests(
                VIOLATION, 0,
                f"The disruption budget {md['name']} needs {status.get('desiredHealthy', 0)} healthy pods "
                f"and has {status.get('currentHealthy', 0)} currently",
            )  # fmt: skip
        status["disruptionsAllowed"] = allowed - 1
        if status["disruptionsAllowed"] == 0:
            _set_insufficient(status)
        if ctx.dry_run:
            return
        status.setdefault("disruptedPods", {})[pod_name] = meta.now()
        new = {**pdb, "status": status}
        internal = Context(user=ctx.user, subresource="status")  # the API server's own (loopback) write
        await self.store.guaranteed_update(
            internal, self.pdbs, md["namespace"], md["name"], lambda _cur: meta.clone(new),
            subresource="status", client_rv=md["resourceVersion"],
        )  # fmt: skip

    async def _add_condition_and_delete(self, ctx: Context, namespace: str, name: str, options: Obj) -> None:
        """addConditionAndDeletePod: DisruptionTarget=True (EvictionByEvictionAPI), then the delete."""
        pre = options.get("preconditions") or {}
        if not ctx.dry_run:

            def add_condition(current: Obj | None) -> Obj:
                assert current is not None
                cmd = current["metadata"]
                if pre.get("uid") and pre["uid"] != cmd.get("uid"):
                    raise errors.conflict(
                        "", "pods", name,
                        f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {cmd.get('uid')}",
                    )  # fmt: skip
                if pre.get("resourceVersion") and pre["resourceVersion"] != cmd.get("resourceVersion"):
                    raise errors.conflict(
                        "", "pods", name,
                        f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                        f"ResourceVersion in object meta: {cmd.get('resourceVersion')}",
                    )  # fmt: skip
                _update_pod_condition(current, {
                    "type": "DisruptionTarget", "status": "True",
                    "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
                })  # fmt: skip
                return current

            status_ctx = Context(user=ctx.user, field_manager=ctx.field_manager, subresource="status")
            updated, _ = await self.store.guaranteed_update(
                status_ctx, self.pods, namespace, name, add_condition, subresource="status"
            )
            if pre.get("resourceVersion"):
                options = {**options, "preconditions": {**pre, "resourceVersion": updated["metadata"]["resourceVersion"]}}
        await self.store.delete(ctx, self.pods, namespace, name, options)


def _update_pod_condition(pod: Obj, condition: Obj) -> None:
    """podutil.UpdatePodCondition: lastTransitionTime moves only when the status changes."""
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    for c in conditions:
        if c.get("type") == condition["type"]:
            if c.get("status") != condition["status"]:
                c["lastTransitionTime"] = meta.now()
            c.update(condition)
            c.setdefault("lastTransitionTime", meta.now())
            return
    conditions.append({**condition, "lastProbeTime": None, "lastTransitionTime": meta.now()})


def _set_insufficient(status: Obj) -> None:
    """pdbhelper.UpdateDisruptionAllowedCondition for disruptionsAllowed 0."""
    conditions = status.setdefault("conditions", [])
    new = {
        "type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "",
        "observedGeneration": status.get("observedGeneration", 0),
    }  # fmt: skip
    for c in conditions:
        if c.get("type") == "DisruptionAllowed":
            if c.get("status") != "False":
                c["lastTransitionTime"] = meta.now()
            c.update(new)
            return
    conditions.append({**new, "lastTransitionTime": meta.now()})


def _success() -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
