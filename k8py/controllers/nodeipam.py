"""Node IPAM (``pkg/controller/nodeipam``, the RangeAllocator): a ``spec.podCIDR`` for every Node.

The cluster CIDR (``--cluster-cidr``, one per IP family, comma-separated) is cut into subnets
of ``--node-cidr-mask-size`` bits; a :class:`CidrSet` remembers which are in use, as upstream's
``cidrset.CidrSet`` does: allocation scans round-robin from the subnet after the last one
handed out, so a freed subnet is not reused at once.

Before the workers start, every node that already has ``spec.podCIDRs`` occupies them (a
restarted controller manager forgets nothing), and so does the Service CIDR where it overlaps
the cluster CIDR. Then each node key is synced: a node with CIDRs occupies them; one without
gets the next free subnet of each family, patched onto ``spec.podCIDR`` and ``spec.podCIDRs``
(upstream's PatchNodeCIDRs). A node's deletion releases its subnets. When a family has no free
subnet left the node gets a ``CIDRNotAvailable`` event and its key is retried with backoff (a
deleted node frees one); a failed patch gives ``CIDRAssignmentFailed``.

``spec.podCIDRs`` is immutable once set (the API server refuses any change), so two
allocations racing for one node cannot both land: the loser's patch is refused and its subnet
released. ``_assigned`` closes the common window in between: a node patched a moment ago whose
update the informer has not delivered yet is not given a second subnet.

Not done: the cloud allocator and multi-CIDR ranges (ClusterCIDR objects), both off by default.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from k8py.client import NORMAL, APIError, ClientError, PatchType, ResourceEventHandlerFuncs, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import wait_for_cache_sync
from k8py.client.resources import NODES
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# upstream's cidrUpdateWorkers is 30: patches are small and independent
DEFAULT_WORKERS = 10
MAX_SUBNET_BITS = 16  # cidrset's clusterSubnetMaxDiff: at most 65536 subnets per cluster CIDR


class CIDRRangeFull(Exception):
    """cidrset.ErrCIDRRangeNoCIDRsRemaining."""


class CidrSet:
    """The subnets of one cluster CIDR and which are in use (cidrset.CidrSet)."""

    def __init__(self, cluster_cidr: Network, mask_size: int) -> None:
        if mask_size < cluster_cidr.prefixlen:
            raise ValueError(
                f"node CIDR mask size {mask_size} is smaller than the cluster CIDR's {cluster_cidr.prefixlen}"
            )
        if mask_size - cluster_cidr.prefixlen > MAX_SUBNET_BITS:
            raise ValueError(
                f"node CIDR mask size {mask_size} makes more than 2^{MAX_SUBNET_BITS} subnets of {cluster_cidr}"
            )
        self.cluster = cluster_cidr
        self.mask_size = mask_size
        self.max_cidrs = 1 << (mask_size - cluster_cidr.prefixlen)
        self._shift = cluster_cidr.max_prefixlen - mask_size
        self._base = int(cluster_cidr.network_address)
        self.used: set[int] = set()
        self.next_candidate = 0

    def _subnet(self, index: int) -> Network:
        address = ipaddress.ip_address(self._base + (index << self._shift))
        return ipaddress.ip_network(f"{address}/{self.mask_size}")

    def allocate_next(self) -> Network:
        for i in range(self.max_cidrs):
            candidate = (self.next_candidate + i) % self.max_cidrs
            if candidate not in self.used:
                self.used.add(candidate)
                self.next_candidate = (candidate + 1) % self.max_cidrs
                return self._subnet(candidate)
        raise CIDRRangeFull(f"CIDR allocation failed; there are no remaining CIDRs left to allocate in {self.cluster}")

    def _indices(self, cidr: Network) -> range:
        """The subnets `cidr` overlaps (getBeginningAndEndIndices); ValueError outside the cluster CIDR."""
        if cidr.version != self.cluster.version or not (
            cidr.subnet_of(self.cluster) or self.cluster.subnet_of(cidr)  # type: ignore[arg-type]
        ):
            raise ValueError(f"cidr {cidr} is out of the range of cluster cidr {self.cluster}")
        first = max(int(cidr.network_address), self._base)
        last = min(int(cidr.broadcast_address), int(self.cluster.broadcast_address))
        return range((first - self._base) >> self._shift, ((last - self._base) >> self._shift) + 1)

    def occupy(self, cidr: Network) -> None:
        self.used.update(self._indices(cidr))

    def release(self, cidr: Network) -> None:
        self.used.difference_update(self._indices(cidr))

    def overlaps(self, cidr: Network) -> bool:
        return cidr.version == self.cluster.version and self.cluster.overlaps(cidr)  # type: ignore[arg-type]


def node_pod_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = list(spec.get("podCIDRs") or [])
    if not cidrs and spec.get("podCIDR"):
        cidrs = [spec["podCIDR"]]
    return cidrs


def parse_cidrs(text: str) -> list[Network]:
    return [ipaddress.ip_network(c.strip(), strict=False) for c in text.split(",") if c.strip()]


class NodeIpamController(QueueController):
    """The range allocator: informers (nodes) -> queue of node names -> sync(name)."""

    name = "nodeipam"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers(self.name, DEFAULT_WORKERS))
        opts = ctx.options
        self.client = ctx.client
        self.enabled = opts.allocate_node_cidrs
        # upstream's range allocator records as "cidrAllocator"
        self.recorder = ctx.recorder("cidrAllocator")
        self.cidr_sets = [CidrSet(net, _mask_for(net, opts.node_cidr_mask_size)) for net in parse_cidrs(opts.cluster_cidr)]
        for service_cidr in parse_cidrs(opts.service_cidr or ""):
            for cidr_set in self.cidr_sets:
                if cidr_set.overlaps(service_cidr):  # filterOutServiceRange
                    cidr_set.occupy(service_cidr)
        self._assigned: dict[str, tuple[str, list[str]]] = {}  # node -> (uid, cidrs) patched, maybe not seen yet
        self.nodes = ctx.informers.informer_for(NODES)
        if self.enabled:
            self.nodes.add_event_handler(
                ResourceEventHandlerFuncs(
                    add_func=lambda n, _initial: self.enqueue(n),
                    update_func=self._node_updated,
                    delete_func=self._node_deleted,
                )
            )
        self.synced = [self.nodes]

    # -- events ------------------------------------------------------------------------------------

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if not node_pod_cidrs(new) or not node_pod_cidrs(old):
            self.enqueue(new)

    def _node_deleted(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        node = unwrap(obj)
        name = key_of(obj)
        assigned = self._assigned.pop(name, None)
        cidrs = node_pod_cidrs(node) or (assigned[1] if assigned else [])
        self._release(name, cidrs)

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        if not self.enabled:
            log.info("nodeipam: --allocate-node-cidrs is off: not allocating pod CIDRs")
            return
        await wait_for_cache_sync(*self.synced)
        for node in self.nodes.indexer.list():  # restore what earlier runs allocated, before any new allocation
            self._occupy(node["metadata"]["name"], node_pod_cidrs(node))
        await super().run()

    async def sync(self, key: str) -> None:
        node = self.nodes.indexer.get_by_key(key)
        if node is None:
            return
        cidrs = node_pod_cidrs(node)
        if cidrs:
            self._assigned.pop(key, None)
            self._occupy(key, cidrs)
            return
        assigned = self._assigned.get(key)
        if assigned is not None and assigned[0] == node["metadata"].get("uid"):
            return  # patched already; the informer has not caught up
        allocated: list[Network] = []
        for cidr_set in self.cidr_sets:
            try:
                allocated.append(cidr_set.allocate_next())
            except CIDRRangeFull:
                for done, s in zip(allocated, self.cidr_sets, strict=False):
                    s.release(done)
                self._status_event(node, "CIDRNotAvailable")
                raise
        strings = [str(c) for c in allocated]
        patch = {"metadata": {"uid": node["metadata"]["uid"]}, "spec": {"podCIDR": strings[0], "podCIDRs": strings}}
        try:
            await self.client.patch(NODES, key, patch, patch_type=PatchType.STRATEGIC)
        except ClientError as e:
            if isinstance(e, APIError):
                # refused (the node has CIDRs already, or is gone): the subnets are free again. A
                # transport error may have landed: keep them, as upstream does on a timeout.
                for cidr, s in zip(allocated, self.cidr_sets, strict=True):
                    s.release(cidr)
            if is_not_found(e):
                return
            self._status_event(node, "CIDRAssignmentFailed")
            raise
        self._assigned[key] = (node["metadata"]["uid"], strings)
        log.info("nodeipam: set node %s PodCIDR to %s", key, strings)

    # -- helpers ----------------------------------------------------------------------------------

    def _occupy(self, node: str, cidrs: list[str]) -> None:
        for i, text in enumerate(cidrs):
            if i >= len(self.cidr_sets):
                log.error("nodeipam: node %s has CIDR %s at index %d beyond the cluster CIDRs", node, text, i)
                return
            try:
                self.cidr_sets[i].occupy(ipaddress.ip_network(text, strict=False))
            except ValueError as e:
                log.error("nodeipam: node %s: cannot occupy %s: %s", node, text, e)

    def _release(self, node: str, cidrs: list[str]) -> None:
        for i, text in enumerate(cidrs[: len(self.cidr_sets)]):
            try:
                self.cidr_sets[i].release(ipaddress.ip_network(text, strict=False))
            except ValueError as e:
                log.error("nodeipam: node %s: cannot release %s: %s", node, text, e)

    def _status_event(self, node: Obj, status: str) -> None:
        """nodeutil.RecordNodeStatusChange."""
        name = node["metadata"]["name"]
        ref = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"].get("uid", "")}
        self.recorder.event(ref, NORMAL, status, f"Node {name} status is now: {status}")


def _mask_for(net: Network, mask_size: int) -> int:
    """--node-cidr-mask-size is the IPv4 size; an IPv6 cluster CIDR gets upstream's default /64."""
    if net.version == 6 and mask_size <= 32:
        return 64
    return mask_size
