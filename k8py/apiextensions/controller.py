"""The CRD controllers kube-apiserver runs inside itself, and the serving of custom resources.

kube's apiextensions-apiserver runs, in-process, a naming controller (which names
a CRD may have: `status.acceptedNames` and NamesAccepted), an establishing
controller (Established once the names are accepted), a finalizer (deleting a
CRD deletes its objects first) and the controllers that install the custom
resource's handler, discovery and OpenAPI. `CRDController` is all of them:

- **Serving** happens in the watch cache's `on_events` hook, synchronously, as the
  cache applies a CRD event: the served versions of every Established CRD of the
  group are (re)built into ResourceInfos (`customresource.resource_infos`) and
  registered, discovery and the touched OpenAPI documents invalidated. So any
  request that can see a CRD Established also finds its resources (no window in
  which a client sees Established but gets 404), and a new CRD is served
  milliseconds after its status write. A group's versions are ordered as kube
  orders them (v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > others); its first is the
  preferred one. Groups served by built-in resources are never taken over.
- **Status** (names, conditions) is written by one asyncio worker fed with CRD names
  (level-triggered: each sync reads the CRD from the cache and writes only when
  something changes), through the generic store as the system user: kube's
  controllers use a loopback client, this is the same path without HTTP. Names
  are accepted unless another CRD of the group already accepted them (reasons
  PluralConflict, KindConflict, ...); Established follows in the same write
  (reason InitialNamesAccepted; upstream takes two steps).
- **Deletion**: the CRD strategy adds `customresourcecleanup.apiextensions.k8s.io`
  on DELETE; a task per terminating CRD sets `Terminating`
  (InstanceDeletionInProgress), deletes every object through the generic store
  (their own finalizers are honoured), waits for them to be gone, records
  InstanceDeletionCompleted and removes the finalizer, which deletes the CRD.
  While it terminates, creating objects is refused (405, as kube's handler does).

`start()` registers the CRDs already stored before the API server reports ready.
The admission plugin (`admission`) holds the two request-time rules: the 405
above, and the Warning header on CRD writes saying what k8py accepts but does not
do (CEL `x-kubernetes-validations`, conversion webhooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

from k8py.api import errors, meta
from k8py.api.registry import Registry, ResourceInfo
from k8py.api.strategy import CRD_CLEANUP_FINALIZER
from k8py.api.validation.apiextensions import warnings as crd_warnings
from k8py.apiextensions.customresource import resource_infos
from k8py.apiserver.admission import Attributes, UserInfo
from k8py.apiserver.discovery import Discovery
from k8py.apiserver.genericstore import Context, GenericStore
from k8py.apiserver.openapi import OpenAPIV3
from k8py.apiserver.watchcache import WatchCache, WatchEvent

log = logging.getLogger(__name__)

Obj = dict[str, Any]
GROUP = "apiextensions.k8s.io"
CRD_PREFIX = f"/registry/{GROUP}/customresourcedefinitions/"
SYSTEM = UserInfo("system:apiserver", ["system:masters", "system:authenticated"])
CLEANUP_TIMEOUT = 60.0  # how long the finalizer waits for objects (their own finalizers) to go
_KUBE_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of kube's CompareKubeAwareVersionStrings: GA, then beta, then alpha, newest first."""
    m = _KUBE_VERSION.fullmatch(version)
    if m is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m[2]]
    return (stage, -int(m[1]), -int(m[3] or 0), "")


def condition(crd: Obj, kind: str) -> Obj | None:
    return next((c for c in (crd.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def is_true(crd: Obj, kind: str) -> bool:
    return (condition(crd, kind) or {}).get("status") == "True"


def set_condition(status: Obj, kind: str, state: str, reason: str, message: str) -> None:
    """SetCRDCondition: the transition time moves only when the status does."""
    conditions = list(status.get("conditions") or [])
    old = next((c for c in conditions if c.get("type") == kind), None)
    new = {"type": kind, "status": state, "lastTransitionTime": meta.now(), "reason": reason, "message": message}
    if old is None:
        conditions.append(new)
    else:
        if old.get("status") == state:
            new["lastTransitionTime"] = old.get("lastTransitionTime")
        conditions[conditions.index(old)] = new
    status["conditions"] = conditions


class CRDController:
    def __init__(
        self, registry: Registry, cache: WatchCache, store: GenericStore, discovery: Discovery, openapi: OpenAPIV3
    ) -> None:
        self._registry, self._cache, self._store = registry, cache, store
        self._discovery, self._openapi = discovery, openapi
        crds = registry.get(GROUP, "v1", "customresourcedefinitions")
        assert crds is not None
        self._crds = crds
        self._builtin_groups = set(registry.groups())
        self._served: dict[str, tuple[Any, list[str]]] = {}  # group -> (what it was built from, versions)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._finalizers: dict[str, asyncio.Task[None]] = {}
        self.admission = CustomResourceAdmission(self)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the CRDs already stored, then follow the watch cache."""
        for group in {c["spec"]["group"] for c in self.crds()}:
            self._serve(group)
        self._cache.on_events.append(self._on_events)
        self._worker = asyncio.create_task(self._run(), name="crd-controller")
        for crd in self.crds():
            self._queue.put_nowait(crd["metadata"]["name"])

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self._cache.on_events.remove(self._on_events)
        tasks = [t for t in (self._worker, *self._finalizers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def crds(self, group: str | None = None) -> list[Obj]:
        return [c for c in self._cache.list(CRD_PREFIX) if group is None or c["spec"].get("group") == group]

    def crd(self, name: str) -> Obj | None:
        return self._cache.get(CRD_PREFIX + name)

    # ---- serving (synchronous, in the watch cache's event hook) ----------------------------------

    def _on_events(self, events: list[WatchEvent]) -> None:
        groups: set[str] = set()
        for ev in events:
            if not ev.key.startswith(CRD_PREFIX):
                continue
            for obj in (ev.obj, ev.prev):
                if obj is not None:
                    groups.add((obj.get("spec") or {}).get("group", ""))
        for group in groups:
            try:
                self._serve(group)
            except Exception:  # never break the watch cache over one CRD
                log.exception("serving the custom resources of group %s failed", group)
            for crd in self.crds(group):  # names may have been freed or claimed: reconsider the group
                self._queue.put_nowait(crd["metadata"]["name"])

    def _serve(self, group: str) -> None:
        """Register exactly the served versions of the group's Established CRDs."""
        if group in self._builtin_groups:
            return
        crds = [c for c in self.crds(group) if is_true(c, "Established") and (c.get("status") or {}).get("acceptedNames")]
        basis = [(c["metadata"]["name"], c["spec"], c["status"]["acceptedNames"]) for c in crds]
        served = self._served.get(group)
        if served is not None and served[0] == basis:
            return
        versions = sorted(
            {v["name"] for c in crds for v in c["spec"].get("versions") or [] if v.get("served")}, key=version_priority
        )
        infos: list[ResourceInfo] = []
        for crd in crds:
            try:
                infos += resource_infos(crd, versions[0] if versions else "")
            except (KeyError, TypeError, StopIteration):
                log.exception("cannot serve CustomResourceDefinition %s", crd["metadata"]["name"])
        old_versions = served[1] if served is not None else []
        for version in old_versions:
            self._registry.remove_group_version(group, version)
        for info in sorted(infos, key=lambda i: version_priority(i.version)):
            self._registry.add(info)
        self._served[group] = (basis, versions)
        self._discovery.invalidate()
        for path in ("apis", f"apis/{group}", *(f"apis/{group}/{v}" for v in {*old_versions, *versions})):
            self._openapi.invalidate(path)

    # ---- status (the worker) -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            name = await self._queue.get()
            try:
                await self._sync(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("syncing CustomResourceDefinition %s failed; retrying", name)
                asyncio.get_running_loop().call_later(1.0, self._queue.put_nowait, name)

    async def _sync(self, name: str) -> None:
        crd = self.crd(name)
        if crd is None:
            return
        if crd["metadata"].get("deletionTimestamp") and CRD_CLEANUP_FINALIZER in (crd["metadata"].get("finalizers") or []):
            if name not in self._finalizers:
                task = asyncio.create_task(self._finalize(name), name=f"crd-finalizer-{name}")
                self._finalizers[name] = task
                task.add_done_callback(lambda _: self._finalizers.pop(name, None))
            return
        names, accepted = self._accepted_names(crd)
        current = condition(crd, "NamesAccepted") or {}
        unchanged = names == (crd.get("status") or {}).get("acceptedNames") and accepted == (
            current.get("status"),
            current.get("reason"),
            current.get("message"),
        )
        if unchanged and (accepted[0] != "True" or is_true(crd, "Established")):
            return

        def update(status: Obj) -> None:
            status["acceptedNames"] = names
            set_condition(status, "NamesAccepted", *accepted)
            if accepted[0] == "True":
                set_condition(status, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted")
            elif condition({"status": status}, "Established") is None:
                set_condition(status, "Established", "False", "NotAccepted", "not all names are accepted")

        await self._write_status(name, update)

    def _accepted_names(self, crd: Obj) -> tuple[Obj, tuple[str, str, str]]:
        """The naming controller: the names `crd` may have, and its NamesAccepted (status, reason, message)."""
        spec_names = crd["spec"].get("names") or {}
        status_names = (crd.get("status") or {}).get("acceptedNames") or {}
        resources: set[str] = set()
        kinds: set[str] = set()
        for other in self.crds(crd["spec"].get("group")):
            taken = (other.get("status") or {}).get("acceptedNames") or {}
            resources.update([taken.get("plural", ""), taken.get("singular", ""), *(taken.get("shortNames") or [])])
            kinds.update([taken.get("kind", ""), taken.get("listKind", "")])
        names = dict(status_names)
        state = ("True", "NoConflicts", "no conflicts found")

        def fresh(requested: str, accepted: str, used: set[str]) -> bool:
            return requested == accepted or requested not in used

        for key, used, reason in (("plural", resources, "PluralConflict"), ("singular", resources, "SingularConflict")):
            if fresh(spec_names.get(key, ""), status_names.get(key, ""), used):
                names[key] = spec_names.get(key, "")
            else:
                state = ("False", reason, f'"{spec_names.get(key)}" is already in use')
        requested_short = list(spec_names.get("shortNames") or [])
        if requested_short != list(status_names.get("shortNames") or []):
            mine = {*(status_names.get("shortNames") or []), status_names.get("plural"), status_names.get("singular")}
            taken_short = [s for s in requested_short if s not in mine and s in resources]
            if taken_short:
                state = ("False", "ShortNamesConflict", ", ".join(f'"{s}" is already in use' for s in taken_short))
            else:
                names["shortNames"] = requested_short
        for key, reason in (("kind", "KindConflict"), ("listKind", "ListKindConflict")):
            if fresh(spec_names.get(key, ""), status_names.get(key, ""), kinds):
                names[key] = spec_names.get(key, "")
            else:
                state = ("False", reason, f'"{spec_names.get(key)}" is already in use')
        if spec_names.get("categories"):
            names["categories"] = list(spec_names["categories"])
        else:
            names.pop("categories", None)
        if not names.get("shortNames"):
            names.pop("shortNames", None)
        return names, state

    async def _write_status(self, name: str, change: Callable[[Obj], None]) -> Obj | None:
        """A status update as the system user (retried on conflicts); None when the CRD is gone."""

        def transform(current: Obj | None) -> Obj:
            assert current is not None
            status = dict(current.get("status") or {})
            change(status)
            current["status"] = status
            return current

        try:
            updated, _ = await self._store.guaranteed_update(
                Context(user=SYSTEM), self._crds, "", name, transform, subresource="status"
            )
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise
        return updated

    # ---- deletion ----------------------------------------------------------------------------------

    async def _finalize(self, name: str) -> None:
        """The CRD finalizer: delete every object of the CRD, then let the CRD go."""
        crd = await self._write_status(
            name,
            lambda s: set_condition(s, "Terminating", "True", "InstanceDeletionInProgress", "CustomResource deletion is in progress"),
        )
        if crd is None:
            return
        if is_true(crd, "Established"):
            try:
                await self._delete_instances(crd)
            except (errors.StatusError, TimeoutError) as e:
                message = f"could not confirm zero CustomResources remaining: {str(e) or 'timed out'}"
                await self._write_status(
                    name, lambda s: set_condition(s, "Terminating", "True", "InstanceDeletionCheck", message)
                )
                asyncio.get_running_loop().call_later(5.0, self._queue.put_nowait, name)
                return
            done = ("False", "InstanceDeletionCompleted", "removed all instances")
        else:
            done = ("False", "NeverEstablished", "resource was never established")
        await self._write_status(name, lambda s: set_condition(s, "Terminating", *done))

        def release(current: Obj | None) -> Obj:
            assert current is not None
            md = current["metadata"]
            md["finalizers"] = [f for f in md.get("finalizers") or [] if f != CRD_CLEANUP_FINALIZER]
            return current

        with contextlib.suppress(errors.StatusError):
            await self._store.guaranteed_update(Context(user=SYSTEM), self._crds, "", name, release)

    async def _delete_instances(self, crd: Obj) -> None:
        group, plural = crd["spec"]["group"], crd["status"]["acceptedNames"]["plural"]
        info = next(
            (i for i in self._registry.resources(group) if i.custom is not None and i.resource == plural), None
        )
        if info is None:
            return
        ctx = Context(user=SYSTEM)
        for obj in self._cache.list(info.prefix()):
            md = obj["metadata"]
            try:
                await self._store.delete(ctx, info, md.get("namespace", ""), md["name"], {})
            except errors.StatusError as e:
                if e.code != 404:
                    raise
        async with asyncio.timeout(CLEANUP_TIMEOUT):
            while self._cache.count(info.prefix()):
                await asyncio.sleep(0.1)


class CustomResourceAdmission:
    """What kube's CRD handler and strategy decide at request time, as an admission plugin."""

    name = "k8py/CustomResourceDefinitions"

    def __init__(self, controller: CRDController) -> None:
        self._controller = controller

    def validate(self, attrs: Attributes) -> None:
        info = attrs.info
        if info.custom is not None and attrs.operation == "CREATE" and not attrs.subresource:
            crd = self._controller.crd(info.custom.crd_name)
            if crd is not None and crd["metadata"].get("deletionTimestamp"):
                raise errors.method_not_allowed("create not allowed while custom resource definition is terminating")
        if info.group == GROUP and info.kind == "CustomResourceDefinition" and attrs.obj is not None:
            if attrs.operation in ("CREATE", "UPDATE") and not attrs.subresource:
                attrs.warnings.extend(w for w in crd_warnings(attrs.obj, attrs.old) if w not in attrs.warnings)
