"""The node's heartbeat: a Lease in kube-node-lease renewed every 10 s (upstream pkg/kubelet/nodelease)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from k8py.client import ClientError, RESTClient, is_not_found
from k8py.client.resources import LEASES

LEASE_DURATION = 40  # seconds (kubelet's nodeLeaseDurationSeconds)
RENEW_INTERVAL = 10.0  # a quarter of the duration, as the kubelet's controller renews
NAMESPACE = "kube-node-lease"


def micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def renew_lease(client: RESTClient, node: str, *, owner_uid: str | None = None) -> None:
    """Create or renew the node's Lease (owned by its Node when ``owner_uid`` is given)."""
    spec = {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION, "renewTime": micro_time()}
    try:
        current = await client.get(LEASES, node, namespace=NAMESPACE)
    except ClientError as e:
        if not is_not_found(e):
            raise
        metadata: dict[str, Any] = {"name": node, "namespace": NAMESPACE}
        if owner_uid:
            metadata["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": owner_uid}
            ]
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        await client.create(LEASES, lease, namespace=NAMESPACE)
        return
    current["spec"] = {**current.get("spec", {}), **spec}
    await client.update(LEASES, current)
