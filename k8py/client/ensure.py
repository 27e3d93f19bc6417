"""Create objects, or bring the existing ones of the same name up to date (what `kubectl apply`
does for a whole manifest, without field ownership): for bootstrap objects that k8py writes
(add-on RBAC, kubeadm's ConfigMaps and bindings) and may write again on the next start."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from k8py.client.errors import ClientError, is_already_exists
from k8py.client.resources import resource_of
from k8py.client.rest import Obj, RESTClient


async def ensure_objects(
    client: RESTClient, objs: Iterable[Obj], merge: Callable[[Obj, Obj], Obj] | None = None
) -> None:
    """Create each object, or replace the one of that name; ``merge(current, desired)`` may keep
    some of the current object (e.g. data others added) in what replaces it."""
    for obj in objs:
        res = resource_of(obj)
        namespace = obj["metadata"].get("namespace")
        try:
            await client.create(res, obj, namespace=namespace)
            continue
        except ClientError as e:
            if not is_already_exists(e):
                raise
        current = await client.get(res, obj["metadata"]["name"], namespace=namespace)
        desired = merge(current, obj) if merge is not None else obj
        desired = {**desired, "metadata": {**desired["metadata"],
                                           "resourceVersion": current["metadata"]["resourceVersion"]}}
        await client.update(res, desired)
